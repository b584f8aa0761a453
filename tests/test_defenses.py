"""Properties of the defenses (leakjax.defenses) and their place in FedAvg and the attacks."""

import math
import pathlib
import subprocess
import sys

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import data, defenses, models
from leakjax.config import base_config, validate
from leakjax.fl import FLSettings, simulate
from leakjax.fl.client import batch_gradient, loss_and_state
from leakjax.types import ConfigError

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def mlp():
    return models.get("mlp", 10, SHAPE)


def _batch(n, key=0):
    k1, k2 = jax.random.split(jax.random.key(key))
    return jax.random.normal(k1, (n,) + SHAPE), jax.random.randint(k2, (n,), 0, 10)


def _pipe(name, **kw):
    return defenses.bind({"name": name, **kw})


def _leaves(t):
    return [np.asarray(a) for a in jax.tree.leaves(t)]


def test_registry_has_the_issues_defenses():
    want = {
        "dp_sgd",
        "local_noise",
        "clip_update",
        "prune",
        "random_prune",
        "quantize",
        "sign",
        "soteria",
        "dp_fedavg",
        "secure_agg",
    }
    assert want <= set(defenses.names())


# ----------------------------------------------------------------------------- step level


def test_dp_sgd_without_noise_is_the_mean_of_clipped_per_example_gradients(mlp):
    v = mlp.init(jax.random.key(0))
    x, y = _batch(6)
    valid = jnp.array([1, 1, 1, 1, 1, 0], bool)  # the padding row must not count
    clip = 0.05
    fn = _pipe("dp_sgd", clip=clip, noise_multiplier=0.0).grad_fn()
    _, _, g = fn(mlp.apply, v["params"], v, x, y, valid, jax.random.key(1))
    expect = None
    for i in range(5):  # independent: one example at a time, clipped by hand
        gi = jax.grad(
            lambda p: loss_and_state(mlp.apply, p, v, x[i : i + 1], y[i : i + 1], None, True)[0]
        )(v["params"])
        norm = math.sqrt(sum(float(jnp.sum(a**2)) for a in jax.tree.leaves(gi)))
        assert norm > clip  # the case where clipping acts
        gi = jax.tree.map(lambda a: a * clip / norm, gi)
        expect = gi if expect is None else jax.tree.map(jnp.add, expect, gi)
    for a, b in zip(_leaves(g), _leaves(jax.tree.map(lambda a: a / 5, expect))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    total = math.sqrt(sum(float(np.sum(a**2)) for a in _leaves(g)))
    assert total <= clip + 1e-6  # a mean of vectors of norm <= clip


def test_dp_sgd_noise_std_is_z_clip_over_batch(mlp):
    v = mlp.init(jax.random.key(0))
    x, y = _batch(8)
    valid = jnp.ones(8, bool)
    z, clip = 2.0, 0.5
    noisy = _pipe("dp_sgd", clip=clip, noise_multiplier=z).grad_fn()
    clean = _pipe("dp_sgd", clip=clip, noise_multiplier=0.0).grad_fn()
    _, _, g0 = clean(mlp.apply, v["params"], v, x, y, valid, None)
    _, _, g1 = noisy(mlp.apply, v["params"], v, x, y, valid, jax.random.key(2))
    diff = np.concatenate([(a - b).ravel() for a, b in zip(_leaves(g1), _leaves(g0))])
    want = z * clip / 8
    # std of n Gaussian draws: relative standard error 1 / sqrt(2 n)
    assert abs(diff.std() / want - 1) < 5 / math.sqrt(2 * diff.size)
    assert abs(diff.mean()) < 5 * want / math.sqrt(diff.size)


def test_local_noise_clips_the_batch_gradient_and_adds_laplace_noise(mlp):
    v = mlp.init(jax.random.key(0))
    x, y = _batch(8)
    valid = jnp.ones(8, bool)
    fn = _pipe("local_noise", noise_scale=0.0, grad_clip=0.01).grad_fn()
    _, _, g = fn(mlp.apply, v["params"], v, x, y, valid, jax.random.key(0))
    assert math.isclose(math.sqrt(sum(float(np.sum(a**2)) for a in _leaves(g))), 0.01, rel_tol=1e-4)
    fn = _pipe("local_noise", noise_scale=0.1, noise_kind="laplace").grad_fn()
    _, _, g = fn(mlp.apply, v["params"], v, x, y, valid, jax.random.key(0))
    _, _, g0 = batch_gradient(mlp.apply, v["params"], v, x, y, valid)
    d = np.concatenate([(a - b).ravel() for a, b in zip(_leaves(g), _leaves(g0))])
    assert abs(d.std() / (0.1 * math.sqrt(2)) - 1) < 0.05  # Laplace(b): std b sqrt(2)


# ----------------------------------------------------------------------------- update level


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.5, 0.9, 0.99])
def test_prune_keeps_exactly_the_stated_fraction(ratio):
    rng = np.random.default_rng(0)
    delta = {
        "a": jnp.asarray(rng.normal(size=(37, 11)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(13,)), jnp.float32),
    }
    out = _pipe("prune", prune_ratio=ratio).on_update(delta, None, None)
    for k in delta:
        zeros = int(np.sum(np.asarray(out[k]) == 0))
        assert zeros == math.floor(ratio * delta[k].size)
        kept = np.asarray(out[k]) != 0
        if 0 < zeros < delta[k].size:  # the smallest magnitudes are the ones dropped
            assert (
                np.abs(np.asarray(delta[k]))[~kept].max()
                <= np.abs(np.asarray(delta[k]))[kept].min()
            )


