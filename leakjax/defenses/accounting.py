"""Privacy accounting for DP-SGD (example level) and DP-FedAvg (user level).

All numbers come from Google's ``dp_accounting`` library; this module only builds the
``DpEvent`` and picks the accountant.

* DP-SGD for one client (Abadi et al. 2016, arXiv 1607.00133): each local step releases a
  clipped gradient sum plus Gaussian noise of std ``noise_multiplier * clip``. Event:
  ``SelfComposed(PoissonSampled(q, Gaussian(z)), steps)`` with ``q = batch_size / num_samples``
  (``num_samples`` = n_k, the client's data set size) and ``steps`` = the client's local SGD
  steps summed over every round it took part in. The unit of privacy is one training example.
* DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent Language
  Models", arXiv 1710.06963): each round the server adds Gaussian noise to the sum of clipped
  client updates. Event: ``SelfComposed(PoissonSampled(q, Gaussian(z)), rounds)`` with
  ``q = clients_per_round / num_clients``. The unit of privacy is one client's whole data set.

With ``q == 1`` the event is the un-sampled ``SelfComposed(Gaussian(z), steps)``; with
``steps == 0`` it is ``NoOpDpEvent`` (epsilon 0); with ``noise_multiplier == 0`` epsilon is
``inf`` (no privacy). Neighbouring relation: add or remove one example / one client (the
``dp_accounting`` default). Accountants: ``'rdp'`` (``RdpAccountant``, default orders; an
upper bound, usually looser) and ``'pld'`` (``PLDAccountant``, default discretization 1e-4;
tighter; seconds to minutes for noise multipliers well below 1).

What the guarantee means (``sampling``): the reported epsilon is always the bound for
Poisson subsampling (each example / client included independently with probability ``q``).

* ``'poisson'``: the training loop really Poisson-samples, and the bound is a proven
  (epsilon, delta)-DP guarantee.
* ``'shuffle'``: the training loop uses fixed-size batches, as leakjax's simulator does:
  clients shuffle their data (each example used exactly once per epoch) and the server picks
  a fixed-size uniformly random subset of clients each round. Reporting the Poisson bound is
  the standard practice (Abadi et al. 2016 and most DP-SGD implementations) but it is *not*
  a proven guarantee for these fixed-size schemes: Chua et al. 2024, "How Private are DP-SGD
  Implementations?" (arXiv 2403.17673) show that the true epsilon of shuffling can be
  substantially larger.
"""

from __future__ import annotations

import dataclasses
import logging as pylogging
import math
import numbers
from importlib import metadata
from typing import Any

import dp_accounting
from absl import logging as absl_logging
from dp_accounting import pld, rdp

from leakjax.types import ConfigError

ACCOUNTANTS = ("rdp", "pld")
SAMPLINGS = ("poisson", "shuffle")


