"""Properties of leakjax.models: every registry entry, the conv implementations, BatchNorm masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import models
from leakjax.models import conv, hash_rng, initializers, pooling
from leakjax.types import ConfigError

IMPLS = [i for i in conv.IMPLS if i not in ("auto", "xla")]
BIG = ("resnet18", "vgg16")
CASES = [
    (name, shape)
    for name in models.names()
    for shape in ((32, 32, 3), (28, 28, 1))
    if not (name in BIG and shape[2] == 1)
]


def _close(a, b, rtol=2e-4, atol=2e-5, err_msg=""):
    """Pytrees equal to float32 rounding: atol scales with each leaf's largest magnitude."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        scale = float(np.max(np.abs(y))) if y.size else 0.0
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol + rtol * scale, err_msg=err_msg)


@pytest.mark.parametrize("name,shape", CASES)
def test_registry_entry_init_apply_features(name, shape):
    model = models.get(name, 7, shape)

    @jax.jit
    def run(key, x):  # one compilation per model keeps the test fast
        variables = model.init(key)
        logits, same = model.apply(variables, x)
        return variables, logits, model.features(variables, x), same

    x = jax.random.normal(jax.random.key(1), (2, *shape))
    variables, logits, feats, same = run(jax.random.key(0), x)
    head = variables["params"]["head"]
    assert logits.shape == (2, 7)
    assert head["kernel"].shape == (feats.shape[1], 7) and head["bias"].shape == (7,)
    assert feats.shape[0] == 2
    assert bool(jnp.all(jnp.isfinite(logits))) and bool(jnp.all(jnp.isfinite(feats)))
    _close(same, variables, rtol=0, atol=0)
    assert ("batch_stats" in variables) == model.has_batch_stats
    # the head applied to the features gives the logits
    np.testing.assert_allclose(feats @ head["kernel"] + head["bias"], logits, rtol=1e-4, atol=1e-5)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))


@pytest.mark.parametrize(
    "name,classes,count",
    [("cnn", 10, 8.41e6), ("cnn3", 100, 1.73e6), ("resnet18", 10, 11.17e6), ("lenet", 10, 62006)],
)
def test_parameter_counts_at_cifar_shapes(name, classes, count):
    model = models.get(name, classes, (32, 32, 3))
    n = models.param_count(jax.eval_shape(model.init, jax.random.key(0)))
    assert round(n / 1e6, 2) == round(count / 1e6, 2)


def test_model_options_and_first_dense_names():
    mnist = jax.eval_shape(models.get("cnn", 10, (28, 28, 1)).init, jax.random.key(0))
    assert mnist["params"]["fc1"]["kernel"].shape == (9216, 128)
    fc2 = jax.eval_shape(models.get("fc2", 10, (32, 32, 3)).init, jax.random.key(0))
    assert fc2["params"]["fc1"]["kernel"].shape == (3072, 256)
    cpa = models.get("vgg16", 10, (32, 32, 3), head="cpa")
    v = jax.eval_shape(cpa.init, jax.random.key(0))
    assert v["params"]["fc1"]["kernel"].shape == (25088, 4096)
    assert v["params"]["head"]["kernel"].shape == (4096, 10)
    bn = models.get("vgg16", 10, (32, 32, 3), batch_norm=True)
    assert bn.has_batch_stats and "batch_stats" in jax.eval_shape(bn.init, jax.random.key(0))


def test_torch_default_init_bounds_and_determinism():
    init = jax.jit(models.get("cnn", 10, (32, 32, 3)).init)
    v = init(jax.random.key(0))["params"]
    _close(init(jax.random.key(0))["params"], v, rtol=0, atol=0)
    other = init(jax.random.key(1))["params"]
    assert not np.allclose(other["conv1"]["kernel"], v["conv1"]["kernel"])
    # distinct layers of the same shape-class get distinct draws
    assert not np.allclose(v["conv1"]["bias"], v["conv2"]["bias"][:32])
    for layer, fan_in in (("conv2", 9 * 32), ("fc1", 16384), ("head", 512)):
        bound = 1 / np.sqrt(fan_in)
        assert 0.99 * bound < float(jnp.max(jnp.abs(v[layer]["kernel"]))) <= bound
        assert float(jnp.max(jnp.abs(v[layer]["bias"]))) <= bound


