"""Running Amaranth's build plan (``build_top.sh``) for a board build:
progress lines, and a watch on nextpnr's router2, which has no iteration
limit of its own: a run that stops making progress is stopped and placed
again with the next seed (docs/boards.md)."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from ..gen.output import write_text
from .errors import BuildError

__all__ = ["NEXTPNR_SEEDS", "ROUTER2_MIN_ITER", "ROUTER2_PATIENCE", "RouterStuck",
           "router2_progress", "router2_stuck", "run_script", "run_with_seeds"]


#: nextpnr seeds a board build tries, in order, when router2 stops making progress.
NEXTPNR_SEEDS = (1, 2, 3)
#: router2 (which has no limit of its own) counts as not converging when, past
#: ROUTER2_MIN_ITER iterations, the count of overused wires has not reached a
#: new low for ROUTER2_PATIENCE iterations.  The ULX3S demo (C = 16, 114 of
#: 156 DSPs) routes in 64 iterations on a good placement; on bad ones
#: router2 hovered at 110-126 overused wires from iteration ~300 to 976 (25
#: min), at 268-376 from iteration 30 to 80, and at 21-59 from 57 to 101.
ROUTER2_MIN_ITER = 150
ROUTER2_PATIENCE = 60
_ROUTER2_ITER = re.compile(rb"iter=(\d+) wires=\d+ overused=(\d+)")


class RouterStuck(BuildError):
    """nextpnr's router2 stopped making progress (see ROUTER2_PATIENCE)."""

    def __init__(self, msg, iterations, overused):
        super().__init__(msg)
        self.iterations, self.overused = iterations, overused


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


def run_script(bdir, env, log, progress, what, pnr_log=None):
    """Run the build plan's ``build_top.sh``; returns its seconds.  With
    ``pnr_log`` (nextpnr's ``--log`` file), a router2 that stopped making
    progress (:func:`router2_stuck`) is stopped (:class:`RouterStuck`)."""
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(["sh", "build_top.sh"], cwd=bdir, env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
        last = checked = t0
        while proc.poll() is None:
            time.sleep(0.5)
            if pnr_log and time.monotonic() - checked > 2:
                checked = time.monotonic()
                state = router2_stuck(router2_progress(Path(bdir) / pnr_log))
                if state:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait()
                    raise RouterStuck(
                        f"{what}: nextpnr's router2 had not converged after {state[0]} "
                        f"iterations ({state[1]} wires still overused, no progress in the "
                        f"last {ROUTER2_PATIENCE})", *state)
            if time.monotonic() - last > 30:
                last = time.monotonic()
                progress(f"  ... {what}: {last - t0:.0f} s")
    if proc.returncode != 0:
        text = Path(log).read_text(errors="replace").splitlines()
        errs = [ln.strip() for ln in text if "ERROR" in ln.upper()][-3:] or text[-3:]
        raise BuildError(f"{what} failed (exit {proc.returncode}): {' | '.join(errs)}; "
                         f"log: {log}")
    return time.monotonic() - t0


def run_with_seeds(rep, bdir, env, progress, what):
    """The build plan, with nextpnr's placement seed moved on (NEXTPNR_SEEDS)
    when router2 does not converge; the seed used and the abandoned attempts
    go into the report."""
    script = Path(bdir) / "build_top.sh"
    text = script.read_text()
    rep["nextpnr_seed"], rep["router_retries"] = NEXTPNR_SEEDS[0], []
    total = 0.0
    for n, seed in enumerate(NEXTPNR_SEEDS):
        write_text(script, re.sub(r"--seed \d+", f"--seed {seed}", text))
        (Path(bdir) / "top.tim").unlink(missing_ok=True)     # the last attempt's log
        t0 = time.monotonic()
        try:
            total += run_script(bdir, env, Path(bdir) / "build.log", progress, what,
                                 pnr_log="top.tim")
        except RouterStuck as e:
            total += time.monotonic() - t0
            rep["router_retries"].append({"seed": seed, "iterations": e.iterations,
                                          "overused": e.overused})
            if n + 1 == len(NEXTPNR_SEEDS):
                raise BuildError(f"{e}, with each of the seeds {list(NEXTPNR_SEEDS)}: the "
                                 f"design is too congested for this part; try a larger "
                                 f"--cycle (fewer DSPs and lanes)") from None
            progress(f"  {e} with seed {seed}; placing again with seed "
                     f"{NEXTPNR_SEEDS[n + 1]}")
            continue
        rep["nextpnr_seed"] = seed
        return total
