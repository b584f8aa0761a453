"""Label inference from gradients and FedAvg updates.

`infer(obs, model, method, key=...)` returns int labels [N] (sorted by class when the
method only recovers counts); `infer_counts` returns the per-class counts [C] (summing
to N); `METHODS` lists the registered methods. The experiment runs the configured
method on the host before an attack and hands the labels to it as fixed labels.

Methods (each reads the last layer, named 'head', of the observed update):

- 'idlg': the sign rule of iDLG (Zhao et al. 2020, https://arxiv.org/abs/2001.02610);
  one sample only, exact when the head's inputs are non-negative.
- 'geng': counts from the averaged last-layer gradient with the softmax expectation
  estimated at the global weights (Geng et al. 2021, https://arxiv.org/abs/2110.09074).
- 'dimitrov': counts of a FedAvg update from statistics at weights interpolated along
  the client's trajectory (Dimitrov et al. 2022, https://arxiv.org/abs/2206.12395),
  without the reference's bugs.
- 'rlu': least squares over class-conditional statistics along a simulated local
  training (after Chen & Vikalo 2024, https://arxiv.org/abs/2405.00955); best with
  auxiliary labeled data ``aux=(images, labels)``.

Real-valued counts are rounded to integers summing to N by the largest-remainder rule
(`round_counts`).
"""

from __future__ import annotations

import numpy as np

from leakjax.labels.counts import counts_to_labels, round_counts
from leakjax.labels.dimitrov import dimitrov_counts
from leakjax.labels.geng import geng_counts
from leakjax.labels.idlg import idlg_label
from leakjax.labels.rlu import rlu_counts
from leakjax.types import ConfigError


def _idlg(obs, model, key=None, aux=None):
    if obs.num_samples != 1:
        raise ConfigError(
            f"attack.labels='idlg' recovers one label but the client has {obs.num_samples} samples"
        )
    counts = np.zeros((int(model.num_classes),), np.float64)
    counts[int(np.asarray(idlg_label(obs.update)))] = 1.0
    return counts


def _geng(obs, model, key=None, aux=None):
    return geng_counts(obs, model, key=key, aux=aux)


def _dimitrov(obs, model, key=None, aux=None):
    return dimitrov_counts(obs, model, key=key, aux=aux)


def _rlu(obs, model, key=None, aux=None):
    return rlu_counts(obs, model, key=key, aux=aux)


# name -> f(obs, model, key, aux) -> real-valued counts [C]
_METHODS = {"idlg": _idlg, "geng": _geng, "dimitrov": _dimitrov, "rlu": _rlu}
METHODS = tuple(_METHODS)


def infer_counts(obs, model, method: str, *, key=None, aux=None) -> np.ndarray:
    """Per-class label counts [C] (int64, summing to ``obs.num_samples``).

    Args:
      obs: the `Observation` (what the server sees).
      model: the `leakjax.models.Model` the client trains.
      method: one of `METHODS`.
      key: PRNG key for the methods' random inputs / simulations (default key 0).
      aux: optional auxiliary data of the attacker: normalized images [M, H, W, C] or an
        (images, labels) pair (labels are used by 'rlu' only).
    """
    if method not in _METHODS:
        raise ConfigError(f"label method {method!r} is not one of {METHODS}")
    raw = _METHODS[method](obs, model, key=key, aux=aux)
    return round_counts(raw, int(obs.num_samples))


def infer(obs, model, method: str, *, key=None, aux=None) -> np.ndarray:
    """Labels [obs.num_samples] (int32) inferred by ``method``; sorted by class."""
    return counts_to_labels(infer_counts(obs, model, method, key=key, aux=aux))


__all__ = [
    "METHODS",
    "counts_to_labels",
    "dimitrov_counts",
    "geng_counts",
    "idlg_label",
    "infer",
    "infer_counts",
    "rlu_counts",
    "round_counts",
]
