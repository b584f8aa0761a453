"""Noisy inputs: every local training image plus Gaussian noise of std ``noise_std`` (in the
normalized input space), drawn once per round, before local training; no privacy accounting.

The worked example of a defense at the ``'input'`` insertion point (BUILD_NOTES, "A defense
at a new insertion point"): this file and one line in `leakjax/defenses/__init__.py`. An
adaptive attacker simulates it without noise (its ``key`` is None).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from leakjax.defenses.base import Defense
from leakjax.settings import setting


@dataclasses.dataclass(frozen=True)
class InputNoise(Defense):
    name = "input_noise"
    stage = "input"
    paper = "baseline (input perturbation)"
    summary = "Gaussian noise on each local training image, once per round (no accounting)"

    noise_std: float = setting(0.1, low=0.0, help="noise std in normalized input units")

    def on_input(self, x, y, mask, key):
        if key is None or self.noise_std == 0:
            return x, y
        noise = self.noise_std * jax.random.normal(key, x.shape, x.dtype)
        return x + jnp.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)) != 0, noise, 0), y
