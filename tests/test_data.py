"""Tests of leakjax.data: readers, the restricted unpickler, partitions, padding, transforms."""

from __future__ import annotations

import gzip
import math
import pickle
import shutil
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakjax import data
from leakjax.types import ConfigError, DataError


def _assert_one_line(err: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(err.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def _labels(n: int, num_classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, n)


# ----------------------------------------------------------------------------- partitions


def _all_indices(p: data.Partition) -> np.ndarray:
    return np.concatenate([*p.train_idx, *p.test_idx])


@pytest.mark.parametrize("method", data.METHODS)
def test_partition_disjoint_and_covering(method):
    labels = _labels(600, 10)
    p = data.partition(labels, 7, method, classes_per_client=2, min_size=10, seed=3)
    everything = _all_indices(p)
    np.testing.assert_array_equal(np.sort(everything), np.arange(labels.size))
    assert p.num_clients == 7
    for train, test in zip(p.train_idx, p.test_idx, strict=True):
        assert not np.intersect1d(train, test).size
        assert test.size == int((train.size + test.size) * 0.2)
    np.testing.assert_array_equal(p.train_sizes, [t.size for t in p.train_idx])


@pytest.mark.parametrize("method", data.METHODS)
def test_partition_follows_seed(method):
    labels = _labels(400, 10)
    kw = dict(method=method, classes_per_client=3, min_size=5)
    a = data.partition(labels, 5, seed=1, **kw)
    b = data.partition(labels, 5, seed=1, **kw)
    c = data.partition(labels, 5, seed=2, **kw)
    for x, y in zip(a.train_idx + a.test_idx, b.train_idx + b.test_idx, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a.train_idx, c.train_idx, strict=True)), (
        "another seed gave the same partition"
    )


def test_iid_sizes_near_equal():
    p = data.partition(_labels(103, 10), 10, "iid", test_fraction=0.0)
    sizes = [t.size for t in p.train_idx]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 103
    assert all(t.size == 0 for t in p.test_idx)


def _client_sizes(p: data.Partition) -> list[int]:
    return [a.size + b.size for a, b in zip(p.train_idx, p.test_idx, strict=True)]


def test_dirichlet_min_size_honoured():
    labels = _labels(1000, 10)
    # Most single draws at beta 0.1 leave some client below 40 samples...
    unconstrained = [
        min(_client_sizes(data.partition(labels, 10, "dirichlet", beta=0.1, min_size=0, seed=s)))
        for s in range(5)
    ]
    assert min(unconstrained) < 40
    # ...so min_size has to redraw.
    for seed in range(5):
        p = data.partition(labels, 10, "dirichlet", beta=0.1, min_size=40, seed=seed)
        assert min(_client_sizes(p)) >= 40


def _label_skew(p: data.Partition, labels: np.ndarray, num_classes: int) -> float:
    """Mean total-variation distance of the clients' label histograms from the global one."""
    overall = np.bincount(labels, minlength=num_classes) / labels.size
    distances = []
    for train, test in zip(p.train_idx, p.test_idx, strict=True):
        mine = np.bincount(labels[np.concatenate([train, test])], minlength=num_classes)
        distances.append(0.5 * np.abs(mine / mine.sum() - overall).sum())
    return float(np.mean(distances))


def test_smaller_beta_more_skewed():
    labels = _labels(2000, 10)
    skew = {
        beta: np.mean(
            [
                _label_skew(data.partition(labels, 10, "dirichlet", beta=beta, seed=s), labels, 10)
                for s in range(3)
            ]
        )
        for beta in (0.1, 1.0, 100.0)
    }
    iid = _label_skew(data.partition(labels, 10, "iid"), labels, 10)
    assert skew[0.1] > skew[1.0] + 0.1 > skew[100.0] + 0.1, skew
    assert skew[100.0] < 0.1 and iid < 0.1, (skew, iid)


def test_dirichlet_impossible_min_size_raises():
    labels = np.repeat([0, 1], 50)
    with pytest.raises(ConfigError) as err:
        data.partition(labels, 10, "dirichlet", beta=1e-3, min_size=10)
    _assert_one_line(err, "data.min_size", "data.beta")


@pytest.mark.parametrize("cpc", [1, 2, 4])
def test_fixed_classes_exact_classes(cpc):
    labels = _labels(1000, 10)
    p = data.partition(labels, 10, "fixed_classes", classes_per_client=cpc, seed=4)
    used = set()
    for train, test in zip(p.train_idx, p.test_idx, strict=True):
        held = set(np.unique(labels[np.concatenate([train, test])]).tolist())
        assert len(held) == cpc
        used |= held
    assert used == set(range(10))


@settings(max_examples=40, deadline=None)
@given(
    num_clients=st.integers(1, 8),
    method=st.sampled_from(data.METHODS),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(40, 150),
    test_fraction=st.sampled_from([0.0, 0.2, 0.5]),
)
def test_partition_properties(num_clients, method, seed, n, test_fraction):
    labels = _labels(n, 5, seed)
    num_classes = np.unique(labels).size
    cpc = min(num_classes, max(2, math.ceil(num_classes / num_clients)))
    p = data.partition(
        labels,
        num_clients,
        method,
        beta=0.5,
        classes_per_client=cpc,
        min_size=2,
        test_fraction=test_fraction,
        seed=seed,
    )
    assert p.num_clients == num_clients
    np.testing.assert_array_equal(np.sort(_all_indices(p)), np.arange(n))
    for train, test in zip(p.train_idx, p.test_idx, strict=True):
        assert test.size == int((train.size + test.size) * test_fraction)
        held = np.unique(labels[np.concatenate([train, test])])
        if method == "dirichlet":
            assert train.size + test.size >= 2
        if method == "fixed_classes":
            assert held.size <= cpc
    again = data.partition(
        labels, num_clients, method, classes_per_client=cpc, min_size=2,
        test_fraction=test_fraction, seed=seed,
    )  # fmt: skip
    for x, y in zip(p.train_idx, again.train_idx, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(num_clients=0), "fl.num_clients"),
        (dict(num_clients=101), "fl.num_clients"),
        (dict(method="dirichlet", beta=0.0), "data.beta"),
        (dict(method="dirichlet", beta=-1.0), "data.beta"),
        (dict(test_fraction=1.0), "data.test_fraction"),
        (dict(test_fraction=-0.1), "data.test_fraction"),
        (dict(method="pathological"), "data.partition"),
        (dict(method="fixed_classes", classes_per_client=0), "data.classes_per_client"),
        (dict(method="fixed_classes", classes_per_client=11), "data.classes_per_client"),
        (dict(method="fixed_classes", num_clients=2, classes_per_client=4), "classes_per_client"),
        (dict(method="dirichlet", min_size=11), "data.min_size"),
    ],
)
def test_partition_bad_settings(kwargs, key):
    kwargs = {"num_clients": 10, **kwargs}
    with pytest.raises(ConfigError) as err:
        data.partition(_labels(100, 10), **kwargs)
    _assert_one_line(err, key)
    if key == "data.partition":
        _assert_one_line(err, "iid", "dirichlet", "fixed_classes")


