"""FedAvg local training: the one implementation of a client's update.

A client runs `epochs` passes over its local data in minibatches of `batch_size`
(reshuffled every epoch, the last partial batch kept, as torch's DataLoader does),
with SGD + momentum + weight decay (torch semantics: d = g + wd * p;
buf = momentum * buf + d; p -= lr * buf). The whole loop is one `jax.lax.scan`,
so it is pure, `vmap`-able over clients and differentiable with respect to the
input images and (soft) labels: attacks such as Inverting Gradients (fedavg mode)
and DLF call this same function on dummy data and differentiate through it.

Padding: local data sets are padded to a common length ``n_max``; ``mask`` says
which rows are real. The scan always runs ``epochs * ceil(n_max / batch_size)``
steps; batches with no real row are skipped (parameters, momentum and BatchNorm
statistics unchanged), so a client with n samples takes exactly
``epochs * ceil(n / batch_size)`` SGD steps whatever the padding.

FedAvg: McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", https://arxiv.org/abs/1602.05629.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import struct

from leakjax.fl.schedule import batch_schedule
from leakjax.types import Array, PRNGKey, Variables

# apply(variables, x, train, mask) -> (logits, variables')  (leakjax.models.Model.apply)
ApplyFn = Callable[..., tuple[Array, Variables]]


@struct.dataclass
class ClientHParams:
    """What a client's local training is configured with (the server knows all of it).

    ``lr``, ``momentum`` and ``weight_decay`` are traced (sweepable, vmappable);
    ``epochs`` and ``batch_size`` fix the shape of the computation and are static.
    """

    lr: Any = 0.1
    momentum: Any = 0.0
    weight_decay: Any = 0.0
    epochs: int = struct.field(pytree_node=False, default=1)
    batch_size: int = struct.field(pytree_node=False, default=10)


def cross_entropy(logits: Array, y: Array, mask: Array | None = None) -> Array:
    """Mean cross-entropy over the rows where ``mask`` is set.

    Args:
      logits: [B, C].
      y: int labels [B], or label distributions [B, C] (soft labels; rows sum to 1).
      mask: [B] bool/float, or None for all rows.

    Returns:
      scalar: sum(mask * ce) / max(sum(mask), 1).
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    if jnp.issubdtype(y.dtype, jnp.integer):
        ce = -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
    else:
        ce = -jnp.sum(y * logp, axis=-1)
    if mask is None:
        return jnp.mean(ce)
    m = mask.astype(ce.dtype)
    return jnp.sum(ce * m) / jnp.maximum(jnp.sum(m), 1.0)


def loss_and_state(
    apply: ApplyFn, params, variables: Variables, x: Array, y: Array, mask, train: bool
) -> tuple[Array, Variables]:
    """Cross-entropy of the model at ``params`` (other collections from ``variables``)."""
    v = dict(variables)
    v["params"] = params
    logits, new_v = apply(v, x, train=train, mask=mask)
    return cross_entropy(logits, y, mask), new_v


def gradient(
    apply: ApplyFn, variables: Variables, x: Array, y: Array, mask=None, *, train: bool = False
):
    """Gradient of the mean cross-entropy w.r.t. the parameters (what 'gradient' mode shares).

    Differentiable w.r.t. ``x`` and soft ``y``. ``train=False`` evaluates BatchNorm with its
    running statistics (as the reference's gradient attacks, which call model.eval()).
    """
    g, _ = jax.grad(loss_and_state, argnums=1, has_aux=True)(
        apply, variables["params"], variables, x, y, mask, train
    )
    return g


def _sgd(hp: ClientHParams) -> optax.GradientTransformation:
    # torch.optim.SGD(lr, momentum, weight_decay), dampening 0, no Nesterov.
    return optax.chain(
        optax.add_decayed_weights(hp.weight_decay),
        optax.trace(decay=hp.momentum),
        optax.scale(-hp.lr),
    )


_UNROLLED = threading.local()


@contextlib.contextmanager
def unrolled_local_steps():
    """While active, `client_update` traces its local steps fully unrolled (no ``lax.scan``).

    For XLA's ``cost_analysis``, which counts a loop body once: benchmarks compile an unrolled
    copy to read the true flops and bytes of a simulated client (`benchmarks.run`), and the
    attacker's dense simulation runs its few steps unrolled (`leakjax.fl.factored.unrolls`:
    faster). Values are the same to float32 rounding; compile time grows with the steps.
    """
    prev = getattr(_UNROLLED, "on", False)
    _UNROLLED.on = True
    try:
        yield
    finally:
        _UNROLLED.on = prev


