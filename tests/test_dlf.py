"""DLF: exact simulation, epoch order-invariant prior, matching, shapes, trials, quality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsa

from leakjax import attacks, config, data, metrics, models
from leakjax.attacks import dlf
from leakjax.fl import ClientHParams
from leakjax.fl.observation import fedavg_observation, gradient_observation, stack
from leakjax.fl.schedule import batch_schedule
from leakjax.types import ConfigError

SHAPE = (8, 8, 1)
BOX = (jnp.array([-2.0]), jnp.array([2.0]))
NO_PRIORS = dlf.DLFConfig(tv=0.0, clip=0.0, reorder=0.0)


@pytest.fixture(scope="module")
def small():
    model = models.get("mlp", 10, SHAPE)
    v = model.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (6,) + SHAPE, minval=-1, maxval=1)
    y = jnp.array([3, 1, 4, 1, 5, 9])
    return model, v, x, y


def _client_orders(n, key, epochs, batch):
    """The real client's per-epoch sample order (the schedule `client_update` uses)."""
    idx, _ = batch_schedule(jnp.ones((n,), bool), key, epochs, batch)
    steps = -(-n // batch)
    return np.asarray(idx).reshape(epochs, steps * batch)[:, :n]


def _objectives(atk, *xs):
    """The attack objective at given copies (the loss `step` reports before its update)."""
    st = atk.init(jax.random.key(0))
    loss = jax.jit(lambda x: atk.step(st.replace(x=x), jax.random.key(0))[1]["loss"])
    return [float(loss(x)) for x in xs]


@pytest.mark.parametrize("n", [1, 7, 30])
def test_assignment_is_optimal(n):
    rng = np.random.default_rng(n)
    costs = rng.random((4, n, n)).astype(np.float32)
    costs[0] = np.round(costs[0] * 3)  # ties
    got = np.asarray(jax.jit(jax.vmap(dlf.linear_sum_assignment))(jnp.asarray(costs)))
    for c, g in zip(costs, got, strict=True):
        assert sorted(g.tolist()) == list(range(n))
        r, col = scipy_lsa(c)
        np.testing.assert_allclose(c[np.arange(n), g].sum(), c[r, col].sum(), rtol=1e-5)


@pytest.mark.parametrize(
    "n,batch,epochs,momentum",
    [(6, 3, 1, 0.5), (6, 3, 2, 0.5), (5, 2, 2, 0.0)],
    ids=["E1", "E2", "E2-partial-batches"],
)
def test_objective_zero_at_truth(small, n, batch, epochs, momentum):
    """Without priors the objective is ~0 at the true per-epoch data and labels (the
    client reshuffled every epoch; momentum and weight decay simulated exactly)."""
    model, v, x, y = small
    x, y = x[:n], y[:n]
    hp = ClientHParams(
        lr=0.1, momentum=momentum, weight_decay=1e-3, epochs=epochs, batch_size=batch
    )
    key = jax.random.key(5)
    obs = fedavg_observation(model, v, x, y, hp, key=key)
    orders = _client_orders(n, key, epochs, batch)
    atk = dlf.make(obs, model, NO_PRIORS, steps=10, box=BOX, labels=y[orders])
    at_truth, at_random = _objectives(
        atk, x[orders], jax.random.normal(jax.random.key(2), (epochs, n) + SHAPE)
    )
    assert at_truth < 1e-6 * at_random and at_truth < 1e-4, (at_truth, at_random)


@pytest.mark.parametrize("kind", ["max_conv", "mean_conv", "max", "mean", "matching"])
def test_order_prior_properties(kind):
    x0 = jax.random.normal(jax.random.key(0), (6, 8, 8, 3))
    other = jax.random.normal(jax.random.key(1), (6, 8, 8, 3))
    perm = jnp.array([3, 0, 5, 1, 4, 2])
    y = jnp.zeros((3, 6), jnp.int32)
    proj = dlf.random_projection(jax.random.key(2), 3, 16)
    prior = jax.jit(lambda c: dlf.order_invariant_prior(c, kind, proj, y))
    same = prior(jnp.stack([x0, x0[perm], x0]))
    differ = prior(jnp.stack([x0, other, x0]))
    differ_perm = prior(jnp.stack([x0, other[perm], x0[perm[::-1]]]))
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    assert float(differ) > 1e-3
    np.testing.assert_allclose(float(differ_perm), float(differ), rtol=1e-5)
    # differentiable, finite gradient
    g = jax.grad(lambda c: dlf.order_invariant_prior(c, kind, proj, y))(jnp.stack([x0, other, x0]))
    assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).sum()) > 0


