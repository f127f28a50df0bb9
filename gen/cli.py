"""``sparse-edge`` command line.

Subcommands share one config file (SPEC: one config object, validated once).
Every failure a user can cause (bad config, bad dataset, missing tool) ends
with a one-line ``error: ...`` and exit status 2, never a traceback.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import output
from .cli_board import add_board_parsers
from .cli_common import UserError
from .cli_hw import cmd_estimate, cmd_explore, cmd_generate, cmd_synth
from .cli_sweep import add_executor_options, add_sweep_parser
from .cli_train import cmd_simulate, cmd_train
from .config import ConfigError, legal_cycles, load_config
from .errors import SparseEdgeError
from .geometry import NetworkGeometry, hardware_schedule, reference_clocks_per_sample
from .targets import TARGETS
from .tools import package_versions

__all__ = ["main", "build_parser", "UserError"]


# -- check ------------------------------------------------------------------------
def cmd_check(args):
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError(str(e)) from None
    fmt = cfg.fmt
    print(f"network {cfg.name}: layers {'-'.join(map(str, cfg.layers))}, {fmt} "
          f"({fmt.width} bits), interleaver {cfg.interleaver} (seed {cfg.interleaver_seed})")
    print(f"junction-cycle length C = {cfg.cycle} clocks")
    hdr = f"{'junction':>8} {'p':>6} {'n':>6} {'fo':>4} {'fi':>5} {'edges':>7} {'density':>8} " \
          f"{'z':>5} {'p/z':>5} {'neurons/clk':>11}"
    print(hdr)
    print("-" * len(hdr))
    for j in range(cfg.junctions):
        p, n = cfg.layers[j], cfg.layers[j + 1]
        per_clk = f"{n // cfg.cycle}" if n % cfg.cycle == 0 else f"1/{cfg.cycle // n}"
        print(f"{j + 1:>8} {p:>6} {n:>6} {cfg.fanout[j]:>4} {cfg.fanin[j]:>5} "
              f"{cfg.edges[j]:>7} {cfg.density[j]:>8.4f} {cfg.z[j]:>5} {p // cfg.z[j]:>5} "
              f"{per_clk:>11}")
    print(f"parameters: {cfg.parameters} (fully connected: {cfg.parameters_fc}, "
          f"{cfg.parameters_fc / cfg.parameters:.1f}x fewer)")
    geo = NetworkGeometry(cfg, hardware_schedule(cfg, "fast"))
    print(f"multipliers: {geo.multipliers()} (per lane FF + UP, + BP from junction 2 on; "
          f"one a' multiplier per hidden neuron finished per clock)")
    print("memory bits (fast schedule): " +
          ", ".join(f"{k} {v}" for k, v in geo.memory_bits().items()))
    for kind in ("fast", "reference"):
        sch = hardware_schedule(cfg, kind)
        print(f"{kind:>9} schedule: {sch.clocks_per_cycle} clocks per sample, F={list(sch.F)} "
              f"U={list(sch.U)}, staleness {list(sch.staleness)}")
    print(f"(the reference RTL needs C + 4 = {reference_clocks_per_sample(cfg)} clocks per "
          "sample)")
    legal = legal_cycles(cfg.layers, cfg.fanout, cfg.interleaver, cfg.interleaver_seed)
    print("legal C (z) for this network: " +
          ", ".join(f"{c} ({','.join(map(str, z))})" for c, z in legal))
    return 0


# -- entry point ----------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line ``error:`` (exit status 2) for bad options."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


#: Bounds of numeric options, checked before any work: (lowest, open bound?).
_BOUNDS = {"freq": (0, True), "max_dsp": (0, False), "workers": (1, False), "synth": (0, False),
           "cycle": (1, False), "seed": (0, False), "baud": (0, True),
           "timeout": (0, True)}


def _check_options(args):
    """Numeric options in range and finite (``--freq 0``, ``nan`` or ``-10`` is
    a one-line error, not a silent default or nonsense)."""
    for name, (lo, open_) in _BOUNDS.items():
        v = getattr(args, name, None)
        if v is None or isinstance(v, str):   # e.g. `build --cycle auto`: checked there
            continue
        opt = "--" + name.replace("_", "-")
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{opt} must be a finite number, not {v}")
        if v < lo or (open_ and v == lo):
            raise UserError(f"{opt} must be {'>' if open_ else '>='} {lo}, not {v:g}")


def build_parser():
    ap = _Parser(prog="sparse-edge", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("check", help="validate a config and print its derived figures")
    p.add_argument("config")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("train", help="train the golden model on a dataset")
    p.add_argument("config")
    p.add_argument("--data", default="digits",
                   help="digits (offline default), mnist, an .npz or an IDX directory")
    p.add_argument("--mode", choices=("fixed", "float"), default="fixed")
    p.add_argument("--schedule", choices=("reference", "fast", "sequential"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--samples", type=int, help="use only the first N training samples")
    p.add_argument("--test-samples", type=int, help="use only the first N test samples")
    p.add_argument("--out", help="directory for result.json, golden.npz, accuracy.png")
    p.add_argument("--json", help="also write the JSON result here")
    p.add_argument("--plot", action="store_true", help="PNG of accuracy per epoch (with --out)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="emit Verilog, RTLIL, memory images and a summary")
    p.add_argument("config")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--schedule", choices=("fast", "reference"), default="fast")
    p.add_argument("--name", default="sparse_edge_top", help="top module name")
    p.set_defaults(func=cmd_generate)

    targets = ", ".join(TARGETS)
    p = sub.add_parser("estimate", help="analytic resource/throughput estimate (instant)")
    p.add_argument("config")
    p.add_argument("--target", "-t", required=True, help=f"FPGA: {targets}")
    p.add_argument("--cycle", type=int, help="override the junction-cycle length C")
    p.add_argument("--schedule", choices=("fast", "reference"), default="fast")
    p.add_argument("--freq", type=float, help="clock (MHz) for samples/s (default: typical fmax)")
    p.add_argument("--max-dsp", type=int, metavar="N",
                   help="DSP budget: multipliers beyond N are built from LUTs")
    p.add_argument("--blocks", action="store_true", help="per-block breakdown, memory mapping")
    p.add_argument("--json", help="write the estimate here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("synth", help="synthesize, place & route (Yosys + nextpnr) with a report")
    p.add_argument("config")
    p.add_argument("--target", "-t", required=True, help=f"FPGA: {targets}")
    p.add_argument("--cycle", type=int, help="override the junction-cycle length C")
    p.add_argument("--schedule", choices=("fast", "reference"), default="fast")
    p.add_argument("--freq", type=float, help="nextpnr clock target in MHz (default per target)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--seeds", metavar="LIST",
                   help="a seed sweep: nextpnr once per seed (e.g. 1,2,3), the build "
                        "directory left as the fastest seed's build (gen/seed_sweep.py)")
    p.add_argument("--placer", choices=("heap", "sa", "static"),
                   help="nextpnr placer (default: nextpnr's own, heap); static is not "
                        "available for gw5a-138")
    p.add_argument("--placer-density", type=float, metavar="F",
                   help="HeAP placer's maximum placement density, 0 < F <= 1 (nextpnr "
                        "--placer-heap-beta, default 0.9); lower spreads the cells more, "
                        "which can let a crowded placement legalise")
    p.add_argument("--max-dsp", type=int, metavar="N",
                   help="DSP budget: multipliers beyond N are built from LUTs, cheapest first")
    p.add_argument("--build-dir", default="build/synth",
                   help="build directories (keyed by Verilog, target and tool versions)")
    p.add_argument("--out", help="also copy report.json and summary.txt here")
    p.add_argument("--json", help="also write the report here")
    p.add_argument("--no-pnr", action="store_true", help="stop after Yosys (cell counts only)")
    p.add_argument("--no-pack", action="store_true",
                   help="no bitstream after place & route (gw5a-138: gowin_pack)")
    p.add_argument("--ignore-fit", action="store_true",
                   help="run nextpnr even when Yosys' counts exceed the device")
    p.add_argument("--rebuild", action="store_true", help="ignore a finished build")
    p.add_argument("--no-global-enable", action="store_true",
                   help="ECP5: route the network's clock enable in the fabric instead of "
                        "on a global buffer (DCCA)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("explore", help="every legal C: estimates, fit, Pareto front; "
                                       "--synth K runs the K most promising")
    p.add_argument("config")
    p.add_argument("--target", "-t", required=True, help=f"FPGA: {targets}")
    p.add_argument("--schedule", choices=("fast", "reference"), default="fast")
    p.add_argument("--freq", type=float, help="clock (MHz) for samples/s and nextpnr")
    p.add_argument("--synth", type=int, metavar="K", help="synthesize the K most promising points")
    p.add_argument("--jobs", "-j", "--workers", dest="workers", type=int,
                   help="parallel synthesis workers (default: cores)")
    add_executor_options(p, default="local")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--build-dir", default="build/synth")
    p.add_argument("--out", help="directory for explore.json and explore.txt")
    p.add_argument("--json", help="also write the JSON result here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("simulate", help="train in the compiled RTL simulation (CXXRTL) of the "
                                        "emitted Verilog; --check compares with the golden model")
    p.add_argument("config")
    p.add_argument("--data", default="digits",
                   help="digits (offline default), mnist, an .npz or an IDX directory")
    p.add_argument("--schedule", choices=("fast", "reference"),
                   help="hardware schedule (default: the config's, if it is a hardware one)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--samples", type=int, help="use only the first N training samples")
    p.add_argument("--test-samples", type=int, help="use only the first N test samples")
    p.add_argument("--check", action="store_true",
                   help="compare predictions, clocks, weights and biases with the golden model")
    p.add_argument("--json", help="write the JSON result here")
    p.add_argument("--keep", action="store_true", help="keep the simulation's input/output files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or build messages")
    p.set_defaults(func=cmd_simulate)

    add_sweep_parser(sub, targets)
    add_board_parsers(sub)
    return ap


def _crash_log(argv):
    """Write the traceback of an unexpected exception to a log file; its path
    (``$SPARSE_EDGE_CACHE/crash/`` or ``~/.cache/sparse-edge/crash/``, else the
    temporary folder), or ``None`` when no log can be written anywhere."""
    text = (f"sparse-edge {' '.join(argv)}\n{json.dumps(package_versions())}\n\n"
            + traceback.format_exc())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.environ.get("SPARSE_EDGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                               "sparse-edge")
    for folder in (Path(base) / "crash", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return output.write_text(folder / f"sparse-edge-crash-{stamp}-{os.getpid()}.log",
                                     text)
        except (OSError, SparseEdgeError):
            continue
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        _check_options(args)
        return args.func(args)
    except SparseEdgeError as e:
        # every expected failure: config, data, output, tool, fit
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into e.g. `head`, which stopped reading: not an error
        # of ours; silence the interpreter's second complaint at exit
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as e:  # noqa: BLE001 - the boundary: anything else is a bug
        log = _crash_log(argv)
        where = f"the traceback is in {log}" if log else "no log could be written"
        print(f"error: internal error, a bug in sparse-edge ({type(e).__name__}: "
              f"{' '.join(str(e).split())[:300]}); {where}; please report it",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
