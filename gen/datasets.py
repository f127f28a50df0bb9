"""Datasets for training and evaluation: loading, checking, padding.

A dataset is four arrays of flattened 8-bit images and integer labels
(:class:`Dataset`).  :func:`load_dataset` accepts

* ``"digits"`` -- scikit-learn's bundled 8x8 digits (offline, 64 features),
  pixels 0..16 scaled to ``min(16 * v, 255)``; a fixed split (seed 0) of 1437
  training and 360 test images;
* ``"mnist"`` -- the MNIST file found by :func:`default_mnist_path`;
* a path to an ``.npz`` with arrays ``x_train``, ``y_train``, ``x_test``,
  ``y_test`` (images ``uint8`` of shape ``(N, H, W)`` or ``(N, F)``, labels
  non-negative integers of shape ``(N,)``);
* a path to a directory with the four standard IDX files of MNIST
  (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each plain or
  gzip-compressed (``.gz``); the dotted names ``train-images.idx3-ubyte``
  etc. are accepted too.

Every bad input raises :class:`DatasetError`, whose message names the file
and what is wrong with it.  :func:`check_compatible` checks a dataset against
a :class:`~sparse_edge.gen.config.NetworkConfig` and :func:`padded_inputs`
zero-pads images to the input layer (it never truncates).
"""

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SparseEdgeError

__all__ = ["DatasetError", "Dataset", "load_dataset", "check_compatible", "padded_inputs",
           "default_mnist_path", "MNIST_ENV", "DIGITS_TRAIN"]

#: Environment variable overriding the location of the MNIST file.
MNIST_ENV = "SPARSE_EDGE_MNIST"
#: Training images of the fixed digits split (the remaining 360 are the test set).
DIGITS_TRAIN = 1437
#: Seed of the fixed digits split.
DIGITS_SEED = 0

#: Largest label accepted (far above any output layer a config allows).
MAX_LABEL = (1 << 31) - 1
#: Largest IDX payload read (bytes): 8x the MNIST training images.
MAX_IDX_BYTES = 1 << 29

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_IDX_UBYTE = 0x08
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_ACCEPTED = (
    "accepted datasets: 'digits' (scikit-learn's bundled 8x8 digits, offline), "
    "'mnist' (the file ../shared/data/mnist.npz beside the repository, or the path in "
    f"${MNIST_ENV}), a path to an .npz file with arrays x_train, y_train, x_test, y_test, "
    "or a path to a directory holding the IDX files train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
    "(each plain or .gz)")


