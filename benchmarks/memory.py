"""Peak memory of differentiating through a client's local training, against its length.

    python -m benchmarks.memory [--steps=5,25,50,100,250] [--attacks=ig,dlf,dlf_epochs]
                                [--model=cnn] [--size=16] [--out=FILE.json]

For IG (fedavg mode) and DLF, one attack step (objective, its gradient through the unrolled
local training, the optimizer update) is compiled, not run, for a client that takes ``T``
local steps, and XLA's ``memory_analysis()`` of the compiled step is read: ``temp`` is the
scratch memory (the saved carries and activations), ``peak`` = temp + arguments + outputs -
aliased. Layouts (batch 2 throughout):

- ``ig``: 2 images, ``T`` epochs (only the unrolled length varies);
- ``dlf``: one epoch of ``2T`` images (DLF optimizes one dummy per image: the dummies grow
  with ``T`` too, by 3 KiB each at 16x16x3);
- ``dlf_epochs``: 2 images, ``T`` epochs (DLF keeps a copy of the dummies per epoch, so
  this also grows the per-epoch terms of its objective).

Three variants of the simulated client:

- ``off``: plain ``lax.scan`` (``remat=False``): every step's carry and activations stored.
- ``step``: a ``jax.checkpoint`` around each step only (what ``remat=True`` did before
  session 3): activations recomputed, but every step's carry (parameters + optimizer
  state) still stored by the scan, so memory stays linear in ``T``.
- ``sqrt``: ``remat=True`` now (`leakjax.fl.client._remat_scan`): two-level checkpointing,
  O(sqrt(T)) carries.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import jax
import jax.numpy as jnp

from leakjax import models
from leakjax.attacks import dlf
from leakjax.attacks import inverting_gradients as ig
from leakjax.fl import ClientHParams
from leakjax.fl import client as fl_client
from leakjax.fl.observation import fedavg_observation

VARIANTS = ("off", "step", "sqrt")


def _step_only_scan(step, carry, xs):
    return jax.lax.scan(jax.checkpoint(step), carry, xs)


@contextlib.contextmanager
def _variant(name):
    """Select the remat scheme of `client_update` (``step`` patches the old one in)."""
    old = fl_client._remat_scan
    if name == "step":
        fl_client._remat_scan = _step_only_scan
    try:
        yield name != "off"
    finally:
        fl_client._remat_scan = old


def _attack(kind, model, obs, labels, remat):
    box = (jnp.full(3, -1.0), jnp.full(3, 1.0))
    if kind == "ig":
        cfg = ig.IGConfig(labels="fixed", remat=remat)
        return ig.make(obs, model, cfg, steps=100, box=box, labels=labels)
    if kind in ("dlf", "dlf_epochs"):
        return dlf.make(obs, model, dlf.DLFConfig(remat=remat), steps=100, box=box, labels=labels)
    raise ValueError(kind)


def measure(kind, local_steps, variant, model_name="cnn", size=16, batch=2):
    """Compile one attack step and return XLA's memory analysis (bytes) and compile time."""
    model = models.get(model_name, 10, (size, size, 3))
    v = model.init(jax.random.key(0))
    one_epoch = kind == "dlf"
    images = batch * local_steps if one_epoch else batch
    epochs = 1 if one_epoch else local_steps
    x = jax.random.uniform(jax.random.key(1), (images, size, size, 3), minval=-1, maxval=1)
    y = jnp.arange(images, dtype=jnp.int32) % 10
    hp = ClientHParams(lr=0.01, momentum=0.0, epochs=epochs, batch_size=batch)
    obs = fedavg_observation(model, v, x, y, hp)
    with _variant(variant) as remat:
        atk = _attack(kind, model, obs, y, remat)
        state = atk.init(jax.random.key(2))
        t0 = time.perf_counter()
        compiled = jax.jit(atk.step).lower(state, jax.random.key(3)).compile()
        compile_s = time.perf_counter() - t0
    m = compiled.memory_analysis()
    temp = int(m.temp_size_in_bytes)
    peak = temp + int(m.argument_size_in_bytes) + int(m.output_size_in_bytes)
    peak -= int(m.alias_size_in_bytes)
    return {
        "name": f"memory_{kind}",
        "setting": f"{model_name} {size}x{size}x3, {images} images, batch {batch}, "
        f"{epochs} epoch(s): {local_steps} local steps",
        "attack": kind,
        "local_steps": local_steps,
        "remat": variant,
        "temp_bytes": temp,
        "peak_bytes": peak,
        "param_bytes": 4 * models.param_count(v),
        "compile_s": compile_s,
    }


def run(
    steps=(5, 25, 50, 100, 250),
    kinds=("ig", "dlf", "dlf_epochs"),
    variants=VARIANTS,
    model="cnn",
    size=16,
    log=print,
):
    rows = []
    for kind in kinds:
        for t in steps:
            for var in variants:
                r = measure(kind, t, var, model, size)
                log(
                    f"[memory] {kind} T={t:4d} remat={var:4s}: temp {r['temp_bytes'] / 2**20:9.1f}"
                    f" MiB (compile {r['compile_s']:.1f} s)"
                )
                rows.append(r)
    return rows


def table(rows) -> str:
    """Markdown: temp MiB per (attack, T) and variant."""
    variants = [v for v in VARIANTS if any(r["remat"] == v for r in rows)]
    lines = [
        "| attack | local steps | " + " | ".join(f"temp MiB, remat={v}" for v in variants) + " |",
        "|---|---|" + "---|" * len(variants),
    ]
    seen = []
    for r in rows:
        if (r["attack"], r["local_steps"]) not in seen:
            seen.append((r["attack"], r["local_steps"]))
    for kind, t in seen:
        cells = []
        for v in variants:
            m = [r for r in rows if (r["attack"], r["local_steps"], r["remat"]) == (kind, t, v)]
            cells.append(f"{m[0]['temp_bytes'] / 2**20:.1f}" if m else "")
        lines.append(f"| {kind} | {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="5,25,50,100,250")
    ap.add_argument("--attacks", default="ig,dlf,dlf_epochs")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    rows = run(
        tuple(int(s) for s in args.steps.split(",")),
        tuple(args.attacks.split(",")),
        tuple(args.variants.split(",")),
        args.model,
        args.size,
    )
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
