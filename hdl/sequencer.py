"""Control: the network's time base, the input load, and each junction's
addresses and pipeline tags.

* :class:`Sequencer` counts clocks within a junction cycle (the phase ``c``)
  and junction cycles, and keeps each sample's label, learning rate and
  update flag for as long as a junction still needs them.
* :class:`InputLoader` writes the input beats into the input layer's banks.
* :class:`JunctionControl` turns the phase into one junction's memory
  addresses, stage by stage: which rotating copy each memory is at (from the
  schedule's ``F`` and ``U``), which row, and the tags (valid, learning rate,
  sweep, span, row) that travel down the pipeline with each edge.

The :class:`~.stall.StallControl` (``stall.py``) runs outside the gated core
and makes its clock enable.
"""

from amaranth.hdl import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..gen.geometry import (CLOCK_BITS, LR_BITS, S_ACC, S_BIAS, S_DB, S_DW, S_SEL, S_SUM,
                            S_TREE, S_W, S_WR, bank_groups, bits, several_bank_groups)
from .interleaver import RowsSignature
from .pipeline import Tags, reg, wrap_counter

__all__ = ["TimeSignature", "Sequencer", "InputLoader", "JunctionControl"]

# the weight (bias) banks write back the row they read one enabled clock
# earlier (hdl/banks.py WeightBanks): the write-back stage follows the read's
assert S_W == S_DW + 1 and S_BIAS == S_DB + 1


class TimeSignature(wiring.Signature):
    """What every junction needs to know about time (as the
    :class:`Sequencer` drives it).

    Parameters
    ----------
    geo : NetworkGeometry

    Members
    -------
    phase : Out(range(cycle_clocks))
        Clock within the junction cycle, ``c``.
    active : Out(1)
        ``c < C``: junctions issue edges.
    cycle_end : Out(1)
        The last clock of a junction cycle.
    cycle_end_next : Out(1)
        ``cycle_end`` of the next (enabled) clock, a register: a block that
        registers it has its own copy of ``cycle_end`` (the junctions'
        copy counters do, so that no one compare of the phase reaches the
        clock enable of every counter on the die).
    jcycle : Out(range(U[1] + 3))
        Junction cycles so far (saturating once every junction is busy).
    info_label, info_k, info_update : Out.array(K_info)
        Slot ``n % K_info`` holds sample ``n``'s label, learning-rate exponent
        and update flag.
    """

    def __init__(self, geo):
        cls = range(max(geo.cfg.classes, 2))
        K = geo.K_info
        super().__init__({
            "phase": Out(range(max(geo.clocks_per_sample, 2))), "active": Out(1),
            "cycle_end": Out(1), "cycle_end_next": Out(1),
            "jcycle": Out(range(geo.U[1] + 3)),
            "info_label": Out(cls).array(K), "info_k": Out(LR_BITS).array(K),
            "info_update": Out(1).array(K),
        })


