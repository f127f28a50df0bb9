"""The training accelerator: junctions with FF/BP/UP edge lanes, banked
memories, interleaved addressing and junction pipelining (SPEC sections 5-6),
composed from the blocks of this package.

Where to start reading: :class:`Network` (the ports and the stall/enable
structure), then :class:`Core` (which memories exist and who reads and writes
them), then :class:`~.junction.Junction` (one junction's blocks).  The numbers
(pipeline stages, write latency, schedule, memory sizes and copies) are in
``gen/geometry.py``; ``docs/hardware.md`` has the block diagram.

Timing model: all junctions share one phase counter ``c`` (``0 ..
cycle_clocks-1``) and one junction-cycle counter ``t``
(:class:`~.sequencer.Sequencer`); a junction issues the ``z`` edges of clock
``c`` (``c < C``) at phase ``c``, and every later pipeline stage carries its
own tags (sample slot, address, valid, learning rate), so a stage that spills
into the next junction cycle still writes the right copy.  Everything a
junction cycle writes is readable ``C + WRITE_LATENCY`` clocks after the cycle
starts.  The ``reference`` schedule stretches the junction cycle to ``C +
WRITE_LATENCY`` clocks with the reference offsets ``F[i] = i``, ``U[i] =
2L-1-i``; the ``fast`` schedule keeps exactly ``C`` clocks per sample and
leaves ``g = 1 + ceil(WRITE_LATENCY / C)`` junction cycles between a producer
and its consumer.
"""

from amaranth.hdl import ClockDomain, ClockSignal, EnableInserter, Module, ResetSignal, signed
from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect

from ..gen.geometry import (CLOCK_BITS, LR_BITS, WRITE_LATENCY, NetworkGeometry, bits,
                            hardware_schedule)
from .banks import LayerBanks, ReadoutPort
from .junction import Junction
from .lane import EdgeLane
from .neuron import NeuronUnit
from .pipeline import as_shape
from .sequencer import InputLoader, Sequencer
from .stall import StallControl

# ``hardware_schedule``, ``NetworkGeometry`` and ``WRITE_LATENCY`` are defined
# in gen/geometry.py (plain numbers, no Amaranth) and re-exported here, where
# users and tests have always imported them from.
__all__ = ["WRITE_LATENCY", "hardware_schedule", "Network", "NetworkGeometry", "Core",
           "beat_layout", "result_layout", "network_variant"]


def beat_layout(cfg):
    """Layout of one input beat: ``z[1]`` pixels, the label, the learning-rate
    exponent ``lr`` and the ``update`` flag (the last three used from beat 0)."""
    return data.StructLayout({
        "pixels": data.ArrayLayout(unsigned(8), cfg.z[0]),
        "label": unsigned(bits(max(cfg.classes, 2))),
        "lr": unsigned(LR_BITS),
        "update": unsigned(1),
    })


def result_layout(cfg, outputs=False):
    """Layout of one result: ``prediction``, ``clock`` (and the output
    activations with ``outputs``)."""
    fields = {"prediction": unsigned(bits(max(cfg.classes, 2))),
              "clock": unsigned(CLOCK_BITS)}
    if outputs:
        fields["outputs"] = data.ArrayLayout(signed(cfg.fmt.width), cfg.layers[-1])
    return data.StructLayout(fields)


