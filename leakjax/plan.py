"""Checks that need the data shapes and the model but no training: run by
`experiment.prepare`, before anything is written.

`dry_build` builds the configured attack on a stand-in observation of the real shapes
(the model's initial weights, a zero update, the smallest client's sample count) and traces
its ``init`` and ``step`` with `jax.eval_shape` (no arithmetic), so that an attack that cannot
run on this model, mode or data fails in seconds, not after FedAvg has trained.
A client-side attack (a `ClientAttackSpec`, e.g. DMGAN) has no `Attack` to trace: its client
is built instead (`leakjax.client_attack.build`: its data-dependent checks, no training).
"""

from __future__ import annotations

import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from leakjax import client_attack, data
from leakjax.attacks.registry import ClientAttackSpec
from leakjax.fl.client import ClientHParams
from leakjax.fl.observation import Observation
from leakjax.types import ConfigError


def stand_in_observation(p, num_samples: int) -> Observation:
    """An observation with the experiment's shapes: initial weights, zero update."""
    variables = p.model.init(jax.random.key(0))
    update = jax.tree.map(jnp.zeros_like, variables["params"])
    a, s = p.config.attack, p.settings
    fedavg = str(a.mode) == "fedavg"
    return Observation(
        variables=variables,
        update=update,
        variables_after=variables if fedavg else None,
        hp=ClientHParams(
            lr=jnp.float32(s.lr),
            momentum=jnp.float32(s.momentum),
            weight_decay=jnp.float32(s.weight_decay),
            epochs=int(s.epochs) if fedavg else 1,
            batch_size=int(s.batch_size) if fedavg else int(num_samples),
        ),
        mode=str(a.mode),
        num_samples=int(num_samples),
    )


def dry_build(p) -> None:
    """Build and trace the attack on a stand-in observation; a failure is a ConfigError
    naming the attack, model and mode."""
    a = p.config.attack
    if isinstance(p.spec, ClientAttackSpec):  # no Attack to trace: build the client (its checks)
        client_attack.build(p)
        return
    n = int(a.batch_size) if str(a.mode) == "gradient" else int(np.min(p.train.n))
    obs = stand_in_observation(p, n)
    labels = None
    if p.spec.upstream_labels(str(a.labels)) is not None:
        labels = np.zeros((n,), np.int32)
    lo, hi = data.box(p.mean, p.std)
    box = (jnp.asarray(lo), jnp.asarray(hi))
    where = f"attack.name={a.name!r} on model.name={p.config.model.name!r} ({a.mode} mode)"
    try:
        attack = p.spec.build(obs, p.model, a, box=box, labels=labels)
        key = jax.random.key(0)
        state = jax.eval_shape(attack.init, key)
        jax.eval_shape(attack.step, state, key)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to build or trace is bad input
        msg = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"{where} cannot run: {type(e).__name__}: {msg[:300]}") from e


def check_workdir(workdir: pathlib.Path, *, resume: bool) -> None:
    """The workdir can be created and written (checked before anything is written)."""
    target = workdir
    while not target.exists():
        if target.parent == target:
            break
        target = target.parent
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--workdir {str(workdir)!r}: {str(target)!r} is not a directory")
    try:  # os.access says yes to root on a read-only mount: try it (the file vanishes)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as e:
        raise ConfigError(
            f"--workdir {str(workdir)!r}: {str(target)!r} is not writable ({e.strerror})"
        ) from None
