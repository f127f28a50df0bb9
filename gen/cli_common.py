"""Helpers every command of the command line shares: the user-error type
and reading a config, a target and a dataset the way every command does."""

from . import output
from .config import ConfigError, load_config
from .datasets import DatasetError, check_compatible, load_dataset, padded_inputs
from .targets import get_target
from .errors import SparseEdgeError
from .tools import SynthError

__all__ = ["UserError", "check_outputs", "training_config", "hw_config", "hw_target", "check_sample_counts",
           "load_data", "sample_split"]


class UserError(SparseEdgeError):
    """A problem with the user's input, reported as one line."""


def check_outputs(out_dir=None, json_file=None):
    """Check output locations before the long work that fills them."""
    if out_dir:
        output.check_dir(out_dir)
    if json_file:
        output.check_file(json_file)


def load_data(cfg, spec):
    try:
        ds = load_dataset(spec)
        check_compatible(ds, cfg)
        return ds, padded_inputs(ds.x_train, cfg), padded_inputs(ds.x_test, cfg)
    except DatasetError as e:
        raise UserError(str(e)) from None


def training_config(path, epochs=None, schedule=None):
    """The config of a training command with ``--epochs`` / ``--schedule`` applied."""
    try:
        cfg = load_config(path)
        if epochs is not None:
            cfg = cfg.with_(**{"training.epochs": epochs})
        if schedule is not None:
            cfg = cfg.with_(**{"training.schedule": schedule})
    except ConfigError as e:
        raise UserError(str(e)) from None
    return cfg


def check_sample_counts(args, minimum):
    for opt, v in (("--samples", args.samples), ("--test-samples", args.test_samples)):
        if v is not None and v < minimum:
            raise UserError(f"{opt} must be >= {minimum}, not {v}")


def sample_split(cfg, args):
    """``(dataset, x_train, y_train, x_test, y_test)`` cut to ``--samples`` and
    ``--test-samples``."""
    ds, x_train, x_test = load_data(cfg, args.data)
    y_train, y_test = ds.y_train, ds.y_test
    if args.samples is not None:
        x_train, y_train = x_train[:args.samples], y_train[:args.samples]
    if args.test_samples is not None:
        x_test, y_test = x_test[:args.test_samples], y_test[:args.test_samples]
    return ds, x_train, y_train, x_test, y_test


def hw_config(args):
    """The config of a hardware command, with ``--cycle`` applied."""
    try:
        cfg = load_config(args.config)
        if getattr(args, "cycle", None) is not None and args.cycle != cfg.cycle:
            cfg = cfg.with_(cycle=args.cycle, name=f"{cfg.name}_c{args.cycle}")
    except ConfigError as e:
        raise UserError(str(e)) from None
    return cfg


def hw_target(name):
    try:
        return get_target(name)
    except SynthError as e:
        raise UserError(str(e)) from None
