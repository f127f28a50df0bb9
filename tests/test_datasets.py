"""Dataset loading (digits, npz, IDX plain/gz), validation errors, padding."""

import gzip
import struct

import numpy as np
import pytest

from sparse_edge.gen.config import parse_config
from sparse_edge.gen.datasets import (
    Dataset,
    DatasetError,
    check_compatible,
    default_mnist_path,
    load_dataset,
    padded_inputs,
)

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
DOTTED_NAMES = {
    "x_train": "train-images.idx3-ubyte",
    "y_train": "train-labels.idx1-ubyte",
    "x_test": "t10k-images.idx3-ubyte",
    "y_test": "t10k-labels.idx1-ubyte",
}


def cfg_digits(**data):
    return parse_config({"layers": [64, 32, 16], "fanout": [8, 8], "cycle": 32,
                         "format": {"int_bits": 2, "frac_bits": 7},
                         "data": {"inputs": 64, "classes": 10, **data}})


def cfg_mnist():
    return parse_config({"layers": [1024, 64, 32], "fanout": [4, 16], "cycle": 32,
                         "format": {"int_bits": 2, "frac_bits": 7},
                         "data": {"inputs": 784, "classes": 10}})


def synthetic(n_train=12, n_test=5, h=4, w=3, classes=10, seed=7):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        "y_train": rng.integers(0, classes, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        "y_test": rng.integers(0, classes, n_test, dtype=np.uint8),
    }


def idx_bytes(a):
    a = np.asarray(a, dtype=np.uint8)
    magic = 0x0800 | a.ndim
    return struct.pack(">I", magic) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_idx_dir(d, arrays, gz=False, names=IDX_NAMES):
    d.mkdir(parents=True, exist_ok=True)
    for key, name in names.items():
        raw = idx_bytes(arrays[key])
        if gz:
            (d / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (d / name).write_bytes(raw)
    return d


def assert_same(a, b):
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        assert getattr(a, key).dtype == getattr(b, key).dtype
    assert a.image_shape == b.image_shape


# -- synthetic files load identically ------------------------------------------
def test_idx_plain_gz_dotted_and_npz_agree(tmp_path):
    arr = synthetic()
    plain = load_dataset(write_idx_dir(tmp_path / "plain", arr))
    gz = load_dataset(write_idx_dir(tmp_path / "gz", arr, gz=True))
    dotted = load_dataset(str(write_idx_dir(tmp_path / "dotted", arr, names=DOTTED_NAMES)))
    np.savez(tmp_path / "syn.npz", **arr)
    npz = load_dataset(tmp_path / "syn.npz")
    for ds in (gz, dotted, npz):
        assert_same(plain, ds)

    assert plain.x_train.dtype == np.uint8 and plain.y_train.dtype == np.int64
    assert plain.x_train.shape == (12, 12) and plain.x_test.shape == (5, 12)
    assert plain.y_train.shape == (12,) and plain.y_test.shape == (5,)
    assert plain.image_shape == (4, 3)
    assert plain.features == 12
    assert plain.classes == int(max(arr["y_train"].max(), arr["y_test"].max())) + 1
    np.testing.assert_array_equal(plain.x_train, arr["x_train"].reshape(12, -1))
    np.testing.assert_array_equal(plain.y_test, arr["y_test"])
    assert npz.name == "syn"


def test_npz_flat_images_and_wide_label_dtype(tmp_path):
    arr = synthetic(h=5, w=5)
    flat = {k: (v.reshape(len(v), -1) if k.startswith("x") else v.astype(np.int32))
            for k, v in arr.items()}
    np.savez(tmp_path / "flat.npz", **flat)
    ds = load_dataset(str(tmp_path / "flat.npz"))
    assert ds.x_train.shape == (12, 25) and ds.image_shape == (5, 5)
    assert ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, arr["y_train"])


def test_npz_int_images_in_range_accepted(tmp_path):
    arr = synthetic()
    arr["x_train"] = arr["x_train"].astype(np.int16)
    np.savez(tmp_path / "i16.npz", **arr)
    ds = load_dataset(tmp_path / "i16.npz")
    assert ds.x_train.dtype == np.uint8


