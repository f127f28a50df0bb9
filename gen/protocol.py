"""The host <-> board link protocol: frames, CRC, sample codec, message layouts.

One description, two users: the gateware (:mod:`sparse_edge.hdl.link`) builds
its constants, CRC equations and ROM contents from this module, and the host
driver (:mod:`sparse_edge.boards.host`) encodes and decodes with it.  It
imports nothing of Amaranth.  The protocol is specified, with frame tables, in
``docs/boards.md``; in short:

**Frames.**  ``SYNC | type | seq | [ack] | len_lo len_hi | payload | crc_hi
crc_lo``.  Every byte after ``SYNC`` is *stuffed*: a ``SYNC`` (0xFE)
or ``ESC`` (0xFD) byte is sent as ``ESC, byte ^ 0x20``, so ``SYNC`` only ever
starts a frame and a receiver resynchronises on it after any error.  Host
frames carry ``ack``, the number of predictions the host has received
(cumulative, mod 256).  The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021,
initial value 0xFFFF) over the unstuffed bytes from ``type`` to the end of the
payload, sent most significant byte first, so the CRC over the whole frame
(CRC included) is 0.

**Samples** carry a running sample index (mod 256); the device applies a sample
only if it is the next one it expects and a slot of its input buffer is free
(credit), re-acknowledges a duplicate without applying it and rejects a gap.
Every sample frame and every poll is answered by a :data:`REPORT` (next
expected index, credit limit, predictions produced, and the predictions not
yet reported), so the host recovers from any lost frame by going back to the
device's next expected index (go-back-N) and a lost report by polling.

**Sample codec** (:func:`encode_pixels`, from :mod:`~sparse_edge.gen.pixel_code`):
the pixel *symbol* is the part of an 8-bit pixel the number format uses,
``pixel >> (8 - symbol_bits)`` with ``symbol_bits = min(frac_bits, 8)``
(``QFormat.pixel`` maps ``symbol << (8 - symbol_bits)`` to the same code, so
the codec is lossless for the network).  With ``symbol_bits <= 7`` a byte
below 0x80 is one symbol and ``0x80 + n - 1`` a run of ``n`` zeros (``n <=
125``, so the pixel bytes never need stuffing); with 8-bit symbols a byte ``b
!= 0x80`` is the symbol ``b ^ 0x80`` and ``0x80, n - 1`` a run of ``n`` zeros
(``n <= 256``; the XOR keeps the common bright pixels 253 and 254 off the
``ESC`` and ``SYNC`` values).  Pixels after the last encoded one are zero, up
to ``layers[0]``.
"""

import hashlib
import json
import struct
from dataclasses import dataclass

import numpy as np

from .errors import CodecError, ProtocolError
# the sample codec is part of the protocol: its names are this module's too
from .pixel_code import (MAX_RUN_7, MAX_RUN_8, RUN_8, decode_pixels, encode_pixels,
                         pixel_symbols, symbol_bits, symbol_bits_of)

__all__ = [
    "VERSION", "SYNC", "ESC", "ESC_XOR", "MAGIC",
    "HELLO", "SAMPLE", "POLL", "READ", "WRITE", "STATUS",
    "INFO", "REPORT", "PARAMS", "STATUS_REPLY", "HOST_TYPES", "DEVICE_TYPES",
    "R_ACCEPTED", "R_DUPLICATE", "R_OUT_OF_ORDER", "R_NO_CREDIT", "R_BAD_PIXELS", "R_BUSY",
    "R_BAD_REQUEST", "R_POLLED", "R_WRITTEN", "RESULT_NAMES", "RESULT_PRIORITY",
    "MAX_READ", "MAX_WRITE", "MAX_PREDS", "INDEX_MOD", "STATUS_FIELDS", "COUNTER_MOD",
    "ProtocolError", "CodecError", "crc16", "crc16_update", "crc16_equations", "stuff",
    "host_frame", "device_frame", "FrameParser", "Frame",
    "symbol_bits", "symbol_bits_of", "encode_pixels", "decode_pixels", "pixel_symbols",
    "MAX_RUN_7", "MAX_RUN_8", "RUN_8",
    "sample_payload", "read_payload", "write_payload", "Report", "parse_report",
    "parse_params", "parse_status", "BoardInfo", "info_payload", "parse_info",
    "network_digest", "SCHEDULE_CODES",
]