def _argsort_mask(a, ratio):
    """The pruning mask before issue 33 #14: a stable double argsort of |a|."""
    flat = jnp.abs(a).reshape(-1)
    rank = jnp.argsort(jnp.argsort(flat, stable=True), stable=True)
    return (rank >= math.floor(ratio * a.size)).reshape(a.shape)


def test_magnitude_mask_equals_the_argsort_ranking_and_sorts_nothing():
    """Issue 33 #14: the same mask as the double argsort (ties by position, +-0, inf, NaN,
    subnormals), without a sort in the compiled program (the sort made a round ~20x slower)."""
    from leakjax.defenses.prune import magnitude_mask

    mask = jax.jit(magnitude_mask, static_argnums=1)  # a few shapes and ratios: few compiles
    expect = jax.jit(_argsort_mask, static_argnums=1)
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, 1e-45, -3e-40, 1.0, -1.0, np.inf, -np.inf, np.nan]
    for trial in range(60):
        n = (1, 7, 64, 199)[trial % 4 if trial < 4 else int(rng.integers(1, 4))]
        kind = (trial // 4) % 4
        if kind == 0:
            a = rng.normal(size=n)
        elif kind == 1:
            a = rng.integers(-3, 4, size=n).astype(float)  # many ties
        elif kind == 2:
            a = rng.choice(special, size=n)
        else:
            a = rng.normal(size=n) * 10.0 ** rng.integers(-42, 30, size=n)
        a = jnp.asarray(a.reshape(n, 1), jnp.float32)
        for ratio in (0.0, 0.1, 0.37, 0.5, 0.99):
            np.testing.assert_array_equal(mask(a, ratio), expect(a, ratio))
    hlo = jax.jit(lambda a: magnitude_mask(a, 0.5)).lower(jnp.ones((64, 32))).as_text()
    assert "sort" not in hlo


def test_random_prune_drops_about_p():
    delta = {"a": jnp.ones((200, 100))}
    out = _pipe("random_prune", random_prune_p=0.3).on_update(delta, jax.random.key(0), None)
    frac = float(np.mean(np.asarray(out["a"]) == 0))
    assert abs(frac - 0.3) < 5 * math.sqrt(0.3 * 0.7 / 20000)


def test_quantize_is_unbiased_and_on_the_grid():
    v = jnp.asarray(np.random.default_rng(1).normal(size=(50,)), jnp.float32)
    pipe = _pipe("quantize", levels=4)
    draws = jax.vmap(lambda k: pipe.on_update({"w": v}, k, None)["w"])(
        jax.random.split(jax.random.key(0), 4000)
    )
    norm = float(jnp.linalg.norm(v))
    grid = np.asarray(draws) / norm * 3  # s = levels - 1 = 3 intervals
    np.testing.assert_allclose(grid, np.round(grid), atol=1e-4)
    se = np.asarray(draws).std(0) / math.sqrt(4000)
    assert np.all(np.abs(np.asarray(draws).mean(0) - np.asarray(v)) < 5 * se + 1e-6)


def test_sign_sends_scaled_signs_with_a_straight_through_gradient():
    v = jnp.array([0.5, -2.0, 1.5])
    out = _pipe("sign").on_update({"w": v}, None, None)["w"]
    np.testing.assert_allclose(np.asarray(out), [4 / 3, -4 / 3, 4 / 3], rtol=1e-6)
    g = jax.grad(
        lambda a: jnp.sum(_pipe("sign").on_update({"w": a}, None, None)["w"] * jnp.arange(3.0))
    )(v)
    np.testing.assert_allclose(np.asarray(g), [0, 1, 2])


def test_soteria_zeroes_exactly_the_stated_fraction_of_head_rows():
    model = models.get("cnn", 10, (16, 16, 1))
    v = model.init(jax.random.key(0))
    x, y = _batch(4)
    x = jax.image.resize(x, (4, 16, 16, 1), "nearest")
    mask = jnp.ones(4, bool)
    delta = jax.tree.map(jnp.ones_like, v["params"])
    ctx = defenses.UpdateContext(model, v, x, y, mask)
    out = _pipe("soteria", soteria_ratio=0.5).on_update(delta, None, ctx)
    rows = np.asarray(out["head"]["kernel"]).any(axis=1)
    f = rows.size
    assert int((~rows).sum()) == math.floor(0.5 * f)
    others = [k for k in delta if k != "head"]
    for k in others:  # nothing else is touched
        for a in jax.tree.leaves(out[k]):
            assert np.all(np.asarray(a) == 1)


def test_clip_update_bounds_the_norm():
    delta = {"w": jnp.full((10,), 3.0)}
    out = _pipe("clip_update", clip=1.0).on_update(delta, None, None)
    assert math.isclose(float(jnp.linalg.norm(out["w"])), 1.0, rel_tol=1e-6)
    small = {"w": jnp.full((10,), 0.01)}
    np.testing.assert_array_equal(
        np.asarray(_pipe("clip_update", clip=1.0).on_update(small, None, None)["w"]),
        np.asarray(small["w"]),
    )


def test_adaptive_simulation_ignores_the_coordinates_the_client_zeroed():
    pipe = _pipe("prune", prune_ratio=0.5)
    observed = {"w": jnp.array([0.0, 2.0, 0.0, -1.0])}
    sim = pipe.simulate_update({"w": jnp.array([5.0, 1.0, 7.0, 1.0])}, observed)
    np.testing.assert_array_equal(np.asarray(sim["w"]), [0, 1, 0, 1])


# ----------------------------------------------------------------------------- in FedAvg


def _clients(n_clients=4, n=24):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n_clients, n) + SHAPE, dtype=np.uint8)
    y = rng.integers(0, 10, size=(n_clients, n)).astype(np.int32)
    train = data.ClientArrays(x=x, y=y, n=np.full(n_clients, n, np.int32))
    empty = data.ClientArrays(x=x[:, :0], y=y[:, :0], n=np.zeros(n_clients, np.int32))
    return train, empty