# -- IDX errors ------------------------------------------------------------------
def test_idx_truncated(tmp_path):
    d = write_idx_dir(tmp_path / "d", synthetic())
    p = d / IDX_NAMES["x_train"]
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: truncated: "
                                           r"expected 144 bytes, found 137"):
        load_dataset(d)


def test_idx_truncated_header(tmp_path):
    d = write_idx_dir(tmp_path / "d", synthetic())
    (d / IDX_NAMES["y_test"]).write_bytes(b"\x00\x00\x08\x01\x00")
    with pytest.raises(DatasetError, match=r"truncated: expected 8 header bytes, found 5"):
        load_dataset(d)


def test_idx_trailing_bytes(tmp_path):
    d = write_idx_dir(tmp_path / "d", synthetic())
    p = d / IDX_NAMES["y_test"]
    p.write_bytes(p.read_bytes() + b"\x00\x01")
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: trailing bytes: "
                                           r"expected 5 bytes, found 7"):
        load_dataset(d)


def test_idx_wrong_magic(tmp_path):
    d = write_idx_dir(tmp_path / "d", synthetic())
    p = d / IDX_NAMES["x_test"]
    p.write_bytes(b"\x00\x00\x0d\x03" + p.read_bytes()[4:])  # float elements
    with pytest.raises(DatasetError, match=r"bad magic 0x00000d03, expected 0x00000803.*"
                                           r"element type 0x0d"):
        load_dataset(d)


def test_idx_labels_and_images_swapped(tmp_path):
    arr = synthetic()
    d = write_idx_dir(tmp_path / "d", arr)
    (d / IDX_NAMES["y_train"]).write_bytes(idx_bytes(arr["x_train"]))
    with pytest.raises(DatasetError, match=r"bad magic 0x00000803, expected 0x00000801.*"
                                           r"IDX images file"):
        load_dataset(d)


def test_idx_gzip_without_suffix(tmp_path):
    arr = synthetic()
    d = write_idx_dir(tmp_path / "d", arr)
    p = d / IDX_NAMES["x_train"]
    p.write_bytes(gzip.compress(p.read_bytes()))
    with pytest.raises(DatasetError, match=r"bad magic .*looks gzip-compressed"):
        load_dataset(d)


@pytest.mark.parametrize("corrupt", ["garbage", "cut"])
def test_idx_corrupt_gz(tmp_path, corrupt):
    d = write_idx_dir(tmp_path / "d", synthetic(), gz=True)
    p = d / (IDX_NAMES["x_train"] + ".gz")
    good = p.read_bytes()
    p.write_bytes(b"this is not gzip data" if corrupt == "garbage" else good[:len(good) // 2])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: not a valid gzip "
                                           r"stream"):
        load_dataset(d)


def test_idx_label_count_mismatch(tmp_path):
    arr = synthetic()
    d = write_idx_dir(tmp_path / "d", arr)
    (d / IDX_NAMES["y_train"]).write_bytes(idx_bytes(arr["y_train"][:-1]))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte holds 12 images but "
                                           r"train-labels-idx1-ubyte holds 11 labels"):
        load_dataset(d)


def test_idx_train_test_shape_mismatch(tmp_path):
    arr = synthetic()
    arr["x_test"] = np.zeros((5, 3, 4), np.uint8)
    d = write_idx_dir(tmp_path / "d", arr)
    with pytest.raises(DatasetError, match=r"images of shape \(4, 3\) but .* \(3, 4\)"):
        load_dataset(d)


def test_idx_missing_file(tmp_path):
    d = write_idx_dir(tmp_path / "d", synthetic())
    (d / IDX_NAMES["y_test"]).unlink()
    with pytest.raises(DatasetError, match=r"no IDX file t10k-labels-idx1-ubyte"):
        load_dataset(d)


# -- npz errors --------------------------------------------------------------------
def _npz(tmp_path, **changes):
    arr = synthetic()
    arr.update(changes)
    arr = {k: v for k, v in arr.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **arr)
    return path


