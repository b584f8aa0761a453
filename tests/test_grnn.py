"""GRNN: the generator (shapes, range), both modes, loss decrease, trials, settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import attacks, config, models
from leakjax.attacks import grnn
from leakjax.fl import ClientHParams
from leakjax.fl.observation import fedavg_observation, gradient_observation, stack
from leakjax.models import generators
from leakjax.types import ConfigError


@pytest.mark.parametrize("shape", [(16, 16, 1), (32, 32, 3), (28, 28, 1), (16, 16, 3)])
def test_generator_shapes_and_range(shape):
    gen = generators.GRNNGenerator(7, shape)
    v = generators.init_generator(gen, jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (3, generators.NOISE_DIM))
    (img, y), v2 = jax.jit(lambda v, z: generators.generate(gen, v, z))(v, z)
    assert img.shape == (3,) + shape and y.shape == (3, 7)
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    np.testing.assert_allclose(np.asarray(y).sum(-1), 1.0, rtol=1e-5)
    # batch statistics were used and updated (train mode)
    assert not np.allclose(
        jax.tree.leaves(v2["batch_stats"])[0], jax.tree.leaves(v["batch_stats"])[0]
    )


def test_reference_architecture_at_32x32x3():
    """ConvT 128->256 + GLU (128@4x4), then 128->64, 64->32, 32->3 (REFERENCE.md §3)."""
    gen = generators.GRNNGenerator(10, (32, 32, 3))
    p = generators.init_generator(gen, jax.random.key(0))["params"]
    assert p["in_block"]["kernel"].shape == (4, 4, 128, 256)
    assert p["block0"]["conv"]["kernel"].shape == (3, 3, 128, 128)
    assert p["block1"]["conv"]["kernel"].shape == (3, 3, 64, 64)
    assert p["out_block"]["conv"]["kernel"].shape == (3, 3, 32, 6)
    assert p["label_head"]["kernel"].shape == (128, 10)


@pytest.fixture(scope="module")
def small():
    shape = (8, 8, 1)
    model = models.get("mlp", 10, shape)
    v = model.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (4,) + shape, minval=-1, maxval=1)
    y = jnp.array([1, 4, 7, 2])
    box = (jnp.array([-1.0]), jnp.array([1.0]))
    return model, v, x, y, box


def _observation(small, mode, key=3):
    model, v, x, y, _ = small
    if mode == "gradient":
        return gradient_observation(model, v, x, y)
    hp = ClientHParams(lr=0.05, momentum=0.5, epochs=2, batch_size=2)
    return fedavg_observation(model, v, x, y, hp, key=jax.random.key(key))


@pytest.mark.parametrize("mode", ["gradient", "fedavg"])
def test_finite_shaped_in_box_and_decreasing(small, mode):
    model, _, _, y, box = small
    obs = _observation(small, mode)
    cfg = grnn.GRNNConfig(lr=1e-3)
    atk = grnn.make(obs, model, cfg, steps=30, box=box)
    res = attacks.run(atk, jax.random.key(0), steps=30, progress=False)
    rec = res.reconstruction
    assert rec.images.shape == (1, 4, 8, 8, 1) and rec.labels.shape == (1, 4)
    assert np.isfinite(rec.images).all() and not res.failed.any()
    assert rec.images.min() >= -1.0 and rec.images.max() <= 1.0
    assert set(np.asarray(rec.labels).ravel().tolist()) <= set(range(10))
    losses = res.losses[0, 0]
    assert np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.7 * losses[:5].mean(), losses


def test_trials_equal_a_loop(small):
    """Trial 0 (key fold_in(key, 0)) of a vmapped run does not depend on the other trials
    (bit for bit) and equals a 1-trial run to float32 rounding: XLA's CPU reductions over
    the generator's BatchNorm axes are vectorized differently for another number of
    trials (1-ulp differences, amplified by RMSprop's normalisation)."""
    model, v, x, y, box = small
    obs = [gradient_observation(model, v, x * s, y) for s in (1.0, -1.0, 0.5)]

    def factory(o):
        return grnn.make(o, model, grnn.GRNNConfig(lr=1e-3), steps=4, box=box, labels=y)

    run = lambda o: attacks.run(  # noqa: E731
        factory, jax.random.key(0), steps=4, trials=stack(o), progress=False
    )
    both, other, one = run(obs[:2]), run([obs[0], obs[2]]), run(obs[:1])
    assert both.reconstruction.images.shape == (2, 4, 8, 8, 1)
    np.testing.assert_array_equal(both.reconstruction.images[0], other.reconstruction.images[0])
    np.testing.assert_array_equal(both.losses[0], other.losses[0])
    np.testing.assert_allclose(
        both.reconstruction.images[0], one.reconstruction.images[0], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(both.losses[0], one.losses[0], rtol=1e-5)
    # fixed labels are returned as given
    np.testing.assert_array_equal(both.reconstruction.labels[1], np.asarray(y))


def test_loss_terms():
    a = {"w": jnp.array([3.0, 4.0])}
    b = {"w": jnp.zeros(2)}
    assert float(grnn.grnn_loss(a, b)) == pytest.approx(25.0 + 5.0)
    assert float(grnn.grnn_loss(b, b)) == pytest.approx(0.0, abs=1e-5)
    g = jax.grad(lambda t: grnn.grnn_loss({"w": t}, b))(jnp.zeros(2))
    assert np.isfinite(np.asarray(g)).all()


def test_bad_settings(small):
    model, _, _, y, box = small
    obs = _observation(small, "fedavg")
    with pytest.raises(ConfigError, match="attack.num_images"):
        grnn.make(obs, model, grnn.GRNNConfig(num_images=2), steps=5, box=box)
    with pytest.raises(ConfigError, match="attack.labels"):
        grnn.make(obs, model, grnn.GRNNConfig(labels="fixed"), steps=5, box=box)
    with pytest.raises(ConfigError, match="attack.momentum"):
        grnn.make(obs, model, grnn.GRNNConfig(momentum=1.0), steps=5, box=box)
    c = config.base_config()
    c.attack.name = "grnn"
    c.attack.labels = "magic"
    with pytest.raises(ConfigError, match="attack.labels"):
        attacks.get("grnn").bind(c.attack)
    c.attack.labels = "auto"
    attacks.get("grnn").bind(c.attack)
    c.attack.momentum = "high"
    with pytest.raises(ConfigError, match="attack.momentum"):
        attacks.get("grnn").bind(c.attack)
    del c.attack["momentum"]
    c.attack.conv_impl = "fft"
    with pytest.raises(ConfigError, match="attack.conv_impl"):
        attacks.get("grnn").bind(c.attack)
