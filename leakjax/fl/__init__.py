"""Federated averaging: the one local-training loop and the simulator."""

from leakjax.fl.client import (
    ClientHParams,
    batch_schedule,
    client_update,
    cross_entropy,
    gradient,
    param_delta,
)
from leakjax.fl.server import FLSettings, SimResult, simulate, weighted_average
from leakjax.fl.sharding import client_mesh

__all__ = [
    "ClientHParams",
    "FLSettings",
    "SimResult",
    "batch_schedule",
    "client_mesh",
    "client_update",
    "cross_entropy",
    "gradient",
    "param_delta",
    "simulate",
    "weighted_average",
]
