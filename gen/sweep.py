"""Accuracy-and-cost sweeps: many networks, trained and estimated, on any executor.

A sweep spec (TOML) names a base config and the points to try::

    name = "sweep-small"
    base = "demo.toml"              # a config file (relative to the spec) or a [base] table

    [options]
    dataset = "digits"              # digits | mnist | an .npz | an IDX folder
    epochs = 3                      # golden-model training epochs (0: estimate only)
    samples = 1000                  # first N training samples (default: all)
    test_samples = 360              # first N test samples (default: all)
    targets = ["ecp5-25f"]          # estimates for each; the first decides fit and fastest-fit
    schedule = "fast"               # training schedule: fast | reference | sequential
    mode = "fixed"                  # fixed (bit-exact) | float
    synth = false                   # also synthesize (Yosys + nextpnr) on targets it fits

    [grid]                          # cartesian product of the axes
    network = [{layers = [64, 32, 16], fanout = [8, 8]},
               {layers = [64, 64, 16], fanout = [8, 16]}]
    format = ["Q(2,7)", "Q(2,9)"]
    cycle = ["fastest-fit"]

    [[points]]                      # and/or an explicit list
    layers = [64, 16, 16]
    fanout = [4, 16]

Axes (in ``[grid]`` as lists, in ``[[points]]`` as single values):
``network`` (a table of any of the other axes, set together), ``layers``,
``fanout``, ``format`` (``"Q(i,f)"`` or ``[i, f]``), ``cycle`` (a ``C``,
``"all"`` for every legal ``C``, ``"fastest-fit"`` for the smallest ``C``
whose estimate fits the first target, or ``"base"``), ``interleaver``,
``interleaver_seed``, ``init_seed``, ``eta_exp`` (learning-rate exponent or
list per epoch), ``shuffle_seed``.  Options may be overridden per run
(``sparse-edge sweep --epochs ...``).

Each point is resolved to a validated config; an illegal one is reported with
the validator's message and not run.  Its **key** is a hash of the resolved
config (name excluded) and the job options, so a sweep into the same ``--out``
reads finished points back from ``OUT/points/KEY.json`` (one atomic file per
point, written as it finishes) and runs only what is missing or failed.  The
table (``sweep.csv``, ``sweep.json``) and the picture (``sweep.png``: test
accuracy against LUTs and against samples/s, Pareto fronts marked, points
that do not fit the first target drawn hollow) are rebuilt from every point
at the end.
"""

import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..sim.golden import GoldenModel
from .config import NO_UPDATE, parse_config
from .datasets import DatasetError, check_compatible, load_dataset, padded_inputs
from .estimate import estimate
from .executors import JobBar
from .geometry import hardware_schedule
from .output import check_dir, remove_tree, write_json
from .schedule import Schedule
from .sweep_report import format_table, pareto, plot_sweep, summary, table_rows, write_table
from .sweep_spec import (AXES, OPTIONS, POINT_FILE_VERSION, SweepError, SweepJob, SweepPoint,
                         SweepSpec, expand, hw_schedule_of, job_options, load_spec, parse_spec)
from .synth import DoesNotFit, PnRFailed, SynthOptions, synthesize
from .tools import SynthError

__all__ = ["SweepError", "SweepSpec", "SweepPoint", "SweepJob", "load_spec", "parse_spec",
           "expand", "run_point", "run_sweep", "pareto", "table_rows", "write_table",
           "plot_sweep", "format_table", "summary", "AXES", "OPTIONS"]


# -- the job --------------------------------------------------------------------------------

_DATA = {}          # per worker process: dataset spec -> Dataset (MNIST is read once)


def _dataset(spec):
    ds = _DATA.get(spec)
    if ds is None:
        ds = _DATA[spec] = load_dataset(spec)
    return ds


def _schedule(cfg, name):
    if name == "reference":
        return Schedule.reference(cfg.L)
    if name == "sequential":
        return Schedule.sequential(cfg.L)
    return hardware_schedule(cfg, "fast")


