"""Which convolution implementation is fastest here? (``leakjax.models.conv.IMPLS``)

For the reference's CIFAR ``cnn`` (8.41M parameters) and each ``conv_impl`` this measures:

- ``train b50``: one jitted SGD training step at batch 50 (forward, backward, update), the
  FedAvg client's inner loop;
- ``IG iter``: one "Inverting Gradients, fedavg mode" iteration proxy (Geiping et al., arXiv
  2003.14053): the gradient with respect to a ``[10, 32, 32, 3]`` input of the cosine distance
  between the parameter update of 5 unrolled SGD steps (batch 10, ``lax.scan``) and a fixed
  target update, i.e. grad-of-grad through the client's training;
- ``compile``: seconds to lower and compile both (no persistent cache).

Runs are interleaved across implementations (the CPU is shared) and the minimum is kept.

    python -m benchmarks.conv_impl                       # all impls, host allocator tuned
    python -m benchmarks.conv_impl --impls xla,hybrid --repeats 10
    python -m benchmarks.conv_impl --no-tune-alloc       # glibc malloc defaults
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from benchmarks.allocator import tune_host_allocator
from leakjax import models
from leakjax.models import conv


def _sgd(params, grads, lr):
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


def build(impl: str, batch: int = 50, ig_batch: int = 10, ig_steps: int = 5):
    """Returns ``{name: (jitted fn, args)}`` for the training step and the IG proxy."""
    model = models.get("cnn", 10, (32, 32, 3), conv_impl=impl)
    key = jax.random.key(0)
    kx, kp, kt = jax.random.split(key, 3)
    variables = model.init(kp)
    x = jax.random.normal(kx, (batch, 32, 32, 3), jnp.float32)
    y = jnp.arange(batch) % 10

    def loss_fn(params, x, y):
        logits, _ = model.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def train_step(params, x, y):
        return _sgd(params, jax.grad(loss_fn)(params, x, y), 0.1)

    params = variables["params"]
    target = jax.tree.map(
        lambda p: jax.random.normal(kt, p.shape, p.dtype), params
    )  # a fixed "observed" update

    def ig_objective(xd, params, yd, target):
        def step(p, _):
            return _sgd(p, jax.grad(loss_fn)(p, xd, yd), 1e-2), None

        p_end, _ = jax.lax.scan(step, params, None, length=ig_steps)
        delta = jax.tree.leaves(jax.tree.map(jnp.subtract, params, p_end))
        tgt = jax.tree.leaves(target)
        dot = sum(jnp.vdot(a, b) for a, b in zip(delta, tgt, strict=True))
        na = jnp.sqrt(sum(jnp.vdot(a, a) for a in delta))
        nb = jnp.sqrt(sum(jnp.vdot(b, b) for b in tgt))
        return 1.0 - dot / (na * nb)

    ig_iter = jax.grad(ig_objective)
    return {
        "train b50": (train_step, (params, x, y)),
        "IG iter": (ig_iter, (x[:ig_batch], params, y[:ig_batch], target)),
    }


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of an n^3 float32 matmul now: how busy the (shared) machine is."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impls", default=",".join(i for i in conv.IMPLS if i != "auto"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-tune-alloc", action="store_true")
    parser.add_argument("--budget", type=float, default=20.0, help="max seconds per cell")
    parser.add_argument("--only", default="", help="'train' or 'ig': measure just that")
    args = parser.parse_args()
    tuned = False if args.no_tune_alloc else tune_host_allocator()
    impls = args.impls.split(",")
    print(
        f"jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()[0].device_kind},"
        f" host allocator tuned: {tuned}, 'auto' = {conv.resolve_impl('auto')}"
    )
    print(f"calibration: 1024^3 matmul {matmul_gflops():.0f} GFLOP/s (before)")
    compiled, compile_s, best, flops = {}, {}, {}, {}
    for impl in impls:
        compile_s[impl] = 0.0
        for name, (fn, fargs) in build(impl).items():
            if args.only and not name.lower().startswith(args.only.lower()):
                continue
            t0 = time.perf_counter()
            exe = jax.jit(fn).lower(*fargs).compile()
            compile_s[impl] += time.perf_counter() - t0
            jax.block_until_ready(exe(*fargs))  # warm-up
            compiled[impl, name] = (exe, fargs)
            best[impl, name] = float("inf")
            cost = exe.cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost
            flops[impl, name] = (cost or {}).get("flops", float("nan"))
    spent = dict.fromkeys(compiled, 0.0)
    for _ in range(args.repeats):  # interleaved, so load changes hit every impl alike
        for key, (exe, fargs) in compiled.items():
            if spent[key] > args.budget:
                continue
            t0 = time.perf_counter()
            jax.block_until_ready(exe(*fargs))
            dt = time.perf_counter() - t0
            spent[key] += dt
            best[key] = min(best[key], dt)
    print(f"calibration: 1024^3 matmul {matmul_gflops():.0f} GFLOP/s (after)")
    print(
        "\n| impl | train step b50 (ms) | IG proxy iteration (ms) | compile (s) | GFLOP train/IG |"
    )
    print("|---|---|---|---|---|")
    nan = float("nan")
    for impl in impls:
        tr, ig = best.get((impl, "train b50"), nan), best.get((impl, "IG iter"), nan)
        fl = f"{flops.get((impl, 'train b50'), nan) / 1e9:.2f} / "
        fl += f"{flops.get((impl, 'IG iter'), nan) / 1e9:.2f}"
        print(f"| {impl} | {tr * 1e3:.0f} | {ig * 1e3:.0f} | {compile_s[impl]:.1f} | {fl} |")


if __name__ == "__main__":
    main()
