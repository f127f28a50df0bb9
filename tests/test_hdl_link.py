# amaranth: UnusedElaboratable=no
"""The link engine (hdl/link.py, with hdl/framing.py, link_buffers.py and
link_reply.py) in Amaranth's simulator: each block against the protocol's
Python definitions (gen/protocol.py), then the whole engine with a small
network, driven frame by frame and by the host driver."""

import random

import numpy as np
import pytest
from amaranth.lib import stream
from amaranth.sim import Simulator

from sparse_edge.boards.host import Board
from sparse_edge.gen import protocol as P
from sparse_edge.gen.config import NO_UPDATE, initial_parameters
from sparse_edge.hdl.framing import Deframer, Enframer, FrameReceiver, FrameSender
from sparse_edge.hdl.link_buffers import CounterBank, PixelDecoder
from sparse_edge.gen.geometry import hardware_schedule
from sparse_edge.sim.golden import GoldenModel

from .conftest import make_config
from .linksim import SimPort, StreamDUT


def _run(dut, *benches, background=()):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for b in benches:
        sim.add_testbench(b)
    for b in background:
        sim.add_testbench(b, background=True)
    sim.run()


async def _put(ctx, stream, values, fields=None):
    for v in values:
        if fields:
            for name, x in zip(fields, v):
                ctx.set(getattr(stream.payload, name), x)
        else:
            ctx.set(stream.payload, v)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


def _get(stream, out, every=1):
    """Collect transfers; ``ready`` is high one clock in ``every``."""
    async def bench(ctx):
        n = 0
        ctx.set(stream.ready, 1)
        async for _c, _r, valid, ready, payload in ctx.tick().sample(stream.valid, stream.ready,
                                                                     stream.payload):
            if valid and ready:
                out.append(payload)
            n += 1
            ctx.set(stream.ready, n % every == 0)
    return bench


# -- stuffing -------------------------------------------------------------------------------
def test_enframer_and_deframer_invert_each_other():
    rng = random.Random(2)
    items = [(rng.choice([rng.randrange(256), P.SYNC, P.ESC]), 0) for _ in range(200)]
    items[::17] = [(0, 1)] * len(items[::17])
    enf, out = Enframer(), []

    async def feed(ctx):
        await _put(ctx, enf.i, items, ("data", "sync"))
        await ctx.tick().repeat(10)
    _run(enf, feed, background=[_get(enf.o, out, every=2)])
    want = b"".join(bytes([P.SYNC]) if s else P.stuff(bytes([d])) for d, s in items)
    assert bytes(out) == want

    de, back = Deframer(), []

    async def feed2(ctx):
        await _put(ctx, de.i, list(want))
        await ctx.tick().repeat(5)
    _run(de, feed2, background=[_get(de.o, back)])
    assert [(int(x.data) if not x.sync else 0, int(x.sync)) for x in back] == \
        [(d if not s else 0, s) for d, s in items]


