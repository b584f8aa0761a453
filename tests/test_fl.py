"""Properties of FedAvg local training and the simulator."""

import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import data, models
from leakjax.fl import (
    ClientHParams,
    FLSettings,
    batch_schedule,
    client_update,
    cross_entropy,
    gradient,
    param_delta,
    simulate,
    weighted_average,
)

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def mlp():
    return models.get("mlp", 10, SHAPE)


def _batch(n, key=0, c=10):
    k1, k2 = jax.random.split(jax.random.key(key))
    return jax.random.normal(k1, (n,) + SHAPE), jax.random.randint(k2, (n,), 0, c)


def _close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_one_full_batch_step_equals_sgd(mlp):
    v = mlp.init(jax.random.key(0))
    x, y = _batch(12)
    hp = ClientHParams(lr=0.3, momentum=0.9, weight_decay=0.01, epochs=1, batch_size=12)
    out = client_update(mlp.apply, v, x, y, None, jax.random.key(1), hp)
    g = gradient(mlp.apply, v, x, y, train=True)
    # first step: momentum buffer = g + wd * p, so momentum has no effect yet
    expect = jax.tree.map(lambda p, gg: p - 0.3 * (gg + 0.01 * p), v["params"], g)
    _close(out["params"], expect, rtol=1e-5, atol=1e-6)


def test_two_steps_follow_torch_sgd_semantics(mlp):
    v = mlp.init(jax.random.key(0))
    x, y = _batch(8)
    lr, mu, wd = 0.2, 0.5, 0.1
    hp = ClientHParams(lr=lr, momentum=mu, weight_decay=wd, epochs=2, batch_size=8)
    out = client_update(mlp.apply, v, x, y, None, None, hp)
    p = v["params"]
    buf = None
    for _ in range(2):
        g = gradient(mlp.apply, {"params": p}, x, y, train=True)
        d = jax.tree.map(lambda gg, pp: gg + wd * pp, g, p)
        buf = d if buf is None else jax.tree.map(lambda b, dd: mu * b + dd, buf, d)
        p = jax.tree.map(lambda pp, b: pp - lr * b, p, buf)
    _close(out["params"], p, rtol=1e-5, atol=1e-6)


def test_padding_rows_change_nothing(mlp):
    v = mlp.init(jax.random.key(0))
    x, y = _batch(10)
    hp = ClientHParams(lr=0.1, momentum=0.5, epochs=2, batch_size=4)
    plain = client_update(mlp.apply, v, x, y, None, None, hp)
    junk_x = jnp.concatenate([x, 100 * jnp.ones((7,) + SHAPE)])
    junk_y = jnp.concatenate([y, jnp.full((7,), 3)])
    mask = jnp.arange(17) < 10
    padded = client_update(mlp.apply, v, junk_x, junk_y, mask, None, hp)
    _close(plain["params"], padded["params"])


@pytest.mark.parametrize("n,n_max,bs,epochs", [(10, 10, 4, 2), (7, 13, 3, 3), (5, 5, 5, 1)])
def test_batch_schedule_covers_each_row_once_per_epoch(n, n_max, bs, epochs):
    mask = jnp.arange(n_max) < n
    idx, valid = batch_schedule(mask, jax.random.key(3), epochs, bs)
    steps = math.ceil(n_max / bs)
    assert idx.shape == (epochs * steps, bs)
    per_epoch = np.asarray(idx).reshape(epochs, -1)
    ok = np.asarray(valid).reshape(epochs, -1)
    for e in range(epochs):
        assert sorted(per_epoch[e][ok[e]].tolist()) == list(range(n))
    # steps that contain a real row: exactly ceil(n / bs) per epoch (torch's DataLoader)
    active = np.asarray(valid).any(axis=1).reshape(epochs, steps).sum(axis=1)
    assert (active == math.ceil(n / bs)).all()
    if epochs > 1 and n > 3:
        assert not np.array_equal(per_epoch[0][ok[0]], per_epoch[1][ok[1]])


