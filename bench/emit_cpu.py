"""CPU seconds of Verilog emission, per config: elaborating the network and
converting it to RTLIL (this process), then Yosys' ``write_verilog`` (a child
process).  CPU time is less sensitive than wall time to other jobs on the
machine, so two versions can be compared on a busy one.

    python bench/emit_cpu.py [configs ...]      (default: board and ICANN)
"""
import resource
import sys
import time
from pathlib import Path

from amaranth.back import rtlil

from sparse_edge.gen.config import load_config
from sparse_edge.gen.flow import rtlil_to_verilog
from sparse_edge.hdl.network import Network

ROOT = Path(__file__).resolve().parents[1]


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    paths = sys.argv[1:] or [str(ROOT / "configs" / "board.toml"),
                             str(ROOT / "configs" / "icann.toml")]
    for path in paths:
        cfg = load_config(path)
        w0, c0 = time.perf_counter(), time.process_time()
        il = rtlil.convert(Network(cfg, "fast"), name="sparse_edge_top", emit_src=False)
        w1, c1 = time.perf_counter(), time.process_time()
        k0 = child_cpu()
        v = rtlil_to_verilog(il)
        k1, w2 = child_cpu(), time.perf_counter()
        print(f"{cfg.name:>6}: elaborate+RTLIL {c1 - c0:6.1f} s CPU ({w1 - w0:6.1f} s wall), "
              f"Yosys write_verilog {k1 - k0:6.1f} s CPU ({w2 - w1:6.1f} s wall), "
              f"RTLIL {len(il) / 1e6:.2f} MB, Verilog {len(v) / 1e6:.2f} MB", flush=True)


if __name__ == "__main__":
    main()
