"""A client's local training with its big dense kernels kept factored (exact, float32).

A dense layer ``y = a @ W + b`` fed ``r`` rows has the kernel gradient ``G = a^T d`` (``d =
dL/dy``), of rank at most ``r``. Through SGD with momentum and weight decay every iterate is
linear in the start and the gradients (`leakjax.fl.schedule.sgd_weights`), so after s local
steps the kernel is

    W_s = alpha_s W_0 + A^T diag(c_s) D

where ``A`` / ``D`` stack the inputs / output gradients of every earlier step (one row per
minibatch row). A step's forward pass then needs ``a @ W_0`` (the product the dense client
computes too) plus two products with the factors (``(a @ A^T) * c_s @ D``), and its backward
pass never forms an ``in x out`` gradient, momentum buffer or update: the client's dense
work on the kernel (T gradients, T SGD updates, and, for an attacker who differentiates
through the simulation, their reverse pass) becomes one ``[in, T B] x [T B, out]`` product
at the end, where ``W_0 - W_T`` is materialized for the matching loss.

This is for an attacker's simulation (`leakjax.attacks.simulation`): `simulated_delta` is
`Client.delta` with the kernels `factored_kernels` picks factored, for a client without a
defense whose every minibatch has a real row (no ``mask``: the steps are never skipped). The
steps are unrolled (a scan with fixed-size factor buffers measured slower; notes/factored-
client). The other parameters, BatchNorm statistics and the optimizer follow `client_step`.
"""

from __future__ import annotations

import contextlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from leakjax.fl.client import (
    ApplyFn,
    ClientHParams,
    _sgd,
    loss_and_state,
    unrolled_local_steps,
)
from leakjax.fl.schedule import batch_schedule, sgd_weights
from leakjax.types import Array, Variables

MODES = ("auto", "on", "off")  # attack.factored
# 'auto' factors a kernel when its rank-r form (r: rows of every step together) is at least
# SIMULATION_MIN_SAVING times smaller than the matrix, which has at least MIN_ELEMENTS
# entries, and the client takes at most MAX_STEPS local steps (they are unrolled: compile time
# grows with them).
MIN_SAVING = 4
MIN_ELEMENTS = 1 << 16
MAX_STEPS = 32
# The simulated client's threshold (`factored_kernels`): measured (benchmarks/restarts.py
# --groups=saving, BUILD_NOTES "Where 'auto' factors and unrolls") DLF cnn3's fc1 factored
# 1.23x / 1.08x / 1.07x faster than dense unrolled, with 19-21% less memory, at a saving of
# 3.9 / 1.95 / 1.3; `attacks.lowrank` (gradient mode) keeps MIN_SAVING, not measured there.
SIMULATION_MIN_SAVING = 1.3
# The dense simulation is unrolled up to UNROLL_MAX_STEPS steps (`unrolls`): the dense IG cnn
# step measured 1.40x / 1.18x / 1.03x faster unrolled at 5 / 8 / 12 steps (1.32x the memory
# at 12), 0.88-0.90x (and 1.4-1.6x the memory) at 16 and 32 (BUILD_NOTES "Where 'auto'
# factors and unrolls"): the crossover lies between 12 and 16 steps.
UNROLL_MAX_STEPS = 8


def worth_factoring(rows: int, fin: int, fout: int, min_saving: float = MIN_SAVING) -> bool:
    """Whether an ``fin x fout`` kernel is cheaper as ``rows`` rank-one factors: at least
    ``min_saving`` times fewer numbers, and at least `MIN_ELEMENTS` entries."""
    return fin * fout >= MIN_ELEMENTS and rows * (fin + fout) * min_saving <= fin * fout


def unrolls(steps: int, remat: bool, mode: str) -> bool:
    """Whether `simulated_delta` traces a dense simulation's ``steps`` local steps unrolled
    (`leakjax.fl.client.unrolled_local_steps`): not for 'off' (that is `Client.delta` itself),
    nor with ``remat`` (its two-level scan is for memory), nor above `UNROLL_MAX_STEPS` (measured
    slower and larger than the scan at 16 steps, faster and smaller at 5)."""
    return mode != "off" and not remat and steps <= UNROLL_MAX_STEPS


def is_dense_call(context) -> bool:
    """Whether a `flax.linen.intercept_methods` context is an ``nn.Dense`` being called."""
    return isinstance(context.module, nn.Dense) and context.method_name == "__call__"


def dense_calls(apply: ApplyFn, variables, x: Array, mask, train: bool) -> dict[tuple, tuple]:
    """``{module path: (rows, in, out)}`` of the Denses called exactly once, on 2-D inputs,
    by one forward pass on ``x`` (shapes only: nothing is computed)."""
    seen: dict[tuple, list] = {}

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if is_dense_call(context):
            seen.setdefault(tuple(context.module.path), []).append((args[0].shape, out.shape))
        return out

    def run(v, x):
        with nn.intercept_methods(record):
            return apply(v, x, train=train, mask=mask)

    jax.eval_shape(run, variables, x)
    found = {}
    for path, calls in seen.items():
        if len(calls) != 1 or len(calls[0][0]) != 2:
            continue
        (rows, fin), (_, fout) = calls[0]
        found[path] = (rows, fin, fout)
    return found


