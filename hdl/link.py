"""The link engine: the board side of the host link protocol (docs/boards.md).

Byte path, receive side: UART receiver -> FIFO -> ``Deframer`` (undoes the
byte stuffing, marks ``SYNC``) -> ``FrameReceiver`` (header, length, CRC) ->
the engine's per-type handlers; for a sample, ``PixelDecoder`` writes the
decoded pixels into the open slot of ``InputBuffer``, which feeds the
:class:`~sparse_edge.hdl.network.Network` whole beats.  Transmit side: the
engine's reply generator -> ``FrameSender`` (header, length, CRC) ->
``Enframer`` (byte stuffing) -> UART transmitter.  Predictions go from the
network into ``PredictionRing`` until the host acknowledges them.

The blocks live by topic: the frame layers in :mod:`sparse_edge.hdl.framing`,
the decoder, buffers and counters in :mod:`sparse_edge.hdl.link_buffers`, the
reply side of the engine in :mod:`sparse_edge.hdl.link_reply`; this module
holds :class:`LinkEngine`, which ties them together.

Every constant, the CRC equations and the INFO contents come from
:mod:`sparse_edge.gen.protocol`, which the host driver uses too.
"""

import operator
from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..gen import protocol as P
from .framing import Deframer, Enframer, FrameReceiver, FrameSender
from .link_buffers import (IB, CounterBank, InputBuffer, PixelDecoder, PredictionRing,
                           addr_bits, check_ring_depth, check_slots, pow2)
from .link_reply import (K_INFO, K_PARAMS, K_REPORT, K_STATUS, max_reply_length,
                         prediction_pointer, reply_fsm, reply_payload, reply_queue)

__all__ = ["LinkEngine"]

#: Events that come at most once per received byte or frame: their counters
#: need only a small pending counter (a round of the bank is 45 clocks, a
#: byte at least ``10 * divisor``).
RARE_EVENTS = frozenset({"frames_good", "frames_bad", "samples_accepted", "duplicates",
                         "out_of_order", "no_credit", "bad_pixels", "busy", "rx_overflow",
                         "rx_framing"})


