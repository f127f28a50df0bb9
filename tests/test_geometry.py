# amaranth: UnusedElaboratable=no
# (networks are built here only to read their signatures, never elaborated)
"""The plain numbers of gen/geometry.py against the hardware they describe.

The geometry computes widths arithmetically (no Amaranth); here each is
compared with what Amaranth makes of the hardware's own expressions and
signature, so the two cannot drift apart.
"""
import subprocess
import sys
from collections import Counter

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Shape

from sparse_edge.gen.config import MAX_ETA_EXP, load_config
from sparse_edge.gen.geometry import (BANKS_PER_ADDRESS_COPY, K_MAX, LANES_PER_OPERAND_COPY,
                                      LANES_PER_ROW_ROM, LR_BITS, REFERENCE_OVERHEAD, STAGES,
                                      WRITE_LATENCY, IntShape, NetworkGeometry, bank_groups, bits,
                                      groups_of, hardware_schedule, row_rom_groups)
from sparse_edge.gen.estimate import NETWORK_OUTPUT_MEMBERS
from sparse_edge.gen.synth import _mul_cells
from sparse_edge.hdl.arith import BiasStep
from sparse_edge.hdl.harness import SynthHarness
from sparse_edge.hdl.network import Network

from .conftest import ROOT, make_config

CONFIGS = [make_config([16, 8, 4], [2, 2], 16), make_config([16, 8, 4], [2, 2], 4),
           make_config([64, 32, 32, 16], [4, 8, 4], 64),
           make_config([16, 8, 4], [2, 2], 8, int_bits=3, frac_bits=8)]


@pytest.mark.parametrize("lo, hi", [(0, 0), (0, 1), (1, 1), (2, 126), (0, 255), (-3, 4),
                                    (-4, 3), (-5, 2), (-1, 0), (-8, -2), (-1, -1), (-512, 511),
                                    (0, 1023), (3, 3)])
def test_range_shape_is_amaranths(lo, hi):
    s = Shape.cast(range(lo, hi + 1))
    assert IntShape.for_range(lo, hi) == IntShape(s.width, s.signed)


@pytest.mark.parametrize("name, cycle", [("board", 32), ("board", 64), ("board", 128),
                                         ("icann", None)])
def test_operand_copies_split_each_neurons_lanes(name, cycle):
    """Lane ``k`` works for right neuron ``k // min(fi, z)`` (SPEC: a clock's
    ``z`` edges are ``fi``-runs of consecutive right neurons); its neuron's
    db/d copies each feed at most LANES_PER_OPERAND_COPY lanes, and every
    copy feeds some."""
    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    if cycle:
        cfg = cfg.with_(cycle=cycle)
    geo = NetworkGeometry(cfg, hardware_schedule(cfg))
    for j in range(1, cfg.junctions + 1):
        z, fi = cfg.z[j - 1], cfg.fanin[j - 1]
        use = Counter(geo.operand_copy(j, k) for k in range(z))
        assert {i for i, _ in use} == set(range(geo.q[j]))
        for k in range(z):
            assert geo.operand_copy(j, k)[0] == (k // fi if fi <= z else 0)
        assert set(use) == {(i, c) for i in range(geo.q[j])
                            for c in range(geo.operand_copies[j])}
        assert max(use.values()) <= LANES_PER_OPERAND_COPY
        assert sum(use.values()) == z


@pytest.mark.parametrize("n, size", [(1, 8), (8, 8), (9, 8), (64, 8), (20, 3)])
def test_groups_cover_every_index_once(n, size):
    """groups_of (the row ROMs' lanes, the banks sharing a row register):
    consecutive groups of at most ``size`` covering ``0 .. n-1`` once, all
    full but the last."""
    groups = groups_of(n, size)
    assert [i for g in groups for i in g] == list(range(n))
    assert all(len(g) == size for g in groups[:-1]) and 1 <= len(groups[-1]) <= size
    assert len(groups) == -(-n // size)
    assert bank_groups(n) == groups_of(n, BANKS_PER_ADDRESS_COPY)
    assert row_rom_groups(n) == groups_of(n, LANES_PER_ROW_ROM)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_operand_widths_are_the_hardwares(cfg):
    """products(): every signed multiplier of the elaborated network (the
    datapath's ``$mul`` cells in its RTLIL; the unsigned ones are constant
    address arithmetic) with the operand widths the geometry computes."""
    geo = NetworkGeometry(cfg, hardware_schedule(cfg, "fast"))
    cells = Counter((aw, bw) for sa, aw, sb, bw, _y in
                    _mul_cells(rtlil.convert(Network(cfg), emit_src=False)) if sa and sb)
    want = Counter()
    for _kind, count, a, b in geo.products():
        assert a.signed and b.signed
        want[(a.width, b.width)] += count
    assert cells == want
    assert geo.multipliers() == sum(want.values())
    # the bias step is BiasStep's output
    assert BiasStep(cfg.fmt).o.shape().width == cfg.fmt.width + 1


@pytest.mark.parametrize("outputs", [False, True])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_interface_bits_are_the_signatures(cfg, outputs):
    """The harness widths the estimate uses equal the Network signature's."""
    for kind in ("fast", "reference"):
        net = Network(cfg, kind, outputs=outputs)
        h = SynthHarness(net)
        assert net.geometry.interface_bits(outputs) == (h.in_bits, h.out_bits)
        assert h.out_members == NETWORK_OUTPUT_MEMBERS       # the estimate's harness FFs
        assert net.beat_layout.size == net.geometry.beat_bits()
        assert net.result_layout.size == net.geometry.result_bits(outputs)


def test_numbers():
    assert WRITE_LATENCY == max(STAGES) == 15
    assert STAGES[WRITE_LATENCY] == "S_WR" and sorted(STAGES) == list(range(1, 16))
    assert K_MAX == MAX_ETA_EXP and (1 << LR_BITS) == K_MAX + 1
    assert [bits(n) for n in (1, 2, 3, 4, 5, 1024)] == [0, 1, 2, 2, 3, 10]
    board = load_config(ROOT / "configs" / "board.toml")
    assert board.cycle + REFERENCE_OVERHEAD == 36          # SPEC section 8
    geo = NetworkGeometry(board, hardware_schedule(board, "fast"))
    assert geo.clocks_per_sample == 32 and geo.beats_per_sample == 8
    ref = NetworkGeometry(board, hardware_schedule(board, "reference"))
    assert ref.clocks_per_sample == 32 + WRITE_LATENCY


def test_check_needs_neither_amaranth_nor_numba():
    code = ("import sys\nfrom sparse_edge.gen.cli import main\n"
            f"assert main(['check', {str(ROOT / 'configs' / 'board.toml')!r}]) == 0\n"
            "bad = [m for m in ('amaranth', 'numba') if m in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
