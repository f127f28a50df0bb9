"""Crash-safe output (gen/output.py): atomic files, results published as a
whole, manifests, checks of output locations."""

import json
import os

import numpy as np
import pytest

from sparse_edge.gen import output
from sparse_edge.gen.errors import OutputError, SparseEdgeError


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    output.write_json(p, {"a": 1})
    assert json.loads(p.read_text()) == {"a": 1}

    real = os.fsync

    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OutputError, match="No space left"):
        output.write_json(p, {"a": 2})
    monkeypatch.setattr(os, "fsync", real)
    assert json.loads(p.read_text()) == {"a": 1}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.json"]     # no temporary left


def test_write_errors_are_one_line_and_name_the_file(tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        output.write_text(d, "x")
    with pytest.raises(OutputError, match=str(tmp_path / "missing")):
        output.write_text(tmp_path / "missing" / "f.txt", "x")
    assert issubclass(OutputError, SparseEdgeError)


def test_save_npz_round_trip(tmp_path):
    p = output.save_npz(tmp_path / "g.npz", a=np.arange(5), b=np.eye(2))
    with np.load(p) as z:
        assert z["a"].tolist() == [0, 1, 2, 3, 4]


def _result(folder, tag, extra=()):
    (folder / "result.json").write_text(json.dumps({"tag": tag}))
    (folder / "data.bin").write_bytes(tag.encode() * 100)
    for name in extra:
        (folder / name).write_text(tag)


def _tag(folder):
    t = json.loads((folder / "result.json").read_text())["tag"]
    assert (folder / "data.bin").read_bytes() == t.encode() * 100
    return t


def test_publish_replaces_as_a_whole_and_drops_stale_files(tmp_path):
    dest = tmp_path / "out"
    with output.publish(dest, "demo", owned={"result.json", "data.bin", "plot.png"}) as tmp:
        _result(tmp, "old", extra=["plot.png"])
    assert _tag(dest) == "old" and (dest / "plot.png").exists()
    assert output.verify(dest, "demo") == []
    (dest / "notes.txt").write_text("mine")              # the user's own file
    with output.publish(dest, "demo", owned={"result.json", "data.bin", "plot.png"}) as tmp:
        _result(tmp, "new")
    assert _tag(dest) == "new"
    assert not (dest / "plot.png").exists()               # stale file of the old run
    assert (dest / "notes.txt").read_text() == "mine"     # carried over
    assert output.verify(dest, "demo") == []
    assert not [p for p in tmp_path.iterdir() if p.name != "out"]    # no staging left


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_publish_failure_keeps_previous_result(tmp_path, monkeypatch, fail_at):
    dest = tmp_path / "out"
    with output.publish(dest, "demo") as tmp:
        _result(tmp, "old")
    calls = [0]
    real = output.write_bytes

    def flaky(path, data):
        calls[0] += 1
        if calls[0] == fail_at:
            raise OutputError(f"cannot write {path}: No space left on device")
        return real(path, data)

    monkeypatch.setattr(output, "write_bytes", flaky)
    with pytest.raises(OutputError):
        with output.publish(dest, "demo") as tmp:
            output.write_text(tmp / "result.json", json.dumps({"tag": "new"}))
            output.write_bytes(tmp / "data.bin", b"new" * 100)
    assert _tag(dest) == "old"
    assert output.verify(dest, "demo") == []
    assert not [p for p in tmp_path.iterdir() if p.name != "out"]


def test_publish_exception_in_body_leaves_nothing(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with output.publish(dest, "demo") as tmp:
            _result(tmp, "x")
            raise RuntimeError("interrupted")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_publish_in_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("k")
    with output.publish(".", "demo", owned={"result.json", "data.bin", "x.txt"}) as tmp:
        _result(tmp, "one", extra=["x.txt"])
    with output.publish(".", "demo", owned={"result.json", "data.bin", "x.txt"}) as tmp:
        _result(tmp, "two")
    assert _tag(tmp_path) == "two" and not (tmp_path / "x.txt").exists()
    assert (tmp_path / "keep.txt").read_text() == "k"
    assert output.verify(tmp_path, "demo") == []


def test_verify_finds_damage(tmp_path):
    with output.publish(tmp_path / "c", "cache") as tmp:
        _result(tmp, "a")
    (tmp_path / "c" / "data.bin").write_bytes(b"truncated")
    (tmp_path / "c" / "result.json").unlink()
    problems = output.verify(tmp_path / "c", "cache")
    assert any("differ" in p for p in problems) and any("missing" in p for p in problems)
    assert output.verify(tmp_path / "c", "other")[0].endswith("not 'other'")
    assert "no readable manifest" in output.verify(tmp_path)[0]


def test_check_locations(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        output.check_dir(f)
    with pytest.raises(OutputError, match="cannot write"):
        output.check_dir(f / "sub")
    assert output.check_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new" / "deeper").exists()
    with pytest.raises(OutputError, match="is a folder"):
        output.check_file(tmp_path)
    assert output.check_file(tmp_path / "a" / "b.json").parent.is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            output.check_dir(ro / "out")
    finally:
        ro.chmod(0o700)
