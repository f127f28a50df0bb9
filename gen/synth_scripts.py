"""The tools' command lines of a synthesis run: the Yosys scripts (the
DSP-budget pre-pass, the synthesis proper per family, the multipliers moved to
logic), nextpnr's and the bitstream packer's arguments.  Text only: nothing
here runs a tool (``gen/synth.py`` does)."""

import hashlib
from collections import Counter
from pathlib import Path

from .estimate_model import soft_multiplier_luts

__all__ = ["KEEP_COPIES", "SOFTMUL_V", "GOWIN_MUL_V", "_PREPARED", "_SOFTMUL_FAMILIES", "_prepare_script", "_yosys_script", "_mul_cells",
           "_soft_selection", "_nextpnr_argv", "_pack_argv"]


SOFTMUL_V = Path(__file__).with_name("softmul.v")
#: $mul -> GW5A MULT12X12 (synth_gowin maps no multipliers to DSPs for gw5a).
GOWIN_MUL_V = Path(__file__).with_name("gowin_mul.v")
#: Families whose Yosys run always starts from the pre-pass (their multipliers
#: are mapped by a techmap of ours, at the widths ``wreduce`` leaves).
_PREPARED = {"gw5a"}
#: Families whose surplus multipliers (``--max-dsp``) are ``softmul.v`` trees
#: (a carry chain in the fabric); the others use Yosys ``booth``.
_SOFTMUL_FAMILIES = {"ecp5", "gw5a", "xc7"}
#: Yosys synthesis command per family.
_SYNTH_CMD = {"ecp5": "synth_ecp5", "ice40": "synth_ice40 -dsp",
              "gw5a": "synth_gowin -family gw5a", "xc7": "synth_xilinx -family xc7 -flatten"}


#: Yosys command: the cells that drive a signal marked ``keep`` are marked too
#: (see :func:`_read_script`); the board builds run it after reading the design.
KEEP_COPIES = "setattr -set keep 1 a:keep w:* %i %ci1 c:* %i"


def _read_script(top):
    """Yosys commands that read the design: ``top.v`` elaborated to cells,
    the cells that drive a signal marked ``keep`` marked too.  The hardware
    marks deliberate copies of a register so (the weight banks' stall-state
    copies, ``hdl/banks.py``); Yosys keeps the attribute on the wire only,
    and ``opt_merge`` would fold the copies back into one flip-flop."""
    return (f"read_verilog top.v\nhierarchy -top {top}\nproc\n"
            f"{KEEP_COPIES}\n")


def _prepare_script(top):
    """Yosys script of the DSP-budget pre-pass: the design flattened and its
    multipliers narrowed to their real operand widths (``wreduce``), the
    ``$mul`` cells listed for :func:`_soft_selection`."""
    return (_read_script(top) + "flatten\nopt_expr\nopt_merge\n"
            f"opt_clean\nwreduce\nopt_clean\ntee -q -o muls.il dump t:$mul\n"
            f"write_rtlil pre.il\n")


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _yosys_script(target, opts, soft_muls=0, selection="@SELECTION@"):
    """Yosys script.  With ``soft_muls``, the design comes from the pre-pass
    (:func:`_prepare_script`) and ``selection`` (a ``select`` expression for
    that many ``$mul`` cells) is built from logic before the DSP mapping sees
    it: the shift-and-add trees of ``softmul.v`` on the ECP5, GW5A and
    7-series, ``booth`` on the iCE40 (where it is the smaller of the two).
    On the GW5A the design always comes from the pre-pass and the remaining
    ``$mul`` cells become MULT12X12 through ``gowin_mul.v`` (Yosys maps none
    for that family)."""
    extra = " ".join(opts.yosys_args)
    synth = f"{_SYNTH_CMD[target.family]} -top {opts.top} -json top.json {extra}".strip()
    tail = f"{synth}\ntee -q -o yosys_stat.json stat -json\n"
    if target.family == "gw5a":
        tail = (f"# gowin_mul.v {_digest(GOWIN_MUL_V)}\ntechmap -map gowin_mul.v t:$mul\n"
                + tail)
    if not soft_muls:
        head = "read_rtlil pre.il\n" if target.family in _PREPARED else _read_script(opts.top)
        return head + tail
    if target.family in _SOFTMUL_FAMILIES:
        soft = f"# softmul.v {_digest(SOFTMUL_V)}\ntechmap -map softmul.v @soft_muls\n"
    else:
        soft = "booth @soft_muls\n"
    return (f"read_rtlil pre.il\n# {soft_muls} multipliers in logic\n"
            f"select -set soft_muls {selection}\n{soft}select -clear\n" + tail)