#: Protocol version (in the INFO reply; the host refuses another one).
VERSION = 1
SYNC, ESC, ESC_XOR = 0xFE, 0xFD, 0x20
#: First bytes of an INFO payload.
MAGIC = b"SE"

# host -> device frame types
HELLO, SAMPLE, POLL, READ, WRITE, STATUS = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
# device -> host frame types
INFO, REPORT, PARAMS, STATUS_REPLY = 0x81, 0x82, 0x83, 0x86
HOST_TYPES = {HELLO: "HELLO", SAMPLE: "SAMPLE", POLL: "POLL", READ: "READ", WRITE: "WRITE",
              STATUS: "STATUS"}
DEVICE_TYPES = {INFO: "INFO", REPORT: "REPORT", PARAMS: "PARAMS", STATUS_REPLY: "STATUS"}

# REPORT result codes: what the device did with the frame it answers
R_ACCEPTED = 0       # sample stored (it will be applied exactly once)
R_DUPLICATE = 1      # sample index below the next expected one: already applied
R_OUT_OF_ORDER = 2   # sample index above the next expected one (a frame was lost)
R_NO_CREDIT = 3      # no free input slot (the host overran its credit)
R_BAD_PIXELS = 4     # the pixel code does not decode (more pixels than inputs, ...)
R_BUSY = 5           # parameter access refused: samples are still in flight
R_BAD_REQUEST = 6    # unknown frame type, bad length or out-of-range address
R_POLLED = 7         # answer to a POLL
R_WRITTEN = 8        # WRITE applied
#: REPORTs are cumulative, so the device coalesces the REPORTs of frames that
#: arrive while it is still sending one: the next REPORT carries the latest
#: sequence number and the most important result since the last one, in this
#: order (least important first).
RESULT_PRIORITY = (R_ACCEPTED, R_POLLED, R_DUPLICATE, R_NO_CREDIT, R_OUT_OF_ORDER, R_BUSY,
                   R_WRITTEN, R_BAD_PIXELS, R_BAD_REQUEST)
RESULT_NAMES = {R_ACCEPTED: "accepted", R_DUPLICATE: "duplicate",
                R_OUT_OF_ORDER: "out of order", R_NO_CREDIT: "no credit",
                R_BAD_PIXELS: "bad pixels", R_BUSY: "busy", R_BAD_REQUEST: "bad request",
                R_POLLED: "polled", R_WRITTEN: "written"}

#: Largest parameter count of one READ / WRITE frame.
MAX_READ, MAX_WRITE = 128, 64
#: Most predictions one REPORT carries.
MAX_PREDS = 32
#: Sample indices, prediction counts and credit limits are sent modulo this
#: (one byte).  Enough: every window of the protocol is far below half of it
#: (the host never runs more than the device's input slots, at most 32, ahead
#: of the device, the prediction ring holds at most 64).
INDEX_MOD = 1 << 8
#: The STATUS reply: ``(name, bytes)`` in order, little-endian unsigned.  The
#: device keeps the counters modulo 2**32 (the host unwraps them between
#: reads, see ``Board.status``).
STATUS_FIELDS = (
    ("uptime_clocks", 4),     # clocks since configuration
    ("network_clocks", 4),    # clocks the network ran (its enabled clocks)
    ("frames_good", 4),       # frames with a good CRC
    ("frames_bad", 4),        # frames with a bad CRC, bad length or cut short by a SYNC
    ("samples_accepted", 4),  # samples stored (each exactly once)
    ("samples_done", 4),      # predictions produced
    ("duplicates", 4),        # retransmitted samples re-acknowledged, not applied
    ("out_of_order", 4),      # samples after a lost one, rejected
    ("no_credit", 4),         # samples refused for lack of a free slot
    ("bad_pixels", 4),        # samples whose pixel code did not decode
    ("busy", 4),              # parameter accesses refused while samples were in flight
    ("rx_overflow", 4),       # received bytes lost (receive FIFO full)
    ("rx_framing", 4),        # UART framing errors (stop bit low)
    ("input_stalls", 4),      # clocks the network waited for a sample
    ("output_stalls", 4),     # clocks the network waited for the prediction ring
)
#: Counters are kept modulo this.
COUNTER_MOD = 1 << 32
#: Hardware schedule kinds in the INFO reply.
SCHEDULE_CODES = {"fast": 0, "reference": 1}


