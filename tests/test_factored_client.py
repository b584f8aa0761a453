"""The factored simulated client (leakjax.fl.factored) against the dense one (issue 28)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import attacks, models
from leakjax.attacks import dlf, losses
from leakjax.attacks.simulation import simulated_update
from leakjax.config import base_config
from leakjax.fl import factored
from leakjax.fl.client import Client, ClientHParams
from leakjax.fl.observation import fedavg_observation
from leakjax.fl.schedule import copies_schedule, momentum_weights, sgd_weights
from leakjax.types import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (8, 8, 3)  # the cnn's fc1: 1024 x 512 (factored under 'auto'), head 512 x 10 (dense)
# momentum, weight decay, 2 epochs of ceil(5 / 2) = 3 steps, the last batch partial
HP = ClientHParams(lr=0.05, momentum=0.5, weight_decay=1e-3, epochs=2, batch_size=2)


@pytest.fixture(scope="module")
def client():
    model = models.get("cnn", 10, SHAPE)
    v = model.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (5,) + SHAPE, minval=-1, maxval=1)
    y = jnp.array([3, 1, 4, 1, 5])
    obs = fedavg_observation(model, v, x, y, HP)
    dummy = jax.random.normal(jax.random.key(2), x.shape)
    return model, v, obs, dummy, y


def _rel(a, b):
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _counted(monkeypatch):
    calls = []
    real = factored.factored_delta
    monkeypatch.setattr(
        factored, "factored_delta", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    return calls


def test_sgd_weights_reduce_to_momentum_weights_and_follow_sgd():
    alpha, coef = sgd_weights(6, 0.1, 0.9, 0.0, xp=np)
    np.testing.assert_allclose(alpha, 1.0)
    np.testing.assert_allclose(coef[6], -0.1 * momentum_weights(6, 0.9, xp=np), rtol=1e-12)
    # with weight decay: a scalar "kernel" trained by torch's SGD on gradients g_t
    lr, mu, wd, w0, g = 0.1, 0.5, 0.3, 2.0, np.array([1.0, -2.0, 0.5, 3.0])
    alpha, coef = sgd_weights(4, lr, mu, wd, xp=np)
    w, buf = w0, 0.0
    for s in range(4):
        assert abs(alpha[s] * w0 + coef[s] @ g - w) < 1e-12
        buf = mu * buf + g[s] + wd * w
        w = w - lr * buf
    assert abs(alpha[4] * w0 + coef[4] @ g - w) < 1e-12
    a32, c32 = sgd_weights(4, lr, mu, wd)  # traced float32 agrees
    np.testing.assert_allclose(a32, alpha, rtol=1e-6)
    np.testing.assert_allclose(c32, coef, rtol=1e-5, atol=1e-7)


def test_auto_factors_only_kernels_above_the_threshold(client):
    model, v, _, dummy, _ = client
    xb = dummy[:2]
    assert set(factored.factored_kernels(model.apply, v, xb, 6, "auto")) == {("fc1",)}
    assert set(factored.factored_kernels(model.apply, v, xb, 6, "on")) == {("fc1",), ("head",)}
    assert factored.factored_kernels(model.apply, v, xb, 6, "off") == {}
    # too many rows over all the steps (27 steps of 10: 270 x 1536 x 1.3 > 1024 x 512; 26
    # steps are still factored), or too many steps to unroll: dense
    x10 = jnp.zeros((10,) + SHAPE)
    assert set(factored.factored_kernels(model.apply, v, x10, 26, "auto")) == {("fc1",)}
    assert factored.factored_kernels(model.apply, v, x10, 27, "auto") == {}
    assert factored.factored_kernels(model.apply, v, xb, factored.MAX_STEPS + 1, "auto") == {}
    small = models.get("mlp", 10, (4, 4, 1))  # every kernel below MIN_ELEMENTS
    sv = small.init(jax.random.key(0))
    assert factored.factored_kernels(small.apply, sv, jnp.zeros((2, 4, 4, 1)), 2, "auto") == {}
    with pytest.raises(ValueError, match="factored must be one of"):
        factored.factored_kernels(model.apply, v, xb, 6, "yes")


def test_auto_selects_the_factored_client_only_above_the_threshold(client, monkeypatch):
    model, v, obs, dummy, y = client
    calls = _counted(monkeypatch)
    jax.eval_shape(lambda x: simulated_update(model, obs, x, y, factored="auto"), dummy)
    assert len(calls) == 1
    small = models.get("mlp", 10, (4, 4, 1))
    sv = small.init(jax.random.key(0))
    sx = jnp.zeros((5, 4, 4, 1))
    sobs = fedavg_observation(small, sv, sx, y, HP)
    jax.eval_shape(lambda x: simulated_update(small, sobs, x, y, factored="auto"), sx)
    jax.eval_shape(lambda x: simulated_update(model, obs, x, y, factored="off"), dummy)
    assert len(calls) == 1


def test_factored_delta_equals_the_dense_client(client):
    model, v, obs, dummy, y = client
    dense = jax.jit(lambda x: simulated_update(model, obs, x, y, factored="off"))(dummy)
    fact = jax.jit(lambda x: simulated_update(model, obs, x, y, factored="on"))(dummy)
    # per tensor, relative to its norm (W_0 - W_T cancels: elementwise it is ~1e-7 of W_0)
    for f, d in zip(jax.tree.leaves(fact), jax.tree.leaves(dense), strict=True):
        assert _rel(f, d) < 1e-5


def _ig_objective(model, obs, y, mode):
    return lambda x: losses.cosine(simulated_update(model, obs, x, y, factored=mode), obs.update)


def _dlf_objective(model, obs, mode):
    weights = losses.exp_layer_weights(obs.update)
    e, n = obs.hp.epochs, obs.num_samples

    def objective(x, y):
        upd = dlf.simulate(model, obs, x, y, "exact", False, mode)
        return losses.layer_weighted_l2(upd, obs.update, weights)

    return objective, (e, n)


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_ig_objective_and_gradient_match_the_dense_client(client, mode, monkeypatch):
    model, _, obs, dummy, y = client
    calls = _counted(monkeypatch)
    vg = {m: jax.jit(jax.value_and_grad(_ig_objective(model, obs, y, m))) for m in ("off", mode)}
    (v0, g0), (v1, g1) = vg["off"](dummy), vg[mode](dummy)
    assert calls, "the factored client was used"
    assert abs(float(v1) - float(v0)) <= 1e-5 * abs(float(v0))
    assert _rel(g1, g0) < 1e-5


def test_dlf_objective_and_gradient_match_the_dense_client(client, monkeypatch):
    model, _, obs, _, y = client
    calls = _counted(monkeypatch)
    objective_off, (e, n) = _dlf_objective(model, obs, "off")
    objective_on, _ = _dlf_objective(model, obs, "on")
    x = jax.random.normal(jax.random.key(3), (e, n) + SHAPE)
    ys = jnp.tile(y[None], (e, 1))
    v0, g0 = jax.jit(jax.value_and_grad(objective_off))(x, ys)
    v1, g1 = jax.jit(jax.value_and_grad(objective_on))(x, ys)
    assert calls, "the factored client was used"
    assert abs(float(v1) - float(v0)) <= 1e-5 * abs(float(v0))
    assert _rel(g1, g0) < 1e-5


def test_off_is_the_dense_client_bit_for_bit(client):
    model, v, obs, dummy, y = client
    before = Client(model, HP).delta(v, dummy, y)
    off = simulated_update(model, obs, dummy, y, factored="off")
    jax.tree.map(np.testing.assert_array_equal, off, before)
    x = jnp.stack([dummy, dummy[::-1]])
    ys = jnp.stack([y, y[::-1]])
    flat_x, flat_y = x.reshape((10,) + SHAPE), ys.reshape(10)
    sched = copies_schedule(2, 5, HP.batch_size)
    before = Client(model, HP).delta(v, flat_x, flat_y, schedule=sched)
    off = dlf.simulate(model, obs, x, ys, "exact", False, "off")
    jax.tree.map(np.testing.assert_array_equal, off, before)


@pytest.mark.parametrize("name", ["ig", "dlf", "dlg"])
def test_factored_setting_is_validated(name):
    c = base_config()
    c.attack.name, c.attack.mode, c.attack.factored = name, "fedavg", "maybe"
    with pytest.raises(ConfigError) as e:
        attacks.get(name).bind(c.attack)
    msg = str(e.value)
    assert "attack.factored" in msg and "('auto', 'on', 'off')" in msg and "\n" not in msg


def test_cli_bad_factored_exits_2(cli_refuses):
    cli_refuses(
        "--config.attack.factored=sometimes",
        words="attack.factored='sometimes' is not one of ('auto', 'on', 'off')",
    )
