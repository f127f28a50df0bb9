"""The FPGA parts the flows know: capacities, packages, clock pins.

A target is data (:class:`Target`): adding a part is adding a row to
:data:`TARGETS` (or calling :func:`register`), never a new code path.  The
synthesis run (``gen/synth.py``), the analytic estimate (``gen/estimate.py``)
and the design-space exploration read them from here.
"""

from dataclasses import dataclass

from .names import did_you_mean
from .tools import SynthError

__all__ = ["Target", "TARGETS", "register", "get_target", "RESOURCE_NAMES", "fit_problems",
           "describe_over"]

#: Resource keys of every report and of :attr:`Target.available`, in display order.
RESOURCE_NAMES = ("lut", "ff", "bram", "dsp", "lutram", "io")


@dataclass(frozen=True)
class Target:
    """One FPGA part as the flow sees it.

    ``available`` uses the report's resource keys: ``lut`` (ECP5: TRELLIS_COMB
    slices halves, i.e. LUT4s; iCE40: logic cells; GW5A: LUT4 positions, a LUT4
    or an ALU each; 7-series: six-input LUTs, logic and memory), ``ff``,
    ``bram`` (ECP5: DP16KD 18 Kbit; iCE40: SB_RAM40_4K 4 Kbit; GW5A: BSRAM 18
    Kbit; 7-series: RAMB18E1 18 Kbit, a RAMB36E1 counts two), ``dsp`` (ECP5:
    MULT18X18D; iCE40: SB_MAC16; GW5A: MULT12X12, two per DSP block;
    7-series: DSP48E1), ``lutram`` (ECP5: TRELLIS_RAMW, one per 16x4
    distributed RAM; iCE40: none; GW5A: RAM16SDP4; 7-series: LUTs used as
    memory) and ``io``.  The numbers are nextpnr's own where nextpnr supports
    the part, else the vendor's data sheet (7-series: no open place and route
    here, ``pnr_tool`` is None and fmax is not available).

    ``io_pins`` places the harness's other pins where the place-and-route tool
    refuses unconstrained I/O (nextpnr-himbaechel); ``pack_tool`` turns the
    placed design into a bitstream.
    """

    name: str
    family: str            # "ecp5" or "ice40"
    part: str
    boards: str
    pnr_args: tuple
    available: dict
    bram_bits: int         # bits of one block RAM
    default_mhz: float
    clock_pin: str         # the boards' clock input (a global-clock-capable pin)
    pnr_tool: str | None   # place & route tool, a key of gen.tools.TOOLS (None: none)
    pack_tool: str | None = None     # bitstream packer, a key of gen.tools.TOOLS
    io_pins: tuple = ()    # (port, pin) of the harness's other pins, where required

    def to_dict(self):
        d = {"name": self.name, "family": self.family, "part": self.part,
             "boards": self.boards, "nextpnr_args": list(self.pnr_args),
             "available": dict(self.available), "bram_bits": self.bram_bits,
             "default_mhz": self.default_mhz, "clock_pin": self.clock_pin}
        if self.pnr_tool is None:
            d["place_and_route"] = None
        if self.pack_tool is not None:
            d["pack_tool"] = self.pack_tool
        if self.io_pins:
            d["io_pins"] = dict(self.io_pins)
        return d

    def constraints(self, freq_mhz):
        """Pin constraints: ``clk`` on the board's clock pin (the other three
        harness pins are placed by nextpnr).  Returns ``(file name, text,
        nextpnr arguments)``."""
        if self.family == "ecp5":
            text = (f'LOCATE COMP "clk" SITE "{self.clock_pin}";\n'
                    f'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n'
                    f'FREQUENCY PORT "clk" {freq_mhz:g} MHZ;\n')
            return "top.lpf", text, ["--lpf", "top.lpf", "--lpf-allow-unconstrained"]
        if self.family == "gw5a":
            # nextpnr-himbaechel refuses unconstrained I/O: every harness pin
            text = "".join(f'IO_LOC "{port}" {pin};\n'
                           for port, pin in (("clk", self.clock_pin), *self.io_pins))
            text += 'IO_PORT "clk" IO_TYPE=LVCMOS33;\n'
            return "top.cst", text, ["--vopt", "cst=top.cst"]
        text = f"set_io clk {self.clock_pin}\n"
        return "top.pcf", text, ["--pcf", "top.pcf", "--pcf-allow-unconstrained"]


