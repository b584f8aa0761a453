"""FedAvg round time on the quickstart shapes (digits 16x16, 100 clients, batch 4), per conv impl.

python -m benchmarks.fl_round_digits
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from leakjax import data, models
from leakjax.fl import FLSettings
from leakjax.fl.server import make_accuracy, make_train_round

ds = data.load("digits")
part = data.partition(ds.train_labels, 100, "iid", seed=0)
train = data.gather_padded(ds.train_images, ds.train_labels, part.train_idx)
mean, std = data.normalization(ds.info, "dataset")
for impl in ["auto", "xla"]:
    model = models.get("cnn", 10, ds.info.image_shape, conv_impl=impl)
    v = model.init(jax.random.key(0))
    s = FLSettings(epochs=1, batch_size=4, lr=0.05, client_chunk=10)
    tr = make_train_round(model, s, mean, std)
    x = train.x.reshape((10, 10) + train.x.shape[1:])
    y = train.y.reshape(10, 10, -1)
    n = train.n.reshape(10, 10)
    keys = jax.random.split(jax.random.key(1), 100).reshape(10, 10)
    args = (v, x, y, n, keys, jnp.float32(0.05), jnp.zeros((2,), jnp.int32))
    t = time.perf_counter()
    jax.block_until_ready(tr(*args))
    c = time.perf_counter() - t
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(tr(*args))
        ts.append(time.perf_counter() - t)
    acc = make_accuracy(model, mean, std)
    t = time.perf_counter()
    jax.block_until_ready(
        acc(v, ds.test_images, ds.test_labels, np.ones(len(ds.test_labels), bool))
    )
    ca = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(
        acc(v, ds.test_images, ds.test_labels, np.ones(len(ds.test_labels), bool))
    )
    ta = time.perf_counter() - t
    print(
        impl,
        "round compile+run",
        round(c, 2),
        "round",
        [round(a, 3) for a in ts],
        "acc compile",
        round(ca, 2),
        "acc",
        round(ta, 4),
        "max_n",
        train.x.shape[1],
    )
