"""The attack interface.

An attack is a factory ``make(observation, model, cfg, ...) -> Attack(init, step, result)``
of pure functions (the optax ``GradientTransformation`` pattern): ``init(key) -> state``,
``step(state, key) -> (state, {'loss': scalar, ...})``, ``result(state) ->
Reconstruction``. `run` (`leakjax.attacks.runner`) owns everything else:
jit, `lax.scan` in chunks, `vmap` over restarts and over trials (independent
observations), optionally the trials split across devices (jit + `NamedSharding` over a
1-D mesh), progress lines, NaN/Inf detection per restart, checkpoints
(`leakjax.attacks.checkpoint`), SIGINT/SIGTERM (`leakjax.attacks.signals`) and
best-restart selection. Attacks never write files.

Hyperparameters (``AttackSpec.hyperparams``: learning rates, prior weights) are traced, apart
from the static settings: ``make(..., hparams={'lr': f32, ...})`` reads them from ``hparams``
(`hyperparams`), and ``attacks.run(factory, ..., hparams=...)`` passes them to its jitted
programs as arguments, so one compiled program serves any values (a leading axis on them runs
several settings at once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from leakjax.fl.schedule import local_steps
from leakjax.types import Array, ConfigError, PRNGKey


def hyperparams(settings, names: tuple[str, ...], given: dict | None = None) -> dict:
    """An attack's traced hyperparameters: ``given`` (e.g. tracers from `attacks.run`), or
    when None the fields ``names`` of ``settings`` as float32 scalars (baked-in constants).

    Raises:
      ValueError: ``given`` does not hold exactly ``names``.
    """
    if given is None:
        return {n: jnp.float32(getattr(settings, n)) for n in names}
    if set(given) != set(names):
        raise ValueError(f"hparams {sorted(given)} are not the attack's {sorted(names)}")
    return dict(given)


def require_one_step(name: str, config) -> None:
    """An analytic attack that reads a gradient takes fedavg mode only as one local step on
    all the client's data (then the update is ``lr (g + wd w)``): refuses ``fl.local_epochs
    != 1`` in ``attack.mode='fedavg'`` (one line; its ``requires`` hook). The batch size is
    checked on the observation (:func:`check_one_step`)."""
    if str(config.attack.mode) == "fedavg" and int(config.fl.local_epochs) != 1:
        raise ConfigError(
            f"attack.name={name!r} in attack.mode='fedavg' needs one local step "
            f"(fl.local_epochs=1, fl.batch_size >= the client's samples), "
            f"got fl.local_epochs={config.fl.local_epochs}"
        )


def check_one_step(name: str, obs) -> None:
    """Refuses (one line) a fedavg observation of more than one local step."""
    b = int(obs.num_samples)
    if obs.mode == "fedavg" and local_steps(b, obs.hp.epochs, obs.hp.batch_size) != 1:
        raise ConfigError(
            f"attack.name={name!r} in attack.mode='fedavg' needs one local step on all the "
            f"client's data (fl.local_epochs=1, fl.batch_size >= {b}), got "
            f"{local_steps(b, obs.hp.epochs, obs.hp.batch_size)} steps"
        )


def one_step_gradient(obs, update, before):
    """The gradient up to the factor ``lr``: ``update`` itself in gradient mode; in fedavg
    mode of one local step (:func:`check_one_step`) ``before - after = lr (g + wd w)``, so the
    known ``lr wd w`` (``before``: the same layers' weights the client received) is removed.
    Pytrees of the same structure; float32 leaves."""
    update = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), update)
    if obs.mode != "fedavg":
        return update
    mult = jnp.asarray(obs.hp.lr, jnp.float32) * jnp.asarray(obs.hp.weight_decay, jnp.float32)
    return jax.tree.map(lambda u, w: u - mult * jnp.asarray(w, jnp.float32), update, before)


class Reconstruction(NamedTuple):
    """What an attack outputs: normalized NHWC images and (optionally) int labels."""

    images: Array
    labels: Array | None = None


class Attack(NamedTuple):
    """Pure functions of one attack on one observation."""

    init: Callable[[PRNGKey], Any]
    step: Callable[[Any, PRNGKey], tuple[Any, dict]]
    result: Callable[[Any], Reconstruction]


def closed_form(solve: Callable[[PRNGKey], Any], metrics: Callable[[Any], dict]) -> Attack:
    """An analytic attack (RTF, R-GAP, SPEAR) as an `Attack`: ``solve(key)`` computes the
    state once, in ``init`` (a NamedTuple with ``images`` and a bool ``finite``); every step
    keeps it and reports loss 0 (NaN when the solution is not finite, which the runner
    counts as a failed restart) and ``metrics(state)``."""

    def step(state, key):
        del key
        loss = jnp.where(state.finite, 0.0, jnp.nan).astype(jnp.float32)
        return state, {"loss": loss, **metrics(state)}

    def result(state):
        return Reconstruction(images=state.images, labels=None)

    return Attack(init=solve, step=step, result=result)


@dataclasses.dataclass
class RunResult:
    """The outcome of `run` (host numpy arrays; leading axis = trial).

    Attributes:
      reconstruction: the best restart's Reconstruction per trial: images [T, B, H, W, C].
      restarts: every restart's Reconstruction: images [T, R, B, H, W, C].
      losses: [T, R, steps] loss at every step (NaN after a restart failed).
      final_loss: [T, R] last finite loss of each restart.
      best: [T] index of the selected restart (lowest final loss among healthy ones).
      failed: [T, R] whether the restart hit NaN/Inf; failed_step: [T, R] (-1 if not).
      trial_failed: [T] all restarts of the trial failed.
      steps; seconds: total wall time, of all parts of a resumed run together;
      compile_seconds: this part's first chunk incl. compile (0 if it ran no chunk);
      seconds_parts: the wall time of each part (one entry unless resumed).
    """

    reconstruction: Reconstruction
    restarts: Reconstruction
    losses: np.ndarray
    final_loss: np.ndarray
    best: np.ndarray
    failed: np.ndarray
    failed_step: np.ndarray
    trial_failed: np.ndarray
    steps: int
    seconds: float
    compile_seconds: float
    seconds_parts: list[float] = dataclasses.field(default_factory=list)
