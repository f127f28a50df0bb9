"""``sparse-edge sweep``: accuracy and cost of many networks on an executor,
and the executor options it shares with ``explore --synth``."""

from pathlib import Path

from .cli_common import UserError
from .executors import ExecutorError, make_executor

__all__ = ["cmd_sweep", "executor_from_args", "add_executor_options", "add_sweep_parser"]


def executor_from_args(args):
    """The executor of ``--executor`` / ``--workers`` / ``--scheduler``."""
    try:
        return make_executor(args.executor, args.workers, args.scheduler)
    except ExecutorError as e:
        raise UserError(str(e)) from None


def cmd_sweep(args):
    from .sweep import format_table, load_spec, run_sweep  # deferred: Amaranth, golden model
    spec = load_spec(args.spec).with_options(
        dataset=args.data, epochs=args.epochs, samples=args.samples,
        test_samples=args.test_samples, targets=args.target or None,
        synth=True if args.synth else None)
    out = args.out or f"out/sweep/{spec.name}"
    with executor_from_args(args) as ex:
        run = run_sweep(spec, ex, out, quiet=args.quiet)
    target = spec.options["targets"][0]
    print(format_table(run.rows, target))
    best = run.summary
    if "best_accuracy" in best:
        b, q = best["best_accuracy"], best["best_accuracy_per_lut"]
        print(f"best accuracy that fits {target}: {100 * b['test_acc']:.2f}% ({b['label']}, "
              f"{b['lut']:,} LUT); best accuracy per LUT: {100 * q['test_acc']:.2f}% "
              f"({q['label']}, {q['lut']:,} LUT)")
    print(f"{run.ran} point(s) run, {run.reused} read back, {run.failed} failed, "
          f"{run.illegal} illegal in {run.seconds:.1f} s on {run.executor}")
    pic = " and sweep.png" if run.picture else \
        " (no sweep.png: no point has an accuracy, or matplotlib is missing)"
    print(f"wrote {Path(out) / 'sweep.csv'}, sweep.json{pic} (points in "
          f"{Path(out) / 'points'})")
    return 1 if run.failed else 0


def add_executor_options(p, default="auto"):
    p.add_argument("--executor", choices=("auto", "inline", "local", "dask"), default=default,
                   help="where the jobs run (auto: dask when installed, else local)")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="a running Dask scheduler, tcp://HOST:PORT (default: a local cluster)")


def add_sweep_parser(sub, targets):
    p = sub.add_parser("sweep", help="accuracy and cost of many networks (grid or list in a "
                                     "spec TOML) on local workers or a Dask cluster")
    p.add_argument("spec", help="sweep spec TOML (e.g. configs/sweep-small.toml)")
    add_executor_options(p)
    p.add_argument("--workers", "-j", type=int, metavar="N",
                   help="worker processes of the local pool or cluster (default: CPU count)")
    p.add_argument("--out", help="results folder, also read back to resume "
                                 "(default: out/sweep/NAME)")
    p.add_argument("--data", help="dataset (overrides options.dataset)")
    p.add_argument("--epochs", type=int, help="training epochs per point (0: estimate only)")
    p.add_argument("--samples", type=int, help="first N training samples")
    p.add_argument("--test-samples", type=int, help="first N test samples")
    p.add_argument("--target", "-t", action="append", metavar="T",
                   help=f"FPGA (repeatable; the first decides fit): {targets}")
    p.add_argument("--synth", action="store_true",
                   help="also synthesize each point on the targets its estimate fits")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
    return p
