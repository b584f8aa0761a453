"""Generator checkpoints: msgpack (`flax.serialization`), no pickle; the generator class is
named by its key in `leakjax.models.generators.GENERATORS`."""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from leakjax.models.generators import GENERATORS
from leakjax.types import ConfigError

CHECKPOINT_FORMAT = "leakjax.generator"
CHECKPOINT_VERSION = 1


def _plain_settings(settings: dict) -> dict:
    out = {}
    for k, v in settings.items():
        if isinstance(v, tuple | list):
            out[k] = [int(i) for i in v]
        elif isinstance(v, bool | int | float | str):
            out[k] = v
        else:
            raise TypeError(f"generator setting {k}={v!r} is not an int, float, str or tuple")
    return out


def save_generator(path, name: str, settings: dict, latent_dim: int, variables, meta=None):
    """Writes a generator checkpoint: msgpack (`flax.serialization`), no pickle.

    The file holds ``{'format', 'version', 'generator' (a `GENERATORS` name), 'settings'
    (the module's constructor arguments), 'latent_dim', 'variables' ({'params',
    'batch_stats'} as float32 arrays), 'meta' (free-form: data set, steps, ...)}``; it is
    written to a temporary file and renamed, so a reader never sees half a checkpoint.

    Args:
      path: destination file (its folder is created).
      name: key of `GENERATORS`.
      settings: constructor arguments of the module (ints, floats, strings, int tuples).
      latent_dim: size of the latent input.
      variables: the generator's variables.
      meta: extra JSON-like information (strings, numbers).
    """
    if name not in GENERATORS:
        raise KeyError(f"unknown generator {name!r}; known: {sorted(GENERATORS)}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "generator": name,
        "settings": _plain_settings(dict(settings)),
        "latent_dim": int(latent_dim),
        "variables": jax.tree.map(lambda a: np.asarray(a, np.float32), dict(variables)),
        "meta": dict(meta or {}),
    }
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(serialization.msgpack_serialize(payload))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_generator(path, *, what: str = "generator checkpoint"):
    """Reads a `save_generator` checkpoint and checks it against its declared architecture.

    Args:
      path: the checkpoint file.
      what: how error messages name the file (e.g. ``'attack.generator_path'``).

    Returns:
      ``(module, variables, info)``: the flax module, its variables (numpy float32, exactly
      the saved bits) and ``{'generator', 'settings', 'latent_dim', 'meta'}``.

    Raises:
      ConfigError: the file is missing, is not a generator checkpoint, or its arrays do not
        match the architecture it declares; the message names ``what`` and the path.
    """
    where = f"{what}={str(path)!r}"
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{where}: no such file (train one with python -m leakjax.train_generator)"
        )
    try:
        raw = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - any undecodable file is a bad checkpoint
        raise ConfigError(f"{where}: not a generator checkpoint ({type(e).__name__})") from e
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{where}: not a generator checkpoint (no {CHECKPOINT_FORMAT!r} header)")
    if raw.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(
            f"{where}: checkpoint version {raw.get('version')!r}, expected {CHECKPOINT_VERSION}"
        )
    name = raw.get("generator")
    if name not in GENERATORS:
        raise ConfigError(f"{where}: unknown generator {name!r}; known: {sorted(GENERATORS)}")
    try:
        settings = {
            k: tuple(int(i) for i in v) if isinstance(v, list | np.ndarray) else v
            for k, v in dict(raw["settings"]).items()
        }
        latent_dim = int(raw["latent_dim"])
        module = GENERATORS[name](**settings)
        template = jax.eval_shape(
            lambda: module.init(jax.random.key(0), jnp.zeros((2, latent_dim)), train=False)
        )
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{where}: bad generator settings ({type(e).__name__}: {e})") from e
    want = traverse_util.flatten_dict(dict(template))
    got = raw.get("variables")
    got = traverse_util.flatten_dict(got) if isinstance(got, dict) else {}
    if set(want) != set(got):
        missing = sorted("/".join(k) for k in set(want) - set(got))
        extra = sorted("/".join(k) for k in set(got) - set(want))
        raise ConfigError(
            f"{where}: variables do not match a {name} generator (missing {missing[:3]}, "
            f"unexpected {extra[:3]})"
        )
    for k, spec in want.items():
        a = got[k]
        if not isinstance(a, np.ndarray) or a.shape != spec.shape or a.dtype != spec.dtype:
            shape = getattr(a, "shape", None)
            raise ConfigError(
                f"{where}: {'/'.join(k)} has shape {shape}, expected {spec.shape} {spec.dtype}"
            )
    variables = traverse_util.unflatten_dict(got)
    info = {
        "generator": name,
        "settings": settings,
        "latent_dim": latent_dim,
        "meta": dict(raw.get("meta") or {}),
    }
    return module, variables, info
