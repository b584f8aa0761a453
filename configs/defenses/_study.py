"""The defense study's shared table: each file in configs/defenses/ is a *family*,
``get_configs(preset) -> {variant: config}``: one paper config (configs/paper/) without a
defense and under each defense at 3-5 strengths; ``leakjax-sweep`` runs every variant and
writes ``frontier.png`` (leakage vs test accuracy per defense, epsilon annotated) and the
table (results.md / results.csv, with ``defense`` and ``epsilon`` columns).

    leakjax-sweep --configs='configs/defenses/*.py:cpu' --workdir=runs/defenses

Presets as in configs/paper: '' (the paper's setting), 'cpu' (minutes on a 2-core CPU),
'tiny' (seconds: two strengths of three defenses, for tests).
"""

from __future__ import annotations

import importlib.util
import pathlib

PAPER = pathlib.Path(__file__).resolve().parent.parent / "paper"

#: defense -> (setting, strengths); the fixed extra settings of that defense
STRENGTHS = {
    "dp_sgd": ("noise_multiplier", (0.0, 0.5, 1.0, 2.0, 4.0), {"clip": 1.0}),
    "local_noise": ("noise_scale", (1e-4, 1e-3, 1e-2, 1e-1), {}),
    "clip_update": ("clip", (1.0, 0.1, 0.01), {}),
    "prune": ("prune_ratio", (0.5, 0.9, 0.99), {}),
    "random_prune": ("random_prune_p", (0.5, 0.9), {}),
    "quantize": ("levels", (256, 16, 2), {}),
    "sign": (None, (None,), {}),
    "soteria": ("soteria_ratio", (0.4, 0.8), {}),
    "dp_fedavg": ("noise_multiplier", (0.5, 1.0, 2.0), {"clip": 0.1}),
    "secure_agg": ("secure_agg_clients", (2, 10), {}),
}
#: defenses that need FedAvg rounds (the server's mean or its observation)
FEDAVG_ONLY = ("dp_fedavg", "secure_agg")
TINY = {"dp_sgd": (0.0, 2.0), "prune": (0.9,), "quantize": (2,)}
#: strengths also run against a non-adaptive attacker (attack.adaptive=False)
NAIVE = {"dp_sgd": 1.0, "prune": 0.9, "soteria": 0.8, "clip_update": 0.01}
#: FedAvg rounds of the 'cpu' preset: enough for the test accuracy to separate the defenses
#: (the paper configs' cpu preset trains 1-2 rounds, where every model is near chance)
CPU_ROUNDS = 5


def paper_config(file: str, preset: str):
    spec = importlib.util.spec_from_file_location(f"paper_{pathlib.Path(file).stem}", PAPER / file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(preset)


def family(file: str, preset: str, *, defenses=None) -> dict:
    # attack.rounds stays as the paper config has it (e.g. -1: the last round)
    """{variant: config}: ``configs/paper/<file>`` under no defense and each defense."""
    base = paper_config(file, preset)
    if preset == "cpu":
        with base.unlocked():
            base.fl.rounds = max(int(base.fl.rounds), CPU_ROUNDS)
            base.attack.clients = max(int(base.attack.clients), 2)
            base.fl.batch_size = min(int(base.fl.batch_size), 10)  # clients of ~15 digits
    out = {"none": base}
    names = list(TINY) if preset == "tiny" else list(defenses or STRENGTHS)
    for name in names:
        if name in FEDAVG_ONLY and base.attack.mode != "fedavg":
            continue
        key, values, extra = STRENGTHS[name]
        if preset == "tiny":
            values = TINY[name]
        for v in values:
            c = base.copy_and_resolve_references()
            with c.unlocked():
                c.defense.name = name
                for k, val in extra.items():
                    c.defense[k] = val
                if key is not None:
                    c.defense[key] = v
                c.name = f"{base.name}-{name}" + ("" if key is None else f"-{v:g}")
            out[f"{name}" + ("" if key is None else f"-{v:g}")] = c
            if preset != "tiny" and name in NAIVE and NAIVE[name] == v:
                naive = c.copy_and_resolve_references()
                with naive.unlocked():
                    naive.attack.adaptive = False
                    naive.name += "-naive"
                out[f"{name}-{v:g}-naive"] = naive
    return out
