"""Privacy attacks on federated learning: registry, run loop, losses.

Every attack module registers itself (``SPEC = register(AttackSpec(...))`` at its bottom);
importing it here is all it takes: adding an attack is a new module plus one line in the
import block below (BUILD_NOTES, "Adding an attack").
"""

# One line per attack module (each registers its SPEC when imported).
from leakjax.attacks import (  # noqa: F401
    cpa,
    cpa_fi,
    dlf,
    dlg,
    dmgan,
    ggl,
    grnn,
    idlg,
    inverting_gradients,
    rgap,
    rtf,
    sme,
    spear,
)

# isort: split
from leakjax.attacks import losses
from leakjax.attacks.base import Attack, Reconstruction, RunResult
from leakjax.attacks.registry import AttackSpec, ClientAttackSpec, get, listing, names, register
from leakjax.attacks.runner import resolve_vmap_chunk, run

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
    "listing",
    "losses",
    "names",
    "register",
    "resolve_vmap_chunk",
    "run",
]