# -- CRC ---------------------------------------------------------------------------------
def _crc_table():
    table = []
    for b in range(256):
        c = b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16_update(crc, byte):
    """One byte into a CRC-16/CCITT-FALSE register."""
    return ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of ``data`` (``crc16(b"123456789") == 0x29B1``)."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def crc16_equations():
    """The byte update as XOR equations, for the gateware: a list of 16
    ``(crc_bits, data_bits)`` pairs; new CRC bit ``i`` is the XOR of the old
    CRC bits and the data byte bits listed (derived from the polynomial by
    running the bit-serial register on symbolic bits)."""
    # each register bit is a set of symbols: ("c", i) or ("d", i)
    reg = [{("c", i)} for i in range(16)]
    for k in range(7, -1, -1):             # data bits, most significant first
        fb = reg[15] ^ {("d", k)}
        new = [set() for _ in range(16)]
        for i in range(15, 0, -1):
            new[i] = set(reg[i - 1])
        new[0] = set()
        for i in (0, 5, 12):               # taps of 0x1021
            new[i] = new[i] ^ fb
        reg = new
    return [(sorted(i for t, i in s if t == "c"), sorted(i for t, i in s if t == "d"))
            for s in reg]


# -- framing ------------------------------------------------------------------------------
def stuff(data):
    """Escape ``SYNC`` and ``ESC`` bytes."""
    out = bytearray()
    for b in data:
        if b == SYNC or b == ESC:
            out += bytes((ESC, b ^ ESC_XOR))
        else:
            out.append(b)
    return bytes(out)


def _frame(body):
    c = crc16(body)
    return bytes((SYNC,)) + stuff(body + bytes((c >> 8, c & 0xFF)))


def host_frame(ftype, seq, ack, payload=b""):
    """A host -> device frame, stuffed and ready to send."""
    if len(payload) >= 1 << 16:
        raise ValueError("payload too long")
    return _frame(struct.pack("<BBBH", ftype, seq & 0xFF, ack % INDEX_MOD, len(payload))
                  + bytes(payload))


def device_frame(ftype, seq, payload=b""):
    """A device -> host frame (the gateware's framing; used by tests)."""
    return _frame(struct.pack("<BBH", ftype, seq & 0xFF, len(payload)) + bytes(payload))


@dataclass
class Frame:
    type: int
    seq: int
    payload: bytes
    ack: int = None


