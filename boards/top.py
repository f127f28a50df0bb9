"""Board tops: the portable system top (``hdl/system.py``) with a board's
clock, UART pins and LEDs, requested from its amaranth-boards platform.

Nothing here knows a particular board: everything comes from the
:class:`~sparse_edge.boards.registry.BoardSpec`.
"""

from amaranth.hdl import Elaboratable, Module

from ..hdl.system import SystemTop
from .clocking import ClockGenerator

__all__ = ["BoardTop"]


class BoardTop(Elaboratable):
    """A :class:`~sparse_edge.hdl.system.SystemTop` on a board.

    Parameters
    ----------
    spec : BoardSpec
    system : SystemTop
        Built for the board's clock and baud rate (its divisor).
    pll : PllSettings or None
        From the oscillator to the system clock (``None``: the oscillator is
        the clock).
    """

    def __init__(self, spec, system, pll):
        self.spec, self.system, self.pll = spec, system, pll

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        if self.pll is not None and self.pll.family == "ice40":
            # SB_PLL40_PAD takes the oscillator's pad itself
            osc = platform.request(spec.osc_resource, 0, dir="-").io
        else:
            osc = platform.request(spec.osc_resource, 0).i
        clk = ClockGenerator(self.pll, osc)
        cd = clk.elaborate_into(m)
        platform.add_clock_constraint(cd.clk, self.system.clock_hz)

        m.submodules.system = sys = self.system
        uart = platform.request("uart", 0)
        m.d.comb += [sys.rx.eq(uart.rx.i), uart.tx.o.eq(sys.tx)]
        for bit, (name, number) in enumerate(spec.leds[:len(sys.leds)]):
            led = platform.request(name, number)
            m.d.comb += led.o.eq(sys.leds[bit])
        return m


def system_for(spec, cfg, schedule, clock_hz, divisor, enable_buffer=None):
    """The system top for ``spec`` at ``clock_hz`` with UART ``divisor``."""
    return SystemTop(cfg, schedule, divisor=divisor, clock_hz=int(round(clock_hz)),
                     slots=spec.slots, pred_ring=spec.pred_ring, enable_buffer=enable_buffer,
                     stretch_bits=max(8, int(clock_hz).bit_length() - 6))