def test_npz_missing_key(tmp_path):
    path = _npz(tmp_path, y_test=None)
    with pytest.raises(DatasetError, match=r"bad\.npz: missing array 'y_test'"):
        load_dataset(path)


def test_npz_float_images(tmp_path):
    path = _npz(tmp_path, x_train=np.full((12, 4, 3), 0.5, np.float32))
    with pytest.raises(DatasetError, match=r"bad\.npz: x_train has dtype float32; images must "
                                           r"be integer"):
        load_dataset(path)


def test_npz_pixels_out_of_range(tmp_path):
    path = _npz(tmp_path, x_test=np.full((5, 4, 3), 256, np.int32))
    with pytest.raises(DatasetError, match=r"x_test has values outside 0\.\.255"):
        load_dataset(path)


def test_npz_negative_labels(tmp_path):
    path = _npz(tmp_path, y_train=np.full(12, -1, np.int64))
    with pytest.raises(DatasetError, match=r"y_train has negative labels"):
        load_dataset(path)


def test_npz_float_labels(tmp_path):
    path = _npz(tmp_path, y_test=np.zeros(5, np.float64))
    with pytest.raises(DatasetError, match=r"y_test has dtype float64"):
        load_dataset(path)


def test_npz_count_mismatch(tmp_path):
    path = _npz(tmp_path, y_test=np.zeros(4, np.uint8))
    with pytest.raises(DatasetError, match=r"bad\.npz: x_test holds 5 images but y_test holds "
                                           r"4 labels"):
        load_dataset(path)


def test_npz_wrong_ndim(tmp_path):
    path = _npz(tmp_path, x_train=np.zeros(12, np.uint8))
    with pytest.raises(DatasetError, match=r"x_train must have shape \(N, H, W\) or \(N, F\)"):
        load_dataset(path)
    path = _npz(tmp_path, y_train=np.zeros((12, 1), np.uint8))
    with pytest.raises(DatasetError, match=r"y_train must have shape \(N,\)"):
        load_dataset(path)


