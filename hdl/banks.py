"""Memory banks: a layer's banks with rotating copies, and a junction's
weight and bias banks with the shared read-out and load.

Every bank is one :class:`amaranth.lib.memory.Memory`.  The banks expose
Amaranth's own port signatures (:class:`~amaranth.lib.memory.ReadPort.Signature`,
:class:`~amaranth.lib.memory.WritePort.Signature`), so a reader or writer is
wired to them with :func:`amaranth.lib.wiring.connect`.
"""

from typing import NamedTuple

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from ..gen.geometry import BANKS_PER_ADDRESS_COPY, READOUT_LATENCY, bank_groups, bits
from .arith import check_int
from .pipeline import reg

__all__ = ["LayerBanks", "AccessSignature", "WeightBanks", "ReadoutPort", "READ_GROUP"]

#: Weight (bias) banks per read-address select and stall-register copy: one
#: (with 8, a group's select drove LUT RAMs of banks placed far apart, the
#: critical path of board@64 on the ECP5 once the clock enable was a register).
READ_GROUP = 1
assert BANKS_PER_ADDRESS_COPY % READ_GROUP == 0     # a read group sees one copy
#: Clock edges from a read-out address at :class:`WeightBanks` to its
#: ``ro_w``/``ro_b``: the bank group's row copy, then the bank read register
#: (the :class:`ReadoutPort` adds the rest of ``READOUT_LATENCY``).
BANK_READOUT_LATENCY = 2
assert READOUT_LATENCY > BANK_READOUT_LATENCY


class LayerBanks(wiring.Component):
    """``banks`` memories of ``copies * rows`` words: one layer's activations,
    derivatives, BP accumulators or output deltas.

    A layer's value is needed for several junction cycles after the one that
    writes it (SPEC section 5), so each bank holds ``copies`` rotating copies
    of its ``rows`` rows: copy ``n % copies`` belongs to sample ``n``, at
    addresses ``copy * rows + row`` (:meth:`address`).

    Parameters
    ----------
    shape : shape-like
        Shape of a stored word.
    banks, rows, copies : int
        Number of banks, rows per copy, copies.
    reads : tuple of str
        Names of the read ports (each bank has one of each).
    transparent : tuple of str
        Those of ``reads`` that are transparent for the write port (a
        read-modify-write loop of one clock).

    Members
    -------
    wr : Out(WritePort.Signature(addr_width, shape)).array(banks)
        The write port of each bank.
    <read> : Out(ReadPort.Signature(addr_width, shape)).array(banks)
        For each name of ``reads``: a synchronous read port of each bank
        (data one clock after the address).
    """

    def __init__(self, shape, banks, rows, copies, reads=("rd",), transparent=()):
        for name, v in (("banks", banks), ("rows", rows), ("copies", copies)):
            check_int(v, name, "LayerBanks")
        if not set(transparent) <= set(reads) or "wr" in reads:
            raise ValueError(f"LayerBanks: bad read ports {reads!r} / transparent "
                             f"{transparent!r}")
        self.shape, self.banks, self.rows, self.copies = shape, banks, rows, copies
        self.depth = rows * copies
        self.reads, self.transparent = tuple(reads), tuple(transparent)
        aw = bits(self.depth)
        members = {"wr": Out(WritePort.Signature(addr_width=aw, shape=shape)).array(banks)}
        for r in self.reads:
            members[r] = Out(ReadPort.Signature(addr_width=aw, shape=shape)).array(banks)
        super().__init__(members)

    def address(self, copy, row):
        """Address of ``row`` of rotating copy ``copy``."""
        return copy * self.rows + row

    def elaborate(self, platform):
        m = Module()
        for i in range(self.banks):
            mem = Memory(shape=self.shape, depth=self.depth, init=[])
            m.submodules[f"bank{i}"] = mem
            wp = mem.write_port()
            wiring.connect(m, wiring.flipped(self.wr[i]), wp)
            for r in self.reads:
                rp = mem.read_port(transparent_for=(wp,) if r in self.transparent else ())
                wiring.connect(m, wiring.flipped(getattr(self, r)[i]), rp)
        return m


