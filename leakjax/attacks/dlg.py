"""Deep Leakage from Gradients (Zhu, Liu, Han 2019, "Deep Leakage from Gradients",
NeurIPS, https://arxiv.org/abs/1906.08935).

Dummy images and dummy label logits are optimized jointly with L-BFGS so that the
update they produce matches the observed one in squared L2 distance summed over the
parameter tensors; the dummy labels enter the cross-entropy as soft labels
softmax(logits), and the recovered label is their argmax. When labels are given
(the truth under ``attack.labels='oracle'``, or the output of a `leakjax.labels`
method), only the images are optimized.

Optimizer: `optax.lbfgs` with a zoom line search; one attack step is one L-BFGS
iteration including its line search (a few objective evaluations). The reference
(attack/dlg.py) calls torch's LBFGS (lr 1, history 100, no line search, up to 20
iterations per call) 300 times, i.e. up to 6000 fixed-step iterations; ``lr`` here
scales the direction that the line search starts from, ``memory`` is the history
length, and ``linesearch='none'`` takes fixed steps of size ``lr`` as torch does.

Two modes (both through `leakjax.attacks.simulation.simulated_update`):
- ``gradient``: the dummy gradient at the observed weights is compared with the
  observed gradient.
- ``fedavg``: the dummy data are run through the client's local training
  (`leakjax.fl.client_update`) and the simulated model difference
  ``params_before - params_after`` is compared with the observed one: both sides have
  the same scale. The PyTorch reference compared a single dummy gradient with the raw
  model difference (lr times a sum of many steps; REFERENCE.md §5 item 5), which
  matches neither scale nor direction once there is more than one local step.
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
from leakjax.settings import Checked, setting
from leakjax.types import ConfigError

LABEL_MODES = ("auto", "optimize", "fixed")
LINESEARCHES = ("zoom", "none")
INITS = ("randn", "uniform")
HYPERPARAMS = ("lr",)  # traced (`leakjax.attacks.base.hyperparams`)


@dataclasses.dataclass(frozen=True)
class DLGConfig(Checked):
    """Hyperparameters (defaults: the reference's dlg.py, L-BFGS lr 1 and history 100).

    Attributes:
      lr: scale of the L-BFGS direction (the line search's first trial step).
      memory: number of L-BFGS curvature pairs kept.
      linesearch: 'zoom' (strong-Wolfe zoom line search) or 'none' (fixed steps, as
        torch's LBFGS without ``line_search_fn``).
      linesearch_steps: most objective evaluations per line search.
      labels: 'auto' (the labels given to `make` if any, else optimized), 'optimize'
        (joint soft-label optimization even when labels are given), or 'fixed' (the
        labels given to `make`).
      init: 'randn' (the reference) or 'uniform' (uniform in the valid box).
      num_images: number of dummies (default: the observation's sample count).
      simulation: fedavg mode: 'exact' (the client's hyperparameters) or 'reference'.
      remat: rematerialize the simulated local steps.
      factored: 'auto' / 'on' / 'off'. 'gradient' mode: keep big dense-kernel gradients factored
        (`leakjax.attacks.lowrank`; same objective to float32 rounding, several times faster).
        'fedavg' mode: the simulated client's big dense kernels factored through its local
        steps (`leakjax.fl.factored`; 'auto': above its size threshold; 'off': dense).
    """

    lr: float = setting(1.0, low=0, low_open=True)
    memory: int = setting(100, low=1, key="lbfgs_memory")
    linesearch: str = setting("zoom", choices=LINESEARCHES)
    linesearch_steps: int = setting(20, low=1)
    labels: str = "auto"
    init: str = setting("randn", choices=INITS)
    num_images: int | None = setting(None, low=1)
    simulation: str = setting("exact", choices=SIMULATIONS)
    remat: bool = False
    factored: str = setting("auto", choices=FACTORED_MODES)


@struct.dataclass
class DLGState:
    params: dict  # {'x': images [B, H, W, C], optionally 'y': label logits [B, C]}
    opt_state: optax.OptState
    step: jax.Array


def check_config(cfg: DLGConfig, mode: str, label_modes=LABEL_MODES) -> None:
    """One-line ConfigErrors for settings the binder cannot check alone."""
    if cfg.labels not in label_modes:
        raise ConfigError(f"attack.labels={cfg.labels!r} not in {label_modes}")
    if mode not in ("gradient", "fedavg"):
        raise ConfigError(f"attack.mode={mode!r} not in ('gradient', 'fedavg')")


def lbfgs(cfg: DLGConfig, lr) -> optax.GradientTransformationExtraArgs:
    """The L-BFGS transformation of a DLG/iDLG config with learning rate ``lr`` (traced)."""
    if cfg.linesearch == "zoom":
        ls = optax.scale_by_zoom_linesearch(
            max_linesearch_steps=int(cfg.linesearch_steps), initial_guess_strategy="one"
        )
    else:
        ls = None
    return optax.lbfgs(learning_rate=lr, memory_size=int(cfg.memory), linesearch=ls)


def matching_attack(obs, model, cfg: DLGConfig, fixed, *, box, hparams=None) -> Attack:
    """L2 update matching with L-BFGS over images (and label logits if ``fixed`` is None).

    Shared by DLG and iDLG. ``fixed``: int labels [B] or None (optimize soft labels);
    ``hparams``: traced {'lr'} (None: ``cfg.lr``).
    """
    num = int(cfg.num_images or obs.num_samples)
    if obs.mode == "fedavg" and num != obs.num_samples:
        raise ConfigError(
            f"attack.num_images={num} but the client trained on {obs.num_samples} samples"
        )
    shape = (num,) + tuple(model.input_shape)
    c = int(model.num_classes)
    lo, hi = (jnp.asarray(b, jnp.float32) for b in box)
    opt = lbfgs(cfg, hyperparams(cfg, HYPERPARAMS, hparams)["lr"])

    def objective(params):
        y = fixed if fixed is not None else jax.nn.softmax(params["y"], axis=-1)
        upd = simulated_update(
            model, obs, params["x"], y, cfg.simulation, cfg.remat, factored=cfg.factored
        )
        return losses.l2(upd, obs.update)

    if cfg.linesearch == "zoom":  # reuse the value and gradient the line search computed
        value_and_grad = optax.value_and_grad_from_state(objective)
    else:
        value_and_grad = lambda p, state: jax.value_and_grad(objective)(p)  # noqa: E731

    def init(key):
        kx, ky = jax.random.split(key)
        if cfg.init == "randn":
            x = jax.random.normal(kx, shape)
        else:
            x = jax.random.uniform(kx, shape, minval=lo, maxval=hi)
        params = {"x": x}
        if fixed is None:
            params["y"] = jax.random.normal(ky, (num, c))
        return DLGState(params=params, opt_state=opt.init(params), step=jnp.int32(0))

    def step(state, key):
        del key
        value, grad = value_and_grad(state.params, state=state.opt_state)
        updates, opt_state = opt.update(
            grad, state.opt_state, state.params, value=value, grad=grad, value_fn=objective
        )
        params = optax.apply_updates(state.params, updates)
        new = DLGState(params=params, opt_state=opt_state, step=state.step + 1)
        return new, {"loss": value}

    def result(state):
        if fixed is not None:
            labels = fixed
        else:
            labels = jnp.argmax(state.params["y"], axis=-1).astype(jnp.int32)
        return Reconstruction(images=state.params["x"], labels=labels)

    return Attack(init=init, step=step, result=result)


def make(
    obs,
    model,
    cfg: DLGConfig,
    *,
    steps: int,
    box: tuple[jax.Array, jax.Array],
    labels=None,
    hparams: dict | None = None,
) -> Attack:
    """DLG against one observation.

    Args:
      obs: `leakjax.fl.observation.Observation` ('gradient' or 'fedavg' mode).
      model: `leakjax.models.Model` the client trains.
      cfg: DLGConfig.
      steps: number of L-BFGS iterations (unused by the optimizer; kept for the interface).
      box: (lo, hi) per-channel bounds of valid normalized pixels (used by ``init='uniform'``).
      labels: fixed int labels [B] (true or inferred upstream), or None.
      hparams: traced {'lr'} (a float32 scalar) used instead of ``cfg.lr``; None: ``cfg.lr``.
    """
    del steps
    check_config(cfg, obs.mode)
    _, fixed = resolve_labels(cfg.labels, labels, otherwise="optimize")
    return matching_attack(obs, model, cfg, fixed, box=box, hparams=hparams)


def uses_zoom_linesearch(cfg: DLGConfig) -> bool:
    """True with the (default) zoom line search: vmapped, it evaluates every restart until the
    slowest is done, so on CPU `attacks.run` runs DLG's restarts one after another."""
    return cfg.linesearch == "zoom"


SPEC = register(
    AttackSpec(
        name="dlg",
        modes=("gradient", "fedavg"),
        make=make,
        settings=DLGConfig,
        label_modes=("auto", "optimize"),
        check=check_config,
        paper="Zhu, Liu, Han 2019, Deep Leakage from Gradients, arXiv:1906.08935",
        sequential_on_cpu=uses_zoom_linesearch,
        hyperparams=HYPERPARAMS,
    )
)
