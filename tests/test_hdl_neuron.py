"""hdl/neuron.py on its own, against the golden model's operations: the
neuron unit's forward finish against ``_FixedOps.ff`` (products of a real
junction's edges, clock by clock, in every regime: several neurons per
clock, one, multi-clock neurons), the delta unit against ``_FixedOps.bp``
and ``_FixedOps.up``, the output unit against ``_FixedOps.out_delta`` and the
golden model's argmax."""
import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from sparse_edge.gen.geometry import (S_BIAS, S_DB, S_SEL, S_SUM, S_TREE, S_W, S_WR,
                                      NetworkGeometry, hardware_schedule)
from sparse_edge.gen.tables import ActivationTable
from sparse_edge.hdl.neuron import DeltaUnit, NeuronUnit, OutputUnit
from sparse_edge.sim.golden import _FixedOps

from .conftest import make_config


def simulate(dut, tb):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def neuron_mismatches(cfg, j, make=NeuronUnit, seed=0):
    """One junction cycle of junction ``j``'s FF products through a neuron
    unit; the mismatches against ``_FixedOps.ff`` (empty when bit-exact)."""
    geo = NetworkGeometry(cfg, hardware_schedule(cfg, "fast"))
    pat, fmt = cfg.patterns()[j - 1], cfg.fmt
    ops = _FixedOps(cfg, pat)
    rng = np.random.default_rng(seed)
    a_left = rng.integers(0, fmt.one, pat.p).astype(np.int32)
    w = rng.integers(fmt.min, fmt.max + 1, pat.edges).astype(np.int32)
    b = rng.integers(fmt.min // 2, fmt.max // 2, pat.n).astype(np.int32)
    s, a, da = ops.ff(w, b.copy(), a_left)
    prod = ops._rmul(a_left[ops.src] * w)               # the lanes' products, edge order
    z, q, span, fi, C = geo.z[j], geo.q[j], geo.span[j], cfg.fanin[j - 1], cfg.cycle
    last = j == cfg.junctions
    dut = make(fmt, cfg.activation_table(), q, min(fi, z), span, fi, not last)
    bad = []

    async def tb(ctx):
        for t in range(C + S_WR + 1):
            if 0 <= (c := t - S_TREE) < C:
                for k in range(z):
                    ctx.set(dut.pf[k], int(prod[c * z + k]))
            if 0 <= (c := t - S_BIAS) < C:
                for i in range(q):
                    ctx.set(dut.b[i], int(b[(c // span) * q + i]))
            if 0 <= (c := t - S_SUM) < C:
                ctx.set(dut.first_span, c % span == 0)
                ctx.set(dut.accumulate, 1)
            if 0 <= (c := t - S_WR) < C and c % span == span - 1:
                for i in range(q):
                    r = (c // span) * q + i
                    got = [ctx.get(dut.s[i]), ctx.get(dut.a[i])]
                    want = [int(s[r]), int(a[r])]
                    if not last:
                        got.append(ctx.get(dut.da[i]))
                        want.append(int(da[r]))
                    if got != want:
                        bad.append((r, got, want))
            await ctx.tick()

    simulate(dut, tb)
    return bad


# (layers, fanout, C, junction): q = 2 neurons per clock; q = 1; multi-clock
# neurons (span 2 and 4); the output junction (no derivative); 12-bit format
NEURON_CASES = [((16, 8, 4), (2, 2), 4, 1), ((16, 8, 4), (2, 2), 8, 1),
                ((8, 4), (2,), 8, 1), ((16, 4, 8), (2, 4), 8, 1), ((16, 8, 4), (2, 2), 8, 2),
                ((16, 16, 4), (4, 2), 16, 2)]


@pytest.mark.parametrize("layers, fanout, cycle, j", NEURON_CASES)
def test_neuron_unit_is_fixed_ops_ff(layers, fanout, cycle, j):
    cfg = make_config(layers, fanout, cycle, kind="random_start", seed=4)
    assert neuron_mismatches(cfg, j, seed=cycle + j) == []


def test_neuron_unit_12_bit():
    cfg = make_config((16, 8, 4), (2, 2), 4, 3, 8, kind="bank_dither", seed=1)
    assert neuron_mismatches(cfg, 1) == []


def test_a_corrupted_table_is_caught():
    """A neuron unit built from a table with one entry flipped fails the check."""
    cfg = make_config((16, 8, 4), (2, 2), 4, kind="random_start", seed=4)

    def corrupted(fmt, table, *args):
        sigma = table.sigma.copy()
        sigma[:] ^= 1 << 4                     # every entry: the check must see it
        return NeuronUnit(fmt, ActivationTable(table.fmt, table.table_bits, sigma,
                                               table.dsigma), *args)
    assert neuron_mismatches(cfg, 1, corrupted)


@pytest.mark.parametrize("hidden, copies", [(True, 1), (False, 1), (True, 3), (False, 2)])
def test_delta_unit_is_fixed_ops_bp_and_up(hidden, copies):
    """Hidden right layer: ``d = mul(a', sat(acc))`` as ``_FixedOps.bp`` forms
    the delta of a left neuron from its out-edges; output layer: the stored
    delta.  Then the bias step and update as ``_FixedOps.up``.  Every copy of
    the lanes' operands (``copies``) carries the same ``db`` and ``d``."""
    cfg = make_config((16, 8, 4), (2, 2), 8, kind="random_start", seed=4)
    fmt, pat = cfg.fmt, cfg.patterns()[1]              # junction 2: left layer 8 (hidden)
    ops = _FixedOps(cfg, pat)
    rng = np.random.default_rng(1)
    n = 24
    w = rng.integers(fmt.min, fmt.max + 1, (n, pat.edges)).astype(np.int32)
    d_right = rng.integers(fmt.min, fmt.max + 1, (n, pat.n)).astype(np.int32)
    da = rng.integers(1, 33, (n, pat.p)).astype(np.int32)
    # per sample, left neuron 0's exact BP sum and the golden delta for it
    acc = [int(ops._rmul(w[i] * np.repeat(d_right[i], pat.fi))[ops.by_left[0]].sum())
           for i in range(n)]
    d_gold = [int(ops.bp(w[i], d_right[i], da[i])[0]) for i in range(n)]
    delta = rng.integers(fmt.min, fmt.max + 1, n)
    d_want = d_gold if hidden else [int(v) for v in delta]
    k = rng.integers(0, 16, n)
    b = rng.integers(fmt.min, fmt.max + 1, n)
    b_want, db_want = [], []
    for i in range(n):
        bb = np.zeros(pat.n, dtype=np.int32)
        bb[0] = b[i]
        dr = np.zeros(pat.n, dtype=np.int32)
        dr[0] = d_want[i]
        ops.up(np.zeros(pat.edges, dtype=np.int32), bb, dr, np.zeros(pat.p, dtype=np.int32),
               int(k[i]))
        b_want.append(int(bb[0]))
        db_want.append(int(fmt.bias_step(d_want[i], int(k[i]))))
    dut = DeltaUnit(fmt, 1, 2, 13, unsigned(6), copies=copies) if hidden else \
        DeltaUnit(fmt, 1, copies=copies)
    assert len(dut.db) == len(dut.d) == copies

    async def tb(ctx):
        for t in range(n + S_W + 1):
            if 0 <= (i := t - S_SEL) < n:
                if hidden:
                    blk = i % 2
                    ctx.set(dut.blk, blk)
                    ctx.set(dut.acc[blk], acc[i])
                    ctx.set(dut.acc[1 - blk], -999)          # the other block's bank
                    ctx.set(dut.da[0], int(da[i, 0]))
                else:
                    ctx.set(dut.delta[0], int(delta[i]))
            if 0 <= (i := t - S_DB) < n:
                ctx.set(dut.k, int(k[i]))
            if 0 <= (i := t - S_BIAS) < n:
                ctx.set(dut.b[0], int(b[i]))
                assert [ctx.get(dut.db[c]) for c in range(copies)] == [db_want[i]] * copies, i
                assert ctx.get(dut.b_new[0]) == b_want[i], i
            if 0 <= (i := t - S_W) < n:
                assert [ctx.get(dut.d[c]) for c in range(copies)] == [d_want[i]] * copies, i
            await ctx.tick()

    simulate(dut, tb)


@pytest.mark.parametrize("q, classes, n_out", [(1, 4, 4), (2, 6, 8), (4, 10, 16)])
def test_output_unit_delta_and_argmax(q, classes, n_out):
    """Deltas ``sat(a - y)`` and the prediction as the golden model forms them
    (``out_delta`` against the one-hot target, ``argmax(s[:classes])``, the
    lowest index on a tie), over several samples back to back."""
    cfg = make_config((16, 8, n_out), (2, 2), 8)
    fmt = cfg.fmt
    ops = _FixedOps(cfg, cfg.patterns()[-1])
    rows = n_out // q
    dut = OutputUnit(fmt, q, rows, classes, n_out)
    rng = np.random.default_rng(q)
    samples = 5
    s = rng.integers(-6, 6, (samples, n_out)) * 40          # ties are likely
    a = rng.integers(0, fmt.one, (samples, n_out))
    labels = rng.integers(0, classes, samples)
    preds, acts = [], []

    async def tb(ctx):
        for n in range(samples):
            y = ops.target(labels[n], n_out)
            want = ops.out_delta(a[n], y)
            for r in range(rows):
                ctx.set(dut.valid, 1)
                ctx.set(dut.row, r)
                ctx.set(dut.label, int(labels[n]))
                for i in range(q):
                    ctx.set(dut.s[i], int(s[n, r * q + i]))
                    ctx.set(dut.a[i], int(a[n, r * q + i]))
                    assert ctx.get(dut.delta[i]) == want[r * q + i]
                await ctx.tick()
                if r == rows - 1:
                    assert ctx.get(dut.pred_valid)
                    preds.append(ctx.get(dut.pred))
                    acts.append([ctx.get(dut.act[o]) for o in range(n_out)])
                else:
                    assert not ctx.get(dut.pred_valid)
            ctx.set(dut.valid, 0)
            await ctx.tick()

    simulate(dut, tb)
    assert preds == [int(np.argmax(s[n, :classes])) for n in range(samples)]
    assert acts == [list(a[n]) for n in range(samples)]
