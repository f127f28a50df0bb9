"""The right neurons of a junction: the forward finish (adder tree, span
accumulator with the bias, saturation, activation ROM), the backward finish
(the derivative product ``d = mul(a', sat(acc))`` or the output delta, the
bias step and the bias update) and, at the output layer, the delta ``a - y``
and the running argmax.

A junction finishes ``q`` right neurons per clock (``q = max(1, N/C)``);
each unit here handles all ``q``.  Stage numbers are those of
``gen/geometry.py``, counted from the junction's issue stage S0.
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..gen.geometry import LR_BITS, S_BIAS, S_DB, S_FMUL, S_SEL, S_SUM, S_WR, bits
from .arith import ActivationROM, BiasStep, RoundMul, Saturate, check_fmt, check_int, sat_value
from .pipeline import delay, reg, tree_levels, tree_sum

__all__ = ["NeuronUnit", "DeltaUnit", "OutputUnit"]


class NeuronUnit(wiring.Component):
    """Forward finish of ``q`` right neurons: ``s = sat(b + sum of fi
    products)``, ``a = sigma(s)``, ``a' = sigma'(s)`` (``_FixedOps.ff``).

    Each neuron's ``lanes`` products of a clock go through a balanced adder
    tree in two registered halves; a neuron whose ``fi`` edges span several
    clocks (``span > 1``, then ``q = 1``) adds the clocks' partial sums in a
    span accumulator started from the bias.  The sum is exact; it is
    saturated once and looked up in the activation ROM.

    Parameters
    ----------
    fmt : QFormat
    table : ActivationTable
        The ROMs' contents (``cfg.activation_table()``).
    q : int
        Neurons finished per clock.
    lanes : int
        Products per neuron and clock (``min(fi, z)``).
    span : int
        Clocks per neuron (``max(1, C / N)``).
    fi : int
        Fan-in (sizes the span accumulator).
    derivative : bool
        Also give ``a'`` (hidden layers).

    Members
    -------
    pf : In(signed(w)).array(q * lanes)
        The FF products of a clock, neuron ``i`` from ``pf[i*lanes:(i+1)*lanes]``,
        at ``S_TREE``.
    b : In(signed(w)).array(q)
        The biases, at ``S_BIAS``.
    first_span, accumulate : In(1)
        At ``S_SUM``: the first clock of a neuron's span; a valid FF clock
        (the span accumulator advances).
    s, a : Out(signed(w)).array(q)
        ``s`` and ``sigma(s)`` at ``S_WR`` (valid in the span's last clock).
    da : Out(signed(w)).array(q), with ``derivative``
        ``sigma'(s)`` at ``S_WR``.

    Latency: ``S_WR - S_TREE = 4`` clocks from the products.
    """

    def __init__(self, fmt, table, q, lanes, span, fi, derivative):
        check_fmt(fmt, "NeuronUnit")
        for name, v in (("q", q), ("lanes", lanes), ("span", span), ("fi", fi)):
            check_int(v, name, "NeuronUnit")
        if span > 1 and q != 1:
            raise ValueError(f"NeuronUnit: multi-clock neurons (span {span}) come one per clock, "
                             f"not q={q}")
        self.fmt, self.table, self.q, self.lanes = fmt, table, q, lanes
        self.span, self.fi, self.derivative = span, fi, derivative
        w = signed(fmt.width)
        members = {"pf": In(w).array(q * lanes), "b": In(w).array(q),
                   "first_span": In(1), "accumulate": In(1),
                   "s": Out(w).array(q), "a": Out(w).array(q)}
        if derivative:
            members["da"] = Out(w).array(q)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        q, lanes, w = self.q, self.lanes, self.fmt.width
        m.submodules.rom = rom = ActivationROM(self.table, ports=q, derivative=self.derivative)
        first_half = (bits(lanes) + 1) // 2
        for i in range(q):
            # S_TREE: first half of the tree's levels; S_TREE + 1: the rest
            part = tree_levels(self.pf[i * lanes:(i + 1) * lanes], first_half)
            part = [reg(m, v, f"tree{i}_{n}") for n, v in enumerate(part)]
            tree = reg(m, tree_sum(part), f"sum{i}")                           # S_SUM
            bias = delay(m, self.b[i], S_SUM - S_BIAS, f"bias{i}")
            if self.span > 1:
                # the span's partial sums plus the bias, exact
                span_acc = Signal(signed(w + bits(self.fi + 2) + 1), name="spanacc")
                total = Mux(self.first_span, bias, span_acc) + tree
                with m.If(self.accumulate):
                    m.d.sync += span_acc.eq(total)
            else:
                total = tree + bias
            # S_SUM: the total saturated and looked up (the ROM's read register
            # is S_SAT); S_WR: the ROM's output registered, so that a block
            # RAM's clock-to-out does not lead into the right layer's bank
            # writes (board@128's ECP5 critical path, docs/synthesis.md)
            m.submodules[f"sat{i}"] = sat = Saturate(len(total), self.fmt)
            m.d.comb += [sat.i.eq(total), rom.s[i].eq(sat.o),
                         self.s[i].eq(delay(m, sat.o, S_WR - S_SUM, f"s{i}"))]    # S_WR
            m.d.sync += self.a[i].eq(rom.a[i])
            if self.derivative:
                m.d.sync += self.da[i].eq(rom.da[i])
        return m


class DeltaUnit(wiring.Component):
    """Backward finish of ``q`` right neurons and their bias update.

    Hidden right layer: ``d = mul(a', sat(acc))`` (``_FixedOps.bp``) from the
    neuron's BP accumulator (``acc``, the bank block ``blk`` holding it) and
    its stored derivative.  Output layer: ``d`` is the stored delta ``a - y``.
    Then the bias step ``db = round_half_up(-d * 2**-k)`` and the bias
    update ``b + db`` (``_FixedOps.up``).

    Parameters
    ----------
    fmt : QFormat
    q : int
        Neurons per clock.
    acc_banks : int or None
        Hidden right layer: BP accumulator banks (``z`` of the next
        junction; neuron ``i`` is in bank ``bb * q + i`` of block ``bb``).
        ``None``: output layer.
    acc_width : int
        Accumulator width (hidden layers).
    da_shape : shape-like
        Storage shape of the derivatives (hidden layers).
    copies : int
        Copies of each neuron's ``db`` and ``d`` registers (the lanes' operand
        sources; ``NetworkGeometry.operand_copies``): deliberate duplicates,
        kept apart by synthesis, so that each drives a few lanes only.

    Members
    -------
    acc : In(signed(acc_width)).array(acc_banks); blk : In(range(acc_banks // q));
    da : In(da_shape).array(q)
        Hidden layers, at ``S_SEL``: the accumulator banks' and derivative
        banks' read data, and the block holding this clock's neurons.
    delta : In(signed(w)).array(q)
        Output layer, at ``S_SEL``: the stored deltas ``a - y``.
    k : In(LR_BITS)
        Learning-rate exponent, at ``S_DB``.
    b : In(signed(w)).array(q)
        The biases read, at ``S_BIAS``.
    b_new : Out(signed(w)).array(q)
        ``sat(b + db)`` at ``S_BIAS`` (combinational from ``b``).
    db : Out(signed(w + 1)).array(q * copies)
        The bias step, at ``S_BIAS``: copy ``c`` of neuron ``i`` at
        :meth:`copy_index` ``(i, c)`` = ``i * copies + c``.
    d : Out(signed(w)).array(q * copies)
        The delta, at ``S_FMUL - 1`` (when the lanes register it for BP), in
        the same order.
    """

    def __init__(self, fmt, q, acc_banks=None, acc_width=None, da_shape=None, copies=1):
        check_fmt(fmt, "DeltaUnit")
        check_int(q, "q", "DeltaUnit")
        check_int(copies, "copies", "DeltaUnit")
        if acc_banks is not None:
            check_int(acc_banks, "acc_banks", "DeltaUnit")
            check_int(acc_width, "acc_width", "DeltaUnit")
            if acc_banks % q:
                raise ValueError(f"DeltaUnit: {acc_banks} accumulator banks do not hold q={q} "
                                 f"neurons per block")
        self.fmt, self.q, self.acc_banks, self.copies = fmt, q, acc_banks, copies
        w = signed(fmt.width)
        n = q * copies
        members = {"k": In(LR_BITS), "b": In(w).array(q), "b_new": Out(w).array(q),
                   "db": Out(signed(fmt.width + 1)).array(n), "d": Out(w).array(n)}
        if acc_banks is None:
            members["delta"] = In(w).array(q)
        else:
            members.update({"acc": In(signed(acc_width)).array(acc_banks),
                            "blk": In(range(max(acc_banks // q, 2))),
                            "da": In(da_shape).array(q)})
        super().__init__(members)

    def copy_index(self, i, c):
        """Where copy ``c`` of neuron ``i``'s ``db`` and ``d`` is in the arrays."""
        return i * self.copies + c

    def elaborate(self, platform):
        m = Module()
        fmt, q = self.fmt, self.q
        for i in range(q):
            if self.acc_banks is None:
                d = delay(m, self.delta[i], S_DB - S_SEL, f"d{i}")             # S_DB
            else:
                blocks = self.acc_banks // q
                sel = Array([self.acc[bb * q + i] for bb in range(blocks)])[self.blk]
                acc_r = reg(m, sat_value(sel, fmt), f"accsat{i}")              # S_DMUL
                m.submodules[f"deriv{i}"] = mul = RoundMul(fmt, 2, self.da[i].shape(),
                                                           signed(fmt.width))
                m.d.comb += [mul.a.eq(reg(m, self.da[i], f"da{i}")), mul.b.eq(acc_r)]
                d = mul.o                                                      # S_DB
            m.submodules[f"step{i}"] = step = BiasStep(fmt)
            m.d.comb += [step.d.eq(d), step.k.eq(self.k)]
            # S_BIAS: the bias step; S_FMUL - 1: the delta, delayed; the last
            # register of each is copied (kept apart: ``keep``) per group of lanes
            dd = delay(m, d, S_FMUL - 2 - S_DB, f"dd{i}")
            keep = self.copies > 1
            for c in range(self.copies):
                sfx = "" if c == 0 else f"_c{c}"
                db = reg(m, step.o, f"db{i}{sfx}", keep=keep)                   # S_BIAS
                m.d.comb += [self.db[self.copy_index(i, c)].eq(db),
                             self.d[self.copy_index(i, c)].eq(
                                 reg(m, dd, f"d{i}_lanes{sfx}", keep=keep))]
                if c == 0:
                    m.d.comb += self.b_new[i].eq(sat_value(self.b[i] + db, fmt))
        return m


class OutputUnit(wiring.Component):
    """The output layer's deltas and prediction.

    For each output neuron as it is finished: the delta ``sat(a - y)`` (one-hot
    target ``y``: 1.0 on the label, 0 elsewhere and on padding) to be stored
    for the UP, and a running argmax of the saturated pre-activations ``s``
    over the real classes (the lowest index wins a tie).  The prediction is
    complete with the last row.

    Parameters
    ----------
    fmt : QFormat
    q : int
        Neurons per clock; neuron ``row * q + i`` on input ``i``.
    rows : int
        Rows (clocks with a valid write) per sample: ``N / q``.
    classes : int
        Real classes (outputs beyond are padding).
    outputs : int or None
        Also hold the ``outputs`` activations of the sample (``result.outputs``).

    Members
    -------
    valid : In(1); row : In(range(rows)); label : In(range(classes))
        At ``S_WR``: a neuron row is written, which, the sample's label.
    s, a : In(signed(w)).array(q)
        At ``S_WR``.
    delta : Out(signed(w)).array(q)
        ``sat(a - y)``, combinational.
    pred_valid : Out(1); pred : Out(range(classes))
        One clock after the last row: the prediction.
    act : Out(ArrayLayout(signed(w), outputs)), with ``outputs``
        The output activations, complete with ``pred_valid``.
    """

    def __init__(self, fmt, q, rows, classes, outputs=None):
        check_fmt(fmt, "OutputUnit")
        for name, v in (("q", q), ("rows", rows), ("classes", classes)):
            check_int(v, name, "OutputUnit")
        self.fmt, self.q, self.rows, self.classes, self.outputs = fmt, q, rows, classes, outputs
        w = signed(fmt.width)
        cls = range(max(classes, 2))
        members = {"valid": In(1), "row": In(range(max(rows, 2))), "label": In(cls),
                   "s": In(w).array(q), "a": In(w).array(q), "delta": Out(w).array(q),
                   "pred_valid": Out(1), "pred": Out(cls)}
        if outputs:
            members["act"] = Out(data.ArrayLayout(w, outputs))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        fmt, q, w, classes = self.fmt, self.q, self.fmt.width, self.classes
        best_s = Signal(signed(w), name="best_s")
        best_i = Signal(range(max(classes, 2)), name="best_i")
        cur_s, cur_i, have = best_s, best_i, self.row != 0
        for i in range(q):
            neuron = self.row * q + i
            y = Mux(neuron == self.label, fmt.one, 0)
            m.d.comb += self.delta[i].eq(sat_value(self.a[i] - y, fmt))
            take = (neuron < classes) & (~have | (self.s[i] > cur_s))
            ns = Signal(signed(w), name=f"am_s{i}")
            ni = Signal(range(max(classes, 2)), name=f"am_i{i}")
            nh = Signal(name=f"am_h{i}")
            m.d.comb += [ns.eq(Mux(take, self.s[i], cur_s)), ni.eq(Mux(take, neuron, cur_i)),
                         nh.eq(have | take)]
            cur_s, cur_i, have = ns, ni, nh
        with m.If(self.valid):
            m.d.sync += [best_s.eq(cur_s), best_i.eq(cur_i)]
        if self.outputs:
            for i in range(q):
                for r in range(i, self.outputs, q):
                    with m.If(self.valid & (self.row == r // q)):
                        m.d.sync += self.act[r].eq(self.a[i])
        last = self.valid & (self.row == self.rows - 1)
        m.d.sync += self.pred_valid.eq(last)
        with m.If(last):
            m.d.sync += self.pred.eq(cur_i)
        return m
