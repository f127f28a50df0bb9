"""Crash-safe output: every file the tools write goes through here.

Two guarantees (docs/reliability.md):

* **One file** (:func:`write_bytes`, :func:`write_text`, :func:`write_json`,
  :func:`save_npz`) is written to a temporary name in its own folder (unique per
  process and call), flushed to disk, and renamed over the target with
  ``os.replace``.  A failure at any point leaves the previous file as it was
  and removes the temporary.
* **A result of several files** (:func:`publish`) is written into a private
  staging folder beside the destination, which gets a manifest (every file
  with its SHA-256) last, and only then takes the destination's place in one
  atomic step (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames).
  A reader therefore sees the complete old result or the complete new one,
  never a mix, and a failure never destroys the previous result.  Files of the
  previous run that the new one does not write (a stale ``init/*.hex``, an
  ``accuracy.png`` of a run with ``--plot``) go away with it; entries the tool
  did not write itself (a user's notes, another command's subfolder) are
  carried over into the new folder untouched.

:func:`check_dir` and :func:`check_file` test an output location before the
long work that will fill it starts.  :func:`verify` checks a folder against
its manifest (the build caches use it to find a damaged entry).

This module imports nothing of the package but :mod:`.errors`.
"""

import contextlib
import ctypes
import errno
import hashlib
import io
import json
import os
import shutil
import uuid
from pathlib import Path

from .errors import OutputError

__all__ = ["MANIFEST", "write_bytes", "write_text", "write_json", "save_npz", "check_dir",
           "check_file", "publish", "file_digest", "write_manifest", "read_manifest",
           "verify", "remove_tree"]

#: Name of the manifest a published folder carries (written last).
MANIFEST = ".sparse-edge-manifest.json"


def _token():
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _describe(exc):
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


# -- one file ---------------------------------------------------------------------
def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    Raises :class:`~sparse_edge.gen.errors.OutputError` naming the file when it
    cannot be written; the previous file, if any, is then unchanged."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    tmp = path.with_name(f".{path.name}.tmp-{_token()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"cannot write {path}: {_describe(e)}") from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_text(path, text):
    """:func:`write_bytes` of UTF-8 text."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    """:func:`write_bytes` of ``obj`` as indented JSON with a final newline."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def save_npz(path, **arrays):
    """``numpy.savez`` of ``arrays``, atomically (built in memory, then
    :func:`write_bytes`)."""
    import numpy as np     # deferred: only this writer needs numpy
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return write_bytes(path, buf.getvalue())


# -- checks before long work ------------------------------------------------------
def _blocking_file(path):
    """The nearest existing ancestor of ``path`` if it is not a folder."""
    for parent in Path(path).parents:
        if parent.exists():
            return parent if not parent.is_dir() else None
    return None


def _probe(folder):
    probe = folder / f".sparse-edge-probe-{_token()}"
    try:
        probe.write_bytes(b"")
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def check_dir(path, what="output folder"):
    """Make sure ``path`` is, or can be created as, a folder we can write.

    Creates missing parents (not ``path`` itself, so a run that fails early
    leaves nothing behind).  Returns the path; raises
    :class:`~sparse_edge.gen.errors.OutputError` naming it otherwise."""
    path = Path(path)
    if str(path) == "":
        raise OutputError(f"the {what} is an empty path")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} exists and is not a folder; give a folder path")
    probe_in = path if path.is_dir() else path.parent
    blocker = _blocking_file(path)
    if blocker is not None:
        raise OutputError(f"cannot write the {what} {path}: {blocker} is a file, not a folder")
    try:
        probe_in.mkdir(parents=True, exist_ok=True)
        _probe(probe_in)
        if path.is_dir() and path.resolve() != Path.cwd().resolve():
            _probe(path.resolve().parent)     # publish() stages beside the folder
    except OSError as e:
        raise OutputError(f"cannot write the {what} {path}: {_describe(e)}") from e
    return path


