"""The contract every registered attack meets (parameterized over `attacks.names()` x modes):
it builds from its defaults alone, runs a few steps, gives finite results of the right shape,
is deterministic for a key, and rejects an unknown setting naming ``attack.<key>``."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from leakjax import attacks, config, data, experiment
from leakjax.attacks.registry import RUN_KEYS
from leakjax.fl import ClientHParams
from leakjax.fl.observation import fedavg_observation, gradient_observation
from leakjax.types import ConfigError

# attacks on what the server observes (client-side ones, e.g. DMGAN: tests/test_dmgan.py)
CASES = [
    (n, m)
    for n in attacks.names()
    if isinstance(attacks.get(n), attacks.AttackSpec)
    for m in attacks.get(n).modes
]
SAMPLES = 4


def _config(name: str, mode: str):
    c = config.base_config()
    c.data.name, c.data.partition = "digits", "iid"
    c.model.name = "cnn"
    c.fl.num_clients, c.fl.rounds, c.fl.local_epochs, c.fl.batch_size = 20, 1, 1, 2
    c.attack.name, c.attack.mode = name, mode
    c.attack.batch_size, c.attack.steps, c.attack.chunk = SAMPLES, 3, 3
    spec = attacks.get(name)
    c.attack.labels = "oracle"  # the attacks' own label modes have their own tests
    for key, value in spec.example:
        group, field = key.split(".")
        c[group][field] = value
    return c


def _observation(p, mode: str):
    n = int(p.config.attack.batch_size)  # SAMPLES unless the spec's example sets it (R-GAP: 1)
    variables = p.model.init(jax.random.key(1))
    x = data.normalize(p.train.x[0, :n], p.mean, p.std)
    y = p.train.y[0, :n].astype(np.int32)
    if mode == "gradient":
        return gradient_observation(p.model, variables, x, y), y
    # fl.batch_size: 2 unless the spec's example sets it (SPEAR: one full-batch step)
    hp = ClientHParams(lr=0.05, epochs=1, batch_size=int(p.config.fl.batch_size))
    return fedavg_observation(p.model, variables, x, y, hp), y


@pytest.mark.parametrize("name,mode", CASES)
def test_attack_contract(name, mode):
    c = _config(name, mode)
    p = experiment.prepare(c)  # includes the dry build on a stand-in observation
    obs, y = _observation(p, mode)
    lo, hi = data.box(p.mean, p.std)
    box = (jax.numpy.asarray(lo), jax.numpy.asarray(hi))
    labels = y if p.spec.upstream_labels(str(c.attack.labels)) else None
    trials = jax.tree.map(lambda a: jax.numpy.asarray(a)[None], obs)
    trials = (trials, None if labels is None else labels[None])

    def factory(t):
        o, lab = t
        return p.spec.build(o, p.model, c.attack, box=box, labels=lab)

    runs = [
        attacks.run(
            factory, jax.random.key(0), steps=3, restarts=1, trials=trials, chunk=3, progress=False
        )
        for _ in range(2)
    ]
    rec = runs[0].reconstruction
    assert rec.images.shape[0] == 1 and rec.images.shape[2:] == p.model.input_shape
    n = int(c.attack.batch_size)
    if p.spec.kind == "optimization":  # RTF reads out one row per bin pair
        assert rec.images.shape[1] == n
    assert np.isfinite(rec.images).all()
    if rec.labels is not None:
        assert rec.labels.shape == (1, n)
    np.testing.assert_array_equal(rec.images, runs[1].reconstruction.images)
    np.testing.assert_array_equal(runs[0].losses, runs[1].losses)


@pytest.mark.parametrize("name", attacks.names())
def test_unknown_setting_is_named(name):
    spec = attacks.get(name)
    c = _config(name, spec.modes[0])
    c.attack.not_a_setting = 1
    with pytest.raises(ConfigError, match=r"^attack\.not_a_setting is not a setting of"):
        spec.bind(c.attack)


@pytest.mark.parametrize("name", attacks.names())
def test_defaults_are_the_attack_own(name):
    """Binding only run-loop keys gives the settings dataclass's own defaults."""
    spec = attacks.get(name)
    c = _config(name, spec.modes[0])
    for k in [k for k in c.attack if k not in RUN_KEYS]:
        del c.attack[k]
    got = spec.bind(c.attack)
    want = spec.settings()
    for f in type(got).__dataclass_fields__.values():
        if f.name != "labels":
            assert getattr(got, f.name) == getattr(want, f.name), f.name
