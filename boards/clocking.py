"""Board clocks: PLL settings computed from the oscillator and the wanted
frequency, and the PLL primitives of the board families.

The searches follow the vendors' rules as the open tools implement them
(``ecppll`` for the ECP5 EHXPLLL, ``icepll`` for the iCE40 SB_PLL40, the
7-series MMCME2 data sheet limits); the tests compare them with
``yowasp-ecppll`` and ``yowasp-icepll``.
"""

from dataclasses import dataclass

from amaranth.hdl import ClockDomain, ClockSignal, Const, Instance, Signal
from amaranth.lib.cdc import ResetSynchronizer

from ..gen.errors import SparseEdgeError

__all__ = ["ClockError", "PllSettings", "ecp5_pll", "ice40_pll", "xc7_mmcm", "pll_settings",
           "ClockGenerator"]


class ClockError(SparseEdgeError):
    """No PLL setting reaches the wanted clock."""


@dataclass(frozen=True)
class PllSettings:
    family: str
    fin_mhz: float
    fout_mhz: float
    params: dict          # primitive parameters

    def to_dict(self):
        return {"family": self.family, "fin_mhz": self.fin_mhz,
                "fout_mhz": round(self.fout_mhz, 6), "params": dict(self.params)}


def ecp5_pll(fin_mhz, fout_mhz):
    """EHXPLLL settings (CLKOP feedback): ``fout = fin / CLKI_DIV * CLKFB_DIV``
    with the PFD in 3.125..400 MHz and the VCO (``fout * CLKOP_DIV``) in
    400..800 MHz; the closest output, then the VCO nearest 600 MHz."""
    best = None
    for idiv in range(1, 129):
        fpfd = fin_mhz / idiv
        if not 3.125 <= fpfd <= 400:
            continue
        for fbdiv in range(1, 81):
            fout = fpfd * fbdiv
            if fout > 400:
                break
            for odiv in range(1, 129):
                fvco = fout * odiv
                if fvco < 400:
                    continue
                if fvco > 800:
                    break
                key = (abs(fout - fout_mhz), abs(fvco - 600))
                if best is None or key < best[0]:
                    best = (key, idiv, fbdiv, odiv, fout, fvco)
    if best is None:
        raise ClockError(f"no ECP5 PLL setting for {fout_mhz} MHz from {fin_mhz} MHz")
    _, idiv, fbdiv, odiv, fout, fvco = best
    return PllSettings("ecp5", fin_mhz, fout, {
        "CLKI_DIV": idiv, "CLKFB_DIV": fbdiv, "CLKOP_DIV": odiv, "CLKOP_CPHASE": odiv - 1,
        "CLKOP_FPHASE": 0, "VCO_MHZ": round(fvco, 6)})


def ice40_pll(fin_mhz, fout_mhz):
    """SB_PLL40 settings, SIMPLE feedback: ``fout = fin * (DIVF+1) / (DIVR+1)
    / 2**DIVQ`` with the PFD in 10..133 MHz and the VCO in 533..1066 MHz."""
    best = None
    for divr in range(16):
        fpfd = fin_mhz / (divr + 1)
        if not 10 <= fpfd <= 133:
            continue
        for divf in range(128):
            fvco = fpfd * (divf + 1)
            if not 533 <= fvco <= 1066:
                continue
            for divq in range(1, 7):
                fout = fvco / (1 << divq)
                key = abs(fout - fout_mhz)
                if best is None or key < best[0]:
                    best = (key, divr, divf, divq, fout, fpfd)
    if best is None:
        raise ClockError(f"no iCE40 PLL setting for {fout_mhz} MHz from {fin_mhz} MHz")
    _, divr, divf, divq, fout, fpfd = best
    filt = 1 if fpfd < 17 else 2 if fpfd < 26 else 3 if fpfd < 44 else 4 if fpfd < 66 else \
        5 if fpfd < 101 else 6
    return PllSettings("ice40", fin_mhz, fout, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                                 "FILTER_RANGE": filt})


