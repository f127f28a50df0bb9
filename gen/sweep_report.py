"""The sweep's table, Pareto fronts and picture (``sweep.csv``,
``sweep.json``, ``sweep.png``), rebuilt from every finished point."""

import csv
import importlib.metadata as md
import io
import sys
from pathlib import Path

from .output import remove_tree, write_bytes, write_json, write_text
from .targets import get_target

__all__ = ["pareto", "table_rows", "summary", "write_table", "plot_sweep", "format_table"]


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