class DatasetError(SparseEdgeError, ValueError):
    """A dataset that cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Flattened 8-bit images and integer labels of a training and a test split.

    ``x_*`` are ``uint8`` arrays of shape ``(N, F)`` (row-major flattened
    images of shape :attr:`image_shape`), ``y_*`` ``int64`` arrays of shape
    ``(N,)`` with non-negative labels.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple

    def __post_init__(self):
        where = f"dataset {self.name!r}"
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2:
                raise DatasetError(f"{where}: x_{split} must be a uint8 array of shape (N, F), "
                                   f"not {_describe(x)}")
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1:
                raise DatasetError(f"{where}: y_{split} must be an int64 array of shape (N,), "
                                   f"not {_describe(y)}")
            if len(x) != len(y):
                raise DatasetError(f"{where}: x_{split} holds {len(x)} images but y_{split} "
                                   f"holds {len(y)} labels")
            if y.size and y.min() < 0:
                raise DatasetError(f"{where}: y_{split} has negative labels (min {y.min()})")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise DatasetError(f"{where}: training images have {self.x_train.shape[1]} features "
                               f"but test images {self.x_test.shape[1]}")
        if len(self.x_train) == 0:
            raise DatasetError(f"{where}: the training split is empty")
        shape = tuple(self.image_shape) if isinstance(self.image_shape, (tuple, list)) else None
        if (not shape or any(isinstance(d, bool) or not isinstance(d, (int, np.integer))
                             or d < 1 for d in shape)
                or int(np.prod(shape)) != self.x_train.shape[1]):
            raise DatasetError(f"{where}: image_shape {self.image_shape!r} does not match "
                               f"{self.x_train.shape[1]} features per image")
        object.__setattr__(self, "image_shape", tuple(int(d) for d in shape))

    @property
    def features(self):
        """Input features per image (``F``)."""
        return int(self.x_train.shape[1])

    @property
    def classes(self):
        """Largest label over both splits, plus one."""
        return int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1

    def __repr__(self):
        return (f"Dataset({self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
                f"image_shape={self.image_shape}, classes={self.classes})")


def _describe(a):
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__


# -- locations --------------------------------------------------------------
def _repo_mnist_path():
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"


def default_mnist_path():
    """Where the MNIST dataset lives: ``$SPARSE_EDGE_MNIST`` if set, else
    ``../shared/data/mnist.npz`` beside the repository; ``None`` if that path
    does not exist."""
    env = os.environ.get(MNIST_ENV)
    path = Path(env).expanduser() if env else _repo_mnist_path()
    return path if path.exists() else None


# -- loading ----------------------------------------------------------------
def load_dataset(spec):
    """Load a dataset: ``"digits"``, ``"mnist"``, an ``.npz`` path or a
    directory of IDX files (see the module docstring)."""
    if isinstance(spec, str) and spec.strip().lower() == "digits":
        return _load_digits()
    if isinstance(spec, str) and spec.strip().lower() == "mnist":
        path = default_mnist_path()
        if path is None:
            env = os.environ.get(MNIST_ENV)
            where = (f"${MNIST_ENV} is set to {env!r}, which does not exist" if env else
                     f"{_repo_mnist_path()} does not exist and ${MNIST_ENV} is not set")
            raise DatasetError(
                f"MNIST not found: {where}. Put mnist.npz (arrays x_train, y_train, x_test, "
                f"y_test) at {_repo_mnist_path()}, or set {MNIST_ENV} to an .npz file or a "
                f"directory of the MNIST IDX files, or use --data digits (offline)")
        ds = load_dataset(path)
        return Dataset("mnist", ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.image_shape)
    if not isinstance(spec, (str, os.PathLike)) or not str(spec):
        raise DatasetError(f"unknown dataset {spec!r}; {_ACCEPTED}")
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_idx_dir(path)
    if path.is_file():
        if path.suffix.lower() == ".npz" or _is_zip(path):
            return _load_npz(path)
        raise DatasetError(f"{path}: not an .npz file (nor a directory of IDX files); "
                           f"{_ACCEPTED}")
    raise DatasetError(f"unknown dataset {str(spec)!r}: no such file or directory; {_ACCEPTED}")


def _is_zip(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError("the 'digits' dataset needs scikit-learn: pip install scikit-learn "
                           "(or use an .npz / IDX dataset)") from None
    d = load_digits()
    x = np.minimum(np.asarray(d.data).astype(np.int64) * 16, 255).astype(np.uint8)
    y = np.asarray(d.target).astype(np.int64)
    idx = np.arange(len(x))
    np.random.default_rng(DIGITS_SEED).shuffle(idx)
    tr, te = idx[:DIGITS_TRAIN], idx[DIGITS_TRAIN:]
    return Dataset("digits", x[tr], y[tr], x[te], y[te], tuple(d.images.shape[1:]))


def _image_shape(features):
    side = int(round(features ** 0.5))
    return (side, side) if side * side == features else (features,)


def _check_pixels(a, what):
    """Refuse non-integer pixels or values outside 0..255."""
    if not np.issubdtype(a.dtype, np.integer):
        raise DatasetError(f"{what} has dtype {a.dtype}; images must be integer pixels "
                           f"0..255 (store them as uint8)")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise DatasetError(f"{what} has values outside 0..255 (min {a.min()}, max "
                           f"{a.max()}); images must be 8-bit pixels")


def _checked_images(a, where, key):
    if a.ndim not in (2, 3):
        raise DatasetError(f"{where}: {key} must have shape (N, H, W) or (N, F), not {a.shape} "
                           f"({a.ndim} dimensions)")
    _check_pixels(a, f"{where}: {key}")
    if any(d == 0 for d in a.shape[1:]):
        raise DatasetError(f"{where}: {key} has empty images (shape {a.shape})")
    return a.reshape(len(a), math.prod(a.shape[1:])).astype(np.uint8), tuple(a.shape[1:])


def _checked_labels(a, where, key):
    if a.ndim != 1:
        raise DatasetError(f"{where}: {key} must have shape (N,), not {a.shape} "
                           f"({a.ndim} dimensions)")
    if not np.issubdtype(a.dtype, np.integer):
        raise DatasetError(f"{where}: {key} has dtype {a.dtype}; labels must be non-negative "
                           f"integers")
    if a.size:
        lo, hi = int(a.min()), int(a.max())        # Python ints: exact for every dtype
        if lo < 0:
            raise DatasetError(f"{where}: {key} has negative labels (min {lo}); labels must "
                               f"be 0..classes-1")
        if hi > MAX_LABEL:
            raise DatasetError(f"{where}: {key} has a label of {hi}; labels must be "
                               f"0..classes-1 (at most {MAX_LABEL})")
    return a.astype(np.int64)


def _assemble(name, where, parts):
    """``parts``: {split: (x_flat, image_shape, x_key, y, y_key)} -> Dataset."""
    for split, (x, shape, xk, y, yk) in parts.items():
        if len(x) != len(y):
            raise DatasetError(f"{where}: {xk} holds {len(x)} images but {yk} holds {len(y)} "
                               f"labels")
    (xtr, str_, xktr, ytr, _), (xte, ste, xkte, yte, _) = parts["train"], parts["test"]
    if str_ != ste:
        raise DatasetError(f"{where}: {xktr} has images of shape {str_} but {xkte} of shape "
                           f"{ste}")
    if len(xtr) == 0:
        raise DatasetError(f"{where}: {xktr} holds no images")
    shape = str_ if len(str_) > 1 else _image_shape(str_[0])
    return Dataset(name, xtr, ytr, xte, yte, shape)


def _load_npz(path):
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a dataset problem
        raise DatasetError(f"{path}: not a readable .npz file ({e})") from None
    if not hasattr(f, "files"):
        raise DatasetError(f"{path}: holds a single array, not an .npz archive with arrays "
                           f"{', '.join(_NPZ_KEYS)}")
    arrays = {}
    with f:
        for key in _NPZ_KEYS:
            if key not in f.files:
                raise DatasetError(f"{path}: missing array {key!r} (an .npz dataset needs "
                                   f"{', '.join(_NPZ_KEYS)}; found {', '.join(f.files) or 'none'})")
            try:
                arrays[key] = np.asarray(f[key])
            except Exception as e:  # noqa: BLE001
                raise DatasetError(f"{path}: array {key!r} is unreadable ({e})") from None
    parts = {}
    for split in ("train", "test"):
        xk, yk = f"x_{split}", f"y_{split}"
        x, shape = _checked_images(arrays[xk], path, xk)
        y = _checked_labels(arrays[yk], path, yk)
        parts[split] = (x, shape, xk, y, yk)
    return _assemble(path.stem, path, parts)


def _find_idx(directory, split, kind, idx):
    names = [f"{split}-{kind}-{idx}-ubyte", f"{split}-{kind}.{idx}-ubyte"]
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DatasetError(f"{directory}: no IDX file {names[0]} (looked for {', '.join(names)}, "
                       f"plain or .gz); a dataset directory needs train-images-idx3-ubyte, "
                       f"train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                       f"t10k-labels-idx1-ubyte")


def _idx_stream(path):
    """An open binary stream of an IDX file, decompressing ``.gz``."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e.strerror or e})") from None
    return gzip.GzipFile(fileobj=f, mode="rb") if path.suffix.lower() == ".gz" else f


