"""Fig. 36: GGL with local batch 50: CIFAR-10, 100 clients (Dirichlet 0.5), batch 50, 1 local
epoch, lr 0.1, 30 rounds, one client attacked per round. GGL (experiments/fed/ggl.sh): cnn, CMA-
ES over a pretrained generator's latents (set $LEAKJAX_GGL_GENERATOR; without it the generator
is untrained and the name says so), 1389 generations x 18 codes (~ the reference's 25000
evaluations). leakjax searches one latent per local training image, with labels from a label-
count method (Geng et al.; the reference's iDLG rule gives a single label).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig36_ggl_fedavg_batch50.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, ggl_generator, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig36_ggl_fedavg_batch50",
        "ggl",
        clients=100,
        batch=50,
        epochs=1,
        rounds=30,
        attack_every_round=True,
    )
    ggl_generator(c)
    c.attack.steps = 1389
    c.attack.chunk = 463
    c.attack.labels = "geng"
    # tiny: 10 clients of exactly one local batch of 50 (62 images: int(62 x 0.2) = 12 kept for
    # local testing): GGL searches one latent per local image, and the cpu share (31 clients,
    # 52 training images: a batch of 50 and one of 2) simulated two steps.
    tiny = {"fl.num_clients": 10, "data.max_train": 62 * 10}
    return shrink(c, preset, cpu={"attack.steps": 30, "attack.chunk": 15}, tiny=tiny)
