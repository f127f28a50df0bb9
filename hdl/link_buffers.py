"""The buffers of the link engine: sample intake, predictions, counters.

:class:`PixelDecoder` turns the pixel code of a SAMPLE frame into pixel writes
into the open slot of :class:`InputBuffer`, which feeds the
:class:`~sparse_edge.hdl.network.Network` whole beats; predictions go from the
network into :class:`PredictionRing` until the host acknowledges them;
:class:`CounterBank` keeps the STATUS counters.  The
:class:`~sparse_edge.hdl.link.LinkEngine` drives them.

The code and the index widths come from :mod:`sparse_edge.gen.protocol`.
"""

import operator

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..gen import protocol as P

__all__ = ["IB", "pow2", "addr_bits", "check_slots", "check_ring_depth", "PixelDecoder",
           "InputBuffer", "PredictionRing", "CounterBank"]

#: Index fields (sample indices, prediction counts) are this wide on the wire.
IB = (P.INDEX_MOD - 1).bit_length()


def check_slots(slots):
    """``slots`` of an :class:`InputBuffer`: a power of two (``ValueError``)."""
    n = operator.index(slots)
    if n < 1 or n & (n - 1):
        raise ValueError(f"slots must be a power of two, not {slots}")
    return n


def check_ring_depth(depth):
    """Depth of a :class:`PredictionRing`: a power of two, at least 2 and at
    most a quarter of the index space (``ValueError``)."""
    n = operator.index(depth)
    if n < 2 or n & (n - 1):
        raise ValueError(f"the prediction ring depth must be a power of two >= 2, not {depth}")
    if n > P.INDEX_MOD // 4:
        raise ValueError(f"the prediction ring holds at most {P.INDEX_MOD // 4} entries "
                         "(indices are sent modulo INDEX_MOD)")
    return n


def pow2(n):
    """The smallest power of two ``>= n`` (1 for ``n <= 1``)."""
    return 1 << max(0, (n - 1).bit_length())


def addr_bits(n):
    """Address bits of ``n`` entries (0 for ``n <= 1``)."""
    return max(0, (n - 1).bit_length())


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
        self.slots = check_slots(slots)
        self.inputs = operator.index(inputs)
        self.beats = operator.index(beats)
        self.stride = pow2(self.beats)
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
        sbits, bbits = addr_bits(K), addr_bits(self.stride)
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
        self.depth = check_ring_depth(depth)
        super().__init__({
            "i": In(stream.Signature(result_layout)),
            "produced": Out(IB), "tail": Out(IB),
            "ack": In(IB), "ack_en": In(1),
            "r_index": In(IB), "r_data": Out(8),
            "full": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bits = addr_bits(self.depth)
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