@pytest.mark.parametrize("kind", ["max_conv", "mean"])
def test_order_prior_is_the_mean_pairwise_difference_in_linear_memory(kind):
    x = jax.random.normal(jax.random.key(3), (5, 4, 8, 8, 3))
    proj = dlf.random_projection(jax.random.key(4), 3, 8)
    feats = x
    if kind == "max_conv":
        feats = jax.vmap(lambda c: dlf._project(c, proj))(x)
    g = jnp.max(feats, axis=1) if kind.startswith("max") else jnp.mean(feats, axis=1)
    pairwise = jnp.mean(jnp.square(g[:, None] - g[None, :]))  # the E x E definition
    np.testing.assert_allclose(dlf.order_invariant_prior(x, kind, proj), pairwise, rtol=1e-5)
    # memory: no E x E x features temporary (250 copies of 2 images: ~130 MiB)
    many = jax.ShapeDtypeStruct((250, 2, 16, 16, 3), jnp.float32)
    proj16 = dlf.random_projection(jax.random.key(5), 3, 96)
    compiled = jax.jit(jax.grad(lambda c: dlf.order_invariant_prior(c, kind, proj16))).lower(many)
    temp = compiled.compile().memory_analysis().temp_size_in_bytes
    assert temp < 500 * 2**20, temp / 2**20  # the E x E differences alone: 4.7 GB


def test_merge_matches_copies_within_labels():
    x0 = jax.random.normal(jax.random.key(0), (5, 4, 4, 1))
    y0 = jnp.array([0, 0, 1, 1, 2])
    perm = jnp.array([1, 0, 3, 2, 4])  # label-preserving
    noise = 0.01 * jax.random.normal(jax.random.key(1), x0.shape)
    copies = jnp.stack([x0, x0[perm] + noise[perm]])
    merged = jax.jit(dlf.merge_copies)(copies, jnp.stack([y0, y0[perm]]))
    np.testing.assert_allclose(merged, x0 + 0.5 * noise, atol=1e-6)


def test_finite_shaped_and_trials_equal_a_loop(small):
    """Finite, shaped output; trial 0 (key fold_in(key, 0)) of a vmapped run does not depend
    on the other trials (bit for bit) and equals a 1-trial run to float32 rounding (XLA may
    vectorize reductions differently for another number of trials)."""
    model, v, x, y = small
    hp = ClientHParams(lr=0.1, momentum=0.5, epochs=2, batch_size=3)
    obs = [
        fedavg_observation(model, v, x, y, hp, key=jax.random.key(3)),
        fedavg_observation(model, v, x[::-1], y[::-1], hp, key=jax.random.key(4)),
        fedavg_observation(model, v, -x, y, hp, key=jax.random.key(5)),
    ]
    labels = np.sort(np.asarray(y))

    def factory(t):
        o, lab = t
        return dlf.make(o, model, dlf.DLFConfig(), steps=8, box=BOX, labels=lab)

    run = lambda obs_list: attacks.run(  # noqa: E731
        factory,
        jax.random.key(0),
        steps=8,
        restarts=2,
        trials=(stack(obs_list), np.stack([labels] * len(obs_list))),
        progress=False,
    )
    both = run(obs[:2])
    assert both.reconstruction.images.shape == (2, 6) + SHAPE
    assert both.reconstruction.labels.shape == (2, 6)
    assert np.isfinite(both.reconstruction.images).all() and not both.failed.any()
    for t in range(2):
        np.testing.assert_array_equal(np.sort(both.reconstruction.labels[t]), labels)
        assert both.losses[t, both.best[t], -1] < both.losses[t, both.best[t], 0]
    other = run([obs[0], obs[2]])
    np.testing.assert_array_equal(both.restarts.images[0], other.restarts.images[0])
    np.testing.assert_array_equal(both.losses[0], other.losses[0])
    one = run(obs[:1])
    np.testing.assert_allclose(both.restarts.images[0], one.restarts.images[0], atol=1e-5)
    np.testing.assert_allclose(both.losses[0], one.losses[0], rtol=1e-5)


