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

import csv
import difflib
import hashlib
import importlib.metadata as md
import io
import itertools
import json
import re
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..sim.golden import GoldenModel
from .config import NO_UPDATE, ConfigError, legal_cycles, load_config, parse_config
from .datasets import DatasetError, check_compatible, load_dataset, padded_inputs
from .errors import SparseEdgeError
from .estimate import estimate
from .executors import JobBar
from .geometry import hardware_schedule
from .output import check_dir, remove_tree, write_bytes, write_json, write_text
from .schedule import Schedule
from .synth import DoesNotFit, PnRFailed, SynthOptions, synthesize
from .targets import get_target
from .tools import SynthError

__all__ = ["SweepError", "SweepSpec", "SweepPoint", "SweepJob", "load_spec", "parse_spec",
           "expand", "run_point", "run_sweep", "pareto", "table_rows", "write_table",
           "plot_sweep", "AXES", "OPTIONS"]

AXES = ("network", "layers", "fanout", "format", "cycle", "interleaver", "interleaver_seed",
        "init_seed", "eta_exp", "shuffle_seed")
OPTIONS = {"dataset": "digits", "epochs": None, "samples": None, "test_samples": None,
           "targets": ["ecp5-85f"], "schedule": "fast", "mode": "fixed", "synth": False,
           "freq_mhz": None, "cycle": "fastest-fit", "build_dir": "build/synth",
           "synth_seed": 1, "max_dsp": None}
_TOP = {"name", "base", "options", "grid", "points"}
CYCLE_MODES = ("fastest-fit", "all", "base")
POINT_FILE_VERSION = 1


class SweepError(SparseEdgeError):
    """A sweep spec or sweep output that cannot be used (the message says why)."""


# -- the spec -------------------------------------------------------------------------------

@dataclass
class SweepSpec:
    """A parsed sweep spec: base config dict, options, grid axes, point list."""

    name: str
    base: dict
    base_source: str | None
    options: dict
    grid: dict
    points: list
    source: str | None = None
    text: str = ""

    def with_options(self, **over):
        """A copy with options replaced (``None`` values are ignored)."""
        opts = dict(self.options)
        for k, v in over.items():
            if v is not None:
                opts[k] = v
        _check_options(opts)
        return SweepSpec(self.name, self.base, self.base_source, opts, self.grid, self.points,
                         self.source, self.text)


def _close(key, allowed):
    m = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f"; did you mean {m[0]!r}?" if m else f"; allowed: {', '.join(sorted(allowed))}"


def _check_options(opts):
    for key in opts:
        if key not in OPTIONS:
            raise SweepError(f"unknown option {key!r} in [options]{_close(key, OPTIONS)}")
    if not isinstance(opts["dataset"], str) or not opts["dataset"]:
        raise SweepError(f"options.dataset must be a dataset name or path, not "
                         f"{opts['dataset']!r}")
    for k, lo in (("epochs", 0), ("samples", 1), ("test_samples", 1), ("synth_seed", 0),
                  ("max_dsp", 0)):
        v = opts[k]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise SweepError(f"options.{k} must be a whole number >= {lo}, not {v!r}")
    t = opts["targets"]
    if isinstance(t, str):
        opts["targets"] = t = [t]
    if not isinstance(t, list) or not t or not all(isinstance(x, str) for x in t):
        raise SweepError(f"options.targets must be a list of target names, not {t!r}")
    for name in t:
        try:
            get_target(name)
        except Exception as e:  # noqa: BLE001 - the flow's own message names the targets
            raise SweepError(f"options.targets: {e}") from None
    if len(set(t)) != len(t):
        raise SweepError(f"options.targets lists a target twice: {t}")
    if opts["schedule"] not in ("fast", "reference", "sequential"):
        raise SweepError(f"options.schedule must be fast, reference or sequential, not "
                         f"{opts['schedule']!r}")
    if opts["mode"] not in ("fixed", "float"):
        raise SweepError(f"options.mode must be fixed or float, not {opts['mode']!r}")
    if not isinstance(opts["synth"], bool):
        raise SweepError(f"options.synth must be true or false, not {opts['synth']!r}")
    f = opts["freq_mhz"]
    if f is not None and (isinstance(f, bool) or not isinstance(f, (int, float)) or f <= 0):
        raise SweepError(f"options.freq_mhz must be a clock in MHz > 0, not {f!r}")
    _check_cycle(opts["cycle"], "options.cycle")


