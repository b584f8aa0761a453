"""What an attacker sees (Observation) and what it is scored against (GroundTruth).

The FedAvg server (`leakjax.fl.server`) produces observations; `leakjax.attacks` consume them
(attacks build on `leakjax.fl`, never the other way round). `gradient_observation` and
`fedavg_observation` give the server's view of one client outside a simulation, through the
same `leakjax.fl.Client` as the simulator.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import struct

from leakjax.fl.client import Client, ClientHParams, gradient, param_delta

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
      round: FL round of the observation (-1 outside a simulation); a leaf, so
        observations of different rounds/clients stack into one trial batch.
      client_id: which client (-1 outside a simulation).
      defense: the public `leakjax.defenses.Pipeline` the update went through (None: none,
        or an attack that ignores it); adaptive attacks simulate its deterministic part.
      group_sizes: under secure aggregation, the sample counts of the aggregated clients (the
        update is their sample-weighted mean; the truth their images, in this order).
    """

    variables: Any
    update: Any
    variables_after: Any = None
    hp: ClientHParams = ClientHParams()
    mode: str = struct.field(pytree_node=False, default="gradient")
    num_samples: int = struct.field(pytree_node=False, default=1)
    round: Any = -1
    client_id: Any = -1
    defense: Any = struct.field(pytree_node=False, default=None)
    group_sizes: tuple = struct.field(pytree_node=False, default=())


@struct.dataclass
class GroundTruth:
    """The client's private data, used only for scoring (and for ``labels: oracle``).

    images are normalized float32 [n, H, W, C]; labels int32 [n]; owners [n] the client id
    of each image (an aggregate of several clients under secure aggregation) or None.
    """

    images: Any
    labels: Any
    owners: Any = None

    @property
    def num(self) -> int:
        return int(np.shape(self.labels)[0])


def to_host(tree):
    """Device arrays -> numpy (for saving and for passing between programs)."""
    return jax.tree.map(np.asarray, tree)


def stack(observations):
    """Stack observations (same model, mode, sample count) along a new leading trial axis."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *observations)


def gradient_observation(
    model, variables, images, labels, *, train: bool = False, defense=None, key=None
) -> Observation:
    """The server's view when a client shares one gradient of its batch (FedSGD / Figs 5-17).

    Args:
      model: a `leakjax.models.Model`.
      variables: the model's variables.
      images: normalized float [B, H, W, C]; labels: int [B].
      train: BatchNorm in training mode (batch statistics) instead of running averages.
      defense: a `leakjax.defenses.Pipeline` applied to the gradient (`leakjax.fl.Client`'s
        gradient: its step-level defenses compute it, e.g. DP-SGD's per-example clipping and
        noise with BatchNorm in training mode, its update-level ones transform it).
        ``key``: their noise.
    """
    images = jax.numpy.asarray(images)
    labels = jax.numpy.asarray(labels)
    n = int(images.shape[0])
    hp = ClientHParams(lr=1.0, momentum=0.0, weight_decay=0.0, epochs=1, batch_size=n)
    if defense:
        client = Client(model, hp, defense)
        g = jax.jit(client.gradient)(variables, images, labels, key)
    else:
        g = jax.jit(lambda v, x, y: gradient(model.apply, v, x, y, None, train=train))(
            variables, images, labels
        )
    return Observation(
        variables=to_host(variables), update=to_host(g), hp=hp, mode="gradient", num_samples=n
    )


def fedavg_observation(
    model, variables, images, labels, hp: ClientHParams, key=None, *, defense=None
) -> Observation:
    """The server's view of one client's FedAvg update on ``images`` (outside a simulation).

    The same `leakjax.fl.Client` as the simulator's: local training (shuffled with ``key``, or
    in order if None), then ``defense`` (a `leakjax.defenses.Pipeline`; its noise from
    ``key``). Observation-level defenses (secure aggregation) are the simulator's.
    """
    images = jax.numpy.asarray(images)
    labels = jax.numpy.asarray(labels)
    client = Client(model, hp, defense)
    after = jax.jit(lambda v, x, y, k: client.update(v, x, y, None, k))(
        variables, images, labels, key
    )
    before = to_host(variables)
    after = to_host(after)
    return Observation(
        variables=before,
        update=to_host(param_delta(before, after)),
        variables_after=after,
        hp=hp,
        mode="fedavg",
        num_samples=int(images.shape[0]),
        defense=defense or None,
    )
