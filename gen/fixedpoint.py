"""Signed fixed-point number format and the bit-exact arithmetic of SPEC section 4.

Every value the accelerator stores (weights, biases, activations, activation
derivatives, deltas) is a two's-complement code of one format ``Q(int, frac)``
of width ``w = 1 + int + frac``: code ``c`` stands for ``c * 2**-frac``.

The functions here are the single definition of the arithmetic.  They work on
numpy integer arrays (or Python ints) of codes and are what the golden model
runs; the Amaranth units in ``sparse_edge.hdl.arith`` are tested against them.

Rules (also in ``docs/arithmetic.md``):

* ``sat``: clamp to ``[-2**(w-1), 2**(w-1) - 1]``.
* ``round_shift(x, k)``: ``x * 2**-k`` rounded half up (towards +inf on a tie),
  i.e. ``(x + 2**(k-1)) >> k`` with an arithmetic (flooring) shift; ``k = 0``
  is the identity.
* ``mul(a, b)``: exact product, ``round_shift`` by ``frac``, then ``sat``.
  Rounding happens before saturation, so a saturated minimum never gets a
  rounding bit added (the reference RTL's quirk is not reproduced).
* Pixels (unsigned 8 bit) map into the fraction field: ``p << (frac - 8)`` if
  ``frac >= 8`` else ``p >> (8 - frac)`` (truncation), i.e. ``p / 256``.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["QFormat", "MIN_FRAC_BITS", "MAX_WIDTH"]

#: Fewer fraction bits would keep fewer than 16 grey levels of a pixel.
MIN_FRAC_BITS = 4
#: The golden model computes products in int32 and the FPGA multipliers are
#: 18x18: 16-bit codes are the widest supported.
MAX_WIDTH = 16


@dataclass(frozen=True)
class QFormat:
    """Signed fixed-point format ``Q(int_bits, frac_bits)``.

    Parameters
    ----------
    int_bits : int
        Integer bits, not counting the sign bit.
    frac_bits : int
        Fraction bits.
    """

    int_bits: int
    frac_bits: int

    @property
    def width(self):
        """Total width in bits, sign included."""
        return 1 + self.int_bits + self.frac_bits

    @property
    def min(self):
        return -(1 << (self.width - 1))

    @property
    def max(self):
        return (1 << (self.width - 1)) - 1

    @property
    def one(self):
        """Code of the value 1.0 (the one-hot target)."""
        return 1 << self.frac_bits

    def __str__(self):
        return f"Q({self.int_bits},{self.frac_bits})"

    # -- conversions -------------------------------------------------------
    def to_float(self, code):
        return np.asarray(code, dtype=np.float64) / (1 << self.frac_bits)

    def from_float(self, value):
        """Round half up to the nearest code, then saturate."""
        v = np.floor(np.asarray(value, dtype=np.float64) * (1 << self.frac_bits) + 0.5)
        return np.clip(v, self.min, self.max).astype(np.int32)

    def pixel(self, pixels):
        """Map unsigned 8-bit pixels to codes (``p / 256``, truncated)."""
        p = np.asarray(pixels).astype(np.int32)
        if self.frac_bits >= 8:
            return p << (self.frac_bits - 8)
        return p >> (8 - self.frac_bits)

    # -- arithmetic on codes -----------------------------------------------
    def sat(self, x):
        return np.clip(x, self.min, self.max)

    @staticmethod
    def round_shift(x, k):
        """``x * 2**-k`` rounded half up (``k >= 0``)."""
        if k == 0:
            return x
        return (x + (1 << (k - 1))) >> k

    def mul(self, a, b):
        """Rounded, saturated product of two codes."""
        return self.sat(self.round_shift(np.multiply(a, b, dtype=np.int64), self.frac_bits))

    def add(self, a, b):
        return self.sat(a + b)

    def bias_step(self, d, k):
        """Bias change ``round_half_up(-d * 2**-k)`` (not yet saturated)."""
        return self.round_shift(-d, k)
