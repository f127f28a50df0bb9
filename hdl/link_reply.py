"""The reply side of the link engine: which reply goes out next, its bytes.

Parts of :meth:`LinkEngine.elaborate <sparse_edge.hdl.link.LinkEngine.elaborate>`,
built into the engine's module (not sub-components: they share many of the
engine's registers).  Each takes the module ``m`` and the namespace ``w`` of
the wires the engine's parts share; it reads the wires made before it and adds
its own to ``w``.

* :func:`prediction_pointer`: which predictions the next REPORT carries;
* :func:`reply_queue`: the reply to send next (INFO, REPORT, PARAMS, STATUS),
  REPORTs coalesced while another reply is going out, and the hold of the
  input buffer during a parameter access;
* :func:`reply_payload`: the header and the payload bytes of the reply;
* :func:`reply_fsm`: the sequencer that hands them to the
  :class:`~sparse_edge.hdl.framing.FrameSender`.
"""

from amaranth.hdl import Array, Const, Mux, Signal, unsigned
from amaranth.lib.memory import Memory

from ..gen import protocol as P
from ..gen.geometry import READOUT_LATENCY
from .link_buffers import IB

__all__ = ["K_INFO", "K_REPORT", "K_PARAMS", "K_STATUS", "max_reply_length",
           "prediction_pointer", "reply_queue", "reply_payload", "reply_fsm"]

#: Reply kinds (``w.job``), in the order of their frame types below.
K_INFO, K_REPORT, K_PARAMS, K_STATUS = 0, 1, 2, 3


def max_reply_length(info):
    """Longest reply payload: INFO (``info``, its bytes), a full REPORT, a
    full PARAMS or STATUS."""
    return max(len(info), 6 + P.MAX_PREDS, 2 * P.MAX_READ, 4 * len(P.STATUS_FIELDS))


def prediction_pointer(m, w):
    """``w.pred_sent``: the first prediction the next REPORT carries, and
    ``w.n_preds``, how many (at most ``MAX_PREDS``).  A REPORT advances it
    (``w.ps_advance``), a POLL rewinds it to the host's acknowledgement
    (``w.ps_rewind``)."""
    ring, hdr = w.ring, w.hdr
    w.pred_sent = pred_sent = Signal(IB, name="pred_sent")
    outstanding = Signal(IB, name="pred_unsent")
    m.d.comb += [ring.ack.eq(hdr.ack), outstanding.eq(ring.produced - pred_sent)]
    w.n_preds = n_preds = Signal(range(P.MAX_PREDS + 1), name="rep_n_next")
    m.d.comb += n_preds.eq(Mux(outstanding > P.MAX_PREDS, P.MAX_PREDS, outstanding))
    # An acknowledgement may pass pred_sent (after a POLL rewound it): the
    # next REPORTs then start below the ring's tail, and the host takes
    # only what lies at or above its acknowledgement, which the ring
    # holds.  pred_sent catches up by up to MAX_PREDS per REPORT.
    w.ps_advance = ps_advance = Signal(name="pred_sent_advance")   # a REPORT takes n_preds
    w.ps_rewind = ps_rewind = Signal(name="pred_sent_rewind")      # POLL: back to the ack
    with m.If(ps_rewind):
        m.d.sync += pred_sent.eq(ring.tail)
    with m.Elif(ps_advance):
        m.d.sync += pred_sent.eq(pred_sent + n_preds)


