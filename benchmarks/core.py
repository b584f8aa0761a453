"""Core benchmarks in the reference's settings (REFERENCE.md §6).

    python -m benchmarks.core [--only=fedavg,ig,dlg] [--repeats=3] [--out=FILE.json]

- fedavg: one FedAvg round, cnn, 10 clients x 500 CIFAR-shaped images, batch 50,
  2 local epochs (the reference: 33.7 s on this 2-core CPU).
- ig: one Inverting Gradients fedavg-mode iteration, cnn, 10 dummies, 5 unrolled
  local steps (the reference: 1.32 s).
- train_step: one SGD step of the cnn at batch 50 (the reference: ~0.168 s = 33.7 s / 200).
Compile time is reported separately from the steady-state time (min of repeats).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.allocator import tune_host_allocator
from leakjax import models
from leakjax.attacks import inverting_gradients as ig
from leakjax.fl import ClientHParams, FLSettings, client_update
from leakjax.fl.observation import fedavg_observation
from leakjax.fl.server import make_train_round, resolve_client_chunk

REFERENCE = {"fedavg_round": 33.7, "ig_fedavg_iter": 1.32, "train_step_b50": 33.7 / 200}


def _time(fn, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return first - best, best


def bench_fedavg(repeats, conv_impl="auto", client_chunk=0):
    model = models.get("cnn", 10, (32, 32, 3), conv_impl=conv_impl)
    v = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    k, n = 10, 500
    c = resolve_client_chunk(client_chunk, k)  # clients vmapped together; chunks scanned
    g = -(-k // c)
    x = rng.integers(0, 256, (g, c, n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, (g, c, n)).astype(np.int32)
    ns = np.full((g, c), n, np.int32)
    ns.reshape(-1)[k:] = 0  # padding clients
    keys = jax.random.split(jax.random.key(1), g * c).reshape(g, c)
    s = FLSettings(
        epochs=2, batch_size=50, lr=0.1, momentum=0.5, weight_decay=1e-5, client_chunk=client_chunk
    )
    tr = make_train_round(model, s, np.full(3, 0.5), np.full(3, 0.5))
    args = (v, x, y, ns, keys, jnp.float32(0.1), jnp.zeros((1,), jnp.int32))
    compile_s, t = _time(lambda: tr(*args)[0], repeats)
    return {"fedavg_round": t, "fedavg_round_compile": compile_s}


def bench_train_step(repeats, conv_impl="auto"):
    model = models.get("cnn", 10, (32, 32, 3), conv_impl=conv_impl)
    v = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (50, 32, 32, 3))
    y = jax.random.randint(jax.random.key(2), (50,), 0, 10)
    hp = ClientHParams(lr=0.1, momentum=0.5, epochs=1, batch_size=50)
    f = jax.jit(lambda v, x, y: client_update(model.apply, v, x, y, None, None, hp))
    compile_s, t = _time(lambda: f(v, x, y), repeats)
    return {"train_step_b50": t, "train_step_b50_compile": compile_s}


def bench_ig(repeats, conv_impl="auto", remat=False):
    model = models.get("cnn", 10, (32, 32, 3), conv_impl=conv_impl)
    v = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (10, 32, 32, 3))
    y = jax.random.randint(jax.random.key(2), (10,), 0, 10)
    hp = ClientHParams(lr=0.01, momentum=0.0, epochs=5, batch_size=10)
    obs = fedavg_observation(model, v, x, y, hp)
    cfg = ig.IGConfig(labels="fixed", remat=remat)
    box = (jnp.full(3, -1.0), jnp.full(3, 1.0))
    atk = ig.make(obs, model, cfg, steps=100, box=box, labels=y)
    state = atk.init(jax.random.key(3))
    step = jax.jit(atk.step)
    k = jax.random.key(4)
    compile_s, t = _time(lambda: step(state, k)[1]["loss"], repeats)
    lowered = jax.jit(atk.step).lower(state, k).compile()
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {
        "ig_fedavg_iter": t,
        "ig_fedavg_iter_compile": compile_s,
        "ig_fedavg_iter_gflop": float(cost.get("flops", float("nan"))) / 1e9,
        "ig_fedavg_iter_gbytes": float(cost.get("bytes accessed", float("nan"))) / 1e9,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="train_step,ig,fedavg")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--conv_impl", default="auto")
    ap.add_argument("--client_chunk", type=int, default=0, help="clients vmapped (0: auto)")
    ap.add_argument("--tune_alloc", action="store_true", help="tune_host_allocator()")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    tuned = tune_host_allocator() if args.tune_alloc else False
    out = {
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "conv_impl": args.conv_impl,
        "client_chunk": args.client_chunk,
        "host_allocator_tuned": tuned,
    }
    todo = args.only.split(",")
    if "train_step" in todo:
        out.update(bench_train_step(args.repeats, args.conv_impl))
    if "ig" in todo:
        out.update(bench_ig(args.repeats, args.conv_impl))
    if "fedavg" in todo:
        out.update(bench_fedavg(max(1, args.repeats - 1), args.conv_impl, args.client_chunk))
    for k, ref in REFERENCE.items():
        if k in out:
            out[k + "_speedup_vs_reference"] = ref / out[k]
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