def test_partition_bad_labels():
    with pytest.raises(DataError) as err:
        data.partition(np.zeros((4, 2), np.int32), 2)
    _assert_one_line(err, "labels")


# ----------------------------------------------------------------------------- padding


def test_gather_padded():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (30, 4, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 30).astype(np.int32)
    idx = [np.array([3, 1, 4]), np.array([], np.int64), np.arange(10, 17)]
    ca = data.gather_padded(images, labels, idx)
    assert ca.x.shape == (3, 7, 4, 4, 3) and ca.x.dtype == np.uint8
    assert ca.y.shape == (3, 7) and ca.y.dtype == np.int32
    np.testing.assert_array_equal(ca.n, [3, 0, 7])
    assert ca.n.dtype == np.int32
    for k, i in enumerate(idx):
        np.testing.assert_array_equal(ca.x[k, : i.size], images[i])
        np.testing.assert_array_equal(ca.y[k, : i.size], labels[i])
        assert not ca.x[k, i.size :].any() and not ca.y[k, i.size :].any()
    np.testing.assert_array_equal(ca.mask.sum(1), ca.n)
    padded = data.gather_padded(images, labels, idx, pad_to=12)
    assert padded.x.shape == (3, 12, 4, 4, 3)
    with pytest.raises(ConfigError) as err:
        data.gather_padded(images, labels, idx, pad_to=5)
    _assert_one_line(err, "pad_to")