def _check_cycle(v, where):
    if isinstance(v, str):
        if v not in CYCLE_MODES:
            raise SweepError(f"{where}: {v!r} is not a cycle; give a whole number C or one of "
                             f"{', '.join(CYCLE_MODES)}")
    elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SweepError(f"{where}: {v!r} is not a cycle; give a whole number C >= 1 or one of "
                         f"{', '.join(CYCLE_MODES)}")


def _check_axis_value(axis, v, where):
    if axis == "network":
        if not isinstance(v, dict) or not v:
            raise SweepError(f"{where}: a network is a table of axes, e.g. "
                             f"{{layers = [64, 32, 16], fanout = [8, 8]}}, not {v!r}")
        for k, vv in v.items():
            if k == "name":
                continue
            if k not in AXES or k == "network":
                raise SweepError(f"{where}: unknown key {k!r}{_close(k, set(AXES) - {'network'})}")
            _check_axis_value(k, vv, f"{where}.{k}")
    elif axis == "cycle":
        _check_cycle(v, where)
    elif axis == "format":
        _format(v, where)


_Q = re.compile(r"^\s*Q\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$")


def _format(v, where="format"):
    """``(int_bits, frac_bits)`` from ``"Q(2,7)"``, ``[2, 7]`` or a table."""
    if isinstance(v, str):
        m = _Q.match(v)
        if m:
            return int(m.group(1)), int(m.group(2))
    elif isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return v[0], v[1]
    elif isinstance(v, dict) and set(v) <= {"int_bits", "frac_bits"} and len(v) == 2:
        return v["int_bits"], v["frac_bits"]
    raise SweepError(f"{where}: {v!r} is not a number format; write \"Q(2,7)\" or [2, 7]")


def parse_spec(raw, source=None, text=""):
    """Validate a spec dict (as read from TOML) into a :class:`SweepSpec`."""
    if not isinstance(raw, dict):
        raise SweepError("a sweep spec must be a table")
    for key in raw:
        if key not in _TOP:
            raise SweepError(f"unknown key {key!r} at the top level of the sweep spec"
                             f"{_close(key, _TOP)}")
    here = Path(source).parent if source else Path.cwd()
    base = raw.get("base")
    if base is None:
        raise SweepError("the sweep spec needs a base config: base = \"PATH.toml\" (relative "
                         "to the spec) or a [base] table")
    if isinstance(base, str):
        path = Path(base) if Path(base).is_absolute() else here / base
        if not path.is_file():
            raise SweepError(f"base config {path} does not exist")
        try:
            base_raw = tomllib.loads(path.read_text())
            load_config(path)       # the base itself must be valid
        except tomllib.TOMLDecodeError as e:
            raise SweepError(f"base config {path}: not valid TOML: {e}") from None
        except ConfigError as e:
            raise SweepError(f"base config: {e}") from None
        base_source = str(path)
    elif isinstance(base, dict):
        base_raw, base_source = dict(base), str(source) if source else None
        try:
            parse_config(base_raw, source=base_source)
        except ConfigError as e:
            # a [base] table may leave the parallelism to the sweep's cycle axis
            if "missing parallelism" not in str(e) and "illegal parallelism" not in str(e):
                raise SweepError(f"[base]: {e}") from None
    else:
        raise SweepError(f"base must be a config path or a table, not {base!r}")
    opts = dict(OPTIONS)
    given = raw.get("options", {})
    if not isinstance(given, dict):
        raise SweepError("[options] must be a table")
    opts.update(given)
    _check_options(opts)
    grid = raw.get("grid", {})
    if not isinstance(grid, dict):
        raise SweepError("[grid] must be a table of axes, each a list of values")
    for axis, values in grid.items():
        if axis not in AXES:
            raise SweepError(f"unknown axis {axis!r} in [grid]{_close(axis, AXES)}")
        if not isinstance(values, list) or not values:
            raise SweepError(f"[grid] {axis} must be a non-empty list of values, not {values!r}")
        for i, v in enumerate(values):
            _check_axis_value(axis, v, f"[grid] {axis}[{i}]")
    points = raw.get("points", [])
    if not isinstance(points, list):
        raise SweepError("points must be an array of tables ([[points]])")
    for i, p in enumerate(points):
        if not isinstance(p, dict):
            raise SweepError(f"points[{i}] must be a table, not {p!r}")
        for axis, v in p.items():
            if axis == "name":
                continue
            if axis not in AXES:
                raise SweepError(f"unknown axis {axis!r} in points[{i}]{_close(axis, AXES)}")
            _check_axis_value(axis, v, f"points[{i}].{axis}")
    name = raw.get("name", Path(source).stem if source else "sweep")
    if not isinstance(name, str) or not name:
        raise SweepError(f"name must be a string, not {name!r}")
    return SweepSpec(name, base_raw, base_source, opts, grid, points,
                     str(source) if source else None, text)


