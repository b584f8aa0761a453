"""Federated averaging: the one local-training loop and the simulator."""

from leakjax.fl.client import (
    Client,
    ClientDefense,
    ClientHParams,
    ClientState,
    UpdateContext,
    batch_gradient,
    client_final,
    client_init,
    client_step,
    client_update,
    cross_entropy,
    gradient,
    param_delta,
    with_delta,
)
from leakjax.fl.override import ClientOverride
from leakjax.fl.schedule import batch_schedule, copies_schedule, local_steps, momentum_weights
from leakjax.fl.server import (
    FLSettings,
    SimResult,
    check_secure_agg,
    simulate,
    weighted_average,
)
from leakjax.fl.sharding import client_mesh

__all__ = [
    "Client",
    "ClientDefense",
    "ClientHParams",
    "ClientOverride",
    "ClientState",
    "FLSettings",
    "SimResult",
    "batch_gradient",
    "batch_schedule",
    "check_secure_agg",
    "client_final",
    "client_init",
    "client_mesh",
    "client_step",
    "client_update",
    "copies_schedule",
    "local_steps",
    "momentum_weights",
    "cross_entropy",
    "gradient",
    "param_delta",
    "simulate",
    "UpdateContext",
    "weighted_average",
    "with_delta",
]
