"""DMGAN: a malicious FedAvg client with a GAN (Hitaj, Ateniese, Perez-Cruz, "Deep Models
Under the GAN: Information Leakage from Collaborative Deep Learning", CCS 2017,
https://arxiv.org/abs/1702.07464), as benchmarked by Zhu, Huang, Xie
(https://arxiv.org/abs/2409.19301).

A client-side attack, so not an `Attack` run by `leakjax.attacks.run` (which attacks what the
server observes): it is its own FedAvg simulation with its own entry point,

    python -m leakjax.attacks.dmgan --config=configs/dmgan_mnist.py --workdir=runs/dmgan \
        --config.data.data_dir=/path/to/data       # or: --dataset=mnist --data_dir=...

and ``run(config, workdir)`` from Python (configs: ``default_config()`` plus a preset).

The federation trains a model with ``num_classes + 1`` outputs; the extra class means
"fake". One client (``dmgan.attacker``) is the adversary. Every round (paper, Alg. 1):

1. it receives the global model and, keeping it frozen as the discriminator ``D``, trains
   its generator ``G`` for ``g_steps`` Adam steps on ``CE(D(G(z)), tracked_class)``: samples
   that the federation's model takes for the victim's class (a `jax.lax.scan`);
2. it generates ``num_fake`` samples, labels them with the fake class and trains on them,
   with its own real data, through `leakjax.fl.client_update` (the one local training), so
   that the federation learns to tell G's current samples from the real class and G must
   get closer to it in the next round;
3. the honest clients train as usual (vmapped `client_update`, through
   `leakjax.fl.server.make_train_round`) and the server averages everybody's variables
   weighted by their sample counts (the attacker's count scaled by
   ``dmgan.attacker_weight``; 0 makes the round plain FedAvg of the honest clients).

The whole round (generator training, attacker and honest local training, aggregation,
evaluation of the generated images) is one jitted function, compiled once.

Success is quantified by a separately trained classifier (``dmgan.eval_model``, trained here
with optax Adam on the data set's test split, which no client holds): the fraction of
``num_images`` images generated from fixed noise that it assigns to the tracked class,
per round. Outputs in ``workdir``: ``config.json``; ``dmgan.json`` (per-round numbers,
rewritten every round); ``rounds/round_NNN.png`` and ``.npz`` (the generated images, from
round 0 = the untrained generator); ``tracked_fraction.png``; ``metrics.json`` (summary).

Differences from the reference (fleak/attack/dmgan.py, client/client.py:110-111): there the
attacker alternates, for ``rec_epochs`` = 10 passes over its local batches, one SGD step of G
(lr 1e-4) against its local copy of the model in eval mode and one SGD step (lr 1e-3) of that
copy on real data + fakes labelled 10, then runs its normal local training on real data only.
Here, as in the paper and as leakjax's one-local-training rule asks, G is trained against the
received (frozen) global model with Adam and the fakes enter the attacker's ordinary local
training; the fake class is ``num_classes`` (not a hard-coded 10, REFERENCE.md §5 item 7); the
reference discriminator's Dropout2d(0.3) is left out; by default the attacker holds no sample
of the tracked class (the paper's setting; ``dmgan.attacker_keeps_tracked`` restores the
reference's). Its partition, model and FL settings are the reference's dmgan.sh.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from leakjax import data, models, report
from leakjax.config import NORMALIZE, PARTITIONS, base_config
from leakjax.fl.client import ClientHParams, client_update, cross_entropy
from leakjax.fl.server import FLSettings, make_accuracy, make_train_round, resolve_client_chunk
from leakjax.models.generators import DMGANDiscriminator, DMGANGenerator
from leakjax.progress import Progress
from leakjax.types import ConfigError, NumericalError

DISCRIMINATOR = "dmgan_discriminator"  # model.name of the reference's DMGAN discriminator


def default_config() -> ml_collections.ConfigDict:
    """The reference's experiments/fed/dmgan.sh: MNIST, 10 clients, Dirichlet(0.5), 30 rounds,
    2 local epochs, batch 50, lr 0.1 (decay 0.95), data in [-1, 1], tracked class 3."""
    c = base_config()
    del c["attack"]  # the server-side attack group does not apply
    c.name = "dmgan"
    c.data.name = "mnist"
    c.data.normalize = "half"
    c.model.name = DISCRIMINATOR
    c.fl.rounds = 30
    c.dmgan = ml_collections.ConfigDict()
    g = c.dmgan
    g.tracked_class = 3
    g.attacker = 0  # client id of the adversary (takes part in every round)
    g.attacker_keeps_tracked = False  # paper: the adversary holds no victim-class sample
    g.attacker_weight = 1.0  # x the attacker's real sample count in FedAvg
    g.num_fake = 0  # generated samples in its local training (0: as many as its real ones)
    g.d_width = 64  # dmgan_discriminator's first conv channels (the reference: 64)
    g.g_width = 64  # generator's last hidden channels (the reference: 64)
    g.noise_dim = 100
    g.g_steps = 100  # Adam steps on G per round
    g.g_batch = 64
    g.g_lr = 1e-3
    g.g_beta1 = 0.5
    g.gan_steps = 0  # > 0: first alternate G and D steps, as the reference does
    g.d_lr = 2e-3  # SGD lr of those D steps (the reference: 1e-3 on a sum of two means)
    g.d_batch = 50  # real and fake rows per D step (the reference: its batch size)
    g.num_images = 64  # images from fixed noise, saved and classified every round
    g.eval_model = "cnn"  # the judge, trained on the data set's test split
    g.eval_steps = 1500
    g.eval_batch = 64
    g.eval_lr = 1e-3
    g.eval_max = 0  # use at most this many test-split images for the judge (0: all)
    return c


def _num(key: str, value, *, low: float = 0.0, strict: bool = True, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if integer and int(value) != value:
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if value < low or (strict and value == low):
        raise ConfigError(f"{key} must be {'>' if strict else '>='} {low}, got {value!r}")


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {tuple(allowed)}")


def validate(config) -> None:
    """Static checks of a DMGAN config; data-dependent ones happen in :func:`prepare`."""
    for group in ("data", "model", "fl", "dmgan"):
        if group not in config:
            raise ConfigError(f"config has no '{group}' group (start from dmgan.default_config())")
    d, f, g = config.data, config.fl, config.dmgan
    _num("seed", config.seed, strict=False, integer=True)
    _choice("data.name", d.name, data.names())
    _choice("data.normalize", d.normalize, NORMALIZE)
    _choice("data.partition", d.partition, PARTITIONS)
    _num("data.beta", d.beta)
    _num("data.classes_per_client", d.classes_per_client, integer=True)
    _num("data.max_train", d.max_train, strict=False, integer=True)
    _num("data.image_size", d.image_size, strict=False, integer=True)
    if not 0 <= d.test_fraction < 1:
        raise ConfigError(f"data.test_fraction must be in [0, 1), got {d.test_fraction!r}")
    _choice("model.name", config.model.name, [DISCRIMINATOR, *models.names()])
    _choice("model.conv_impl", config.model.conv_impl, models.CONV_IMPLS)
    _num("fl.num_clients", f.num_clients, low=1, integer=True)
    _num("fl.rounds", f.rounds, integer=True)
    if not 0 < f.client_fraction <= 1:
        raise ConfigError(f"fl.client_fraction must be in (0, 1], got {f.client_fraction!r}")
    for key in ("local_epochs", "batch_size", "eval_batch"):
        _num(f"fl.{key}", f[key], integer=True)
    _num("fl.client_chunk", f.client_chunk, strict=False, integer=True)
    _num("fl.lr", f.lr)
    _num("fl.lr_decay", f.lr_decay)
    _num("fl.weight_decay", f.weight_decay, strict=False)
    if not 0 <= f.momentum < 1:
        raise ConfigError(f"fl.momentum must be in [0, 1), got {f.momentum!r}")
    _num("dmgan.tracked_class", g.tracked_class, strict=False, integer=True)
    _num("dmgan.attacker", g.attacker, strict=False, integer=True)
    if g.attacker >= f.num_clients:
        raise ConfigError(f"dmgan.attacker={g.attacker} must be < fl.num_clients={f.num_clients}")
    if not isinstance(g.attacker_keeps_tracked, bool):
        raise ConfigError(
            f"dmgan.attacker_keeps_tracked must be a bool, got {g.attacker_keeps_tracked!r}"
        )
    _num("dmgan.attacker_weight", g.attacker_weight, strict=False)
    _num("dmgan.num_fake", g.num_fake, strict=False, integer=True)
    for key in ("d_width", "g_width", "noise_dim", "g_batch", "num_images", "d_batch"):
        _num(f"dmgan.{key}", g[key], integer=True)
    _num("dmgan.g_steps", g.g_steps, strict=False, integer=True)
    _num("dmgan.gan_steps", g.gan_steps, strict=False, integer=True)
    if g.g_steps + g.gan_steps == 0:
        raise ConfigError("dmgan.g_steps and dmgan.gan_steps are both 0: G would never train")
    _num("dmgan.g_lr", g.g_lr)
    _num("dmgan.d_lr", g.d_lr)
    if not 0 <= g.g_beta1 < 1:
        raise ConfigError(f"dmgan.g_beta1 must be in [0, 1), got {g.g_beta1!r}")
    _choice("dmgan.eval_model", g.eval_model, models.names())
    _num("dmgan.eval_steps", g.eval_steps, integer=True)
    _num("dmgan.eval_batch", g.eval_batch, integer=True)
    _num("dmgan.eval_lr", g.eval_lr)
    _num("dmgan.eval_max", g.eval_max, strict=False, integer=True)


# --------------------------------------------------------------------------- the attack


@dataclasses.dataclass(frozen=True)
class DMGANSettings:
    """The adversary's settings (static: they fix shapes and step counts)."""

    tracked_class: int = 3
    fake_class: int = 10  # the extra output: the data set's num_classes
    attacker_weight: float = 1.0
    num_fake: int = 50
    noise_dim: int = 100
    g_steps: int = 100
    g_batch: int = 64
    g_lr: float = 1e-3
    g_beta1: float = 0.5
    gan_steps: int = 0  # reference scheme: G step / D step alternations per round
    d_lr: float = 2e-3
    d_batch: int = 50


