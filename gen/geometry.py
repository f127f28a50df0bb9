"""The plain numbers of the generated hardware, one definition each.

The pipeline stage table, the write latency, the schedule the hardware
implements, the size and copy count of every memory, the multipliers and their
operand widths, the widths of the network's ports, clocks per sample, the drain
and the clock stamp of a prediction.  ``hdl/`` builds the hardware from these
numbers; the estimate (``gen/estimate.py``), the generation flow, the compiled
simulation and the command line read them from here, so none of them
re-derives a number the hardware defines.

This module is part of the network description: it imports neither Amaranth
nor numba (``sparse-edge check`` runs without either).  Widths are
:class:`IntShape` values (``width``, ``signed``) that ``hdl/`` turns into
Amaranth shapes.
"""

from dataclasses import dataclass

from .config import MAX_ETA_EXP
from .schedule import Schedule

__all__ = [
    "S_SEL", "S_DMUL", "S_DRND", "S_DB", "S_BIAS", "S_WMUL", "S_DW", "S_W", "S_FMUL",
    "S_PRND", "S_TREE", "S_ACC", "S_SUM", "S_SAT", "S_WR", "STAGES",
    "WRITE_LATENCY", "LANES_PER_OPERAND_COPY", "BANKS_PER_ADDRESS_COPY", "LANES_PER_ROW_ROM",
    "groups_of", "row_rom_groups", "bank_groups", "several_bank_groups", "K_MAX", "LR_BITS",
    "CLOCK_BITS", "REFERENCE_OVERHEAD", "HW_SCHEDULES",
    "bits", "IntShape", "hardware_schedule", "clocks_per_sample",
    "reference_clocks_per_sample", "NetworkGeometry",
]

# -- the pipeline of a junction ---------------------------------------------------------
# Stage ``Sk`` is ``k`` clocks after the issue stage S0, in which a junction
# reads its left activations (the FF and UP copies, interleaved) and, in
# natural order, the right layer's delta inputs.  hdl/junction.py builds its
# pipeline from these numbers; docs/hardware.md explains them.
S_SEL = 1    # memory read data; bank rotation to lanes; BP accumulator block select, sat
S_DMUL = 2   # derivative product a' * sat(acc), exact (multiplier output register)
S_DRND = 3   # derivative rounded and saturated: d
S_DB = 4     # bias step db = round(-d * 2**-k); bias read issued
S_BIAS = 5   # bias write-back; weight-update operands registered per lane
S_WMUL = 6   # weight-update product db * a, exact
S_DW = 7     # weight-update product rounded and saturated: dw; weight read issued
S_W = 8      # weight write-back; FF and BP operands registered per lane
S_FMUL = 9   # FF product a * w and BP product w * d, exact
S_PRND = 10  # FF and BP products rounded and saturated
S_TREE = 11  # adder tree, first half; BP products rotated to banks; accumulator read
S_ACC = 12   # BP accumulator write-back; adder tree, second half
S_SUM = 13   # span accumulator (the bias folded in); saturation: s; activation ROM read issued
S_SAT = 14   # activation ROM read data (registered at S_WR)
S_WR = 15    # activation, derivative and output-delta writes; argmax

#: ``{k: name}`` of every stage after the issue stage (for reports).
STAGES = {v: k for k, v in sorted(globals().items()) if k.startswith("S_")}

#: Clocks from a junction's issue stage to its last memory write (stage S_WR):
#: everything a junction cycle writes is readable ``C + WRITE_LATENCY`` clocks
#: after the cycle starts.
WRITE_LATENCY = S_WR
#: Edge lanes fed by one copy of a right neuron's UP and BP operand registers
#: (the bias step ``db`` at ``S_BIAS``, the delta ``d`` at ``S_W``): a neuron
#: whose ``fi`` edges are worked by many lanes has ``ceil(lanes / 8)`` copies,
#: so no register drives lanes all over the chip (one ``db`` register to 64
#: lanes was the board@64 ECP5 critical path, docs/synthesis.md).
LANES_PER_OPERAND_COPY = 8
#: Weight (bias) banks per copy of the datapath's row registers in a
#: junction's ``WeightBanks`` (read row, held row = write-back row, write
#: enable): one shared copy reached all of a junction's banks, the board@64
#: ECP5 critical path after the operand copies (docs/synthesis.md).  The
#: ``InputLoader`` copies its next write address and enable per as many input
#: banks.
BANKS_PER_ADDRESS_COPY = 8
#: Lanes per row-address ROM of a junction's ``Interleaver``: each group of
#: lanes has its own ROM and its own registered read address, so no one
#: address reaches the whole ``C x z*log2(R)`` ROM (board@64 on the ECP5:
#: the phase counter -> a 256-bit LUT ROM spread over the die, 13.8 ns of
#: one net).
LANES_PER_ROW_ROM = 8


