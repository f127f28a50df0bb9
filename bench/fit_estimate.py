"""Refit the datapath coefficients of the analytic estimate (gen/estimate.py).

Reads the rows ``bench/synth_report.py --json`` wrote (Yosys/nextpnr actuals
next to the estimate of each design) and fits, by least squares on the
designs' totals, the per-lane, per-right-neuron and per-junction LUT and FF
coefficients of ``junction_cost`` (``_LOGIC``), keeping every other block of
the estimate as it is.  Prints the coefficients and the per-design error with
them, so a change to the pipeline in ``hdl/`` can be followed by:

    .venv/bin/python bench/synth_report.py --json out/synth_report.json
    .venv/bin/python bench/fit_estimate.py out/synth_report.json

and the printed numbers copied into ``_LOGIC["ecp5"]`` (ECP5 rows only; the
iCE40 coefficients are scaled from them).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def features(row):
    """Per-design regressors of junction_cost: sum of z*w, sum of q*w, and the
    junction count / phase-counter bits."""
    from sparse_edge.gen.geometry import bits as _bits
    from sparse_edge.gen.geometry import NetworkGeometry, hardware_schedule
    from synth_report import load_case
    cfg, _ = load_case(row["case"])
    geo = NetworkGeometry(cfg, hardware_schedule(cfg, "fast"))
    w = cfg.fmt.width
    lanes = sum(cfg.z) * w
    neurons = sum(geo.q[1:]) * w
    J = cfg.junctions
    return [lanes, neurons, J, J * _bits(cfg.cycle)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="JSON rows of bench/synth_report.py")
    args = ap.parse_args(argv)
    from sparse_edge.gen.estimate import _LOGIC
    rows = [r for r in json.loads(Path(args.report).read_text())
            if r["target"].startswith("ecp5") and r["status"] in ("ok", "synthesized")]
    if len(rows) < 4:
        sys.exit("need at least 4 ECP5 designs with results to fit 4 coefficients")
    from sparse_edge.gen.estimate import ECP5
    k = _LOGIC["ecp5"]
    X = np.array([features(r) for r in rows], dtype=float)
    pack = ECP5.ff_luts
    ff_shift = np.zeros(len(rows))
    for res, keys in (("ff", ("lane_ff", "neuron_ff", "base_ff", "cbit_ff")),
                      ("lut", ("lane_lut", "neuron_lut", "base_lut", "cbit_lut"))):
        old = np.array([k[key] for key in keys])
        actual = np.array([r["resources"][res]["used"] for r in rows], dtype=float)
        est = np.array([r["estimate"]["resources"][res] for r in rows], dtype=float)
        if res == "lut":
            # placed LUTs include ~0.16 feed-through LUT per FF: follow the new FFs
            est = est + pack * ff_shift
        rest = est - X @ old          # the rest of the estimate is kept
        coef, *_ = np.linalg.lstsq(X, actual - rest, rcond=None)
        new = rest + X @ coef
        if res == "ff":
            ff_shift = new - est
        print(f"{res}: " + ", ".join(f'"{key}": {c:.1f}' for key, c in zip(keys, coef)))
        for r, a, e0, e1 in zip(rows, actual, est, new):
            print(f"  {r['case']:<36} actual {a:>8,.0f}  old {100 * (e0 / a - 1):+6.1f}%  "
                  f"new {100 * (e1 / a - 1):+6.1f}%")


if __name__ == "__main__":
    main()
