# amaranth: UnusedElaboratable=no
# (the parameter checks raise before a component is used)
"""hdl/banks.py on its own: a layer's banks (rotating copies, read ports,
transparency) and a junction's weight and bias banks (datapath read and
write-back, clock enable, read-out while stalled, the re-read after a stall,
the load port) against a numpy model of the memory contents."""
import numpy as np
import pytest
from amaranth.hdl import ClockDomain, ClockSignal, EnableInserter, Module, ResetSignal, signed
from amaranth.sim import Simulator

from sparse_edge.gen.geometry import BANKS_PER_ADDRESS_COPY, READOUT_LATENCY
from sparse_edge.hdl.banks import (BANK_READOUT_LATENCY, READ_GROUP, LayerBanks, ReadoutPort,
                                   WeightBanks)


def simulate(dut, tb, ro=False):
    if ro:
        # as in the network: the banks' ports run in the ungated ``ro`` domain,
        # everything in ``sync`` advances with the clock enable
        top = Module()
        top.submodules.dut = EnableInserter({"sync": dut.access.ce})(dut) \
            if hasattr(dut, "w_addr_next") else dut
        top.domains.ro = cd = ClockDomain("ro", local=True)
        top.d.comb += [cd.clk.eq(ClockSignal("sync")), cd.rst.eq(ResetSignal("sync"))]
        dut = top
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_layer_banks_copies_and_ports():
    """Random writes to (bank, copy, row); every read port returns the word
    one clock later; the transparent port sees a write in the same clock."""
    banks, rows, copies = 3, 4, 3
    dut = LayerBanks(signed(9), banks, rows, copies, reads=("rmw", "nat"),
                     transparent=("rmw",))
    model = np.zeros((banks, rows * copies), dtype=int)
    rng = np.random.default_rng(0)

    async def tb(ctx):
        for _ in range(60):
            plan = []
            for b in range(banks):
                copy, row = int(rng.integers(copies)), int(rng.integers(rows))
                addr = dut.address(copy, row)
                assert addr == copy * rows + row
                v, we = int(rng.integers(-256, 256)), bool(rng.integers(2))
                rd = int(rng.integers(rows * copies)) if rng.integers(2) else addr
                ctx.set(dut.wr[b].addr, addr)
                ctx.set(dut.wr[b].data, v)
                ctx.set(dut.wr[b].en, we)
                ctx.set(dut.rmw[b].addr, rd)
                ctx.set(dut.nat[b].addr, rd)
                plan.append((b, addr, v, we, rd, int(model[b, rd])))
            await ctx.tick()
            for b, addr, v, we, rd, old in plan:
                new = v if (we and rd == addr) else old
                assert ctx.get(dut.rmw[b].data) == new        # transparent
                assert ctx.get(dut.nat[b].data) == old        # read first
                if we:
                    model[b, addr] = v

    simulate(dut, tb)


def test_layer_banks_rejects_bad_parameters():
    with pytest.raises(ValueError, match="copies must be >= 1, not 0"):
        LayerBanks(signed(4), 2, 2, 0)
    with pytest.raises(ValueError, match="bad read ports"):
        LayerBanks(signed(4), 2, 2, 1, reads=("a",), transparent=("b",))


class Weights:
    """Drives a WeightBanks through its access members like the network does."""

    def __init__(self, C=4, z=3, NR=2, q=2, j=2):
        rng = np.random.default_rng(1)
        self.w = rng.integers(-500, 500, (C, z))
        self.b = rng.integers(-500, 500, (NR, q))
        self.dut = WeightBanks(self.w, self.b, 10, j, ro_rows=max(C, NR), ro_lanes=max(z, q),
                               ro_junctions=3)
        self.j = j


@pytest.mark.parametrize("z", [READ_GROUP, READ_GROUP + 1, BANKS_PER_ADDRESS_COPY + 2])
def test_weight_banks_datapath_and_clock_enable(z):
    """The datapath gives each row one enabled clock ahead (``*_addr_next``,
    ``*_we_next``); the banks read it in the next enabled clock and write
    back the row read one enabled clock before (the read-modify-write),
    from every bank group's own copy of the rows; a clock without ``ce``
    changes nothing."""
    wb = Weights(z=z, q=z + 1, NR=3)
    dut = wb.dut
    rng = np.random.default_rng(2)
    kinds = [("w", wb.w.copy()), ("b", wb.b.copy())]

    async def tb(ctx):
        ctx.set(dut.access.resumed_next, 1)
        ctx.set(dut.access.ro_mode_next, 0)
        await ctx.tick()                         # the banks' copies of the stall state
        state = {kind: [0, 0, 0] for kind, _ in kinds}      # row, held row, write enable
        for t in range(60):
            ce = int(rng.integers(2))
            ctx.set(dut.access.ce, ce)
            plan = []
            for kind, store in kinds:
                rows, banks = store.shape
                r, we = int(rng.integers(rows)), int(rng.integers(2))
                new = rng.integers(-500, 500, banks)
                ctx.set(getattr(dut, f"{kind}_addr_next"), r)
                ctx.set(getattr(dut, f"{kind}_we_next"), we)
                for k in range(banks):
                    ctx.set(getattr(dut, f"{kind}_wdata")[k], int(new[k]))
                plan.append((kind, store, r, we, new))
            await ctx.tick()
            for kind, store, r, we, new in plan:
                row, held, wen = state[kind]
                if ce and wen:
                    store[held] = new
                if ce:
                    state[kind] = [r, row, we]
                # the read port is transparent for its write port
                got = [ctx.get(p) for p in getattr(dut, f"{kind}_data")]
                assert got == list(store[row]), (kind, t)

    simulate(dut, tb, ro=True)