def _remat_scan(step, carry, xs):
    """``lax.scan(step, carry, xs)`` whose reverse mode stores O(sqrt(T)) carries.

    A scan of a checkpointed step still saves every step's carry for the backward pass (the
    parameters and optimizer state: memory linear in T with a slope of twice the model). Here
    the T steps run as ``outer = T // inner`` checkpointed blocks of ``inner = isqrt(T)``
    checkpointed steps, plus a tail of the ``T - outer * inner < 2 sqrt(T) + 1`` remaining
    steps: the backward pass keeps the ``outer`` block-entry carries, recomputes one block at
    a time (its ``inner`` carries) and each step's activations from its carry ("sqrt(n)"
    checkpointing, Chen et al., https://arxiv.org/abs/1604.06174). The forward values are
    those of the plain scan.
    """
    t = jax.tree.leaves(xs)[0].shape[0]
    inner = max(1, math.isqrt(t))
    outer = t // inner
    step = jax.checkpoint(step)

    @jax.checkpoint
    def block(c, xb):
        return jax.lax.scan(step, c, xb)

    n = outer * inner
    head = jax.tree.map(lambda a: a[:n].reshape((outer, inner) + a.shape[1:]), xs)
    carry, ys = jax.lax.scan(block, carry, head)
    ys = jax.tree.map(lambda a: a.reshape((n,) + a.shape[2:]), ys)
    if n < t:
        carry, ys_tail = jax.lax.scan(step, carry, jax.tree.map(lambda a: a[n:], xs))
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), ys, ys_tail)
    return carry, ys


@struct.dataclass
class ClientState:
    """A client between local steps: its variables (params included), SGD state, step count."""

    variables: Variables
    opt_state: Any
    step: Array


# grad_fn(apply, params, variables, xb, yb, valid, key) -> (loss, variables', grads): how one
# local step turns a minibatch into the gradient SGD applies. `batch_gradient` is plain FedAvg;
# step-level defenses (DP-SGD's per-example clipping and noise, local noise) supply their own.
GradFn = Callable[..., tuple[Array, Variables, Any]]


def batch_gradient(apply: ApplyFn, params, variables, xb, yb, valid, key=None):
    """(loss, variables', grads) of the mean cross-entropy over the valid rows of a minibatch."""
    del key
    (loss, new_v), g = jax.value_and_grad(loss_and_state, argnums=1, has_aux=True)(
        apply, params, variables, xb, yb, valid, True
    )
    return loss, new_v, g


def client_init(variables: Variables, hp: ClientHParams) -> ClientState:
    """The state a client starts its local training from (the received global variables)."""
    return ClientState(
        variables=dict(variables), opt_state=_sgd(hp).init(variables["params"]), step=jnp.int32(0)
    )


def client_step(
    apply: ApplyFn,
    state: ClientState,
    xb: Array,
    yb: Array,
    valid: Array,
    hp: ClientHParams,
    *,
    grad_fn: GradFn | None = None,
    key: PRNGKey | None = None,
    skip_empty: bool = True,
) -> tuple[ClientState, Array]:
    """One local SGD step (torch momentum and weight decay) on the minibatch ``xb, yb``.

    Args:
      valid: [B] rows of the minibatch that are real.
      grad_fn: how the minibatch becomes a gradient (default `batch_gradient`).
      key: PRNG key of this step for a ``grad_fn`` that draws noise (None: no noise).
      skip_empty: a batch with no valid row leaves the state unchanged (step count included).

    Returns:
      (new state, the step's loss; 0 for a skipped step).
    """
    grad_fn = batch_gradient if grad_fn is None else grad_fn
    v = state.variables
    params = v["params"]
    loss, new_v, g = grad_fn(apply, params, v, xb, yb, valid, key)
    updates, new_opt = _sgd(hp).update(g, state.opt_state, params)
    new_v = dict(new_v)
    new_v["params"] = optax.apply_updates(params, updates)
    new = ClientState(variables=new_v, opt_state=new_opt, step=state.step + 1)
    if not skip_empty:
        return new, loss
    active = jnp.any(valid)
    new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state)
    return new, loss * active


def client_final(state: ClientState) -> Variables:
    """The variables a client sends back after its local training."""
    return dict(state.variables)


