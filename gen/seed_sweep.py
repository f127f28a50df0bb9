"""Several nextpnr placement seeds for one build, the fastest kept.

On a full die the critical path is a long net wherever the placer left it,
and the fmax of one design moves by several MHz from seed to seed (board@64
on the ECP5-85F: 50.0-58.2 MHz over builds that differed by one register).
``sparse-edge synth --seeds 1,2,3`` (:func:`sweep_seeds`) runs Yosys once and
nextpnr once per seed, then leaves the build directory as the best seed's
build: its report, logs and placed design, so ``synth --seed BEST`` reuses it.

Each seed's results are kept in ``<build>/seeds/seed<N>/`` (the files of
:data:`PLACEMENT_FILES` the build has) and put back before that seed's turn,
so a sweep run again, or with more seeds, re-runs nextpnr only for seeds it
has not placed.  A seed that failed (nextpnr's error, or router2 stopped for
not converging) is remembered too (``seeds/seed<N>/failed.json``: its error,
options and tool versions): the same netlist, options and tools fail the same way,
so a later sweep records it without placing it again for hours; ``--force``
places every seed again.  The returned report is the best seed's with ``seed_sweep``
(every seed's fmax and status, the chosen seed) added; the sweep is also
written to ``<build>/seeds/sweep.json``.
"""

import json
import shutil
from dataclasses import replace
from pathlib import Path

from . import output
from .synth import PnRFailed, Progress, synthesize

__all__ = ["PLACEMENT_FILES", "sweep_seeds", "format_sweep"]

#: The files of a build that belong to its placement (nextpnr's and the
#: packer's outputs, logs and manifests, and the report on them); the
#: netlist (Yosys') is shared by every seed.
PLACEMENT_FILES = ("report.json", "summary.txt", "nextpnr.cmd", "nextpnr.log",
                   "nextpnr.log.out", "nextpnr_report.json", "nextpnr.done", "top.config",
                   "top.asc", "pnr.json", "pack.cmd", "pack.log.out", "top.fs", "pack.done")


def _copy_placement(src, dst):
    """Copy the placement files ``src`` has into ``dst`` (those it lacks are
    removed from ``dst``: they belong to another seed)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in PLACEMENT_FILES:
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)
        else:
            (dst / name).unlink(missing_ok=True)


#: A failed seed's record in its snapshot directory.
FAILED = "failed.json"


def _failure_key(opts, tools):
    """What makes a failure repeat: the seed's options and the tools'
    versions (their paths may differ between runs), as they read back from
    JSON (tuples as lists)."""
    return json.loads(json.dumps({"options": opts.key_dict(),
                                  "tools": {k: v.get("version") for k, v in tools.items()}}))


def _known_failure(snap, key):
    """The earlier failure of this seed (``{"status", "message"}``) if it was
    placed with the same :func:`_failure_key`, else None."""
    try:
        rec = json.loads((snap / FAILED).read_text())
    except (OSError, ValueError):
        return None
    return rec if {k: rec.get(k) for k in key} == key else None


def _fmax(rep):
    return ((rep or {}).get("timing") or {}).get("fmax_mhz")


def sweep_seeds(cfg, target, opts, seeds, build_root="build/synth", progress=None,
                force=False):
    """:func:`~sparse_edge.gen.synth.synthesize` with each of ``seeds`` (in
    order); returns the report of the seed with the highest fmax (the first
    of equals) with ``seed_sweep`` added.  A seed whose routing fails or is
    stopped (router2 not converging) is recorded and skipped, and a later
    sweep of the same build, options and tools does not place it again
    (``force`` does); if every seed fails, the last error is raised."""
    seeds = list(seeds)
    progress = progress or Progress(f"{cfg.name} {target.name}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"sweep_seeds: seeds must be distinct and not empty, not {seeds}")
    # the build directory (Yosys once; a finished netlist is reused)
    probe = synthesize(cfg, target, replace(opts, pnr=False), build_root=build_root,
                       progress=progress, force=force)
    bdir = Path(probe["build_dir"])
    sdir = bdir / "seeds"
    if force:
        shutil.rmtree(sdir, ignore_errors=True)
        (bdir / "nextpnr.done").unlink(missing_ok=True)
    runs, reports, error = [], {}, None
    for seed in seeds:
        snap = sdir / f"seed{seed}"
        sopts = replace(opts, seed=seed)
        key = _failure_key(sopts, probe["tools"])
        known = _known_failure(snap, key)
        if known is not None:
            error = PnRFailed(known["message"])
            runs.append({"seed": seed, "status": known["status"], "fmax_mhz": None,
                         "message": known["message"], "cached": True})
            progress.message(f"seed {seed}: {known['status']} in an earlier sweep of this "
                             f"build (same options and tools), not placed again; --force "
                             f"places it again")
            continue
        if snap.is_dir():
            _copy_placement(snap, bdir)          # this seed's earlier placement back
        try:
            rep = synthesize(cfg, target, sopts, build_root=build_root, progress=progress)
        except PnRFailed as e:
            error = e
            status = _status(bdir)
            runs.append({"seed": seed, "status": status, "fmax_mhz": None, "message": str(e)})
            _copy_placement(bdir, snap)
            output.write_json(snap / FAILED, {"seed": seed, "status": status,
                                              "message": str(e), **key})
        else:
            reports[seed] = rep
            runs.append({"seed": seed, "status": rep["status"], "fmax_mhz": _fmax(rep),
                         "cached": bool(rep.get("cached"))})
            _copy_placement(bdir, snap)
            (snap / FAILED).unlink(missing_ok=True)
    if not reports:
        raise error
    best = max(reports, key=lambda s: (_fmax(reports[s]) or 0.0, -seeds.index(s)))
    _copy_placement(sdir / f"seed{best}", bdir)  # the build directory is the best seed's
    sweep = {"seeds": seeds, "best_seed": best, "runs": runs}
    output.write_json(sdir / "sweep.json", sweep)
    rep = dict(reports[best])
    rep["seed_sweep"] = sweep
    return rep


def _status(bdir):
    """The status the failed run wrote into its report (``pnr_failed`` or
    ``pnr_stuck``)."""
    try:
        return json.loads((bdir / "report.json").read_text()).get("status") or "pnr_failed"
    except (OSError, ValueError):
        return "pnr_failed"


def format_sweep(sweep):
    """The sweep as text lines: one per seed, the chosen one marked."""
    lines = [f"seed sweep: {len(sweep['runs'])} seeds, best {sweep['best_seed']}"]
    for r in sweep["runs"]:
        f = r["fmax_mhz"]
        mark = "  <- kept" if r["seed"] == sweep["best_seed"] else ""
        what = f"{f:.2f} MHz" if f is not None else r["status"]
        lines.append(f"  seed {r['seed']:>4}: {what}{' (cached)' if r.get('cached') else ''}"
                     f"{mark}")
    return "\n".join(lines)
