"""Time to emit Verilog for the board and ICANN networks, and Yosys read-back.

    python bench/verilog_emit.py [configs ...]
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sparse_edge.gen.config import load_config
from sparse_edge.gen.flow import generate
from sparse_edge.gen.tools import tool_command

ROOT = Path(__file__).resolve().parents[1]


def main():
    cfgs = sys.argv[1:] or [str(ROOT / "configs" / "board.toml"),
                            str(ROOT / "configs" / "icann.toml")]
    yosys = tool_command("yosys")
    print(f"{'config':>8} {'z':>12} {'generate s':>11} {'Verilog MB':>11} {'yosys read-back':>16}")
    for path in cfgs:
        cfg = load_config(path)
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            generate(cfg, d, "fast", progress=lambda *a: None)
            dt = time.perf_counter() - t0
            size = os.path.getsize(Path(d) / "sparse_edge_top.v") / 1e6
            t1 = time.perf_counter()
            r = subprocess.run([yosys, "-q", "-p", "read_verilog sparse_edge_top.v; "
                                "hierarchy -check -top sparse_edge_top; proc"],
                               cwd=d, capture_output=True, text=True)
            rb = f"{'ok' if r.returncode == 0 else 'FAILED'} {time.perf_counter() - t1:.1f} s"
        print(f"{cfg.name:>8} {str(list(cfg.z)):>12} {dt:>11.1f} {size:>11.2f} {rb:>16}")


if __name__ == "__main__":
    main()
