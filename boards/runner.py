"""Running Amaranth's build plan (``build_top.sh``) for a board build:
progress lines, and a watch on nextpnr's router2, which has no iteration
limit of its own (``gen/router_watch.py``): a run that stops making progress
is stopped and placed again with the next seed (docs/boards.md)."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from ..gen.output import write_text
from ..gen.router_watch import (ROUTER2_MIN_ITER, ROUTER2_PATIENCE, describe_stuck,
                                router2_progress, router2_stuck)
from .errors import BuildError

__all__ = ["NEXTPNR_SEEDS", "ROUTER2_MIN_ITER", "ROUTER2_PATIENCE", "RouterStuck",
           "router2_progress", "router2_stuck", "run_script", "run_with_seeds"]


#: nextpnr seeds a board build tries, in order, when router2 stops making
#: progress (:func:`~sparse_edge.gen.router_watch.router2_stuck`).
NEXTPNR_SEEDS = (1, 2, 3)


class RouterStuck(BuildError):
    """nextpnr's router2 stopped making progress (see ROUTER2_PATIENCE)."""

    def __init__(self, msg, iterations, overused):
        super().__init__(msg)
        self.iterations, self.overused = iterations, overused


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
                    raise RouterStuck(f"{what}: nextpnr's {describe_stuck(state)}", *state)
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
