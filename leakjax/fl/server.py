"""FedAvg server: client sampling, vmapped local training, weighted aggregation, evaluation.

One round: the server samples ``round(K * client_fraction)`` clients, each trains
locally as a `leakjax.fl.client.Client` (vmapped over a chunk of clients,
chunks scanned so memory stays bounded for 100s of clients), and the new global
model is the average of the clients' variables weighted by their sample counts
(BatchNorm statistics included, as the reference averages the whole state dict).
At the attacked rounds the server keeps, for the attacked clients, exactly what it
sees: an `Observation`.

The client axis can be split across devices: pass a 1-D `jax.sharding.Mesh` with
axis name ``'clients'`` (see `leakjax.fl.sharding`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leakjax.fl import observation as obs_lib
from leakjax.fl.client import Client, ClientHParams, param_delta, with_delta
from leakjax.fl.override import ClientOverride
from leakjax.progress import Progress
from leakjax.types import ConfigError, NumericalError


@dataclasses.dataclass(frozen=True)
class FLSettings:
    """FedAvg settings (REFERENCE.md §4; the paper's section IV)."""

    rounds: int = 10
    client_fraction: float = 1.0
    epochs: int = 1
    batch_size: int = 10
    lr: float = 0.1
    lr_decay: float = 0.95
    momentum: float = 0.0
    weight_decay: float = 0.0
    client_chunk: int = 0  # clients trained at once (vmap; 0: auto, `resolve_client_chunk`)
    eval_batch: int = 500

    def hparams(self, round_idx: int) -> ClientHParams:
        """The local-training hyperparameters of round ``round_idx`` (lr decayed per round)."""
        return ClientHParams(
            lr=float(self.lr * self.lr_decay**round_idx),
            momentum=float(self.momentum),
            weight_decay=float(self.weight_decay),
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
        )

    def num_selected(self, num_clients: int) -> int:
        return max(1, int(round(num_clients * self.client_fraction)))


@dataclasses.dataclass
class SimResult:
    variables: Any  # final global variables
    history: dict  # lists per evaluation point (round 0 = initial model)
    observations: list  # [Observation] at the attacked rounds/clients
    truths: list  # [GroundTruth], aligned with observations


def _normalize(x_u8, mean, std):
    """uint8 images -> normalized float32, materialized once: without the barrier XLA fuses
    the conversion into every local step's minibatch gather and redoes it (10% of a cnn step
    on CPU, benchmarks/fl_round.py)."""
    return jax.lax.optimization_barrier((x_u8.astype(jnp.float32) / 255.0 - mean) / std)


def weighted_average(stacked, weights):
    """sum_k w_k * tree_k for a tree with a leading client axis; ``weights`` sum to 1."""
    return jax.tree.map(lambda a: jnp.tensordot(weights.astype(a.dtype), a, axes=1), stacked)


def resolve_client_chunk(client_chunk: int, num_clients: int) -> int:
    """Clients trained at once (vmapped); the chunks are scanned.

    ``client_chunk`` 0 means auto: 1 on CPU (a scan over clients), 10 elsewhere. On XLA's CPU
    backend a vmapped convolution with per-client weights becomes a grouped convolution that
    runs slower than the clients one after another (cnn, CIFAR shapes: 0.41 s against
    0.19 s per local step for 2 clients; digits quickstart shapes: 5.5 ms against 1.5 ms;
    BUILD_NOTES "FedAvg round"); on a GPU the batched clients fill the device.
    """
    if client_chunk == 0:
        client_chunk = 1 if jax.default_backend() == "cpu" else 10
    return max(1, min(int(client_chunk), int(num_clients)))


def make_train_round(model, settings: FLSettings, mean, std, mesh=None, defense=None):
    """Build the jitted function that runs one FedAvg round on a chunked client batch.

    ``defense``: a `leakjax.defenses.Pipeline` (None or empty: plain FedAvg). Its step-level
    defenses act inside every local step (`client_step`'s ``grad_fn``), its update-level ones
    on each client's ``before - after``, its server-level ones on the round's mean update
    (with ``server_key``).

    Returns ``train_round(global_vars, x, y, n, keys, lr, att_idx, server_key=None)`` where x
    is uint8 [chunks, chunk, n_max, H, W, C], y [chunks, chunk, n_max], n [chunks, chunk]
    (n = 0 marks a padding client), keys [chunks, chunk] and att_idx [a] are flat
    indices of the clients to return. It returns (new_global, attacked_variables
    [a, ...], mean_train_loss).
    """
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    momentum, wd = float(settings.momentum), float(settings.weight_decay)
    epochs, bs = int(settings.epochs), int(settings.batch_size)

    on_server = bool(defense) and defense.acts_on_server

    def one_client(global_vars, x8, y, n, key, lr):
        hp = ClientHParams(lr=lr, momentum=momentum, weight_decay=wd, epochs=epochs, batch_size=bs)
        mask = jnp.arange(x8.shape[0]) < n
        x = _normalize(x8, mean, std)
        return Client(model, hp, defense).update(global_vars, x, y, mask, key, return_loss=True)

    def train_round(global_vars, x, y, n, keys, lr, att_idx, server_key=None):
        chunk = x.shape[1]
        total = jnp.maximum(jnp.sum(n), 1).astype(jnp.float32)
        zero = jax.tree.map(jnp.zeros_like, global_vars)
        att0 = jax.tree.map(
            lambda a: jnp.zeros((att_idx.shape[0],) + a.shape, a.dtype), global_vars
        )

        def body(carry, inp):
            acc, att, loss_acc = carry
            ci, xc, yc, nc, kc = inp
            if mesh is not None:
                spec = NamedSharding(mesh, P("clients"))
                xc, yc, nc, kc = (
                    jax.lax.with_sharding_constraint(a, spec) for a in (xc, yc, nc, kc)
                )
            if chunk == 1:  # no vmap: a vmapped conv with per-client weights is a grouped
                # conv, 30% slower on CPU even for one client (benchmarks/fl_round.py)
                vs, losses = one_client(global_vars, xc[0], yc[0], nc[0], kc[0], lr)
                vs, losses = jax.tree.map(lambda a: a[None], (vs, losses))
            else:
                vs, losses = jax.vmap(one_client, in_axes=(None, 0, 0, 0, 0, None))(
                    global_vars, xc, yc, nc, kc, lr
                )
            w = nc.astype(jnp.float32) / total
            acc = jax.tree.map(jnp.add, acc, weighted_average(vs, w))
            loss_acc = loss_acc + jnp.sum(w * losses)
            in_chunk = (att_idx // chunk) == ci
            pos = att_idx % chunk
            att = jax.tree.map(
                lambda a, v: jnp.where(in_chunk.reshape((-1,) + (1,) * (a.ndim - 1)), v[pos], a),
                att,
                vs,
            )
            return (acc, att, loss_acc), None

        idx = jnp.arange(x.shape[0])
        (acc, att, loss), _ = jax.lax.scan(body, (zero, att0, 0.0), (idx, x, y, n, keys))
        if on_server:
            max_w = jnp.max(n).astype(jnp.float32) / total
            mean_delta = param_delta(global_vars, acc)
            noisy = defense.on_server(mean_delta, server_key, max_w)
            acc = with_delta(global_vars, acc, mean_delta, noisy)
        return acc, att, loss

    return jax.jit(train_round)


def make_accuracy(model, mean, std, batch: int = 500):
    """Jitted ``accuracy(variables, images_u8, labels, valid) -> (correct, count)``."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)

    @jax.jit
    def counts(variables, images, labels, valid):
        n = images.shape[0]
        nb = math.ceil(n / batch)
        pad = nb * batch - n
        images = jnp.pad(images, ((0, pad),) + ((0, 0),) * (images.ndim - 1))
        labels = jnp.pad(labels, (0, pad))
        valid = jnp.pad(valid, (0, pad))

        def one(args):
            xb, yb, vb = args
            logits, _ = model.apply(variables, _normalize(xb, mean, std), train=False)
            return jnp.sum((jnp.argmax(logits, -1) == yb) & vb)

        shape = lambda a: a.reshape((nb, batch) + a.shape[1:])
        correct = jax.lax.map(one, (shape(images), shape(labels), shape(valid)))
        return jnp.sum(correct), jnp.sum(valid)

    return counts


def check_secure_agg(defense, selected: int) -> None:
    """Secure aggregation's groups fit in a round's ``selected`` clients (run by
    `leakjax.experiment.prepare` before anything is written, and by `simulate`)."""
    group = defense.secure_agg_clients if defense else 1
    if group > selected:
        raise ConfigError(
            f"defense.secure_agg_clients={group} exceeds the {selected} clients selected per "
            "round (fl.num_clients x fl.client_fraction)"
        )


def _check(settings: FLSettings, num_clients: int, n: np.ndarray) -> None:
    if settings.rounds < 1:
        raise ConfigError(f"fl.rounds must be >= 1, got {settings.rounds}")
    if not 0 < settings.client_fraction <= 1:
        raise ConfigError(f"fl.client_fraction must be in (0, 1], got {settings.client_fraction}")
    if settings.epochs < 1:
        raise ConfigError(f"fl.local_epochs must be >= 1, got {settings.epochs}")
    if settings.lr <= 0:
        raise ConfigError(f"fl.lr must be > 0, got {settings.lr}")
    if settings.batch_size < 1:
        raise ConfigError(f"fl.batch_size must be >= 1, got {settings.batch_size}")
    if settings.batch_size > int(n.min()):
        raise ConfigError(
            f"fl.batch_size={settings.batch_size} is larger than the smallest client's "
            f"training data ({int(n.min())} samples)"
        )


def _override_round(override: ClientOverride, r, variables, honest_mean, n_honest, hp, train, key):
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


def _record(history: dict, stats: dict, point: int) -> None:
    """Append ``stats`` at evaluation point ``point`` (keys first seen later: None before)."""
    for k, v in stats.items():
        history.setdefault(k, [None] * point).append(v)


def _make_evaluate(model, mean, std, batch, local_test, test_images, test_labels):
    """``evaluate(variables) -> {'local_test_acc', 'test_acc'}`` (those with data)."""
    accuracy = make_accuracy(model, mean, std, batch)
    lt_valid = np.arange(local_test.x.shape[1])[None, :] < np.asarray(local_test.n)[:, None]
    lt_x = np.asarray(local_test.x).reshape((-1,) + local_test.x.shape[2:])
    lt_y = np.asarray(local_test.y).reshape(-1)
    lt_valid = lt_valid.reshape(-1)

    def evaluate(v):
        out = {}
        if lt_valid.any():
            c, t = accuracy(v, lt_x, lt_y, lt_valid)
            out["local_test_acc"] = float(c) / max(float(t), 1.0)
        if test_images is not None:
            c, t = accuracy(v, test_images, test_labels, np.ones(len(test_labels), bool))
            out["test_acc"] = float(c) / max(float(t), 1.0)
        return out

    return evaluate


def _attacked_groups(rng, sel, attack_clients, group: int) -> list[list[int]]:
    """The round's attacked clients among the selected ``sel``: ``attack_clients`` drawn at
    random (an int), or the listed ids that were selected (None: a round not attacked);
    under secure aggregation each with ``group - 1`` other selected clients (its aggregate)."""
    if attack_clients is None:
        att_ids = np.zeros((0,), int)
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


def _train_selected(
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
        xs, ys, ns, ks = (jax.device_put(a, spec) for a in (xs, ys, ns, ks))
    server_key = jax.random.fold_in(round_key, num_clients)  # client keys use ids < N
    new_vars, att_vars, loss = train_round(
        variables, xs, ys, ns, ks, jnp.float32(hp.lr), jnp.asarray(att_pos), server_key
    )
    return new_vars, members, att_vars, float(loss), int(n_sel.sum())


def _observe(variables, members, att_vars, groups, data, hp, r, defense, mean, std):
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
                    [np.asarray(_normalize(x_all[c, : n_all[c]], mean, std)) for c in g]
                ),
                labels=np.concatenate([np.asarray(y_all[c, : n_all[c]]) for c in g]),
                owners=None if len(g) == 1 else np.repeat(g, [int(n_all[c]) for c in g]),
            )
        )
    return observations, truths


def simulate(
    model,
    train,
    local_test,
    test_images: np.ndarray | None,
    test_labels: np.ndarray | None,
    mean,
    std,
    settings: FLSettings,
    key,
    *,
    attack_rounds: Sequence[int] = (),
    attack_clients: int | Sequence[int] = 1,
    variables=None,
    mesh=None,
    progress: bool = True,
    seed: int = 0,
    defense=None,
    client_override: ClientOverride | None = None,
) -> SimResult:
    """Run FedAvg and collect the server's observations at the attacked rounds.

    Args:
      model: a `leakjax.models.Model`.
      train: `leakjax.data.ClientArrays` of the clients' local training data (uint8).
      local_test: `ClientArrays` of the clients' local test splits (may have n = 0 rows).
      test_images, test_labels: the data set's test split (uint8) or None.
      mean, std: normalization constants [C].
      settings: FLSettings.
      key: PRNG key (model init, shuffles).
      attack_rounds: rounds (0-based) at which the server records observations.
      attack_clients: how many of the round's selected clients to observe (chosen at
        random), or an explicit list of client ids (those not selected that round are
        skipped).
      variables: initial global variables (default: ``model.init``).
      mesh: optional 1-D Mesh with axis 'clients' to split clients across devices.
      progress: print one line per round.
      seed: host-side seed for client sampling.
      defense: a `leakjax.defenses.Pipeline` every client and the server apply (None: plain
        FedAvg). Under secure aggregation (K clients per aggregate) the observation of an
        attacked client is the sample-weighted mean update of its group of K (itself and
        K - 1 others of the round, at random) and its truth the union of their images.
      client_override: a malicious client (a `leakjax.fl.override.ClientOverride`: the
        contract is there), or None.

    Returns:
      SimResult.
    """
    num_clients = int(train.n.shape[0])
    n_checked = np.asarray(train.n)
    if client_override is not None:
        if not 0 <= int(client_override.client_id) < num_clients:
            raise ConfigError(
                f"client_override.client_id={client_override.client_id} is not a client id "
                f"(0..{num_clients - 1})"
            )
        n_checked = np.delete(n_checked, int(client_override.client_id))
    _check(settings, num_clients, n_checked)
    bad_rounds = [r for r in attack_rounds if not 0 <= r < settings.rounds]
    if bad_rounds:
        raise ConfigError(f"attack.rounds {bad_rounds} outside [0, fl.rounds={settings.rounds})")
    m = settings.num_selected(num_clients)
    if isinstance(attack_clients, int) and attack_clients > m:
        raise ConfigError(
            f"attack.clients={attack_clients} exceeds the {m} clients selected per round"
        )

    init_key, run_key = jax.random.split(key)
    if variables is None:
        variables = model.init(init_key)
    rng = np.random.default_rng(seed)

    ndev = 1 if mesh is None else mesh.devices.size
    chunk = resolve_client_chunk(settings.client_chunk, m)
    chunk = math.ceil(chunk / ndev) * ndev
    num_chunks = math.ceil(m / chunk)
    train_round = make_train_round(model, settings, mean, std, mesh=mesh, defense=defense)
    check_secure_agg(defense, m)
    group = defense.secure_agg_clients if defense else 1
    evaluate = _make_evaluate(
        model, mean, std, settings.eval_batch, local_test, test_images, test_labels
    )
    data = (np.asarray(train.x), np.asarray(train.y), np.asarray(train.n))

    history = {"round": [0], "lr": [None], "train_loss": [None], "selected": [[]]}
    for k, val in evaluate(variables).items():
        history.setdefault(k, []).append(val)
    if client_override is not None:
        _record(history, client_override.after_round(0, variables, variables), 0)
    observations, truths = [], []
    prog = Progress("fedavg", settings.rounds, unit="round", enabled=progress)
    prog.note(
        f"{num_clients} clients, {m} per round in chunks of {chunk}; compiling "
        "(the first round includes it)"
    )
    attack_set = set(int(r) for r in attack_rounds)
    for r in range(settings.rounds):
        sel = np.sort(rng.choice(num_clients, size=m, replace=False))
        groups = _attacked_groups(rng, sel, attack_clients if r in attack_set else None, group)
        round_key = jax.random.fold_in(run_key, r)
        hp = settings.hparams(r)
        new_vars, members, att_vars, loss, n_honest = _train_selected(
            train_round, variables, data, sel, groups, (num_chunks, chunk), round_key, hp,
            mesh, client_override, num_clients,
        )  # fmt: skip
        if not np.isfinite(loss):
            raise NumericalError(
                f"FedAvg diverged: the mean training loss is {loss} at round {r} (lower fl.lr?)"
            )
        obs, tru = _observe(variables, members, att_vars, groups, data, hp, r, defense, mean, std)
        observations += obs
        truths += tru
        if client_override is not None and int(client_override.client_id) in sel:
            c = int(client_override.client_id)
            new_vars = _override_round(
                client_override, r, variables, new_vars, n_honest, hp, data,
                jax.random.fold_in(round_key, c),
            )  # fmt: skip
        if client_override is not None:
            _record(history, client_override.after_round(r + 1, variables, new_vars), r + 1)
        variables = new_vars
        ev = evaluate(variables)
        _record(
            history,
            {"round": r + 1, "lr": hp.lr, "train_loss": loss, "selected": sel.tolist(), **ev},
            r + 1,
        )
        prog.update(r + 1, loss=loss, **{k: float(v) for k, v in ev.items()})
    return SimResult(variables=variables, history=history, observations=observations, truths=truths)