class FrameParser:
    """Incremental parser of a stuffed byte stream (either direction).

    ``feed(data)`` returns the complete frames with a good CRC; everything
    else (bad CRC, bad length, a frame cut short by ``SYNC``, bytes outside a
    frame) is dropped and counted in :attr:`bad` / :attr:`junk`.
    ``host=True`` parses host frames (with the ``ack`` field).
    """

    def __init__(self, host=False, max_payload=4096):
        self.header = 5 if host else 4
        self.host = host
        self.max_payload = max_payload
        self.buf = None           # bytes of the frame being received (unstuffed)
        self.esc = False
        self.bad = 0
        self.junk = 0

    def _need(self):
        if len(self.buf) < self.header:
            return None
        n = self.buf[self.header - 2] | (self.buf[self.header - 1] << 8)
        return self.header + n + 2

    def feed(self, data):
        out = []
        for b in data:
            if b == SYNC:
                if self.buf:
                    self.bad += 1           # cut short
                self.buf = bytearray()
                self.esc = False
                continue
            if self.buf is None:
                self.junk += 1
                continue
            if b == ESC:
                self.esc = True
                continue
            if self.esc:
                b ^= ESC_XOR
                self.esc = False
            self.buf.append(b)
            need = self._need()
            if need is not None and need - self.header - 2 > self.max_payload:
                self.bad += 1
                self.buf = None
                continue
            if need is not None and len(self.buf) == need:
                body = bytes(self.buf)
                self.buf = None
                if crc16(body) != 0:
                    self.bad += 1
                    continue
                if self.host:
                    t, s, ack, n = struct.unpack_from("<BBBH", body)
                    out.append(Frame(t, s, body[5:5 + n], ack))
                else:
                    t, s, n = struct.unpack_from("<BBH", body)
                    out.append(Frame(t, s, body[4:4 + n]))
        return out


# -- message payloads --------------------------------------------------------------------------
def sample_payload(index, label, eta_exp, code):
    """SAMPLE payload: index (mod 256), label, control (``k`` in bits 0-3,
    update in bit 4), pixel code.  ``eta_exp`` < 0 means no update."""
    upd = eta_exp is not None and eta_exp >= 0
    k = eta_exp if upd else 0
    if not 0 <= k <= 15:
        raise ValueError(f"learning-rate exponent {k} not in 0..15")
    return struct.pack("<BBB", index % INDEX_MOD, int(label), k | (upd << 4)) + bytes(code)


def read_payload(junction, bias, start, count):
    return struct.pack("<BB", junction, int(bias)) + int(start).to_bytes(3, "little") + \
        bytes((count,))


def write_payload(junction, bias, start, values, width):
    vals = np.asarray(values, dtype=np.int64)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if len(vals) and (vals.min() < lo or vals.max() > hi):
        raise ValueError(f"parameter codes must be in {lo}..{hi}")
    return read_payload(junction, bias, start, len(vals)) + \
        (vals & 0xFFFF).astype("<u2").tobytes()


@dataclass
class Report:
    result: int
    next_index: int      # mod 256
    limit: int           # mod 256: the device accepts indices below it
    produced: int        # predictions produced, mod 256
    base: int            # index of preds[0], mod 256
    preds: bytes

    @property
    def result_name(self):
        return RESULT_NAMES.get(self.result, f"result {self.result}")


_REPORT = struct.Struct("<BBBBBB")


def report_payload(r):
    return _REPORT.pack(r.result, r.next_index, r.limit, r.produced, r.base, len(r.preds)) + \
        bytes(r.preds)


def parse_report(payload):
    if len(payload) < _REPORT.size:
        raise ProtocolError(f"REPORT of {len(payload)} bytes (at least {_REPORT.size})")
    res, nxt, lim, prod, base, n = _REPORT.unpack_from(payload)
    if len(payload) != _REPORT.size + n:
        raise ProtocolError(f"REPORT of {len(payload)} bytes for {n} predictions")
    return Report(res, nxt, lim, prod, base, bytes(payload[_REPORT.size:]))


def parse_params(payload, width, count=None):
    """The values of a PARAMS payload: two bytes each, the low ``width`` bits
    a two's complement code (returned sign-extended, ``int32``)."""
    if len(payload) % 2 or (count is not None and len(payload) != 2 * count):
        raise ProtocolError(f"PARAMS of {len(payload)} bytes"
                            + (f" for {count} values" if count is not None else ""))
    raw = np.frombuffer(payload, dtype="<u2").astype(np.int64) & ((1 << width) - 1)
    return np.where(raw >= 1 << (width - 1), raw - (1 << width), raw).astype(np.int32)


