"""A watch on nextpnr's router2, which has no iteration limit of its own.

router2 logs one line per iteration (``iter=N wires=W overused=O ...``); a
placement it cannot route makes it hover at some count of overused wires for
as long as one lets it (on the ULX3S demo: 976 iterations, 25 minutes).
:func:`router2_stuck` tells such a run from a slow one that still makes
progress; ``sparse-edge synth`` (``gen/synth.py``) stops it with an error that
names another seed, and the board builds (``boards/runner.py``) place again
with the next seed.
"""

import re
from pathlib import Path

__all__ = ["ROUTER2_MIN_ITER", "ROUTER2_PATIENCE", "router2_progress", "router2_stuck",
           "describe_stuck", "router2_watch"]

#: router2 counts as not converging when, past ROUTER2_MIN_ITER iterations,
#: the count of overused wires has not reached a new low for
#: ROUTER2_PATIENCE iterations.  The ULX3S demo (C = 16, 114 of 156 DSPs)
#: routes in 64 iterations on a good placement; on bad ones router2 hovered at
#: 110-126 overused wires from iteration ~300 to 976 (25 min), at 268-376 from
#: iteration 30 to 80, and at 21-59 from 57 to 101.  board@64 on the ECP5-85F
#: routes in 36.
ROUTER2_MIN_ITER = 150
ROUTER2_PATIENCE = 60
_ROUTER2_ITER = re.compile(rb"iter=(\d+) wires=\d+ overused=(\d+)")


def router2_progress(path):
    """``[(iteration, overused wires), ...]`` of the router2 lines in a
    nextpnr log (empty before router2 reports or without the file)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    return [(int(i), int(o)) for i, o in _ROUTER2_ITER.findall(data)]


def router2_stuck(progress, min_iter=ROUTER2_MIN_ITER, patience=ROUTER2_PATIENCE):
    """The last ``(iteration, overused)`` if router2 is past ``min_iter``
    iterations with wires still overused and no new low of the overused
    count in the last ``patience`` iterations, else None."""
    if not progress or progress[-1][0] <= min_iter or progress[-1][1] == 0:
        return None
    last = progress[-1][0]
    best_before = min((o for i, o in progress if i <= last - patience), default=None)
    recent = min(o for i, o in progress if i > last - patience)
    return progress[-1] if best_before is not None and recent >= best_before else None


def describe_stuck(state):
    """Why a run stops, from :func:`router2_stuck`'s ``(iteration, overused)``."""
    return (f"router2 had not converged after {state[0]} iterations ({state[1]} wires "
            f"still overused, no progress in the last {ROUTER2_PATIENCE})")


def router2_watch(log):
    """A check for :func:`~sparse_edge.gen.tools.run_tool`'s ``watch``: reads
    the nextpnr log ``log``; returns why the run should stop (router2 stuck)
    or None."""
    def check():
        state = router2_stuck(router2_progress(log))
        return None if state is None else describe_stuck(state)
    return check
