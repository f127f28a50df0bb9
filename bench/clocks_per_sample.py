"""Measured clocks per sample of the generated hardware, both schedules.

Simulates the emitted design (Amaranth's simulator; the compiled CXXRTL
simulator is the subject of another benchmark) with the input always valid and
reports the steady-state distance between consecutive predictions, next to
C and the reference RTL's C + 4.

    python bench/clocks_per_sample.py [--config configs/board.toml] [--samples 6]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from sparse_edge.gen.config import load_config
from sparse_edge.hdl.network import Network
from sparse_edge.sim.rtl import simulate_amaranth

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "board.toml"))
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = load_config(args.config)
    rng = np.random.default_rng(0)
    x = np.zeros((args.samples, cfg.layers[0]), dtype=np.uint8)
    x[:, :cfg.inputs] = rng.integers(0, 256, size=(args.samples, cfg.inputs))
    labels = rng.integers(0, cfg.classes, size=args.samples)
    rows = []
    print(f"config {cfg.name}: layers {cfg.layers}, z {list(cfg.z)}, C = {cfg.cycle}; "
          f"simulator: Amaranth (pysim), {args.samples} training samples + drain")
    for kind in ("reference", "fast"):
        net = Network(cfg, kind)
        t0 = time.perf_counter()
        r = simulate_amaranth(net, x, labels, 3, readout=False)
        dt = time.perf_counter() - t0
        steady = sorted(set(np.diff(r.clocks).tolist()))
        rows.append({"schedule": kind, "C": cfg.cycle, "reference_rtl": cfg.cycle + 4,
                     "measured_clocks_per_sample": steady,
                     "predicted_clocks_per_sample": net.clocks_per_sample,
                     "F": list(net.schedule.F), "U": list(net.schedule.U),
                     "simulated_clocks": r.total_clocks, "sim_seconds": round(dt, 2),
                     "sim_clocks_per_s": round(r.total_clocks / dt, 1)})
    print(f"{'schedule':>10} {'C':>5} {'ref RTL C+4':>12} {'measured':>9} {'vs C+4':>7} "
          f"{'F':>8} {'U':>8} {'sim clk/s':>10}")
    for row in rows:
        m = row["measured_clocks_per_sample"]
        print(f"{row['schedule']:>10} {row['C']:>5} {row['reference_rtl']:>12} "
              f"{'/'.join(map(str, m)):>9} {row['reference_rtl'] / m[0]:>6.3f}x "
              f"{str(row['F']):>8} {str(row['U']):>8} {row['sim_clocks_per_s']:>10}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
