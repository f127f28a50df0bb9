"""The ``sparse-edge`` command line, run in-process (``main([...])``).

Covers ``check`` (derived figures, refusal of illegal configs with exit status
2 and the legal C list) and ``train`` (result files, determinism, user errors).
Everything runs on the offline digits dataset except one MNIST smoke test,
which is skipped when the MNIST file is absent.
"""

import json
import re

import numpy as np
import pytest

from sparse_edge.gen.cli import main
from sparse_edge.gen.config import initial_parameters, load_config

from .conftest import ROOT

BOARD = ROOT / "configs" / "board.toml"
DEMO = ROOT / "configs" / "demo.toml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RESULT_FIELDS = {"command", "config", "config_digest", "dataset", "mode", "schedule",
                 "train_samples", "test_samples", "shuffle_seed", "init_seed", "epochs",
                 "final_test_accuracy", "versions"}
EPOCH_FIELDS = {"epoch", "eta_exp", "train_accuracy", "test_accuracy", "train_seconds",
                "train_samples_per_s", "test_seconds"}


def _board_variant(tmp_path, old, new, name="variant.toml"):
    text = BOARD.read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def _train(tmp_path, name, *extra, config=DEMO, epochs=2):
    out = tmp_path / name
    rc = main(["train", str(config), "--data", "digits", "--epochs", str(epochs), "-q",
               "--out", str(out), *extra])
    return rc, out


# -- check ------------------------------------------------------------------------
def test_check_board_prints_derived_figures(capsys):
    assert main(["check", str(BOARD)]) == 0
    out = capsys.readouterr().out
    assert "layers 1024-64-32" in out and "Q(2,7) (10 bits)" in out
    assert "C = 32 clocks" in out
    rows = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 10 and f[0].isdigit():
            rows[int(f[0])] = f
    # junction p n fo fi edges density z p/z neurons/clk
    assert rows[1][1:6] == ["1024", "64", "4", "64", "4096"]
    assert rows[2][1:6] == ["64", "32", "16", "32", "1024"]
    assert (rows[1][7], rows[2][7]) == ("128", "32")          # z
    assert "parameters: 5216 (fully connected: 67680, 13.0x fewer)" in out
    assert "fast schedule: 32 clocks per sample" in out         # exactly C
    assert "C + 4 = 36" in out
    assert ("legal C (z) for this network: 16 (256,64), 32 (128,32), 64 (64,16), "
            "128 (32,8), 256 (16,4), 512 (8,2), 1024 (4,1)") in out


def test_check_demo_multi_clock_neurons(capsys):
    assert main(["check", str(DEMO)]) == 0
    out = capsys.readouterr().out
    # N[2] = 16 divides C = 32: each output neuron accumulates over 2 clocks
    assert re.search(r"^\s+2\s+32\s+16\s+8\s+16\s+256\s+0\.5000\s+8\s+4\s+1/2$", out, re.M)