@dataclasses.dataclass(frozen=True)
class Accounting:
    """One (epsilon, delta) result and the parameters that produced it.

    ``epsilon`` is ``float('inf')`` when there is no privacy (``noise_multiplier == 0``).
    ``level`` is ``'example'`` (DP-SGD) or ``'user'`` (DP-FedAvg); ``steps`` counts SGD
    steps (example level) or rounds (user level).
    """

    epsilon: float
    delta: float
    accountant: str
    level: str
    q: float
    steps: int
    noise_multiplier: float
    sampling: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of all fields.

        An infinite ``epsilon`` is written as ``None`` (JSON ``null``); ``epsilon_infinite``
        is ``True`` exactly then. ``dp_accounting_version`` names the library version, so
        the value can be recomputed from ``q``, ``steps``, ``noise_multiplier`` and ``delta``.
        """
        d = dataclasses.asdict(self)
        infinite = math.isinf(self.epsilon)
        d["epsilon"] = None if infinite else float(self.epsilon)
        d["epsilon_infinite"] = infinite
        d["dp_accounting_version"] = metadata.version("dp-accounting")
        return d


def _real(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return float(value)


def _check_noise(value) -> float:
    z = _real("defense.noise_multiplier", value)
    if not (math.isfinite(z) and z >= 0):
        raise ConfigError(f"defense.noise_multiplier must be >= 0 and finite, got {value!r}")
    return z


def _check_delta(value) -> float:
    delta = _real("defense.delta", value)
    if not 0 < delta < 1:  # False for nan
        raise ConfigError(f"defense.delta must be in (0, 1), got {value!r}")
    return delta


def _check_choice(key: str, value, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")
    return value


def _check_int(key: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")
    return int(value)


def _event(q: float, noise_multiplier: float, steps: int) -> dp_accounting.DpEvent:
    """``steps`` compositions of the (Poisson-subsampled unless q == 1) Gaussian mechanism."""
    if steps == 0:
        return dp_accounting.NoOpDpEvent()
    step: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(noise_multiplier)
    if q < 1:
        step = dp_accounting.PoissonSampledDpEvent(q, step)
    return dp_accounting.SelfComposedDpEvent(step, steps)


def epsilon(event: dp_accounting.DpEvent, delta: float, accountant: str) -> float:
    """Epsilon of ``event`` at ``delta`` with the ``'rdp'`` or ``'pld'`` accountant."""
    delta = _check_delta(delta)
    accountant = _check_choice("defense.accountant", accountant, ACCOUNTANTS)
    acc = rdp.RdpAccountant() if accountant == "rdp" else pld.PLDAccountant()
    if not acc.supports(event):
        raise ConfigError(f"defense.accountant={accountant!r} does not support the event {event}")
    # RDP logs a warning per fractional order it drops (a non-convergent series): the bound
    # stays valid without those orders, so the warnings are filtered to keep output readable.
    logger = absl_logging.get_absl_logger()
    level = logger.level
    logger.setLevel(max(level, pylogging.ERROR))
    try:
        acc.compose(event)
        return float(acc.get_epsilon(delta))
    finally:
        logger.setLevel(level)


def _account(
    level: str, q: float, steps: int, noise_multiplier, delta, accountant, sampling
) -> Accounting:
    z = _check_noise(noise_multiplier)
    delta = _check_delta(delta)
    accountant = _check_choice("defense.accountant", accountant, ACCOUNTANTS)
    sampling = _check_choice("defense.sampling", sampling, SAMPLINGS)
    eps = epsilon(_event(q, z, steps), delta, accountant)
    return Accounting(eps, delta, accountant, level, q, steps, z, sampling)


def dp_sgd(
    noise_multiplier: float,
    batch_size: int,
    num_samples: int,
    steps: int,
    delta: float,
    accountant: str = "rdp",
    sampling: str = "shuffle",
) -> Accounting:
    """Example-level epsilon of one client's DP-SGD: q = batch_size / num_samples.

    ``steps`` is the client's total local SGD steps over all rounds it took part in.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    num_samples = _check_int("num_samples", num_samples, 1)
    steps = _check_int("steps", steps, 0)
    if batch_size > num_samples:
        raise ConfigError(f"batch_size={batch_size} exceeds num_samples={num_samples}")
    q = batch_size / num_samples
    return _account("example", q, steps, noise_multiplier, delta, accountant, sampling)


def dp_fedavg(
    noise_multiplier: float,
    clients_per_round: int,
    num_clients: int,
    rounds: int,
    delta: float,
    accountant: str = "rdp",
    sampling: str = "shuffle",
) -> Accounting:
    """User-level epsilon of DP-FedAvg: q = clients_per_round / num_clients, ``rounds`` steps."""
    m = _check_int("clients_per_round", clients_per_round, 1)
    n = _check_int("num_clients", num_clients, 1)
    rounds = _check_int("rounds", rounds, 0)
    if m > n:
        raise ConfigError(f"clients_per_round={m} exceeds num_clients={n}")
    return _account("user", m / n, rounds, noise_multiplier, delta, accountant, sampling)