def reply_queue(m, w):
    """The reply to send next.  The request side either starts one at once
    (``w.job_start`` with ``w.next_job``: INFO, STATUS, PARAMS) or asks for a
    REPORT (``w.report`` with ``w.next_result``), which stays pending
    (``w.pend``) until the reply sequencer takes it (``w.take_pending``):
    REPORTs are coalesced, the pending one carrying the latest sequence number
    and the most important result (``RESULT_PRIORITY``).  Also the hold of the
    input buffer during a parameter access (``w.hold_set``,
    ``w.hold_clear``)."""
    hdr, buf = w.hdr, w.buf
    w.job = job = Signal(2, name="reply_kind")
    w.job_seq = job_seq = Signal(8, name="reply_seq")
    w.job_start = job_start = Signal(name="reply_start")    # INFO, STATUS or PARAMS: next_job
    w.result = result = Signal(8, name="reply_result")
    w.next_result = next_result = Signal(8, name="reply_result_next")
    w.next_job = next_job = Signal(2, name="reply_kind_next")
    # REPORTs are coalesced: a frame that wants one while another reply is
    # going out only marks it pending (latest seq, most important result)
    w.report = report = Signal(name="report_request")
    w.pend = pend = Signal(name="report_pending")
    pend_result = Signal(8, name="report_pending_result")
    pend_seq = Signal(8, name="report_pending_seq")
    pend_rank = Signal(4, name="report_pending_rank")
    rank = Signal(4, name="report_rank")
    with m.Switch(next_result):
        for i, code in enumerate(P.RESULT_PRIORITY):
            with m.Case(code):
                m.d.comb += rank.eq(i)
    w.take_pending = take_pending = Signal(name="report_take")
    with m.If(report):
        m.d.sync += [pend.eq(1), pend_seq.eq(hdr.seq)]
        with m.If(~pend | take_pending | (rank >= pend_rank)):
            m.d.sync += [pend_result.eq(next_result), pend_rank.eq(rank)]
    with m.Elif(take_pending):
        m.d.sync += pend.eq(0)
    with m.If(job_start):
        m.d.sync += [job.eq(next_job), job_seq.eq(hdr.seq)]
    with m.Elif(take_pending):
        m.d.sync += [job.eq(K_REPORT), job_seq.eq(pend_seq), result.eq(pend_result)]
    holding = Signal(name="param_hold")          # parameter access owns the read-out
    w.hold_set = hold_set = Signal(name="param_hold_set")
    w.hold_clear = hold_clear = Signal(name="param_hold_clear")
    with m.If(hold_set):
        m.d.sync += holding.eq(1)
    with m.Elif(hold_clear):
        m.d.sync += holding.eq(0)
    m.d.comb += buf.hold.eq(holding)


def reply_payload(m, w, info, slots):
    """The frame header of the reply and its payload byte ``w.k``
    (``w.byte``).  ``w.snap`` freezes what a REPORT reports and the length;
    INFO bytes come from a ROM of ``info``, REPORT bytes from the snapshot and
    the prediction ring, PARAMS and STATUS bytes from ``w.latch`` (loaded by
    :func:`reply_fsm`).  ``slots``: the input buffer's, for the credit limit."""
    buf, ring, bank, snd = w.buf, w.ring, w.bank, w.snd
    job, n_preds = w.job, w.n_preds
    rep_next = Signal(IB, name="rep_next")
    rep_limit = Signal(IB, name="rep_limit")
    rep_prod = Signal(IB, name="rep_produced")
    rep_n = Signal(range(P.MAX_PREDS + 1), name="rep_n")
    w.ring_ptr = ring_ptr = Signal(IB, name="rep_ring_ptr")   # prediction of the next byte
    max_len = max_reply_length(info)
    w.k = k = Signal(range(max_len + 1), name="reply_byte")   # payload byte index
    byte = Signal(8, name="reply_data")
    w.latch = latch = Signal(32, name="reply_latch")
    info_rom = Memory(shape=unsigned(8), depth=len(info), init=list(info))
    m.submodules.info_rom = info_rom
    info_rp = info_rom.read_port()
    m.d.comb += [info_rp.addr.eq(k), ring.r_index.eq(ring_ptr)]
    # STATUS: four bytes per counter, read from the bank at a field's first byte
    n_status = 4 * len(P.STATUS_FIELDS)
    assert all(n == 4 for _, n in P.STATUS_FIELDS)
    w.length = length = Signal(range(max_len + 1), name="reply_length")
    w.bank_hi = bank_hi = Signal(name="reply_bank_hi")
    m.d.comb += [bank.r_index.eq(k[2:]), bank.r_half.eq(bank_hi)]
    w.snap = snap = Signal(name="reply_snap")
    with m.If(snap):
        m.d.sync += [rep_next.eq(w.expected), rep_limit.eq(buf.consumed + slots),
                     rep_prod.eq(ring.produced), ring_ptr.eq(w.pred_sent),
                     rep_n.eq(Mux(job == K_REPORT, n_preds, 0)),
                     length.eq(Array([Const(len(info), len(length)), 6 + n_preds,
                                      2 * w.rq_count, Const(n_status, len(length))])[job])]
    # payload bytes
    # the base (index of the first prediction) is the ring pointer, which
    # only moves once the predictions themselves go out (bytes 6 on)
    rep_bytes = Array([w.result, rep_next, rep_limit, rep_prod, ring_ptr, rep_n])
    with m.Switch(job):
        with m.Case(K_INFO):
            m.d.comb += byte.eq(info_rp.data)
        with m.Case(K_REPORT):
            m.d.comb += byte.eq(Mux(k < 6, rep_bytes[k[:3]], ring.r_data))
        with m.Case(K_PARAMS):
            # the code's low bits; the host sign-extends
            m.d.comb += byte.eq(latch.word_select(k[0], 8))
        with m.Case(K_STATUS):
            m.d.comb += byte.eq(latch.word_select(k[:2], 8))
    m.d.comb += [snd.cmd.payload.type.eq(Array([Const(P.INFO, 8), Const(P.REPORT, 8),
                                                Const(P.PARAMS, 8),
                                                Const(P.STATUS_REPLY, 8)])[job]),
                 snd.cmd.payload.seq.eq(w.job_seq), snd.cmd.payload.length.eq(length),
                 snd.i.payload.eq(byte)]