def test_gather_padded_from_partition():
    labels = _labels(200, 10)
    images = np.random.default_rng(1).integers(0, 256, (200, 2, 2, 1), dtype=np.uint8)
    p = data.partition(labels, 6, "dirichlet", min_size=5)
    ca = data.gather_padded(images, labels, p.train_idx)
    assert ca.x.shape[:2] == (6, max(t.size for t in p.train_idx))
    assert int(ca.n.sum()) == sum(t.size for t in p.train_idx)


# ----------------------------------------------------------------------------- transforms


def test_normalize_round_trip_and_box():
    info = data.load("synthetic", image_size=4).info
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    images[0, 0, 0] = 0
    images[0, 0, 1] = 255
    for mode in data.MODES:
        mean, std = data.normalization(info, mode)
        assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (3,)
        x = data.normalize(images, mean, std)
        assert isinstance(x, np.ndarray) and x.dtype == np.float32
        np.testing.assert_allclose(data.denormalize(x, mean, std) * 255, images, atol=1e-3)
        lo, hi = data.box(mean, std)
        np.testing.assert_allclose(x[0, 0, 0], lo, rtol=1e-6)
        np.testing.assert_allclose(x[0, 0, 1], hi, rtol=1e-6)
        assert (x >= lo - 1e-6).all() and (x <= hi + 1e-6).all()
        xj = data.normalize(jnp.asarray(images), jnp.asarray(mean), jnp.asarray(std))
        assert xj.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(xj), x, rtol=1e-6, atol=1e-6)
    mean, std = data.normalization(info, "half")
    np.testing.assert_allclose(data.box(mean, std), [[-1.0] * 3, [1.0] * 3])
    mean, std = data.normalization(info, "none")
    np.testing.assert_allclose(data.normalize(images, mean, std), images / 255.0, rtol=1e-6)


def test_normalization_constants_and_bad_mode():
    info = data.load("synthetic", image_size=4).info
    cifar = data.DatasetInfo("cifar10", 10, (32, 32, 3), (0.4914, 0.4822, 0.4465),
                             (0.2470, 0.2435, 0.2616), tuple("abcdefghij"), "official")  # fmt: skip
    mean, std = data.normalization(cifar, "dataset")
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], rtol=1e-6)
    with pytest.raises(ConfigError) as err:
        data.normalization(info, "imagenet")
    _assert_one_line(err, "data.normalization", "dataset", "half", "none")


# ----------------------------------------------------------------------------- real files


