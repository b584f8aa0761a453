"""Device meshes for splitting clients (or attack trials) across devices.

JAX 0.10's `jax.make_mesh` defaults to Explicit axes; leakjax builds its 1-D
meshes with `AxisType.Auto` so that jit + `NamedSharding` partitions the vmapped
client axis automatically (the successor of pmap-style data parallelism).
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType

from leakjax import distributed
from leakjax.types import ConfigError


def client_mesh(num_devices: int | None = None, axis: str = "clients") -> jax.sharding.Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (default: all)."""
    devices = distributed.devices()  # every process's (this one's in distributed.local)
    available = len(devices)
    n = available if num_devices in (None, 0) else int(num_devices)
    if not 1 <= n <= available:
        raise ConfigError(
            f"fl.num_devices / attack.num_devices={num_devices} but {available} device(s) "
            "are available"
        )
    return jax.make_mesh((n,), (axis,), axis_types=(AxisType.Auto,), devices=devices[:n])
