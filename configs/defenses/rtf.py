"""Defense study: configs/paper/fig26_rtf_fedavg_100clients.py under every defense
(configs/defenses/_study.py).

    leakjax-sweep --configs=configs/defenses/rtf.py:cpu --workdir=DIR
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _study import family  # noqa: E402


def get_configs(preset: str = ""):
    return family(
        "fig26_rtf_fedavg_100clients.py", preset, defenses=("secure_agg", "prune", "dp_sgd")
    )
