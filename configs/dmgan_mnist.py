"""DMGAN (Hitaj et al. 2017) on MNIST: a malicious client among 10 learns to generate the
tracked class (3) that it holds no sample of (`leakjax.attacks.dmgan`).

Presets:
  ''    the reference's dmgan.sh: 10 clients, Dirichlet(0.5), 30 rounds, 2 local epochs,
        batch 50, lr 0.1 (x0.95 per round), the discriminator at width 64.
  'cpu' 10 rounds of the same federation, sized for a 2-core CPU (a few minutes).

    python -m leakjax.attacks.dmgan --config=configs/dmgan_mnist.py:cpu --workdir=runs/dmgan \
        --config.data.data_dir=/path/with/mnist
"""

from leakjax.attacks.dmgan import default_config

PRESETS = ("", "cpu")


def get_config(preset: str = ""):
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (use one of {PRESETS})")
    c = default_config()
    c.name = "dmgan_mnist" + (f"_{preset}" if preset else "")
    c.data.name = "mnist"
    if preset == "cpu":
        c.fl.rounds = 10
        c.dmgan.eval_steps = 600
    return c