def test_check_wrong_cycle_lists_legal_c(tmp_path, capsys):
    path = _board_variant(tmp_path, "z = [128, 32]", "cycle = 48")
    assert main(["check", str(path)]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    err = cap.err.strip()
    assert err.startswith("error:") and "\n" not in err       # one line, no traceback
    assert "rule 1" in err and "C=48" in err
    legal = re.findall(r"C=(\d+) \(z=", err)
    assert legal == ["16", "32", "64", "128", "256", "512", "1024"]
    assert "C=16 (z=256,64)" in err and "C=1024 (z=4,1)" in err


def test_check_z_disagreeing_between_junctions(tmp_path, capsys):
    path = _board_variant(tmp_path, "z = [128, 32]", "z = [128, 64]")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "C=[32, 16]" in err and "C=32 (z=128,32)" in err


@pytest.mark.parametrize("old,new,key,hint", [
    ("fanout = [4, 16]", "fanuot = [4, 16]", "fanuot", "fanout"),
    ("frac_bits = 7", "frac_bit = 7", "frac_bit", "frac_bits"),
])
def test_check_misspelled_key(tmp_path, capsys, old, new, key, hint):
    path = _board_variant(tmp_path, old, new)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert f"unknown key {key!r}" in err and f"did you mean {hint!r}" in err


def test_check_missing_config_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope.toml" in err and "does not exist" in err


# -- train ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Two identical 2-epoch trainings of the demo network on digits."""
    base = tmp_path_factory.mktemp("train")
    runs = []
    for name in ("a", "b"):
        rc, out = _train(base, name, "--plot")
        assert rc == 0
        runs.append(out)
    return runs


def test_train_writes_documented_results(demo_runs):
    out = demo_runs[0]
    result = json.loads((out / "result.json").read_text())
    assert RESULT_FIELDS <= set(result)
    assert result["command"] == "train" and result["dataset"] == "digits"
    assert result["mode"] == "fixed"
    assert (result["train_samples"], result["test_samples"]) == (1437, 360)
    cfg = load_config(DEMO).with_(**{"training.epochs": 2})
    assert result["config"] == cfg.to_dict()
    assert result["config_digest"] == cfg.digest()
    assert result["schedule"]["name"] == "reference"
    assert (result["schedule"]["F"], result["schedule"]["U"]) == ([1, 2], [4, 3])
    epochs = result["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert [e["eta_exp"] for e in epochs] == [cfg.eta_for_epoch(0), cfg.eta_for_epoch(1)]
    for e in epochs:
        assert EPOCH_FIELDS <= set(e)
        assert 0.0 <= e["train_accuracy"] <= 1.0
    assert epochs[-1]["test_accuracy"] > 0.5
    assert result["final_test_accuracy"] == epochs[-1]["test_accuracy"]


def test_train_writes_golden_npz_and_plot(demo_runs):
    out = demo_runs[0]
    cfg = load_config(DEMO)
    with np.load(out / "golden.npz") as f:
        for j in range(cfg.junctions):
            w, b = f[f"w{j + 1}"], f[f"b{j + 1}"]
            assert w.shape == (cfg.edges[j],) and b.shape == (cfg.layers[j + 1],)
            assert w.dtype == np.int32 and b.dtype == np.int32
            assert cfg.fmt.min <= w.min() and w.max() <= cfg.fmt.max
        init = initial_parameters(cfg)
        for j, (w0, b0) in enumerate(init, start=1):             # the seeded start point
            assert np.array_equal(f[f"init_w{j}"], w0) and np.array_equal(f[f"init_b{j}"], b0)
        assert str(f["mode"]) == "fixed"
        assert len(f["predictions"]) == len(f["labels"]) == 360
        assert (f["eta_exp"] == -1).all()                       # test set: no update
        # the stored predictions are the last epoch's test pass
        result = json.loads((out / "result.json").read_text())
        acc = float((f["predictions"] == f["labels"]).mean())
        assert acc == result["final_test_accuracy"]
    assert (out / "accuracy.png").read_bytes()[:8] == PNG_MAGIC


def test_train_is_deterministic(demo_runs):
    a, b = demo_runs
    with np.load(a / "golden.npz") as fa, np.load(b / "golden.npz") as fb:
        assert fa.files == fb.files
        for key in ("w1", "b1", "w2", "b2", "predictions"):
            assert fa[key].dtype == fb[key].dtype
            assert fa[key].tobytes() == fb[key].tobytes()
    ra = json.loads((a / "result.json").read_text())
    rb = json.loads((b / "result.json").read_text())
    strip = ("train_seconds", "train_samples_per_s", "test_seconds")
    for ea, eb in zip(ra["epochs"], rb["epochs"], strict=True):
        assert {k: v for k, v in ea.items() if k not in strip} == \
            {k: v for k, v in eb.items() if k not in strip}


def test_train_float_sequential_and_json(tmp_path, capsys):
    js = tmp_path / "r.json"
    rc = main(["train", str(DEMO), "--data", "digits", "--mode", "float", "--schedule",
               "sequential", "--epochs", "1", "--samples", "500", "--test-samples", "100",
               "-q", "--json", str(js)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "float arithmetic, sequential schedule" in out and "staleness [0, 0]" in out
    result = json.loads(js.read_text())
    assert result["mode"] == "float" and result["schedule"]["spacing"] == 5
    assert (result["train_samples"], result["test_samples"]) == (500, 100)
    assert result["config"]["training"]["schedule"] == "sequential"


def test_train_missing_dataset_path(tmp_path, capsys):
    missing = tmp_path / "no_such_data.npz"
    rc = main(["train", str(DEMO), "--data", str(missing), "-q"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert str(missing) in err and "no such file or directory" in err


@pytest.mark.parametrize("args,message", [
    (["--plot"], "give --out DIR"),
    (["--samples", "0"], "--samples must be >= 1"),
    (["--test-samples", "0"], "--test-samples must be >= 1"),
    (["--epochs", "0"], "training.epochs must be >= 1"),
    (["--mode", "double"], None),
])
def test_train_user_errors(capsys, args, message):
    if message is None:     # rejected by argparse (also exit status 2)
        with pytest.raises(SystemExit) as exc:
            main(["train", str(DEMO), "--data", "digits", "-q", *args])
        assert exc.value.code == 2
        assert "invalid choice" in capsys.readouterr().err
        return
    assert main(["train", str(DEMO), "--data", "digits", "-q", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


def test_train_fast_schedule_is_the_hardware_schedule(tmp_path, capsys):
    from sparse_edge.hdl.network import hardware_schedule

    js = tmp_path / "fast.json"
    rc = main(["train", str(DEMO), "--data", "digits", "--schedule", "fast", "--epochs", "1",
               "--samples", "300", "--test-samples", "100", "-q", "--json", str(js)])
    assert rc == 0
    sch = hardware_schedule(load_config(DEMO), "fast")
    result = json.loads(js.read_text())
    assert result["schedule"] == sch.to_dict()
    assert result["schedule"]["clocks_per_cycle"] == 32          # exactly C clocks per sample
    assert f"fast schedule (F={list(sch.F)}, U={list(sch.U)}" in capsys.readouterr().out


def test_train_missing_init_file(tmp_path, capsys):
    cfg = tmp_path / "init.toml"
    cfg.write_text(DEMO.read_text().replace("[init]\n", f"[init]\nfile = "
                                            f"{json.dumps(str(tmp_path / 'w.npz'))}\n"))
    assert main(["train", str(cfg), "--data", "digits", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "w.npz does not exist" in err


def test_train_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc = main(["train", str(DEMO), "--data", "digits", "--epochs", "1", "--samples", "100",
               "-q", "--json", str(blocker / "r.json")])
    assert rc == 2
    assert capsys.readouterr().err.startswith("error: cannot write the results")


def test_train_mnist_smoke(mnist, tmp_path, capsys):
    js = tmp_path / "mnist.json"
    rc = main(["train", str(BOARD), "--data", "mnist", "--samples", "2000",
               "--test-samples", "1000", "--epochs", "1", "-q", "--json", str(js)])
    assert rc == 0
    assert "on mnist: 2000 train / 1000 test samples" in capsys.readouterr().out
    result = json.loads(js.read_text())
    assert result["dataset"] == "mnist"
    assert result["final_test_accuracy"] > 0.5   # measured: 57.7%