class AccessSignature(wiring.Signature):
    """How the network reaches every junction's weight and bias banks from
    outside the datapath: stall state, read-out and load (as the
    :class:`ReadoutPort` drives it).

    Parameters
    ----------
    width : int
        Code width ``w``.
    ro_rows, ro_lanes, ro_junctions : int
        Ranges of the read-out address (:class:`NetworkGeometry`).

    Members
    -------
    ce : Out(1)
        The network's clock enable.
    ro_mode_next, resumed_next : Out(1)
        Stall state of the next clock (see :class:`WeightBanks`, which
        registers its own copies).
    ro_junction, ro_bias, ro_row, ro_lane : Out
        Read-out / load address: weight ``row*z + lane`` (or bias bank
        ``lane``, row ``row``) of junction ``ro_junction + 1``.
    ld_en : Out(1)
        Load the addressed word.
    ld_data : Out(signed(width))
        Data of the load, in the clock of ``ld_en`` (with ``ro_row``): every
        group of banks registers its own copy of the row and data, and the
        load writes a clock later with the registered write enable.
    """

    def __init__(self, width, ro_rows, ro_lanes, ro_junctions):
        super().__init__({
            "ce": Out(1), "ro_mode_next": Out(1, init=1), "resumed_next": Out(1),
            "ro_junction": Out(range(ro_junctions)), "ro_bias": Out(1),
            "ro_row": Out(range(ro_rows)), "ro_lane": Out(range(ro_lanes)),
            "ld_en": Out(1), "ld_data": Out(signed(width)),
        })