@struct.dataclass
class GenState:
    """The adversary's generator: variables and Adam state, carried across rounds."""

    params: Any
    batch_stats: Any
    opt_state: Any


def generator_optimizer(att: DMGANSettings) -> optax.GradientTransformation:
    return optax.adam(att.g_lr, b1=att.g_beta1)


def init_generator(generator, att: DMGANSettings, key) -> GenState:
    v = generator.init(key, jnp.zeros((2, att.noise_dim), jnp.float32), train=False)
    return GenState(v["params"], v["batch_stats"], generator_optimizer(att).init(v["params"]))


def generate(generator, state: GenState, z, *, train: bool = False):
    """Images in [0, 1] from noise (``train``: BatchNorm with batch statistics, also
    returning the updated running statistics)."""
    v = {"params": state.params, "batch_stats": state.batch_stats}
    if train:
        x, upd = generator.apply(v, z, train=True, mutable=["batch_stats"])
        return x, upd["batch_stats"]
    return generator.apply(v, z, train=False)


def generator_step(
    generator, apply, disc_vars, state: GenState, key, att: DMGANSettings, mean, std
):
    """One Adam step on ``CE(D(G(z)), tracked)``, D (``apply`` at ``disc_vars``, eval mode)
    frozen, G's BatchNorm on batch statistics. Returns ``(state', loss)``."""
    target = jnp.full((att.g_batch,), att.tracked_class, jnp.int32)

    def loss_fn(params, batch_stats, z):
        x01, new_stats = generate(generator, GenState(params, batch_stats, None), z, train=True)
        logits, _ = apply(disc_vars, (x01 - mean) / std, train=False)
        return cross_entropy(logits, target), new_stats

    z = jax.random.normal(key, (att.g_batch, att.noise_dim), jnp.float32)
    (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.batch_stats, z)
    updates, opt_state = generator_optimizer(att).update(g, state.opt_state, state.params)
    return GenState(optax.apply_updates(state.params, updates), stats, opt_state), loss


