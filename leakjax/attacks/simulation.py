"""The update a client would send for given data: what every matching attack compares.

``gradient`` mode: `leakjax.fl.gradient` at the observed weights. ``fedavg`` mode:
`leakjax.fl.client_update` (the library's one local-training loop) from the observed
global weights with the client's public hyperparameters, as ``params_before -
params_after``. ``simulation='reference'`` reproduces the PyTorch reference's
simplification (``epochs`` full-batch steps, no momentum, no weight decay;
REFERENCE.md §5 item 5) for comparisons.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from leakjax.attacks import lowrank
from leakjax.fl import factored as fl_factored
from leakjax.fl.client import Client, ClientHParams, gradient

SIMULATIONS = ("exact", "reference")
FACTORED_MODES = fl_factored.MODES  # attack.factored


def simulation_hparams(hp: ClientHParams, simulation: str, num_rows: int, *, full_batch=True):
    """The local-training hyperparameters an attacker simulates the client with.

    'exact': the client's own. 'reference': the PyTorch reference's simplification, no
    momentum and no weight decay, and with ``full_batch`` one step per epoch over all
    ``num_rows`` rows (its IG / DLG / GRNN / GGL) or else the client's batch size (its DLF).
    """
    if simulation == "exact":
        return hp
    if simulation != "reference":
        raise ValueError(f"simulation must be one of {SIMULATIONS}, got {simulation!r}")
    batch = int(num_rows) if full_batch else hp.batch_size
    return hp.replace(momentum=0.0, weight_decay=0.0, batch_size=batch)


def simulated_update(
    model,
    obs,
    x,
    y,
    simulation: str = "exact",
    remat: bool = False,
    key=None,
    factored: str = "off",
):
    """Params-shaped update for data ``x`` (normalized) with int or soft labels ``y``.

    Args:
      model: `leakjax.models.Model`.
      obs: the `Observation` (weights, mode, public hyperparameters).
      x: [N, H, W, C]; y: [N] int or [N, C] label distributions.
      simulation: 'exact' or 'reference'.
      remat: rematerialize the simulated local steps (memory O(sqrt(steps)): `fl.client_update`).
      key: shuffle key for the simulated client (None: fixed order, the usual choice
        of an attacker who does not know the client's permutation).
      factored: 'auto', 'on' or 'off' (`leakjax.fl.factored.MODES`). 'gradient' mode, unless
        'off': keep big dense-kernel gradients as their rank-B factors
        (`leakjax.attacks.lowrank`); the result then only feeds `leakjax.attacks.losses`.
        'fedavg' mode: simulate the client with its big dense kernels factored through the
        local steps (`leakjax.fl.factored.simulated_delta`; 'auto': above its size threshold),
        a dense simulation's steps unrolled (`leakjax.fl.factored.unrolls`); 'off': `Client.delta`.
    """
    defense = obs.defense  # set only for an adaptive attack on a defended client
    if obs.mode == "gradient" and defense:
        return Client(model, obs.hp, defense, observed=obs.update).gradient(obs.variables, x, y)
    if obs.mode == "gradient":
        if factored != "off":
            return lowrank.factored_gradient(model.apply, obs.variables, x, y, None, train=False)
        return gradient(model.apply, obs.variables, x, y, None, train=False)

    def client(xs):
        hp = simulation_hparams(obs.hp, simulation, xs.shape[0])
        return Client(model, hp, defense, observed=obs.update if defense else None)

    def one_client(xs, ys):
        return fl_factored.simulated_delta(
            client(xs), obs.variables, xs, ys, key, remat=remat, mode=factored
        )

    sizes = tuple(obs.group_sizes or ()) if defense else ()
    if len(sizes) > 1 and sum(sizes) == x.shape[0]:
        # secure aggregation: the aggregate of K clients' defended updates, each from its own
        # rows of the union batch (clients of one size: one vmap; else one simulation per size)
        return _group_mean(one_client, x, y, sizes)
    return one_client(x, y)


def _group_mean(one_client, x, y, sizes):
    """sum_k (n_k / n) * one_client(rows of client k) for consecutive row groups ``sizes``."""
    total = sum(sizes)
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    acc = None
    for n in sorted(set(sizes)):  # clients of one size: one vmapped simulation
        mine = [s for s, m in zip(starts, sizes, strict=True) if m == n]
        xs = jnp.stack([x[s : s + n] for s in mine])
        ys = jnp.stack([y[s : s + n] for s in mine])
        part = jax.tree.map(lambda d, w=n / total: w * jnp.sum(d, 0), jax.vmap(one_client)(xs, ys))
        acc = part if acc is None else jax.tree.map(jnp.add, acc, part)
    return acc
