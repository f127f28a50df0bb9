"""The training accelerator: junctions with FF/BP/UP edge processors, banked
memories, interleaved addressing and junction pipelining (SPEC sections 5-6).

Timing model
------------
All junctions share one phase counter ``c`` (``0 .. cycle_clocks-1``) and one
junction-cycle counter ``t``; a junction issues the ``z`` edges of clock ``c``
(``c < C``) at phase ``c`` and every later pipeline stage carries its own tags
(sample slot, address, valid, learning rate), so a stage that spills into the
next junction cycle still writes the right copy.  Pipeline of junction ``j``
(stage ``Sk`` is ``k`` clocks after issue):

``S0`` (issue) read left activations (FF copy and UP copy, interleaved
bank/row from the pattern ROM) and, in natural order, the right layer's delta
inputs (hidden: BP accumulator and ``a'``; output: ``a - y``).
``S_SEL`` rotate bank data to lanes (bank dither); select and saturate the
accumulator; registered.
``S_DMUL`` exact product ``a' * sat(acc)`` (the multiplier's output register).
``S_DRND`` ``d`` = that product rounded and saturated (``mul``).
``S_DB`` ``db = round_half_up(-d * 2**-k)``; bias read issued.
``S_BIAS`` bias ``b = sat(b + db)`` written back (one-clock read-modify-write
loop, read port transparent); weight-update operands registered per lane.
``S_WMUL`` exact weight-update product ``db * a_left``.
``S_DW`` ``dw`` = that product rounded and saturated; weight row read issued
(late, so the weight loop is one clock too: read issued at ``S_DW``, written
at ``S_W``, correct for every ``C >= 1``).
``S_W`` ``w = sat(w + dw)`` written back; the (pre-update) weight read
registered as the operand of both products.
``S_FMUL`` exact FF product ``a * w`` and BP product ``w * d``.
``S_PRND`` both rounded and saturated.
``S_TREE`` FF adder tree per right neuron, first half of its levels; BP
products rotated to the accumulator banks; accumulator read issued.
``S_ACC`` BP accumulator ``acc += product`` written back (one-clock loop);
second half of the adder tree.
``S_SUM`` span accumulator (multi-clock neurons) with the bias folded in:
``sum + b``.
``S_SAT`` ``s = sat(sum + b)``; activation ROM read issued.
``S_WR`` write ``a``/``a'`` (or ``a - y`` and the running argmax at the
output).

Every multiplier's inputs and exact output are registered, and rounding,
saturation, variable shifts and adder-tree halves each have a stage of their
own, so no path carries more than one arithmetic step between registers.

Everything a junction cycle writes is therefore readable
``C + WRITE_LATENCY`` clocks after the cycle starts.  The ``reference``
schedule stretches the junction cycle to ``C + WRITE_LATENCY`` clocks and uses
the reference offsets ``F[i] = i``, ``U[i] = 2L-1-i``; the ``fast`` schedule
keeps exactly ``C`` clocks per sample and instead leaves ``g = 1 +
ceil(WRITE_LATENCY / C)`` junction cycles between a producer and its consumer
(aligned junction cycles; see ``docs/hardware.md`` for the trade-off against
clock offsets).
"""

from amaranth.hdl import (Array, Assert, Cat, ClockDomain, ClockSignal, Const, Elaboratable,
                          EnableInserter, Module, Mux, ResetSignal, Shape, Signal, Value, signed,
                          unsigned)
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..gen.config import initial_parameters
from ..gen.geometry import (CLOCK_BITS, K_MAX, LR_BITS, S_ACC, S_BIAS, S_DB, S_DW, S_FMUL,
                            S_SEL, S_SUM, S_TREE, S_W, S_WMUL, S_WR, WRITE_LATENCY,
                            NetworkGeometry, bits, hardware_schedule)
from .arith import _as_signed, round_sat, round_shift_var, sat_value

# ``hardware_schedule``, ``NetworkGeometry`` and ``WRITE_LATENCY`` are defined
# in gen/geometry.py (plain numbers, no Amaranth) and re-exported here, where
# users and tests have always imported them from.
__all__ = ["WRITE_LATENCY", "hardware_schedule", "Network", "NetworkGeometry", "beat_layout",
           "result_layout"]


def _shape(s):
    """Amaranth shape of a :class:`~sparse_edge.gen.geometry.IntShape`."""
    return Shape(s.width, s.signed)


class _Pipe:
    """Tags delayed stage by stage (memoized registers named ``{name}_s{k}``)."""

    def __init__(self, m, prefix):
        self.m, self.prefix = m, prefix
        self.stages = {}

    def add(self, name, value):
        sig = Signal(value.shape(), name=f"{self.prefix}{name}_s0")
        self.m.d.comb += sig.eq(value)
        self.stages[name] = [sig]
        return sig

    def __call__(self, name, k):
        chain = self.stages[name]
        while len(chain) <= k:
            prev = chain[-1]
            reg = Signal(prev.shape(), name=f"{self.prefix}{name}_s{len(chain)}")
            self.m.d.sync += reg.eq(prev)
            chain.append(reg)
        return chain[k]


def _rotate(m, values, amount, z, name):
    """``out[k] = values[(k + amount) % z]`` with a log-depth barrel rotator."""
    cur = list(values)
    for i in range(bits(z)):
        sh = (1 << i) % z
        if sh == 0:
            continue
        nxt = [Signal(v.shape(), name=f"{name}_rot{i}_{k}") for k, v in enumerate(cur)]
        for k in range(z):
            m.d.comb += nxt[k].eq(Mux(amount[i], cur[(k + sh) % z], cur[k]))
        cur = nxt
    return cur


