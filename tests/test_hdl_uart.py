# amaranth: UnusedElaboratable=no
"""UART receiver and transmitter (hdl/uart.py) in Amaranth's simulator:
loopback at several divisors, a line driven with bit-time jitter, framing
errors, overflow, glitches, parameter checks."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sparse_edge.hdl.uart import MIN_DIVISOR, UARTRx, UARTTx, divisor_for


class Loop(wiring.Component):
    def __init__(self, divisor):
        self.tx = UARTTx(divisor)
        self.rx = UARTRx(divisor)
        super().__init__({"line": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += [self.rx.rx.eq(self.tx.tx), self.line.eq(self.tx.tx)]
        return m


@pytest.mark.parametrize("divisor", [MIN_DIVISOR, 3, 4, 7, 20])
def test_loopback_back_to_back(divisor):
    dut = Loop(divisor)
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0xFE, 0xFD] + \
        [random.Random(divisor).randrange(256) for _ in range(8)]
    got, starts = [], []

    async def send(ctx):
        for b in data:
            ctx.set(dut.tx.i.payload, b)
            ctx.set(dut.tx.i.valid, 1)
            await ctx.tick().until(dut.tx.i.ready)
            starts.append(ctx.get(dut.tx.busy))
        ctx.set(dut.tx.i.valid, 0)

    async def receive(ctx):
        ctx.set(dut.rx.o.ready, 1)
        async for _c, _r, valid, payload, ovf, ferr in ctx.tick().sample(
                dut.rx.o.valid, dut.rx.o.payload, dut.rx.overflow, dut.rx.framing_error):
            assert not ovf and not ferr
            if valid:
                got.append(payload)
            if len(got) == len(data):
                return

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run()
    assert got == data
    assert all(starts)                  # each byte was taken as the line went busy


def _drive_line(dut, frames, divisor, stop_low=(), jitter=0.0, seed=0):
    """A testbench that drives ``dut.rx`` with 8N1 characters (``stop_low``:
    indices whose stop bit is low), each bit ``divisor * (1 +- jitter)``
    clocks long."""
    rng = random.Random(seed)

    async def line(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        for n, b in enumerate(frames):
            bits = [0] + [(b >> i) & 1 for i in range(8)] + [0 if n in stop_low else 1]
            for bit in bits:
                ctx.set(dut.rx, bit)
                length = max(1, round(divisor * (1 + rng.uniform(-jitter, jitter))))
                await ctx.tick().repeat(length)
            ctx.set(dut.rx, 1)
            await ctx.tick().repeat(divisor * 2)
    return line


def _collect(dut, got, flags):
    async def rx(ctx):
        ctx.set(dut.o.ready, 1)
        async for _c, _r, valid, payload, ovf, ferr in ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.overflow, dut.framing_error):
            if valid:
                got.append(payload)
            flags["overflow"] += ovf
            flags["framing"] += ferr
    return rx


def test_receiver_tolerates_bit_time_jitter_and_reports_framing_errors():
    d = 16
    dut = UARTRx(d)
    frames = [0x3C, 0xC3, 0x00, 0xFF, 0x5A, 0x81]
    got, flags = [], {"overflow": 0, "framing": 0}
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(_drive_line(dut, frames, d, stop_low={2}, jitter=0.05, seed=3))
    sim.add_testbench(_collect(dut, got, flags), background=True)
    sim.run()
    assert got == [b for i, b in enumerate(frames) if i != 2]     # the bad one is dropped
    assert flags == {"overflow": 0, "framing": 1}


def test_receiver_overflow_keeps_the_first_byte():
    d = 4
    dut = UARTRx(d)
    frames = [0x11, 0x22, 0x33]

    async def nobody_reads(ctx):
        ctx.set(dut.o.ready, 0)
        overflow = 0
        async for _c, _r, ovf in ctx.tick().sample(dut.overflow):
            overflow += ovf
            if overflow == 2:
                break
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 0x11

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(_drive_line(dut, frames, d))
    sim.add_testbench(nobody_reads)
    sim.run()


def test_receiver_ignores_a_glitch():
    d = 8
    dut = UARTRx(d)
    got, flags = [], {"overflow": 0, "framing": 0}

    async def line(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        ctx.set(dut.rx, 0)                 # shorter than half a bit
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * d)
        for bit in [0] + [(0xA5 >> i) & 1 for i in range(8)] + [1]:
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(d)
        await ctx.tick().repeat(3 * d)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(line)
    sim.add_testbench(_collect(dut, got, flags), background=True)
    sim.run()
    assert got == [0xA5] and flags["framing"] == 0


def test_divisor_checks():
    with pytest.raises(ValueError, match="too small"):
        UARTRx(MIN_DIVISOR - 1)
    with pytest.raises(TypeError):
        UARTTx(4.5)
    assert divisor_for(60e6, 3e6) == (20, 0.0)
    d, err = divisor_for(50e6, 3e6)
    assert d == 17 and abs(err + 1.96) < 0.01
