"""Network configuration: one TOML file, validated once, before elaboration.

Example (``configs/board.toml``)::

    name = "board"
    layers = [1024, 64, 32]      # N[0..L-1]
    fanout = [4, 16]             # fo per junction
    z = [128, 32]                # edges per clock per junction ...
    # cycle = 32                 # ... or the junction-cycle length C (z derived)

    [format]
    int_bits = 2
    frac_bits = 7
    # table_bits = 10            # activation ROM address bits (default: width, max 12)

    [interleaver]
    kind = "random_start"        # zero_start | random_start | row_permutation | bank_dither
    seed = 1

    [init]
    seed = 1
    # file = "weights.npz"       # keys w1, b1, w2, b2, ... (codes)

    [data]
    inputs = 784                 # real input features (zero-padded to layers[0])
    classes = 10                 # real classes (outputs padded to layers[-1], target 0)

    [training]
    epochs = 3
    eta_exp = [3, 4]             # learning rate 2**-k per epoch, last one repeats
    shuffle_seed = 0
    schedule = "reference"       # reference | fast | sequential

Every rule of SPEC section 2 is checked here; a broken rule raises
:class:`ConfigError` with a message naming the rule and listing legal values.
"""

import difflib
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .fixedpoint import MAX_WIDTH, MIN_FRAC_BITS, QFormat
from .interleaver import KINDS, make_pattern
from .legality import cycle_rule_violations, format_legal, legal_cycles, pattern_problem
from .names import check_identifier, short_repr, suggest_identifier
from .tables import activation_table

__all__ = ["ConfigError", "check_identifier", "NetworkConfig", "load_config", "parse_config",
           "legal_cycles", "SCHEDULES", "NO_UPDATE"]

SCHEDULES = ("reference", "fast", "sequential")
#: Learning-rate exponent that marks a sample as "no update" (evaluation).
NO_UPDATE = -1
#: Largest learning-rate exponent ``k`` (eta = 2**-k); 4 bits in the stream.
MAX_ETA_EXP = 15
#: Default (and largest default) activation ROM address width.
MAX_DEFAULT_TABLE_BITS = 12

# Limits checked at parse time, before any allocation or search, so that any
# config file is accepted or refused in bounded time and memory
# (docs/reliability.md).  They are far above any network an FPGA can hold.
#: Largest config file read (bytes).
MAX_CONFIG_BYTES = 1 << 16
#: Most layers in a network (L).
MAX_LAYERS = 64
#: Most neurons in one layer.
MAX_NEURONS = 1 << 20
#: Most edges (p * fo) in one junction.
MAX_EDGES = 1 << 20

_SCHEMA = {
    "": {"name", "layers", "fanout", "z", "cycle", "format", "interleaver", "init", "data",
         "training"},
    "format": {"int_bits", "frac_bits", "table_bits"},
    "interleaver": {"kind", "seed"},
    "init": {"seed", "file"},
    "data": {"inputs", "classes"},
    "training": {"epochs", "eta_exp", "shuffle_seed", "schedule"},
}
_REQUIRED = {"": ("layers", "fanout"), "format": ("int_bits", "frac_bits")}


