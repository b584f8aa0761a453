"""GGL per-generation benchmark: one CMA-ES generation (ask, the population's fitness in one
vmapped call, tell) against the reference's cnn on CIFAR-shaped 32x32x3 data.

    python -m benchmarks.ggl [--populations=32,64] [--repeats=5] [--mode=gradient]
                             [--model=cnn] [--es=auto] [--chunks=0,8] [--out=FILE.json]

The generator is the reference's GGL generator (dim 128, 128-d latent; its weights do not
change the timing, so an untrained one is used) and one image is searched, as in the
reference (attack/ggl.py). For each population size: the steady-state time of the jitted
attack step (the minimum over ``--repeats`` calls), its compile time (first call minus steady
state), and the time per fitness evaluation (step / population), for the whole population in one
vmap (``--chunks`` 0, the default) and for other ``population_chunk`` values (a ``lax.map``
over vmapped chunks: less memory, and on CPU less memory traffic). ``single_eval`` is one
candidate's fitness on its own (jitted), i.e. what the reference's one-candidate-per-ask
loop pays per evaluation before Python and nevergrad overheads. Prints one JSON line; the
1-minute load average is included because the CPU may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp

from benchmarks.allocator import tune_host_allocator
from leakjax import models
from leakjax.attacks import ggl
from leakjax.fl import ClientHParams
from leakjax.fl.observation import fedavg_observation, gradient_observation

BOX = (jnp.full(3, -1.0), jnp.full(3, 1.0))
SHAPE = (32, 32, 3)


def _time(fn, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return max(first - best, 0.0), best


def _observation(model_name, mode):
    model = models.get(model_name, 10, SHAPE)
    v = model.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (1,) + SHAPE, minval=-1, maxval=1)
    y = jnp.array([3])
    if mode == "gradient":
        return model, gradient_observation(model, v, x, y)
    hp = ClientHParams(lr=0.1, momentum=0.0, epochs=1, batch_size=1)
    return model, fedavg_observation(model, v, x, y, hp)


def bench(populations, repeats, mode="gradient", model_name="cnn", es="auto", chunks=(0,)):
    model, obs = _observation(model_name, mode)
    out = {}
    for p in populations:
        for c in chunks:
            cfg = ggl.GGLConfig(population=p, es=es, population_chunk=c)
            atk = ggl.make(obs, model, cfg, steps=1, box=BOX)
            state = atk.init(jax.random.key(2))
            step = jax.jit(atk.step)
            k = jax.random.key(3)
            compile_s, t = _time(lambda: step(state, k)[1]["loss"], repeats)
            name = f"pop{p}" + (f"_chunk{c}" if c else "")
            out[f"{name}_generation_s"] = t
            out[f"{name}_compile_s"] = compile_s
            out[f"{name}_per_eval_ms"] = 1e3 * t / p
    module, variables, latent = ggl.load_generator(ggl.GGLConfig(), SHAPE)
    f = ggl.fitness_fn(
        obs, model, ggl.image_fn(module, variables, BOX), jnp.array([3]), ggl.GGLConfig()
    )
    one = jax.jit(f)
    z = jax.random.normal(jax.random.key(4), (1, latent))
    compile_s, t = _time(lambda: one(z), repeats)
    out["single_eval_ms"] = 1e3 * t
    out["single_eval_compile_s"] = compile_s
    out["strategy"] = ggl.strategy_name(es, latent)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--populations", default="32,64")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mode", default="gradient", choices=("gradient", "fedavg"))
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--es", default="auto", choices=ggl.STRATEGIES)
    ap.add_argument("--chunks", default="0,8", help="population_chunk values (0: one vmap)")
    ap.add_argument("--no_tune_alloc", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    tuned = False if args.no_tune_alloc else tune_host_allocator()
    out = {
        "benchmark": "ggl",
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "model": args.model,
        "mode": args.mode,
        "image_shape": list(SHAPE),
        "tuned_host_allocator": tuned,
        "load_avg_1min_before": os.getloadavg()[0],
    }
    pops = [int(p) for p in args.populations.split(",")]
    chunks = tuple(int(c) for c in args.chunks.split(","))
    out.update(bench(pops, args.repeats, args.mode, args.model, args.es, chunks))
    out["load_avg_1min_after"] = os.getloadavg()[0]
    print(json.dumps(out))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