def _sim(mlp, defense, rounds=1, **kw):
    train, empty = _clients()
    s = FLSettings(rounds=rounds, epochs=1, batch_size=8, lr=0.1, momentum=0.5, lr_decay=1.0)
    return simulate(
        mlp,
        train,
        empty,
        None,
        None,
        np.zeros(1),
        np.ones(1),
        s,
        jax.random.key(0),
        progress=False,
        defense=defense,
        **kw,
    )


@pytest.mark.parametrize(
    "zero",
    [
        dict(name="local_noise", noise_scale=0.0),
        dict(name="prune", prune_ratio=0.0),
        dict(name="clip_update", clip=1e30),
    ],
)
def test_a_zero_strength_defense_equals_no_defense_bit_for_bit(mlp, zero):
    a = _sim(mlp, None, rounds=2, attack_rounds=(1,), attack_clients=2)
    b = _sim(mlp, defenses.bind(zero), rounds=2, attack_rounds=(1,), attack_clients=2)
    for u, w in zip(_leaves(a.variables), _leaves(b.variables)):
        np.testing.assert_array_equal(u, w)
    for oa, ob in zip(a.observations, b.observations):
        for u, w in zip(_leaves(oa.update), _leaves(ob.update)):
            np.testing.assert_array_equal(u, w)


