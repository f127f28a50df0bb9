"""The sample codec of the host link: 8-bit pixels <-> the pixel code of a
SAMPLE frame (part of the protocol, re-exported by :mod:`sparse_edge.gen.protocol`).

The pixel *symbol* is the part of an 8-bit pixel the number format uses,
``pixel >> (8 - symbol_bits)`` with ``symbol_bits = min(frac_bits, 8)``
(``QFormat.pixel`` maps ``symbol << (8 - symbol_bits)`` to the same code, so
the codec is lossless for the network).  With ``symbol_bits <= 7`` a byte
below 0x80 is one symbol and ``0x80 + n - 1`` a run of ``n`` zeros (``n <=
125``, so the pixel bytes never need stuffing); with 8-bit symbols a byte ``b
!= 0x80`` is the symbol ``b ^ 0x80`` and ``0x80, n - 1`` a run of ``n`` zeros
(``n <= 256``; the XOR keeps the common bright pixels 253 and 254 off the
``ESC`` and ``SYNC`` values).  Pixels after the last encoded one are zero, up
to ``layers[0]``.  The gateware's decoder is
:class:`~sparse_edge.hdl.link_buffers.PixelDecoder`.
"""

import numpy as np

from .errors import CodecError

__all__ = ["symbol_bits", "symbol_bits_of", "pixel_symbols", "MAX_RUN_7", "MAX_RUN_8", "RUN_8",
           "encode_pixels", "decode_pixels"]


def symbol_bits(fmt):
    """Bits of a pixel that the format uses (``min(frac_bits, 8)``)."""
    return symbol_bits_of(fmt.frac_bits)


def symbol_bits_of(frac_bits):
    return min(int(frac_bits), 8)


def pixel_symbols(pixels, sbits):
    """Symbols of 8-bit pixels: their ``sbits`` most significant bits."""
    p = np.asarray(pixels).astype(np.int64)
    return p >> (8 - sbits)


#: Longest zero run of one code byte (7-bit symbols; 8-bit symbols: 256).
MAX_RUN_7, MAX_RUN_8 = 125, 256
#: Zero-run code byte of 8-bit symbols (the code of symbol 0).
RUN_8 = 0x80


def encode_pixels(pixels, sbits):
    """Code of one image (``uint8`` pixels, ``inputs`` of them): see the
    module docstring.  Trailing zeros are left out."""
    if not 1 <= sbits <= 8:
        raise CodecError(f"symbol width {sbits} not in 1..8")
    s = pixel_symbols(pixels, sbits)
    nz = np.flatnonzero(s)
    out = bytearray()
    pos = 0
    for i in nz:
        run = int(i) - pos
        if sbits <= 7:
            while run > 0:
                n = min(run, MAX_RUN_7)
                out.append(0x80 + n - 1)
                run -= n
        else:
            while run > 0:
                n = min(run, MAX_RUN_8)
                out += bytes((RUN_8, n - 1))
                run -= n
        out.append(int(s[i]) if sbits <= 7 else int(s[i]) ^ 0x80)
        pos = int(i) + 1
    return bytes(out)


def decode_pixels(code, sbits, inputs, total=None):
    """Pixels (``uint8``, ``total`` of them, default ``inputs``) from a code,
    as the device writes them: ``symbol << (8 - sbits)``.  Raises
    :class:`CodecError` on a code the device rejects (more than ``inputs``
    pixels, a reserved byte, a run cut short)."""
    total = inputs if total is None else total
    out = np.zeros(total, dtype=np.uint8)
    pos, i, n = 0, 0, len(code)
    while i < n:
        b = code[i]
        i += 1
        if sbits <= 7:
            if b < 0x80:
                if b >> sbits:
                    raise CodecError(f"byte {i - 1}: symbol {b} wider than {sbits} bits")
                run, sym = 0, b
            elif b <= 0x80 + MAX_RUN_7 - 1:
                run, sym = b - 0x7F, None
            else:
                raise CodecError(f"byte {i - 1}: reserved code 0x{b:02X}")
        else:
            if b == RUN_8:
                if i >= n:
                    raise CodecError("zero run cut short at the end of the code")
                run, sym = code[i] + 1, None
                i += 1
            else:
                run, sym = 0, b ^ 0x80
        if sym is None:
            if pos + run > inputs:
                raise CodecError(f"zero run past the {inputs} input pixels")
            pos += run
        else:
            if pos >= inputs:
                raise CodecError(f"more than {inputs} pixels")
            out[pos] = sym << (8 - sbits)
            pos += 1
    return out