def xc7_mmcm(fin_mhz, fout_mhz):
    """MMCME2_BASE settings (speed grade -1): VCO 600..1200 MHz, integer
    multiplier 2..64 and output divider 1..128, input divider 1..106."""
    best = None
    for divclk in range(1, 107):
        fpfd = fin_mhz / divclk
        if not 10 <= fpfd <= 450:
            continue
        for mult in range(2, 65):
            fvco = fpfd * mult
            if not 600 <= fvco <= 1200:
                continue
            odiv = max(1, min(128, round(fvco / fout_mhz)))
            fout = fvco / odiv
            key = (abs(fout - fout_mhz), divclk)
            if best is None or key < best[0]:
                best = (key, divclk, mult, odiv, fout, fvco)
    if best is None:
        raise ClockError(f"no 7-series MMCM setting for {fout_mhz} MHz from {fin_mhz} MHz")
    _, divclk, mult, odiv, fout, fvco = best
    return PllSettings("xc7", fin_mhz, fout, {"DIVCLK_DIVIDE": divclk, "CLKFBOUT_MULT_F": mult,
                                              "CLKOUT0_DIVIDE_F": odiv,
                                              "VCO_MHZ": round(fvco, 6)})


def pll_settings(family, fin_mhz, fout_mhz):
    """The family's PLL for ``fout_mhz``; ``None`` when the oscillator already
    is the clock."""
    if abs(fin_mhz - fout_mhz) < 1e-9:
        return None
    return {"ecp5": ecp5_pll, "ice40": ice40_pll, "xc7": xc7_mmcm}[family](fin_mhz, fout_mhz)


class ClockGenerator:
    """Builds the ``sync`` domain of a board top from its oscillator.

    ``osc`` is the oscillator input: the buffered clock signal (ECP5, 7-series,
    or any family without a PLL), or for the iCE40 PLL the raw pad port
    (``SB_PLL40_PAD`` takes the pad itself).  The domain's reset is held
    until the PLL locks, then released synchronously.
    """

    def __init__(self, settings, osc):
        self.settings, self.osc = settings, osc

    def elaborate_into(self, m):
        m.domains.sync = cd = ClockDomain("sync")
        s = self.settings
        locked = Signal(name="pll_locked")
        clk = Signal(name="pll_clk")
        if s is None:
            m.d.comb += [clk.eq(self.osc), locked.eq(1)]
        elif s.family == "ecp5":
            p = s.params
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{s.fin_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{s.fout_mhz:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
                p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=p["CLKOP_FPHASE"],
                p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p["CLKFB_DIV"],
                i_RST=Const(0), i_STDBY=Const(0), i_CLKI=self.osc, o_CLKOP=clk, i_CLKFB=clk,
                i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
                i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
                i_ENCLKOP=Const(0), o_LOCK=locked)
        elif s.family == "ice40":
            p = s.params
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=Const(p["DIVR"], 4),
                p_DIVF=Const(p["DIVF"], 7), p_DIVQ=Const(p["DIVQ"], 3),
                p_FILTER_RANGE=Const(p["FILTER_RANGE"], 3),
                io_PACKAGEPIN=self.osc, i_RESETB=Const(1), i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=clk, o_LOCK=locked)
        elif s.family == "xc7":
            p = s.params
            fb = Signal(name="mmcm_fb")
            raw = Signal(name="mmcm_clk")
            m.submodules.mmcm = Instance(
                "MMCME2_BASE",
                p_CLKIN1_PERIOD=round(1000 / s.fin_mhz, 3), p_DIVCLK_DIVIDE=p["DIVCLK_DIVIDE"],
                p_CLKFBOUT_MULT_F=float(p["CLKFBOUT_MULT_F"]),
                p_CLKOUT0_DIVIDE_F=float(p["CLKOUT0_DIVIDE_F"]),
                i_CLKIN1=self.osc, i_CLKFBIN=fb, o_CLKFBOUT=fb, o_CLKOUT0=raw, o_LOCKED=locked,
                i_PWRDWN=Const(0), i_RST=Const(0))
            m.submodules.bufg = Instance("BUFG", i_I=raw, o_O=clk)
        else:  # pragma: no cover - pll_settings only builds the three
            raise ClockError(f"no PLL for family {s.family}")
        m.d.comb += ClockSignal("sync").eq(clk)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
        return cd
