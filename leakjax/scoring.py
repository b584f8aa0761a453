"""What an experiment reports: per attacked client its scores (PSNR, SSIM, labels, class
histogram, defense metrics), the population view (how many clients are exposed), the summary
of metrics.json and the figures (grid.png, loss.png, leakage.png, the most and least exposed
clients' grids, fl_accuracy.png). `leakjax.experiment.run` calls these after the attack;
``p`` is its `leakjax.experiment.Prepared`.
"""

from __future__ import annotations

import numpy as np

from leakjax import data, figures, metrics, precision
from leakjax.config import ALL_CLIENTS
from leakjax.defenses import report as defense_report
from leakjax.progress import round_label, time_summary
from leakjax.provenance import device_info, provenance


def to01(x, mean, std):
    return np.clip(np.asarray(data.denormalize(np.asarray(x), mean, std)), 0.0, 1.0)


def score(p, observations, truths, outcomes, history):
    """Per attacked client: metrics (PSNR, SSIM, labels, class histogram, defense), arrays
    for reconstruction.npz, its matched pairs for the grids (one ``(truths, recons, true
    labels, predicted labels, psnrs)`` per client), and the attack's loss curve."""
    a = p.config.attack
    per_client, arrays, pairs_of, curves = [], {}, [], {}
    for i, (obs, truth, oc) in enumerate(zip(observations, truths, outcomes, strict=True)):
        res, j = oc["result"], oc["trial"]
        rec_x = to01(res.reconstruction.images[j], p.mean, p.std)
        rec_y = None if res.reconstruction.labels is None else res.reconstruction.labels[j]
        true_x = to01(truth.images, p.mean, p.std)
        ev = metrics.evaluate(
            rec_x,
            true_x,
            recon_labels=rec_y,
            truth_labels=None if rec_y is None else truth.labels,  # CPA/RTF give no labels
            ordered=obs.num_samples == 1,
            threshold=float(a.success_psnr),
            num_classes=p.model.num_classes,
        )
        failed = bool(res.trial_failed[j])
        ev.update(
            round=int(obs.round),
            client_id=int(obs.client_id),
            num_samples=int(obs.num_samples),
            failed=failed,
            failed_restarts=int(res.failed[j].sum()),
            failed_step=[int(s) for s in res.failed_step[j]],
            final_loss=float(np.nan_to_num(res.final_loss[j][res.best[j]], nan=-1.0, posinf=-1.0)),
            best_restart=int(res.best[j]),
            class_counts=np.bincount(
                np.asarray(truth.labels, int), minlength=p.model.num_classes
            ).tolist(),
        )
        ev.update(defense_report.client_metrics(p, obs, truth, ev, history))
        per_client.append(ev)
        arrays[f"recon_{i}"] = rec_x.astype(np.float32)
        arrays[f"truth_{i}"] = true_x.astype(np.float32)
        if rec_y is not None:
            arrays[f"recon_labels_{i}"] = np.asarray(rec_y, np.int32)
        arrays[f"truth_labels_{i}"] = np.asarray(truth.labels, np.int32)
        arrays[f"loss_{i}"] = np.nan_to_num(res.losses[j][res.best[j]], nan=-1.0)
        pairs = np.asarray(ev["matching"], int).reshape(-1, 2)
        mine = ([], [], [], [], [])
        for (ri, ti), ps in zip(pairs, ev["psnr"], strict=False):
            mine[0].append(true_x[ti])
            mine[1].append(rec_x[ri])
            mine[2].append(int(truth.labels[ti]))
            mine[3].append(int(rec_y[ri]) if rec_y is not None else -1)
            mine[4].append(ps)
        pairs_of.append(mine)
        steps_axis = list(range(1, len(res.losses[j][res.best[j]]) + 1))
        label = f"client {obs.client_id}, {round_label(obs.round, int(p.config.fl.rounds))}"
        curves[label] = (
            steps_axis,
            [float(v) for v in res.losses[j][res.best[j]]],
        )

    return per_client, arrays, pairs_of, curves


def _save_pairs(path, config, pairs, what: str) -> None:
    """A truth-above-reconstruction grid of matched ``pairs`` (see `score`)."""
    a = config.attack
    grid_t, grid_r, grid_lt, grid_lp, grid_psnr = pairs
    k = int(config.output.grid_images)
    figures.save_grid(
        path,
        np.stack(grid_t[:k]),
        np.stack(grid_r[:k]),
        labels_true=grid_lt[:k],
        labels_pred=None if all(v < 0 for v in grid_lp) else grid_lp[:k],
        psnr=grid_psnr[:k],
        max_images=k,
        total=len(grid_t),
        title=f"{a.name} ({a.mode}) on {config.data.name}/{config.model.name}{what}: "
        f"truth (top) vs reconstruction (bottom)",
    )


