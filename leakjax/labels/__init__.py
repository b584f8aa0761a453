"""Label inference from gradients and FedAvg updates.

`infer(obs, model, method, key=...)` returns int labels [N] (sorted by class when
the method only recovers counts); `METHODS` lists the registered methods. The
experiment runs the configured method before an attack and hands the labels to it.
"""

from __future__ import annotations

import numpy as np

from leakjax.labels.idlg import idlg_label
from leakjax.types import ConfigError


def _idlg(obs, model, key=None):
    if obs.num_samples != 1:
        raise ConfigError(
            f"attack.labels='idlg' recovers one label but the client has {obs.num_samples} samples"
        )
    return np.asarray(idlg_label(obs.update)).reshape(1)


_METHODS = {"idlg": _idlg}
METHODS = tuple(_METHODS)


def infer(obs, model, method: str, *, key=None) -> np.ndarray:
    """Labels [obs.num_samples] inferred by ``method`` from what the server sees."""
    if method not in _METHODS:
        raise ConfigError(f"label method {method!r} is not one of {METHODS}")
    return np.asarray(_METHODS[method](obs, model, key=key), np.int32)


__all__ = ["METHODS", "idlg_label", "infer"]