def test_differentiable_wrt_images_and_soft_labels(mlp):
    v = mlp.init(jax.random.key(0))
    x, y = _batch(6)
    target = param_delta(
        v, client_update(mlp.apply, v, x, y, None, None, ClientHParams(lr=0.1, batch_size=3))
    )
    hp = ClientHParams(lr=0.1, momentum=0.3, epochs=2, batch_size=3)

    def f(xd, yl):
        after = client_update(mlp.apply, v, xd, jax.nn.softmax(yl), None, None, hp)
        d = param_delta(v, after)
        return sum(
            jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(d), jax.tree.leaves(target))
        )

    yl = jax.random.normal(jax.random.key(5), (6, 10))
    gx, gy = jax.grad(f, argnums=(0, 1))(x + 0.1, yl)
    assert np.isfinite(np.asarray(gx)).all() and np.abs(np.asarray(gx)).sum() > 0
    assert np.isfinite(np.asarray(gy)).all()
    # directional finite difference agrees with the gradient (float64: the update is a
    # difference of nearly equal parameters, too noisy for finite differences in float32)
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), v)
        x64 = jnp.asarray(x, jnp.float64) + 0.1

        def f64(xd):
            after = client_update(mlp.apply, v64, xd, y, None, None, hp)
            d = param_delta(v64, after)
            return sum(
                jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(d), jax.tree.leaves(target))
            )

        g64 = jax.grad(f64)(x64)
        d = jax.random.normal(jax.random.key(7), x.shape, jnp.float64)
        eps = 1e-5
        fd = (f64(x64 + eps * d) - f64(x64 - eps * d)) / (2 * eps)
        np.testing.assert_allclose(float(fd), float(jnp.sum(g64 * d)), rtol=1e-4)

    # remat gives the same gradient
    def f_remat(xd):
        after = client_update(mlp.apply, v, xd, y, None, None, hp, remat=True)
        return jnp.sum(jax.tree.leaves(param_delta(v, after))[0])

    def f_plain(xd):
        after = client_update(mlp.apply, v, xd, y, None, None, hp)
        return jnp.sum(jax.tree.leaves(param_delta(v, after))[0])

    np.testing.assert_allclose(jax.grad(f_remat)(x), jax.grad(f_plain)(x), rtol=1e-5, atol=1e-7)


def test_soft_onehot_labels_equal_int_labels(mlp):
    v = mlp.init(jax.random.key(0))
    x, y = _batch(6)
    logits, _ = mlp.apply(v, x)
    np.testing.assert_allclose(
        cross_entropy(logits, y), cross_entropy(logits, jax.nn.one_hot(y, 10)), rtol=1e-6
    )


def test_vmap_over_clients_equals_loop(mlp):
    v = mlp.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (3, 9) + SHAPE)
    ys = jax.random.randint(jax.random.key(2), (3, 9), 0, 10)
    masks = jnp.arange(9)[None] < jnp.array([9, 6, 4])[:, None]
    keys = jax.random.split(jax.random.key(3), 3)
    hp = ClientHParams(lr=0.1, momentum=0.5, weight_decay=1e-3, epochs=2, batch_size=4)
    f = jax.jit(lambda x, y, m, k: client_update(mlp.apply, v, x, y, m, k, hp))
    batched = jax.vmap(f)(xs, ys, masks, keys)
    for i in range(3):
        one = f(xs[i], ys[i], masks[i], keys[i])
        _close(jax.tree.map(lambda a: a[i], batched), one, rtol=1e-5, atol=1e-6)


def test_weighted_average():
    stacked = {"w": jnp.array([[1.0, 2.0], [3.0, 6.0]])}
    out = weighted_average(stacked, jnp.array([0.25, 0.75]))
    np.testing.assert_allclose(out["w"], [2.5, 5.0])


def _clients(num_clients=4, seed=0, n=240):
    ds = data.load("digits", image_size=8)
    part = data.partition(ds.train_labels[:n], num_clients, "iid", seed=seed)
    train = data.gather_padded(ds.train_images, ds.train_labels, part.train_idx)
    test = data.gather_padded(ds.train_images, ds.train_labels, part.test_idx)
    mean, std = data.normalization(ds.info, "dataset")
    return ds, train, test, mean, std


def test_simulate_one_client_equals_client_update(mlp):
    ds, train, test, mean, std = _clients(num_clients=1, n=40)
    s = FLSettings(rounds=1, epochs=1, batch_size=8, lr=0.1, momentum=0.0)
    key = jax.random.key(0)
    res = simulate(
        mlp, train, test, None, None, mean, std, s, key, attack_rounds=[0], progress=False
    )
    obs, truth = res.observations[0], res.truths[0]
    assert (
        obs.mode == "fedavg" and obs.num_samples == int(train.n[0]) and truth.num == obs.num_samples
    )
    # the new global model is the single client's model
    _close(res.variables["params"], obs.variables_after["params"])
    # and the observation is consistent: update = before - after
    _close(obs.update, param_delta(obs.variables, obs.variables_after))
    # the observed update can be reproduced by client_update on the true data with the right key
    init_key, run_key = jax.random.split(key)
    v0 = mlp.init(init_key)
    _close(obs.variables["params"], v0["params"])
    k = jax.random.fold_in(jax.random.fold_in(run_key, 0), 0)
    again = client_update(
        mlp.apply, v0, jnp.asarray(truth.images), jnp.asarray(truth.labels), None, k, s.hparams(0)
    )
    _close(param_delta(v0, again), obs.update, rtol=1e-4, atol=1e-6)


