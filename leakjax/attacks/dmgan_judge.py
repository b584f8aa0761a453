"""DMGAN's judge (`leakjax.attacks.dmgan`): what scores the adversary's generated images.

A classifier trained with optax Adam on held-out data (the data set's test split, which no
client holds), and those images themselves, for a 1-nearest-neighbour check in pixel space
that adversarial patterns cannot fool.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from leakjax.attacks.client import CurvePlot
from leakjax.fl.client import cross_entropy
from leakjax.fl.server import make_accuracy
from leakjax.types import NumericalError


class Judge(NamedTuple):
    """A classifier's variables and held-out images (a pytree: passed into jitted code)."""

    variables: Any
    bank: Any  # [M, H*W*C] held-out images in [0, 1]
    bank_labels: Any  # [M]


def train_classifier(model, x_u8, y, mean, std, key, *, steps: int, batch: int, lr: float):
    """Adam on minibatches sampled with replacement; one jitted `jax.lax.scan`.
    Returns ``(variables, losses [steps])``."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    opt = optax.adam(lr)

    @jax.jit
    def fit(key, x_u8, y):
        k_init, k_steps = jax.random.split(key)
        v = model.init(k_init)

        def step(carry, k):
            params, opt_state = carry
            idx = jax.random.randint(k, (batch,), 0, x_u8.shape[0])
            xb = (x_u8[idx].astype(jnp.float32) / 255.0 - mean) / std

            def loss_fn(p):
                return cross_entropy(model.apply({**v, "params": p}, xb, train=False)[0], y[idx])

            loss, g = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = opt.update(g, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        init = (v["params"], opt.init(v["params"]))
        (params, _), losses = jax.lax.scan(step, init, jax.random.split(k_steps, steps))
        return {**v, "params": params}, losses

    return fit(key, jnp.asarray(x_u8), jnp.asarray(y))


def fit(model, images, labels, mean, std, key, *, steps, batch, lr) -> tuple[Judge, float]:
    """Train ``model`` on the first 80% of ``images`` (uint8) and return ``(judge, accuracy
    on the other 20%)``; the 80% are the judge's nearest-neighbour bank."""
    cut = max(1, int(0.8 * len(labels)))
    variables, losses = train_classifier(
        model, images[:cut], labels[:cut], mean, std, key, steps=steps, batch=batch, lr=lr
    )
    if not np.all(np.isfinite(np.asarray(losses))):
        raise NumericalError("dmgan: non-finite judge loss at round 0 (training the judge)")
    rest = len(labels) - cut
    c, t = make_accuracy(model, mean, std, 500)(
        variables, images[cut:], labels[cut:], np.ones(rest, bool)
    )
    bank = images[:cut].reshape(cut, -1).astype(np.float32) / 255.0
    judge = Judge(variables, jnp.asarray(bank), jnp.asarray(labels[:cut]))
    return judge, float(c) / max(float(t), 1.0)


def score(eval_model, jd: Judge, apply, x01, received, new, tracked: int, fake: int, mean, std):
    """How the generated images ``x01`` [N, H, W, C] in [0, 1] are classified.

    Returns ``(judge labels [N], stats)``; stats: ``tracked_fraction`` (the judge says the
    tracked class), ``knn_tracked_fraction`` (the nearest bank image is of that class),
    ``nn_distance`` (mean RMS distance to it), ``fooled_fraction`` (the ``received`` global
    model, which G was trained against, says tracked), ``caught_fraction`` (the ``new``
    global model says fake), ``diversity`` (mean per-pixel std over the images; 0 when the
    generator has collapsed) and the judge's ``histogram``.
    """
    xn = (x01 - mean) / std
    pred = jnp.argmax(eval_model.apply(jd.variables, xn)[0], -1)
    before = jnp.argmax(apply(received, xn, train=False)[0], -1)
    after = jnp.argmax(apply(new, xn, train=False)[0], -1)
    flat = x01.reshape(x01.shape[0], -1)
    d2 = jnp.sum(flat**2, 1)[:, None] - 2.0 * flat @ jd.bank.T + jnp.sum(jd.bank**2, 1)[None, :]
    nn = jnp.argmin(d2, axis=1)
    nn_d2 = jnp.maximum(jnp.take_along_axis(d2, nn[:, None], 1)[:, 0], 0.0)
    stats = {
        "tracked_fraction": jnp.mean(pred == tracked),
        "knn_tracked_fraction": jnp.mean(jd.bank_labels[nn] == tracked),
        "nn_distance": jnp.mean(jnp.sqrt(nn_d2 / flat.shape[1])),
        "fooled_fraction": jnp.mean(before == tracked),
        "caught_fraction": jnp.mean(after == fake),
        "diversity": jnp.mean(jnp.std(x01, axis=0)),
        "histogram": jnp.bincount(pred, length=fake),
    }
    return pred, stats


def to_host(stats: dict) -> dict:
    """Device scalars / arrays -> floats / lists."""
    out = {}
    for k, v in stats.items():
        v = np.asarray(v)
        out[k] = v.tolist() if v.ndim else float(v)
    return out


def curves(history: dict, tracked: int, eval_model: str, title: str) -> CurvePlot:
    """``tracked_fraction.png``'s curves from the per-round ``history``."""
    r = history["round"]
    return CurvePlot(
        {
            f"judge ({eval_model}) says class {tracked}": (r, history["tracked_fraction"]),
            "nearest held-out image is of that class": (r, history["knn_tracked_fraction"]),
            "received global model says that class": (r, history["fooled_fraction"]),
            "new global model says fake": (r, history["caught_fraction"]),
        },
        "round",
        "fraction of generated images",
        title,
    )


def summarize(history: dict) -> dict:
    """The summary's tracked-fraction entries from the per-round ``history`` (index 0 of a
    list: the untrained generator)."""
    tf, knn = history["tracked_fraction"], history["knn_tracked_fraction"]
    return {
        "tracked_fraction": tf,
        "final_tracked_fraction": tf[-1],
        "best_tracked_fraction": max(tf),
        "knn_tracked_fraction": knn,
        "final_knn_tracked_fraction": knn[-1],
        "final_diversity": history["diversity"][-1],
    }
