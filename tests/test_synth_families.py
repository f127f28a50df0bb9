"""The Gowin GW5A and Xilinx 7-series flows (gen/synth.py, issue 13).

* ``gen/gowin_mul.v`` maps ``$mul`` cells onto the GW5A's MULT12X12: proven
  equal to ``$mul`` with a Yosys SAT miter for signed and unsigned products,
  one tile and several tiles (split operands), truncated and extended results;
  products split in both operands (formats wider than 12 bits) are beyond a
  SAT proof here and are checked on corner and random vectors instead.

Tests needing a tool skip with a message naming it.
"""
import random
import subprocess
from pathlib import Path

import pytest

from sparse_edge.gen import synth
from sparse_edge.gen.synth import ToolMissing, check_tools

pytestmark = pytest.mark.tools

GOWIN_MUL_V = Path(synth.__file__).with_name("gowin_mul.v")

#: Behaviour of the GW5A MULT12X12 with every register bypassed, as Gowin's
#: simulation library defines it: both 12-bit operands sign-extended, the
#: 24-bit two's-complement product.
MULT12X12_MODEL = """
module MULT12X12(DOUT, A, B, CLK, CE, RESET);
  parameter AREG_CLK = "BYPASS"; parameter BREG_CLK = "BYPASS";
  parameter PREG_CLK = "BYPASS"; parameter OREG_CLK = "BYPASS";
  parameter MULT_RESET_MODE = "SYNC";
  output [23:0] DOUT; input [11:0] A, B; input [1:0] CLK, CE, RESET;
  assign DOUT = $signed(A) * $signed(B);
endmodule
"""


def _yosys():
    try:
        return check_tools("ecp5-25f")["yosys"][0]
    except ToolMissing as e:
        pytest.skip(str(e))


def _gold(signed, aw, bw, yw):
    """One ``$mul`` cell in RTLIL (Yosys requires A_SIGNED == B_SIGNED)."""
    return (f"module \\gold\n  wire width {aw} input 1 \\a\n  wire width {bw} input 2 \\b\n"
            f"  wire width {yw} output 3 \\y\n  cell $mul \\m\n"
            f"    parameter \\A_SIGNED {signed}\n    parameter \\B_SIGNED {signed}\n"
            f"    parameter \\A_WIDTH {aw}\n    parameter \\B_WIDTH {bw}\n"
            f"    parameter \\Y_WIDTH {yw}\n    connect \\A \\a\n    connect \\B \\b\n"
            f"    connect \\Y \\y\n  end\nend\n")


def _miter(tmp_path, signed, aw, bw, yw, tiles, check):
    (tmp_path / "gold.il").write_text(_gold(signed, aw, bw, yw))
    (tmp_path / "model.v").write_text(MULT12X12_MODEL)
    (tmp_path / "gowin_mul.v").write_text(GOWIN_MUL_V.read_text())
    script = ("read_rtlil gold.il; read_verilog model.v; copy gold gate; "
              "techmap -map gowin_mul.v gate/t:$mul; "
              f"select -assert-count {tiles} gate/t:MULT12X12; "
              f"select -assert-count {0 if tiles else 1} gate/t:$mul; opt_clean; "
              "miter -equiv -flatten -make_assert gold gate miter; hierarchy -top miter; "
              + check)
    return subprocess.run([_yosys(), "-p", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)


# (signed, A width, B width, Y width, MULT12X12 tiles)
PROVEN = [
    # the products of a Q(2,7) datapath after wreduce: FF 8x10, UP 11x8, BP 10x10,
    # derivative 7x10 -- one tile each
    (1, 8, 10, 18, 1), (1, 11, 8, 19, 1), (1, 10, 10, 20, 1), (1, 7, 10, 17, 1),
    (1, 12, 12, 24, 1), (0, 11, 11, 22, 1), (0, 7, 10, 17, 1),
    # truncated and extended results
    (1, 3, 14, 8, 2), (1, 2, 14, 40, 2),
    # operands split into chunks: signed 14 bits and 24 bits, unsigned 12 and 23
    (1, 3, 14, 17, 2), (1, 2, 24, 26, 3), (0, 12, 3, 15, 2), (0, 23, 2, 25, 3),
    # a 1-bit operand is an AND gate: left to logic
    (1, 1, 9, 10, 0),
]


@pytest.mark.parametrize("signed,aw,bw,yw,tiles", PROVEN)
def test_gowin_mul_techmap_is_exact(tmp_path, signed, aw, bw, yw, tiles):
    """SAT proof: gowin_mul.v (with MULT12X12 as Gowin defines it) equals
    ``$mul`` for every input."""
    out = _miter(tmp_path, signed, aw, bw, yw, tiles, "sat -verify -prove-asserts miter")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "SAT proof finished - no model found: SUCCESS!" in out.stdout


@pytest.mark.parametrize("signed,aw,bw", [(1, 16, 16), (0, 13, 12)])
def test_gowin_mul_split_in_both_operands(tmp_path, signed, aw, bw):
    """Products split in both operands (16-bit formats: 4 tiles and 3 adders)
    defeat a SAT proof in reasonable time; they are checked on the corner
    values of every chunk and on random operands instead."""
    yw = aw + bw
    rng = random.Random(13)

    def corners(w):
        lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if signed else (0, (1 << w) - 1)
        vals = {lo, hi, 0, 1, -1 if signed else 2, (1 << 11) - 1, 1 << 11, (1 << 11) + 1}
        vals |= {rng.randint(lo, hi) for _ in range(6)}
        return sorted(v for v in vals if lo <= v <= hi)
    pairs = [(a, b) for a in corners(aw) for b in corners(bw)]
    checks = " ".join(f"sat -verify -prove-asserts -set in_a {a % (1 << aw)} "
                      f"-set in_b {b % (1 << bw)} miter;" for a, b in pairs)
    tiles = -(-(aw - signed) // 11) * -(-(bw - signed) // 11)
    out = _miter(tmp_path, signed, aw, bw, yw, tiles, checks)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.count("SAT proof finished - no model found: SUCCESS!") == len(pairs)
