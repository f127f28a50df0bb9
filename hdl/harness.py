"""Pin-minimal wrapper for out-of-context synthesis of a component.

The network's ports are far wider than any package (the board network takes
1024 pixel bits per beat).  :class:`SynthHarness` feeds every input from one
shift register (1 pin) and folds every output into one registered XOR (1 pin),
so nothing can be optimised away and the design needs four pins (``clk``,
``rst``, ``sin``, ``sout``).  Its cost (one FF per input bit, one per output
member and one more, about one LUT4 per three output bits) is reported beside
the synthesis results;
:meth:`sparse_edge.gen.geometry.NetworkGeometry.interface_bits` gives the two
widths for the network without elaborating it.
"""

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SynthHarness"]


class SynthHarness(wiring.Component):
    """Pin-minimal wrapper for out-of-context synthesis of a component.

    Every input member of ``dut`` is driven from one shift register fed by
    ``sin``; every output member is folded into a registered XOR of its own,
    and those into one more on ``sout``.  Nothing of ``dut`` can be optimised
    away, and the top needs four pins (``clk``, ``rst``, ``sin``, ``sout``).

    Parameters
    ----------
    dut : wiring.Component

    Members
    -------
    sin : In(1)
    sout : Out(1)

    Attributes
    ----------
    in_bits, out_bits, out_members : int
        Widths of the scan chain and of the XOR fold, and the number of output
        members (harness cost: one FF per input bit, about ``out_bits / 3``
        LUT4s, one FF per output member and one more).
    """

    def __init__(self, dut):
        self.dut = dut
        self._ins, self._outs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (self._ins if member.flow == In else self._outs).append(Value.cast(value))
        self.in_bits = sum(len(v) for v in self._ins)
        self.out_bits = sum(len(v) for v in self._outs)
        self.out_members = len(self._outs)
        super().__init__({"sin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        chain = Signal(max(self.in_bits, 1), name="scan_in")
        m.d.sync += chain.eq(Cat(self.sin, chain[:-1]) if self.in_bits > 1 else self.sin)
        pos = 0
        for v in self._ins:
            m.d.comb += v.eq(chain[pos:pos + len(v)])
            pos += len(v)
        # each output member is folded into a register of its own, then those
        # into ``sout``: the fold adds at most a member's XOR tree to a path of
        # the design (one fold of everything at once was board@128's ECP5
        # critical path: the read-out data's select, then 11 logic levels)
        parts = []
        for i, v in enumerate(self._outs):
            part = Signal(name=f"scan_fold{i}")
            m.d.sync += part.eq(v.xor())
            parts.append(part)
        fold = Signal(name="scan_out")
        m.d.sync += fold.eq(Cat(*parts).xor())
        m.d.comb += self.sout.eq(fold)
        return m
