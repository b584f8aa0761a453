"""R-GAP (arXiv 2010.07733): closed-form recovery of single images from rgap_cnn's gradient
(real CIFAR-10 and random images, each its own trial), FedAvg of one step on one image, and the
one-line refusals."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import attacks, config, data, metrics, models
from leakjax.attacks import rgap
from leakjax.fl import ClientHParams, client_update, gradient, param_delta
from leakjax.fl.observation import Observation
from leakjax.types import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (16, 16, 3)
TRIALS = 4


def observe(model, v, x, y, hp=None):
    """One observation of ``x``: the gradient, or one FedAvg client's update under ``hp``."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    if hp is None:
        g = gradient(model.apply, v, x, y)
        return Observation(v, g, hp=ClientHParams(lr=1.0, batch_size=len(y)), num_samples=len(y))
    after = client_update(model.apply, v, x, y, None, jax.random.key(5), hp)
    return Observation(v, param_delta(v, after), after, hp=hp, mode="fedavg", num_samples=len(y))


def single_images(model, x01, mean, std, hp=None):
    """R-GAP on each image of ``x01 [T, H, W, C]`` in [0, 1] as its own trial (one gradient of
    one image each, vmapped); the evaluation of the T reconstructions."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    x = (x01 - mean) / std
    box = tuple(jnp.asarray(b) for b in data.box(mean, std))
    v = model.init(jax.random.key(0))
    obs = [observe(model, v, x[i : i + 1], np.array([i % 10]), hp) for i in range(len(x))]
    trials = jax.tree.map(lambda *a: jnp.stack([jnp.asarray(b) for b in a]), *obs)
    res = attacks.run(
        lambda o: rgap.make(o, model, box=box),
        jax.random.key(0),
        steps=1,
        trials=trials,
        progress=False,
    )
    rec = np.asarray(res.reconstruction.images)
    assert rec.shape == (len(x), 1) + model.input_shape
    assert not res.trial_failed.any()
    rec01 = np.clip(rec[:, 0] * std + mean, 0, 1)
    return metrics.evaluate(rec01, x01, threshold=40.0)


def test_random_single_images_are_recovered():
    m = models.get("rgap_cnn", 10, SHAPE)
    x01 = np.asarray(jax.random.uniform(jax.random.key(1), (TRIALS,) + SHAPE))
    ev = single_images(m, x01, [0.5] * 3, [0.25] * 3)
    print(f"R-GAP random 16x16 on rgap_cnn: median PSNR {ev['psnr_median']:.1f} dB")
    assert ev["success_rate"] == 1.0 and ev["psnr_median"] >= 40


def cifar(shared_data_dir, n, size):
    ds = data.load("cifar10", str(shared_data_dir))
    mean, std = data.normalization(ds.info, "dataset")
    idx = np.random.default_rng(0).choice(len(ds.train_labels), n, replace=False)
    x = np.asarray(ds.train_images[idx], np.float32) / 255.0
    f = 32 // size
    return x.reshape(n, size, f, size, f, 3).mean(axis=(2, 4)), mean, std


def test_real_cifar_single_images_are_recovered(shared_data_dir):
    """4 CIFAR-10 images (2x2-averaged to 16x16), one gradient each: >= 40 dB median."""
    x01, mean, std = cifar(shared_data_dir, TRIALS, 16)
    ev = single_images(models.get("rgap_cnn", 10, SHAPE), x01, mean, std)
    print(f"R-GAP CIFAR-10 16x16 on rgap_cnn: median PSNR {ev['psnr_median']:.1f} dB")
    assert ev["success_rate"] == 1.0 and ev["psnr_median"] >= 40


@pytest.mark.slow
def test_real_cifar_32x32_single_images_are_recovered(shared_data_dir):
    """The data's own size (3072 unknowns per layer): 2 images, >= 40 dB each."""
    x01, mean, std = cifar(shared_data_dir, 2, 32)
    ev = single_images(models.get("rgap_cnn", 10, (32, 32, 3)), x01, mean, std)
    assert ev["success_rate"] == 1.0 and ev["psnr_median"] >= 40


