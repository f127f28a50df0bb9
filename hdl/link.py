"""The link engine: the board side of the host link protocol (docs/boards.md).

Byte path, receive side: UART receiver -> FIFO -> :class:`Deframer` (undoes the
byte stuffing, marks ``SYNC``) -> :class:`FrameReceiver` (header, length,
CRC) -> the engine's per-type handlers; for a sample, :class:`PixelDecoder`
writes the decoded pixels into the open slot of :class:`InputBuffer`, which
feeds the :class:`~sparse_edge.hdl.network.Network` whole beats.  Transmit
side: the engine's reply generator -> :class:`FrameSender` (header, length,
CRC) -> :class:`Enframer` (byte stuffing) -> UART transmitter.  Predictions go
from the network into :class:`PredictionRing` until the host acknowledges
them.

Every constant, the CRC equations and the INFO contents come from
:mod:`sparse_edge.gen.protocol`, which the host driver uses too.
"""

import operator

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..gen import protocol as P

__all__ = ["FRAME_BYTE", "crc16_next", "Deframer", "Enframer", "FrameReceiver", "FrameSender",
           "PixelDecoder", "InputBuffer", "PredictionRing", "LinkEngine"]

#: A byte between the (un)stuffing layer and the frame layer: ``sync`` marks
#: the frame delimiter (its ``data`` is meaningless).
FRAME_BYTE = data.StructLayout({"data": 8, "sync": 1})

_EQUATIONS = P.crc16_equations()


def crc16_next(crc, byte):
    """The CRC-16/CCITT-FALSE register after ``byte`` (XOR network from
    :func:`~sparse_edge.gen.protocol.crc16_equations`)."""
    bits = []
    for cbits, dbits in _EQUATIONS:
        v = Const(0, 1)
        for i in cbits:
            v = v ^ crc[i]
        for i in dbits:
            v = v ^ byte[i]
        bits.append(v)
    return Cat(*bits)


def _pow2(n):
    return 1 << max(0, (n - 1).bit_length())


def _bits(n):
    return max(0, (n - 1).bit_length())