def _ecp5(size, lut, bram, dsp, ramw, io):
    return Target(f"ecp5-{size}f", "ecp5", f"LFE5U-{size}F-6BG381C",
                  "ULX3S, OrangeCrab" if size != 45 else "ULX3S",
                  (f"--{size}k", "--package", "CABGA381", "--speed", "6"),
                  {"lut": lut, "ff": lut, "bram": bram, "dsp": dsp, "lutram": ramw, "io": io},
                  18432, 60.0, "G2",        # ULX3S 25 MHz clock input (PCLKT6_0)
                  "nextpnr-ecp5")


TARGETS = {t.name: t for t in (
    _ecp5(25, 24288, 56, 28, 3036, 197),
    _ecp5(45, 43848, 108, 72, 5481, 245),
    _ecp5(85, 83640, 208, 156, 10455, 365),
    Target("ice40-up5k", "ice40", "iCE40UP5K-SG48", "iCEBreaker",
           ("--up5k", "--package", "sg48"),
           {"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8, "lutram": 0, "io": 39},
           4096, 24.0, "35",                 # iCEBreaker 12 MHz clock input (G0)
           "nextpnr-ice40"),
    # Tang Mega 138K Pro: 50 MHz oscillator on P16 (nextpnr's global router
    # takes it onto the clock network; the dedicated GCLK pins U22/V22 fail to
    # route with this nextpnr); the harness pins on the J1 header.
    # Capacities: nextpnr's (LUT4 positions, DFF, BSRAM, MULT12X12,
    # RAM16SDP4, IOB).
    Target("gw5a-138", "gw5a", "GW5AST-LV138FPG676AC1/I0", "Tang Mega 138K Pro",
           ("--device", "GW5AST-LV138FPG676AC1/I0", "--vopt", "family=GW5AST-138C"),
           {"lut": 138240, "ff": 138240, "bram": 340, "dsp": 596, "lutram": 17280, "io": 324},
           18432, 60.0, "P16", "nextpnr-himbaechel-gowin", "gowin_pack",
           (("rst", "AC26"), ("sin", "AC24"), ("sout", "AB26"))),
    # Artix-7, Yosys counts only (no open place and route here).  Capacities
    # from Xilinx DS180: six-input LUTs, FFs, RAMB18E1 (two per RAMB36E1),
    # DSP48E1, LUTs usable as memory (distributed RAM / 64 bits), user I/O of
    # the CSG324 package.  Clock pin: the Arty A7's 100 MHz input.
    Target("xc7a100t", "xc7", "xc7a100tcsg324-1", "Arty A7-100T, Nexys A7-100T", (),
           {"lut": 63400, "ff": 126800, "bram": 270, "dsp": 240, "lutram": 19000, "io": 210},
           18432, 100.0, "E3", None),
    Target("xc7a35t", "xc7", "xc7a35ticsg324-1L", "Arty A7-35T", (),
           {"lut": 20800, "ff": 41600, "bram": 100, "dsp": 90, "lutram": 6400, "io": 210},
           18432, 100.0, "E3", None),
)}


def register(target):
    """Add ``target`` to :data:`TARGETS` (a name already taken is an error)."""
    if target.name in TARGETS:
        raise ValueError(f"target {target.name!r} is already registered")
    TARGETS[target.name] = target
    return target


def get_target(name):
    """The :class:`Target` called ``name``; a clear error for unknown names."""
    if isinstance(name, Target):
        return name
    t = TARGETS.get(str(name).lower())
    if t is None:
        hint = did_you_mean(name, TARGETS)
        raise SynthError(f"unknown target {name!r}{hint}; choose one of "
                         f"{', '.join(TARGETS)}")
    return t


def fit_problems(used, available):
    """``[(resource, used, available)]`` for every resource over the device."""
    return [(k, used[k], available[k]) for k in RESOURCE_NAMES
            if used.get(k) is not None and available.get(k) is not None
            and used[k] > available[k]]


def describe_over(over, target):
    """One line naming every resource of ``over`` (from :func:`fit_problems`)."""
    parts = []
    for k, u, a in over:
        extra = f"+{u - a}" if a else f"{u} needed"
        pct = f", {100 * u / a:.0f}% of the device" if a else ""
        parts.append(f"{_LABEL[k]} {u} of {a} ({extra}{pct})")
    return f"does not fit {target.name} ({target.part}): " + "; ".join(parts)


_LABEL = {"lut": "LUTs", "ff": "FFs", "bram": "block RAMs", "dsp": "DSPs", "lutram": "LUT RAMs",
          "io": "I/O pins"}
