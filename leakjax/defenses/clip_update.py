"""Update clipping, the client part of DP-FedAvg (McMahan et al., "Learning Differentially
Private Recurrent Language Models", ICLR 2018, arXiv 1710.06963): the client's update
``before - after`` is scaled to L2 norm at most ``clip``."""

from __future__ import annotations

import dataclasses

from leakjax.defenses.base import Defense, clip_tree
from leakjax.settings import setting


@dataclasses.dataclass(frozen=True)
class ClipUpdate(Defense):
    name = "clip_update"
    stage = "update"
    paper = "McMahan et al. 2018, arXiv 1710.06963"
    summary = "scale the client's update to L2 norm <= clip"

    clip: float = setting(1.0, low=0.0, low_open=True, help="update L2 clip norm")

    def on_update(self, delta, key, ctx):
        return clip_tree(delta, self.clip)
