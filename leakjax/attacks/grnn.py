"""GRNN: Generative Regression Neural Network (Ren, Deng, Xie 2022, "GRNN: Generative
Regression Neural Network -- A Data Leakage Attack for Federated Learning", ACM TIST,
https://arxiv.org/abs/2105.00529), as benchmarked by Zhu, Huang, Xie
(https://arxiv.org/abs/2409.19301, Algorithm 4, Figs. 16, 17, 25).

Instead of optimizing dummy images, GRNN optimizes the parameters of a freshly initialized
generator (`leakjax.models.generators.GRNNGenerator`) that maps fixed noise
``z ~ N(0, 1)`` [B, 128] to images and soft labels, so that the update those (image,
soft label) pairs produce matches the observed one:

    L = ||d||^2 + ||d||_2 + tv * TV(G(z)),   d = flatten(update(G(z))) - flatten(observed)

The paper's third term is a "Wasserstein distance" between the flattened updates; in the
authors' code (and the reference, grnn.py:80-89) it is computed as
``(mean(||d||_2 ** p)) ** (1/p)`` of a scalar, i.e. exactly ``||d||_2``, which is what is
used here. TV is the authors' ``TVLoss``: ``2 * (mean squared horizontal + vertical
neighbour difference)`` (= ``2 * losses.tv_l2``), on the generator's [0, 1] output. The
generator is optimized with RMSprop (torch semantics: smoothing 0.99, eps outside the
square root) with momentum 0.99 and lr 1e-4, as in the reference.

Fix of the reference (REFERENCE.md §5 item 7): its generator ends in a sigmoid, [0, 1],
while the model sees normalized data; here the sigmoid output is mapped into the data's
normalized box, ``x = lo + (hi - lo) * G(z)``, so the dummies live where real data do.

Two modes (the dummy update comes from `leakjax.attacks.simulation.simulated_update`):
``gradient`` (one gradient at the observed weights) and ``fedavg`` (the client's local
training re-run with `leakjax.fl.client_update` on the generated batch; both the
simulated and the observed ``theta_0 - theta_T`` are divided by the round's lr so that
the loss is on the scale of a gradient, where the ``||d||_2`` term and the TV weight mean
what they mean in gradient mode). The reference instead compares one gradient of 4
generated images with the raw ``theta_0 - theta_T`` of the whole local training.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from leakjax.attacks import losses
from leakjax.attacks.base import Attack, Reconstruction, hyperparams
from leakjax.attacks.registry import AttackSpec, register, resolve_labels
from leakjax.attacks.simulation import FACTORED_MODES, SIMULATIONS, simulated_update
from leakjax.models.conv import IMPLS
from leakjax.models.generators import GRNNGenerator, generate, init_generator
from leakjax.settings import Checked, setting
from leakjax.types import Array, ConfigError

LABEL_MODES = ("auto", "generate", "optimize", "fixed")  # optimize: as generate
_TINY = 1e-12


@dataclasses.dataclass(frozen=True)
class GRNNConfig(Checked):
    """Hyperparameters (defaults: the reference's grnn.py / grnn_attack.py).

    Attributes:
      lr: RMSprop step size on the generator's parameters.
      momentum: RMSprop momentum.
      decay: RMSprop smoothing constant (torch's ``alpha``).
      eps: RMSprop epsilon (added to the root, as torch does).
      tv: weight of the TV prior (1e-3 for lenet/cnn, 1e-6 for resnet18 in the reference).
      labels: 'auto' (the labels given to `make` if any, else the generator's label head),
        'generate', or 'fixed' (the labels given to `make`).
      num_images: generated images (default: the observation's sample count; must equal
        it in fedavg mode).
      noise_dim: size of the fixed noise.
      simulation: fedavg mode: 'exact' or 'reference' (see `simulated_update`).
      remat: rematerialize the simulated local steps.
      factored: 'auto' / 'on' / 'off'. 'gradient' mode: keep big dense-kernel gradients factored
        (`leakjax.attacks.lowrank`; same objective to float32 rounding, several times faster).
        'fedavg' mode: the simulated client's big dense kernels factored through its local
        steps (`leakjax.fl.factored`; 'auto': above its size threshold; 'off': dense).
      conv_impl: the generator's convolution implementation (`leakjax.models.conv`).
    """

    lr: float = setting(1e-4, low=0, low_open=True)
    momentum: float = setting(0.99, low=0, high=1, high_open=True)
    decay: float = setting(0.99, low=0, low_open=True, high=1, high_open=True)
    eps: float = setting(1e-8, low=0, low_open=True)
    tv: float = setting(1e-3, low=0)
    labels: str = "auto"
    num_images: int | None = setting(None, low=1)
    noise_dim: int = setting(128, low=1)
    simulation: str = setting("exact", choices=SIMULATIONS)
    remat: bool = False
    factored: str = setting("auto", choices=FACTORED_MODES)
    conv_impl: str = setting("auto", choices=IMPLS)


@struct.dataclass
class GRNNState:
    gen: Any  # generator variables {'params', 'batch_stats'}
    z: Array  # fixed noise [B, noise_dim]
    opt_state: optax.OptState
    step: Array


def check_config(cfg: GRNNConfig, mode: str) -> None:
    """One-line ConfigErrors the binder cannot find alone."""
    if mode not in ("gradient", "fedavg"):
        raise ConfigError(f"attack.mode={mode!r} not in ('gradient', 'fedavg')")
    if cfg.labels not in LABEL_MODES:
        raise ConfigError(f"attack.labels={cfg.labels!r} not in {LABEL_MODES}")


def grnn_loss(update, observed) -> Array:
    """``||d||^2 + ||d||_2`` of the flattened difference (GRNN's L2 + "Wasserstein")."""
    sq = losses.l2(update, observed)
    return sq + jnp.sqrt(jnp.maximum(sq, _TINY))


HYPERPARAMS = ("lr", "tv")  # traced (`leakjax.attacks.base.hyperparams`)


def optimizer(cfg: GRNNConfig, lr) -> optax.GradientTransformation:
    """torch.optim.RMSprop(lr, alpha=decay, eps, momentum) as an optax transformation."""
    return optax.rmsprop(
        lr,
        decay=cfg.decay,
        eps=cfg.eps,
        eps_in_sqrt=False,
        momentum=cfg.momentum if cfg.momentum > 0 else None,
    )


def make(obs, model, cfg: GRNNConfig, *, steps: int, box, labels=None, hparams=None) -> Attack:
    """GRNN against one observation.

    Args:
      obs: `leakjax.fl.observation.Observation` ('gradient' or 'fedavg' mode).
      model: `leakjax.models.Model` the client trains.
      cfg: GRNNConfig.
      steps: number of optimization steps (unused: no schedule; kept for the interface).
      box: (lo, hi) per-channel bounds of valid normalized pixels.
      labels: fixed int labels [B] (true or inferred upstream), or None.
      hparams: traced {'lr', 'tv'} used instead of ``cfg.lr``/``cfg.tv`` (None: those).

    Returns:
      `Attack`; ``result`` gives the generated images (in the box) and labels.
    """
    del steps
    check_config(cfg, obs.mode)
    hp = hyperparams(cfg, HYPERPARAMS, hparams)
    num = cfg.num_images or obs.num_samples
    if obs.mode == "fedavg" and num != obs.num_samples:
        raise ConfigError(
            f"attack.num_images={num} but the client trained on {obs.num_samples} samples"
        )
    _, fixed = resolve_labels(cfg.labels, labels, otherwise="generate", num=num)

    gen = GRNNGenerator(model.num_classes, tuple(model.input_shape), impl=cfg.conv_impl)
    lo, hi = (jnp.asarray(v, jnp.float32) for v in box)
    opt = optimizer(cfg, hp["lr"])
    scale = 1.0 / jnp.asarray(obs.hp.lr, jnp.float32) if obs.mode == "fedavg" else 1.0
    observed = jax.tree.map(lambda u: u * scale, obs.update)

    def outputs(variables, z):
        (img, y), variables = generate(gen, variables, z, train=True)
        return lo + (hi - lo) * img, img, y, variables

    def objective(params, variables, z):
        x, img, y, variables = outputs({**variables, "params": params}, z)
        targets = fixed if fixed is not None else y
        upd = simulated_update(
            model, obs, x, targets, cfg.simulation, cfg.remat, factored=cfg.factored
        )
        upd = jax.tree.map(lambda u: u * scale, upd)
        loss = grnn_loss(upd, observed) + hp["tv"] * 2.0 * losses.tv_l2(img)
        return loss, variables

    def init(key):
        kg, kz = jax.random.split(key)
        variables = init_generator(gen, kg, num, cfg.noise_dim)
        z = jax.random.normal(kz, (num, cfg.noise_dim))
        opt_state = opt.init(variables["params"])
        return GRNNState(gen=variables, z=z, opt_state=opt_state, step=jnp.int32(0))

    def step(state, key):
        del key
        params = state.gen["params"]
        (loss, variables), g = jax.value_and_grad(objective, has_aux=True)(
            params, state.gen, state.z
        )
        updates, opt_state = opt.update(g, state.opt_state, params)
        variables = {**variables, "params": optax.apply_updates(params, updates)}
        new = GRNNState(gen=variables, z=state.z, opt_state=opt_state, step=state.step + 1)
        return new, {"loss": loss}

    def result(state):
        x, _, y, _ = outputs(state.gen, state.z)
        lab = fixed if fixed is not None else jnp.argmax(y, axis=-1).astype(jnp.int32)
        return Reconstruction(images=x, labels=lab)

    return Attack(init=init, step=step, result=result)


SPEC = register(
    AttackSpec(
        name="grnn",
        modes=("gradient", "fedavg"),
        make=make,
        settings=GRNNConfig,
        label_modes=("auto", "generate", "optimize"),
        check=check_config,
        paper="Ren, Deng, Xie 2022, GRNN, ACM TIST, arXiv:2105.00529",
        hyperparams=HYPERPARAMS,
    )
)
