"""Train the generator of a generative attack (GGL) on a data set and save it.

    python -m leakjax.train_generator --dataset=cifar10 --data_dir=/data --out=runs/ggl_gen \
        --steps=15000
    python -m leakjax.train_generator --dataset=digits --out=runs/ggl_digits --steps=2000 \
        --dim=32

GGL (Li et al., "Auditing Privacy Defenses in Federated Learning via Generative Gradient
Leakage", CVPR 2022, https://arxiv.org/abs/2203.15696) searches the latent space of a GAN
generator trained on public data of the target domain. This command trains that generator
(`leakjax.models.generators.GGLGenerator`) against `GGLDiscriminator` with the WGAN-GP
objective of the reference (fleak/train_ggl_cifar10.py, after the GGL authors' notebook):
Adam(lr 1e-4, betas (0.5, 0.999)), batch 64, ``n_critic=5`` critic updates per generator
update, gradient-penalty weight 10, latent size 128; ``--loss=dcgan`` uses the
non-saturating logistic GAN loss instead. One step is one generator update (with its
``n_critic`` critic updates); real batches are drawn uniformly with replacement. Steps run
in jitted ``lax.scan`` chunks with a progress line (losses, rate, ETA) after each.

Writes into ``--out`` (a new or empty directory): ``generator.msgpack`` (the checkpoint
that ``attack.generator_path`` points at; `leakjax.models.generator_checkpoint.save_generator`,
msgpack, no pickle), ``samples.png`` (real images above generated ones) and
``train_log.json`` (settings, losses per chunk, timings). Images are trained in [-1, 1]
(the reference's mean = std = 0.5 normalization); the generator outputs [0, 1], so the
attack can map it into any data normalization.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags
from flax import struct

from leakjax import data, figures, report
from leakjax.models.conv import IMPLS
from leakjax.models.generator_checkpoint import save_generator
from leakjax.models.generators import (
    GGLDiscriminator,
    GGLGenerator,
    generate,
    init_generator,
)
from leakjax.progress import Progress
from leakjax.types import ConfigError

LOSSES = ("wgan_gp", "dcgan")
CHECKPOINT = "generator.msgpack"
_TINY = 1e-12


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """What to train on and how (defaults: the reference's train_ggl_cifar10.py).

    Attributes:
      dataset: `leakjax.data` name ('digits' works offline).
      data_dir: where its files are ('' for built-in sets).
      source: `leakjax.data.load` source.
      image_size: resize to this side (0: the data set's own).
      max_train: use only the first N training images (0: all).
      steps: generator updates.
      batch_size: images per critic and generator update.
      lr, b1, b2: Adam settings of both networks.
      n_critic: critic updates per generator update.
      gp_weight: WGAN-GP gradient-penalty weight.
      loss: 'wgan_gp' or 'dcgan'.
      dim: width of generator and critic (the reference: 128).
      latent_dim: size of the latent vector (the reference: 128).
      seed: PRNG seed.
      chunk: steps per jitted ``lax.scan`` (a progress line after each).
      conv_impl: the critic's convolution implementation.
    """

    dataset: str = "digits"
    data_dir: str = ""
    source: str = "auto"
    image_size: int = 0
    max_train: int = 0
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-4
    b1: float = 0.5
    b2: float = 0.999
    n_critic: int = 5
    gp_weight: float = 10.0
    loss: str = "wgan_gp"
    dim: int = 128
    latent_dim: int = 128
    seed: int = 0
    chunk: int = 50
    conv_impl: str = "auto"


@struct.dataclass
class GANState:
    g: Any  # generator variables {'params', 'batch_stats'}
    d: Any  # critic params
    g_opt: optax.OptState
    d_opt: optax.OptState
    step: jax.Array


@dataclasses.dataclass
class GeneratorRun:
    """What `train` produced (host arrays)."""

    variables: Any
    checkpoint: str
    samples: str
    log: str
    d_loss: list
    g_loss: list
    seconds: float
    compile_seconds: float


def check(s: TrainSettings) -> None:
    """One-line ConfigErrors naming the flag."""
    ints = ("image_size", "max_train", "steps", "batch_size", "n_critic", "dim", "latent_dim")
    for name in ints + ("seed", "chunk"):
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ConfigError(f"--{name} must be an integer, got {v!r}")
    for name in ("steps", "batch_size", "n_critic", "dim", "latent_dim", "chunk"):
        if getattr(s, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(s, name)!r}")
    for name in ("image_size", "max_train", "seed"):
        if getattr(s, name) < 0:
            raise ConfigError(f"--{name} must be >= 0, got {getattr(s, name)!r}")
    if not s.lr > 0:
        raise ConfigError(f"--lr must be > 0, got {s.lr!r}")
    for name in ("b1", "b2"):
        if not 0 <= getattr(s, name) < 1:
            raise ConfigError(f"--{name} must be in [0, 1), got {getattr(s, name)!r}")
    if not s.gp_weight >= 0:
        raise ConfigError(f"--gp_weight must be >= 0, got {s.gp_weight!r}")
    if s.loss not in LOSSES:
        raise ConfigError(f"--loss={s.loss!r} is not one of {LOSSES}")
    if s.conv_impl not in IMPLS:
        raise ConfigError(f"--conv_impl={s.conv_impl!r} is not one of {IMPLS}")
    if s.dataset not in data.names():
        raise ConfigError(f"--dataset={s.dataset!r} is not one of {tuple(data.names())}")


def load_images(s: TrainSettings) -> np.ndarray:
    """The training images, uint8 [N, H, W, C]."""
    ds = data.load(
        s.dataset, s.data_dir or None, s.source, image_size=s.image_size or None, seed=s.seed
    )
    images = ds.train_images[: s.max_train] if s.max_train else ds.train_images
    if len(images) < 1:
        raise ConfigError(f"--dataset={s.dataset!r} has no training images")
    return np.asarray(images)


def make_step(s: TrainSettings, gen: GGLGenerator, disc: GGLDiscriminator, images):
    """One training step ``(state, key) -> (state, {'d_loss', 'g_loss'})``: ``n_critic``
    critic updates, then one generator update (pure; jit/scan it)."""
    images = jnp.asarray(images)  # uint8 on device
    n = images.shape[0]
    opt = optax.adam(s.lr, b1=s.b1, b2=s.b2)

    def real_batch(key):
        idx = jax.random.randint(key, (s.batch_size,), 0, n)
        return images[idx].astype(jnp.float32) * (2.0 / 255.0) - 1.0

    def fake_batch(g, key):
        z = jax.random.normal(key, (s.batch_size, s.latent_dim))
        img, g = generate(gen, g, z, train=True)
        return img * 2.0 - 1.0, g

    def critic(params, x):
        return disc.apply({"params": params}, x)

    def d_loss_fn(params, real, fake, key):
        r, f = critic(params, real), critic(params, fake)
        if s.loss == "dcgan":
            return jnp.mean(jax.nn.softplus(-r)) + jnp.mean(jax.nn.softplus(f))
        a = jax.random.uniform(key, (real.shape[0], 1, 1, 1))
        mixed = a * real + (1.0 - a) * fake
        g = jax.grad(lambda x: jnp.sum(critic(params, x)))(mixed)
        norm = jnp.sqrt(jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=1) + _TINY)
        return -jnp.mean(r) + jnp.mean(f) + s.gp_weight * jnp.mean(jnp.square(norm - 1.0))

    def g_loss_fn(gparams, g, d, key):
        fake, g = fake_batch({**g, "params": gparams}, key)
        f = critic(d, fake)
        loss = jnp.mean(jax.nn.softplus(-f)) if s.loss == "dcgan" else -jnp.mean(f)
        return loss, g

    def d_update(carry, key):
        g, d, d_opt = carry
        kr, kz, ka = jax.random.split(key, 3)
        fake, g = fake_batch(g, kz)
        loss, grads = jax.value_and_grad(d_loss_fn)(
            d, real_batch(kr), jax.lax.stop_gradient(fake), ka
        )
        upd, d_opt = opt.update(grads, d_opt, d)
        return (g, optax.apply_updates(d, upd), d_opt), loss

    def step(state: GANState, key):
        kd, kg = jax.random.split(key)
        (g, d, d_opt), d_losses = jax.lax.scan(
            d_update, (state.g, state.d, state.d_opt), jax.random.split(kd, s.n_critic)
        )
        (g_loss, g), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g["params"], g, d, kg)
        upd, g_opt = opt.update(grads, state.g_opt, g["params"])
        g = {**g, "params": optax.apply_updates(g["params"], upd)}
        new = GANState(g=g, d=d, g_opt=g_opt, d_opt=d_opt, step=state.step + 1)
        return new, {"d_loss": jnp.mean(d_losses), "g_loss": g_loss}

    def init(key):
        kg, kd = jax.random.split(key)
        g = init_generator(gen, kg, 2, s.latent_dim)
        d = disc.init(kd, jnp.zeros((2,) + tuple(images.shape[1:])))["params"]
        return GANState(g=g, d=d, g_opt=opt.init(g["params"]), d_opt=opt.init(d), step=jnp.int32(0))

    return init, step


def train(s: TrainSettings, out, *, progress: bool = True) -> GeneratorRun:
    """Train a GGL generator and write checkpoint, samples and log into ``out``.

    Args:
      s: TrainSettings.
      out: a new or empty directory.
      progress: print a progress line after each chunk.

    Returns:
      GeneratorRun (the trained variables as numpy arrays and the written paths).

    Raises:
      ConfigError / DataError: bad settings, unreadable data, or a non-empty ``out``
        (checked before anything is written).
    """
    check(s)
    images = load_images(s)
    shape = tuple(int(v) for v in images.shape[1:])
    gen = GGLGenerator(shape, dim=s.dim)
    disc = GGLDiscriminator(dim=s.dim, impl=s.conv_impl)
    out = report.prepare_workdir(out)
    init, step = make_step(s, gen, disc, images)
    key = jax.random.key(s.seed)
    k_init, k_train, k_show = jax.random.split(key, 3)

    @jax.jit
    def init_fn(k):
        return init(k)

    def chunk_fn(state, start, length):
        keys = jax.vmap(lambda i: jax.random.fold_in(k_train, i))(start + jnp.arange(length))
        return jax.lax.scan(step, state, keys)

    run_chunk = jax.jit(chunk_fn, static_argnums=2)
    t0 = time.perf_counter()
    state = init_fn(k_init)
    prog = Progress("train_generator", s.steps, unit="step", enabled=progress)
    d_hist, g_hist, done, compile_seconds = [], [], 0, 0.0
    while done < s.steps:
        length = min(s.chunk, s.steps - done)
        state, metrics = run_chunk(state, jnp.int32(done), length)
        d_loss, g_loss = float(jnp.mean(metrics["d_loss"])), float(jnp.mean(metrics["g_loss"]))
        if not (np.isfinite(d_loss) and np.isfinite(g_loss)):
            raise FloatingPointError(
                f"train_generator: non-finite loss by step {done + length} "
                f"(d_loss {d_loss}, g_loss {g_loss}); lower --lr"
            )
        if done == 0:
            compile_seconds = time.perf_counter() - t0
        done += length
        d_hist.append(d_loss)
        g_hist.append(g_loss)
        prog.update(done, d_loss=d_loss, g_loss=g_loss)
    seconds = time.perf_counter() - t0
    variables = jax.tree.map(np.asarray, state.g)
    meta = {
        "dataset": s.dataset,
        "steps": s.steps,
        "loss": s.loss,
        "seed": s.seed,
        "pixel_range": "generator outputs [0, 1]; trained on pixels mapped to [-1, 1]",
    }
    ckpt = out / CHECKPOINT
    save_generator(ckpt, "ggl", {"image_shape": shape, "dim": s.dim}, s.latent_dim, variables, meta)

    k = min(16, len(images))
    z = jax.random.normal(k_show, (k, s.latent_dim))
    fake = np.asarray(gen.apply(variables, z, train=False))
    real = images[np.random.default_rng(s.seed).choice(len(images), k, replace=False)]
    samples = out / "samples.png"
    figures.save_grid(
        samples,
        real.astype(np.float32) / 255.0,
        fake,
        max_images=k,
        title=f"GGL generator on {s.dataset}, {s.steps} steps: real (top) vs generated (bottom)",
    )
    log = out / "train_log.json"
    report.write_json(
        log,
        {
            "settings": dataclasses.asdict(s),
            "image_shape": list(shape),
            "chunk_end_steps": [min((i + 1) * s.chunk, s.steps) for i in range(len(d_hist))],
            "d_loss": d_hist,
            "g_loss": g_hist,
            "seconds": seconds,
            "compile_seconds": compile_seconds,
            "backend": jax.default_backend(),
        },
    )
    return GeneratorRun(
        variables=variables,
        checkpoint=str(ckpt),
        samples=str(samples),
        log=str(log),
        d_loss=d_hist,
        g_loss=g_hist,
        seconds=seconds,
        compile_seconds=compile_seconds,
    )


_HELP = {
    "dataset": "Data set (leakjax.data name, e.g. digits, mnist, cifar10).",
    "data_dir": "Folder with the data set's files ('' for built-in sets).",
    "source": "leakjax.data.load source (auto, builtin, official, tfds, npz).",
    "image_size": "Resize images to this side (0: the data set's own).",
    "max_train": "Use only the first N training images (0: all).",
    "steps": "Generator updates (each after --n_critic critic updates).",
    "batch_size": "Images per critic and generator update.",
    "lr": "Adam learning rate (both networks).",
    "b1": "Adam beta1.",
    "b2": "Adam beta2.",
    "n_critic": "Critic updates per generator update.",
    "gp_weight": "WGAN-GP gradient-penalty weight.",
    "loss": f"GAN objective: one of {LOSSES}.",
    "dim": "Width of generator and critic (the reference: 128).",
    "latent_dim": "Size of the latent vector (the reference: 128).",
    "seed": "PRNG seed.",
    "chunk": "Steps per jitted lax.scan call (a progress line after each).",
    "conv_impl": f"The critic's convolution implementation: one of {IMPLS}.",
}
_FLAGS: dict[str, Any] = {}


def define_flags() -> None:
    """absl flags for every TrainSettings field plus --out (called by ``__main__`` only, so
    importing this module defines no flags)."""
    defaults = TrainSettings()
    for f in dataclasses.fields(TrainSettings):
        value = None if f.name == "dataset" else getattr(defaults, f.name)
        kind = type(getattr(defaults, f.name))
        define = {int: flags.DEFINE_integer, float: flags.DEFINE_float}.get(
            kind, flags.DEFINE_string
        )
        _FLAGS[f.name] = define(f.name, value, _HELP[f.name])
    _FLAGS["out"] = flags.DEFINE_string("out", None, "New or empty directory for the outputs.")


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    values = {name: flag.value for name, flag in _FLAGS.items()}
    out = values.pop("out")
    if not values["dataset"]:
        _fail("--dataset is required (e.g. --dataset=digits)")
    if not out:
        _fail("--out is required (a new or empty directory)")
    try:
        run = train(TrainSettings(**values), out)
    except ConfigError as e:  # includes DataError
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except FloatingPointError as e:
        _fail(str(e), code=3)
    print(f"checkpoint {run.checkpoint}\nsamples {run.samples}\nlog {run.log}")


def _fail(msg: str, code: int = 2) -> None:
    print(f"train_generator: error: {msg}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
