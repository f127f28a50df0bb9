"""The frame layers of the host link (docs/boards.md), both directions.

Receive side: :class:`Deframer` (undoes the byte stuffing, marks ``SYNC``) ->
:class:`FrameReceiver` (header, length, CRC).  Transmit side:
:class:`FrameSender` (header, length, CRC) -> :class:`Enframer` (byte
stuffing).  The :class:`~sparse_edge.hdl.link.LinkEngine` sits between them.

The constants and the CRC equations come from :mod:`sparse_edge.gen.protocol`,
which the host driver uses too.
"""

import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..gen import protocol as P

__all__ = ["FRAME_BYTE", "HOST_HEADER", "DEVICE_HEADER", "crc16_next", "Deframer", "Enframer",
           "FrameReceiver", "FrameSender"]

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


#: Header of a host -> device frame, in the order of its bytes on the wire.
HOST_HEADER = data.StructLayout({"type": 8, "seq": 8, "ack": 8, "length": 16})


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


#: Header of a device -> host frame, in the order of its bytes on the wire.
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