def _read_exact(stream, n, path):
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: not a valid gzip stream ({e}); re-download the file, "
                           f"or store it uncompressed without the .gz suffix") from None


def _read_idx(path, ndim):
    """Parse an IDX file of unsigned bytes with ``ndim`` dimensions.

    The header is checked before the payload is read: the payload size it
    declares must be at most ``MAX_IDX_BYTES``, and the file must hold
    exactly that many bytes (truncated or trailing data is refused)."""
    kind = "images" if ndim == 3 else "labels"
    expected = _IDX_IMAGES_MAGIC if ndim == 3 else _IDX_LABELS_MAGIC
    header = 4 + 4 * ndim
    with _idx_stream(path) as f:
        head = _read_exact(f, header, path)
        if len(head) < 4:
            raise DatasetError(f"{path}: truncated: expected at least 4 header bytes, found "
                               f"{len(head)}")
        magic = int.from_bytes(head[:4], "big")
        if magic != expected:
            if head[:2] == b"\x1f\x8b":
                hint = "; the file looks gzip-compressed: name it with a .gz suffix"
            elif magic in (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC):
                other = "images" if magic == _IDX_IMAGES_MAGIC else "labels"
                hint = f"; this is an IDX {other} file, check the file names"
            elif head[:2] == b"\0\0" and head[2] != _IDX_UBYTE:
                hint = (f"; element type 0x{head[2]:02x} is not supported (only unsigned "
                        f"bytes, 0x08)")
            else:
                hint = ""
            raise DatasetError(f"{path}: bad magic 0x{magic:08x}, expected 0x{expected:08x} "
                               f"(IDX {kind} of unsigned bytes){hint}")
        if len(head) < header:
            raise DatasetError(f"{path}: truncated: expected {header} header bytes, found "
                               f"{len(head)}")
        dims = tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
        need = math.prod(dims)                     # exact (Python ints): no overflow
        if need > MAX_IDX_BYTES:
            raise DatasetError(f"{path}: header declares IDX {kind} of dimensions {dims}, "
                               f"{need:,} bytes; at most {MAX_IDX_BYTES:,} are supported "
                               f"(the header is probably corrupt)")
        payload = _read_exact(f, need + 1, path)
        found = len(payload)
        while found > need and found <= 2 * MAX_IDX_BYTES:   # count trailing bytes, bounded
            chunk = _read_exact(f, 1 << 20, path)
            if not chunk:
                break
            found += len(chunk)
    if found < need:
        raise DatasetError(f"{path}: truncated: expected {need} bytes, found {found} (payload "
                           f"of IDX {kind} with dimensions {dims}); re-download the file")
    if found > need:
        raise DatasetError(f"{path}: trailing bytes: expected {need} bytes, found {found:,} "
                           f"(payload of IDX {kind} with dimensions {dims}, {found - need:,} "
                           f"bytes too many); the file is corrupt")
    if ndim == 3 and (dims[1] == 0 or dims[2] == 0):
        raise DatasetError(f"{path}: empty images (dimensions {dims})")
    return np.frombuffer(payload[:need], dtype=np.uint8).reshape(dims).copy()


