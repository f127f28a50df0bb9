"""The primitive side of the analytic estimate: the FPGA families (DSP
operand widths, block RAM shapes, LUT RAM, what a FF costs after packing), the
cost of a multiplier built from logic or tiled into DSPs, and where Yosys'
``memory_libmap`` puts a memory.  ``gen/estimate.py`` adds up the hardware's
blocks with these."""

import math
from dataclasses import dataclass, field

from .geometry import bits

__all__ = ["Cost", "Family", "ECP5", "ICE40", "GW5A", "XC7", "FAMILIES", "map_memory",
           "soft_multiplier_luts", "dsp_tiles"]


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


def soft_multiplier_luts(family, a_width, b_width, y_width=None):
    """LUTs of one ``a_width`` x ``b_width`` multiplier built from logic."""
    y = a_width + b_width if y_width is None else y_width
    return _SOFT_MUL[family] * min(a_width, b_width) * y


def dsp_tiles(fam, a, b):
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
