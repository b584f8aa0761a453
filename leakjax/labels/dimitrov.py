"""Label counts of a FedAvg update by interpolating the client's trajectory (Dimitrov,
Balunovic, Konstantinov, Vechev 2022, "Data Leakage in Federated Averaging", TMLR,
https://arxiv.org/abs/2206.12395; their label-count restoration).

The client's T = E * ceil(N / B) SGD steps happen at unobserved weights. Step t's
weights are approximated by linear interpolation between the observed global weights
and the client's returned weights, ``theta_t = theta_0 + (t / T) (theta_T - theta_0)``,
t = 0 .. T-1. At each theta_t the mean softmax output p_t [C] (averaged per class over
several inputs) and the mean feature sum O_t of the head's input are estimated on
random inputs (or the attacker's auxiliary images). Assuming every batch holds the
client's classes in proportion n_c / N, the head's update is

    bias:   db_c / lr  = sum_t w_t (p_tc - n_c / N)
    kernel: sum_f dW_fc / lr = sum_t w_t (E_t[O p_c] - O_t n_c / N)

(w_t: momentum weights, `counts.step_weights`; weight decay is removed at the
interpolated weights), a linear equation in each n_c.

Fixed here relative to the PyTorch reference (attack/label.py; REFERENCE.md §5 items
1-3): the interpolation starts from the real global weights (the reference's "old"
state aliased the new one), the softmax is averaged per class over the inputs (the
reference averaged over all elements, a constant 1/C), the T coefficients cover all
E * k steps (the reference built k * B of them), and several random inputs of a
normalized-image-like distribution (`counts.random_inputs`) replace its single randn
image. The reference averages the T per-step estimates; here the equation above is
solved for n directly (the same model of the update, weighted by the step weights).
In gradient mode (T = 1) this is Geng et al.'s estimate.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from leakjax.labels import counts as C
from leakjax.labels.geng import _inputs


@functools.partial(jax.jit, static_argnums=(0,))
def _trajectory_moments(model, v0, v1, coefs, x):
    """Mean softmax [T, C], mean feature sum [T] and mean O * p [T, C] at each coef."""

    def at(t):
        params = C.interpolate(v0["params"], v1["params"], t)
        stats = C.interpolate(v0.get("batch_stats"), v1.get("batch_stats"), t)
        h, p = C.head_stats(model, C.with_params(v0, params, stats), x)
        o = jnp.sum(h, axis=-1)
        return jnp.mean(p, axis=0), jnp.mean(o), jnp.mean(o[:, None] * p, axis=0)

    return jax.lax.map(at, coefs)


def dimitrov_counts(
    obs, model, *, key=None, aux=None, use: str = "auto", num_inputs: int = 64
) -> np.ndarray:
    """Real-valued per-class counts [C] (round with `counts.round_counts`).

    Args:
      obs: `Observation`; in fedavg mode ``variables_after`` must be present.
      model: `leakjax.models.Model`.
      key: PRNG key for the random inputs (default key 0).
      aux: optional auxiliary images (or an (images, labels) pair) instead of random inputs.
      use: 'auto' (bias if the head has one), 'bias' or 'kernel'.
      num_inputs: number of random inputs per interpolation point.
    """
    n = int(obs.num_samples)
    upd = C.head_of(obs.update)
    src = C.resolve_use(upd, use)
    lr, wd = C.learning_rate(obs), C.weight_decay(obs)
    w = C.step_weights(obs)
    _, total = C.num_steps(obs)
    v0 = obs.variables
    v1 = obs.variables_after if obs.mode == "fedavg" else obs.variables
    if v1 is None:
        v1 = v0
    coefs = np.arange(total, dtype=np.float32) / total
    x = _inputs(aux, key, num_inputs, model.input_shape)
    p, o, op = (np.asarray(a, np.float64) for a in _trajectory_moments(model, v0, v1, coefs, x))
    h0 = C.head_of(v0["params"])
    h1 = C.head_of(v1["params"])
    # sum_t w_t theta_t (head), for the weight-decay term
    c = coefs.astype(np.float64)
    wsum, wc = float(w.sum()), float((w * c).sum())
    if src == "bias":
        decay = wd * ((wsum - wc) * h0["bias"] + wc * h1["bias"])
        rhs = upd["bias"] / lr - decay
        return n * ((w[:, None] * p).sum(0) - rhs) / wsum
    decay = wd * ((wsum - wc) * h0["kernel"] + wc * h1["kernel"]).sum(0)
    rhs = upd["kernel"].sum(0) / lr - decay
    return n * ((w[:, None] * op).sum(0) - rhs) / float((w * o).sum())