def test_simulate_weights_by_sample_count_and_learns(mlp):
    ds, train, test, mean, std = _clients(num_clients=4, n=400)
    s = FLSettings(rounds=4, epochs=1, batch_size=10, lr=0.1, client_chunk=3)
    res = simulate(
        mlp,
        train,
        test,
        ds.test_images,
        ds.test_labels,
        mean,
        std,
        s,
        jax.random.key(1),
        attack_rounds=[1],
        attack_clients=[0, 2],
        progress=False,
    )
    h = res.history
    assert h["round"] == [0, 1, 2, 3, 4]
    assert len(h["test_acc"]) == 5 and len(h["local_test_acc"]) == 5
    assert h["test_acc"][-1] > h["test_acc"][0] + 0.2  # FedAvg learns the digits
    assert [o.client_id for o in res.observations] == [0, 2]
    assert all(o.round == 1 for o in res.observations)
    np.testing.assert_allclose(h["lr"][1:], [0.1 * 0.95**r for r in range(4)], rtol=1e-6)


def test_simulate_rejects_bad_settings(mlp):
    from leakjax.types import ConfigError

    ds, train, test, mean, std = _clients(num_clients=4, n=100)
    with pytest.raises(ConfigError, match="fl.batch_size"):
        simulate(
            mlp, train, test, None, None, mean, std, FLSettings(batch_size=1000), jax.random.key(0)
        )
    with pytest.raises(ConfigError, match="attack.rounds"):
        simulate(
            mlp,
            train,
            test,
            None,
            None,
            mean,
            std,
            FLSettings(rounds=2, batch_size=5),
            jax.random.key(0),
            attack_rounds=[5],
        )


_SHARDED = r"""
import os, sys, json
import jax, numpy as np
from leakjax import data, models
from leakjax.fl import FLSettings, simulate, client_mesh
assert len(jax.devices()) == 8, jax.devices()
ds = data.load("digits", image_size=8)
part = data.partition(ds.train_labels[:480], 8, "iid", seed=0)
train = data.gather_padded(ds.train_images, ds.train_labels, part.train_idx)
test = data.gather_padded(ds.train_images, ds.train_labels, part.test_idx)
mean, std = data.normalization(ds.info, "dataset")
model = models.get("mlp", 10, (8, 8, 1))
s = FLSettings(rounds=2, epochs=1, batch_size=10, lr=0.1, momentum=0.5, client_chunk=8)
outs = []
for mesh in (None, client_mesh(8)):
    r = simulate(model, train, test, None, None, mean, std, s, jax.random.key(0),
                 attack_rounds=[1], attack_clients=2, mesh=mesh, progress=False)
    outs.append(r)
a, b = outs
diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
           for x, y in zip(jax.tree.leaves(a.variables), jax.tree.leaves(b.variables)))
du = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
         for x, y in zip(jax.tree.leaves(a.observations[1].update), jax.tree.leaves(b.observations[1].update)))
print(json.dumps({"diff": diff, "update_diff": du, "acc": [a.history["local_test_acc"], b.history["local_test_acc"]]}))
"""


def test_sharded_simulation_equals_single_device(tmp_path):
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["diff"] < 1e-5 and res["update_diff"] < 1e-5, res
    assert res["acc"][0] == res["acc"][1]


# ----------------------------------------------------------------------------- step-level API


def test_client_update_equals_a_loop_of_client_steps(mlp):
    from leakjax.fl import client_final, client_init, client_step

    v = mlp.init(jax.random.key(0))
    x, y = _batch(11)
    hp = ClientHParams(lr=0.2, momentum=0.9, weight_decay=0.05, epochs=2, batch_size=4)
    key = jax.random.key(3)
    idx, valid = batch_schedule(jnp.ones((11,), bool), key, hp.epochs, hp.batch_size)
    state = client_init(v, hp)
    for t in range(idx.shape[0]):
        state, _ = client_step(mlp.apply, state, x[idx[t]], y[idx[t]], valid[t], hp)
    assert int(state.step) == 2 * math.ceil(11 / 4)
    _close(
        client_final(state)["params"], client_update(mlp.apply, v, x, y, None, key, hp)["params"]
    )


def test_client_step_skips_an_empty_batch(mlp):
    from leakjax.fl import client_init, client_step

    v = mlp.init(jax.random.key(0))
    x, y = _batch(4)
    hp = ClientHParams(lr=0.2, momentum=0.9, epochs=1, batch_size=4)
    s0 = client_init(v, hp)
    s1, loss = client_step(mlp.apply, s0, x, y, jnp.zeros((4,), bool), hp)
    assert float(loss) == 0.0 and int(s1.step) == 0
    _close(s1.variables["params"], v["params"], rtol=0, atol=0)


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9, 1.0])
def test_momentum_weights_equal_a_simulated_buffer(mu):
    from leakjax.fl import momentum_weights

    steps = 7
    # theta_0 - theta_T = lr * sum_t w_t d_t: feed d_t = e_t and read off the weights.
    buf, total = np.zeros(steps), np.zeros(steps)
    for t in range(steps):
        buf = mu * buf + np.eye(steps)[t]
        total += buf
    np.testing.assert_allclose(momentum_weights(steps, mu, xp=np), total, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(momentum_weights(steps, mu)), total, rtol=1e-6)


