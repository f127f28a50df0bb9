"""The edge lane: one weight read feeding the FF, BP and UP products of three
different samples (SPEC sections 4-5), and the way of the BP products into
the accumulator banks.

Stage numbers are those of ``gen/geometry.py`` (``S_SEL`` ... ``S_WR``), counted
from the junction's issue stage S0.
"""

from amaranth.hdl import Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..gen.geometry import S_FMUL, S_SEL, S_WMUL
from .arith import check_fmt, check_int, round_mul, sat_value
from .interleaver import Rotator
from .pipeline import delay, reg

__all__ = ["EdgeLane", "BPAccumulate"]


class EdgeLane(wiring.Component):
    """One lane of a junction: the edge it processes in a clock, for three
    samples at once.

    The weight row is read late (issued at ``S_DW``), so the read-modify-write
    loop of a weight is one clock: the read port is transparent and the
    update ``w + dw`` is written back in the clock the read returns (``S_W``).
    The same (pre-update) weight is the operand of the FF product ``a * w``
    and the BP product ``w * d``.  Every multiplier has registered operands
    and a registered exact product (:func:`~.arith.round_mul` with two stages:
    :class:`~.arith.RoundMul`'s pipeline, inline, so that a junction of 128
    lanes does not elaborate 384 multiplier modules).

    Parameters
    ----------
    fmt : QFormat
    act_shape : shape-like
        Storage shape of the left layer's activations.
    db_shape : shape-like
        Shape of the bias step ``db`` (the UP product's first operand).
    bp : bool
        Build the BP product (junctions whose left layer is hidden).
    where : tuple, optional
        ``(junction, lane)``, for names and diagnostics only.

    Members
    -------
    a_ff : In(act_shape)
        Left activation of the FF sample, at ``S_SEL``.
    a_up : In(act_shape)
        Left activation of the UP sample, at ``S_SEL``.
    db : In(db_shape)
        Bias step of the lane's right neuron, at ``S_WMUL - 1`` (``S_BIAS``).
    d : In(signed(w))
        Delta of the lane's right neuron, at ``S_FMUL - 1`` (``S_W``).
    w : In(signed(w))
        The weight read, at ``S_W``.
    w_new : Out(signed(w))
        ``sat(w + mul(db, a_up))`` at ``S_W`` (combinational from ``w``).
    pf : Out(signed(w))
        ``mul(a_ff, w)`` at ``S_TREE``.
    pb : Out(signed(w)), with ``bp``
        ``mul(w, d)`` at ``S_TREE``.
    """

    def __init__(self, fmt, act_shape, db_shape, bp, where=None):
        check_fmt(fmt, "EdgeLane")
        self.fmt, self.act_shape, self.db_shape, self.bp = fmt, act_shape, db_shape, bp
        self.where = where
        w = signed(fmt.width)
        members = {"a_ff": In(act_shape), "a_up": In(act_shape), "db": In(db_shape),
                   "d": In(w), "w": In(w), "w_new": Out(w), "pf": Out(w)}
        if bp:
            members["pb"] = Out(w)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        fmt = self.fmt
        # UP: dw = mul(db, a_up): operands registered at S_WMUL, exact product
        # at S_DW, rounded at S_W.  ``db`` (and BP's ``d``) come from the right
        # neuron, which several lanes share: each lane keeps its own copy of
        # the operand register (``keep``), else Yosys merges the copies and one
        # register drives multipliers all over the chip (board@128's and
        # board@64's ECP5 critical path, docs/synthesis.md)
        dw = round_mul(m, reg(m, self.db, "db_lane", keep=True),
                       delay(m, self.a_up, S_WMUL - S_SEL, "a_up"), fmt, 2, "up_prod")
        m.d.comb += self.w_new.eq(self.weight_update(self.w, dw))
        # the weight read registered as the operand of both products (S_FMUL)
        w_op = reg(m, self.w, "w_op")
        a_ff = delay(m, self.a_ff, S_FMUL - S_SEL, "a_ff")
        m.d.comb += self.pf.eq(round_mul(m, a_ff, w_op, fmt, 2, "ff_prod"))
        if self.bp:
            d = reg(m, self.d, "d_lane", keep=True)
            m.d.comb += self.pb.eq(round_mul(m, w_op, d, fmt, 2, "bp_prod"))
        return m

    def weight_update(self, w, dw):
        """The written-back weight: ``sat(w + dw)``."""
        return sat_value(w + dw, self.fmt)


class BPAccumulate(wiring.Component):
    """The BP products of a clock into the left layer's accumulator banks:
    rotated from lanes to banks (bank dither), registered, and added to the
    bank's running sum (``acc += p``; the first sweep of a cycle starts from 0).

    Parameters
    ----------
    width : int
        Product width ``w``.
    acc_width : int
        Accumulator width (``w + bitlen(fo)``: the exact sum of ``fo`` products).
    z : int
        Lanes (= banks).
    dithered : bool
        The junction's pattern rotates banks (else the rotator is left out).

    Members
    -------
    pb : In(signed(width)).array(z)
        BP products in lane order, at ``S_TREE``.
    undither : In(range(z))
        Rotation lanes -> banks, at ``S_TREE``.
    old : In(signed(acc_width)).array(z)
        Each bank's accumulator read (issued at ``S_TREE``), at ``S_ACC``.
    first : In(1)
        First sweep of the junction cycle, at ``S_ACC``.
    new : Out(signed(acc_width)).array(z)
        Each bank's new sum, at ``S_ACC`` (combinational from ``old``).
    """

    def __init__(self, width, acc_width, z, dithered):
        check_int(width, "width", "BPAccumulate")
        check_int(acc_width, "acc_width", "BPAccumulate", width)
        check_int(z, "z", "BPAccumulate")
        self.width, self.z, self.dithered = width, z, dithered
        super().__init__({
            "pb": In(signed(width)).array(z),
            "undither": In(range(max(z, 2))),
            "old": In(signed(acc_width)).array(z),
            "first": In(1),
            "new": Out(signed(acc_width)).array(z),
        })

    def elaborate(self, platform):
        m = Module()
        pb = list(self.pb)
        if self.dithered:
            m.submodules.to_banks = rot = Rotator(signed(self.width), self.z)
            m.d.comb += rot.amount.eq(self.undither)
            for k in range(self.z):
                m.d.comb += rot.i[k].eq(pb[k])
            pb = list(rot.o)
        for b in range(self.z):
            p = reg(m, pb[b], f"pbank{b}")                                   # S_ACC
            m.d.comb += self.new[b].eq(Mux(self.first, 0, self.old[b]) + p)
        return m
