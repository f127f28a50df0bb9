#!/usr/bin/env python3
"""Training throughput of the golden model against a plain PyTorch baseline.

Measures training samples per second (every sample updates, eta = 2**-3) of

1. the fixed-point golden model, reference (pipelined) schedule, numba kernel
   (after a small warm-up run, so JIT compilation / cache loading is excluded),
2. the same with the pure-numpy kernel,
3. the fixed-point golden model, sequential schedule, numba kernel,
4. the float64 golden model, reference schedule (float mode has only the numpy path),
5. a plain PyTorch CPU implementation of the same sparse network at batch size 1:
   per junction a dense ``(n, p)`` weight matrix times a 0/1 mask built from the
   interleaver pattern (``mask[dst, src] = 1``), sigmoid activations, output
   delta ``a - y`` (sigmoid + cross-entropy), manual SGD step with lr 2**-3 under
   ``torch.no_grad()``; once with ``torch.set_num_threads(1)`` and once with
   torch's default thread count.

Data: MNIST training images from ``../shared/data/mnist.npz`` beside the
repository (or ``$SPARSE_EDGE_MNIST``) when present; otherwise scikit-learn's
8x8 digits with a config whose inputs match (``configs/demo.toml`` by
default); a config with more inputs and no MNIST falls back to random pixels
(announced in the output).  Inputs are zero-padded to ``layers[0]``.

Run::

    python bench/golden_throughput.py [--config configs/board.toml] [--samples 20000]
                                      [--json out.json]

``--samples`` (default 100000, MNIST tiled past its 60000 images) is the
sample count of the numba runs; the fixed-point numpy-kernel run uses 1/4 of
it, the float64 run 1/2 and the PyTorch runs 3/10 (override with
``--numpy-samples``, ``--float-samples``, ``--torch-samples``), so each row
takes 2-3 s on a 2-core machine.  Every row is timed ``--repeat`` times (default
3) on a freshly initialised model; the table shows the median.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BOARD_CONFIG = REPO / "configs" / "board.toml"
DEMO_CONFIG = REPO / "configs" / "demo.toml"
ETA_EXP = 3
WARMUP_SAMPLES = 256

try:
    from sparse_edge.gen.config import load_config
    from sparse_edge.sim.golden import GoldenModel, Schedule
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit(f"cannot import sparse_edge ({e}); run with the project's virtualenv, "
             f"e.g. .venv/bin/python bench/golden_throughput.py (make setup first)")


# -- data ------------------------------------------------------------------------
def mnist_path():
    env = os.environ.get("SPARSE_EDGE_MNIST")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data" / "mnist.npz"


def load_data(cfg, n, kind, explicit=False):
    """``n`` padded training inputs ``(n, layers[0])`` uint8 and labels, and a
    description.  ``kind``: mnist, digits or random.  Short datasets are tiled."""
    if kind == "mnist":
        with np.load(mnist_path()) as f:
            x = f["x_train"].reshape(len(f["x_train"]), -1)
            y = f["y_train"].astype(np.int64)
        desc = f"MNIST training images ({mnist_path()}), {x.shape[1]} features"
    elif kind == "digits":
        from sklearn.datasets import load_digits
        d = load_digits()
        # the project's pixel mapping of the 0..16 digits: min(16 v, 255)
        x = np.minimum(d.data.astype(np.int64) * 16, 255).astype(np.uint8)
        y = d.target.astype(np.int64)
        desc = f"scikit-learn load_digits() ({len(x)} images, {x.shape[1]} features)"
    else:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(n, cfg.inputs), dtype=np.uint8)
        y = rng.integers(0, cfg.classes, size=n).astype(np.int64)
        why = "as asked (--data random)" if explicit else \
            (f"MNIST not found at {mnist_path()}" if not mnist_path().exists() else
             f"no dataset with {cfg.inputs} features")
        desc = (f"RANDOM uint8 pixels ({cfg.inputs} features) -- {why}; not real data "
                f"(training dynamics, hence the figures, may differ somewhat)")
    if x.shape[1] != cfg.inputs:
        sys.exit(f"data has {x.shape[1]} features but config {cfg.name!r} has "
                 f"data.inputs = {cfg.inputs}")
    if y.max() >= cfg.classes:
        sys.exit(f"labels go up to {y.max()} but config {cfg.name!r} has "
                 f"data.classes = {cfg.classes}")
    reps = -(-n // len(x))
    if reps > 1:
        x, y = np.tile(x, (reps, 1)), np.tile(y, reps)
        desc += f", tiled x{reps}"
    xp = np.zeros((n, cfg.layers[0]), dtype=np.uint8)
    xp[:, :cfg.inputs] = x[:n]
    return xp, y[:n], desc


def choose_config_and_data(args):
    have_mnist = mnist_path().exists()
    config = args.config
    if config is None:
        config = BOARD_CONFIG if have_mnist or args.data == "random" else DEMO_CONFIG
    cfg = load_config(config)
    kind = args.data
    if kind == "auto":
        if cfg.inputs == 784 and have_mnist:
            kind = "mnist"
        elif cfg.inputs == 64:
            kind = "digits"
        else:
            kind = "random"
    if kind == "mnist" and not have_mnist:
        sys.exit(f"--data mnist: {mnist_path()} does not exist")
    return Path(config), cfg, kind


# -- timed implementations -----------------------------------------------------------
def time_golden(cfg, x, y, mode, kernel, schedule):
    model = GoldenModel(cfg, mode=mode, kernel=kernel)
    t0 = time.perf_counter()
    model.run(x, y, ETA_EXP, schedule)
    return time.perf_counter() - t0


class TorchSparseNet:
    """The configured sparse network as masked dense float32 weights (batch 1)."""

    def __init__(self, cfg, torch):
        from sparse_edge.gen.config import initial_float_parameters
        self.torch = torch
        self.cfg = cfg
        self.lr = 2.0 ** -ETA_EXP
        self.W, self.b, self.mask = [], [], []
        for pat, (w, b) in zip(cfg.patterns(), initial_float_parameters(cfg)):
            dense = np.zeros((pat.n, pat.p), dtype=np.float32)
            dense[pat.dst, pat.src] = w      # same initial draw as the float golden model
            mask = np.zeros((pat.n, pat.p), dtype=np.float32)
            mask[pat.dst, pat.src] = 1.0
            self.W.append(torch.from_numpy(dense))
            self.b.append(torch.from_numpy(b.astype(np.float32)))
            self.mask.append(torch.from_numpy(mask))

    def train(self, x_uint8, labels):
        """Plain per-sample SGD: forward, output delta a - y, backprop, update."""
        torch = self.torch
        J = len(self.W)
        n_out = self.cfg.layers[-1]
        with torch.no_grad():
            xs = torch.from_numpy(x_uint8).to(torch.float32) / 256.0
            ys = torch.from_numpy(labels)
            for i in range(len(xs)):
                acts = [xs[i]]
                for j in range(J):
                    s = torch.mv(self.W[j] * self.mask[j], acts[-1]) + self.b[j]
                    acts.append(torch.sigmoid(s))
                target = torch.zeros(n_out)
                target[ys[i]] = 1.0
                d = acts[-1] - target                       # sigmoid + cross-entropy
                for j in reversed(range(J)):
                    a_left = acts[j]
                    if j > 0:                               # delta of the hidden layer
                        d_left = torch.mv((self.W[j] * self.mask[j]).t(), d) \
                            * a_left * (1.0 - a_left)
                    # dL/dW of the masked product is outer(d, a) * mask
                    self.W[j].sub_(torch.outer(d, a_left).mul_(self.mask[j]), alpha=self.lr)
                    self.b[j].sub_(d, alpha=self.lr)
                    if j > 0:
                        d = d_left


def time_torch(cfg, x, y, threads, torch):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = TorchSparseNet(cfg, torch)
        net.train(x[:50], y[:50])                           # warm-up (allocator, dispatch)
        net = TorchSparseNet(cfg, torch)
        t0 = time.perf_counter()
        net.train(x, y)
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(old)


# -- main --------------------------------------------------------------------------
def _cpu_times():
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)          # idle + iowait
    return sum(v[:8]), idle


def other_cpu_use(interval=0.5):
    """Fraction of all CPUs busy (with other jobs) over ``interval`` seconds
    while this process sleeps; ``None`` where /proc/stat is missing."""
    try:
        t0, i0 = _cpu_times()
        time.sleep(interval)
        t1, i1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else None


class OtherLoad:
    """CPU time other processes took during a ``with`` block, as a fraction of
    all CPUs (``value``; ``None`` where /proc/stat is missing)."""

    def __enter__(self):
        self.value = None
        try:
            self.t0 = (_cpu_times(), time.process_time(), time.perf_counter())
        except (OSError, ValueError, IndexError):
            self.t0 = None
        return self

    def __exit__(self, *exc):
        if self.t0 is None:
            return
        (tot0, idle0), cpu0, wall0 = self.t0
        try:
            tot1, idle1 = _cpu_times()
        except (OSError, ValueError, IndexError):
            return
        busy = ((tot1 - tot0) - (idle1 - idle0)) / os.sysconf("SC_CLK_TCK")
        mine = time.process_time() - cpu0
        ncpu = os.cpu_count() or 1
        wall = time.perf_counter() - wall0
        if wall > 0:
            self.value = max(0.0, (busy - mine) / (wall * ncpu))


def machine_info(torch):
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        import numba
        numba_version = numba.__version__
    except ImportError:
        numba_version = None
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return {
        "nproc": usable,
        "loadavg_1min_at_start": load,
        "other_cpu_use_at_start": other_cpu_use(),
        "cpu": cpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba_version,
        "torch": torch.__version__ if torch else None,
        "torch_default_threads": torch.get_num_threads() if torch else None,
        "platform": platform.platform(),
    }


def fmt_other(values):
    vals = [v for v in values if v is not None]
    return f"{100 * max(vals):.0f}%" if vals else "?"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None,
                    help="network config (default configs/board.toml with MNIST, "
                         "configs/demo.toml with the digits when MNIST is absent)")
    ap.add_argument("--samples", type=int, default=100000,
                    help="training samples of the numba runs (default 100000)")
    ap.add_argument("--numpy-samples", type=int, default=None,
                    help="samples of the fixed-point numpy-kernel run (default samples/4)")
    ap.add_argument("--float-samples", type=int, default=None,
                    help="samples of the float64 run (default samples/2)")
    ap.add_argument("--torch-samples", type=int, default=None,
                    help="samples of the PyTorch runs (default 3*samples/10)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs per row; the median is reported (default 3)")
    ap.add_argument("--data", choices=("auto", "mnist", "digits", "random"), default="auto",
                    help="input data (default: MNIST if present and the config takes 784 "
                         "inputs, digits for 64 inputs, else random pixels)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = ap.parse_args(argv)

    n_numba = args.samples
    n_numpy = args.numpy_samples or max(1, n_numba // 4)
    n_float = args.float_samples or max(1, n_numba // 2)
    n_torch = args.torch_samples or max(1, 3 * n_numba // 10)
    if min(n_numba, n_numpy, n_float, n_torch) < 1:
        ap.error("sample counts must be >= 1")
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            sys.exit("PyTorch is not installed: pip install torch==2.13.0 (CPU build; "
                     "`make bench` does this), or pass --no-torch")

    config_path, cfg, data_kind = choose_config_and_data(args)
    x, y, data_desc = load_data(cfg, max(n_numba, n_numpy, n_float, n_torch), data_kind,
                             explicit=args.data == "random")
    info = machine_info(torch)
    command = " ".join(shlex.quote(a) for a in [sys.executable, sys.argv[0]] + sys.argv[1:])
    try:
        cfg_shown = config_path.resolve().relative_to(REPO)
    except ValueError:
        cfg_shown = config_path

    print("golden-model training throughput")
    print(f"  command : {command}")
    print(f"  machine : nproc={info['nproc']}  cpu={info['cpu'] or '?'}")
    print(f"            python {info['python']}, numpy {info['numpy']}, numba "
          f"{info['numba']}, torch {info['torch']} (default threads "
          f"{info['torch_default_threads']})")
    use = info["other_cpu_use_at_start"]
    if use is not None:
        busy = use * info["nproc"] >= 0.25
        print(f"  load    : other jobs used {100 * use:.0f}% of the {info['nproc']} CPUs just "
              f"before the run" + ("  *** machine busy: figures may be low/noisy ***"
                                   if busy else ""))
    print(f"  config  : {cfg_shown} ({cfg.name}: layers {list(cfg.layers)}, fanout "
          f"{list(cfg.fanout)}, fanin {list(cfg.fanin)}, {sum(cfg.edges)} edges, "
          f"format {cfg.fmt})")
    if data_kind == "random":
        print("  data    : *** WARNING *** " + data_desc)
    else:
        print(f"  data    : {data_desc}")
    print(f"  training: every sample updates, eta = 2**-{ETA_EXP}; each row timed "
          f"{args.repeat}x on a fresh model, median shown")

    L = cfg.L
    ref, seq = Schedule.reference(L), Schedule.sequential(L)

    # numba warm-up: compile or load the on-disk cache before any timed run
    t0 = time.perf_counter()
    GoldenModel(cfg, "fixed", kernel="numba").run(x[:WARMUP_SAMPLES], y[:WARMUP_SAMPLES],
                                                   ETA_EXP, ref)
    warmup = time.perf_counter() - t0
    print(f"  warm-up : {WARMUP_SAMPLES}-sample numba run before timing took {warmup:.2f} s "
          f"(JIT compile / cache load, excluded from the figures)")
    # tiny warm-ups of the numpy paths too (first-call imports, table building)
    GoldenModel(cfg, "fixed", kernel="numpy").run(x[:8], y[:8], ETA_EXP, ref)
    GoldenModel(cfg, "float").run(x[:8], y[:8], ETA_EXP, ref)
    print()

    rows = []

    def add(key, label, n, fn):
        print(f"  running {label} ({n} samples x {args.repeat}) ...", end="", flush=True)
        times, others = [], []
        for _ in range(args.repeat):
            with OtherLoad() as other:
                times.append(fn(n))
            others.append(other.value)
        secs = float(np.median(times))
        rates = [n / t for t in times]
        rows.append({"key": key, "implementation": label, "samples": n, "seconds": secs,
                     "samples_per_s": n / secs, "runs_seconds": times,
                     "samples_per_s_min": min(rates), "samples_per_s_max": max(rates),
                     "other_cpu_use": others})
        print(" " + ", ".join(f"{r:,.0f}" for r in rates) + " samples/s")

    add("fixed_reference_numba", "golden fixed, reference schedule, numba", n_numba,
        lambda n: time_golden(cfg, x[:n], y[:n], "fixed", "numba", ref))
    add("fixed_reference_numpy", "golden fixed, reference schedule, numpy", n_numpy,
        lambda n: time_golden(cfg, x[:n], y[:n], "fixed", "numpy", ref))
    add("fixed_sequential_numba", "golden fixed, sequential schedule, numba", n_numba,
        lambda n: time_golden(cfg, x[:n], y[:n], "fixed", "numba", seq))
    add("float_reference_numpy", "golden float64, reference schedule, numpy", n_float,
        lambda n: time_golden(cfg, x[:n], y[:n], "float", "auto", ref))
    if torch is not None:
        add("torch_batch1_1thread", "PyTorch masked dense, batch 1, 1 thread", n_torch,
            lambda n: time_torch(cfg, x[:n], y[:n], 1, torch))
        dt = info["torch_default_threads"]
        add("torch_batch1_default_threads",
            f"PyTorch masked dense, batch 1, {dt} threads (default)", n_torch,
            lambda n: time_torch(cfg, x[:n], y[:n], dt, torch))

    base = next((r["samples_per_s"] for r in rows if r["key"] == "torch_batch1_1thread"), None)
    for r in rows:
        r["vs_torch_1thread"] = r["samples_per_s"] / base if base else None

    w = max(len(r["implementation"]) for r in rows)
    print()
    head = f"  {'implementation':<{w}}  {'samples':>7}  {'time s':>7}  {'samples/s':>10}  " \
           f"{'min-max':>15}  {'vs PyTorch b1 1T':>16}  {'other load':>10}"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for r in rows:
        ratio = f"{r['vs_torch_1thread']:.2f}x" if base else "-"
        print(f"  {r['implementation']:<{w}}  {r['samples']:>7}  {r['seconds']:>7.2f}  "
              f"{r['samples_per_s']:>10,.0f}  "
              f"{r['samples_per_s_min']:>7,.0f}-{r['samples_per_s_max']:<7,.0f}  {ratio:>16}  "
              f"{fmt_other(r['other_cpu_use']):>10}")
    print()
    print("  Notes: golden rows include the pipeline drain; the PyTorch rows use float32, a")
    print("  sequential (non-pipelined) SGD order and the same initial weights as the float model.")
    print("  'other load' = largest share of all CPUs that other processes used during one of")
    print("  the row's timed runs (0% on a quiet machine; rows above ~10% are suspect).")

    if args.json:
        out = {
            "benchmark": "golden_throughput",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "machine": info,
            "config": {"path": str(cfg_shown), **cfg.to_dict()},
            "data": {"kind": data_kind, "description": data_desc},
            "eta_exp": ETA_EXP,
            "numba_warmup": {"samples": WARMUP_SAMPLES, "seconds": warmup},
            "repeat": args.repeat,
            "statistic": "median",
            "results": rows,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"  wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
