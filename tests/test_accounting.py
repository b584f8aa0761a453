"""leakjax.defenses.accounting: epsilon for DP-SGD and DP-FedAvg via dp_accounting."""

from __future__ import annotations

import json
import math

import dp_accounting
import pytest
from dp_accounting import pld, rdp
from hypothesis import given, settings
from hypothesis import strategies as st

from leakjax.defenses import accounting
from leakjax.types import ConfigError


def _direct(q: float, z: float, steps: int, delta: float, name: str) -> float:
    """Epsilon computed straight from dp_accounting, without the module under test."""
    step = dp_accounting.GaussianDpEvent(z)
    if q < 1:
        step = dp_accounting.PoissonSampledDpEvent(q, step)
    acc = rdp.RdpAccountant() if name == "rdp" else pld.PLDAccountant()
    acc.compose(dp_accounting.SelfComposedDpEvent(step, steps))
    return acc.get_epsilon(delta)


@pytest.mark.parametrize("name", ["rdp", "pld"])
@pytest.mark.parametrize(
    "z, batch, n, steps, delta",
    [(1.1, 64, 6000, 400, 1e-5), (2.0, 10, 100, 50, 1e-6), (1.0, 32, 32, 7, 1e-3)],
)
def test_matches_direct_dp_accounting(name, z, batch, n, steps, delta):
    got = accounting.dp_sgd(z, batch, n, steps, delta, accountant=name)
    want = _direct(batch / n, z, steps, delta, name)
    assert math.isfinite(want) and want > 0
    assert got.epsilon == pytest.approx(want, rel=1e-9)
    assert (got.q, got.steps, got.noise_multiplier, got.delta) == (batch / n, steps, z, delta)
    assert (got.accountant, got.level, got.sampling) == (name, "example", "shuffle")


def test_published_jax_privacy_example():
    # jax-privacy docstring example: z=3, 512 steps, q=0.1, delta=1e-6 -> epsilon ~ 3.77 (PLD).
    p = accounting.dp_sgd(3.0, 100, 1000, 512, 1e-6, accountant="pld")
    r = accounting.dp_sgd(3.0, 100, 1000, 512, 1e-6, accountant="rdp")
    assert p.epsilon == pytest.approx(3.77, abs=0.05)
    assert r.epsilon >= p.epsilon - 1e-6  # RDP is the looser bound


def test_q_one_is_the_unsampled_gaussian():
    for name in ("rdp", "pld"):
        got = accounting.dp_sgd(3.0, 50, 50, 10, 1e-6, accountant=name).epsilon
        acc = rdp.RdpAccountant() if name == "rdp" else pld.PLDAccountant()
        acc.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(3.0), 10))
        assert got == pytest.approx(acc.get_epsilon(1e-6), rel=1e-9)
        # dp_accounting's PoissonSampled(q=1) agrees with the plain event up to discretization
        acc = rdp.RdpAccountant() if name == "rdp" else pld.PLDAccountant()
        sampled = dp_accounting.PoissonSampledDpEvent(1.0, dp_accounting.GaussianDpEvent(3.0))
        acc.compose(dp_accounting.SelfComposedDpEvent(sampled, 10))
        assert got == pytest.approx(acc.get_epsilon(1e-6), rel=1e-6)


@pytest.mark.parametrize("name", ["rdp", "pld"])
def test_zero_noise_is_infinite_and_serializes(name):
    a = accounting.dp_sgd(0.0, 10, 100, 5, 1e-5, accountant=name)
    assert math.isinf(a.epsilon)
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    assert d["epsilon"] is None and d["epsilon_infinite"] is True
    assert d["sampling"] == "shuffle" and d["noise_multiplier"] == 0.0


def test_to_dict_recomputes():
    a = accounting.dp_fedavg(1.3, 20, 500, 30, 1e-5, accountant="rdp", sampling="poisson")
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    assert d["epsilon_infinite"] is False and d["sampling"] == "poisson" and d["level"] == "user"
    again = _direct(d["q"], d["noise_multiplier"], d["steps"], d["delta"], d["accountant"])
    assert d["epsilon"] == pytest.approx(again, rel=1e-12)
    assert d["dp_accounting_version"] == "0.6.0"


