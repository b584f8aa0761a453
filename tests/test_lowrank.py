"""Factored dense-kernel gradients (leakjax.attacks.lowrank) against the dense ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakjax import attacks, models
from leakjax import settings as settings_lib
from leakjax.attacks import losses, lowrank
from leakjax.config import base_config
from leakjax.fl.client import gradient
from leakjax.fl.observation import gradient_observation

BOX = (jnp.full(3, -1.0), jnp.full(3, 1.0))


def _setup(name, shape, b, seed=0):
    model = models.get(name, 10, shape)
    v = model.init(jax.random.key(seed))
    x = jax.random.uniform(jax.random.key(seed + 1), (b,) + shape, minval=-1, maxval=1)
    y = jax.random.randint(jax.random.key(seed + 2), (b,), 0, 10)
    return model, v, x, y


@pytest.mark.parametrize("name,shape,b", [("mlp", (16, 16, 3), 3), ("cnn", (8, 8, 3), 2)])
def test_factored_gradient_equals_gradient(name, shape, b):
    model, v, x, y = _setup(name, shape, b)
    dense = gradient(model.apply, v, x, y, None, train=False)
    fact = lowrank.factored_gradient(model.apply, v, x, y, None, train=False)
    kinds = jax.tree.map(lambda u: isinstance(u, lowrank.LowRank), fact)
    assert kinds["fc1"]["kernel"], "the big first dense kernel is factored"
    assert not kinds["head"]["kernel"], "the small head stays dense"
    assert fact["fc1"]["kernel"].a.shape == (b, fact["fc1"]["kernel"].shape[0])
    got = lowrank.densify(fact)
    jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-7), got, dense)


def test_no_big_dense_falls_back_to_the_dense_gradient():
    model, v, x, y = _setup("mlp", (4, 4, 1), 2)  # every kernel below MIN_ELEMENTS
    fact = lowrank.factored_gradient(model.apply, v, x, y, None, train=False)
    assert not any(isinstance(u, lowrank.LowRank) for u in jax.tree.leaves(fact))


@settings(deadline=None, max_examples=20)
@given(
    r=st.integers(1, 4),
    s=st.integers(1, 4),
    n=st.integers(1, 6),
    m=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_losses_on_lowrank_leaves_equal_the_dense_ones(r, s, n, m, seed):
    k = jax.random.split(jax.random.key(seed), 6)
    p = lowrank.LowRank(jax.random.normal(k[0], (r, n)), jax.random.normal(k[1], (r, m)))
    q = lowrank.LowRank(jax.random.normal(k[2], (s, n)), jax.random.normal(k[3], (s, m)))
    t = jax.random.normal(k[4], (n, m))
    bias = jax.random.normal(k[5], (m,))
    for a, b in [(p, t), (t, p), (p, q)]:
        fa = {"b": bias, "k": a}
        fb = {"b": 0.5 * bias, "k": b}
        da, db = lowrank.densify(fa), lowrank.densify(fb)
        for name, f in losses.MATCHING.items():
            np.testing.assert_allclose(f(fa, fb), f(da, db), rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(losses.dot(fa, fb), losses.dot(da, db), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(
            losses.layer_weighted_l2(fa, fb, [2.0, 3.0]),
            losses.layer_weighted_l2(da, db, [2.0, 3.0]),
            rtol=1e-4,
            atol=1e-4,
        )
    # ||a^T d||^2 can cancel far below ||a||^2 ||d||^2, the scale of float32 rounding in
    # either form (seen: 6.8e-4 with an absolute difference of 1e-7)
    scale = float(jnp.sum(p.a**2) * jnp.sum(p.d**2))
    np.testing.assert_allclose(
        losses.sq_norm({"k": p}), jnp.sum(p.dense() ** 2), rtol=1e-5, atol=1e-6 * scale
    )
    scaled = jax.tree.map(lambda u: u * 3.0, {"k": p})["k"]
    np.testing.assert_allclose(scaled.dense(), 3.0 * p.dense(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["l2", "cosine"])
def test_matching_objective_and_its_image_gradient_agree(loss):
    model, v, x, y = _setup("mlp", (16, 16, 3), 2)
    target = gradient(model.apply, v, x, y, None, train=False)
    x0 = jax.random.normal(jax.random.key(9), x.shape)

    def objective(factored):
        def f(x):
            fn = lowrank.factored_gradient if factored else gradient
            return losses.MATCHING[loss](fn(model.apply, v, x, y, None, train=False), target)

        return jax.jit(jax.value_and_grad(f))

    (l0, g0), (l1, g1) = objective(False)(x0), objective(True)(x0)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    assert float(jnp.linalg.norm(g1 - g0) / jnp.linalg.norm(g0)) < 1e-4
    # near the truth the expanded l2 loses precision only to float32 cancellation
    at_truth = jax.jit(
        lambda x: losses.MATCHING[loss](
            lowrank.factored_gradient(model.apply, v, x, y, None, train=False), target
        )
    )(x)
    assert abs(float(at_truth)) < 1e-5 * max(1.0, float(losses.sq_norm(target)))


# every registered gradient-mode attack with a ``factored`` setting (idlg shares dlg's code)
FACTORED = [
    n
    for n in attacks.names()
    if "factored" in settings_lib.keys(attacks.get(n).settings)
    and "gradient" in attacks.get(n).modes
    and n != "idlg"
]


def test_factored_attacks_are_found():
    assert {"dlg", "ig", "grnn", "ggl"} <= set(FACTORED)


@pytest.mark.parametrize("name", FACTORED)
def test_attacks_step_the_same_with_and_without_factoring(name, monkeypatch):
    model, v, x, y = _setup("mlp", (16, 16, 3), 1)
    obs = gradient_observation(model, v, x, y)
    calls = []
    real = lowrank.factored_gradient
    monkeypatch.setattr(
        lowrank, "factored_gradient", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    out = []
    for factored in (False, True):
        before = len(calls)
        acfg = base_config().attack
        acfg.name, acfg.mode, acfg.steps, acfg.labels = name, "gradient", 10, "oracle"
        acfg.factored = "auto" if factored else "off"
        spec = attacks.get(name)
        spec.bind(acfg)
        atk = spec.build(obs, model, acfg, box=BOX, labels=np.asarray(y))
        state = jax.jit(atk.init)(jax.random.key(0))
        _, info = jax.jit(atk.step)(state, jax.random.key(1))
        out.append(float(info["loss"]))
        # the attack honours attack.factored (the factored path is traced only when asked)
        assert (len(calls) > before) == factored, (name, factored)
    np.testing.assert_allclose(out[1], out[0], rtol=1e-4)