class Core(wiring.Component):
    """Everything that advances with the network's clock enable: the time
    base, the input load, every layer's banks and the junctions.

    Memories of layer ``h`` (see ``docs/hardware.md``): activations (read by
    junction ``h+1``'s FF and UP, written by junction ``h`` or the input
    load), and for hidden layers the BP accumulators (written by junction
    ``h+1``, read by junction ``h``) and the derivatives; the output layer
    keeps its deltas ``a - y``.

    Parameters
    ----------
    geo : NetworkGeometry
    outputs, checks, lane, neuron
        As for :class:`Network`.

    Members
    -------
    pixels, label, lr, update : In
        The current input beat.
    need_input : Out(1)
        A beat is consumed in this clock (if the core runs).
    need_next : Out(1)
        ``need_input`` of the next enabled clock.
    pred_valid : Out(1); pred : Out; outputs : Out (with ``outputs``)
        A prediction is ready (one clock).
    clocks : Out(CLOCK_BITS)
        Enabled clocks so far.
    ce, ro_mode_next, resumed_next : In(1)
        Clock enable and stall state from the :class:`~.stall.StallControl`.
    ro_junction, ro_bias, ro_row, ro_lane, ld_en, ld_data : In; ro_data : Out
        The read-out and load port (:class:`~.banks.ReadoutPort`).
    """

    def __init__(self, geo, outputs=False, checks=False, lane=EdgeLane, neuron=NeuronUnit):
        self.geo, self.with_outputs, self.checks = geo, outputs, checks
        self.lane, self.neuron = lane, neuron
        cfg = geo.cfg
        w = signed(cfg.fmt.width)
        cls = range(max(cfg.classes, 2))
        members = {
            "pixels": In(data.ArrayLayout(unsigned(8), cfg.z[0])), "label": In(cls),
            "lr": In(LR_BITS), "update": In(1),
            "need_input": Out(1), "need_next": Out(1), "pred_valid": Out(1), "pred": Out(cls),
            "clocks": Out(CLOCK_BITS),
            "ce": In(1), "ro_mode_next": In(1, init=1), "resumed_next": In(1),
            "ro_junction": In(range(geo.ro_junctions)), "ro_bias": In(1),
            "ro_row": In(range(geo.ro_rows)), "ro_lane": In(range(geo.ro_lanes)),
            "ld_en": In(1), "ld_data": In(w), "ro_data": Out(w),
        }
        if outputs:
            members["outputs"] = Out(data.ArrayLayout(w, cfg.layers[-1]))
        super().__init__(members)

    def layer_banks(self):
        """The banks of every layer, by name: ``act{h}``, ``acc{h}``, ``da{h}``,
        ``dout``."""
        geo, cfg = self.geo, self.geo.cfg
        L = cfg.L
        out = {}
        for h in range(L - 1):
            out[f"act{h}"] = LayerBanks(as_shape(geo.act_shape[h]), geo.z[h + 1], geo.R[h + 1],
                                        geo.K_act[h], reads=("ff", "up"))
        for h in range(1, L - 1):
            out[f"acc{h}"] = LayerBanks(signed(geo.acc_width[h]), geo.z[h + 1], geo.R[h + 1],
                                        geo.K_acc[h], reads=("rmw", "nat"),
                                        transparent=("rmw",))
            out[f"da{h}"] = LayerBanks(as_shape(geo.da_shape), geo.q[h], geo.NR[h],
                                       geo.K_da[h])
        out["dout"] = LayerBanks(signed(cfg.fmt.width), geo.q[L - 1], geo.NR[L - 1],
                                 geo.K_da[L - 1])
        return out

    def elaborate(self, platform):
        m = Module()
        geo, cfg = self.geo, self.geo.cfg
        J = cfg.junctions
        m.submodules.sequencer = seq = Sequencer(geo)
        banks = self.layer_banks()
        for name, b in banks.items():
            m.submodules[name] = b
        m.submodules.input = load = InputLoader(geo, banks["act0"].wr[0].signature)
        m.submodules.readout = ro = ReadoutPort(J, cfg.fmt.width, geo.ro_rows, geo.ro_lanes,
                                                geo.ro_junctions)
        junctions = [Junction(geo, j, self.with_outputs, self.checks, self.lane, self.neuron)
                     for j in range(1, J + 1)]
        for j, jn in enumerate(junctions, start=1):
            m.submodules[f"junction{j}"] = jn
            for role, (layer, port) in self._roles(j).items():
                for mine, theirs in zip(getattr(banks[layer], port), getattr(jn, role)):
                    connect(m, mine, theirs)
            m.d.comb += [ro.w[j - 1].eq(jn.ro_w), ro.b[j - 1].eq(jn.ro_b)]
        connect(m, seq.time, *[jn.time for jn in junctions])
        connect(m, ro.access, *[jn.access for jn in junctions])
        for theirs, mine in zip(banks["act0"].wr, load.wr):
            connect(m, theirs, mine)
        out = junctions[-1]
        m.d.comb += [
            seq.label.eq(self.label), seq.lr.eq(self.lr), seq.update.eq(self.update),
            load.phase.eq(seq.time.phase), load.cycle_end.eq(seq.time.cycle_end),
            load.pixels.eq(self.pixels),
            self.need_input.eq(seq.need_input), self.need_next.eq(seq.need_next),
            self.clocks.eq(seq.clocks),
            self.pred_valid.eq(out.pred_valid), self.pred.eq(out.pred),
            self.ro_data.eq(ro.data),
        ]
        for name in ("ce", "ro_mode_next", "resumed_next", "ro_junction", "ro_bias", "ro_row",
                     "ro_lane", "ld_en", "ld_data"):
            m.d.comb += getattr(ro, name).eq(getattr(self, name))
        if self.with_outputs:
            m.d.comb += self.outputs.eq(out.act)
        return m

    def _roles(self, j):
        """``{junction member: (layer banks, bank member)}`` of junction ``j``."""
        L = self.geo.cfg.L
        roles = {"left_ff": (f"act{j - 1}", "ff"), "left_up": (f"act{j - 1}", "up")}
        if j > 1:
            roles.update(acc_rmw=(f"acc{j - 1}", "rmw"), acc_wr=(f"acc{j - 1}", "wr"))
        if j < L - 1:
            roles.update(act_wr=(f"act{j}", "wr"), acc_nat=(f"acc{j}", "nat"),
                         da_wr=(f"da{j}", "wr"), da_rd=(f"da{j}", "rd"))
        else:
            roles.update(dout_wr=("dout", "wr"), dout_rd=("dout", "rd"))
        return roles


