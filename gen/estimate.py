"""Analytic cost and throughput estimate of the generated hardware.

``estimate(cfg, target)`` answers in milliseconds (no elaboration, no tools):
multipliers, DSP blocks, block RAM and LUT RAM, LUTs, FFs, clocks per sample,
samples/s and time per MNIST epoch at an assumed clock, and whether the design
fits the target.  ``sparse-edge synth`` prints it beside Yosys/nextpnr's
numbers with the error in percent; ``sparse-edge explore`` ranks parallelism
choices with it.

The model is organised like the hardware (the components of ``hdl/``), one
function per group of blocks, so a change to a block has one obvious place to
update:

* :func:`junction_cost` - one junction's ``z`` edge lanes (FF, BP, UP
  multipliers, weight update; ``hdl/lane.py``) and ``q`` right neurons per
  clock (adder trees, bias update, activation lookup, derivative multiplier;
  ``hdl/neuron.py``), its control (``JunctionControl``);
* :func:`junction_memory_cost` - its ``WeightBanks`` and ROMs;
* :func:`layer_memory_cost` - the ``LayerBanks`` of one layer: activation, BP
  accumulator, derivative and output-delta banks (rotating copies from
  ``NetworkGeometry``);
* :func:`control_cost` - ``Sequencer``, ``InputLoader``, ``StallControl``,
  ``ReadoutPort``;
* :func:`harness_cost` - the synthesis harness of ``hdl/harness.py``.

Exact parts: logical multipliers (``2 z`` in junction 1, ``3 z`` in the others,
plus ``q`` derivative multipliers per hidden layer), DSP blocks (one per
multiplier up to 18x18 on ECP5 / 16x16 on iCE40), clocks per sample (``C`` for
the ``fast`` schedule, ``C + WRITE_LATENCY`` for ``reference``) and memory bits.
Block RAM / LUT RAM follows Yosys' ``memory_libmap`` cost rules (see
:func:`map_memory`).  LUTs and FFs are per-operation counts with coefficients
fitted to Yosys 0.70 / nextpnr 0.11 runs (``docs/synthesis.md`` has the table
of estimate vs actual and the command that reproduces it).
"""

import math
from dataclasses import dataclass, field

from .geometry import NetworkGeometry, bits, clocks_per_sample, hardware_schedule
from .targets import get_target

__all__ = ["Cost", "Estimate", "estimate", "map_memory", "junction_cost", "junction_memory_cost",
           "layer_memory_cost", "control_cost", "harness_cost", "multipliers",
           "clocks_per_sample", "TYPICAL_FMAX_MHZ"]

# ``clocks_per_sample`` (re-exported above) is defined in gen/geometry.py with
# the other plain numbers of the hardware.

#: Clock assumed for throughput when no --freq is given (MHz): what the
#: current pipeline reaches after place & route (docs/synthesis.md).  ECP5:
#: the 11 measured designs run at 51.9 (board@64 with every DSP in use) to
#: 94.6 MHz, the big ones at 51.9 and 61.1; iCE40: 29.2-29.9 MHz; GW5A: the
#: issue's 60 MHz target (small16: 165-220 MHz in nextpnr's Apycula timing
#: model, not checked on a board; no big design measured yet); 7-series: not
#: measured (no open timing analysis here), the same 60 MHz.
TYPICAL_FMAX_MHZ = {"ecp5": 55.0, "ice40": 28.0, "gw5a": 60.0, "xc7": 60.0}


