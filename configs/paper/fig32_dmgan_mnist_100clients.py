"""Fig. 32: DMGAN with 100 clients (less data for the adversary's GAN) (the reference's
experiments/fed/dmgan.sh; `leakjax.attacks.dmgan`): MNIST, 100 clients (Dirichlet 0.5), 30
rounds, 2 local epochs, batch 50, lr 0.1 (x0.95), tracked class 3; client 0 is the adversary.
A client-side attack (``attack.name="dmgan"``), run by leakjax and leakjax-sweep like
every config; the sweep's ``tracked_fraction`` column is the share of the last round's generated
images a held-out classifier calls class 3.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig32_dmgan_mnist_100clients.py:cpu
"""

import pathlib
import sys

from leakjax.config import base_config

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import shrink  # noqa: E402


def get_config(preset: str = ""):
    c = base_config()  # the reference's dmgan.sh; DMGAN's own settings: their defaults
    c.data.normalize = "half"
    c.model.name = "dmgan_discriminator"
    c.attack.name = "dmgan"
    c.attack.tracked_class = 3
    c.attack.attacker = 0
    c.name = "fig32_dmgan_mnist_100clients"
    c.data.name = "mnist"
    c.fl.num_clients = 100
    c.fl.rounds = 30
    return shrink(
        c,
        preset,
        cpu={
            # tests/test_dmgan.py's MNIST setting (> 50% recognized by round 10 there)
            "fl.rounds": 10,
            # 100 clients kept (the figure's point); 2,000 CPU images give each 16 to train on,
            # so the local batch drops from 50 to 10
            "fl.batch_size": 10,
            "fl.local_epochs": 1,
            "attack.d_width": 16,
            "attack.g_width": 16,
            "attack.g_steps": 30,
            "attack.g_batch": 32,
            "attack.num_images": 32,
            "attack.eval_steps": 300,
            "attack.eval_max": 3000,
        },
        tiny={"attack.g_steps": 4, "attack.eval_steps": 10, "attack.num_images": 16},
    )
