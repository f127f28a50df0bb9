"""Fixed-point arithmetic units, bit-exact with :mod:`sparse_edge.gen.fixedpoint`.

The numpy functions of :class:`sparse_edge.gen.fixedpoint.QFormat` and
:mod:`sparse_edge.gen.tables` are the definition of the arithmetic; everything
here reproduces them bit for bit (``tests/test_hdl_arith.py`` checks it).

Two layers:

* **Expression helpers** (:func:`sat_value`, :func:`round_shift_value`,
  :func:`round_shift_var`, :func:`mul_value`): plain functions returning
  Amaranth values, to be used inline inside bigger datapaths.
* **Components** (:class:`Saturate`, :class:`RoundMul`, :class:`BiasStep`,
  :class:`ActivationROM`): :class:`amaranth.lib.wiring.Component` wrappers with
  typed signatures, for reuse, unit tests and Verilog emission.

All codes are two's complement; ``fmt.width`` is ``1 + int_bits + frac_bits``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..gen.fixedpoint import QFormat
from ..gen.geometry import K_MAX
from ..gen.tables import ActivationTable

__all__ = [
    "check_fmt", "check_int", "round_mul", "sat_value", "round_shift_value", "round_shift_var", "mul_value", "round_sat",
    "Saturate", "RoundMul", "BiasStep", "ActivationROM",
]


# -- helpers -----------------------------------------------------------------

def check_fmt(fmt, who):
    if not isinstance(fmt, QFormat):
        raise ValueError(f"{who}: fmt must be a QFormat, not {fmt!r}")
    if (not isinstance(fmt.int_bits, int) or not isinstance(fmt.frac_bits, int)
            or fmt.int_bits < 0 or fmt.frac_bits < 0):
        raise ValueError(f"{who}: format {fmt} needs non-negative integer int_bits and "
                         f"frac_bits")


def check_int(value, name, who, lo=1):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{who}: {name} must be an int, not {value!r}")
    if value < lo:
        raise ValueError(f"{who}: {name} must be >= {lo}, not {value}")


def _as_signed(x):
    """``x`` as a signed value with the same numeric value (zero-extend unsigned)."""
    x = Value.cast(x)
    if x.shape().signed:
        return x
    return Cat(x, Const(0, 1)).as_signed()


def _resize_signed(x, width):
    """Signed value ``x`` sign-extended or truncated to ``signed(width)``."""
    if len(x) >= width:
        return x[:width].as_signed()
    return Cat(x, x[-1].replicate(width - len(x))).as_signed()


# -- expression helpers ------------------------------------------------------

def sat_value(x, fmt):
    """Clamp ``x`` to ``[fmt.min, fmt.max]`` (``QFormat.sat``).

    Parameters
    ----------
    x : value-like
        Value of any width (signed; unsigned values are taken as non-negative).
    fmt : QFormat
        Target format.

    Returns
    -------
    Value
        ``signed(fmt.width)``, combinational.
    """
    x = _as_signed(x)
    w = fmt.width
    if len(x) <= w:
        # Every value of x is representable: a plain sign extension.
        return _resize_signed(x, w)
    clamped = Mux(x > fmt.max, fmt.max, Mux(x < fmt.min, fmt.min, x))
    return clamped[:w].as_signed()


def round_shift_value(x, k):
    """``x * 2**-k`` rounded half up (``QFormat.round_shift``), constant ``k``.

    Computes ``(x + 2**(k-1)) >> k`` with an arithmetic shift; ``k = 0`` is the
    identity.

    Parameters
    ----------
    x : value-like
        Value of any width (signed; unsigned values are taken as non-negative).
    k : int
        Shift amount, ``>= 0``.

    Returns
    -------
    Value
        Signed, wide enough that the result never overflows (one bit wider
        than ``x`` minus ``k``, at least 1 bit), combinational.
    """
    check_int(k, "k", "round_shift_value", 0)
    x = _as_signed(x)
    if k == 0:
        return x
    return (x + (1 << (k - 1))) >> k


def round_shift_var(x, k_sig, k_max):
    """``x * 2**-k`` rounded half up for a run-time shift ``k`` in ``0..k_max``.

    Barrel shift: ``(x + bias) >> k`` (arithmetic) with ``bias = 2**(k-1)``
    for ``k >= 1`` and ``0`` for ``k = 0``; exact for every ``k`` in
    ``0..k_max``.  For ``k > k_max`` the rounding bias is dropped (the result
    is the floored shift) -- callers must keep ``k`` in range.

    Parameters
    ----------
    x : value-like
        Value of any width (signed; unsigned values are taken as non-negative).
    k_sig : value-like
        Unsigned shift amount.
    k_max : int
        Largest shift amount that must be exact, ``>= 0``.

    Returns
    -------
    Value
        Signed, ``max(len(x), k_max + 1) + 1`` bits (never overflows),
        combinational.
    """
    check_int(k_max, "k_max", "round_shift_var", 0)
    x = _as_signed(x)
    k_sig = Value.cast(k_sig)
    if k_sig.shape().signed:
        raise ValueError("round_shift_var: the shift amount must be unsigned")
    if k_max == 0:
        return x
    # (1 << k) >> 1 for k in 0..k_max: 0, 1, 2, ..., 2**(k_max-1).
    bias = (Const(1, unsigned(k_max + 1)) << k_sig)[1:k_max + 1]
    return (x + bias) >> k_sig


def mul_value(a, b, fmt):
    """Rounded, saturated product of two codes (``QFormat.mul``).

    Exact product, round half up by ``fmt.frac_bits``, then saturate.

    Parameters
    ----------
    a, b : value-like
        Signed codes (any width; normally ``signed(fmt.width)``).
    fmt : QFormat
        Format of the result and of the fraction point.

    Returns
    -------
    Value
        ``signed(fmt.width)``, combinational.
    """
    return round_sat(_as_signed(a) * _as_signed(b), fmt)


def round_sat(product, fmt):
    """Second half of :func:`mul_value`: round an exact product half up by
    ``fmt.frac_bits`` and saturate it, so a datapath can register the product
    (the multiplier's output register) and round in the next stage.

    ``mul_value(a, b, fmt)`` is ``round_sat(a * b, fmt)``.

    Returns
    -------
    Value
        ``signed(fmt.width)``, combinational.
    """
    return sat_value(round_shift_value(_as_signed(product), fmt.frac_bits), fmt)


# -- components --------------------------------------------------------------

class Saturate(wiring.Component):
    """Combinational saturation of a wide signed value to a format.

    Parameters
    ----------
    in_width : int
        Width of the signed input, ``>= 1``.
    fmt : QFormat
        Output format.

    Members
    -------
    i : In(signed(in_width))
        Value to clamp.
    o : Out(signed(fmt.width))
        ``fmt.sat(i)``.

    Latency: 0 (combinational).
    """

    def __init__(self, in_width, fmt):
        check_int(in_width, "in_width", "Saturate", 1)
        check_fmt(fmt, "Saturate")
        self.in_width = in_width
        self.fmt = fmt
        super().__init__({
            "i": In(signed(in_width)),
            "o": Out(signed(fmt.width)),
        })

    @property
    def latency(self):
        return 0

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(sat_value(self.i, self.fmt))
        return m


class RoundMul(wiring.Component):
    """Rounded, saturated fixed-point multiplier (``fmt.mul``).

    Parameters
    ----------
    fmt : QFormat
        Format of the result (and of the fraction point).
    stages : int
        Pipeline registers, ``>= 0`` (0: combinational).  The first register
        holds the exact product (the multiplier's output register), the
        others delay the rounded, saturated result.
    a_shape, b_shape : shape-like, optional
        Operand shapes (default ``signed(fmt.width)``); an unsigned operand is
        taken as non-negative (zero-extended to a signed operand), so the
        multiplier is exactly as wide as its operands' values need.

    Members
    -------
    a : In(a_shape)
    b : In(b_shape)
        Operand codes.
    o : Out(signed(fmt.width))
        ``fmt.mul(a, b)``, ``stages`` cycles after the operands (``sync``
        domain when ``stages > 0``).

    Attributes
    ----------
    latency : int
        ``stages``.
    """

    def __init__(self, fmt, stages=0, a_shape=None, b_shape=None):
        check_fmt(fmt, "RoundMul")
        check_int(stages, "stages", "RoundMul", 0)
        self.fmt = fmt
        self.stages = stages
        w = fmt.width
        super().__init__({
            "a": In(signed(w) if a_shape is None else a_shape),
            "b": In(signed(w) if b_shape is None else b_shape),
            "o": Out(signed(w)),
        })

    @property
    def latency(self):
        return self.stages

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.o.eq(round_mul(m, self.a, self.b, self.fmt, self.stages))
        return m


def round_mul(m, a, b, fmt, stages, name="product"):
    """:class:`RoundMul`'s pipeline added to module ``m`` (for a block with
    many multipliers, e.g. an edge lane's three, without a submodule each):
    the exact product registered (``name``), rounded and saturated, then
    ``stages - 1`` more registers (``{name}_round{n}``).  Returns the result,
    ``fmt.mul(a, b)`` ``stages`` clocks later."""
    product = _as_signed(a) * _as_signed(b)
    if stages == 0:
        return round_sat(product, fmt)
    p_reg = Signal(product.shape(), name=name)
    m.d.sync += p_reg.eq(product)
    result = round_sat(p_reg, fmt)
    for n in range(1, stages):
        r = Signal(signed(fmt.width), name=f"{name}_round{n}")
        m.d.sync += r.eq(result)
        result = r
    return result


class BiasStep(wiring.Component):
    """Bias change ``round_half_up(-d * 2**-k)`` (``fmt.bias_step``).

    Not saturated: the output is one bit wider than the format so that
    ``-fmt.min`` fits.

    Parameters
    ----------
    fmt : QFormat
        Format of the delta ``d``.
    k_max : int
        Largest learning-rate shift, ``>= 0`` (default ``K_MAX``, 15).

    Members
    -------
    d : In(signed(fmt.width))
        Delta code.
    k : In(unsigned(max(1, k_max.bit_length())))
        Learning-rate shift, ``0..k_max`` (``LR_BITS`` = 4 bits for ``k_max = 15``).
    o : Out(signed(fmt.width + 1))
        ``fmt.bias_step(d, k)``.

    Latency: 0 (combinational).
    """

    def __init__(self, fmt, k_max=K_MAX):
        check_fmt(fmt, "BiasStep")
        check_int(k_max, "k_max", "BiasStep", 0)
        self.fmt = fmt
        self.k_max = k_max
        w = fmt.width
        super().__init__({
            "d": In(signed(w)),
            "k": In(unsigned(max(1, k_max.bit_length()))),
            "o": Out(signed(w + 1)),
        })

    @property
    def latency(self):
        return 0

    def elaborate(self, platform):
        m = Module()
        w = self.fmt.width
        neg = _resize_signed(-self.d, w + 1)
        # |round_shift(-d, k)| <= 2**(w-1) for every k: w + 1 bits suffice.
        m.d.comb += self.o.eq(_resize_signed(round_shift_var(neg, self.k, self.k_max), w + 1))
        return m


class ActivationROM(wiring.Component):
    """Sigmoid and derivative lookup (``table.lookup``), synchronous read.

    :class:`amaranth.lib.memory.Memory` ROMs initialised from ``table.sigma``
    and ``table.dsigma`` (the golden model's arrays), read at the top
    ``table.table_bits`` bits of ``s`` with the sign bit inverted (``==
    table.index(s)``).  With ``ports`` the ROMs have that many read ports (the
    right neurons a junction finishes per clock share one ROM: a block RAM
    serves two reads).

    Parameters
    ----------
    table : ActivationTable
        Table built by :func:`sparse_edge.gen.tables.activation_table`.
    ports : int or None
        ``None``: one lookup, scalar members.  An int: that many lookups,
        array members.
    derivative : bool
        Also look up ``dsigma`` (``da``); without it there is no ``sigma'``
        ROM (the output layer needs none).

    Members
    -------
    s : In(signed(table.fmt.width)) (``.array(ports)``)
        Saturated pre-activation code.
    a : Out(signed(table.fmt.width)) (``.array(ports)``)
        ``sigma`` entry for ``s``, one cycle later.
    da : Out(signed(table.fmt.width)) (``.array(ports)``), with ``derivative``
        ``dsigma`` entry for ``s``, one cycle later.

    Attributes
    ----------
    latency : int
        1 (``sync`` domain read ports).
    """

    def __init__(self, table, ports=None, derivative=True):
        if not isinstance(table, ActivationTable):
            raise ValueError(f"ActivationROM: table must be an ActivationTable, not {table!r}")
        fmt = table.fmt
        check_fmt(fmt, "ActivationROM")
        if ports is not None:
            check_int(ports, "ports", "ActivationROM", 1)
        if not 1 <= table.table_bits <= fmt.width:
            raise ValueError(f"ActivationROM: table_bits must be in 1..{fmt.width} for {fmt}, "
                             f"not {table.table_bits}")
        for name in ("sigma", "dsigma"):
            arr = getattr(table, name)
            if len(arr) != table.depth:
                raise ValueError(f"ActivationROM: table.{name} has {len(arr)} entries, "
                                 f"expected {table.depth}")
            lo, hi = int(min(arr)), int(max(arr))
            if lo < fmt.min or hi > fmt.max:
                raise ValueError(f"ActivationROM: table.{name} holds values in [{lo}, {hi}], "
                                 f"outside {fmt} [{fmt.min}, {fmt.max}]")
        self.table = table
        self.fmt = fmt
        self.ports = ports
        self.derivative = derivative
        w = fmt.width

        def member(flow):
            return flow(signed(w)) if ports is None else flow(signed(w)).array(ports)
        members = {"s": member(In), "a": member(Out)}
        if derivative:
            members["da"] = member(Out)
        super().__init__(members)

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        t = self.table
        w = self.fmt.width
        shape = signed(w)
        one = self.ports is None
        s = [self.s] if one else list(self.s)
        roms = [("sigma", t.sigma, [self.a] if one else list(self.a))]
        if self.derivative:
            roms.append(("dsigma", t.dsigma, [self.da] if one else list(self.da)))
        for name, values, outs in roms:
            rom = Memory(shape=shape, depth=t.depth, init=[int(v) for v in values])
            m.submodules[name] = rom
            for si, out in zip(s, outs):
                port = rom.read_port(domain="sync")
                m.d.comb += [port.addr.eq(Cat(si[t.shift:w - 1], ~si[w - 1])),
                             out.eq(port.data)]
        return m
