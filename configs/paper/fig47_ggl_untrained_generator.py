"""Fig. 47: GGL with an untrained generator (the setting of Fig. 31): CIFAR-10, 10 clients
(Dirichlet 0.5), batch 10, 1 local epoch, lr 0.1, 30 rounds, one client attacked per round. GGL
(experiments/fed/ggl.sh): cnn, CMA-ES over a pretrained generator's latents (set
$LEAKJAX_GGL_GENERATOR; without it the generator is untrained and the name says so), 1389
generations x 18 codes (~ the reference's 25000 evaluations). leakjax searches one latent per
local training image, with labels from a label-count method (Geng et al.; the reference's iDLG
rule gives a single label).

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig47_ggl_untrained_generator.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import fedavg, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = fedavg(
        "fig47_ggl_untrained_generator",
        "ggl",
        clients=10,
        batch=10,
        epochs=1,
        rounds=30,
        attack_every_round=True,
    )
    c.attack.generator_path = ""  # untrained: the ablation
    c.attack.steps = 1389
    c.attack.chunk = 463
    c.attack.labels = "geng"
    # tiny: one local step per client (data.max_train = 12 x clients: 10 training images each,
    # batch 10): GGL searches one latent per local image through the simulated local training,
    # so the cpu share (160 images, 16 steps) took 75 s for the 4 generations instead of 11 s
    # (compile included; 2 loaded cores).
    tiny = {"data.max_train": 12 * 10}
    return shrink(c, preset, cpu={"attack.steps": 30, "attack.chunk": 15}, tiny=tiny)