class Sequencer(wiring.Component):
    """The network's time base and sample information.

    Parameters
    ----------
    geo : NetworkGeometry

    Members
    -------
    label, lr, update : In
        The sample's information, taken at phase 0 (from input beat 0).
    time : Out(TimeSignature(geo))
        Phase, junction cycle and the samples' information, for the junctions.
    clocks : Out(CLOCK_BITS)
        Clocks so far.
    need_input : Out(1)
        ``c < beats_per_sample``: a beat is consumed in this clock.
    need_next : Out(1)
        ``need_input`` of the next (enabled) clock.
    """

    def __init__(self, geo):
        self.geo = geo
        self.tmax = geo.U[1] + 2
        super().__init__({
            "label": In(range(max(geo.cfg.classes, 2))), "lr": In(LR_BITS), "update": In(1),
            "time": Out(TimeSignature(geo)), "clocks": Out(CLOCK_BITS), "need_input": Out(1),
            "need_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        geo, t = self.geo, self.time
        c, cc = t.phase, geo.clocks_per_sample
        c_next = Mux(t.cycle_end, 0, c + 1)
        m.d.comb += [t.active.eq(c < geo.cfg.cycle), t.cycle_end.eq(c == cc - 1),
                     self.need_input.eq(c < geo.beats_per_sample),
                     self.need_next.eq(c_next < geo.beats_per_sample)]
        m.d.sync += [c.eq(c_next), self.clocks.eq(self.clocks + 1)]
        # the phase after c_next is the last: a register, so its copies in
        # the junctions are register-to-register nets
        last_next = reg(m, (c_next == cc - 2) if cc >= 2 else 1, "cycle_end_next",
                        init=int(cc <= 2))
        m.d.comb += t.cycle_end_next.eq(last_next)
        with m.If(t.cycle_end & (t.jcycle < self.tmax)):
            m.d.sync += t.jcycle.eq(t.jcycle + 1)
        slot, _ = wrap_counter(m, t.cycle_end, geo.K_info, "info_in")
        with m.If(c == 0):
            for i in range(geo.K_info):
                with m.If(slot == i):
                    m.d.sync += [t.info_label[i].eq(self.label), t.info_k[i].eq(self.lr),
                                 t.info_update[i].eq(self.update)]
        return m


class InputLoader(wiring.Component):
    """Input beats into the input layer's banks: beat ``r`` (phase ``r <
    beats``) fills row ``r`` of every bank, in the rotating copy of the
    sample; pixels are mapped into the fraction field.

    When a sample has fewer beats than the junction cycle has clocks (fan-out
    > 1, or slack clocks), the write lands one clock after its beat from
    registered address, enable and pixels, so the phase counter drives
    registers instead of every bank's write port (on board@64 it was the
    critical path), one address and enable register per bank (a shared one
    was the next); the copy is first read in a later junction cycle either
    way.  Those per-bank registers are loaded from a copy per group of
    :data:`~sparse_edge.gen.geometry.BANKS_PER_ADDRESS_COPY` banks
    (``in_addr_a*``, ``in_idle_a*``, kept) that holds the clock's address
    and enable, computed a clock ahead from the next phase, so no one compare
    of the phase reaches all the banks' registers (board@64's next critical
    path) and the write still lands one clock after its beat.

    Parameters
    ----------
    geo : NetworkGeometry

    Members
    -------
    phase, cycle_end : In
        From the :class:`Sequencer`.
    pixels : In(ArrayLayout(unsigned(8), z[1]))
        The beat's pixels.
    wr : In(WritePort.Signature(...)).array(z[1])
        Drives the input banks' write ports.
    """

    def __init__(self, geo, write_signature):
        self.geo = geo
        cfg = geo.cfg
        self.late = geo.beats_per_sample < geo.clocks_per_sample
        super().__init__({
            "phase": In(range(max(geo.clocks_per_sample, 2))), "cycle_end": In(1),
            "pixels": In(data.ArrayLayout(unsigned(8), cfg.z[0])),
            "wr": In(write_signature).array(cfg.z[0]),
        })

    def elaborate(self, platform):
        m = Module()
        geo, fmt = self.geo, self.geo.cfg.fmt
        c = self.phase
        K, R, beats = geo.K_act[0], geo.R[1], geo.beats_per_sample
        slot, wraps = wrap_counter(m, self.cycle_end, K, "act0_in")
        px = [self.pixels[b] for b in range(len(self.wr))]
        codes = [(p << (fmt.frac_bits - 8)) if fmt.frac_bits >= 8 else
                 (p >> (8 - fmt.frac_bits)) for p in px]
        if not self.late:
            addr, en = slot * R + c, c < beats
            for wp, code in zip(self.wr, codes):
                m.d.comb += [wp.addr.eq(addr), wp.data.eq(code), wp.en.eq(en)]
            return m
        # the next clock's address and enable (the phase and slot after this
        # enabled clock)
        c_next = Mux(self.cycle_end, 0, c + 1)
        slot_next = Mux(wraps, 0, Mux(self.cycle_end, slot + 1, slot))
        addr_next, idle_next = slot_next * R + c_next, c_next >= beats
        for a, group in enumerate(bank_groups(len(self.wr))):
            # this clock's address and enable, one copy per group of banks
            # (the enable stored inverted: it resets to 0 as an iCE40
            # flip-flop must, phase 0 being a beat)
            g_addr = reg(m, addr_next, f"in_addr_a{a}", keep=True)
            g_en = ~reg(m, idle_next, f"in_idle_a{a}", keep=True)
            for b in group:
                # each bank its own address and enable register (kept: one
                # shared copy and its write decode reached every input bank
                # across the chip, board@64's critical path)
                wp = self.wr[b]
                m.d.comb += [wp.addr.eq(reg(m, g_addr, f"in_addr{b}", keep=True)),
                             wp.data.eq(reg(m, codes[b], f"in_px{b}")),
                             wp.en.eq(reg(m, g_en, f"in_en{b}", keep=True))]
        return m


class JunctionControl(wiring.Component):
    """One junction's memory addresses and pipeline tags, stage by stage.

    Junction ``j`` does FF of sample ``n`` in junction cycle ``n + F[j]`` and
    BP/UP in ``n + U[j]`` (``geo.schedule``), so each memory it touches is at
    its own rotating copy: one counter per memory and role, advancing at
    every cycle end, started so that it reads ``(t - offset) mod copies``.
    Edge ``c*z + k`` is issued in clock ``c`` (stage S0); its tags (valid
    flags, learning rate, sweep, span, neuron row, copies) are delayed with
    it, so a stage that spills into the next junction cycle still uses its
    own sample's values.  Registers are named ``{tag}_s{k}``.

    Parameters
    ----------
    geo : NetworkGeometry
    j : int
        Junction (1-based).
    dithered : bool
        The pattern rotates banks (``dither`` and ``undither`` are used).

    Members
    -------
    time : In(TimeSignature(geo))
        From the :class:`Sequencer`.
    rows : In(RowsSignature(z, R))
        From the junction's :class:`~.interleaver.Interleaver`, at S0.
    left_addr_ff, left_addr_up : Out.array(z)
        S0: left activation read addresses (FF and UP copies).
    acc_nat_addr, da_rd_addr (hidden right layer) / dout_rd_addr (output) : Out
        S0: the right layer's delta inputs, natural order.
    blk_sel, dither_sel : Out
        ``S_SEL``: accumulator bank block; rotation banks -> lanes.
    k_db : Out
        ``S_DB``: learning rate.
    b_addr_next, b_we_next : Out
        ``S_DB - 1``: bias read row (read at ``S_DB``); ``S_DB``: bias
        write-back enable (written at ``S_BIAS``, the row read at ``S_DB``).
        One clock ahead: :class:`~.banks.WeightBanks` registers its own
        copies per group of banks.
    w_addr_next, w_we_next : Out
        ``S_DW - 1``: weight read row (read at ``S_DW``); ``S_DW``: weight
        write-back enable (written at ``S_W``, the row read at ``S_DW``).
    undither_tree, acc_rd_addr : Out (hidden left layer)
        ``S_TREE``: rotation lanes -> banks; accumulator reads.
    acc_wr_addr, acc_first, acc_we : Out (hidden left layer)
        ``S_ACC``: accumulator write-back.
    first_span, accumulate : Out
        ``S_SUM``: span accumulator control.
    wr_ok : Out
        ``S_WR``: a neuron row is finished (valid FF, last clock of its span).
    act_wr_addr, act_wr_en, da_wr_addr (hidden right layer) / dout_wr_addr,
    row_wr, label_wr (output) : Out
        ``S_WR``: where the finished neurons go (``act_wr_addr`` and
        ``act_wr_en`` per activation bank: registers of their own per group
        of banks and per bank).
    """

    def __init__(self, geo, j, dithered):
        if not 1 <= j <= geo.cfg.junctions:
            raise ValueError(f"JunctionControl: junction {j} is not in 1..{geo.cfg.junctions}")
        self.geo, self.j, self.dithered = geo, j, dithered
        cfg = geo.cfg
        self.first, self.last = j == 1, j == cfg.junctions
        z, R, NR, q = geo.z[j], geo.R[j], geo.NR[j], geo.q[j]
        cls = range(max(cfg.classes, 2))
        zrange = range(max(z, 2))
        members = {
            "time": In(TimeSignature(geo)), "rows": In(RowsSignature(z, R)),
            "left_addr_ff": Out(bits(geo.K_act[j - 1] * R)).array(z),
            "left_addr_up": Out(bits(geo.K_act[j - 1] * R)).array(z),
            "dither_sel": Out(zrange), "k_db": Out(LR_BITS),
            "b_addr_next": Out(range(max(NR, 2))), "b_we_next": Out(1),
            "w_addr_next": Out(range(max(cfg.cycle, 2))), "w_we_next": Out(1),
            "first_span": Out(1), "accumulate": Out(1), "wr_ok": Out(1),
        }
        if self.last:
            members.update({"dout_rd_addr": Out(bits(geo.K_da[j] * NR)),
                            "dout_wr_addr": Out(bits(geo.K_da[j] * NR)),
                            "row_wr": Out(range(max(NR, 2))), "label_wr": Out(cls)})
        else:
            zr, Rr = geo.z[j + 1], geo.R[j + 1]
            self.blocks = zr // q
            members.update({"acc_nat_addr": Out(bits(geo.K_acc[j] * Rr)),
                            "da_rd_addr": Out(bits(geo.K_da[j] * NR)),
                            "blk_sel": Out(range(max(self.blocks, 2))),
                            "act_wr_addr": Out(bits(geo.K_act[j] * Rr)).array(zr),
                            "act_wr_en": Out(1).array(zr),
                            "da_wr_addr": Out(bits(geo.K_da[j] * NR))})
        if not self.first:
            aw = bits(geo.K_acc[j - 1] * R)
            members.update({"undither_tree": Out(zrange), "acc_rd_addr": Out(aw).array(z),
                            "acc_wr_addr": Out(aw).array(z), "acc_first": Out(1),
                            "acc_we": Out(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        tags = Tags(m)
        self._issue(m, tags)
        self._stages(m, tags)
        return m

    def _cycle_end(self, m, name, keep):
        """A copy of ``time.cycle_end`` of this block's own: the register of
        ``cycle_end_next`` (``keep``: a deliberate copy, see :func:`~.pipeline.reg`)."""
        return reg(m, self.time.cycle_end_next, name, keep=keep,
                   init=int(self.geo.clocks_per_sample == 1))

    def _slot(self, m, offset, copies, name, keep=False, cycle_end=None):
        """Copy counter of a memory role: ``(t - offset) mod copies``, advancing
        on ``cycle_end`` (default: the junction's copy; ``keep``: a deliberate
        copy of the counter, see :func:`~.pipeline.reg`)."""
        cnt, _ = wrap_counter(m, self._cyc if cycle_end is None else cycle_end, copies, name,
                              init=(-offset) % copies, keep=keep)
        return cnt

    def _issue(self, m, tags):
        """S0: counters, tags and the read addresses of the issue stage."""
        geo, j = self.geo, self.j
        time, rows = self.time, self.rows
        c, active, t = time.phase, time.active, time.jcycle
        z, R, NR, F, U = geo.z[j], geo.R[j], geo.NR[j], geo.F[j], geo.U[j]
        # copies kept only where a junction has more than one group of banks
        right = 0 if self.last else geo.z[j + 1]
        self._cyc = self._cycle_end(m, "cyc_end", keep=several_bank_groups(max(z, right)))
        span_cnt, span_end = wrap_counter(m, active, geo.span[j], "span")
        nat_row, _ = wrap_counter(m, span_end, NR, "natrow")
        upd = Array(time.info_update)[self._slot(m, U, geo.K_info, "info_up")]
        tags.add("vff", active & (t >= F))
        tags.add("vup", active & (t >= U) & upd)
        tags.add("k", Array(time.info_k)[self._slot(m, U, geo.K_info, "info_upk")])
        tags.add("c", c)
        tags.add("first_sweep", rows.first_sweep)
        tags.add("first_span", span_cnt == 0)
        tags.add("last_span", span_end)
        tags.add("nat_row", nat_row)
        if self.dithered:
            tags.add("D", rows.dither)
            tags.add("negD", rows.undither)
        for b in range(z):
            tags.add(f"brow{b}", rows.row[b])
        # the left activations' copy counters, one pair per group of banks
        # (kept): one counter, the high bits of every bank's read address,
        # reached all 64 input banks on board@64 (its ECP5 critical path);
        # each group its own cycle_end too (one compare of the phase into
        # every group's counter enable was the next)
        for a, group in enumerate(bank_groups(z)):
            # (one group: the junction's own copy serves it)
            cyc = self._cycle_end(m, f"cyc_end_a{a}", keep=True) if several_bank_groups(z) \
                else self._cyc
            lff = self._slot(m, F, geo.K_act[j - 1], f"act_ff_a{a}", keep=True, cycle_end=cyc)
            lup = self._slot(m, U, geo.K_act[j - 1], f"act_up_a{a}", keep=True, cycle_end=cyc)
            for b in group:
                m.d.comb += [self.left_addr_ff[b].eq(lff * R + rows.row[b]),
                             self.left_addr_up[b].eq(lup * R + rows.row[b])]
        if self.last:
            tags.add("label", Array(time.info_label)[self._slot(m, F, geo.K_info, "info_ff")])
            rdo = self._slot(m, U, geo.K_da[j], "dout_rd")
            m.d.comb += self.dout_rd_addr.eq(rdo * NR + nat_row)
            tags.add("slot_dout_w", self._slot(m, F, geo.K_da[j], "dout_w"))
        else:
            blk, blk_wrap = wrap_counter(m, span_end, self.blocks, "blk")
            rowp, _ = wrap_counter(m, blk_wrap, geo.R[j + 1], "rowp")
            tags.add("blk", blk)
            tags.add("rowp", rowp)
            racc = self._slot(m, U, geo.K_acc[j], "acc_nat")
            rda = self._slot(m, U, geo.K_da[j], "da_rd")
            m.d.comb += [self.acc_nat_addr.eq(racc * geo.R[j + 1] + rowp),
                         self.da_rd_addr.eq(rda * NR + nat_row)]
            tags.add("slot_act_w", self._slot(m, F, geo.K_act[j], "act_w"))
            tags.add("slot_da_w", self._slot(m, F, geo.K_da[j], "da_w"))
        if not self.first:
            tags.add("slot_acc_l", self._slot(m, U, geo.K_acc[j - 1], "acc_l"))

    def _stages(self, m, tags):
        """The tags and addresses of the later stages."""
        geo, j = self.geo, self.j
        R, NR = geo.R[j], geo.NR[j]
        if self.dithered:
            m.d.comb += self.dither_sel.eq(tags("D", S_SEL))
        m.d.comb += [
            self.k_db.eq(tags("k", S_DB)),
            self.b_addr_next.eq(tags("nat_row", S_DB - 1)),
            self.b_we_next.eq(tags("vup", S_BIAS - 1) & tags("last_span", S_BIAS - 1)),
            self.w_addr_next.eq(tags("c", S_DW - 1)),
            self.w_we_next.eq(tags("vup", S_W - 1)),
            self.first_span.eq(tags("first_span", S_SUM)),
            self.accumulate.eq(tags("vff", S_SUM)),
            self.wr_ok.eq(tags("vff", S_WR) & tags("last_span", S_WR)),
        ]
        if not self.first:
            if self.dithered:
                m.d.comb += self.undither_tree.eq(tags("negD", S_TREE))
            for b in range(geo.z[j]):
                m.d.comb += [
                    self.acc_rd_addr[b].eq(tags("slot_acc_l", S_TREE) * R
                                           + tags(f"brow{b}", S_TREE)),
                    self.acc_wr_addr[b].eq(tags("slot_acc_l", S_ACC) * R
                                           + tags(f"brow{b}", S_ACC)),
                ]
            m.d.comb += [self.acc_first.eq(tags("first_sweep", S_ACC)),
                         self.acc_we.eq(tags("vup", S_ACC))]
        if self.last:
            m.d.comb += [
                self.dout_wr_addr.eq(tags("slot_dout_w", S_WR) * NR + tags("nat_row", S_WR)),
                self.row_wr.eq(tags("nat_row", S_WR)), self.label_wr.eq(tags("label", S_WR)),
            ]
        else:
            q = geo.q[j]
            m.d.comb += [
                self.blk_sel.eq(tags("blk", S_SEL)),
                self.da_wr_addr.eq(tags("slot_da_w", S_WR) * NR + tags("nat_row", S_WR)),
            ]
            # the activation writes registered near their banks (kept): the
            # address once per group of banks, the enable once per bank, both
            # from the tags of S_WR - 1 (one `last_span`/`blk` register had
            # reached every activation bank of the right layer: board@64's
            # critical path after the left copy counters)
            done = tags("vff", S_WR - 1) & tags("last_span", S_WR - 1)
            wr_addr = (tags("slot_act_w", S_WR - 1) * geo.R[j + 1]
                       + tags("rowp", S_WR - 1))
            keep = several_bank_groups(geo.z[j + 1])
            for a, group in enumerate(bank_groups(geo.z[j + 1])):
                addr = reg(m, wr_addr, f"act_wa_a{a}", keep=keep)
                for bb in group:
                    m.d.comb += [
                        self.act_wr_addr[bb].eq(addr),
                        self.act_wr_en[bb].eq(reg(m, done & (tags("blk", S_WR - 1) == bb // q),
                                                  f"act_we{bb}", keep=keep)),
                    ]
