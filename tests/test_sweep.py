"""Executors and sweeps (gen/executors.py, gen/sweep.py, ``sparse-edge sweep``).

The executors are checked on their contract (results stream back as dicts, a
job that raises or kills its worker is retried once and then reported, the
others complete) for the inline, local-pool and Dask executors; a sweep of 6
digits networks gives the same table on a 2-worker Dask ``LocalCluster`` as
on the local process pool; a resumed sweep runs nothing twice.  Training is
kept to a few hundred digits samples so the suite stays fast.
"""

import csv
import io
import json
import os
import time
from pathlib import Path

import pytest

from sparse_edge.gen import executors
from sparse_edge.gen.cli import main
from sparse_edge.gen.executors import (DaskExecutor, ExecutorError, InlineExecutor,
                                       ProcessExecutor, dask_available, make_executor)
from sparse_edge.gen.sweep import (SweepError, expand, load_spec, parse_spec, run_point,
                                   run_sweep)

from .conftest import ROOT

DEMO = ROOT / "configs" / "demo.toml"
SMALL = ROOT / "configs" / "sweep-small.toml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

needs_dask = pytest.mark.skipif(not dask_available(),
                                reason="needs Dask distributed: pip install 'sparse-edge[dask]'")


# -- job functions (module level: worker processes import them by name) ---------------------

def _square(job):
    return {"status": "ok", "value": job * job}


def _raise_on_seven(job):
    if job == 7:
        raise ValueError(f"bad job {job}")
    return _square(job)


def _die_once(job):
    """Kills its worker process the first time it runs for ``job = (name, dir)``
    (a marker file remembers), succeeds the second time; ``"always"`` dies
    every time."""
    name, folder = job
    marker = Path(folder) / f"{name}.ran"
    if name == "always" or not marker.exists():
        marker.write_text("x")
        os._exit(3)
    return {"status": "ok", "name": name}


def _die_or_sleep(job):
    """``"always"`` kills its worker; anything else sleeps a second and succeeds
    (a bystander in flight when the other dies)."""
    if job == "always":
        os._exit(3)
    time.sleep(1)
    return {"status": "ok", "name": job}


def _sweep_job_boom(job):
    """``run_point``, except that the point labelled ``boom`` raises."""
    if "boom" in job.label:
        raise RuntimeError("injected failure")
    return run_point(job)


# -- executors ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_ex():
    if not dask_available():
        pytest.skip("needs Dask distributed: pip install 'sparse-edge[dask]'")
    ex = DaskExecutor(workers=2)
    yield ex
    ex.close()


def _executors(request):
    out = [InlineExecutor(), ProcessExecutor(2)]
    if dask_available():
        out.append(request.getfixturevalue("dask_ex"))
    return out


def test_executors_share_one_contract(request):
    """Results come back as dicts with ``run`` (host, pid, seconds, attempts);
    a job that raises is retried once, then reported, and the others finish."""
    for ex in _executors(request):
        got = {job: res for job, res in ex.map(_raise_on_seven, [1, 2, 7, 3])}
        assert set(got) == {1, 2, 3, 7}, ex.name
        for j in (1, 2, 3):
            assert got[j]["status"] == "ok" and got[j]["value"] == j * j
            assert got[j]["run"]["attempts"] == 1 and got[j]["run"]["host"]
        assert got[7]["status"] == "failed" and got[7]["run"]["attempts"] == 2, ex.name
        assert "ValueError: bad job 7" in got[7]["error"]


def test_retries_are_configurable():
    (job, res), = InlineExecutor(retries=0).map(_raise_on_seven, [7])
    assert res["status"] == "failed" and res["run"]["attempts"] == 1


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_a_lost_worker_is_retried_once(kind, tmp_path, request):
    """A job whose worker process dies runs again (and succeeds); one that
    kills its worker every time is reported failed after two attempts; the
    bystanders finish."""
    ex = ProcessExecutor(2) if kind == "local" else request.getfixturevalue("dask_ex")
    jobs = [("once", str(tmp_path)), ("always", str(tmp_path)), ("calm", str(tmp_path))]
    (tmp_path / "calm.ran").write_text("x")          # never dies
    got = {job[0]: res for job, res in ex.map(_die_once, jobs)}
    assert got["once"]["status"] == "ok" and got["once"]["run"]["attempts"] == 2
    assert got["calm"]["status"] == "ok"
    assert got["always"]["status"] == "failed" and got["always"]["run"]["attempts"] == 2
    assert got["always"]["error"]


