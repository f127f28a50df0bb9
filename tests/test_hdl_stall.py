"""hdl/stall.py on its own: the stall control's handshakes, input register,
output buffer and clock enable."""
from amaranth.sim import Simulator

from sparse_edge.hdl.network import beat_layout, result_layout
from sparse_edge.hdl.stall import StallControl

from .conftest import make_config


def simulate(dut, tb):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_stall_control_handshakes():
    """A beat waits in the input register; the enable (a register) rises in
    the third clock the core could run; the beat is taken only then; results
    queue in a two-entry buffer, a third stalls the core until one is read."""
    cfg = make_config((16, 8, 4), (2, 2), 8)
    dut = StallControl(beat_layout(cfg), result_layout(cfg))

    async def tb(ctx):
        ctx.set(dut.need_input, 1)
        ctx.set(dut.need_next, 1)
        ctx.set(dut.i_valid, 0)
        ctx.set(dut.o_ready, 1)
        await ctx.tick()
        assert ctx.get(dut.ro_mode) and not ctx.get(dut.ce)
        assert ctx.get(dut.i_ready)                # the input register is empty
        ctx.set(dut.i_valid, 1)
        ctx.set(dut.i_payload.label, 1)
        seen = []
        for _ in range(5):
            seen.append((ctx.get(dut.ce), ctx.get(dut.i_ready), ctx.get(dut.resumed)))
            await ctx.tick()
            ctx.set(dut.i_payload.label, 2)
        # clock 0: the beat enters the register (ready while empty); clock 1
        # the core could run, clock 3 is the third such clock; from then on
        # a beat is taken and one accepted every clock
        assert seen == [(0, 1, 0), (0, 0, 0), (0, 0, 0), (1, 1, 1), (1, 1, 1)]
        assert not ctx.get(dut.ro_mode)
        assert ctx.get(dut.beat.label) == 2
        # no beat offered while one is needed: the core stops in the next clock
        ctx.set(dut.i_valid, 0)
        await ctx.tick()
        assert not ctx.get(dut.ce) and ctx.get(dut.i_ready)
        ctx.set(dut.need_input, 0)
        ctx.set(dut.need_next, 0)
        for _ in range(3):                         # no beat needed: it runs again
            await ctx.tick()
        assert ctx.get(dut.ce)
        # results while the output is not read: two are held, then it stalls
        ctx.set(dut.o_ready, 0)
        ctx.set(dut.pred_valid, 1)
        for pred, clock in ((3, 1234), (1, 1300)):
            ctx.set(dut.pred, pred)
            ctx.set(dut.clocks, clock)
            assert ctx.get(dut.ce)
            await ctx.tick()
        ctx.set(dut.pred_valid, 0)
        assert ctx.get(dut.o_valid) and ctx.get(dut.result.prediction) == 3
        assert ctx.get(dut.result.clock) == 1234
        assert not ctx.get(dut.ce)                 # the buffer is full: stall
        ctx.set(dut.o_ready, 1)
        await ctx.tick()                           # the first is read
        assert ctx.get(dut.o_valid) and ctx.get(dut.result.prediction) == 1
        assert ctx.get(dut.result.clock) == 1300
        ctx.set(dut.o_ready, 0)
        for _ in range(2):                         # room again: it runs in the
            assert not ctx.get(dut.ce)             # third clock it could
            await ctx.tick()
        assert ctx.get(dut.ce)
        ctx.set(dut.o_ready, 1)
        await ctx.tick()
        assert not ctx.get(dut.o_valid)

    simulate(dut, tb)
