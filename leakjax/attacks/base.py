"""The attack interface and the one loop that runs every optimization attack.

An attack is a factory ``make(observation, model, cfg, ...) -> Attack(init, step, result)``
of pure functions (the optax ``GradientTransformation`` pattern): ``init(key) -> state``,
``step(state, key) -> (state, {'loss': scalar, ...})``, ``result(state) ->
Reconstruction``. `run` owns everything else: jit, `lax.scan` in chunks, `vmap` over
restarts and over trials (independent observations), optionally the trials split across
devices (jit + `NamedSharding` over a 1-D mesh), progress lines, NaN/Inf detection per
restart, and best-restart selection. Attacks never write files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leakjax.observation import GroundTruth, Observation, stack  # noqa: F401 (re-export)
from leakjax.progress import Progress
from leakjax.types import Array, ConfigError, PRNGKey


class Reconstruction(NamedTuple):
    """What an attack outputs: normalized NHWC images and (optionally) int labels."""

    images: Array
    labels: Array | None = None


class Attack(NamedTuple):
    """Pure functions of one attack on one observation."""

    init: Callable[[PRNGKey], Any]
    step: Callable[[Any, PRNGKey], tuple[Any, dict]]
    result: Callable[[Any], Reconstruction]


@dataclasses.dataclass
class RunResult:
    """The outcome of `run` (host numpy arrays; leading axis = trial).

    Attributes:
      reconstruction: the best restart's Reconstruction per trial: images [T, B, H, W, C].
      restarts: every restart's Reconstruction: images [T, R, B, H, W, C].
      losses: [T, R, steps] loss at every step (NaN after a restart failed).
      final_loss: [T, R] last finite loss of each restart.
      best: [T] index of the selected restart (lowest final loss among healthy ones).
      failed: [T, R] whether the restart hit NaN/Inf; failed_step: [T, R] (-1 if not).
      trial_failed: [T] all restarts of the trial failed.
      steps, seconds (total wall time), compile_seconds (first chunk incl. compile).
    """

    reconstruction: Reconstruction
    restarts: Reconstruction
    losses: np.ndarray
    final_loss: np.ndarray
    best: np.ndarray
    failed: np.ndarray
    failed_step: np.ndarray
    trial_failed: np.ndarray
    steps: int
    seconds: float
    compile_seconds: float


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived during `run`; the state was checkpointed (if a path was set)."""

    def __init__(self, steps_done: int, checkpoint: str | None):
        self.steps_done, self.checkpoint = steps_done, checkpoint
        where = f"; checkpoint {checkpoint}" if checkpoint else ""
        super().__init__(f"interrupted after step {steps_done}{where}")