def client_update(
    apply: ApplyFn,
    variables: Variables,
    x: Array,
    y: Array,
    mask: Array | None,
    key: PRNGKey | None,
    hp: ClientHParams,
    *,
    remat: bool = False,
    return_loss: bool = False,
    schedule: tuple[Array, Array] | None = None,
    grad_fn: GradFn | None = None,
    noise_key: PRNGKey | None = None,
):
    """A FedAvg client's local training: ``epochs`` x ``ceil(n_max / batch_size)`` SGD steps.

    `client_init`, then `client_step` on every minibatch of `batch_schedule` (one ``lax.scan``),
    then `client_final`.

    Args:
      apply: ``Model.apply(variables, x, train, mask) -> (logits, variables')``.
      variables: the received global variables ({'params', optionally 'batch_stats'}).
      x: [n_max, H, W, C] normalized local images (float; may be dummies being optimized).
      y: [n_max] int labels or [n_max, C] soft labels.
      mask: [n_max] validity of rows (None: all rows valid).
      key: shuffle key (None: fixed order, e.g. for an attacker's simulation).
      hp: ClientHParams.
      remat: when differentiated through, store only O(sqrt(steps)) carries (parameters,
        optimizer state) and one step's activations instead of every step's (`_remat_scan`:
        two-level checkpointing), at about two extra forward passes per step.
      return_loss: also return the mean training loss over the steps taken.
      schedule: explicit (idx [T, B], valid [T, B]) rows of every step, replacing
        `batch_schedule` (e.g. DLF's per-epoch copies of the dummies).
      grad_fn: per-step gradient (`client_step`); default the minibatch mean gradient.
      noise_key: key of the ``grad_fn``'s noise (split per step); None: no noise.

    Returns:
      the client's variables after training (and the mean loss if ``return_loss``).
    """
    n_max = x.shape[0]
    # Without a mask every step has a real row (padding fills only the last batch's tail), so
    # no step needs its carry kept by a select over every parameter (an attacker's simulation).
    always_active = mask is None and schedule is None
    if mask is None:
        mask = jnp.ones((n_max,), bool)
    if schedule is None:
        schedule = batch_schedule(mask, key, hp.epochs, hp.batch_size)
    idx, valid = schedule
    t = idx.shape[0]
    step_keys = None if noise_key is None else jax.random.split(noise_key, t)

    def step(state, batch):
        bidx, bvalid, k = batch
        xb = jnp.take(x, bidx, axis=0)
        yb = jnp.take(y, bidx, axis=0)
        state, loss = client_step(
            apply, state, xb, yb, bvalid, hp, grad_fn=grad_fn, key=k, skip_empty=not always_active
        )
        return state, (loss, jnp.any(bvalid))

    scan = _remat_scan if remat else jax.lax.scan
    if getattr(_UNROLLED, "on", False):
        scan = partial(jax.lax.scan, unroll=True)
    state, (losses, actives) = scan(step, client_init(variables, hp), (idx, valid, step_keys))
    out = client_final(state)
    if return_loss:
        return out, jnp.sum(losses) / jnp.maximum(jnp.sum(actives), 1)
    return out


def param_delta(before: Variables, after: Variables):
    """``before['params'] - after['params']``: what a FedAvg client's update reveals."""
    return jax.tree.map(jnp.subtract, before["params"], after["params"])


@dataclasses.dataclass(frozen=True)
class UpdateContext:
    """What a client-side update hook may look at: the model, the received variables, data."""

    model: Any  # leakjax.models.Model
    variables: Any
    x: Any
    y: Any
    mask: Any


class ClientDefense(Protocol):
    """What a client's defense provides (`leakjax.defenses.Pipeline` implements it)."""

    acts_on_input: bool
    acts_on_update: bool

    def on_input(self, x, y, mask, key: PRNGKey | None): ...

    def grad_fn(self) -> GradFn | None: ...

    def on_update(self, delta, key: PRNGKey | None, ctx: UpdateContext | None): ...

    def simulate_update(self, delta, observed): ...


def with_delta(global_vars: Variables, after: Variables, old_delta, new_delta) -> Variables:
    """``after`` with the parameters ``global - new_delta``; entries a defense left unchanged
    keep ``after``'s bits (``global - (global - after)`` can round differently)."""
    out = dict(after)
    out["params"] = jax.tree.map(
        lambda g, a, d0, d1: jnp.where(d1 == d0, a, g - d1),
        global_vars["params"],
        after["params"],
        old_delta,
        new_delta,
    )
    return out


