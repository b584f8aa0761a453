"""Splitting a labelled data set among federated clients, and padding clients to one array.

Three ways to split (REFERENCE.md section 2, the reference's ``partition.py``):

- ``'iid'``: a random permutation cut into near-equal parts.
- ``'dirichlet'``: for every class, Dirichlet(beta) proportions over clients, where
  clients already holding at least N / num_clients samples get no more (capacity cap);
  everything is redrawn until every client holds at least ``min_size`` samples
  (label-skewed non-IID data as in Hsu et al. 2019, https://arxiv.org/abs/1909.06335).
- ``'fixed_classes'``: every client holds ``classes_per_client`` classes, and the samples
  of a class are shared evenly among the clients holding it.

Each client's samples are then shuffled and split into a local training part and a
local test part (the last ``int(n * test_fraction)``), as the reference's 80/20 split.
Everything is a deterministic function of ``seed``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from leakjax.types import ConfigError, DataError

METHODS = ("iid", "dirichlet", "fixed_classes")
MAX_DIRICHLET_TRIES = 1000


@dataclasses.dataclass(frozen=True, eq=False)
class Partition:
    """Indices of every client's local data.

    Attributes:
        train_idx: per client, sorted int64 indices into the data set (local training data).
        test_idx: per client, sorted int64 indices of its local test data, disjoint from
            every client's training indices.
    """

    train_idx: tuple[np.ndarray, ...]
    test_idx: tuple[np.ndarray, ...]

    @property
    def num_clients(self) -> int:
        """Number of clients."""
        return len(self.train_idx)

    @property
    def train_sizes(self) -> np.ndarray:
        """int32 ``[K]``: number of local training samples per client."""
        return np.array([len(i) for i in self.train_idx], np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class ClientArrays:
    """Clients' data stacked along a leading client axis, zero padded to one length.

    Attributes:
        x: uint8 ``[K, max_n, H, W, C]``; rows at and beyond ``n[k]`` are zero.
        y: int32 ``[K, max_n]``; zero beyond ``n[k]``.
        n: int32 ``[K]`` number of valid rows per client.
    """

    x: np.ndarray
    y: np.ndarray
    n: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """bool ``[K, max_n]``: True on valid rows."""
        return np.arange(self.y.shape[1])[None, :] < self.n[:, None]


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"labels to partition must be a non-empty 1-D integer array, got dtype "
            f"{labels.dtype} and shape {labels.shape}"
        )
    return labels


def _iid(n: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    return list(np.array_split(rng.permutation(n), num_clients))


def _dirichlet(
    labels: np.ndarray, num_clients: int, beta: float, min_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    n = labels.size
    cap = n / num_clients
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(MAX_DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        sizes = np.zeros(num_clients, np.int64)
        for members in by_class:
            members = rng.permutation(members)
            share = rng.dirichlet(np.full(num_clients, beta))
            open_ = sizes < cap  # at least one client is open while samples remain
            share = np.where(open_, share, 0.0)
            total = share.sum()
            # With a tiny beta every open client's share can underflow to zero.
            share = share / total if total > 0 else open_ / open_.sum()
            cuts = (np.cumsum(share) * members.size).astype(np.int64)[:-1]
            for k, piece in enumerate(np.split(members, cuts)):
                parts[k].append(piece)
                sizes[k] += piece.size
        if sizes.min() >= min_size:
            return [np.concatenate(p) for p in parts]
    raise ConfigError(
        f"dirichlet partition found no split with every one of {num_clients} clients holding "
        f">= data.min_size={min_size} samples in {MAX_DIRICHLET_TRIES} draws "
        f"(data.beta={beta}); lower data.min_size or raise data.beta"
    )


def _fixed_classes(
    labels: np.ndarray, num_clients: int, classes_per_client: int, rng: np.random.Generator
) -> list[np.ndarray]:
    classes = np.unique(labels)
    order = classes[rng.permutation(classes.size)]
    # Client k takes the next `classes_per_client` entries of a cyclic shuffled class list:
    # distinct classes per client, every class used, holders per class differ by <= 1.
    slots = np.arange(num_clients * classes_per_client).reshape(num_clients, classes_per_client)
    held = order[slots % classes.size]
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in classes:
        holders = np.flatnonzero((held == c).any(axis=1))
        members = rng.permutation(np.flatnonzero(labels == c))
        for k, piece in zip(holders, np.array_split(members, holders.size), strict=True):
            parts[k].append(piece)
    return [np.concatenate(p) for p in parts]


def partition(
    labels: np.ndarray,
    num_clients: int,
    method: str = "iid",
    *,
    beta: float = 0.5,
    classes_per_client: int = 2,
    test_fraction: float = 0.2,
    min_size: int = 15,
    seed: int = 0,
) -> Partition:
    """Splits a data set among clients, then each client's share into local train/test.

    Args:
        labels: int ``[N]`` labels of the data set to split.
        num_clients: number of clients K, ``1 <= K <= N``.
        method: ``'iid'``, ``'dirichlet'`` or ``'fixed_classes'``.
        beta: Dirichlet concentration (``'dirichlet'`` only), > 0; smaller is more skewed.
        classes_per_client: classes per client (``'fixed_classes'`` only), between
            ``ceil(num_classes / K)`` (so that every class is used) and ``num_classes``.
        test_fraction: fraction of each client's samples kept as its local test set,
            in [0, 1); the last ``int(n * test_fraction)`` after shuffling.
        min_size: least number of samples (train + test) per client (``'dirichlet'`` only).
        seed: seed of ``np.random.default_rng``; the partition is a function of it.

    Returns:
        A :class:`Partition` with sorted index arrays per client.

    Raises:
        ConfigError: a setting is out of range (the message names it).
        DataError: ``labels`` is not a non-empty 1-D integer array.
    """
    labels = _check_labels(labels)
    n = labels.size
    if isinstance(num_clients, bool) or not isinstance(num_clients, int | np.integer):
        raise ConfigError(f"fl.num_clients={num_clients!r} must be an integer in [1, {n}]")
    if not 1 <= num_clients <= n:
        raise ConfigError(f"fl.num_clients={num_clients} must be in [1, {n}] (data set size)")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction={test_fraction} must be in [0, 1)")
    rng = np.random.default_rng(seed)
    if method == "iid":
        shares = _iid(n, num_clients, rng)
    elif method == "dirichlet":
        if not beta > 0 or not math.isfinite(beta):
            raise ConfigError(f"data.beta={beta} must be a finite number > 0")
        if min_size < 0 or min_size * num_clients > n:
            raise ConfigError(
                f"data.min_size={min_size} must be in [0, {n // num_clients}] for {n} samples "
                f"and fl.num_clients={num_clients}"
            )
        shares = _dirichlet(labels, num_clients, float(beta), int(min_size), rng)
    elif method == "fixed_classes":
        num_classes = np.unique(labels).size
        lowest = -(-num_classes // num_clients)
        if not lowest <= classes_per_client <= num_classes:
            raise ConfigError(
                f"data.classes_per_client={classes_per_client} must be in [{lowest}, "
                f"{num_classes}] for {num_classes} classes and fl.num_clients={num_clients}"
            )
        shares = _fixed_classes(labels, num_clients, int(classes_per_client), rng)
    else:
        raise ConfigError(f"data.partition={method!r} is unknown; allowed: {', '.join(METHODS)}")

    train_idx, test_idx = [], []
    for share in shares:
        share = rng.permutation(share)
        n_test = int(share.size * test_fraction)
        train_idx.append(np.sort(share[: share.size - n_test]).astype(np.int64))
        test_idx.append(np.sort(share[share.size - n_test :]).astype(np.int64))
    return Partition(train_idx=tuple(train_idx), test_idx=tuple(test_idx))


def gather_padded(
    images: np.ndarray,
    labels: np.ndarray,
    idx_list: Sequence[np.ndarray],
    pad_to: int | None = None,
) -> ClientArrays:
    """Stacks every client's samples into zero-padded arrays with a leading client axis.

    Args:
        images: ``[N, H, W, C]`` images (any dtype; uint8 in the library).
        labels: int ``[N]`` labels.
        idx_list: per client, indices into ``images`` / ``labels``.
        pad_to: length of the padded axis; ``None`` -> the largest client. Fixing it
            keeps array shapes (and compiled functions) the same across rounds.

    Returns:
        :class:`ClientArrays` with ``x`` ``[K, max_n, H, W, C]``, ``y`` ``[K, max_n]``
        and counts ``n`` ``[K]``.

    Raises:
        ConfigError: ``pad_to`` is smaller than the largest client.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    counts = np.array([len(i) for i in idx_list], np.int32)
    longest = int(counts.max()) if counts.size else 0
    max_n = longest if pad_to is None else int(pad_to)
    if max_n < longest:
        raise ConfigError(f"pad_to={pad_to} is smaller than the largest client ({longest} samples)")
    x = np.zeros((len(idx_list), max_n, *images.shape[1:]), images.dtype)
    y = np.zeros((len(idx_list), max_n), np.int32)
    for k, idx in enumerate(idx_list):
        idx = np.asarray(idx, np.int64)
        x[k, : idx.size] = images[idx]
        y[k, : idx.size] = labels[idx]
    return ClientArrays(x=x, y=y, n=counts)


def partition_from_config(labels: np.ndarray, config) -> Partition:
    """`partition` with an experiment config's settings: ``fl.num_clients``, ``data.partition``,
    ``data.beta``, ``data.classes_per_client``, ``data.test_fraction``, ``data.min_size`` and
    ``seed`` (`leakjax.config.base_config`)."""
    d = config.data
    return partition(
        labels,
        int(config.fl.num_clients),
        d.partition,
        beta=float(d.beta),
        classes_per_client=int(d.classes_per_client),
        test_fraction=float(d.test_fraction),
        min_size=int(d.min_size),
        seed=int(config.seed),
    )