def _exposure_order(per_client) -> list[int]:
    """Client indices from the least to the most exposed: by images recovered, then best PSNR."""
    return sorted(
        range(len(per_client)),
        key=lambda i: (per_client[i]["num_success"], per_client[i]["psnr_max"], -i),
    )


def write_figures(workdir, config, pairs_of, curves, history, per_client=()) -> None:
    """grid.png (truth above reconstruction), loss.png, fl_accuracy.png; with >= 2 attacked
    clients leakage.png (CDF of their best PSNR); in audits (attack.clients=-1) the most and
    the least exposed clients' grids."""
    a = config.attack
    grid = tuple(sum((list(c[f]) for c in pairs_of), []) for f in range(5))
    if grid[0]:
        _save_pairs(workdir / "grid.png", config, grid, "")
        figures.plot_attack_loss(workdir / "loss.png", curves)
    if len(per_client) >= 2:
        by_round: dict[str, list[float]] = {}
        for c in per_client:
            label = round_label(int(c["round"]), int(config.fl.rounds))
            by_round.setdefault(label, []).append(float(c["psnr_max"]))
        figures.plot_leakage(workdir / "leakage.png", by_round, float(a.success_psnr))
    if int(a.clients) == ALL_CLIENTS and per_client:
        order = _exposure_order(per_client)
        for name, i in (("most", order[-1]), ("least", order[0])):
            c = per_client[i]
            if pairs_of[i][0]:
                what = f", the {name} exposed client ({c['client_id']}, {c['num_success']} "
                what += f"of {c['num_truth']} images recovered)"
                _save_pairs(workdir / f"grid_{name}_exposed.png", config, pairs_of[i], what)
    if "test_acc" in history or "local_test_acc" in history:
        acc_curves = {}
        for k in ("test_acc", "local_test_acc"):
            if k in history:
                acc_curves[k] = (history["round"], history[k])
        figures.plot_curves(workdir / "fl_accuracy.png", acc_curves, "round", "accuracy")


def summary(p, per_client, observations, history, parts) -> dict:
    """metrics.json's summary: the metrics over clients, the setting, timings, provenance."""
    config = p.config
    a, f = config.attack, config.fl
    summary = metrics.summarize(per_client) if per_client else {}
    summary.update(
        attack=a.name,
        mode=a.mode,
        labels=a.labels + (" (true labels given to the attack)" if a.labels == "oracle" else ""),
        dataset=config.data.name,
        model=config.model.name,
        num_clients=int(f.num_clients),
        batch_size=int(f.batch_size),
        local_epochs=int(f.local_epochs),
        attack_steps=int(a.steps),
        restarts=int(a.restarts),
        images_attacked=int(sum(o.num_samples for o in observations)),
        final_test_acc=(history.get("test_acc") or [None])[-1],
        final_local_test_acc=(history.get("local_test_acc") or [None])[-1],
        **time_summary(parts),  # fl/attack/wall_seconds: all parts of a resumed run together
        device=device_info()["device_kind"],
        **{f"precision_{k}": str(v) for k, v in precision.policies(config).items()},
        **provenance(config),
    )
    summary.update(defense_report.summary(p, per_client, history))
    summary.update(population(per_client))
    return summary


# the summary's keys that `leakjax` prints on its last line
SUMMARY_LINE = (
    "attack",
    "mode",
    "images_attacked",
    "psnr_mean",
    "psnr_median",
    "ssim_mean",
    "success_rate",
    "label_accuracy",
    "final_tracked_fraction",
    "final_test_acc",
    "defense",
    "epsilon",
    "wall_seconds",
)


def summary_line(summary: dict) -> str:
    """``summary: attack=ig, mode=fedavg, ...``: the keys of `SUMMARY_LINE` it has."""
    return "summary: " + ", ".join(f"{k}={summary[k]}" for k in SUMMARY_LINE if k in summary)


def population(per_client) -> dict:
    """How private the attacked clients are, together: ``clients_attacked``,
    ``clients_exposed_fraction`` (clients with at least one image recovered at
    attack.success_psnr), ``images_recovered_fraction``, and the median and 90th percentile
    of the clients' best PSNR (``client_psnr_median``, ``client_psnr_p90``)."""
    if not per_client:
        return {"clients_attacked": 0}
    best = np.asarray([c["psnr_max"] for c in per_client], np.float64)
    truth = sum(int(c["num_truth"]) for c in per_client)
    return {
        "clients_attacked": len(per_client),
        "clients_exposed_fraction": float(np.mean([c["num_success"] > 0 for c in per_client])),
        "images_recovered_fraction": sum(int(c["num_success"]) for c in per_client) / truth
        if truth
        else 0.0,
        "client_psnr_median": float(np.median(best)),
        "client_psnr_p90": float(np.percentile(best, 90)),
    }