@dataclass
class Cost:
    """Resources of one block (LUT/FF fractional while summing)."""

    lut: float = 0.0
    ff: float = 0.0
    dsp: int = 0
    mult: int = 0
    bram: int = 0
    lutram: int = 0
    bram_bits: int = 0           # memory bits placed in block RAM
    lutram_bits: int = 0         # ... in LUT RAM
    logic_bits: int = 0          # ... in FFs / LUTs (small memories, ROMs)
    notes: list = field(default_factory=list)

    def __add__(self, o):
        return Cost(self.lut + o.lut, self.ff + o.ff, self.dsp + o.dsp, self.mult + o.mult,
                    self.bram + o.bram, self.lutram + o.lutram, self.bram_bits + o.bram_bits,
                    self.lutram_bits + o.lutram_bits, self.logic_bits + o.logic_bits,
                    self.notes + o.notes)

    def scaled(self, k):
        return Cost(self.lut * k, self.ff * k, self.dsp * k, self.mult * k, self.bram * k,
                    self.lutram * k, self.bram_bits * k, self.lutram_bits * k,
                    self.logic_bits * k, list(self.notes))

    def to_dict(self):
        return {"lut": round(self.lut), "ff": round(self.ff), "dsp": self.dsp,
                "multipliers": self.mult, "bram": self.bram, "lutram": self.lutram,
                "bram_bits": self.bram_bits, "lutram_bits": self.lutram_bits,
                "logic_bits": self.logic_bits}


