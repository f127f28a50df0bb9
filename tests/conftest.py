import os
from pathlib import Path

import numpy as np
import pytest

from sparse_edge.gen.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
MNIST = Path(os.environ.get("SPARSE_EDGE_MNIST", ROOT.parent / "shared" / "data" / "mnist.npz"))


def make_config(layers, fanout, cycle, int_bits=2, frac_bits=7, kind="random_start", seed=1,
                **extra):
    raw = {"layers": list(layers), "fanout": list(fanout), "cycle": cycle,
           "format": {"int_bits": int_bits, "frac_bits": frac_bits},
           "interleaver": {"kind": kind, "seed": seed},
           "data": {"inputs": layers[0], "classes": min(layers[-1], 10)}}
    for k, v in extra.items():
        raw.setdefault(k, {}).update(v) if isinstance(v, dict) else raw.__setitem__(k, v)
    return parse_config(raw)


@pytest.fixture(scope="session")
def mnist():
    if not MNIST.exists():
        pytest.skip(f"MNIST file {MNIST} not present")
    with np.load(MNIST) as f:
        return {k: f[k] for k in f.files}


#: Tolerances of the synthesis baselines (tests/test_synth.py,
#: tests/test_synth_families.py): placement varies between tool versions.
GROW, SHRINK, SLOW = 1.15, 0.6, 0.85


def assert_within_baseline(rep, base):
    """Each resource of a synthesis report within GROW/SHRINK of ``base``,
    its fmax at least SLOW of the baseline's."""
    for k, b in base.items():
        if k == "fmax_mhz":
            got = rep["timing"]["fmax_mhz"]
            assert got >= SLOW * b, f"fmax regressed: {got:.1f} MHz < {SLOW:.0%} of {b} MHz"
            continue
        got = rep["resources"][k]["used"]
        assert got <= GROW * b, f"{k} grew: {got} > {GROW:.0%} of the baseline {b}"
        assert got >= SHRINK * b, f"{k} shrank suspiciously: {got} < {SHRINK:.0%} of {b}"