def test_npz_unreadable(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip archive at all")
    with pytest.raises(DatasetError, match=r"junk\.npz: not a readable \.npz"):
        load_dataset(path)


# -- spec errors -----------------------------------------------------------------
@pytest.mark.parametrize("spec", ["fashion", 42, None, ""])
def test_unknown_spec(tmp_path, spec):
    with pytest.raises(DatasetError, match=r"unknown dataset .*accepted datasets: 'digits'"):
        load_dataset(spec)


def test_other_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(DatasetError, match=r"data\.csv: not an \.npz file.*accepted datasets"):
        load_dataset(path)


def test_mnist_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSE_EDGE_MNIST", str(tmp_path / "nowhere.npz"))
    assert default_mnist_path() is None
    with pytest.raises(DatasetError, match=r"MNIST not found: \$SPARSE_EDGE_MNIST .*nowhere"
                                           r"\.npz.*shared/data/mnist\.npz"):
        load_dataset("mnist")


def test_mnist_env_var(tmp_path, monkeypatch):
    arr = synthetic()
    d = write_idx_dir(tmp_path / "idx", arr, gz=True)
    monkeypatch.setenv("SPARSE_EDGE_MNIST", str(d))
    assert default_mnist_path() == d
    ds = load_dataset("mnist")
    assert ds.name == "mnist"
    np.testing.assert_array_equal(ds.x_test, arr["x_test"].reshape(5, -1))


def test_dataset_constructor_checks():
    x, y = np.zeros((3, 4), np.uint8), np.zeros(3, np.int64)
    assert Dataset("ok", x, y, x, y, (2, 2)).classes == 1
    with pytest.raises(DatasetError, match=r"x_train must be a uint8 array"):
        Dataset("bad", x.astype(np.float32), y, x, y, (2, 2))
    with pytest.raises(DatasetError, match=r"image_shape \(3, 3\) does not match 4 features"):
        Dataset("bad", x, y, x, y, (3, 3))


# -- digits ------------------------------------------------------------------------
def test_digits():
    pytest.importorskip("sklearn")
    ds = load_dataset("digits")
    assert ds.name == "digits"
    assert ds.x_train.shape == (1437, 64) and ds.x_test.shape == (360, 64)
    assert ds.y_train.shape == (1437,) and ds.y_test.shape == (360,)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.features == 64 and ds.classes == 10 and ds.image_shape == (8, 8)
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    vals = np.unique(np.concatenate([ds.x_train, ds.x_test]))
    assert set(vals.tolist()) <= {16 * v for v in range(16)} | {255}
    assert set(np.unique(ds.y_test).tolist()) == set(range(10))

    again = load_dataset("digits")
    assert_same(ds, again)

    from sklearn.datasets import load_digits
    raw = load_digits()
    perm = np.random.default_rng(0).permutation(len(raw.target))
    np.testing.assert_array_equal(ds.y_train, raw.target[perm[:1437]])
    np.testing.assert_array_equal(ds.x_test, np.minimum(raw.data[perm[1437:]] * 16, 255))

    check_compatible(ds, cfg_digits())


# -- padding and compatibility ------------------------------------------------------
def test_padded_inputs():
    cfg = cfg_mnist()
    x = np.random.default_rng(1).integers(0, 256, (6, 784), dtype=np.uint8)
    p = padded_inputs(x, cfg)
    assert p.shape == (6, 1024) and p.dtype == np.uint8
    np.testing.assert_array_equal(p[:, :784], x)
    assert not p[:, 784:].any()
    # integer input in range is accepted and converted
    np.testing.assert_array_equal(padded_inputs(x.astype(np.int64), cfg), p)
    # equal sizes: a copy, unchanged
    y = np.arange(64, dtype=np.uint8)[None, :]
    np.testing.assert_array_equal(padded_inputs(y, cfg_digits()), y)


def test_padded_inputs_refuses_mismatch():
    cfg = cfg_mnist()
    with pytest.raises(DatasetError, match=r"images have 1024 features .* data\.inputs = 784"
                                           r".*never truncated"):
        padded_inputs(np.zeros((2, 1024), np.uint8), cfg)
    with pytest.raises(DatasetError, match=r"images have 64 features"):
        padded_inputs(np.zeros((2, 64), np.uint8), cfg)
    with pytest.raises(DatasetError, match=r"shape \(N, 784\)"):
        padded_inputs(np.zeros((2, 28, 28), np.uint8), cfg)
    with pytest.raises(DatasetError, match=r"dtype float64"):
        padded_inputs(np.zeros((2, 784)), cfg)
    with pytest.raises(DatasetError, match=r"outside 0\.\.255"):
        padded_inputs(np.full((2, 784), 300), cfg)


def test_check_compatible(tmp_path):
    arr = synthetic(h=28, w=28)
    np.savez(tmp_path / "m.npz", **arr)
    ds = load_dataset(tmp_path / "m.npz")
    check_compatible(ds, cfg_mnist())
    with pytest.raises(DatasetError, match=r"784 input features .* data\.inputs = 64: set "
                                           r"data\.inputs = 784 and layers\[0\] >= 784 .*pick "
                                           r"a dataset"):
        check_compatible(ds, cfg_digits())

    arr = synthetic(h=8, w=8, classes=10)
    arr["y_test"][0] = 11
    np.savez(tmp_path / "c.npz", **arr)
    ds = load_dataset(tmp_path / "c.npz")
    assert ds.classes == 12
    with pytest.raises(DatasetError, match=r"labels up to 11 \(12 classes\) .* data\.classes = "
                                           r"10: set data\.classes = 12"):
        check_compatible(ds, cfg_digits())
    check_compatible(ds, cfg_digits(classes=12))


# -- the real MNIST ---------------------------------------------------------------
def test_real_mnist():
    path = default_mnist_path()
    if path is None:
        pytest.skip("MNIST file ../shared/data/mnist.npz not present")
    ds = load_dataset("mnist")
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.features == 784 and ds.image_shape == (28, 28) and ds.classes == 10
    cfg = cfg_mnist()
    check_compatible(ds, cfg)
    p = padded_inputs(ds.x_test[:100], cfg)
    assert p.shape == (100, 1024) and not p[:, 784:].any()