def train_generator(
    generator, apply, disc_vars, state: GenState, key, att: DMGANSettings, mean, std
):
    """``att.g_steps`` :func:`generator_step` s against the frozen ``disc_vars`` (the paper's
    "run G on D"); one `jax.lax.scan`. Returns ``(state', losses [g_steps])``."""

    def step(s, k):
        return generator_step(generator, apply, disc_vars, s, k, att, mean, std)

    return jax.lax.scan(step, state, jax.random.split(key, att.g_steps))


def sample(generator, state: GenState, z):
    """Generated images in [0, 1]; BatchNorm on the batch's statistics, as during G's
    training (the running averages lag behind a generator that changes every round)."""
    return generate(generator, state, z, train=True)[0]


class Judge(NamedTuple):
    """What scores the generated images: a classifier trained on held-out data (its
    variables) and those data themselves (for a 1-nearest-neighbour check in pixel space)."""

    variables: Any
    bank: Any  # [M, H*W*C] held-out images in [0, 1]
    bank_labels: Any  # [M]


def judge(
    generator, state: GenState, z, eval_model, jd: Judge, apply, received, new, att, mean, std
):
    """Images from the fixed noise ``z`` and how they are classified.

    Returns ``(images [N, H, W, C] in [0, 1], judge labels [N], stats)``; stats:
    ``tracked_fraction`` (the judge says tracked class), ``knn_tracked_fraction`` (the nearest
    held-out image in pixel space is of the tracked class: not fooled by adversarial
    patterns), ``nn_distance`` (mean RMS distance to that image), ``fooled_fraction`` (the
    received global model, which G was trained against, says tracked class),
    ``caught_fraction`` (the new global model says fake), ``diversity`` (mean per-pixel std
    over the images; 0 when the generator has collapsed) and the judge's ``histogram``.
    """
    x01 = sample(generator, state, z)
    xn = (x01 - mean) / std
    pred = jnp.argmax(eval_model.apply(jd.variables, xn)[0], -1)
    before = jnp.argmax(apply(received, xn, train=False)[0], -1)
    after = jnp.argmax(apply(new, xn, train=False)[0], -1)
    flat = x01.reshape(x01.shape[0], -1)
    d2 = jnp.sum(flat**2, 1)[:, None] - 2.0 * flat @ jd.bank.T + jnp.sum(jd.bank**2, 1)[None, :]
    nn = jnp.argmin(d2, axis=1)
    nn_d2 = jnp.maximum(jnp.take_along_axis(d2, nn[:, None], 1)[:, 0], 0.0)
    stats = {
        "tracked_fraction": jnp.mean(pred == att.tracked_class),
        "knn_tracked_fraction": jnp.mean(jd.bank_labels[nn] == att.tracked_class),
        "nn_distance": jnp.mean(jnp.sqrt(nn_d2 / flat.shape[1])),
        "fooled_fraction": jnp.mean(before == att.tracked_class),
        "caught_fraction": jnp.mean(after == att.fake_class),
        "diversity": jnp.mean(jnp.std(x01, axis=0)),
        "histogram": jnp.bincount(pred, length=att.fake_class),
    }
    return x01, pred, stats


