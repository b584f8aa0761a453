"""Multi-process runs (``jax.distributed``): one process per host, one global device mesh.

``leakjax --coordinator_address=HOST:PORT --num_processes=N --process_id=I`` (the same
command on every process, ``I`` = 0..N-1) calls `initialize` before any JAX use; then
``jax.devices()`` lists every process's devices, so ``fl.num_devices`` /
``attack.num_devices`` (0: all) shard FedAvg's clients and the attack's trials over the
global mesh (`leakjax.fl.sharding.client_mesh`). Every process computes the same program on
the same (replicated host) inputs; only process 0 writes files (`is_main_process`).

Short timeouts by default: a peer that dies makes the others abort within about
``heartbeat_timeout`` seconds instead of JAX's 100-300 s (BUILD_NOTES, "Multi-process").
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np
from absl import flags
from jax.experimental import multihost_utils

from leakjax.types import ConfigError

INIT_TIMEOUT_S = 60
HEARTBEAT_TIMEOUT_S = 10
FLAG_NAMES = ("coordinator_address", "num_processes", "process_id")


def define_flags() -> None:
    """The three absl flags of `leakjax` and `leakjax-sweep` (defined once per program; each
    command adopts them with ``flags.declare_key_flag`` so that its --help lists them)."""
    if FLAG_NAMES[0] in flags.FLAGS:
        return
    flags.DEFINE_string(
        FLAG_NAMES[0],
        None,
        "Multi-process run: process 0's HOST:PORT (jax.distributed), or 'auto' (alone): "
        "the cluster launcher's settings (SLURM, Open MPI, cloud TPU pods).",
    )
    flags.DEFINE_integer(FLAG_NAMES[1], None, "Multi-process run: the number of processes.")
    flags.DEFINE_integer(FLAG_NAMES[2], None, "Multi-process run: this process, 0..N-1.")


AUTO = "auto"


def start_from_flags() -> None:
    """Check the three flags together and, when given, `initialize` (before any JAX use).

    ``--coordinator_address=auto`` (alone): the cluster's launcher gives the address, the
    process count and this process's index (`jax.distributed.initialize`'s auto-detection:
    SLURM, Open MPI, cloud TPU pods, ...). Raises ConfigError (one line) for a bad combination,
    or when ``auto`` finds no cluster. ``--resume`` works with several processes when every
    process reads the same workdir (one machine or a shared file system): process 0 writes
    the checkpoints, every process reads them."""
    values = [flags.FLAGS[name].value for name in FLAG_NAMES]
    if check_flags(*values):
        if values[0] == AUTO:
            initialize_auto()
        else:
            initialize(*values)


def check_flags(coordinator_address, num_processes, process_id) -> bool:
    """Validate the three flags together; True when a multi-process run is asked for.

    All absent (None): one process. Raises ConfigError (one line naming the flags) otherwise.
    """
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if not any(given):
        return False
    usage = (
        "--coordinator_address=HOST:PORT --num_processes=N (>= 1) --process_id=I "
        "(0 <= I < N) must be given together (or --coordinator_address=auto alone, under "
        "SLURM or another launcher jax.distributed detects)"
    )
    if coordinator_address == AUTO:
        if any(given[1:]):
            raise ConfigError(f"--coordinator_address=auto takes no other flag; {usage}")
        return True
    if not all(given):
        raise ConfigError(usage)
    host, _, port = str(coordinator_address).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--coordinator_address={coordinator_address!r} is not HOST:PORT; {usage}"
        )
    if int(num_processes) < 1:
        raise ConfigError(f"--num_processes={num_processes} is not >= 1; {usage}")
    if not 0 <= int(process_id) < int(num_processes):
        raise ConfigError(f"--process_id={process_id} is not in [0, {num_processes}); {usage}")
    return True


def initialize(
    coordinator_address: str,
    num_processes: int,
    process_id: int,
    *,
    initialization_timeout: int = INIT_TIMEOUT_S,
    heartbeat_timeout: int = HEARTBEAT_TIMEOUT_S,
) -> None:
    """`jax.distributed.initialize` with short timeouts; call before any JAX computation."""
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=int(num_processes),
        process_id=int(process_id),
        initialization_timeout=int(initialization_timeout),
        heartbeat_timeout_seconds=int(heartbeat_timeout),
    )


def initialize_auto(
    *, initialization_timeout: int = INIT_TIMEOUT_S, heartbeat_timeout: int = HEARTBEAT_TIMEOUT_S
) -> None:
    """`jax.distributed.initialize` with the cluster's own settings (SLURM's ``SLURM_*``
    variables, Open MPI, cloud TPU pods, ...) and short timeouts; ConfigError when no
    cluster is detected."""
    try:
        jax.distributed.initialize(
            initialization_timeout=int(initialization_timeout),
            heartbeat_timeout_seconds=int(heartbeat_timeout),
        )
    except ValueError as e:  # "coordinator_address should be defined." and the like
        raise ConfigError(
            "--coordinator_address=auto: jax.distributed found no cluster launcher (SLURM, "
            f"Open MPI, a cloud TPU pod, ...): {str(e).splitlines()[0]}; give "
            "--coordinator_address=HOST:PORT --num_processes=N --process_id=I instead"
        ) from e


_LOCAL = [False]  # inside `local()`: this process alone, on its own devices


@contextlib.contextmanager
def local():
    """Run the body as a one-process run on this process's own devices (``leakjax-sweep
    --split``: each process runs its share of the experiments): `devices`, `device_count`
    and `process_count` see this process only, `is_main_process` is True (it writes its own
    experiments' files) and `barrier` waits for nobody."""
    before, _LOCAL[0] = _LOCAL[0], True
    try:
        yield
    finally:
        _LOCAL[0] = before


def devices() -> list:
    """The devices a run shards over: every process's (`jax.devices`), or this process's
    inside `local`."""
    return jax.local_devices() if _LOCAL[0] else jax.devices()


def device_count() -> int:
    return len(devices())


def process_count() -> int:
    """The processes a run spans: ``jax.process_count()``, 1 inside `local`."""
    return 1 if _LOCAL[0] else jax.process_count()


def process_index() -> int:
    return jax.process_index()


def is_main_process() -> bool:
    """True on process 0 (the one that writes files), in a single-process run and inside
    `local`."""
    return _LOCAL[0] or jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches ``name`` (nothing to wait for in one process)."""
    if process_count() > 1:
        multihost_utils.sync_global_devices(name)


def wait_for_all(name: str, timeout_s: float = 7 * 24 * 3600) -> None:
    """A barrier of the coordination service (no device collective), for processes that
    arrive hours apart (``leakjax-sweep --split``: each finishes its share at its own
    time). A dead peer still ends the others within the heartbeat timeout."""
    if jax.process_count() > 1:
        from jax._src import distributed as jax_distributed  # noqa: PLC0415 - no public API

        client = jax_distributed.global_state.client
        client.wait_at_barrier(name, int(timeout_s * 1000))


def next_index(name: str) -> int:
    """A work queue over the processes: 0, 1, 2, ... in the order the processes ask, each
    index to exactly one process (an atomic counter of the coordination service; no device
    collective). One process: a local counter. Every call site must use its own ``name``."""
    if jax.process_count() > 1:
        from jax._src import distributed as jax_distributed  # noqa: PLC0415 - no public API

        return int(jax_distributed.global_state.client.key_value_increment(name, 1)) - 1
    _COUNTERS[name] = _COUNTERS.get(name, -1) + 1
    return _COUNTERS[name]


_COUNTERS: dict[str, int] = {}


def to_global(tree, sharding):
    """``jax.device_put(tree, sharding)`` that also works when ``sharding`` spans other
    processes' devices: each leaf must hold the same value on every process (typed PRNG keys
    go through their key data, which `jax.device_put` refuses to place across processes)."""
    if sharding is None:
        return tree

    def put(x):
        if process_count() > 1 and jax.dtypes.issubdtype(
            getattr(x, "dtype", None), jax.dtypes.prng_key
        ):
            impl = jax.random.key_impl(x)
            return jax.random.wrap_key_data(
                jax.device_put(jax.random.key_data(x), sharding), impl=impl
            )
        if process_count() > 1 and not isinstance(x, jax.Array):
            # host values in JAX's own dtype first: float64 numpy leaves (a Python float
            # stacked with np.stack) fail device_put's equal-on-every-process check
            x = np.asarray(x, dtype=jax.dtypes.canonicalize_dtype(np.asarray(x).dtype))
        return jax.device_put(x, sharding)

    return jax.tree.map(put, tree)


def to_host(x) -> np.ndarray:
    """A (possibly sharded across processes) array as one numpy array on every process."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
