"""Attack throughput over devices and processes (issue 30): trial-iterations per second.

    python -m benchmarks.scaling --out=scaling.json [--devices=1,2,4,8] [--processes=2]

Each row runs in a fresh subprocess (the CPU device count is fixed when JAX starts):
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` and ``attacks.run(num_devices=0)``
over 8 IG trials (fedavg mode, cnn at 16x16x3, 4 images, 2 local steps, 1 restart). The last
row runs the same on ``--processes`` processes x 2 devices over `jax.distributed` on
127.0.0.1 (every process under ``timeout -k``). Each row times the second of two identical
``attacks.run`` calls (the first compiles), so the rate is the steady state. On one
host the fake devices share the host's cores: the rows measure the cost of splitting trials
(and of the collectives across processes), not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

TRIALS, STEPS, CHUNK = 8, 12, 6

_WORKER = textwrap.dedent(
    f"""
    import sys, time, json
    import jax, jax.numpy as jnp
    from leakjax import attacks, distributed, models
    from leakjax.attacks import inverting_gradients as ig
    from leakjax.fl import ClientHParams
    from leakjax.fl.observation import fedavg_observation, stack

    if len(sys.argv) > 1:  # HOST:PORT N I
        distributed.initialize(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    model = models.get("cnn", 10, (16, 16, 3))
    v = model.init(jax.random.key(0))
    hp = ClientHParams(lr=0.1, momentum=0.0, epochs=1, batch_size=2)
    obs, labels = [], []
    for i in range({TRIALS}):
        x = jax.random.uniform(jax.random.key(10 + i), (4, 16, 16, 3), minval=-1, maxval=1)
        y = jnp.array([i % 10, (3 * i + 1) % 10, (7 * i + 2) % 10, (i + 5) % 10])
        obs.append(fedavg_observation(model, v, x, y, hp))
        labels.append(y)
    trials = (stack(obs), jnp.stack(labels))
    box = (jnp.full(3, -1.0), jnp.full(3, 1.0))
    cfg = ig.IGConfig(lr=0.1, tv=1e-4, labels="fixed")

    def timed(steps):
        def factory(t):
            o, y = t
            return ig.make(o, model, cfg, steps=steps, box=box, labels=y)

        t0 = time.perf_counter()
        res = attacks.run(factory, jax.random.key(1), steps=steps, restarts=1, trials=trials,
                          chunk={CHUNK}, progress=False, num_devices=0)
        return time.perf_counter() - t0, res

    first, _ = timed({STEPS})  # compiles (and runs)
    second, res = timed({STEPS})  # the same programs again: the steady-state rate
    if distributed.is_main_process():
        print(json.dumps(dict(devices=len(jax.devices()), processes=jax.process_count(),
                              first_s=first, second_s=second,
                              final_loss=float(res.final_loss.min()))))
    """
)


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if "_proxy" not in k.lower()}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")])),
    )
    return env


def _row(out: str) -> dict:
    line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    row = json.loads(line)
    row["trial_iterations_per_s"] = TRIALS * STEPS / row["second_s"]
    return row


def one_process(devices: int, limit: int) -> dict:
    out = subprocess.run(
        ["timeout", "-k", "10", str(limit), sys.executable, "-c", _WORKER],
        env=_env(devices),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return _row(out)


def processes(n: int, limit: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(
            ["timeout", "-k", "10", str(limit), sys.executable, "-c", _WORKER]
            + [f"127.0.0.1:{port}", str(n), str(i)],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(
            f"a process failed: {[p.returncode for p in procs]}: "
            + " | ".join(o.strip().splitlines()[-1] if o.strip() else "" for o in outs)
            + "\n"
            + outs[0][-3000:]
        )
    return _row(outs[0])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="1,2,4,8")
    ap.add_argument("--processes", type=int, default=2, help="0: no multi-process row")
    ap.add_argument("--limit", type=int, default=600, help="seconds per process")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    rows = []
    for d in [int(v) for v in args.devices.split(",") if v]:
        rows.append(one_process(d, args.limit))
        print(json.dumps(rows[-1]), flush=True)
    if args.processes > 1:
        try:
            rows.append(processes(args.processes, args.limit))
        except RuntimeError as e:  # recorded, not raised: the one-process rows still count
            rows.append({"processes": args.processes, "error": str(e).splitlines()[0]})
        print(json.dumps(rows[-1]), flush=True)
    load = os.getloadavg()
    result = {
        "rows": rows,
        "loadavg": load,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
