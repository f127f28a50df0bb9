"""Host driver of a board running a sparse-edge system top (``hdl/system.py``).

:class:`Board` talks the link protocol of :mod:`sparse_edge.gen.protocol` over
any byte transport pyserial's ``serial_for_url`` opens (``/dev/ttyUSB1``,
``socket://127.0.0.1:PORT`` for the simulated board) or any object with
``read(n)`` / ``write(data)``.  It trains and evaluates in *phases*, exactly
like the compiled simulation (``sim/cxxrtl.py``): the samples of a phase, then
``drain_samples`` no-update dummies, so the board ends every phase in the
state the golden model's ``run()`` ends in.

Reliability: samples carry running indices and the device applies only the
next one it expects, so the host can resend freely (go-back-N) after a lost,
corrupt or reordered frame; the device's cumulative reports carry its next
expected index, its credit limit (``consumed + slots``: the host never
overruns the input buffer) and the predictions not yet reported; a lost
report is recovered by a ``POLL``, which rewinds the device's prediction
pointer to the host's acknowledgement.  Parameter reads and writes are
idempotent and retried until answered.
"""

import time

import numpy as np

from ..gen import protocol as P
from ..gen.config import NO_UPDATE, ConfigError
from .errors import BoardError, BoardTimeout, PortError, WrongNetwork
from .port import LinkStats, open_port

__all__ = ["BoardError", "BoardTimeout", "PortError", "WrongNetwork", "Board", "open_port",
           "LinkStats"]


def _unwrap(v, ref):
    """The integer nearest ``ref`` that is ``v`` modulo ``INDEX_MOD``."""
    d = (int(v) - ref) % P.INDEX_MOD
    if d >= P.INDEX_MOD // 2:
        d -= P.INDEX_MOD
    return ref + d


