"""Any TFDS image-classification build, in array_record and tfrecord format, without TensorFlow.

The builds are made here: a tiny ``GeneratorBasedBuilder`` writes array_record without
TensorFlow. Writing tfrecord through TFDS needs TensorFlow (``download_and_prepare`` fails
with "Failed to finalize writing of split 'train': No module named 'tensorflow'" in
tensorflow-datasets 4.9.10), so the tfrecord build is the same build with its records (the
serialized ``tf.train.Example`` protos TFDS stores in both formats) rewritten by
``leakjax.data.readers.tfrecord.write_records`` and ``dataset_info.json`` saying tfrecord.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from leakjax import data
from leakjax.data.readers import tfrecord
from leakjax.types import DataError

tfds = pytest.importorskip("tensorflow_datasets")


def _one_line(err, *needles):
    message = str(err.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def _truth(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train": (rng.integers(0, 256, (9, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, 9)),
        "test": (rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, 4)),
    }


def _build(root, name, truth, *, supervised=True, second_image=False):
    """Prepares an array_record build with features 'picture' (Image) and 'kind' (labels)."""
    from PIL import Image
    from tensorflow_datasets.core import registered

    tfds.disable_progress_bar()
    feats = {"picture": tfds.features.Image(shape=(8, 8, 3)),
             "kind": tfds.features.ClassLabel(names=["ant", "bee", "cat", "dog"])}  # fmt: skip
    if second_image:
        feats["mask"] = tfds.features.Image(shape=(8, 8, 3))

    with registered.skip_registration():

        class Toy(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.2.0")

            def _info(self):
                return tfds.core.DatasetInfo(
                    builder=self,
                    features=tfds.features.FeaturesDict(feats),
                    supervised_keys=("picture", "kind") if supervised else None,
                )

            def _split_generators(self, dl_manager):
                return {split: self._generate_examples(split) for split in truth}

            def _generate_examples(self, split):
                for i, (x, y) in enumerate(zip(*truth[split], strict=True)):
                    example = {"picture": Image.fromarray(x), "kind": int(y)}
                    if second_image:
                        example["mask"] = Image.fromarray(x)
                    yield i, example

        Toy.name = name
        Toy(data_dir=str(root), file_format="array_record").download_and_prepare()
    return root


def _to_tfrecord(src_root, dst_root, name, version="1.2.0"):
    """The same build as tfrecord shards: same records, framed as TFRecord."""
    from array_record.python.array_record_module import ArrayRecordReader

    src, dst = src_root / name / version, dst_root / name / version
    dst.mkdir(parents=True)
    for path in src.iterdir():
        if ".array_record-" not in path.name:
            shutil.copy(path, dst / path.name)
            continue
        reader = ArrayRecordReader(str(path))
        records = reader.read_all()
        reader.close()
        tfrecord.write_records(dst / path.name.replace(".array_record-", ".tfrecord-"), records)
    info = json.loads((dst / "dataset_info.json").read_text())
    assert info["fileFormat"] == "array_record"
    info["fileFormat"] = "tfrecord"
    (dst / "dataset_info.json").write_text(json.dumps(info))
    return dst_root


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    truth = _truth()
    ar = _build(tmp_path_factory.mktemp("ar"), "toy_images", truth)
    tr = _to_tfrecord(ar, tmp_path_factory.mktemp("tr"), "toy_images")
    return {"array_record": ar, "tfrecord": tr}, truth


def _check(ds, truth):
    assert ds.info.source == "tfds" and ds.info.num_classes == 4
    assert ds.info.class_names == ("ant", "bee", "cat", "dog")
    for split in ("train", "test"):
        images, labels = getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels")
        x, y = truth[split]
        assert images.shape == x.shape and images.dtype == np.uint8
        # TFDS shuffles records by key: match every record to its original.
        position = {im.tobytes(): i for i, im in enumerate(x)}
        order = [position[im.tobytes()] for im in images]
        assert sorted(order) == list(range(len(x)))
        np.testing.assert_array_equal(labels, y[order])


@pytest.mark.parametrize("fmt", ["array_record", "tfrecord"])
def test_any_tfds_build_by_name(toy, fmt):
    roots, truth = toy
    assert "tensorflow" not in sys.modules
    for source in ("tfds", "auto"):
        ds = data.load("tfds:toy_images", roots[fmt], source)
        _check(ds, truth)
        assert ds.info.name == "tfds:toy_images"
    few = data.load("tfds:toy_images", roots[fmt], limit=2, image_size=4)
    assert few.train_images.shape == (2, 4, 4, 3) and few.test_labels.shape == (2,)
    assert "tensorflow" not in sys.modules


def test_tfrecord_and_array_record_agree(toy):
    roots, _ = toy
    a = data.load("tfds:toy_images", roots["array_record"])
    b = data.load("tfds:toy_images", roots["tfrecord"])
    np.testing.assert_array_equal(a.train_images, b.train_images)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    assert a.info == b.info


def test_registered_name_reads_tfrecord(tmp_path):
    # 'cifar10' in tfrecord, the format `tfds build cifar10` writes by default.
    truth = _truth(1)
    ar = _build(tmp_path / "ar", "cifar10", truth)
    version = tmp_path / "ar" / "cifar10" / "1.2.0"
    assert version.is_dir()
    tr = _to_tfrecord(ar, tmp_path / "tr", "cifar10")
    ds = data.load("cifar10", tr)  # auto: no official pickles there, so TFDS
    assert ds.info.source == "tfds" and ds.info.mean == (0.4914, 0.4822, 0.4465)
    assert ds.info.num_classes == 10 and ds.train_images.shape == (9, 8, 8, 3)


def test_tfds_names_are_accepted():
    assert "tfds:beans" in data.names() and "tfds:imagenette/160px" in data.names()
    assert "beans" not in data.names() and "tfds:" not in data.names()
    assert data.is_tfds_name("tfds:oxford_iiit_pet") and not data.is_tfds_name("tfds:../x")
    with pytest.raises(DataError) as err:
        data.load("beans")
    _one_line(err, "data.name", "tfds:<name>")


def test_features_resolved_or_refused(tmp_path):
    # Without supervised_keys the one Image and the one ClassLabel feature are used...
    truth = _truth(2)
    _build(tmp_path / "a", "plain", truth, supervised=False)
    _check(data.load("tfds:plain", tmp_path / "a"), truth)
    # ...and two Image features without supervised_keys cannot be told apart.
    _build(tmp_path / "b", "two", truth, supervised=False, second_image=True)
    with pytest.raises(DataError) as err:
        data.load("tfds:two", tmp_path / "b")
    _one_line(err, "'mask'", "'picture'", "supervised_keys")


def test_unreadable_builds(toy, tmp_path):
    roots, _ = toy
    with pytest.raises(DataError) as err:
        data.load("tfds:missing_set", tmp_path)
    _one_line(err, "'missing_set'", str(tmp_path), "leakjax[tfds-prepare]")
    # A format that only TensorFlow reads: the message says so and how to convert.
    riegeli = tmp_path / "riegeli"
    shutil.copytree(roots["array_record"] / "toy_images", riegeli / "toy_images")
    info = riegeli / "toy_images" / "1.2.0" / "dataset_info.json"
    info.write_text(info.read_text().replace('"array_record"', '"riegeli"'))
    with pytest.raises(DataError) as err:
        data.load("tfds:toy_images", riegeli)
    _one_line(err, "riegeli", "TensorFlow", "leakjax[tfds-prepare]", "array_record")
    # A truncated tfrecord shard names the shard.
    broken = tmp_path / "broken"
    shutil.copytree(roots["tfrecord"] / "toy_images", broken / "toy_images")
    shard = next((broken / "toy_images" / "1.2.0").glob("*train.tfrecord*"))
    shard.write_bytes(shard.read_bytes()[:-30])
    with pytest.raises(DataError) as err:
        data.load("tfds:toy_images", broken)
    _one_line(err, str(shard), "truncated")


def test_tfrecord_framing_round_trip(tmp_path):
    assert tfrecord.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    records = [b"", b"a", bytes(range(256)) * 3]
    path = tmp_path / "x.tfrecord"
    assert tfrecord.write_records(path, records) == 3
    assert list(tfrecord.read_records(path, check_data=True)) == records
    assert list(tfrecord.read_records(path, 2)) == records[:2]
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # a data byte of the last record
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="data CRC"):
        list(tfrecord.read_records(path, check_data=True))
    path.write_bytes(b"\x05" + bytes(raw[1:]))  # the first length field
    with pytest.raises(DataError, match="length CRC"):
        list(tfrecord.read_records(path))
