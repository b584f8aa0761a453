"""One FedAvg round of `leakjax.fl.simulate`, in pieces: sample -> attacked groups -> train
the selected clients -> observe the attacked ones -> the malicious client's override.

`run_round` composes them for one round given the `Federation` (what stays fixed across a
simulation's rounds); `leakjax.fl.server.simulate` loops it and evaluates. Everything here is
host-side orchestration around the one jitted training program
(`leakjax.fl.server.make_train_round`); the clients themselves are `leakjax.fl.Client`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leakjax.distributed import to_global
from leakjax.fl import observation as obs_lib
from leakjax.fl.client import ClientHParams, param_delta
from leakjax.fl.override import ClientOverride
from leakjax.types import NumericalError


def normalize_images(x_u8, mean, std):
    """uint8 images -> normalized float32, materialized once: without the barrier XLA fuses
    the conversion into every local step's minibatch gather and redoes it (10% of a cnn step
    on CPU, benchmarks/fl_round.py)."""
    return jax.lax.optimization_barrier((x_u8.astype(jnp.float32) / 255.0 - mean) / std)


@dataclasses.dataclass(frozen=True)
class Federation:
    """What stays fixed across a simulation's rounds.

    Attributes:
      train_round: `make_train_round`'s jitted program.
      data: the clients' host arrays ``(x uint8 [K, n_max, ...], y [K, n_max], n [K])``.
      selected: clients sampled per round.
      layout: ``(chunks, chunk)``: how a round's clients are padded and chunked.
      group: clients per secure aggregate (1: none).
      attack_rounds: the rounds whose attacked clients the server records.
      attack_clients: how many of a round's clients to observe, or their ids.
      mean, std: normalization constants [C].
      mesh, defense: as `simulate`'s.
      override: the malicious client (`leakjax.fl.ClientOverride`) or None.
    """

    train_round: Callable
    data: tuple[np.ndarray, np.ndarray, np.ndarray]
    selected: int
    layout: tuple[int, int]
    group: int
    attack_rounds: frozenset
    attack_clients: int | Sequence[int]
    mean: Any
    std: Any
    mesh: Any = None
    defense: Any = None
    override: ClientOverride | None = None

    @property
    def num_clients(self) -> int:
        return int(self.data[2].shape[0])


@dataclasses.dataclass(frozen=True)
class RoundResult:
    variables: Any  # the new global variables
    loss: float  # the honest clients' mean training loss
    selected: np.ndarray  # the sampled client ids, sorted
    observations: list  # [Observation] of the attacked groups
    truths: list  # [GroundTruth], aligned


def run_round(fed: Federation, variables, r: int, hp: ClientHParams, rng, round_key):
    """Round ``r`` (0-based) from the global ``variables``: sample ``fed.selected`` clients
    with the host ``rng``, train them (keys ``fold_in(round_key, client id)``), record the
    attacked groups, then let the malicious client, if selected, join the mean."""
    sel = np.sort(rng.choice(fed.num_clients, size=fed.selected, replace=False))
    attacked = fed.attack_clients if r in fed.attack_rounds else None
    groups = attacked_groups(rng, sel, attacked, fed.group)
    new_vars, members, att_vars, loss, n_honest = train_selected(
        fed.train_round, variables, fed.data, sel, groups, fed.layout, round_key, hp,
        fed.mesh, fed.override, fed.num_clients,
    )  # fmt: skip
    if not np.isfinite(loss):
        raise NumericalError(
            f"FedAvg diverged: the mean training loss is {loss} at round {r} (lower fl.lr?)"
        )
    obs, tru = observe(
        variables, members, att_vars, groups, fed.data, hp, r, fed.defense, fed.mean, fed.std
    )
    if fed.override is not None and int(fed.override.client_id) in sel:
        c = int(fed.override.client_id)
        new_vars = override_round(
            fed.override, r, variables, new_vars, n_honest, hp, fed.data,
            jax.random.fold_in(round_key, c),
        )  # fmt: skip
    return RoundResult(new_vars, loss, sel, obs, tru)


def attacked_groups(rng, sel, attack_clients, group: int) -> list[list[int]]:
    """The round's attacked clients among the selected ``sel``: ``attack_clients`` drawn at
    random (an int; -1: all of ``sel``, drawing nothing from ``rng``, so the other draws are
    unchanged), or the listed ids that were selected (None: a round not attacked);
    under secure aggregation each with ``group - 1`` other selected clients (its aggregate)."""
    if attack_clients is None:
        att_ids = np.zeros((0,), int)
    elif isinstance(attack_clients, int) and attack_clients == -1:  # audit: no draw
        att_ids = np.asarray(sel, int)
    elif isinstance(attack_clients, int):
        att_ids = np.sort(rng.choice(sel, size=attack_clients, replace=False))
    else:
        att_ids = np.array([c for c in attack_clients if c in set(sel.tolist())], int)
    groups = [[int(c)] for c in att_ids]
    if group > 1:
        for g in groups:
            others = np.setdiff1d(sel, g)
            g.extend(int(c) for c in np.sort(rng.choice(others, group - 1, replace=False)))
    return groups


def train_selected(
    train_round, variables, data, sel, groups, layout, round_key, hp, mesh, override, num_clients
):
    """One round's local training of the selected clients (padded to ``layout = (chunks,
    chunk)`` with n = 0 clients; a malicious client's slot has n = 0 too, so the honest mean
    leaves it out). Returns (honest mean variables, attacked client ids, their variables,
    mean training loss, the honest clients' sample total)."""
    x_all, y_all, n_all = data
    m = sel.shape[0]
    pad = layout[0] * layout[1] - m
    sel_p = np.concatenate([sel, np.zeros(pad, sel.dtype)])
    n_sel = np.concatenate([n_all[sel], np.zeros(pad, n_all.dtype)])
    if override is not None and int(override.client_id) in sel:
        n_sel[np.searchsorted(sel, int(override.client_id))] = 0
    members = np.unique(np.array([c for g in groups for c in g], int))
    att_pos = np.searchsorted(sel, members).astype(np.int32)
    keys = jax.vmap(lambda c: jax.random.fold_in(round_key, c))(jnp.asarray(sel_p))

    def shape(a):
        return a.reshape(layout + a.shape[1:])

    xs, ys, ns, ks = shape(x_all[sel_p]), shape(y_all[sel_p]), shape(n_sel), shape(keys)
    if mesh is not None:
        spec = NamedSharding(mesh, P(None, "clients"))
        xs, ys, ns, ks = to_global((xs, ys, ns, ks), spec)
    server_key = jax.random.fold_in(round_key, num_clients)  # client keys use ids < N
    new_vars, att_vars, loss = train_round(
        variables, xs, ys, ns, ks, jnp.float32(hp.lr), jnp.asarray(att_pos), server_key
    )
    return new_vars, members, att_vars, float(loss), int(n_sel.sum())


def observe(variables, members, att_vars, groups, data, hp, r, defense, mean, std):
    """The server's observations and the truths of the round's attacked groups: a client's
    update, or under secure aggregation its group's sample-weighted mean update."""
    x_all, y_all, n_all = data
    before = obs_lib.to_host(variables)
    after_of = {
        int(c): obs_lib.to_host(jax.tree.map(lambda a, j=j: a[j], att_vars))
        for j, c in enumerate(members)
    }
    observations, truths = [], []
    for g in groups:
        w = np.array([n_all[c] for c in g], np.float64)
        w = w / w.sum()
        after = after_of[g[0]]
        if len(g) > 1:
            after = jax.tree.map(
                lambda *vs: np.tensordot(w, np.stack(vs), 1).astype(vs[0].dtype),
                *[after_of[c] for c in g],
            )
        observations.append(
            obs_lib.Observation(
                variables=before,
                update=obs_lib.to_host(param_delta(before, after)),
                variables_after=after,
                hp=hp,
                mode="fedavg",
                num_samples=int(sum(n_all[c] for c in g)),
                round=r,
                client_id=int(g[0]),
                defense=defense or None,
                group_sizes=tuple(int(n_all[c]) for c in g) if len(g) > 1 else (),
            )
        )
        truths.append(
            obs_lib.GroundTruth(
                images=np.concatenate(
                    [np.asarray(normalize_images(x_all[c, : n_all[c]], mean, std)) for c in g]
                ),
                labels=np.concatenate([np.asarray(y_all[c, : n_all[c]]) for c in g]),
                owners=None if len(g) == 1 else np.repeat(g, [int(n_all[c]) for c in g]),
            )
        )
    return observations, truths


def override_round(override: ClientOverride, r, variables, honest_mean, n_honest, hp, train, key):
    """The new global model of a round in which ``override``'s client is selected: its
    ``update`` (host-side) gives ``(variables_after, weight)`` and the server averages
    ``(n_h * honest_mean + weight * variables_after) / (n_h + weight)``, ``n_h`` the honest
    clients' sample total (the old global model when both are 0)."""
    c = int(override.client_id)
    x, y, n = train
    after, weight = override.update(r, variables, hp, x[c], y[c], int(n[c]), key)
    weight = float(weight)
    total = float(n_honest) + weight
    if total <= 0:
        return variables
    a, b = float(n_honest) / total, weight / total
    return jax.tree.map(lambda h, v: a * h + b * jnp.asarray(v, h.dtype), honest_mean, after)


def record(history: dict, stats: dict, point: int) -> None:
    """Append ``stats`` at evaluation point ``point`` (keys first seen later: None before)."""
    for k, v in stats.items():
        history.setdefault(k, [None] * point).append(v)
