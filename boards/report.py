"""The results of a board build: reading the tools' reports into the build
report, and the readable summary of it.

* :func:`read_reports`: an Amaranth build plan's results (Yosys ``stat
  -json``, nextpnr's ``--report``, the bitstream), never the text logs;
* :func:`xilinx_counts`: for a board whose vendor flow is not run (the Vivado
  plan is only written), Yosys ``synth_xilinx -family xc7`` resource counts;
* :func:`format_build`: the ``summary.txt`` of a build (and what
  ``sparse-edge board build`` prints).

Used by :func:`sparse_edge.boards.build.build_board`.
"""

import hashlib
import json
import subprocess
import time
import zipfile

from ..gen.synth_report import cell_counts, pnr_resources, synth_resources, timing_summary
from .errors import BuildError

__all__ = ["read_reports", "xilinx_counts", "format_build"]


def read_reports(rep, bdir, spec, est, clock_hz):
    """Adds the synthesis cells, the resources (placed, synthesised,
    estimated ``est``), the timing against ``clock_hz`` and the bitstream
    (size, SHA-256) of the build in ``bdir`` to ``rep``."""
    stat = json.loads((bdir / "stat.json").read_text())
    cells = cell_counts(stat)
    synth = synth_resources(spec.family, cells)
    pnr = json.loads((bdir / "report-pnr.json").read_text())
    placed = pnr_resources(spec.family, pnr.get("utilization", {}))
    res = {}
    for k in ("lut", "ff", "bram", "dsp", "lutram", "io"):
        row = {}
        if k in placed:
            row.update(placed[k])
        if synth.get(k) is not None:
            row["synth"] = synth[k]
        if est and k in est:
            row["estimate"] = est[k]
        if row:
            res[k] = row
    rep["synth_cells"] = cells
    rep["resources"] = res
    rep["timing"] = timing_summary(pnr, clock_hz / 1e6)
    if not (bdir / spec.bitstream).exists():
        raise BuildError(f"the build left no {spec.bitstream} in {bdir}")
    data = (bdir / spec.bitstream).read_bytes()
    rep["bitstream"] = {"file": spec.bitstream, "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()}


def xilinx_counts(rep, bdir, tools, env, progress):
    """The Vivado plan is written (not run); Yosys ``synth_xilinx -family
    xc7`` gives the resource counts of the same Verilog."""
    rep["vivado_plan"] = sorted(p.name for p in bdir.iterdir() if p.is_file())
    with zipfile.ZipFile(bdir / "vivado-plan.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for name in rep["vivado_plan"]:
            z.write(bdir / name, name)
    script = ("read_verilog top.v\nsynth_xilinx -family xc7 -top top\n"
              "tee -q -o stat-xc7.json stat -json\n")
    (bdir / "synth_xc7.ys").write_text(script)
    progress("Vivado build plan written (not run); Yosys synth_xilinx -family xc7 for the "
             "resource counts")
    t0 = time.monotonic()
    with open(bdir / "yosys-xc7.log", "w") as f:
        r = subprocess.run([tools["yosys"][0], "-q", "-s", "synth_xc7.ys"], cwd=bdir, env=env,
                           stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise BuildError(f"yosys synth_xilinx failed (exit {r.returncode}); log: "
                         f"{bdir / 'yosys-xc7.log'}")
    rep["steps"].append({"step": "yosys synth_xilinx", "seconds": round(time.monotonic() - t0, 2)})
    cells = cell_counts(json.loads((bdir / "stat-xc7.json").read_text()))
    luts = sum(v for k, v in cells.items() if k.startswith("LUT"))
    ffs = sum(v for k, v in cells.items() if k.startswith("FD"))
    rep["synth_cells"] = cells
    rep["resources"] = {
        "lut": {"synth": luts, "available": 63400, "reference": 46168},
        "ff": {"synth": ffs, "available": 126800, "reference": 14404},
        "bram": {"synth": cells.get("RAMB36E1", 0) + 0.5 * cells.get("RAMB18E1", 0),
                 "available": 135, "reference": 37.5},
        "dsp": {"synth": cells.get("DSP48E1", 0), "available": 240, "reference": 224},
        "lutram": {"synth": sum(v for k, v in cells.items() if k.startswith(("RAM32", "RAM64",
                                                                              "RAM128", "RAM256",
                                                                              "SRL"))),
                   "available": 19000},
    }



def format_build(rep):
    """A readable summary of a build report."""
    b = rep["board"]
    cfg = rep["config"]
    lines = [f"{rep['config_name']} ({'-'.join(map(str, cfg['layers']))}, C={rep['cycle']}, "
             f"z={cfg['z']}) on {b['name']} ({b['device']}), {rep['schedule']['name']} schedule",
             f"clock {rep['clock_mhz']:g} MHz"
             + (f" (PLL from {b['osc_mhz']:g} MHz)" if rep.get("pll") else "")
             + f", UART {rep['baud']:,} baud (divisor {rep['divisor']}, "
               f"{rep['baud_error_pct']:+.2f}%)", ""]
    lines.append(f"{'resource':<9} {'used':>9} {'available':>10} {'util':>6} {'estimate':>9}"
                 + ("  reference" if b["family"] == "xc7" else ""))
    for k, r in (rep.get("resources") or {}).items():
        used = r.get("used", r.get("synth"))
        a = r.get("available")
        util = f"{100 * used / a:.0f}%" if used is not None and a else "-"
        est = r.get("estimate")
        lines.append(f"{k:<9} {used if used is not None else '-':>9} {a if a else '-':>10} "
                     f"{util:>6} {est if est is not None else '-':>9}"
                     + (f"  {r['reference']:>9}" if "reference" in r else ""))
    tm = rep.get("timing")
    if tm and tm.get("fmax_mhz") is not None:
        lines.append("")
        lines.append(f"fmax {tm['fmax_mhz']:.1f} MHz for a {rep['clock_mhz']:g} MHz clock "
                     f"({'met' if tm['met'] else 'NOT met'})")
    lk = rep["link"]
    lines.append(f"accelerator: {rep['clocks_per_sample']} clocks/sample = "
                 f"{rep['accelerator_samples_per_s']:,.0f} samples/s at {rep['clock_mhz']:g} MHz")
    if "typical_samples_per_s" in lk:
        lines.append(f"link: {lk['typical_bytes_per_sample']:g} bytes per {rep['link_dataset']} "
                     f"sample = {lk['typical_samples_per_s']:,.0f} samples/s at "
                     f"{rep['baud']:,} baud (worst case {lk['worst_samples_per_s']:,.0f})")
    else:
        lines.append(f"link: at most {lk['worst_bytes_per_sample']} bytes per sample = at least "
                     f"{lk['worst_samples_per_s']:,.0f} samples/s at {rep['baud']:,} baud")
    if rep.get("bitstream"):
        lines.append(f"bitstream: {rep['bitstream']['file']} ({rep['bitstream']['bytes']:,} "
                     "bytes)")
    if rep.get("vivado_plan"):
        lines.append("Vivado build plan (not run): vivado-plan.zip")
    return "\n".join(lines)
