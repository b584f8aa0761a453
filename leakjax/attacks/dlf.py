"""DLF: Data Leakage in Federated Averaging (Dimitrov, Balunovic, Konstantinov, Vechev 2022,
TMLR, https://arxiv.org/abs/2206.12395), as benchmarked by Zhu, Huang, Xie
(https://arxiv.org/abs/2409.19301, Figs. 8, 21, 44, 45).

The attacker reconstructs a FedAvg client's whole local set (N = ``obs.num_samples`` images)
from ``theta_0 - theta_T``:

- **Simulation.** The client's E epochs x ceil(N/B) minibatch SGD steps are re-run with
  `leakjax.fl.client_update` (the library's one local-training loop) on the dummies, with
  the client's public hyperparameters (lr of the round, momentum, weight decay, batch
  size; ``simulation='exact'``) or the reference's simplification (no momentum or weight
  decay; ``simulation='reference'``), and the simulated update is matched to the observed
  one in a layer-weighted squared L2 distance (w_l = e^{-l} for layer l, normalised so
  w_0 = 1, `losses.exp_layer_weights`), both divided by the lr and the sum divided by the
  steps per epoch, times a curriculum factor going geometrically from ``fac_start`` to
  ``fac_end`` over the first half of the steps.
- **Epoch copies and the epoch order-invariant prior** (the paper's second idea). The real
  client reshuffles its data every epoch and the attacker does not know the orders, so
  the images of every epoch are separate variables: ``x`` has shape [E, N, H, W, C]; epoch
  e's batches are consecutive slices of copy e. The copies are related by a prior that
  is invariant to the order inside each copy: for a permutation-invariant set function g,
  ``mean_{e, e'} mean((g(X_e) - g(X_e'))**2)``. ``order_prior='max_conv'`` (the paper's
  and the reference's default) takes g = elementwise max over the set of a *fixed* random
  3x3 convolution's features (drawn once per restart from its key); 'mean_conv', 'max'
  and 'mean' are the other set functions, and 'matching' penalises the mean squared
  distance between each copy and the first after optimal (Hungarian) matching of its
  images within each label. All are 0 when the copies hold the same images in any order.
- **Final reconstruction.** Each copy is matched to the first (Hungarian, squared L2,
  within labels) and the matched images are averaged (the paper's merge of epochs).
- **Priors on the images**: L1 total variation and a clip prior (squared distance of the
  pixels, in [0, 1] image space, to the valid range; computed from the data's box, so it
  works with any normalization).
- **Labels** are fixed and must be given to `make` (from a label-count method such as
  ``attack.labels='dimitrov'``, sorted by class, or the truth under 'oracle'). The
  attacker does not know which sample sits in which batch: with ``shuffle_labels`` the
  labels are placed in one random order per restart (the original implementation's
  choice) and every epoch copy uses that order; labels of shape [E, N] give each copy its
  own order (used with the true orders in tests).

The simulation is exactly the client's local training (one `client_update` over the
concatenated copies, `leakjax.fl.copies_schedule`, for any N, B and E). The reference's
bugs are not reproduced (REFERENCE.md §5 item 4): it keeps one copy for E epochs, draws a
new random convolution every step, and its clip prior needs --normalize.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import optax
from flax import struct

from leakjax.attacks import losses
from leakjax.attacks.base import Attack, Reconstruction, hyperparams
from leakjax.attacks.registry import AttackSpec, register
from leakjax.attacks.simulation import SIMULATIONS, simulation_hparams
from leakjax.fl.client import Client
from leakjax.fl.factored import MODES as FACTORED_MODES
from leakjax.fl.factored import simulated_delta
from leakjax.fl.schedule import copies_schedule
from leakjax.matching import linear_sum_assignment, pairwise_mse
from leakjax.models.conv import conv2d
from leakjax.settings import setting
from leakjax.types import Array, ConfigError

ORDER_PRIORS = ("max_conv", "mean_conv", "max", "mean", "matching", "none")
INITS = ("randn", "uniform")


@dataclasses.dataclass(frozen=True)
class DLFConfig(losses.MatchOptions):
    """Hyperparameters (defaults: the reference's dlf.py and experiments/fed/dlf.sh).

    Attributes:
      lr: Adam step size on the images.
      lr_final: the step size decays exponentially to ``lr * lr_final`` at the last step
        (1.0: constant, the reference; the original implementation decays it).
      tv: weight of the L1 total variation prior (`losses.tv_l1` over all copies). The
        reference's 2e-4 is negligible next to the matching term (which is on the scale
        of squared gradients); on CIFAR-10 with the untrained mlp, 2-5 works well.
      clip: weight of the clip prior.
      reorder: weight of the epoch order-invariant prior (used when E > 1).
      order_prior: one of ORDER_PRIORS (see the module docstring).
      conv_features: output channels of the random 3x3 convolution of the '*_conv' priors.
      fac_start, fac_end: curriculum factor of the matching term, geometric from
        ``fac_start`` to ``fac_end`` over the first half of the steps, then constant.
      layer_weights: 'exp' (w_l = e^{-l}) or 'uniform'.
      shuffle_labels: place [N] labels in a random order per restart (else as given).
      init: 'randn' (the reference) or 'uniform' in the valid box.
      boxed: project the images into the valid box after every step (not in the paper,
        which relies on the clip prior; Inverting Gradients does it).
      simulation: 'exact' or 'reference' (no momentum / weight decay in the simulation).
      remat: rematerialize the simulated local steps (memory O(sqrt(steps)): `fl.client_update`).
      factored: 'auto' / 'on' / 'off': simulate the client with its big dense kernels kept
        factored through the local steps (`leakjax.fl.factored`; exact to float32 rounding;
        'auto': kernels above its size threshold, at most `fl.factored.MAX_STEPS` steps).
      match_layers, match_fraction, grad_reg: FedLeak's partial matching and gradient
        regularization (`leakjax.attacks.losses.MatchOptions`; defaults: off), applied to the
        layer-weighted L2 term (the regularizer inside the curriculum factor).
    """

    lr: float = setting(0.1, low=0, low_open=True)
    lr_final: float = setting(1.0, low=0, low_open=True, high=1)
    tv: float = setting(2e-4, low=0)
    clip: float = setting(10.0, low=0)
    reorder: float = setting(6.075, low=0)
    order_prior: str = setting("max_conv", choices=ORDER_PRIORS)
    conv_features: int = setting(96, low=1)
    fac_start: float = setting(4.0, low=0, low_open=True)
    fac_end: float = setting(2.0, low=0, low_open=True)
    layer_weights: str = setting("exp", choices=("exp", "uniform"))
    shuffle_labels: bool = True
    init: str = setting("randn", choices=INITS)
    boxed: bool = False
    simulation: str = setting("exact", choices=SIMULATIONS)
    remat: bool = False
    factored: str = setting("auto", choices=FACTORED_MODES)


@struct.dataclass
class DLFState:
    x: Array  # per-epoch dummy copies, normalized [E, N, H, W, C]
    y: Array  # int labels of every position of every copy [E, N]
    proj: dict  # the random convolution of the '*_conv' priors ({} otherwise)
    opt_state: optax.OptState
    step: Array


def check_config(cfg: DLFConfig, mode: str = "fedavg") -> None:
    """One-line ConfigErrors the binder cannot find alone."""
    if mode != "fedavg":
        raise ConfigError(f"attack.mode={mode!r}: DLF attacks FedAvg updates only ('fedavg')")


# ----------------------------------------------------------------------------- matching


def _pair_cost(a: Array, b: Array, ya: Array, yb: Array) -> Array:
    """Mean squared distance between every image of ``a`` and of ``b`` [N, N]; pairs with
    different labels cost more than any complete same-label matching."""
    d = pairwise_mse(a, b)
    penalty = 1.0 + a.shape[0] * jnp.max(d)
    return d + penalty * (ya[:, None] != yb[None, :])


def match_to_first(x: Array, y: Array) -> Array:
    """Permutations aligning every epoch copy with the first.

    Args:
      x: [E, N, ...] copies; y: [E, N] labels.

    Returns:
      int32 [E, N]: ``x[e][perm[e]]`` is aligned with ``x[0]`` (perm[0] is the identity).
    """
    x = jax.lax.stop_gradient(x)
    costs = jax.vmap(lambda b, yb: _pair_cost(x[0], b, y[0], yb))(x, y)
    return jax.vmap(linear_sum_assignment)(costs)


def merge_copies(x: Array, y: Array) -> Array:
    """The final reconstruction: copies matched to the first and averaged, [N, ...]."""
    if x.shape[0] == 1:
        return x[0]
    perm = match_to_first(x, y)
    aligned = jax.vmap(lambda c, p: c[p])(x, perm)
    return jnp.mean(aligned, axis=0)


# ----------------------------------------------------------------------------- priors


def random_projection(key, channels: int, features: int = 96) -> dict:
    """A random 3x3 convolution (LeCun-normal kernel, zero bias) for the '*_conv' priors."""
    kernel = jax.random.normal(key, (3, 3, channels, features)) / math.sqrt(9 * channels)
    return {"kernel": kernel, "bias": jnp.zeros((features,))}


def _project(x: Array, proj: dict) -> Array:
    return conv2d(x, proj["kernel"], 1, "VALID") + proj["bias"]


def order_invariant_prior(
    x: Array, kind: str = "max_conv", proj: dict | None = None, y: Array | None = None
) -> Array:
    """The epoch order-invariant prior on per-epoch copies ``x`` [E, N, H, W, C].

    Args:
      x: the copies.
      kind: 'max_conv' / 'mean_conv' (max / mean over each copy's images of a random
        convolution's features, ``proj``), 'max' / 'mean' (of the pixels), 'matching'
        (mean squared distance to the first copy after optimal matching within labels
        ``y`` [E, N]; the matching itself is not differentiated), or 'none'.

    Returns:
      scalar >= 0; 0 when every copy holds the same images (in any order).
    """
    e = x.shape[0]
    if kind == "none" or e == 1:
        return jnp.zeros((), x.dtype)
    if kind == "matching":
        if y is None:
            y = jnp.zeros(x.shape[:2], jnp.int32)
        perm = match_to_first(x, y)
        aligned = jax.vmap(lambda c, p: c[p])(x, perm)
        return jnp.mean(jnp.square(aligned[1:] - x[0][None]))
    feats = x
    if kind.endswith("_conv"):
        if proj is None:
            raise ValueError(f"order_invariant_prior: kind={kind!r} needs a projection")
        flat = x.reshape((-1,) + x.shape[2:])
        f = _project(flat, proj)
        feats = f.reshape(x.shape[:2] + f.shape[1:])
    g = jnp.max(feats, axis=1) if kind.startswith("max") else jnp.mean(feats, axis=1)
    # The mean over all ordered pairs of copies of (g_i - g_j)^2 is twice the variance over
    # copies: O(E) memory instead of the E x E differences (4.7 GB at E = 250 copies).
    return 2.0 * jnp.mean(jnp.var(g, axis=0))


def clip_prior(x: Array, lo: Array, hi: Array) -> Array:
    """Sum over pixels of the batch-mean squared distance to [0, 1] (in image space)."""
    flat = x.reshape((-1,) + x.shape[-3:])
    u = (flat - lo) / (hi - lo)
    return jnp.sum(jnp.mean(jnp.square(u - jnp.clip(u, 0.0, 1.0)), axis=0))


def curriculum(step: Array, steps: int, start: float, end: float) -> Array:
    """The reference's factor: ``start * alpha**(t+1)`` clamped at ``end``, with alpha
    reaching ``end`` after half of the steps."""
    half = max(steps // 2, 1)
    alpha = (end / start) ** (1.0 / half)
    f = start * alpha ** (step.astype(jnp.float32) + 1.0)
    return jnp.maximum(f, end) if alpha < 1.0 else jnp.minimum(f, end)


# ----------------------------------------------------------------------------- simulation


def simulate(
    model,
    obs,
    x: Array,
    y: Array,
    simulation: str = "exact",
    remat: bool = False,
    factored: str = "off",
):
    """``theta_0 - theta_T`` of the client's local training on per-epoch copies.

    Epoch e trains on copy ``x[e]`` in its stored order (batches of ``obs.hp.batch_size``,
    the last partial batch kept; `leakjax.fl.copies_schedule`), through
    `leakjax.fl.client_update`, momentum carried across epochs as the client's.

    Args:
      model: `leakjax.models.Model`.
      obs: fedavg `Observation`.
      x: [E, N, H, W, C] copies (E = ``obs.hp.epochs``); y: [E, N] int labels.
      simulation: 'exact' (the client's momentum and weight decay) or 'reference'.
      remat: rematerialize each local step in the backward pass.
      factored: 'auto' / 'on' / 'off' (`leakjax.fl.factored.simulated_delta`).
    """
    e, n = x.shape[:2]
    hp = simulation_hparams(obs.hp, simulation, n, full_batch=False)
    flat_x = x.reshape((e * n,) + x.shape[2:])
    flat_y = y.reshape((e * n,) + y.shape[2:])
    # the defended client as the attacker simulates it (no noise; its update hooks simulated)
    client = Client(model, hp, obs.defense, observed=obs.update if obs.defense else None)
    return simulated_delta(
        client,
        obs.variables,
        flat_x,
        flat_y,
        remat=remat,
        schedule=copies_schedule(e, n, hp.batch_size),
        mode=factored,
    )


# ----------------------------------------------------------------------------- attack


# traced (`leakjax.attacks.base.hyperparams`)
HYPERPARAMS = ("lr", "tv", "clip", "reorder", "grad_reg")


def make(obs, model, cfg: DLFConfig, *, steps: int, box, labels=None, hparams=None) -> Attack:
    """DLF against one FedAvg observation.

    Args:
      obs: `leakjax.fl.observation.Observation` in 'fedavg' mode.
      model: `leakjax.models.Model` the client trains.
      cfg: DLFConfig.
      steps: number of optimization steps (sets the curriculum).
      box: (lo, hi) per-channel bounds of valid normalized pixels.
      labels: int labels [N] (class-sorted counts from a label method, or the truth) or
        [E, N] (a label order per epoch copy). Required.
      hparams: traced {'lr', 'tv', 'clip', 'reorder', 'grad_reg'} used instead of those
        settings (None: the settings' values).

    Returns:
      `Attack`; ``result`` gives the merged reconstruction [N, H, W, C] and its labels.
    """
    check_config(cfg, obs.mode)
    hp = hyperparams(cfg, HYPERPARAMS, hparams)
    if labels is None:
        raise ConfigError(
            "attack.labels: DLF needs fixed labels; set attack.labels='oracle' or a label-count "
            "method (e.g. 'dimitrov')"
        )
    e, n, b = int(obs.hp.epochs), int(obs.num_samples), int(obs.hp.batch_size)
    labels = jnp.asarray(labels, jnp.int32)
    if labels.shape not in ((n,), (e, n)):
        raise ConfigError(
            f"attack.labels: DLF got labels of shape {tuple(labels.shape)} for a client with "
            f"{n} samples and {e} epochs (expected ({n},) or ({e}, {n}))"
        )
    shape = (e, n) + tuple(model.input_shape)
    lo, hi = (jnp.asarray(v, jnp.float32) for v in box)
    k_batches = math.ceil(n / b)
    if cfg.layer_weights == "exp":
        weights = losses.exp_layer_weights(obs.update)
    else:
        weights = jnp.ones((len(jax.tree.leaves(obs.update)),), jnp.float32)
    weights = weights / jnp.square(jnp.asarray(obs.hp.lr, jnp.float32)) / k_batches
    match = losses.fedleak_match(
        functools.partial(losses.layer_weighted_l2, weights=weights),
        obs.update,
        cfg,
        hp["grad_reg"],
        hparams is not None,
    )
    if cfg.lr_final == 1.0:
        opt = optax.adam(hp["lr"])
    else:
        opt = optax.adam(optax.exponential_decay(hp["lr"], max(steps, 1), cfg.lr_final))
    conv = cfg.order_prior.endswith("_conv") and e > 1

    def terms(x, y, proj):
        upd = simulate(model, obs, x, y, cfg.simulation, cfg.remat, cfg.factored)
        rec = match(upd)
        flat = x.reshape((e * n,) + x.shape[2:])
        tv = losses.tv_l1(flat)
        clip = clip_prior(flat, lo, hi)
        inv = order_invariant_prior(x, cfg.order_prior, proj, y)
        return rec, tv, clip, inv

    def objective(x, y, proj, fac):
        rec, tv, clip, inv = terms(x, y, proj)
        total = fac * rec + hp["tv"] * tv + hp["clip"] * clip + hp["reorder"] * inv
        return total, {"match": rec, "order_prior": inv}

    def init(key):
        kx, ky, kp = jax.random.split(key, 3)
        if cfg.init == "randn":
            x = jax.random.normal(kx, shape)
        else:
            x = jax.random.uniform(kx, shape, minval=lo, maxval=hi)
        if labels.ndim == 2:
            y = labels
        else:
            y0 = labels[jax.random.permutation(ky, n)] if cfg.shuffle_labels else labels
            y = jnp.tile(y0[None], (e, 1))
        proj = random_projection(kp, shape[-1], cfg.conv_features) if conv else {}
        return DLFState(x=x, y=y, proj=proj, opt_state=opt.init(x), step=jnp.int32(0))

    def step(state, key):
        del key
        fac = curriculum(state.step, steps, cfg.fac_start, cfg.fac_end)
        (loss, aux), g = jax.value_and_grad(objective, has_aux=True)(
            state.x, state.y, state.proj, fac
        )
        updates, opt_state = opt.update(g, state.opt_state, state.x)
        x = optax.apply_updates(state.x, updates)
        if cfg.boxed:
            x = jnp.clip(x, lo, hi)
        new = state.replace(x=x, opt_state=opt_state, step=state.step + 1)
        return new, {"loss": loss, **aux}

    def result(state):
        return Reconstruction(images=merge_copies(state.x, state.y), labels=state.y[0])

    return Attack(init=init, step=step, result=result)


SPEC = register(
    AttackSpec(
        name="dlf",
        modes=("fedavg",),
        make=make,
        settings=DLFConfig,
        label_modes=(),
        auto_labels="dimitrov",
        check=check_config,
        paper="Dimitrov et al. 2022, Data Leakage in Federated Averaging, TMLR, arXiv:2206.12395",
        hyperparams=HYPERPARAMS,
    )
)
