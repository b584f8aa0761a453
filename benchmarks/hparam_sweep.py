"""3 Inverting Gradients learning rates on the quickstart's ``:tiny`` shapes (digits 16x16x1,
cnn, fedavg mode, a client with 12 samples in batches of 4, 60 steps in chunks of 30, 1
restart), compile + run, side by side in one process (same load):

- ``traced``: one `attacks.run` with ``hparams={'lr': [3], 'tv': [3]}`` (one program);
- ``recompiled``: one `attacks.run` per lr with the lr baked in (``hparams=None``: what every
  sweep did before issue 27);
- ``traced_sequential``: one `attacks.run` per lr with scalar traced hparams.

    python -m benchmarks.hparam_sweep [--repeat=2]

Prints one JSON object: seconds per variant (best of ``repeat``; ``jax.clear_caches()`` before
each so every variant pays its compiles) and whether the traced results equal the recompiled
ones.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from leakjax import attacks, models
from leakjax.attacks import inverting_gradients as ig
from leakjax.fl import ClientHParams
from leakjax.fl.observation import fedavg_observation

SHAPE = (16, 16, 1)
LRS = (0.05, 0.1, 0.2)
TV = 1e-4
STEPS, CHUNK = 60, 30


def main(repeat: int = 2) -> dict:
    model = models.get("cnn", 10, SHAPE)
    v = model.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (12,) + SHAPE, minval=-1, maxval=1)
    y = jnp.arange(12) % 10
    obs = fedavg_observation(model, v, x, y, ClientHParams(lr=0.05, epochs=1, batch_size=4))
    box = (jnp.array([-2.0]), jnp.array([2.0]))
    cfg = ig.IGConfig(tv=TV)
    key = jax.random.key(2)
    kw = dict(steps=STEPS, chunk=CHUNK, restarts=1, progress=False, vmap_chunk=1)

    def traced():
        hp = {
            "lr": jnp.asarray(LRS, jnp.float32),
            "tv": jnp.full((3,), TV, jnp.float32),
            "grad_reg": jnp.zeros((3,), jnp.float32),
        }
        fac = lambda h: ig.make(obs, model, cfg, steps=STEPS, box=box, hparams=h)  # noqa: E731
        return attacks.run(fac, key, hparams=hp, **kw)

    def recompiled():
        return [
            attacks.run(
                ig.make(obs, model, ig.IGConfig(lr=lr, tv=TV), steps=STEPS, box=box), key, **kw
            )
            for lr in LRS
        ]

    def traced_sequential():
        fac = lambda h: ig.make(obs, model, cfg, steps=STEPS, box=box, hparams=h)  # noqa: E731
        hp = lambda lr: {"lr": jnp.float32(lr), "tv": jnp.float32(TV), "grad_reg": jnp.float32(0)}  # noqa: E731
        return [attacks.run(fac, key, hparams=hp(lr), **kw) for lr in LRS]

    out, results = {}, {}
    for name, f in (
        ("traced", traced),
        ("recompiled", recompiled),
        ("traced_sequential", traced_sequential),
    ):
        best = np.inf
        for _ in range(repeat):
            jax.clear_caches()
            t0 = time.perf_counter()
            results[name] = f()
            best = min(best, time.perf_counter() - t0)
        out[name + "_s"] = round(best, 2)
    diffs = [
        float(np.max(np.abs(a.restarts.images - b.restarts.images)))
        for a, b in zip(results["traced"], results["recompiled"], strict=True)
    ]
    out["max_abs_diff_traced_vs_recompiled"] = max(diffs)
    out["device"] = jax.devices()[0].device_kind
    return out


if __name__ == "__main__":
    r = int(sys.argv[1].split("=")[1]) if len(sys.argv) > 1 else 2
    print(json.dumps(main(r)))
