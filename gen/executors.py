"""Executors: run self-contained jobs somewhere, stream JSON-able results back.

``explore --synth`` and ``sweep`` hand their work to an :class:`Executor`.  A
job is a picklable object (a dataclass holding a config's TOML text or dict,
a target, options); the job function turns it into a plain dict with at least
a ``status`` key.  Every executor has the same contract:

* ``map(fn, jobs, bar=None)`` yields ``(job, result)`` **as each job
  finishes** (not in submission order), one pair per job, always a dict;
* a job whose function raises, or whose worker process dies, is **retried
  once** (``retries=1``); after that it is yielded as
  ``{"status": "failed", "error": "Type: message", ...}`` and the other jobs
  go on;
* every result carries ``run``: ``host`` and ``pid`` of the worker that ran
  it, ``seconds`` it took there and ``attempts`` (1 or 2).  Files a job
  writes (synthesis build folders) stay on that host; the job's own report
  says where, ``run.host`` says which machine;
* at most one job per worker is in flight, so ``running`` on the progress bar
  means running, and a retried job goes to the front of the queue.

Three executors:

:class:`InlineExecutor`
    this process, one job after the other (debugging, tests);
:class:`ProcessExecutor`
    local worker processes (``concurrent.futures``), the default when Dask is
    not installed.  A worker that dies breaks the pool: the pool is rebuilt
    and the jobs that were in flight count one attempt each;
:class:`DaskExecutor`
    a Dask distributed cluster (``pip install 'sparse-edge[dask]'``): a
    ``LocalCluster`` of ``workers`` single-threaded worker processes by
    default, or a running cluster at ``scheduler="tcp://HOST:PORT"``.  The
    local cluster's scheduler is told not to re-run a task on its own after a
    worker dies (``allowed-failures = 0``) so the retry rule above is the only
    one; a remote scheduler keeps its own setting (Dask's default re-runs a
    task up to 3 times when its worker dies) before this executor's retry.

:func:`make_executor` picks one by name (``auto``: Dask when it imports,
else the local pool).
"""

import os
import socket
import sys
import time
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .errors import SparseEdgeError

__all__ = ["ExecutorError", "Executor", "InlineExecutor", "ProcessExecutor", "DaskExecutor",
           "JobBar", "make_executor", "dask_available", "EXECUTORS", "run_job"]

#: Names accepted by :func:`make_executor` (and ``--executor``).
EXECUTORS = ("auto", "inline", "local", "dask")

DASK_HINT = "pip install 'sparse-edge[dask]'"


class ExecutorError(SparseEdgeError):
    """An executor cannot be set up (Dask missing, scheduler unreachable, bad
    worker count)."""


# -- the worker side ----------------------------------------------------------------------

def run_job(fn, job):
    """Run ``fn(job)`` and stamp where and how long (``run``: host, pid,
    seconds).  This is what every executor ships to its workers."""
    t0 = time.perf_counter()
    result = fn(job)
    if not isinstance(result, dict) or "status" not in result:
        raise TypeError(f"job function {getattr(fn, '__name__', fn)!r} returned "
                        f"{type(result).__name__}, not a dict with a 'status'")
    result = dict(result)
    result["run"] = {"host": socket.gethostname(), "pid": os.getpid(),
                     "seconds": round(time.perf_counter() - t0, 3)}
    return result


def _describe(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _failed(exc, attempts, where=None):
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"status": "failed", "error": _describe(exc), "traceback": tb[-4000:],
            "run": {"host": where, "pid": None, "seconds": None, "attempts": attempts}}


# -- progress -------------------------------------------------------------------------------

class JobBar:
    """Progress of a batch of jobs: a tqdm bar on stderr whose count is the
    finished jobs, with ``failed``, ``running`` and ``retried`` beside it.
    ``quiet`` (or a missing tqdm) keeps the counts without drawing."""

    def __init__(self, total, desc="jobs", quiet=False):
        self.total, self.done, self.failed, self.running, self.retried = total, 0, 0, 0, 0
        self._bar = None
        if not quiet:
            try:
                from tqdm import tqdm     # deferred: only a drawn bar needs it
                self._bar = tqdm(total=total, desc=desc, unit="job", file=sys.stderr,
                                 leave=False, dynamic_ncols=True)
            except ImportError:
                self._bar = None
        self._show()

    def _show(self):
        if self._bar is not None:
            self._bar.set_postfix_str(f"failed={self.failed} running={self.running}"
                                      + (f" retried={self.retried}" if self.retried else ""),
                                      refresh=False)

    def started(self):
        self.running += 1
        self._show()

    def retry(self):
        self.running -= 1
        self.retried += 1
        self._show()

    def finished(self, ok):
        self.running -= 1
        self.done += 1
        self.failed += 0 if ok else 1
        if self._bar is not None:
            self._bar.update(1)
        self._show()

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _NoBar(JobBar):
    def __init__(self):
        super().__init__(0, quiet=True)


