"""``sparse-edge train`` (the golden model on a dataset) and ``sparse-edge
simulate`` (the compiled RTL simulation of the emitted Verilog, checked
against the golden model)."""

import sys
import time
from pathlib import Path

import numpy as np

from ..sim.golden import GoldenModel
from . import output
from .cli_common import (UserError, check_outputs, check_sample_counts, sample_split,
                         training_config)
from .config import NO_UPDATE, ConfigError
from .errors import OutputError
from .geometry import HW_SCHEDULES, hardware_schedule
from .schedule import Schedule
from .tools import ToolError, package_versions

__all__ = ["cmd_train", "cmd_simulate"]


def _schedule(cfg, name):
    if name == "reference":
        return Schedule.reference(cfg.L)
    if name == "sequential":
        return Schedule.sequential(cfg.L)
    if name == "fast":
        return hardware_schedule(cfg, "fast")
    raise UserError(f"unknown schedule {name!r}")


def cmd_train(args):
    from tqdm import tqdm

    cfg = training_config(args.config, args.epochs, args.schedule)
    check_sample_counts(args, minimum=1)
    if args.plot and not args.out:
        raise UserError("--plot writes accuracy.png into the --out directory: give --out DIR")
    try:
        check_outputs(out_dir=args.out, json_file=args.json)
    except OutputError as e:
        raise UserError(f"cannot write the results: {e}") from None
    ds, x_train, y_train, x_test, y_test = sample_split(cfg, args)
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
        "versions": package_versions(),
    }
    _write_outputs(args, cfg, schedule, model, rt, y_test, epochs, result)
    return 0


#: What ``train --out`` writes (a previous run's files of these names are replaced).
TRAIN_FILES = ("result.json", "golden.npz", "accuracy.png")


def _write_outputs(args, cfg, schedule, model, rt, y_test, epochs, result):
    """``--out``: result.json, golden.npz and accuracy.png published together
    (a failure leaves the previous run's folder as it was); ``--json``."""
    if args.out:
        with output.publish(args.out, "train", owned=TRAIN_FILES) as tmp:
            output.write_json(tmp / "result.json", result)
            model.save(tmp / "golden.npz", rt, y_test, np.full(len(y_test), NO_UPDATE),
                       schedule)
            if args.plot:
                _plot(epochs, tmp / "accuracy.png", f"{cfg.name} ({args.mode}, "
                                                     f"{schedule.name})")
        out = Path(args.out)
        print(f"wrote {out / 'result.json'} and {out / 'golden.npz'}"
              + (f"\nwrote {out / 'accuracy.png'}" if args.plot else ""))
    if args.json:
        output.write_json(args.json, result)


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


# -- simulate (compiled RTL) --------------------------------------------------------
def cmd_simulate(args):
    """Train and evaluate in the compiled RTL simulation (CXXRTL) of the emitted
    Verilog; ``--check`` compares it with the golden model on the same samples."""
    from tqdm import tqdm

    from ..sim.cxxrtl import (CompiledSimulator,  # deferred: imports Amaranth
                              check_against_golden, training_phases)
    cfg = training_config(args.config, args.epochs)
    check_sample_counts(args, minimum=0)
    schedule = args.schedule or (cfg.schedule if cfg.schedule in HW_SCHEDULES else "fast")
    ds, x_train, y_train, x_test, y_test = sample_split(cfg, args)
    if len(x_train) + len(x_test) == 0:
        raise UserError("no samples to simulate")
    check_outputs(json_file=args.json)
    images = np.concatenate([x_train, x_test])
    labels = np.concatenate([y_train, y_test])
    phases = training_phases(cfg, len(x_train), len(x_test))
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    sim = CompiledSimulator(cfg, schedule, log=log)
    geo = sim.geometry
    t0 = time.perf_counter()
    try:
        info = sim.build()
    except ToolError as e:
        raise UserError(str(e)) from None
    build_s = time.perf_counter() - t0
    print(f"simulating {cfg.name} ({'-'.join(map(str, cfg.layers))}, z={list(cfg.z)}) in the "
          f"compiled RTL on {ds.name}: {cfg.epochs} epoch(s) of {len(x_train)} train + "
          f"{len(x_test)} test samples, {schedule} hardware schedule "
          f"({geo.clocks_per_sample} clocks per sample)")
    total = sum(len(ph.samples) for ph in phases) + len(phases) * geo.drain_samples()
    bar = tqdm(total=total, desc="RTL", unit="sample", disable=args.quiet, file=sys.stderr,
               leave=False)
    last = [0]

    def progress(fed, preds, clocks, secs):
        bar.update(fed - last[0])
        last[0] = fed
        bar.set_postfix_str(f"{clocks / max(secs, 1e-9):,.0f} clk/s", refresh=False)

    try:
        r = sim.run_phases(images, labels, phases, progress=progress, keep=args.keep)
    except ToolError as e:
        raise UserError(str(e)) from None
    finally:
        bar.close()
    if r.run_dir is not None:
        print(f"simulation input, output and log kept in {r.run_dir}")
    rows = []
    for k, ph in enumerate(phases):
        acc = float((r.predictions[k] == labels[ph.samples]).mean()) if len(ph.samples) else None
        rows.append({"phase": ph.name, "samples": int(len(ph.samples)),
                     "eta_exp": None if ph.eta_exp == NO_UPDATE else int(ph.eta_exp),
                     "accuracy": acc})
        print(f"{ph.name:<18} {len(ph.samples):>6} samples  accuracy {acc:7.2%}")
    cps = r.clocks_per_sample()
    print(f"measured clocks per sample: {cps:g} (schedule: {geo.clocks_per_sample}); "
          f"{r.wall_clocks:,} clocks simulated in {r.seconds:.1f} s = "
          f"{r.wall_clocks / max(r.seconds, 1e-9):,.0f} clocks/s, "
          f"{r.stream_samples / max(r.seconds, 1e-9):,.0f} samples/s "
          f"(build {'cached' if info.cached else 'compiled'} in {build_s:.1f} s)")
    result = {"command": "simulate", "config": cfg.to_dict(), "config_digest": cfg.digest(),
              "dataset": ds.name, "schedule": geo.schedule.to_dict(),
              "clocks_per_sample": geo.clocks_per_sample, "measured_clocks_per_sample": cps,
              "phases": rows, "simulated_clocks": r.wall_clocks,
              "network_clocks": r.network_clocks, "run_seconds": round(r.seconds, 3),
              "clocks_per_second": round(r.wall_clocks / max(r.seconds, 1e-9), 1),
              "build_seconds": round(build_s, 3), "build_cached": info.cached,
              "build_dir": str(info.path), "versions": package_versions()}
    status = 0
    if args.check:
        gbar = tqdm(total=total - len(phases) * geo.drain_samples(), desc="golden",
                    unit="sample", disable=args.quiet, file=sys.stderr, leave=False)
        gdone = [0]

        def gprogress(n):
            gbar.update(n - gdone[0])
            gdone[0] = n

        try:
            rep = check_against_golden(geo, images, labels, phases, r, progress=gprogress)
        finally:
            gbar.close()
        for line in rep.lines():
            print(line)
        result["check"] = {"passed": rep.ok, "samples": rep.samples, "readouts": rep.readouts,
                           "mismatches": rep.counts, "first": [str(m) for m in rep.first]}
        status = 0 if rep.ok else 1
    if args.json:
        output.write_json(args.json, result)
    return status