@contextlib.contextmanager
def _catch_signals():
    """Turn SIGINT/SIGTERM into a flag checked between chunks (main thread only)."""
    flag = {"sig": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        del frame
        flag["sig"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_plain(tree):
    """PRNG key arrays -> their uint32 data, so the tree serializes with msgpack."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def save_checkpoint(path, payload) -> None:
    """Atomic msgpack checkpoint (flax.serialization; no pickle)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = serialization.to_bytes(jax.tree.map(np.asarray, _to_plain(payload)))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path, template):
    """Restore a checkpoint into ``template``'s structure (PRNG keys re-wrapped)."""
    plain = _to_plain(template)
    with open(path, "rb") as f:
        restored = serialization.from_bytes(jax.tree.map(np.asarray, plain), f.read())
    return jax.tree.map(
        lambda t, r: jax.random.wrap_key_data(jnp.asarray(r)) if _is_key(t) else jnp.asarray(r),
        template,
        restored,
    )


def _all_finite(tree) -> Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _pad_trials(tree, total: int):
    """Pad the leading (trial) axis to ``total`` by repeating the last trial.

    Padding trials are real copies (finite, well-posed problems), so they cannot fail or
    slow down the real ones; `run` drops them before anything is reported.
    """

    def pad(a):
        extra = total - a.shape[0]
        if extra == 0:
            return a
        return jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def _shard(tree, sharding):
    return tree if sharding is None else jax.device_put(tree, sharding)


def chunked_map(f: Callable, chunk: int) -> Callable:
    """``f`` mapped over the leading axis of its arguments: ``vmap`` (chunk 0), a ``lax.map``
    of single slices (chunk 1: no vmap at all), or of ``chunk``-sized vmapped batches."""
    if chunk == 0:
        return jax.vmap(f)
    if chunk == 1:
        return lambda *xs: jax.lax.map(lambda a: f(*a), xs)
    return lambda *xs: jax.lax.map(lambda a: f(*a), xs, batch_size=chunk)


def resolve_vmap_chunk(vmap_chunk: int, mode: str, sequential_on_cpu: bool = False) -> int:
    """`run`'s ``vmap_chunk`` for ``attack.vmap_chunk`` (-1: auto).

    Auto: 1 on CPU for 'fedavg' mode, where every restart trains its own copy of the weights
    and XLA:CPU runs convolutions with per-restart kernels slower than the restarts in
    sequence, and when ``sequential_on_cpu`` (`AttackSpec.sequential`; DLG, iDLG: a vmapped
    L-BFGS line search evaluates every restart until the slowest is done); 0 (all vmapped)
    otherwise (BUILD_NOTES "Performance, session 6" has the measurements).

    Raises:
      ConfigError: a value below -1.
    """
    if vmap_chunk < -1:
        raise ConfigError(f"attack.vmap_chunk must be -1, 0 or >= 1, got {vmap_chunk}")
    if vmap_chunk == -1:
        cpu = jax.default_backend() == "cpu"
        return 1 if cpu and (mode == "fedavg" or sequential_on_cpu) else 0
    return int(vmap_chunk)


def run(
    attack: Attack | Callable[[Any], Attack],
    key: PRNGKey,
    *,
    steps: int,
    restarts: int = 1,
    trials: Any = None,
    chunk: int = 100,
    progress: bool = True,
    name: str = "attack",
    on_chunk: Callable[[int, Any], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    num_devices: int = 1,
    vmap_chunk: int = 0,
) -> RunResult:
    """Run an attack for ``steps`` steps, ``restarts`` restarts, over ``trials``.

    Args:
      attack: an `Attack`, or a factory ``f(trial) -> Attack`` when ``trials`` is given.
      key: PRNG key; restart r of trial t uses ``fold_in(fold_in(key, t), r)``.
      steps: optimization steps.
      restarts: independent random initializations per trial (vmapped); the one with
        the lowest final loss is kept.
      trials: a pytree with a leading trial axis (e.g. `observation.stack` of several
        observations, or target batches); each slice is passed to the factory inside
        ``vmap``, so all trials run in one jitted program.
      chunk: steps per jitted ``lax.scan`` call (progress is reported between chunks).
      progress: print step, loss, steps/s and ETA after each chunk.
      name: attack name for progress lines and error messages.
      on_chunk: optional callback ``f(steps_done, states)`` after each chunk.
      checkpoint: file for the run's state (msgpack via flax.serialization). Written
        every ``checkpoint_every`` steps (rounded up to whole chunks; 0 = only on
        SIGINT/SIGTERM) and when a signal arrives, after which `Interrupted` is raised.
      resume: continue from ``checkpoint`` if it exists. The result equals that of an
        uninterrupted run (every step's key is ``fold_in(restart key, step)``).
      num_devices: split the trials across this many devices (0: all) with jit and a
        `NamedSharding` of the trial axis over a 1-D mesh (`leakjax.fl.sharding.client_mesh`);
        the trial count is padded to a multiple of it with copies of the last trial, which
        are dropped from the result. Each trial's computation is unchanged, so results equal
        those on one device (tests/test_attack_sharding.py). Checkpoints hold only the real
        trials and resume with any ``num_devices``.
      vmap_chunk: how many restarts (and, on one device, trials) one step computes at once:
        0 = all of them in one ``vmap`` (the default; what a GPU wants); ``k >= 1`` = a
        ``lax.map`` over them, ``k`` vmapped at a time (1: one after another, no vmap). Same
        results either way (to float32 rounding). On XLA's CPU backend the fedavg-mode
        attacks want 1: vmapped restarts each train their own copy of the weights, and
        convolutions with per-restart kernels run slower than the restarts in sequence
        (`resolve_vmap_chunk`; BUILD_NOTES "Performance, session 6").

    Returns:
      RunResult.
    """
    if steps < 1:
        raise ValueError(f"{name}: steps must be >= 1, got {steps}")
    if trials is None:
        factory = lambda _: attack  # noqa: E731
        trials = jnp.zeros((1,))
    else:
        factory = attack
    num_trials = jax.tree.leaves(trials)[0].shape[0]
    chunk = max(1, min(chunk, steps))
    num_chunks = math.ceil(steps / chunk)
    sharding = None
    padded = num_trials
    if num_devices != 1:
        from leakjax.fl.sharding import client_mesh

        mesh = client_mesh(num_devices, axis="trials")
        if mesh.size > 1:
            sharding = NamedSharding(mesh, P("trials"))
            padded = math.ceil(num_trials / mesh.size) * mesh.size
            trials = _pad_trials(trials, padded)
    real = lambda tree: jax.tree.map(lambda a: a[:num_trials], tree)  # noqa: E731

    keys = jax.vmap(
        lambda t: jax.vmap(lambda r: jax.random.fold_in(jax.random.fold_in(key, t), r))(
            jnp.arange(restarts)
        )
    )(jnp.arange(padded))
    trials, keys = _shard(trials, sharding), _shard(keys, sharding)

    def init_trial(trial, ks):
        return jax.vmap(factory(trial).init)(ks)

    @jax.jit
    def init_all(trials, keys):
        return jax.vmap(init_trial)(trials, keys)

    # With the trials sharded over devices they stay vmapped (a map would gather them).
    trial_chunk = vmap_chunk if sharding is None else 0

    def step_trial(trial, st, ks, i):
        a = factory(trial)
        return chunked_map(lambda s, k: a.step(s, jax.random.fold_in(k, i)), vmap_chunk)(st, ks)

    def result_trial(trial, st):
        return jax.vmap(factory(trial).result)(st)

    @jax.jit
    def run_chunk(states, trials, keys, alive, failed_step, last_loss, start):
        def body(carry, i):
            states, alive, failed_step, last_loss = carry
            new, metrics = chunked_map(lambda t, s, k: step_trial(t, s, k, i), trial_chunk)(
                trials, states, keys
            )
            loss = metrics["loss"]
            ok = alive & jnp.isfinite(loss) & (i < steps)
            newly_bad = alive & ~jnp.isfinite(loss) & (i < steps)
            failed_step = jnp.where(newly_bad, i, failed_step)
            alive = alive & ~newly_bad

            def keep(n, o):
                m = ok.reshape(ok.shape + (1,) * (n.ndim - ok.ndim))
                return jnp.where(m, n, o)

            states = jax.tree.map(keep, new, states)
            last_loss = jnp.where(ok, loss, last_loss)
            return (states, alive, failed_step, last_loss), jnp.where(ok, loss, jnp.nan)

        idx = start + jnp.arange(chunk)
        (states, alive, failed_step, last_loss), losses = jax.lax.scan(
            body, (states, alive, failed_step, last_loss), idx
        )
        # A state can go non-finite without its loss doing so yet: check the images.
        rec = jax.vmap(result_trial)(trials, states)
        img_ok = jax.vmap(jax.vmap(_all_finite))(rec.images)
        newly_bad = alive & ~img_ok
        failed_step = jnp.where(newly_bad, start + chunk - 1, failed_step)
        alive = alive & img_ok
        return states, alive, failed_step, last_loss, jnp.moveaxis(losses, 0, -1)

    t0 = time.perf_counter()
    states = _shard(init_all(trials, keys), sharding)
    shape = (num_trials, restarts)
    alive = _shard(jnp.ones((padded, restarts), bool), sharding)
    failed_step = _shard(jnp.full((padded, restarts), -1, jnp.int32), sharding)
    last_loss = _shard(jnp.full((padded, restarts), jnp.inf, jnp.float32), sharding)
    all_losses = []
    start_chunk = 0
    meta = np.asarray([steps, restarts, chunk, num_trials], np.int64)
    if resume and checkpoint is not None and pathlib.Path(checkpoint).exists():
        template = {
            "states": real(states),
            "alive": real(alive),
            "failed_step": real(failed_step),
            "last_loss": real(last_loss),
            "done_chunks": np.int64(0),
            "meta": meta,
            "losses": np.zeros(shape + (0,), np.float32),
        }
        try:
            # losses has a data-dependent length: restore it without a shape template
            with open(checkpoint, "rb") as f:
                raw = serialization.msgpack_restore(f.read())
            template["losses"] = np.zeros(np.asarray(raw["losses"]).shape, np.float32)
            ck = load_checkpoint(checkpoint, template)
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is a config problem
            raise ValueError(f"{name}: cannot resume from {checkpoint}: {e}") from e
        if not np.array_equal(np.asarray(ck["meta"]), meta):
            raise ValueError(
                f"{name}: checkpoint {checkpoint} was written for steps/restarts/chunk/trials "
                f"{np.asarray(ck['meta']).tolist()}, not {meta.tolist()}"
            )
        # restore the real trials; padding trials restart from their fresh state
        # (they are copies whose results are dropped).
        fresh = (states, alive, failed_step, last_loss)
        loaded = (ck["states"], ck["alive"], ck["failed_step"], ck["last_loss"])
        states, alive, failed_step, last_loss = (
            _shard(
                jax.tree.map(lambda c, f: jnp.concatenate([c, f[num_trials:]], axis=0), ld, fr),
                sharding,
            )
            for ld, fr in zip(loaded, fresh, strict=True)
        )
        start_chunk = int(ck["done_chunks"])
        if ck["losses"].shape[-1]:
            all_losses.append(np.asarray(ck["losses"]))
    prog = Progress(name, steps, unit="step", enabled=progress)
    compile_seconds = 0.0
    every_chunks = 0 if not checkpoint_every else max(1, math.ceil(checkpoint_every / chunk))

    def write(done_chunks):
        save_checkpoint(
            checkpoint,
            {
                "states": real(states),
                "alive": real(alive),
                "failed_step": real(failed_step),
                "last_loss": real(last_loss),
                "done_chunks": np.int64(done_chunks),
                "meta": meta,
                "losses": np.concatenate(all_losses, axis=-1)
                if all_losses
                else np.zeros(shape + (0,), np.float32),
            },
        )

    with _catch_signals() as flag:
        for c in range(start_chunk, num_chunks):
            states, alive, failed_step, last_loss, losses = run_chunk(
                states, trials, keys, alive, failed_step, last_loss, jnp.int32(c * chunk)
            )
            losses = np.asarray(losses)[:num_trials]
            all_losses.append(losses)
            done = min((c + 1) * chunk, steps)
            if c == start_chunk:
                compile_seconds = time.perf_counter() - t0
            ll = np.asarray(last_loss)[:num_trials]
            alive_now = np.asarray(alive)[:num_trials]
            healthy = np.where(alive_now, ll, np.inf)
            best_now = float(np.min(healthy)) if np.isfinite(healthy).any() else float("nan")
            nfail = int((~alive_now).sum())
            fields = {"best_loss": best_now}
            if nfail:
                fields["failed"] = f"{nfail}/{num_trials * restarts}"
            prog.update(done, **fields)
            if on_chunk is not None:
                on_chunk(done, states if sharding is None else real(states))
            last = c == num_chunks - 1
            if (
                checkpoint is not None
                and not last
                and (flag["sig"] is not None or (every_chunks and (c + 1) % every_chunks == 0))
            ):
                write(c + 1)
            if flag["sig"] is not None and not last:
                raise Interrupted(done, None if checkpoint is None else str(checkpoint))

    rec = jax.jit(jax.vmap(result_trial))(trials, states)
    rec = Reconstruction(*(None if a is None else np.asarray(a)[:num_trials] for a in rec))
    alive_np = np.asarray(alive)[:num_trials]
    final = np.asarray(last_loss)[:num_trials]
    score = np.where(alive_np, final, np.inf)
    # all failed: fall back to the last finite state of the restart with the lowest loss
    score = np.where(alive_np.any(axis=1, keepdims=True), score, final)
    best = np.argmin(np.nan_to_num(score, nan=np.inf), axis=1)
    pick = lambda a: None if a is None else a[np.arange(num_trials), best]
    losses = np.concatenate(all_losses, axis=-1)[..., :steps]
    return RunResult(
        reconstruction=Reconstruction(pick(rec.images), pick(rec.labels)),
        restarts=rec,
        losses=losses,
        final_loss=final,
        best=best,
        failed=~alive_np,
        failed_step=np.asarray(failed_step)[:num_trials],
        trial_failed=~alive_np.any(axis=1),
        steps=steps,
        seconds=time.perf_counter() - t0,
        compile_seconds=compile_seconds,
    )
