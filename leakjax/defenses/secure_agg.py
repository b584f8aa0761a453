"""Secure aggregation (Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
Machine Learning", CCS 2017, arXiv 1611.04482): the server learns only the aggregate of a
group of ``secure_agg_clients`` clients. The observation of an attacked client is then the
sample-weighted mean of the updates of its group (itself and K - 1 other clients sampled
in the same round); the reconstruction is scored against the union of the group's images,
and the metrics say how many images of each member were recovered."""

from __future__ import annotations

import dataclasses

from leakjax.defenses.base import Defense
from leakjax.settings import setting


@dataclasses.dataclass(frozen=True)
class SecureAgg(Defense):
    name = "secure_agg"
    stage = "observation"
    paper = "Bonawitz et al. 2017, arXiv 1611.04482"
    summary = "the server sees only the mean update of groups of secure_agg_clients clients"

    secure_agg_clients: int = setting(2, low=1, help="K: clients per aggregate")
