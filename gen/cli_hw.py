"""The hardware commands: ``generate``, ``estimate``, ``synth``, ``explore``."""

import time
from pathlib import Path

from . import output
from .cli_common import UserError, check_outputs, hw_config, hw_target
from .cli_sweep import executor_from_args
from .config import ConfigError, load_config
from .estimate import estimate
from .tools import SynthError, package_versions

__all__ = ["cmd_generate", "cmd_estimate", "cmd_synth", "cmd_explore"]


# -- generate ---------------------------------------------------------------------
def cmd_generate(args):
    from .flow import generate  # deferred: imports Amaranth (check must not)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError(str(e)) from None
    generate(cfg, args.out, args.schedule, name=args.name)
    print((Path(args.out) / "summary.txt").read_text(), end="")
    return 0


# -- synth / estimate / explore ---------------------------------------------------------
def cmd_estimate(args):
    cfg = hw_config(args)
    t = hw_target(args.target)
    check_outputs(json_file=args.json)
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


def parse_seeds(text, seed=1):
    """``--seeds 1,2,3`` as a list of distinct non-negative ints (``seed``:
    ``--seed``, which a sweep replaces: it must be left at its default)."""
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: give nextpnr seeds separated by commas, "
                        "e.g. --seeds 1,2,3") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: give distinct non-negative seeds separated by "
                        "commas, e.g. --seeds 1,2,3")
    if seed != 1:
        raise UserError(f"--seed {seed} and --seeds {text}: give one or the other")
    return seeds


def cmd_synth(args):
    from .seed_sweep import format_sweep, sweep_seeds  # deferred: imports Amaranth
    from .synth import (DoesNotFit, Progress, SynthOptions,  # deferred: imports Amaranth
                        format_report, synthesize)
    cfg = hw_config(args)
    t = hw_target(args.target)
    pnr_args = ("--placer", args.placer) if args.placer else ()
    if args.placer_density is not None:
        if not 0 < args.placer_density <= 1:
            raise UserError(f"--placer-density {args.placer_density}: must be in (0, 1] "
                            "(nextpnr's HeAP default is 0.9)")
        if args.placer not in (None, "heap"):
            raise UserError(f"--placer-density applies to the heap placer, not "
                            f"--placer {args.placer}")
        pnr_args += ("--placer-heap-beta", f"{args.placer_density:g}")
    opts = SynthOptions(schedule=args.schedule, freq_mhz=args.freq, seed=args.seed,
                        max_dsp=args.max_dsp, check_fit=not args.ignore_fit,
                        pnr=not args.no_pnr, pack=not args.no_pack,
                        global_enable=not args.no_global_enable,
                        nextpnr_args=pnr_args)
    seeds = parse_seeds(args.seeds, args.seed) if args.seeds is not None else None
    if seeds is not None and args.no_pnr:
        raise UserError("--seeds with --no-pnr: the seeds are nextpnr's; without place and "
                        "route there is nothing to sweep")
    check_outputs(out_dir=args.out, json_file=args.json)
    prog = Progress(f"{cfg.name} {t.name}", quiet=args.quiet)
    try:
        if seeds is None:
            rep = synthesize(cfg, t, opts, build_root=args.build_dir, progress=prog,
                             force=args.rebuild)
        else:
            rep = sweep_seeds(cfg, t, opts, seeds, build_root=args.build_dir, progress=prog,
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
    if seeds is not None:
        print(format_sweep(rep["seed_sweep"]))
        print(f"the build directory is seed {rep['seed_sweep']['best_seed']}'s; every seed's "
              f"results: {bdir / 'seeds'}")
    if args.out:
        files = ("report.json", "summary.txt")
        with output.publish(args.out, "synth", owned=files) as tmp:
            if seeds is None:
                for name in files:
                    output.write_bytes(tmp / name, (bdir / name).read_bytes())
            else:       # the best seed's report, with the sweep
                output.write_json(tmp / "report.json", rep)
                output.write_text(tmp / "summary.txt", format_report(rep) + "\n"
                                  + format_sweep(rep["seed_sweep"]) + "\n")
        print(f"copied report.json and summary.txt to {args.out}")
    if args.json:
        output.write_json(args.json, rep)
    return 0


def cmd_explore(args):
    from .explore import explore, format_points  # deferred: Amaranth
    from .synth import SynthOptions  # deferred: imports Amaranth
    cfg = hw_config(args)
    t = hw_target(args.target)
    if args.synth is not None and args.synth < 0:
        raise UserError(f"--synth must be >= 0, not {args.synth}")
    opts = SynthOptions(schedule=args.schedule, freq_mhz=args.freq, seed=args.seed)
    check_outputs(out_dir=args.out, json_file=args.json)
    executor = executor_from_args(args) if args.synth else None
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
              "pareto": [p.cycle for p in front], "versions": package_versions()}
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
