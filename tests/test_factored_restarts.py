"""Restarts of the factored simulated client mapped over the shared W_0, and the dense
simulation's local steps unrolled automatically (issue 28)."""

import jax
import jax.numpy as jnp
import numpy as np

from leakjax import models
from leakjax.attacks import losses
from leakjax.attacks.runner import chunked_map
from leakjax.attacks.simulation import simulated_update
from leakjax.fl import factored
from leakjax.fl.client import ClientHParams
from leakjax.fl.observation import fedavg_observation

SHAPE = (8, 8, 3)  # the cnn's fc1 1024 x 512: factored under 'auto'
# momentum, weight decay, 2 epochs of ceil(5 / 2) = 3 steps, the last batch partial
HP = ClientHParams(lr=0.05, momentum=0.5, weight_decay=1e-3, epochs=2, batch_size=2)
Y = jnp.array([3, 1, 4, 1, 5])


def _rel(a, b):
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _setup(name, shape):
    model = models.get(name, 10, shape)
    v = model.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (5,) + shape, minval=-1, maxval=1)
    return model, fedavg_observation(model, v, x, Y, HP)


def _objective(model, obs, mode):
    return lambda x: losses.cosine(simulated_update(model, obs, x, Y, factored=mode), obs.update)


def test_mapped_factored_restarts_equal_sequential():
    model, obs = _setup("cnn", SHAPE)
    vg = jax.value_and_grad(_objective(model, obs, "on"))
    xs = jax.random.normal(jax.random.key(2), (4, 5) + SHAPE)  # 4 restarts' dummies
    one = jax.jit(vg)
    seq = [one(x) for x in xs]
    for vmap_chunk in (0, 2):  # all vmapped (W_0 shared: 4 x 2-row GEMMs), a map of 2 vmapped
        values, grads = jax.jit(chunked_map(vg, vmap_chunk))(xs)
        for r, (v0, g0) in enumerate(seq):
            assert abs(float(values[r]) - float(v0)) <= 1e-5 * abs(float(v0)), vmap_chunk
            assert _rel(grads[r], g0) < 1e-5, vmap_chunk


def test_unrolls_rule():
    assert factored.unrolls(5, False, "auto") and factored.unrolls(5, False, "on")
    assert factored.unrolls(factored.UNROLL_MAX_STEPS, False, "auto")
    assert not factored.unrolls(factored.UNROLL_MAX_STEPS + 1, False, "auto")
    assert not factored.unrolls(16, False, "auto")  # measured slower unrolled at 16 steps
    assert not factored.unrolls(5, True, "auto")  # remat keeps its two-level scan
    assert not factored.unrolls(5, False, "off")  # 'off' is Client.delta itself


def _has_loop(f, x) -> bool:
    return "while" in jax.jit(f).lower(x).as_text()


def test_dense_simulation_is_unrolled_under_auto_and_matches_the_scan():
    # the mlp's kernels are all below the factoring threshold: 'auto' simulates it densely
    model, obs = _setup("mlp", (4, 4, 1))
    x = jax.random.normal(jax.random.key(2), (5, 4, 4, 1))
    auto, off = (jax.value_and_grad(_objective(model, obs, m)) for m in ("auto", "off"))
    assert not _has_loop(auto, x), "6 local steps <= UNROLL_MAX_STEPS: unrolled"
    assert _has_loop(off, x), "'off': the client's lax.scan"
    (v1, g1), (v0, g0) = jax.jit(auto)(x), jax.jit(off)(x)
    assert abs(float(v1) - float(v0)) <= 1e-5 * abs(float(v0))
    assert _rel(g1, g0) < 1e-5
    remat = lambda x: losses.cosine(  # noqa: E731
        simulated_update(model, obs, x, Y, remat=True, factored="auto"), obs.update
    )
    assert _has_loop(remat, x), "remat keeps its scan"
