"""SME, Surrogate Model Extension (Zhu, Yao, Blaschko, ICML 2023, "Surrogate Model Extension
(SME): A Fast and Accurate Weight Update Attack on Federated Learning",
https://arxiv.org/abs/2306.07457).

Instead of simulating the client's T local steps on the dummies (IG's fedavg mode), SME
matches the observed update direction ``w_0 - w_T`` with the dummies' descent direction at one
*surrogate* model ``w_s = w_0 + alpha (w_T - w_0)`` on the line between the received and the
returned weights. The interpolation coefficient ``alpha`` (kept in [0, 1]) is optimized
jointly with the dummies; objective: cosine distance + ``tv`` x IG's L1 total variation
(`leakjax.attacks.losses`). One gradient (and its derivative) per iteration, whatever T.

The descent direction at ``w_s`` is the client's own first step there: its minibatch gradient
(`leakjax.fl.Client.gradient`: BatchNorm in training mode, an adaptive attacker's simulated
defense included) plus the client's public weight decay ``wd * w_s`` (the paper's clients have
none; with it a one-step client's update is matched exactly at ``alpha = 0``).

Modes: ``fedavg`` (the paper's); ``gradient``: the observed update is the gradient at ``w_0``,
i.e. the surrogate is ``w_0`` (``alpha`` pinned to 0): the objective is IG's gradient-mode one
(`leakjax.attacks.simulation.simulated_update`).

Defaults: the authors' CIFAR-100 / FEMNIST configs (Adam on the images with lr 1, unsigned;
Adam on alpha with lr 0.001; both x0.1 at 3/8, 5/8, 7/8 of the steps; alpha from 0.5; TV
weight 0.01 on their TV, which is half of `losses.tv_l1`, hence 0.005 here; images clamped to
the valid box).
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
from leakjax.attacks.simulation import simulated_update
from leakjax.fl.client import Client
from leakjax.labels.idlg import idlg_label
from leakjax.settings import setting
from leakjax.types import ConfigError

# traced (`leakjax.attacks.base.hyperparams`)
HYPERPARAMS = ("lr", "tv", "alpha", "alpha_lr", "grad_reg")
MILESTONES = (3 / 8, 5 / 8, 7 / 8)  # the authors' MultiStepLR at iters / 2.667, 1.6, 1.142


@dataclasses.dataclass(frozen=True)
class SMEConfig(losses.MatchOptions):
    """Hyperparameters (defaults: the authors' configs, experiments/configs/cifar_sme.json).

    Attributes:
      lr: Adam step size of the images (and optimized labels), x``gamma`` at 3/8, 5/8, 7/8.
      tv: weight of `losses.tv_l1` (IG's L1 total variation).
      alpha: initial interpolation coefficient of the surrogate ``w_0 + alpha (w_T - w_0)``.
      learn_alpha: optimize ``alpha`` with the images (False: the surrogate stays at ``alpha``).
      alpha_lr: Adam step size of ``alpha`` (same milestones).
      gamma: the lr factor at each milestone (1: no decay).
      signed: Adam on sign(gradient) of the images (the authors' default: off).
      labels: as IG's ('auto': the labels given to `make` if any, else the iDLG rule for one
        image, else optimized soft labels; 'idlg'; 'optimize'; 'fixed').
      match_layers, match_fraction, grad_reg: FedLeak's partial matching and gradient
        regularization (`leakjax.attacks.losses.MatchOptions`; defaults: off).
    """

    lr: float = setting(1.0, low=0, low_open=True)
    tv: float = setting(0.005, low=0)
    alpha: float = setting(0.5, low=0, high=1)
    learn_alpha: bool = True
    alpha_lr: float = setting(0.001, low=0)
    gamma: float = setting(0.1, low=0, low_open=True)
    signed: bool = False
    labels: str = "auto"


@struct.dataclass
class SMEState:
    x: jax.Array  # dummy images, normalized [B, H, W, C]
    y: jax.Array  # label logits [B, C] (unused when labels are fixed)
    alpha: jax.Array  # scalar in [0, 1]
    opt_state: optax.OptState
    alpha_state: optax.OptState
    step: jax.Array


def _decayed_adam(lr, steps: int, gamma: float):
    return optax.adam(
        optax.piecewise_constant_schedule(lr, {max(1, int(steps * m)): gamma for m in MILESTONES})
    )


def surrogate(variables, update, alpha):
    """The variables at ``w_0 + alpha (w_T - w_0) = w_0 - alpha * update`` (other collections,
    e.g. BatchNorm statistics, those of ``w_0``)."""
    out = dict(variables)
    out["params"] = jax.tree.map(lambda w, u: w - alpha * u, variables["params"], update)
    return out


def direction(model, obs, x, y, alpha):
    """The dummies' descent direction at the surrogate: what SME matches with ``obs.update``.

    fedavg: the client's gradient at ``w_s`` (`leakjax.fl.Client.gradient`; an adaptive
    attacker's simulated defense included) + ``weight_decay * w_s``. gradient: the gradient at
    ``w_0`` (``alpha`` unused; `simulation.simulated_update`).
    """
    if obs.mode == "gradient":
        return simulated_update(model, obs, x, y, factored="auto")
    v = surrogate(obs.variables, obs.update, alpha)
    client = Client(model, obs.hp, obs.defense, observed=obs.update if obs.defense else None)
    g = client.gradient(v, x, y)
    return jax.tree.map(lambda gi, w: gi + obs.hp.weight_decay * w, g, v["params"])


def objective(model, obs, x, y, alpha, tv, match=None):
    """SME's loss: 1 - cos(direction at the surrogate, observed update) + tv * TV(x).

    ``match``: the matching term as a function of the direction (`losses.fedleak_match`);
    None: ``losses.cosine(., obs.update)``.
    """
    d = direction(model, obs, x, y, alpha)
    m = losses.cosine(d, obs.update) if match is None else match(d)
    return m + tv * losses.tv_l1(x)


def make(
    obs,
    model,
    cfg: SMEConfig,
    *,
    steps: int,
    box: tuple[jax.Array, jax.Array],
    labels=None,
    hparams: dict | None = None,
) -> Attack:
    """SME against one observation.

    Args:
      obs: `leakjax.fl.observation.Observation` ('fedavg' or 'gradient' mode).
      model: `leakjax.models.Model` the client trains.
      cfg: SMEConfig.
      steps: number of optimization steps (sets the lr milestones).
      box: (lo, hi) per-channel bounds of valid normalized pixels.
      labels: fixed int labels [B] (true or inferred upstream), or None.
      hparams: traced {'lr', 'tv', 'alpha', 'alpha_lr', 'grad_reg'} (float32 scalars) used
        instead of the settings' values; None: those values.
    """
    hp = hyperparams(cfg, HYPERPARAMS, hparams)
    num = obs.num_samples
    shape = (num,) + tuple(model.input_shape)
    c = model.num_classes
    lo, hi = (jnp.asarray(b, jnp.float32) for b in box)
    learn_alpha = cfg.learn_alpha and obs.mode == "fedavg"

    mode, fixed = resolve_labels(
        cfg.labels, labels, otherwise="idlg" if num == 1 else "optimize", num=num
    )
    if mode == "idlg":
        if num != 1:
            raise ConfigError("attack.labels='idlg' needs exactly one image (use 'optimize')")
        fixed = jnp.reshape(idlg_label(obs.update), (1,))

    match = losses.fedleak_match(
        losses.cosine, obs.update, cfg, hp["grad_reg"], hparams is not None
    )
    opt = _decayed_adam(hp["lr"], steps, cfg.gamma)
    alpha_opt = _decayed_adam(hp["alpha_lr"], steps, cfg.gamma)

    def labels_of(y_logits):
        return fixed if fixed is not None else jax.nn.softmax(y_logits, axis=-1)

    def loss_fn(x, y_logits, alpha):
        return objective(model, obs, x, labels_of(y_logits), alpha, hp["tv"], match)

    def init(key):
        kx, ky = jax.random.split(key)
        x = jnp.clip(jax.random.normal(kx, shape), lo, hi)
        y = jax.random.normal(ky, (num, c))
        alpha = hp["alpha"] if obs.mode == "fedavg" else jnp.float32(0.0)
        return SMEState(
            x=x,
            y=y,
            alpha=alpha,
            opt_state=opt.init({"x": x, "y": y}),
            alpha_state=alpha_opt.init(alpha),
            step=jnp.int32(0),
        )

    def step(state, key):
        del key
        loss, (gx, gy, ga) = jax.value_and_grad(loss_fn, argnums=(0, 1, 2))(
            state.x, state.y, state.alpha
        )
        if cfg.signed:
            gx = jnp.sign(gx)
        grads = {"x": gx, "y": gy if fixed is None else jnp.zeros_like(gy)}
        params = {"x": state.x, "y": state.y}
        updates, opt_state = opt.update(grads, state.opt_state, params)
        params = optax.apply_updates(params, updates)
        alpha, alpha_state = state.alpha, state.alpha_state
        if learn_alpha:
            da, alpha_state = alpha_opt.update(ga, alpha_state, alpha)
            alpha = jnp.clip(alpha + da, 0.0, 1.0)
        new = SMEState(
            x=jnp.clip(params["x"], lo, hi),
            y=params["y"],
            alpha=alpha,
            opt_state=opt_state,
            alpha_state=alpha_state,
            step=state.step + 1,
        )
        return new, {"loss": loss, "alpha": state.alpha}

    def result(state):
        labels = fixed if fixed is not None else jnp.argmax(state.y, axis=-1).astype(jnp.int32)
        return Reconstruction(images=state.x, labels=labels)

    return Attack(init=init, step=step, result=result)


SPEC = register(
    AttackSpec(
        name="sme",
        modes=("fedavg", "gradient"),
        make=make,
        settings=SMEConfig,
        label_modes=("auto", "idlg", "optimize"),
        paper="Zhu, Yao, Blaschko 2023, Surrogate Model Extension (SME), ICML, arXiv:2306.07457",
        hyperparams=HYPERPARAMS,
        example=(("fl.batch_size", 2),),  # 4 samples: 2 local steps
    )
)