def check_file(path, what="output file"):
    """Make sure the file ``path`` can be written (its folder exists or can be
    created, and is writable; the path is not a folder)."""
    path = Path(path)
    if str(path) == "" or path.name == "":
        raise OutputError(f"the {what} is an empty path")
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise OutputError(f"cannot write the {what} {path}: {blocker} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _probe(path.parent)
    except OSError as e:
        raise OutputError(f"cannot write the {what} {path}: {_describe(e)}") from e
    return path


# -- manifests --------------------------------------------------------------------
def file_digest(path):
    """SHA-256 (hex) of a file's contents."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root):
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return out


def write_manifest(root, kind, files=None, extra=None, name=MANIFEST):
    """Write the manifest ``root/name``: ``kind``, every file under ``root``
    (or the given relative paths) with its SHA-256, and ``extra`` fields.
    Written atomically (and last: it is what marks a folder complete);
    returns the manifest dict.  A folder may carry several manifests under
    different names (e.g. one per build step of a cache entry)."""
    root = Path(root)
    files = _files(root) if files is None else sorted(files)
    manifest = {"kind": kind, "files": {f: file_digest(root / f) for f in files}}
    if extra:
        manifest.update(extra)
    write_json(root / name, manifest)
    return manifest


def read_manifest(root, name=MANIFEST):
    """The manifest ``root/name``, or ``None`` when there is none or it is not
    readable JSON of the right form."""
    try:
        m = json.loads((Path(root) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or not isinstance(m.get("files"), dict):
        return None
    return m


def verify(root, kind=None, name=MANIFEST):
    """Problems of ``root`` against its manifest ``name`` (empty list:
    intact): a missing or unreadable manifest, another kind, a missing file,
    a file whose contents changed."""
    root = Path(root)
    m = read_manifest(root, name)
    if m is None:
        return [f"{root}: no readable manifest ({name})"]
    problems = []
    if kind is not None and m.get("kind") != kind:
        problems.append(f"{root}: manifest is for {m.get('kind')!r}, not {kind!r}")
    for rel, digest in m["files"].items():
        p = root / rel
        try:
            if file_digest(p) != digest:
                problems.append(f"{p}: contents differ from the manifest")
        except OSError:
            problems.append(f"{p}: missing")
    return problems


def remove_tree(path):
    """Remove a folder (or file) if it exists, ignoring what cannot be removed."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


# -- a result of several files ------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a, b):
    """Swap two paths atomically; False when the platform cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _owned_names(dest, owned):
    """Top-level names in ``dest`` that belong to the result being replaced."""
    names = {MANIFEST} | set(owned)
    m = read_manifest(dest)
    if m is not None:
        names |= {rel.split("/")[0] for rel in m["files"]}
    return names


def _inside_cwd(dest):
    cwd = Path.cwd().resolve()
    return cwd == dest or dest in cwd.parents


@contextlib.contextmanager
def publish(dest, kind, owned=()):
    """Write a result of several files into ``dest`` as a whole.

    ``with publish(dest, "train", owned={"result.json", ...}) as tmp:`` write
    every file into the folder ``tmp``; when the block ends normally the
    manifest is added and ``tmp`` takes the place of ``dest``.  ``owned``
    names the top-level entries this kind of result may contain (besides
    those in the previous manifest): these are replaced, everything else in
    ``dest`` is carried over.  If the block raises, ``tmp`` is removed and
    ``dest`` is untouched.  When ``dest`` is the working folder (or holds it),
    which cannot be swapped, each file is instead written in place atomically
    and the manifest last.
    """
    dest = Path(dest)
    check_dir(dest)
    dest = dest.resolve()
    if _inside_cwd(dest):
        with _publish_in_place(dest, kind, owned) as tmp:
            yield tmp
        return
    stage = dest.parent / f".{dest.name}.tmp-{_token()}"
    try:
        stage.mkdir()
    except OSError as e:
        raise OutputError(f"cannot write the output folder {dest}: {_describe(e)}") from e
    try:
        yield stage
        write_manifest(stage, kind)
        _swap_in(stage, dest, owned)
    except OSError as e:
        remove_tree(stage)
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"cannot write the output folder {dest}: {_describe(e)}; "
                          "the previous contents are unchanged") from e
    except BaseException:
        remove_tree(stage)
        raise


def _swap_in(stage, dest, owned):
    """Move ``dest``'s foreign entries into ``stage``, then swap the two."""
    if not dest.exists():
        os.rename(stage, dest)
        return
    ours = _owned_names(dest, owned)
    new = {p.name for p in stage.iterdir()}
    moved = []
    try:
        for entry in sorted(dest.iterdir(), key=lambda p: p.name):
            if entry.name in ours or entry.name in new or entry.name.startswith(
                    f".{dest.name}.tmp-"):
                continue
            os.rename(entry, stage / entry.name)
            moved.append(entry.name)
    except OSError:
        for name in reversed(moved):          # put the user's entries back
            with contextlib.suppress(OSError):
                os.rename(stage / name, dest / name)
        raise
    if _exchange(stage, dest):
        remove_tree(stage)                   # now the previous result
        return
    old = dest.parent / f".{dest.name}.old-{_token()}"
    os.rename(dest, old)
    try:
        os.rename(stage, dest)
    except OSError:
        os.rename(old, dest)
        for name in moved:
            with contextlib.suppress(OSError):
                os.rename(stage / name, dest / name)
        raise
    remove_tree(old)


@contextlib.contextmanager
def _publish_in_place(dest, kind, owned):
    """Fallback of :func:`publish` for the working folder: stage, then rename
    file by file (each atomic), drop the previous result's stale files and
    write the manifest last."""
    dest.mkdir(parents=True, exist_ok=True)
    stage = dest / f".sparse-edge-stage-{_token()}"
    stage.mkdir()
    try:
        yield stage
        files = _files(stage)
        old = read_manifest(dest)
        stale = set(old["files"]) - set(files) if old else set()
        with contextlib.suppress(OSError):
            (dest / MANIFEST).unlink()        # the old manifest no longer describes dest
        for rel in files:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, dest / rel)
        for rel in stale:
            with contextlib.suppress(OSError):
                (dest / rel).unlink()
        write_manifest(dest, kind, files)
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"cannot write into {dest}: {_describe(e)}") from e
    finally:
        remove_tree(stage)
