"""DP-FedAvg (McMahan et al., "Learning Differentially Private Recurrent Language Models",
ICLR 2018, arXiv 1710.06963): every client's update is clipped to L2 norm ``clip`` (S);
the server adds Gaussian noise to the weighted mean of the round's m updates with std
``noise_multiplier * clip * max_k w_k`` (the mean's sensitivity to one client; ``z S / m``
for equal weights). User-level (epsilon, delta) by `leakjax.defenses.accounting.dp_fedavg`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from leakjax.defenses import accounting
from leakjax.defenses.base import Defense, clip_tree, tree_noise
from leakjax.settings import setting


@dataclasses.dataclass(frozen=True)
class DPFedAvg(Defense):
    name = "dp_fedavg"
    stage = "server"
    paper = "McMahan et al. 2018, arXiv 1710.06963"
    summary = "clip each update to clip, Gaussian noise z*clip*max(w) on the round's mean"

    clip: float = setting(1.0, low=0.0, low_open=True, help="update L2 clip norm S")
    noise_multiplier: float = setting(1.0, low=0.0, help="noise std / (S max_k w_k)")
    delta: float = setting(1e-5, low=0.0, high=1.0, low_open=True, high_open=True)
    accountant: str = setting("rdp", choices=accounting.ACCOUNTANTS)

    def on_update(self, delta, key, ctx):
        return clip_tree(delta, self.clip)

    def on_server(self, mean_delta, key, max_weight):
        if key is None or self.noise_multiplier == 0:
            return mean_delta
        std = self.noise_multiplier * self.clip * max_weight
        return jax.tree.map(jnp.add, mean_delta, tree_noise(key, mean_delta, std))

    def accounting(self, run):
        return accounting.dp_fedavg(
            self.noise_multiplier,
            run.clients_per_round,
            run.num_clients,
            run.rounds,
            self.delta,
            self.accountant,
            sampling="shuffle",
        )