def test_features_of_named_layer():
    model = models.get("fc2", 10, (8, 8, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((3, 8, 8, 3), jnp.float32)
    assert jax.eval_shape(lambda v, x: model.features(v, x, layer="fc1"), variables, x).shape == (
        3,
        192,
    )
    with pytest.raises(ConfigError, match="layer='conv9'"):
        jax.eval_shape(lambda v, x: model.features(v, x, layer="conv9"), variables, x)


CONV_CASES = [  # kernel, strides, padding, cin, hw
    (3, 1, 1, 3, 8),
    (3, 2, 1, 4, 9),
    (1, 2, 0, 4, 8),
    (5, 1, "VALID", 2, 9),
    (3, 2, "SAME", 2, 8),
]


def _conv_quantities(impl, inputs):
    """Forward, input/kernel gradients, grad-of-grad and a JVP for each case of CONV_CASES."""
    out = []
    for (_, strides, padding, _, _), (x, k) in zip(CONV_CASES, inputs, strict=False):

        def f(x, k, strides=strides, padding=padding):
            return conv.conv2d(x, k, strides, padding, impl)

        def loss(x, k, f=f):  # nonlinear, so second derivatives are not trivially zero
            y = f(x, k)
            return jnp.sum(jnp.tanh(y) * jnp.cos(jnp.arange(y.size).reshape(y.shape)))

        def grad_norm(x, k, loss=loss):  # of the kernel gradient, differentiated wrt the input
            return jnp.sum(jax.grad(loss, argnums=1)(x, k) ** 2)

        out.append(
            (
                f(x, k),
                jax.grad(loss, argnums=(0, 1))(x, k),
                jax.grad(grad_norm, argnums=(0, 1))(x, k),
                # forward mode, where the impl has it ("hybrid" is a custom_vjp)
                None if impl == "hybrid" else jax.jvp(f, (x, k), (jnp.cos(x), jnp.sin(k)))[1],
            )
        )
    return out


def test_conv_impls_agree_with_xla():
    inputs = []
    for i, (kernel, _, _, cin, hw) in enumerate(CONV_CASES):
        kx, kk = jax.random.split(jax.random.key(i))
        x = jax.random.normal(kx, (2, hw, hw, cin))
        inputs.append((x, 0.3 * jax.random.normal(kk, (kernel, kernel, cin, 5))))
    ref = jax.jit(lambda inp: _conv_quantities("xla", inp))(inputs)
    for impl in IMPLS:
        # "shifted" (slowest, 20 s to compile all cases) is checked on a stride 1 and 2 case
        n = 2 if impl == "shifted" else len(inputs)
        got = jax.jit(lambda inp, impl=impl: _conv_quantities(impl, inp))(inputs[:n])
        for case, g, r in zip(CONV_CASES, got, ref, strict=False):
            assert g[0].shape == r[0].shape, (impl, case)
            _close(
                g[:3] if impl == "hybrid" else g,
                r[:3] if impl == "hybrid" else r,
                err_msg=f"{impl} {case}",
            )


def test_conv_impls_agree_through_a_model_second_order():
    x = jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
    y = jnp.array([1, 4])
    params = jax.jit(models.get("lenet", 5, (16, 16, 3)).init)(jax.random.key(0))["params"]

    def run(impl):
        model = models.get("lenet", 5, (16, 16, 3), conv_impl=impl)

        def loss(p, x):
            logits, _ = model.apply({"params": p}, x)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), y])

        def match(x):  # a gradient-matching-like function of the parameter gradient
            g = jax.grad(loss)(params, x)
            return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(g))

        return jax.jit(jax.value_and_grad(match))(x)

    ref = run("xla")
    _close(run(conv.resolve_impl("auto")), ref, rtol=1e-3, atol=1e-6)
    _close(run("im2col"), ref, rtol=1e-3, atol=1e-6)


def test_pools_match_reduce_window():
    x = jax.random.normal(jax.random.key(0), (2, 7, 6, 3))  # odd height: floor mode
    for pool, ref in ((pooling.max_pool, "max"), (pooling.avg_pool, "avg")):
        f_fast = lambda x: jnp.sum(jnp.sin(pool(x, 2, impl="im2col")))  # noqa: E731,B023
        f_ref = lambda x: jnp.sum(jnp.sin(pool(x, 2, impl="xla")))  # noqa: E731,B023
        assert pool(x, 2, impl="im2col").shape == (2, 3, 3, 3), ref
        _close(jax.value_and_grad(f_fast)(x), jax.value_and_grad(f_ref)(x))