def reply_fsm(m, w):
    """The reply sequencer: takes a started or pending reply, snapshots it,
    sends the header command and then byte after byte (a STATUS field's
    counter is read from the bank, two halves, at its first byte; a parameter
    is read out at its first byte, ``READOUT_LATENCY`` clocks after its
    address), and waits for the sender to finish the CRC.
    ``w.reply_fsm_idle`` is high in between.  A payload byte takes three
    clocks at best (PREP, FETCH, EMIT; a parameter's first byte one more
    per read-out clock beyond the first), the first byte of a STATUS field
    at least six."""
    snd, bank, net = w.snd, w.bank, w.net
    job, k, latch, length = w.job, w.k, w.latch, w.length
    w.reply_fsm_idle = reply_fsm_idle = Signal(name="reply_fsm_idle")
    with m.FSM(name="reply"):
        with m.State("IDLE"):
            m.d.comb += reply_fsm_idle.eq(1)
            with m.If(w.job_start):
                m.next = "SNAP"
            with m.Elif(w.pend & ~w.report):
                m.d.comb += w.take_pending.eq(1)
                m.next = "SNAP"
        with m.State("SNAP"):
            m.d.comb += [w.snap.eq(1), w.ps_advance.eq(job == K_REPORT)]
            m.d.sync += k.eq(0)
            m.next = "CMD"
        with m.State("CMD"):
            m.d.comb += snd.cmd.valid.eq(1)
            with m.If(snd.cmd.ready):
                m.next = "PREP"
        with m.State("PREP"):
            # addresses for byte k are set; sources with a latch load it
            with m.If((job == K_STATUS) & (k[:2] == 0)):
                m.next = "STATUS_LO"
            with m.Elif((job == K_PARAMS) & ~k[0]):
                m.next = "FETCH_WAIT1" if READOUT_LATENCY > 1 else "FETCH"
            with m.Else():
                m.next = "FETCH"
        # a parameter's ro_data arrives READOUT_LATENCY clocks after PREP
        for i in range(1, READOUT_LATENCY):
            with m.State(f"FETCH_WAIT{i}"):
                m.next = f"FETCH_WAIT{i + 1}" if i + 1 < READOUT_LATENCY else "FETCH"
        with m.State("STATUS_LO"):
            m.d.comb += bank.r_en.eq(bank.r_ready)
            with m.If(bank.r_ready):
                m.next = "STATUS_LO_DATA"
        with m.State("STATUS_LO_DATA"):
            m.d.sync += latch[:16].eq(bank.r_data)
            m.next = "STATUS_HI"
        with m.State("STATUS_HI"):
            m.d.comb += [bank.r_en.eq(bank.r_ready), w.bank_hi.eq(1)]
            with m.If(bank.r_ready):
                m.next = "STATUS_HI_DATA"
        with m.State("STATUS_HI_DATA"):
            m.d.sync += latch[16:].eq(bank.r_data)
            m.next = "EMIT"
        with m.State("FETCH"):
            with m.If((job == K_PARAMS) & ~k[0]):
                m.d.sync += latch.eq(net.ro_data.as_unsigned())
            m.next = "EMIT"
        with m.State("EMIT"):
            m.d.comb += snd.i.valid.eq(1)
            with m.If(snd.i.ready):
                m.d.sync += k.eq(k + 1)
                with m.If((job == K_REPORT) & (k >= 6)):
                    m.d.sync += w.ring_ptr.eq(w.ring_ptr + 1)
                with m.If((job == K_PARAMS) & k[0]):
                    m.d.comb += w.it_step.eq(1)
                with m.If(k == length - 1):
                    m.next = "DRAIN"
                with m.Else():
                    m.next = "PREP"
        with m.State("DRAIN"):
            # the sender is done after the CRC
            with m.If(~snd.busy):
                m.d.comb += w.hold_clear.eq(1)
                m.next = "IDLE"