def make_round(model, generator, eval_model, settings: FLSettings, att: DMGANSettings, mean, std):
    """The jitted DMGAN round.

    ``round(global_vars, gen_state, honest_x, honest_y, honest_n, honest_keys, att_x, att_y,
    att_n, att_key, lr, judge, fixed_z) -> (global_vars', gen_state', stats, images, pred)``:
    honest_* as `make_train_round` takes them (uint8 [chunks, chunk, n_max, H, W, C], ...),
    att_x uint8 [n_att_max, H, W, C] / att_y [n_att_max] / att_n: the attacker's real data;
    att_key: its key (generator noise and shuffles); lr: this round's local lr; judge: a
    :class:`Judge`. ``stats`` holds scalar losses and :func:`judge`'s numbers on the new
    generator; ``images`` [num_images, H, W, C] in [0, 1], ``pred`` the judge's labels.

    The attacker's local model starts as the received global model. With ``att.gan_steps``
    (the reference's scheme) it first alternates, that many times, one generator step
    against it and one SGD step of it (`client_update` on ``d_batch`` real rows and
    ``d_batch`` fakes labelled ``fake_class``, lr ``d_lr``). Then (the paper's scheme)
    ``att.g_steps`` generator steps against it frozen, and its ordinary local training
    (`client_update` with the round's settings) on its real data plus ``att.num_fake``
    fresh fakes labelled ``fake_class``; that is what it uploads.
    """
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    honest_round = make_train_round(model, settings, mean, std)
    none = jnp.zeros((0,), jnp.int32)
    gstep = lambda d, g, k: generator_step(generator, model.apply, d, g, k, att, mean, std)
    d_hp = ClientHParams(lr=att.d_lr, epochs=1, batch_size=2 * att.d_batch)
    fakes = lambda gen, k, n: jax.lax.stop_gradient(
        (sample(generator, gen, jax.random.normal(k, (n, att.noise_dim), jnp.float32)) - mean) / std
    )

    def gan_phase(dvars, gen, real, ay, an, key):
        """The reference's alternation (fleak/attack/dmgan.py:50-85); a `jax.lax.scan`."""
        y = jnp.concatenate(
            [
                jnp.zeros((att.d_batch,), ay.dtype),
                jnp.full((att.d_batch,), att.fake_class, ay.dtype),
            ]
        )
        mask = jnp.concatenate([jnp.full((att.d_batch,), an > 0), jnp.ones((att.d_batch,), bool)])

        def step(carry, k):
            dvars, gen = carry
            k_g, k_z, k_i = jax.random.split(k, 3)
            gen, g_loss = gstep(dvars, gen, k_g)
            idx = jax.random.randint(k_i, (att.d_batch,), 0, jnp.maximum(an, 1))
            x = jnp.concatenate([real[idx], fakes(gen, k_z, att.d_batch)])
            yb = y.at[: att.d_batch].set(ay[idx])
            dvars, d_loss = client_update(
                model.apply, dvars, x, yb, mask, None, d_hp, return_loss=True
            )
            return (dvars, gen), (g_loss, d_loss)

        return jax.lax.scan(step, (dvars, gen), jax.random.split(key, att.gan_steps))

    def attacker(gvars, gen, ax, ay, an, key, lr):
        k_gan, k_gen, k_fake, k_local = jax.random.split(key, 4)
        real = (ax.astype(jnp.float32) / 255.0 - mean) / std
        dvars, g_losses, d_losses = gvars, jnp.zeros((0,)), jnp.zeros((0,))
        if att.gan_steps:
            (dvars, gen), (g_losses, d_losses) = gan_phase(dvars, gen, real, ay, an, k_gan)
        if att.g_steps:
            gen, more = train_generator(generator, model.apply, dvars, gen, k_gen, att, mean, std)
            g_losses = jnp.concatenate([g_losses, more])
        hp = ClientHParams(
            lr=lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
        )
        x = jnp.concatenate([real, fakes(gen, k_fake, att.num_fake)])
        y = jnp.concatenate([ay, jnp.full((att.num_fake,), att.fake_class, ay.dtype)])
        mask = jnp.concatenate([jnp.arange(ax.shape[0]) < an, jnp.ones((att.num_fake,), bool)])
        avars, loss = client_update(model.apply, dvars, x, y, mask, k_local, hp, return_loss=True)
        d_loss = d_losses[-1] if att.gan_steps else jnp.float32(0.0)
        return avars, gen, g_losses, loss, d_loss

    def round_fn(gvars, gen, hx, hy, hn, hkeys, ax, ay, an, akey, lr, jd, fixed_z):
        avars, gen, g_losses, a_loss, d_loss = attacker(gvars, gen, ax, ay, an, akey, lr)
        h_avg, _, h_loss = honest_round(gvars, hx, hy, hn, hkeys, lr, none)
        n_h = jnp.sum(hn).astype(jnp.float32)
        w_a = att.attacker_weight * an.astype(jnp.float32)
        total = n_h + w_a
        new = jax.tree.map(lambda h, a: (n_h / total) * h + (w_a / total) * a, h_avg, avars)
        images, pred, stats = judge(
            generator, gen, fixed_z, eval_model, jd, model.apply, gvars, new, att, mean, std
        )
        stats.update(
            g_loss_first=g_losses[0],
            g_loss=g_losses[-1],
            d_loss=d_loss,
            attacker_loss=a_loss,
            honest_loss=h_loss,
        )
        return new, gen, stats, images, pred

    return jax.jit(round_fn)


