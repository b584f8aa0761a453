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
from leakjax.attacks.base import Attack, Reconstruction
from leakjax.attacks.registry import AttackSpec
from leakjax.attacks.simulation import SIMULATIONS, simulated_update
from leakjax.types import ConfigError

LABEL_MODES = ("auto", "optimize", "fixed")
LINESEARCHES = ("zoom", "none")
INITS = ("randn", "uniform")


@dataclasses.dataclass(frozen=True)
class DLGConfig:
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
      factored: 'gradient' mode: keep big dense-kernel gradients factored
        (`leakjax.attacks.lowrank`; same objective to float32 rounding, several times faster).
    """

    lr: float = 1.0
    memory: int = 100
    linesearch: str = "zoom"
    linesearch_steps: int = 20
    labels: str = "auto"
    init: str = "randn"
    num_images: int | None = None
    simulation: str = "exact"
    remat: bool = False
    factored: bool = True


@struct.dataclass
class DLGState:
    params: dict  # {'x': images [B, H, W, C], optionally 'y': label logits [B, C]}
    opt_state: optax.OptState
    step: jax.Array


def check_config(cfg: DLGConfig, mode: str, label_modes=LABEL_MODES) -> None:
    """One-line ConfigErrors for impossible settings."""
    if cfg.labels not in label_modes:
        raise ConfigError(f"attack.labels={cfg.labels!r} not in {label_modes}")
    if cfg.simulation not in SIMULATIONS:
        raise ConfigError(f"attack.simulation={cfg.simulation!r} not in {SIMULATIONS}")
    if cfg.linesearch not in LINESEARCHES:
        raise ConfigError(f"attack.linesearch={cfg.linesearch!r} not in {LINESEARCHES}")
    if cfg.init not in INITS:
        raise ConfigError(f"attack.init={cfg.init!r} not in {INITS}")
    if not cfg.lr > 0:
        raise ConfigError(f"attack.lr must be > 0, got {cfg.lr}")
    if int(cfg.memory) < 1:
        raise ConfigError(f"attack.lbfgs_memory must be >= 1, got {cfg.memory}")
    if int(cfg.linesearch_steps) < 1:
        raise ConfigError(f"attack.linesearch_steps must be >= 1, got {cfg.linesearch_steps}")
    if cfg.num_images is not None and int(cfg.num_images) < 1:
        raise ConfigError(f"attack.num_images must be >= 1, got {cfg.num_images}")
    if mode not in ("gradient", "fedavg"):
        raise ConfigError(f"attack.mode={mode!r} not in ('gradient', 'fedavg')")


def lbfgs(cfg: DLGConfig) -> optax.GradientTransformationExtraArgs:
    """The L-BFGS transformation of a DLG/iDLG config."""
    if cfg.linesearch == "zoom":
        ls = optax.scale_by_zoom_linesearch(
            max_linesearch_steps=int(cfg.linesearch_steps), initial_guess_strategy="one"
        )
    else:
        ls = None
    return optax.lbfgs(learning_rate=cfg.lr, memory_size=int(cfg.memory), linesearch=ls)


def matching_attack(obs, model, cfg: DLGConfig, fixed, *, box) -> Attack:
    """L2 update matching with L-BFGS over images (and label logits if ``fixed`` is None).

    Shared by DLG and iDLG. ``fixed``: int labels [B] or None (optimize soft labels).
    """
    num = int(cfg.num_images or obs.num_samples)
    if obs.mode == "fedavg" and num != obs.num_samples:
        raise ConfigError(
            f"attack.num_images={num} but the client trained on {obs.num_samples} samples"
        )
    shape = (num,) + tuple(model.input_shape)
    c = int(model.num_classes)
    lo, hi = (jnp.asarray(b, jnp.float32) for b in box)
    opt = lbfgs(cfg)

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
) -> Attack:
    """DLG against one observation.

    Args:
      obs: `leakjax.observation.Observation` ('gradient' or 'fedavg' mode).
      model: `leakjax.models.Model` the client trains.
      cfg: DLGConfig.
      steps: number of L-BFGS iterations (unused by the optimizer; kept for the interface).
      box: (lo, hi) per-channel bounds of valid normalized pixels (used by ``init='uniform'``).
      labels: fixed int labels [B] (true or inferred upstream), or None.
    """
    del steps
    check_config(cfg, obs.mode)
    mode = cfg.labels
    if mode == "auto":
        mode = "fixed" if labels is not None else "optimize"
    if mode == "fixed":
        if labels is None:
            raise ConfigError("attack.labels: fixed labels requested but none were given")
        fixed = jnp.asarray(labels, jnp.int32)
    else:
        fixed = None
    return matching_attack(obs, model, cfg, fixed, box=box)


def label_mode(config_labels: str) -> str:
    """Map ``attack.labels`` to DLG's label mode: upstream labels (oracle or a
    `leakjax.labels` method) arrive as fixed labels."""
    return config_labels if config_labels in ("auto", "optimize") else "fixed"


def options(acfg) -> dict:
    """The L-BFGS and simulation settings shared by DLG and iDLG, from ``attack``."""
    return dict(
        lr=float(acfg.lr),
        memory=int(acfg.get("lbfgs_memory", 100)),
        linesearch=str(acfg.get("linesearch", "zoom")),
        linesearch_steps=int(acfg.get("linesearch_steps", 20)),
        init=str(acfg.get("init", "randn")),
        simulation=str(acfg.get("simulation", "exact")),
        remat=bool(acfg.get("remat", False)),
        factored=bool(acfg.get("factored", True)),
    )


def config_from(acfg) -> DLGConfig:
    """DLGConfig from a config's ``attack`` group (keys: lr, lbfgs_memory, linesearch,
    linesearch_steps, labels, init, simulation, remat, factored)."""
    return DLGConfig(labels=label_mode(str(acfg.labels)), **options(acfg))


def _check(acfg) -> None:
    from leakjax import labels as labels_lib

    allowed = ("auto", "optimize", "oracle") + tuple(labels_lib.METHODS)
    if str(acfg.labels) not in allowed:
        raise ConfigError(f"attack.labels={acfg.labels!r} is not one of {allowed}")
    check_config(config_from(acfg), str(acfg.mode))


def _build(obs, model, acfg, *, box, labels=None) -> Attack:
    return make(obs, model, config_from(acfg), steps=int(acfg.steps), box=box, labels=labels)


def uses_zoom_linesearch(acfg) -> bool:
    """True with the (default) zoom line search: vmapped, it evaluates every restart until the
    slowest is done, so on CPU `attacks.run` runs DLG's restarts one after another."""
    return str(acfg.get("linesearch", "zoom")) == "zoom"


SPEC = AttackSpec(
    name="dlg",
    modes=("gradient", "fedavg"),
    kind="optimization",
    build=_build,
    check=_check,
    paper="Zhu, Liu, Han 2019, Deep Leakage from Gradients, arXiv:1906.08935",
    sequential_on_cpu=uses_zoom_linesearch,
)
