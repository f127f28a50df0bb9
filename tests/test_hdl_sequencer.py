# amaranth: UnusedElaboratable=no
# (a LayerBanks is built only for its port signature and addresses)
"""hdl/sequencer.py on its own: the time base and sample slots, the input
load, one junction's copy counters and stage-delayed addresses against the
schedule (``gen/geometry.py``)."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from sparse_edge.gen.geometry import (S_BIAS, S_DB, S_DW, S_W, S_WR, NetworkGeometry,
                                      bank_groups, hardware_schedule)
from sparse_edge.hdl.banks import LayerBanks
from sparse_edge.hdl.pipeline import as_shape
from sparse_edge.hdl.sequencer import InputLoader, JunctionControl, Sequencer

from .conftest import make_config


def simulate(dut, tb):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("kind", ["fast", "reference"])
def test_sequencer_time_base_and_sample_slots(kind):
    cfg = make_config((16, 8, 4), (2, 2), 8)
    geo = NetworkGeometry(cfg, hardware_schedule(cfg, kind))
    dut = Sequencer(geo)
    cc, K, beats = geo.clocks_per_sample, geo.K_info, geo.beats_per_sample

    async def tb(ctx):
        t = dut.time
        for clock in range(cc * (K + 5)):
            n, c = divmod(clock, cc)
            assert ctx.get(t.phase) == c
            assert ctx.get(t.active) == (c < cfg.cycle)
            assert ctx.get(t.cycle_end) == (c == cc - 1)
            assert ctx.get(t.cycle_end_next) == ((c + 1) % cc == cc - 1)
            assert ctx.get(t.jcycle) == min(n, geo.U[1] + 2)
            assert ctx.get(dut.need_input) == (c < beats)
            assert ctx.get(dut.clocks) == clock
            ctx.set(dut.label, n % 4)
            ctx.set(dut.lr, n % 16)
            ctx.set(dut.update, n % 3 != 0)
            await ctx.tick()
            if c == 0:       # sample n's information is in slot n % K from now on
                slot = n % K
                assert ctx.get(t.info_label[slot]) == n % 4
                assert ctx.get(t.info_k[slot]) == n % 16
                assert ctx.get(t.info_update[slot]) == (n % 3 != 0)

    simulate(dut, tb)


@pytest.mark.parametrize("layers", [(16, 8, 4), (80, 16, 4)])
def test_input_loader_fills_rows_of_the_sample_copy(layers):
    """Beat ``r`` of sample ``n`` lands in row ``r`` of copy ``n % K_act[0]``
    of every input bank, pixels mapped into the fraction field, one clock
    after its beat, in every group of banks (the second config: 20 banks,
    three groups of address and enable copies)."""
    cfg = make_config(layers, (2, 2), 8)       # 4 or 5 beats in 8 clocks: late writes
    geo = NetworkGeometry(cfg, hardware_schedule(cfg, "fast"))
    banks = LayerBanks(as_shape(geo.act_shape[0]), cfg.z[0], geo.R[1], geo.K_act[0])
    dut = InputLoader(geo, banks.wr[0].signature)
    assert dut.late
    assert len(bank_groups(cfg.z[0])) == (1 if cfg.z[0] <= 8 else 3)
    cc, beats, z1 = geo.clocks_per_sample, geo.beats_per_sample, cfg.z[0]
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (6, beats, z1))
    writes = []

    async def tb(ctx):
        for clock in range(6 * cc + 1):    # the late write of beat r lands at n*cc + r + 1
            n, c = divmod(clock, cc)
            ctx.set(dut.phase, c)
            ctx.set(dut.cycle_end, c == cc - 1)
            if n < 6 and c < beats:
                for b in range(z1):
                    ctx.set(dut.pixels[b], int(px[n, c, b]))
            ens = {ctx.get(p.en) for p in dut.wr}
            assert len(ens) == 1, f"clock {clock}: the banks' write enables differ"
            if ens.pop():
                addrs = {ctx.get(p.addr) for p in dut.wr}
                assert len(addrs) == 1, f"clock {clock}: the banks' write rows differ"
                assert clock % cc <= beats, f"clock {clock}: a write later than its beat + 1"
                writes.append((addrs.pop(), [ctx.get(p.data) for p in dut.wr]))
            await ctx.tick()

    simulate(dut, tb)
    want = [(banks.address(n % geo.K_act[0], r), list(cfg.fmt.pixel(px[n, r])))
            for n in range(6) for r in range(beats)]
    assert writes == want


@pytest.mark.parametrize("j, kind", [(1, "fast"), (2, "fast"), (2, "reference")])
def test_junction_control_follows_the_schedule(j, kind):
    """Each memory role's copy is ``(t - offset) mod copies`` with the
    schedule's offset (FF: ``F[j]``, BP/UP: ``U[j]``), and every stage's
    address is the issue stage's, that many clocks later."""
    cfg = make_config((16, 8, 4), (2, 2), 8)
    geo = NetworkGeometry(cfg, hardware_schedule(cfg, kind))
    dut = JunctionControl(geo, j, dithered=False)
    cc, C, R, NR = geo.clocks_per_sample, cfg.cycle, geo.R[j], geo.NR[j]
    F, U = geo.F[j], geo.U[j]
    K_left, K_da = geo.K_act[j - 1], geo.K_da[j]
    rng = np.random.default_rng(j)
    cycles = 8
    rows = rng.integers(0, R, (cycles * cc, geo.z[j]))
    issue = {}

    async def tb(ctx):
        t = dut.time
        for clock in range(cycles * cc):
            n, c = divmod(clock, cc)
            ctx.set(t.phase, c)
            ctx.set(t.active, c < C)
            ctx.set(t.cycle_end, c == cc - 1)
            ctx.set(t.cycle_end_next, (c + 1) % cc == cc - 1)
            ctx.set(t.jcycle, min(n, geo.U[1] + 2))
            for i in range(geo.K_info):
                ctx.set(t.info_update[i], 1)
            for b in range(geo.z[j]):
                ctx.set(dut.rows.row[b], int(rows[clock, b]))
            if c < C:
                for b in range(geo.z[j]):
                    assert ctx.get(dut.left_addr_ff[b]) == ((n - F) % K_left) * R + rows[clock, b]
                    assert ctx.get(dut.left_addr_up[b]) == ((n - U) % K_left) * R + rows[clock, b]
                nat = c // geo.span[j]
                if j == cfg.junctions:
                    assert ctx.get(dut.dout_rd_addr) == ((n - U) % K_da) * NR + nat
                else:
                    assert ctx.get(dut.da_rd_addr) == ((n - U) % K_da) * NR + nat
                issue[clock] = (c, nat, n >= F, n >= U)
            # the weight and bias rows one clock ahead of their reads, the
            # write enables one clock ahead of their writes
            for stage, check in ((S_DB - 1, "b_addr_next"), (S_DW - 1, "w_addr_next")):
                if clock - stage in issue:
                    c0, nat, vff, vup = issue[clock - stage]
                    want = nat if check.startswith("b") else c0
                    assert ctx.get(getattr(dut, check)) == want, (check, clock)
            if clock - (S_W - 1) in issue:
                assert ctx.get(dut.w_we_next) == issue[clock - (S_W - 1)][3]
            if clock - (S_BIAS - 1) in issue:
                c0, nat, vff, vup = issue[clock - (S_BIAS - 1)]
                last_span = c0 % geo.span[j] == geo.span[j] - 1
                assert ctx.get(dut.b_we_next) == (vup and last_span), clock
            if clock - S_WR in issue:
                c0, nat, vff, vup = issue[clock - S_WR]
                last_span = c0 % geo.span[j] == geo.span[j] - 1
                assert ctx.get(dut.wr_ok) == (vff and last_span)
            await ctx.tick()

    simulate(dut, tb)
