"""Fig. 40: GGL with 5 local epochs: CIFAR-10, 100 clients (Dirichlet 0.5), batch 10, 5 local
epochs, lr 0.1, 30 rounds, one client attacked per round. GGL (experiments/fed/ggl.sh): cnn,
CMA-ES over a pretrained generator's latents (set $LEAKJAX_GGL_GENERATOR; without it the
generator is untrained and the name says so), 1389 generations x 18 codes (~ the reference's
25000 evaluations). leakjax searches one latent per local training image, with labels from a
label-count method (Geng et al.; the reference's iDLG rule gives a single label).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig40_ggl_fedavg_5epochs.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, ggl_generator, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig40_ggl_fedavg_5epochs",
        "ggl",
        clients=100,
        batch=10,
        epochs=5,
        rounds=30,
        attack_every_round=True,
    )
    ggl_generator(c)
    c.attack.steps = 1389
    c.attack.chunk = 463
    c.attack.labels = "geng"
    # tiny: 5 local epochs of one step each (data.max_train = 12 x clients: 10 training images
    # a client, batch 10): GGL searches one latent per local image through the simulated
    # local training: the cpu share (16 images, 2 steps an epoch) took 1.75 x as long.
    tiny = {"data.max_train": 12 * 100}
    return shrink(c, preset, cpu={"attack.steps": 30, "attack.chunk": 15}, tiny=tiny)
