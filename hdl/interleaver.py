"""The clash-free interleaver in hardware: which row of which bank each lane
reads (SPEC section 3, ``gen/interleaver.py``).

* :class:`Rotator` moves ``z`` values by a run-time amount (a log-depth
  barrel rotator): lanes to banks and back under the ``bank_dither`` kind.
* :class:`Interleaver` plays a junction's pattern clock by clock: the
  row-address ROMs filled from ``pattern.row_addr`` (prefetched two clocks),
  the sweep counter and the per-sweep bank dither, giving the row each bank
  is read at in the issue stage.
"""

from amaranth.hdl import Array, Assert, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..gen.geometry import bits, row_rom_groups
from .arith import check_int
from .pipeline import reg, wrap_counter

__all__ = ["Rotator", "RowsSignature", "Interleaver"]


class Rotator(wiring.Component):
    """``o[k] = i[(k + amount) % z]``: a log-depth barrel rotator.

    Parameters
    ----------
    shape : shape-like
        Shape of each value.
    z : int
        Number of values, ``>= 1``.

    Members
    -------
    i : In(shape).array(z)
    amount : In(range(z))
        Rotation, ``0 .. z-1``.
    o : Out(shape).array(z)

    Latency 0 (combinational, ``bits(z)`` multiplexer levels).
    """

    def __init__(self, shape, z):
        check_int(z, "z", "Rotator")
        self.z = z
        super().__init__({
            "i": In(shape).array(z),
            "amount": In(range(max(z, 2))),
            "o": Out(shape).array(z),
        })

    def elaborate(self, platform):
        m = Module()
        z = self.z
        cur = list(self.i)
        for level in range(bits(z)):
            sh = (1 << level) % z
            if sh == 0:
                continue
            nxt = [Signal.like(v, name=f"rot{level}_{k}") for k, v in enumerate(cur)]
            for k in range(z):
                m.d.comb += nxt[k].eq(Mux(self.amount[level], cur[(k + sh) % z], cur[k]))
            cur = nxt
        for k in range(z):
            m.d.comb += self.o[k].eq(cur[k])
        return m


class RowsSignature(wiring.Signature):
    """The interleaver's answer for the issue stage of a clock.

    Parameters
    ----------
    z : int
        Banks (= lanes).
    R : int
        Rows per bank copy (``p / z``).

    Members
    -------
    row : Out(max(1, bits(R))).array(z)
        Row of each bank read in the issue stage.
    dither : Out(range(z))
        ``D[s]``: rotation from banks to lanes (lane ``k`` reads bank ``(k + D) % z``).
    undither : Out(range(z))
        ``(z - D[s]) % z``: rotation from lanes to banks.
    first_sweep : Out(1)
        The clock is in sweep ``s == 0`` of the junction cycle.
    """

    def __init__(self, z, R):
        zr = range(max(z, 2))
        super().__init__({"row": Out(max(bits(R), 1)).array(z), "dither": Out(zr),
                          "undither": Out(zr), "first_sweep": Out(1)})