# -- family models ----------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    """Primitive costs of one FPGA family, in the report's LUT unit
    (ECP5: LUT4 incl. carry halves as nextpnr counts TRELLIS_COMB; iCE40:
    logic cells)."""

    name: str
    dsp_a: int                 # multiplier operand widths of one DSP block
    dsp_b: int
    dsp_y_min: int             # narrower products stay in LUTs
    brams: tuple               # (primitive, (depth, width) shapes, reads per ROM copy)
    bram_cost: float           # memory_libmap cost of one block
    lutram: tuple | None       # (depth, width, cost) of one LUT RAM, or None
    lutram_luts: float         # LUT positions one LUT RAM occupies (incl. write port)
    ff_luts: float             # LUT positions per FF after packing (ECP5: feed-through
    #                            LUTs; iCE40: logic cells holding only a FF)
    lutram_unit: int = 1       # report's lutram count per LUT RAM (7-series: its LUTs)
    dsp_chunk: int = 0         # >0: products split in chunks of this many bits plus
    #                            a sign bit, one DSP per pair (gen/gowin_mul.v)
    bram_roms: bool = True     # False: Yosys builds every ROM from logic (7-series)


_DP16K = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18))
ECP5 = Family("ecp5", 18, 18, 0,
              (("DP16KD", _DP16K, 2), ("PDPW16KD", _DP16K + ((512, 36),), 1)),
              128.0, (16, 4, 4.0), 6.0, 0.16)
ICE40 = Family("ice40", 16, 16, 11,
               (("RAM4K", ((2048, 2), (1024, 4), (512, 8), (256, 16)), 1),),
               64.0, None, 0.0, 0.94)
# GW5A (synth_gowin): Yosys' gowin memory library has the ECP5's costs and
# shapes (16 Kbit BSRAM up to 512x36 in SDP, 16x4 LUT RAM of cost 4); a LUT
# RAM (RAM16SDP4) takes the 8 LUT4 positions of its CFU as nextpnr counts
# them, an ALU one; placement adds a pass-through LUT for some FFs (small16:
# 2,912 LUT4 positions = 935 LUTs + 818 ALUs + 8 x 82 RAMs + 503 for 2,005
# FFs).  Multipliers: MULT12X12 tiles of gen/gowin_mul.v.
GW5A = Family("gw5a", 12, 12, 0,
              (("DPB", _DP16K, 2), ("SDPB", _DP16K + ((512, 36),), 1)),
              128.0, (16, 4, 4.0), 8.0, 0.25, dsp_chunk=11)
# 7-series (synth_xilinx): RAMB18E1 as the 18 Kbit unit, LUT RAM as RAM32M
# (32 x 6 bits in four LUTs, counted as four LUTs of lutram), DSP48E1 25x18;
# FFs need no LUT.
XC7 = Family("xc7", 25, 18, 0,
             (("RAMB18E1", _DP16K + ((512, 36),), 2),),
             128.0, (32, 6, 8.0), 4.0, 0.0, lutram_unit=4, bram_roms=False)
FAMILIES = {"ecp5": ECP5, "ice40": ICE40, "gw5a": GW5A, "xc7": XC7}

# Datapath logic of the blocks, fitted by least squares on the placed totals of
# the 9 ECP5 designs of docs/synthesis.md (Yosys 0.70 + nextpnr 0.11), the rest
# of the estimate held fixed: ``python bench/fit_estimate.py
# out/synth_report.json`` (refit whenever the pipeline in hdl/ changes).  Per
# lane and per right neuron the cost scales with the datapath width ``w``; the
# junction base with the width of its phase counter.
_LOGIC = {
    "ecp5": {"lane_lut": 19.9, "neuron_lut": 32.3, "base_lut": -0.1, "cbit_lut": 0.4,
             "lane_ff": 20.9, "neuron_ff": 38.1, "base_ff": 274.9, "cbit_ff": 3.7},
}
# iCE40 (synth_ice40): the same logic in SB_LUT4 (carry in SB_CARRY beside the
# LUT) is ~0.75x the ECP5 LUT4+carry count, ~0.8x the FFs (two designs fitted)
_LOGIC["ice40"] = {k: v * (0.75 if k.endswith("lut") else 0.8)
                   for k, v in _LOGIC["ecp5"].items()}
#: Control outside the junctions (see control_cost), fitted like _LOGIC.
_CONTROL = {"ecp5": {"lut": 50.0, "lut_bank": 27.5, "lut_neuron": 35.0, "ff": 220.0,
                     "ff_bank": 16.0}}
_CONTROL["ice40"] = {k: v * (0.75 if k.startswith("lut") else 0.8)
                     for k, v in _CONTROL["ecp5"].items()}
#: LUTs of a multiplier built from logic (DSP budget), per row of its
#: narrower operand and bit of its product: the ECP5 shift-and-add tree of
#: gen/softmul.v (carry chains; measured 151 LUTs for 8x10->18, 211 for
#: 10x10->20), the iCE40 Yosys ``booth`` (196 and 183 SB_LUT4); the 7-series
#: softmul.v trees on CARRY4: 541 LUTs for one 7x10->17 and three 8x10->18
#: products (0.98 per row and bit); GW5A: assumed as the ECP5 (unmeasured).
_SOFT_MUL = {"ecp5": 1.05, "ice40": 1.15, "gw5a": 1.05, "xc7": 1.0}


def _scaled(table, lut, ff):
    return {k: v * (lut if "lut" in k else ff) for k, v in table.items()}


#: GW5A and 7-series logic relative to the ECP5 fit: LUT and FF factors
#: fitted on the designs of docs/synthesis.md ("The GW5A-138 and Artix-7").
_FAMILY_SCALE = {"gw5a": (1.0, 1.0), "xc7": (0.44, 0.75)}
for _f, (_l, _r) in _FAMILY_SCALE.items():
    _LOGIC[_f] = _scaled(_LOGIC["ecp5"], _l, _r)
    _CONTROL[_f] = _scaled(_CONTROL["ecp5"], _l, _r)


#: Soft logic around mapped memories (LUT units per bit), fitted.
_MEM = {
    "ecp5": {"rom_lut": 0.8, "ffram_lut": 0.5, "bram_mux": 0.8, "bram_port_lut": 1.1,
             "bram_port_ff": 0.95, "bram_trans_lut": 0.9, "bram_trans_ff": 0.5,
             "lutram_mux": 0.8, "lutram_demux": 1.0},
    "ice40": {"rom_lut": 1.0, "ffram_lut": 0.6, "bram_mux": 1.0, "bram_port_lut": 0.6,
              "bram_port_ff": 0.4, "bram_trans_lut": 0.9, "bram_trans_ff": 0.5,
              "lutram_mux": 1.0, "lutram_demux": 1.0},
}
_MEM["gw5a"] = dict(_MEM["ecp5"])
_MEM["xc7"] = _scaled(_MEM["ecp5"], _FAMILY_SCALE["xc7"][0], _FAMILY_SCALE["xc7"][1])


# -- memories -----------------------------------------------------------------------------

def _bram_geometry(cfgs, cost, width, depth):
    """(blocks per copy, address replicas) of the cheapest block-RAM shape, as
    memory_libmap's geometry search picks it."""
    best = None
    for d, w in cfgs:
        mult_a = math.ceil(depth / d)
        repl = math.ceil(mult_a * width / w)
        key = (cost * repl + 0.5 * (mult_a - 1) * width, repl, mult_a)
        if best is None or key < best:
            best = key
    return best[1], best[2]


