"""Fig. 10: CPA with feature inversion on the gradient of 30 ImageNet images (experiments/grad/
cpa.sh): vgg16, CPA on the embeddings entering fc1 (25000 unmixing steps, lr 1e-3, decor 5.3, T
7.7, nv 0.13, l1 5), then 25000 feature-inversion steps (lr 0.1, TV 0.1). The paper's VGG16 is
ImageNet-pretrained; leakjax has no pretrained weights, so the model is untrained (as in Fig.
23), with leakjax's "small" vgg16 head. CPU variant: the cnn (fc1 of 128) instead.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig10_cpafi_gradient.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("fig10_cpafi_gradient", "cpa_fi", dataset="imagenet", model="vgg16", batch=30)
    c.attack.clients = 1
    c.attack.steps = 25000
    c.attack.chunk = 2500
    c.attack.cpa_steps = 25000
    c.attack.lr = 1e-3
    c.attack.fi_lr = 0.1
    c.attack.decor = 5.3
    c.attack.temperature = 7.7
    c.attack.tv = 0.1
    c.attack.nv = 0.13
    c.attack.l1 = 5.0
    c.attack.layer = "fc1"
    return shrink(
        c,
        preset,
        cpu={
            "model.name": "cnn",
            "fl.num_clients": 10,
            "attack.steps": 150,
            "attack.chunk": 75,
            "attack.cpa_steps": 1000,
        },
    )
