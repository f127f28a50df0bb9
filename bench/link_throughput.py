"""Link throughput: bytes per MNIST sample and samples/s through the simulated
board at a 3 Mbaud bit time, beside the accelerator's rate and the reference
design's ~15 samples/s (115,200 baud, raw pixels).

    python bench/link_throughput.py [--config configs/board.toml] [--cycle 128]
        [--clock-mhz 60] [--samples 100] [--json out/link_throughput.json]

1. **Bytes per sample** (no simulation): the SAMPLE frame of every one of
   2,000 MNIST training images (pixel code of gen/protocol.py, framing and
   stuffing included), and the REPORT that answers it.
2. **The simulated board**: the CXXRTL system top of the config (network +
   UART + link engine) with the UART divisor of a 3 Mbaud link at the given
   board clock (60 MHz / 3 Mbaud = 20 clocks per bit), driven by the host
   driver over its TCP socket.  The rate is measured in the board's own time:
   its clock counter (STATUS ``uptime_clocks``) over a training phase, so it
   is what a real board at that clock would do; the wall-clock rate of the
   simulation is printed beside it.

Needs g++ and the MNIST file (``../shared/data/mnist.npz`` or
``$SPARSE_EDGE_MNIST``).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from sparse_edge.boards.host import Board
from sparse_edge.gen import protocol as P
from sparse_edge.gen.config import initial_parameters, load_config
from sparse_edge.gen.datasets import load_dataset, padded_inputs
from sparse_edge.gen.geometry import hardware_schedule
from sparse_edge.sim.board import SimulatedBoard

REFERENCE_SAMPLES_PER_S = 15          # the reference RTL's UART feed (SPEC section 8)
BAUD = 3_000_000


def frame_sizes(cfg, images):
    sb = P.symbol_bits(cfg.fmt)
    sample = np.array([len(P.host_frame(P.SAMPLE, 0, 0, P.sample_payload(
        0, 0, 3, P.encode_pixels(x, sb)))) for x in images])
    report = len(P.device_frame(P.REPORT, 0, P.report_payload(
        P.Report(P.R_ACCEPTED, 0, 0, 0, 0, b"\x00"))))
    return sample, report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/board.toml")
    ap.add_argument("--cycle", type=int, default=128)
    ap.add_argument("--clock-mhz", type=float, default=60.0)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if args.cycle:
        cfg = cfg.with_(cycle=args.cycle, name=f"{cfg.name}_c{args.cycle}")
    ds = load_dataset("mnist")
    x = ds.x_train.reshape(len(ds.x_train), -1)
    sample, report = frame_sizes(cfg, x[:2000])
    mean = float(sample.mean())
    print(f"{cfg.name}: {'-'.join(map(str, cfg.layers))}, C = {cfg.cycle}, {cfg.fmt}")
    print(f"SAMPLE frame over 2,000 MNIST images: mean {mean:.1f} bytes, median "
          f"{np.median(sample):.0f}, max {sample.max()} (raw pixels would be {cfg.inputs}); "
          f"REPORT {report} bytes + 1 per prediction")
    line_rate = BAUD / 10 / mean
    print(f"at {BAUD:,} baud: {line_rate:,.0f} samples/s from the line rate alone")

    divisor = round(args.clock_mhz * 1e6 / BAUD)
    clock_hz = int(divisor * BAUD)
    kind = "fast"
    sched = hardware_schedule(cfg, kind)
    accel = clock_hz / sched.clocks_per_cycle
    sim = SimulatedBoard(cfg, kind, divisor=divisor, clock_hz=clock_hz, slots=16,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    sim.build()
    build_s = time.perf_counter() - t0
    url = sim.start()
    try:
        board = Board(url, cfg, timeout=60, retry=2.0)
        board.flush()
        board.write_parameters(initial_parameters(cfg))
        xs = padded_inputs(x[:args.samples], cfg)
        ys = ds.y_train[:args.samples]
        s0 = board.status()
        t1 = time.perf_counter()
        board.train(xs, ys, 3)
        wall = time.perf_counter() - t1
        s1 = board.status()
    finally:
        sim.stop()
    clocks = s1["uptime_clocks"] - s0["uptime_clocks"]
    sent = s1["host"]["bytes_sent"] - s0["host"]["bytes_sent"]
    n_frames = args.samples + board.info.drain_samples
    board_rate = args.samples * clock_hz / clocks
    print(f"simulated board: {args.samples} MNIST samples (+{board.info.drain_samples} drain) in "
          f"{clocks:,} clocks at {clock_hz / 1e6:g} MHz (divisor {divisor}) = "
          f"{board_rate:,.0f} samples/s in board time; {sent / n_frames:.1f} bytes sent per "
          f"frame; wall clock {args.samples / wall:.1f} samples/s ({clocks / wall:,.0f} "
          f"clocks/s, build {build_s:.0f} s)")
    print(f"accelerator at {clock_hz / 1e6:g} MHz: {accel:,.0f} samples/s "
          f"({sched.clocks_per_cycle} clocks per sample); reference design's UART feed: "
          f"~{REFERENCE_SAMPLES_PER_S} samples/s; link / reference = "
          f"{board_rate / REFERENCE_SAMPLES_PER_S:.0f}x")
    result = {"config": cfg.to_dict(), "baud": BAUD, "clock_hz": clock_hz, "divisor": divisor,
              "sample_frame_bytes": {"mean": round(mean, 2), "median": float(np.median(sample)),
                                     "max": int(sample.max())},
              "report_bytes": report, "line_rate_samples_per_s": round(line_rate, 1),
              "board_samples_per_s": round(board_rate, 1), "board_clocks": clocks,
              "samples": args.samples, "wall_samples_per_s": round(args.samples / wall, 2),
              "accelerator_samples_per_s": round(accel, 1),
              "reference_samples_per_s": REFERENCE_SAMPLES_PER_S,
              "status": {k: v for k, v in s1.items() if k != "host"}, "host": s1["host"]}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
