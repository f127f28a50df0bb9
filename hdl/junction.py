"""A junction: ``z`` edge lanes doing FF, BP and UP of three samples at once,
composed from the blocks of this package (no logic of its own)::

    Interleaver --rows--> JunctionControl --addresses, stage by stage--> everything
    left layer banks --ff/up reads--> Rotator --> EdgeLane x z --pf--> NeuronUnit
        NeuronUnit --a, a'--> right layer banks   (output layer: OutputUnit, a - y)
        EdgeLane --pb--> BPAccumulate --> left layer's BP accumulator banks
    WeightBanks --w--> EdgeLane --w_new--> WeightBanks       (one read per edge)
    right layer's acc + a' (or a - y) --> DeltaUnit --d, db--> EdgeLane
        DeltaUnit --b_new--> WeightBanks (biases)

The names of the blocks' members are those of ``docs/hardware.md``.
"""

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out, connect, flipped

from ..gen.config import initial_parameters
from ..gen.geometry import bits
from .banks import AccessSignature, WeightBanks
from .interleaver import Interleaver, Rotator
from .lane import BPAccumulate, EdgeLane
from .neuron import DeltaUnit, NeuronUnit, OutputUnit
from .pipeline import as_shape
from .sequencer import JunctionControl, TimeSignature

__all__ = ["Junction", "bank_signatures"]


def bank_signatures(geo, j):
    """The port signatures of the layer banks junction ``j`` uses, by role
    (as the banks see them: the junction's members are their flips)."""
    cfg = geo.cfg
    L = cfg.L
    out = {}

    def rd(depth, shape):
        return ReadPort.Signature(addr_width=bits(depth), shape=shape)

    def wr(depth, shape):
        return WritePort.Signature(addr_width=bits(depth), shape=shape)

    act = as_shape(geo.act_shape[j - 1])
    depth = geo.K_act[j - 1] * geo.R[j]
    out["left_ff"] = out["left_up"] = rd(depth, act)
    if j > 1:
        acc = signed(geo.acc_width[j - 1])
        depth = geo.K_acc[j - 1] * geo.R[j]
        out["acc_rmw"], out["acc_wr"] = rd(depth, acc), wr(depth, acc)
    if j < L - 1:
        depth = geo.K_act[j] * geo.R[j + 1]
        out["act_wr"] = wr(depth, as_shape(geo.act_shape[j]))
        acc = signed(geo.acc_width[j])
        out["acc_nat"] = rd(geo.K_acc[j] * geo.R[j + 1], acc)
        depth = geo.K_da[j] * geo.NR[j]
        out["da_wr"], out["da_rd"] = wr(depth, as_shape(geo.da_shape)), \
            rd(depth, as_shape(geo.da_shape))
    else:
        depth = geo.K_da[j] * geo.NR[j]
        w = signed(cfg.fmt.width)
        out["dout_wr"], out["dout_rd"] = wr(depth, w), rd(depth, w)
    return out