class Deframer(wiring.Component):
    """Undoes the byte stuffing of the receive path.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes as received.
    o : Out(stream.Signature(FRAME_BYTE))
        ``sync`` for a ``SYNC`` byte, else the unescaped byte (``ESC`` bytes
        are consumed).  Combinational, no latency; one byte per clock.
    """

    def __init__(self):
        super().__init__({"i": In(stream.Signature(8)),
                          "o": Out(stream.Signature(FRAME_BYTE))})

    def elaborate(self, platform):
        m = Module()
        esc = Signal(name="unstuff_esc")
        b = self.i.payload
        is_sync, is_esc = b == P.SYNC, b == P.ESC
        m.d.comb += [
            self.o.valid.eq(self.i.valid & ~is_esc),
            self.o.payload.sync.eq(is_sync),
            self.o.payload.data.eq(Mux(esc, b ^ P.ESC_XOR, b)),
            self.i.ready.eq(self.o.ready | is_esc),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += esc.eq(is_esc)
        return m


class Enframer(wiring.Component):
    """Byte stuffing of the transmit path.

    Members
    -------
    i : In(stream.Signature(FRAME_BYTE))
        ``sync`` sends a bare ``SYNC``; a data byte equal to ``SYNC`` or
        ``ESC`` goes out as ``ESC, byte ^ 0x20`` (two bytes), any other as is.
    o : Out(stream.Signature(8))
        Bytes to send, from an output register (one clock of latency; no
        combinational path from the transmitter's ``ready`` back to the
        frame layer).  One byte per clock when ``o.ready`` stays high.
    """

    def __init__(self):
        super().__init__({"i": In(stream.Signature(FRAME_BYTE)),
                          "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        second = Signal(name="stuff_second")     # the ESC went out, now the byte
        out = Signal(8, name="stuff_out")
        full = Signal(name="stuff_full")
        d = self.i.payload.data
        special = ~self.i.payload.sync & ((d == P.SYNC) | (d == P.ESC))
        load = ~full | self.o.ready
        m.d.comb += [self.o.valid.eq(full), self.o.payload.eq(out),
                     self.i.ready.eq(load & (~special | second))]
        with m.If(load):
            m.d.sync += [full.eq(self.i.valid),
                         out.eq(Mux(self.i.payload.sync, P.SYNC,
                                    Mux(special, Mux(second, d ^ P.ESC_XOR, P.ESC), d)))]
            with m.If(self.i.valid & special):
                m.d.sync += second.eq(~second)
        return m


HOST_HEADER = data.StructLayout({"type": 8, "seq": 8, "ack": 8, "length": 16})
#: Index fields (sample indices, prediction counts) are this wide on the wire.
IB = (P.INDEX_MOD - 1).bit_length()


class FrameReceiver(wiring.Component):
    """Frame layer of the receive path: header, payload length, CRC.

    Parameters
    ----------
    max_payload : int
        Longer frames are dropped as bad as soon as their header is in.

    Members
    -------
    i : In(stream.Signature(FRAME_BYTE))
        From the :class:`Deframer`.
    header : Out(HOST_HEADER)
        Type, sequence number, acknowledgement and length of the current
        frame; valid from its first payload byte (or its ``done``) until the
        ``done`` is taken.
    o : Out(stream.Signature(8))
        Payload bytes, in order; ``pos`` is the index of the one offered
        (saturating at 255: the engine only needs the first ones exactly).
        Back-pressure stalls the receiver (bytes wait in the FIFO before it).
    pos : Out(8)
    done : Out(stream.Signature(1))
        One transfer per started frame, after its last byte: payload ``1`` if
        the frame is good (length and CRC), ``0`` if not (bad CRC, too long,
        cut short by a ``SYNC``).  Nothing else is received until it is taken.

    Throughput: one byte per clock.
    """

    def __init__(self, max_payload):
        self.max_payload = operator.index(max_payload)
        super().__init__({
            "i": In(stream.Signature(FRAME_BYTE)),
            "header": Out(HOST_HEADER),
            "o": Out(stream.Signature(8)),
            "pos": Out(8),
            "done": Out(stream.Signature(1)),
        })

    def elaborate(self, platform):
        m = Module()
        crc = Signal(16, init=0xFFFF, name="rx_crc")
        hcnt = Signal(range(HOST_HEADER.size // 8), name="rx_header_count")
        left = Signal(range(self.max_payload + 1), name="rx_left")   # payload bytes to come
        ccnt = Signal(name="rx_crc_count")
        pos = Signal(8, name="rx_pos")
        good = Signal(name="rx_good")
        hdr = Signal(HOST_HEADER, name="rx_header")
        m.d.comb += [self.header.eq(hdr), self.pos.eq(pos)]
        b, sync = self.i.payload.data, self.i.payload.sync
        take = self.i.valid & self.i.ready
        with m.If(take & ~sync):
            m.d.sync += crc.eq(crc16_next(crc, b))
        last_hdr = HOST_HEADER.size // 8 - 1

        with m.FSM(name="rx_frame"):
            with m.State("HUNT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(take & sync):
                    m.d.sync += [crc.eq(0xFFFF), hcnt.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(take & sync):
                    # an empty frame (SYNC SYNC) or one cut short in its header
                    m.d.sync += [crc.eq(0xFFFF), hcnt.eq(0)]
                    with m.If(hcnt != 0):
                        m.d.sync += good.eq(0)
                        m.next = "ABORT_TAKEN"
                with m.Elif(take):
                    m.d.sync += [hdr.as_value().word_select(hcnt, 8).eq(b), hcnt.eq(hcnt + 1)]
                    with m.If(hcnt == last_hdr):
                        length = Cat(hdr.as_value()[HOST_HEADER.size - 16:HOST_HEADER.size - 8], b)
                        m.d.sync += [left.eq(length), pos.eq(0), ccnt.eq(0)]
                        with m.If(length > self.max_payload):
                            m.d.sync += good.eq(0)
                            m.next = "DONE"
                        with m.Elif(length == 0):
                            m.next = "CRC"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [self.o.valid.eq(self.i.valid & ~sync),
                             self.o.payload.eq(b),
                             self.i.ready.eq(self.o.ready & ~sync)]
                with m.If(self.i.valid & sync):
                    m.d.sync += good.eq(0)
                    m.next = "DONE"
                with m.Elif(take):
                    m.d.sync += [left.eq(left - 1), pos.eq(pos + (pos != 255))]
                    with m.If(left == 1):
                        m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += self.i.ready.eq(~sync)
                with m.If(self.i.valid & sync):
                    m.d.sync += good.eq(0)
                    m.next = "DONE"
                with m.Elif(take):
                    m.d.sync += ccnt.eq(1)
                    with m.If(ccnt):
                        m.d.sync += good.eq(crc16_next(crc, b) == 0)
                        m.next = "DONE"
            with m.State("DONE"):
                # the SYNC that cut a frame short is left for HUNT
                m.d.comb += [self.done.valid.eq(1), self.done.payload.eq(good)]
                with m.If(self.done.ready):
                    m.next = "HUNT"
            with m.State("ABORT_TAKEN"):
                # cut short by a SYNC that was already consumed: report, go on
                m.d.comb += [self.done.valid.eq(1), self.done.payload.eq(0)]
                with m.If(self.done.ready):
                    m.next = "HEADER"
        return m


DEVICE_HEADER = data.StructLayout({"type": 8, "seq": 8, "length": 16})


class FrameSender(wiring.Component):
    """Frame layer of the transmit path.

    Parameters
    ----------
    max_payload : int
        Longest payload it is asked to send (sizes its byte counter).

    Members
    -------
    cmd : In(stream.Signature(DEVICE_HEADER))
        Starts a frame: ``SYNC``, the header, then ``length`` bytes from
        ``i``, then the CRC (most significant byte first).
    i : In(stream.Signature(8))
        The payload bytes of the current frame.
    o : Out(stream.Signature(FRAME_BYTE))
        To the :class:`Enframer`.
    busy : Out(1)
        A frame is being sent (``cmd.ready`` is low).
    """

    def __init__(self, max_payload=(1 << 16) - 1):
        self.max_payload = operator.index(max_payload)
        super().__init__({
            "cmd": In(stream.Signature(DEVICE_HEADER)),
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(FRAME_BYTE)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        hdr = Signal(DEVICE_HEADER, name="tx_header")
        crc = Signal(16, init=0xFFFF, name="tx_crc")
        cnt = Signal(2, name="tx_count")                 # header and CRC bytes
        left = Signal(range(self.max_payload + 1), name="tx_left")   # payload bytes to come
        sent = self.o.valid & self.o.ready
        covered = Signal(name="tx_crc_en")       # header and payload bytes
        with m.If(sent & covered):
            m.d.sync += crc.eq(crc16_next(crc, self.o.payload.data))
        with m.FSM(name="tx_frame"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [hdr.eq(self.cmd.payload), crc.eq(0xFFFF), cnt.eq(0),
                                 left.eq(self.cmd.payload.length)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1), self.o.payload.sync.eq(1)]
                with m.If(self.o.ready):
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1), covered.eq(1),
                             self.o.payload.data.eq(hdr.as_value().word_select(cnt[:2], 8))]
                with m.If(self.o.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == 3):
                        m.d.sync += cnt.eq(0)
                        m.next = "PAYLOAD"
                        with m.If(hdr.length == 0):
                            m.next = "CRC"
            with m.State("PAYLOAD"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(self.i.valid), covered.eq(1),
                             self.o.payload.data.eq(self.i.payload),
                             self.i.ready.eq(self.o.ready)]
                with m.If(sent):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1),
                             self.o.payload.data.eq(Mux(cnt[0], crc[:8], crc[8:]))]
                with m.If(self.o.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt[0]):
                        m.next = "IDLE"
        return m


class PixelDecoder(wiring.Component):
    """Decodes the pixel code of a sample (see :mod:`sparse_edge.gen.protocol`)
    into pixel writes.

    Parameters
    ----------
    inputs : int
        Pixels the host sends (``data.inputs``); the code may not describe more.
    lanes : int
        Pixels per beat of the network (``z[0]``): pixel ``p`` is written to
        beat ``p // lanes``, lane ``p % lanes``.
    symbol_bits : int
        Bits of a pixel the number format uses (``min(frac_bits, 8)``).

    Members
    -------
    clear : In(1)
        Start a new sample (position 0, no error).
    i : In(stream.Signature(8))
        Code bytes.  A symbol byte is taken and written in one clock; a run of
        ``n`` zeros takes one clock for its byte and then ``n`` clocks of
        writes, during which no byte is taken.
    write : In(1)
        Perform the writes (low: only check the code).
    finish : In(1)
        The code is complete: write zeros up to pixel ``inputs - 1`` (one per
        clock); ``finished`` rises when done (or at once after an error).
    finished : Out(1)
    error : Out(1)
        The code is invalid: a reserved byte, a symbol wider than
        ``symbol_bits``, more than ``inputs`` pixels, or a run cut short.
    w_en, w_beat, w_lane, w_data : Out
        Pixel write (the pixel byte is ``symbol << (8 - symbol_bits)``).
    """

    def __init__(self, inputs, lanes, symbol_bits):
        self.inputs = operator.index(inputs)
        self.lanes = operator.index(lanes)
        self.symbol_bits = operator.index(symbol_bits)
        if not 1 <= self.symbol_bits <= 8:
            raise ValueError(f"symbol_bits must be in 1..8, not {symbol_bits}")
        beats = -(-self.inputs // self.lanes)
        super().__init__({
            "clear": In(1),
            "i": In(stream.Signature(8)),
            "write": In(1),
            "finish": In(1),
            "finished": Out(1),
            "error": Out(1),
            "w_en": Out(1),
            "w_beat": Out(range(max(beats, 2))),
            "w_lane": Out(range(max(self.lanes, 2))),
            "w_data": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        n_in, sb = self.inputs, self.symbol_bits
        pos = Signal(range(n_in + 1), name="pix_pos")
        beat = Signal.like(self.w_beat, name="pix_beat")
        lane = Signal.like(self.w_lane, name="pix_lane")
        run = Signal(range(P.MAX_RUN_8 + 1), name="pix_run")
        esc = Signal(name="pix_esc")            # 8-bit symbols: a run count follows
        err = Signal(name="pix_err")
        m.d.comb += [self.w_beat.eq(beat), self.w_lane.eq(lane)]

        advance = Signal(name="pix_advance")
        with m.If(advance):
            m.d.sync += pos.eq(pos + 1)
            with m.If(lane == self.lanes - 1):
                m.d.sync += [lane.eq(0), beat.eq(beat + 1)]
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
        m.d.comb += [self.w_en.eq(advance & self.write & ~err),
                     self.error.eq(err | (self.finish & esc)),
                     self.finished.eq((run == 0) & ((pos == n_in) | self.error))]

        b = self.i.payload
        space = n_in - pos                      # pixels still allowed
        with m.If(self.clear):
            m.d.sync += [pos.eq(0), beat.eq(0), lane.eq(0), run.eq(0), esc.eq(0), err.eq(0)]
        with m.Elif(run != 0):
            m.d.comb += [advance.eq(1), self.w_data.eq(0)]
            m.d.sync += run.eq(run - 1)
        with m.Elif(self.i.valid):
            m.d.comb += self.i.ready.eq(1)
            if sb <= 7:
                with m.If(b < 0x80):
                    with m.If((b >> sb != 0) | (pos == n_in)):
                        m.d.sync += err.eq(1)
                    with m.Else():
                        m.d.comb += [advance.eq(~err), self.w_data.eq(b << (8 - sb))]
                with m.Elif(b <= 0x80 + P.MAX_RUN_7 - 1):
                    n = b - 0x7F
                    with m.If(n > space):
                        m.d.sync += err.eq(1)
                    with m.Elif(~err):
                        m.d.sync += run.eq(n)
                with m.Else():
                    m.d.sync += err.eq(1)
            else:
                with m.If(esc):
                    m.d.sync += esc.eq(0)
                    with m.If(b + 1 > space):
                        m.d.sync += err.eq(1)
                    with m.Elif(~err):
                        m.d.sync += run.eq(b + 1)
                with m.Elif(b == P.RUN_8):
                    m.d.sync += esc.eq(1)
                with m.Elif(pos == n_in):
                    m.d.sync += err.eq(1)
                with m.Else():
                    m.d.comb += [advance.eq(~err), self.w_data.eq(b ^ 0x80)]
        with m.Elif(self.finish & ~self.error & (pos != n_in)):
            m.d.comb += [advance.eq(1), self.w_data.eq(0)]
        return m


class InputBuffer(wiring.Component):
    """Slots of decoded samples, written pixel by pixel, read beat by beat
    into the network.

    Parameters
    ----------
    slots : int
        Number of samples it holds (a power of two): the host's credit.
    beats : int
        Beats per sample (``layers[0] // z[0]``).
    beat_layout : Layout
        The network's input beat (``Network.beat_layout``).
    inputs : int
        Pixels the host sends per sample; the pixels after them stay zero
        (never written).

    Members
    -------
    w_en, w_beat, w_lane, w_data : In
        Write a pixel into the open slot (the one after the last committed).
        Pixels come in order, every one of ``0 .. inputs-1`` once per sample;
        they are gathered into a beat register and a beat is written to the
        block RAM when its last lane (or the last input pixel) arrives, so the
        RAM needs one plain write port (no byte enables).  Only while
        ``free`` is nonzero.
    w_clear : In(1)
        A new sample starts: clear the beat register (of a sample cut short).
    commit : In(1)
        Close the open slot with ``c_label``, ``c_lr``, ``c_update``: it will
        be fed to the network once, after the slots committed before it.
    free : Out
        Slots neither committed nor being fed (the open slot included).
    consumed : Out(IB)
        Samples fed completely, modulo ``INDEX_MOD`` (the host's credit limit
        is ``consumed + slots``).
    empty : Out(1)
        No committed sample is waiting or being fed.
    hold : In(1)
        Do not start feeding another sample (parameter access).
    o : Out(stream.Signature(beat_layout))
        Beats to the network, one per clock from a block RAM read port
        (latency one clock, hidden by reading ahead).
    """

    def __init__(self, slots, beats, beat_layout, inputs):
        self.slots = operator.index(slots)
        self.inputs = operator.index(inputs)
        if self.slots < 1 or self.slots & (self.slots - 1):
            raise ValueError(f"slots must be a power of two, not {slots}")
        self.beats = operator.index(beats)
        self.stride = _pow2(self.beats)
        self.beat_layout = beat_layout
        pix = beat_layout["pixels"].shape
        self.lanes = pix.length
        fields = dict((name, f.shape) for name, f in beat_layout)
        super().__init__({
            "w_en": In(1), "w_beat": In(range(max(self.stride, 2))),
            "w_lane": In(range(max(self.lanes, 2))), "w_data": In(8), "w_clear": In(1),
            "commit": In(1), "c_label": In(fields["label"]), "c_lr": In(4), "c_update": In(1),
            "free": Out(range(self.slots + 1)),
            "consumed": Out(IB),
            "empty": Out(1),
            "hold": In(1),
            "o": Out(stream.Signature(beat_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        K, lanes = self.slots, self.lanes
        sbits, bbits = _bits(K), _bits(self.stride)
        mem = Memory(shape=unsigned(8 * lanes), depth=K * self.stride, init=[])
        m.submodules.slots = mem
        wp = mem.write_port()
        rp = mem.read_port()
        wr = Signal(sbits + 1, name="buf_wr")        # committed samples (mod 2K)
        rel = Signal(sbits + 1, name="buf_release")  # released samples (fed completely)
        fetch = Signal(sbits + 1, name="buf_fetch")  # samples whose beats were all read
        fbeat = Signal(range(max(self.beats, 2)), name="buf_fetch_beat")
        labels = Array(Signal.like(self.c_label, name=f"buf_label{i}") for i in range(K))
        lrs = Array(Signal(4, name=f"buf_lr{i}") for i in range(K))
        upds = Array(Signal(name=f"buf_update{i}") for i in range(K))

        used = Signal(sbits + 1, name="buf_used")
        m.d.comb += [used.eq(wr - rel), self.free.eq(K - used), self.empty.eq(wr == rel)]

        # write side: pixels gather in a beat register
        wslot = wr[:sbits] if sbits else Const(0, 0)
        gather = Signal(8 * lanes, name="buf_gather")
        merged = Signal(8 * lanes, name="buf_gather_next")
        m.d.comb += merged.eq(gather)
        for i in range(lanes):
            with m.If(self.w_lane == i):
                m.d.comb += merged.word_select(i, 8).eq(self.w_data)
        last_beat, last_lane = divmod(self.inputs - 1, lanes)
        beat_done = (self.w_lane == lanes - 1) | \
            ((self.w_beat == last_beat) & (self.w_lane == last_lane))
        write = self.w_en & (used != K)
        m.d.comb += [
            wp.addr.eq(Cat(self.w_beat[:bbits] if bbits else Const(0, 0), wslot)),
            wp.data.eq(merged),
            wp.en.eq(write & beat_done),
        ]
        with m.If(write):
            # a finished beat leaves the register clear: lanes past the last
            # input pixel are written as zeros
            m.d.sync += gather.eq(Mux(beat_done, 0, merged))
        with m.If(self.w_clear):
            m.d.sync += gather.eq(0)
        with m.If(self.commit & (used != K)):
            m.d.sync += wr.eq(wr + 1)
            m.d.sync += [labels[wslot].eq(self.c_label), lrs[wslot].eq(self.c_lr),
                         upds[wslot].eq(self.c_update)]

        # read side: the read port's output register holds the offered beat
        held = Signal(name="buf_held")            # rp.data is a beat on offer
        held_last = Signal(name="buf_held_last")
        out_label = Signal.like(self.c_label, name="buf_out_label")
        out_lr = Signal(4, name="buf_out_lr")
        out_upd = Signal(name="buf_out_update")
        advance = ~held | self.o.ready
        fslot = fetch[:sbits] if sbits else Const(0, 0)
        can_fetch = (fetch != wr) & ~(self.hold & (fbeat == 0))
        m.d.comb += [
            rp.addr.eq(Cat(fbeat[:bbits] if bbits else Const(0, 0), fslot)),
            rp.en.eq(advance),
            self.o.valid.eq(held),
            self.o.payload.pixels.eq(rp.data),
            self.o.payload.label.eq(out_label),
            self.o.payload.lr.eq(out_lr),
            self.o.payload.update.eq(out_upd),
        ]
        with m.If(advance):
            m.d.sync += held.eq(can_fetch)
            with m.If(can_fetch):
                m.d.sync += [out_label.eq(labels[fslot]), out_lr.eq(lrs[fslot]),
                             out_upd.eq(upds[fslot]), held_last.eq(fbeat == self.beats - 1)]
                with m.If(fbeat == self.beats - 1):
                    m.d.sync += [fbeat.eq(0), fetch.eq(fetch + 1)]
                with m.Else():
                    m.d.sync += fbeat.eq(fbeat + 1)
        with m.If(self.o.valid & self.o.ready & held_last):
            m.d.sync += [rel.eq(rel + 1), self.consumed.eq(self.consumed + 1)]
        return m


class PredictionRing(wiring.Component):
    """Predictions of the network kept until the host acknowledges them.

    Parameters
    ----------
    depth : int
        Entries (a power of two); when all hold unacknowledged predictions the
        network's output stalls (the network then stalls as a whole: nothing is
        lost).
    result_layout : Layout
        The network's result (``Network.result_layout``).

    Members
    -------
    i : In(stream.Signature(result_layout))
        From the network; only ``prediction`` is kept.
    produced : Out(IB)
        Predictions received so far, modulo ``INDEX_MOD`` (prediction ``n``
        belongs to the ``n``-th sample fed to the network).
    tail : Out(IB)
        Predictions acknowledged so far.
    ack, ack_en : In
        The host's cumulative acknowledgement; ignored unless it lies between
        ``tail`` and ``produced``.
    r_index : In(IB)
        Prediction to read; ``r_data`` one clock later.
    r_data : Out(8)
    full : Out(1)
    """

    def __init__(self, depth, result_layout):
        self.depth = operator.index(depth)
        if self.depth < 2 or self.depth & (self.depth - 1):
            raise ValueError(f"the prediction ring depth must be a power of two >= 2, not {depth}")
        if self.depth > P.INDEX_MOD // 4:
            raise ValueError(f"the prediction ring holds at most {P.INDEX_MOD // 4} entries "
                             "(indices are sent modulo INDEX_MOD)")
        super().__init__({
            "i": In(stream.Signature(result_layout)),
            "produced": Out(IB), "tail": Out(IB),
            "ack": In(IB), "ack_en": In(1),
            "r_index": In(IB), "r_data": Out(8),
            "full": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bits = _bits(self.depth)
        mem = Memory(shape=unsigned(8), depth=self.depth, init=[])
        m.submodules.ring = mem
        wp, rp = mem.write_port(), mem.read_port()
        outstanding = Signal(IB, name="ring_outstanding")
        m.d.comb += [
            outstanding.eq(self.produced - self.tail),
            self.full.eq(outstanding == self.depth),
            self.i.ready.eq(~self.full),
            wp.addr.eq(self.produced[:bits]), wp.data.eq(self.i.payload.prediction),
            wp.en.eq(self.i.valid & self.i.ready),
            rp.addr.eq(self.r_index[:bits]), self.r_data.eq(rp.data),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += self.produced.eq(self.produced + 1)
        step = Signal(IB, name="ring_ack_step")
        m.d.comb += step.eq(self.ack - self.tail)
        with m.If(self.ack_en & (step <= outstanding)):
            m.d.sync += self.tail.eq(self.ack)
        return m


class CounterBank(wiring.Component):
    """Event counters kept in a small RAM, one adder for all of them.

    Every event has a small pending counter; a sequencer visits the counters
    in turn (three clocks each: read the low half, write it back plus the
    pending count and read the high half, write that plus the carry), so the
    RAM lags the events by at most one round of ``3 * n`` clocks.  On a small
    FPGA this is a fraction of ``n`` full-width counters and the wide
    multiplexer a reader would need to pick one of them.

    Parameters
    ----------
    n : int
        Number of counters (32 bits each, kept as two 16-bit halves).
    burst : sequence of bool, optional
        Per counter: may its event come in every clock (``True``, the
        default) or at most a few times per round (a frame or a byte:
        ``False``, a 3-bit pending counter is enough)?

    Members
    -------
    events : In(n)
        One pulse per counter per clock (several may be high at once).
    r_ready : Out(1)
        The RAM's read port is free this clock (the sequencer is about to
        start a visit).
    r_en, r_index, r_half : In
        Read half ``r_half`` of counter ``r_index`` (only when ``r_ready``);
        ``r_data`` holds it in the next clock.
    r_data : Out(16)
    """

    #: Bits of a pending counter: a round of ``3 * n`` clocks plus the reads
    #: a reader slips in (two per STATUS field) must not overflow it.
    PEND_BITS = 6

    def __init__(self, n, burst=None):
        self.n = operator.index(n)
        if not 1 <= self.n <= ((1 << self.PEND_BITS) - 8) // 3:
            raise ValueError(f"a counter bank holds 1..{((1 << self.PEND_BITS) - 8) // 3} "
                             "counters")
        self.burst = [True] * self.n if burst is None else [bool(x) for x in burst]
        if len(self.burst) != self.n:
            raise ValueError("one burst flag per counter")
        super().__init__({"events": In(self.n), "r_ready": Out(1), "r_en": In(1),
                          "r_index": In(range(max(self.n, 2))), "r_half": In(1),
                          "r_data": Out(16)})

    def elaborate(self, platform):
        m = Module()
        n = self.n
        mem = Memory(shape=unsigned(16), depth=2 * n, init=[])
        m.submodules.counters = mem
        wp, rp = mem.write_port(), mem.read_port()
        pend = [Signal(self.PEND_BITS if self.burst[i] else 3, name=f"cnt_pend{i}")
                for i in range(n)]
        idx = Signal(range(max(n, 2)), name="cnt_index")
        carry = Signal(name="cnt_carry")
        visiting = Array(pend)[idx]
        clear = Signal(name="cnt_clear")
        # one adder: low half + pending count, then high half + carry
        addend = Signal(self.PEND_BITS, name="cnt_addend")
        total = Signal(17, name="cnt_sum")
        m.d.comb += [total.eq(rp.data + addend), wp.data.eq(total[:16])]
        m.d.comb += self.r_data.eq(rp.data)
        for i in range(n):
            ev = self.events[i]
            with m.If(clear & (idx == i)):
                m.d.sync += pend[i].eq(ev)
            with m.Else():
                m.d.sync += pend[i].eq(pend[i] + ev)
        with m.FSM(name="cnt_seq"):
            with m.State("READ_LO"):
                m.d.comb += self.r_ready.eq(1)
                with m.If(self.r_en):
                    m.d.comb += rp.addr.eq(Cat(self.r_half, self.r_index))
                with m.Else():
                    m.d.comb += rp.addr.eq(Cat(Const(0, 1), idx))
                    m.next = "WRITE_LO"
            with m.State("WRITE_LO"):
                m.d.comb += [addend.eq(visiting), wp.addr.eq(Cat(Const(0, 1), idx)),
                             wp.en.eq(1), clear.eq(1), rp.addr.eq(Cat(Const(1, 1), idx))]
                m.d.sync += carry.eq(total[16])
                m.next = "WRITE_HI"
            with m.State("WRITE_HI"):
                m.d.comb += [addend.eq(carry), wp.addr.eq(Cat(Const(1, 1), idx)), wp.en.eq(1)]
                m.d.sync += idx.eq(Mux(idx == n - 1, 0, idx + 1))
                m.next = "READ_LO"
        return m


class LinkEngine(wiring.Component):
    """The board side of the link protocol around one network.

    Parameters
    ----------
    net : Network
        The network it drives (only its public interface is used: the
        signature, ``cfg``, ``schedule``, ``beats_per_sample``,
        ``drain_samples()``, ``clocks_per_sample``, ``geometry``).
    slots : int
        Input buffer slots (power of two): how many samples the host may
        send ahead of the network.
    pred_ring : int
        Prediction ring entries (power of two).
    clock_hz, divisor : int
        Reported in INFO (the host prints the baud rate and rates).
    rx_fifo : int
        Receive FIFO bytes: absorbs the clocks a zero run takes to write.

    Members
    -------
    rx : In(stream.Signature(8))
        Received bytes (from the UART receiver).
    tx : Out(stream.Signature(8))
        Bytes to send (to the UART transmitter).
    rx_overflow, rx_framing : In(1)
        One-clock pulses from the UART receiver, counted.
    net : In(net.signature)
        To the network (connect with ``wiring.connect``).
    idle : Out(1)
        Nothing to do until a byte arrives: no frame being received or sent,
        no sample buffered, the network stalled (the simulated board's
        harness sleeps then).
    activity, error, running : Out(1)
        For LEDs: a frame was received good, bad; the network ran this clock.

    Latency: a sample is fed to the network from the clock after its frame's
    CRC checks and its trailing pixels are written (``inputs`` clocks at most);
    its REPORT starts when the previous reply has been sent.  Throughput is
    the line's (bytes of frames, ``10 * divisor`` clocks each): the engine
    decodes one code byte per clock and feeds one beat per clock.
    """

    def __init__(self, net, slots=4, pred_ring=64, clock_hz=0, divisor=0, rx_fifo=None):
        cfg = net.cfg
        self.net_sig = net.signature
        self.cfg = cfg
        self.slots = operator.index(slots)
        self.pred_ring = operator.index(pred_ring)
        self.beats = net.beats_per_sample
        self.beat_layout = net.beat_layout
        self.result_layout = net.result_layout
        self.width = cfg.fmt.width
        self.sbits = P.symbol_bits(cfg.fmt)
        self.z = [cfg.z[j] for j in range(cfg.junctions)]
        self.q = [net.geometry.q[j + 1] for j in range(cfg.junctions)]
        self.totals = [(cfg.edges[j], cfg.layers[j + 1]) for j in range(cfg.junctions)]
        if cfg.classes > 256:
            raise ValueError("the link carries predictions as bytes: at most 256 classes")
        sched = net.schedule.name
        self.info = P.info_payload(cfg, sched, net.clocks_per_sample, net.drain_samples(),
                                   self.slots, self.pred_ring, clock_hz, divisor)
        # a sample without any zero: 3 header bytes and at most two code bytes
        # per pixel (8-bit symbols)
        self.max_payload = max(3 + 2 * cfg.inputs, 6 + 2 * P.MAX_WRITE)
        if rx_fifo is None:
            # a run of zeros writes a pixel per clock while bytes keep arriving
            per_byte = 10 * max(divisor, 2)
            rx_fifo = max(16, _pow2(cfg.inputs // per_byte + 16))
        self.rx_fifo = operator.index(rx_fifo)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "rx_overflow": In(1), "rx_framing": In(1),
            "net": In(self.net_sig),
            "idle": Out(1),
            "activity": Out(1), "error": Out(1), "running": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        J = cfg.junctions
        net = self.net

        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=self.rx_fifo)
        m.submodules.deframer = deframer = Deframer()
        m.submodules.receiver = rcv = FrameReceiver(self.max_payload)
        m.submodules.decoder = dec = PixelDecoder(cfg.inputs, self.beat_layout["pixels"].shape.length,
                                                  self.sbits)
        m.submodules.buffer = buf = InputBuffer(self.slots, self.beats, self.beat_layout,
                                                cfg.inputs)
        m.submodules.ring = ring = PredictionRing(self.pred_ring, self.result_layout)
        max_reply = max(len(self.info), 6 + P.MAX_PREDS, 2 * P.MAX_READ,
                        4 * len(P.STATUS_FIELDS))
        m.submodules.sender = snd = FrameSender(max_reply)
        m.submodules.enframer = enf = Enframer()
        wiring.connect(m, wiring.flipped(self.rx), fifo.w_stream)
        wiring.connect(m, fifo.r_stream, deframer.i)
        wiring.connect(m, deframer.o, rcv.i)
        wiring.connect(m, snd.o, enf.i)
        wiring.connect(m, enf.o, wiring.flipped(self.tx))
        wiring.connect(m, buf.o, wiring.flipped(net.i))
        wiring.connect(m, wiring.flipped(net.o), ring.i)
        m.d.comb += [buf.w_beat.eq(dec.w_beat), buf.w_lane.eq(dec.w_lane),
                     buf.w_data.eq(dec.w_data), buf.w_en.eq(dec.w_en), buf.w_clear.eq(dec.clear)]

        hdr = rcv.header
        # -- network state ------------------------------------------------------------------
        clk_prev = Signal(8, name="net_clocks_prev")
        m.d.sync += clk_prev.eq(net.clocks[:8])
        ran = Signal(name="net_ran")
        m.d.comb += ran.eq(net.clocks[:8] != clk_prev)
        still = Signal(2, name="net_still")       # clocks the network has not run
        with m.If(ran):
            m.d.sync += still.eq(0)
        with m.Elif(still != 3):
            m.d.sync += still.eq(still + 1)
        quiet = Signal(name="net_quiet")
        m.d.comb += quiet.eq(buf.empty & (still == 3) & ~net.o.valid)
        out_stall = net.o.valid & ~net.o.ready

        # -- counters -------------------------------------------------------------------------
        good_pulse, bad_pulse = Signal(name="frame_good"), Signal(name="frame_bad")
        m.d.comb += [good_pulse.eq(rcv.done.valid & rcv.done.ready & rcv.done.payload),
                     bad_pulse.eq(rcv.done.valid & rcv.done.ready & ~rcv.done.payload)]
        ev = {name: Signal(name=f"ev_{name}") for name, _ in P.STATUS_FIELDS}
        m.d.comb += [ev["uptime_clocks"].eq(1), ev["network_clocks"].eq(ran),
                     ev["frames_good"].eq(good_pulse), ev["frames_bad"].eq(bad_pulse),
                     ev["samples_done"].eq(net.o.valid & net.o.ready),
                     ev["rx_overflow"].eq(self.rx_overflow),
                     ev["rx_framing"].eq(self.rx_framing),
                     ev["input_stalls"].eq(~ran & ~out_stall),
                     ev["output_stalls"].eq(~ran & out_stall)]
        # events that come at most once per received byte or frame need only
        # a small pending counter (a round of the bank is 45 clocks, a byte
        # at least 10 * divisor)
        rare = {"frames_good", "frames_bad", "samples_accepted", "duplicates", "out_of_order",
                "no_credit", "bad_pixels", "busy", "rx_overflow", "rx_framing"}
        m.submodules.counters = bank = CounterBank(
            len(P.STATUS_FIELDS), [name not in rare for name, _ in P.STATUS_FIELDS])
        m.d.comb += bank.events.eq(Cat(ev[name] for name, _ in P.STATUS_FIELDS))

        # -- request registers ---------------------------------------------------------------
        # Style for a small FPGA: every register has one next-value expression
        # and comb signals are driven unconditionally (only enables and
        # valids depend on the state), so no multiplexer chains appear.
        b = rcv.o.payload
        expected = Signal(IB, name="next_index")
        s_index = Signal(IB, name="smp_index")
        s_label = Signal.like(buf.c_label, name="smp_label")
        s_ctl = Signal(8, name="smp_ctl")
        s_apply = Signal(name="smp_apply")
        m.d.comb += [buf.c_label.eq(s_label), buf.c_lr.eq(s_ctl[:4]), buf.c_update.eq(s_ctl[4]),
                     # the decoder writes (runs of zeros too, which go on while
                     # no byte is there) only for a sample that will be applied
                     dec.write.eq(s_apply), dec.i.payload.eq(b)]
        behind = Signal(IB, name="smp_behind")        # 0: the expected index
        m.d.comb += behind.eq(expected - s_index)
        aw = max(1, (max(max(t) for t in self.totals) + P.MAX_READ).bit_length())
        rq_j = Signal(8, name="req_junction")
        rq_bias = Signal(8, name="req_bias")
        rq_start = Signal(aw, name="req_start")
        rq_high = Signal(name="req_start_high")     # start beyond any parameter
        rq_count = Signal(8, name="req_count")
        stage = Memory(shape=unsigned(16), depth=P.MAX_WRITE, init=[])
        m.submodules.write_stage = stage
        st_wp, st_rp = stage.write_port(), stage.read_port()
        lo_byte = Signal(8, name="req_lo_byte")
        st_idx = Signal(range(P.MAX_WRITE + 1), name="req_value_index")
        m.d.comb += [st_wp.addr.eq(st_idx), st_wp.data.eq(Cat(lo_byte, b))]

        # parameter iterator: (junction, bias, row, lane) of element `it_pos`
        it_row = Signal(len(net.ro_row), name="it_row")
        it_lane = Signal(range(max(max(self.z + self.q), 2)), name="it_lane")
        it_pos = Signal(aw, name="it_pos")
        it_step = Signal(name="it_step")
        it_reset = Signal(name="it_reset")
        widths = Array(Const(w, len(it_lane)) for z, q in zip(self.z, self.q) for w in (z, q))
        totals = Array(Const(t, aw) for pair in self.totals for t in pair)
        sel = Signal(range(2 * J + 1), name="req_sel")
        m.d.comb += sel.eq(Cat(rq_bias[0], rq_j[:max(1, _bits(J))]))
        last_lane = Signal.like(it_lane, name="req_last_lane")
        total_sel = Signal(aw, name="req_total")
        m.d.comb += [last_lane.eq(widths[sel] - 1), total_sel.eq(totals[sel])]
        with m.If(it_reset):
            m.d.sync += [it_row.eq(0), it_lane.eq(0), it_pos.eq(0)]
        with m.Elif(it_step):
            m.d.sync += [it_pos.eq(it_pos + 1),
                         it_lane.eq(Mux(it_lane == last_lane, 0, it_lane + 1)),
                         it_row.eq(it_row + (it_lane == last_lane))]
        ld_en = Signal(name="ld_en")
        m.d.comb += [net.ro_junction.eq(rq_j), net.ro_bias.eq(rq_bias[0]),
                     net.ro_row.eq(it_row), net.ro_lane.eq(it_lane),
                     net.ld_en.eq(ld_en), net.ld_data.eq(st_rp.data[:self.width])]
        req_ok = Signal(name="req_ok")
        m.d.comb += req_ok.eq((rq_j < J) & (rq_bias < 2) & (rq_count != 0) & ~rq_high &
                              (rq_start + rq_count <= total_sel))

        # -- predictions: the send pointer -----------------------------------------------------
        pred_sent = Signal(IB, name="pred_sent")
        outstanding = Signal(IB, name="pred_unsent")
        m.d.comb += [ring.ack.eq(hdr.ack), outstanding.eq(ring.produced - pred_sent)]
        n_preds = Signal(range(P.MAX_PREDS + 1), name="rep_n_next")
        m.d.comb += n_preds.eq(Mux(outstanding > P.MAX_PREDS, P.MAX_PREDS, outstanding))
        # An acknowledgement may pass pred_sent (after a POLL rewound it): the
        # next REPORTs then start below the ring's tail, and the host takes
        # only what lies at or above its acknowledgement, which the ring
        # holds.  pred_sent catches up by up to MAX_PREDS per REPORT.
        ps_advance = Signal(name="pred_sent_advance")   # a REPORT takes n_preds
        ps_rewind = Signal(name="pred_sent_rewind")     # POLL: go back to the acknowledgement
        with m.If(ps_rewind):
            m.d.sync += pred_sent.eq(ring.tail)
        with m.Elif(ps_advance):
            m.d.sync += pred_sent.eq(pred_sent + n_preds)

        # -- the reply generator ---------------------------------------------------------------
        K_INFO, K_REPORT, K_PARAMS, K_STATUS = 0, 1, 2, 3
        job = Signal(2, name="reply_kind")
        job_seq = Signal(8, name="reply_seq")
        job_start = Signal(name="reply_start")       # INFO, STATUS or PARAMS: next_job
        result = Signal(8, name="reply_result")
        next_result = Signal(8, name="reply_result_next")
        next_job = Signal(2, name="reply_kind_next")
        # REPORTs are coalesced: a frame that wants one while another reply is
        # going out only marks it pending (latest seq, most important result)
        report = Signal(name="report_request")
        pend = Signal(name="report_pending")
        pend_result = Signal(8, name="report_pending_result")
        pend_seq = Signal(8, name="report_pending_seq")
        pend_rank = Signal(4, name="report_pending_rank")
        rank = Signal(4, name="report_rank")
        with m.Switch(next_result):
            for i, code in enumerate(P.RESULT_PRIORITY):
                with m.Case(code):
                    m.d.comb += rank.eq(i)
        take_pending = Signal(name="report_take")
        with m.If(report):
            m.d.sync += [pend.eq(1), pend_seq.eq(hdr.seq)]
            with m.If(~pend | take_pending | (rank >= pend_rank)):
                m.d.sync += [pend_result.eq(next_result), pend_rank.eq(rank)]
        with m.Elif(take_pending):
            m.d.sync += pend.eq(0)
        with m.If(job_start):
            m.d.sync += [job.eq(next_job), job_seq.eq(hdr.seq)]
        with m.Elif(take_pending):
            m.d.sync += [job.eq(K_REPORT), job_seq.eq(pend_seq), result.eq(pend_result)]
        holding = Signal(name="param_hold")          # parameter access owns the read-out
        hold_set, hold_clear = Signal(name="param_hold_set"), Signal(name="param_hold_clear")
        with m.If(hold_set):
            m.d.sync += holding.eq(1)
        with m.Elif(hold_clear):
            m.d.sync += holding.eq(0)
        m.d.comb += buf.hold.eq(holding)
        rep_next = Signal(IB, name="rep_next")
        rep_limit = Signal(IB, name="rep_limit")
        rep_prod = Signal(IB, name="rep_produced")
        rep_n = Signal(range(P.MAX_PREDS + 1), name="rep_n")
        ring_ptr = Signal(IB, name="rep_ring_ptr")   # prediction of the next REPORT byte
        max_len = max(len(self.info), 6 + P.MAX_PREDS, 2 * P.MAX_READ,
                      4 * len(P.STATUS_FIELDS))
        k = Signal(range(max_len + 1), name="reply_byte")   # payload byte index
        byte = Signal(8, name="reply_data")
        latch = Signal(32, name="reply_latch")
        info_rom = Memory(shape=unsigned(8), depth=len(self.info), init=list(self.info))
        m.submodules.info_rom = info_rom
        info_rp = info_rom.read_port()
        m.d.comb += [info_rp.addr.eq(k), ring.r_index.eq(ring_ptr)]
        # STATUS: four bytes per counter, read from the bank at a field's first byte
        n_status = 4 * len(P.STATUS_FIELDS)
        assert all(n == 4 for _, n in P.STATUS_FIELDS)
        length = Signal(range(max_len + 1), name="reply_length")
        bank_hi = Signal(name="reply_bank_hi")
        m.d.comb += [bank.r_index.eq(k[2:]), bank.r_half.eq(bank_hi)]
        snap = Signal(name="reply_snap")
        with m.If(snap):
            m.d.sync += [rep_next.eq(expected), rep_limit.eq(buf.consumed + self.slots),
                         rep_prod.eq(ring.produced), ring_ptr.eq(pred_sent),
                         rep_n.eq(Mux(job == K_REPORT, n_preds, 0)),
                         length.eq(Array([Const(len(self.info), len(length)), 6 + n_preds,
                                          2 * rq_count, Const(n_status, len(length))])[job])]
        # payload bytes
        # the base (index of the first prediction) is the ring pointer, which
        # only moves once the predictions themselves go out (bytes 6 on)
        rep_bytes = Array([result, rep_next, rep_limit, rep_prod, ring_ptr, rep_n])
        with m.Switch(job):
            with m.Case(K_INFO):
                m.d.comb += byte.eq(info_rp.data)
            with m.Case(K_REPORT):
                m.d.comb += byte.eq(Mux(k < 6, rep_bytes[k[:3]], ring.r_data))
            with m.Case(K_PARAMS):
                # the code's low bits; the host sign-extends
                m.d.comb += byte.eq(latch.word_select(k[0], 8))
            with m.Case(K_STATUS):
                m.d.comb += byte.eq(latch.word_select(k[:2], 8))
        m.d.comb += [snd.cmd.payload.type.eq(Array([Const(P.INFO, 8), Const(P.REPORT, 8),
                                                    Const(P.PARAMS, 8),
                                                    Const(P.STATUS_REPLY, 8)])[job]),
                     snd.cmd.payload.seq.eq(job_seq), snd.cmd.payload.length.eq(length),
                     snd.i.payload.eq(byte)]
        reply_fsm_idle = Signal(name="reply_fsm_idle")
        with m.FSM(name="reply"):
            with m.State("IDLE"):
                m.d.comb += reply_fsm_idle.eq(1)
                with m.If(job_start):
                    m.next = "SNAP"
                with m.Elif(pend & ~report):
                    m.d.comb += take_pending.eq(1)
                    m.next = "SNAP"
            with m.State("SNAP"):
                m.d.comb += [snap.eq(1), ps_advance.eq(job == K_REPORT)]
                m.d.sync += k.eq(0)
                m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += snd.cmd.valid.eq(1)
                with m.If(snd.cmd.ready):
                    m.next = "PREP"
            with m.State("PREP"):
                # addresses for byte k are set; sources with a latch load it
                with m.If((job == K_STATUS) & (k[:2] == 0)):
                    m.next = "STATUS_LO"
                with m.Else():
                    m.next = "FETCH"
            with m.State("STATUS_LO"):
                m.d.comb += bank.r_en.eq(bank.r_ready)
                with m.If(bank.r_ready):
                    m.next = "STATUS_LO_DATA"
            with m.State("STATUS_LO_DATA"):
                m.d.sync += latch[:16].eq(bank.r_data)
                m.next = "STATUS_HI"
            with m.State("STATUS_HI"):
                m.d.comb += [bank.r_en.eq(bank.r_ready), bank_hi.eq(1)]
                with m.If(bank.r_ready):
                    m.next = "STATUS_HI_DATA"
            with m.State("STATUS_HI_DATA"):
                m.d.sync += latch[16:].eq(bank.r_data)
                m.next = "EMIT"
            with m.State("FETCH"):
                with m.If((job == K_PARAMS) & ~k[0]):
                    m.d.sync += latch.eq(net.ro_data.as_unsigned())
                m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += snd.i.valid.eq(1)
                with m.If(snd.i.ready):
                    m.d.sync += k.eq(k + 1)
                    with m.If((job == K_REPORT) & (k >= 6)):
                        m.d.sync += ring_ptr.eq(ring_ptr + 1)
                    with m.If((job == K_PARAMS) & k[0]):
                        m.d.comb += it_step.eq(1)
                    with m.If(k == length - 1):
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "PREP"
            with m.State("DRAIN"):
                # the sender is done after the CRC
                with m.If(~snd.busy):
                    m.d.comb += hold_clear.eq(1)
                    m.next = "IDLE"

        # -- the request parser ------------------------------------------------------------------
        ftype = hdr.type
        pos = rcv.pos
        is_sample = ftype == P.SAMPLE
        is_param = (ftype == P.READ) | (ftype == P.WRITE)
        parser_idle = Signal(name="parser_idle")
        # a header or parameter byte: taken whenever offered in FRAME (only
        # pixel bytes wait for the decoder); no path through the ready signals
        take = parser_idle & rcv.o.valid
        # payload fields, by position (sample header; READ/WRITE header and values)
        with m.If(take & is_sample):
            with m.Switch(pos):
                with m.Case(0):
                    m.d.sync += s_index.eq(b)
                with m.Case(1):
                    m.d.sync += s_label.eq(b)
                with m.Case(2):
                    m.d.sync += s_ctl.eq(b)
        with m.If(take & is_param):
            with m.Switch(pos):
                with m.Case(0):
                    m.d.sync += rq_j.eq(b)
                with m.Case(1):
                    m.d.sync += rq_bias.eq(b)
                with m.Case(2):
                    m.d.sync += [rq_start[:8].eq(b), rq_high.eq(0)]
                for i in (1, 2):
                    with m.Case(2 + i):
                        if aw > 8 * i:
                            m.d.sync += rq_start[8 * i:].eq(b)
                        if aw < 8 * (i + 1):
                            with m.If(b >> max(0, aw - 8 * i) != 0):
                                m.d.sync += rq_high.eq(1)
                with m.Case(5):
                    m.d.sync += [rq_count.eq(b), st_idx.eq(0)]
                with m.Default():
                    with m.If(~pos[0]):
                        m.d.sync += lo_byte.eq(b)
                    with m.Else():
                        m.d.comb += st_wp.en.eq(st_idx < P.MAX_WRITE)
                        m.d.sync += st_idx.eq(st_idx + 1)
        # the sample header is complete: apply it only if it is the expected
        # one and a slot is free (decided before any pixel is written)
        with m.If(take & is_sample & (pos == 2)):
            m.d.comb += dec.clear.eq(1)
            m.d.sync += s_apply.eq((behind == 0) & (buf.free != 0))

        with m.FSM(name="link"):
            with m.State("FRAME"):
                m.d.comb += parser_idle.eq(1)
                with m.If(is_sample & (pos >= 3)):
                    m.d.comb += [dec.i.valid.eq(rcv.o.valid), rcv.o.ready.eq(dec.i.ready)]
                with m.Else():
                    m.d.comb += rcv.o.ready.eq(1)
                with m.If(rcv.done.valid):
                    # a bad frame is dropped at once; a good one keeps the
                    # receiver (and its header) until its processing is done
                    with m.If(~rcv.done.payload):
                        m.d.comb += rcv.done.ready.eq(1)
                    with m.Elif(is_sample & s_apply & (hdr.length >= 3)):
                        m.next = "FILL"
                    with m.Else():
                        m.next = "ACT"
            with m.State("FILL"):
                m.d.comb += dec.finish.eq(1)
                with m.If(dec.finished):
                    m.next = "ACT"
            with m.State("ACT"):
                m.d.comb += dec.finish.eq(1)        # keeps `error` for a cut-short run
                # what to answer
                m.d.comb += [next_job.eq(K_REPORT), next_result.eq(P.R_BAD_REQUEST)]
                ok_len = Mux(ftype == P.READ, hdr.length == 6,
                             (hdr.length == 6 + 2 * rq_count) & (rq_count <= P.MAX_WRITE))
                param_go = Signal(name="param_go")
                with m.Switch(ftype):
                    with m.Case(P.HELLO):
                        m.d.comb += next_job.eq(K_INFO)
                    with m.Case(P.STATUS):
                        m.d.comb += next_job.eq(K_STATUS)
                    with m.Case(P.POLL):
                        m.d.comb += next_result.eq(P.R_POLLED)
                    with m.Case(P.SAMPLE):
                        with m.If(hdr.length < 3):
                            m.d.comb += next_result.eq(P.R_BAD_REQUEST)
                        with m.Elif(behind == 0):
                            with m.If(~s_apply):
                                m.d.comb += next_result.eq(P.R_NO_CREDIT)
                            with m.Elif(dec.error):
                                m.d.comb += next_result.eq(P.R_BAD_PIXELS)
                            with m.Else():
                                m.d.comb += next_result.eq(P.R_ACCEPTED)
                        with m.Elif(behind[-1]):
                            m.d.comb += next_result.eq(P.R_OUT_OF_ORDER)
                        with m.Else():
                            m.d.comb += next_result.eq(P.R_DUPLICATE)
                    with m.Case(P.READ, P.WRITE):
                        with m.If(ok_len & req_ok):
                            with m.If(quiet):
                                m.d.comb += param_go.eq(1)
                            with m.Else():
                                m.d.comb += next_result.eq(P.R_BUSY)
                explicit = (ftype == P.HELLO) | (ftype == P.STATUS)
                with m.If(~explicit | reply_fsm_idle):
                    # done with this frame: the receiver may go on
                    m.d.comb += [rcv.done.ready.eq(~param_go), ring.ack_en.eq(1)]
                    m.d.sync += s_apply.eq(0)
                    with m.If(param_go):
                        m.d.comb += [it_reset.eq(1), hold_set.eq(1)]
                        m.next = "SEEK"
                    with m.Elif(explicit):
                        m.d.comb += job_start.eq(1)
                        m.next = "FRAME"
                    with m.Else():
                        m.d.comb += report.eq(1)
                        m.next = "FRAME"
                        with m.If(ftype == P.POLL):
                            m.d.comb += ps_rewind.eq(1)
                        with m.If(next_result == P.R_ACCEPTED):
                            m.d.sync += expected.eq(expected + 1)
                            m.d.comb += buf.commit.eq(1)
                        for code, name in ((P.R_ACCEPTED, "samples_accepted"),
                                           (P.R_NO_CREDIT, "no_credit"),
                                           (P.R_BAD_PIXELS, "bad_pixels"),
                                           (P.R_OUT_OF_ORDER, "out_of_order"),
                                           (P.R_DUPLICATE, "duplicates"), (P.R_BUSY, "busy")):
                            m.d.comb += ev[name].eq(next_result == code)
            with m.State("SEEK"):
                with m.If(it_pos != rq_start):
                    m.d.comb += it_step.eq(1)
                with m.Elif(ftype == P.READ):
                    with m.If(reply_fsm_idle & ~pend):
                        m.d.comb += [job_start.eq(1), next_job.eq(K_PARAMS)]
                        m.next = "READING"
                with m.Else():
                    m.next = "APPLY"
            with m.State("READING"):
                # the request registers feed the PARAMS reply: the next frame
                # waits until it is out
                with m.If(reply_fsm_idle):
                    m.d.comb += rcv.done.ready.eq(1)
                    m.next = "FRAME"
            with m.State("APPLY"):
                # staged value i is read in one clock and loaded in the next
                ap_i = Signal(8, name="apply_index")
                ap_valid = Signal(name="apply_valid")
                m.d.comb += st_rp.addr.eq(ap_i)
                m.d.sync += [ap_valid.eq(ap_i != rq_count), ap_i.eq(ap_i + (ap_i != rq_count))]
                with m.If(ap_valid):
                    m.d.comb += [ld_en.eq(1), it_step.eq(1)]
                with m.If(~ap_valid & (ap_i == rq_count)):
                    m.d.sync += ap_i.eq(0)
                    m.d.comb += [hold_clear.eq(1), report.eq(1), next_result.eq(P.R_WRITTEN),
                                 rcv.done.ready.eq(1)]
                    m.next = "FRAME"

        # -- status outputs ----------------------------------------------------------------------
        m.d.comb += [
            self.running.eq(ran),
            self.activity.eq(good_pulse),
            self.error.eq(bad_pulse),
            self.idle.eq((fifo.level == 0) & quiet & ~snd.busy & reply_fsm_idle & ~pend &
                         parser_idle & ~rcv.o.valid & ~rcv.done.valid & ~self.rx.valid),
        ]
        return m
