"""Golden model: trains and evaluates a configured network sample by sample,
bit-exact with the hardware (``fixed``) or in floating point (``float``),
under a junction-pipelined schedule or sequentially.

Schedule semantics (SPEC section 5).  Sample ``n`` is loaded into the input
memory in junction cycle ``n * spacing``; junction ``i`` (1-based) does FF(n)
in cycle ``n*spacing + F[i]`` and BP(n) (if its left layer is hidden) and
UP(n) in cycle ``n*spacing + U[i]``.  In a cycle, FF and BP read the weights
and biases as they were at the start of the cycle; UP writes them at its end.
``spacing = 1`` is the pipelined hardware; ``sequential`` uses the reference
offsets with ``spacing = U[1] + 1`` so no sample sees a stale weight.

A run streams a list of samples and drains the pipeline at the end (the
hardware is drained the same way, by no-update samples that only flow through).

Exported npz keys (:meth:`GoldenModel.save`): ``w1, b1, ... wJ, bJ`` (final
codes int32, or float64 in float mode), ``init_w1, init_b1, ...`` (the
parameters the model started from), ``predictions`` (int64 per sample),
``labels``, ``eta_exp`` (per sample, -1 = no update), ``schedule_F``,
``schedule_U``, ``schedule_spacing``, ``config`` (resolved TOML text), ``mode``.
"""

from dataclasses import dataclass

import numpy as np

from ..gen import output
from ..gen.config import NO_UPDATE, initial_float_parameters, initial_parameters
from ..gen.schedule import Schedule

__all__ = ["Schedule", "GoldenModel", "RunResult"]


@dataclass
class RunResult:
    predictions: np.ndarray          # predicted class per sample
    outputs: np.ndarray | None = None  # output activations per sample (if asked)
    cycles: int = 0                  # junction cycles the run took (drain included)


class _FixedOps:
    """Bit-exact junction operations on int32 code arrays (SPEC section 4)."""

    def __init__(self, cfg, pattern):
        fmt = cfg.fmt
        self.lo, self.hi = fmt.min, fmt.max
        self.frac = fmt.frac_bits
        self.half = 1 << (fmt.frac_bits - 1)
        self.one = fmt.one
        table = cfg.activation_table()
        self.sig, self.dsig = table.sigma, table.dsigma
        self.tshift, self.toff = table.shift, 1 << (table.table_bits - 1)
        self.src = pattern.src.astype(np.intp)
        self.n, self.fi, self.p, self.fo = pattern.n, pattern.fi, pattern.p, pattern.fo
        self.by_left = np.argsort(self.src, kind="stable").reshape(self.p, self.fo)

    def _rmul(self, x):
        x += self.half
        x >>= self.frac
        return np.clip(x, self.lo, self.hi, out=x)

    def ff(self, w, b, a_left):
        m = self._rmul(a_left[self.src] * w)
        s = m.reshape(self.n, self.fi).sum(axis=1, dtype=np.int32)
        s += b
        np.clip(s, self.lo, self.hi, out=s)
        idx = (s >> self.tshift) + self.toff
        return s, self.sig[idx], self.dsig[idx]

    def out_delta(self, a, target):
        return np.clip(a - target, self.lo, self.hi)

    def target(self, label, n_out):
        y = np.zeros(n_out, dtype=np.int32)
        y[label] = self.one
        return y

    def bp(self, w, d_right, da_left):
        m = self._rmul(w * np.repeat(d_right, self.fi))
        acc = m[self.by_left].sum(axis=1, dtype=np.int32)
        np.clip(acc, self.lo, self.hi, out=acc)
        return self._rmul(da_left * acc)

    def up(self, w, b, d_right, a_left, k):
        db = -d_right
        if k:
            db += 1 << (k - 1)
            db >>= k
        b += db
        np.clip(b, self.lo, self.hi, out=b)
        dw = self._rmul(np.repeat(db, self.fi) * a_left[self.src])
        w += dw
        np.clip(w, self.lo, self.hi, out=w)

    @staticmethod
    def prepare_input(cfg, x):
        return cfg.fmt.pixel(x).astype(np.int32)


