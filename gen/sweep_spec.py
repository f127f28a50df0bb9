"""Sweep specs and their points: parsing and validating a spec (TOML), and
expanding it into validated configs with stable keys.  The spec format is
documented in :mod:`sparse_edge.gen.sweep`."""

import difflib
import hashlib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, legal_cycles, load_config, parse_config
from .errors import SparseEdgeError
from .estimate import estimate
from .targets import get_target

__all__ = ["SweepError", "SweepSpec", "SweepPoint", "SweepJob", "load_spec", "parse_spec",
           "expand", "point_key", "AXES", "OPTIONS", "CYCLE_MODES", "POINT_FILE_VERSION"]

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


def hw_schedule_of(opts):
    return "reference" if opts["schedule"] == "reference" else "fast"


def job_options(opts):
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
    jopts = job_options(opts)
    target, hws = opts["targets"][0], hw_schedule_of(opts)
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


