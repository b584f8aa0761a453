"""Inverting Gradients (Geiping, Bauermeister, Droege, Moeller 2020,
"Inverting Gradients -- How easy is it to break privacy in federated learning?",
https://arxiv.org/abs/2003.14053).

Dummy images (and soft labels, when they are not known) are optimized so that the
update they produce matches the observed one in cosine distance, with a total
variation prior and a box constraint to valid pixel values. Adam is run on the
*sign* of the image gradient with a step-decay schedule (x0.1 at 3/8, 5/8 and 7/8
of the steps), as in the paper and the reference (ig.py).

Two modes:
- ``gradient``: the observation is one gradient of the client's batch; the dummy
  gradient is `leakjax.fl.gradient` at the same weights.
- ``fedavg``: the observation is ``params_before - params_after`` of a client's whole
  local training; the dummy update is produced by `leakjax.fl.client_update` (the
  library's one local-training loop) run on the dummy batch. ``simulation='exact'``
  uses the client's public hyperparameters (lr of the round, momentum, weight decay,
  epochs, minibatch size); ``simulation='reference'`` reproduces the reference's
  simplification (``epochs`` full-batch steps, no momentum or weight decay).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from leakjax.attacks import losses
from leakjax.attacks.base import Attack, Reconstruction, hyperparams
from leakjax.attacks.registry import AttackSpec, register, resolve_labels
from leakjax.attacks.simulation import FACTORED_MODES, SIMULATIONS, simulated_update
from leakjax.labels.idlg import idlg_label
from leakjax.settings import setting
from leakjax.types import ConfigError

LABEL_MODES = ("auto", "idlg", "optimize", "fixed")
HYPERPARAMS = ("lr", "tv", "grad_reg")  # traced (`leakjax.attacks.base.hyperparams`)


@dataclasses.dataclass(frozen=True)
class IGConfig(losses.MatchOptions):
    """Hyperparameters (defaults: the reference's ig.py).

    Attributes:
      lr: Adam step size (decayed x0.1 at the milestones).
      tv: weight of the L1 total-variation prior.
      loss: 'cosine' (IG) or 'l2' / 'layerwise_cosine'.
      signed: Adam on sign(gradient) of the images.
      boxed: project the images to valid pixel values after every step.
      milestones: fractions of the steps where the lr is multiplied by ``gamma``.
      labels: 'auto' (the labels given to `make` if any, else the iDLG rule for one
        image, else optimized soft labels), 'idlg', 'optimize', or 'fixed' (the labels
        given to `make`: the truth under ``attack.labels='oracle'`` or the output of a
        label-inference method from `leakjax.labels`).
      init: 'randn' or 'uniform' (uniform in the valid box).
      num_images: number of dummies (default: the observation's sample count).
      simulation: fedavg mode: 'exact' or 'reference' (see the module docstring).
      remat: rematerialize the simulated local steps (memory vs one extra forward).
      factored: 'auto' / 'on' / 'off'. 'gradient' mode: keep big dense-kernel gradients factored
        (`leakjax.attacks.lowrank`; same objective to float32 rounding, several times faster).
        'fedavg' mode: the simulated client's big dense kernels factored through its local
        steps (`leakjax.fl.factored`; 'auto': above its size threshold; 'off': dense).
      match_layers, match_fraction, grad_reg: FedLeak's partial matching and gradient
        regularization (`leakjax.attacks.losses.MatchOptions`; defaults: off).
    """

    lr: float = setting(0.1, low=0, low_open=True)
    tv: float = setting(1e-6, low=0)
    loss: str = setting("cosine", choices=tuple(losses.MATCHING))
    signed: bool = True
    boxed: bool = True
    milestones: tuple[float, ...] = (3 / 8, 5 / 8, 7 / 8)
    gamma: float = setting(0.1, low=0, low_open=True)
    labels: str = "auto"
    init: str = setting("randn", choices=("randn", "uniform"))
    num_images: int | None = setting(None, low=1)
    simulation: str = setting("exact", choices=SIMULATIONS)
    remat: bool = False
    factored: str = setting("auto", choices=FACTORED_MODES)


@struct.dataclass
class IGState:
    x: jax.Array  # dummy images, normalized [B, H, W, C]
    y: jax.Array  # label logits [B, C] (unused when labels are fixed)
    opt_state: optax.OptState
    step: jax.Array


def check_config(cfg: IGConfig, mode: str) -> None:
    """One-line ConfigErrors for impossible settings."""
    if cfg.labels not in LABEL_MODES:
        raise ConfigError(f"attack.labels={cfg.labels!r} not in {LABEL_MODES}")
    if cfg.simulation not in SIMULATIONS:
        raise ConfigError(f"attack.simulation={cfg.simulation!r} not in {SIMULATIONS}")
    if cfg.loss not in losses.MATCHING:
        raise ConfigError(f"attack.loss={cfg.loss!r} not in {tuple(losses.MATCHING)}")
    if cfg.init not in ("randn", "uniform"):
        raise ConfigError(f"attack.init={cfg.init!r} not in ('randn', 'uniform')")
    if cfg.lr <= 0:
        raise ConfigError(f"attack.lr must be > 0, got {cfg.lr}")
    if cfg.tv < 0:
        raise ConfigError(f"attack.tv must be >= 0, got {cfg.tv}")
    if mode not in ("gradient", "fedavg"):
        raise ConfigError(f"attack.mode={mode!r} not in ('gradient', 'fedavg')")


def make(
    obs,
    model,
    cfg: IGConfig,
    *,
    steps: int,
    box: tuple[jax.Array, jax.Array],
    labels=None,
    hparams: dict | None = None,
) -> Attack:
    """Inverting Gradients against one observation.

    Args:
      obs: `leakjax.fl.observation.Observation` ('gradient' or 'fedavg' mode).
      model: `leakjax.models.Model` the client trains.
      cfg: IGConfig.
      steps: number of optimization steps (sets the lr milestones).
      box: (lo, hi) per-channel bounds of valid normalized pixels.
      labels: fixed int labels [B] (true or inferred upstream), or None.
      hparams: traced {'lr', 'tv', 'grad_reg'} (float32 scalars) used instead of those
        settings; None: the settings' values.
    """
    check_config(cfg, obs.mode)
    hp = hyperparams(cfg, HYPERPARAMS, hparams)
    num = cfg.num_images or obs.num_samples
    if obs.mode == "fedavg" and num != obs.num_samples:
        raise ConfigError(
            f"attack.num_images={num} but the client trained on {obs.num_samples} samples"
        )
    shape = (num,) + tuple(model.input_shape)
    c = model.num_classes
    lo, hi = (jnp.asarray(b, jnp.float32) for b in box)

    mode, fixed = resolve_labels(cfg.labels, labels, otherwise="idlg" if num == 1 else "optimize")
    if mode == "idlg":
        if num != 1:
            raise ConfigError("attack.labels='idlg' needs exactly one image (use 'optimize')")
        fixed = jnp.reshape(idlg_label(obs.update), (1,))

    match = losses.fedleak_match(
        losses.MATCHING[cfg.loss], obs.update, cfg, hp["grad_reg"], hparams is not None
    )
    schedule = optax.piecewise_constant_schedule(
        hp["lr"], {max(1, int(steps * m)): cfg.gamma for m in cfg.milestones}
    )
    opt = optax.adam(schedule)

    def labels_of(y_logits):
        return fixed if fixed is not None else jax.nn.softmax(y_logits, axis=-1)

    def objective(x, y_logits):
        upd = simulated_update(
            model, obs, x, labels_of(y_logits), cfg.simulation, cfg.remat, factored=cfg.factored
        )
        return match(upd) + hp["tv"] * losses.tv_l1(x)

    def init(key):
        kx, ky = jax.random.split(key)
        if cfg.init == "randn":
            x = jax.random.normal(kx, shape)
        else:
            x = jax.random.uniform(kx, shape, minval=lo, maxval=hi)
        y = jax.random.normal(ky, (num, c))
        params = {"x": x, "y": y}
        return IGState(x=x, y=y, opt_state=opt.init(params), step=jnp.int32(0))

    def step(state, key):
        del key
        loss, (gx, gy) = jax.value_and_grad(objective, argnums=(0, 1))(state.x, state.y)
        if cfg.signed:
            gx = jnp.sign(gx)
        grads = {"x": gx, "y": gy if fixed is None else jnp.zeros_like(gy)}
        params = {"x": state.x, "y": state.y}
        updates, opt_state = opt.update(grads, state.opt_state, params)
        params = optax.apply_updates(params, updates)
        x = jnp.clip(params["x"], lo, hi) if cfg.boxed else params["x"]
        new = IGState(x=x, y=params["y"], opt_state=opt_state, step=state.step + 1)
        return new, {"loss": loss}

    def result(state):
        labels = fixed if fixed is not None else jnp.argmax(state.y, axis=-1).astype(jnp.int32)
        return Reconstruction(images=state.x, labels=labels)

    return Attack(init=init, step=step, result=result)


SPEC = register(
    AttackSpec(
        name="ig",
        modes=("gradient", "fedavg"),
        make=make,
        settings=IGConfig,
        label_modes=("auto", "idlg", "optimize"),
        check=check_config,
        paper="Geiping et al. 2020, Inverting Gradients, arXiv:2003.14053",
        hyperparams=HYPERPARAMS,
    )
)
