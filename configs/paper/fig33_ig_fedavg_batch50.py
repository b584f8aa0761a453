"""Fig. 33: Inverting Gradients with local batch 50: CIFAR-10, cnn, 100 clients (Dirichlet 0.5),
batch 50, 1 local epoch, lr 0.1, 5 rounds, one client attacked per round. Inverting Gradients
(the reference's ig_multi, experiments/fed/ig.sh): cosine loss + TV 1e-6, Adam on signed
gradients, lr 1.0 (Table II), 24000 iterations, the client's local training simulated exactly,
labels by iDLG's rule / jointly optimised ('auto').

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig33_ig_fedavg_batch50.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig33_ig_fedavg_batch50",
        "ig",
        clients=100,
        batch=50,
        epochs=1,
        rounds=5,
        attack_every_round=True,
    )
    c.attack.steps = 24000
    c.attack.chunk = 1000
    c.attack.lr = 1.0
    c.attack.tv = 1e-6
    c.attack.labels = "auto"
    return shrink(
        c,
        preset,
        cpu={"attack.steps": 200, "attack.chunk": 100, "attack.lr": 0.1, "attack.tv": 0.0001},
    )
