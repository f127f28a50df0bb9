"""Synthesis and place & route with the open toolchain (Yosys + nextpnr).

``synthesize(cfg, target)`` turns a network config into a placed and routed
design for one FPGA and returns a report (also written as ``report.json`` and
``summary.txt`` in the build directory, next to the tool logs):

1. **emit**: the :class:`~sparse_edge.hdl.network.Network` wrapped in a
   :class:`~sparse_edge.hdl.harness.SynthHarness` (see below) is converted to
   Verilog.  The Verilog is
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
clock target or seed re-runs only nextpnr.  Tools are found through
``$YOSYS``, ``$NEXTPNR_ECP5`` and ``$NEXTPNR_ICE40`` (default: the YoWASP
packages of this Python; :mod:`sparse_edge.gen.tools`), targets are data in
:mod:`sparse_edge.gen.targets`, and the report is read from the tools' JSON
by :mod:`sparse_edge.gen.synth_report`.  YoWASP tools run in a WASI sandbox
that only sees the working directory, so every tool runs with the build
directory as its working directory and relative file names.

**Synthesis harness.**  The network's ports are far wider than any package
(the board network takes 1024 pixel bits per beat).  ``SynthHarness``
(``hdl/harness.py``) feeds every input from one shift register (1 pin) and
folds every output into one registered XOR (1 pin), so nothing can be
optimised away and the design needs four pins (``clk``, ``rst``, ``sin``,
``sout``).  Its cost is reported (``harness`` in the report): one FF per input
bit and about one LUT per three output bits.
"""

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..boards.ecp5 import global_enable as ecp5_global_enable
from . import output
from ..hdl.harness import SynthHarness
from ..hdl.network import Network
from .estimate import estimate as analytic_estimate
from .flow import emit
from .geometry import NetworkGeometry, hardware_schedule
from .targets import (RESOURCE_NAMES, TARGETS, Target, describe_over, fit_problems,
                      get_target)
from .synth_scripts import (_PREPARED, _SOFTMUL_FAMILIES, GOWIN_MUL_V,  # noqa: F401
                            SOFTMUL_V, _mul_cells, _nextpnr_argv, _pack_argv, _prepare_script,
                            _soft_selection, _yosys_script)
from .synth_report import (MNIST_TEST, MNIST_TRAIN, cell_counts, format_report, pnr_resources,
                           refresh_estimate, resources_table, synth_resources, throughput,
                           timing_summary)
from .router_watch import router2_watch
from .tools import (Progress, SynthError, ToolFailed, ToolMissing, ToolStopped, error_lines,
                    package_versions, run_tool, source_digest, tool_command, tool_version)

__all__ = ["Target", "TARGETS", "get_target", "SynthError", "ToolMissing", "ToolFailed",
           "DoesNotFit", "PnRFailed", "SynthOptions", "SynthHarness", "Progress", "synthesize",
           "tool_command", "check_tools", "MNIST_TRAIN", "MNIST_TEST", "RESOURCE_NAMES",
           "format_report"]

#: Bumped whenever the flow changes what the tools produce (part of the build key).
FLOW_VERSION = 4
#: Bumped whenever the report is derived differently from the tools' outputs
#: (a stored report of another version is rebuilt from the stored tool outputs).
REPORT_VERSION = 3


# -- errors ------------------------------------------------------------------------

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


# -- tools ----------------------------------------------------------------------------

def check_tools(target):
    """Resolve Yosys and the target's nextpnr up front (a missing tool is
    reported before any long step).  Returns ``{tool: (command, version)}``."""
    target = get_target(target)
    out = {}
    for tool in ("yosys", target.pnr_tool, target.pack_tool):
        if tool is None:
            continue
        cmd = tool_command(tool)
        out[tool] = (cmd, tool_version(tool, cmd))
    return out


# -- the synthesis harness ---------------------------------------------------------------

