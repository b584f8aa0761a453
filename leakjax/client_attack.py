"""Client-side attacks (a `leakjax.attacks.registry.ClientAttackSpec`, e.g. DMGAN): a
malicious client plugged into FedAvg where a client is, through `leakjax.fl.server.simulate`'s
``client_override``. `leakjax.experiment.run` hands such configs to :func:`run`.

The attack (`leakjax.attacks.client.ClientAttack`, built by ``spec.make(inputs(p),
settings)``) returns data and writes nothing; this runner writes every file: per evaluation
point its record's arrays (``rounds/round_NNN.npz``), grid (``rounds/round_NNN.png``) and
the growing ``<attack>.json`` of its numbers; at the end its plots and the common outputs.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax

from leakjax import figures, report
from leakjax.attacks.client import ClientAttack, ClientInputs
from leakjax.fl import simulate
from leakjax.provenance import device_info, provenance, write_config
from leakjax.types import ConfigError


def inputs(p) -> ClientInputs:
    """What a client attack is built from, out of the prepared experiment ``p``."""
    info, c = p.dataset.info, p.config
    return ClientInputs(
        dataset=str(c.data.name),
        num_classes=int(info.num_classes),
        image_shape=tuple(info.image_shape),
        model_name=str(c.model.name),
        conv_impl=str(c.model.conv_impl),
        train=p.train,
        test_images=p.dataset.test_images,
        test_labels=p.dataset.test_labels,
        mean=p.mean,
        std=p.std,
        fl=p.settings,
    )


def build(p) -> ClientAttack:
    """The client attack of the prepared experiment ``p`` (ConfigError for bad input)."""
    return p.spec.make(inputs(p), p.spec.bind(p.config.attack))


@dataclasses.dataclass
class _Writer:
    """`simulate`'s ``client_override`` (a `leakjax.fl.ClientOverride`): the attack, with its
    per-round records written to ``workdir`` and their ``stats`` handed to `simulate`."""

    attack: ClientAttack
    workdir: Any
    name: str
    history: dict = dataclasses.field(default_factory=dict)

    @property
    def client_id(self) -> int:
        return self.attack.client_id

    def update(self, round, global_vars, hp, x_u8, y, n, key):  # noqa: A002 - protocol name
        return self.attack.update(round, global_vars, hp, x_u8, y, n, key)

    def after_round(self, point, global_before, global_after) -> dict:
        rec = self.attack.after_round(point, global_before, global_after)
        path = self.workdir / "rounds" / f"round_{point:03d}"
        report.save_npz(path.with_suffix(".npz"), **rec.arrays)
        if rec.grid is not None:
            figures.save_image_grid(path.with_suffix(".png"), rec.grid, title=rec.title)
        for k, v in {"round": point, **rec.stats}.items():
            self.history.setdefault(k, []).append(v)
        report.write_json(self.workdir / f"{self.name}.json", self.history)
        return rec.stats


def run(p, workdir, *, progress: bool, resume: bool = False) -> dict:
    """Run the client attack of the prepared experiment ``p`` into ``workdir`` (new or
    empty; checked by the caller). Writes ``config.json``, ``fl_history.json``,
    ``metrics.json`` (``{"summary", "rounds"}``: the summary and the per-round history),
    ``summary.csv``, ``fl_accuracy.png`` and the attack's own files. Returns the summary."""
    t_start = time.perf_counter()
    config, f = p.config, p.config.fl
    if resume:
        raise ConfigError(f"--resume: attack.name={config.attack.name!r} cannot resume")
    attack = build(p)  # every check before the workdir is created
    workdir = report.prepare_workdir(workdir)
    write_config(config, workdir)
    sim_key, attack_key = jax.random.split(jax.random.key(int(config.seed)))
    attack.setup(attack_key, progress=progress)
    t0 = time.perf_counter()
    sim = simulate(
        attack.model,
        attack.train,
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
        client_override=_Writer(attack, workdir, str(config.attack.name)),
    )
    fl_seconds = time.perf_counter() - t0
    history = sim.history
    report.write_json(workdir / "fl_history.json", history)
    result = attack.finish(history)
    for name, plot in result.plots.items():
        figures.plot_curves(workdir / name, plot.curves, plot.xlabel, plot.ylabel, title=plot.title)
    summary = {
        "attack": str(config.attack.name),
        "mode": "client",
        "dataset": config.data.name,
        "model": config.model.name,
        "num_clients": int(f.num_clients),
        "batch_size": int(f.batch_size),
        "local_epochs": int(f.local_epochs),
        "rounds": int(f.rounds),
        **result.summary,
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
