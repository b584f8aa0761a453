"""`run`: the one loop that runs every optimization attack (see `leakjax.attacks.base`).

`run` jits the attack's ``step`` into a `lax.scan` over ``chunk`` steps, `vmap`s it over
restarts and trials (optionally with the trials sharded over devices), and between chunks
reports progress, calls ``on_chunk``, writes checkpoints (`leakjax.attacks.checkpoint`) and
honours SIGINT/SIGTERM (`leakjax.attacks.signals`). Afterwards it picks each trial's best
healthy restart. `scan_chunks` is the chunk driver it shares with
`leakjax.train_generator`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leakjax import distributed
from leakjax.attacks import checkpoint as ckpt
from leakjax.attacks.base import Attack, Reconstruction, RunResult
from leakjax.attacks.signals import Interrupted, catch_signals
from leakjax.distributed import to_global, to_host
from leakjax.fl.sharding import client_mesh
from leakjax.progress import Progress
from leakjax.types import Array, ConfigError, PRNGKey


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


def scan_chunks(
    run_chunk: Callable[[Any, int, int], tuple[Any, Any]],
    carry: Any,
    *,
    steps: int,
    chunk: int,
    prog: Progress,
    t0: float,
    first_chunk: int = 0,
    fields: Callable[[int, Any, Any], dict] | None = None,
    after: Callable[[int, int, Any], None] | None = None,
) -> tuple[Any, float]:
    """Drive a jitted chunked scan from chunk ``first_chunk`` to ``ceil(steps / chunk)``.

    Per chunk ``c``: ``carry, out = run_chunk(carry, start, length)`` (``start = c * chunk``,
    ``length = min(chunk, steps - start)``), then ``prog.update(done, **fields(done, carry,
    out))`` and ``after(c, done, carry)``; either callback may raise to stop.

    Returns:
      (carry, seconds from ``t0`` to the end of the first chunk run here: compile + run).
    """
    first_seconds = 0.0
    for c in range(first_chunk, math.ceil(steps / chunk)):
        start = c * chunk
        carry, out = run_chunk(carry, start, min(chunk, steps - start))
        done = min(start + chunk, steps)
        report = {} if fields is None else fields(done, carry, out)
        if c == first_chunk:
            first_seconds = time.perf_counter() - t0
        prog.update(done, **report)
        if after is not None:
            after(c, done, carry)
    return carry, first_seconds


class _Carry(NamedTuple):
    """What a chunk updates: attack states and per-restart health, each [T, R, ...]."""

    states: Any
    alive: Array
    failed_step: Array
    last_loss: Array


class _Setup(NamedTuple):
    factory: Callable[[Any], Attack]
    trials: Any  # padded to a multiple of the devices, sharded
    keys: Array  # [padded, R] restart keys
    sharding: NamedSharding | None
    num_trials: int  # real trials (the rest is padding): settings x trials per setting
    padded: int
    settings: int  # hyperparameter settings (0: hparams without a leading axis, or none)


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
    return to_global(tree, sharding)


def _num_settings(hparams, name: str) -> int:
    """The leading (settings) axis of ``hparams``: 0 when every leaf is a scalar."""
    dims = {jnp.ndim(a) for a in jax.tree.leaves(hparams)}
    if not dims or dims == {0}:
        return 0
    sizes = {jnp.shape(a)[0] for a in jax.tree.leaves(hparams) if jnp.ndim(a) == 1}
    if dims != {1} or len(sizes) != 1:
        raise ValueError(f"{name}: hparams must be all scalars or all [S] vectors, got {hparams}")
    return sizes.pop()


def _with_hparams(attack, trials, hparams, name: str):
    """(factory of one trial, trials, settings): the hyperparameters ride along with the trials
    (so they are arguments of the jitted programs); ``S`` settings repeat the trials ``S``
    times (setting-major)."""
    if hparams is None:
        return (lambda _: attack) if trials is None else attack, trials, 0
    make = (lambda _, hp: attack(hp)) if trials is None else attack
    trials = jnp.zeros((1,)) if trials is None else trials
    per = jax.tree.leaves(trials)[0].shape[0]
    settings = _num_settings(hparams, name)
    if settings:
        trials = jax.tree.map(lambda a: jnp.concatenate([jnp.asarray(a)] * settings), trials)
        hparams = jax.tree.map(lambda h: jnp.repeat(jnp.asarray(h, jnp.float32), per), hparams)
    else:
        hparams = jax.tree.map(lambda h: jnp.full((per,), h, jnp.float32), hparams)
    return lambda th: make(*th), (trials, hparams), settings


def _setup(
    attack,
    key,
    trials,
    restarts: int,
    num_devices: int,
    hparams=None,
    name: str = "attack",
    trial_keys=None,
) -> _Setup:
    """The factory, the (padded, sharded) trials and the restart keys
    ``fold_in(fold_in(key, t), r)``, or ``fold_in(trial_keys[t], r)`` when given (``t``: the
    trial's index within its hyperparameter setting; device padding repeats the last key)."""
    factory, trials, settings = _with_hparams(attack, trials, hparams, name)
    if trials is None:
        trials = jnp.zeros((1,))
    num_trials = jax.tree.leaves(trials)[0].shape[0]
    per = num_trials // max(settings, 1)
    if trial_keys is not None and trial_keys.shape[0] != per:
        raise ValueError(f"trial_keys holds {trial_keys.shape[0]} keys for {per} trials")
    sharding, padded = None, num_trials
    if num_devices != 1:
        mesh = client_mesh(num_devices, axis="trials")
        if mesh.size > 1:
            sharding = NamedSharding(mesh, P("trials"))
            padded = math.ceil(num_trials / mesh.size) * mesh.size
            trials = _pad_trials(trials, padded)
    index = jnp.arange(padded)
    pos = jnp.where(index < num_trials, index % per, index)
    if trial_keys is None:
        per_trial = jax.vmap(lambda t: jax.random.fold_in(key, t))(pos)
    else:
        per_trial = trial_keys[jnp.minimum(pos, per - 1)]
    keys = jax.vmap(lambda k: jax.vmap(lambda r: jax.random.fold_in(k, r))(jnp.arange(restarts)))(
        per_trial
    )
    trials, keys = _shard(trials, sharding), _shard(keys, sharding)
    return _Setup(factory, trials, keys, sharding, num_trials, padded, settings)


def _split(res: RunResult, settings: int) -> list[RunResult]:
    """One RunResult per hyperparameter setting (setting-major trial axis)."""
    per = res.best.shape[0] // settings

    def part(h):
        def cut(v):
            if isinstance(v, Reconstruction):
                return Reconstruction(*map(cut, v))
            return v[h * per : (h + 1) * per] if isinstance(v, np.ndarray) else v

        return RunResult(**{f.name: cut(getattr(res, f.name)) for f in dataclasses.fields(res)})

    return [part(h) for h in range(settings)]


def _programs(factory, *, steps: int, chunk: int, vmap_chunk: int, sharded: bool):
    """The jitted ``init_all(trials, keys)``, ``run_chunk(carry, trials, keys, start)`` and
    ``result_all(trials, states)``."""
    # With the trials sharded over devices they stay vmapped (a map would gather them).
    trial_chunk = 0 if sharded else vmap_chunk

    def init_trial(trial, ks):
        return jax.vmap(factory(trial).init)(ks)

    def step_trial(trial, st, ks, i):
        a = factory(trial)
        return chunked_map(lambda s, k: a.step(s, jax.random.fold_in(k, i)), vmap_chunk)(st, ks)

    def result_trial(trial, st):
        return jax.vmap(factory(trial).result)(st)

    @jax.jit
    def init_all(trials, keys):
        return jax.vmap(init_trial)(trials, keys)

    @jax.jit
    def run_chunk(carry: _Carry, trials, keys, start):
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
            return _Carry(states, alive, failed_step, last_loss), jnp.where(ok, loss, jnp.nan)

        idx = start + jnp.arange(chunk)
        (states, alive, failed_step, last_loss), losses = jax.lax.scan(body, carry, idx)
        # A state can go non-finite without its loss doing so yet: check the images.
        rec = jax.vmap(result_trial)(trials, states)
        img_ok = jax.vmap(jax.vmap(_all_finite))(rec.images)
        newly_bad = alive & ~img_ok
        failed_step = jnp.where(newly_bad, start + chunk - 1, failed_step)
        alive = alive & img_ok
        return _Carry(states, alive, failed_step, last_loss), jnp.moveaxis(losses, 0, -1)

    return init_all, run_chunk, jax.jit(jax.vmap(result_trial))


def _fresh(init_all, s: _Setup, restarts: int) -> _Carry:
    shape = (s.padded, restarts)
    return _Carry(
        _shard(init_all(s.trials, s.keys), s.sharding),
        _shard(jnp.ones(shape, bool), s.sharding),
        _shard(jnp.full(shape, -1, jnp.int32), s.sharding),
        _shard(jnp.full(shape, jnp.inf, jnp.float32), s.sharding),
    )


def _real(tree, num_trials: int):
    return jax.tree.map(lambda a: a[:num_trials], tree)


def _host_state(carry: _Carry, num_trials: int) -> dict:
    """The real trials' carry as host arrays on every process (PRNG keys as their data, as
    checkpoints store them); states sharded over several processes are gathered."""

    def host(a):
        if ckpt.is_key(a):
            return to_host(jax.random.key_data(a))[:num_trials]
        return to_host(a)[:num_trials]

    return jax.tree.map(host, carry._asdict())


def _restore(path, fresh: _Carry, s: _Setup, meta, name: str):
    """(carry, done_chunks, losses so far, earlier parts' seconds) from a checkpoint.

    The real trials come from the checkpoint; padding trials restart from their fresh
    state (they are copies whose results are dropped), so any ``num_devices`` resumes."""
    template = {**_real(fresh._asdict(), s.num_trials), "done_chunks": np.int64(0), "meta": meta}
    template["losses"] = np.zeros((s.num_trials, int(meta[1]), 0), np.float32)
    ck = ckpt.read_run(path, template, meta, name)
    carry = _Carry(
        *(
            _shard(
                jax.tree.map(
                    lambda c, f: jnp.concatenate([c, f[s.num_trials :]], axis=0), ck[k], fr
                ),
                s.sharding,
            )
            for k, fr in zip(_Carry._fields, fresh, strict=True)
        )
    )
    return carry, int(ck["done_chunks"]), ck["losses"], [float(v) for v in ck["seconds_parts"]]


def _progress_fields(alive, last_loss, restarts: int) -> dict:
    """``loss_min``: the lowest current loss over all trials' healthy restarts (a minimum
    across restarts now, not a running best: it can rise between lines); ``failed``."""
    healthy = np.where(alive, last_loss, np.inf)
    fields = {"loss_min": float(np.min(healthy)) if np.isfinite(healthy).any() else float("nan")}
    nfail = int((~alive).sum())
    if nfail:
        fields["failed"] = f"{nfail}/{alive.shape[0] * restarts}"
    return fields


def _select(rec: Reconstruction, carry: _Carry, num_trials: int):
    """Each trial's best restart: the lowest final loss among healthy restarts; when all
    failed, the last finite state of the restart with the lowest loss."""
    alive = to_host(carry.alive)[:num_trials]
    final = to_host(carry.last_loss)[:num_trials]
    score = np.where(alive, final, np.inf)
    score = np.where(alive.any(axis=1, keepdims=True), score, final)
    best = np.argmin(np.nan_to_num(score, nan=np.inf), axis=1)
    pick = lambda a: None if a is None else a[np.arange(num_trials), best]  # noqa: E731
    return Reconstruction(pick(rec.images), pick(rec.labels)), best, alive, final


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
    trial_keys: Array | None = None,
    hparams: Any = None,
) -> RunResult | list[RunResult]:
    """Run an attack for ``steps`` steps, ``restarts`` restarts, over ``trials``.

    Args:
      attack: an `Attack`, or a factory ``f(trial) -> Attack`` when ``trials`` is given;
        with ``hparams``: a factory ``f(hparams) -> Attack``, or ``f(trial, hparams)`` with
        ``trials``.
      key: PRNG key; restart r of trial t uses ``fold_in(fold_in(key, t), r)`` (see
        ``trial_keys``).
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
        SIGINT/SIGTERM) and when a signal arrives.
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
      trial_keys: optional [T] keys, one per trial: restart r of trial t then uses
        ``fold_in(trial_keys[t], r)`` (``key`` is unused), so a trial's result does not
        depend on its position among the trials (`leakjax.experiment.attack_observations`).
      hparams: the attack's traced hyperparameters (`AttackSpec.hparams`: a pytree of float
        scalars), passed to the factory inside the jitted programs as arguments: other values
        run the same compiled program. Leaves with a leading axis ``S`` (all of them): ``S``
        settings run at once, each on every trial with the same restart keys (vmapped like
        the trials, as ``S x trials`` trials), and `run` returns one RunResult per setting.

    Returns:
      RunResult (a list of ``S`` with ``S`` hyperparameter settings); ``seconds`` is the wall
      time of all parts of a resumed run together, ``seconds_parts`` each part's.

    Raises:
      Interrupted: SIGINT/SIGTERM arrived; raised at the end of the chunk it arrived in,
        after the state was written to ``checkpoint`` (if given). When that chunk was the
        last one, the state is written and the result returned (all steps were done); inside
        an enclosing `catch_signals` the caller sees the flag and stops before its next run.
      ValueError: ``steps < 1``, a checkpoint that cannot be resumed, or ``hparams`` leaves
        that mix scalars and vectors (or vectors of different lengths).
    """
    if steps < 1:
        raise ValueError(f"{name}: steps must be >= 1, got {steps}")
    t0 = time.perf_counter()
    s = _setup(attack, key, trials, restarts, num_devices, hparams, name, trial_keys)
    chunk = max(1, min(chunk, steps))
    num_chunks = math.ceil(steps / chunk)
    init_all, run_chunk, result_all = _programs(
        s.factory, steps=steps, chunk=chunk, vmap_chunk=vmap_chunk, sharded=s.sharding is not None
    )
    carry = _fresh(init_all, s, restarts)
    meta = np.asarray([steps, restarts, chunk, s.num_trials], np.int64)
    all_losses, earlier, start_chunk = [], [], 0
    if resume and checkpoint is not None and pathlib.Path(checkpoint).exists():
        carry, start_chunk, losses, earlier = _restore(checkpoint, carry, s, meta, name)
        if losses.shape[-1]:
            all_losses.append(losses)
    every = 0 if not checkpoint_every else max(1, math.ceil(checkpoint_every / chunk))
    parts = lambda: [*earlier, time.perf_counter() - t0]  # noqa: E731

    def fields(done, carry, losses):
        all_losses.append(to_host(losses)[: s.num_trials])
        alive = to_host(carry.alive)[: s.num_trials]
        return _progress_fields(alive, to_host(carry.last_loss)[: s.num_trials], restarts)

    def after(c, done, carry):
        if on_chunk is not None:
            states = carry.states
            on_chunk(done, states if s.sharding is None else _real(states, s.num_trials))
        due = every and (c + 1) % every == 0 and c + 1 < num_chunks
        # several processes: every process gathers the state (a collective), so only the
        # periodic checkpoints, which every process reaches at the same chunk, are written; a
        # signal (which each process gets on its own) stops without one
        if checkpoint is not None and (due or (flag and distributed.process_count() == 1)):
            losses = np.concatenate(all_losses, axis=-1)
            payload = {**_host_state(carry, s.num_trials), "done_chunks": np.int64(c + 1)}
            payload.update(meta=meta, losses=losses, seconds_parts=np.asarray(parts()))
            if distributed.is_main_process():
                ckpt.write_run(checkpoint, payload)
        if flag and done < steps:
            raise Interrupted(done, None if checkpoint is None else str(checkpoint))
        if flag:  # the signal came during the last chunk: every step is done, so finish
            prog.note("all steps were done when the signal came: returning the results")

    prog = Progress(name, steps, unit="step", enabled=progress)
    if start_chunk < num_chunks:  # a resume with every chunk done compiles no chunk
        prog.note(f"compiling (the first chunk of {chunk} steps includes it)")
    with catch_signals() as flag:
        carry, compile_seconds = scan_chunks(
            lambda cr, start, _: run_chunk(cr, s.trials, s.keys, jnp.int32(start)),
            carry,
            steps=steps,
            chunk=chunk,
            prog=prog,
            t0=t0,
            first_chunk=start_chunk,
            fields=fields,
            after=after,
        )

    rec = result_all(s.trials, carry.states)
    rec = Reconstruction(*(None if a is None else to_host(a)[: s.num_trials] for a in rec))
    best_rec, best, alive, final = _select(rec, carry, s.num_trials)
    seconds_parts = parts()
    res = RunResult(
        reconstruction=best_rec,
        restarts=rec,
        losses=np.concatenate(all_losses, axis=-1)[..., :steps],
        final_loss=final,
        best=best,
        failed=~alive,
        failed_step=to_host(carry.failed_step)[: s.num_trials],
        trial_failed=~alive.any(axis=1),
        steps=steps,
        seconds=float(sum(seconds_parts)),
        compile_seconds=compile_seconds,
        seconds_parts=seconds_parts,
    )
    return _split(res, s.settings) if s.settings else res
