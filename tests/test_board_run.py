"""The host driver against the simulated board (CXXRTL system top behind a TCP
socket): the demo run checked bit for bit against the golden model, a link
that damages frames in both directions, and the errors a user can run into.

The simulated board is built once (CXXRTL cache) for configs/demo.toml."""

import json
import socket
import threading

import numpy as np
import pytest

from sparse_edge.boards.host import Board, BoardError, BoardTimeout, PortError, WrongNetwork
from sparse_edge.gen import protocol as P
from sparse_edge.gen.cli import main
from sparse_edge.gen.config import NO_UPDATE, initial_parameters, load_config
from sparse_edge.gen.datasets import load_dataset
from sparse_edge.gen.geometry import hardware_schedule
from sparse_edge.sim.board import FaultyLink, SimulatedBoard
from sparse_edge.sim.cxxrtl import CompiledSimError
from sparse_edge.sim.golden import GoldenModel

from .conftest import ROOT, make_config

DEMO = ROOT / "configs" / "demo.toml"


def _sim_or_skip(cfg):
    board = SimulatedBoard(cfg, "reference")
    try:
        board.build()
    except CompiledSimError as e:
        pytest.skip(f"the simulated board cannot be built here: {e}")
    return board


@pytest.mark.slow
def test_run_demo_on_the_simulated_board_bit_exact(tmp_path, capsys):
    """The command of issue 10: 10 epochs of 500 + 200 digits through the
    simulated board's UART, every prediction and parameter checked."""
    _sim_or_skip(load_config(DEMO))
    out = tmp_path / "run"
    rc = main(["run", str(DEMO), "--port", "sim", "--data", "digits", "--samples", "500",
               "--test-samples", "200", "--check", "--out", str(out), "-q"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "check passed: 7000 predictions" in text
    res = json.loads((out / "result.json").read_text())
    assert res["check"]["passed"] and res["check"]["prediction_mismatches"] == 0
    assert len(res["epochs"]) == 10 and res["epochs"][-1]["test_accuracy"] > 0.8
    assert res["link"]["board_samples_per_s"] > 1000
    with np.load(out / "board.npz") as z:           # golden.npz's keys
        for k in ("w1", "b1", "w2", "b2", "init_w1", "predictions", "labels", "config",
                  "schedule_F", "schedule_U"):
            assert k in z.files


def _golden_run(cfg, schedule, phases):
    gm = GoldenModel(cfg)
    preds = [gm.run(x, y, k, schedule).predictions for x, y, k in phases]
    return preds, gm.parameters()


@pytest.mark.slow
def test_faults_on_the_link_in_both_directions(tmp_path):
    cfg = load_config(DEMO)
    sim = _sim_or_skip(cfg)
    url = sim.start()
    proxy = FaultyLink(int(url.rsplit(":", 1)[1]), rate=0.12, seed=7)
    try:
        board = Board(proxy.url, cfg, timeout=20, retry=0.3)
        board.flush()
        board.write_parameters(initial_parameters(cfg))
        ds = load_dataset("digits")
        phases = [(ds.x_train[:160], ds.y_train[:160], 2), (ds.x_test[:60], ds.y_test[:60],
                                                             NO_UPDATE)]
        got = [board.run_phase(x, y, k) for x, y, k in phases]
        params = board.read_parameters()
        status = board.status()
    finally:
        proxy.close()
        sim.stop()
    want, gparams = _golden_run(cfg, hardware_schedule(cfg, "reference"), phases)
    for g, w in zip(got, want):
        assert (g == w).all()
    for (w, b), (gw, gb) in zip(params, gparams):
        assert (w == gw).all() and (b == gb).all()
    # the damage was real, in both directions, and it shows in the counters
    assert proxy.faulted_fraction("down") >= 0.05 and proxy.faulted_fraction("up") >= 0.05
    host = status["host"]
    assert status["frames_bad"] > 0 and host["frames_bad"] > 0
    assert host["retransmissions"] + host["timeouts"] > 0
    assert status["duplicates"] + status["out_of_order"] > 0


# -- errors a user can make ----------------------------------------------------------------------
class FakeBoard:
    """A TCP server that answers HELLO with a given INFO (and nothing else),
    or never answers at all."""

    def __init__(self, info=None):
        self.info = info
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = f"socket://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            parser = P.FrameParser(host=True)
            conn.settimeout(0.2)
            while not self.stop:
                try:
                    data = conn.recv(4096)
                except OSError:
                    continue
                if not data:
                    break
                for f in parser.feed(data):
                    if self.info is not None and f.type == P.HELLO:
                        conn.sendall(P.device_frame(P.INFO, f.seq, self.info))
                    elif self.info is not None and f.type == P.POLL:
                        conn.sendall(P.device_frame(P.REPORT, f.seq, P.report_payload(
                            P.Report(P.R_POLLED, 0, 4, 0, 0, b""))))
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(timeout=2)
        self.sock.close()


def test_port_that_does_not_open(capsys):
    assert main(["run", str(DEMO), "--port", "/dev/ttyNOPE9", "--samples", "5",
                 "--test-samples", "5", "--epochs", "1"]) == 2
    assert "cannot open port '/dev/ttyNOPE9'" in capsys.readouterr().err
    with pytest.raises(PortError):
        Board("/dev/ttyNOPE9")


def test_board_that_never_answers(capsys):
    fake = FakeBoard(info=None)
    try:
        assert main(["run", str(DEMO), "--port", fake.url, "--timeout", "1", "--samples", "5",
                     "--test-samples", "5", "--epochs", "1"]) == 2
        assert "no answer from the board" in capsys.readouterr().err
        with pytest.raises(BoardTimeout):
            Board(fake.url, timeout=0.5, retry=0.1)
    finally:
        fake.close()


def test_board_running_another_network(capsys):
    other = make_config((64, 16, 16), (4, 4), 64, **{"data": {"inputs": 64, "classes": 10}})
    info = P.info_payload(other, "reference", 79, 9, 4, 64, 12_000_000, 4)
    fake = FakeBoard(info=info)
    try:
        cfg = load_config(DEMO)
        with pytest.raises(WrongNetwork, match="runs another network"):
            Board(fake.url, cfg.with_(fanout=[4, 16], cycle=32), timeout=2)
        assert main(["run", str(DEMO), "--port", fake.url, "--timeout", "2", "--samples", "5",
                     "--test-samples", "5", "--epochs", "1"]) == 2
        err = capsys.readouterr().err
        assert "runs another network" in err and P.network_digest(other, "reference").hex() in err
    finally:
        fake.close()


def test_same_network_at_another_cycle_is_adopted():
    cfg = load_config(DEMO)
    at64 = cfg.with_(cycle=64)
    info = P.info_payload(at64, "reference", 79, 9, 4, 64, 12_000_000, 4)
    fake = FakeBoard(info=info)
    try:
        b = Board(fake.url, cfg, timeout=2)
        assert b.cfg.cycle == 64 and "C = 64" in b.note
        with pytest.raises(BoardError, match="input pixels per sample"):
            b.train(np.zeros((3, 784), np.uint8), np.zeros(3, int), 2)
        with pytest.raises(BoardError, match="labels must be in 0..9"):
            b.train(np.zeros((3, 64), np.uint8), np.array([1, 2, 10]), 2)
        b.close()
    finally:
        fake.close()


def test_data_that_does_not_match_the_config(capsys):
    assert main(["run", str(DEMO), "--port", "sim", "--data", "mnist", "--samples", "5"]) == 2
    err = capsys.readouterr().err
    assert "784 input features" in err or "MNIST" in err or "mnist" in err
