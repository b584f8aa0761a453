"""Fig. 33 with SME instead of Inverting Gradients: Fig. 33's FedAvg setting (CIFAR-10, cnn, 100
clients (Dirichlet 0.5), local batch 50, 1 local epoch, lr 0.1, 5 rounds, one client attacked per
round) attacked by SME, Surrogate Model Extension (Zhu, Yao, Blaschko, ICML 2023, arXiv:2306.07457;
not in the study's paper) with the authors' settings (Adam lr 1, TV 0.005, alpha from 0.5 learned
with lr 0.001), at Fig. 33's 24000 iterations; labels by iDLG's rule / jointly optimised ('auto') as
Fig. 33's IG. As `fig20_sme_fedavg_100clients.py`.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig33_sme_fedavg_batch50.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig33_sme_fedavg_batch50",
        "sme",
        clients=100,
        batch=50,
        epochs=1,
        rounds=5,
        attack_every_round=True,
    )
    c.attack.steps = 24000
    c.attack.chunk = 1000
    c.attack.labels = "auto"
    return shrink(c, preset, cpu={"attack.steps": 200, "attack.chunk": 100})
