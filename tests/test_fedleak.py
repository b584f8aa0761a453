"""FedLeak's options of the gradient-matching attacks (`leakjax.attacks.losses.MatchOptions`):
partial matching (layers, top fraction of coordinates) contributes nothing outside its
selection, the defaults are today's objective bit for bit, the gradient regularizer, and the
CLI's refusals."""

import dataclasses
import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import attacks, models
from leakjax.attacks import dlf, losses, sme
from leakjax.attacks import inverting_gradients as ig
from leakjax.fl import ClientHParams
from leakjax.fl.observation import fedavg_observation
from leakjax.types import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPE = (8, 8, 1)
BOX = (jnp.array([-2.0]), jnp.array([2.0]))
MATCHES = {
    "cosine": losses.cosine,
    "l2": losses.l2,
    "layerwise_cosine": losses.layerwise_cosine,
    "layer_weighted_l2": None,  # weights from the tree (DLF's)
}


@pytest.fixture(scope="module")
def small():
    model = models.get("mlp", 10, SHAPE)
    v = model.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (4,) + SHAPE, minval=-1, maxval=1)
    y = jnp.array([1, 4, 7, 2])
    obs = fedavg_observation(model, v, x, y, ClientHParams(lr=0.1, epochs=1, batch_size=2))
    return model, v, x, y, obs


def _random_like(tree, seed):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, u.shape) for k, u in zip(keys, leaves, strict=True)]
    )


def _match(name, observed):
    fn = MATCHES[name]
    if fn is None:
        return functools.partial(
            losses.layer_weighted_l2, weights=losses.exp_layer_weights(observed)
        )
    return fn


@pytest.mark.parametrize("name", list(MATCHES))
def test_masked_out_layers_and_coordinates_contribute_nothing(small, name):
    """Changing the simulated update only where the selection is off (another layer, or a
    coordinate outside a tensor's top fraction) leaves the matching term, regularizer included,
    unchanged; changing a selected coordinate does not."""
    obs = small[-1].update
    paths = losses.leaf_paths(obs)
    first = paths[0].split("/")[0]  # one layer: its kernel and bias
    opts = losses.MatchOptions(match_layers=(first,), match_fraction=0.25, grad_reg=0.3)
    term = losses.fedleak_match(_match(name, obs), obs, opts, jnp.float32(0.3), False)
    sel = losses.selection(obs, opts.match_layers, opts.match_fraction)
    sim = _random_like(obs, 1)
    base = float(term(sim))
    noise = _random_like(obs, 2)
    leaves, treedef = jax.tree.flatten(sim)
    off, on = [], []
    for p, u, s, n in zip(paths, leaves, sel, jax.tree.leaves(noise), strict=True):
        if s is False:  # another layer: anything goes
            assert not p.startswith(first)
            off.append(u + 10.0 * n)
            on.append(u)
        else:  # this layer: only coordinates outside the top 25% may change
            assert p.startswith(first)
            o = np.abs(np.asarray(_leaf(obs, p)))
            k = math.ceil(0.25 * o.size)
            assert float(s.sum()) == k  # continuous values: no ties
            np.testing.assert_array_equal(np.asarray(s) == 1, o >= np.sort(o.ravel())[-k])
            off.append(u + 10.0 * n * (1 - s))
            on.append(u + 10.0 * n * s)
    assert float(term(jax.tree.unflatten(treedef, off))) == base
    assert abs(float(term(jax.tree.unflatten(treedef, on))) - base) > 1e-4


def _leaf(tree, path):
    return dict(zip(losses.leaf_paths(tree), jax.tree.leaves(tree), strict=True))[path]


@pytest.mark.parametrize("name", list(MATCHES))
def test_defaults_are_todays_objective_exactly(small, name):
    """match_fraction=1 with match_layers () or ('',), grad_reg 0 (baked in or traced): the
    term is the plain matching loss bit for bit."""
    obs = small[-1].update
    sim = _random_like(obs, 3)
    match = _match(name, obs)
    plain = np.asarray(match(sim, obs))
    for layers in ((), ("",)):
        opts = losses.MatchOptions(match_layers=layers, match_fraction=1.0)
        assert losses.selection(obs, layers, 1.0) is None
        for traced in (False, True):
            term = losses.fedleak_match(match, obs, opts, jnp.float32(0.0), traced)
            assert np.asarray(term(sim)).tobytes() == plain.tobytes()
            jitted = jax.jit(lambda s, w, t=traced: losses.fedleak_match(match, obs, opts, w, t)(s))
            np.testing.assert_array_equal(jitted(sim, jnp.float32(0.0)), jax.jit(match)(sim, obs))


def test_sme_objective_with_default_options_is_unchanged(small):
    """SME's objective through `fedleak_match` with its defaults is the plain cosine one bit
    for bit."""
    model, _, x, y, obs = small
    term = losses.fedleak_match(losses.cosine, obs.update, sme.SMEConfig(), 0.0, False)
    a = sme.objective(model, obs, x * 0.5, y, 0.3, 0.005)
    b = sme.objective(model, obs, x * 0.5, y, 0.3, 0.005, term)
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