class Board:
    """A board (real or simulated) running a sparse-edge system top.

    Parameters
    ----------
    port : str or serial-like
        A URL for :func:`open_port`, or an open object with ``read(n)`` and
        ``write(data)`` (``read`` returns what arrived within a short
        timeout, possibly nothing).
    cfg : NetworkConfig, optional
        The network the caller expects; the board's INFO digest must match
        (:class:`WrongNetwork` otherwise).  If only the junction-cycle length
        differs (a bitstream built with ``--cycle``), the config is adopted
        with the board's ``C`` (see :attr:`cfg`, :attr:`note`).
    timeout : float
        Seconds without any answer after which the board counts as gone
        (:class:`BoardTimeout`).
    retry : float
        Seconds without progress after which frames are resent.
    clock : callable
        Time source in seconds (tests driving a simulator pass simulated time).
    """

    def __init__(self, port, cfg=None, *, baudrate=3_000_000, timeout=3.0, retry=0.2,
                 clock=None, log=None):
        self._own = isinstance(port, str)
        self.url = port if isinstance(port, str) else getattr(port, "name", repr(port))
        self.port = open_port(port, baudrate) if isinstance(port, str) else port
        self.timeout, self.retry = float(timeout), float(retry)
        self._now = clock or time.monotonic
        self.log = log or (lambda msg: None)
        self.stats = LinkStats()
        self._parser = P.FrameParser(host=False, max_payload=1 << 16)
        self._seq = 0
        self._pending = []
        self.note = None
        try:
            self.info = self._hello()
            self.cfg = self._match(cfg) if cfg is not None else None
            # where the device is: next sample index and predictions produced
            self._sync()
        except BaseException:
            self.close()
            raise

    # -- transport -------------------------------------------------------------------------
    def close(self):
        if self._own and self.port is not None:
            try:
                self.port.close()
            except Exception:  # noqa: BLE001 - closing a broken port
                pass
        self.port = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, ftype, payload=b""):
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        frame = P.host_frame(ftype, seq, self._ack, payload)
        try:
            self.port.write(frame)
        except Exception as e:  # noqa: BLE001 - pyserial raises several kinds
            raise PortError(f"cannot write to {self.url}: {e}") from None
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(frame)
        return seq

    def _receive(self):
        """Frames that arrived within the port's read timeout."""
        try:
            n = getattr(self.port, "in_waiting", 0) or 1
            data = self.port.read(n)
        except Exception as e:  # noqa: BLE001
            raise PortError(f"cannot read from {self.url}: {e}") from None
        if not data:
            return []
        self.stats.bytes_received += len(data)
        bad = self._parser.bad
        frames = self._parser.feed(data)
        self.stats.frames_bad += self._parser.bad - bad
        return frames

    def _frames(self):
        """Pending frames first, then what arrives."""
        if self._pending:
            out, self._pending = self._pending, []
            return out
        return self._receive()

    # -- handshake ---------------------------------------------------------------------------
    def _request(self, ftype, payload, want, what):
        """Send a request until a reply of type ``want`` with its sequence
        number arrives; returns that frame (REPORTs are handled on the way,
        and a REPORT answering the request is returned too)."""
        t_start = self._now()
        seq = self._send(ftype, payload)
        t_sent = t_start
        while True:
            for f in self._frames():
                if f.type == P.REPORT:
                    rep = self._on_report(f)
                    if f.seq == seq and want != P.REPORT and rep is not None \
                            and rep.result in (P.R_BUSY, P.R_BAD_REQUEST):
                        return f
                    if f.seq == seq and want == P.REPORT:
                        return f
                    continue
                if f.type == want and f.seq == seq:
                    return f
                self.stats.replies_ignored += 1
            now = self._now()
            if now - t_start > self.timeout:
                raise BoardTimeout(
                    f"no answer from the board at {self.url} to {what} in {self.timeout:g} s: "
                    "is it powered, programmed with a sparse-edge bitstream (sparse-edge program) "
                    "and is this its port?")
            if now - t_sent > self.retry:
                self.stats.timeouts += 1
                seq = self._send(ftype, payload)
                t_sent = now

    def _hello(self):
        f = self._request(P.HELLO, b"", P.INFO, "HELLO")
        try:
            return P.parse_info(f.payload)
        except P.ProtocolError as e:
            raise BoardError(f"{self.url}: {e}") from None

    def _match(self, cfg):
        info = self.info
        sched = info.schedule
        if P.network_digest(cfg, sched) == info.digest:
            return cfg
        if info.cycle != cfg.cycle and tuple(info.layers) == tuple(cfg.layers) and \
                tuple(info.fanout) == tuple(cfg.fanout):
            try:
                alt = cfg.with_(cycle=info.cycle)
            except ConfigError:
                alt = None
            if alt is not None and P.network_digest(alt, sched) == info.digest:
                self.note = (f"the board was built with C = {info.cycle} (config: C = "
                             f"{cfg.cycle}); using C = {info.cycle}")
                return alt
        ours = (f"{'-'.join(map(str, cfg.layers))} fo={list(cfg.fanout)} C={cfg.cycle} "
                f"{cfg.fmt}, digest {P.network_digest(cfg, sched).hex()}")
        raise WrongNetwork(f"the board at {self.url} runs another network ({info.describe()}) "
                           f"than the config ({ours}): build and program the board for this "
                           "config (sparse-edge build / program), or give the config it was "
                           "built from")

    # -- bookkeeping of samples and predictions ---------------------------------------------
    @property
    def _ack(self):
        return getattr(self, "_pred_recv", 0) % P.INDEX_MOD

    def _sync(self):
        """Learn the device's next index and prediction count (POLL)."""
        self._next = 0
        self._limit = 0
        self._pred_recv = 0
        self._preds = {}
        self._synced = False
        self.stats.polls += 1
        self._request(P.POLL, b"", P.REPORT, "POLL")

    def _on_report(self, f):
        try:
            r = P.parse_report(f.payload)
        except P.ProtocolError:
            self.stats.replies_ignored += 1
            return None
        name = r.result_name
        self.stats.results[name] = self.stats.results.get(name, 0) + 1
        if not self._synced:
            # first contact: everything produced so far is old news
            self._next = r.next_index
            self._limit = _unwrap(r.limit, self._next)
            self._pred_recv = _unwrap(r.produced, self._next)
            self._synced = True
            return r
        self._next = max(self._next, _unwrap(r.next_index, self._next))
        self._limit = max(self._limit, _unwrap(r.limit, self._limit))
        base = _unwrap(r.base, self._pred_recv)
        if base <= self._pred_recv < base + len(r.preds):
            for i in range(self._pred_recv - base, len(r.preds)):
                self._preds[base + i] = r.preds[i]
            self._pred_recv = base + len(r.preds)
        return r

    def _check_samples(self, x, labels):
        info = self.info
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] not in (info.inputs, info.layers[0]):
            raise BoardError(
                f"the samples have shape {x.shape} but the board's network takes "
                f"{info.inputs} input pixels per sample (layers[0] = {info.layers[0]}): "
                "use a dataset that matches the config")
        if x.shape[1] > info.inputs and x[:, info.inputs:].any():
            raise BoardError(f"pixels beyond the network's {info.inputs} inputs must be zero "
                             "(padding)")
        if x.dtype != np.uint8 and (x.min(initial=0) < 0 or x.max(initial=0) > 255):
            raise BoardError("pixels must be 8-bit values 0..255")
        labels = np.asarray(labels).astype(np.int64)
        if len(labels) != len(x):
            raise BoardError(f"{len(x)} samples but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= info.classes):
            raise BoardError(f"labels must be in 0..{info.classes - 1} for this network")
        return x[:, :info.inputs].astype(np.uint8), labels

    # -- training and evaluation --------------------------------------------------------------
    def run_phase(self, x, labels, eta_exp, progress=None):
        """Stream one phase: the samples (``eta_exp``: an exponent ``k`` for
        eta = 2**-k per sample or for all, or ``NO_UPDATE``), then the drain.
        Returns the predictions of the samples (``int64``)."""
        x, labels = self._check_samples(x, labels)
        n = len(x)
        ks = np.broadcast_to(np.asarray(eta_exp, dtype=np.int64), (n,))
        if ((ks != NO_UPDATE) & ((ks < 0) | (ks > 15))).any():
            raise BoardError("learning-rate exponents must be in 0..15 (or NO_UPDATE)")
        sb = P.symbol_bits_of(self.info.frac_bits)
        drain = self.info.drain_samples
        zero = b""

        def payload(pos, index):
            if pos < n:
                code = P.encode_pixels(x[pos], sb)
                return P.sample_payload(index, int(labels[pos]), int(ks[pos]), code)
            return P.sample_payload(index, 0, NO_UPDATE, zero)

        total = n + drain
        start = self._next
        want_preds = start + n           # predictions of the real samples
        send = 0                         # next stream position to send
        rewind_after = 0                 # frames sent from this count on may trigger a rewind
        sent_count = 0
        seq_pos = {}
        outstanding = 0                  # frames whose report has not come
        last_progress = self._now()
        last_answer = last_progress
        reported = 0
        cache = {}
        while True:
            accepted = self._next - start
            if accepted >= total and self._pred_recv >= want_preds:
                break
            # send what the credit allows
            while send < total and start + send < self._limit:
                index = start + send
                pl = cache.pop(send, None) or payload(send, index)
                seq = self._send(P.SAMPLE, pl)
                seq_pos[seq] = (send, sent_count)
                sent_count += 1
                outstanding += 1
                self.stats.samples_sent += 1
                send += 1
            if outstanding <= 0:
                # nothing in flight: ask for the state (credit, predictions)
                self.stats.polls += 1
                seq = self._send(P.POLL)
                seq_pos[seq] = (None, sent_count)
                sent_count += 1
                outstanding = 1
            got = False
            for f in self._frames():
                if f.type != P.REPORT:
                    self.stats.replies_ignored += 1
                    continue
                r = self._on_report(f)
                if r is None:
                    continue
                got = True
                outstanding -= 1
                pos, order = seq_pos.get(f.seq, (None, -1))
                if r.result in (P.R_OUT_OF_ORDER, P.R_NO_CREDIT) and order >= rewind_after:
                    # a frame before this one was lost: go back to the device's index
                    back = self._next - start
                    if send > back:
                        self.stats.retransmissions += send - back
                        send = back
                    rewind_after = sent_count
                    outstanding = 0
                elif r.result == P.R_BAD_PIXELS:
                    raise BoardError(f"the board refused the pixel code of sample "
                                     f"{start + (pos or 0)}: host and bitstream disagree on "
                                     "the sample encoding (rebuild the bitstream)")
                elif r.result == P.R_BAD_REQUEST:
                    raise BoardError("the board refused a sample frame as malformed: host and "
                                     "bitstream disagree on the protocol (rebuild it)")
            if self._next - start > send:
                send = self._next - start          # the device has them already
            now = self._now()
            if got:
                last_answer = now
                done = min(self._next - start, total)
                if done != reported or self._pred_recv:
                    last_progress = now
                if progress is not None and done != reported:
                    progress(min(done, n))
                reported = done
            elif now - last_progress > self.retry:
                # no report for a while: resend from the device's index and poll
                self.stats.timeouts += 1
                back = self._next - start
                if send > back:
                    self.stats.retransmissions += send - back
                    send = back
                rewind_after = sent_count
                outstanding = 0
                last_progress = now
            if now - last_answer > self.timeout:
                raise BoardTimeout(
                    f"the board at {self.url} stopped answering ({self.timeout:g} s without a "
                    f"report; {self._next - start} of {total} samples accepted)")
        preds = np.array([self._preds.pop(start + i) for i in range(n)], dtype=np.int64)
        for i in [i for i in self._preds if i < self._pred_recv - P.INDEX_MOD]:
            del self._preds[i]
        return preds

    def train(self, x, labels, eta_exp, progress=None):
        """One training phase at learning rate 2**-``eta_exp``; returns the
        predictions made while training."""
        return self.run_phase(x, labels, eta_exp, progress)

    def evaluate(self, x, labels, progress=None):
        """One evaluation phase (no update); returns the predictions."""
        return self.run_phase(x, labels, NO_UPDATE, progress)

    def flush(self):
        """Push a drain through the network (no update): after it, samples of
        an interrupted earlier session have left the pipeline and the weights
        are final."""
        self.run_phase(np.zeros((0, self.info.inputs), np.uint8), np.zeros(0, np.int64),
                       NO_UPDATE)

    # -- parameters ------------------------------------------------------------------------------
    def _geometry(self):
        cfg = self.cfg
        if cfg is None:
            raise BoardError("reading or writing parameters needs the config (Board(port, cfg))")
        return [(cfg.edges[j], cfg.layers[j + 1]) for j in range(cfg.junctions)]

    def _param_request(self, ftype, payload, want, what):
        t0 = self._now()
        while True:
            f = self._request(ftype, payload, want, what)
            if f.type == P.REPORT:
                r = P.parse_report(f.payload)
                if r.result == P.R_BUSY:
                    # samples still in flight: let the network finish them
                    self.stats.busy += 1
                    if self._now() - t0 > self.timeout:
                        raise BoardTimeout(f"the board at {self.url} stayed busy for "
                                           f"{self.timeout:g} s ({what})")
                    self._request(P.POLL, b"", P.REPORT, "POLL")
                    continue
                if r.result == P.R_BAD_REQUEST:
                    raise BoardError(f"the board refused {what} as malformed")
                if want != P.REPORT:
                    continue
            return f

    def read_parameters(self):
        """Every weight and bias, as ``[(w, b), ...]`` int32 codes (read
        through the network's read-out port while it is stalled)."""
        width = self.info.int_bits + self.info.frac_bits + 1
        out = []
        for j, (nw, nb) in enumerate(self._geometry()):
            pair = []
            for bias, total in ((0, nw), (1, nb)):
                vals = np.zeros(total, dtype=np.int32)
                for s in range(0, total, self.info.max_read):
                    cnt = min(self.info.max_read, total - s)
                    f = self._param_request(P.READ, P.read_payload(j, bias, s, cnt), P.PARAMS,
                                            f"READ junction {j + 1}")
                    try:
                        vals[s:s + cnt] = P.parse_params(f.payload, width, cnt)
                    except P.ProtocolError as e:
                        raise BoardError(f"the board answered a READ badly: {e}") from None
                pair.append(vals)
            out.append(tuple(pair))
        return out

    def write_parameters(self, params):
        """Load every weight and bias (``[(w, b), ...]`` codes)."""
        width = self.info.int_bits + self.info.frac_bits + 1
        geo = self._geometry()
        if len(params) != len(geo):
            raise BoardError(f"{len(params)} junctions of parameters for a network with "
                             f"{len(geo)}")
        for j, ((w, b), (nw, nb)) in enumerate(zip(params, geo)):
            for bias, vals, total in ((0, np.asarray(w), nw), (1, np.asarray(b), nb)):
                if vals.shape != (total,):
                    raise BoardError(f"junction {j + 1}: {'biases' if bias else 'weights'} of "
                                     f"shape {vals.shape}, expected ({total},)")
                for s in range(0, total, self.info.max_write):
                    chunk = vals[s:s + self.info.max_write]
                    try:
                        pl = P.write_payload(j, bias, s, chunk, width)
                    except ValueError as e:
                        raise BoardError(f"junction {j + 1}: {e}") from None
                    self._param_request(P.WRITE, pl, P.REPORT, f"WRITE junction {j + 1}")

    def status(self):
        """The device's counters (:data:`~sparse_edge.gen.protocol.STATUS_FIELDS`)
        and the host's (``host``).  The device counts modulo 2**32; the
        counts returned here are unwrapped across this session's reads (read
        at least once per wrap: 71 s of uptime at 60 MHz)."""
        f = self._request(P.STATUS, b"", P.STATUS_REPLY, "STATUS")
        raw = P.parse_status(f.payload)
        last = getattr(self, "_status_raw", None)
        if last is None:
            self._status_total = dict(raw)
        else:
            for k, v in raw.items():
                self._status_total[k] += (v - last[k]) % P.COUNTER_MOD
        self._status_raw = raw
        d = dict(self._status_total)
        d["host"] = self.stats.to_dict()
        return d
