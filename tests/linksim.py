"""A serial-like port onto an Amaranth simulation, so the host driver
(:class:`sparse_edge.boards.host.Board`) runs unchanged against the gateware.

``read(n)`` advances the simulation by a few clocks and returns the bytes the
device sent meanwhile; ``write(data)`` queues bytes for the device.  Two ways
in: the link engine's byte streams (``StreamDUT``: a network and a
:class:`~sparse_edge.hdl.link.LinkEngine`, one byte per clock) or the system
top's UART pins (bits at the UART divisor).  :attr:`seconds` is the simulated
time, for the driver's timeouts.
"""

from collections import deque

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.lib import stream
from amaranth.sim import Simulator

from sparse_edge.hdl.link import LinkEngine
from sparse_edge.hdl.network import Network

CLOCK_HZ = 1_000_000


class StreamDUT(wiring.Component):
    """A network and its link engine, with the engine's byte streams as ports."""

    def __init__(self, cfg, schedule="fast", **engine_args):
        self.network = Network(cfg, schedule)
        self.link = LinkEngine(self.network, clock_hz=CLOCK_HZ, divisor=0, **engine_args)
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "idle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.network = self.network
        m.submodules.link = self.link
        wiring.connect(m, self.link.net, self.network)
        wiring.connect(m, wiring.flipped(self.rx), self.link.rx)
        wiring.connect(m, self.link.tx, wiring.flipped(self.tx))
        m.d.comb += self.idle.eq(self.link.idle)
        return m


class SimPort:
    """Serial-like access to ``dut`` in Amaranth's simulator.

    ``dut`` is a :class:`StreamDUT` (``divisor=None``) or a
    :class:`~sparse_edge.hdl.system.SystemTop` (``divisor``: its UART bit
    time; bits are driven on ``rx`` and sampled on ``tx``).
    ``chunk`` clocks run per ``read``; ``gap`` idle clocks separate the bytes
    of stream mode; ``probes`` are signals recorded every clock
    (:attr:`probed`).
    """

    def __init__(self, dut, divisor=None, chunk=64, vcd=None, gap=0, probes=()):
        self.dut, self.divisor, self.chunk = dut, divisor, chunk
        self.down, self.up = deque(), deque()
        self.name = "amaranth-sim"
        self.clocks = 0
        self.sim = Simulator(dut)
        self.sim.add_clock(1 / CLOCK_HZ)
        self.gap = gap
        if divisor is None:
            self.sim.add_testbench(self._feed_stream, background=True)
            self.sim.add_testbench(self._drain_stream, background=True)
        else:
            self.sim.add_testbench(self._feed_pin, background=True)
            self.sim.add_testbench(self._drain_pin, background=True)
        self.probes, self.probed = tuple(probes), []
        if self.probes:
            self.sim.add_testbench(self._probe, background=True)
        self._vcd = None
        if vcd:
            self._vcd = self.sim.write_vcd(vcd)
            self._vcd.__enter__()

    # -- device side ------------------------------------------------------------------------
    async def _feed_stream(self, ctx):
        rx = self.dut.rx
        while True:
            if not self.down:
                ctx.set(rx.valid, 0)
                await ctx.tick()
                continue
            ctx.set(rx.payload, self.down.popleft())
            ctx.set(rx.valid, 1)
            await ctx.tick().until(rx.ready)
            ctx.set(rx.valid, 0)
            if self.gap:
                await ctx.tick().repeat(self.gap)

    async def _drain_stream(self, ctx):
        tx = self.dut.tx
        ctx.set(tx.ready, 1)
        async for _clk, _rst, valid, payload in ctx.tick().sample(tx.valid, tx.payload):
            if valid:
                self.up.append(payload)

    async def _feed_pin(self, ctx):
        d = self.divisor
        ctx.set(self.dut.rx, 1)
        while True:
            if not self.down:
                await ctx.tick()
                continue
            b = self.down.popleft()
            for bit in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                ctx.set(self.dut.rx, bit)
                await ctx.tick().repeat(d)

    async def _drain_pin(self, ctx):
        d, tx = self.divisor, self.dut.tx
        while True:
            await ctx.tick().until(tx == 0)
            await ctx.tick().repeat(d // 2)
            b = 0
            for i in range(8):
                await ctx.tick().repeat(d)
                b |= ctx.get(tx) << i
            await ctx.tick().repeat(d)
            assert ctx.get(tx) == 1, "stop bit low on the board's tx"
            self.up.append(b)

    async def _probe(self, ctx):
        async for _clk, _rst, *values in ctx.tick().sample(*self.probes):
            self.probed.append(tuple(values))

    # -- serial-like API ----------------------------------------------------------------------
    @property
    def seconds(self):
        return self.clocks / CLOCK_HZ

    def run(self, clocks):
        self.clocks += clocks
        self.sim.run_until(self.clocks / CLOCK_HZ)

    def write(self, data):
        self.down.extend(bytes(data))
        return len(data)

    def read(self, n=1):
        if not self.up:
            self.run(self.chunk)
        out = bytes(self.up)
        self.up.clear()
        return out

    def close(self):
        if self._vcd is not None:
            self._vcd.__exit__(None, None, None)
            self._vcd = None