class LinkEngine(wiring.Component):
    """The board side of the link protocol around one network.

    Parameters
    ----------
    net : Network
        The network it drives (only its public interface is used: the
        signature, ``cfg``, ``schedule``, ``beats_per_sample``,
        ``drain_samples()``, ``clocks_per_sample``, ``geometry``).
    slots : int
        Input buffer slots (power of two): how many samples the host may
        send ahead of the network.
    pred_ring : int
        Prediction ring entries (power of two).
    clock_hz, divisor : int
        Reported in INFO (the host prints the baud rate and rates).
    rx_fifo : int
        Receive FIFO bytes: absorbs the clocks a zero run takes to write.

    Members
    -------
    rx : In(stream.Signature(8))
        Received bytes (from the UART receiver).
    tx : Out(stream.Signature(8))
        Bytes to send (to the UART transmitter).
    rx_overflow, rx_framing : In(1)
        One-clock pulses from the UART receiver, counted.
    net : In(net.signature)
        To the network (connect with ``wiring.connect``).
    idle : Out(1)
        Nothing to do until a byte arrives: no frame being received or sent,
        no sample buffered, the network stalled (the simulated board's
        harness sleeps then).
    activity, error, running : Out(1)
        For LEDs: a frame was received good, bad; the network ran this clock.

    Latency: a sample is fed to the network from the clock after its frame's
    CRC checks and its trailing pixels are written (``inputs`` clocks at most);
    its REPORT starts when the previous reply has been sent.  Throughput is
    the line's (bytes of frames, ``10 * divisor`` clocks each): the engine
    decodes one code byte per clock and feeds one beat per clock.
    """

    def __init__(self, net, slots=4, pred_ring=64, clock_hz=0, divisor=0, rx_fifo=None):
        cfg = net.cfg
        self.net_sig = net.signature
        self.cfg = cfg
        self.slots = check_slots(slots)            # checked here, not first at elaboration
        self.pred_ring = check_ring_depth(pred_ring)
        self.beats = net.beats_per_sample
        self.beat_layout = net.beat_layout
        self.result_layout = net.result_layout
        self.width = cfg.fmt.width
        self.sbits = P.symbol_bits(cfg.fmt)
        self.z = [cfg.z[j] for j in range(cfg.junctions)]
        self.q = [net.geometry.q[j + 1] for j in range(cfg.junctions)]
        self.totals = [(cfg.edges[j], cfg.layers[j + 1]) for j in range(cfg.junctions)]
        if cfg.classes > 256:
            raise ValueError("the link carries predictions as bytes: at most 256 classes")
        sched = net.schedule.name
        self.info = P.info_payload(cfg, sched, net.clocks_per_sample, net.drain_samples(),
                                   self.slots, self.pred_ring, clock_hz, divisor)
        # a sample without any zero: 3 header bytes and at most two code bytes
        # per pixel (8-bit symbols)
        self.max_payload = max(3 + 2 * cfg.inputs, 6 + 2 * P.MAX_WRITE)
        if rx_fifo is None:
            # a run of zeros writes a pixel per clock while bytes keep arriving
            per_byte = 10 * max(divisor, 2)
            rx_fifo = max(16, pow2(cfg.inputs // per_byte + 16))
        self.rx_fifo = operator.index(rx_fifo)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "rx_overflow": In(1), "rx_framing": In(1),
            "net": In(self.net_sig),
            "idle": Out(1),
            "activity": Out(1), "error": Out(1), "running": Out(1),
        })


    def elaborate(self, platform):
        """The engine, part by part (statements in this order: a later one
        wins where two drive the same signal).  The parts share their wires
        through one namespace ``w``."""
        m = Module()
        w = SimpleNamespace(net=self.net)
        self._datapath(m, w)
        self._network_state(m, w)
        self._counters(m, w)
        self._request_registers(m, w)
        self._parameter_iterator(m, w)
        prediction_pointer(m, w)
        reply_queue(m, w)
        reply_payload(m, w, self.info, self.slots)
        reply_fsm(m, w)
        self._request_fields(m, w)
        self._link_fsm(m, w)
        self._status_outputs(m, w)
        return m

    def _datapath(self, m, w):
        """The blocks and the streams between them: receive FIFO, deframer,
        frame receiver, pixel decoder, input buffer, network, prediction
        ring; frame sender, enframer."""
        cfg, net = self.cfg, w.net
        m.submodules.rx_fifo = w.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.rx_fifo)
        m.submodules.deframer = deframer = Deframer()
        m.submodules.receiver = w.rcv = rcv = FrameReceiver(self.max_payload)
        m.submodules.decoder = w.dec = dec = PixelDecoder(
            cfg.inputs, self.beat_layout["pixels"].shape.length, self.sbits)
        m.submodules.buffer = w.buf = buf = InputBuffer(self.slots, self.beats,
                                                        self.beat_layout, cfg.inputs)
        m.submodules.ring = w.ring = ring = PredictionRing(self.pred_ring, self.result_layout)
        m.submodules.sender = w.snd = snd = FrameSender(max_reply_length(self.info))
        m.submodules.enframer = enf = Enframer()
        wiring.connect(m, wiring.flipped(self.rx), fifo.w_stream)
        wiring.connect(m, fifo.r_stream, deframer.i)
        wiring.connect(m, deframer.o, rcv.i)
        wiring.connect(m, snd.o, enf.i)
        wiring.connect(m, enf.o, wiring.flipped(self.tx))
        wiring.connect(m, buf.o, wiring.flipped(net.i))
        wiring.connect(m, wiring.flipped(net.o), ring.i)
        m.d.comb += [buf.w_beat.eq(dec.w_beat), buf.w_lane.eq(dec.w_lane),
                     buf.w_data.eq(dec.w_data), buf.w_en.eq(dec.w_en), buf.w_clear.eq(dec.clear)]
        w.hdr = rcv.header

    def _network_state(self, m, w):
        """``w.ran``: the network ran this clock (its clock counter moved);
        ``w.quiet``: no sample buffered, the network has not run for three
        clocks and offers no result (parameters may be accessed);
        ``w.out_stall``: the prediction ring holds the network back."""
        net = w.net
        clk_prev = Signal(8, name="net_clocks_prev")
        m.d.sync += clk_prev.eq(net.clocks[:8])
        w.ran = ran = Signal(name="net_ran")
        m.d.comb += ran.eq(net.clocks[:8] != clk_prev)
        still = Signal(2, name="net_still")       # clocks the network has not run
        with m.If(ran):
            m.d.sync += still.eq(0)
        with m.Elif(still != 3):
            m.d.sync += still.eq(still + 1)
        w.quiet = quiet = Signal(name="net_quiet")
        m.d.comb += quiet.eq(w.buf.empty & (still == 3) & ~net.o.valid)
        w.out_stall = net.o.valid & ~net.o.ready

    def _counters(self, m, w):
        """The STATUS counters: one event signal per field (``w.ev``; the
        request outcomes are driven by :meth:`_finish_frame`) into a
        :class:`~.link_buffers.CounterBank` (``w.bank``)."""
        rcv, net, ran, out_stall = w.rcv, w.net, w.ran, w.out_stall
        w.good_pulse = good_pulse = Signal(name="frame_good")
        w.bad_pulse = bad_pulse = Signal(name="frame_bad")
        m.d.comb += [good_pulse.eq(rcv.done.valid & rcv.done.ready & rcv.done.payload),
                     bad_pulse.eq(rcv.done.valid & rcv.done.ready & ~rcv.done.payload)]
        w.ev = ev = {name: Signal(name=f"ev_{name}") for name, _ in P.STATUS_FIELDS}
        m.d.comb += [ev["uptime_clocks"].eq(1), ev["network_clocks"].eq(ran),
                     ev["frames_good"].eq(good_pulse), ev["frames_bad"].eq(bad_pulse),
                     ev["samples_done"].eq(net.o.valid & net.o.ready),
                     ev["rx_overflow"].eq(self.rx_overflow),
                     ev["rx_framing"].eq(self.rx_framing),
                     ev["input_stalls"].eq(~ran & ~out_stall),
                     ev["output_stalls"].eq(~ran & out_stall)]
        m.submodules.counters = w.bank = bank = CounterBank(
            len(P.STATUS_FIELDS), [name not in RARE_EVENTS for name, _ in P.STATUS_FIELDS])
        m.d.comb += bank.events.eq(Cat(ev[name] for name, _ in P.STATUS_FIELDS))

    def _request_registers(self, m, w):
        """Registers of the frame being received: the sample header
        (``w.s_index``, ``w.s_label``, ``w.s_ctl``; ``w.s_apply``: it will be
        stored) and ``w.expected``, the next sample index; the READ/WRITE
        address (``w.rq_*``) and the staging RAM of the WRITE values.

        Style for a small FPGA: every register has one next-value expression
        and comb signals are driven unconditionally (only enables and valids
        depend on the state), so no multiplexer chains appear."""
        buf, dec = w.buf, w.dec
        w.b = b = w.rcv.o.payload
        w.expected = expected = Signal(IB, name="next_index")
        w.s_index = s_index = Signal(IB, name="smp_index")
        w.s_label = s_label = Signal.like(buf.c_label, name="smp_label")
        w.s_ctl = s_ctl = Signal(8, name="smp_ctl")
        w.s_apply = s_apply = Signal(name="smp_apply")
        m.d.comb += [buf.c_label.eq(s_label), buf.c_lr.eq(s_ctl[:4]), buf.c_update.eq(s_ctl[4]),
                     # the decoder writes (runs of zeros too, which go on while
                     # no byte is there) only for a sample that will be applied
                     dec.write.eq(s_apply), dec.i.payload.eq(b)]
        w.behind = behind = Signal(IB, name="smp_behind")        # 0: the expected index
        m.d.comb += behind.eq(expected - s_index)
        w.aw = aw = max(1, (max(max(t) for t in self.totals) + P.MAX_READ).bit_length())
        w.rq_j = Signal(8, name="req_junction")
        w.rq_bias = Signal(8, name="req_bias")
        w.rq_start = Signal(aw, name="req_start")
        w.rq_high = Signal(name="req_start_high")     # start beyond any parameter
        w.rq_count = Signal(8, name="req_count")
        stage = Memory(shape=unsigned(16), depth=P.MAX_WRITE, init=[])
        m.submodules.write_stage = stage
        st_wp, st_rp = stage.write_port(), stage.read_port()
        w.st_wp, w.st_rp = st_wp, st_rp
        w.lo_byte = lo_byte = Signal(8, name="req_lo_byte")
        w.st_idx = st_idx = Signal(range(P.MAX_WRITE + 1), name="req_value_index")
        m.d.comb += [st_wp.addr.eq(st_idx), st_wp.data.eq(Cat(lo_byte, b))]

    def _parameter_iterator(self, m, w):
        """The parameter iterator: (junction, bias, row, lane) of element
        ``w.it_pos`` of the requested parameter array, moved by
        ``w.it_step`` (``w.it_reset``: back to element 0), drives the
        network's read-out and load ports; ``w.req_ok``: the request's
        address range is valid."""
        J, net, aw = self.cfg.junctions, w.net, w.aw
        rq_j, rq_bias = w.rq_j, w.rq_bias
        it_row = Signal(len(net.ro_row), name="it_row")
        it_lane = Signal(range(max(max(self.z + self.q), 2)), name="it_lane")
        w.it_pos = it_pos = Signal(aw, name="it_pos")
        w.it_step = it_step = Signal(name="it_step")
        w.it_reset = it_reset = Signal(name="it_reset")
        widths = Array(Const(x, len(it_lane)) for z, q in zip(self.z, self.q) for x in (z, q))
        totals = Array(Const(t, aw) for pair in self.totals for t in pair)
        sel = Signal(range(2 * J + 1), name="req_sel")
        m.d.comb += sel.eq(Cat(rq_bias[0], rq_j[:max(1, addr_bits(J))]))
        last_lane = Signal.like(it_lane, name="req_last_lane")
        total_sel = Signal(aw, name="req_total")
        m.d.comb += [last_lane.eq(widths[sel] - 1), total_sel.eq(totals[sel])]
        with m.If(it_reset):
            m.d.sync += [it_row.eq(0), it_lane.eq(0), it_pos.eq(0)]
        with m.Elif(it_step):
            m.d.sync += [it_pos.eq(it_pos + 1),
                         it_lane.eq(Mux(it_lane == last_lane, 0, it_lane + 1)),
                         it_row.eq(it_row + (it_lane == last_lane))]
        w.ld_en = ld_en = Signal(name="ld_en")
        m.d.comb += [net.ro_junction.eq(rq_j), net.ro_bias.eq(rq_bias[0]),
                     net.ro_row.eq(it_row), net.ro_lane.eq(it_lane),
                     net.ld_en.eq(ld_en), net.ld_data.eq(w.st_rp.data[:self.width])]
        w.req_ok = req_ok = Signal(name="req_ok")
        m.d.comb += req_ok.eq((rq_j < J) & (rq_bias < 2) & (w.rq_count != 0) & ~w.rq_high &
                              (w.rq_start + w.rq_count <= total_sel))

    def _request_fields(self, m, w):
        """The header and parameter bytes of the frame being received, by
        position (sample header; READ/WRITE header and values), into the
        request registers.  ``w.take``: such a byte is taken (whenever
        offered while the link FSM waits for frames; only pixel bytes wait for
        the decoder; no path through the ready signals)."""
        hdr, rcv, b, aw = w.hdr, w.rcv, w.b, w.aw
        w.ftype = ftype = hdr.type
        w.pos = pos = rcv.pos
        w.is_sample = is_sample = ftype == P.SAMPLE
        is_param = (ftype == P.READ) | (ftype == P.WRITE)
        w.parser_idle = parser_idle = Signal(name="parser_idle")
        take = parser_idle & rcv.o.valid
        with m.If(take & is_sample):
            with m.Switch(pos):
                with m.Case(0):
                    m.d.sync += w.s_index.eq(b)
                with m.Case(1):
                    m.d.sync += w.s_label.eq(b)
                with m.Case(2):
                    m.d.sync += w.s_ctl.eq(b)
        with m.If(take & is_param):
            with m.Switch(pos):
                with m.Case(0):
                    m.d.sync += w.rq_j.eq(b)
                with m.Case(1):
                    m.d.sync += w.rq_bias.eq(b)
                with m.Case(2):
                    m.d.sync += [w.rq_start[:8].eq(b), w.rq_high.eq(0)]
                for i in (1, 2):
                    with m.Case(2 + i):
                        if aw > 8 * i:
                            m.d.sync += w.rq_start[8 * i:].eq(b)
                        if aw < 8 * (i + 1):
                            with m.If(b >> max(0, aw - 8 * i) != 0):
                                m.d.sync += w.rq_high.eq(1)
                with m.Case(5):
                    m.d.sync += [w.rq_count.eq(b), w.st_idx.eq(0)]
                with m.Default():
                    with m.If(~pos[0]):
                        m.d.sync += w.lo_byte.eq(b)
                    with m.Else():
                        m.d.comb += w.st_wp.en.eq(w.st_idx < P.MAX_WRITE)
                        m.d.sync += w.st_idx.eq(w.st_idx + 1)
        # the sample header is complete: apply it only if it is the expected
        # one and a slot is free (decided before any pixel is written)
        with m.If(take & is_sample & (pos == 2)):
            m.d.comb += w.dec.clear.eq(1)
            m.d.sync += w.s_apply.eq((w.behind == 0) & (w.buf.free != 0))

    def _link_fsm(self, m, w):
        """The request side: FRAME (bytes of a frame into the request
        registers and the pixel decoder), FILL (the trailing zero pixels of
        a stored sample), ACT (the answer, see :meth:`_answer` and
        :meth:`_finish_frame`), and for a parameter access SEEK (to the start
        element), then READING (a PARAMS reply goes out) or APPLY (the staged
        values are loaded, one per clock)."""
        rcv, dec, hdr, is_sample = w.rcv, w.dec, w.hdr, w.is_sample
        with m.FSM(name="link"):
            with m.State("FRAME"):
                m.d.comb += w.parser_idle.eq(1)
                with m.If(is_sample & (w.pos >= 3)):
                    m.d.comb += [dec.i.valid.eq(rcv.o.valid), rcv.o.ready.eq(dec.i.ready)]
                with m.Else():
                    m.d.comb += rcv.o.ready.eq(1)
                with m.If(rcv.done.valid):
                    # a bad frame is dropped at once; a good one keeps the
                    # receiver (and its header) until its processing is done
                    with m.If(~rcv.done.payload):
                        m.d.comb += rcv.done.ready.eq(1)
                    with m.Elif(is_sample & w.s_apply & (hdr.length >= 3)):
                        m.next = "FILL"
                    with m.Else():
                        m.next = "ACT"
            with m.State("FILL"):
                m.d.comb += dec.finish.eq(1)
                with m.If(dec.finished):
                    m.next = "ACT"
            with m.State("ACT"):
                m.d.comb += dec.finish.eq(1)        # keeps `error` for a cut-short run
                param_go = self._answer(m, w)
                self._finish_frame(m, w, param_go)
            with m.State("SEEK"):
                with m.If(w.it_pos != w.rq_start):
                    m.d.comb += w.it_step.eq(1)
                with m.Elif(w.ftype == P.READ):
                    with m.If(w.reply_fsm_idle & ~w.pend):
                        m.d.comb += [w.job_start.eq(1), w.next_job.eq(K_PARAMS)]
                        m.next = "READING"
                with m.Else():
                    m.next = "APPLY"
            with m.State("READING"):
                # the request registers feed the PARAMS reply: the next frame
                # waits until it is out
                with m.If(w.reply_fsm_idle):
                    m.d.comb += rcv.done.ready.eq(1)
                    m.next = "FRAME"
            with m.State("APPLY"):
                self._apply(m, w)

    def _answer(self, m, w):
        """In ACT: what to answer the frame (``w.next_job``,
        ``w.next_result``); returns ``param_go``, high when a valid READ or
        WRITE may go ahead (the network is quiet)."""
        hdr, ftype, rq_count, behind = w.hdr, w.ftype, w.rq_count, w.behind
        next_job, next_result = w.next_job, w.next_result
        m.d.comb += [next_job.eq(K_REPORT), next_result.eq(P.R_BAD_REQUEST)]
        ok_len = Mux(ftype == P.READ, hdr.length == 6,
                     (hdr.length == 6 + 2 * rq_count) & (rq_count <= P.MAX_WRITE))
        param_go = Signal(name="param_go")
        with m.Switch(ftype):
            with m.Case(P.HELLO):
                m.d.comb += next_job.eq(K_INFO)
            with m.Case(P.STATUS):
                m.d.comb += next_job.eq(K_STATUS)
            with m.Case(P.POLL):
                m.d.comb += next_result.eq(P.R_POLLED)
            with m.Case(P.SAMPLE):
                with m.If(hdr.length < 3):
                    m.d.comb += next_result.eq(P.R_BAD_REQUEST)
                with m.Elif(behind == 0):
                    with m.If(~w.s_apply):
                        m.d.comb += next_result.eq(P.R_NO_CREDIT)
                    with m.Elif(w.dec.error):
                        m.d.comb += next_result.eq(P.R_BAD_PIXELS)
                    with m.Else():
                        m.d.comb += next_result.eq(P.R_ACCEPTED)
                with m.Elif(behind[-1]):
                    m.d.comb += next_result.eq(P.R_OUT_OF_ORDER)
                with m.Else():
                    m.d.comb += next_result.eq(P.R_DUPLICATE)
            with m.Case(P.READ, P.WRITE):
                with m.If(ok_len & w.req_ok):
                    with m.If(w.quiet):
                        m.d.comb += param_go.eq(1)
                    with m.Else():
                        m.d.comb += next_result.eq(P.R_BUSY)
        return param_go

    def _finish_frame(self, m, w, param_go):
        """In ACT, once the reply may be queued (HELLO and STATUS wait for
        the reply sequencer): release the receiver, take the host's
        acknowledgement, then start the parameter access (to SEEK), start the
        INFO or STATUS reply, or request a REPORT (a stored sample is
        committed to the input buffer); count the outcome."""
        ftype, next_result, ev = w.ftype, w.next_result, w.ev
        explicit = (ftype == P.HELLO) | (ftype == P.STATUS)
        with m.If(~explicit | w.reply_fsm_idle):
            # done with this frame: the receiver may go on
            m.d.comb += [w.rcv.done.ready.eq(~param_go), w.ring.ack_en.eq(1)]
            m.d.sync += w.s_apply.eq(0)
            with m.If(param_go):
                m.d.comb += [w.it_reset.eq(1), w.hold_set.eq(1)]
                m.next = "SEEK"
            with m.Elif(explicit):
                m.d.comb += w.job_start.eq(1)
                m.next = "FRAME"
            with m.Else():
                m.d.comb += w.report.eq(1)
                m.next = "FRAME"
                with m.If(ftype == P.POLL):
                    m.d.comb += w.ps_rewind.eq(1)
                with m.If(next_result == P.R_ACCEPTED):
                    m.d.sync += w.expected.eq(w.expected + 1)
                    m.d.comb += w.buf.commit.eq(1)
                for code, name in ((P.R_ACCEPTED, "samples_accepted"),
                                   (P.R_NO_CREDIT, "no_credit"),
                                   (P.R_BAD_PIXELS, "bad_pixels"),
                                   (P.R_OUT_OF_ORDER, "out_of_order"),
                                   (P.R_DUPLICATE, "duplicates"), (P.R_BUSY, "busy")):
                    m.d.comb += ev[name].eq(next_result == code)

    def _apply(self, m, w):
        """In APPLY: staged value ``i`` is read in one clock and loaded into
        the network in the next; after the last one, the REPORT (written)
        and back to FRAME."""
        rq_count = w.rq_count
        ap_i = Signal(8, name="apply_index")
        ap_valid = Signal(name="apply_valid")
        m.d.comb += w.st_rp.addr.eq(ap_i)
        m.d.sync += [ap_valid.eq(ap_i != rq_count), ap_i.eq(ap_i + (ap_i != rq_count))]
        with m.If(ap_valid):
            m.d.comb += [w.ld_en.eq(1), w.it_step.eq(1)]
        with m.If(~ap_valid & (ap_i == rq_count)):
            m.d.sync += ap_i.eq(0)
            m.d.comb += [w.hold_clear.eq(1), w.report.eq(1), w.next_result.eq(P.R_WRITTEN),
                         w.rcv.done.ready.eq(1)]
            m.next = "FRAME"

    def _status_outputs(self, m, w):
        """The LED pulses and ``idle`` (nothing to do until a byte comes)."""
        m.d.comb += [
            self.running.eq(w.ran),
            self.activity.eq(w.good_pulse),
            self.error.eq(w.bad_pulse),
            self.idle.eq((w.fifo.level == 0) & w.quiet & ~w.snd.busy & w.reply_fsm_idle &
                         ~w.pend & w.parser_idle & ~w.rcv.o.valid & ~w.rcv.done.valid &
                         ~self.rx.valid),
        ]
