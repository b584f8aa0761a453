"""DMGAN (Hitaj et al. 2017) on MNIST: a malicious client among 10 learns to generate the
tracked class (3) that it holds no sample of (`leakjax.attacks.dmgan`, a client-side attack
run by the main CLI).

Presets:
  ''     the reference's dmgan.sh: 10 clients, Dirichlet(0.5), 30 rounds, 2 local epochs,
         batch 50, lr 0.1 (x0.95 per round), data in [-1, 1], the discriminator at width 64.
  'cpu'  10 rounds of the same federation, sized for a 2-core CPU (a few minutes).
  'tiny' seconds, offline: scikit-learn's digits, 4 clients, 2 rounds, narrow networks.

    python -m leakjax.cli --config=configs/dmgan_mnist.py:cpu --workdir=runs/dmgan \
        --config.data.data_dir=/path/with/mnist
"""

from leakjax.config import base_config

PRESETS = ("", "cpu", "tiny")


def dmgan_config():
    """The reference's experiments/fed/dmgan.sh (the DMGAN settings: their defaults)."""
    c = base_config()
    c.data.name = "mnist"
    c.data.normalize = "half"
    c.model.name = "dmgan_discriminator"
    c.fl.rounds = 30
    c.attack.name = "dmgan"
    c.attack.tracked_class = 3
    c.attack.attacker = 0
    return c


def get_config(preset: str = ""):
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (use one of {PRESETS})")
    c = dmgan_config()
    c.name = "dmgan_mnist" + (f"_{preset}" if preset else "")
    if preset == "cpu":
        c.fl.rounds = 10
        c.attack.eval_steps = 600
    if preset == "tiny":
        c.data.name, c.data.partition = "digits", "iid"
        c.fl.num_clients, c.fl.rounds, c.fl.local_epochs, c.fl.batch_size = 4, 2, 1, 10
        c.attack.d_width = c.attack.g_width = 8
        c.attack.g_steps, c.attack.g_batch, c.attack.num_images = 5, 8, 8
        c.attack.eval_model, c.attack.eval_steps = "mlp", 20
    return c