def test_secure_aggregation_observation_is_the_weighted_mean_of_the_group(mlp):
    agg = _sim(mlp, _pipe("secure_agg", secure_agg_clients=3), attack_rounds=(0,), attack_clients=1)
    (o,), (t,) = agg.observations, agg.truths
    group = list(dict.fromkeys(np.asarray(t.owners).tolist()))
    assert len(group) == 3 and group[0] == o.client_id and o.num_samples == 3 * 24
    single = _sim(mlp, None, attack_rounds=(0,), attack_clients=group)
    mean = jax.tree.map(lambda *u: sum(u) / 3, *[s.update for s in single.observations])
    for u, w in zip(_leaves(o.update), _leaves(mean)):
        np.testing.assert_allclose(u, w, rtol=1e-5, atol=1e-7)
    assert t.images.shape[0] == 72


def test_dp_fedavg_clips_updates_and_noises_the_mean(mlp):
    clean = _sim(
        mlp,
        _pipe("dp_fedavg", clip=1e-3, noise_multiplier=0.0),
        attack_rounds=(0,),
        attack_clients=4,
    )
    for o in clean.observations:  # each client's update clipped to S
        norm = math.sqrt(sum(float(np.sum(a**2)) for a in _leaves(o.update)))
        assert norm <= 1e-3 * (1 + 1e-5)
    noisy = _sim(mlp, _pipe("dp_fedavg", clip=1e-3, noise_multiplier=4.0))
    d = np.concatenate(
        [
            (a - b).ravel()
            for a, b in zip(_leaves(noisy.variables["params"]), _leaves(clean.variables["params"]))
        ]
    )
    want = 4.0 * 1e-3 / 4  # z S max_k w_k with 4 equal clients
    assert abs(d.std() / want - 1) < 5 / math.sqrt(2 * d.size)


# ----------------------------------------------------------------------------- accounting


def test_pipeline_epsilon_equals_dp_accountings_for_the_clients_steps():
    pipe = _pipe("dp_sgd", clip=1.0, noise_multiplier=1.1, delta=1e-5)
    run = defenses.RunFacts(
        num_clients=100,
        clients_per_round=10,
        rounds=5,
        epochs=2,
        batch_size=4,
        num_samples=14,
        rounds_participated=3,
    )
    (got,) = pipe.accounting(run)
    steps = 3 * 2 * math.ceil(14 / 4)
    acc = dp_accounting.rdp.RdpAccountant()
    acc.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(4 / 14, dp_accounting.GaussianDpEvent(1.1)), steps
        )
    )
    assert got["steps"] == steps and got["q"] == 4 / 14
    assert math.isclose(got["epsilon"], acc.get_epsilon(1e-5), rel_tol=1e-9)
    (user,) = _pipe("dp_fedavg", noise_multiplier=1.0, delta=1e-6, accountant="pld").accounting(run)
    acc = dp_accounting.pld.PLDAccountant()
    acc.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.0)), 5
        )
    )
    assert user["level"] == "user" and math.isclose(
        user["epsilon"], acc.get_epsilon(1e-6), rel_tol=1e-9
    )


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "group,msg",
    [
        (dict(name="dp_sgd", clpi=1.0), "defense.clpi"),
        (dict(name="dp_sgd", clip=float("nan")), "defense.clip"),
        (dict(name="dp_sgd", noise_multiplier=-1.0), "defense.noise_multiplier"),
        (dict(name="prune", prune_ratio=1.5), "defense.prune_ratio"),
        (dict(name="bogus"), "defense.name"),
        (dict(name="none,prune"), "defense.name"),
        (dict(name="prune,prune"), "defense.name"),
        (dict(name="none", clip=1.0), "defense.clip"),
        (dict(name="quantize", levels=2.5), "defense.levels"),
    ],
)
def test_bad_defense_settings_name_the_key(group, msg):
    with pytest.raises(ConfigError, match=msg.replace(".", r"\.")):
        defenses.bind(group)


def test_chain_runs_in_pipeline_order_and_shares_keys():
    pipe = _pipe("secure_agg,prune,dp_sgd", clip=2.0, prune_ratio=0.3)
    assert pipe.names == ("dp_sgd", "prune", "secure_agg")
    assert pipe.defenses[0].clip == 2.0


def test_server_defenses_need_fedavg_mode():
    c = base_config()
    c.attack.mode = "gradient"
    c.defense.name = "dp_fedavg"
    with pytest.raises(ConfigError, match="defense.name"):
        validate(c)