def groups_of(n, size):
    """``range``s of at most ``size`` consecutive indices covering ``0 .. n-1``
    (the last one may be shorter)."""
    return [range(k, min(n, k + size)) for k in range(0, n, size)]


def row_rom_groups(z):
    """The lanes of each row-address ROM: groups of at most
    :data:`LANES_PER_ROW_ROM` lanes covering ``0 .. z-1``."""
    return groups_of(z, LANES_PER_ROW_ROM)


def bank_groups(n):
    """The banks sharing one copy of a row (address) register: groups of at
    most :data:`BANKS_PER_ADDRESS_COPY` of the ``n`` banks."""
    return groups_of(n, BANKS_PER_ADDRESS_COPY)


def several_bank_groups(n):
    """``n`` banks make more than one :func:`bank_groups` group: copies of a
    register shared by them are worth keeping apart in synthesis (with one
    group a small design lets Yosys merge them, and keeps its logic cells)."""
    return len(bank_groups(n)) > 1


#: Largest learning-rate exponent ``k`` (eta = 2**-k) the hardware shifts by.
K_MAX = MAX_ETA_EXP
#: Bits of the learning-rate field of an input beat (and of a sample's info slot).
LR_BITS = K_MAX.bit_length()
#: Clock edges from a read-out address (``ro_junction``, ``ro_bias``,
#: ``ro_row``, ``ro_lane``) to its ``ro_data``: each group of banks' copy of
#: the row (one shared row net reached every bank of every junction), the
#: bank read register, then a register behind each junction's lane select
#: (the select of a whole chip's banks into one word was a critical path of
#: its own on the ECP5).
READOUT_LATENCY = 3
#: Bits of the network's enabled-clock counter and of a result's clock stamp.
CLOCK_BITS = 48
#: The reference RTL's junction cycle is ``C + 4`` clocks (``W/z + 2 +
#: PROCTIME``: 36 on its board config, where ``C = 32``).
REFERENCE_OVERHEAD = 4
#: The schedules the hardware implements (``sequential`` is golden-model only).
HW_SCHEDULES = ("fast", "reference")


def bits(n):
    """Bits of an unsigned counter holding ``0 .. n-1`` (0 when ``n == 1``)."""
    return max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class IntShape:
    """Width and signedness of an integer value (an Amaranth shape, without
    Amaranth: ``hdl/`` converts it with ``Shape(s.width, s.signed)``)."""

    width: int
    signed: bool = False

    @classmethod
    def for_range(cls, lo, hi):
        """The narrowest shape holding every integer ``lo .. hi`` (what
        Amaranth's ``Shape.cast(range(lo, hi + 1))`` gives)."""
        if lo >= 0:
            return cls(hi.bit_length(), False)
        neg = (-lo - 1).bit_length() + 1
        pos = hi.bit_length() + 1 if hi >= 0 else 0
        return cls(max(neg, pos), True)

    def as_signed(self):
        """The shape of the value as a signed operand (an unsigned value gains
        a zero sign bit)."""
        return self if self.signed else IntShape(self.width + 1, True)