def test_quickstart_size_digit_is_recovered():
    """One channel at 16x16 (the quickstart's digits): conv1 has 4x4x12 = 192 outputs for 256
    inputs, the kernel gradient (192 equations) makes up the difference."""
    m = models.get("rgap_cnn", 10, (16, 16, 1))
    x01 = np.asarray(jax.random.uniform(jax.random.key(4), (2, 16, 16, 1)))
    ev = single_images(m, x01, [0.5], [0.25])
    assert ev["success_rate"] == 1.0


def test_fedavg_of_one_step_on_one_image_with_weight_decay():
    """One local step on a client's one image: ``before - after = lr (g + wd w)``; the known
    decay part is removed and lr cancels (without the correction the systems disagree)."""
    m = models.get("rgap_cnn", 10, (8, 8, 3))
    x01 = np.asarray(jax.random.uniform(jax.random.key(2), (2, 8, 8, 3)))
    hp = ClientHParams(lr=0.1, momentum=0.9, weight_decay=5e-3, epochs=1, batch_size=1)
    ev = single_images(m, x01, [0.5] * 3, [0.25] * 3, hp)
    assert ev["success_rate"] == 1.0 and ev["psnr_median"] >= 40


def test_refusals_in_make():
    box = (jnp.full((3,), -2.0), jnp.full((3,), 2.0))
    m = models.get("rgap_cnn", 10, (8, 8, 3))
    v = m.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    with pytest.raises(ConfigError, match="one image per gradient, got a batch of 2"):
        rgap.make(observe(m, v, x, jnp.arange(2)), m, box=box)
    hp = ClientHParams(lr=0.1, epochs=2, batch_size=1)  # two local steps on one image
    with pytest.raises(ConfigError, match="one local step"):
        rgap.make(observe(m, v, x[:1], jnp.arange(1), hp), m, box=box)
    cnn = models.get("cnn", 10, (8, 8, 3))
    vc = cnn.init(jax.random.key(0))
    with pytest.raises(ConfigError, match=r"model.name in \('rgap_cnn',\)"):
        rgap.make(observe(cnn, vc, x[:1], jnp.arange(1)), cnn, box=box)
    with pytest.raises(ConfigError, match="rgap_grad_weight"):
        rgap.SPEC.bind({"name": "rgap", "mode": "gradient", "rgap_grad_weight": 0.0})


def test_requires_rgap_cnn_one_image_and_one_fedavg_step():
    c = config.base_config()
    c.attack.name, c.attack.mode, c.model.name = "rgap", "gradient", "cnn"
    c.attack.batch_size = 1
    with pytest.raises(ConfigError, match=r"model.name in \('rgap_cnn',\)"):
        rgap.requires(c)
    c.model.name = "rgap_cnn"
    rgap.requires(c)
    c.attack.batch_size = 2
    with pytest.raises(ConfigError, match="attack.batch_size=1"):
        rgap.requires(c)
    c.attack.batch_size = 1
    c.attack.mode, c.fl.local_epochs = "fedavg", 2
    with pytest.raises(ConfigError, match="fl.local_epochs=2"):
        rgap.requires(c)


@pytest.mark.parametrize(
    "args, words",
    [
        (("--config.model.name=rgap_cnn",), "one image per gradient, got a batch of"),
        (
            ("--config.model.name=rgap_cnn", "--config.fl.local_epochs=2"),
            "needs one local step",
        ),
        (
            (
                "--config.attack.mode=gradient",
                "--config.attack.batch_size=2",
                "--config.model.name=rgap_cnn",
            ),
            "attack.batch_size=1",
        ),
        (
            (
                "--config.attack.mode=gradient",
                "--config.attack.batch_size=1",
                "--config.model.name=cnn",
            ),
            "model.name in ('rgap_cnn',)",
        ),
    ],
)
def test_cli_refusals_exit_2_with_one_line(cli_refuses, args, words):
    """fedavg of a client's many images (quickstart: 4 a batch), fedavg of 2 epochs, a gradient
    of 2 images, a model R-GAP does not cover."""
    cli_refuses("--config.attack.name=rgap", *args, words=words)