def test_cli_defense_flags_exit_2_before_anything_is_written(tmp_path):
    wd = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "leakjax.cli",
            "--config=configs/quickstart.py:tiny",
            "--config.defense.name=dp_sgd",
            "--config.defense.noise_multiplier=nan",
            f"--workdir={wd}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "defense.noise_multiplier" in r.stderr and not wd.exists()
    r = subprocess.run(
        [sys.executable, "-m", "leakjax.cli", "--list=defenses"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "dp_sgd" in r.stdout and "secure_agg" in r.stdout


def test_frontier_plot_draws_one_curve_per_attack_and_defense(tmp_path):
    from leakjax import figures

    rows = [
        dict(
            attack="ig",
            mode="fedavg",
            defense="none",
            epsilon=None,
            psnr_mean=30.0,
            final_test_acc=0.9,
        ),
        dict(
            attack="ig",
            mode="fedavg",
            defense="dp_sgd",
            epsilon=8.0,
            psnr_mean=20.0,
            final_test_acc=0.8,
        ),
        dict(
            attack="ig",
            mode="fedavg",
            defense="dp_sgd",
            epsilon=1.0,
            psnr_mean=10.0,
            final_test_acc=0.5,
        ),
        dict(
            attack="ig",
            mode="fedavg",
            defense="prune",
            epsilon=None,
            psnr_mean=25.0,
            final_test_acc=0.85,
        ),
        dict(
            attack="ig",
            mode="fedavg",
            defense="prune",
            status="failed",
            psnr_mean=None,
            final_test_acc=None,
        ),
    ]
    fig = figures.plot_frontier(tmp_path / "f.png", rows)
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"ig (fedavg): dp_sgd", "ig (fedavg): prune"}
    assert list(lines["ig (fedavg): dp_sgd"].get_xdata()) == [0.9, 0.8, 0.5]  # from no defense
    assert sorted(t.get_text() for t in ax.texts) == ["eps=1", "eps=8"]
    assert (tmp_path / "f.png").stat().st_size > 0


@pytest.mark.slow
def test_a_defense_family_sweeps_into_a_table_with_epsilon_and_a_frontier(tmp_path):
    from leakjax import sweep

    fam = tmp_path / "fam.py"
    fam.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(pathlib.Path(__file__).resolve().parent.parent / 'configs')!r})\n"
        "from quickstart import get_config\n\n"
        "def get_configs(preset=''):\n"
        "    out = {}\n"
        "    for name, z in (('none', None), ('dp-1', 1.0)):\n"
        "        c = get_config('tiny')\n"
        "        c.fl.rounds, c.attack.steps, c.attack.chunk, c.attack.clients = 1, 4, 4, 1\n"
        "        if z is not None:\n"
        "            c.defense.name = 'dp_sgd'\n"
        "            c.defense.noise_multiplier = z\n"
        "        out[name] = c\n"
        "    return out\n"
    )
    specs = sweep.expand(str(fam))
    assert specs == [f"{fam}#none", f"{fam}#dp-1"]
    rows = sweep.run_sweep(specs, tmp_path / "out", progress=False)
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    assert rows[0]["defense"] == "none" and rows[0]["epsilon"] is None
    assert rows[1]["defense"] == "dp_sgd" and 0 < rows[1]["epsilon"] < 100
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 0
    assert "epsilon" in (tmp_path / "out" / "results.md").read_text()