def harness_cost(cfg, schedule="fast"):
    """Input and output bits of the harness around ``Network(cfg)``
    (:class:`~sparse_edge.hdl.harness.SynthHarness`), from the geometry:
    nothing is elaborated."""
    return NetworkGeometry(cfg, hardware_schedule(cfg, schedule)).interface_bits()


# -- caching ----------------------------------------------------------------------------

def _emit_key(cfg, schedule, name, global_enable=False):
    """Key of a cached harnessed Verilog: the config, the options, our
    hardware sources and the Yosys that writes the Verilog."""
    yosys = tool_version("yosys", tool_command("yosys"))
    blob = json.dumps({"config": cfg.to_dict(), "schedule": schedule, "name": name,
                       "global_enable": global_enable, "src": source_digest((yosys,)),
                       "flow": FLOW_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


#: family -> ``Network(enable_buffer=...)``: the board hardware that puts the
#: network's clock enable on a global buffer (``synth --no-global-enable`` off).
ENABLE_BUFFERS = {"ecp5": ecp5_global_enable}


def emit_harnessed(cfg, schedule="fast", name="sparse_edge_top", cache_dir=None,
                   family=None, global_enable=False, warn=None):
    """Verilog of ``SynthHarness(Network(cfg, schedule))``; cached in
    ``cache_dir`` by config + sources + tool versions.  With ``global_enable``
    and a ``family`` in :data:`ENABLE_BUFFERS` the network's clock enable is put
    on a global buffer.  Returns ``(text, cached)``.

    A cache entry is ``NAME-KEY.v`` with its SHA-256 beside it
    (``NAME-KEY.v.sha256``, written after it); an entry whose text does not
    match is re-emitted, with a ``warn`` message."""
    buffer = ENABLE_BUFFERS.get(family) if global_enable else None
    buffered = buffer is not None
    if cache_dir is not None:
        key = _emit_key(cfg, schedule, name, buffered)
        path = Path(cache_dir) / f"{cfg.name}-{key}.v"
        digest = path.with_name(path.name + ".sha256")
        if path.exists() or digest.exists():
            try:
                v = path.read_text()
                if hashlib.sha256(v.encode()).hexdigest() == digest.read_text().strip():
                    return v, True
                problem = "contents differ from their hash"
            except (OSError, UnicodeDecodeError) as e:
                problem = str(e)
            if warn:
                warn(f"warning: cached Verilog {path} is damaged ({problem}); emitting it again")
    v, _il = emit(SynthHarness(Network(cfg, schedule, enable_buffer=buffer)), name)
    if cache_dir is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest.unlink(missing_ok=True)
        output.write_text(path, v)
        output.write_text(digest, hashlib.sha256(v.encode()).hexdigest() + "\n")
    return v, False


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
    pack: bool = True                  # write the bitstream where the target has a packer
    top: str = "sparse_edge_top"
    #: ECP5: distribute the network's clock enable on a global buffer (DCCA)
    global_enable: bool = True

    def key_dict(self):
        d = asdict(self)
        d["yosys_args"] = list(self.yosys_args)
        d["nextpnr_args"] = list(self.nextpnr_args)
        return d


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
    if argv is None:
        return None
    blob = json.dumps({"argv": argv[1:], "nextpnr": tools[target.pnr_tool][1]})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: The manifest of each finished step of a build (its files' hashes; the
#: step is reused only when they all verify).
STEP_MANIFESTS = {"yosys": "yosys.done", "nextpnr": "nextpnr.done", "pack": "pack.done"}


def _step_intact(bdir, step, progress, pnr_key=None):
    """A finished ``step`` of the build ``bdir`` that can be reused: its
    manifest verifies (and is for this place-and-route key).  A damaged one is
    reported and redone."""
    name = STEP_MANIFESTS[step]
    if not (bdir / name).exists():
        return False
    problems = output.verify(bdir, step, name)
    if not problems and pnr_key is not None and \
            output.read_manifest(bdir, name).get("pnr_key") != pnr_key:
        return False                          # another nextpnr run: not damage, just stale
    if problems:
        progress.message(f"warning: {step} results in {bdir} are damaged ({problems[0]}); "
                         f"running {step} again")
    return not problems


def _cached_report(bdir, opts, pkey, progress, run_pnr=True, need_pack=False):
    """The finished report of this build, or ``None``: it must be readable,
    of this report version and options (with a bitstream if one is wanted),
    and every step it rests on intact."""
    path = bdir / "report.json"
    if not path.exists():
        return None
    try:
        rep = json.loads(path.read_text())
        if not isinstance(rep, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        progress.message(f"warning: {path} is unreadable ({e}); rebuilding")
        return None
    if rep.get("report_version") != REPORT_VERSION or rep.get("max_dsp") != opts.max_dsp:
        return None
    if rep.get("status") == "ok" and rep.get("pnr_key") == pkey and \
            (rep.get("bitstream") or not need_pack):
        steps = ("yosys", "nextpnr")
    elif rep.get("status") in ("ok", "synthesized") and not run_pnr:
        steps = ("yosys",)
    else:
        return None
    if need_pack and "nextpnr" in steps:
        steps += ("pack",)
    intact = [_step_intact(bdir, s, progress, pnr_key=pkey if s == "nextpnr" else None)
              for s in steps]
    return rep if all(intact) else None


def synthesize(cfg, target, opts=None, build_root="build/synth", progress=None, force=False):
    """Synthesize, place and route ``cfg`` for ``target``; returns the report dict.

    Raises :class:`ToolMissing`, :class:`ToolFailed` / :class:`PnRFailed`
    (message quotes the tool's error and names its log) and
    :class:`DoesNotFit` (before nextpnr, from Yosys' cell counts).
    ``force`` rebuilds even when the build directory holds a finished report.
    """
    target = get_target(target)
    opts = opts or SynthOptions()
    progress = progress or Progress(f"{cfg.name} {target.name}")
    tools = check_tools(target)                     # fail fast on a missing tool
    freq = opts.freq_mhz or target.default_mhz
    build_root = Path(build_root)

    t_emit = time.monotonic()
    progress.start("emit Verilog (elaborate the network)")
    verilog, cached = emit_harnessed(cfg, opts.schedule, opts.top, build_root / "verilog",
                                     family=target.family, global_enable=opts.global_enable,
                                     warn=progress.message)
    emit_s = progress.done(" (cached)" if cached else "")
    est = analytic_estimate(cfg, target, schedule=opts.schedule, freq_mhz=freq,
                            max_dsp=opts.max_dsp)
    soft = est.soft_multipliers
    script = _yosys_script(target, opts, soft)
    key = build_key(verilog, target, tools, script)
    bdir = build_root / target.name / f"{cfg.name}-{key}"
    report_path = bdir / "report.json"
    pnr_argv = _nextpnr_argv(tools[target.pnr_tool][0] if target.pnr_tool else None,
                             target, opts, freq)
    # no open place and route (7-series): Yosys counts only
    run_pnr = opts.pnr and pnr_argv is not None
    pkey = pnr_key(pnr_argv, tools, target)
    need_pack = bool(opts.pack and target.pack_tool)
    rep = None if force else _cached_report(bdir, opts, pkey, progress, run_pnr, need_pack)
    if rep is not None:
        progress.message(f"unchanged: report from {bdir} ({time.monotonic() - t_emit:.1f} s)")
        refresh_estimate(rep, est, target)
        rep["cached"] = True
        rep["build_dir"] = str(bdir)            # where it is now (a build root can move)
        return rep
    bdir.mkdir(parents=True, exist_ok=True)
    output.write_text(bdir / "top.v", verilog)
    output.write_text(bdir / "config.toml", cfg.to_toml())

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
        "versions": package_versions(), "steps": steps,
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
        output.write_text(bdir / "summary.txt", format_report(report) + "\n")
        output.write_json(report_path, report)          # last: it is what a rerun reads

    # -- yosys
    stat_path, net_path = bdir / "yosys_stat.json", bdir / "top.json"
    if not force and _step_intact(bdir, "yosys", progress):
        progress.message("yosys: netlist from an earlier run of this build")
        steps.append({"step": "yosys", "seconds": 0.0, "cached": True})
    else:
        (bdir / STEP_MANIFESTS["yosys"]).unlink(missing_ok=True)

        def run_yosys(script, text, log, output_name, step_name, step):
            """Run ``text`` as ``script`` logging to ``log``; ``output_name`` must appear."""
            output.write_text(bdir / script, text)
            argv = [tools["yosys"][0], "-q", "-l", log, "-s", script]
            rc, secs = run_tool("yosys", argv, bdir, log, progress, step)
            steps.append({"step": step_name, "seconds": round(secs, 2)})
            if rc != 0 or not (bdir / output_name).exists():
                log = bdir / log
                errs = error_lines(log) or error_lines(bdir / f"{log.name}.out")
                write("yosys_failed")
                raise ToolFailed(f"yosys failed (exit {rc}) on {cfg.name} for {target.name}: "
                                 f"{' | '.join(errs) or 'no ERROR line'}; log: {log}")

        if soft or target.family in _PREPARED:
            # DSP budget: list the real multipliers, then build the cheapest
            # ``soft`` of them from logic (GW5A: always, for gowin_mul.v)
            run_yosys("prepare.ys", _prepare_script(opts.top), "prepare.log", "muls.il",
                      "yosys prepare",
                      "yosys: flatten, narrow and list the multipliers")
            cells = _mul_cells((bdir / "muls.il").read_text())
            report["multiplier_cells"] = len(cells)
            if target.family == "gw5a":
                shutil.copyfile(GOWIN_MUL_V, bdir / "gowin_mul.v")
        if soft:
            report["soft_multiplier_cells"] = len(cells)
            if target.family in _SOFTMUL_FAMILIES:
                shutil.copyfile(SOFTMUL_V, bdir / "softmul.v")
            script = _yosys_script(target, opts, soft,
                                   _soft_selection(cells, soft, target.family))
        run_yosys("synth.ys", script, "yosys.log", stat_path.name, "yosys",
                  f"yosys synth_{target.family}")
        output.write_manifest(bdir, "yosys", ["top.v", "synth.ys", stat_path.name,
                                              net_path.name], name=STEP_MANIFESTS["yosys"])
    cells = cell_counts(json.loads(stat_path.read_text()))
    used = synth_resources(target.family, cells)
    report["synth_cells"] = cells
    report["resources"] = resources_table(target, used, {}, est.resources)
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
        if run_pnr:
            progress.message(f"warning: {msg}; running nextpnr anyway")
    if not run_pnr:
        if pnr_argv is None:
            report["fmax_unavailable"] = (f"no open place and route for {target.family} "
                                          f"here: Yosys resource counts only")
        report["throughput"] = throughput(sched.clocks_per_cycle, None)
        report["total_seconds"] = round(sum(s["seconds"] for s in steps), 2)
        write("synthesized")
        return report

    # -- nextpnr
    pnr_json = bdir / "nextpnr_report.json"
    pnr_marker = bdir / STEP_MANIFESTS["nextpnr"]
    if not force and _step_intact(bdir, "nextpnr", progress, pnr_key=pkey):
        progress.message("nextpnr: placed design from an earlier run of this build")
        steps.append({"step": "nextpnr", "seconds": 0.0, "cached": True})
        rc = 0
    else:
        pnr_marker.unlink(missing_ok=True)
        pnr_json.unlink(missing_ok=True)
        (bdir / STEP_MANIFESTS["pack"]).unlink(missing_ok=True)   # packs the old placement
        cname, ctext, _ = target.constraints(freq)
        output.write_text(bdir / cname, ctext)
        output.write_text(bdir / "nextpnr.cmd", " ".join(pnr_argv[1:]) + "\n")
        # router2 (ECP5) has no iteration limit: a run that stopped making
        # progress is stopped (gen/router_watch.py)
        watch = router2_watch(bdir / "nextpnr.log") if "router2" in pnr_argv else None
        try:
            rc, secs = run_tool("nextpnr", pnr_argv, bdir, "nextpnr.log", progress,
                                f"{target.pnr_tool} place & route ({freq:g} MHz target)", watch)
        except ToolStopped as e:
            steps.append({"step": "nextpnr", "seconds": round(e.seconds, 2), "stopped": str(e)})
            write("pnr_stuck")
            raise PnRFailed(f"place & route of {cfg.name} on {target.name} did not converge: "
                            f"{e}; try another placement seed (--seed {opts.seed + 1}) or a "
                            f"larger --cycle (fewer lanes); log: {bdir / 'nextpnr.log'}") from None
        steps.append({"step": "nextpnr", "seconds": round(secs, 2)})
    if rc != 0 or not pnr_json.exists():
        errs = error_lines(bdir / "nextpnr.log") or error_lines(bdir / "nextpnr.log.out")
        write("pnr_failed")
        raise PnRFailed(f"place & route failed ({target.pnr_tool} exit {rc}) for "
                        f"{cfg.name} on {target.name}: {' | '.join(errs) or 'no ERROR line'}; "
                        f"log: {bdir / 'nextpnr.log'}")
    placed = ["pnr.json"] if target.pack_tool else []       # the packer's input
    output.write_manifest(bdir, "nextpnr", ["nextpnr.cmd", pnr_json.name, *placed],
                          extra={"pnr_key": pkey}, name=STEP_MANIFESTS["nextpnr"])
    pnr = json.loads(pnr_json.read_text())
    pres = pnr_resources(target.family, pnr.get("utilization", {}))
    report["resources"] = resources_table(target, used, pres, est.resources)
    timing = timing_summary(pnr, freq)
    report["timing"] = timing
    report["throughput"] = throughput(sched.clocks_per_cycle, timing["fmax_mhz"])
    report["throughput_estimate"] = throughput(sched.clocks_per_cycle, est.fmax_mhz)
    if opts.pack and target.pack_tool:
        report["bitstream"] = _pack(bdir, tools, target, progress, steps, write, force)
    report["total_seconds"] = round(sum(s["seconds"] for s in steps), 2)
    write("ok")
    return report


def _pack(bdir, tools, target, progress, steps, write, force):
    """Run the bitstream packer on the placed design; ``{"file", "bytes",
    "tool"}``.  Reused while its manifest (the placement it packed and the
    bitstream) verifies."""
    out = bdir / "top.fs"
    if not force and _step_intact(bdir, "pack", progress):
        progress.message("pack: bitstream from an earlier run of this build")
        steps.append({"step": "pack", "seconds": 0.0, "cached": True})
    else:
        (bdir / STEP_MANIFESTS["pack"]).unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        argv = _pack_argv(tools[target.pack_tool][0], target)
        output.write_text(bdir / "pack.cmd", " ".join(argv[1:]) + "\n")
        rc, secs = run_tool(target.pack_tool, argv, bdir, "pack.log", progress,
                            f"{target.pack_tool} bitstream")
        steps.append({"step": "pack", "seconds": round(secs, 2)})
        if rc != 0 or not out.exists():
            errs = error_lines(bdir / "pack.log.out")
            write("pack_failed")
            raise ToolFailed(f"bitstream packing failed ({target.pack_tool} exit {rc}) for "
                             f"{target.name}: {' | '.join(errs) or 'no ERROR line'}; "
                             f"log: {bdir / 'pack.log.out'}")
        output.write_manifest(bdir, "pack", ["pack.cmd", "pnr.json", out.name],
                              extra={"tool": tools[target.pack_tool][1]},
                              name=STEP_MANIFESTS["pack"])
    return {"file": out.name, "bytes": out.stat().st_size, "tool": target.pack_tool}