# --------------------------------------------------------------------------- the judge


def train_classifier(model, x_u8, y, mean, std, key, *, steps: int, batch: int, lr: float):
    """Adam on minibatches sampled with replacement; one jitted `jax.lax.scan`."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    opt = optax.adam(lr)

    @jax.jit
    def fit(key, x_u8, y):
        k_init, k_steps = jax.random.split(key)
        v = model.init(k_init)

        def step(carry, k):
            params, opt_state = carry
            idx = jax.random.randint(k, (batch,), 0, x_u8.shape[0])
            xb = (x_u8[idx].astype(jnp.float32) / 255.0 - mean) / std

            def loss_fn(p):
                return cross_entropy(model.apply({**v, "params": p}, xb, train=False)[0], y[idx])

            loss, g = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = opt.update(g, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        init = (v["params"], opt.init(v["params"]))
        (params, _), losses = jax.lax.scan(step, init, jax.random.split(k_steps, steps))
        return {**v, "params": params}, losses

    return fit(key, jnp.asarray(x_u8), jnp.asarray(y))


# --------------------------------------------------------------------------- experiment


@dataclasses.dataclass
class Prepared:
    """Everything loaded and checked before any file is written."""

    config: Any
    dataset: Any
    mean: np.ndarray
    std: np.ndarray
    model: Any  # the global model, num_classes + 1 logits
    generator: Any
    eval_model: Any
    settings: FLSettings
    att: DMGANSettings
    train: Any  # ClientArrays; the attacker's row without the tracked class unless kept
    local_test: Any
    attacker: int
    honest: np.ndarray  # honest client ids


def global_model(config, num_classes: int, image_shape) -> models.Model:
    """The federation's model with ``num_classes + 1`` logits (the last: "fake")."""
    m = config.model
    if m.name != DISCRIMINATOR:
        return models.get(m.name, num_classes + 1, image_shape, conv_impl=m.conv_impl)
    module = DMGANDiscriminator(
        num_classes + 1,
        width=int(config.dmgan.d_width),
        negative_slope=0.01 if image_shape[-1] == 1 else 0.2,
        impl=m.conv_impl,
    )
    return models.Model(DISCRIMINATOR, module, tuple(image_shape), num_classes + 1, False)