def test_zero_steps_is_zero_epsilon():
    for name in ("rdp", "pld"):
        assert accounting.dp_sgd(1.0, 10, 100, 0, 1e-5, accountant=name).epsilon == 0.0


@pytest.mark.parametrize("name", ["rdp", "pld"])
def test_dp_fedavg_is_dp_sgd_over_clients(name):
    f = accounting.dp_fedavg(1.0, 10, 1000, 100, 1e-5, accountant=name)
    s = accounting.dp_sgd(1.0, 10, 1000, 100, 1e-5, accountant=name)
    assert f.epsilon == s.epsilon and f.q == 0.01 and f.steps == 100 and f.level == "user"


@settings(max_examples=10, deadline=None)
@given(
    z=st.floats(0.7, 4.0),
    q=st.floats(0.01, 0.5),
    steps=st.integers(1, 300),
    factor=st.floats(1.2, 3.0),
)
def test_monotone_rdp(z, q, steps, factor):
    n = 10_000
    b = max(1, round(q * n))

    def eps(z=z, b=b, steps=steps):
        return accounting.dp_sgd(z, b, n, steps, 1e-5, accountant="rdp").epsilon

    base = eps()
    assert eps(z=z * factor) < base  # more noise
    assert eps(steps=math.ceil(steps * factor) + 1) > base  # more steps
    assert eps(b=min(n, math.ceil(b * factor) + 1)) > base  # larger q


def test_monotone_pld():
    base = accounting.dp_sgd(1.5, 50, 1000, 100, 1e-5, accountant="pld").epsilon
    assert accounting.dp_sgd(2.5, 50, 1000, 100, 1e-5, accountant="pld").epsilon < base
    assert accounting.dp_sgd(1.5, 50, 1000, 300, 1e-5, accountant="pld").epsilon > base
    assert accounting.dp_sgd(1.5, 150, 1000, 100, 1e-5, accountant="pld").epsilon > base


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(noise_multiplier=float("nan")), "defense.noise_multiplier"),
        (dict(noise_multiplier=float("inf")), "defense.noise_multiplier"),
        (dict(noise_multiplier=-0.5), "defense.noise_multiplier"),
        (dict(noise_multiplier="1.0"), "defense.noise_multiplier"),
        (dict(delta=0.0), "defense.delta"),
        (dict(delta=1.0), "defense.delta"),
        (dict(delta=2.0), "defense.delta"),
        (dict(delta=float("nan")), "defense.delta"),
        (dict(delta=-1e-5), "defense.delta"),
        (dict(accountant="gdp"), "defense.accountant"),
        (dict(accountant="RDP"), "defense.accountant"),
        (dict(sampling="uniform"), "defense.sampling"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(batch_size=200), "batch_size"),
        (dict(steps=-1), "steps"),
        (dict(num_samples=True), "num_samples"),
    ],
)
def test_bad_inputs_raise_config_error(kwargs, key):
    args = dict(noise_multiplier=1.0, batch_size=10, num_samples=100, steps=5, delta=1e-5)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        accounting.dp_sgd(**{**args, **kwargs})


def test_messages_name_the_key_and_value():
    with pytest.raises(ConfigError, match=r"^defense\.delta must be in \(0, 1\), got 2\.0$"):
        accounting.dp_fedavg(1.0, 10, 100, 5, 2.0)
    with pytest.raises(ConfigError, match=r"^defense\.noise_multiplier must be >= 0 and finite"):
        accounting.dp_fedavg(float("nan"), 10, 100, 5, 1e-5)
    with pytest.raises(ConfigError, match="clients_per_round"):
        accounting.dp_fedavg(1.0, 101, 100, 5, 1e-5)
    ev = dp_accounting.GaussianDpEvent(1.0)
    with pytest.raises(ConfigError, match=r"defense\.accountant"):
        accounting.epsilon(ev, 1e-5, "moments")
    with pytest.raises(ConfigError, match=r"defense\.delta"):
        accounting.epsilon(ev, 1.5, "pld")