def load_spec(path):
    """Read and validate a sweep spec file."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep spec {path} does not exist")
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"{path}: not valid TOML: {e}") from None
    try:
        return parse_spec(raw, source=path, text=text)
    except SweepError as e:
        raise SweepError(f"{path}: {e}") from None


# -- points ---------------------------------------------------------------------------------

@dataclass
class SweepPoint:
    """One resolved point: its axis values, config (or why it is illegal), key."""

    index: int
    axes: dict
    label: str
    cfg: object = None
    key: str | None = None
    status: str = "pending"          # pending | illegal (| ok | failed once run)
    message: str | None = None
    note: str | None = None          # e.g. fastest-fit found nothing that fits
    result: dict | None = field(default=None, repr=False)
    reused: bool = False


@dataclass(frozen=True)
class SweepJob:
    """One point's work, self-contained and picklable (config TOML text,
    job options); :func:`run_point` runs it anywhere."""

    key: str
    label: str
    config_toml: str
    source: str | None
    options: dict


def _combos(spec):
    """Axis dicts: the grid's cartesian product, then the listed points."""
    out = []
    if spec.grid:
        names = list(spec.grid)
        for values in itertools.product(*(spec.grid[a] for a in names)):
            out.append(dict(zip(names, values)))
    out += [dict(p) for p in spec.points]
    if not out:
        out = [{}]                  # the base config alone
    return out


def _flatten(axes):
    """A ``network`` table's keys merged into the point (explicit axes win)."""
    flat = {}
    net = axes.get("network")
    if isinstance(net, dict):
        flat.update(net)
    flat.update({k: v for k, v in axes.items() if k != "network"})
    return flat


def _apply(base, flat):
    raw = json.loads(json.dumps(base))          # deep copy of plain TOML data
    for k in ("layers", "fanout"):
        if k in flat:
            raw[k] = flat[k]
    if "format" in flat:
        i, f = _format(flat["format"])
        raw["format"] = {"int_bits": i, "frac_bits": f}
    if "interleaver" in flat:
        raw.setdefault("interleaver", {})["kind"] = flat["interleaver"]
    if "interleaver_seed" in flat:
        raw.setdefault("interleaver", {})["seed"] = flat["interleaver_seed"]
    if "init_seed" in flat:
        raw.setdefault("init", {})["seed"] = flat["init_seed"]
    for k in ("eta_exp", "shuffle_seed"):
        if k in flat:
            raw.setdefault("training", {})[k] = flat[k]
    return raw


def _label(flat, cfg_raw, varying):
    layers = cfg_raw.get("layers", [])
    fo = cfg_raw.get("fanout", [])
    fmt = cfg_raw.get("format", {})
    s = (f"{'-'.join(map(str, layers))} fo{','.join(map(str, fo))} "
         f"Q({fmt.get('int_bits')},{fmt.get('frac_bits')})")
    for k in ("interleaver", "interleaver_seed", "init_seed", "eta_exp", "shuffle_seed"):
        if k in varying and k in flat:
            v = flat[k]
            s += f" {k}={','.join(map(str, v)) if isinstance(v, list) else v}"
    return s


