"""The synthesis report: what the tools' machine-readable outputs say.

Yosys' ``stat -json`` gives cell counts (:func:`synth_resources`), nextpnr's
``--report`` JSON the placed utilisation (:func:`pnr_resources`), fmax per
clock and the critical paths (:func:`timing_summary`, which names the pipeline
stages a path crosses from the ``{tag}_s{k}`` register names of
``hdl/``).  :func:`format_report` prints a report as a table.  Nothing here
runs a tool or scrapes a text log.
"""

import re

from .geometry import STAGES
from .targets import RESOURCE_NAMES

__all__ = ["MNIST_TRAIN", "MNIST_TEST", "cell_counts", "synth_resources", "pnr_resources",
           "timing_summary", "throughput", "resources_table", "refresh_estimate", "format_report"]

#: MNIST split sizes, for the "time per epoch" figures.
MNIST_TRAIN, MNIST_TEST = 60000, 10000


# -- reading the tools' JSON ------------------------------------------------------------

def cell_counts(stat):
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
    if family == "gw5a":
        # LUT4 positions as nextpnr counts them: a LUT4 position holds a LUT4
        # or an ALU (carry) cell, a RAM16SDP4 takes the 8 LUT4 positions of its
        # CFU; the MUX2_LUT5..8 wide-function muxes sit beside the LUTs.
        # Placement adds pass-through LUTs for some FFs (~0.25 per FF).
        ram = _count(cells, ("RAM16S",))
        lut = sum(g(f"LUT{i}", 0) for i in range(1, 5)) + g("ALU", 0) + 8 * ram
        return {"lut": lut, "ff": _count(cells, ("DFF",)),
                "bram": _count(cells, _GOWIN_BSRAM), "dsp": g("MULT12X12", 0),
                "lutram": ram, "io": None}
    if family == "xc7":
        # LUTs as Vivado counts them: logic (LUT1..6, INV as a LUT1) and memory
        # (a LUT RAM or shift register occupies its LUT positions)
        lutram = sum(n * g(c, 0) for c, n in _XC7_LUTRAM.items())
        lut = sum(g(f"LUT{i}", 0) for i in range(1, 7)) + g("INV", 0) + lutram
        return {"lut": lut, "ff": _count(cells, ("FDRE", "FDSE", "FDCE", "FDPE")),
                "bram": g("RAMB18E1", 0) + 2 * g("RAMB36E1", 0), "dsp": g("DSP48E1", 0),
                "lutram": lutram, "io": _count(cells, ("IBUF", "OBUF", "IOBUF", "OBUFT"))}
    ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    return {"lut": g("SB_LUT4", 0), "ff": ffs, "bram": g("SB_RAM40_4K", 0),
            "dsp": g("SB_MAC16", 0), "lutram": 0, "io": None}


def _count(cells, prefixes):
    return sum(v for k, v in cells.items() if k.startswith(tuple(prefixes)))


#: Gowin block RAM primitives (one BSRAM each).
_GOWIN_BSRAM = ("SP", "SPX9", "SDPB", "SDPX9B", "DPB", "DPX9B", "pROM", "pROMX9")
#: 7-series LUT RAM / shift-register primitives and the LUT positions each takes.
_XC7_LUTRAM = {"RAM32M": 4, "RAM32M16": 8, "RAM64M": 4, "RAM64M8": 8, "RAM32X1D": 2,
               "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8, "RAM32X1S": 1, "RAM64X1S": 1,
               "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}

#: report key -> nextpnr bel type(s) of ``--report``'s utilisation (summed)
_PNR_KEYS = {"ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD",
                      "dsp": "MULT18X18D", "lutram": "TRELLIS_RAMW", "io": "TRELLIS_IO"},
             "ice40": {"lut": "ICESTORM_LC", "bram": "ICESTORM_RAM", "dsp": "ICESTORM_DSP",
                       "io": "SB_IO"},
             # LUT4 counts every LUT4 position in use (ALUs, LUT RAMs and
             # pass-through LUTs included)
             "gw5a": {"lut": "LUT4", "ff": "DFF", "bram": "BSRAM",
                      "dsp": "MULT12X12", "lutram": "RAM16SDP4", "io": "IOB"}}


def pnr_resources(family, util):
    """``{key: {"used", "available"}}`` from nextpnr's utilisation; a key
    made of several bel types sums their use and takes the first's capacity."""
    out = {}
    for k, cells in _PNR_KEYS.get(family, {}).items():
        cells = (cells,) if isinstance(cells, str) else cells
        if cells[0] in util:
            out[k] = {"used": sum(int(util[c]["used"]) for c in cells if c in util),
                      "available": int(util[cells[0]]["available"])}
    return out


def _signal_of(cell):
    """Readable signal name of a packed cell name
    (``net.core.junction1.j1_d0_s2_TRELLIS_FF_Q_4`` -> ``junction1.j1_d0_s2``)."""
    name = cell
    for pre in ("dut.", "net.", "core."):
        if name.startswith(pre):
            name = name[len(pre):]
    name = re.split(r"_(?:TRELLIS|SB_|DP16KD|MULT18|CCU2|LUT\d|PFUMX|L6MUX|DCCA|ICESTORM|"
                    r"DFFLC|DFF|ALU|MUX2_LUT|MULT12X12|RAM16SDP|\$)", name)[0]
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


def resources_table(target, synth_used, pnr, estimate):
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


def refresh_estimate(rep, est, target):
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
        dsp = ((rep.get("resources") or {}).get("dsp") or {}).get("used")
        lines.append(f"multipliers (logical): estimate {est['multipliers']}, "
                     f"DSP blocks used {_fmt(dsp)}")
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
                st = ", ".join(f"S{k}" + (f" ({STAGES[k]})" if k in STAGES else "")
                               for k in cp["pipeline_stages"])
                lines.append(f"  the logic of pipeline stage {st} (gen/geometry.py): "
                             f"{' -> '.join(cp['through'][:8])}"
                             f"{' ...' if len(cp['through']) > 8 else ''}")
    if rep.get("fmax_unavailable"):
        lines.append(f"fmax: not available ({rep['fmax_unavailable']})")
    bs = rep.get("bitstream")
    if bs:
        lines.append(f"bitstream: {bs['file']} ({bs['bytes']:,} bytes, {bs['tool']})")
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