def test_cifar10_real_subset(shared_data_dir):
    ds = data.load("cifar10", shared_data_dir)
    assert ds.train_images.shape == (4660, 32, 32, 3) and ds.test_images.shape == (846, 32, 32, 3)
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int32
    for y in (ds.train_labels, ds.test_labels):
        assert y.min() >= 0 and y.max() <= 9 and np.unique(y).size == 10
    assert ds.info.source == "official" and ds.info.class_names[0] == "airplane"
    assert ds.info.mean == (0.4914, 0.4822, 0.4465)
    with open(shared_data_dir / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # trusted fixture: the independent decode
    first = np.asarray(batch[b"data"][0]).reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(ds.train_images[0], first)
    assert ds.train_labels[0] == batch[b"labels"][0]
    inner = data.load("cifar10", shared_data_dir / "cifar-10-batches-py", "official")
    np.testing.assert_array_equal(inner.test_images, ds.test_images)


def test_mnist_idx_gz_and_raw(shared_data_dir, tmp_path):
    ds = data.load("mnist", shared_data_dir)
    assert ds.train_images.shape == (3009, 28, 28, 1) and ds.test_images.shape == (10000, 28, 28, 1)
    assert ds.info.source == "official" and ds.info.mean == (0.1307,)
    assert set(np.unique(ds.test_labels)) == set(range(10))
    with gzip.open(shared_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    np.testing.assert_array_equal(
        ds.test_images[0, :, :, 0], np.frombuffer(raw[16 : 16 + 784], np.uint8).reshape(28, 28)
    )
    for path in (shared_data_dir / "mnist").glob("*.gz"):
        with gzip.open(path) as src:
            (tmp_path / path.stem).write_bytes(src.read())
    raw_ds = data.load("mnist", tmp_path, "official")
    np.testing.assert_array_equal(raw_ds.train_images, ds.train_images)
    np.testing.assert_array_equal(raw_ds.test_labels, ds.test_labels)
    resized = data.load("mnist", shared_data_dir, image_size=32, limit=50)
    assert resized.train_images.shape == (50, 32, 32, 1) and resized.test_labels.shape == (50,)
    assert resized.info.image_shape == (32, 32, 1)


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(folder, n_train=6, n_test=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))


def test_idx_corrupt_files(tmp_path):
    _fake_mnist(tmp_path)
    assert data.load("mnist", tmp_path).train_images.shape == (6, 28, 28, 1)
    labels = tmp_path / "train-labels-idx1-ubyte"
    _write_idx(labels, np.zeros(5))
    with pytest.raises(DataError) as err:
        data.load("mnist", tmp_path)
    _assert_one_line(err, str(tmp_path), "differ in count")
    labels.write_bytes(labels.read_bytes()[:-2])
    with pytest.raises(DataError) as err:
        data.load("mnist", tmp_path)
    _assert_one_line(err, str(labels), "header says")
    labels.write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(DataError) as err:
        data.load("mnist", tmp_path)
    _assert_one_line(err, "bad magic")
    labels.unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError) as err:
        data.load("mnist", tmp_path)
    _assert_one_line(err, "train-labels-idx1-ubyte.gz")


def test_cifar100_official_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("test", 5)):
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        arrays[split] = (rows, fine)
        record = {b"data": rows, b"fine_labels": fine, b"coarse_labels": [0] * n,
                  b"filenames": [b"x.png"] * n, b"batch_label": b"training batch 1 of 1"}  # fmt: skip
        (folder / split).write_bytes(pickle.dumps(record, protocol=2))
    meta = {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
            b"coarse_label_names": [b"c"] * 20}  # fmt: skip
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    for where in (tmp_path, folder):
        ds = data.load("cifar100", where)
        assert ds.train_images.shape == (12, 32, 32, 3) and ds.test_images.shape == (5, 32, 32, 3)
        rows, fine = arrays["train"]
        np.testing.assert_array_equal(ds.train_labels, fine)
        # Channel-major rows: pixel (r, c) of channel k is rows[:, k * 1024 + r * 32 + c].
        np.testing.assert_array_equal(ds.train_images[:, 2, 5, 1], rows[:, 1024 + 2 * 32 + 5])
        assert ds.info.num_classes == 100 and ds.info.class_names[7] == "class7"
        assert ds.info.mean == (0.5071, 0.4865, 0.4409)


class _Evil:
    def __init__(self, call, marker):
        self.call, self.marker = call, marker

    def __reduce__(self):
        if self.call == "system":
            import os

            return (os.system, (f"touch {self.marker}",))
        import builtins

        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("call", ["system", "eval"])
def test_restricted_unpickler_refuses_code(tmp_path, call):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    evil = pickle.dumps({b"data": _Evil(call, marker), b"labels": [1]}, protocol=2)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch", "batches.meta"):  # fmt: skip
        (folder / name).write_bytes(evil)
    with pytest.raises(DataError) as err:
        data.load("cifar10", tmp_path, "official")
    _assert_one_line(err, "data_batch_1", "not allowed")
    assert not marker.exists()
    with pytest.raises(DataError):
        data.safe_unpickle(folder / "test_batch")
    assert not marker.exists()


