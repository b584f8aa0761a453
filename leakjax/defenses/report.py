"""A defended run's extra numbers: (epsilon, delta) per attacked client and in the summary,
and, under secure aggregation, how many images of each group member were recovered."""

from __future__ import annotations

import numpy as np

from leakjax import defenses


def run_facts(p, client_id: int, num_samples: int, history) -> defenses.RunFacts:
    f, a = p.config.fl, p.config.attack
    if a.mode == "gradient":  # the one shared gradient of attack.batch_size rows
        b = int(a.batch_size)
        return defenses.RunFacts(int(f.num_clients), 1, 1, 1, b, b, 1)
    taken = sum(client_id in sel for sel in history.get("selected", []))
    m = p.settings.num_selected(int(f.num_clients))
    return defenses.RunFacts(
        int(f.num_clients),
        m,
        int(f.rounds),
        int(f.local_epochs),
        int(f.batch_size),
        int(num_samples),
        int(taken),
    )


def client_metrics(p, obs, truth, ev, history) -> dict:
    """Per attacked client: its (epsilon, delta) under the defense and, under secure
    aggregation, how many images of each group member were recovered."""
    if not p.defense:
        return {}
    out = {"defense": ",".join(p.defense.names)}
    cid = int(obs.client_id)
    n_k = int(p.train.n[cid]) if obs.mode == "fedavg" else int(obs.num_samples)
    privacy = p.defense.accounting(run_facts(p, cid, n_k, history))
    if privacy:
        out["privacy"] = privacy
    if truth.owners is not None:
        owners = np.asarray(truth.owners)
        pairs = np.asarray(ev["matching"], int).reshape(-1, 2)
        ok = np.asarray(ev["psnr"], float) >= float(p.config.attack.success_psnr)
        hit = owners[pairs[ok, 1]] if ok.any() else np.zeros((0,), int)
        out["group"] = [int(c) for c in dict.fromkeys(owners.tolist())]
        out["recovered_per_client"] = {str(c): int(np.sum(hit == c)) for c in out["group"]}
        out["clients_recovered"] = int(sum(v > 0 for v in out["recovered_per_client"].values()))
    return out


def summary(p, per_client, history) -> dict:
    """The defense and, per accounted defense, the largest epsilon over the attacked clients
    (with its event's parameters); the first accounted defense's numbers also at top level."""
    if not p.defense:
        return {"defense": "none"}
    out = {
        "defense": ",".join(p.defense.names),
        "defense_settings": p.defense.settings(),
        "adaptive": bool(p.config.attack.get("adaptive", True)),
    }
    worst = {}
    for c in per_client:
        for e in c.get("privacy", []):
            eps = np.inf if e["epsilon"] is None else e["epsilon"]
            prev = worst.get(e["defense"])
            if prev is None or eps > (np.inf if prev["epsilon"] is None else prev["epsilon"]):
                worst[e["defense"]] = e
    if not per_client:  # FedAvg only: account the user-level defenses
        worst = {
            e["defense"]: e
            for e in p.defense.accounting(run_facts(p, 0, 1, history))
            if e["level"] == "user"
        }
    if worst:
        out["privacy"] = list(worst.values())
        first = out["privacy"][0]
        out.update(
            {
                k: first[k]
                for k in (
                    "epsilon",
                    "delta",
                    "accountant",
                    "q",
                    "steps",
                    "noise_multiplier",
                    "level",
                    "sampling",
                )
            }
        )
    return out