class Network(wiring.Component):
    """The on-chip training accelerator for one configured network.

    Parameters
    ----------
    cfg : NetworkConfig
    schedule : "fast" or "reference"
    outputs : bool
        Also return the output activations (codes) of every sample
        (``result.outputs``).
    checks : bool
        Add simulation-time assertions on the address generators (for tests;
        leave off for synthesis).
    enable_buffer : callable, optional
        ``enable_buffer(m, ce) -> Signal``: distributes the global clock
        enable, which drives every register of the datapath.  The synthesis
        flow passes a vendor global buffer here (``boards/ecp5.py``: the
        enable rides the clock network instead of fabric routing); ``None``
        (the default, and what simulation uses) connects it directly.
    lane, neuron : callable, optional
        Make the edge lanes and neuron units (default :class:`~.lane.EdgeLane`,
        :class:`~.neuron.NeuronUnit`), called with their parameters; a test
        passes a deliberately broken part here to show the equivalence checks
        catch it.

    Members
    -------
    i : In(stream.Signature(beat))
        Input beats, ``beats_per_sample`` per sample: beat ``r`` carries pixels
        ``r*z1 .. r*z1+z1-1`` (row ``r`` of every input bank); ``label``,
        ``lr`` (learning-rate exponent) and ``update`` (0 = evaluate only) are
        taken from beat 0.  A beat waits one clock in an input register
        before the core can take it.  When no beat is there while one is
        needed, the whole network stalls (global clock enable, itself a
        register), so the schedule in junction cycles never changes; after a
        stall it resumes two clocks after it could (they re-read the weight
        and bias banks, whose read ports serve the read-out during the stall).
    o : Out(stream.Signature(result))
        One ``prediction`` per sample, in order (plus ``clock``, the enabled
        clock it was formed in, and with ``outputs=True`` the output
        activations), from a two-entry buffer.  When it holds two results
        the network stalls.
    ro_junction, ro_bias, ro_row, ro_lane : In
        Read-out address: weight ``w[row*z + lane]`` (or bias bank ``lane``,
        row ``row``) of junction ``ro_junction + 1``; ``ro_data``
        ``READOUT_LATENCY`` (2) clocks later, pipelined (a new address every
        clock).
        Valid while the network is stalled (waiting for input with
        ``i.valid`` low, or for ``o.ready``), e.g. before the first sample or
        after the last: the read-out shares the datapath's weight and bias read
        ports (one read port per bank instead of two), which re-read their
        interrupted address before the network resumes.
    ld_en, ld_data : In
        Load port: while ``ld_en`` is high, ``ld_data`` is written to the
        weight or bias at the read-out address, one clock later (from
        registered address and data; a read-out of that address started in
        the next clock already sees it).  Write the network only while it is stalled,
        e.g. before the first sample or between runs.
    clocks : Out(48)
        Enabled clocks so far (the network's own time base).

    Timing: ``schedule.clocks_per_cycle`` clocks per sample in steady state;
    the prediction of sample ``n`` enters the output buffer in enabled clock
    ``(n + F[J]) * clocks_per_cycle + C + WRITE_LATENCY`` (its ``clock`` field).
    """

    def __init__(self, cfg, schedule="fast", outputs=False, checks=False, enable_buffer=None,
                 lane=EdgeLane, neuron=NeuronUnit):
        self.cfg = cfg
        self.enable_buffer = enable_buffer
        self.with_outputs = outputs
        self.checks = checks
        self.lane, self.neuron = lane, neuron
        self.schedule = hardware_schedule(cfg, schedule)
        self.geometry = geo = NetworkGeometry(cfg, self.schedule)
        self.beats_per_sample = geo.beats_per_sample
        self.beat_layout = beat_layout(cfg)
        self.result_layout = result_layout(cfg, outputs)
        super().__init__({
            "i": In(stream.Signature(self.beat_layout)),
            "o": Out(stream.Signature(self.result_layout)),
            "ro_junction": In(range(geo.ro_junctions)),
            "ro_bias": In(1),
            "ro_row": In(range(geo.ro_rows)),
            "ro_lane": In(range(geo.ro_lanes)),
            "ro_data": Out(signed(cfg.fmt.width)),
            "ld_en": In(1),
            "ld_data": In(signed(cfg.fmt.width)),
            "clocks": Out(CLOCK_BITS),
        })

    @property
    def clocks_per_sample(self):
        return self.geometry.clocks_per_sample

    def prediction_clock(self, n):
        """The ``clock`` field of sample ``n``'s result: the enabled clock
        (counted from 0) in which its prediction enters the output buffer."""
        return self.geometry.prediction_clock(n)

    def drain_samples(self):
        """No-update samples to feed after the last real one so that every
        update has landed (the golden model's drain)."""
        return self.geometry.drain_samples()

    @property
    def variant(self):
        """What besides the config and schedule shapes this network's hardware
        (for build caches): :func:`network_variant` of its options."""
        return network_variant(self.with_outputs, self.checks, self.lane, self.neuron)

    def elaborate(self, platform):
        m = Module()
        # the weight and bias banks run in an ungated copy of the clock, so
        # the load port can write while the network is stalled
        m.domains.ro = cd_ro = ClockDomain("ro", local=True)
        m.d.comb += [cd_ro.clk.eq(ClockSignal("sync")), cd_ro.rst.eq(ResetSignal("sync"))]
        m.submodules.stall = st = StallControl(self.beat_layout, self.result_layout)
        core = Core(self.geometry, self.with_outputs, self.checks, self.lane, self.neuron)
        # the clock enable reaches every register and memory port of the core:
        # on an FPGA it is worth a global buffer (see ``enable_buffer``)
        ce = st.ce if self.enable_buffer is None else self.enable_buffer(m, st.ce)
        m.submodules.core = EnableInserter({"sync": ce})(core)
        m.d.comb += [
            st.need_input.eq(core.need_input), st.need_next.eq(core.need_next),
            st.i_valid.eq(self.i.valid), st.i_payload.eq(self.i.payload),
            self.i.ready.eq(st.i_ready), st.o_ready.eq(self.o.ready),
            self.o.valid.eq(st.o_valid), self.o.payload.eq(st.result),
            st.pred_valid.eq(core.pred_valid), st.pred.eq(core.pred),
            st.clocks.eq(core.clocks), self.clocks.eq(core.clocks),
            core.ce.eq(ce), core.ro_mode_next.eq(st.ro_mode_next),
            core.resumed_next.eq(st.resumed_next),
            core.pixels.eq(st.beat.pixels), core.label.eq(st.beat.label),
            core.lr.eq(st.beat.lr), core.update.eq(st.beat.update),
            core.ro_junction.eq(self.ro_junction), core.ro_bias.eq(self.ro_bias),
            core.ro_row.eq(self.ro_row), core.ro_lane.eq(self.ro_lane),
            core.ld_en.eq(self.ld_en), core.ld_data.eq(self.ld_data),
            self.ro_data.eq(core.ro_data),
        ]
        if self.with_outputs:
            m.d.comb += st.outputs.eq(core.outputs)
        return m


def network_variant(outputs=False, checks=False, lane=EdgeLane, neuron=NeuronUnit):
    """The options of a :class:`Network` that shape its hardware besides the
    config and schedule, as a tuple of strings (a key for build caches)."""
    def name(obj):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    return (str(bool(outputs)), str(bool(checks)), name(lane), name(neuron))
