"""What an attacker sees (Observation) and what it is scored against (GroundTruth).

Kept in its own module so that `leakjax.fl` (which produces observations) and
`leakjax.attacks` (which consume them) do not import each other.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import struct

from leakjax.fl.client import ClientHParams

MODES = ("gradient", "fedavg")


@struct.dataclass
class Observation:
    """Exactly what an honest-but-curious server legitimately sees of one client.

    Attributes:
      variables: the global variables the client received ({'params', maybe 'batch_stats'}).
      update: a params-shaped pytree. ``gradient`` mode: the gradient of the client's
        mean loss on its batch. ``fedavg`` mode: ``params_before - params_after``.
      variables_after: fedavg mode only: the client's full returned variables
        (including updated BatchNorm statistics); None in gradient mode.
      hp: the client's public local-training hyperparameters (lr of that round,
        momentum, weight decay, epochs, batch size).
      mode: 'gradient' or 'fedavg'.
      num_samples: the client's number of local training samples (FedAvg's weight n_k).
      round: FL round of the observation (-1 outside a simulation).
      client_id: which client (-1 outside a simulation).
    """

    variables: Any
    update: Any
    variables_after: Any = None
    hp: ClientHParams = ClientHParams()
    mode: str = struct.field(pytree_node=False, default="gradient")
    num_samples: int = struct.field(pytree_node=False, default=1)
    round: int = struct.field(pytree_node=False, default=-1)
    client_id: int = struct.field(pytree_node=False, default=-1)


@struct.dataclass
class GroundTruth:
    """The client's private data, used only for scoring (and for ``labels: oracle``).

    images are normalized float32 [n, H, W, C]; labels int32 [n].
    """

    images: Any
    labels: Any

    @property
    def num(self) -> int:
        return int(np.shape(self.labels)[0])


def to_host(tree):
    """Device arrays -> numpy (for saving and for passing between programs)."""
    return jax.tree.map(np.asarray, tree)
