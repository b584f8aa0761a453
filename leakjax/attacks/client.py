"""Client-side attacks (a `ClientAttackSpec`, e.g. DMGAN): what they are built from and what
they return. They write nothing; `leakjax.client_attack` (the runner) writes every file.

``spec.make(inputs, settings)`` builds a `ClientAttack` from a `ClientInputs` (explicit
values, filled by the runner from the prepared experiment) and the attack's bound settings.
Building is cheap and checks the data-dependent settings (one-line ConfigErrors): it is also
done by `leakjax.plan.dry_build` before anything is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from leakjax.fl.client import ClientHParams
from leakjax.fl.server import FLSettings


@dataclasses.dataclass(frozen=True, eq=False)
class ClientInputs:
    """What a client attack is built from."""

    dataset: str  # data.name (titles)
    num_classes: int
    image_shape: tuple[int, int, int]  # (H, W, C)
    model_name: str  # model.name: the federation's architecture
    conv_impl: str  # model.conv_impl
    train: Any  # `leakjax.data.ClientArrays`: the clients' uint8 training data
    test_images: np.ndarray  # the data set's test split (uint8), which no client holds
    test_labels: np.ndarray
    mean: np.ndarray  # normalization constants [C]
    std: np.ndarray
    fl: FLSettings


class CurvePlot(NamedTuple):
    """A figure the runner draws with `leakjax.figures.plot_curves`."""

    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]]
    xlabel: str
    ylabel: str
    title: str | None = None


class RoundRecord(NamedTuple):
    """One evaluation point of a client attack.

    ``stats``: JSON values appended to the FL history and to ``<attack>.json``; ``arrays``:
    saved as ``rounds/round_NNN.npz``; ``grid`` (images in [0, 1], or None) drawn as
    ``rounds/round_NNN.png`` titled ``title``."""

    stats: dict
    arrays: dict
    grid: np.ndarray | None = None
    title: str = ""


class ClientResult(NamedTuple):
    """A client attack's end: ``summary`` entries (merged into metrics.json's summary) and
    ``plots`` (``{file name: CurvePlot}`` in the workdir)."""

    summary: dict
    plots: dict


class ClientAttack(Protocol):
    """What ``ClientAttackSpec.make`` returns.

    ``model`` / ``train``: the federation's model and the clients' training data (they may
    differ from the experiment's, e.g. DMGAN's extra "fake" class and its attacker's data).
    ``setup(key, progress=...)``: its own preparation (e.g. training a judge). ``client_id``
    and ``update``: as `leakjax.fl.override.ClientOverride`'s; ``after_round`` as there but
    returning a `RoundRecord` (the runner records its ``stats``); ``finish(history)``: a
    `ClientResult` from the run's FL history."""

    client_id: int
    model: Any
    train: Any

    def setup(self, key, *, progress: bool = False) -> None: ...

    def update(
        self,
        round: int,
        global_vars: Any,
        hp: ClientHParams,
        x_u8,
        y,
        n: int,
        key,  # noqa: A002
    ) -> tuple[Any, float]: ...

    def after_round(self, point: int, global_before: Any, global_after: Any) -> RoundRecord: ...

    def finish(self, history: dict) -> ClientResult: ...