def test_local_steps():
    from leakjax.fl import local_steps

    assert local_steps(10, 1, 10) == 1
    assert local_steps(11, 3, 5) == 9
    assert local_steps(1, 2, 64) == 2


def test_copies_schedule_trains_each_copy_in_order_with_momentum_carried(mlp):
    """DLF's exact simulation: epoch e on copy e, partial last batch kept, one momentum buffer."""
    from leakjax.fl import client_init, client_step, copies_schedule

    v = mlp.init(jax.random.key(0))
    e, n, b = 2, 7, 3
    x, y = _batch(e * n)
    hp = ClientHParams(lr=0.1, momentum=0.9, weight_decay=0.01, epochs=e, batch_size=b)
    state = client_init(v, hp)
    for ep in range(e):
        for s in range(0, n, b):
            rows = np.arange(ep * n + s, ep * n + min(s + b, n))
            state, _ = client_step(
                mlp.apply, state, x[rows], y[rows], jnp.ones(len(rows), bool), hp
            )
    out = client_update(mlp.apply, v, x, y, None, None, hp, schedule=copies_schedule(e, n, b))
    _close(out["params"], state.variables["params"])


class _HonestOverride:
    """A client_override that trains exactly as an honest client would (its sample count as
    its weight, or ``weight``), recording when it is called."""

    def __init__(self, model, client_id, mean, std, weight=None):
        self.model, self.client_id, self.weight = model, client_id, weight
        self.mean, self.std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
        self.rounds, self.points = [], []

    def update(self, round, global_vars, hp, x_u8, y, n, key):
        self.rounds.append(round)
        x = (jnp.asarray(x_u8, jnp.float32) / 255.0 - self.mean) / self.std
        mask = jnp.arange(x.shape[0]) < n
        after = client_update(self.model.apply, global_vars, x, y, mask, key, hp)
        return after, n if self.weight is None else self.weight

    def after_round(self, point, global_before, global_after):
        self.points.append(point)
        return {"probe": point, "moved": float(param_sq(global_before, global_after))}


def param_sq(a, b):
    return sum(jnp.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_client_override_that_trains_honestly_changes_nothing(mlp):
    """The override's update enters the mean with its weight: an override doing what honest
    training does gives the plain FedAvg result; it is called only in the rounds that select
    it, after_round at every evaluation point, its stats land in the history."""
    ds, train, test, mean, std = _clients(num_clients=4, n=200)
    s = FLSettings(rounds=3, client_fraction=0.5, epochs=1, batch_size=8, lr=0.1, momentum=0.5)
    run = lambda o=None: simulate(
        mlp, train, test, None, None, mean, std, s, jax.random.key(3), progress=False,
        seed=5, client_override=o,
    )  # fmt: skip
    plain = run()
    o = _HonestOverride(mlp, 1, mean, std)
    res = run(o)
    _close(res.variables, plain.variables, rtol=1e-5, atol=1e-6)
    sel = res.history["selected"]
    assert sel == plain.history["selected"]
    assert o.rounds == [r for r in range(3) if 1 in sel[r + 1]] and o.rounds, sel
    assert len(o.rounds) < 3  # some round left it out (else the test says less)
    assert o.points == [0, 1, 2, 3] and res.history["probe"] == [0, 1, 2, 3]
    assert res.history["moved"][0] == 0.0 and min(res.history["moved"][1:]) > 0.0


def test_client_override_weight_zero_is_fedavg_without_it(mlp):
    """Weight 0: the new global model is the honest clients' mean, the malicious client
    (n set to 0 in honest training) left out: FedAvg of the other clients."""
    ds, train, test, mean, std = _clients(num_clients=4, n=200)
    s = FLSettings(rounds=2, epochs=1, batch_size=8, lr=0.1)
    key = jax.random.key(4)
    o = _HonestOverride(mlp, 3, mean, std, weight=0.0)
    res = simulate(mlp, train, test, None, None, mean, std, s, key, progress=False, client_override=o)  # fmt: skip
    three = type(train)(train.x[:3], train.y[:3], train.n[:3])
    ref = simulate(mlp, three, test, None, None, mean, std, s, key, progress=False)
    _close(res.variables, ref.variables, rtol=1e-5, atol=1e-6)
    assert o.rounds == [0, 1]
    np.testing.assert_allclose(
        res.history["train_loss"][1:], ref.history["train_loss"][1:], rtol=1e-5
    )
