"""Boards as data: what the build, program and run flows need to know about
a board, nothing more.

Each :class:`BoardSpec` names its amaranth-boards platform (imported only
when a build needs it), the synthesis target of its FPGA (for the estimate,
the fit check and ``--cycle auto``), its oscillator and the clock the PLL
makes of it, its UART and LEDs, and the openFPGALoader command that programs
it.  The default clocks come from the synthesis results of docs/synthesis.md
(every ECP5 design there meets 60 MHz; the iCE40 ones 30 MHz) and from the
UART: a clock that is a multiple of the baud rate keeps the bit time exact.
"""

import dataclasses
import importlib
from dataclasses import dataclass, field

from ..gen.errors import SparseEdgeError
from ..gen.names import did_you_mean

__all__ = ["BoardSpec", "BOARDS", "UnknownBoard", "get_board"]


class UnknownBoard(SparseEdgeError):
    """A board name the registry does not know."""


@dataclass(frozen=True)
class BoardSpec:
    """One board.

    ``program`` and ``flash`` are openFPGALoader argument lists;
    ``{bitstream}`` stands for the file.  ``build`` is ``"bitstream"`` (the
    open toolchain runs) or ``"plan"`` (the vendor flow's build plan is
    written, not run: Vivado is not open source).
    """

    name: str
    title: str
    platform: str               # "module:Class" in amaranth_boards
    family: str                 # "ecp5", "ice40", "xc7"
    device: str
    target: str                 # synthesis target (gen/synth.py) for estimates and fit
    osc_resource: str
    osc_mhz: float
    clock_mhz: float            # default clock (PLL output)
    baud: int                   # default UART rate
    max_baud: int
    uart_bridge: str            # the USB-UART chip
    leds: tuple                 # (resource, number) per SystemTop LED bit
    program: tuple
    flash: tuple
    bitstream: str              # file name of the bitstream in the build
    slots: int = 8              # link engine input slots (credit)
    pred_ring: int = 64
    build: str = "bitstream"
    available: dict = field(default=None, compare=False)   # overrides the target's
    notes: str = ""

    def load_platform(self):
        """An instance of the board's amaranth-boards platform."""
        mod, cls = self.platform.split(":")
        try:
            module = importlib.import_module(mod)
        except ImportError as e:
            raise UnknownBoard(f"board {self.name} needs amaranth-boards ({e}): "
                               "pip install amaranth-boards") from None
        return getattr(module, cls)()

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["leds"] = [list(x) for x in self.leds]
        d["program"], d["flash"] = list(self.program), list(self.flash)
        return d


def _ulx3s(size, slots):
    return BoardSpec(
        name=f"ulx3s-{size}f", title=f"Radiona ULX3S ({size}F)",
        platform=f"amaranth_boards.ulx3s:ULX3S_{size}F_Platform", family="ecp5",
        device=f"LFE5U-{size}F-6BG381C", target=f"ecp5-{size}f" if size != 12 else "ecp5-25f",
        osc_resource="clk25", osc_mhz=25.0,
        # 45 MHz: the designs of docs/synthesis.md meet 60 MHz (61.5-94.6
        # MHz) without the link engine; 45 MHz leaves a margin and is a whole
        # number of 3 Mbaud bit times (15 clocks).  The link, not the clock,
        # limits training over a UART (docs/boards.md).
        clock_mhz=45.0, baud=3_000_000, max_baud=3_000_000, uart_bridge="FTDI FT231X",
        leds=(("led", 0), ("led", 1), ("led", 2), ("led", 3)),
        program=("-b", "ulx3s", "-m", "{bitstream}"),
        flash=("-b", "ulx3s", "-f", "{bitstream}"),
        bitstream="top.bit", slots=slots,
        # the 12F is a 25F die licensed for 12K LUTs (nextpnr --12k uses the
        # 25F database): the fit check holds it to the data sheet's numbers
        available={"lut": 12288, "ff": 12288, "bram": 32, "dsp": 28, "lutram": 1536,
                   "io": 197} if size == 12 else None)


BOARDS = {b.name: b for b in (
    _ulx3s(12, 8), _ulx3s(25, 8), _ulx3s(45, 16), _ulx3s(85, 16),
    BoardSpec(
        name="icebreaker", title="1BitSquared iCEBreaker (iCE40UP5K)",
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform", family="ice40",
        device="iCE40UP5K-SG48", target="ice40-up5k", osc_resource="clk12", osc_mhz=12.0,
        # 18 MHz: the demo's system top fills 97% of the UP5K and placed at
        # 24.6 MHz; 18 MHz leaves a margin and is 6 clocks per 3 Mbaud bit
        clock_mhz=18.0, baud=3_000_000, max_baud=12_000_000, uart_bridge="FTDI FT2232H",
        leds=(("led", 1), ("led", 0)),      # green: heartbeat, red: training
        # the FT2232H reaches the iCE40 through its SPI flash: both write it
        program=("-b", "ice40_generic", "-f", "{bitstream}"),
        flash=("-b", "ice40_generic", "-f", "{bitstream}"),
        bitstream="top.bin", slots=2, pred_ring=32,
        notes="the FT2232H reaches the iCE40 through its SPI flash: programming always "
              "writes the flash (SRAM loading needs the board's jumpers changed)"),
    BoardSpec(
        name="arty-a7-100", title="Digilent Arty A7-100T (Artix-7 XC7A100T, the reference "
                                  "design's device)",
        platform="amaranth_boards.arty_a7:ArtyA7_100Platform", family="xc7",
        device="xc7a100ti-csg324-1L", target="xc7a100t", osc_resource="clk100", osc_mhz=100.0,
        clock_mhz=60.0, baud=3_000_000, max_baud=12_000_000, uart_bridge="FTDI FT2232HQ",
        leds=(("led", 0), ("led", 1), ("led", 2), ("led", 3)),
        program=("-b", "arty_a7_100t", "{bitstream}"),
        flash=("-b", "arty_a7_100t", "-f", "{bitstream}"),
        bitstream="top.bit", slots=16, build="plan",
        notes="Vivado is not open source: the build writes Amaranth's Vivado build plan "
              "(build_top.sh, top.tcl, top.xdc, top.v) and reports Yosys synth_xilinx "
              "resource counts instead of running it"),
)}


def get_board(name):
    """The :class:`BoardSpec` called ``name``; :class:`UnknownBoard` with the
    list (and a close match) otherwise."""
    if isinstance(name, BoardSpec):
        return name
    b = BOARDS.get(str(name).lower())
    if b is None:
        hint = did_you_mean(name, BOARDS)
        raise UnknownBoard(f"unknown board {name!r}{hint}; known boards: {', '.join(BOARDS)}")
    return b
