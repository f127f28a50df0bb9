"""Compiled RTL simulation (CXXRTL) speed against Amaranth's simulator.

Builds (or finds in the cache) the CXXRTL simulation of the emitted Verilog,
trains on MNIST samples in it and reports simulated clocks/s and samples/s,
with the build time split into Verilog emission, Yosys and C++.  In the same
run it simulates a few samples of the same design in Amaranth's simulator and
prints the ratio.  The compiled run is checked against the golden model
(predictions, clock stamps, weights and biases bit for bit).

    python bench/compiled_sim.py [--config configs/board.toml] [--samples 10000]
    python bench/compiled_sim.py --full          # 60,000 + 10,000 test samples

``--fresh`` builds into an empty cache (to time the compile); by default the
build cache of ``sparse-edge simulate`` is used.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from sparse_edge.gen.config import load_config  # noqa: E402
from sparse_edge.gen.datasets import load_dataset, padded_inputs  # noqa: E402
from sparse_edge.hdl.network import Network  # noqa: E402
from sparse_edge.sim.cxxrtl import (CompiledSimulator, Phase, check_against_golden,  # noqa: E402
                                    training_phases)
from sparse_edge.sim.rtl import simulate_amaranth  # noqa: E402

try:
    from golden_throughput import OtherLoad, other_cpu_use  # noqa: E402
except ImportError:  # pragma: no cover
    OtherLoad = other_cpu_use = None


def mnist_path():
    env = os.environ.get("SPARSE_EDGE_MNIST")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "mnist.npz"


def amaranth_rate(net, x, labels, short, long):
    """Clocks/s of Amaranth's simulator: two runs of different lengths, the
    difference cancels elaboration and set-up."""
    times, clocks = [], []
    for n in (short, long):
        t0 = time.perf_counter()
        r = simulate_amaranth(net, x[:n], labels[:n], 3, readout=False)
        times.append(time.perf_counter() - t0)
        clocks.append(r.total_clocks)
    rate = (clocks[1] - clocks[0]) / max(times[1] - times[0], 1e-9)
    return rate, times, clocks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "board.toml"))
    ap.add_argument("--schedule", choices=("fast", "reference"),
                    help="hardware schedule (default: the config's)")
    ap.add_argument("--samples", type=int, default=10000,
                    help="MNIST training samples in the compiled run (default 10000)")
    ap.add_argument("--full", action="store_true",
                    help="one full epoch: 60,000 training + 10,000 test samples")
    ap.add_argument("--amaranth-samples", type=int, default=12,
                    help="extra samples of the long Amaranth run over the short one")
    ap.add_argument("--fresh", action="store_true", help="build into an empty cache")
    ap.add_argument("--no-check", action="store_true", help="skip the golden-model check")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    schedule = args.schedule or (cfg.schedule if cfg.schedule in ("fast", "reference")
                                 else "fast")
    if cfg.inputs == 784:
        if not mnist_path().exists():
            sys.exit(f"MNIST file {mnist_path()} not found (set SPARSE_EDGE_MNIST)")
        ds = load_dataset(str(mnist_path()))
    else:
        ds = load_dataset("digits")
    x_train = padded_inputs(ds.x_train, cfg)
    x_test = padded_inputs(ds.x_test, cfg)
    n_train = len(x_train) if args.full else min(args.samples, len(x_train))
    n_test = len(x_test) if args.full else 0
    images = np.concatenate([x_train[:n_train], x_test[:n_test]])
    labels = np.concatenate([ds.y_train[:n_train], ds.y_test[:n_test]])
    phases = (training_phases(cfg, n_train, n_test, epochs=1) if args.full else
              [Phase("train", np.arange(n_train), cfg.eta_for_epoch(0))])

    load0 = other_cpu_use() if other_cpu_use else None
    print(f"config {cfg.name}: layers {cfg.layers}, z {list(cfg.z)}, {schedule} schedule; "
          f"{os.cpu_count()} CPUs" + (f", other jobs using {100 * load0:.0f}% of them"
                                      if load0 is not None else ""))
    net = Network(cfg, schedule)
    cache = Path(tempfile.mkdtemp(prefix="se-bench-cache-")) if args.fresh else None
    t0 = time.perf_counter()
    sim = CompiledSimulator(net, cache_dir=cache, log=lambda m: print("  " + m, flush=True))
    info = sim.build()
    build_s = time.perf_counter() - t0
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in info.seconds.items())
    print(f"build: {build_s:.1f} s ({'cached' if info.cached else 'compiled'}"
          f"{'; ' + parts if parts else ''})")

    load = OtherLoad() if OtherLoad else None
    if load:
        load.__enter__()
    r = sim.run_phases(images, labels, phases)
    if load:
        load.__exit__(None, None, None)
    cps = r.wall_clocks / r.seconds
    sps = r.stream_samples / r.seconds
    print(f"compiled (CXXRTL): {r.stream_samples} samples (drain included), "
          f"{r.wall_clocks:,} clocks in {r.seconds:.2f} s = {cps:,.0f} clocks/s, "
          f"{sps:,.0f} samples/s; measured {r.clocks_per_sample():g} clocks/sample"
          + (f"; other jobs {100 * load.value:.0f}% of the CPUs" if load and load.value
             is not None else ""))
    for k, ph in enumerate(phases):
        acc = (r.predictions[k] == labels[ph.samples]).mean()
        print(f"  {ph.name}: {len(ph.samples)} samples, accuracy {acc:.2%}")
    check = None
    if not args.no_check:
        rep = check_against_golden(net, images, labels, phases, r)
        check = rep.ok
        for line in rep.lines():
            print(line)

    na = args.amaranth_samples
    rate, times, clocks = amaranth_rate(net, x_train, ds.y_train, 1, 1 + na)
    whole = clocks[1] / times[1]
    print(f"Amaranth simulator: {clocks[0]} and {clocks[1]} clocks in {times[0]:.1f} and "
          f"{times[1]:.1f} s -> {rate:,.1f} clocks/s in steady state ({whole:,.1f} clocks/s "
          f"including elaboration and set-up)")
    ratio = cps / rate
    print(f"compiled / Amaranth: {ratio:,.0f}x (steady state; {cps / whole:,.0f}x against the "
          f"whole Amaranth run)")
    total = build_s + r.seconds
    print(f"wall time, build + run: {total:.1f} s")
    out = {"config": cfg.to_dict(), "schedule": schedule, "cpus": os.cpu_count(),
           "other_cpu_use_at_start": load0,
           "build_seconds": round(build_s, 2), "build_cached": info.cached,
           "build_parts": {k: round(v, 2) for k, v in info.seconds.items()},
           "samples": r.stream_samples, "clocks": r.wall_clocks,
           "run_seconds": round(r.seconds, 3), "clocks_per_second": round(cps, 1),
           "samples_per_second": round(sps, 1),
           "measured_clocks_per_sample": r.clocks_per_sample(),
           "amaranth_clocks_per_second": round(rate, 2), "ratio": round(ratio, 1),
           "amaranth_clocks_per_second_with_setup": round(whole, 2),
           "golden_check_passed": check,
           "accuracy": {ph.name: float((r.predictions[k] == labels[ph.samples]).mean())
                        for k, ph in enumerate(phases)}}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    if cache is not None:
        import shutil
        shutil.rmtree(cache, ignore_errors=True)
    return 0 if check in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
