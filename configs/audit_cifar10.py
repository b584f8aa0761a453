"""Audit mode (issue 29): how private is a whole FedAvg population? Inverting Gradients
against every client of round 1 (``attack.clients = -1``) in the paper's FL setting: CIFAR-10,
cnn, 100 clients, Dirichlet(0.5) (IID: ``--config.data.partition=iid``), batch 10, 1 local
epoch, lr 0.1; IG as in Fig. 20 (cosine loss + TV 1e-6, lr 1.0, 24000 steps).

Writes, besides the usual files, one ``metrics.json["clients"]`` entry per client (with its
``class_counts``), the population summary (``clients_exposed_fraction``,
``images_recovered_fraction``, ``client_psnr_median``, ``client_psnr_p90``), ``leakage.png``
(CDF of the clients' best PSNR) and the most / least exposed clients' grids.

Presets (configs/paper/_common.py ``shrink``): '' full (GPU); 'cpu' 20 clients, 100 steps
(IID, 16x16: real CIFAR-10 under $LEAKJAX_SHARED_DATA, else digits); 'tiny' 8 clients of 20
images, 4 steps: seconds.

    leakjax --config=configs/audit_cifar10.py:cpu --workdir=runs/audit
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "paper"))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg("audit_cifar10", "ig", clients=100, batch=10, epochs=1, rounds=1)
    c.attack.steps = 24000
    c.attack.chunk = 1000
    c.attack.lr = 1.0
    c.attack.tv = 1e-6
    c.attack.labels = "auto"
    c = shrink(
        c,
        preset,
        cpu={
            "fl.num_clients": 20,
            "attack.steps": 100,
            "attack.chunk": 50,
            "attack.lr": 0.1,
            "attack.tv": 0.0001,
        },
        tiny={"fl.num_clients": 8, "data.max_train": 160},
    )
    c.attack.clients = -1  # every client sampled in the attacked round (shrink sets 1)
    return c
