"""Legality of a network's junction-cycle length ``C`` (SPEC section 2):
rules 1-3 on sizes, rule 4 (no duplicate edge) on the interleaver pattern, and
the list of legal ``C`` every error message offers.  Every loop is bounded by
the divisors of the edge counts, not by the sizes.  Description layer."""

import math

from .interleaver import duplicate_message, straddle_duplicate

__all__ = ["divisors", "cycle_rule_violations", "pattern_problem", "legal_cycles",
           "format_legal"]


def divisors(x):
    """Divisors of ``x`` in increasing order (O(sqrt x) steps)."""
    small, large = [], []
    d = 1
    while d * d <= x:
        if x % d == 0:
            small.append(d)
            if d * d != x:
                large.append(x // d)
        d += 1
    return small + large[::-1]


def cycle_rule_violations(layers, fanout, cycle):
    """Rules 1-3 of SPEC section 2 for junction-cycle length ``cycle``; a list
    of ``(rule, message)``, empty when legal."""
    out = []
    for i in range(1, len(layers)):
        p, n, fo = layers[i - 1], layers[i], fanout[i - 1]
        W = p * fo
        if W % cycle:
            out.append((1, f"rule 1: C={cycle} does not divide the {W} edges of junction {i}"))
        if cycle % fo:
            out.append((2, f"rule 2: fan-out fo={fo} of junction {i} does not divide C={cycle} "
                           f"(a left bank must hold p/z = C/fo rows)"))
        if n % cycle and cycle % n:
            out.append((3, f"rule 3: junction {i}: neither C={cycle} divides N[{i}]={n} nor "
                           f"N[{i}]={n} divides C={cycle}"))
    return out


def pattern_problem(layers, fanout, cycle, kind, seed):
    """Rule 4 (no duplicate edge) for junction-cycle length ``cycle``: the
    message of the first violation, or ``None``.  Only neurons that straddle a
    sweep boundary can have one (:func:`~.interleaver.straddle_duplicate`), so
    this costs at most ``fo - 1`` neurons' edges per junction."""
    for i in range(1, len(layers)):
        p, n, fo = layers[i - 1], layers[i], fanout[i - 1]
        z = p * fo // cycle
        dup = straddle_duplicate(kind, p, n, fo, z, seed, i)
        if dup is not None:
            return (f"rule 4: junction {i} (z={z}): "
                    f"{duplicate_message(*dup, p * fo // n, fo, n)}")
    return None


def legal_cycles(layers, fanout, kind="zero_start", seed=0):
    """All legal ``(C, z-tuple)`` of a network, smallest ``C`` first."""
    edges = [layers[i - 1] * fanout[i - 1] for i in range(1, len(layers))]
    if any(w % layers[i + 1] or fanout[i] > layers[i + 1] for i, w in enumerate(edges)):
        return []  # fan-in not integral or fan-out too large: no C can help
    g = math.gcd(*edges)
    out = []
    for c in divisors(g):
        if cycle_rule_violations(layers, fanout, c):
            continue
        if pattern_problem(layers, fanout, c, kind, seed):
            continue
        out.append((c, tuple(w // c for w in edges)))
    return out


def format_legal(layers, fanout, kind, seed, limit=12):
    legal = legal_cycles(layers, fanout, kind, seed)
    if not legal:
        return "this network has no legal C at all (check the fan-outs and layer sizes)"
    shown = legal[:limit]
    s = ", ".join(f"C={c} (z={','.join(map(str, z))})" for c, z in shown)
    more = f", ... ({len(legal)} in all)" if len(legal) > limit else ""
    return f"legal for this network: {s}{more}"