def test_a_bystander_is_not_charged_for_another_jobs_death():
    """Jobs in flight when another kills the pool run again alone, uncharged:
    only the job that dies alone too is reported failed."""
    got = {job: res for job, res in ProcessExecutor(2).map(_die_or_sleep,
                                                           ["always", "calm", "calm2"])}
    assert got["always"]["status"] == "failed" and got["always"]["run"]["attempts"] == 2
    assert got["calm"]["status"] == "ok" and got["calm2"]["status"] == "ok"


def test_make_executor_by_name(monkeypatch):
    assert make_executor("inline").name == "inline"
    assert make_executor("local", workers=3).workers == 3
    with pytest.raises(ExecutorError, match="whole number >= 1"):
        make_executor("local", workers=0)
    with pytest.raises(ExecutorError, match="--scheduler is an address for the dask"):
        make_executor("local", scheduler="tcp://127.0.0.1:1")
    monkeypatch.setattr(executors, "dask_available", lambda: False)
    assert make_executor("auto").name == "local"
    with pytest.raises(ExecutorError, match=r"pip install 'sparse-edge\[dask\]'"):
        make_executor("dask")


def test_cli_without_dask_says_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(executors, "dask_available", lambda: False)
    rc = main(["sweep", str(SMALL), "--executor", "dask", "--out", str(tmp_path / "s"), "-q"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "pip install 'sparse-edge[dask]'" in err
    assert len(err.splitlines()) == 1


@needs_dask
def test_unreachable_scheduler_is_a_clear_error():
    ex = DaskExecutor(scheduler="tcp://127.0.0.1:9", timeout=2)
    with pytest.raises(ExecutorError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        list(ex.map(_square, [1]))


# -- sweep spec -----------------------------------------------------------------------------

def _spec(tmp_path, text, name="spec.toml"):
    p = tmp_path / name
    p.write_text(f'base = "{DEMO}"\n' + text)
    return load_spec(p)


def test_spec_errors_name_the_problem(tmp_path):
    with pytest.raises(SweepError, match="unknown axis 'fanouts'.*did you mean 'fanout'"):
        _spec(tmp_path, "[grid]\nfanouts = [[8, 8]]\n")
    with pytest.raises(SweepError, match="unknown option 'epoch'.*did you mean 'epochs'"):
        _spec(tmp_path, "[options]\nepoch = 3\n")
    with pytest.raises(SweepError, match="not a number format"):
        _spec(tmp_path, '[grid]\nformat = ["Q2.7"]\n')
    with pytest.raises(SweepError, match="not a cycle"):
        _spec(tmp_path, '[grid]\ncycle = ["fastest"]\n')
    with pytest.raises(SweepError, match="unknown target"):
        _spec(tmp_path, '[options]\ntargets = ["ecp5-99f"]\n')
    with pytest.raises(SweepError, match="needs a base config"):
        parse_spec({"grid": {}})
    with pytest.raises(SweepError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")


def test_expand_grid_points_and_illegal(tmp_path):
    """The grid is a cartesian product, [[points]] come after it, illegal
    points carry the validator's message, keys are stable and distinct."""
    spec = _spec(tmp_path, """
[options]
targets = ["ecp5-25f", "ice40-up5k"]
[grid]
network = [{layers = [64, 32, 16], fanout = [8, 8]}, {layers = [64, 64, 16], fanout = [8, 16]}]
format = ["Q(2,7)", [2, 9]]
cycle = [64, "fastest-fit"]
[[points]]
layers = [64, 30, 16]
fanout = [8, 8]
[[points]]
layers = [64, 32, 16]
fanout = [8, 8]
cycle = "all"
""")
    pts = expand(spec)
    grid = pts[:8]
    assert [p.status for p in grid] == ["pending"] * 8
    assert [str(p.cfg.fmt) for p in grid[:4]] == ["Q(2,7)", "Q(2,7)", "Q(2,9)", "Q(2,9)"]
    assert grid[0].cfg.cycle == 64 and grid[0].cfg.layers == (64, 32, 16)
    # fastest-fit: the smallest legal C whose estimate fits the first target
    from sparse_edge.gen.config import legal_cycles
    from sparse_edge.gen.estimate import estimate
    ff = grid[1].cfg
    smaller = [c for c, _ in legal_cycles(ff.layers, ff.fanout, ff.interleaver,
                                          ff.interleaver_seed) if c < ff.cycle]
    assert estimate(ff, "ecp5-25f").fits
    assert all(not estimate(ff.with_(cycle=c), "ecp5-25f").fits for c in smaller)
    bad = pts[8]
    assert bad.status == "illegal" and "fan-in not integral" in bad.message
    cycles = [p.cfg.cycle for p in pts[9:]]
    assert cycles == [c for c, _ in legal_cycles((64, 32, 16), (8, 8), "random_start", 1)]
    # one key per resolved config ("all" repeats the grid's C = 64 and fastest-fit points)
    def body(p):
        return json.dumps(dict(p.cfg.to_dict(), name=None), sort_keys=True)
    done = [p for p in pts if p.key]
    assert len({p.key for p in done}) == len({body(p) for p in done}) < len(done)
    assert [p.key for p in expand(spec)] == [p.key for p in pts]          # stable
    assert expand(spec.with_options(epochs=1))[0].key != pts[0].key      # options count


def test_sweep_accuracy_is_what_train_gives(tmp_path):
    """A sweep point trains exactly as ``sparse-edge train`` does."""
    spec = _spec(tmp_path, "[options]\ndataset = \"digits\"\nepochs = 2\nsamples = 300\n"
                           "test_samples = 100\nschedule = \"fast\"\n[grid]\ncycle = [\"base\"]\n")
    run = run_sweep(spec, InlineExecutor(), tmp_path / "out", quiet=True, log=lambda m: None)
    acc = run.points[0].result["accuracy"]
    assert main(["train", str(DEMO), "--data", "digits", "--epochs", "2", "--samples", "300",
                 "--test-samples", "100", "--schedule", "fast", "-q",
                 "--json", str(tmp_path / "t.json")]) == 0
    ref = json.loads((tmp_path / "t.json").read_text())
    assert [e["test_accuracy"] for e in acc["epochs"]] == \
        [e["test_accuracy"] for e in ref["epochs"]]
    assert [e["train_accuracy"] for e in acc["epochs"]] == \
        [e["train_accuracy"] for e in ref["epochs"]]


# -- whole sweeps ---------------------------------------------------------------------------

SIX = """
[options]
dataset = "digits"
epochs = 1
samples = 200
test_samples = 120
targets = ["ecp5-25f", "ice40-up5k"]
[grid]
network = [{layers = [64, 16, 16], fanout = [4, 16]},
           {layers = [64, 32, 16], fanout = [8, 8]},
           {layers = [64, 64, 16], fanout = [8, 16]}]
format = ["Q(2,7)", "Q(2,9)"]
cycle = ["fastest-fit"]
[[points]]
name = "boom"
layers = [64, 32, 16]
fanout = [8, 8]
cycle = 32
"""


def _rows(out):
    return list(csv.DictReader(io.StringIO((Path(out) / "sweep.csv").read_text())))


@needs_dask
def test_dask_cluster_gives_the_local_pools_table(tmp_path, dask_ex):
    """6 digits networks (+1 point whose job raises) on a 2-worker Dask
    LocalCluster and on the local process pool: the same table; the raising
    point is reported failed after a retry, the 6 others complete."""
    spec = _spec(tmp_path, SIX)
    quiet = dict(quiet=True, log=lambda m: None)
    ra = run_sweep(spec, dask_ex, tmp_path / "dask", job_fn=_sweep_job_boom, **quiet)
    rb = run_sweep(spec, ProcessExecutor(2), tmp_path / "pool", job_fn=_sweep_job_boom, **quiet)
    a, b = (tmp_path / "dask" / "sweep.csv").read_text(), (tmp_path / "pool" / "sweep.csv").read_text()
    assert a == b
    rows = _rows(tmp_path / "dask")
    assert [r["status"] for r in rows] == ["ok"] * 6 + ["failed"]
    assert "RuntimeError: injected failure" in rows[6]["note"]
    assert all(r["test_acc"] and r["lut"] for r in rows[:6])
    assert ra.failed == rb.failed == 1 and ra.ran == 7
    assert all(p.result["run"]["host"] and p.result["run"]["pid"] != os.getpid()
               for p in ra.points[:6])          # ran in the cluster's worker processes
    doc = json.loads((tmp_path / "dask" / "sweep.json").read_text())
    assert doc["points"][6]["result"]["run"]["attempts"] == 2
    assert (tmp_path / "dask" / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    # finished points are stored one file each; the failed one is not reused
    assert len(list((tmp_path / "dask" / "points").glob("*.json"))) == 7


def test_resumed_sweep_runs_nothing_twice(tmp_path):
    """Points already in --out are read back, not run; a failed point and a
    new point are run; a third identical sweep runs nothing."""
    calls = []

    def counting(job):
        calls.append(job.label)
        return _sweep_job_boom(job)

    quiet = dict(quiet=True, log=lambda m: None)
    out = tmp_path / "out"
    spec = _spec(tmp_path, SIX)
    r1 = run_sweep(spec, InlineExecutor(), out, job_fn=counting, **quiet)
    assert len(calls) == 8 and r1.ran == 7 and r1.failed == 1   # boom ran twice (retry)
    first = (out / "sweep.csv").read_text()
    calls.clear()
    r2 = run_sweep(spec, InlineExecutor(), out, job_fn=counting, **quiet)
    assert calls == ["boom", "boom"] and r2.reused == 6 and r2.ran == 1
    assert (out / "sweep.csv").read_text() == first
    calls.clear()
    more = _spec(tmp_path, SIX.replace('format = ["Q(2,7)", "Q(2,9)"]',
                                       'format = ["Q(2,7)", "Q(2,9)", "Q(3,7)"]'), "more.toml")
    assert len(list((out / "points").glob("*.failed.json"))) == 1
    r3 = run_sweep(more, InlineExecutor(), out, job_fn=run_point, **quiet)
    assert r3.reused == 6 and r3.ran == 4        # 3 new networks x Q(3,7), boom (now fine)
    assert not list((out / "points").glob("*.failed.json"))
    assert {p.label.split(" C")[0] for p in r3.points if not p.reused} >= {
        "64-16-16 fo4,16 Q(3,7)", "boom"}
    calls.clear()
    r4 = run_sweep(more, InlineExecutor(), out, job_fn=counting, **quiet)
    assert calls == [] and r4.ran == 0 and r4.reused == 10


def test_sweep_cli_writes_table_and_picture(tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["sweep", str(SMALL), "--executor", "inline", "--out", str(out), "--epochs", "1",
               "--samples", "150", "--test-samples", "100", "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "6 point(s) run, 0 read back, 0 failed, 0 illegal" in text
    assert "best accuracy that fits ice40-up5k" in text
    rows = _rows(out)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    assert any(r["pareto_lut"] == "*" for r in rows)
    assert {r["fits ice40-up5k"] for r in rows} == {"yes", "no"}
    assert (out / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["counts"] == {"points": 6, "ran": 6, "reused": 0, "failed": 0, "illegal": 0}
    assert main(["sweep", str(SMALL), "--executor", "inline", "--out", str(out), "--epochs", "1",
                 "--samples", "150", "--test-samples", "100", "-q"]) == 0
    assert "0 point(s) run, 6 read back" in capsys.readouterr().out
    # a bad spec is one line, exit status 2
    bad = tmp_path / "bad.toml"
    bad.write_text(f'base = "{DEMO}"\n[grid]\nlayer = [[64, 32, 16]]\n')
    assert main(["sweep", str(bad), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean 'layers'" in err


def test_explore_reports_a_failed_synthesis_job(monkeypatch):
    """explore --synth goes through the same executors: a synthesis job that
    raises is retried once and reported with its error, not a crash."""
    from sparse_edge.gen import explore as explore_mod
    from sparse_edge.gen.config import load_config

    calls = []

    def broken(job):
        calls.append(job.label)
        raise OSError("disk full")

    monkeypatch.setattr(explore_mod, "run_synth_job", broken)
    monkeypatch.setattr(explore_mod, "check_tools", lambda t: None)   # no tool runs here
    points, _ = explore_mod.explore(load_config(DEMO), "ecp5-25f", synth=1,
                                    executor=InlineExecutor(), quiet=True, log=lambda m: None)
    done = [p for p in points if p.synth]
    assert len(done) == 1 and len(calls) == 2
    assert done[0].synth["status"] == "failed"
    assert done[0].to_dict()["synth"]["message"] == "OSError: disk full"


def test_estimate_only_and_incompatible_dataset(tmp_path):
    """--epochs 0 trains nothing (estimates only, no picture); points whose
    config cannot take the dataset are illegal before any job runs."""
    calls = []

    def counting(job):
        calls.append(job.label)
        return run_point(job)

    quiet = dict(quiet=True, log=lambda m: None)
    spec = _spec(tmp_path, SIX.split("[[points]]")[0]).with_options(epochs=0)
    run = run_sweep(spec, InlineExecutor(), tmp_path / "e0", job_fn=counting, **quiet)
    assert run.ran == 6 and not run.picture and not (tmp_path / "e0" / "sweep.png").exists()
    rows = _rows(tmp_path / "e0")
    assert all(r["status"] == "ok" and r["test_acc"] == "" and r["lut"] for r in rows)
    calls.clear()
    mn = tmp_path / "fake-mnist.npz"
    import numpy as np
    rng = np.random.default_rng(0)
    np.savez(mn, x_train=rng.integers(0, 256, (20, 784), dtype=np.uint8),
             y_train=rng.integers(0, 10, 20), x_test=rng.integers(0, 256, (10, 784), dtype=np.uint8),
             y_test=rng.integers(0, 10, 10))
    run = run_sweep(spec.with_options(epochs=1, dataset=str(mn)), InlineExecutor(),
                    tmp_path / "e1", job_fn=counting, **quiet)
    assert calls == [] and run.illegal == 6
    assert "has 784 input features" in _rows(tmp_path / "e1")[0]["note"]
