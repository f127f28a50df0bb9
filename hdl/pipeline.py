"""Small building blocks every hardware block uses: registers named per stage,
delay lines, wrapping counters, adder-tree levels, and the conversion of the
geometry's plain shapes into Amaranth shapes.

These are functions that add statements to a module, not components: each
is a register or a counter, too small to deserve a signature of its own.
"""

from amaranth.hdl import Mux, Shape, Signal, Value

__all__ = ["as_shape", "reg", "delay", "wrap_counter", "tree_levels", "tree_sum", "Tags"]


def as_shape(s):
    """Amaranth shape of a :class:`~sparse_edge.gen.geometry.IntShape`."""
    return Shape(s.width, s.signed)


def reg(m, value, name, domain="sync", keep=False, init=0):
    """``value`` registered once (a pipeline register named ``name``, reset
    to ``init``).

    ``keep``: a deliberate copy of a register another block has too (the
    synthesis flow keeps it a flip-flop of its own instead of merging the
    copies, see ``gen/synth_scripts.KEEP_COPIES``)."""
    value = Value.cast(value)
    r = Signal(value.shape(), name=name, init=init, attrs={"keep": 1} if keep else {})
    m.d[domain] += r.eq(value)
    return r


def delay(m, value, n, name):
    """``value`` delayed by ``n`` registers (``{name}_d1`` ...)."""
    out = value
    for i in range(n):
        out = reg(m, out, f"{name}_d{i + 1}")
    return out


def wrap_counter(m, en, modulus, name, init=0, keep=False):
    """Counter ``0 .. modulus-1`` advancing when ``en``; returns ``(value, wraps)``
    (``wraps``: it advances from ``modulus - 1`` to 0 in this clock;
    ``keep`` as for :func:`reg`)."""
    cnt = Signal(range(max(modulus, 2)), init=init, name=name,
                 attrs={"keep": 1} if keep else {})
    wraps = Signal(name=f"{name}_wrap")
    m.d.comb += wraps.eq(en & (cnt == modulus - 1))
    with m.If(en):
        m.d.sync += cnt.eq(Mux(cnt == modulus - 1, 0, cnt + 1))
    return cnt, wraps


def tree_levels(values, levels):
    """The first ``levels`` levels of a balanced adder tree (exact: each level
    grows by one bit); returns the list of partial sums."""
    values = list(values)
    for _ in range(levels):
        if len(values) <= 1:
            break
        nxt = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values


def tree_sum(values):
    """Balanced adder tree: the sum of ``values``."""
    values = list(values)
    return tree_levels(values, len(values))[0]


class Tags:
    """Values that travel with an edge down the pipeline: ``add(name, v)``
    puts ``v`` in at the issue stage S0, ``tags(name, k)`` is its copy ``k``
    clocks later (registers created on demand, named ``{prefix}{name}_s{k}``:
    the synthesis report reads the stage from that name)."""

    def __init__(self, m, prefix=""):
        self.m, self.prefix = m, prefix
        self.stages = {}

    def add(self, name, value):
        value = Value.cast(value)
        sig = Signal(value.shape(), name=f"{self.prefix}{name}_s0")
        self.m.d.comb += sig.eq(value)
        self.stages[name] = [sig]
        return sig

    def __call__(self, name, k):
        chain = self.stages[name]
        while len(chain) <= k:
            prev = chain[-1]
            r = Signal(prev.shape(), name=f"{self.prefix}{name}_s{len(chain)}")
            self.m.d.sync += r.eq(prev)
            chain.append(r)
        return chain[k]
