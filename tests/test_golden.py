"""Golden model: kernels agree, and the pipelined schedule produces exactly the
staleness it predicts (checked against a slow, obviously-correct model)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sparse_edge.gen.config import NO_UPDATE, initial_parameters, legal_cycles
from sparse_edge.sim.golden import GoldenModel, Schedule

from .conftest import make_config


def slow_model(cfg, x, labels, ks, schedule):
    """Sample-by-sample, edge-by-edge model using the weight *history*: FF(n)
    in junction j uses the weights after the updates of exactly the samples m
    with m*S + U[j] < n*S + F[j]; BP(n) and UP(n) use those after all m < n."""
    fmt, table = cfg.fmt, cfg.activation_table()
    pats = cfg.patterns()
    S, F, U = schedule.spacing, schedule.F, schedule.U
    J = cfg.junctions
    hist = [[(w.astype(np.int64).copy(), b.astype(np.int64).copy())]
            for w, b in initial_parameters(cfg)]
    preds = []
    for n in range(len(x)):
        a = [fmt.pixel(x[n]).astype(np.int64)]
        da = [None]
        s_out = None
        for j in range(J):
            seen = sum(1 for m in range(n) if m * S + U[j] < n * S + F[j])
            w, b = hist[j][seen]
            pat = pats[j]
            src = pat.src
            s = np.zeros(pat.n, dtype=np.int64)
            for e in range(pat.edges):
                s[e // pat.fi] += int(fmt.mul(int(a[j][src[e]]), int(w[e])))
            s = np.array([int(fmt.sat(int(v) + int(bb))) for v, bb in zip(s, b)])
            act, dact = table.lookup(s)
            a.append(act.astype(np.int64))
            da.append(dact.astype(np.int64))
            s_out = s
        preds.append(int(np.argmax(s_out[:cfg.classes])))
        y = np.zeros(cfg.layers[-1], dtype=np.int64)
        y[labels[n]] = fmt.one
        d = [None] * cfg.L
        d[J] = np.array([int(fmt.sat(int(v))) for v in a[J] - y])
        for j in reversed(range(J)):
            w, b = hist[j][n]                      # all earlier samples' updates
            pat = pats[j]
            src = pat.src
            if ks[n] == NO_UPDATE:
                hist[j].append((w, b))
                continue
            if j > 0:
                acc = np.zeros(pat.p, dtype=np.int64)
                for e in range(pat.edges):
                    acc[src[e]] += int(fmt.mul(int(w[e]), int(d[j + 1][e // pat.fi])))
                d[j] = np.array([int(fmt.mul(int(da[j][m]), int(fmt.sat(int(acc[m])))))
                                 for m in range(pat.p)])
            k = int(ks[n])
            db = np.array([QF_round(-int(v), k) for v in d[j + 1]])
            nb = np.array([int(fmt.sat(int(bb) + int(dd))) for bb, dd in zip(b, db)])
            nw = w.copy()
            for e in range(pat.edges):
                nw[e] = int(fmt.sat(int(w[e]) + int(fmt.mul(int(db[e // pat.fi]),
                                                            int(a[j][src[e]])))))
            hist[j].append((nw, nb))
    final = [(h[-1][0], h[-1][1]) for h in hist]
    return np.array(preds), final


def QF_round(x, k):
    return x if k == 0 else (x + (1 << (k - 1))) >> k


def tiny_data(cfg, n, seed=0, no_update_every=5):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, cfg.layers[0]), dtype=np.uint8)
    x[:, :cfg.inputs] = rng.integers(0, 256, size=(n, cfg.inputs))
    labels = rng.integers(0, cfg.classes, size=n)
    ks = rng.integers(1, 4, size=n)
    ks[::no_update_every] = NO_UPDATE
    return x, labels, ks


SCHEDULES = {
    "reference": lambda L: Schedule.reference(L),
    "sequential": lambda L: Schedule.sequential(L),
    "slack": lambda L: Schedule("slack", tuple(range(1, L)),
                                tuple(2 * (L - 1) + 2 * (L - 1 - i) + 1 for i in range(1, L))),
}


@pytest.mark.parametrize("sched", list(SCHEDULES))
@pytest.mark.parametrize("layers,fanout,cycle", [((16, 8, 4), (2, 2), 8),
                                                  ((8, 4, 4, 4), (2, 2, 2), 4),
                                                  ((8, 4), (2,), 8)])
def test_engine_matches_slow_history_model(layers, fanout, cycle, sched):
    cfg = make_config(layers, fanout, cycle, int_bits=1, frac_bits=5)
    schedule = SCHEDULES[sched](cfg.L)
    x, labels, ks = tiny_data(cfg, 14)
    preds, final = slow_model(cfg, x, labels, ks, schedule)
    for kernel in ("numpy", "numba"):
        m = GoldenModel(cfg, kernel=kernel)
        r = m.run(x, labels, ks, schedule)
        assert (r.predictions == preds).all(), kernel
        for (w, b), (fw, fb) in zip(m.parameters(), final):
            assert (w == fw).all() and (b == fb).all(), kernel


def test_pipelined_and_sequential_differ_as_predicted():
    cfg = make_config((16, 8, 4), (2, 2), 8, int_bits=1, frac_bits=5)
    x, labels, ks = tiny_data(cfg, 20, no_update_every=1000)
    ref, seq = Schedule.reference(3), Schedule.sequential(3)
    assert ref.staleness == (3, 1) and seq.staleness == (0, 0)
    a, b = GoldenModel(cfg), GoldenModel(cfg)
    ra, rb = a.run(x, labels, ks, ref), b.run(x, labels, ks, seq)
    assert any((wa != wb).any() for (wa, _), (wb, _) in zip(a.parameters(), b.parameters()))
    # ... and the first sample (no earlier updates to miss) is identical
    assert ra.predictions[0] == rb.predictions[0]
    assert ref.total_cycles(20) == 19 + 5 and seq.total_cycles(20) == 19 * 5 + 5


def test_no_update_samples_leave_parameters_untouched():
    cfg = make_config((16, 8, 4), (2, 2), 8)
    m = GoldenModel(cfg)
    before = m.parameters()
    x, labels, _ = tiny_data(cfg, 10)
    m.run(x, labels, NO_UPDATE, Schedule.reference(3))
    for (w0, b0), (w1, b1) in zip(before, m.parameters()):
        assert (w0 == w1).all() and (b0 == b1).all()


@st.composite
def small_configs(draw):
    L = draw(st.integers(2, 4))
    while True:
        layers = [draw(st.sampled_from([4, 8, 16, 32])) for _ in range(L)]
        fanout = [draw(st.sampled_from([f for f in (1, 2, 4, 8) if f <= layers[i + 1]]))
                  for i in range(L - 1)]
        legal = legal_cycles(layers, fanout)
        if legal:
            break
    cycle = draw(st.sampled_from([c for c, _ in legal]))
    fmt = draw(st.sampled_from([(1, 6), (2, 7), (3, 8), (3, 12)]))
    kind = draw(st.sampled_from(["zero_start", "random_start", "row_permutation",
                                 "bank_dither"]))
    return make_config(layers, fanout, cycle, *fmt, kind=kind, seed=draw(st.integers(0, 99)))


@settings(max_examples=40, deadline=None)
@given(small_configs(), st.sampled_from(list(SCHEDULES)), st.integers(0, 10))
def test_numba_and_numpy_kernels_bit_identical(cfg, sched, seed):
    schedule = SCHEDULES[sched](cfg.L)
    x, labels, ks = tiny_data(cfg, 30, seed)
    a, b = GoldenModel(cfg, kernel="numpy"), GoldenModel(cfg, kernel="numba")
    ra = a.run(x, labels, ks, schedule, keep_outputs=True)
    rb = b.run(x, labels, ks, schedule, keep_outputs=True)
    assert (ra.predictions == rb.predictions).all()
    assert (ra.outputs == rb.outputs).all()
    for (wa, ba), (wb, bb) in zip(a.parameters(), b.parameters()):
        assert (wa == wb).all() and (ba == bb).all()


def test_float_model_learns_digits():
    from sparse_edge.gen.datasets import load_dataset, padded_inputs
    cfg = make_config((64, 32, 16), (8, 8), 32, data={"inputs": 64, "classes": 10})
    ds = load_dataset("digits")
    x, xt = padded_inputs(ds.x_train, cfg), padded_inputs(ds.x_test, cfg)
    for mode in ("float", "fixed"):
        m = GoldenModel(cfg, mode)
        for _ in range(3):
            m.run(x, ds.y_train, 2, Schedule.reference(3))
        acc = (m.run(xt, ds.y_test, NO_UPDATE, Schedule.reference(3)).predictions
               == ds.y_test).mean()
        assert acc > 0.85, (mode, acc)


def test_schedule_rules():
    with pytest.raises(ValueError, match="F\\[2\\]"):
        Schedule("x", (1, 1), (4, 3))
    with pytest.raises(ValueError, match="U\\[2\\]"):
        Schedule("x", (1, 2), (4, 2))
    with pytest.raises(ValueError, match="U\\[1\\]"):
        Schedule("x", (1, 2), (3, 3))


def test_save_npz_keys(tmp_path):
    cfg = make_config((16, 8, 4), (2, 2), 8)
    m = GoldenModel(cfg)
    x, labels, ks = tiny_data(cfg, 5)
    sched = Schedule.reference(3)
    r = m.run(x, labels, ks, sched)
    m.save(tmp_path / "g.npz", r, labels, ks, sched)
    f = np.load(tmp_path / "g.npz")
    assert (f["init_w1"] == initial_parameters(cfg)[0][0]).all()
    assert {"w1", "b1", "w2", "b2", "init_w1", "init_b2", "predictions", "labels", "eta_exp", "schedule_F",
            "schedule_U", "schedule_spacing", "config", "mode"} <= set(f.files)
