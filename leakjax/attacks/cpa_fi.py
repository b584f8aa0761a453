"""CPA-FI: the Cocktail Party Attack with feature inversion.

Kariyappa et al., ICML 2023, https://arxiv.org/abs/2209.05578 (cpa_attack.py ``cpa_fi``); as
benchmarked in Zhu, Huang, Xie, arXiv 2409.19301 (Sec. IV-E). The unmixing (whitening, the CPA
objective, sign resolution) is `leakjax.attacks.cpa`'s, imported from there.

CPA-FI (``cpa_fi``): for a CNN the attacked layer (``vgg16`` with ``head='cpa'``, layer
``"fc1"``) sees embeddings, not images. ``init`` runs CPA's unmixing optimization for
``cpa_steps`` steps and takes the sign-resolved embeddings (ReLU-clipped: they are ReLU
outputs; the reference takes their absolute value instead); ``step`` then inverts them:
Adam (``fi_lr``) on dummy images ``x`` minimizing ``fi * mean_k (1 - cos(z_k, f(x_k))) + tv *
TV(x)`` with ``f = model.features(..., layer)``, projected to the valid box every step.

Modes: ``gradient`` and ``fedavg`` (as CPA); in ``fedavg`` the embeddings change as the earlier
layers train, so the mix is only approximate.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from leakjax.attacks import cpa, losses
from leakjax.attacks.base import Attack, Reconstruction, hyperparams
from leakjax.attacks.registry import AttackSpec, register
from leakjax.settings import setting
from leakjax.types import Array


@dataclasses.dataclass(frozen=True)
class CPAFIConfig(cpa.CPAConfig):
    """CPA + feature inversion: the reference's settings for vgg16 (cpa_attack.py ``cpa_fi``)."""

    decor: float = setting(5.3, low=0)
    temperature: float = setting(7.7, low=0)
    tv: float = setting(0.1, low=0)
    nv: float = setting(0.13, low=0)
    l1: float = setting(5.0, low=0)


FI_DEFAULTS = CPAFIConfig()
# traced: CPA's (its unmixing in ``init``) plus the feature inversion's weight and step
HYPERPARAMS = (*cpa.HYPERPARAMS, "fi", "fi_lr")


@struct.dataclass
class CPAFIState:
    x: Array  # [B, H, W, C] dummy images (normalized)
    opt_state: optax.OptState
    z: Array  # [B, d_in] recovered embeddings (targets)


def make(
    obs, model, cfg: cpa.CPAConfig = FI_DEFAULTS, *, steps: int, box, labels=None, hparams=None
) -> Attack:
    """CPA-FI: CPA on the embeddings entering ``cfg.layer``, then feature inversion.

    Args:
      obs: `leakjax.fl.observation.Observation` ('gradient' or 'fedavg').
      model: the attacked `leakjax.models.Model` (vgg16 with ``head='cpa'`` in the paper).
      cfg: CPAFIConfig (``cpa_steps`` unmixing steps in ``init``; ``fi``, ``fi_lr``, ``tv`` for
        the inversion).
      steps: feature-inversion steps (informational; `attacks.run` decides).
      box: (lo, hi) per-channel bounds of valid normalized pixels.
      labels: unused.
      hparams: traced `HYPERPARAMS` (float32 scalars) used instead of the settings' values.

    Returns:
      An `Attack` over dummy images; ``step`` is one feature-inversion step.
    """
    del steps, labels
    hp = hyperparams(cfg, HYPERPARAMS, hparams)
    cpa.check_config(cfg, obs.mode)
    lay = cpa.dense_layer(obs.update, cfg.layer, "update")
    num = cpa.num_sources(obs, lay, cfg.layer)
    shape = (num,) + tuple(model.input_shape)
    lo, hi = (jnp.asarray(b, jnp.float32) for b in box)
    opt = optax.adam(hp["fi_lr"])
    variables = obs.variables

    def features(x):
        return model.features(variables, x, train=False, layer=cfg.layer)

    def objective(x, z):
        f = features(x)
        cos = jnp.sum(f * z, -1) / (
            jnp.maximum(jnp.linalg.norm(f, axis=-1) * jnp.linalg.norm(z, axis=-1), 1e-10)
        )
        return hp["fi"] * jnp.mean(1.0 - cos) + hp["tv"] * losses.tv_l1(x)

    def init(key):
        kc, kx = jax.random.split(key)
        st = cpa.prepare_unmixing(obs, cfg, num, kc)
        st = jax.lax.fori_loop(0, cfg.cpa_steps, lambda i, s: cpa.cpa_step(s, cfg, hp)[0], st)
        comp, c = cpa.components(st)
        z = jax.nn.relu(cpa.sign_of(c)[:, None] * comp)
        x = jnp.clip(jax.random.normal(kx, shape), lo, hi)
        return CPAFIState(x=x, opt_state=opt.init(x), z=z)

    def step(state, key):
        del key
        loss, g = jax.value_and_grad(objective)(state.x, state.z)
        upd, opt_state = opt.update(g, state.opt_state, state.x)
        x = jnp.clip(optax.apply_updates(state.x, upd), lo, hi)
        return state.replace(x=x, opt_state=opt_state), {"loss": loss}

    def result(state):
        return Reconstruction(images=state.x, labels=None)

    return Attack(init=init, step=step, result=result)


SPEC = register(
    AttackSpec(
        name="cpa_fi",
        modes=("gradient", "fedavg"),
        make=make,
        settings=CPAFIConfig,
        check=cpa.check_config,
        paper=cpa.PAPER + " (CPA + feature inversion)",
        # 8 restarts vmapped on CPU: 134 ms, one after another: 89 ms (one alone: 12.5 ms)
        sequential_on_cpu=lambda cfg: True,
        example=(("model.name", "fc2"),),
        hyperparams=HYPERPARAMS,
    )
)
