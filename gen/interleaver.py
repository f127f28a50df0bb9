"""Clash-free interleaved connection patterns (SPEC section 3).

Edges of a junction are numbered on the right side in natural order: edge
``e = c*z + k`` is processed in clock ``c`` on lane ``k`` and belongs to right
neuron ``e // fi``.  Left neuron ``m`` lives in activation bank ``m % z``,
row ``m // z``.  The ``C`` clocks form ``fo`` sweeps of ``R = p/z`` clocks.

Every kind is a special case of one general pattern: in sweep ``s``, clock
``t`` of the sweep (``c = s*R + t``), lane ``k`` reads

* bank ``(k + dither[s]) % z`` — a rotation, so the ``z`` lanes read ``z``
  distinct banks every clock (clash-free by construction), and
* row ``rows[s, k, t]`` — for each ``(s, k)`` a permutation of ``0..R-1``,
  so each sweep visits every left neuron exactly once (fan-out ``fo``).

Kinds:

``zero_start``       ``rows[s,k,t] = t`` (the reference RTL's default), no dither.
``random_start``     ``rows[s,k,t] = (S[s,k] + t) % R`` with a seeded random
                     start vector ``S``, no dither.
``row_permutation``  ``rows[s,k,:]`` a seeded random permutation, no dither.
``bank_dither``      random start vector plus a seeded per-sweep bank rotation.

The hardware's address generators read ``row_addr`` and ``bank`` from here;
the golden model reads ``src``: one source of truth.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["KINDS", "JunctionPattern", "PatternError", "make_pattern"]

KINDS = ("zero_start", "random_start", "row_permutation", "bank_dither")


class PatternError(ValueError):
    """A generated connection pattern breaks fan-in/fan-out, has a duplicate
    edge or a bank clash."""


@dataclass(frozen=True, eq=False)
class JunctionPattern:
    """Connection pattern of one junction.

    Members
    -------
    p, n, fo, fi, z, cycle : int
        Left/right layer sizes, fan-out, fan-in, lanes, clocks per junction cycle.
    dither : ndarray (fo,)
        Bank rotation of each sweep.
    rows : ndarray (fo, z, p//z)
        Row read by lane ``k`` in clock ``t`` of sweep ``s``.
    """

    p: int
    n: int
    fo: int
    fi: int
    z: int
    cycle: int
    dither: np.ndarray
    rows: np.ndarray

    @property
    def depth(self):
        """Rows per activation bank, ``p/z`` = clocks per sweep."""
        return self.p // self.z

    @property
    def edges(self):
        return self.p * self.fo

    @property
    def row_addr(self):
        """``(C, z)`` row address of every lane in every clock."""
        # rows[s, k, t] -> [s*R + t, k]
        return np.ascontiguousarray(self.rows.transpose(0, 2, 1).reshape(self.cycle, self.z))

    @property
    def bank(self):
        """``(C, z)`` activation bank read by every lane in every clock."""
        k = np.arange(self.z)
        b = (k[None, :] + self.dither[:, None]) % self.z          # (fo, z)
        return np.repeat(b, self.depth, axis=0)

    @property
    def src(self):
        """Left neuron of every edge, edges in natural (right) order."""
        return (self.row_addr * self.z + self.bank).reshape(-1).astype(np.int32)

    @property
    def dst(self):
        """Right neuron of every edge."""
        return (np.arange(self.edges) // self.fi).astype(np.int32)

    def adjacency(self):
        """Dense ``(n, p)`` 0/1 connection matrix (right x left)."""
        a = np.zeros((self.n, self.p), dtype=np.uint8)
        a[self.dst, self.src] = 1
        return a

    def check(self):
        """Verify the pattern; raise :class:`PatternError` naming the problem."""
        src = self.src
        if src.size != self.n * self.fi or src.size != self.p * self.fo:
            raise PatternError(f"pattern has {src.size} edges, expected p*fo = {self.p * self.fo}")
        fan_out = np.bincount(src, minlength=self.p)
        if (fan_out != self.fo).any():
            m = int(np.flatnonzero(fan_out != self.fo)[0])
            raise PatternError(f"left neuron {m} has fan-out {fan_out[m]}, expected {self.fo}")
        per_neuron = np.sort(src.reshape(self.n, self.fi), axis=1)
        dup = (np.diff(per_neuron, axis=1) == 0)
        if dup.any():
            j = int(np.flatnonzero(dup.any(axis=1))[0])
            m = int(per_neuron[j][1:][dup[j]][0])
            raise PatternError(
                f"duplicate edge: right neuron {j} is connected twice to left neuron {m} "
                f"(its {self.fi} edges straddle a sweep boundary; with multi-clock neurons "
                f"fo={self.fo} should divide n={self.n})")
        banks = np.sort(self.bank, axis=1)
        clash = (banks != np.arange(self.z)[None, :]).any(axis=1)
        if clash.any():
            raise PatternError(f"bank clash in clock {int(np.flatnonzero(clash)[0])}")
        return self


def make_pattern(kind, p, n, fo, z, seed=0, junction=1):
    """Generate (unchecked) the pattern of one junction.

    ``seed`` and ``junction`` seed the random kinds; the same arguments always
    give the same pattern.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown interleaver kind {kind!r}; choose one of {', '.join(KINDS)}")
    W = p * fo
    if W % z or p % z or W % n:
        raise ValueError(f"z={z} does not tile junction with p={p}, n={n}, fo={fo}")
    cycle = W // z
    depth = p // z
    fi = W // n
    rng = np.random.default_rng([seed, junction, KINDS.index(kind)])
    t = np.arange(depth)
    dither = np.zeros(fo, dtype=np.int64)
    if kind == "zero_start":
        rows = np.broadcast_to(t, (fo, z, depth)).copy()
    elif kind in ("random_start", "bank_dither"):
        start = rng.integers(0, depth, size=(fo, z))
        rows = (start[:, :, None] + t[None, None, :]) % depth
        if kind == "bank_dither":
            dither = rng.integers(0, z, size=fo)
    else:  # row_permutation
        rows = np.argsort(rng.random((fo, z, depth)), axis=2)
    return JunctionPattern(p, n, fo, fi, z, cycle, dither.astype(np.int64), rows.astype(np.int64))


def save_patterns(path, patterns):
    """Export patterns as npz: per junction ``i`` (1-based) ``src{i}``,
    ``dst{i}``, ``row_addr{i}``, ``bank{i}``, ``dither{i}``."""
    arrays = {}
    for i, pat in enumerate(patterns, start=1):
        arrays[f"src{i}"] = pat.src
        arrays[f"dst{i}"] = pat.dst
        arrays[f"row_addr{i}"] = pat.row_addr
        arrays[f"bank{i}"] = pat.bank
        arrays[f"dither{i}"] = pat.dither
    np.savez(path, **arrays)