def _tree_levels(values, levels):
    """The first ``levels`` levels of a balanced adder tree (exact: each level
    grows by one bit); returns the list of partial sums."""
    values = list(values)
    for _ in range(levels):
        if len(values) <= 1:
            break
        nxt = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values


def _tree_sum(values):
    """Balanced adder tree: the sum of ``values``."""
    values = list(values)
    return _tree_levels(values, len(values))[0]


def _wrap_counter(m, en, modulus, name, init=0):
    """Counter ``0 .. modulus-1`` advancing when ``en``; returns (value, wraps)."""
    cnt = Signal(range(max(modulus, 2)), init=init, name=name)
    wraps = Signal(name=f"{name}_wrap")
    m.d.comb += wraps.eq(en & (cnt == modulus - 1))
    with m.If(en):
        m.d.sync += cnt.eq(Mux(cnt == modulus - 1, 0, cnt + 1))
    return cnt, wraps


class _Junction(Elaboratable):
    """Edge processor of junction ``j``: ``z`` lanes doing FF, BP and UP.

    Not used on its own: :class:`Network` creates the layer memories and hands
    their ports in.  Owns the weight and bias banks, the pattern ROM and the
    activation ROM.
    """

    def __init__(self, cfg, geo, j, ctl, ports, readout, fault=None, checks=False):
        self.cfg, self.geo, self.j = cfg, geo, j
        self.fault = fault or {}
        self.checks = checks
        self.ctl, self.ports, self.readout = ctl, ports, readout
        self.pattern = cfg.patterns()[j - 1]
        J = cfg.junctions
        self.first, self.last = j == 1, j == J
        fmt = cfg.fmt
        w = fmt.width
        z, C = cfg.z[j - 1], cfg.cycle
        self.z, self.C, self.R = z, C, geo.R[j]
        self.fi, self.fo = cfg.fanin[j - 1], cfg.fanout[j - 1]
        self.q, self.NR, self.span = geo.q[j], geo.NR[j], geo.span[j]
        self.lanes_per_neuron = min(self.fi, z)
        params = initial_parameters(cfg)[j - 1]
        wts = params[0].reshape(C, z)
        self.weights = [Memory(shape=signed(w), depth=C, init=[int(v) for v in wts[:, k]])
                        for k in range(z)]
        bias = params[1].reshape(self.NR, self.q)
        self.biases = [Memory(shape=signed(w), depth=self.NR, init=[int(v) for v in bias[:, i]])
                       for i in range(self.q)]
        table = cfg.activation_table()
        sigma = [int(v) for v in table.sigma]
        if "sigma" in self.fault:
            sigma[self.fault["sigma"]] ^= 1 << 4
        self.sigma_rom = Memory(shape=signed(w), depth=table.depth, init=sigma)
        self.dsigma_rom = None if self.last else Memory(
            shape=signed(w), depth=table.depth, init=[int(v) for v in table.dsigma])
        rb = bits(self.R)
        self.row_bits = rb
        rows = self.pattern.row_addr                           # (C, z)
        self.rows_rom = None
        if rb:
            packed = [sum(int(rows[c, k]) << (k * rb) for k in range(z)) for c in range(C)]
            self.rows_rom = Memory(shape=unsigned(z * rb), depth=C, init=packed)
        self.dither = [int(d) for d in self.pattern.dither]

    def elaborate(self, platform):
        m = Module()
        cfg, geo, j = self.cfg, self.geo, self.j
        fmt = cfg.fmt
        w = fmt.width
        z, C, R, q, fi = self.z, self.C, self.R, self.q, self.fi
        ctl, ports = self.ctl, self.ports
        F, U = geo.F[j], geo.U[j]
        pre = f"j{j}_"
        for k, mem in enumerate(self.weights):
            m.submodules[f"{pre}w{k}"] = mem
        for i, mem in enumerate(self.biases):
            m.submodules[f"{pre}b{i}"] = mem
        m.submodules[f"{pre}sigma"] = self.sigma_rom
        if self.dsigma_rom is not None:
            m.submodules[f"{pre}dsigma"] = self.dsigma_rom

        c, active, cycle_end, t = ctl["c"], ctl["active"], ctl["cycle_end"], ctl["t"]
        ce, ro, ld = ctl["ce"], self.readout, ctl["load"]
        pipe = _Pipe(m, pre)

        def slot(offset, K, name):
            cnt, _ = _wrap_counter(m, cycle_end, K, f"{pre}{name}", init=(-offset) % K)
            return cnt

        # -- S0: issue --------------------------------------------------------
        tt, sweep_step = _wrap_counter(m, active, R, f"{pre}tsweep")
        s, _ = _wrap_counter(m, sweep_step, self.fo, f"{pre}sweep")
        span_cnt, span_end = _wrap_counter(m, active, self.span, f"{pre}span")
        nat_row, _ = _wrap_counter(m, span_end, self.NR, f"{pre}natrow")
        v_ff = pipe.add("vff", active & (t >= F))
        upd = Array(ctl["info_update"])[slot(U, geo.K_info, "info_up")]
        pipe.add("vup", active & (t >= U) & upd)
        pipe.add("k", Array(ctl["info_k"])[slot(U, geo.K_info, "info_upk")])
        pipe.add("c", c)
        pipe.add("first_sweep", s == 0)
        pipe.add("first_span", span_cnt == 0)
        pipe.add("last_span", span_end)
        pipe.add("nat_row", nat_row)
        pipe.add("last_clock", active & (c == C - 1))
        if self.last:
            pipe.add("label", Array(ctl["info_label"])[slot(F, geo.K_info, "info_ff")])

        # interleaved row address per lane -> per bank
        if self.rows_rom is not None:
            # Two clocks of prefetch: the ROM's registered read, then a
            # register on its output, so that neither the ROM's logic (Yosys
            # builds these ROMs from LUTs and moves the read register to the
            # address, where it merges with the phase counter) nor the phase
            # counter's fanout sits on the path into every bank's read
            # address (on board@64 that was the critical path, 23.6 ns of
            # routing).  The ROM is addressed with (c + 2) mod cc, so its
            # registered output holds row c when the phase counter reaches c.
            rom = self.rows_rom.read_port()
            m.submodules[f"{pre}rows"] = self.rows_rom
            cc = geo.schedule.clocks_per_cycle
            if cc <= 2:
                nxt = c                                   # (c + 2) mod cc == c
            else:
                nxt = Mux(c + 2 >= cc, c + 2 - cc, c + 2)
            m.d.comb += rom.addr.eq(Mux(nxt < C, nxt, 0))
            rows_r = self._reg(m, rom.data, f"{pre}rows_r")
            lane_row = [rows_r[k * self.row_bits:(k + 1) * self.row_bits] for k in range(z)]
        else:
            lane_row = [Const(0, 1) for _ in range(z)]
        dithered = any(self.dither)
        if dithered:
            dsig = pipe.add("D", Array([Const(d, range(z)) for d in self.dither])[s])
            negd = pipe.add("negD", Array([Const((z - d) % z, range(z))
                                           for d in self.dither])[s])
            # bank b is read by lane (b - D) % z
            bank_row = _rotate(m, lane_row, negd, z, f"{pre}addr")
        else:
            bank_row = lane_row
        for b in range(z):
            pipe.add(f"brow{b}", bank_row[b] if self.row_bits else Const(0, 1))
        if self.checks:
            # simulation-time checks of the address generator: every lane's
            # row is inside its bank, and the bank rotation is a permutation
            for k in range(z):
                if self.row_bits and (1 << self.row_bits) != R:
                    m.d.comb += Assert(~active | (lane_row[k] < R),
                                       f"junction {j} lane {k}: row address out of range")
            if dithered:
                m.d.comb += Assert(~active | (dsig < z), f"junction {j}: bank rotation >= z")

        lff = slot(F, geo.K_act[j - 1], "act_ff")
        lup = slot(U, geo.K_act[j - 1], "act_up")
        for b in range(z):
            m.d.comb += [
                ports["left_ff"][b].addr.eq(lff * R + bank_row[b]),
                ports["left_up"][b].addr.eq(lup * R + bank_row[b]),
            ]

        # right layer, natural order, for UP/BP of sample n_up
        if not self.last:
            zr, Rr = geo.z[j + 1], geo.R[j + 1]
            bq = zr // q
            blk, blk_wrap = _wrap_counter(m, span_end, bq, f"{pre}blk")
            rowp, _ = _wrap_counter(m, blk_wrap, Rr, f"{pre}rowp")
            pipe.add("blk", blk)
            pipe.add("rowp", rowp)
            racc = slot(U, geo.K_acc[j], "acc_nat")
            for b in range(zr):
                m.d.comb += ports["acc_nat"][b].addr.eq(racc * Rr + rowp)
            rda = slot(U, geo.K_da[j], "da_rd")
            for i in range(q):
                m.d.comb += ports["da_rd"][i].addr.eq(rda * self.NR + nat_row)
            pipe.add("slot_act_w", slot(F, geo.K_act[j], "act_w"))
            pipe.add("slot_da_w", slot(F, geo.K_da[j], "da_w"))
        else:
            rdo = slot(U, geo.K_da[j], "dout_rd")
            for i in range(q):
                m.d.comb += ports["dout_rd"][i].addr.eq(rdo * self.NR + nat_row)
            pipe.add("slot_dout_w", slot(F, geo.K_da[j], "dout_w"))
        if not self.first:
            pipe.add("slot_acc_l", slot(U, geo.K_acc[j - 1], "acc_l"))

        # -- S_SEL: bank rotation; derivative operands ------------------------------
        a_ff = [p.data for p in ports["left_ff"]]
        a_up = [p.data for p in ports["left_up"]]
        if dithered:
            a_ff = _rotate(m, a_ff, pipe("D", S_SEL), z, f"{pre}aff")
            a_up = _rotate(m, a_up, pipe("D", S_SEL), z, f"{pre}aup")
        d_s = []                                   # d per right neuron, at S_DB
        if not self.last:
            acc_data = [p.data for p in ports["acc_nat"]]
            for i in range(q):
                sel = Array([acc_data[bb * q + i] for bb in range(bq)])[pipe("blk", S_SEL)]
                acc_r = self._reg(m, sat_value(sel, fmt), f"{pre}accsat{i}")      # S_DMUL
                da_r = self._reg(m, ports["da_rd"][i].data, f"{pre}da{i}")
                prod = self._reg(m, _as_signed(da_r) * _as_signed(acc_r),
                                 f"{pre}dprod{i}")                                    # S_DRND
                d_s.append(self._reg(m, round_sat(prod, fmt), f"{pre}d{i}"))          # S_DB
        else:
            for i in range(q):
                d_s.append(self._delay(m, ports["dout_rd"][i].data, S_DB - S_SEL,
                                       f"{pre}d{i}"))
        # -- S_DB: bias step; bias read ----------------------------------------------
        k_db = pipe("k", S_DB)
        db = [self._reg(m, round_shift_var(-d_s[i], k_db, K_MAX), f"{pre}db{i}")
              for i in range(q)]                                                    # S_BIAS
        # -- S_BIAS: bias write-back (one-clock read-modify-write loop) ---------------
        # The weight and bias read ports also serve the read-out port while the
        # network is stalled (``ro_mode``, high from the second stalled clock
        # on).  ``Network`` resumes two clocks after it could: the first ends
        # ``ro_mode``, in the second (``resumed`` still low) the port re-reads
        # the address of the read the stall interrupted (``{name}_held``: the
        # address one enabled clock ago).  Both selects are registers, and
        # there is no select on the read data.
        ro_mode, resumed = ctl["ro_mode"], ctl["resumed"]

        def shared_read(port, addr, name):
            held = self._reg(m, addr, f"{pre}{name}_held")        # enabled clocks only
            m.d.comb += [port.addr.eq(Mux(ro_mode, ro["row"], Mux(resumed, addr, held))),
                         port.en.eq(1)]
            return port.data

        b_old = []
        b_addr = pipe("nat_row", S_DB)
        for i in range(q):
            bv = shared_read(self._bias_rd[i], b_addr, f"b{i}")
            wp = self._bias_wr[i]
            load = self._load_decode(m, ro["bias"] & (ro["lane"] == i), f"{pre}ldb{i}")
            m.d.comb += [
                wp.addr.eq(Mux(load, ld["row"], pipe("nat_row", S_BIAS))),
                wp.data.eq(Mux(load, ld["data"], sat_value(bv + db[i], fmt))),
                wp.en.eq(load | (ce & pipe("vup", S_BIAS) & pipe("last_span", S_BIAS))),
            ]
            b_old.append(bv)
        # weight-update product dw = mul(db, a_left): operands registered per
        # lane at S_BIAS (next to the multiplier), exact product at S_WMUL,
        # rounded at S_DW
        # the right neuron (of the q finished per clock) lane k works for
        neuron_of = [k // fi if fi <= z else 0 for k in range(z)]
        a_up_b = [self._delay(m, a_up[k], S_WMUL - S_SEL, f"{pre}aup{k}") for k in range(z)]
        dw_r = []
        for k in range(z):
            db_lane = self._reg(m, db[neuron_of[k]], f"{pre}dblane{k}")
            prod = self._reg(m, _as_signed(db_lane) * _as_signed(a_up_b[k]), f"{pre}wprod{k}")
            dw = round_sat(prod, fmt)
            if self.fault.get("update") == (j, k):
                dw = dw ^ 1
            dw_r.append(self._reg(m, dw, f"{pre}dw{k}"))                              # S_W
        # -- S_DW: late weight read (the weight loop is one clock: read issued at
        # S_DW, written at S_W, read port transparent: correct for every C >= 1)
        w_addr = pipe("c", S_DW)
        w_read = [shared_read(self._w_rd[k], w_addr, f"w{k}") for k in range(z)]
        d_w = [self._delay(m, d_s[i], S_FMUL - 1 - S_DB, f"{pre}dd{i}") for i in range(q)]
        dl = [self._reg(m, d_w[neuron_of[k]], f"{pre}dlane{k}") for k in range(z)]   # S_FMUL
        # -- S_W: weight write-back; FF and BP operands (the same read) registered;
        # S_FMUL: exact products
        a_ff_w = [self._delay(m, a_ff[k], S_FMUL - S_SEL, f"{pre}aff{k}") for k in range(z)]
        pf, pb = [], []
        for k in range(z):
            wv = w_read[k]
            wp = self._w_wr[k]
            load = self._load_decode(m, ~ro["bias"] & (ro["lane"] == k), f"{pre}ldw{k}")
            m.d.comb += [
                wp.addr.eq(Mux(load, ld["row"], pipe("c", S_W))),
                wp.data.eq(Mux(load, ld["data"], sat_value(wv + dw_r[k], fmt))),
                wp.en.eq(load | (ce & pipe("vup", S_W))),
            ]
            w_op = self._reg(m, wv, f"{pre}wop{k}")                                   # S_FMUL
            fprod = self._reg(m, _as_signed(a_ff_w[k]) * _as_signed(w_op), f"{pre}fprod{k}")
            pf.append(self._reg(m, round_sat(fprod, fmt), f"{pre}pf{k}"))             # S_TREE
            if not self.first:  # junction 1 has no BP (its left layer is the input)
                bprod = self._reg(m, _as_signed(w_op) * _as_signed(dl[k]), f"{pre}bprod{k}")
                pb.append(self._reg(m, round_sat(bprod, fmt), f"{pre}pb{k}"))         # S_TREE

        # -- S_TREE, S_TREE + 1: adder tree in two registered halves ------------------
        lpn = self.lanes_per_neuron
        levels = bits(lpn)
        first_half = (levels + 1) // 2
        partial = []
        for i in range(q):
            part = _tree_levels(pf[i * lpn:(i + 1) * lpn], first_half)
            part = [self._reg(m, v, f"{pre}tree{i}_{n}") for n, v in enumerate(part)]
            partial.append(self._reg(m, _tree_sum(part), f"{pre}sum{i}"))             # S_SUM
        # -- S_SUM: span accumulator with the bias folded in; S_SAT: saturation,
        # activation ROM read issued
        b_sum = [self._delay(m, b_old[i], S_SUM - S_BIAS, f"{pre}bias{i}") for i in range(q)]
        s_wr = [Signal(signed(w), name=f"{pre}s{i}_wr") for i in range(q)]
        sig_ports = [self.sigma_rom.read_port() for _ in range(q)]
        dsig_ports = [] if self.last else [self.dsigma_rom.read_port() for _ in range(q)]
        table = cfg.activation_table()
        for i in range(q):
            tree = partial[i]
            if self.span > 1:
                # sum of the span's partial sums plus the bias, exact
                acc_w = w + bits(fi + 2) + 1
                span_acc = Signal(signed(acc_w), name=f"{pre}spanacc")
                total = Mux(pipe("first_span", S_SUM), b_sum[i], span_acc) + tree
                with m.If(pipe("vff", S_SUM)):
                    m.d.sync += span_acc.eq(total)
            else:
                total = tree + b_sum[i]
            total_r = self._reg(m, total, f"{pre}total{i}")                            # S_SAT
            s_sat = Signal(signed(w), name=f"{pre}s{i}_sat")
            m.d.comb += s_sat.eq(sat_value(total_r, fmt))
            idx = Cat(s_sat[table.shift:w - 1], ~s_sat[w - 1])
            m.d.comb += sig_ports[i].addr.eq(idx)
            if dsig_ports:
                m.d.comb += dsig_ports[i].addr.eq(idx)
            m.d.sync += s_wr[i].eq(s_sat)

        # -- S_TREE .. S_ACC: BP products to banks, accumulator read-modify-write ------
        if not self.first:
            zl = z
            if dithered:
                pb_bank = _rotate(m, pb, pipe("negD", S_TREE), zl, f"{pre}pb")
            else:
                pb_bank = pb
            pb_acc = [self._reg(m, pb_bank[b], f"{pre}pbank{b}") for b in range(zl)]
            sl_rd = pipe("slot_acc_l", S_TREE)
            for b in range(zl):
                rp = ports["acc_rmw"][b]
                m.d.comb += rp.addr.eq(sl_rd * R + pipe(f"brow{b}", S_TREE))
            sl_wr = pipe("slot_acc_l", S_ACC)
            for b in range(zl):
                wp = ports["acc_wr"][b]
                old = ports["acc_rmw"][b].data
                m.d.comb += [
                    wp.addr.eq(sl_wr * R + pipe(f"brow{b}", S_ACC)),
                    wp.data.eq(Mux(pipe("first_sweep", S_ACC), 0, old) + pb_acc[b]),
                    wp.en.eq(pipe("vup", S_ACC)),
                ]

        # -- S_WR: activation / derivative / output-delta writes, argmax ---------------
        wr_ok = pipe("vff", S_WR) & pipe("last_span", S_WR)
        a_wr = [p.data for p in sig_ports]
        if not self.last:
            zr, Rr = geo.z[j + 1], geo.R[j + 1]
            bq = zr // q
            for bb in range(zr):
                wp = ports["act_wr"][bb]
                m.d.comb += [
                    wp.addr.eq(pipe("slot_act_w", S_WR) * Rr + pipe("rowp", S_WR)),
                    wp.data.eq(a_wr[bb % q]),
                    wp.en.eq(wr_ok & (pipe("blk", S_WR) == bb // q)),
                ]
            for i in range(q):
                wp = ports["da_wr"][i]
                m.d.comb += [
                    wp.addr.eq(pipe("slot_da_w", S_WR) * self.NR + pipe("nat_row", S_WR)),
                    wp.data.eq(dsig_ports[i].data),
                    wp.en.eq(wr_ok),
                ]
        else:
            label_wr = pipe("label", S_WR)
            row_wr = pipe("nat_row", S_WR)
            classes = cfg.classes
            best_s = Signal(signed(w), name=f"{pre}best_s")
            best_i = Signal(range(max(classes, 2)), name=f"{pre}best_i")
            cur_s, cur_i, have = best_s, best_i, row_wr != 0
            for i in range(q):
                neuron = row_wr * q + i
                wp = ports["dout_wr"][i]
                y = Mux(neuron == label_wr, fmt.one, 0)
                m.d.comb += [
                    wp.addr.eq(pipe("slot_dout_w", S_WR) * self.NR + row_wr),
                    wp.data.eq(sat_value(a_wr[i] - y, fmt)),
                    wp.en.eq(wr_ok),
                ]
                take = (neuron < classes) & (~have | (s_wr[i] > cur_s))
                ns = Signal(signed(w), name=f"{pre}am_s{i}")
                ni = Signal(range(max(classes, 2)), name=f"{pre}am_i{i}")
                nh = Signal(name=f"{pre}am_h{i}")
                m.d.comb += [ns.eq(Mux(take, s_wr[i], cur_s)),
                             ni.eq(Mux(take, neuron, cur_i)),
                             nh.eq(have | take)]
                cur_s, cur_i, have = ns, ni, nh
            with m.If(wr_ok):
                m.d.sync += [best_s.eq(cur_s), best_i.eq(cur_i)]
            if ctl.get("outputs") is not None:
                outs = ctl["outputs"]
                for i in range(q):
                    for r in range(i, cfg.layers[-1], q):
                        with m.If(wr_ok & (row_wr == r // q)):
                            m.d.sync += outs[r].eq(a_wr[i])
            pred_valid, pred = ctl["pred_valid"], ctl["pred"]
            m.d.sync += pred_valid.eq(wr_ok & (row_wr == self.NR - 1))
            with m.If(wr_ok & (row_wr == self.NR - 1)):
                m.d.sync += pred.eq(cur_i)

        # -- read-out port: the datapath read ports, addressed by ro_row while the
        # network is stalled (see shared_read) ---------------------------------------
        lane = Signal(range(max(z, q, 2)), name=f"{pre}ro_lane")
        m.d.ro += lane.eq(ro["lane"])
        m.d.comb += [
            ro["w_data"].eq(Array([p.data for p in self._w_rd])[lane]),
            ro["b_data"].eq(Array([p.data for p in self._bias_rd])[lane]),
        ]
        return m

    def _load_decode(self, m, match, name):
        """Load-port write enable of one bank: ``ld_en`` and the read-out
        address selecting this junction and ``match``, registered (the load
        writes one clock after its address, from the registered ``ld["row"]``
        and ``ld["data"]``; the decode is off the write port's path)."""
        ld, ro = self.ctl["load"], self.readout
        load = Signal(name=name)
        m.d.ro += load.eq(ld["en"] & (ro["junction"] == self.j - 1) & match)
        return load

    @staticmethod
    def _reg(m, value, name):
        """``value`` registered once (a pipeline register named ``name``)."""
        value = Value.cast(value)
        reg = Signal(value.shape(), name=name)
        m.d.sync += reg.eq(value)
        return reg

    @staticmethod
    def _delay(m, value, n, name):
        """``value`` delayed by ``n`` registers (``{name}_d1`` ...)."""
        out = value
        for i in range(n):
            out = _Junction._reg(m, out, f"{name}_d{i + 1}")
        return out

    def make_ports(self):
        """Create the junction's own memory ports (before elaboration).

        Weight and bias ports live in the ungated ``ro`` domain with the
        network clock enable applied explicitly, so the load port can write
        while the network is stalled."""
        self._w_wr = [mem.write_port(domain="ro") for mem in self.weights]
        self._w_rd = [mem.read_port(domain="ro", transparent_for=(wp,))
                      for mem, wp in zip(self.weights, self._w_wr)]
        self._bias_wr = [mem.write_port(domain="ro") for mem in self.biases]
        self._bias_rd = [mem.read_port(domain="ro", transparent_for=(wp,))
                         for mem, wp in zip(self.biases, self._bias_wr)]


class _Core(Elaboratable):
    """Everything that advances with the network clock enable."""

    def __init__(self, cfg, schedule, fault=None, checks=False, outputs=False):
        self.cfg, self.schedule, self.fault = cfg, schedule, fault
        self.checks = checks
        self.outputs = Signal(data.ArrayLayout(signed(cfg.fmt.width), cfg.layers[-1])) \
            if outputs else None
        self.geo = NetworkGeometry(cfg, schedule)
        fmt = cfg.fmt
        z1 = cfg.z[0]
        self.beats = self.geo.beats_per_sample
        self.pixels = Signal(data.ArrayLayout(unsigned(8), z1))
        self.label = Signal(range(max(cfg.classes, 2)))
        self.lr = Signal(LR_BITS)
        self.update = Signal()
        self.need_input = Signal()
        self.pred_valid = Signal()
        self.pred = Signal(range(max(cfg.classes, 2)))
        self.clocks = Signal(CLOCK_BITS)
        self.ro_junction = Signal(range(self.geo.ro_junctions))
        self.ro_bias = Signal()
        self.ro_row = Signal(range(self.geo.ro_rows))
        self.ro_lane = Signal(range(self.geo.ro_lanes))
        self.ro_data = Signal(signed(fmt.width))
        self.ce = Signal()
        self.ro_mode = Signal()
        self.resumed = Signal()
        self.ld_en = Signal()
        self.ld_data = Signal(signed(fmt.width))

    def elaborate(self, platform):
        m = Module()
        cfg, geo, sched = self.cfg, self.geo, self.schedule
        fmt = cfg.fmt
        w = fmt.width
        L, J, C = cfg.L, cfg.junctions, cfg.cycle
        cc = sched.clocks_per_cycle

        c = Signal(range(max(cc, 2)), name="phase")
        active = Signal(name="active")
        cycle_end = Signal(name="cycle_end")
        tmax = geo.U[1] + 2
        t = Signal(range(tmax + 1), name="jcycle")
        m.d.comb += [active.eq(c < C), cycle_end.eq(c == cc - 1)]
        m.d.sync += c.eq(Mux(cycle_end, 0, c + 1))
        with m.If(cycle_end & (t < tmax)):
            m.d.sync += t.eq(t + 1)
        m.d.sync += self.clocks.eq(self.clocks + 1)

        # per-sample info (label, learning rate, update flag), K_info slots
        K = geo.K_info
        info_label = [Signal(range(max(cfg.classes, 2)), name=f"info_label{i}") for i in range(K)]
        info_k = [Signal(LR_BITS, name=f"info_k{i}") for i in range(K)]
        info_update = [Signal(name=f"info_update{i}") for i in range(K)]
        in_slot, _ = _wrap_counter(m, cycle_end, K, "info_in")
        with m.If(c == 0):
            for i in range(K):
                with m.If(in_slot == i):
                    m.d.sync += [info_label[i].eq(self.label), info_k[i].eq(self.lr),
                                 info_update[i].eq(self.update)]

        # layer memories
        mems = {}
        ports = [dict() for _ in range(J + 1)]        # ports[j] for junction j
        for h in range(L - 1):
            jn = h + 1                                  # junction reading this layer
            zr, Rr = geo.z[jn], geo.R[jn]
            banks = [Memory(shape=_shape(geo.act_shape[h]), depth=geo.K_act[h] * Rr, init=[])
                     for _ in range(zr)]
            mems[f"act{h}"] = banks
            ports[jn]["left_ff"] = [b.read_port() for b in banks]
            ports[jn]["left_up"] = [b.read_port() for b in banks]
            wr = [b.write_port() for b in banks]
            if h == 0:
                self._input_wr = wr
            else:
                ports[h]["act_wr"] = wr
        for h in range(1, L - 1):
            jn = h + 1
            zr, Rr = geo.z[jn], geo.R[jn]
            aw = geo.acc_width[h]
            banks = [Memory(shape=signed(aw), depth=geo.K_acc[h] * Rr, init=[])
                     for _ in range(zr)]
            mems[f"acc{h}"] = banks
            wr = [b.write_port() for b in banks]
            ports[jn]["acc_wr"] = wr
            ports[jn]["acc_rmw"] = [b.read_port(transparent_for=(p,)) for b, p in zip(banks, wr)]
            ports[h]["acc_nat"] = [b.read_port() for b in banks]
            da = [Memory(shape=_shape(geo.da_shape), depth=geo.K_da[h] * geo.NR[h], init=[])
                  for _ in range(geo.q[h])]
            mems[f"da{h}"] = da
            ports[h]["da_wr"] = [b.write_port() for b in da]
            ports[h]["da_rd"] = [b.read_port() for b in da]
        h = L - 1
        dout = [Memory(shape=signed(w), depth=geo.K_da[h] * geo.NR[h], init=[])
                for _ in range(geo.q[h])]
        mems["dout"] = dout
        ports[J]["dout_wr"] = [b.write_port() for b in dout]
        ports[J]["dout_rd"] = [b.read_port() for b in dout]
        for name, banks in mems.items():
            for i, b in enumerate(banks):
                m.submodules[f"{name}_{i}"] = b

        # input load: beat r (phase r < beats) fills row r of every input bank
        in_slot0, _ = _wrap_counter(m, cycle_end, geo.K_act[0], "act0_in")
        m.d.comb += self.need_input.eq(c < self.beats)
        R1 = geo.R[1]
        addr, en = in_slot0 * R1 + c, c < self.beats
        # The write lands one clock after its beat when the last beat's write
        # still falls inside the junction cycle (fewer beats than clocks, i.e.
        # fan-out > 1 or slack clocks): the phase counter then drives one
        # address register instead of every bank's write port (on board@64 it
        # was the critical path).  The loaded copy is first read in a later
        # junction cycle either way.
        late = self.beats < cc
        if late:
            addr, en = _Junction._reg(m, addr, "in_addr"), _Junction._reg(m, en, "in_en")
        for b, wp in enumerate(self._input_wr):
            px = self.pixels[b]
            code = (px << (fmt.frac_bits - 8)) if fmt.frac_bits >= 8 else \
                (px >> (8 - fmt.frac_bits))
            if late:
                code = _Junction._reg(m, code, f"in_px{b}")
            m.d.comb += [wp.addr.eq(addr), wp.data.eq(code), wp.en.eq(en)]

        # load port: the write lands one clock after its address, from
        # registered row and data (ungated "ro" domain, like the write ports)
        ld_row = Signal.like(self.ro_row, name="ld_row")
        ld_data = Signal.like(self.ld_data, name="ld_data_r")
        m.d.ro += [ld_row.eq(self.ro_row), ld_data.eq(self.ld_data)]
        ctl = {"c": c, "active": active, "cycle_end": cycle_end, "t": t,
               "info_label": info_label, "info_k": info_k, "info_update": info_update,
               "pred_valid": self.pred_valid, "pred": self.pred,
               "outputs": self.outputs, "ce": self.ce, "ro_mode": self.ro_mode,
               "resumed": self.resumed,
               "load": {"en": self.ld_en, "row": ld_row, "data": ld_data}}
        ro_sel = []
        for j in range(1, J + 1):
            ro = {"row": self.ro_row, "lane": self.ro_lane, "junction": self.ro_junction,
                  "bias": self.ro_bias,
                  "w_data": Signal(signed(w), name=f"ro_w{j}"),
                  "b_data": Signal(signed(w), name=f"ro_b{j}")}
            jn = _Junction(cfg, geo, j, ctl, ports[j], ro, self.fault, self.checks)
            jn.make_ports()
            m.submodules[f"junction{j}"] = jn
            ro_sel.append(ro)
        sel_j = Signal.like(self.ro_junction, name="ro_j")
        sel_b = Signal(name="ro_isbias")
        m.d.ro += [sel_j.eq(self.ro_junction), sel_b.eq(self.ro_bias)]
        m.d.comb += self.ro_data.eq(Mux(sel_b, Array([r["b_data"] for r in ro_sel])[sel_j],
                                        Array([r["w_data"] for r in ro_sel])[sel_j]))
        return m


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
        flow passes a vendor global buffer here (ECP5 ``DCCA``: the enable
        rides the clock network instead of fabric routing); ``None`` (the
        default, and what simulation uses) connects it directly.
    fault : dict, optional
        Deliberate defect, only to prove the equivalence tests can fail:
        ``{"sigma": i}`` flips bit 4 of activation-table entry ``i`` in the
        ROMs; ``{"update": (j, k)}`` flips bit 0 of the weight change of lane
        ``k`` of junction ``j``.

    Members
    -------
    i : In(stream.Signature(beat))
        Input beats, ``beats_per_sample`` per sample: beat ``r`` carries pixels
        ``r*z1 .. r*z1+z1-1`` (row ``r`` of every input bank); ``label``,
        ``lr`` (learning-rate exponent) and ``update`` (0 = evaluate only) are
        taken from beat 0.  When no beat is offered while one is needed, the
        whole network stalls (global clock enable), so the schedule in junction
        cycles never changes; after a stall it resumes two clocks after it
        could (they re-read the weight and bias banks, whose read ports serve
        the read-out during the stall).
    o : Out(stream.Signature(result))
        One ``prediction`` per sample, in order (plus ``clock``, the enabled
        clock it was formed in, and with ``outputs=True`` the output
        activations).  A full output also stalls.
    ro_junction, ro_bias, ro_row, ro_lane : In
        Read-out address: weight ``w[row*z + lane]`` (or bias bank ``lane``,
        row ``row``) of junction ``ro_junction + 1``; ``ro_data`` one clock later.
        Valid while the network is stalled (waiting for input with
        ``i.valid`` low, or for ``o.ready``), e.g. before the first sample or
        after the last: the read-out shares the datapath's weight and bias read
        ports (one read port per bank instead of two), which re-read their
        interrupted address before the network resumes.
    ld_en, ld_data : In
        Load port: while ``ld_en`` is high, ``ld_data`` is written to the
        weight or bias at the read-out address, one clock later (from
        registered address and data; a read-out of that address in the next
        clock already sees it).  Write the network only while it is stalled,
        e.g. before the first sample or between runs.
    clocks : Out(48)
        Enabled clocks so far (the network's own time base).

    Timing: ``schedule.clocks_per_cycle`` clocks per sample in steady state;
    the prediction of sample ``n`` enters the output buffer in enabled clock
    ``(n + F[J]) * clocks_per_cycle + C + WRITE_LATENCY`` (its ``clock`` field).
    """

    def __init__(self, cfg, schedule="fast", fault=None, outputs=False, checks=False,
                 enable_buffer=None):
        self.cfg = cfg
        self.fault = fault
        self.enable_buffer = enable_buffer
        self.with_outputs = outputs
        self.checks = checks
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

    def elaborate(self, platform):
        m = Module()
        m.domains.ro = cd_ro = ClockDomain("ro", local=True)
        m.d.comb += [cd_ro.clk.eq(ClockSignal("sync")), cd_ro.rst.eq(ResetSignal("sync"))]
        core = _Core(self.cfg, self.schedule, self.fault, self.checks, self.with_outputs)
        ce = Signal(name="ce")
        # the clock enable reaches every register and memory port of the core:
        # on an FPGA it is worth a global buffer (see ``enable_buffer``)
        ce_core = ce if self.enable_buffer is None else self.enable_buffer(m, ce)
        m.submodules.core = EnableInserter({"sync": ce_core})(core)

        pending = Signal(name="out_pending")
        result = Signal(self.result_layout, name="out_result")
        space = ~pending | self.o.ready
        # The core runs in the third of three clocks in which it can: after a
        # stall, the weight and bias read ports (which serve the read-out
        # while the core is stalled, ``ro_mode``) go back to the datapath's
        # address and re-read it (see _Junction).
        want = Signal(name="want")
        ran1 = Signal(name="want_d1")
        ran2 = Signal(name="want_d2")
        # ro_mode is ~want_d1, kept as a register of its own so the read
        # address selects come straight from a flip-flop
        ro_mode = Signal(name="ro_mode", init=1)
        m.d.sync += [ran1.eq(want), ran2.eq(ran1), ro_mode.eq(~want)]
        m.d.comb += [
            want.eq((~core.need_input | self.i.valid) & space),
            ce.eq(want & ran1 & ran2),
            self.i.ready.eq(core.need_input & space & ran1 & ran2),
            core.ro_mode.eq(ro_mode),
            core.resumed.eq(ran2),
            core.pixels.eq(self.i.payload.pixels),
            core.label.eq(self.i.payload.label),
            core.lr.eq(self.i.payload.lr),
            core.update.eq(self.i.payload.update),
            self.o.valid.eq(pending),
            self.o.payload.eq(result),
            self.clocks.eq(core.clocks),
            core.ro_junction.eq(self.ro_junction),
            core.ro_bias.eq(self.ro_bias),
            core.ro_row.eq(self.ro_row),
            core.ro_lane.eq(self.ro_lane),
            core.ce.eq(ce_core),
            core.ld_en.eq(self.ld_en),
            core.ld_data.eq(self.ld_data),
            self.ro_data.eq(core.ro_data),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += pending.eq(0)
        with m.If(ce & core.pred_valid):
            m.d.sync += [pending.eq(1), result.prediction.eq(core.pred),
                         result.clock.eq(core.clocks)]
            if self.with_outputs:
                m.d.sync += result.outputs.eq(core.outputs)
        return m
