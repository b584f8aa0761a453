"""Attack quality under each precision policy (`leakjax.precision`), on identical observations.

    python -m benchmarks.precision_quality --out=FILE.json [--steps_scale=1.0] [--image_size=16]

Real CIFAR-10 images (``$LEAKJAX_SHARED_DATA``/``--data_dir``; resized to ``--image_size``),
the cnn, and four attacks: IG in gradient mode (1 image), IG in fedavg mode (4 images, 2 epochs
of batch 2), DLF (4 images, 2 epochs of batch 2) and DLG (1 image, L-BFGS). Each observation is
made once, in f32; then under f32, tf32 and bf16 (the attacker's side only, as
``precision.attack``) the script reports

- ``grad_rel_err``: ``||g_p - g_f32|| / ||g_f32||`` of the gradient of the attack's matching
  objective (IG: cosine; DLG: l2; DLF: its layer-weighted l2 on epoch copies) w.r.t. the same
  random dummy images, and ``objective`` (its value);
- ``psnr_mean`` / ``psnr_max``: the reconstruction after the attack's steps (same key), scored by
  `leakjax.metrics.evaluate` (Hungarian-matched for DLF and IG fedavg).

On CPU, tf32/bf16 are the operand-rounding emulation of `leakjax.precision` (model convs and
dense layers); the timings are not a speed measurement (emulation adds work).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from leakjax import attacks, data, metrics, models, precision
from leakjax.attacks import dlf, losses
from leakjax.attacks.simulation import simulated_update
from leakjax.config import base_config
from leakjax.fl import ClientHParams
from leakjax.fl.observation import fedavg_observation, gradient_observation

# name: (attack, mode, images, epochs, batch, steps, matching loss)
CASES = {
    "ig_gradient": ("ig", "gradient", 1, 1, 1, 400, "cosine"),
    "ig_fedavg": ("ig", "fedavg", 4, 2, 2, 200, "cosine"),
    "dlf": ("dlf", "fedavg", 4, 2, 2, 200, "dlf"),
    "dlg": ("dlg", "gradient", 1, 1, 1, 40, "l2"),
}


def _data(data_dir: str, size: int, n: int):
    ds = data.load("cifar10", data_dir or None, "auto", image_size=size, seed=0)
    mean, std = data.normalization(ds.info, "dataset")
    x = data.normalize(ds.train_images[:n], mean, std)
    return jnp.asarray(x), jnp.asarray(ds.train_labels[:n], jnp.int32), mean, std


def _objective(case, model, obs, labels, factored):
    attack, mode, n, epochs, *_ = CASES[case]
    if case == "dlf":
        weights = jnp.ones((len(jax.tree.leaves(obs.update)),), jnp.float32)

        def f(x):
            xs = jnp.tile(x[None], (epochs,) + (1,) * x.ndim)
            ys = jnp.tile(labels[None], (epochs, 1))
            return losses.layer_weighted_l2(dlf.simulate(model, obs, xs, ys), obs.update, weights)

        return f
    match = losses.MATCHING[CASES[case][6]]
    return lambda x: match(simulated_update(model, obs, x, labels, factored=factored), obs.update)


def run_case(case, model, variables, x, y, mean, std, steps_scale, policies):
    attack, mode, n, epochs, batch, steps, _ = CASES[case]
    x, y = x[:n], y[:n]
    if mode == "gradient":
        obs = gradient_observation(model, variables, x, y)
    else:
        hp = ClientHParams(lr=0.05, momentum=0.0, epochs=epochs, batch_size=batch)
        obs = fedavg_observation(model, variables, x, y, hp)
    steps = max(1, int(steps * steps_scale))
    acfg = base_config().attack
    acfg.name, acfg.mode, acfg.steps, acfg.labels = attack, mode, steps, "oracle"
    spec = attacks.get(attack)
    cfg = spec.bind(acfg)
    labels = np.sort(np.asarray(y)) if attack == "dlf" else np.asarray(y)
    lo, hi = data.box(mean, std)
    box = (jnp.asarray(lo), jnp.asarray(hi))
    probe = jax.random.uniform(jax.random.key(7), x.shape, minval=-1.0, maxval=1.0)
    truth = np.clip(np.asarray(data.denormalize(x, mean, std)), 0, 1)
    rows, ref = [], None
    for policy in policies:
        with precision.scope(policy):
            fn = _objective(case, model, obs, jnp.asarray(labels), getattr(cfg, "factored", "off"))
            val, g = jax.jit(jax.value_and_grad(fn))(probe)
            t0 = time.perf_counter()
            atk = spec.build(obs, model, acfg, box=box, labels=labels)
            res = attacks.run(
                atk,
                jax.random.key(1),
                steps=steps,
                chunk=min(steps, 50),
                progress=False,
                name=f"{case}@{policy}",
            )
            seconds = time.perf_counter() - t0
        ref = g if ref is None else ref
        rec = np.asarray(res.reconstruction.images)[0]
        rec = rec.reshape((-1,) + rec.shape[-3:])
        ev = metrics.evaluate(np.asarray(data.denormalize(rec, mean, std)), truth, ordered=(n == 1))
        rows.append(
            {
                "case": case,
                "attack": attack,
                "mode": mode,
                "images": n,
                "steps": steps,
                "precision": policy,
                "objective": float(val),
                "grad_rel_err": float(jnp.linalg.norm(g - ref) / jnp.linalg.norm(ref)),
                "psnr_mean": ev["psnr_mean"],
                "psnr_max": ev["psnr_max"],
                "final_loss": float(np.asarray(res.final_loss).min()),
                "seconds": seconds,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="precision_quality.json")
    ap.add_argument("--data_dir", default="")
    ap.add_argument("--image_size", type=int, default=16)
    ap.add_argument("--steps_scale", type=float, default=1.0)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--precision", default=",".join(precision.POLICIES))
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    policies = [p for p in args.precision.split(",") if p]
    bad = [c for c in cases if c not in CASES] + [
        p for p in policies if p not in precision.POLICIES
    ]
    if bad or policies[:1] != ["f32"]:
        ap.error(f"unknown {bad} (cases {list(CASES)}; --precision starts with f32)")
    data_dir = args.data_dir or os.path.join(
        os.environ.get("LEAKJAX_SHARED_DATA", ""), "cifar-10-batches-py"
    )
    x, y, mean, std = _data(data_dir, args.image_size, 8)
    model = models.get("cnn", 10, tuple(x.shape[1:]))
    variables = model.init(jax.random.key(0))
    meta = {
        "load_avg_before": os.getloadavg(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "image_size": args.image_size,
    }
    rows = []
    for case in cases:
        rows += run_case(case, model, variables, x, y, mean, std, args.steps_scale, policies)
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    meta["load_avg_after"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print("| case | precision | objective | grad rel err vs f32 | PSNR mean | PSNR max |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['precision']} | {r['objective']:.5g} | {r['grad_rel_err']:.2e}"
            f" | {r['psnr_mean']:.2f} | {r['psnr_max']:.2f} |"
        )


if __name__ == "__main__":
    main()
