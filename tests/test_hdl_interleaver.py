"""hdl/interleaver.py on its own: the rotator against ``np.roll``, the
interleaver's bank rows, dither and sweeps against the pattern
(``make_pattern(...).row_addr`` and ``.dither``) that the golden model uses."""
import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.sim import Simulator

from sparse_edge.gen.interleaver import KINDS, make_pattern
from sparse_edge.hdl.interleaver import Interleaver, Rotator


def run(dut, tb, clock=True):
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("z", [1, 2, 3, 5, 8])
def test_rotator_is_np_roll(z):
    dut = Rotator(signed(7), z)
    rng = np.random.default_rng(z)
    values = rng.integers(-64, 64, size=(4, z))

    async def tb(ctx):
        for v in values:
            for k in range(z):
                ctx.set(dut.i[k], int(v[k]))
            for amount in range(z):
                ctx.set(dut.amount, amount)
                got = [ctx.get(dut.o[k]) for k in range(z)]
                assert got == list(np.roll(v, -amount)), (v, amount, got)

    run(dut, tb, clock=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("p, n, fo, z, slack", [(16, 8, 2, 4, 0), (16, 8, 4, 8, 3),
                                                 (12, 6, 2, 3, 0), (8, 8, 1, 2, 5),
                                                 (8, 4, 2, 8, 0), (24, 8, 2, 12, 1),
                                                 (4, 4, 1, 2, 0), (4, 4, 1, 2, 1)])
def test_interleaver_plays_the_pattern(kind, p, n, fo, z, slack):
    """In every clock of a junction cycle, bank ``b`` is read at row
    ``row_addr[c, (b - D) % z]`` with ``D = dither[c // R]``; the first sweep
    is flagged.  ``slack`` clocks after the ``C`` active ones stand for the
    ``reference`` schedule's longer cycle; z = 12 takes two row-address ROMs
    (LANES_PER_ROW_ROM = 8), the 2- and 3-clock cycles the prefetch's
    modulo table."""
    pat = make_pattern(kind, p, n, fo, z, seed=5, junction=1).check()
    C, R = pat.cycle, p // z
    cc = C + slack
    dut = Interleaver(pat, cc, checks=True)
    seen = []

    async def tb(ctx):
        for cycle in range(3):
            for c in range(cc):
                ctx.set(dut.phase, c)
                ctx.set(dut.active, c < C)
                if cycle and c < C:      # the ROM prefetch is primed after a cycle
                    d = int(pat.dither[c // R])
                    rows = [ctx.get(dut.rows.row[b]) for b in range(z)]
                    want = [int(pat.row_addr[c, (b - d) % z]) for b in range(z)]
                    assert rows == want, (cycle, c, rows, want)
                    if any(pat.dither):
                        assert ctx.get(dut.rows.dither) == d
                        assert ctx.get(dut.rows.undither) == (z - d) % z
                    assert ctx.get(dut.rows.first_sweep) == (c < R)
                    seen.append((cycle, c))
                await ctx.tick()

    run(dut, tb)
    assert len(seen) == 2 * C


def test_interleaver_rows_cover_each_bank_once_per_sweep():
    """The hardware's rows, collected over a cycle, visit every row of every
    bank exactly once per sweep (what makes the pattern clash-free and each
    left neuron read fo times)."""
    pat = make_pattern("bank_dither", 32, 16, 4, 8, seed=2, junction=1).check()
    C, R, z = pat.cycle, 32 // 8, 8
    dut = Interleaver(pat, C)
    visits = np.zeros((pat.fo, z, R), dtype=int)

    async def tb(ctx):
        for cycle in range(2):
            for c in range(C):
                ctx.set(dut.phase, c)
                ctx.set(dut.active, 1)
                if cycle:
                    for b in range(z):
                        visits[c // R, b, ctx.get(dut.rows.row[b])] += 1
                await ctx.tick()

    run(dut, tb)
    assert (visits == 1).all()
