"""The FPGA parts the flows know: capacities, packages, clock pins.

A target is data (:class:`Target`): adding a part is adding a row to
:data:`TARGETS` (or calling :func:`register`), never a new code path.  The
synthesis run (``gen/synth.py``), the analytic estimate (``gen/estimate.py``)
and the design-space exploration read them from here.
"""

import difflib
from dataclasses import dataclass

from .tools import SynthError

__all__ = ["Target", "TARGETS", "register", "get_target", "RESOURCE_NAMES", "fit_problems",
           "describe_over"]

#: Resource keys of every report and of :attr:`Target.available`, in display order.
RESOURCE_NAMES = ("lut", "ff", "bram", "dsp", "lutram", "io")


@dataclass(frozen=True)
class Target:
    """One FPGA part as the flow sees it.

    ``available`` uses the report's resource keys: ``lut`` (ECP5: TRELLIS_COMB
    slices halves, i.e. LUT4s; iCE40: logic cells), ``ff``, ``bram`` (ECP5:
    DP16KD 18 Kbit; iCE40: SB_RAM40_4K 4 Kbit), ``dsp`` (ECP5: MULT18X18D;
    iCE40: SB_MAC16), ``lutram`` (ECP5: TRELLIS_RAMW, one per 16x4 distributed
    RAM; iCE40: none) and ``io``.  The numbers are nextpnr's own.
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
    pnr_tool: str          # place & route tool, a key of gen.tools.TOOLS

    def to_dict(self):
        return {"name": self.name, "family": self.family, "part": self.part,
                "boards": self.boards, "nextpnr_args": list(self.pnr_args),
                "available": dict(self.available), "bram_bits": self.bram_bits,
                "default_mhz": self.default_mhz, "clock_pin": self.clock_pin}

    def constraints(self, freq_mhz):
        """Pin constraints: ``clk`` on the board's clock pin (the other three
        harness pins are placed by nextpnr).  Returns ``(file name, text,
        nextpnr arguments)``."""
        if self.family == "ecp5":
            text = (f'LOCATE COMP "clk" SITE "{self.clock_pin}";\n'
                    f'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n'
                    f'FREQUENCY PORT "clk" {freq_mhz:g} MHZ;\n')
            return "top.lpf", text, ["--lpf", "top.lpf", "--lpf-allow-unconstrained"]
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
        close = difflib.get_close_matches(str(name).lower(), list(TARGETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
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