def hardware_schedule(cfg, kind="fast"):
    """The schedule the generated hardware implements (SPEC section 5).

    ``reference``: ``F[i] = i``, ``U[i] = 2L-1-i``, ``C + WRITE_LATENCY``
    clocks per junction cycle.  ``fast``: exactly ``C`` clocks per junction
    cycle, producer-consumer gap ``g = 1 + ceil(WRITE_LATENCY / C)`` cycles.
    """
    J, C = cfg.junctions, cfg.cycle
    if kind == "reference":
        cc, g = C + WRITE_LATENCY, 1
    elif kind == "fast":
        cc, g = C, 1 + -(-WRITE_LATENCY // C)
    else:
        raise ValueError(f"unknown hardware schedule {kind!r}; choose reference or fast")
    F = [1 + g * j for j in range(J)]
    U = [0] * J
    U[J - 1] = F[J - 1] + g
    for j in reversed(range(J - 1)):
        U[j] = U[j + 1] + g
    return Schedule(kind, tuple(F), tuple(U), 1, cc)


def clocks_per_sample(cfg, kind="fast"):
    """Clocks per sample in steady state: ``C`` (``fast``) or ``C +
    WRITE_LATENCY`` (``reference``)."""
    return hardware_schedule(cfg, kind).clocks_per_cycle


def reference_clocks_per_sample(cfg):
    """What the reference RTL spends per sample on ``cfg``'s ``C``."""
    return cfg.cycle + REFERENCE_OVERHEAD


def _range_shape(lo, hi, width):
    """Narrowest shape holding ``lo .. hi``, never wider than ``signed(width)``."""
    shape = IntShape.for_range(lo, hi)
    return IntShape(width, True) if shape.width >= width else shape


class NetworkGeometry:
    """Derived sizes of every memory and port, from the config and the schedule.

    Layers ``h = 0 .. L-1``; junction ``j = 1 .. J`` reads layer ``j - 1`` and
    writes layer ``j``.  Per-junction lists are indexed by ``j`` (index 0
    unused), per-layer lists by ``h``; ``F[0] = 0`` stands for the input load.
    """

    def __init__(self, cfg, schedule):
        self.cfg, self.schedule = cfg, schedule
        L, J, C = cfg.L, cfg.junctions, cfg.cycle
        F = (0,) + schedule.F          # F[h] for layer h (1-based junction index)
        U = (None,) + schedule.U
        self.F, self.U = F, U
        self.z = (None,) + cfg.z                              # z[j], j = 1..J
        self.R = (None,) + tuple(cfg.layers[j - 1] // cfg.z[j - 1] for j in range(1, J + 1))
        # natural order of the right layer of junction j (= layer j)
        self.q = [None] + [max(1, cfg.layers[h] // C) for h in range(1, L)]
        self.NR = [None] + [cfg.layers[h] // self.q[h] for h in range(1, L)]
        self.span = [None] + [max(1, C // cfg.layers[h]) for h in range(1, L)]
        # lanes working for one right neuron in a clock, and the copies of
        # that neuron's db and d registers that feed them
        self.lanes = [None] + [min(cfg.fanin[j - 1], cfg.z[j - 1]) for j in range(1, L)]
        self.operand_copies = [None] + [len(groups_of(n, LANES_PER_OPERAND_COPY))
                                        for n in self.lanes[1:]]
        # rotating copies per memory (see docs/hardware.md)
        self.K_act = [U[h + 1] - F[h] + 1 for h in range(L - 1)]
        self.K_da = [None] + [U[h] - F[h] + 1 for h in range(1, L)]
        self.K_acc = [None] + [U[h] - U[h + 1] + 1 for h in range(1, L - 1)]
        self.K_info = U[1] + 1
        self.acc_width = [None] + [cfg.fmt.width + cfg.fanout[h].bit_length()
                                   for h in range(1, L - 1)]
        # Storage shapes: activations and derivatives only take the values the
        # input mapping and the activation table can produce, so their
        # memories hold just the bits those need (zero/sign-extended on read).
        fmt = cfg.fmt
        table = cfg.activation_table()
        #: values of the sigma and sigma' tables (their ROMs' non-constant bits)
        self.sigma_shape = _range_shape(int(table.sigma.min()), int(table.sigma.max()),
                                        fmt.width)
        self.da_shape = _range_shape(int(table.dsigma.min()), int(table.dsigma.max()),
                                     fmt.width)
        self.act_shape = [_range_shape(int(fmt.pixel(0)), int(fmt.pixel(255)), fmt.width)] + \
            [self.sigma_shape] * (L - 2)

    def operand_copy(self, j, k):
        """``(neuron, copy)``: the right neuron (``0 .. q-1``) lane ``k`` of
        junction ``j`` works for, and the copy of its db/d registers it reads."""
        n = self.lanes[j]
        return k // n, (k % n) // LANES_PER_OPERAND_COPY

    # -- timing ------------------------------------------------------------------------
    @property
    def clocks_per_sample(self):
        """Clocks per sample in steady state (one junction cycle)."""
        return self.schedule.clocks_per_cycle

    @property
    def beats_per_sample(self):
        """Input beats per sample: beat ``r`` fills row ``r`` of every input bank."""
        return self.cfg.layers[0] // self.cfg.z[0]

    def drain_samples(self):
        """No-update samples to feed after the last real one so that every
        update has landed (the golden model's drain)."""
        s = self.schedule
        # the last UP's pipeline spills ceil(WRITE_LATENCY / cycle) cycles further
        return s.U[0] + 1 + -(-WRITE_LATENCY // s.clocks_per_cycle)

    def prediction_clock(self, n):
        """The enabled clock (counted from 0) in which the prediction of
        sample ``n`` enters the output buffer (its result's ``clock`` field)."""
        s = self.schedule
        return (n + s.F[-1]) * s.clocks_per_cycle + self.cfg.cycle + WRITE_LATENCY

    # -- ports ---------------------------------------------------------------------------
    @property
    def label_bits(self):
        """Bits of a label and of a prediction."""
        return bits(max(self.cfg.classes, 2))

    @property
    def ro_rows(self):
        """Rows the read-out / load address spans (weights: ``C``; biases: a
        right layer's bank depth)."""
        return max(self.cfg.cycle, max(self.cfg.layers[1:]), 2)

    @property
    def ro_lanes(self):
        """Lanes (banks) the read-out / load address spans."""
        return max(max(self.cfg.z), 2)

    @property
    def ro_junctions(self):
        return max(self.cfg.junctions, 2)

    def beat_bits(self):
        """Bits of one input beat: ``z[1]`` pixels, label, ``k``, update flag."""
        return 8 * self.cfg.z[0] + self.label_bits + LR_BITS + 1

    def result_bits(self, outputs=False):
        """Bits of one result: prediction, clock stamp (and the output activations)."""
        return self.label_bits + CLOCK_BITS + \
            (self.cfg.fmt.width * self.cfg.layers[-1] if outputs else 0)

    def interface_bits(self, outputs=False):
        """``(input bits, output bits)`` of the network's ports, handshakes
        included (what a pin-minimal synthesis harness scans in and folds)."""
        w = self.cfg.fmt.width
        ins = (self.beat_bits() + 1            # i.payload, i.valid
               + 1                             # o.ready
               + bits(self.ro_junctions) + 1 + bits(self.ro_rows) + bits(self.ro_lanes)
               + 1 + w)                        # ld_en, ld_data
        outs = (1                              # i.ready
                + self.result_bits(outputs) + 1  # o.payload, o.valid
                + w + CLOCK_BITS)              # ro_data, clocks
        return ins, outs

    # -- datapath ------------------------------------------------------------------------
    def multipliers(self):
        """Multipliers of the datapath: per lane FF ``mul(a, w)`` and UP
        ``mul(db, a)``, BP ``mul(w, d)`` in junctions whose left layer is
        hidden, and one ``mul(a', sat(acc))`` per hidden neuron per clock."""
        return sum(count for _kind, count, _a, _b in self.products())

    def products(self):
        """Every multiplier of the datapath as ``(kind, count, a, b)`` with the
        operand shapes after signed conversion: FF ``a * w``, UP ``db * a``,
        BP ``w * d``, derivative ``a' * sat(acc)``.  ``db`` is the bias step
        ``round_half_up(-d * 2**-k)`` before saturation, ``w + 1`` bits
        (``|db| <= 2**(w-1)``)."""
        cfg, w = self.cfg, self.cfg.fmt.width
        sw = IntShape(w, True)
        db = IntShape(w + 1, True)
        out = []
        for j in range(1, cfg.L):
            z, a = cfg.z[j - 1], self.act_shape[j - 1].as_signed()
            out.append((f"j{j} FF", z, a, sw))
            out.append((f"j{j} UP", z, db, a))
            if j > 1:
                out.append((f"j{j} BP", z, sw, sw))
            if j < cfg.L - 1:
                out.append((f"j{j} derivative", self.q[j], self.da_shape.as_signed(), sw))
        return out

    def memory_bits(self):
        """Bits of every memory, by kind."""
        cfg, w = self.cfg, self.cfg.fmt.width
        L = cfg.L
        out = {"weights": sum(cfg.edges) * w, "biases": sum(cfg.layers[1:]) * w}
        out["activations"] = sum(self.K_act[h] * cfg.layers[h] * self.act_shape[h].width
                                 for h in range(L - 1))
        out["derivatives"] = sum(self.K_da[h] * cfg.layers[h] * self.da_shape.width
                                 for h in range(1, L - 1))
        out["bp_accumulators"] = sum(self.K_acc[h] * cfg.layers[h] * self.acc_width[h]
                                     for h in range(1, L - 1))
        out["output_deltas"] = self.K_da[L - 1] * cfg.layers[L - 1] * w
        return out
