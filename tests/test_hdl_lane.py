"""hdl/lane.py on its own: an edge lane's three products and its weight
update against ``QFormat.mul`` / ``QFormat.sat`` (the golden model's
arithmetic), edge after edge at full throughput with each input at its
stage; the BP products' rotation and accumulation against numpy.

:class:`BrokenUpdateLane` (lane 0 of junction 1 with bit 0 of its weight
change flipped) is the deliberate defect the equivalence tests use to show
they can fail."""
import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from sparse_edge.gen.fixedpoint import QFormat
from sparse_edge.gen.geometry import S_BIAS, S_SEL, S_TREE, S_W
from sparse_edge.hdl.lane import BPAccumulate, EdgeLane


class BrokenUpdateLane(EdgeLane):
    """Lane 0 of junction 1 writes back ``w + (dw ^ 1)``: a one-bit defect."""

    def weight_update(self, w, dw):
        if self.where == (1, 0):
            dw = dw ^ 1
        return super().weight_update(w, dw)


def lane_mismatches(fmt, act_bits, lane_cls=EdgeLane, n=60, bp=True, seed=0):
    """Stream ``n`` random edges through one lane; return the mismatches
    against the golden arithmetic (an empty list when bit-exact)."""
    w = fmt.width
    dut = lane_cls(fmt, unsigned(act_bits), signed(w + 1), bp, where=(1, 0))
    rng = np.random.default_rng(seed)
    a_ff = rng.integers(0, 1 << act_bits, n)
    a_up = rng.integers(0, 1 << act_bits, n)
    db = rng.integers(fmt.min, -fmt.min + 1, n)          # |db| <= 2**(w-1)
    d = rng.integers(fmt.min, fmt.max + 1, n)
    wt = rng.integers(fmt.min, fmt.max + 1, n)
    want_new = fmt.sat(wt + fmt.mul(db, a_up))
    want_pf, want_pb = fmt.mul(a_ff, wt), fmt.mul(wt, d)
    bad = []

    def at(stage, t):
        e = t - stage
        return e if 0 <= e < n else None

    async def tb(ctx):
        for t in range(n + S_TREE + 1):
            if (e := at(S_SEL, t)) is not None:
                ctx.set(dut.a_ff, int(a_ff[e]))
                ctx.set(dut.a_up, int(a_up[e]))
            if (e := at(S_BIAS, t)) is not None:
                ctx.set(dut.db, int(db[e]))
            if (e := at(S_W, t)) is not None:
                ctx.set(dut.d, int(d[e]))
                ctx.set(dut.w, int(wt[e]))
                if ctx.get(dut.w_new) != want_new[e]:
                    bad.append(("w_new", e, ctx.get(dut.w_new), int(want_new[e])))
            if (e := at(S_TREE, t)) is not None:
                if ctx.get(dut.pf) != want_pf[e]:
                    bad.append(("pf", e, ctx.get(dut.pf), int(want_pf[e])))
                if bp and ctx.get(dut.pb) != want_pb[e]:
                    bad.append(("pb", e, ctx.get(dut.pb), int(want_pb[e])))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return bad


@pytest.mark.parametrize("fmt, act_bits", [(QFormat(2, 7), 7), (QFormat(2, 5), 6),
                                           (QFormat(3, 8), 8), (QFormat(1, 6), 6)])
@pytest.mark.parametrize("bp", [False, True])
def test_lane_is_the_golden_arithmetic(fmt, act_bits, bp):
    assert lane_mismatches(fmt, act_bits, bp=bp, seed=fmt.width) == []


def test_a_broken_lane_is_caught():
    bad = lane_mismatches(QFormat(2, 7), 7, BrokenUpdateLane)
    assert bad and {b[0] for b in bad} == {"w_new"}


@pytest.mark.parametrize("z, dithered", [(1, False), (4, False), (4, True), (5, True)])
def test_bp_accumulate_rotates_and_sums(z, dithered):
    """``new[b] = (0 if first else old[b]) + pb[(b - undither) % z]`` one
    clock after the products (the registered bank-order product)."""
    w, aw = 10, 13
    dut = BPAccumulate(w, aw, z, dithered)
    rng = np.random.default_rng(z)
    n = 20
    pb = rng.integers(-512, 512, (n, z))
    amount = rng.integers(0, z, n) if dithered else np.zeros(n, dtype=int)
    old = rng.integers(-3500, 3500, (n, z))        # the sum stays inside 13 bits
    first = rng.integers(0, 2, n)

    async def tb(ctx):
        for t in range(n + 1):
            if t < n:
                for k in range(z):
                    ctx.set(dut.pb[k], int(pb[t, k]))
                ctx.set(dut.undither, int(amount[t]))
            if t >= 1:
                e = t - 1
                ctx.set(dut.first, int(first[e]))
                for b in range(z):
                    ctx.set(dut.old[b], int(old[e, b]))
                banked = np.roll(pb[e], -int(amount[e]))
                for b in range(z):
                    want = (0 if first[e] else old[e, b]) + banked[b]
                    assert ctx.get(dut.new[b]) == want, (e, b)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
