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

from . import output

__all__ = ["KINDS", "JunctionPattern", "PatternError", "duplicate_message", "make_pattern",
           "straddle_duplicate"]

KINDS = ("zero_start", "random_start", "row_permutation", "bank_dither")


class PatternError(ValueError):
    """A generated connection pattern breaks fan-in/fan-out, has a duplicate
    edge or a bank clash."""


def duplicate_message(right, left, fi, fo, n):
    """What a duplicate edge of right neuron ``right`` to ``left`` means."""
    return (f"duplicate edge: right neuron {right} is connected twice to left neuron {left} "
            f"(its {fi} edges straddle a sweep boundary; with multi-clock neurons "
            f"fo={fo} should divide n={n})")


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
            raise PatternError(duplicate_message(j, m, self.fi, self.fo, self.n))
        banks = np.sort(self.bank, axis=1)
        clash = (banks != np.arange(self.z)[None, :]).any(axis=1)
        if clash.any():
            raise PatternError(f"bank clash in clock {int(np.flatnonzero(clash)[0])}")
        return self


def _draws(kind, p, fo, z, seed, junction):
    """The seeded draws behind a pattern: ``(dither, start, keys)``.

    ``start`` (fo, z) is the start vector of the start-vector kinds, ``keys``
    (fo, z, p/z) the random keys whose per-row argsort is the row permutation
    of ``row_permutation``; ``None`` where a kind has none."""
    if kind not in KINDS:
        raise ValueError(f"unknown interleaver kind {kind!r}; choose one of {', '.join(KINDS)}")
    depth = p // z
    rng = np.random.default_rng([seed, junction, KINDS.index(kind)])
    dither = np.zeros(fo, dtype=np.int64)
    start = keys = None
    if kind in ("random_start", "bank_dither"):
        start = rng.integers(0, depth, size=(fo, z))
        if kind == "bank_dither":
            dither = rng.integers(0, z, size=fo)
    elif kind == "row_permutation":
        keys = rng.random((fo, z, depth))
    return dither, start, keys


def _check_tiling(p, n, fo, z):
    W = p * fo
    if W % z or p % z or W % n:
        raise ValueError(f"z={z} does not tile junction with p={p}, n={n}, fo={fo}")


def make_pattern(kind, p, n, fo, z, seed=0, junction=1):
    """Generate (unchecked) the pattern of one junction.

    ``seed`` and ``junction`` seed the random kinds; the same arguments always
    give the same pattern.
    """
    _check_tiling(p, n, fo, z)
    W = p * fo
    depth = p // z
    dither, start, keys = _draws(kind, p, fo, z, seed, junction)
    t = np.arange(depth)
    if start is not None:
        rows = (start[:, :, None] + t[None, None, :]) % depth
    elif keys is not None:
        rows = np.argsort(keys, axis=2)
    else:  # zero_start
        rows = np.broadcast_to(t, (fo, z, depth)).copy()
    return JunctionPattern(p, n, fo, W // n, z, W // z, dither.astype(np.int64),
                           rows.astype(np.int64))


def straddle_duplicate(kind, p, n, fo, z, seed=0, junction=1):
    """The first duplicate edge of the pattern, or ``None``: ``(right neuron,
    left neuron)``, found without building the whole pattern.

    Every sweep visits each left neuron once and the ``z`` lanes of a clock
    read distinct banks, so a duplicate edge needs a right neuron whose edges
    straddle a sweep boundary (multi-clock neurons, ``fo`` not dividing ``n``);
    at most ``fo - 1`` neurons do.  Only their edges are generated, from the
    same draws as :func:`make_pattern`, so config validation stays cheap for
    the largest legal junctions (tests check it agrees with
    :meth:`JunctionPattern.check`)."""
    _check_tiling(p, n, fo, z)
    W = p * fo
    fi, R = W // n, p // z
    j = np.arange(n)
    first, last = (j * fi) // z // R, ((j + 1) * fi - 1) // z // R
    straddling = j[first != last]
    if straddling.size == 0:
        return None
    dither, start, keys = _draws(kind, p, fo, z, seed, junction)
    perm = {}
    for jj in straddling:
        e = np.arange(jj * fi, (jj + 1) * fi)
        c, k = e // z, e % z
        sw, t = c // R, c % R
        if start is not None:
            row = (start[sw, k] + t) % R
        elif keys is not None:
            row = np.empty_like(t)
            for s in np.unique(sw):
                if s not in perm:
                    perm[s] = np.argsort(keys[s], axis=1)
                here = sw == s
                row[here] = perm[s][k[here], t[here]]
        else:
            row = t
        src = np.sort(row * z + (k + dither[sw]) % z)
        dup = np.flatnonzero(np.diff(src) == 0)
        if dup.size:
            return int(jj), int(src[dup[0]])
    return None


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
    output.save_npz(path, **arrays)
