"""The portable system top: network + UART + link engine, no board knowledge.

A board top (``boards/top.py``) adds the clock (PLL), the pins and the LEDs;
the simulated board (``sim/board.py``) compiles this same component with
CXXRTL and bridges ``rx``/``tx`` to a TCP socket.
"""

import operator

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .link import LinkEngine
from .network import Network
from .uart import UARTRx, UARTTx

__all__ = ["SystemTop", "LED_NAMES"]

#: Meaning of the bits of ``SystemTop.leds``.
LED_NAMES = ("heartbeat", "training", "link", "error")


class SystemTop(wiring.Component):
    """A trainable network reachable over a UART.

    Parameters
    ----------
    cfg : NetworkConfig
    schedule : "fast" or "reference"
        The network's hardware schedule.
    divisor : int
        UART clocks per bit (``clock_hz / baud``).
    clock_hz : int
        The clock, reported to the host (INFO) for its rates.
    slots, pred_ring, rx_fifo :
        See :class:`~sparse_edge.hdl.link.LinkEngine`.
    enable_buffer : callable, optional
        Passed to :class:`~sparse_edge.hdl.network.Network` (a vendor global
        buffer for its clock enable).
    stretch_bits : int
        The LEDs show what happened during the last ``2**stretch_bits``
        clocks; the heartbeat toggles every ``2**(stretch_bits + 3)``.

    Members
    -------
    rx : In(1)
        UART line from the host (idle high).
    tx : Out(1)
        UART line to the host (idle high).
    leds : Out(4)
        :data:`LED_NAMES`: heartbeat, the network ran, a good frame arrived,
        a bad frame arrived (the last three: during the last period of
        ``2**stretch_bits`` clocks, so a pulse stays visible).
    idle : Out(1)
        Nothing happens until the host sends a byte (for the simulation
        harness): no character on either line, no frame in progress, no
        sample waiting, the network stalled.

    Throughput: that of the line, ``10 * divisor`` clocks per byte; see
    ``docs/boards.md`` for bytes per sample.
    """

    def __init__(self, cfg, schedule="fast", divisor=4, clock_hz=0, slots=4, pred_ring=64,
                 rx_fifo=None, enable_buffer=None, stretch_bits=20):
        self.cfg = cfg
        self.divisor = operator.index(divisor)
        self.clock_hz = int(clock_hz)
        self.stretch_bits = operator.index(stretch_bits)
        self.network = Network(cfg, schedule, enable_buffer=enable_buffer)
        self.uart_rx = UARTRx(self.divisor)
        self.uart_tx = UARTTx(self.divisor)
        self.link = LinkEngine(self.network, slots=slots, pred_ring=pred_ring,
                               clock_hz=self.clock_hz, divisor=self.divisor, rx_fifo=rx_fifo)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "leds": Out(4),
            "idle": Out(1),
        })

    @property
    def info(self):
        """The INFO payload this system answers with."""
        return self.link.info

    def elaborate(self, platform):
        m = Module()
        m.submodules.network = net = self.network
        m.submodules.uart_rx = urx = self.uart_rx
        m.submodules.uart_tx = utx = self.uart_tx
        m.submodules.link = link = self.link
        wiring.connect(m, link.net, net)
        wiring.connect(m, urx.o, link.rx)
        wiring.connect(m, link.tx, utx.i)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     link.rx_overflow.eq(urx.overflow), link.rx_framing.eq(urx.framing_error),
                     self.idle.eq(link.idle & ~urx.busy & ~utx.busy & self.rx)]

        # one prescaler for all LEDs: each shows whether its event happened
        # during the previous period
        sb = self.stretch_bits
        beat = Signal(sb + 4, name="heartbeat")
        m.d.sync += beat.eq(beat + 1)
        period_end = beat[:sb] == (1 << sb) - 1
        lit = []
        for name, pulse in (("training", link.running), ("link", link.activity),
                            ("error", link.error)):
            seen = Signal(name=f"led_{name}_seen")
            led = Signal(name=f"led_{name}")
            with m.If(period_end):
                m.d.sync += [led.eq(seen | pulse), seen.eq(0)]
            with m.Elif(pulse):
                m.d.sync += seen.eq(1)
            lit.append(led)
        m.d.comb += self.leds.eq(Cat(beat[-1], *lit))
        return m