# -- frames ---------------------------------------------------------------------------------
def _receive(frames_bytes, max_payload=64):
    """Feed stuffed bytes through Deframer + FrameReceiver; returns
    [(good, type, seq, ack, payload)]."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring

    class Rx(wiring.Component):
        def __init__(self):
            self.de, self.rcv = Deframer(), FrameReceiver(max_payload)
            super().__init__({"i": wiring.In(stream.Signature(8))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.de, m.submodules.rcv = self.de, self.rcv
            wiring.connect(m, self.de.o, self.rcv.i)
            wiring.connect(m, wiring.flipped(self.i), self.de.i)
            return m
    dut = Rx()
    out, payload = [], bytearray()

    async def feed(ctx):
        await _put(ctx, dut.i, list(frames_bytes))
        await ctx.tick().repeat(20)

    async def sink(ctx):
        rcv = dut.rcv
        ctx.set(rcv.o.ready, 1)
        ctx.set(rcv.done.ready, 1)
        async for _c, _r, ov, ob, dv, dg, hdr in ctx.tick().sample(
                rcv.o.valid, rcv.o.payload, rcv.done.valid, rcv.done.payload, rcv.header):
            if ov:
                payload.append(ob)
            if dv:
                out.append((dg, hdr.type, hdr.seq, hdr.ack, bytes(payload)))
                payload.clear()
    _run(dut, feed, background=[sink])
    return out


def test_receiver_checks_crc_length_and_sync():
    f1 = P.host_frame(P.SAMPLE, 1, 200, b"\x01\x02\x03\xfe")
    bad = bytearray(P.host_frame(P.POLL, 2, 5))
    bad[-1] ^= 4
    f3 = P.host_frame(P.READ, 3, 7, bytes(6))
    cut = P.host_frame(P.SAMPLE, 4, 0, b"abcdef")[:-4]
    long = P.host_frame(P.WRITE, 5, 0, bytes(100))        # over max_payload
    f6 = P.host_frame(P.HELLO, 6, 9)
    got = _receive(f1 + bytes(bad) + f3 + cut + long + b"\x00\x00" + f6)
    goods = [g[1:] for g in got if g[0]]
    assert goods == [(P.SAMPLE, 1, 200, b"\x01\x02\x03\xfe"), (P.READ, 3, 7, bytes(6)),
                     (P.HELLO, 6, 9, b"")]
    assert sum(1 for g in got if not g[0]) == 3           # bad CRC, cut short, too long


def test_sender_matches_the_protocol():
    snd = FrameSender()
    enf = Enframer()
    from amaranth.hdl import Module
    from amaranth.lib import wiring

    class Tx(wiring.Component):
        def __init__(self):
            super().__init__({})

        def elaborate(self, platform):
            m = Module()
            m.submodules.snd, m.submodules.enf = snd, enf
            wiring.connect(m, snd.o, enf.i)
            return m
    frames = [(P.REPORT, 3, bytes([0, 1, 0xFE, 0xFD, 7])), (P.INFO, 255, b""),
              (P.PARAMS, 0, bytes(range(40)))]
    out = []

    async def feed(ctx):
        for t, s, pl in frames:
            ctx.set(snd.cmd.payload.type, t)
            ctx.set(snd.cmd.payload.seq, s)
            ctx.set(snd.cmd.payload.length, len(pl))
            ctx.set(snd.cmd.valid, 1)
            await ctx.tick().until(snd.cmd.ready)
            ctx.set(snd.cmd.valid, 0)
            await _put(ctx, snd.i, list(pl))
            await ctx.tick().until(~snd.busy)
        await ctx.tick().repeat(5)
    _run(Tx(), feed, background=[_get(enf.o, out, every=3)])
    assert bytes(out) == b"".join(P.device_frame(t, s, pl) for t, s, pl in frames)


# -- the pixel decoder ------------------------------------------------------------------------
@pytest.mark.parametrize("sb", [5, 7, 8])
def test_decoder_matches_the_protocol_and_survives_fuzz(sb):
    inputs, lanes = 37, 4
    rng = random.Random(sb)
    cases = []
    for _ in range(6):                     # valid codes of random images
        img = np.array([rng.choice([0, 0, 0, rng.randrange(256)]) for _ in range(inputs)],
                       np.uint8)
        cases.append(P.encode_pixels(img, sb))
    for _ in range(10):                    # random and corrupt codes
        cases.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))))
    cases.append(P.encode_pixels(np.full(inputs, 255, np.uint8), sb) + b"\x01")   # too many
    dut = PixelDecoder(inputs, lanes, sb)
    results = []

    async def bench(ctx):
        for code in cases:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            ctx.set(dut.write, 1)
            pix = np.full(inputs, -1)
            for byte in code:
                ctx.set(dut.i.payload, byte)
                ctx.set(dut.i.valid, 1)
                while True:
                    if ctx.get(dut.w_en):
                        pix[ctx.get(dut.w_beat) * lanes + ctx.get(dut.w_lane)] = ctx.get(dut.w_data)
                    ready = ctx.get(dut.i.ready)
                    await ctx.tick()
                    if ready:
                        break
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.finish, 1)
            for _ in range(3 * inputs + 300):
                if ctx.get(dut.w_en):
                    pix[ctx.get(dut.w_beat) * lanes + ctx.get(dut.w_lane)] = ctx.get(dut.w_data)
                if ctx.get(dut.finished):
                    break
                await ctx.tick()
            results.append((ctx.get(dut.error), pix))
            ctx.set(dut.finish, 0)
    _run(dut, bench)
    for code, (err, pix) in zip(cases, results):
        try:
            want = P.decode_pixels(code, sb, inputs)
        except P.CodecError:
            assert err, code
            continue
        assert not err, code
        assert (pix == want).all(), code          # every pixel written exactly as the host means


# -- the counter bank -----------------------------------------------------------------------
def test_counter_bank_counts_every_event():
    n = 5
    dut = CounterBank(n, [True, True, False, False, True])
    rng = random.Random(4)
    clocks = 1500
    pattern = [[1] + [rng.random() < 0.7] + [rng.random() < 0.02] * 2 + [rng.random() < 0.5]
               for _ in range(clocks)]
    for t in range(clocks):
        pattern[t][3] = pattern[t][3] and t % 30 == 0         # "rare": spaced events
        pattern[t][2] = pattern[t][2] and t % 17 == 0
    read = {}

    async def bench(ctx):
        for t in range(clocks):
            ctx.set(dut.events, sum(int(b) << i for i, b in enumerate(pattern[t])))
            await ctx.tick()
        ctx.set(dut.events, 0)
        await ctx.tick().repeat(4 * n)            # a full round: everything written back
        for i in range(n):
            for half in (0, 1):
                while not ctx.get(dut.r_ready):      # the port is free in this clock
                    await ctx.tick()
                ctx.set(dut.r_en, 1)
                ctx.set(dut.r_index, i)
                ctx.set(dut.r_half, half)
                await ctx.tick()
                ctx.set(dut.r_en, 0)
                read[(i, half)] = ctx.get(dut.r_data)
    _run(dut, bench)
    for i in range(n):
        assert read[(i, 0)] | read[(i, 1)] << 16 == sum(int(p[i]) for p in pattern), i


# -- the whole engine ---------------------------------------------------------------------------
CFG = make_config((16, 8, 4), (2, 2), 8)


def _engine(schedule="fast", slots=2, **kw):
    dut = StreamDUT(CFG, schedule, slots=slots, pred_ring=8)
    return SimPort(dut, **kw)


def _exchange(port, frames, clocks=600):
    port.write(b"".join(frames))
    port.run(clocks)
    return P.FrameParser().feed(port.read())


def _sample(index, x, label=1, k=2, ack=0, seq=0):
    return P.host_frame(P.SAMPLE, seq, ack, P.sample_payload(index, label, k,
                                                              P.encode_pixels(x, 7)))


def _ask(port, frame, clocks=3000):
    """Send one frame, return the device's first answer."""
    port.write(frame)
    parser = P.FrameParser()
    for _ in range(clocks // 50):
        port.run(50)
        got = parser.feed(port.read())
        if got:
            return got[0]
    raise AssertionError("no answer")


def test_engine_answers_each_frame_with_its_result():
    port = _engine()
    x = np.arange(16, dtype=np.uint8) * 9
    info = _ask(port, P.host_frame(P.HELLO, 1, 0))
    assert info.type == P.INFO and P.parse_info(info.payload).digest == \
        P.network_digest(CFG, "fast")
    asked = [(_sample(0, x, seq=2), "accepted"), (_sample(0, x, seq=3), "duplicate"),
             (_sample(2, x, seq=4), "out of order"), (_sample(1, x, seq=5), "accepted"),
             (P.host_frame(P.SAMPLE, 6, 0, bytes([2, 1, 2, 0x7F, 0x80 + 20])), "bad pixels"),
             (P.host_frame(P.SAMPLE, 7, 0, bytes([2, 0])), "bad request"),
             (P.host_frame(0x55, 8, 0), "bad request"),
             (P.host_frame(P.POLL, 9, 0), "polled")]
    for frame, want in asked:
        f = _ask(port, frame)
        r = P.parse_report(f.payload)
        assert (f.type, f.seq, r.result_name) == (P.REPORT, frame[2], want)
    assert r.next_index == 2
    st = Board(port, CFG, timeout=0.5, retry=0.05, clock=lambda: port.seconds).status()
    assert (st["duplicates"], st["out_of_order"], st["bad_pixels"]) == (1, 1, 1)
    assert st["samples_accepted"] == 2 and st["frames_bad"] == 0


def test_engine_coalesces_reports_and_keeps_the_worst_result():
    port = _engine()
    x = np.arange(16, dtype=np.uint8) * 9
    # the INFO reply is still going out while the samples arrive
    got = _exchange(port, [P.host_frame(P.HELLO, 1, 0), _sample(0, x, seq=2),
                           _sample(0, x, seq=3), _sample(2, x, seq=4), _sample(1, x, seq=5)],
                    clocks=2500)
    reports = [P.parse_report(f.payload) for f in got if f.type == P.REPORT]
    assert got[0].type == P.INFO and got[-1].seq == 5
    assert reports[-1].next_index == 2
    assert any(r.result_name == "out of order" for r in reports)


def test_engine_drops_corrupt_frames_and_counts_them():
    port = _engine()
    x = np.arange(16, dtype=np.uint8) * 9
    bad = bytearray(_sample(0, x, seq=2))
    bad[9] ^= 0x01
    port.write(bytes(bad) + b"\x13\x37")
    port.run(500)
    assert P.FrameParser().feed(port.read()) == []          # no answer to a bad frame
    f = _ask(port, _sample(0, x, seq=3))
    assert P.parse_report(f.payload).result_name == "accepted"
    st = Board(port, CFG, timeout=0.5, retry=0.05, clock=lambda: port.seconds).status()
    assert st["frames_bad"] == 1 and st["samples_accepted"] == 1


def test_engine_refuses_parameter_access_while_samples_are_in_flight():
    port = _engine()              # 2 slots, a ring of 8 predictions
    x = np.full(16, 200, np.uint8)
    index, refused = 0, 0
    for seq in range(60):         # no acknowledgement: the ring fills, the network stops
        r = P.parse_report(_ask(port, _sample(index, x, seq=seq)).payload)
        index += r.result == P.R_ACCEPTED
        refused = refused + 1 if r.result == P.R_NO_CREDIT else 0
        if refused == 3:
            break
    assert refused == 3 and r.produced == 8       # the ring is full
    read = P.read_payload(0, 0, 0, 4)
    r = P.parse_report(_ask(port, P.host_frame(P.READ, 20, 0, read)).payload)
    assert r.result_name == "busy" and r.produced == 8
    bad = [P.read_payload(5, 0, 0, 4), P.read_payload(0, 0, 30, 4), P.read_payload(0, 2, 0, 1),
           P.read_payload(0, 0, 0, 0)]
    for i, pl in enumerate(bad):
        r = P.parse_report(_ask(port, P.host_frame(P.READ, 21 + i, 0, pl)).payload)
        assert r.result_name == "bad request", pl
    # acknowledge everything: the network drains the buffer and stalls for input
    for _ in range(3):
        r = P.parse_report(_ask(port, P.host_frame(P.POLL, 30, r.produced)).payload)
    f = _ask(port, P.host_frame(P.READ, 31, r.produced, read))
    assert f.type == P.PARAMS and f.seq == 31
    assert len(P.parse_params(f.payload, 10, 4)) == 4       # (trained weights by now)


@pytest.mark.parametrize("schedule", ["fast", "reference"])
def test_engine_trains_bit_exact_through_the_host_driver(schedule):
    port = _engine(schedule, slots=2, gap=3)
    b = Board(port, CFG, timeout=0.5, retry=0.05, clock=lambda: port.seconds)
    rng = np.random.default_rng(0)
    x = ((rng.random((10, 16)) < 0.5) * rng.integers(0, 256, (10, 16))).astype(np.uint8)
    y = rng.integers(0, 4, 10)
    gm = GoldenModel(CFG)
    sch = hardware_schedule(CFG, schedule)
    assert (b.train(x[:7], y[:7], 2) == gm.run(x[:7], y[:7], 2, sch).predictions).all()
    assert (b.evaluate(x[7:], y[7:]) == gm.run(x[7:], y[7:], NO_UPDATE, sch).predictions).all()
    for (w, bb), (gw, gb) in zip(b.read_parameters(), gm.parameters()):
        assert (w == gw).all() and (bb == gb).all()
    # loading parameters: the initial ones back, read them again
    b.write_parameters(initial_parameters(CFG))
    for (w, bb), (gw, gb) in zip(b.read_parameters(), initial_parameters(CFG)):
        assert (w == gw).all() and (bb == gb).all()
    st = b.status()
    assert st["samples_accepted"] == 10 + 2 * b.info.drain_samples
    assert st["network_clocks"] > 0 and st["uptime_clocks"] > st["network_clocks"]