def prepare(config) -> Prepared:
    """Validate, load and partition; raises ConfigError / DataError before any work."""
    validate(config)
    d, f, g = config.data, config.fl, config.dmgan
    ds = data.load(
        d.name,
        d.data_dir or None,
        d.source,
        image_size=int(d.image_size) or None,
        seed=int(config.seed),
    )
    if d.max_train:
        ds = dataclasses.replace(
            ds,
            train_images=ds.train_images[: d.max_train],
            train_labels=ds.train_labels[: d.max_train],
        )
    info = ds.info
    h, w, _ = info.image_shape
    if h % 4 or w % 4:
        raise ConfigError(
            f"data.image_size: DMGAN's generator needs H and W divisible by 4, got {h}x{w}"
        )
    if not g.tracked_class < info.num_classes:
        raise ConfigError(
            f"dmgan.tracked_class={g.tracked_class} must be < {info.num_classes} ({d.name} classes)"
        )
    if f.num_clients < 2 or f.num_clients > len(ds.train_labels):
        raise ConfigError(
            f"fl.num_clients={f.num_clients} must be in [2, {len(ds.train_labels)}] "
            "(an attacker and honest clients)"
        )
    mean, std = data.normalization(info, d.normalize)
    part = data.partition_from_config(ds.train_labels, config)
    a = int(g.attacker)
    train_idx = list(part.train_idx)
    if not g.attacker_keeps_tracked:
        train_idx[a] = train_idx[a][ds.train_labels[train_idx[a]] != g.tracked_class]
    train = data.gather_padded(ds.train_images, ds.train_labels, train_idx)
    local_test = data.gather_padded(ds.train_images, ds.train_labels, part.test_idx)
    honest = np.array([k for k in range(int(f.num_clients)) if k != a])
    smallest = int(train.n[honest].min())
    if f.batch_size > smallest:
        raise ConfigError(
            f"fl.batch_size={f.batch_size} is larger than the smallest honest client's "
            f"training data ({smallest} samples)"
        )
    n_real = int(train.n[a])
    num_fake = int(g.num_fake) or n_real
    if n_real + num_fake < f.batch_size:
        raise ConfigError(
            f"dmgan.num_fake={num_fake}: the attacker's {n_real} real + fake samples are "
            f"fewer than fl.batch_size={f.batch_size}"
        )
    if num_fake == 0:
        raise ConfigError("dmgan.num_fake: the attacker holds no real sample; set num_fake > 0")
    settings = FLSettings(
        rounds=int(f.rounds),
        client_fraction=float(f.client_fraction),
        epochs=int(f.local_epochs),
        batch_size=int(f.batch_size),
        lr=float(f.lr),
        lr_decay=float(f.lr_decay),
        momentum=float(f.momentum),
        weight_decay=float(f.weight_decay),
        client_chunk=int(f.client_chunk),
        eval_batch=int(f.eval_batch),
    )
    att = DMGANSettings(
        tracked_class=int(g.tracked_class),
        fake_class=int(info.num_classes),
        attacker_weight=float(g.attacker_weight),
        num_fake=num_fake,
        noise_dim=int(g.noise_dim),
        g_steps=int(g.g_steps),
        g_batch=int(g.g_batch),
        g_lr=float(g.g_lr),
        g_beta1=float(g.g_beta1),
        gan_steps=int(g.gan_steps),
        d_lr=float(g.d_lr),
        d_batch=int(g.d_batch),
    )
    model = global_model(config, info.num_classes, info.image_shape)
    generator = DMGANGenerator(
        tuple(info.image_shape), width=int(g.g_width), impl=config.model.conv_impl
    )
    eval_model = models.get(
        g.eval_model, info.num_classes, info.image_shape, conv_impl=config.model.conv_impl
    )
    if len(ds.test_labels) < 10:
        raise ConfigError(
            f"data.name={d.name!r}: its test split ({len(ds.test_labels)} images) is too "
            "small to train the judge"
        )
    return Prepared(
        config,
        ds,
        mean,
        std,
        model,
        generator,
        eval_model,
        settings,
        att,
        train,
        local_test,
        a,
        honest,
    )


def _finite(what: str, r: int, values: dict) -> None:
    bad = [k for k, v in values.items() if not np.all(np.isfinite(np.asarray(v)))]
    if bad:
        raise NumericalError(f"dmgan: non-finite {', '.join(bad)} at round {r} ({what})")


def _host(stats: dict) -> dict:
    out = {}
    for k, v in stats.items():
        v = np.asarray(v)
        out[k] = v.tolist() if v.ndim else float(v)
    return out