def map_memory(fam, width, depth, reads, rom=False, transparent=0, name="memory"):
    """Where Yosys' ``memory_libmap`` puts one memory, and what it costs.

    ``reads`` synchronous read ports (``transparent`` of them transparent for
    the write port), one synchronous write port (none for a ROM).  The choice
    follows memory_libmap's cost function (Yosys 0.70): a RAM in logic costs 1
    per bit, a ROM 1/16 per bit (a tie goes to logic); a block RAM or LUT RAM
    costs its primitive cost per data replica per port replica, plus half the
    read-multiplexer and write-demultiplexer scores, plus twice the emulation
    score (read-first and transparency emulation: 3 per instance; 1 per
    unshared read port).  Every read port beyond what one primitive offers
    replicates the memory: ECP5 DP16KD and iCE40 RAM4K give one read beside
    the write (two reads for a ROM on DP16KD), a 16x4 LUT RAM one.
    """
    size = width * depth
    c = Cost()
    if depth <= 0 or width <= 0:
        return c
    abits = bits(depth)
    options = [(int(size / 16.0 if rom else float(size)), 0, "logic")]
    # block RAM: each primitive (name, shapes, reads per copy for a ROM)
    bram = {}
    for prim, cfgs, rom_reads in (fam.brams if fam.bram_roms or not rom else ()):
        repl_d, mult_a = _bram_geometry(cfgs, fam.bram_cost, width, depth)
        if rom:
            repl_p, emu = math.ceil(reads / rom_reads), reads
        else:
            repl_p, emu = reads, 3 + 4 * reads
        demux = 0 if rom or mult_a == 1 else mult_a
        cost = fam.bram_cost * repl_d * repl_p + 0.5 * (mult_a - 1) * width * reads \
            + 0.5 * demux + 2 * emu
        bram[prim] = (repl_d, repl_p, mult_a)
        options.append((cost, 2, prim))
    if fam.lutram is not None and not rom:
        ld, lw, lc = fam.lutram
        rows = math.ceil(depth / ld)
        units = rows * math.ceil(width / lw)
        cost = lc * units * reads + 0.5 * (rows - 1) * width * reads \
            + 0.5 * (rows if rows > 1 else 0) + 2 * reads
        options.append((cost, 1, "lutram"))      # listed first: wins a tie
    cost, _, kind = min(options)
    if kind in bram:
        repl_d, repl_p, mult_a = bram[kind]
        prim, kind = kind, "bram"
    k = _MEM[fam.name]
    if kind == "logic":
        c.logic_bits = size
        if rom:
            # constant table in LUTs: one LUT4 per output bit per 16 words
            c.lut = k["rom_lut"] * width * max(1.0, depth / 16.0) * reads
            c.ff = width * reads
        else:
            c.ff = size + width * reads
            c.lut = k["ffram_lut"] * size * reads
    elif kind == "bram":
        c.bram = repl_d * repl_p
        c.bram_bits = size * repl_p
        c.lut = k["bram_mux"] * (mult_a - 1) * width * reads
        if not rom:   # read-first / transparency emulation around the block
            c.lut += reads * k["bram_port_lut"] * width + transparent * k["bram_trans_lut"] * \
                (width + abits)
            c.ff += reads * k["bram_port_ff"] * width + transparent * k["bram_trans_ff"] * \
                (width + abits)
    else:
        ld, lw, _ = fam.lutram
        rows = math.ceil(depth / ld)
        units = rows * math.ceil(width / lw)
        c.lutram = units * reads * fam.lutram_unit
        c.lutram_bits = size * reads
        c.lut = fam.lutram_luts * units * reads + k["lutram_mux"] * (rows - 1) * width * reads \
            + k["lutram_demux"] * (rows if rows > 1 else 0)
        # the emulated read register is counted with the reading block's logic
    c.notes.append(f"{name}: {width} bits x {depth}, {reads} read port(s) -> "
                   f"{prim if kind == 'bram' else kind}")
    return c