# -- executors ------------------------------------------------------------------------------

class Executor:
    """Interface (module docstring): ``map(fn, jobs, bar=None)`` yields
    ``(job, result_dict)`` as jobs finish; ``retries`` re-runs of a job that
    raised or lost its worker."""

    name = "executor"
    workers = 1

    def __init__(self, retries=1):
        if retries < 0:
            raise ExecutorError(f"retries must be >= 0, not {retries}")
        self.retries = retries

    def describe(self):
        return f"{self.name} ({self.workers} worker{'s' if self.workers != 1 else ''})"

    def map(self, fn, jobs, bar=None):  # pragma: no cover - interface
        raise NotImplementedError

    def close(self):
        """Release workers or cluster connections (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InlineExecutor(Executor):
    """Runs the jobs one after the other in this process."""

    name = "inline"

    def map(self, fn, jobs, bar=None):
        bar = bar or _NoBar()
        for job in jobs:
            attempts = 0
            while True:
                attempts += 1
                bar.started()
                try:
                    result = run_job(fn, job)
                except Exception as e:  # noqa: BLE001 - reported as the job's failure
                    if attempts <= self.retries:
                        bar.retry()
                        continue
                    bar.finished(False)
                    yield job, _failed(e, attempts, socket.gethostname())
                    break
                result["run"]["attempts"] = attempts
                bar.finished(result["status"] != "failed")
                yield job, result
                break


def _check_workers(workers):
    if workers is None:
        return max(1, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ExecutorError(f"the number of workers must be a whole number >= 1, not {workers!r}")
    return workers


class ProcessExecutor(Executor):
    """Local worker processes (``concurrent.futures.ProcessPoolExecutor``).

    Each job runs in its own worker process (a synthesis job runs Yosys and
    nextpnr as subprocesses of that worker), ``workers`` at a time."""

    name = "local"

    def __init__(self, workers=None, retries=1):
        super().__init__(retries)
        self.workers = _check_workers(workers)

    def map(self, fn, jobs, bar=None):
        bar = bar or _NoBar()
        # (job, runs so far, failures charged to it, alone): a job lost with
        # others when a worker died runs again alone, uncharged; if it dies
        # alone too, both deaths are charged to it.  So a bystander is never
        # charged for another job's death.
        queue = deque((job, 0, 0, False) for job in jobs)
        if not queue:
            return
        width = min(self.workers, len(queue))
        pool = ProcessPoolExecutor(max_workers=width)
        inflight = {}                 # future -> (job, runs including this one, charged, alone)
        try:
            while queue or inflight:
                while queue and len(inflight) < width and \
                        not any(entry[3] for entry in inflight.values()):
                    job, runs, charged, alone = queue[0]
                    if alone and inflight:
                        break
                    queue.popleft()
                    inflight[pool.submit(run_job, fn, job)] = (job, runs + 1, charged, alone)
                    bar.started()
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                lost = []
                suspect = any(entry[3] for entry in inflight.values())
                for fut in finished:
                    job, runs, charged, alone = inflight.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        lost.append((job, runs, charged))       # a worker died
                        continue
                    except Exception as e:  # noqa: BLE001 - the job raised
                        yield from self._retry_or_fail(job, runs, charged, e, queue, bar)
                        continue
                    result["run"]["attempts"] = runs
                    bar.finished(result["status"] != "failed")
                    yield job, result
                if lost:
                    # every job in flight is lost with the pool
                    lost += [entry[:3] for entry in inflight.values()]
                    inflight.clear()
                    if len(lost) == 1:
                        # alone, the death is this job's; if it was lost with
                        # others before, that death was its too
                        job, runs, charged = lost[0]
                        e = BrokenProcessPool("its worker process died while it ran")
                        yield from self._retry_or_fail(job, runs, charged + suspect, e, queue,
                                                       bar)
                    else:
                        for job, runs, charged in reversed(lost):
                            bar.retry()
                            queue.appendleft((job, runs, charged, True))
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = ProcessPoolExecutor(max_workers=width)
        finally:
            for fut in inflight:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _retry_or_fail(self, job, runs, charged, exc, queue, bar):
        if charged < self.retries:
            bar.retry()
            queue.appendleft((job, runs, charged + 1, False))
            return
        bar.finished(False)
        yield job, _failed(exc, runs)


def dask_available():
    """True when ``dask.distributed`` imports."""
    try:
        import dask.distributed  # noqa: F401 - deferred: optional dependency
    except ImportError:
        return False
    return True


class DaskExecutor(Executor):
    """Jobs on a Dask distributed cluster.

    Parameters
    ----------
    workers : int, optional
        Worker processes of the local cluster (default: CPU count); ignored
        with ``scheduler``.
    scheduler : str, optional
        Address of a running scheduler (``tcp://HOST:PORT``, as printed by
        ``dask scheduler``); without it a ``LocalCluster(n_workers=workers,
        threads_per_worker=1, processes=True)`` is started and closed again.
    retries : int
        Re-runs of a job that raised or whose worker died.

    Every worker must have ``sparse-edge`` installed (same version) and, for
    ``--data mnist``, the dataset at its default path or ``$SPARSE_EDGE_MNIST``.
    """

    name = "dask"

    def __init__(self, workers=None, scheduler=None, retries=1, timeout=30):
        super().__init__(retries)
        if not dask_available():
            raise ExecutorError(f"the dask executor needs Dask distributed, which is not "
                                f"installed: {DASK_HINT} (or use --executor local)")
        self.scheduler = scheduler
        self.workers = _check_workers(workers) if scheduler is None else None
        self.timeout = timeout
        self._client = self._cluster = None

    def describe(self):
        if self.scheduler:
            n = self._threads() if self._client is not None else "?"
            return f"dask at {self.scheduler} ({n} worker threads)"
        return f"dask local cluster ({self.workers} worker processes)"

    def _connect(self):
        if self._client is not None:
            return self._client
        import dask                                       # deferred: optional dependency
        from dask.distributed import Client, LocalCluster  # deferred: optional dependency
        if self.scheduler:
            try:
                self._client = Client(self.scheduler, timeout=self.timeout)
            except (OSError, TimeoutError) as e:
                raise ExecutorError(
                    f"cannot reach the Dask scheduler at {self.scheduler}: {_describe(e)}; start "
                    f"one with `dask scheduler` and workers with `dask worker {self.scheduler}`"
                ) from None
        else:
            import logging
            # the retry rule is ours: a task whose worker dies fails at once
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                             processes=True, dashboard_address=":0",
                                             silence_logs=logging.ERROR)
                self._client = Client(self._cluster)
        return self._client

    def _threads(self):
        try:
            return max(1, sum(self._client.nthreads().values()))
        except Exception:  # noqa: BLE001 - a cluster between workers
            return 1

    def map(self, fn, jobs, bar=None):
        from dask.distributed import as_completed  # deferred: optional dependency
        bar = bar or _NoBar()
        queue = deque((job, 0) for job in jobs)
        if not queue:
            return
        client = self._connect()
        inflight = {}                 # future key -> (future, job, attempts so far)
        ac = as_completed([], with_results=False)

        def top_up():
            width = self._threads()
            while queue and len(inflight) < width:
                job, attempts = queue.popleft()
                fut = client.submit(run_job, fn, job, pure=False)
                inflight[fut.key] = (fut, job, attempts + 1)
                ac.add(fut)
                bar.started()

        try:
            top_up()
            while inflight:
                fut = next(ac)
                _, job, attempts = inflight.pop(fut.key)
                if fut.status == "finished":
                    result = fut.result()
                    result["run"]["attempts"] = attempts
                    bar.finished(result["status"] != "failed")
                    yield job, result
                else:
                    try:
                        exc = fut.exception()
                    except Exception as e:  # noqa: BLE001 - cancelled or lost future
                        exc = e
                    if attempts <= self.retries:
                        bar.retry()
                        queue.appendleft((job, attempts))
                    else:
                        bar.finished(False)
                        yield job, _failed(exc, attempts)
                fut.release()
                top_up()
        finally:
            for fut, _, _ in inflight.values():
                fut.cancel()

    def close(self):
        for thing in (self._client, self._cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing a cluster that is going away
                    pass
        self._client = self._cluster = None


def make_executor(kind="auto", workers=None, scheduler=None, retries=1):
    """An executor by name: ``inline``, ``local`` (process pool), ``dask``, or
    ``auto`` (``dask`` when a scheduler is given or Dask imports, else
    ``local``)."""
    if kind not in EXECUTORS:
        raise ExecutorError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
    if scheduler and kind not in ("auto", "dask"):
        raise ExecutorError(f"--scheduler is an address for the dask executor, not for "
                            f"--executor {kind}")
    if kind == "auto":
        kind = "dask" if scheduler or dask_available() else "local"
    if kind == "inline":
        return InlineExecutor(retries)
    if kind == "local":
        return ProcessExecutor(workers, retries)
    return DaskExecutor(workers, scheduler, retries)
