"""What junction pipelining costs in accuracy: the bit-exact golden model of
the board network trained on MNIST under the sequential (no staleness),
reference and fast (hardware, exactly C clocks per sample) schedules.

    python bench/schedule_accuracy.py [--config configs/board.toml] [--epochs 3]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from sparse_edge.gen.config import NO_UPDATE, load_config
from sparse_edge.gen.datasets import check_compatible, load_dataset, padded_inputs
from sparse_edge.gen.schedule import Schedule
from sparse_edge.hdl.network import hardware_schedule
from sparse_edge.sim.golden import GoldenModel

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "board.toml"))
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = load_config(args.config)
    ds = load_dataset(args.data)
    check_compatible(ds, cfg)
    x, xt = padded_inputs(ds.x_train, cfg), padded_inputs(ds.x_test, cfg)
    schedules = [Schedule.sequential(cfg.L), hardware_schedule(cfg, "reference"),
                 hardware_schedule(cfg, "fast")]
    rows = []
    for sched in schedules:
        m = GoldenModel(cfg, "fixed")
        accs = []
        t0 = time.perf_counter()
        for epoch in range(args.epochs):
            order = np.random.default_rng([cfg.shuffle_seed, epoch]).permutation(len(x))
            m.run(x[order], ds.y_train[order], cfg.eta_for_epoch(epoch), sched)
            p = m.run(xt, ds.y_test, NO_UPDATE, sched).predictions
            accs.append(float((p == ds.y_test).mean()))
        rows.append({"schedule": sched.name, "F": list(sched.F), "U": list(sched.U),
                     "staleness": list(sched.staleness),
                     "clocks_per_sample": sched.clocks_per_cycle,
                     "test_accuracy_per_epoch": accs, "seconds": round(time.perf_counter() - t0, 1)})
    print(f"{cfg.name} {cfg.layers} {cfg.fmt} on {ds.name}, {args.epochs} epochs, "
          f"eta 2^-{list(cfg.eta_exp)}, bit-exact golden model")
    print(f"{'schedule':>11} {'F':>8} {'U':>8} {'staleness':>10} {'clk/sample':>10}  "
          + "  ".join(f"ep{e + 1:>2}" for e in range(args.epochs)))
    for r in rows:
        print(f"{r['schedule']:>11} {str(r['F']):>8} {str(r['U']):>8} {str(r['staleness']):>10} "
              f"{str(r['clocks_per_sample'] or '-'):>10}  "
              + "  ".join(f"{100 * a:5.2f}" for a in r["test_accuracy_per_epoch"]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