# -- exact figures ------------------------------------------------------------------------------

def multipliers(cfg):
    """Logical multipliers of ``cfg``'s datapath
    (:meth:`~sparse_edge.gen.geometry.NetworkGeometry.multipliers`: FF and UP
    per lane, BP per lane from junction 2, one derivative multiplier per hidden
    neuron finished per clock); the same for every schedule."""
    return NetworkGeometry(cfg, hardware_schedule(cfg, "fast")).multipliers()


def soft_multiplier_luts(family, a_width, b_width, y_width=None):
    """LUTs of one ``a_width`` x ``b_width`` multiplier built from logic."""
    y = a_width + b_width if y_width is None else y_width
    return _SOFT_MUL[family] * min(a_width, b_width) * y


def _dsp_tiles(fam, a, b):
    """DSP blocks of an ``a`` x ``b`` product as Yosys' ``mul2dsp`` splits it:
    slices of at most the DSP's operand widths; a slice whose product is
    narrower than the DSP's minimum stays in logic (e.g. the top bit of a
    17-bit operand on the iCE40's 16x16 SB_MAC16)."""
    if a + b < fam.dsp_y_min:
        return 0
    if fam.dsp_chunk:
        # gen/gowin_mul.v: signed operands in chunks of dsp_chunk bits + a sign
        return max(1, -(-(a - 1) // fam.dsp_chunk)) * max(1, -(-(b - 1) // fam.dsp_chunk))
    a, b = max(a, b), min(a, b)

    def slices(n, m):
        return [m] * (n // m) + ([n % m] if n % m else [])
    return sum(1 for sa in slices(a, fam.dsp_a) for sb in slices(b, fam.dsp_b)
               if sa + sb >= fam.dsp_y_min)


# -- blocks -------------------------------------------------------------------------------------

def junction_cost(cfg, geo, j, fam):
    """Logic of junction ``j``: ``z`` lanes (FF and UP multipliers, BP from
    junction 2, weight update, adder-tree share, addressing, read-out/load
    muxes), ``q`` right neurons per clock (bias update with its variable
    round-shift, sum + bias + saturation, activation lookup, derivative
    multiplier or output delta and argmax), counters and pipeline tags.  Its
    memories are :func:`junction_memory_cost`."""
    w = cfg.fmt.width
    z, C = cfg.z[j - 1], cfg.cycle
    first, last = j == 1, j == cfg.L - 1
    q = geo.q[j]
    k = _LOGIC[fam.name]
    c = Cost()
    # multipliers and their DSP blocks, with the operand widths the hardware
    # builds: FF mul(a, w), UP mul(db, a), BP mul(w, d), the derivative
    # mul(a', sat(acc)) per neuron
    for kind, count, a, b in geo.products():
        if kind.startswith(f"j{j} "):
            c.mult += count
            c.dsp += count * _dsp_tiles(fam, a.width, b.width)
    cb = bits(C)
    c.lut += z * k["lane_lut"] * w + q * k["neuron_lut"] * w + max(0.0, k["base_lut"] +
                                                                  k["cbit_lut"] * cb)
    c.ff += z * k["lane_ff"] * w + q * k["neuron_ff"] * w + max(0.0, k["base_ff"] +
                                                               k["cbit_ff"] * cb)
    return c


def junction_memory_cost(cfg, geo, j, fam):
    """Memories owned by junction ``j``: weights, biases, ROMs."""
    w = cfg.fmt.width
    z, C = cfg.z[j - 1], cfg.cycle
    last = j == cfg.L - 1
    q = geo.q[j]
    R = geo.R[j]
    c = Cost()
    # weights (z banks, C deep: one transparent read for FF/BP/UP, which the
    # read-out shares while the network is stalled), biases (q banks),
    # sigma / sigma' ROMs (q reads each), row-address ROM (C x z*log2(R), one read)
    c += map_memory(fam, w, C, 1, False, 1, f"j{j} weights").scaled(z)
    c += map_memory(fam, w, geo.NR[j], 1, False, 1, f"j{j} biases").scaled(q)
    # charged per bank for the first version of the shared read port, which
    # held the read data (register + select); it now holds only the address
    # (one register and select per junction), so this over-charges by about
    # (z + q) * w - kept until the model is refitted (docs/synthesis.md)
    c.ff += (z + q) * w
    c.lut += (z + q) * w
    tb = cfg.table_bits
    # only the tables' non-constant bits are stored (sigma in [0, 1], sigma' in
    # (0, 1/4]): Yosys drops the constant ones
    ws, wd = geo.sigma_shape.width, geo.da_shape.width
    c += map_memory(fam, ws, 1 << tb, q, True, 0, f"j{j} sigma ROM")
    if not last:
        c += map_memory(fam, wd, 1 << tb, q, True, 0, f"j{j} sigma' ROM")
    rb = bits(R)
    if rb:
        c += map_memory(fam, z * rb, C, 1, True, 0, f"j{j} row-address ROM")
    return c


def layer_memory_cost(cfg, geo, h, fam):
    """Memories of layer ``h``: activations (FF and UP reads), BP accumulators
    and derivatives (hidden), output deltas (output layer)."""
    w = cfg.fmt.width
    L = cfg.L
    c = Cost()
    if h < L - 1:
        jn = h + 1
        zr, Rr = geo.z[jn], geo.R[jn]
        c += map_memory(fam, geo.act_shape[h].width, geo.K_act[h] * Rr, 2, False, 0,
                        f"layer {h} activations").scaled(zr)
        if h >= 1:
            aw = geo.acc_width[h]
            c += map_memory(fam, aw, geo.K_acc[h] * Rr, 2, False, 1,
                            f"layer {h} BP accumulators").scaled(zr)
    if 1 <= h < L - 1:
        c += map_memory(fam, geo.da_shape.width, geo.K_da[h] * geo.NR[h], 1, False, 0,
                        f"layer {h} derivatives").scaled(geo.q[h])
    if h == L - 1:
        c += map_memory(fam, w, geo.K_da[h] * geo.NR[h], 1, False, 0,
                        "output deltas").scaled(geo.q[h])
    return c


def control_cost(cfg, geo, schedule, fam):
    """Everything outside the junctions and memories: phase and junction-cycle
    counters, sample info slots, the input-load addressing and pixel mapping
    of the ``z[1]`` input banks, stream handshake, output buffer, the 48-bit
    clock counter and the read-out junction select (fitted)."""
    k = _CONTROL[fam.name]
    z1 = cfg.z[0]
    nq = sum(geo.q[1:])
    return Cost(lut=k["lut"] + k["lut_bank"] * z1 + k["lut_neuron"] * nq,
                ff=k["ff"] + k["ff_bank"] * z1)


def harness_cost(geo):
    """The synthesis harness (``hdl/harness.py``): one FF per input bit (scan
    chain), an XOR fold of the outputs (about one LUT4 per three bits)."""
    ins, outs = geo.interface_bits()
    return Cost(lut=outs / 3.0, ff=ins + 1)


# -- the estimate ---------------------------------------------------------------------------------

@dataclass
class Estimate:
    """Result of :func:`estimate` (``to_dict`` for reports)."""

    config_name: str
    target: str
    schedule: str
    blocks: dict
    total: Cost
    multipliers: int
    clocks_per_sample: int
    fmax_mhz: float
    fmax_assumed: bool
    available: dict
    memory_bits: dict
    soft_multipliers: int = 0

    @property
    def resources(self):
        t = self.total
        return {"lut": round(t.lut), "ff": round(t.ff), "bram": t.bram, "dsp": t.dsp,
                "lutram": t.lutram}

    @property
    def samples_per_s(self):
        return self.fmax_mhz * 1e6 / self.clocks_per_sample

    @property
    def mnist_epoch_s(self):
        return 60000 / self.samples_per_s

    @property
    def over(self):
        """``[(resource, estimate, available)]`` over the device."""
        return [(k, v, self.available[k]) for k, v in self.resources.items()
                if self.available.get(k) is not None and v > self.available[k]]

    @property
    def fits(self):
        return not self.over

    @property
    def utilization(self):
        """Highest fraction of any resource."""
        return max((v / self.available[k] for k, v in self.resources.items()
                    if self.available.get(k)), default=0.0)

    def to_dict(self):
        return {"config_name": self.config_name, "target": self.target,
                "schedule": self.schedule, "resources": self.resources,
                "multipliers": self.multipliers, "soft_multipliers": self.soft_multipliers,
                "clocks_per_sample": self.clocks_per_sample,
                "fmax_mhz": self.fmax_mhz, "fmax_assumed": self.fmax_assumed,
                "samples_per_s": round(self.samples_per_s, 1),
                "mnist_epoch_s": round(self.mnist_epoch_s, 4),
                "fits": self.fits,
                "over": [{"resource": k, "estimate": v, "available": a} for k, v, a in self.over],
                "memory_bits": self.memory_bits,
                "mapped_bits": {"bram": self.total.bram_bits, "lutram": self.total.lutram_bits,
                                "logic": self.total.logic_bits},
                "blocks": {k: v.to_dict() for k, v in self.blocks.items()},
                "memory_mapping": [n for b in self.blocks.values() for n in b.notes]}


def estimate(cfg, target, schedule="fast", freq_mhz=None, max_dsp=None):
    """Analytic estimate of ``cfg`` on ``target`` (a name or a Target).

    ``max_dsp``: DSP budget; multipliers beyond it are built from LUTs
    (``synth --max-dsp``), cheapest first, each charged
    :func:`soft_multiplier_luts`."""
    t = get_target(target)
    fam = FAMILIES[t.family]
    sched = hardware_schedule(cfg, schedule)
    geo = NetworkGeometry(cfg, sched)
    blocks = {}
    for j in range(1, cfg.L):
        blocks[f"junction{j}"] = junction_cost(cfg, geo, j, fam)
        blocks[f"junction{j}_memories"] = junction_memory_cost(cfg, geo, j, fam)
    for h in range(cfg.L):
        blocks[f"layer{h}_memories"] = layer_memory_cost(cfg, geo, h, fam)
    blocks["control"] = control_cost(cfg, geo, sched, fam)
    blocks["harness"] = harness_cost(geo)
    total = Cost()
    for b in blocks.values():
        total = total + b
    soft = 0
    if max_dsp is not None and total.dsp > max_dsp:
        # the cheapest multipliers go to logic first (as synth --max-dsp does)
        excess, lut, notes = total.dsp - max(0, max_dsp), 0.0, []
        kinds = sorted(geo.products(),
                       key=lambda p: soft_multiplier_luts(fam.name, p[2].width, p[3].width))
        for kind, count, a, b in kinds:
            per = _dsp_tiles(fam, a.width, b.width)
            if excess <= 0 or per == 0:
                continue
            n = min(count, -(-excess // per))
            each = soft_multiplier_luts(fam.name, a.width, b.width)
            excess -= n * per
            soft += n
            total.dsp -= n * per
            lut += n * each
            notes.append(f"{n} {kind} multipliers ({a.width}x{b.width}) in LUTs, "
                         f"~{each:.0f} LUTs each")
        total.lut += lut
        blocks["soft_multipliers"] = Cost(lut=lut, notes=[f"DSP budget {max_dsp}"] + notes)
    total.lut += fam.ff_luts * total.ff
    fmax = freq_mhz if freq_mhz else TYPICAL_FMAX_MHZ[fam.name]
    return Estimate(cfg.name, t.name, schedule, blocks, total, geo.multipliers(),
                    geo.clocks_per_sample, float(fmax), freq_mhz is None,
                    dict(t.available), geo.memory_bits(), soft)