@dataclasses.dataclass(frozen=True)
class Client:
    """A FedAvg client as the server sees it: local training, then its defense.

    The one place where a defended client's update is computed: the simulator
    (`leakjax.fl.server`), the server's view outside a simulation
    (`leakjax.fl.observation.fedavg_observation` / `gradient_observation`) and an adaptive
    attacker's simulation (`leakjax.attacks.simulation`) all call it.

    Keys: a client given ``key`` shuffles its data with ``key``, draws its step-level noise
    (DP-SGD, local noise) from ``fold_in(key, 1)``, its update-level noise (quantization,
    random pruning) from ``fold_in(key, 2)`` and its input-level noise from
    ``fold_in(key, 3)``; ``key=None``: fixed order and no noise (an attacker's simulation).

    Attributes:
      model: a `leakjax.models.Model`.
      hp: the local-training hyperparameters.
      defense: a `ClientDefense` (`leakjax.defenses.Pipeline`); None or empty: plain FedAvg.
      observed: set only for an adaptive attacker: the observed update, whose defense the
        attacker simulates (``defense.simulate_update``: no randomness, the client's zeroed
        coordinates zeroed) instead of applying it.
    """

    model: Any
    hp: ClientHParams
    defense: ClientDefense | None = None
    observed: Any = None

    def _grad_fn(self) -> GradFn | None:
        return self.defense.grad_fn() if self.defense else None

    def final(self, delta, key: PRNGKey | None = None, ctx: UpdateContext | None = None):
        """The update as the server sees it, from the trained ``delta`` (``before - after`` or,
        in gradient mode, the gradient): the defense's update-level hooks applied (or
        simulated, for an attacker)."""
        if not self.defense:
            return delta
        if self.observed is not None:
            return self.defense.simulate_update(delta, self.observed)
        if not self.defense.acts_on_update:
            return delta
        return self.defense.on_update(delta, key, ctx)

    def _inputs(self, x, y, mask, key):
        """The local data the client trains on: its input-level defenses applied (noise only
        for a real client given a key)."""
        if not self.defense or not self.defense.acts_on_input:
            return x, y
        real = key is not None and self.observed is None
        return self.defense.on_input(x, y, mask, jax.random.fold_in(key, 3) if real else None)

    def _train(self, variables, x, y, mask, key, *, remat=False, schedule=None):
        """(variables after the local steps, mean loss) on the (defended) local data ``x, y``:
        step-level defenses included; noise only for a real client given a key (an attacker
        draws none)."""
        grad_fn = self._grad_fn()
        real = key is not None and self.observed is None
        noise_key = jax.random.fold_in(key, 1) if grad_fn is not None and real else None
        return client_update(
            self.model.apply,
            variables,
            x,
            y,
            mask,
            key,
            self.hp,
            remat=remat,
            return_loss=True,
            schedule=schedule,
            grad_fn=grad_fn,
            noise_key=noise_key,
        )

    def update(
        self,
        variables: Variables,
        x: Array,
        y: Array,
        mask: Array | None = None,
        key: PRNGKey | None = None,
        *,
        remat: bool = False,
        return_loss: bool = False,
        schedule: tuple[Array, Array] | None = None,
    ):
        """The variables the client sends back after local training on ``x, y`` (defended).

        Args as `client_update`. Returns the variables (and the mean training loss if
        ``return_loss``). An attacker (``observed`` set) uses `delta`.
        """
        x, y = self._inputs(x, y, mask, key)
        after, loss = self._train(variables, x, y, mask, key, remat=remat, schedule=schedule)
        if self.defense and self.defense.acts_on_update and self.observed is None:
            delta = param_delta(variables, after)
            ctx = UpdateContext(self.model, variables, x, y, mask)
            update_key = None if key is None else jax.random.fold_in(key, 2)
            after = with_delta(variables, after, delta, self.final(delta, update_key, ctx))
        return (after, loss) if return_loss else after

    def local_delta(self, variables, x, y, mask=None, key=None, *, remat=False, schedule=None):
        """``before - after`` of the local steps alone (step-level defenses, no update-level
        ones); `delta` applies (or, for an attacker, simulates) the rest."""
        x, y = self._inputs(x, y, mask, key)
        after, _ = self._train(variables, x, y, mask, key, remat=remat, schedule=schedule)
        return param_delta(variables, after)

    def delta(
        self,
        variables: Variables,
        x: Array,
        y: Array,
        mask: Array | None = None,
        key: PRNGKey | None = None,
        *,
        remat: bool = False,
        schedule: tuple[Array, Array] | None = None,
    ):
        """The update ``before - after`` as the server sees it (simulated for an attacker)."""
        if self.observed is None:
            after = self.update(variables, x, y, mask, key, remat=remat, schedule=schedule)
            return param_delta(variables, after)
        return self.final(
            self.local_delta(variables, x, y, mask, key, remat=remat, schedule=schedule)
        )

    def gradient(self, variables: Variables, x: Array, y: Array, key: PRNGKey | None = None):
        """The gradient the client shares for its batch ``x, y`` (FedSGD), defended: its
        input-level defenses transform the batch (``fold_in(key, 3)``), its step-level ones
        compute the gradient (noise from ``split(key)[0]``), its update-level ones transform it
        (``split(key)[1]``)."""
        grad_fn = self._grad_fn() or batch_gradient
        valid = jnp.ones((x.shape[0],), bool)
        k_step, k_update = (None, None) if key is None else tuple(jax.random.split(key))
        x, y = self._inputs(x, y, valid, key)
        _, _, g = grad_fn(self.model.apply, variables["params"], variables, x, y, valid, k_step)
        return self.final(g, k_update, UpdateContext(self.model, variables, x, y, valid))