class _FloatOps:
    """The same network in float64 (ideal sigmoid, exact products)."""

    def __init__(self, cfg, pattern):
        self.src = pattern.src.astype(np.intp)
        self.n, self.fi, self.p, self.fo = pattern.n, pattern.fi, pattern.p, pattern.fo
        self.by_left = np.argsort(self.src, kind="stable").reshape(self.p, self.fo)

    def ff(self, w, b, a_left):
        s = (a_left[self.src] * w).reshape(self.n, self.fi).sum(axis=1) + b
        a = 1.0 / (1.0 + np.exp(-s))
        return s, a, a * (1.0 - a)

    def out_delta(self, a, target):
        return a - target

    def target(self, label, n_out):
        y = np.zeros(n_out)
        y[label] = 1.0
        return y

    def bp(self, w, d_right, da_left):
        return da_left * (w * np.repeat(d_right, self.fi))[self.by_left].sum(axis=1)

    def up(self, w, b, d_right, a_left, k):
        db = -d_right * 2.0 ** -k
        b += db
        w += np.repeat(db, self.fi) * a_left[self.src]

    @staticmethod
    def prepare_input(cfg, x):
        return np.asarray(x, dtype=np.float64) / 256.0


@dataclass
class _Sample:
    a: list
    da: list
    d: list
    label: int
    k: int


