"""DMGAN round benchmark: one DMGAN round (the honest clients' `make_train_round`, the
adversary's jitted `leakjax.attacks.dmgan.make_attacker`, the weighted mix `simulate` does with
a ``client_override``, and judging the generated images) and its parts, on MNIST-shaped
random data.

    python -m benchmarks.dmgan [--images=4800] [--clients=10] [--g_steps=100]
                               [--d_width=64] [--g_width=64] [--repeats=2] [--out=FILE.json]

The defaults are the reference's dmgan.sh: MNIST (28x28x1), 10 clients (one the attacker),
each with 4,800 training images (60,000 / 10, 80% kept for training), batch 50, 2 local
epochs, the width-64 discriminator as the global model, 100 generator steps at batch 64 per
round, as many fakes as the attacker's real images. Parts timed separately (each jitted,
steady state = minimum over ``--repeats`` calls, compile = first call minus that): the
generator's ``g_steps`` Adam steps against the frozen global model; the honest clients'
local training (`make_train_round`, vmapped); the adversary's update (generator and its local
training on real + fake data); the whole round (both, the aggregation, judging the images).
The reference has no DMGAN timing (REFERENCE.md §6). Prints one JSON line; the 1-minute load
average is included because the CPU may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from leakjax.attacks import dmgan, dmgan_judge
from leakjax.fl.server import FLSettings, make_train_round, resolve_client_chunk
from leakjax.models.generators import DMGANGenerator

SHAPE = (28, 28, 1)
C = 10


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


def bench(images=4800, clients=10, g_steps=100, d_width=64, g_width=64, repeats=2):
    model = dmgan.federation_model(dmgan.DISCRIMINATOR, C, SHAPE, d_width=d_width)
    gen = DMGANGenerator(SHAPE, width=g_width)
    judge_model = dmgan.federation_model(dmgan.DISCRIMINATOR, C - 1, SHAPE, d_width=d_width)
    settings = FLSettings(epochs=2, batch_size=50, lr=0.1)
    att = dmgan.DMGANConfig(num_fake=images, g_steps=g_steps)
    mean, std = jnp.float32(0.5), jnp.float32(0.5)
    ks = jax.random.split(jax.random.key(0), 8)
    gvars = model.init(ks[0])
    gstate = dmgan.init_generator(gen, att, ks[1])
    h = clients - 1
    c = resolve_client_chunk(0, h)  # honest clients vmapped together (CPU: 1)
    g = -(-h // c)
    hx = jax.random.randint(ks[2], (g, c, images) + SHAPE, 0, 256).astype(jnp.uint8)
    hy = jax.random.randint(ks[3], (g, c, images), 0, C)
    hn = (jnp.arange(g * c) < h).reshape(g, c) * images
    hkeys = jax.random.split(ks[4], g * c).reshape(g, c)
    ax = jax.random.randint(ks[5], (images,) + SHAPE, 0, 256).astype(jnp.uint8)
    ay = jax.random.randint(ks[6], (images,), 0, C)
    jd = dmgan_judge.Judge(
        judge_model.init(ks[7]), jnp.zeros((100, int(np.prod(SHAPE)))), jnp.arange(100)
    )
    fixed_z = jax.random.normal(ks[7], (64, att.noise_dim))
    lr = jnp.float32(0.1)

    gen_fn = jax.jit(
        lambda s: dmgan.train_generator(gen, model.apply, gvars, s, ks[0], att, mean, std)
    )
    honest = make_train_round(model, settings, mean, std)
    attacker = dmgan.make_attacker(model, gen, settings, att, C - 1, images, mean, std)
    none = jnp.zeros((0,), jnp.int32)

    @jax.jit
    def score(state, before, after):
        x = dmgan.sample(gen, state, fixed_z)
        return dmgan_judge.score(
            judge_model, jd, model.apply, x, before, after, 3, C - 1, mean, std
        )

    def round_fn():
        h_mean, _, _ = honest(gvars, hx, hy, hn, hkeys, lr, none)
        avars, state, _ = attacker(gvars, gstate, ax, ay, jnp.int32(images), ks[0], lr)
        n_h, w = float(jnp.sum(hn)), float(images)
        new = jax.tree.map(lambda a, b: (n_h * a + w * b) / (n_h + w), h_mean, avars)
        return score(state, gvars, new)

    out = {
        "benchmark": "dmgan_round",
        "images_per_client": images,
        "clients": clients,
        "g_steps": g_steps,
        "d_width": d_width,
        "g_width": g_width,
        "local_steps_per_client": 2 * (images // 50),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
    }
    parts = {
        "generator": lambda: gen_fn(gstate),
        "honest_clients": lambda: honest(gvars, hx, hy, hn, hkeys, lr, none),
        "attacker": lambda: attacker(gvars, gstate, ax, ay, jnp.int32(images), ks[0], lr),
        "round": round_fn,
    }
    for name, fn in parts.items():
        compile_s, step_s = _time(fn, repeats)
        out[f"{name}_compile_s"] = round(compile_s, 2)
        out[f"{name}_s"] = round(step_s, 3)
        print(f"[dmgan bench] {name}: {step_s:.2f} s (compile {compile_s:.1f} s)", flush=True)
    out["load_avg_1min"] = os.getloadavg()[0]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4800)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--g_steps", type=int, default=100)
    p.add_argument("--d_width", type=int, default=64)
    p.add_argument("--g_width", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default="")
    a = p.parse_args()
    res = bench(a.images, a.clients, a.g_steps, a.d_width, a.g_width, a.repeats)
    line = json.dumps(res)
    print(line)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
