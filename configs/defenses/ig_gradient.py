"""Defense study: configs/paper/fig07_ig_gradient.py under every defense
(configs/defenses/_study.py).

    leakjax-sweep --configs=configs/defenses/ig_gradient.py:cpu --workdir=DIR
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _study import family  # noqa: E402


def get_configs(preset: str = ""):
    return family("fig07_ig_gradient.py", preset)
