"""The stalls: the gated core's clock enable, its input register and its
output buffer.

:class:`StallControl` runs outside the gated core (``hdl/network.py`` wraps
the core in an enable; this block makes it): the core runs when it has its
input and room for its output, and the weight banks' read ports serve the
read-out while it is stalled.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StallControl"]


class StallControl(wiring.Component):
    """The global clock enable, the input register and the output buffer
    (outside the gated core).

    The core runs (``ce``) when it has its input (no beat needed, or one in
    the input register) and room for its output (at most one result in the
    two-entry output buffer), in the third of three clocks in which it could:
    after a stall the weight and bias read ports, which serve the read-out
    while the core is stalled (``ro_mode``), go back to the datapath's
    address and re-read it (``resumed`` low), see :class:`~.banks.WeightBanks`.

    ``ce`` is a register: whether the core may run in the next clock is
    decided from registers (the input register's and output buffer's fill,
    the core's phase), so the enable that reaches every register and memory
    port of the core starts at a flip-flop instead of at the handshakes
    (``i.valid`` and ``o.ready`` only reach registers here).  That is what the
    input register and the second output entry are for: beats wait one clock
    in the register, and a result can be formed while the previous one has
    not been read.

    Parameters
    ----------
    beat_layout, result_layout : StructLayout
        The input beat (``pixels``, ``label``, ``lr``, ``update``) and the
        output's payload (``prediction``, ``clock``, optionally ``outputs``).

    Members
    -------
    need_input : In(1)
        The core consumes a beat in this clock (if it runs): 1 after reset,
        and it changes only in enabled clocks, to ``need_next``
        (``StallControl`` keeps a register copy of it made that way).
    need_next : In(1)
        ``need_input`` of the core's next enabled clock.
    i_valid : In(1); i_ready : Out(1); i_payload : In(beat_layout)
        The input handshake.
    beat : Out(beat_layout)
        The input register, the beat the core consumes.
    o_ready : In(1); o_valid : Out(1); result : Out(result_layout)
        The output handshake and payload.
    pred_valid : In(1); pred, clocks, outputs : In
        The core's prediction (taken when ``ce`` and ``pred_valid``).
    ce : Out(1); ro_mode : Out(1); resumed : Out(1)
        The clock enable and the stall state (``ro_mode``: stalled since
        the last clock; ``resumed``: not in the first clock after a stall).
    ro_mode_next, resumed_next : Out(1)
        ``ro_mode`` and ``resumed`` of the next clock: the core's weight banks
        register their own copies of them (no one register drives every read
        address).
    """

    def __init__(self, beat_layout, result_layout):
        self.beat_layout, self.result_layout = beat_layout, result_layout
        fields = result_layout.members
        self.with_outputs = "outputs" in fields
        members = {"need_input": In(1), "need_next": In(1),
                   "i_valid": In(1), "i_ready": Out(1), "i_payload": In(beat_layout),
                   "beat": Out(beat_layout),
                   "o_ready": In(1), "o_valid": Out(1), "result": Out(result_layout),
                   "pred_valid": In(1), "pred": In(fields["prediction"]),
                   "clocks": In(fields["clock"]),
                   "ce": Out(1), "ro_mode": Out(1, init=1), "resumed": Out(1),
                   "ro_mode_next": Out(1, init=1), "resumed_next": Out(1)}
        if self.with_outputs:
            members["outputs"] = In(fields["outputs"])
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        # the input register
        full = Signal(name="in_full")
        # ``need_input`` as a register (the core's phase only moves when
        # ``ce``), so that ``i.ready``, and the load enable of the beat's
        # flip-flops all over the chip, are one LUT from ``i.valid`` and
        # registers (the phase decode in that path was board@64's ECP5
        # critical path, docs/synthesis.md)
        need = Mux(self.ce, self.need_next, self.need_input)
        need_now = Signal(name="need_now", init=1)
        m.d.sync += need_now.eq(need)
        take = self.ce & need_now
        m.d.comb += self.i_ready.eq(~full | take)
        accept = self.i_valid & self.i_ready
        with m.If(accept):
            m.d.sync += self.beat.eq(self.i_payload)
        full_next = Signal(name="in_full_next")
        m.d.comb += full_next.eq(accept | (full & ~take))
        m.d.sync += full.eq(full_next)
        # the output buffer: two entries, ``head`` (the output) and ``tail``
        count = Signal(range(3), name="out_count")
        tail = Signal(self.result_layout, name="out_tail")
        new = Signal(self.result_layout, name="out_new")
        m.d.comb += [new.prediction.eq(self.pred), new.clock.eq(self.clocks)]
        if self.with_outputs:
            m.d.comb += new.outputs.eq(self.outputs)
        push = self.ce & self.pred_valid
        pop = self.o_valid & self.o_ready
        m.d.comb += self.o_valid.eq(count != 0)
        with m.If(pop):
            m.d.sync += self.result.eq(tail)
        with m.If(push):
            with m.If((count == 0) | ((count == 1) & pop)):
                m.d.sync += self.result.eq(new)
            with m.Else():
                m.d.sync += tail.eq(new)
        count_next = Signal(range(3), name="out_count_next")
        m.d.comb += count_next.eq(count + push - pop)
        m.d.sync += count.eq(count_next)
        # the enable: ``want`` (the core could run in this clock) and ``ce``
        # are registers, made from the next clock's fill and phase
        want, ran1, ran2 = Signal(name="want"), Signal(name="want_d1"), Signal(name="want_d2")
        want_next = (~need | full_next) & (count_next < 2)
        m.d.sync += [want.eq(want_next), ran1.eq(want), ran2.eq(ran1),
                     self.ce.eq(want_next & want & ran1), self.ro_mode.eq(~want)]
        m.d.comb += [self.resumed.eq(ran2),
                     self.ro_mode_next.eq(~want), self.resumed_next.eq(ran1)]
        return m