class WeightBanks(wiring.Component):
    """A junction's weights and biases: ``z`` weight banks of depth ``C`` and
    ``q`` bias banks of depth ``NR``, each with one read and one write port,
    shared by the datapath, the read-out and the load port.

    Bank ``k``, row ``c`` holds ``w[c*z + k]``; bias bank ``i``, row ``r`` holds
    ``b[r*q + i]``.  The ports run in the ungated ``ro`` domain (the network's
    clock enable ``ce`` is applied to the datapath's writes here), so the load
    port can write while the network is stalled.

    While the network is stalled (from its second stalled clock on,
    ``ro_mode``) the read ports are addressed by the read-out row (one clock
    after ``ro_row``, see below).  The network
    resumes two clocks after it could: the first ends ``ro_mode``, in the
    second (``resumed`` still low) each read port re-reads the address of the
    read the stall interrupted (``*_held``: the datapath's address one enabled
    clock earlier, which is also the write-back row: a row read in one
    enabled clock is written back in the next, the read-modify-write of
    SPEC section 6).  The datapath gives its row and write enable one enabled
    clock ahead (``*_next``); every group of :data:`BANKS_PER_ADDRESS_COPY`
    banks registers its own copies of them (``*_addr_a*``, ``*_held_a*``,
    ``*_we_a*``, kept), so no one address register reaches every bank; so
    it does, in ``ro`` every clock, with the read-out and load address and
    the load's data (``*_rorow_a*``, ``*_ldlane_a*``, ``*_ldhit_a*`` = a load
    of this junction and kind, ``*_lddata_a*``): one shared load-row register
    was board@64's critical path after the row-address ROMs, and the
    read-out row and lane reached every bank of every junction.  A bank
    loads when its group's ``ldhit`` is set and ``ldlane`` is its own lane,
    one clock after ``ld_en``.  Both address selects are registers and there is no
    select on the read data: every group of :data:`READ_GROUP` banks has its
    own address select and its own copies of the two stall registers
    (``running_g*`` = not ``ro_mode``, ``resumed_g*``, registered here from
    the access port's ``*_next``), so no register or select drives the read
    address of every bank (on board@128 that fanout was the ECP5 critical
    path).  The copies
    carry the ``keep`` attribute; the synthesis flow (``gen/synth_scripts``)
    puts it on their flip-flops so that Yosys does not merge them again.

    Parameters
    ----------
    weights : ndarray (C, z)
        Initial weight codes.
    biases : ndarray (NR, q)
        Initial bias codes.
    width : int
        Code width ``w``.
    junction : int
        The junction's index ``j`` (1-based): the read-out and load address it
        answers to (``ro_junction == j - 1``).
    ro_rows, ro_lanes, ro_junctions : int
        Ranges of the read-out address (from :class:`NetworkGeometry`).

    Members
    -------
    access : In(AccessSignature(width, ro_rows, ro_lanes, ro_junctions))
        Clock enable (datapath writes happen only when high), next clock's
        stall state, read-out and load address; the load writes one clock
        after ``ld_en`` (from the registers of the bank's group).
    w_addr_next : In(range(C))
        Weight row the datapath reads in its next enabled clock; ``w_data``
        one clock after that read.
    w_data : Out(signed(w)).array(z)
    w_we_next : In(1); w_wdata : In(signed(w)).array(z)
        Write-back, in the next enabled clock, of the row read one enabled
        clock before it (``w_wdata`` in the clock of the write).
    b_addr_next, b_data, b_we_next, b_wdata
        The same for the bias banks (``q`` of them, depth ``NR``).
    ro_w, ro_b : Out(signed(w))
        The weight (bias) at the read-out address, :data:`BANK_READOUT_LATENCY`
        (2) clocks after it.
    """

    def __init__(self, weights, biases, width, junction, ro_rows, ro_lanes, ro_junctions):
        if getattr(weights, "ndim", 0) != 2 or getattr(biases, "ndim", 0) != 2:
            raise ValueError("WeightBanks: weights must be (C, z) and biases (NR, q) arrays")
        check_int(width, "width", "WeightBanks", 2)
        check_int(junction, "junction", "WeightBanks")
        self.C, self.z = weights.shape
        self.NR, self.q = biases.shape
        self.w_init = [[int(v) for v in weights[:, k]] for k in range(self.z)]
        self.b_init = [[int(v) for v in biases[:, i]] for i in range(self.q)]
        self.width, self.j = width, junction
        w = signed(width)
        super().__init__({
            "access": In(AccessSignature(width, ro_rows, ro_lanes, ro_junctions)),
            "w_addr_next": In(range(max(self.C, 2))), "w_data": Out(w).array(self.z),
            "w_we_next": In(1), "w_wdata": In(w).array(self.z),
            "b_addr_next": In(range(max(self.NR, 2))), "b_data": Out(w).array(self.q),
            "b_we_next": In(1), "b_wdata": In(w).array(self.q),
            "ro_w": Out(w), "ro_b": Out(w),
        })

    def elaborate(self, platform):
        m = Module()
        acc = self.access
        w_rd = self._banks(m, "w", self.w_init, self.C, self.w_addr_next, self.w_data,
                           self.w_wdata, self.w_we_next, ~acc.ro_bias)
        b_rd = self._banks(m, "b", self.b_init, self.NR, self.b_addr_next, self.b_data,
                           self.b_wdata, self.b_we_next, acc.ro_bias)
        # the lane select, in the clock of the bank read
        lane = acc.ro_lane
        for i in range(BANK_READOUT_LATENCY):
            lane = reg(m, lane, f"ro_lane_r{i + 1}", "ro")
        m.d.comb += [self.ro_w.eq(Array([p.data for p in w_rd])[lane]),
                     self.ro_b.eq(Array([p.data for p in b_rd])[lane])]
        return m

    def _banks(self, m, kind, init, depth, addr_next, data, wdata, we_next, is_kind):
        """One kind of bank (weights or biases): per group of banks its
        registered rows, then per read group its address select, then the
        banks; returns the read ports."""
        ports = []
        for a, group in enumerate(bank_groups(len(init))):
            rows = self._group_rows(m, kind, a, addr_next, we_next, is_kind)
            for i in group:
                if i % READ_GROUP == 0:        # a read group lies in one bank group
                    read_addr = self._read_select(m, kind, i // READ_GROUP, rows)
                ports.append(self._bank(m, kind, i, init[i], depth, rows, read_addr,
                                        data[i], wdata[i]))
        return ports

    def _group_rows(self, m, kind, a, addr_next, we_next, is_kind):
        """The registers of bank group ``a`` (kept copies): the datapath's
        rows, enabled clocks only (``sync``); the read-out and load address
        and the load's data (``ro``: also while stalled), registered here
        every clock, so no one net of them reaches every bank of every
        junction."""
        acc = self.access
        addr = reg(m, addr_next, f"{kind}_addr_a{a}", keep=True)
        return _GroupRows(
            addr=addr,
            held=reg(m, addr, f"{kind}_held_a{a}", keep=True),
            we=reg(m, we_next, f"{kind}_we_a{a}", keep=True),
            ro_row=reg(m, acc.ro_row, f"{kind}_rorow_a{a}", "ro", keep=True),
            ld_lane=reg(m, acc.ro_lane, f"{kind}_ldlane_a{a}", "ro", keep=True),
            ld_hit=reg(m, acc.ld_en & (acc.ro_junction == self.j - 1) & is_kind,
                       f"{kind}_ldhit_a{a}", "ro", keep=True),
            ld_data=reg(m, acc.ld_data, f"{kind}_lddata_a{a}", "ro", keep=True))

    def _read_select(self, m, kind, g, rows):
        """Read group ``g``'s read address: its own copies of the stall
        registers choose the running row, the held row (stalled) or the
        read-out row."""
        acc = self.access
        # ``running`` is ~ro_mode: a copy that resets to 0 (the iCE40 has no
        # flip-flop that initialises to 1)
        running = reg(m, ~acc.ro_mode_next, f"{kind}_running_g{g}", "ro", keep=True)
        resumed = reg(m, acc.resumed_next, f"{kind}_resumed_g{g}", "ro", keep=True)
        read_addr = Signal.like(rows.addr, name=f"{kind}_raddr_g{g}")
        m.d.comb += read_addr.eq(Mux(running, Mux(resumed, rows.addr, rows.held), rows.ro_row))
        return read_addr

    def _bank(self, m, kind, i, words, depth, rows, read_addr, data, wdata):
        """Bank ``i``: its memory, read port and write port (the datapath's
        write-back or, when its group's load hits its lane, the load)."""
        mem = Memory(shape=signed(self.width), depth=depth, init=words)
        m.submodules[f"{kind}{i}"] = mem
        wp = mem.write_port(domain="ro")
        rp = mem.read_port(domain="ro", transparent_for=(wp,))
        load = Signal(name=f"ld{kind}{i}")
        m.d.comb += [
            load.eq(rows.ld_hit & (rows.ld_lane == i)),
            rp.addr.eq(read_addr), rp.en.eq(1), data.eq(rp.data),
            wp.addr.eq(Mux(load, rows.ro_row, rows.held)),
            wp.data.eq(Mux(load, rows.ld_data, wdata)),
            wp.en.eq(load | (self.access.ce & rows.we)),
        ]
        return rp


class _GroupRows(NamedTuple):
    """The registers one group of weight (bias) banks shares
    (:meth:`WeightBanks._group_rows`)."""
    addr: Signal
    held: Signal
    we: Signal
    ro_row: Signal
    ld_lane: Signal
    ld_hit: Signal
    ld_data: Signal


class ReadoutPort(wiring.Component):
    """The network's read-out and load port: passes the address and stall
    state to every junction's :class:`WeightBanks` (which register the load's
    row and data per group of banks) and selects the read-out data
    from the addressed junction, ``READOUT_LATENCY`` (3) clocks after the
    address: each junction's read-out word (its lane select behind the bank
    group's row copy and the bank read register) is registered once more
    before the junction select.

    Parameters
    ----------
    junctions : int
    width : int
    ro_rows, ro_lanes, ro_junctions : int
        Ranges of the read-out address (:class:`NetworkGeometry`).

    Members
    -------
    ce, ro_mode_next, resumed_next, ro_junction, ro_bias, ro_row, ro_lane, ld_en, ld_data : In
        From the network's ports and stall control.
    access : Out(AccessSignature(width, ro_rows, ro_lanes, ro_junctions))
        To every junction.
    w, b : In(signed(width)).array(junctions)
        Each junction's read-out weight and bias.
    data : Out(signed(width))
        The addressed weight or bias.
    """

    def __init__(self, junctions, width, ro_rows, ro_lanes, ro_junctions):
        self.junctions = junctions
        super().__init__({
            "ce": In(1), "ro_mode_next": In(1, init=1), "resumed_next": In(1),
            "ro_junction": In(range(ro_junctions)), "ro_bias": In(1),
            "ro_row": In(range(ro_rows)), "ro_lane": In(range(ro_lanes)),
            "ld_en": In(1), "ld_data": In(signed(width)),
            "access": Out(AccessSignature(width, ro_rows, ro_lanes, ro_junctions)),
            "w": In(signed(width)).array(junctions), "b": In(signed(width)).array(junctions),
            "data": Out(signed(width)),
        })

    def elaborate(self, platform):
        m = Module()
        acc = self.access
        for name in ("ce", "ro_mode_next", "resumed_next", "ro_junction", "ro_bias", "ro_row",
                     "ro_lane", "ld_en", "ld_data"):
            m.d.comb += getattr(acc, name).eq(getattr(self, name))
        sel_j, sel_b = self.ro_junction, self.ro_bias
        for i in range(READOUT_LATENCY):
            sel_j = reg(m, sel_j, f"ro_j_d{i + 1}", "ro")
            sel_b = reg(m, sel_b, f"ro_isbias_d{i + 1}", "ro")
        # the banks' row copy and read register are the first
        # BANK_READOUT_LATENCY of READOUT_LATENCY
        w, b = list(self.w), list(self.b)
        for i in range(BANK_READOUT_LATENCY, READOUT_LATENCY):
            w = [reg(m, v, f"ro_w{j}_d{i}", "ro") for j, v in enumerate(w)]
            b = [reg(m, v, f"ro_b{j}_d{i}", "ro") for j, v in enumerate(b)]
        m.d.comb += self.data.eq(Mux(sel_b, Array(b)[sel_j], Array(w)[sel_j]))
        return m
