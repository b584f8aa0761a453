"""SPEAR (arXiv 2403.03945): exact recovery of a batch of 16 from fc2's first-layer gradient
(random and real CIFAR-10 images), FedAvg of one full-batch step, and the one-line refusals."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import attacks, config, data, metrics, models
from leakjax.attacks import spear
from leakjax.fl import ClientHParams, client_update, gradient, param_delta
from leakjax.fl.observation import Observation
from leakjax.types import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (16, 16, 3)
B = 16


def observe(model, v, x, y, hp=None):
    """One observation with a leading trial axis: the gradient, or one FedAvg client's
    update under ``hp``."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    if hp is None:
        g = gradient(model.apply, v, x, y)
        obs = Observation(v, g, hp=ClientHParams(lr=1.0, batch_size=len(y)), num_samples=len(y))
    else:
        after = client_update(model.apply, v, x, y, None, jax.random.key(5), hp)
        obs = Observation(v, param_delta(v, after), after, hp=hp, mode="fedavg", num_samples=len(y))
    return obs, jax.tree.map(lambda a: jnp.asarray(a)[None], obs)


def attack(model, trials, box):
    return attacks.run(
        lambda o: spear.make(o, model, box=box),
        jax.random.key(0),
        steps=1,
        trials=trials,
        progress=False,
    )


def scored(res, x01, to01):
    rec = np.clip(to01(np.asarray(res.reconstruction.images[0])), 0, 1)
    return metrics.evaluate(rec, x01, threshold=40.0)


def exact(model, x01, mean, std, hp=None):
    """SPEAR on a batch of images in [0, 1] (normalized with mean/std); the evaluation."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    x = (x01 - mean) / std
    lo, hi = (jnp.asarray(b) for b in data.box(mean, std))
    v = model.init(jax.random.key(0))
    _, trials = observe(model, v, x, np.arange(len(x)) % 10, hp)
    res = attack(model, trials, (lo, hi))
    assert res.reconstruction.images.shape == (1, len(x)) + model.input_shape
    assert not res.trial_failed.any()
    return scored(res, x01, lambda r: r * std + mean)


def test_random_batch_of_16_is_recovered_exactly():
    m = models.get("fc2", 10, SHAPE)
    x01 = np.asarray(jax.random.uniform(jax.random.key(1), (B,) + SHAPE))
    ev = exact(m, x01, [0.5] * 3, [0.25] * 3)
    print(f"SPEAR random 16 on fc2: median PSNR {ev['psnr_median']:.1f} dB")
    assert ev["num_matched"] == B and ev["success_rate"] == 1.0 and ev["psnr_median"] >= 40


def test_real_cifar_batch_of_16_is_recovered_exactly(shared_data_dir):
    ds = data.load("cifar10", str(shared_data_dir))
    mean, std = data.normalization(ds.info, "dataset")
    idx = np.random.default_rng(0).choice(len(ds.train_labels), B, replace=False)
    x32 = np.asarray(ds.train_images[idx], np.float32) / 255.0
    x01 = x32.reshape(B, 16, 2, 16, 2, 3).mean(axis=(2, 4))  # 2x2 average: 16x16
    m = models.get("fc2", 10, SHAPE)
    ev = exact(m, x01, mean, std)
    print(f"SPEAR CIFAR-10 16 on fc2 16x16: median PSNR {ev['psnr_median']:.1f} dB")
    assert ev["num_matched"] == B and ev["success_rate"] == 1.0 and ev["psnr_median"] >= 40


def test_fedavg_of_one_full_batch_step_with_weight_decay_is_exact():
    """One local step on all 8 samples: ``before - after = lr (g + wd w)``; the known decay
    part is removed and lr cancels (without the correction the scales are off)."""
    m = models.get("fc2", 10, (8, 8, 3))
    x01 = np.asarray(jax.random.uniform(jax.random.key(2), (8, 8, 8, 3)))
    hp = ClientHParams(lr=0.1, momentum=0.9, weight_decay=5e-3, epochs=1, batch_size=8)
    ev = exact(m, x01, [0.5] * 3, [0.25] * 3, hp)
    assert ev["success_rate"] == 1.0 and ev["psnr_median"] >= 40


def test_batch_of_one():
    m = models.get("fc2", 10, (4, 4, 1))
    x01 = np.asarray(jax.random.uniform(jax.random.key(3), (1, 4, 4, 1)))
    ev = exact(m, x01, [0.5], [0.25])
    assert ev["success_rate"] == 1.0


def test_refusals_in_make():
    box = (jnp.full((3,), -2.0), jnp.full((3,), 2.0))
    m = models.get("fc2", 10, (4, 4, 3))
    v = m.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 4, 4, 3))
    hp = ClientHParams(lr=0.1, epochs=1, batch_size=2)  # two local steps
    obs, _ = observe(m, v, x, jnp.arange(4), hp)
    with pytest.raises(ConfigError, match="one local step"):
        spear.make(obs, m, box=box)
    narrow = models.get("mlp", 10, (2, 2, 1))  # fc1 has 200 units
    vn = narrow.init(jax.random.key(0))
    obs, _ = observe(narrow, vn, jnp.zeros((201, 2, 2, 1)), jnp.zeros(201, jnp.int32))
    with pytest.raises(ConfigError, match="exceeds the 200 units"):
        spear.make(obs, narrow, box=(jnp.full((1,), -2.0), jnp.full((1,), 2.0)))
    cnn = models.get("cnn", 10, (16, 16, 1))
    vc = cnn.init(jax.random.key(0))
    obs, _ = observe(cnn, vc, jnp.zeros((2, 16, 16, 1)), jnp.zeros(2, jnp.int32))
    with pytest.raises(ConfigError):
        spear.make(obs, cnn, box=(jnp.full((1,), -2.0), jnp.full((1,), 2.0)))
    with pytest.raises(ConfigError, match="spear_tol"):
        spear.SPEC.bind({"name": "spear", "mode": "gradient", "spear_tol": -1.0})


@pytest.mark.parametrize(
    "args, words",
    [
        (("--config.attack.mode=fedavg", "--config.model.name=fc2"), "one local step"),
        (("--config.attack.mode=gradient", "--config.model.name=cnn"), "model.name in"),
        (
            (
                "--config.attack.mode=gradient",
                "--config.model.name=fc2",
                "--config.attack.batch_size=260",
                "--config.fl.num_clients=2",
            ),
            "exceeds the 256 units",
        ),
    ],
)
def test_cli_refusals_exit_2_with_one_line(cli_refuses, args, words):
    cli_refuses("--config.attack.name=spear", *args, words=words)


def test_requires_a_dense_relu_first_layer_and_one_fedavg_step():
    c = config.base_config()
    c.attack.name, c.attack.mode, c.model.name = "spear", "gradient", "cnn"
    with pytest.raises(ConfigError, match=r"model.name in \('fc2', 'mlp'\)"):
        spear.requires(c)
    c.model.name = "fc2"
    spear.requires(c)
    c.model.imprint_bins = 8
    with pytest.raises(ConfigError, match="imprint"):
        spear.requires(c)
    c.model.imprint_bins = 0
    c.attack.mode, c.fl.local_epochs = "fedavg", 2
    with pytest.raises(ConfigError, match="fl.local_epochs=2"):
        spear.requires(c)
