"""Label counts from a local update by least squares over class-conditional statistics
along a simulated local training, after RLU (Chen & Vikalo 2024, "Recovering Labels from
Local Updates in Federated Learning", ICML, https://arxiv.org/abs/2405.00955).

RLU relates the output layer's update to the client's label counts through the model's
expected outputs *given the true class* ("erroneous confidence": the confidence that a
sample of class j puts on every class c), estimated on auxiliary labeled data, and it
simulates how those statistics evolve during the client's local training by a Monte Carlo
simulation on auxiliary data, because the intermediate models are not observed. With
S_t[j, c] = E[p_c | y = j] and M_t[j] = E[h (p - e_j)^T | y = j] (h: the head's input)
at step t's weights, and every batch holding the classes in proportion n / N:

    db / lr = (1/N) sum_t w_t sum_j n_j (S_t[j] - e_j)         (C equations)
    dW / lr = (1/N) sum_t w_t sum_j n_j M_t[j]                  (F x C equations)

(w_t: torch-momentum weights of `counts.step_weights`; weight decay is removed at the
simulated weights). The system (the bias block; the kernel block too with
``use_kernel=True`` or when the head has no bias; each block scaled by the norm of its
right-hand side) is solved for n >= 0 with sum(n) = N by non-negative least squares and
rounded by largest remainder.

Procedure implemented here:
1. Stationary estimate: S and M at the global weights only, on the auxiliary data.
2. ``iterations`` rounds of: draw ``samples`` simulated clients of N auxiliary samples
   with the class composition of the current estimate; train each from the global
   weights with the client's public hyperparameters (epochs, batch size, lr, momentum,
   weight decay; `leakjax.fl.client_step` on each batch of a `leakjax.fl.batch_schedule`),
   recording S_t and M_t at every step on the simulated client's own samples (classes
   absent from it: on the auxiliary samples of that class); average over the draws and
   solve again.

Simplifications (also in BUILD_NOTES): the paper's estimator and its Monte Carlo
procedure were reconstructed from its description, not from the authors' code. Pass
labeled normalized images from the client's distribution (e.g. the data set's test
split) as ``aux=(images, labels)``; at most ``max_aux_per_class`` of each class are used.
Without them, random inputs with balanced labels stand in: the class-conditional
statistics then coincide across classes, and the method is the Dimitrov-type estimate
with a simulated instead of an interpolated trajectory.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from leakjax.fl.client import client_init, client_step
from leakjax.fl.schedule import batch_schedule
from leakjax.labels import counts as C


def _class_weights(y, num_classes, fallback=None):
    """[M, C]: column j averages the rows of class j.

    Classes without rows use ``fallback`` ([M, C] or None: the mean of all rows).
    """
    onehot = np.eye(num_classes)[np.asarray(y, np.int64)]
    cnt = onehot.sum(0)
    if fallback is None:
        fallback = np.full_like(onehot, 1.0 / len(onehot))
    return np.where(cnt > 0, onehot / np.maximum(cnt, 1), fallback).astype(np.float32)


def _stats(model, variables, x, cw, kernel=True):
    """S [C, C] (S[j, c] = E[p_c | j]) and M [C, F, C] (M[j] = E[h (p - e_j)^T | j]).

    M is [C, 1, C] zeros when ``kernel`` is False (not needed).
    """
    h, p = C.head_stats(model, variables, x)
    s = cw.T @ p
    if not kernel:
        return s, jnp.zeros((s.shape[0], 1, s.shape[1]), s.dtype)
    hp = jnp.einsum("ij,if,ic->jfc", cw, h, p)
    hbar = cw.T @ h
    eye = jnp.eye(p.shape[-1], dtype=p.dtype)
    return s, hp - hbar[:, :, None] * eye[:, None, :]


@functools.partial(jax.jit, static_argnums=(0, 4))
def _static_stats(model, variables, x, cw, kernel):
    s, m = _stats(model, variables, x, cw, kernel)
    return s[None], m[None], jax.tree.map(lambda a: a[None], variables["params"]["head"])


@functools.partial(jax.jit, static_argnums=(0, 9))
def _simulate(model, v0, hp, x_aux, y_aux, idx, eval_idx, cw, keys, kernel):
    """Per-step statistics of simulated clients (vmapped over the draws).

    Args:
      idx: [R, N] aux rows of each simulated client.
      eval_idx: [R, C * k] aux rows the statistics are taken on (k rows of each class,
        from the simulated client where it has the class); cw: [C * k, C] their class
        weights; keys: [R] shuffle keys; kernel: also compute M.

    Returns:
      S [R, T, C, C], M [R, T, C, F, C], head params [R, T, ...] at the weights each
      step's gradient is taken at.
    """

    def one(ix, ex, key):
        x, y = x_aux[ix], y_aux[ix]
        x_eval = x_aux[ex]
        bidx, valid = batch_schedule(jnp.ones(ix.shape, bool), key, hp.epochs, hp.batch_size)

        def step(state, batch):
            bi, va = batch
            v = state.variables
            s, m = _stats(model, v, x_eval, cw, kernel)
            state, _ = client_step(model.apply, state, x[bi], y[bi], va, hp)
            return state, (s, m, v["params"]["head"])

        _, out = jax.lax.scan(step, client_init(v0, hp), (bidx, valid))
        return out

    return jax.vmap(one)(idx, eval_idx, keys)


def _solve(obs, upd, w, s, m, heads, use_kernel):
    """Least-squares counts from statistics at T points with step weights w [T]."""
    n = int(obs.num_samples)
    lr, wd = C.learning_rate(obs), C.weight_decay(obs)
    num_classes = s.shape[-1]
    rows, rhs = [], []
    if "bias" in upd:
        decay = wd * np.einsum("t,tc->c", w, np.asarray(heads["bias"], np.float64))
        b = upd["bias"] / lr - decay
        a = (np.einsum("t,tjc->jc", w, s) - w.sum() * np.eye(num_classes)).T / n  # [c, j]
        scale = max(np.linalg.norm(b), 1e-12)
        rows.append(a / scale)
        rhs.append(b / scale)
    if use_kernel or "bias" not in upd:
        decay = wd * np.einsum("t,tfc->fc", w, np.asarray(heads["kernel"], np.float64))
        b = (upd["kernel"] / lr - decay).reshape(-1)
        a = np.einsum("t,tjfc->jfc", w, m).reshape(num_classes, -1).T / n  # [(f, c), j]
        scale = max(np.linalg.norm(b), 1e-12)
        rows.append(a / scale)
        rhs.append(b / scale)
    return C.lstsq_counts(np.concatenate(rows), np.concatenate(rhs), n)


def _draw(rng, y_aux, composition, samples):
    """[samples, N] aux rows with the given class composition (with replacement)."""
    y_aux = np.asarray(y_aux)
    out = []
    for _ in range(samples):
        parts = []
        for j, cnt in enumerate(composition):
            pool = np.flatnonzero(y_aux == j)
            if pool.size == 0:
                pool = np.arange(y_aux.size)
            parts.append(rng.choice(pool, size=int(cnt), replace=True))
        out.append(np.concatenate(parts))
    return np.stack(out).astype(np.int32)


def _eval_rows(rng, y_aux, ix, k, num_classes):
    """[C * k] aux rows: k of each class, from the client rows ``ix`` where possible."""
    y_aux = np.asarray(y_aux)
    rows = []
    for j in range(num_classes):
        own = ix[y_aux[ix] == j]
        pool = own if own.size else np.flatnonzero(y_aux == j)
        if pool.size == 0:
            pool = np.arange(y_aux.size)
        rows.append(rng.choice(pool, size=k, replace=True))
    return np.concatenate(rows).astype(np.int32)


def _subset(rng, y, per_class, num_classes):
    keep = [rng.permutation(np.flatnonzero(y == j))[:per_class] for j in range(num_classes)]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def rlu_counts(
    obs,
    model,
    *,
    key=None,
    aux=None,
    per_class: int = 8,
    max_aux_per_class: int = 16,
    eval_per_class: int = 4,
    samples: int = 4,
    iterations: int = 2,
    use_kernel: bool = False,
) -> np.ndarray:
    """Real-valued per-class counts [C] (round with `counts.round_counts`).

    Args:
      obs: `Observation` (gradient or fedavg mode).
      model: `leakjax.models.Model`.
      key: PRNG key (random inputs, Monte Carlo draws and shuffles; default key 0).
      aux: auxiliary labeled data ``(images [M, H, W, C] normalized, labels [M])``; None:
        ``per_class`` random inputs per class with balanced labels.
      per_class: random inputs per class when ``aux`` is None.
      max_aux_per_class: at most this many auxiliary samples of each class are used
        (stationary statistics and the simulated clients' draws).
      eval_per_class: rows per class the statistics are taken on at every simulated
        step: the simulated client's own rows of that class (those it trains on), or
        auxiliary rows of the class when it has none.
      samples: Monte Carlo draws of simulated clients per iteration (fedavg mode).
      iterations: simulate-and-solve rounds after the stationary estimate (fedavg mode).
      use_kernel: add the kernel's F x C equations to the bias's C equations (always
        used when the head has no bias).
    """
    key = jax.random.key(0) if key is None else key
    k_in, k_sim = jax.random.split(key)
    num_classes = int(model.num_classes)
    seed = int(jax.random.randint(k_sim, (), 0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if isinstance(aux, tuple | list) and len(aux) == 2 and aux[1] is not None:
        y_all = np.asarray(aux[1], np.int64)
        keep = _subset(rng, y_all, max_aux_per_class, num_classes)
        x_aux = jnp.asarray(np.asarray(aux[0])[keep], jnp.float32)
        y_aux = y_all[keep].astype(np.int32)
    else:
        x_aux = C.random_inputs(k_in, per_class * num_classes, model.input_shape)
        y_aux = np.arange(per_class * num_classes, dtype=np.int32) % num_classes
    upd = C.head_of(obs.update)
    kernel = bool(use_kernel or "bias" not in upd)
    w = C.step_weights(obs)

    cw_aux = jnp.asarray(_class_weights(y_aux, num_classes))
    s, m, heads = _static_stats(model, obs.variables, x_aux, cw_aux, kernel)
    s, m = np.asarray(s, np.float64), np.asarray(m, np.float64)
    heads = {k: np.asarray(v, np.float64) for k, v in heads.items()}
    est = _solve(obs, upd, np.array([w.sum()]), s, m, heads, kernel)
    if obs.mode == "gradient":
        return est
    n = int(obs.num_samples)
    cw = jnp.asarray(np.repeat(np.eye(num_classes, dtype=np.float32), eval_per_class, 0))
    cw = cw / eval_per_class
    y_dev = jnp.asarray(y_aux)
    for it in range(iterations):
        comp = C.round_counts(est, n)
        idx = _draw(rng, y_aux, comp, samples)
        eval_idx = np.stack([_eval_rows(rng, y_aux, ix, eval_per_class, num_classes) for ix in idx])
        keys = jax.random.split(jax.random.fold_in(k_sim, it), samples)
        s, m, heads = _simulate(
            model,
            obs.variables,
            obs.hp,
            x_aux,
            y_dev,
            jnp.asarray(idx),
            jnp.asarray(eval_idx),
            cw,
            keys,
            kernel,
        )
        s = np.asarray(s, np.float64).mean(0)
        m = np.asarray(m, np.float64).mean(0)
        heads = {k: np.asarray(v, np.float64).mean(0) for k, v in heads.items()}
        est = _solve(obs, upd, w, s, m, heads, kernel)
    return est
