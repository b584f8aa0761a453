"""iDLG: Improved Deep Leakage from Gradients (Zhao, Mopuri, Bilen 2020,
https://arxiv.org/abs/2001.02610).

The label is read off the last layer's update first (`leakjax.labels.idlg_label`: the
column of the head's kernel update with the smallest sum; exact for one sample when the
head's inputs are non-negative), then only the image is optimized by L2 update matching
with L-BFGS, exactly as DLG (`leakjax.attacks.dlg`, whose module docstring describes the
optimizer and the fedavg mode) but with hard labels.

Labels given to `make` (the truth under ``attack.labels='oracle'``, or a
`leakjax.labels` method's output) take precedence under ``labels='auto'``. For more than
one image without given labels, the B classes with the smallest column sums are used
(the extension of the sign rule by Yin et al. 2021, arXiv:2104.07586; exact only when
the batch's labels are distinct). The reference's iDLG infers one label whatever the
batch size (REFERENCE.md §5 item 5).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from leakjax.attacks import dlg
from leakjax.attacks.base import Attack
from leakjax.attacks.registry import AttackSpec, register, resolve_labels
from leakjax.labels.idlg import head_update, idlg_label
from leakjax.types import ConfigError

LABEL_MODES = ("auto", "idlg", "fixed")


@dataclasses.dataclass(frozen=True)
class IDLGConfig(dlg.DLGConfig):
    """DLGConfig with iDLG's label modes: 'auto' (labels given to `make`, else the sign
    rule), 'idlg' (the sign rule even when labels are given) or 'fixed'."""


def sign_rule_labels(update, num: int) -> jax.Array:
    """int32 [num]: iDLG's label for one sample, the ``num`` most negative head-kernel
    column sums (in increasing order) for more."""
    if num == 1:
        return jnp.reshape(idlg_label(update), (1,))
    head = head_update(update)
    score = jnp.sum(head["kernel"], axis=0) if "kernel" in head else head["bias"]
    return jnp.argsort(score)[:num].astype(jnp.int32)


def make(
    obs,
    model,
    cfg: IDLGConfig,
    *,
    steps: int,
    box: tuple[jax.Array, jax.Array],
    labels=None,
    hparams: dict | None = None,
) -> Attack:
    """iDLG against one observation (arguments as `leakjax.attacks.dlg.make`)."""
    del steps
    dlg.check_config(cfg, obs.mode, LABEL_MODES)
    num = int(cfg.num_images or obs.num_samples)
    if num > int(model.num_classes) and (labels is None or cfg.labels == "idlg"):
        raise ConfigError(
            f"attack.labels: the sign rule gives at most {model.num_classes} distinct labels, "
            f"not {num}"
        )
    mode, fixed = resolve_labels(cfg.labels, labels, otherwise="idlg")
    if mode == "idlg":
        fixed = sign_rule_labels(obs.update, num)
    return dlg.matching_attack(obs, model, cfg, fixed, box=box, hparams=hparams)


def check_config(cfg: IDLGConfig, mode: str) -> None:
    dlg.check_config(cfg, mode, LABEL_MODES)


SPEC = register(
    AttackSpec(
        name="idlg",
        modes=("gradient", "fedavg"),
        make=make,
        settings=IDLGConfig,
        label_modes=("auto", "idlg"),
        check=check_config,
        paper=(
            "Zhao, Mopuri, Bilen 2020, iDLG: Improved Deep Leakage from Gradients, arXiv:2001.02610"
        ),
        sequential_on_cpu=dlg.uses_zoom_linesearch,
        hyperparams=dlg.HYPERPARAMS,
    )
)
