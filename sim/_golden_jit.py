"""numba kernel of the fixed-point golden model.

The same algorithm as ``GoldenModel._run_numpy`` (which is the readable
definition), written as scalar loops over flattened arrays so it runs at
tens of thousands of samples per second.  ``tests/test_golden.py`` checks the
two kernels give identical predictions and parameters on random configs.
"""

import warnings

import numpy as np
from numba import njit

from ..gen.config import NO_UPDATE

__all__ = ["run_fixed"]

_CHUNK = 2048  # junction cycles per kernel call (progress granularity)


def _jit(fn):
    """``njit`` with the on-disk cache, or without it (one warning) when numba
    finds no writable cache location (e.g. a read-only install and ``HOME``):
    the kernel is then compiled once per process instead of loaded."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError as e:     # numba: "cannot cache function ...: no locator available"
        if not _jit.warned:
            warnings.warn(f"numba cannot cache the golden-model kernel ({e}); compiling it "
                          f"in every run (set NUMBA_CACHE_DIR to a writable folder to cache it)",
                          RuntimeWarning, stacklevel=2)
            _jit.warned = True
        return njit(cache=False, nogil=True)(fn)


_jit.warned = False


@_jit
def _clip(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@_jit
def _rmul(x, half, frac, lo, hi):
    """Round half up by ``frac`` bits, then saturate (``QFormat.mul``)."""
    return _clip((x + half) >> frac, lo, hi)


@_jit
def _run_cycles(t0, t1, N, S, F, U, x, labels, ks, pshl, pshr, one, lo, hi, frac,
                sig, dsig, tshift, toff, nl, loff, w, woff, b, boff, src, fi, classes,
                abuf, dabuf, dbuf, K, dacc, preds, outs, keep):
    J = F.shape[0]
    half = 1 << (frac - 1)
    n_in = nl[0]
    for t in range(t0, t1):
        if t % S == 0 and t // S < N:
            n = t // S
            slot = n % K
            for i in range(n_in):
                abuf[slot, i] = (np.int32(x[n, i]) << pshl) >> pshr
        for j in range(J):
            p = nl[j]
            nr = nl[j + 1]
            f = fi[j]
            la = loff[j]
            lr = loff[j + 1]
            wo = woff[j]
            bo = boff[j]
            tf = t - F[j]
            if tf >= 0 and tf % S == 0 and tf // S < N:
                n = tf // S
                slot = n % K
                best = 0
                best_s = 0
                for r in range(nr):
                    acc = 0
                    e0 = r * f
                    for q in range(f):
                        e = wo + e0 + q
                        acc += _rmul(np.int64(abuf[slot, la + src[e]]) * w[e], half, frac, lo, hi)
                    s = _clip(acc + b[bo + r], lo, hi)
                    idx = (s >> tshift) + toff
                    a = sig[idx]
                    abuf[slot, lr + r] = a
                    dabuf[slot, lr + r] = dsig[idx]
                    if j == J - 1:
                        if keep:
                            outs[n, r] = a
                        if r < classes and (r == 0 or s > best_s):
                            best = r
                            best_s = s
                        y = one if r == labels[n] else 0
                        dbuf[slot, lr + r] = _clip(np.int64(a) - y, lo, hi)
                if j == J - 1:
                    preds[n] = best
            tu = t - U[j]
            if tu >= 0 and tu % S == 0 and tu // S < N:
                n = tu // S
                slot = n % K
                k = ks[n]
                if k != NO_UPDATE:
                    if j > 0:
                        for m in range(p):
                            dacc[m] = 0
                        for r in range(nr):
                            d = np.int64(dbuf[slot, lr + r])
                            e0 = r * f
                            for q in range(f):
                                e = wo + e0 + q
                                dacc[src[e]] += _rmul(w[e] * d, half, frac, lo, hi)
                        for m in range(p):
                            acc = _clip(dacc[m], lo, hi)
                            dbuf[slot, la + m] = _rmul(np.int64(dabuf[slot, la + m]) * acc,
                                                       half, frac, lo, hi)
                    kh = (1 << (k - 1)) if k > 0 else 0
                    for r in range(nr):
                        db = (-np.int64(dbuf[slot, lr + r]) + kh) >> k
                        b[bo + r] = _clip(b[bo + r] + db, lo, hi)
                        e0 = r * f
                        for q in range(f):
                            e = wo + e0 + q
                            dw = _rmul(db * abuf[slot, la + src[e]], half, frac, lo, hi)
                            w[e] = _clip(w[e] + dw, lo, hi)


def run_fixed(model, x, labels, ks, schedule, progress, keep_outputs):
    """Run the samples through ``model`` (a ``GoldenModel``, whose parameters
    are updated in place); returns ``(predictions, outputs or None, junction
    cycles)`` for the model's ``RunResult``."""
    cfg = model.cfg
    fmt = cfg.fmt
    table = cfg.activation_table()
    N = len(x)
    J = cfg.junctions
    nl = np.array(cfg.layers, dtype=np.int64)
    loff = np.concatenate([[0], np.cumsum(nl)]).astype(np.int64)
    woff = np.concatenate([[0], np.cumsum(cfg.edges)]).astype(np.int64)
    boff = np.concatenate([[0], np.cumsum(cfg.layers[1:])]).astype(np.int64)
    w = np.concatenate(model.w).astype(np.int32)
    b = np.concatenate(model.b).astype(np.int32)
    src = np.concatenate([pat.src for pat in cfg.patterns()]).astype(np.int64)
    fi = np.array(cfg.fanin, dtype=np.int64)
    F = np.array(schedule.F, dtype=np.int64)
    U = np.array(schedule.U, dtype=np.int64)
    S = schedule.spacing
    K = schedule.U[0] // S + 2
    total_n = int(loff[-1])
    abuf = np.zeros((K, total_n), dtype=np.int32)
    dabuf = np.zeros((K, total_n), dtype=np.int32)
    dbuf = np.zeros((K, total_n), dtype=np.int32)
    dacc = np.zeros(max(cfg.layers), dtype=np.int64)
    preds = np.zeros(N, dtype=np.int64)
    outs = np.zeros((N if keep_outputs else 1, cfg.layers[-1]), dtype=np.int32)
    pshl = max(0, fmt.frac_bits - 8)
    pshr = max(0, 8 - fmt.frac_bits)
    x = np.ascontiguousarray(x, dtype=np.uint8)
    ks = np.ascontiguousarray(ks, dtype=np.int64)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    total = schedule.total_cycles(N)
    for t0 in range(0, total, _CHUNK):
        t1 = min(total, t0 + _CHUNK)
        _run_cycles(t0, t1, N, S, F, U, x, labels, ks, pshl, pshr, fmt.one, fmt.min, fmt.max,
                    fmt.frac_bits, table.sigma, table.dsigma, table.shift,
                    1 << (table.table_bits - 1), nl, loff, w, woff, b, boff, src, fi,
                    cfg.classes, abuf, dabuf, dbuf, K, dacc, preds, outs, keep_outputs)
        if progress is not None:
            done = max(0, min(N, (t1 - schedule.U[0] - 1) // S + 1))
            progress(done)
    for j in range(J):
        model.w[j][:] = w[woff[j]:woff[j + 1]]
        model.b[j][:] = b[boff[j]:boff[j + 1]]
    model.samples_run += N
    return preds, outs if keep_outputs else None, total