def run(config, workdir, key=None, *, progress: bool | None = None) -> dict:
    """Run the DMGAN experiment of ``config`` and write its results into ``workdir``.

    Args:
      config: a config from :func:`default_config` (or configs/dmgan_*.py).
      workdir: a new or empty directory.
      key: PRNG key (default ``jax.random.key(config.seed)``).
      progress: print a line per round (default ``config.output.progress``).

    Returns:
      The summary dict (also in ``metrics.json``), with ``tracked_fraction`` per round
      (index 0: the untrained generator).

    Raises:
      ConfigError / DataError for bad input, before anything is written;
      NumericalError when a loss or a generated image turns NaN/Inf (names the round).
    """
    t_start = time.perf_counter()
    p = prepare(config)
    workdir = report.prepare_workdir(workdir)
    if progress is None:
        progress = bool(config.output.get("progress", True))
    resolved = json.loads(config.to_json_best_effort())
    resolved["_meta"] = {"argv": sys.argv, "backend": jax.default_backend()}
    report.write_json(workdir / "config.json", resolved)
    key = jax.random.key(int(config.seed)) if key is None else key
    k_init, k_gen, k_eval, k_fixed, k_run = jax.random.split(key, 5)
    g, s, att = config.dmgan, p.settings, p.att

    # the judge: trained on the test split, which no client holds (20% kept to check it)
    ex, ey = p.dataset.test_images, p.dataset.test_labels
    if g.eval_max:
        ex, ey = ex[: g.eval_max], ey[: g.eval_max]
    cut = max(1, int(0.8 * len(ey)))
    t0 = time.perf_counter()
    eval_vars, eval_losses = train_classifier(
        p.eval_model,
        ex[:cut],
        ey[:cut],
        p.mean,
        p.std,
        k_eval,
        steps=int(g.eval_steps),
        batch=int(g.eval_batch),
        lr=float(g.eval_lr),
    )
    _finite("training the judge", 0, {"judge loss": eval_losses})
    acc_fn = make_accuracy(p.eval_model, p.mean, p.std, 500)
    c, t = acc_fn(eval_vars, ex[cut:], ey[cut:], np.ones(len(ey) - cut, bool))
    judge_acc = float(c) / max(float(t), 1.0)
    judge_seconds = time.perf_counter() - t0
    if progress:
        print(
            f"[dmgan] judge {g.eval_model}: held-out accuracy {judge_acc:.4f} "
            f"({judge_seconds:.1f}s)",
            flush=True,
        )

    gvars = p.model.init(k_init)
    gen = init_generator(p.generator, att, k_gen)
    fixed_z = jax.random.normal(k_fixed, (int(g.num_images), att.noise_dim), jnp.float32)
    round_fn = make_round(p.model, p.generator, p.eval_model, s, att, p.mean, p.std)
    mean, std = jnp.asarray(p.mean), jnp.asarray(p.std)
    bank = ex[:cut].reshape(cut, -1).astype(np.float32) / 255.0
    jd = Judge(eval_vars, jnp.asarray(bank), jnp.asarray(ey[:cut]))
    judge0 = jax.jit(
        lambda gen, gvars: judge(
            p.generator, gen, fixed_z, p.eval_model, jd, p.model.apply, gvars, gvars, att, mean, std
        )
    )
    accuracy = make_accuracy(p.model, p.mean, p.std, s.eval_batch)
    lt_valid = p.local_test.mask.reshape(-1)
    lt_x = p.local_test.x.reshape((-1,) + p.local_test.x.shape[2:])
    lt_y = p.local_test.y.reshape(-1)

    def test_acc(v):
        if not lt_valid.any():
            return None
        c, t = accuracy(v, lt_x, lt_y, lt_valid)
        return float(c) / max(float(t), 1.0)

    rounds_dir = workdir / "rounds"
    title = f"DMGAN on {config.data.name}: class {att.tracked_class}"

    def save_round(r, images, pred):
        images = np.asarray(images, np.float32)
        report.save_npz(
            rounds_dir / f"round_{r:03d}.npz",
            images=images,
            judge_labels=np.asarray(pred, np.int32),
        )
        report.save_image_grid(
            rounds_dir / f"round_{r:03d}.png", images[:64], title=f"{title}, round {r}"
        )

    images, pred, st = judge0(gen, gvars)
    st = _host(st)
    hist = {k: [v] for k, v in st.items()}
    for k in ("g_loss_first", "g_loss", "d_loss", "attacker_loss", "honest_loss", "seconds"):
        hist[k] = [None]
    hist["round"], hist["lr"], hist["local_test_acc"] = [0], [None], [test_acc(gvars)]
    save_round(0, images, pred)

    # client data as fixed-shape arrays: the round function compiles once
    m_h = max(1, int(round(len(p.honest) * s.client_fraction)))
    chunk = resolve_client_chunk(s.client_chunk, m_h)
    num_chunks = math.ceil(m_h / chunk)
    slots = num_chunks * chunk
    x_all, y_all, n_all = p.train.x, p.train.y, p.train.n
    a = p.attacker
    ax, ay, an = x_all[a], y_all[a], np.int32(n_all[a])
    rng = np.random.default_rng(int(config.seed))
    prog = Progress("dmgan", s.rounds, unit="round", enabled=progress)
    for r in range(s.rounds):
        t_round = time.perf_counter()
        sel = np.sort(rng.choice(p.honest, size=m_h, replace=False))
        sel_p = np.concatenate([sel, np.zeros(slots - m_h, sel.dtype)])
        n_sel = np.concatenate([n_all[sel], np.zeros(slots - m_h, n_all.dtype)])
        shape = lambda v: v.reshape((num_chunks, chunk) + v.shape[1:])
        round_key = jax.random.fold_in(k_run, r)
        keys = jax.vmap(lambda c: jax.random.fold_in(round_key, c))(jnp.asarray(sel_p))
        lr = jnp.float32(s.hparams(r).lr)
        new_vars, gen, st, images, pred = round_fn(
            gvars,
            gen,
            shape(x_all[sel_p]),
            shape(y_all[sel_p]),
            shape(n_sel),
            shape(keys),
            ax,
            ay,
            an,
            jax.random.fold_in(round_key, a),
            lr,
            jd,
            fixed_z,
        )
        st = _host(st)
        _finite("after the round", r + 1, {**st, "generated images": images})
        if not all(np.all(np.isfinite(v)) for v in jax.tree.leaves(new_vars)):
            raise NumericalError(f"dmgan: non-finite global model after round {r + 1}")
        gvars = new_vars
        acc = test_acc(gvars)
        save_round(r + 1, images, pred)
        st["seconds"] = time.perf_counter() - t_round
        for k, v in st.items():
            hist[k].append(v)
        hist["round"].append(r + 1)
        hist["lr"].append(float(lr))
        hist["local_test_acc"].append(acc)
        report.write_json(workdir / "dmgan.json", hist)
        prog.update(
            r + 1,
            g_loss=st["g_loss"],
            loss=st["attacker_loss"],
            honest=st["honest_loss"],
            judge=st["tracked_fraction"],
            knn=st["knn_tracked_fraction"],
            fooled=st["fooled_fraction"],
            caught=st["caught_fraction"],
            acc=acc if acc is not None else float("nan"),
        )

    report.plot_curves(
        workdir / "tracked_fraction.png",
        {
            f"judge ({g.eval_model}) says class {att.tracked_class}": (
                hist["round"],
                hist["tracked_fraction"],
            ),
            "nearest held-out image is of that class": (
                hist["round"],
                hist["knn_tracked_fraction"],
            ),
            "received global model says that class": (hist["round"], hist["fooled_fraction"]),
            "new global model says fake": (hist["round"], hist["caught_fraction"]),
        },
        "round",
        "fraction of generated images",
        title=title,
    )
    summary = {
        "attack": "dmgan",
        "dataset": config.data.name,
        "model": config.model.name,
        "num_clients": int(config.fl.num_clients),
        "rounds": s.rounds,
        "tracked_class": att.tracked_class,
        "attacker": a,
        "attacker_samples": int(an),
        "num_fake": att.num_fake,
        "judge": g.eval_model,
        "judge_accuracy": judge_acc,
        "tracked_fraction": hist["tracked_fraction"],
        "final_tracked_fraction": hist["tracked_fraction"][-1],
        "best_tracked_fraction": max(hist["tracked_fraction"]),
        "knn_tracked_fraction": hist["knn_tracked_fraction"],
        "final_knn_tracked_fraction": hist["knn_tracked_fraction"][-1],
        "final_local_test_acc": hist["local_test_acc"][-1],
        "final_diversity": hist["diversity"][-1],
        "judge_seconds": round(judge_seconds, 3),
        "wall_seconds": round(time.perf_counter() - t_start, 3),
        "device": jax.devices()[0].device_kind,
    }
    report.write_json(workdir / "metrics.json", {"summary": summary, "rounds": hist})
    return summary