def test_adaptive_avg_pool_follows_torch():
    x = jax.random.normal(jax.random.key(0), (2, 5, 4, 3))
    one = x[:, :1, :1]
    np.testing.assert_array_equal(pooling.adaptive_avg_pool(one, 7), jnp.tile(one, (1, 7, 7, 1)))
    got = pooling.adaptive_avg_pool(x, (3, 2))
    # torch bins for 5 -> 3: [0, 2), [1, 4), [3, 5); for 4 -> 2: [0, 2), [2, 4)
    rows = [(0, 2), (1, 4), (3, 5)]
    want = jnp.stack(
        [
            jnp.stack([x[:, a:b, c : c + 2].mean(axis=(1, 2)) for c in (0, 2)], axis=1)
            for a, b in rows
        ],
        axis=1,
    )
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_batchnorm_mask_equals_unpadded_batch():
    model = models.get("resnet18", 10, (16, 16, 3))
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
    padded = x.at[2:].set(100.0)  # garbage in the padding rows
    mask = jnp.array([True, True, False, False])

    @jax.jit
    def run(key):
        variables = model.init(key)
        masked = model.apply(variables, padded, train=True, mask=mask)
        masked_f = model.apply(variables, padded, train=True, mask=mask.astype(jnp.float32))
        real = model.apply(variables, x[:2], train=True)
        return variables, masked, masked_f, real

    variables, (logits_m, new_m), (_, new_f), (logits_r, new_r) = run(jax.random.key(0))
    _close(new_m["batch_stats"], new_r["batch_stats"], rtol=1e-4, atol=1e-5)
    _close(logits_m[:2], logits_r, rtol=1e-4, atol=1e-4)
    _close(new_f["batch_stats"], new_m["batch_stats"], rtol=0, atol=0)
    _close(new_m["params"], variables["params"], rtol=0, atol=0)
    # the statistics moved from the initial (0, 1), by 0.1 of the batch statistics
    moved = new_r["batch_stats"]["bn1"]["mean"]
    assert float(jnp.max(jnp.abs(moved))) > 0
    assert float(jnp.max(jnp.abs(moved / 0.1))) < 1e3

    def eval_mode(v, x):  # traced only: train=False hands back the very same variables
        logits, same = model.apply(v, x, train=False)
        assert same is v
        return logits

    assert jax.eval_shape(eval_mode, variables, x).shape == (4, 10)


def test_config_errors_name_the_setting():
    with pytest.raises(ConfigError, match="model='resnet99'") as err:
        models.get("resnet99", 10, (32, 32, 3))
    assert "\n" not in str(err.value) and "cnn" in str(err.value)
    with pytest.raises(ConfigError, match="conv_impl='cudnn'"):
        models.get("cnn", 10, (32, 32, 3), conv_impl="cudnn")
    with pytest.raises(ConfigError, match="variant='svhn'"):
        models.get("cnn", 10, (32, 32, 3), variant="svhn")
    with pytest.raises(ConfigError, match="head='big'"):
        models.get("vgg16", 10, (32, 32, 3), head="big")
    with pytest.raises(ConfigError, match="dropout"):
        models.get("mlp", 10, (32, 32, 3), dropout=0.5)
    with pytest.raises(ConfigError, match="input_shape"):
        models.get("vgg16", 10, (28, 28, 1))
    with pytest.raises(ConfigError, match="num_classes"):
        models.get("cnn", 0, (32, 32, 3))
    with pytest.raises(ConfigError, match="input_shape"):
        models.get("cnn", 10, (32, 32))


def test_auto_resolves_per_backend():
    impl = conv.resolve_impl("auto")
    assert impl in conv.IMPLS and impl != "auto"
    if jax.default_backend() != "cpu":
        assert impl == "xla"


def test_subpixel_conv_transpose_equals_flax_conv_transpose():
    """ConvTranspose4x4s2 (DMGAN's generator) is nn.ConvTranspose 4x4 / stride 2 / padding 2,
    values and gradients, with the same parameter."""
    import flax.linen as nn

    from leakjax.models.generators import ConvTranspose4x4s2

    x = jax.random.normal(jax.random.key(0), (3, 5, 7, 6))
    ref = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=False)
    v = ref.init(jax.random.key(1), x)
    new = ConvTranspose4x4s2(4)
    assert jax.tree.map(jnp.shape, new.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, v)
    np.testing.assert_allclose(new.apply(v, x), ref.apply(v, x), rtol=1e-5, atol=1e-5)
    loss = lambda m: jax.grad(lambda v, x: jnp.sum(jnp.sin(m.apply(v, x))), argnums=(0, 1))
    for a, b in zip(
        jax.tree.leaves(loss(new)(v, x)), jax.tree.leaves(loss(ref)(v, x)), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_conv_module_holds_convolutions_only():
    """Pooling, the hash RNG and torch-style init live in their own modules (no re-exports)."""
    for name in (
        "max_pool",
        "avg_pool",
        "adaptive_avg_pool",
        "hash_bits",
        "hash_uniform",
        "hash_normal",
        "normal_init",
        "kaiming_normal_fan_out_init",
    ):
        assert not hasattr(conv, name), name
    assert pooling.max_pool.__module__ == "leakjax.models.pooling"
    assert hash_rng.hash_bits.__module__ == "leakjax.models.hash_rng"
    assert initializers.torch_uniform_init.__module__ == "leakjax.models.initializers"
