"""Activation lookup tables: the one function that builds both the hardware
ROM contents and the golden model's table.

The sigmoid ``a = sigma(s)`` and its derivative ``a' = sigma'(s)`` are looked
up by the saturated pre-activation code ``s`` (a ``w``-bit signed code).

* **Domain**: the whole range of the format, ``[-2**int, 2**int)``; no extra
  clamp is needed because ``s`` is saturated before the lookup.
* **Resolution**: the table has ``2**table_bits`` entries (``table_bits <= w``).
  The index drops the ``shift = w - table_bits`` least significant bits of
  ``s``: ``index = (s >> shift) + 2**(table_bits-1)`` (in hardware: the top
  ``table_bits`` bits of ``s`` with the sign bit inverted).
* **Entry value**: evaluated in float64 at the centre of the bucket of codes,
  ``x = ((index - 2**(table_bits-1)) * 2**shift + (2**shift - 1) / 2) * 2**-frac``,
  then rounded half up to a code and saturated: ``a = sigma(x)``,
  ``a' = sigma(x) * (1 - sigma(x))``; ``a'`` is at least 1 LSB (never 0),
  so a saturated neuron still passes a delta back.
"""

from dataclasses import dataclass

import numpy as np

from .fixedpoint import QFormat

__all__ = ["ActivationTable", "activation_table"]


@dataclass(frozen=True, eq=False)
class ActivationTable:
    fmt: QFormat
    table_bits: int
    sigma: np.ndarray   # int32 codes, 2**table_bits entries
    dsigma: np.ndarray  # int32 codes, 2**table_bits entries, all >= 1

    @property
    def shift(self):
        return self.fmt.width - self.table_bits

    @property
    def depth(self):
        return 1 << self.table_bits

    def index(self, s):
        """Table index of saturated pre-activation codes ``s``."""
        return (np.asarray(s) >> self.shift) + (1 << (self.table_bits - 1))

    def lookup(self, s):
        i = self.index(s)
        return self.sigma[i], self.dsigma[i]


def activation_table(fmt, table_bits=None):
    """Build the sigmoid / derivative table for ``fmt`` (see module docstring)."""
    if table_bits is None:
        table_bits = fmt.width
    if not 1 <= table_bits <= fmt.width:
        raise ValueError(f"table_bits must be in 1..{fmt.width} for {fmt}, not {table_bits}")
    shift = fmt.width - table_bits
    idx = np.arange(1 << table_bits, dtype=np.int64) - (1 << (table_bits - 1))
    centre = (idx * (1 << shift) + ((1 << shift) - 1) / 2) / (1 << fmt.frac_bits)
    sig = 1.0 / (1.0 + np.exp(-centre))
    sigma = fmt.from_float(sig)
    dsigma = np.maximum(fmt.from_float(sig * (1.0 - sig)), 1).astype(np.int32)
    return ActivationTable(fmt, table_bits, sigma, dsigma)
