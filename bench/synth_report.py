"""Analytic estimate vs Yosys/nextpnr on a matrix of configs and targets.

Runs ``sparse-edge synth`` (the library call) on every case, then prints a
markdown table: multipliers, DSP blocks, LUTs, FFs, block RAM, LUT RAM (estimate /
actual / error) and clocks per sample (estimate / hardware, optionally measured in
simulation), fmax and samples/s.  The table in ``docs/synthesis.md`` comes from
the default matrix (:data:`DEFAULT_CASES`, about 20 min from scratch on 2 cores):

    .venv/bin/python bench/synth_report.py --measure-clocks --md out/synth_table.md

Cases are ``CONFIG[@C]:TARGET`` (``configs/board.toml@1024:ecp5-25f``); built-in
networks (:data:`BUILTIN`) are named without a path.  Builds are cached (``--build-dir``), so a rerun
only redoes what changed.  ``--no-pnr`` stops after Yosys (LUT counts before
packing; much faster).  ``--measure-clocks`` simulates each config (Amaranth's
simulator, a few samples) and reports the measured distance between predictions.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (config spec, target) - small to mid-size designs that fit their part.
DEFAULT_CASES = [
    "tiny16:ecp5-25f",
    "tiny8:ecp5-25f",
    "configs/demo.toml@128:ecp5-25f",
    "deep4@64:ecp5-25f",
    "configs/board.toml@1024:ecp5-25f",
    "configs/demo.toml@64:ecp5-45f",
    "configs/demo.toml@32:ecp5-45f",
    "configs/board.toml@256:ecp5-45f",
    "wideq:ecp5-45f",
    "tiny16:ice40-up5k",
]

#: Built-in small networks (no file needed).
BUILTIN = {
    "tiny16": {"name": "tiny16", "layers": [16, 8, 4], "fanout": [2, 2], "cycle": 16,
               "format": {"int_bits": 2, "frac_bits": 7}, "data": {"inputs": 16, "classes": 4},
               "interleaver": {"kind": "random_start", "seed": 1}},
    "tiny8": {"name": "tiny8", "layers": [16, 8, 4], "fanout": [2, 2], "cycle": 8,
              "format": {"int_bits": 2, "frac_bits": 7}, "data": {"inputs": 16, "classes": 4},
              "interleaver": {"kind": "random_start", "seed": 1}},
    "wideq": {"name": "wideq", "layers": [16, 16, 8], "fanout": [2, 4], "cycle": 4,
              "format": {"int_bits": 2, "frac_bits": 7}, "data": {"inputs": 16, "classes": 8},
              "interleaver": {"kind": "random_start", "seed": 1}},
    "deep4": {"name": "deep4", "layers": [64, 32, 32, 16], "fanout": [4, 8, 4], "cycle": 64,
              "format": {"int_bits": 2, "frac_bits": 7}, "data": {"inputs": 64, "classes": 10},
              "interleaver": {"kind": "random_start", "seed": 1}},
}


def load_case(spec):
    from sparse_edge.gen.config import load_config, parse_config
    cfg_spec, target = spec.rsplit(":", 1)
    cycle = None
    if "@" in cfg_spec:
        cfg_spec, c = cfg_spec.split("@")
        cycle = int(c)
    if cfg_spec in BUILTIN:
        cfg = parse_config(dict(BUILTIN[cfg_spec]))
    else:
        p = Path(cfg_spec)
        cfg = load_config(p if p.is_absolute() or p.exists() else ROOT / p)
    if cycle is not None and cycle != cfg.cycle:
        cfg = cfg.with_(cycle=cycle, name=f"{cfg.name}_c{cycle}")
    return cfg, target


def measured_clocks(cfg, schedule):
    import numpy as np

    from sparse_edge.hdl.network import Network
    from sparse_edge.sim.rtl import simulate_amaranth
    rng = np.random.default_rng(0)
    n = 5
    x = rng.integers(0, 256, size=(n, cfg.layers[0])).astype(np.uint8)
    labels = rng.integers(0, cfg.classes, size=n)
    r = simulate_amaranth(Network(cfg, schedule), x, labels, 3, readout=False)
    return sorted(set(np.diff(r.clocks).tolist()))


def pct(e, a):
    if e is None or not a:
        return "-"
    return f"{100.0 * (e - a) / a:+.0f}%"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", help="CONFIG[@C]:TARGET (default: the built-in matrix)")
    ap.add_argument("--build-dir", default=str(ROOT / "build" / "synth"))
    ap.add_argument("--no-pnr", action="store_true", help="stop after Yosys")
    ap.add_argument("--no-pack", action="store_true", help="no bitstream (gw5a-138)")
    ap.add_argument("--schedule", default="fast", choices=("fast", "reference"))
    ap.add_argument("--measure-clocks", action="store_true",
                    help="also measure clocks per sample in simulation")
    ap.add_argument("--md", help="write the markdown table here")
    ap.add_argument("--json", help="write all rows here")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()

    from sparse_edge.gen.estimate import estimate
    from sparse_edge.gen.synth import (DoesNotFit, Progress, SynthError, SynthOptions,
                                       synthesize)
    rows = []
    t0 = time.monotonic()
    for spec in args.cases or DEFAULT_CASES:
        cfg, target = load_case(spec)
        prog = Progress(f"{cfg.name} {target}", quiet=args.quiet)
        opts = SynthOptions(schedule=args.schedule, pnr=not args.no_pnr, pack=not args.no_pack)
        est = estimate(cfg, target, args.schedule)
        row = {"case": spec, "config": cfg.name, "layers": list(cfg.layers), "C": cfg.cycle,
               "z": list(cfg.z), "target": target, "estimate": est.to_dict()}
        try:
            rep = synthesize(cfg, target, opts, build_root=args.build_dir, progress=prog)
        except DoesNotFit as e:
            rep = e.report
            row["does_not_fit"] = str(e)
        except SynthError as e:
            row["error"] = str(e)
            rows.append(row)
            print(f"error: {e}", file=sys.stderr)
            continue
        row["status"] = rep["status"]
        row["resources"] = rep["resources"]
        row["fmax_mhz"] = (rep.get("timing") or {}).get("fmax_mhz")
        row["samples_per_s"] = (rep.get("throughput") or {}).get("samples_per_s")
        row["clocks_per_sample_hw"] = rep["schedule"]["clocks_per_cycle"]
        row["critical_path"] = ((rep.get("timing") or {}).get("critical_path") or {})
        row["build_dir"] = rep["build_dir"]
        row["seconds"] = rep.get("total_seconds")
        if args.measure_clocks:
            row["clocks_per_sample_measured"] = measured_clocks(cfg, args.schedule)
        rows.append(row)

    hdr = ("| config | C | z | target | mult est | DSP est/act | LUT est/act (err) | "
           "FF est/act (err) | BRAM est/act | LUTRAM est/act | clk/sample est/hw"
           + ("/sim" if args.measure_clocks else "") + " | fmax MHz | samples/s |")
    lines = [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for r in rows:
        if "resources" not in r:
            lines.append(f"| {r['config']} | {r['C']} | {r['z']} | {r['target']} | "
                         f"error: {r.get('error')} |")
            continue
        e, res = r["estimate"], r["resources"]

        def ea(k):
            return e["resources"].get(k), (res.get(k) or {}).get("used")
        le, la = ea("lut")
        fe, fa = ea("ff")
        clk = f"{e['clocks_per_sample']}/{r['clocks_per_sample_hw']}"
        if args.measure_clocks:
            clk += "/" + ",".join(map(str, r["clocks_per_sample_measured"]))
        fm = f"{r['fmax_mhz']:.1f}" if r.get("fmax_mhz") else "-"
        sps = f"{r['samples_per_s']:,.0f}" if r.get("samples_per_s") else "-"
        lines.append(
            f"| {r['config']} | {r['C']} | {','.join(map(str, r['z']))} | {r['target']} | "
            f"{e['multipliers']} | {ea('dsp')[0]}/{ea('dsp')[1]} | "
            f"{le:,}/{la:,} ({pct(le, la)}) | {fe:,}/{fa:,} ({pct(fe, fa)}) | "
            f"{ea('bram')[0]}/{ea('bram')[1]} | {ea('lutram')[0]}/{ea('lutram')[1]} | "
            f"{clk} | {fm} | {sps} |")
    table = "\n".join(lines)
    print(table)
    print(f"\n{len(rows)} cases in {time.monotonic() - t0:.0f} s")
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(table + "\n")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
