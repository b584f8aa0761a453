"""Client-side attacks (``AttackSpec.kind == 'client'``, e.g. DMGAN): a malicious client
plugged into FedAvg where a client is, through `leakjax.fl.server.simulate`'s
``client_override``. `leakjax.experiment.run` hands such configs to :func:`run`.

The attack's ``spec.make(prepared, settings)`` returns the client: cheap to build (it is
also built by `leakjax.plan.dry_build` to check the data-dependent settings before anything
is written), with

- ``model`` / ``train``: the federation's model and the clients' training data (they may
  differ from `experiment.prepare`'s, e.g. DMGAN's extra "fake" class and its attacker's
  data);
- ``setup(key, workdir, progress=...)``: its own preparation (after the workdir exists);
- ``client_id``, ``update`` and ``after_round``: `simulate`'s override protocol;
- ``finish(workdir, history) -> dict``: its figures and summary entries.
"""

from __future__ import annotations

import time

import jax

from leakjax import figures, report
from leakjax.fl import simulate
from leakjax.provenance import device_info, provenance, write_config
from leakjax.types import ConfigError


def build(p):
    """The client attack of the prepared experiment ``p`` (ConfigError for bad input)."""
    return p.spec.make(p, p.spec.bind(p.config.attack))


def run(p, workdir, *, progress: bool, resume: bool = False) -> dict:
    """Run the client attack of the prepared experiment ``p`` into ``workdir`` (new or
    empty; checked by the caller). Writes ``config.json``, ``fl_history.json``,
    ``metrics.json`` (``{"summary", "rounds"}``: the summary and the per-round history),
    ``summary.csv``, ``fl_accuracy.png`` and the attack's own files. Returns the summary."""
    t_start = time.perf_counter()
    config, f = p.config, p.config.fl
    if resume:
        raise ConfigError(f"--resume: attack.name={config.attack.name!r} cannot resume")
    client = build(p)  # every check before the workdir is created
    workdir = report.prepare_workdir(workdir)
    write_config(config, workdir)
    sim_key, attack_key = jax.random.split(jax.random.key(int(config.seed)))
    client.setup(attack_key, workdir, progress=progress)
    t0 = time.perf_counter()
    sim = simulate(
        client.model,
        client.train,
        p.local_test,
        p.dataset.test_images,
        p.dataset.test_labels,
        p.mean,
        p.std,
        p.settings,
        sim_key,
        mesh=p.mesh,
        progress=progress,
        seed=int(config.seed),
        client_override=client,
    )
    fl_seconds = time.perf_counter() - t0
    history = sim.history
    report.write_json(workdir / "fl_history.json", history)
    summary = {
        "attack": str(config.attack.name),
        "mode": "client",
        "dataset": config.data.name,
        "model": config.model.name,
        "num_clients": int(f.num_clients),
        "batch_size": int(f.batch_size),
        "local_epochs": int(f.local_epochs),
        "rounds": int(f.rounds),
        **client.finish(workdir, history),
        "final_test_acc": (history.get("test_acc") or [None])[-1],
        "final_local_test_acc": (history.get("local_test_acc") or [None])[-1],
        "fl_seconds": round(fl_seconds, 3),
        "wall_seconds": round(time.perf_counter() - t_start, 3),
        "device": device_info()["device_kind"],
        **provenance(config),
    }
    report.write_json(workdir / "metrics.json", {"summary": summary, "rounds": history})
    report.write_csv(workdir / "summary.csv", [report.scalars(summary)])
    acc = {
        k: (history["round"], history[k]) for k in ("test_acc", "local_test_acc") if k in history
    }
    if acc:
        figures.plot_curves(workdir / "fl_accuracy.png", acc, "round", "accuracy")
    return summary