class GoldenModel:
    """Bit-exact (``mode="fixed"``) or float64 (``mode="float"``) model of the
    configured network; holds the current weights and biases.

    Parameters
    ----------
    cfg : NetworkConfig
    mode : "fixed" or "float"
    params : list of (w, b), optional
        Initial parameters; default :func:`~sparse_edge.gen.config.initial_parameters`
        (fixed) or the unquantized draw behind it (float).
    kernel : "auto", "numba" or "numpy"
        Fixed mode only: the JIT kernel (default when numba imports) or the
        plain numpy one; both are bit-identical (tested).
    """

    def __init__(self, cfg, mode="fixed", params=None, kernel="auto"):
        if mode not in ("fixed", "float"):
            raise ValueError(f"mode must be 'fixed' or 'float', not {mode!r}")
        self.cfg, self.mode = cfg, mode
        ops = _FixedOps if mode == "fixed" else _FloatOps
        self.ops = [ops(cfg, pat) for pat in cfg.patterns()]
        if params is None:
            params = initial_parameters(cfg) if mode == "fixed" else initial_float_parameters(cfg)
        dtype = np.int32 if mode == "fixed" else np.float64
        self.w = [np.array(w, dtype=dtype) for w, _ in params]
        self.b = [np.array(b, dtype=dtype) for _, b in params]
        self.initial = [(w.copy(), b.copy()) for w, b in zip(self.w, self.b)]
        if kernel not in ("auto", "numba", "numpy"):
            raise ValueError(f"kernel must be auto, numba or numpy, not {kernel!r}")
        self.kernel = kernel
        self.samples_run = 0

    # -- parameters ------------------------------------------------------------
    def parameters(self):
        return [(w.copy(), b.copy()) for w, b in zip(self.w, self.b)]

    def parameter_arrays(self):
        out = {}
        for j, (w, b) in enumerate(zip(self.w, self.b), start=1):
            out[f"w{j}"], out[f"b{j}"] = w.copy(), b.copy()
        return out

    # -- running ---------------------------------------------------------------
    def run(self, x, labels, eta_exp, schedule, progress=None, keep_outputs=False):
        """Stream samples through the network and drain it.

        Parameters
        ----------
        x : (N, layers[0]) uint8
            Padded input pixels.
        labels : (N,) int
        eta_exp : int or (N,) int
            Learning-rate exponent ``k`` per sample (eta = 2**-k), or
            ``NO_UPDATE`` (-1) for an evaluation-only sample.
        schedule : Schedule
        progress : callable(n_done), optional
            Called with the number of samples finished so far, now and then.
        """
        cfg = self.cfg
        x = np.asarray(x)
        N = len(x)
        if x.ndim != 2 or x.shape[1] != cfg.layers[0]:
            raise ValueError(f"x must be (N, {cfg.layers[0]}) padded inputs, not {x.shape}")
        labels = np.asarray(labels, dtype=np.int64)
        ks = np.broadcast_to(np.asarray(eta_exp, dtype=np.int64), (N,))
        if len(labels) != N:
            raise ValueError("labels and x differ in length")
        if N and (labels.min() < 0 or labels.max() >= cfg.classes):
            raise ValueError(f"labels must be in 0..{cfg.classes - 1}")
        if schedule.junctions != cfg.junctions:
            raise ValueError(f"schedule has {schedule.junctions} junctions, network "
                             f"{cfg.junctions}")
        if self.mode == "fixed" and self._use_numba():
            from ._golden_jit import run_fixed  # deferred: numba is heavy (and optional)
            return RunResult(*run_fixed(self, x, labels, ks, schedule, progress, keep_outputs))
        return self._run_numpy(x, labels, ks, schedule, progress, keep_outputs)

    def _use_numba(self):
        if self.kernel == "numpy":
            return False
        try:
            import numba  # noqa: F401  (is numba installed?)
        except ImportError:
            if self.kernel == "numba":
                raise RuntimeError("kernel='numba' needs the numba package: pip install numba")
            return False
        return True

    def _run_numpy(self, x, labels, ks, schedule, progress, keep_outputs):
        cfg, ops = self.cfg, self.ops
        J, N = cfg.junctions, len(x)
        F, U, S = schedule.F, schedule.U, schedule.spacing
        preds = np.zeros(N, dtype=np.int64)
        outs = np.zeros((N, cfg.layers[-1])) if keep_outputs else None
        live = {}
        total = schedule.total_cycles(N)
        for t in range(total):
            if t % S == 0 and t // S < N:
                n = t // S
                a = [None] * cfg.L
                a[0] = ops[0].prepare_input(cfg, x[n])
                live[n] = _Sample(a, [None] * cfg.L, [None] * cfg.L, int(labels[n]), int(ks[n]))
            for j in range(J):
                op, w, b = ops[j], self.w[j], self.b[j]
                tf = t - F[j]
                if tf >= 0 and tf % S == 0 and tf // S < N:
                    n = tf // S
                    rec = live[n]
                    s, a, da = op.ff(w, b, rec.a[j])
                    rec.a[j + 1], rec.da[j + 1] = a, da
                    if j == J - 1:
                        preds[n] = int(np.argmax(s[:cfg.classes]))
                        if keep_outputs:
                            outs[n] = a
                        rec.d[J] = op.out_delta(a, op.target(rec.label, cfg.layers[-1]))
                tu = t - U[j]
                if tu >= 0 and tu % S == 0 and tu // S < N:
                    n = tu // S
                    rec = live[n]
                    if rec.k != NO_UPDATE:
                        if j > 0:
                            rec.d[j] = op.bp(w, rec.d[j + 1], rec.da[j])
                        op.up(w, b, rec.d[j + 1], rec.a[j], rec.k)
                    if j == 0:
                        del live[n]
                        if progress is not None and (n & 1023) == 1023:
                            progress(n + 1)
        if progress is not None:
            progress(N)
        self.samples_run += N
        return RunResult(preds, outs, total)

    # -- export ------------------------------------------------------------------
    def save(self, path, result=None, labels=None, eta_exp=None, schedule=None):
        """Write parameters (and optionally a run's predictions) to an npz
        with the keys documented in the module docstring."""
        arrays = self.parameter_arrays()
        for j, (w, b) in enumerate(self.initial, start=1):
            arrays[f"init_w{j}"], arrays[f"init_b{j}"] = w, b
        arrays["config"] = np.array(self.cfg.to_toml())
        arrays["mode"] = np.array(self.mode)
        if result is not None:
            arrays["predictions"] = result.predictions
        if labels is not None:
            arrays["labels"] = np.asarray(labels)
        if eta_exp is not None:
            arrays["eta_exp"] = np.asarray(eta_exp)
        if schedule is not None:
            arrays["schedule_F"] = np.array(schedule.F)
            arrays["schedule_U"] = np.array(schedule.U)
            arrays["schedule_spacing"] = np.array(schedule.spacing)
        output.save_npz(path, **arrays)