def test_restricted_unpickler_refuses_object_arrays_and_corruption(tmp_path):
    path = tmp_path / "obj"
    path.write_bytes(pickle.dumps({"data": np.array([1, "a"], dtype=object)}, protocol=2))
    with pytest.raises(DataError) as err:
        data.safe_unpickle(path)
    _assert_one_line(err, str(path))
    ok = pickle.dumps({"data": np.arange(6, dtype=np.uint8).reshape(2, 3)}, protocol=2)
    path.write_bytes(ok)
    np.testing.assert_array_equal(data.safe_unpickle(path)["data"], [[0, 1, 2], [3, 4, 5]])
    path.write_bytes(ok[: len(ok) // 2])
    with pytest.raises(DataError) as err:
        data.safe_unpickle(path)
    _assert_one_line(err, str(path))


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (20, 6, 6), dtype=np.uint8)  # NHW -> C = 1
    y_train, y_test = rng.integers(0, 4, 20), rng.integers(0, 4, 7)
    x_test = rng.integers(0, 256, (7, 6, 6), dtype=np.uint8)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ds = data.load("npz", path)
    assert ds.info.source == "npz" and ds.info.image_shape == (6, 6, 1)
    np.testing.assert_array_equal(ds.train_images[..., 0], x_train)
    np.testing.assert_array_equal(ds.test_labels, y_test)
    assert ds.info.num_classes == int(max(y_train.max(), y_test.max())) + 1
    np.testing.assert_allclose(ds.info.mean, [x_train.mean() / 255], rtol=1e-6)
    np.testing.assert_allclose(ds.info.std, [x_train.std() / 255], rtol=1e-6)
    # A named data set from an .npz file keeps its own constants.
    rgb = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    np.savez(tmp_path / "tiny.npz", x_train=rgb, y_train=np.arange(8) * 20,
             x_test=rgb[:2], y_test=np.array([0, 199]))  # fmt: skip
    tiny = data.load("tiny_imagenet", tmp_path / "tiny.npz")
    assert tiny.info.source == "npz" and tiny.info.num_classes == 200
    assert tiny.info.mean == (0.485, 0.456, 0.406)


def test_npz_bad_files(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 3, 3), np.uint8), y_train=np.zeros(2, np.int64))
    with pytest.raises(DataError) as err:
        data.load("npz", path)
    _assert_one_line(err, "x_test", "y_test")
    np.savez(path, x_train=np.zeros((2, 3, 3), np.float32), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((1, 3, 3), np.float32), y_test=np.zeros(1, np.int64))  # fmt: skip
    with pytest.raises(DataError) as err:
        data.load("npz", path)
    _assert_one_line(err, "uint8")
    np.savez(path, x_train=np.array([None, 1], dtype=object), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((1, 3, 3), np.uint8), y_test=np.zeros(1, np.int64))  # fmt: skip
    with pytest.raises(DataError) as err:
        data.load("npz", path)
    _assert_one_line(err, "allow_pickle=False")
    path.write_bytes(b"PK not a zip")
    with pytest.raises(DataError) as err:
        data.load("npz", path)
    _assert_one_line(err, str(path))


def test_digits_offline():
    ds = data.load("digits")
    assert ds.train_images.shape == (1437, 16, 16, 1) and ds.test_images.shape == (360, 16, 16, 1)
    assert ds.info.source == "builtin" and ds.info.num_classes == 10
    assert ds.train_images.dtype == np.uint8 and ds.train_images.max() == 255
    assert set(np.unique(ds.train_labels)) == set(range(10))
    pixels = ds.train_images / 255.0
    np.testing.assert_allclose(ds.info.mean, [pixels.mean()], rtol=1e-6)
    again, other = data.load("digits"), data.load("digits", seed=1)
    np.testing.assert_array_equal(again.train_labels, ds.train_labels)
    assert not np.array_equal(other.train_labels, ds.train_labels)
    small = data.load("digits", image_size=8)
    assert small.train_images.shape == (1437, 8, 8, 1)
    assert set(np.unique(small.train_images)) <= {round(v * 255 / 16) for v in range(17)}


def test_synthetic_and_names():
    ds = data.load("synthetic", image_size=12, seed=3)
    assert ds.train_images.shape[1:] == (12, 12, 3) and ds.info.num_classes == 10
    assert ds.info.source == "synthetic"
    assert set(data.names()) >= {"digits", "mnist", "fashion_mnist", "cifar10", "cifar100",
                                 "tiny_imagenet", "imagenet", "npz", "synthetic"}  # fmt: skip