def _identifier(name):
    """``name`` made a Verilog identifier (configs' names must be one)."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)[:48] or "sweep"
    return ident if not ident[0].isdigit() else f"s_{ident}"


def _hw_schedule(opts):
    return "reference" if opts["schedule"] == "reference" else "fast"


def _job_options(opts):
    """What a job needs besides its config (part of every point's key)."""
    return {k: opts[k] for k in ("dataset", "epochs", "samples", "test_samples", "targets",
                                 "mode", "synth", "freq_mhz")} | (
        {"build_dir": opts["build_dir"], "synth_seed": opts["synth_seed"],
         "max_dsp": opts["max_dsp"]} if opts["synth"] else {})


def point_key(cfg, job_options):
    """Stable key of a point: its resolved config (without the name) and the
    job options."""
    d = cfg.to_dict()
    d.pop("name", None)
    blob = json.dumps({"config": d, "options": job_options, "v": POINT_FILE_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _resolve_cycle(raw, mode, source, target, hw_schedule, freq):
    """``[(cfg, note)]`` for one point's cycle choice (several for ``all``).
    Raises :class:`ConfigError` with the validator's message when illegal."""
    if mode == "base":
        return [(parse_config(raw, source=source), None)]
    if isinstance(mode, int):
        raw = {k: v for k, v in raw.items() if k not in ("z", "cycle")} | {"cycle": mode}
        return [(parse_config(raw, source=source), None)]
    il = raw.get("interleaver", {})
    try:
        layers, fanout = list(raw["layers"]), list(raw["fanout"])
        legal = legal_cycles(layers, fanout, il.get("kind", "random_start"), il.get("seed", 0))
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        legal = []
    if not legal:
        # let the validator say what is wrong (it names the rule)
        bare = {k: v for k, v in raw.items() if k not in ("z", "cycle")} | {"cycle": 1}
        parse_config(bare, source=source)
        raise ConfigError("this network has no legal junction-cycle length C")
    cfgs = []
    for c, _ in legal:
        r = {k: v for k, v in raw.items() if k not in ("z", "cycle")} | {"cycle": c}
        cfgs.append(parse_config(r, source=source))
    if mode == "all":
        return [(c, None) for c in cfgs]
    ests = [(c, estimate(c, target, hw_schedule, freq)) for c in cfgs]
    for c, e in ests:                     # smallest C first: the fastest that fits
        if e.fits:
            return [(c, None)]
    c, e = min(ests, key=lambda ce: (ce[1].utilization, ce[0].cycle))
    return [(c, f"no legal C fits {target}; C={c.cycle} is the least over "
                f"({100 * e.utilization:.0f}% of the fullest resource)")]


def expand(spec):
    """Every point of ``spec``, resolved: ``[SweepPoint]`` in spec order
    (illegal points included, with the validator's message)."""
    opts = spec.options
    combos = _combos(spec)
    varying = set()
    flats = [_flatten(a) for a in combos]
    for k in AXES:
        vals = {json.dumps(f.get(k), sort_keys=True) for f in flats}
        if len(vals) > 1:
            varying.add(k)
    jopts = _job_options(opts)
    target, hws = opts["targets"][0], _hw_schedule(opts)
    points = []
    for flat in flats:
        raw = _apply(spec.base, flat)
        training = raw.setdefault("training", {})
        if opts["epochs"] is not None:
            training["epochs"] = max(1, opts["epochs"])
        training["schedule"] = opts["schedule"]
        mode = flat.get("cycle", opts["cycle"])
        label = flat.get("name") or _label(flat, raw, varying)
        try:
            resolved = _resolve_cycle(raw, mode, spec.base_source, target, hws,
                                      opts["freq_mhz"])
        except ConfigError as e:
            points.append(SweepPoint(len(points), flat, label, status="illegal",
                                     message=str(e)))
            continue
        for cfg, note in resolved:
            cfg = cfg.with_(name=f"{_identifier(spec.name)}_{len(points)}")
            lab = label if len(resolved) == 1 and "name" in flat else f"{label} C{cfg.cycle}"
            points.append(SweepPoint(len(points), flat, lab, cfg, point_key(cfg, jopts),
                                     note=note))
    return points


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
    so = SynthOptions(schedule=_hw_schedule({"schedule": cfg.schedule}),
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
    hws = _hw_schedule({"schedule": cfg.schedule})
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
    jopts = _job_options(spec.options)
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


# -- table, fronts, picture -----------------------------------------------------------------

def _acc(p):
    a = (p.result or {}).get("accuracy") or {}
    return a.get("final_test_accuracy")


def _est(p, target):
    return ((p.result or {}).get("estimates") or {}).get(target)


def pareto(points, target, metric):
    """Indices of the points on the front of test accuracy (up) against
    ``metric``: ``"lut"`` (down) or ``"samples_per_s"`` (up), among the
    finished points that fit ``target`` (all finished points when none fits)."""
    done = [p for p in points if p.status == "ok" and _acc(p) is not None and _est(p, target)]
    pool = [p for p in done if _est(p, target)["fits"]] or done
    sign = -1 if metric == "lut" else 1

    def better_eq(q, p):
        return _acc(q) >= _acc(p) and sign * _est(q, target)[metric] >= \
            sign * _est(p, target)[metric]

    front = []
    for p in pool:
        if not any(q is not p and better_eq(q, p) and
                   (_acc(q) > _acc(p) or _est(q, target)[metric] != _est(p, target)[metric])
                   for q in pool):
            front.append(p.index)
    return sorted(front)


def table_rows(points, targets, fronts):
    """One dict per point (the CSV's rows): only what the inputs determine
    (no hosts, no timings), so every executor gives the same table."""
    rows = []
    for p in points:
        cfg = p.cfg
        acc = (p.result or {}).get("accuracy") or {}
        row = {"index": p.index, "label": p.label, "status": p.status,
               "layers": "-".join(map(str, cfg.layers)) if cfg else "",
               "fanout": ",".join(map(str, cfg.fanout)) if cfg else "",
               "format": str(cfg.fmt) if cfg else "",
               "C": cfg.cycle if cfg else "",
               "z": ",".join(map(str, cfg.z)) if cfg else "",
               "interleaver": f"{cfg.interleaver}/{cfg.interleaver_seed}" if cfg else "",
               "init_seed": cfg.init_seed if cfg else "",
               "eta_exp": ",".join(map(str, cfg.eta_exp)) if cfg else "",
               "parameters": cfg.parameters if cfg else "",
               "dataset": acc.get("dataset", ""),
               "epochs": len(acc.get("epochs", [])) if acc else "",
               "test_acc_per_epoch": " ".join(f"{100 * e['test_accuracy']:.2f}"
                                              for e in acc.get("epochs", [])),
               "test_acc": f"{100 * acc['final_test_accuracy']:.2f}"
               if acc.get("final_test_accuracy") is not None else ""}
        for i, t in enumerate(targets):
            e = _est(p, t) or {}
            sfx = "" if i == 0 else f"@{t}"
            row[f"lut{sfx}"] = e.get("lut", "")
            if i == 0:
                for k in ("ff", "dsp", "bram", "lutram"):
                    row[k] = e.get(k, "")
            row[f"fits{sfx}" if i else f"fits {t}"] = \
                ("yes" if e["fits"] else "no") if e else ""
            row[f"samples_per_s{sfx}"] = f"{e['samples_per_s']:.0f}" if e else ""
        synth = (p.result or {}).get("synth")
        if synth:
            for t, s in synth.items():
                row[f"synth@{t}"] = s["status"]
                row[f"synth_lut@{t}"] = (s.get("resources") or {}).get("lut", "")
                row[f"fmax_mhz@{t}"] = s.get("fmax_mhz") or ""
        row["pareto_lut"] = "*" if p.index in fronts["lut"] else ""
        row["pareto_samples_per_s"] = "*" if p.index in fronts["samples_per_s"] else ""
        row["key"] = p.key or ""
        row["note"] = p.message or p.note or ""
        rows.append(row)
    return rows


def _csv(rows):
    cols = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", restval="")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _versions():
    out = {"python": sys.version.split()[0]}
    for pkg in ("sparse-edge", "numpy", "numba", "dask", "distributed"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def summary(points, target):
    """Best accuracy, the most accurate point per LUT among the fitting ones,
    and the fronts (for the log and sweep.json)."""
    done = [p for p in points if p.status == "ok" and _acc(p) is not None and _est(p, target)]
    fit = [p for p in done if _est(p, target)["fits"]]
    out = {"target": target, "finished": len(done), "fit": len(fit)}
    if fit:
        best = max(fit, key=lambda p: (_acc(p), -_est(p, target)["lut"]))
        per = max(fit, key=lambda p: (_acc(p) / max(1, _est(p, target)["lut"]), _acc(p)))
        out["best_accuracy"] = {"index": best.index, "label": best.label,
                                "test_acc": _acc(best), "lut": _est(best, target)["lut"]}
        out["best_accuracy_per_lut"] = {"index": per.index, "label": per.label,
                                        "test_acc": _acc(per), "lut": _est(per, target)["lut"]}
    return out


def write_table(spec, run, out):
    """``sweep.csv``, ``sweep.json`` and ``sweep.png`` from every point
    (each file written atomically)."""
    out = Path(out)
    target = spec.options["targets"][0]
    fronts = {m: pareto(run.points, target, m) for m in ("lut", "samples_per_s")}
    rows = table_rows(run.points, spec.options["targets"], fronts)
    write_text(out / "sweep.csv", _csv(rows))
    doc = {"command": "sweep", "name": spec.name, "spec": spec.text or None,
           "options": spec.options, "target": target,
           "counts": {"points": len(run.points), "ran": run.ran, "reused": run.reused,
                      "failed": run.failed, "illegal": run.illegal},
           "executor": run.executor, "seconds": round(run.seconds, 1),
           "pareto": fronts, "summary": summary(run.points, target),
           "points": [dict(row=r, result=p.result) for r, p in zip(rows, run.points)],
           "versions": _versions()}
    run.rows, run.summary = rows, doc["summary"]
    write_json(out / "sweep.json", doc)
    if spec.text:
        write_text(out / "spec.toml", spec.text)
    run.picture = plot_sweep(run.points, target, fronts, out / "sweep.png", title=spec.name)
    return rows


def plot_sweep(points, target, fronts, path, title=""):
    """Accuracy vs LUTs and vs samples/s on ``target``; fronts as lines,
    points that do not fit hollow.  Returns False when matplotlib is missing."""
    try:
        import matplotlib                         # deferred: optional [plot] extra
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt           # deferred: optional [plot] extra
    except ImportError:
        return False
    done = [p for p in points if p.status == "ok" and _acc(p) is not None and _est(p, target)]
    if not done:                    # nothing trained (estimate only, or all failed)
        remove_tree(path)
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100, sharey=True)
    avail = get_target(target).available["lut"]
    for ax, metric, xlabel in ((axes[0], "lut", f"estimated LUTs on {target}"),
                               (axes[1], "samples_per_s", "estimated samples/s (training)")):
        fit = [p for p in done if _est(p, target)["fits"]]
        nofit = [p for p in done if not _est(p, target)["fits"]]
        for group, kw in ((fit, dict(marker="o", color="tab:blue", label=f"fits {target}")),
                          (nofit, dict(marker="o", facecolors="none", edgecolors="tab:gray",
                                       label="does not fit"))):
            if group:
                ax.scatter([_est(p, target)[metric] for p in group],
                           [100 * _acc(p) for p in group], s=28, zorder=3, **kw)
        front = sorted((p for p in done if p.index in fronts[metric]),
                       key=lambda p: _est(p, target)[metric])
        if front:
            ax.plot([_est(p, target)[metric] for p in front], [100 * _acc(p) for p in front],
                    "-", color="tab:red", lw=1.2, zorder=2, label="Pareto front")
            ax.scatter([_est(p, target)[metric] for p in front],
                       [100 * _acc(p) for p in front], s=70, facecolors="none",
                       edgecolors="tab:red", zorder=4)
            for p in front:
                ax.annotate(p.label, (_est(p, target)[metric], 100 * _acc(p)), fontsize=6,
                            xytext=(3, -8), textcoords="offset points")
        if metric == "lut":
            ax.axvline(avail, color="tab:gray", ls="--", lw=0.8)
            ax.text(avail, ax.get_ylim()[0], f" {target}", fontsize=7, color="tab:gray",
                    va="bottom")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return True


def format_table(rows, target):
    """A plain-text table of the rows for the terminal."""
    hdr = (f"{'#':>3} {'network':<44} {'C':>5} {'test acc':>8} {'LUT':>8} {'DSP':>4} "
           f"{'BRAM':>4} {'fits':>4} {'samples/s':>10}  front")
    lines = [hdr, "-" * len(hdr)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"{r['index']:>3} {r['label'][:44]:<44} {r['C']!s:>5} "
                         f"{r['status']:>8}  {r['note'][:80]}")
            continue
        front = ("L" if r["pareto_lut"] else "") + ("S" if r["pareto_samples_per_s"] else "")
        lines.append(f"{r['index']:>3} {r['label'][:44]:<44} {r['C']!s:>5} "
                     f"{(r['test_acc'] + '%') if r['test_acc'] else '-':>8} {r['lut']!s:>8} "
                     f"{r['dsp']!s:>4} {r['bram']!s:>4} {r[f'fits {target}']:>4} "
                     f"{r['samples_per_s']:>10}  {front}")
    lines.append("(front: L = on the accuracy-vs-LUT front, S = on the accuracy-vs-samples/s "
                 f"front, among the points that fit {target})")
    return "\n".join(lines)
