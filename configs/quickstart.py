"""Offline quickstart: FedAvg on scikit-learn's digits, then Inverting Gradients on
the last round's update of two clients. Runs in a few minutes on a 2-core CPU.

    leakjax --config=configs/quickstart.py --workdir=runs/quickstart
"""

from leakjax.config import base_config


def get_config(preset: str = ""):
    c = base_config()
    c.name = "quickstart"
    c.data.name = "digits"  # real 8x8 digits shipped with scikit-learn, upsampled to 16x16
    c.data.partition = "iid"
    c.model.name = "cnn"  # the reference's MNIST cnn (1-channel variant)
    c.fl.num_clients = 100
    c.fl.rounds = 5
    c.fl.local_epochs = 1
    c.fl.batch_size = 4
    c.fl.lr = 0.05
    c.fl.lr_decay = 0.95
    c.attack.name = "ig"
    c.attack.mode = "fedavg"
    c.attack.rounds = (-1,)
    c.attack.clients = 2
    c.attack.steps = 1500
    c.attack.restarts = 2
    c.attack.chunk = 250
    c.attack.tv = 1e-4
    c.attack.labels = "auto"
    if preset == "tiny":  # for tests: seconds, not minutes
        c.fl.rounds = 2
        c.attack.steps = 60
        c.attack.chunk = 30
        c.attack.restarts = 1
    elif preset:
        raise ValueError(f"unknown preset {preset!r} (use '' or 'tiny')")
    return c