def factored_kernels(
    apply: ApplyFn, variables: Variables, xb: Array, steps: int, mode: str = "auto"
) -> dict[tuple, tuple]:
    """``{Dense path: (rows, in, out)}`` whose kernels a client trained for ``steps`` steps on
    minibatches shaped like ``xb`` keeps factored: none for 'off', every Dense called once on
    2-D inputs for 'on', those `worth_factoring` over all the steps' rows for 'auto'."""
    if mode not in MODES:
        raise ValueError(f"factored must be one of {MODES}, got {mode!r}")
    if mode == "off" or (mode == "auto" and steps > MAX_STEPS):
        return {}
    flat = traverse_util.flatten_dict(variables["params"])
    valid = jnp.ones((xb.shape[0],), bool)
    calls = {
        path: shape
        for path, shape in dense_calls(apply, variables, xb, valid, True).items()
        if path + ("kernel",) in flat
    }
    if mode == "on":
        return calls
    return {
        p: s
        for p, s in calls.items()
        if worth_factoring(steps * s[0], s[1], s[2], SIMULATION_MIN_SAVING)
    }


def factored_delta(
    apply: ApplyFn,
    variables: Variables,
    x: Array,
    y: Array,
    hp: ClientHParams,
    schedule: tuple[Array, Array],
    kernels: dict[tuple, tuple],
):
    """``before - after`` of `leakjax.fl.client_update` (no defense; every step taken) with
    the ``kernels`` (`factored_kernels`) kept factored; the same params tree, dense."""
    idx, valid = schedule
    steps, b = idx.shape
    alpha, coef = sgd_weights(steps, hp.lr, hp.momentum, hp.weight_decay)
    flat = traverse_util.flatten_dict(variables["params"])
    fixed = {p + ("kernel",): flat[p + ("kernel",)] for p in kernels}
    rest0 = {k: v for k, v in flat.items() if k not in fixed}
    opt = _sgd(hp)
    rest, opt_state, v = rest0, opt.init(rest0), dict(variables)
    a_rows = {p: [] for p in kernels}  # every step's Dense inputs [b, in] ...
    d_rows = {p: [] for p in kernels}  # ... and output gradients [b, out]

    for s in range(steps):
        # the factors of the steps so far and their weights in W_s
        past = {p: (jnp.concatenate(a_rows[p]), jnp.concatenate(d_rows[p])) for p in kernels if s}
        c_s = jnp.repeat(coef[s, :s], b)

        def loss(rest, probes, v=v, s=s, past=past, c_s=c_s):
            inputs = {}

            def tap(next_fun, args, kwargs, context):
                path = tuple(context.module.path) if is_dense_call(context) else None
                if path not in probes:
                    return next_fun(*args, **kwargs)
                a = args[0]
                inputs[path] = a
                # alpha_s a @ W_0 + b (the kernel is W_0), then the factored part
                out = next_fun(alpha[s] * a, *args[1:], **kwargs) + probes[path]
                if path in past:
                    pa, pd = past[path]
                    out = out + ((a @ pa.T) * c_s) @ pd
                return out

            full = traverse_util.unflatten_dict({**rest, **fixed})
            with nn.intercept_methods(tap):
                value, new_v = loss_and_state(
                    apply, full, v, jnp.take(x, idx[s], 0), jnp.take(y, idx[s], 0), valid[s], True
                )
            return value, (new_v, inputs)

        probes = {p: jnp.zeros((r, fout), x.dtype) for p, (r, _, fout) in kernels.items()}
        (g_rest, g_probes), (new_v, inputs) = jax.grad(loss, argnums=(0, 1), has_aux=True)(
            rest, probes
        )
        updates, opt_state = opt.update(g_rest, opt_state, rest)
        rest = optax.apply_updates(rest, updates)
        v = dict(new_v)
        for p in kernels:
            a_rows[p].append(inputs[p])
            d_rows[p].append(g_probes[p])

    delta = jax.tree.map(jnp.subtract, rest0, rest)
    c_t = jnp.repeat(coef[steps], b)
    for p in kernels:
        a, d = jnp.concatenate(a_rows[p]), jnp.concatenate(d_rows[p])
        # W_0 - W_T = (1 - alpha_T) W_0 - A^T diag(c_T) D
        delta[p + ("kernel",)] = (1.0 - alpha[steps]) * fixed[p + ("kernel",)] - (
            a * c_t[:, None]
        ).T @ d
    return traverse_util.unflatten_dict(delta)


def simulated_delta(
    client,
    variables: Variables,
    x: Array,
    y: Array,
    key=None,
    *,
    schedule: tuple[Array, Array] | None = None,
    remat: bool = False,
    mode: str = "auto",
):
    """``client.delta(variables, x, y, None, key, ...)`` (an attacker's simulation, no mask),
    computed by `factored_delta` when the client has no defense and `factored_kernels` picks
    a kernel for ``mode`` ('auto' also leaves a ``remat`` simulation dense); a dense
    simulation's steps unrolled where `unrolls`; 'off' is `Client.delta` itself."""
    hp = client.hp
    if mode == "off":
        return client.delta(variables, x, y, None, key, remat=remat, schedule=schedule)
    steps = schedule
    if steps is None:
        steps = batch_schedule(jnp.ones((x.shape[0],), bool), key, hp.epochs, hp.batch_size)
    t, b = steps[0].shape
    if not client.defense and not (remat and mode == "auto"):
        xb = jax.ShapeDtypeStruct((b,) + tuple(x.shape[1:]), x.dtype)
        kernels = factored_kernels(client.model.apply, variables, xb, t, mode)
        if kernels:
            return factored_delta(client.model.apply, variables, x, y, hp, steps, kernels)
    with unrolled_local_steps() if unrolls(t, remat, mode) else contextlib.nullcontext():
        return client.delta(variables, x, y, None, key, remat=remat, schedule=schedule)