def test_tiny_imagenet_official_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]
    rng = np.random.default_rng(0)
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n01\tgoldfish, Carassius\nn02\tcat\nn03\tdog\n")
    for wnid in wnids:
        (root / "train" / wnid / "images").mkdir(parents=True)
        for i in range(2):
            picture = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            picture.save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", format="JPEG")
    lines = []
    for i, wnid in enumerate(["n03", "n01"]):
        gray = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8))
        gray.save(root / "val" / "images" / f"val_{i}.JPEG", format="JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t10\t10")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    ds = data.load("tiny_imagenet", tmp_path)
    assert ds.train_images.shape == (6, 64, 64, 3) and ds.test_images.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(ds.train_labels, [0, 0, 1, 1, 2, 2])  # sorted wnids
    np.testing.assert_array_equal(ds.test_labels, [2, 0])
    assert ds.info.num_classes == 200 and ds.info.source == "official"


# ----------------------------------------------------------------------------- bad input


def test_load_bad_input(tmp_path):
    with pytest.raises(DataError) as err:
        data.load("cifar11")
    _assert_one_line(err, "data.name", "cifar10", "digits")
    with pytest.raises(ConfigError) as err:
        data.load("digits", source="s3")
    _assert_one_line(err, "data.source", "official", "tfds")
    with pytest.raises(ConfigError) as err:
        data.load("digits", source="tfds")
    _assert_one_line(err, "data.source", "builtin")
    with pytest.raises(ConfigError) as err:
        data.load("tiny_imagenet", tmp_path, source="tfds")
    _assert_one_line(err, "data.source", "official", "npz")
    for size in (0, -3, 2.5):
        with pytest.raises(ConfigError) as err:
            data.load("digits", image_size=size)
        _assert_one_line(err, "data.image_size")
    with pytest.raises(DataError) as err:
        data.load("mnist", source="official")
    _assert_one_line(err, "data.data_dir")
    with pytest.raises(DataError) as err:
        data.load("npz")
    _assert_one_line(err, "data.data_dir")
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        data.load("cifar10", missing, "official")
    _assert_one_line(err, "data.data_dir", str(missing))
    with pytest.raises(DataError) as err:
        data.load("mnist", tmp_path, "official")
    _assert_one_line(err, str(tmp_path), "train-images-idx3-ubyte")
    with pytest.raises(DataError) as err:
        data.load("tiny_imagenet", tmp_path)
    _assert_one_line(err, str(tmp_path), "tiny-imagenet-200")
    with pytest.raises(DataError) as err:
        data.load("npz", tmp_path)
    _assert_one_line(err, "data.data_dir", "x_train")
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError) as err:
        data.load("cifar10", tmp_path, "official")
    _assert_one_line(err, str(tmp_path), "data_batch_1")


# ----------------------------------------------------------------------------- TFDS


