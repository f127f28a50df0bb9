"""Design-space exploration: every legal parallelism of a network, estimated,
checked against a device, Pareto-ranked, and optionally synthesized.

``explore(cfg, target)`` enumerates every legal junction-cycle length ``C``
(``legal_cycles``; ``z[i] = W[i] / C`` per junction), estimates each point
(:func:`sparse_edge.gen.estimate.estimate`), marks what fits the device and the
Pareto front of samples/s against LUTs.  With ``synth=K`` it runs real
synthesis on the K most promising points through an :class:`Executor`.

The synthesis jobs go through the executors of :mod:`.executors` (inline,
local process pool, Dask cluster), the same ones ``sweep`` uses: a
:class:`SynthJob` is a picklable dataclass, :func:`run_synth_job` turns it
into a plain dict with a ``status``, and a job that raises or loses its worker
is retried once and then reported as ``failed`` with its error.
"""

import os
import sys
import time
from dataclasses import dataclass, field

from .config import legal_cycles, parse_config
from .estimate import estimate
from .executors import Executor, InlineExecutor, JobBar, ProcessExecutor
from .synth import (DoesNotFit, PnRFailed, Progress, SynthOptions, check_tools,
                    synthesize)
from .targets import get_target
from .tools import SynthError

__all__ = ["Point", "SynthJob", "Executor", "ProcessExecutor", "InlineExecutor",
           "run_synth_job", "enumerate_points", "pareto_front", "most_promising", "explore",
           "format_points"]


@dataclass(frozen=True)
class SynthJob:
    """One synthesis run, self-contained and picklable."""

    config: dict                 # NetworkConfig.to_dict()
    source: str | None           # the config's file (for relative init.file paths)
    target: str
    options: dict                # SynthOptions fields
    build_root: str
    label: str = ""
    quiet: bool = False


def run_synth_job(job):
    """Worker entry point: synthesize one job, return a plain dict
    (``status``: ok / does_not_fit / pnr_failed / error, ``report``, ``message``)."""
    cfg = parse_config(dict(job.config), source=job.source)
    opts = SynthOptions(**job.options)
    prog = Progress(job.label or f"{cfg.name} {job.target}", quiet=job.quiet,
                    stream=sys.stderr, interval=30.0)
    prog.tty = False          # several workers share the terminal: whole lines only
    try:
        rep = synthesize(cfg, job.target, opts, build_root=job.build_root, progress=prog)
        return {"status": "ok", "report": rep, "message": None}
    except DoesNotFit as e:
        return {"status": "does_not_fit", "report": e.report, "message": str(e)}
    except PnRFailed as e:
        return {"status": "pnr_failed", "report": None, "message": str(e)}
    except SynthError as e:
        return {"status": "error", "report": None, "message": str(e)}


# -- points ------------------------------------------------------------------------------

@dataclass
class Point:
    """One parallelism choice and its estimate (and synthesis result, if run)."""

    cycle: int
    z: tuple
    cfg: object
    est: object
    pareto: bool = False
    selected: bool = False
    synth: dict | None = field(default=None)

    @property
    def lut(self):
        return self.est.resources["lut"]

    @property
    def samples_per_s(self):
        return self.est.samples_per_s

    def to_dict(self):
        d = {"C": self.cycle, "z": list(self.z), "estimate": self.est.to_dict(),
             "fits": self.est.fits, "pareto": self.pareto, "selected": self.selected}
        if self.synth is not None:
            s = self.synth
            rep = s.get("report") or {}
            d["synth"] = {"status": s["status"], "message": s.get("message"),
                          "host": (s.get("run") or {}).get("host"),
                          "resources": rep.get("resources"),
                          "fmax_mhz": (rep.get("timing") or {}).get("fmax_mhz"),
                          "throughput": rep.get("throughput"),
                          "build_dir": rep.get("build_dir")}
        return d


def enumerate_points(cfg, target, schedule="fast", freq_mhz=None):
    """Every legal ``C`` of ``cfg``'s network, smallest first, with estimates."""
    pts = []
    for c, z in legal_cycles(cfg.layers, cfg.fanout, cfg.interleaver, cfg.interleaver_seed):
        sub = cfg if c == cfg.cycle else cfg.with_(cycle=c, name=f"{cfg.name}_c{c}")
        pts.append(Point(c, z, sub, estimate(sub, target, schedule, freq_mhz)))
    return pts


def pareto_front(points):
    """Points not dominated in (samples/s up, LUTs down); among the points that
    fit when any does.  Marks ``pareto`` and returns them, fastest first."""
    pool = [p for p in points if p.est.fits] or list(points)
    front = []
    for p in pool:
        dominated = any(q is not p and q.samples_per_s >= p.samples_per_s and q.lut <= p.lut
                        and (q.samples_per_s > p.samples_per_s or q.lut < p.lut) for q in pool)
        p.pareto = not dominated
        if p.pareto:
            front.append(p)
    return sorted(front, key=lambda p: -p.samples_per_s)


def most_promising(points, k):
    """The ``k`` points worth synthesizing: fitting Pareto points, fastest
    first, then the remaining fitting points by throughput.  When nothing fits,
    the ``k`` least over-utilised (to confirm the estimate)."""
    fit = [p for p in points if p.est.fits]
    if not fit:
        return sorted(points, key=lambda p: p.est.utilization)[:k]
    ranked = sorted(fit, key=lambda p: (not p.pareto, -p.samples_per_s))
    return ranked[:k]