def _mul_cells(dump):
    """``(A_SIGNED, A_WIDTH, B_SIGNED, B_WIDTH, Y_WIDTH)`` of every ``$mul``
    cell in an RTLIL dump."""
    cells, cur = [], None
    for line in dump.splitlines():
        words = line.split()
        if words[:2] == ["cell", "$mul"]:
            cur = {}
        elif cur is not None and words[:1] == ["parameter"] and len(words) == 3:
            cur[words[1].lstrip("\\")] = int(words[2].split("'")[-1], 2) \
                if "'" in words[2] else int(words[2])
        elif cur is not None and words == ["end"]:
            cells.append(tuple(cur[k] for k in ("A_SIGNED", "A_WIDTH", "B_SIGNED", "B_WIDTH",
                                                "Y_WIDTH")))
            cur = None
    return cells


def _soft_selection(cells, n, family):
    """A ``select`` expression for ``n`` of ``cells`` (from :func:`_mul_cells`),
    the cheapest in logic first; groups of equal signature are taken whole
    where possible (``%R`` picks from a partial group, deterministically)."""
    groups = Counter(cells)
    order = sorted(groups, key=lambda g: (soft_multiplier_luts(family, g[1], g[3], g[4]), g))
    parts, left = [], n
    for sa, aw, sb, bw, yw in order:
        if left <= 0:
            break
        take = min(left, groups[(sa, aw, sb, bw, yw)])
        expr = (f"t:$mul r:A_SIGNED={sa} %i r:A_WIDTH={aw} %i r:B_SIGNED={sb} %i "
                f"r:B_WIDTH={bw} %i r:Y_WIDTH={yw} %i")
        if take < groups[(sa, aw, sb, bw, yw)]:
            expr += f" %R{take}"
        parts.append(expr)
        left -= take
    return " ".join(parts) + " %u" * (len(parts) - 1)


def _nextpnr_argv(cmd, target, opts, freq):
    """nextpnr command line (None for a target without place and route)."""
    if cmd is None:
        return None
    # router2: on a 10k-LUT ECP5 design it finishes in ~1.5 min where router1
    # was still negotiating congestion after 15 (docs/synthesis.md)
    # The clock goes on the board's clock pin: an auto-placed clock input need
    # not reach the global network (router2 then fails to route it).
    # nextpnr-himbaechel-gowin: its default router (router2 hit the same
    # clock-routing failure as router1 on the GCLK pins).
    # nextpnr-ice40: its default, router1: router2 looped for over 20 min
    # on two overused wires of the small network (66 % of the UP5K) where
    # router1 finished in 24 s, 35.9 MHz (2026-12-02)
    router = ["--router", "router2"] if target.family == "ecp5" else []
    argv = [cmd, *target.pnr_args, "--json", "top.json", "--report", "nextpnr_report.json",
            "--freq", f"{freq:g}", "--seed", str(opts.seed), *router,
            *target.constraints(freq)[2], "--timing-allow-fail", "-l", "nextpnr.log", "-q"]
    argv += {"ecp5": ["--textcfg", "top.config"], "ice40": ["--asc", "top.asc"],
             "gw5a": ["--write", "pnr.json"]}[target.family]
    return argv + list(opts.nextpnr_args)


#: family -> (gowin_pack-style device argument) of the bitstream packer.
_PACK_DEVICE = {"gw5a": "GW5AST-138C"}


def _pack_argv(cmd, target):
    """Bitstream packer command line: the placed and routed design
    (``pnr.json``) to ``top.fs``."""
    return [cmd, "-d", _PACK_DEVICE[target.family], "-o", "top.fs", "pnr.json"]