def test_bad_settings(small):
    model, v, x, y = small
    obs = fedavg_observation(model, v, x, y, ClientHParams(lr=0.1, batch_size=3))
    with pytest.raises(ConfigError, match="attack.labels"):
        dlf.make(obs, model, dlf.DLFConfig(), steps=5, box=BOX)
    with pytest.raises(ConfigError, match="attack.labels"):
        dlf.make(obs, model, dlf.DLFConfig(), steps=5, box=BOX, labels=y[:4])
    with pytest.raises(ConfigError, match="attack.order_prior"):
        dlf.make(obs, model, dlf.DLFConfig(order_prior="l3"), steps=5, box=BOX, labels=y)
    with pytest.raises(ConfigError, match="attack.mode"):
        dlf.make(gradient_observation(model, v, x, y), model, NO_PRIORS, steps=5, box=BOX, labels=y)
    c = config.base_config()
    c.attack.name = "dlf"
    c.attack.labels = "optimize"  # DLF needs labels from upstream ('auto': dimitrov)
    with pytest.raises(ConfigError, match="attack.labels"):
        attacks.get("dlf").bind(c.attack)
    c.attack.labels = "auto"
    assert attacks.get("dlf").upstream_labels("auto") == "dimitrov"
    attacks.get("dlf").bind(c.attack)
    c.attack.labels = "oracle"
    attacks.get("dlf").bind(c.attack)
    for key, bad in [("clip", "strong"), ("shuffle_labels", "yes"), ("order_prior", "l3")]:
        c.attack[key] = bad
        with pytest.raises(ConfigError, match=f"attack.{key}"):
            attacks.get("dlf").bind(c.attack)
        del c.attack[key]
    c.attack.mode = "gradient"
    with pytest.raises(ConfigError, match="attack.mode"):
        config.validate(c)


def _cifar_client(shared_data_dir, n):
    ds = data.load("cifar10", str(shared_data_dir))
    mean, std = data.normalization(ds.info, "dataset")
    lo, hi = data.box(mean, std)
    x = data.normalize(ds.train_images[:n], mean, std)
    y = ds.train_labels[:n].astype(np.int32)
    return ds, mean, std, (jnp.asarray(lo), jnp.asarray(hi)), x, y


def _dlf_on_cifar(shared_data_dir, n, batch, steps, cfg, labels_method="oracle"):
    """DLF on a real CIFAR-10 client of the untrained mlp; returns metrics and init PSNR."""
    ds, mean, std, box, x, y = _cifar_client(shared_data_dir, n)
    model = models.get("mlp", 10, ds.info.image_shape)
    v = model.init(jax.random.key(0))
    hp = ClientHParams(lr=0.004, epochs=1, batch_size=batch)
    obs = fedavg_observation(model, v, x, y, hp, key=jax.random.key(7))
    if labels_method == "oracle":
        labels = np.sort(y)
    else:
        from leakjax import labels as labels_lib

        labels = labels_lib.infer(obs, model, labels_method, key=jax.random.key(1))
    atk = dlf.make(obs, model, cfg, steps=steps, box=box, labels=labels)
    res = attacks.run(atk, jax.random.key(0), steps=steps, chunk=steps, progress=False)
    to01 = lambda a: np.clip(np.asarray(data.denormalize(np.asarray(a), mean, std)), 0, 1)  # noqa: E731
    truth = to01(x)
    ev = metrics.evaluate(
        to01(res.reconstruction.images[0]),
        truth,
        recon_labels=res.reconstruction.labels[0],
        truth_labels=y,
        ordered=False,
        threshold=19.0,
        num_classes=10,
    )
    st = atk.init(jax.random.key(0))
    init = metrics.evaluate(to01(dlf.merge_copies(st.x, st.y)), truth, ordered=False)
    return ev, init["psnr_mean"]


def test_reconstructs_small_cifar_client(shared_data_dir):
    """10 real CIFAR-10 images, 2 local steps of batch 5, lr 0.004, untrained mlp, true
    label counts: DLF's matched reconstructions are far above the random start."""
    cfg = dlf.DLFConfig(tv=5.0)
    ev, init = _dlf_on_cifar(shared_data_dir, 10, 5, 200, cfg)
    print(
        f"DLF mlp 10 imgs/B5: mean PSNR {ev['psnr_mean']:.2f} dB (init {init:.2f}), "
        f"success@19dB {ev['success_rate']:.2f}"
    )
    assert ev["psnr_mean"] > init + 7.0
    assert ev["success_rate"] >= 0.3


@pytest.mark.slow
def test_reconstructs_cifar_client_of_50(shared_data_dir):
    """The paper's Fig. 45 setting: 50 images, batch 10, one epoch, lr 0.004, untrained mlp,
    label counts from the 'dimitrov' method (exact on this client). Measured: mean PSNR
    15.8 dB (random start 9.5 dB), 10% of the images above 19 dB after matching; the
    brief's hoped-for quarter is not reached (see BUILD_NOTES)."""
    cfg = dlf.DLFConfig(tv=2.0)
    ev, init = _dlf_on_cifar(shared_data_dir, 50, 10, 400, cfg, labels_method="dimitrov")
    print(
        f"DLF mlp 50 imgs/B10: mean PSNR {ev['psnr_mean']:.2f} dB (init {init:.2f}), "
        f"success@19dB {ev['success_rate']:.2f}, label counts {ev['label_count_accuracy']:.2f}"
    )
    assert ev["psnr_mean"] > init + 5.0
    assert ev["success_rate"] >= 0.06