@dataclass(frozen=True, eq=False)
class NetworkConfig:
    """A validated network description.  Build with :func:`parse_config` or
    :func:`load_config`; never invalid once constructed."""

    name: str
    layers: tuple
    fanout: tuple
    cycle: int
    fmt: QFormat
    table_bits: int
    interleaver: str
    interleaver_seed: int
    init_seed: int
    init_file: str | None
    inputs: int
    classes: int
    epochs: int
    eta_exp: tuple
    shuffle_seed: int
    schedule: str
    source: str | None = field(default=None, compare=False)

    # -- derived figures -----------------------------------------------------
    @property
    def L(self):
        return len(self.layers)

    @property
    def junctions(self):
        return self.L - 1

    @property
    def edges(self):
        return tuple(self.layers[i] * self.fanout[i] for i in range(self.junctions))

    @property
    def fanin(self):
        return tuple(w // self.layers[i + 1] for i, w in enumerate(self.edges))

    @property
    def z(self):
        return tuple(w // self.cycle for w in self.edges)

    @property
    def density(self):
        return tuple(self.fanout[i] / self.layers[i + 1] for i in range(self.junctions))

    @property
    def parameters(self):
        """Weights + biases of the sparse network."""
        return sum(self.edges) + sum(self.layers[1:])

    @property
    def parameters_fc(self):
        """Weights + biases of the fully connected network of the same sizes."""
        return sum(self.layers[i] * self.layers[i + 1] for i in range(self.junctions)) + \
            sum(self.layers[1:])

    def eta_for_epoch(self, epoch):
        return self.eta_exp[min(epoch, len(self.eta_exp) - 1)]

    def patterns(self):
        """The checked interleaver pattern of every junction (cached)."""
        cached = self.__dict__.get("_patterns")
        if cached is None:
            cached = tuple(
                make_pattern(self.interleaver, self.layers[i - 1], self.layers[i],
                             self.fanout[i - 1], self.z[i - 1], self.interleaver_seed, i).check()
                for i in range(1, self.L))
            object.__setattr__(self, "_patterns", cached)
        return cached

    def activation_table(self):
        cached = self.__dict__.get("_table")
        if cached is None:
            cached = activation_table(self.fmt, self.table_bits)
            object.__setattr__(self, "_table", cached)
        return cached

    # -- serialisation -------------------------------------------------------
    def to_dict(self):
        d = {
            "name": self.name,
            "layers": list(self.layers),
            "fanout": list(self.fanout),
            "cycle": self.cycle,
            "z": list(self.z),
            "format": {"int_bits": self.fmt.int_bits, "frac_bits": self.fmt.frac_bits,
                       "table_bits": self.table_bits},
            "interleaver": {"kind": self.interleaver, "seed": self.interleaver_seed},
            "init": {"seed": self.init_seed},
            "data": {"inputs": self.inputs, "classes": self.classes},
            "training": {"epochs": self.epochs, "eta_exp": list(self.eta_exp),
                         "shuffle_seed": self.shuffle_seed, "schedule": self.schedule},
        }
        if self.init_file is not None:
            d["init"]["file"] = self.init_file
        return d

    def to_toml(self):
        """The resolved config as TOML (parses back to an equal config)."""
        def val(v):
            if isinstance(v, str):
                return json.dumps(v)
            if isinstance(v, list):
                return "[" + ", ".join(val(x) for x in v) + "]"
            return str(v)
        d = self.to_dict()
        lines = [f"{k} = {val(v)}" for k, v in d.items() if not isinstance(v, dict)]
        for k, v in d.items():
            if isinstance(v, dict):
                lines += ["", f"[{k}]"] + [f"{kk} = {val(vv)}" for kk, vv in v.items()]
        return "\n".join(lines) + "\n"

    def digest(self):
        """Stable hash of the resolved config (for build directories)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def with_(self, **changes):
        """A re-validated copy with top-level or dotted keys changed, e.g.
        ``cfg.with_(cycle=64)`` or ``cfg.with_(**{"training.schedule": "fast"})``."""
        d = self.to_dict()
        if "cycle" in changes or "z" in changes:
            d.pop("cycle", None)
            d.pop("z", None)
        for key, v in changes.items():
            node = d
            *path, last = key.split(".")
            for part in path:
                node = node.setdefault(part, {})
            node[last] = v
        return parse_config(d, source=self.source)


def _check_keys(raw):
    for section, allowed in _SCHEMA.items():
        table = raw if section == "" else raw.get(section, {})
        where = "top level" if section == "" else f"[{section}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else \
                    f"; allowed keys: {', '.join(sorted(allowed))}"
                raise ConfigError(f"unknown key {key!r} in {where}{hint}")
        for key in _REQUIRED.get(section, ()):
            if key not in table:
                raise ConfigError(f"missing required key {key!r} in {where}")


def _int(value, what, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer, not {short_repr(value)}")
    if lo is not None and value < lo:
        raise ConfigError(f"{what} must be >= {lo}, not {value}")
    if hi is not None and value > hi:
        raise ConfigError(f"{what} must be <= {hi}, not {value}")
    return value


def _int_list(value, what, length=None):
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{what} must be a non-empty list of integers, not {short_repr(value)}")
    if length is not None and len(value) != length:
        raise ConfigError(f"{what} must have {length} entries (one per junction), "
                          f"not {len(value)}")
    return tuple(_int(v, f"{what}[{i}]", lo=1) for i, v in enumerate(value))


def parse_config(raw, source=None):
    """Validate a config dict (as read from TOML) into a :class:`NetworkConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a table of keys")
    _check_keys(raw)
    if isinstance(raw["layers"], list) and len(raw["layers"]) > MAX_LAYERS:
        raise ConfigError(f"layers lists {len(raw['layers'])} layers; at most {MAX_LAYERS} are "
                          f"supported")
    layers = _int_list(raw["layers"], "layers")
    if len(layers) < 2:
        raise ConfigError(f"layers must list at least 2 layers (L >= 2), not {len(layers)}")
    for h, n in enumerate(layers):
        if n > MAX_NEURONS:
            raise ConfigError(f"layers[{h}]={n} exceeds the largest supported layer "
                              f"({MAX_NEURONS:,} neurons)")
    J = len(layers) - 1
    fanout = _int_list(raw["fanout"], "fanout", J)
    for i in range(1, J + 1):
        p, n, fo = layers[i - 1], layers[i], fanout[i - 1]
        if p * fo > MAX_EDGES:
            raise ConfigError(f"junction {i} has p*fo = {p}*{fo} = {p * fo:,} edges; at most "
                              f"{MAX_EDGES:,} per junction are supported")
        if fo > n:
            raise ConfigError(f"fanout[{i - 1}]={fo} exceeds the {n} right neurons of "
                              f"junction {i}")
        if (p * fo) % n:
            raise ConfigError(
                f"fan-in not integral: junction {i} has p*fo = {p}*{fo} = {p * fo} edges, "
                f"not a multiple of its {n} right neurons")
    edges = [layers[i - 1] * fanout[i - 1] for i in range(1, J + 1)]

    il = raw.get("interleaver", {})
    kind = il.get("kind", "random_start")
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown interleaver kind {kind!r}{hint}; choose one of "
                          f"{', '.join(KINDS)}")
    il_seed = _int(il.get("seed", 0), "interleaver.seed", lo=0)

    # parallelism: z per junction or the junction-cycle length C
    if "z" in raw and "cycle" in raw:
        z = _int_list(raw["z"], "z", J)
        cycle = _int(raw["cycle"], "cycle", lo=1)
        implied = [edges[i] / z[i] for i in range(J)]
        if any(c != cycle for c in implied):
            raise ConfigError(f"z={list(z)} and cycle={cycle} disagree (z = edges/C); give only "
                              f"one. {format_legal(layers, fanout, kind, il_seed)}")
    elif "z" in raw:
        z = _int_list(raw["z"], "z", J)
        implied = []
        for i in range(J):
            if edges[i] % z[i]:
                raise ConfigError(
                    f"rule 1: z[{i}]={z[i]} does not divide the {edges[i]} edges of junction "
                    f"{i + 1}. {format_legal(layers, fanout, kind, il_seed)}")
            implied.append(edges[i] // z[i])
        if len(set(implied)) > 1:
            raise ConfigError(
                "junctions must share one junction-cycle length C = edges/z, but z="
                f"{list(z)} implies C={implied}. {format_legal(layers, fanout, kind, il_seed)}")
        cycle = implied[0]
    elif "cycle" in raw:
        cycle = _int(raw["cycle"], "cycle", lo=1)
    else:
        raise ConfigError("missing parallelism: give z (one per junction) or cycle (C); "
                          f"{format_legal(layers, fanout, kind, il_seed)}")
    bad = cycle_rule_violations(layers, fanout, cycle)
    if bad:
        raise ConfigError(f"illegal parallelism C={cycle}: {bad[0][1]}. "
                          f"{format_legal(layers, fanout, kind, il_seed)}")
    problem = pattern_problem(layers, fanout, cycle, kind, il_seed)
    if problem:
        raise ConfigError(f"illegal parallelism C={cycle}: {problem}. "
                          f"{format_legal(layers, fanout, kind, il_seed)}")

    f = raw.get("format", {})
    int_bits = _int(f["int_bits"], "format.int_bits", lo=0)
    frac_bits = _int(f["frac_bits"], "format.frac_bits", lo=0)
    if int_bits < 1:
        raise ConfigError("format too narrow: int_bits must be >= 1 so the one-hot target 1.0 "
                          f"is representable (Q({int_bits},{frac_bits}) tops out below 1.0)")
    if frac_bits < MIN_FRAC_BITS:
        raise ConfigError(
            f"format too narrow for the pixel mapping: frac_bits={frac_bits} keeps fewer than "
            f"{1 << MIN_FRAC_BITS} grey levels of an 8-bit pixel; use frac_bits >= "
            f"{MIN_FRAC_BITS}")
    fmt = QFormat(int_bits, frac_bits)
    if fmt.width > MAX_WIDTH:
        raise ConfigError(f"format {fmt} is {fmt.width} bits wide; at most {MAX_WIDTH} bits are "
                          f"supported (18x18 multipliers, int32 golden model)")
    table_bits = _int(f.get("table_bits", min(fmt.width, MAX_DEFAULT_TABLE_BITS)),
                      "format.table_bits", lo=4, hi=fmt.width)

    init = raw.get("init", {})
    init_seed = _int(init.get("seed", 0), "init.seed", lo=0)
    init_file = init.get("file")
    if init_file is not None and not isinstance(init_file, str):
        raise ConfigError(f"init.file must be a path string, not {init_file!r}")

    data = raw.get("data", {})
    inputs = _int(data.get("inputs", layers[0]), "data.inputs", lo=1)
    classes = _int(data.get("classes", layers[-1]), "data.classes", lo=2)
    if inputs > layers[0]:
        raise ConfigError(f"data.inputs={inputs} exceeds the input layer N[0]={layers[0]} "
                          f"(inputs can only be zero-padded, never truncated)")
    if classes > layers[-1]:
        raise ConfigError(f"data.classes={classes} exceeds the output layer N[-1]={layers[-1]}")

    tr = raw.get("training", {})
    epochs = _int(tr.get("epochs", 1), "training.epochs", lo=1)
    eta = tr.get("eta_exp", [3])
    if isinstance(eta, int) and not isinstance(eta, bool):
        eta = [eta]
    if not isinstance(eta, list) or not eta:
        raise ConfigError(f"training.eta_exp must be an exponent or a list, not {eta!r}")
    eta = tuple(_int(k, "training.eta_exp entry", lo=0, hi=MAX_ETA_EXP) for k in eta)
    shuffle_seed = _int(tr.get("shuffle_seed", 0), "training.shuffle_seed", lo=0)
    schedule = tr.get("schedule", "reference")
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")

    if "name" in raw:
        name = check_identifier(raw["name"], "name")
    else:   # from the file name, made an identifier
        name = suggest_identifier(Path(source).stem) if source else "network"
    return NetworkConfig(name, layers, fanout, cycle, fmt, table_bits, kind, il_seed,
                         init_seed, init_file, inputs, classes, epochs, eta, shuffle_seed,
                         schedule, source=str(source) if source else None)


def load_config(path):
    """Read and validate a TOML config file (at most ``MAX_CONFIG_BYTES``)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give the path of a .toml file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES:,} bytes; a "
                          f"network config is a few hundred bytes of TOML")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); a config is a TOML "
                          f"text file") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return parse_config(raw, source=path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def initial_parameters(cfg):
    """Initial weights and biases as codes: ``[(w1, b1), (w2, b2), ...]``.

    Seeded Glorot-like normal init, ``std = sqrt(2 / (fi + fo))``, rounded half
    up to codes and saturated; biases 0.  ``init.file`` (npz with ``w1``,
    ``b1``, ...) overrides.  The golden model and the memory init files of the
    hardware both call this.
    """
    if cfg.init_file is not None:
        return load_parameters(cfg, cfg.init_file)
    out = []
    for j, f in enumerate(initial_float_parameters(cfg)):
        w, b = f
        out.append((cfg.fmt.from_float(w), cfg.fmt.from_float(b)))
    return out


def initial_float_parameters(cfg):
    """The unquantized draw behind :func:`initial_parameters` (float reference)."""
    out = []
    for j in range(cfg.junctions):
        rng = np.random.default_rng([cfg.init_seed, j + 1])
        std = math.sqrt(2.0 / (cfg.fanin[j] + cfg.fanout[j]))
        out.append((rng.normal(0.0, std, cfg.edges[j]), np.zeros(cfg.layers[j + 1])))
    return out


def load_parameters(cfg, path):
    """Load weight/bias codes from an npz (keys ``w1``, ``b1``, ...), checking
    shapes and range."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"initial weight file {path} does not exist")
    try:
        f = np.load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a config problem
        raise ConfigError(f"initial weight file {path} is not a readable npz: {e}") from None
    out = []
    with f:
        for j in range(cfg.junctions):
            pair = []
            for key, size in ((f"w{j + 1}", cfg.edges[j]), (f"b{j + 1}", cfg.layers[j + 1])):
                if key not in f:
                    raise ConfigError(f"{path}: missing array {key!r} (need w1, b1, ... "
                                      f"w{cfg.junctions}, b{cfg.junctions})")
                a = np.asarray(f[key])
                if a.shape != (size,):
                    raise ConfigError(f"{path}: {key} has shape {a.shape}, expected ({size},)")
                if not np.issubdtype(a.dtype, np.integer):
                    raise ConfigError(f"{path}: {key} must hold integer codes, not {a.dtype}")
                if a.min(initial=0) < cfg.fmt.min or a.max(initial=0) > cfg.fmt.max:
                    raise ConfigError(f"{path}: {key} has codes outside {cfg.fmt} "
                                      f"[{cfg.fmt.min}, {cfg.fmt.max}]")
                pair.append(a.astype(np.int32))
            out.append(tuple(pair))
    return out
