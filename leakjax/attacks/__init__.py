"""Privacy attacks on federated learning: registry, run loop, losses."""

from leakjax.attacks import (
    cpa,
    dlf,
    dlg,
    dmgan,
    ggl,
    grnn,
    idlg,
    inverting_gradients,
    losses,
    rtf,
)
from leakjax.attacks.base import Attack, Reconstruction, RunResult
from leakjax.attacks.registry import AttackSpec, ClientAttackSpec, get, names, register
from leakjax.attacks.runner import resolve_vmap_chunk, run

register(inverting_gradients.SPEC)
register(dlg.SPEC)
register(idlg.SPEC)
register(dlf.SPEC)
register(grnn.SPEC)
register(rtf.SPEC)
register(cpa.SPEC)
register(cpa.SPEC_FI)
register(ggl.SPEC)
register(dmgan.SPEC)

__all__ = [
    "Attack",
    "AttackSpec",
    "ClientAttackSpec",
    "Reconstruction",
    "RunResult",
    "dlf",
    "get",
    "grnn",
    "inverting_gradients",
    "losses",
    "names",
    "register",
    "resolve_vmap_chunk",
    "run",
]
