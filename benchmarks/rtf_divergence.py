"""Does a FedAvg client's local training diverge behind Robbing the Fed's imprint block?

One client's epoch of SGD (lr 0.1, no momentum, weight decay 1e-5, batch 10: the paper's RTF
FedAvg setting, experiments/fed/rtf.sh) on 400 real CIFAR-10 images (the shared subset), step by
step through leakjax.fl.client_step, for the base models behind the block; prints the first
steps' losses and the first non-finite step per seed, as JSON lines.

    LEAKJAX_SHARED_DATA=../shared/data python -m benchmarks.rtf_divergence [--models=fc2,resnet18]

The reference's own classes in the same setting are measured by a script beside
../shared/reference-bench (BUILD_NOTES, "RTF under FedAvg: what diverges").
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import pickle

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from leakjax import fl, models
from leakjax.models import imprint

_MODELS = flags.DEFINE_list("models", ["fc2", "cnn", "resnet18"], "Base models behind the block.")
_SIZES = flags.DEFINE_list("sizes", ["32", "16"], "Image sizes (16: 2x2 mean-pooled, as :cpu).")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Initializations and shuffles per setting.")
_N = flags.DEFINE_integer("images", 400, "The client's training images.")
_LR = flags.DEFINE_float("lr", 0.1, "Local learning rate.")
_GAIN = flags.DEFINE_float("gain", 1e-3, "The block's gain (linear1's weights are 1 / gain).")


def _cifar(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    root = pathlib.Path(os.environ.get("LEAKJAX_SHARED_DATA", "../shared/data"))
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    x = d[b"data"][:n].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    if size == 16:
        x = x.reshape(-1, 16, 2, 16, 2, 3).mean((2, 4))
    return (x - 0.5) / 0.5, np.asarray(d[b"labels"][:n], np.int32)


def main(argv):
    del argv
    hp = fl.ClientHParams(lr=_LR.value, momentum=0.0, weight_decay=1e-5, epochs=1, batch_size=10)
    for size in map(int, _SIZES.value):
        x, y = _cifar(_N.value, size)
        for name in _MODELS.value:
            if name == "cnn" and size != 32:
                continue  # the cifar cnn's fc1 is sized for 32x32
            model = imprint.wrap(models.get(name, 10, (size, size, 3)), gain=_GAIN.value)
            step = jax.jit(
                lambda s, xb, yb: fl.client_step(model.apply, s, xb, yb, jnp.ones(10, bool), hp)
            )
            for seed in range(_SEEDS.value):
                state = fl.client_init(model.init(jax.random.key(seed)), hp)
                order = np.random.default_rng(seed).permutation(len(x))
                losses = []
                for i in range(0, len(x), 10):
                    state, loss = step(state, x[order[i : i + 10]], y[order[i : i + 10]])
                    losses.append(float(loss))
                    if not math.isfinite(losses[-1]):
                        break
                bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
                print(
                    json.dumps(
                        {
                            "size": size,
                            "model": name,
                            "gain": _GAIN.value,
                            "lr": _LR.value,
                            "seed": seed,
                            "steps": len(losses),
                            "first_nonfinite": bad[0] if bad else None,
                            "losses": [
                                round(v, 3) if math.isfinite(v) else str(v) for v in losses[:6]
                            ],
                            "last": losses[-1],
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    app.run(main)