def _load_idx_dir(directory):
    parts = {}
    for split, key in (("train", "train"), ("t10k", "test")):
        ipath = _find_idx(directory, split, "images", "idx3")
        lpath = _find_idx(directory, split, "labels", "idx1")
        images, labels = _read_idx(ipath, 3), _read_idx(lpath, 1)
        parts[key] = (images.reshape(len(images), -1), tuple(images.shape[1:]), ipath.name,
                      labels.astype(np.int64), lpath.name)
    return _assemble(directory.resolve().name or str(directory), directory, parts)


# -- use with a network -------------------------------------------------------
def check_compatible(ds, cfg):
    """Raise :class:`DatasetError` unless dataset ``ds`` fits config ``cfg``
    (features equal to ``data.inputs``, every label below ``data.classes``)."""
    if ds.features != cfg.inputs:
        layer = "" if ds.features <= cfg.layers[0] else \
            f" and layers[0] >= {ds.features} (now {cfg.layers[0]})"
        raise DatasetError(
            f"dataset {ds.name!r} has {ds.features} input features "
            f"(images {'x'.join(map(str, ds.image_shape))}) but config {cfg.name!r} expects "
            f"data.inputs = {cfg.inputs}: set data.inputs = {ds.features}{layer} in the "
            f"config, or pick a dataset with {cfg.inputs} features")
    if ds.classes > cfg.classes:
        layer = "" if ds.classes <= cfg.layers[-1] else \
            f" and layers[-1] >= {ds.classes} (now {cfg.layers[-1]})"
        raise DatasetError(
            f"dataset {ds.name!r} has labels up to {ds.classes - 1} ({ds.classes} classes) but "
            f"config {cfg.name!r} has data.classes = {cfg.classes}: set data.classes = "
            f"{ds.classes}{layer} in the config, or pick another dataset")


def padded_inputs(x, cfg):
    """Images ``x`` of shape ``(N, cfg.inputs)`` zero-padded on the right to
    ``(N, cfg.layers[0])`` (``uint8``).  Never truncates: a feature count
    other than ``cfg.inputs`` is a :class:`DatasetError`."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise DatasetError(f"padded_inputs needs images of shape (N, {cfg.inputs}), not "
                           f"{x.shape}; flatten them first")
    if x.shape[1] != cfg.inputs:
        raise DatasetError(f"images have {x.shape[1]} features but config {cfg.name!r} has "
                           f"data.inputs = {cfg.inputs}; set data.inputs = {x.shape[1]} or use "
                           f"a dataset with {cfg.inputs} features (inputs are zero-padded to "
                           f"layers[0] = {cfg.layers[0]}, never truncated)")
    if x.dtype != np.uint8:
        _check_pixels(x, "images")
    out = np.zeros((x.shape[0], cfg.layers[0]), dtype=np.uint8)
    out[:, :cfg.inputs] = x
    return out
