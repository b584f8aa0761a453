"""Fig. 9: Cocktail Party Attack on the gradient of 50 Tiny ImageNet images (experiments/grad/
cpa.sh, fleak/cpa_attack.py): fc2 (one hidden layer of 256), 25000 Adam steps at lr 1e-3,
decorrelation 1.47, T 12.4, TV 3.1, one run.

    leakjax-sweep --workdir=DIR --configs=configs/paper/fig09_cpa_gradient.py:cpu
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import gradient, shrink  # noqa: E402


def get_config(preset: str = ""):
    c = gradient("fig09_cpa_gradient", "cpa", dataset="tiny_imagenet", model="fc2", batch=50)
    c.attack.clients = 1
    c.attack.steps = 25000
    c.attack.chunk = 2500
    c.attack.lr = 1e-3
    c.attack.decor = 1.47
    c.attack.temperature = 12.4
    c.attack.tv = 3.1
    return shrink(c, preset, cpu={"fl.num_clients": 10, "attack.steps": 1000, "attack.chunk": 500})