@pytest.mark.parametrize("z", [READ_GROUP, 2 * READ_GROUP + 1, BANKS_PER_ADDRESS_COPY + 1])
def test_weight_banks_read_out_load_and_resume(z):
    """While stalled (``ro_mode``) the read ports serve the read-out; a load
    lands one clock after ``ld_en`` and only in the addressed junction, kind
    and lane; after the stall (``resumed`` low) the port re-reads the
    datapath's last enabled address."""
    wb = Weights(z=z)        # one bank group, or three (the last of one bank)
    dut = wb.dut
    w, b = wb.w.copy(), wb.b.copy()
    C, z = w.shape
    NR, q = b.shape

    async def tb(ctx):
        acc = dut.access
        ctx.set(acc.resumed_next, 1)
        ctx.set(acc.ro_mode_next, 0)
        ctx.set(acc.ce, 1)
        ctx.set(dut.w_addr_next, 2)              # read before the interrupted one
        await ctx.tick()
        ctx.set(dut.w_addr_next, 1)              # the read the stall interrupts
        await ctx.tick()
        ctx.set(acc.ce, 0)
        ctx.set(dut.w_addr_next, 3)              # changes while stalled: not enabled
        ctx.set(acc.ro_mode_next, 1)             # every bank group's copy: next clock
        await ctx.tick()
        # read-out, pipelined: a new address every clock, its word
        # BANK_READOUT_LATENCY clocks later
        ctx.set(acc.ro_junction, wb.j - 1)
        for bias, store, lanes, rows in ((0, w, z, C), (1, b, q, NR)):
            ctx.set(acc.ro_bias, bias)
            addrs = [(row, lane) for row in range(rows) for lane in range(lanes)]
            seen = []
            for row, lane in addrs + [(0, 0)] * BANK_READOUT_LATENCY:
                ctx.set(acc.ro_row, row)
                ctx.set(acc.ro_lane, lane)
                await ctx.tick()
                seen.append(ctx.get(dut.ro_w if not bias else dut.ro_b))
            assert seen[BANK_READOUT_LATENCY - 1:][:len(addrs)] == \
                [store[a] for a in addrs]
        # load: a wrong junction is ignored, the right one lands a clock later
        lane = min(2, z - 1)
        for junction, lands in ((wb.j, False), (wb.j - 1, True)):
            ctx.set(acc.ro_bias, 0)
            ctx.set(acc.ro_junction, junction)
            ctx.set(acc.ro_row, 1)
            ctx.set(acc.ro_lane, lane)
            ctx.set(acc.ld_en, 1)
            ctx.set(acc.ld_data, 77)             # with ld_en (the banks register it)
            await ctx.tick()
            ctx.set(acc.ld_en, 0)
            ctx.set(acc.ld_data, 0)
            ctx.set(acc.ro_row, 0)               # the row and data were taken with ld_en
            await ctx.tick()                     # the write lands
            ctx.set(acc.ro_row, 1)
            await ctx.tick()
            await ctx.tick()
            assert (ctx.get(dut.ro_w) == 77) == lands
        w[1, lane] = 77
        # resume: ro_mode off, ``resumed`` low: the held row (2) is read
        ctx.set(acc.ro_mode_next, 0)
        ctx.set(acc.resumed_next, 0)
        await ctx.tick()
        await ctx.tick()
        assert [ctx.get(dut.w_data[k]) for k in range(z)] == list(w[2])
        # then (``resumed``) the interrupted read's row (1), still not enabled
        ctx.set(acc.resumed_next, 1)
        await ctx.tick()
        await ctx.tick()
        assert [ctx.get(dut.w_data[k]) for k in range(z)] == list(w[1])

    simulate(dut, tb, ro=True)


def test_readout_port_selects_and_registers():
    """The addressed junction's weight or bias, READOUT_LATENCY clocks after
    its address, pipelined (a new address every clock); the load data
    passed on in its own clock (each group of banks registers it)."""
    dut = ReadoutPort(3, 10, ro_rows=8, ro_lanes=4, ro_junctions=3)
    addrs = [(j, bias) for j in (2, 0, 1) for bias in (1, 0)]

    def want(j, bias):
        return -10 * j - 2 if bias else 10 * j + 1

    async def tb(ctx):
        for j in range(3):
            ctx.set(dut.w[j], 10 * j + 1)
            ctx.set(dut.b[j], -10 * j - 2)
        seen = []
        for t, (j, bias) in enumerate(addrs + [(0, 0)] * READOUT_LATENCY):
            ctx.set(dut.ro_junction, j)
            ctx.set(dut.ro_bias, bias)
            ctx.set(dut.ro_row, t % 8)
            ctx.set(dut.ld_data, j + 40 * bias)
            assert ctx.get(dut.access.ro_row) == t % 8
            assert ctx.get(dut.access.ld_data) == j + 40 * bias
            await ctx.tick()
            seen.append(ctx.get(dut.data))
        assert seen[READOUT_LATENCY - 1:][:len(addrs)] == [want(*a) for a in addrs]

    simulate(dut, tb, ro=True)
