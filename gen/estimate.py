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

from dataclasses import dataclass

from .estimate_model import (_FAMILY_SCALE, ECP5, FAMILIES, Cost, _scaled,  # noqa: F401
                             dsp_tiles, map_memory, soft_multiplier_luts)
from .geometry import (CLOCK_BITS, READOUT_LATENCY, NetworkGeometry, bank_groups, bits,
                       clocks_per_sample, hardware_schedule, row_rom_groups)
from .targets import get_target

__all__ = ["Cost", "Estimate", "estimate", "map_memory", "junction_cost", "junction_memory_cost",
           "layer_memory_cost", "control_cost", "harness_cost", "multipliers",
           "clocks_per_sample", "TYPICAL_FMAX_MHZ", "ECP5", "FAMILIES", "soft_multiplier_luts"]

# ``clocks_per_sample`` (re-exported above) is defined in gen/geometry.py with
# the other plain numbers of the hardware; ``Cost``, ``map_memory``, the
# families and the multiplier costs in gen/estimate_model.py.

#: Clock assumed for throughput when no --freq is given (MHz): what the
#: current pipeline reaches after place & route (docs/synthesis.md).  ECP5:
#: the measured designs run at 61.5 to 101.8 MHz, the big ones at 59.9-74.0
#: (board@64 with every DSP in use, over placement seeds and the last timing
#: changes) and 73.8-78.8 (board@128);
#: iCE40: 29.2-32.6 MHz; GW5A: board@128 157.6 MHz, small16 165-220 MHz in
#: nextpnr's timing model (Apycula's, not checked on a board), so 150;
#: 7-series: not measured (no open timing analysis here), the issue's 60 MHz.
TYPICAL_FMAX_MHZ = {"ecp5": 65.0, "ice40": 28.0, "gw5a": 150.0, "xc7": 60.0}


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
for _f, (_l, _r) in _FAMILY_SCALE.items():
    _LOGIC[_f] = _scaled(_LOGIC["ecp5"], _l, _r)
    _CONTROL[_f] = _scaled(_CONTROL["ecp5"], _l, _r)


# -- exact figures ------------------------------------------------------------------------------

def multipliers(cfg):
    """Logical multipliers of ``cfg``'s datapath
    (:meth:`~sparse_edge.gen.geometry.NetworkGeometry.multipliers`: FF and UP
    per lane, BP per lane from junction 2, one derivative multiplier per hidden
    neuron finished per clock); the same for every schedule."""
    return NetworkGeometry(cfg, hardware_schedule(cfg, "fast")).multipliers()


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
    q = geo.q[j]
    k = _LOGIC[fam.name]
    c = Cost()
    # multipliers and their DSP blocks, with the operand widths the hardware
    # builds: FF mul(a, w), UP mul(db, a), BP mul(w, d), the derivative
    # mul(a', sat(acc)) per neuron
    for kind, count, a, b in geo.products():
        if kind.startswith(f"j{j} "):
            c.mult += count
            c.dsp += count * dsp_tiles(fam, a.width, b.width)
    cb = bits(C)
    c.lut += z * k["lane_lut"] * w + q * k["neuron_lut"] * w + max(0.0, k["base_lut"] +
                                                                  k["cbit_lut"] * cb)
    c.ff += z * k["lane_ff"] * w + q * k["neuron_ff"] * w + max(0.0, k["base_ff"] +
                                                               k["cbit_ff"] * cb)
    # counted, not fitted: the extra copies of each neuron's db (w + 1 bits)
    # and d (w bits) registers, one per LANES_PER_OPERAND_COPY lanes
    c.ff += q * (geo.operand_copies[j] - 1) * (2 * w + 1)
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
    # (one register per junction, an address select and two stall-register
    # copies per group of 8 banks), so this over-charges by about (z + q) * w
    # - kept until the model is refitted (docs/synthesis.md)
    c.ff += (z + q) * w
    c.lut += (z + q) * w
    # counted, not fitted: every group of BANKS_PER_ADDRESS_COPY weight (bias)
    # banks beyond the first has its own read row, held row and write enable,
    # and every group its own copy of the read-out and load row, load lane,
    # load hit and data (in place of one load register per bank)
    for banks, depth in ((z, C), (q, geo.NR[j])):
        groups = len(bank_groups(banks))
        c.ff += (groups - 1) * (2 * bits(depth) + 1) - banks + \
            groups * (bits(geo.ro_rows) + bits(geo.ro_lanes) + 1 + w)
    c.ff += bits(geo.ro_lanes)      # the read-out lane select's second register
    # and every group of left banks beyond the first its own FF and UP copy
    # counters (hdl/sequencer.py JunctionControl, the read addresses' high part)
    c.ff += 2 * (len(bank_groups(z)) - 1) * bits(geo.K_act[j - 1])
    tb = cfg.table_bits
    # only the tables' non-constant bits are stored (sigma in [0, 1], sigma' in
    # (0, 1/4]): Yosys drops the constant ones
    ws, wd = geo.sigma_shape.width, geo.da_shape.width
    c += map_memory(fam, ws, 1 << tb, q, True, 0, f"j{j} sigma ROM")
    if not last:
        c += map_memory(fam, wd, 1 << tb, q, True, 0, f"j{j} sigma' ROM")
    rb = bits(R)
    if rb:
        for lanes in row_rom_groups(z):       # one ROM per group of lanes
            c += map_memory(fam, len(lanes) * rb, C, 1, True, 0, f"j{j} row-address ROM")
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
    # counted, not fitted: the stall control's input register (8-bit
    # pixels) and second output entry (clock stamp), and the read-out's
    # per-junction weight and bias registers
    # (READOUT_LATENCY less the banks' row copy and read register,
    # hdl/banks.py BANK_READOUT_LATENCY)
    regs = 8 * z1 + CLOCK_BITS + 2 * cfg.junctions * cfg.fmt.width * (READOUT_LATENCY - 2)
    if geo.beats_per_sample < geo.clocks_per_sample:
        # the input loader's late write: every group of input banks has its
        # own copy of the write address and enable, loaded a clock ahead
        regs += len(bank_groups(z1)) * (bits(geo.K_act[0] * geo.R[1]) + 1)
    return Cost(lut=k["lut"] + k["lut_bank"] * z1 + k["lut_neuron"] * nq,
                ff=k["ff"] + k["ff_bank"] * z1 + regs)


#: Output members of the network (i.ready, o.valid, o.payload, ro_data,
#: clocks): the synthesis harness folds each into a register of its own.
NETWORK_OUTPUT_MEMBERS = 5


def harness_cost(geo):
    """The synthesis harness (``hdl/harness.py``): one FF per input bit (scan
    chain), an XOR fold of the outputs (about one LUT4 per three bits) into
    one register per output member and one more."""
    ins, outs = geo.interface_bits()
    return Cost(lut=outs / 3.0, ff=ins + NETWORK_OUTPUT_MEMBERS + 1)


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
            per = dsp_tiles(fam, a.width, b.width)
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