def train_point(cfg, dataset, samples=None, test_samples=None, mode="fixed", epochs=None):
    """Train ``cfg`` on ``dataset`` as ``sparse-edge train`` does (same shuffle,
    learning rates, schedule and evaluation); per-epoch accuracies."""
    ds = _dataset(dataset)
    check_compatible(ds, cfg)
    x_train, y_train = padded_inputs(ds.x_train, cfg), ds.y_train
    x_test, y_test = padded_inputs(ds.x_test, cfg), ds.y_test
    if samples is not None:
        x_train, y_train = x_train[:samples], y_train[:samples]
    if test_samples is not None:
        x_test, y_test = x_test[:test_samples], y_test[:test_samples]
    if len(x_test) == 0:
        raise DatasetError(f"dataset {ds.name!r} has an empty test split")
    schedule = _schedule(cfg, cfg.schedule)
    model = GoldenModel(cfg, mode)
    rows, train_s = [], 0.0
    for epoch in range(cfg.epochs if epochs is None else epochs):
        k = cfg.eta_for_epoch(epoch)
        order = np.random.default_rng([cfg.shuffle_seed, epoch]).permutation(len(x_train))
        t0 = time.perf_counter()
        r = model.run(x_train[order], y_train[order], k, schedule)
        train_s += time.perf_counter() - t0
        rt = model.run(x_test, y_test, NO_UPDATE, schedule)
        rows.append({"epoch": epoch + 1, "eta_exp": k,
                     "train_accuracy": float((r.predictions == y_train[order]).mean()),
                     "test_accuracy": float((rt.predictions == y_test).mean())})
    return {"dataset": ds.name, "train_samples": int(len(x_train)),
            "test_samples": int(len(x_test)), "schedule": schedule.name, "mode": mode,
            "epochs": rows, "final_test_accuracy": rows[-1]["test_accuracy"] if rows else None,
            "train_seconds": round(train_s, 3),
            "train_samples_per_s": round(len(rows) * len(x_train) / train_s, 1)
            if train_s else None}


def _estimate_summary(cfg, target, schedule, freq, max_dsp=None):
    e = estimate(cfg, target, schedule, freq, max_dsp=max_dsp)
    r = e.resources
    return {"lut": r["lut"], "ff": r["ff"], "dsp": r["dsp"], "bram": r["bram"],
            "lutram": r["lutram"], "multipliers": e.multipliers, "fits": e.fits,
            "utilization": round(e.utilization, 4), "clocks_per_sample": e.clocks_per_sample,
            "fmax_mhz": e.fmax_mhz, "fmax_assumed": e.fmax_assumed,
            "samples_per_s": round(e.samples_per_s, 1),
            "over": [k for k, _, _ in e.over]}


def _synth_point(cfg, target, opts, est):
    if not est["fits"]:
        return {"status": "skipped", "message": f"estimate does not fit {target} "
                f"({', '.join(est['over'])} over)"}
    so = SynthOptions(schedule=hw_schedule_of({"schedule": cfg.schedule}),
                      freq_mhz=opts["freq_mhz"], seed=opts["synth_seed"],
                      max_dsp=opts["max_dsp"])
    try:
        rep = synthesize(cfg, target, so, build_root=opts["build_dir"])
        status, message = "ok", None
    except DoesNotFit as e:
        rep, status, message = e.report, "does_not_fit", str(e)
    except PnRFailed as e:
        rep, status, message = None, "pnr_failed", str(e)
    except SynthError as e:
        rep, status, message = None, "error", str(e)
    rep = rep or {}
    res = {k: (v or {}).get("used") for k, v in (rep.get("resources") or {}).items()}
    return {"status": status, "message": message, "resources": res,
            "fmax_mhz": (rep.get("timing") or {}).get("fmax_mhz"),
            "samples_per_s": (rep.get("throughput") or {}).get("samples_per_s"),
            "build_dir": str(Path(rep["build_dir"]).resolve()) if rep.get("build_dir") else None}


def run_point(job):
    """Worker entry point: train and estimate one point (and synthesize it
    with ``synth``); a JSON-able dict with ``status`` ``ok``."""
    opts = job.options
    cfg = parse_config(tomllib.loads(job.config_toml), source=job.source)
    out = {"status": "ok", "key": job.key, "label": job.label}
    if cfg.epochs and opts.get("epochs") != 0:
        out["accuracy"] = train_point(cfg, opts["dataset"], opts["samples"],
                                      opts["test_samples"], opts["mode"])
    else:
        out["accuracy"] = None
    hws = hw_schedule_of({"schedule": cfg.schedule})
    out["estimates"] = {t: _estimate_summary(cfg, t, hws, opts["freq_mhz"])
                        for t in opts["targets"]}
    if opts["synth"]:
        out["synth"] = {t: _synth_point(cfg, t, opts, out["estimates"][t])
                        for t in opts["targets"]}
    return out


