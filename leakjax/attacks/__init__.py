"""Privacy attacks on federated learning: registry, run loop, losses."""

from leakjax.attacks import inverting_gradients, losses
from leakjax.attacks.base import Attack, Reconstruction, RunResult, run
from leakjax.attacks.registry import AttackSpec, get, names, register

register(inverting_gradients.SPEC)

__all__ = [
    "Attack",
    "AttackSpec",
    "Reconstruction",
    "RunResult",
    "get",
    "inverting_gradients",
    "losses",
    "names",
    "register",
    "run",
]