def parse_status(payload):
    need = sum(n for _, n in STATUS_FIELDS)
    if len(payload) != need:
        raise ProtocolError(f"STATUS of {len(payload)} bytes, expected {need}")
    out, o = {}, 0
    for name, n in STATUS_FIELDS:
        out[name] = int.from_bytes(payload[o:o + n], "little")
        o += n
    return out


# -- INFO: what the board runs ---------------------------------------------------------------
def network_digest(cfg, schedule):
    """What makes two boards run the same network: structure, number format,
    connection pattern, data sizes, junction-cycle length and hardware
    schedule, plus the protocol version (not the name, the initial weights,
    which the host loads, or the training settings).  8 bytes."""
    d = cfg.to_dict()
    key = {"layers": d["layers"], "fanout": d["fanout"], "cycle": d["cycle"],
           "format": d["format"], "interleaver": d["interleaver"], "data": d["data"],
           "schedule": schedule, "protocol": VERSION}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).digest()[:8]


@dataclass
class BoardInfo:
    """The INFO reply: which network the board runs and its link geometry."""
    version: int
    digest: bytes
    layers: tuple
    fanout: tuple
    cycle: int
    int_bits: int
    frac_bits: int
    inputs: int
    classes: int
    schedule: str
    clocks_per_sample: int
    drain_samples: int
    slots: int               # input buffer slots (credits)
    pred_ring: int           # prediction ring entries
    clock_hz: int
    divisor: int             # UART clocks per bit
    max_read: int = MAX_READ
    max_write: int = MAX_WRITE

    @property
    def baud(self):
        return self.clock_hz / self.divisor if self.divisor else 0.0

    def describe(self):
        return (f"{'-'.join(map(str, self.layers))} fo={list(self.fanout)} C={self.cycle} "
                f"Q({self.int_bits},{self.frac_bits}) {self.schedule} schedule, "
                f"digest {self.digest.hex()}")


_INFO_HEAD = struct.Struct("<2sB8sBHBBBBHHHBBBIHBB")


def info_payload(cfg, schedule, clocks_per_sample, drain, slots, pred_ring, clock_hz, divisor):
    """The constant INFO payload of a board (the gateware holds it in a ROM)."""
    L = len(cfg.layers)
    head = _INFO_HEAD.pack(MAGIC, VERSION, network_digest(cfg, schedule), L, cfg.cycle,
                           cfg.fmt.int_bits, cfg.fmt.frac_bits, SCHEDULE_CODES[schedule],
                           MAX_PREDS, cfg.inputs, cfg.classes, clocks_per_sample, drain & 0xFF,
                           slots, pred_ring, int(clock_hz), divisor, MAX_READ, MAX_WRITE)
    body = b"".join(struct.pack("<H", n) for n in cfg.layers) + \
        b"".join(struct.pack("<H", f) for f in cfg.fanout)
    return head + body


def parse_info(payload):
    if len(payload) < _INFO_HEAD.size or payload[:2] != MAGIC:
        raise ProtocolError("the board's INFO reply is not a sparse-edge one")
    (magic, version, digest, L, cycle, ib, fb, sched, _maxp, inputs, classes, cps, drain,
     slots, ring, clk, div, mr, mw) = _INFO_HEAD.unpack_from(payload)
    if version != VERSION:
        raise ProtocolError(f"the board speaks link protocol version {version}, this host "
                            f"version {VERSION}: rebuild the bitstream with this sparse-edge")
    rest = payload[_INFO_HEAD.size:]
    if len(rest) != 4 * L - 2:
        raise ProtocolError("the board's INFO reply has a bad length")
    layers = struct.unpack(f"<{L}H", rest[:2 * L])
    fanout = struct.unpack(f"<{L - 1}H", rest[2 * L:])
    names = {v: k for k, v in SCHEDULE_CODES.items()}
    return BoardInfo(version, bytes(digest), layers, fanout, cycle, ib, fb, inputs, classes,
                     names.get(sched, f"schedule {sched}"), cps, drain, slots, ring, clk, div,
                     mr, mw)
