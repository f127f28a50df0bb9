"""Hand-computed cases pinning the arithmetic of SPEC section 4."""
import numpy as np
import pytest

from sparse_edge.gen.fixedpoint import QFormat
from sparse_edge.gen.tables import activation_table

Q27 = QFormat(2, 7)


def test_format_bounds():
    assert Q27.width == 10 and Q27.min == -512 and Q27.max == 511 and Q27.one == 128
    assert QFormat(3, 12).width == 16


@pytest.mark.parametrize("a,b,expect", [
    (128, 128, 128),        # 1.0 * 1.0
    (64, 64, 32),           # 0.5 * 0.5 = 0.25
    (3, 3, 0),              # 9/128 = 0.07 -> rounds to 0
    (8, 8, 1),              # 64/128 = 0.5 LSB: half rounds up
    (-8, 8, 0),             # -0.5 LSB: half up -> 0
    (-9, 8, -1),            # -72/128 = -0.5625 -> -1
    (511, 511, 511),        # saturates high
    (-512, 511, -512),      # -15.97 saturates to the minimum
    (-512, 128, -512),      # -4.0 * 1.0 = -4.0 exactly
    (-511, 129, -512),      # -4.0234 saturates
    (-512, -512, 511),      # +2048 -> saturates
    (300, -300, -512),      # -703.1 -> saturates low
])
def test_mul_cases(a, b, expect):
    assert int(Q27.mul(a, b)) == expect


def test_mul_saturated_minimum_gets_no_rounding_bit():
    # -4.0 * 3.99 would be -15.96: saturates to the minimum and stays there.
    # The reference RTL added the rounding bit after saturating (-512 -> -511).
    assert int(Q27.mul(-512, 511)) == -512
    assert int(Q27.mul(-512, 400)) == -512


@pytest.mark.parametrize("x,k,expect", [(5, 1, 3), (-5, 1, -2), (4, 2, 1), (6, 2, 2),
                                        (-6, 2, -1), (7, 0, 7), (-1, 3, 0), (-4, 3, 0),
                                        (-5, 3, -1)])
def test_round_shift(x, k, expect):
    assert QFormat.round_shift(x, k) == expect


def test_bias_step_and_saturating_add():
    assert Q27.bias_step(10, 3) == -1      # -10/8 = -1.25 -> -1
    assert Q27.bias_step(-12, 3) == 2      # 1.5 -> 2 (half up)
    assert Q27.bias_step(12, 3) == -1      # -1.5 -> -1 (half up)
    assert int(Q27.add(500, 20)) == 511 and int(Q27.add(-500, -20)) == -512


def test_pixel_mapping():
    assert list(Q27.pixel([0, 1, 2, 255])) == [0, 0, 1, 127]
    assert list(QFormat(3, 12).pixel([0, 1, 255])) == [0, 16, 255 * 16]
    assert list(QFormat(2, 8).pixel([7, 255])) == [7, 255]


def test_from_float_rounds_half_up_and_saturates():
    assert list(Q27.from_float([0.5 / 128, -0.5 / 128, 10.0, -10.0])) == [1, 0, 511, -512]


def test_activation_table_exact_for_full_resolution():
    t = activation_table(Q27, 10)
    assert t.depth == 1024 and t.shift == 0
    s0 = t.index(0)
    assert t.sigma[s0] == 64                     # sigma(0) = 0.5
    assert t.dsigma[s0] == 32                    # 0.25
    assert t.sigma[t.index(-512)] == 2           # sigma(-4) = 0.018 -> 2.3 -> 2
    assert t.sigma[t.index(511)] == 126          # sigma(3.99) = 0.9818 -> 125.7 -> 126
    assert (np.diff(t.sigma) >= 0).all()
    assert t.dsigma.min() >= 1


def test_activation_table_reduced_resolution_uses_bucket_centre():
    fmt = QFormat(3, 12)
    t = activation_table(fmt, 10)
    assert t.shift == 6
    i = t.index(0)                               # bucket of codes 0..63
    centre = 31.5 / 4096
    assert t.sigma[i] == int(np.floor(1 / (1 + np.exp(-centre)) * 4096 + 0.5))
    assert (t.index(np.array([fmt.min, fmt.max])) == [0, 1023]).all()
    assert t.dsigma.min() >= 1


def test_derivative_never_zero_even_when_saturated():
    fmt = QFormat(3, 4)
    t = activation_table(fmt, 8)
    assert t.dsigma[0] == 1 and t.dsigma[-1] == 1
