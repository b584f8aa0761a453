"""A minimal pure-Python TFRecord reader and writer (no TensorFlow).

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little endian) | uint32 masked CRC-32C of the length bytes
    data[length]                  | uint32 masked CRC-32C of data

TFDS stores one serialized ``tf.train.Example`` per record; ``tfds`` decodes those with
``features.deserialize_example_np`` (protobuf + PIL), which needs no TensorFlow either.
"""

from __future__ import annotations

import os
import pathlib
import struct
from collections.abc import Iterable, Iterator

from leakjax.types import DataError

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (pure Python, about 8 MB/s)."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """The masked CRC-32C TFRecord stores (rotated right by 15, plus a constant)."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(
    path: str | os.PathLike, limit: int | None = None, *, check_data: bool = False
) -> Iterator[bytes]:
    """Yields the records of one TFRecord file (uncompressed), at most ``limit`` of them.

    The CRC of every length field is checked (so a file that is not an uncompressed
    TFRecord, or is truncated, is refused at once); the CRC of the data is checked only
    with ``check_data`` (pure-Python CRC-32C costs about 0.12 s per MB).

    Raises:
        DataError: the file cannot be read, is truncated or fails a CRC check.
    """
    path = pathlib.Path(path)
    count = 0
    try:
        with open(path, "rb") as f:
            while limit is None or count < limit:
                head = f.read(12)
                if not head:
                    return
                if len(head) < 12:
                    raise DataError(f"{path}: truncated TFRecord header after {count} records")
                (length,) = struct.unpack("<Q", head[:8])
                if struct.unpack("<I", head[8:])[0] != masked_crc(head[:8]):
                    raise DataError(
                        f"{path}: record {count} fails its length CRC (not an uncompressed "
                        f"TFRecord file, or corrupt)"
                    )
                body = f.read(length + 4)
                if len(body) < length + 4:
                    raise DataError(f"{path}: truncated TFRecord record {count}")
                data = body[:length]
                if check_data and struct.unpack("<I", body[length:])[0] != masked_crc(data):
                    raise DataError(f"{path}: record {count} fails its data CRC (corrupt)")
                count += 1
                yield data
    except OSError as err:
        raise DataError(f"cannot read TFRecord file {path}: {err}") from err


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> int:
    """Writes records as one uncompressed TFRecord file; returns how many were written."""
    count = 0
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc(length)))
            f.write(data + struct.pack("<I", masked_crc(data)))
            count += 1
    return count
