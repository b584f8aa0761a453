"""Fig. 20 with FedLeak's options on Inverting Gradients: Fig. 20's FedAvg setting (CIFAR-10, cnn,
100 clients (Dirichlet 0.5), batch 10, 1 local epoch, lr 0.1, 5 rounds, one client attacked per
round) attacked by Fig. 20's IG (cosine + TV 1e-6, signed Adam lr 1.0, 24000 iterations, the client
simulated exactly, labels 'auto') with FedLeak's partial gradient matching and gradient
regularization (Fan, Wang, Chen, Zhou, USENIX Security 2025, arXiv:2506.08435; not in the study's
paper; `leakjax.attacks.losses.MatchOptions`, values in `_common.FEDLEAK`: the top half of every
tensor's coordinates by |observed update| matched, the simulated update's relative squared norm
penalised with weight 1e-3). `:cpu` as Fig. 20's IG `:cpu` (lr 0.1, TV 1e-4, 200 steps) with the
same options.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig20_fedleak_fedavg_100clients.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import FEDLEAK, fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig20_fedleak_fedavg_100clients",
        "ig",
        clients=100,
        batch=10,
        epochs=1,
        rounds=5,
        attack_every_round=True,
    )
    c.attack.steps = 24000
    c.attack.chunk = 1000
    c.attack.lr = 1.0
    c.attack.tv = 1e-6
    c.attack.labels = "auto"
    for key, value in FEDLEAK.items():
        c.attack[key] = value
    return shrink(
        c,
        preset,
        cpu={"attack.steps": 200, "attack.chunk": 100, "attack.lr": 0.1, "attack.tv": 0.0001},
    )
