# amaranth: UnusedElaboratable=no
"""Whole-network equivalence: the Amaranth hardware, simulated, trains a few
dozen samples (training and no-update samples mixed, input and output stalls)
and ends with every weight and bias identical to the golden model's, the same
predictions, and the cycle count its own schedule predicts."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sparse_edge.gen.config import initial_parameters, legal_cycles
from sparse_edge.gen.geometry import READOUT_LATENCY
from sparse_edge.gen.tables import ActivationTable
from sparse_edge.hdl.network import WRITE_LATENCY, Network, hardware_schedule
from sparse_edge.hdl.neuron import NeuronUnit
from sparse_edge.sim.golden import GoldenModel
from sparse_edge.sim.rtl import simulate_amaranth

from .conftest import make_config
from .test_golden import tiny_data
from .test_hdl_lane import BrokenUpdateLane

# (id, layers, fanout, C, (int, frac), kind, schedule) -- together they cover
# L = 2, 3, 4; 8-, 10- and 12-bit formats; every interleaver kind; several
# neurons per clock (C | N), one per clock, multi-clock neurons (N | C) down
# to a single lane; one-row banks (C = fo) and p/z = 2; both schedules; and
# 20 lanes (several groups of row ROMs, weight-bank row copies and input-load
# copies: gen/geometry.py groups_of) with the input written late.
CASES = [
    ("L2-multiclock-ref", (8, 4), (2,), 8, (2, 7), "random_start", "reference"),
    ("L2-multiclock-fast", (8, 4), (2,), 8, (2, 7), "zero_start", "fast"),
    ("L3-q4-8bit", (16, 8, 4), (2, 2), 4, (2, 5), "random_start", "fast"),
    ("L3-pz2-10bit-ref", (16, 8, 4), (2, 2), 4, (2, 7), "zero_start", "reference"),
    ("L3-onerow-C=fo", (8, 8, 4), (2, 2), 2, (2, 7), "zero_start", "fast"),
    ("L3-onerow-C=1", (8, 8, 4), (1, 1), 1, (2, 7), "random_start", "fast"),
    ("L3-dither-12bit", (16, 8, 4), (2, 2), 8, (3, 8), "bank_dither", "fast"),
    ("L3-rowperm", (16, 8, 8), (2, 4), 8, (2, 7), "row_permutation", "reference"),
    ("L3-single-lane-z1", (4, 4, 4), (1, 1), 4, (2, 7), "random_start", "fast"),
    ("L3-mixed-regimes", (16, 4, 8), (2, 4), 8, (2, 6), "bank_dither", "fast"),
    ("L4-fast", (8, 4, 4, 4), (2, 2, 2), 4, (2, 7), "row_permutation", "fast"),
    ("L4-ref-12bit", (8, 8, 4, 4), (2, 2, 2), 8, (4, 7), "random_start", "reference"),
    ("L3-z20-groups", (80, 16, 4), (2, 2), 8, (2, 7), "random_start", "fast"),
]


def check_equivalence(cfg, schedule, n=24, seed=0, stall_every=7, out_stall_every=5,
                      **parts):
    net = Network(cfg, schedule, outputs=True, checks=True, **parts)
    x, labels, ks = tiny_data(cfg, n, seed, no_update_every=4)
    hw = simulate_amaranth(net, x, labels, ks, stall_every=stall_every,
                           out_stall_every=out_stall_every)
    gm = GoldenModel(cfg)
    ref = gm.run(x, labels, ks, net.schedule, keep_outputs=True)
    problems = []
    if not (hw.predictions == ref.predictions).all():
        problems.append(f"predictions differ: hw {hw.predictions} golden {ref.predictions}")
    if not (hw.outputs == ref.outputs).all():
        problems.append("output activations differ")
    for j, ((w, b), (gw, gb)) in enumerate(zip(hw.params, gm.parameters()), start=1):
        if (w != gw).any():
            e = int(np.flatnonzero(w != gw)[0])
            problems.append(f"junction {j} weight {e}: hw {w[e]} golden {gw[e]}")
        if (b != gb).any():
            r = int(np.flatnonzero(b != gb)[0])
            problems.append(f"junction {j} bias {r}: hw {b[r]} golden {gb[r]}")
    expect = [net.prediction_clock(i) for i in range(n)]
    if list(hw.clocks) != expect:
        problems.append(f"prediction clocks {list(hw.clocks)} != schedule {expect}")
    return net, hw, problems


@pytest.mark.parametrize("name,layers,fanout,cycle,fmt,kind,sched", CASES,
                         ids=[c[0] for c in CASES])
def test_network_bit_exact(name, layers, fanout, cycle, fmt, kind, sched):
    cfg = make_config(layers, fanout, cycle, *fmt, kind=kind, seed=3)
    net, hw, problems = check_equivalence(cfg, sched)
    assert not problems, "\n".join(problems)
    # training really happened (the comparison is not between untouched inits)
    init = initial_parameters(cfg)
    assert any((w != iw).any() for (w, _), (iw, _) in zip(hw.params, init))
    # steady state: one sample per junction cycle
    assert set(np.diff(hw.clocks)) == {net.clocks_per_sample}
    if sched == "fast":
        assert net.clocks_per_sample == cfg.cycle
    else:
        assert net.clocks_per_sample == cfg.cycle + WRITE_LATENCY


def corrupted_table_neuron(entry):
    """Neuron units built from a table whose ``sigma[entry]`` has bit 4 flipped."""
    def make(fmt, table, *args):
        sigma = table.sigma.copy()
        sigma[entry] ^= 1 << 4
        return NeuronUnit(fmt, ActivationTable(table.fmt, table.table_bits, sigma,
                                               table.dsigma), *args)
    return make


@pytest.mark.parametrize("fault", ["weight-update-bit", "table-entry"])
def test_equivalence_check_can_fail(fault):
    """A network built from a broken part (lane 0 of junction 1 flips bit 0 of
    its weight change; or one activation-table entry corrupted) fails."""
    cfg = make_config((16, 8, 4), (2, 2), 8, kind="random_start", seed=3)
    if fault == "table-entry":
        # corrupt the table entry the first junction uses most often
        x, labels, ks = tiny_data(cfg, 24, 0, no_update_every=4)
        gm = GoldenModel(cfg)
        idx = [cfg.activation_table().index(
            gm.ops[0].ff(gm.w[0], gm.b[0], cfg.fmt.pixel(xi).astype(np.int32))[0]) for xi in x]
        parts = {"neuron": corrupted_table_neuron(int(np.bincount(np.concatenate(idx)).argmax()))}
    else:
        parts = {"lane": BrokenUpdateLane}
    _, _, problems = check_equivalence(cfg, "fast", **parts)
    assert problems, "a corrupted hardware passed the equivalence check"


@st.composite
def random_configs(draw):
    L = draw(st.integers(2, 4))
    while True:
        layers = [draw(st.sampled_from([4, 8, 16])) for _ in range(L)]
        fanout = [draw(st.sampled_from([f for f in (1, 2, 4) if f <= layers[i + 1]]))
                  for i in range(L - 1)]
        legal = legal_cycles(layers, fanout)
        if legal:
            break
    cycle = draw(st.sampled_from([c for c, z in legal if max(z) <= 16]))
    fmt = draw(st.sampled_from([(1, 6), (2, 7), (3, 8)]))
    kind = draw(st.sampled_from(["zero_start", "random_start", "row_permutation",
                                 "bank_dither"]))
    return make_config(layers, fanout, cycle, *fmt, kind=kind, seed=draw(st.integers(0, 50)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_configs(), st.sampled_from(["fast", "reference"]), st.integers(0, 5))
def test_random_configs_bit_exact(cfg, sched, seed):
    _, _, problems = check_equivalence(cfg, sched, n=16, seed=seed)
    assert not problems, "\n".join(problems)


def test_schedule_properties_read_from_hardware():
    cfg = make_config((16, 8, 4), (2, 2), 8)
    fast, ref = hardware_schedule(cfg, "fast"), hardware_schedule(cfg, "reference")
    assert ref.F == (1, 2) and ref.U == (4, 3)            # the reference offsets
    assert fast.clocks_per_cycle == 8 and ref.clocks_per_cycle == 8 + WRITE_LATENCY
    assert Network(cfg, "fast").schedule == fast
    with pytest.raises(ValueError, match="unknown hardware schedule"):
        hardware_schedule(cfg, "turbo")


def test_load_port_then_train_bit_exact():
    """Parameters written through the load port are the ones trained."""
    cfg = make_config((16, 8, 4), (2, 2), 8, kind="random_start", seed=2)
    rng = np.random.default_rng(7)
    params = [(rng.integers(-200, 200, cfg.edges[j]).astype(np.int32),
               rng.integers(-100, 100, cfg.layers[j + 1]).astype(np.int32))
              for j in range(cfg.junctions)]
    net = Network(cfg, "fast")
    x, labels, ks = tiny_data(cfg, 12, 1)
    hw = simulate_amaranth(net, x, labels, ks, load=params)
    gm = GoldenModel(cfg, params=params)
    ref = gm.run(x, labels, ks, net.schedule)
    assert (hw.predictions == ref.predictions).all()
    for (w, b), (gw, gb) in zip(hw.params, gm.parameters()):
        assert (w == gw).all() and (b == gb).all()
    # and they differ from what the default init would have trained to
    gm0 = GoldenModel(cfg)
    gm0.run(x, labels, ks, net.schedule)
    assert any((w != w0).any() for (w, _), (w0, _) in zip(hw.params, gm0.parameters()))


def test_load_and_read_out_back_to_back():
    """Load port and read-out on a stalled network: a value loaded in one
    clock is read back by a read-out started in the next (the registered
    load write and the shared, transparent read port; ``READOUT_LATENCY``
    clocks to ``ro_data``), for every weight and bias, with loads and reads
    interleaved so that a wrong write enable or address would clobber a
    neighbour."""
    from amaranth.sim import Simulator
    cfg = make_config((16, 8, 4), (2, 2), 8, kind="random_start", seed=2)
    net = Network(cfg, "fast")
    g = net.geometry
    addrs = []
    for j in range(cfg.junctions):
        addrs += [(j, 0, e // cfg.z[j], e % cfg.z[j]) for e in range(cfg.edges[j])]
        q = g.q[j + 1]
        addrs += [(j, 1, r // q, r % q) for r in range(cfg.layers[j + 1])]
    value = {a: (37 * i + 11) % 400 - 200 for i, a in enumerate(addrs)}
    got = {}

    async def tb(ctx):
        # no input is ever offered: the network stalls on its first beat
        for a in addrs:
            for port, v in zip((net.ro_junction, net.ro_bias, net.ro_row, net.ro_lane), a):
                ctx.set(port, v)
            ctx.set(net.ld_en, 1)
            ctx.set(net.ld_data, value[a])
            await ctx.tick()
            ctx.set(net.ld_en, 0)
            for _ in range(READOUT_LATENCY):
                await ctx.tick()
            got[a] = ctx.get(net.ro_data)
        # and everything again, read only, after all the loads
        for a in addrs:
            for port, v in zip((net.ro_junction, net.ro_bias, net.ro_row, net.ro_lane), a):
                ctx.set(port, v)
            for _ in range(READOUT_LATENCY):
                await ctx.tick()
            assert ctx.get(net.ro_data) == value[a], a
        assert ctx.get(net.clocks) == 0          # the network never ran

    sim = Simulator(net)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert got == value
