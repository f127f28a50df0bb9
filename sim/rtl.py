"""Drive the generated hardware in Amaranth's simulator, the way the host
driver drives a board: stream samples in, collect predictions, read the
weights and biases back through the read-out port."""

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from ..gen.config import NO_UPDATE
from ..gen.geometry import READOUT_LATENCY

__all__ = ["RtlResult", "beats_of", "simulate_amaranth"]


@dataclass
class RtlResult:
    predictions: np.ndarray      # per real sample
    outputs: np.ndarray | None
    clocks: np.ndarray           # enabled clock of each prediction (real samples)
    params: list                 # [(w, b), ...] read back after the run
    total_clocks: int            # wall clocks simulated (stalls included)


def beats_of(net, x, labels, ks):
    """Input beats (dicts) for padded pixels ``x``, labels and per-sample
    learning-rate exponents (``NO_UPDATE`` = evaluate only)."""
    z1 = net.cfg.z[0]
    nb = net.beats_per_sample
    out = []
    for n in range(len(x)):
        k = int(ks[n])
        for r in range(nb):
            out.append({"pixels": [int(v) for v in x[n, r * z1:(r + 1) * z1]],
                        "label": int(labels[n]), "lr": 0 if k == NO_UPDATE else k,
                        "update": 0 if k == NO_UPDATE else 1})
    return out


def simulate_amaranth(net, x, labels, ks, stall_every=0, out_stall_every=0, vcd=None,
                      readout=True, load=None):
    """Run ``len(x)`` samples plus the drain through ``net`` (a
    :class:`~sparse_edge.hdl.network.Network`) in Amaranth's simulator.

    ``readout=False`` skips reading the parameters back; ``load`` (a list of
    ``(w, b)`` codes per junction) is written through the load port first.
    ``stall_every``: withhold the input for one clock before every
    ``stall_every``-th beat (0 = never); ``out_stall_every``: likewise refuse
    the output.  Returns an :class:`RtlResult`.
    """
    cfg = net.cfg
    N = len(x)
    drain = net.drain_samples()
    xs = np.concatenate([x, np.zeros((drain, x.shape[1]), dtype=np.uint8)])
    ls = np.concatenate([labels, np.zeros(drain, dtype=np.int64)])
    kk = np.concatenate([np.broadcast_to(ks, (N,)), np.full(drain, NO_UPDATE)])
    beats = beats_of(net, xs, ls, kk)
    preds, clocks, outs = [], [], []
    params = []
    state = {"clocks": 0}

    sim = Simulator(net)
    sim.add_clock(1e-6)

    async def producer(ctx):
        for j, (w, b) in enumerate(load or []):
            z, q = cfg.z[j], net.geometry.q[j + 1]
            ctx.set(net.ro_junction, j)
            ctx.set(net.ld_en, 1)
            for bias, vals, lanes in ((0, w, z), (1, b, q)):
                ctx.set(net.ro_bias, bias)
                for e, v in enumerate(vals):
                    ctx.set(net.ro_row, e // lanes)
                    ctx.set(net.ro_lane, e % lanes)
                    ctx.set(net.ld_data, int(v))
                    await ctx.tick()
            ctx.set(net.ld_en, 0)
        state["loaded"] = True
        for i, beat in enumerate(beats):
            if stall_every and i % stall_every == stall_every - 1:
                ctx.set(net.i.valid, 0)
                await ctx.tick()
            ctx.set(net.i.payload, net.beat_layout.const(beat))
            ctx.set(net.i.valid, 1)
            await ctx.tick().until(net.i.ready)
        ctx.set(net.i.valid, 0)
        state["fed"] = True

    async def consumer(ctx):
        got = 0
        while load and not state.get("loaded"):
            await ctx.tick()
        while got < N:
            if out_stall_every and got % out_stall_every == out_stall_every - 1:
                ctx.set(net.o.ready, 0)
                await ctx.tick()
            ctx.set(net.o.ready, 1)
            payload, = await ctx.tick().sample(net.o.payload).until(net.o.valid)
            preds.append(int(payload.prediction))
            if net.with_outputs:
                outs.append([int(v) for v in payload.outputs])
            clocks.append(int(payload.clock))
            got += 1
        # drain: the remaining (dummy) predictions are accepted and dropped;
        # once every beat is in, the network stalls on the missing input
        while not state.get("fed"):
            await ctx.tick()
        for _ in range(2 * net.clocks_per_sample + 8):
            await ctx.tick()
        ctx.set(net.o.ready, 0)
        state["clocks"] = ctx.get(net.clocks)
        # read back every weight and bias
        for j in range(cfg.junctions if readout else 0):
            z = cfg.z[j]
            w = np.zeros(cfg.edges[j], dtype=np.int32)
            ctx.set(net.ro_junction, j)
            ctx.set(net.ro_bias, 0)
            for e in range(cfg.edges[j]):
                ctx.set(net.ro_row, e // z)
                ctx.set(net.ro_lane, e % z)
                for _ in range(READOUT_LATENCY):
                    await ctx.tick()
                w[e] = ctx.get(net.ro_data)
            g = net.geometry
            q = g.q[j + 1]
            b = np.zeros(cfg.layers[j + 1], dtype=np.int32)
            ctx.set(net.ro_bias, 1)
            for r in range(cfg.layers[j + 1]):
                ctx.set(net.ro_row, r // q)
                ctx.set(net.ro_lane, r % q)
                for _ in range(READOUT_LATENCY):
                    await ctx.tick()
                b[r] = ctx.get(net.ro_data)
            params.append((w, b))

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return RtlResult(np.array(preds), np.array(outs) if net.with_outputs else None,
                     np.array(clocks), params, state["clocks"])