class Interleaver(wiring.Component):
    """A junction's interleaved read addresses, clock by clock.

    In clock ``c`` of the junction cycle (sweep ``s = c // R``), lane ``k``
    reads row ``pattern.row_addr[c, k]`` of bank ``(k + D[s]) % z`` (``D`` the
    per-sweep dither, all zero except for ``bank_dither``): bank ``b`` is read
    at row ``row_addr[c, (b - D) % z]``.

    Parameters
    ----------
    pattern : JunctionPattern
        The junction's checked pattern (``cfg.patterns()[j - 1]``).
    cycle_clocks : int
        Clocks per junction cycle (``C``, or more under the ``reference``
        schedule: the phase counter runs past ``C - 1``).
    checks : bool
        Simulation-time assertions: every row inside its bank, the dither a
        rotation.

    Members
    -------
    phase : In(range(cycle_clocks))
        The phase counter ``c``.
    active : In(1)
        ``c < C``: the sweep counters advance.
    rows : Out(RowsSignature(z, R))
        The rows of the banks in clock ``c``, the dither, the first sweep.

    The ROM is read two clocks ahead (its registered read, then a register on
    its output), from an address register loaded a clock before that, so
    neither the ROM's logic nor the phase counter's fanout sits on the path
    into the banks' read addresses: latency 0 from ``phase`` to ``row`` in
    steady state.  Each group of ``LANES_PER_ROW_ROM`` lanes has a ROM and
    an address register of its own (``rows{g}``, ``rows_addr{g}``, kept), so
    no one address reaches a whole junction's ROM.
    """

    def __init__(self, pattern, cycle_clocks, checks=False):
        check_int(cycle_clocks, "cycle_clocks", "Interleaver", pattern.cycle)
        self.pattern, self.cc, self.checks = pattern, cycle_clocks, checks
        self.z, self.C = pattern.z, pattern.cycle
        self.R = pattern.p // pattern.z
        self.fo = pattern.fo
        self.row_bits = bits(self.R)
        self.dither_values = [int(d) for d in pattern.dither]
        z = self.z
        super().__init__({
            "phase": In(range(max(cycle_clocks, 2))),
            "active": In(1),
            "rows": Out(RowsSignature(z, self.R)),
        })

    def elaborate(self, platform):
        m = Module()
        z, R, rb = self.z, self.R, self.row_bits
        out = self.rows
        _, sweep_step = wrap_counter(m, self.active, R, "tsweep")
        s, _ = wrap_counter(m, sweep_step, self.fo, "sweep")
        m.d.comb += out.first_sweep.eq(s == 0)
        lane_row = self._lane_rows(m) if rb else [Const(0, 1)] * z
        dithered = any(self.dither_values)
        if dithered:
            m.d.comb += [
                out.dither.eq(Array([Const(d, range(z)) for d in self.dither_values])[s]),
                out.undither.eq(Array([Const((z - d) % z, range(z))
                                       for d in self.dither_values])[s]),
            ]
            # bank b is read by lane (b - D) % z
            m.submodules.to_banks = rot = Rotator(max(rb, 1), z)
            m.d.comb += rot.amount.eq(out.undither)
            for k in range(z):
                m.d.comb += rot.i[k].eq(lane_row[k])
            bank_row = list(rot.o)
        else:
            bank_row = lane_row
        for b in range(z):
            m.d.comb += out.row[b].eq(bank_row[b])
        if self.checks:
            for k in range(z):
                if rb and (1 << rb) != R:
                    m.d.comb += Assert(~self.active | (lane_row[k] < R),
                                       f"lane {k}: row address out of range")
            if dithered:
                m.d.comb += Assert(~self.active | (out.dither < z), "bank rotation >= z")
        return m

    def _lane_rows(self, m):
        """The row of each lane in clock ``c``: for each group of lanes
        (:func:`~sparse_edge.gen.geometry.row_rom_groups`) a ROM read at
        ``(c + 2) mod cc`` from an address register of its own (loaded with
        ``(c + 3) mod cc`` one clock before) and registered, so its output
        holds row ``c`` when the phase counter reaches ``c``."""
        z, C, rb, cc = self.z, self.C, self.row_bits, self.cc
        rows = self.pattern.row_addr                           # (C, z)
        c = self.phase
        if cc > 3:
            ahead = Mux(c + 3 >= cc, c + 3 - cc, c + 3)       # (c + 3) mod cc
        else:
            ahead = Array([Const((i + 3) % cc, range(max(cc, 2))) for i in range(cc)])[c]
        masked = Signal(range(max(C, 2)), name="rows_ahead")     # a ROM address
        m.d.comb += masked.eq(Mux(ahead < C, ahead, 0))
        first = 2 % cc                                         # the read after reset (c = 0)
        out = []
        for g, lanes in enumerate(row_rom_groups(z)):
            packed = [sum(int(rows[r, k]) << ((k - lanes.start) * rb) for k in lanes)
                      for r in range(C)]
            m.submodules[f"rows{g}"] = rom = Memory(shape=len(lanes) * rb, depth=C, init=packed)
            port = rom.read_port()
            m.d.comb += port.addr.eq(reg(m, masked, f"rows_addr{g}", keep=True,
                                         init=first if first < C else 0))
            rows_r = reg(m, port.data, f"rows_r{g}")
            out += [rows_r[i * rb:(i + 1) * rb] for i in range(len(lanes))]
        return out