SLOW = pytest.mark.slow
ATTACKS = [
    pytest.param(ig, ig.IGConfig(labels="fixed"), id="ig"),
    pytest.param(sme, sme.SMEConfig(labels="fixed", lr=0.1), id="sme", marks=SLOW),
    pytest.param(dlf, dlf.DLFConfig(order_prior="none"), id="dlf", marks=SLOW),
]


@pytest.mark.parametrize("mod,cfg", ATTACKS)
def test_explicit_default_options_give_the_same_run(small, mod, cfg):
    """An attack's run with the defaults equals the run with match_fraction=1 and
    match_layers=('',) spelled out (IG fast; SME, DLF slow)."""
    model, _, _, y, obs = small
    runs = []
    for c in (cfg, dataclasses.replace(cfg, match_layers=("",), match_fraction=1.0)):
        atk = mod.make(obs, model, c, steps=3, box=BOX, labels=y)
        runs.append(attacks.run(atk, jax.random.key(0), steps=3, chunk=3, progress=False))
    np.testing.assert_array_equal(runs[0].losses, runs[1].losses)
    np.testing.assert_array_equal(runs[0].restarts.images, runs[1].restarts.images)


def test_regularizer_is_zero_at_weight_0_and_changes_the_objective_otherwise(small):
    obs = small[-1].update
    sim = _random_like(obs, 4)
    opts = losses.MatchOptions(match_fraction=0.5)
    sel = losses.selection(obs, (), 0.5)
    pen = float(losses.grad_penalty(losses.select(sim, sel), losses.select(obs, sel)))
    assert pen > 0
    zero = losses.fedleak_match(losses.cosine, obs, opts, jnp.float32(0.0), True)(sim)
    plain = losses.fedleak_match(losses.cosine, obs, opts, jnp.float32(0.0), False)(sim)
    assert float(zero) == float(plain)
    w = losses.fedleak_match(losses.cosine, obs, opts, jnp.float32(0.5), True)(sim)
    np.testing.assert_allclose(float(w) - float(plain), 0.5 * pen, rtol=1e-5)
    # relative to the observed norm: invariant to rescaling both sides, 1 at sim = obs
    assert float(losses.grad_penalty(obs, obs)) == pytest.approx(1.0, rel=1e-6)
    scaled = jax.tree.map(lambda u: 3.0 * u, sim), jax.tree.map(lambda u: 3.0 * u, obs)
    assert float(losses.grad_penalty(*scaled)) == pytest.approx(
        float(losses.grad_penalty(sim, obs)), rel=1e-5
    )


@pytest.mark.parametrize("mod,cfg", ATTACKS)
def test_grad_reg_is_traced_and_equals_its_baked_in_run(small, mod, cfg):
    """grad_reg is a traced hyperparameter (IG fast; SME, DLF slow): a settings axis of 2 runs
    in one program, each equal to its baked-in run, and the weight changes the result."""
    model, _, _, y, obs = small
    assert "grad_reg" in mod.HYPERPARAMS
    settings = [dataclasses.replace(cfg, match_fraction=0.5, grad_reg=w) for w in (0.0, 2.0)]

    def factory(hp):
        return mod.make(obs, model, settings[0], steps=4, box=BOX, labels=y, hparams=hp)

    axis = {k: jnp.asarray([getattr(c, k) for c in settings], jnp.float32) for k in mod.HYPERPARAMS}
    both = attacks.run(factory, jax.random.key(0), steps=4, chunk=4, progress=False, hparams=axis)
    assert not np.array_equal(both[0].losses, both[1].losses)
    for c, got in zip(settings, both, strict=True):
        baked = attacks.run(
            mod.make(obs, model, c, steps=4, box=BOX, labels=y),
            jax.random.key(0),
            steps=4,
            chunk=4,
            progress=False,
        )
        np.testing.assert_allclose(got.losses, baked.losses, rtol=1e-5)
        assert np.isfinite(np.asarray(got.restarts.images)).all()


def test_selection_refuses_unknown_layers_and_bad_fractions(small):
    obs = small[-1].update
    with pytest.raises(ConfigError, match=r"attack.match_layers=\('nope',\): 'nope' names no"):
        losses.selection(obs, ("nope",), 1.0)
    with pytest.raises(ConfigError, match=r"attack.match_fraction must be in \(0, 1\]"):
        losses.selection(obs, (), 0.0)
    with pytest.raises(ConfigError, match="attack.match_fraction must be <= 1"):
        ig.IGConfig(match_fraction=1.5)
    with pytest.raises(ConfigError, match="attack.grad_reg must be >= 0"):
        dlf.DLFConfig(grad_reg=-0.1)


@pytest.mark.parametrize(
    "attack,key,value,words",
    [
        ("ig", "match_fraction", "0", "attack.match_fraction must be > 0, got 0"),
        ("sme", "match_fraction", "1.5", "attack.match_fraction must be <= 1, got 1.5"),
        ("ig", "grad_reg", "-1", "attack.grad_reg must be >= 0, got -1"),
        ("sme", "match_layers", "('nope',)", "attack.match_layers=('nope',): 'nope' names no"),
        ("ig", "match_layers", "nope", "attack.match_layers must be tuple"),
    ],
)
def test_cli_bad_value_is_one_line_exit_2(cli_refuses, attack, key, value, words):
    cli_refuses(f"--config.attack.name={attack}", f"--config.attack.{key}={value}", words=words)
