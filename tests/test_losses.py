"""Properties of the gradient-matching losses and image priors."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakjax.attacks import losses

finite = st.floats(-10, 10, allow_nan=False, width=32)


def tree_of(arrs):
    a, b = arrs
    return {"dense": {"kernel": a, "bias": b[:3]}, "head": {"kernel": b}}


pair = st.tuples(
    hnp.arrays(np.float32, (4, 3), elements=finite), hnp.arrays(np.float32, (5,), elements=finite)
)


@settings(max_examples=40, deadline=None)
@given(pair, pair)
def test_matching_losses_zero_at_truth_and_symmetric(p, q):
    a, b = tree_of(p), tree_of(q)
    for name in ("l2", "cosine", "layerwise_cosine"):
        f = losses.MATCHING[name]
        nonzero = [float(jnp.sum(x * x)) > 1e-3 for x in jax.tree.leaves(a)]
        # cosine needs a non-zero side; layer-wise cosine a non-zero tensor in every layer
        if (name == "layerwise_cosine" and all(nonzero)) or (
            name != "layerwise_cosine" and any(nonzero)
        ):
            assert float(f(a, a)) == pytest.approx(0.0, abs=1e-4), name
        np.testing.assert_allclose(float(f(a, b)), float(f(b, a)), rtol=1e-5, atol=1e-6)
        assert np.isfinite(float(f(a, b)))


@settings(max_examples=40, deadline=None)
@given(pair, pair, st.floats(0.01, 100), st.floats(0.01, 100))
def test_cosine_invariant_to_positive_scaling(p, q, s, t):
    a, b = tree_of(p), tree_of(q)
    if float(losses.sq_norm(a)) < 1e-2 or float(losses.sq_norm(b)) < 1e-2:
        return
    base = float(losses.cosine(a, b))
    scaled = float(
        losses.cosine(jax.tree.map(lambda x: s * x, a), jax.tree.map(lambda x: t * x, b))
    )
    assert scaled == pytest.approx(base, abs=2e-5)
    # and not invariant to a sign flip (unless orthogonal)
    flipped = float(losses.cosine(jax.tree.map(jnp.negative, a), b))
    assert flipped == pytest.approx(2.0 - base, abs=2e-5)


def test_cosine_finite_on_zeros_with_finite_gradient():
    z = {"w": jnp.zeros((3, 3)), "b": jnp.zeros(3)}
    o = {"w": jnp.ones((3, 3)), "b": jnp.ones(3)}
    assert float(losses.cosine(z, o)) == pytest.approx(1.0)
    assert float(losses.cosine(z, z)) == pytest.approx(1.0)
    g = jax.grad(losses.cosine)(z, o)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))
    g = jax.grad(losses.layerwise_cosine)(z, z)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))


def test_l2_known_value_and_layer_weights():
    a = {"l0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "l1": {"kernel": jnp.zeros(3)}}
    b = jax.tree.map(jnp.zeros_like, a)
    assert float(losses.l2(a, b)) == pytest.approx(6.0)
    w = losses.exp_layer_weights(a)
    # kernel and bias of layer l0 share a weight; layer l1 is e times lighter; w_0 = 1
    np.testing.assert_allclose(np.asarray(w), [1.0, 1.0, np.exp(-1.0)], rtol=1e-6)
    assert float(losses.layer_weighted_l2(a, b, w)) == pytest.approx(6.0)
    with pytest.raises(ValueError):
        losses.layer_weighted_l2(a, b, [1.0])


def test_tv_priors():
    const = jnp.ones((2, 5, 5, 3))
    assert float(losses.tv_l1(const)) == 0.0
    assert float(losses.tv_l2(const)) == 0.0
    x = jnp.zeros((1, 4, 4, 1)).at[:, :, 2:, :].set(1.0)  # one vertical edge
    # L1: |dx| mean = 4 edges / (4*3) positions; dy = 0
    assert float(losses.tv_l1(x)) == pytest.approx(4 / 12)
    assert float(losses.tv_l2(2 * x)) == pytest.approx(4 * 4 / 12)
    noisy = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    assert float(losses.tv_l1(noisy)) > float(losses.tv_l1(0.1 * noisy))