class Junction(wiring.Component):
    """Edge processor of junction ``j`` (SPEC sections 4-6).

    Parameters
    ----------
    geo : NetworkGeometry
    j : int
        Junction, ``1 .. J``.
    outputs : bool
        Output junction: also give the output activations.
    checks : bool
        Simulation-time assertions on the address generator.
    lane : callable
        Makes the edge lanes: ``lane(fmt, act_shape, db_shape, bp, where=(j, k))``
        (default :class:`~.lane.EdgeLane`).
    neuron : callable
        Makes the neuron unit, called like :class:`~.neuron.NeuronUnit`.

    Members
    -------
    time : In(TimeSignature(geo))
        From the network's :class:`~.sequencer.Sequencer`.
    access : In(AccessSignature(w, ...))
        Clock enable, stall state, read-out and load address (see
        :class:`~.banks.WeightBanks`).
    ro_w, ro_b : Out(signed(w))
        The junction's weight and bias at the read-out address.
    left_ff, left_up, acc_rmw, acc_wr, act_wr, acc_nat, da_wr, da_rd, dout_wr, dout_rd
        Flipped port signatures of the layer banks it reads and writes
        (:func:`bank_signatures`), ``.array(banks)``.
    pred_valid, pred, act : Out (output junction)
        From the :class:`~.neuron.OutputUnit`.

    Latency: an edge issued in clock ``c`` of a junction cycle is written
    back ``WRITE_LATENCY`` clocks later (stage ``S_WR``).
    """

    def __init__(self, geo, j, outputs=False, checks=False, lane=EdgeLane, neuron=NeuronUnit):
        cfg = geo.cfg
        if not 1 <= j <= cfg.junctions:
            raise ValueError(f"Junction: junction {j} is not in 1..{cfg.junctions}")
        self.geo, self.j, self.checks = geo, j, checks
        self.first, self.last = j == 1, j == cfg.junctions
        self.make_lane, self.make_neuron = lane, neuron
        self.pattern = cfg.patterns()[j - 1]
        self.dithered = any(int(d) for d in self.pattern.dither)
        z, q, w = geo.z[j], geo.q[j], signed(cfg.fmt.width)
        cls = range(max(cfg.classes, 2))
        members = {
            "time": In(TimeSignature(geo)),
            "access": In(AccessSignature(cfg.fmt.width, geo.ro_rows, geo.ro_lanes,
                                         geo.ro_junctions)),
            "ro_w": Out(w), "ro_b": Out(w),
        }
        counts = {"left_ff": z, "left_up": z, "acc_rmw": z, "acc_wr": z, "da_wr": q,
                  "da_rd": q, "dout_wr": q, "dout_rd": q}
        for role, sig in bank_signatures(geo, j).items():
            n = counts.get(role, geo.z[j + 1] if not self.last else 0)
            members[role] = In(sig).array(n)
        if self.last:
            members.update({"pred_valid": Out(1), "pred": Out(cls)})
            if outputs:
                members["act"] = Out(data.ArrayLayout(w, cfg.layers[-1]))
        self.outputs = outputs
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        geo, j = self.geo, self.j
        m.submodules.interleaver = ilv = Interleaver(self.pattern, geo.clocks_per_sample,
                                                     self.checks)
        m.submodules.control = ctl = JunctionControl(geo, j, self.dithered)
        m.d.comb += [ilv.phase.eq(self.time.phase), ilv.active.eq(self.time.active)]
        connect(m, flipped(self.time), ctl.time)
        connect(m, ilv.rows, ctl.rows)
        banks = self._weights(m)
        lanes = self._lanes(m, ctl, banks)
        self._neurons(m, ctl, banks, lanes)
        if not self.first:
            self._bp(m, ctl, lanes)
        return m

    def _weights(self, m):
        """The weight and bias banks, with the read-out and load."""
        geo, j, cfg = self.geo, self.j, self.geo.cfg
        wts, bias = initial_parameters(cfg)[j - 1]
        m.submodules.weights = banks = WeightBanks(
            wts.reshape(cfg.cycle, geo.z[j]), bias.reshape(geo.NR[j], geo.q[j]),
            cfg.fmt.width, j, geo.ro_rows, geo.ro_lanes, geo.ro_junctions)
        connect(m, flipped(self.access), banks.access)
        m.d.comb += [self.ro_w.eq(banks.ro_w), self.ro_b.eq(banks.ro_b)]
        return banks

    def _lanes(self, m, ctl, banks):
        """The left activations, rotated to lanes, into the edge lanes; the
        weight read and write-back."""
        geo, j, cfg = self.geo, self.j, self.geo.cfg
        z = geo.z[j]
        act = as_shape(geo.act_shape[j - 1])
        left = {}
        for role, addr in (("ff", ctl.left_addr_ff), ("up", ctl.left_addr_up)):
            ports = getattr(self, f"left_{role}")
            for b in range(z):
                m.d.comb += ports[b].addr.eq(addr[b])
            if self.dithered:
                m.submodules[f"rot_{role}"] = rot = Rotator(act, z)
                m.d.comb += rot.amount.eq(ctl.dither_sel)
                for b in range(z):
                    m.d.comb += rot.i[b].eq(ports[b].data)
                left[role] = list(rot.o)
            else:
                left[role] = [p.data for p in ports]
        lanes = []
        m.d.comb += [banks.w_addr_next.eq(ctl.w_addr_next), banks.w_we_next.eq(ctl.w_we_next)]
        for k in range(z):
            lane = self.make_lane(cfg.fmt, act, signed(cfg.fmt.width + 1), not self.first,
                                  where=(j, k))
            m.submodules[f"lane{k}"] = lane
            m.d.comb += [lane.a_ff.eq(left["ff"][k]), lane.a_up.eq(left["up"][k]),
                         lane.w.eq(banks.w_data[k]), banks.w_wdata[k].eq(lane.w_new)]
            lanes.append(lane)
        return lanes

    def _neurons(self, m, ctl, banks, lanes):
        """The right neurons: forward finish, backward finish and bias update,
        writes into the right layer's banks (or the output unit)."""
        geo, j, cfg = self.geo, self.j, self.geo.cfg
        fmt, q = cfg.fmt, geo.q[j]
        fi = cfg.fanin[j - 1]
        copies = geo.operand_copies[j]
        m.submodules.neurons = nu = self.make_neuron(
            fmt, cfg.activation_table(), q, geo.lanes[j], geo.span[j], fi, not self.last)
        if self.last:
            m.submodules.deltas = du = DeltaUnit(fmt, q, copies=copies)
            for i in range(q):
                m.d.comb += [self.dout_rd[i].addr.eq(ctl.dout_rd_addr),
                             du.delta[i].eq(self.dout_rd[i].data)]
        else:
            zr = geo.z[j + 1]
            m.submodules.deltas = du = DeltaUnit(fmt, q, zr, geo.acc_width[j],
                                                 as_shape(geo.da_shape), copies)
            m.d.comb += du.blk.eq(ctl.blk_sel)
            for bb in range(zr):
                m.d.comb += [self.acc_nat[bb].addr.eq(ctl.acc_nat_addr),
                             du.acc[bb].eq(self.acc_nat[bb].data)]
            for i in range(q):
                m.d.comb += [self.da_rd[i].addr.eq(ctl.da_rd_addr),
                             du.da[i].eq(self.da_rd[i].data)]
        m.d.comb += [du.k.eq(ctl.k_db), banks.b_addr_next.eq(ctl.b_addr_next),
                     banks.b_we_next.eq(ctl.b_we_next),
                     nu.first_span.eq(ctl.first_span), nu.accumulate.eq(ctl.accumulate)]
        for i in range(q):
            m.d.comb += [du.b[i].eq(banks.b_data[i]), banks.b_wdata[i].eq(du.b_new[i]),
                         nu.b[i].eq(banks.b_data[i])]
        for k, lane in enumerate(lanes):
            i, c = geo.operand_copy(j, k)              # its right neuron, the operand copy
            m.d.comb += [lane.db.eq(du.db[du.copy_index(i, c)]),
                         lane.d.eq(du.d[du.copy_index(i, c)]),
                         nu.pf[k].eq(lane.pf)]
        if self.last:
            self._output(m, ctl, nu)
        else:
            self._right_writes(m, ctl, nu)

    def _right_writes(self, m, ctl, nu):
        """Finished neurons of a hidden right layer into its banks: ``a`` into
        the activation banks (bank ``bb`` holds neuron ``bb % q`` of the
        clock's row), ``a'`` into the derivative banks."""
        geo, j = self.geo, self.j
        q = geo.q[j]
        for bb in range(geo.z[j + 1]):
            m.d.comb += [self.act_wr[bb].addr.eq(ctl.act_wr_addr[bb]),
                         self.act_wr[bb].data.eq(nu.a[bb % q]),
                         self.act_wr[bb].en.eq(ctl.act_wr_en[bb])]
        for i in range(q):
            m.d.comb += [self.da_wr[i].addr.eq(ctl.da_wr_addr),
                         self.da_wr[i].data.eq(nu.da[i]), self.da_wr[i].en.eq(ctl.wr_ok)]

    def _output(self, m, ctl, nu):
        """The output layer: deltas into the output-delta banks, the prediction."""
        geo, j, cfg = self.geo, self.j, self.geo.cfg
        q = geo.q[j]
        m.submodules.output = out = OutputUnit(cfg.fmt, q, geo.NR[j], cfg.classes,
                                               cfg.layers[-1] if self.outputs else None)
        m.d.comb += [out.valid.eq(ctl.wr_ok), out.row.eq(ctl.row_wr),
                     out.label.eq(ctl.label_wr),
                     self.pred_valid.eq(out.pred_valid), self.pred.eq(out.pred)]
        if self.outputs:
            m.d.comb += self.act.eq(out.act)
        for i in range(q):
            m.d.comb += [out.s[i].eq(nu.s[i]), out.a[i].eq(nu.a[i]),
                         self.dout_wr[i].addr.eq(ctl.dout_wr_addr),
                         self.dout_wr[i].data.eq(out.delta[i]),
                         self.dout_wr[i].en.eq(ctl.wr_ok)]

    def _bp(self, m, ctl, lanes):
        """BP products into the left layer's accumulator banks."""
        geo, j, cfg = self.geo, self.j, self.geo.cfg
        z = geo.z[j]
        m.submodules.bp_accumulate = acc = BPAccumulate(cfg.fmt.width, geo.acc_width[j - 1], z,
                                                        self.dithered)
        m.d.comb += [acc.first.eq(ctl.acc_first)]
        if self.dithered:
            m.d.comb += acc.undither.eq(ctl.undither_tree)
        for b in range(z):
            m.d.comb += [acc.pb[b].eq(lanes[b].pb),
                         self.acc_rmw[b].addr.eq(ctl.acc_rd_addr[b]),
                         acc.old[b].eq(self.acc_rmw[b].data),
                         self.acc_wr[b].addr.eq(ctl.acc_wr_addr[b]),
                         self.acc_wr[b].data.eq(acc.new[b]),
                         self.acc_wr[b].en.eq(ctl.acc_we)]
