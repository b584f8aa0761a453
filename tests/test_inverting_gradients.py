"""Inverting Gradients: shapes/finiteness in both modes, label handling, and quality on real data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import attacks, data, metrics, models
from leakjax.attacks import inverting_gradients as ig
from leakjax.fl import ClientHParams
from leakjax.fl.observation import fedavg_observation, gradient_observation, stack
from leakjax.types import ConfigError

SHAPE = (8, 8, 1)
BOX = (jnp.array([-2.0]), jnp.array([2.0]))


@pytest.fixture(scope="module")
def small():
    model = models.get("mlp", 10, SHAPE)
    v = model.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (3,) + SHAPE, minval=-1, maxval=1)
    y = jnp.array([1, 4, 7])
    return model, v, x, y


@pytest.mark.parametrize("mode", ["gradient", "fedavg"])
@pytest.mark.parametrize("labels", ["optimize", "fixed"])
def test_finite_and_shaped(small, mode, labels):
    model, v, x, y = small
    if mode == "gradient":
        obs = gradient_observation(model, v, x, y)
    else:
        obs = fedavg_observation(model, v, x, y, ClientHParams(lr=0.1, epochs=2, batch_size=2))
    atk = ig.make(obs, model, ig.IGConfig(labels=labels), steps=20, box=BOX, labels=y)
    res = attacks.run(atk, jax.random.key(0), steps=20, restarts=2, progress=False)
    assert res.reconstruction.images.shape == (1, 3) + SHAPE
    assert res.reconstruction.labels.shape == (1, 3)
    assert np.isfinite(res.reconstruction.images).all()
    # box constraint holds
    assert (
        res.reconstruction.images.min() >= -2.0 - 1e-6
        and res.reconstruction.images.max() <= 2.0 + 1e-6
    )
    if labels == "fixed":
        np.testing.assert_array_equal(res.reconstruction.labels[0], np.asarray(y))
    # the objective decreases
    assert res.losses[0, res.best[0], -1] < res.losses[0, res.best[0], 0]


def test_zero_loss_at_truth(small):
    """The IG objective (without TV) is ~0 at the true images and labels, in both modes."""
    model, v, x, y = small
    for obs in (
        gradient_observation(model, v, x, y),
        fedavg_observation(
            model, v, x, y, ClientHParams(lr=0.1, momentum=0.5, epochs=2, batch_size=2)
        ),
    ):
        upd = ig.simulated_update(model, obs, x, y)
        assert float(attacks.losses.cosine(upd, obs.update)) < 1e-5
        other = ig.simulated_update(model, obs, x[::-1] * 0.5, y)
        assert float(attacks.losses.cosine(other, obs.update)) > 1e-3


def test_idlg_label_for_one_image(small):
    model, v, x, y = small
    obs = gradient_observation(model, v, x[:1], y[:1])
    atk = ig.make(obs, model, ig.IGConfig(), steps=5, box=BOX)
    res = attacks.run(atk, jax.random.key(0), steps=5, progress=False)
    assert int(res.reconstruction.labels[0, 0]) == int(y[0])


def test_trials_run_in_one_program(small):
    model, v, x, y = small
    obs = [gradient_observation(model, v, x[i : i + 1], y[i : i + 1]) for i in range(3)]
    res = attacks.run(
        lambda o: ig.make(o, model, ig.IGConfig(), steps=10, box=BOX),
        jax.random.key(0),
        steps=10,
        trials=stack(obs),
        progress=False,
    )
    assert res.reconstruction.images.shape == (3, 1) + SHAPE
    np.testing.assert_array_equal(res.reconstruction.labels[:, 0], np.asarray(y))


def test_bad_settings(small):
    model, v, x, y = small
    obs = gradient_observation(model, v, x, y)
    with pytest.raises(ConfigError, match="attack.labels"):
        ig.make(obs, model, ig.IGConfig(labels="magic"), steps=5, box=BOX)
    with pytest.raises(ConfigError, match="idlg"):
        ig.make(obs, model, ig.IGConfig(labels="idlg"), steps=5, box=BOX)
    with pytest.raises(ConfigError, match="fixed"):
        ig.make(obs, model, ig.IGConfig(labels="fixed"), steps=5, box=BOX)
    fobs = fedavg_observation(model, v, x, y, ClientHParams(lr=0.1, batch_size=3))
    with pytest.raises(ConfigError, match="num_images"):
        ig.make(fobs, model, ig.IGConfig(num_images=2), steps=5, box=BOX)


def test_reconstructs_real_cifar_image_from_untrained_cnn(shared_data_dir):
    """Gradient mode, one real CIFAR-10 image, untrained cnn: PSNR >= 20 dB (issue 2)."""
    ds = data.load("cifar10", str(shared_data_dir))
    mean, std = data.normalization(ds.info, "dataset")
    lo, hi = data.box(mean, std)
    model = models.get("cnn", 10, ds.info.image_shape)
    v = model.init(jax.random.key(0))
    x = data.normalize(ds.train_images[3:4], mean, std)
    y = ds.train_labels[3:4].astype(np.int32)
    obs = gradient_observation(model, v, x, y)
    steps = 300
    cfg = ig.IGConfig(lr=0.1, tv=1e-4)
    atk = ig.make(obs, model, cfg, steps=steps, box=(jnp.asarray(lo), jnp.asarray(hi)))
    res = attacks.run(atk, jax.random.key(0), steps=steps, restarts=1, chunk=100, progress=False)
    rec = np.clip(data.denormalize(res.reconstruction.images[0], mean, std), 0, 1)
    truth = np.asarray(data.denormalize(np.asarray(x), mean, std))
    p = float(metrics.psnr(rec, truth)[0])
    print(f"IG gradient-mode PSNR on CIFAR-10 image 3 (untrained cnn, {steps} steps): {p:.2f} dB")
    assert int(res.reconstruction.labels[0, 0]) == int(y[0])
    assert p >= 20.0