def explore(cfg, target, schedule="fast", freq_mhz=None, synth=0, executor=None,
            build_root="build/synth", options=None, quiet=False, log=print):
    """Enumerate, estimate, rank; synthesize the ``synth`` most promising points.
    Returns ``(points, front)``."""
    t = get_target(target)
    points = enumerate_points(cfg, t.name, schedule, freq_mhz)
    front = pareto_front(points)
    if synth:
        check_tools(t)        # a missing tool is reported before any work starts
        chosen = most_promising(points, synth)
        for p in chosen:
            p.selected = True
        if not any(p.est.fits for p in points):
            log(f"note: no parallelism is estimated to fit {t.name}; synthesizing the "
                f"{len(chosen)} smallest to confirm")
        elif len(chosen) < synth:
            log(f"note: only {len(chosen)} point(s) are estimated to fit {t.name}")
        base = dict(vars(options or SynthOptions(schedule=schedule, freq_mhz=freq_mhz)))
        base["yosys_args"] = tuple(base.get("yosys_args", ()))
        base["nextpnr_args"] = tuple(base.get("nextpnr_args", ()))
        jobs = [SynthJob(p.cfg.to_dict(), p.cfg.source, t.name, base, str(build_root),
                         label=f"C={p.cycle} {t.name}", quiet=quiet) for p in chosen]
        by_cycle = {p.cycle: p for p in chosen}
        executor = executor or ProcessExecutor(min(len(jobs), os.cpu_count() or 1))
        t0 = time.monotonic()
        log(f"synthesizing {len(jobs)} point(s) (C = {', '.join(str(p.cycle) for p in chosen)}) "
            f"on {executor.describe()}")
        bar = JobBar(len(jobs), desc="synth", quiet=quiet)
        try:
            for job, result in executor.map(run_synth_job, jobs, bar=bar):
                c = job.config["cycle"]
                if result["status"] == "failed":       # raised twice or lost its worker
                    result = dict(result, report=None, message=result["error"])
                by_cycle[c].synth = result
                rep = result.get("report") or {}
                fm = (rep.get("timing") or {}).get("fmax_mhz")
                host = (result.get("run") or {}).get("host")
                log(f"  C={c}: {result['status']}"
                    + (f", fmax {fm:.1f} MHz" if fm else "")
                    + (f" - {result['message']}" if result.get("message") else "")
                    + (f" [{host}]" if host else "")
                    + f" ({time.monotonic() - t0:.0f} s)")
        finally:
            bar.close()
    return points, front


# -- output ------------------------------------------------------------------------------

def _k(v):
    return f"{v / 1000:.1f}k" if v >= 10000 else f"{v:,}"


def format_points(points, target, show_synth=True):
    """Table of every point (estimate, fit, Pareto, synthesis if run)."""
    t = get_target(target)
    av = t.available
    hdr = (f"{'C':>6} {'z':>14} {'mult':>5} {'DSP':>9} {'LUT':>15} {'FF':>8} {'BRAM':>9} "
           f"{'LUTRAM':>7} {'clk/s':>6} {'samples/s':>11} {'epoch':>8}  fits  pareto")
    lines = [f"target {t.name} ({t.part}): {av['lut']:,} LUT, {av['ff']:,} FF, "
             f"{av['bram']} BRAM, {av['dsp']} DSP, {av['lutram']} LUTRAM", hdr, "-" * len(hdr)]
    for p in points:
        r = p.est.resources
        over = {k for k, _, _ in p.est.over}

        def cell(k, width):
            s = f"{_k(r[k])}/{_k(av[k])}" if k in ("dsp", "bram") else _k(r[k])
            s = ("!" if k in over else "") + s
            return f"{s:>{width}}"
        fits = "yes" if p.est.fits else "NO (" + ",".join(sorted(over)) + ")"
        lines.append(
            f"{p.cycle:>6} {','.join(map(str, p.z)):>14} {p.est.multipliers:>5} {cell('dsp', 9)} "
            f"{cell('lut', 9)} ({100 * r['lut'] / av['lut']:3.0f}%) {cell('ff', 8)} "
            f"{cell('bram', 9)} {cell('lutram', 7)} {p.est.clocks_per_sample:>6} "
            f"{p.samples_per_s:>11,.0f} {p.est.mnist_epoch_s:>7.3f}s  {fits:<5} "
            f"{'*' if p.pareto else ''}{' [synth]' if p.selected else ''}")
    fmax = points[0].est.fmax_mhz if points else None
    assumed = points and points[0].est.fmax_assumed
    lines.append(f"(samples/s and epoch time at {fmax:g} MHz"
                 f"{', a typical fmax for the family; use --freq to change it' if assumed else ''};"
                 f" ! marks a resource over the device; * the Pareto front, samples/s vs LUTs)")
    if show_synth and any(p.synth for p in points):
        lines += ["", "synthesized (estimate -> actual):",
                  f"{'C':>6} {'status':>13} {'LUT':>17} {'FF':>17} {'BRAM':>9} {'DSP':>9} "
                  f"{'fmax MHz':>9} {'samples/s':>11}"]
        for p in points:
            if not p.synth:
                continue
            rep = p.synth.get("report") or {}
            res = rep.get("resources") or {}

            def ea(k):
                a = (res.get(k) or {}).get("used")
                e = p.est.resources[k]
                return f"{e:,}->{a:,}" if a is not None else f"{e:,}->-"
            fm = (rep.get("timing") or {}).get("fmax_mhz")
            sps = (rep.get("throughput") or {}).get("samples_per_s")
            lines.append(f"{p.cycle:>6} {p.synth['status']:>13} {ea('lut'):>17} {ea('ff'):>17} "
                         f"{ea('bram'):>9} {ea('dsp'):>9} {fm or '-':>9} "
                         f"{f'{sps:,.0f}' if sps else '-':>11}")
            if p.synth.get("message"):
                lines.append(f"{'':>6} {p.synth['message']}")
    return "\n".join(lines)