@pytest.fixture(scope="module")
def tfds_mnist_dir(tmp_path_factory):
    """A tiny 'mnist' TFDS build in array_record format, written without TensorFlow."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from PIL import Image
    from tensorflow_datasets.core import registered

    tfds.disable_progress_bar()
    rng = np.random.default_rng(0)
    truth = {
        "train": (rng.integers(0, 256, (12, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 12)),
        "test": (rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 5)),
    }

    with registered.skip_registration():

        class FakeMnist(tfds.core.GeneratorBasedBuilder):
            name = "mnist"
            VERSION = tfds.core.Version("3.0.1")

            def _info(self):
                features = tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(28, 28, 1)),
                        "label": tfds.features.ClassLabel(num_classes=10),
                    }
                )
                return tfds.core.DatasetInfo(builder=self, features=features)

            def _split_generators(self, dl_manager):
                return {split: self._generate_examples(split) for split in truth}

            def _generate_examples(self, split):
                # PIL images are PNG-encoded by PIL; numpy ones would need TensorFlow.
                for i, (x, y) in enumerate(zip(*truth[split], strict=True)):
                    yield i, {"image": Image.fromarray(x[:, :, 0]), "label": int(y)}

    root = tmp_path_factory.mktemp("tfds")
    FakeMnist(data_dir=str(root), file_format="array_record").download_and_prepare()
    return root, truth


def test_tfds_reads_prepared_build(tfds_mnist_dir):
    root, truth = tfds_mnist_dir
    for source in ("tfds", "auto"):  # no IDX files there, so 'auto' falls through to TFDS
        ds = data.load("mnist", root, source)
        assert ds.info.source == "tfds" and ds.info.mean == (0.1307,)
        for split in ("train", "test"):
            images, labels = getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels")
            x, y = truth[split]
            assert images.shape == x.shape and images.dtype == np.uint8
            # TFDS stores records shuffled by key: match every record to its original.
            position = {im.tobytes(): i for i, im in enumerate(x)}
            order = [position[im.tobytes()] for im in images]
            assert sorted(order) == list(range(len(x)))
            np.testing.assert_array_equal(labels, y[order])
    few = data.load("mnist", root, "tfds", limit=3, image_size=14)
    assert few.train_images.shape == (3, 14, 14, 1) and few.test_labels.shape == (3,)


def test_tfds_not_prepared_and_missing_package(tmp_path, monkeypatch):
    with pytest.raises(DataError) as err:
        data.load("cifar10", tmp_path, "tfds")
    _assert_one_line(err, "'cifar10'", str(tmp_path), "leakjax[tfds-prepare]", "array_record")
    with pytest.raises(DataError) as err:
        data.load("imagenet", tmp_path)
    _assert_one_line(err, "imagenet2012", str(tmp_path))
    with pytest.raises(DataError) as err:
        data.load("cifar10", tmp_path)  # auto: neither official files nor a TFDS build
    _assert_one_line(err, "cifar-10-batches-py", "leakjax[tfds-prepare]")
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataError) as err:
        data.load("mnist", tmp_path, "tfds")
    _assert_one_line(err, "tensorflow-datasets")


def test_tfds_tfrecord_build_is_refused(tfds_mnist_dir, tmp_path):
    root, _ = tfds_mnist_dir
    copy = tmp_path / "copy"
    shutil.copytree(root / "mnist", copy / "mnist")
    info = copy / "mnist" / "3.0.1" / "dataset_info.json"
    info.write_text(info.read_text().replace('"array_record"', '"tfrecord"'))
    with pytest.raises(DataError) as err:
        data.load("mnist", copy, "tfds")
    _assert_one_line(err, str(copy))


def _npz(path, **over):
    arrays = dict(x_train=np.zeros((4, 3, 3), np.uint8), y_train=np.zeros(4, np.int64),
                  x_test=np.zeros((2, 3, 3), np.uint8), y_test=np.zeros(2, np.int64))  # fmt: skip
    np.savez(path, **{**arrays, **over})
    return path


@pytest.mark.parametrize(
    "over, needles",
    [
        ({"x_test": np.zeros((0, 3, 3), np.uint8), "y_test": np.zeros(0, np.int64)},
         ["data.data_dir", "x_test has no images", "test split is empty"]),
        ({"y_train": np.zeros(4, np.float32)}, ["data.data_dir", "y_train", "dtype float32"]),
        ({"x_train": np.full((4, 3, 3), 300, np.int64)}, ["x_train", "int64 values in 300..300"]),
        ({"y_test": np.zeros(3, np.int64)}, ["y_test must be 2 labels", "shape (3,)"]),
    ],
)  # fmt: skip
def test_npz_refused_for_the_real_cause(tmp_path, over, needles):
    """Issue 33 #6, #7: an empty split is refused; each message says the actual problem."""
    with pytest.raises(DataError) as err:
        data.load("npz", _npz(tmp_path / "d.npz", **over))
    _assert_one_line(err, *needles)


def test_npz_text_file_is_not_called_a_pickle(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("x_train,y_train\n1,2\n")
    with pytest.raises(DataError) as err:
        data.load("npz", path)
    _assert_one_line(err, "data.data_dir", "not an .npz (zip) archive", "x_train,y_train")
    assert "pickle" not in str(err.value)