# -- running a sweep ------------------------------------------------------------------------

def _point_path(out, key):
    return Path(out) / "points" / f"{key}.json"


def _read_done(out, key):
    """A finished point's record from an earlier run, or ``None``."""
    p = _point_path(out, key)
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("key") != key or rec.get("status") != "ok" or \
            rec.get("version") != POINT_FILE_VERSION:
        return None
    return rec


@dataclass
class SweepRun:
    """What :func:`run_sweep` did: every point, and the counts."""

    points: list
    ran: int
    reused: int
    failed: int
    illegal: int
    seconds: float
    executor: str
    rows: list = field(default_factory=list)     # the table (set by write_table)
    summary: dict = field(default_factory=dict)
    picture: bool = False                        # sweep.png written


def _check_data(spec, todo, log):
    """Points whose config cannot take the dataset become illegal before any
    job runs (when the dataset loads here; otherwise the workers find out)."""
    opts = spec.options
    if not todo or opts["epochs"] == 0:
        return todo
    try:
        ds = load_dataset(opts["dataset"])
    except DatasetError as e:
        log(f"note: the dataset does not load here ({e}); the workers will try their own")
        return todo
    keep = []
    for p in todo:
        try:
            check_compatible(ds, p.cfg)
            keep.append(p)
        except DatasetError as e:
            p.status, p.message = "illegal", str(e)
    return keep


def run_sweep(spec, executor, out, job_fn=run_point, quiet=False, log=print):
    """Expand ``spec``, run the points ``out`` does not hold yet on
    ``executor``, write each as it finishes, then the table and picture.

    ``job_fn`` is the worker function (``run_point``; a test may wrap it)."""
    out = Path(out)
    check_dir(out, "sweep output folder")
    (out / "points").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    points = expand(spec)
    jopts = job_options(spec.options)
    todo, reused = [], 0
    seen = {}
    for p in points:
        if p.status == "illegal":
            continue
        if p.key in seen:              # two axis combinations that resolve alike
            p.result, p.status = None, "duplicate"
            p.message = f"same resolved config and options as point {seen[p.key]}"
            continue
        seen[p.key] = p.index
        rec = _read_done(out, p.key)
        if rec is not None:
            p.result, p.status, p.reused = rec, "ok", True
            reused += 1
        else:
            todo.append(p)
    todo = _check_data(spec, todo, log)
    illegal = sum(p.status == "illegal" for p in points)
    log(f"sweep {spec.name}: {len(points)} point(s): {reused} done earlier (read from "
        f"{out / 'points'}), {len(todo)} to run, {illegal} illegal"
        + (f"; running on {executor.describe()}" if todo else ""))
    for p in points:
        if p.status == "illegal":
            log(f"  illegal: {p.label}: {p.message}")
    by_key = {p.key: p for p in todo}
    jobs = [SweepJob(p.key, p.label, p.cfg.to_toml(), p.cfg.source, jopts) for p in todo]
    failed = 0
    bar = JobBar(len(jobs), desc=f"sweep {spec.name}", quiet=quiet)
    try:
        for job, result in executor.map(job_fn, jobs, bar=bar):
            p = by_key[job.key]
            rec = dict(result, key=job.key, label=job.label, version=POINT_FILE_VERSION,
                       config=p.cfg.to_dict(), axes=p.axes)
            p.result, p.status = rec, rec["status"]
            if rec["status"] == "ok":
                write_json(_point_path(out, job.key), rec)
                remove_tree(out / "points" / f"{job.key}.failed.json")   # an earlier failure
            else:
                failed += 1
                p.message = rec.get("error") or rec.get("message")
                write_json(out / "points" / f"{job.key}.failed.json", rec)
                log(f"  failed after {rec['run']['attempts']} attempt(s): {p.label}: "
                    f"{p.message}")
    finally:
        bar.close()
    run = SweepRun(points, len(jobs), reused, failed, illegal,
                   time.perf_counter() - t0, executor.describe())
    write_table(spec, run, out)
    return run


