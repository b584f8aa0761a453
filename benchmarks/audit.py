"""Audit mode throughput (issue 29): client-attacks per second with 1, 8 and 32 clients
(trials) in one vmapped attack program, on the current backend.

    python -m benchmarks.audit [--clients=1,8,32] [--steps=12] [--chunk=4] [--out=FILE.json]

IG in fedavg mode at tiny shapes: the cnn on 16x16x1, each client 8 images trained for one
local epoch of batch 4 (2 simulated steps), labels given, 1 restart, ``attack.vmap_chunk``
auto (`attacks.resolve_vmap_chunk`: 1 on CPU). Each client is one trial with its own key, as
in `leakjax.experiment.attack_observations`. The first chunk (compile + run) is left out:
``client_steps_per_s = T * (steps - chunk) / (seconds - compile_seconds)`` and, for attacks of
``--attack_steps`` steps, ``client_attacks_per_s = client_steps_per_s / attack_steps``.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from leakjax import attacks, models
from leakjax.config import base_config
from leakjax.fl import ClientHParams
from leakjax.fl.observation import fedavg_observation, stack


def measure(num: int, steps: int, chunk: int, attack_steps: int) -> dict:
    model = models.get("cnn", 10, (16, 16, 1))
    variables = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    hp = ClientHParams(lr=0.05, epochs=1, batch_size=4)
    obs, labels = [], []
    for c in range(num):
        x = rng.normal(size=(8, 16, 16, 1)).astype(np.float32)
        y = rng.integers(0, 10, size=8).astype(np.int32)
        obs.append(fedavg_observation(model, variables, x, y, hp).replace(client_id=c, round=0))
        labels.append(y)
    a = base_config().attack
    a.update(name="ig", mode="fedavg", steps=steps, chunk=chunk, labels="oracle")
    a.tv = 1e-4
    spec = attacks.get("ig")
    box = (jnp.full(1, -3.0), jnp.full(1, 3.0))

    def factory(t):
        o, lab = t
        return spec.build(o, model, a, box=box, labels=lab)

    key = jax.random.key(1)
    res = attacks.run(
        factory,
        key,
        steps=steps,
        trials=(stack(obs), np.stack(labels)),
        chunk=chunk,
        progress=False,
        vmap_chunk=attacks.resolve_vmap_chunk(-1, "fedavg", spec.sequential(a)),
        trial_keys=jnp.stack([jax.random.fold_in(key, c) for c in range(num)]),
    )
    steady = res.seconds - res.compile_seconds
    rate = num * (steps - chunk) / steady
    return {
        "clients_per_program": num,
        "client_steps_per_s": rate,
        "client_attacks_per_s": rate / attack_steps,
        "attack_steps": attack_steps,
        "compile_plus_first_chunk_s": res.compile_seconds,
        "backend": jax.default_backend(),
    }


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--attack_steps", type=int, default=1000)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    rows = [
        measure(int(n), args.steps, args.chunk, args.attack_steps) for n in args.clients.split(",")
    ]
    for r in rows:
        print(json.dumps(r))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