def test_dp_sgd_clipping_matches_optax_and_differentiates_through_padding(mlp):
    import optax

    v = mlp.init(jax.random.key(0))
    x, y = _batch(4)
    valid = jnp.array([1, 1, 1, 0], bool)
    fn = _pipe("dp_sgd", clip=0.05, noise_multiplier=0.0).grad_fn()

    def one(xi, yi):
        return jax.grad(
            lambda p: loss_and_state(mlp.apply, p, v, xi[None], yi[None], None, True)[0]
        )(v["params"])

    per_ex = jax.vmap(one)(x[:3], y[:3])
    leaves, treedef = jax.tree.flatten(per_ex)
    ref, _ = optax.per_example_global_norm_clip(leaves, 0.05)
    _, _, g = fn(mlp.apply, v["params"], v, x, y, valid, None)
    for a, b in zip(_leaves(g), [np.asarray(r) / 3 for r in ref]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    # an attacker differentiates w.r.t. the inputs through it, padding row included
    dx = jax.grad(
        lambda xx: sum(
            jnp.sum(a)
            for a in jax.tree.leaves(fn(mlp.apply, v["params"], v, xx, y, valid, None)[2])
        )
    )(x)
    assert np.all(np.isfinite(np.asarray(dx)))


@pytest.mark.slow
def test_a_stronger_defense_lowers_ig_psnr_on_real_digits(tmp_path):
    """IG on one shared gradient of 2 real digits (configs/defenses/ig_gradient.py:cpu): exact
    without a defense; Gaussian noise of std 0.1 on the gradient costs it > 20 dB (measured:
    85.5 -> 11.3 dB, BUILD_NOTES "Defenses")."""
    from leakjax import experiment, sweep

    spec = "configs/defenses/ig_gradient.py:cpu"
    clean = experiment.run(sweep.load_config(f"{spec}#none"), tmp_path / "a", progress=False)
    noisy = experiment.run(
        sweep.load_config(f"{spec}#local_noise-0.1"), tmp_path / "b", progress=False
    )
    assert clean["psnr_mean"] >= 40
    assert noisy["psnr_mean"] <= clean["psnr_mean"] - 20
    assert noisy["defense"] == "local_noise" and clean["defense"] == "none"


def test_adaptive_simulation_of_a_secure_aggregate_is_exact_at_the_truth(mlp):
    """Zero loss at the truth: simulating the K clients of the group (each from its own rows)
    reproduces the aggregate; simulating one client on the union batch does not."""
    from leakjax.attacks.simulation import simulated_update

    train, empty = _clients(n_clients=4, n=24)
    s = FLSettings(rounds=1, epochs=2, batch_size=24, lr=0.1, momentum=0.5, lr_decay=1.0)
    sim = simulate(
        mlp,
        train,
        empty,
        None,
        None,
        np.zeros(1),
        np.ones(1),
        s,
        jax.random.key(0),
        progress=False,
        defense=_pipe("secure_agg", secure_agg_clients=3),
        attack_rounds=(0,),
        attack_clients=1,
    )
    (o,), (t,) = sim.observations, sim.truths
    assert o.group_sizes == (24, 24, 24)
    x, y = jnp.asarray(t.images), jnp.asarray(t.labels)
    grouped = simulated_update(mlp, o, x, y)
    for a, b in zip(_leaves(grouped), _leaves(o.update)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    union = simulated_update(mlp, o.replace(defense=None), x, y)
    err = max(float(np.abs(a - b).max()) for a, b in zip(_leaves(union), _leaves(o.update)))
    assert err > 1e-4


@pytest.mark.parametrize(
    "spec",
    [
        dict(name="clip_update", clip=0.05),
        dict(name="prune", prune_ratio=0.5),
        dict(name="dp_sgd", clip=0.5, noise_multiplier=0.0),
        dict(name="secure_agg", secure_agg_clients=3),
        dict(name="clip_update,secure_agg", clip=0.05, secure_agg_clients=3),
    ],
    ids=["clip_update", "prune", "dp_sgd", "secure_agg", "clip_update+secure_agg"],
)
def test_one_defended_client_in_the_simulator_the_observation_and_the_attack(mlp, spec):
    """One implementation of a defended client (`leakjax.fl.Client`): the simulator's
    observation, `fedavg_observation` on the same data and the adaptive attacker's simulation
    at the truth agree (one batch per epoch, so the client's shuffle only reorders a sum).
    quantize is left out: the attacker simulates its expectation, not its draw."""
    from leakjax.attacks.simulation import simulated_update
    from leakjax.fl.observation import fedavg_observation

    pipe = defenses.bind(spec)
    sa = pipe.secure_agg_clients
    train, empty = _clients(n_clients=4, n=24)
    s = FLSettings(rounds=1, epochs=2, batch_size=24, lr=0.1, momentum=0.5, lr_decay=1.0)
    sim = simulate(
        mlp, train, empty, None, None, np.zeros(1), np.ones(1), s, jax.random.key(0),
        progress=False, defense=pipe, attack_rounds=(0,), attack_clients=1,
    )  # fmt: skip
    (o,), (t,) = sim.observations, sim.truths
    x, y = jnp.asarray(t.images), jnp.asarray(t.labels)
    attacker = simulated_update(mlp, o.replace(defense=pipe), x, y)
    if sa > 1:  # the server sees the mean of the group's defended updates
        rows = np.split(np.arange(x.shape[0]), sa)
        served = [
            fedavg_observation(mlp, o.variables, x[r], y[r], o.hp, defense=pipe) for r in rows
        ]
        served = jax.tree.map(lambda *u: sum(u) / sa, *[v.update for v in served])
    else:
        served = fedavg_observation(mlp, o.variables, x, y, o.hp, defense=pipe).update
    for a, b, c in zip(_leaves(o.update), _leaves(served), _leaves(attacker), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-6)
    if pipe.of("update"):  # the defense acted: an undefended client differs
        plain = fedavg_observation(mlp, o.variables, x, y, o.hp).update
        assert (
            max(float(np.abs(a - b).max()) for a, b in zip(_leaves(plain), _leaves(served))) > 1e-4
        )


def test_input_stage_defense_trains_on_the_noisy_images_the_attacker_on_the_clean_ones(mlp):
    """The 'input' insertion point (`input_noise`, the worked example): a real client trains
    on ``x + noise`` with the noise from ``fold_in(key, 3)`` via the pipeline (the same update as an undefended
    client handed the noisy images), in FedAvg and FedSGD; an attacker's simulation (no key)
    and ``noise_std=0`` train on ``x`` itself."""
    from leakjax.fl import Client, ClientHParams

    x, y = _batch(12)
    mask = jnp.ones((12,), bool)
    hp = ClientHParams(lr=0.1, momentum=0.5, weight_decay=0.0, epochs=2, batch_size=4)
    v = mlp.init(jax.random.key(1))
    key = jax.random.key(7)
    pipe = _pipe("input_noise", noise_std=0.5)
    assert pipe.of("input") and not pipe.acts_on_update
    # the pipeline hands its i-th input hook split(fold_in(key, 3), hooks)[i]
    k_noise = jax.random.split(jax.random.fold_in(key, 3), 1)[0]
    noisy = x + 0.5 * jax.random.normal(k_noise, x.shape)
    plain, defended = Client(mlp, hp), Client(mlp, hp, pipe)
    got = defended.delta(v, x, y, mask, key)
    want = plain.delta(v, noisy, y, mask, key)
    clean = plain.delta(v, x, y, mask, key)
    for a, b in zip(_leaves(got), _leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    assert max(float(np.abs(a - b).max()) for a, b in zip(_leaves(got), _leaves(clean))) > 1e-4
    for a, b in zip(_leaves(defended.delta(v, x, y, mask)), _leaves(plain.delta(v, x, y, mask))):
        np.testing.assert_array_equal(a, b)  # no key: the attacker's simulation draws nothing
    off = Client(mlp, hp, _pipe("input_noise", noise_std=0.0)).delta(v, x, y, mask, key)
    for a, b in zip(_leaves(off), _leaves(clean), strict=True):
        np.testing.assert_array_equal(a, b)
    g_def, g_noisy = defended.gradient(v, x, y, key), plain.gradient(v, noisy, y, key)
    for a, b in zip(_leaves(g_def), _leaves(g_noisy), strict=True):
        np.testing.assert_array_equal(a, b)


def test_input_stage_defense_reaches_the_simulator(mlp):
    """`simulate` with ``defense.name=input_noise``: the round's observed update differs from
    the undefended run's (same keys otherwise) and the attacker's simulation at the clean truth
    no longer matches it."""
    from leakjax.attacks.simulation import simulated_update

    train, empty = _clients(n_clients=4, n=24)
    s = FLSettings(rounds=1, epochs=1, batch_size=24, lr=0.1, momentum=0.0, lr_decay=1.0)
    runs = {}
    for name, pipe in (("plain", None), ("noisy", _pipe("input_noise", noise_std=0.5))):
        sim = simulate(
            mlp, train, empty, None, None, np.zeros(1), np.ones(1), s, jax.random.key(0),
            progress=False, defense=pipe, attack_rounds=(0,), attack_clients=1,
        )  # fmt: skip
        runs[name] = sim
    (o_plain,), (o_noisy,) = runs["plain"].observations, runs["noisy"].observations
    gap = max(
        float(np.abs(a - b).max()) for a, b in zip(_leaves(o_plain.update), _leaves(o_noisy.update))
    )
    assert gap > 1e-3
    (t,) = runs["noisy"].truths
    sim_up = simulated_update(mlp, o_noisy, jnp.asarray(t.images), jnp.asarray(t.labels))
    err = max(float(np.abs(a - b).max()) for a, b in zip(_leaves(sim_up), _leaves(o_noisy.update)))
    assert err > 1e-4