# --------------------------------------------------------------------------- command line


def _cli() -> None:
    """``python -m leakjax.attacks.dmgan --config=configs/dmgan_mnist.py --workdir=DIR``.

    ``--config.x.y=v`` overrides a field; ``--dataset`` / ``--data_dir`` set
    ``data.name`` / ``data.data_dir`` (also without ``--config``: then the defaults of
    :func:`default_config`). Bad input: one line on stderr, exit status 2, nothing written.
    """
    from absl import app, flags
    from ml_collections import config_flags

    cfg = config_flags.DEFINE_config_file("config", None, "DMGAN config file", lock_config=True)
    workdir = flags.DEFINE_string("workdir", None, "New or empty directory for all outputs.")
    dataset = flags.DEFINE_string("dataset", None, "Sets data.name (e.g. mnist, digits).")
    data_dir = flags.DEFINE_string("data_dir", None, "Sets data.data_dir.")
    debug = flags.DEFINE_bool("debug", False, "Run without jit and with NaN checks.")

    def fail(msg: str, code: int = 2):
        print(f"dmgan: error: {msg}", file=sys.stderr)
        sys.exit(code)

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except Exception as e:  # noqa: BLE001 - bad flags, config files and overrides
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            fail(lines[-1] if lines else type(e).__name__)

    def main(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments: {' '.join(argv[1:])}")
        try:
            config = default_config() if cfg.value is None else cfg.value
            if "dmgan" not in config:
                fail("the config has no 'dmgan' group; start from dmgan.default_config()")
        except Exception as e:  # noqa: BLE001 - config file errors surface on first access
            fail(str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
        if dataset.value:
            config.data.name = dataset.value
        if data_dir.value:
            config.data.data_dir = data_dir.value
        if not workdir.value:
            fail("--workdir is required (a new or empty directory)")
        try:
            if debug.value:
                jax.config.update("jax_debug_nans", True)
                with jax.disable_jit():
                    summary = run(config, workdir.value)
            else:
                summary = run(config, workdir.value)
        except ConfigError as e:  # includes DataError
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except NumericalError as e:
            fail(str(e), code=3)
        keys = ("tracked_class", "final_tracked_fraction", "best_tracked_fraction",
                "judge_accuracy", "final_local_test_acc", "wall_seconds")  # fmt: skip
        print("summary: " + ", ".join(f"{k}={summary[k]}" for k in keys))
        print(f"results in {workdir.value}")

    app.run(main, flags_parser=parse)


if __name__ == "__main__":
    _cli()
