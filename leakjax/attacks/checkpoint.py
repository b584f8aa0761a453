"""Checkpoints of `run`: one atomic msgpack file (flax.serialization; no pickle).

A run checkpoint holds the real trials' states and health (``alive``, ``failed_step``,
``last_loss``), ``done_chunks``, ``meta`` = [steps, restarts, chunk, trials] (a checkpoint is
refused for other settings), the losses so far [T, R, steps_done] and ``seconds_parts``: the
wall seconds of every earlier part of the run (so a resumed run reports its total time).
"""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

# payload entries whose length depends on how far the run got (restored without a template)
_VARIABLE = ("losses", "seconds_parts")


def is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_plain(tree):
    """PRNG key arrays -> their uint32 data, so the tree serializes with msgpack."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


def save_checkpoint(path, payload) -> None:
    """Atomic msgpack checkpoint (flax.serialization; no pickle)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = serialization.to_bytes(jax.tree.map(np.asarray, _to_plain(payload)))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path, template):
    """Restore a checkpoint into ``template``'s structure (PRNG keys re-wrapped)."""
    plain = _to_plain(template)
    with open(path, "rb") as f:
        restored = serialization.from_bytes(jax.tree.map(np.asarray, plain), f.read())
    return jax.tree.map(
        lambda t, r: jax.random.wrap_key_data(jnp.asarray(r)) if is_key(t) else jnp.asarray(r),
        template,
        restored,
    )


def write_run(path, payload: dict) -> None:
    """Write `run`'s state (the keys of the module docstring) to ``path``."""
    save_checkpoint(path, payload)


def read_run(path, template: dict, meta: np.ndarray, name: str) -> dict:
    """Read `run`'s state from ``path`` into ``template`` (states, alive, failed_step,
    last_loss, done_chunks, meta); ``losses`` and ``seconds_parts`` come back as numpy
    arrays of whatever length was saved (``seconds_parts`` empty in checkpoints that
    predate it).

    Raises:
      ValueError: an unreadable checkpoint, or one written for other steps/restarts/chunk/
        trials than ``meta``.
    """
    try:
        with open(path, "rb") as f:
            raw = serialization.msgpack_restore(f.read())
        template = dict(template)
        for k in _VARIABLE:
            if k in raw:
                template[k] = np.zeros(np.asarray(raw[k]).shape, np.asarray(raw[k]).dtype)
        ck = dict(load_checkpoint(path, template))
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is a config problem
        raise ValueError(f"{name}: cannot resume from {path}: {e}") from e
    if not np.array_equal(np.asarray(ck["meta"]), meta):
        raise ValueError(
            f"{name}: checkpoint {path} was written for steps/restarts/chunk/trials "
            f"{np.asarray(ck['meta']).tolist()}, not {meta.tolist()}"
        )
    ck["losses"] = np.asarray(ck["losses"], np.float32)
    # from the raw data: float64 survives (jnp.asarray would round it to float32)
    ck["seconds_parts"] = np.asarray(raw.get("seconds_parts", np.zeros(0)), np.float64)
    return ck
