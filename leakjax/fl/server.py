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

from leakjax.fl import rounds
from leakjax.fl.client import Client, ClientHParams, param_delta, with_delta
from leakjax.fl.override import ClientOverride
from leakjax.progress import Progress
from leakjax.types import ConfigError


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
        x = rounds.normalize_images(x8, mean, std)
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
            logits, _ = model.apply(variables, rounds.normalize_images(xb, mean, std), train=False)
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


def _check_inputs(settings: FLSettings, train, m, attack_rounds, attack_clients, override):
    """`simulate`'s own checks, for direct library use (`leakjax.config.validate` and
    `leakjax.experiment.prepare` check the same before anything is written)."""
    num_clients = int(train.n.shape[0])
    n = np.asarray(train.n)
    if override is not None:
        if not 0 <= int(override.client_id) < num_clients:
            raise ConfigError(
                f"client_override.client_id={override.client_id} is not a client id "
                f"(0..{num_clients - 1})"
            )
        n = np.delete(n, int(override.client_id))  # its data do not enter the batch check
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
    bad_rounds = [r for r in attack_rounds if not 0 <= r < settings.rounds]
    if bad_rounds:
        raise ConfigError(f"attack.rounds {bad_rounds} outside [0, fl.rounds={settings.rounds})")
    if isinstance(attack_clients, int) and attack_clients > m:
        raise ConfigError(
            f"attack.clients={attack_clients} exceeds the {m} clients selected per round"
        )


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


def _federation(
    model, train, settings, m, mean, std, mesh, defense, attack_rounds, attack_clients, override
) -> rounds.Federation:
    """What `simulate`'s rounds share: the jitted round program, the host data, the layout
    of a round's ``m`` clients in chunks (a multiple of the devices), the attack plan."""
    ndev = 1 if mesh is None else mesh.devices.size
    chunk = math.ceil(resolve_client_chunk(settings.client_chunk, m) / ndev) * ndev
    return rounds.Federation(
        train_round=make_train_round(model, settings, mean, std, mesh=mesh, defense=defense),
        data=(np.asarray(train.x), np.asarray(train.y), np.asarray(train.n)),
        selected=m,
        layout=(math.ceil(m / chunk), chunk),
        group=defense.secure_agg_clients if defense else 1,
        attack_rounds=frozenset(int(r) for r in attack_rounds),
        attack_clients=attack_clients,
        mean=mean,
        std=std,
        mesh=mesh,
        defense=defense,
        override=override,
    )


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
        random; -1: all of them, drawing nothing), or an explicit list of client ids (those
        not selected that round are skipped).
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
    m = settings.num_selected(num_clients)
    _check_inputs(settings, train, m, attack_rounds, attack_clients, client_override)
    check_secure_agg(defense, m)
    init_key, run_key = jax.random.split(key)
    if variables is None:
        variables = model.init(init_key)
    rng = np.random.default_rng(seed)
    fed = _federation(
        model, train, settings, m, mean, std, mesh, defense, attack_rounds, attack_clients,
        client_override,
    )  # fmt: skip
    evaluate = _make_evaluate(
        model, mean, std, settings.eval_batch, local_test, test_images, test_labels
    )
    history = {"round": [0], "lr": [None], "train_loss": [None], "selected": [[]]}
    rounds.record(history, evaluate(variables), 0)
    if client_override is not None:
        rounds.record(history, client_override.after_round(0, variables, variables), 0)
    observations, truths = [], []
    prog = Progress("fedavg", settings.rounds, unit="round", enabled=progress)
    prog.note(
        f"{num_clients} clients, {m} per round in chunks of {fed.layout[1]}; compiling "
        "(the first round includes it)"
    )
    for r in range(settings.rounds):
        hp = settings.hparams(r)
        out = rounds.run_round(fed, variables, r, hp, rng, jax.random.fold_in(run_key, r))
        observations += out.observations
        truths += out.truths
        if client_override is not None:
            point = client_override.after_round(r + 1, variables, out.variables)
            rounds.record(history, point, r + 1)
        variables = out.variables
        ev = evaluate(variables)
        stats = {"round": r + 1, "lr": hp.lr, "train_loss": out.loss}
        rounds.record(history, {**stats, "selected": out.selected.tolist(), **ev}, r + 1)
        prog.update(r + 1, loss=out.loss, **{k: float(v) for k, v in ev.items()})
    return SimResult(variables=variables, history=history, observations=observations, truths=truths)
