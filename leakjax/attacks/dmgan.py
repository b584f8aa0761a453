"""DMGAN: a malicious FedAvg client with a GAN (Hitaj, Ateniese, Perez-Cruz, "Deep Models
Under the GAN: Information Leakage from Collaborative Deep Learning", CCS 2017,
https://arxiv.org/abs/1702.07464), as benchmarked by Zhu, Huang, Xie
(https://arxiv.org/abs/2409.19301).

A client-side attack (a `ClientAttackSpec`): ``attack.name='dmgan'`` in a config
(configs/dmgan_mnist.py) and the main CLI / `leakjax.experiment.run`, which hands it to
`leakjax.client_attack.run`; there it is `leakjax.fl.server.simulate`'s ``client_override``.

The federation trains a model with ``num_classes + 1`` outputs; the extra class means
"fake". Client ``attack.attacker`` is the adversary. Every round that selects it (paper,
Alg. 1):

1. it receives the global model and, keeping it frozen as the discriminator ``D``, trains
   its generator ``G`` for ``g_steps`` Adam steps on ``CE(D(G(z)), tracked_class)``: samples
   that the federation's model takes for the victim's class (a `jax.lax.scan`);
2. it generates ``num_fake`` samples, labels them with the fake class and trains on them,
   with its own real data, through `leakjax.fl.client_update` (the one local training), so
   that the federation learns to tell G's current samples from the real class and G must
   get closer to it in the next round;
3. the honest clients train as usual and the server averages everybody's variables weighted
   by their sample counts (the attacker's scaled by ``attacker_weight``; 0 makes the round
   plain FedAvg of the honest clients).

Success is quantified by a separately trained classifier (``eval_model``, trained on the
data set's test split, which no client holds; `leakjax.attacks.dmgan_judge`): the fraction
of ``num_images`` images generated from fixed noise that it assigns to the tracked class,
per round. Outputs in the workdir, besides the common ones: ``dmgan.json`` (per-round
numbers, rewritten every round), ``rounds/round_NNN.png`` and ``.npz`` (the generated
images, from round 0 = the untrained generator), ``tracked_fraction.png``.

Differences from the reference (fleak/attack/dmgan.py, client/client.py:110-111): there the
attacker alternates, for ``rec_epochs`` = 10 passes over its local batches, one SGD step of G
(lr 1e-4) against its local copy of the model in eval mode and one SGD step (lr 1e-3) of that
copy on real data + fakes labelled 10, then runs its normal local training on real data only
(``gan_steps`` > 0 restores that alternation). Here, as in the paper, G is trained against the
received (frozen) global model with Adam and the fakes enter the attacker's ordinary local
training; the fake class is ``num_classes`` (not a hard-coded 10, REFERENCE.md §5 item 7); the
reference discriminator's Dropout2d(0.3) is left out; by default the attacker holds no sample
of the tracked class (the paper's setting; ``attacker_keeps_tracked`` restores the
reference's).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from leakjax import models
from leakjax.attacks import dmgan_judge
from leakjax.attacks.client import ClientInputs, ClientResult, RoundRecord
from leakjax.attacks.registry import ClientAttackSpec, register
from leakjax.fl.client import ClientHParams, client_update, cross_entropy
from leakjax.models.generators import DMGANGenerator
from leakjax.progress import Progress
from leakjax.settings import Checked, setting
from leakjax.types import ConfigError, NumericalError

DISCRIMINATOR = "dmgan_discriminator"  # model.name of the reference's DMGAN discriminator


@dataclasses.dataclass(frozen=True)
class DMGANConfig(Checked):
    """Settings (``attack.<key>``; defaults: the reference's dmgan.sh)."""

    tracked_class: int = setting(3, low=0, help="the victim's class that G learns")
    attacker: int = setting(0, low=0, help="client id of the adversary")
    attacker_keeps_tracked: bool = setting(False, help="paper: it holds no tracked sample")
    attacker_weight: float = setting(1.0, low=0, help="x its real sample count in FedAvg")
    num_fake: int = setting(0, low=0, help="fakes in its local training (0: as many as real)")
    d_width: int = setting(64, low=1, help="dmgan_discriminator's first conv channels")
    g_width: int = setting(64, low=1, help="the generator's last hidden channels")
    noise_dim: int = setting(100, low=1)
    g_steps: int = setting(100, low=0, help="Adam steps on G per round")
    g_batch: int = setting(64, low=1)
    g_lr: float = setting(1e-3, low=0, low_open=True)
    g_beta1: float = setting(0.5, low=0, high=1, high_open=True)
    gan_steps: int = setting(0, low=0, help="> 0: first alternate G and D steps (reference)")
    d_lr: float = setting(2e-3, low=0, low_open=True, help="SGD lr of those D steps")
    d_batch: int = setting(50, low=1, help="real and fake rows per D step")
    num_images: int = setting(64, low=1, help="images from fixed noise judged every round")
    eval_model: str = setting("cnn", choices=models.names(), help="the judge's model")
    eval_steps: int = setting(1500, low=1)
    eval_batch: int = setting(64, low=1)
    eval_lr: float = setting(1e-3, low=0, low_open=True)
    eval_max: int = setting(0, low=0, help="test-split images for the judge (0: all)")


def _check(att: DMGANConfig, mode: str) -> None:
    if att.g_steps + att.gan_steps == 0:
        raise ConfigError("attack.g_steps and attack.gan_steps are both 0: G would never train")


@struct.dataclass
class GenState:
    """The adversary's generator: variables and Adam state, carried across rounds."""

    params: Any
    batch_stats: Any
    opt_state: Any


def generator_optimizer(att: DMGANConfig) -> optax.GradientTransformation:
    return optax.adam(att.g_lr, b1=att.g_beta1)


def init_generator(generator, att: DMGANConfig, key) -> GenState:
    v = generator.init(key, jnp.zeros((2, att.noise_dim), jnp.float32), train=False)
    return GenState(v["params"], v["batch_stats"], generator_optimizer(att).init(v["params"]))


def sample(generator, state: GenState, z, *, with_stats: bool = False):
    """Images in [0, 1] from noise; BatchNorm on the batch's statistics, as in G's training
    (the running averages lag behind a generator that changes every round). ``with_stats``:
    also the updated running statistics."""
    v = {"params": state.params, "batch_stats": state.batch_stats}
    x, upd = generator.apply(v, z, train=True, mutable=["batch_stats"])
    return (x, upd["batch_stats"]) if with_stats else x


def generator_step(generator, apply, disc_vars, state: GenState, key, att: DMGANConfig, mean, std):
    """One Adam step on ``CE(D(G(z)), tracked)``, D (``apply`` at ``disc_vars``, eval mode)
    frozen. Returns ``(state', loss)``."""
    target = jnp.full((att.g_batch,), att.tracked_class, jnp.int32)

    def loss_fn(params, batch_stats, z):
        x01, stats = sample(generator, GenState(params, batch_stats, None), z, with_stats=True)
        logits, _ = apply(disc_vars, (x01 - mean) / std, train=False)
        return cross_entropy(logits, target), stats

    z = jax.random.normal(key, (att.g_batch, att.noise_dim), jnp.float32)
    (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.batch_stats, z)
    updates, opt_state = generator_optimizer(att).update(g, state.opt_state, state.params)
    return GenState(optax.apply_updates(state.params, updates), stats, opt_state), loss


def train_generator(generator, apply, disc_vars, state, key, att: DMGANConfig, mean, std):
    """``att.g_steps`` generator steps against the frozen ``disc_vars`` (the paper's "run G
    on D"); one `jax.lax.scan`. Returns ``(state', losses [g_steps])``."""

    def step(s, k):
        return generator_step(generator, apply, disc_vars, s, k, att, mean, std)

    return jax.lax.scan(step, state, jax.random.split(key, att.g_steps))


def federation_model(name, num_classes, image_shape, *, conv_impl="auto", d_width=64):
    """The federation's model with ``num_classes + 1`` logits (the last: "fake")."""
    opts = {"width": int(d_width)} if name == DISCRIMINATOR else {}
    return models.get(name, num_classes + 1, tuple(image_shape), conv_impl=conv_impl, **opts)


def make_attacker(model, generator, fl, att: DMGANConfig, fake_class, num_fake, mean, std):
    """The jitted adversary: ``attacker(global_vars, gen, x_u8, y, n, key, lr) ->
    (variables_after, gen', stats)``.

    Its local model starts as the received global model. With ``gan_steps`` (the reference's
    scheme) it first alternates, that many times, one generator step against it and one SGD
    step of it (`client_update` on ``d_batch`` real rows and ``d_batch`` fakes labelled
    ``fake_class``, lr ``d_lr``). Then ``g_steps`` generator steps against it frozen, and its
    ordinary local training (`client_update` with the round's ``fl`` settings and ``lr``) on
    its real data plus ``num_fake`` fresh fakes labelled ``fake_class``: what it uploads.
    """
    gstep = lambda d, g, k: generator_step(generator, model.apply, d, g, k, att, mean, std)
    d_hp = ClientHParams(lr=att.d_lr, epochs=1, batch_size=2 * att.d_batch)

    def fakes(gen, k, n):
        z = jax.random.normal(k, (n, att.noise_dim), jnp.float32)
        return jax.lax.stop_gradient((sample(generator, gen, z) - mean) / std)

    def gan_phase(dvars, gen, real, ay, an, key):
        """The reference's alternation (fleak/attack/dmgan.py:50-85); a `jax.lax.scan`."""
        y = jnp.full((2 * att.d_batch,), fake_class, ay.dtype)
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
        dvars, g_losses, d_loss = gvars, jnp.zeros((0,)), jnp.float32(0.0)
        if att.gan_steps:
            (dvars, gen), (g_losses, d_losses) = gan_phase(dvars, gen, real, ay, an, k_gan)
            d_loss = d_losses[-1]
        if att.g_steps:
            gen, more = train_generator(generator, model.apply, dvars, gen, k_gen, att, mean, std)
            g_losses = jnp.concatenate([g_losses, more])
        hp = dataclasses.replace(fl.hparams(0), lr=lr)
        x = jnp.concatenate([real, fakes(gen, k_fake, num_fake)])
        y = jnp.concatenate([ay, jnp.full((num_fake,), fake_class, ay.dtype)])
        mask = jnp.concatenate([jnp.arange(ax.shape[0]) < an, jnp.ones((num_fake,), bool)])
        avars, loss = client_update(model.apply, dvars, x, y, mask, k_local, hp, return_loss=True)
        stats = dict(g_loss_first=g_losses[0], g_loss=g_losses[-1], d_loss=d_loss)
        return avars, gen, {**stats, "attacker_loss": loss}

    return jax.jit(attacker)


LOSSES = ("g_loss_first", "g_loss", "d_loss", "attacker_loss")


def _clients(inp: ClientInputs, att: DMGANConfig):
    """The clients' data with the attacker's row left without the tracked class (unless
    kept), and the attacker's fake count; one-line ConfigErrors for what cannot run."""
    tr = inp.train
    h, w, _ = inp.image_shape
    if h % 4 or w % 4:
        raise ConfigError(
            f"data.image_size: DMGAN's generator needs H and W divisible by 4, got {h}x{w}"
        )
    if att.tracked_class >= inp.num_classes:
        raise ConfigError(
            f"attack.tracked_class={att.tracked_class} must be < {inp.num_classes} "
            f"({inp.dataset} classes)"
        )
    k, a = len(tr.n), att.attacker
    if k < 2 or a >= k:
        raise ConfigError(
            f"attack.attacker={a} must be < fl.num_clients={k}, with fl.num_clients >= 2 "
            "(an attacker and honest clients)"
        )
    x, y, n = tr.x, tr.y, tr.n
    if not att.attacker_keeps_tracked:
        keep = np.flatnonzero(y[a, : n[a]] != att.tracked_class)
        x, y, n = x.copy(), y.copy(), n.copy()
        x[a, : len(keep)], y[a, : len(keep)] = x[a, keep], y[a, keep]
        x[a, len(keep) :], y[a, len(keep) :], n[a] = 0, 0, len(keep)
    num_fake = att.num_fake or int(n[a])
    if num_fake == 0:
        raise ConfigError("attack.num_fake: the attacker holds no real sample; set it > 0")
    if n[a] + num_fake < inp.fl.batch_size:
        raise ConfigError(
            f"attack.num_fake={num_fake}: the attacker's {n[a]} real + fake samples are fewer "
            f"than fl.batch_size={inp.fl.batch_size}"
        )
    if len(inp.test_labels) < 10:
        raise ConfigError(
            f"data.name={inp.dataset!r}: its test split is too small to train the judge"
        )
    return dataclasses.replace(tr, x=x, y=y, n=n), num_fake


class DMGAN:
    """The malicious client (a `leakjax.attacks.client.ClientAttack`, run by
    `leakjax.client_attack`); it writes nothing.

    ``DMGAN(inputs, att)`` checks the data-dependent settings (one-line ConfigErrors) and
    builds the federation's model (``model``) and the clients' data (``train``): cheap, no
    training. ``setup(key)`` trains the judge and initializes the generator; then ``update``
    and ``after_round`` (the round's numbers, generated images and judge labels) per round,
    and ``finish(history)``."""

    def __init__(self, inputs: ClientInputs, att: DMGANConfig):
        impl, shape = inputs.conv_impl, tuple(inputs.image_shape)
        self.inputs, self.att, self.client_id = inputs, att, att.attacker
        self.fake_class = inputs.num_classes
        self.train, self.num_fake = _clients(inputs, att)
        self.model = federation_model(
            inputs.model_name, inputs.num_classes, shape, conv_impl=impl, d_width=att.d_width
        )
        self.generator = DMGANGenerator(shape, width=att.g_width, impl=impl)
        self.eval_model = models.get(att.eval_model, inputs.num_classes, shape, conv_impl=impl)
        self.title = f"DMGAN on {inputs.dataset}: class {att.tracked_class}"

    def setup(self, key, *, progress: bool = False) -> None:
        inp, att, m, gen = self.inputs, self.att, self.model, self.generator
        k_eval, k_gen, k_z = jax.random.split(key, 3)
        ex, ey = inp.test_images, inp.test_labels
        ex, ey = (ex[: att.eval_max], ey[: att.eval_max]) if att.eval_max else (ex, ey)
        self.judge, self.judge_accuracy = dmgan_judge.fit(
            self.eval_model, ex, ey, inp.mean, inp.std, k_eval,
            steps=att.eval_steps, batch=att.eval_batch, lr=att.eval_lr,
        )  # fmt: skip
        if progress:
            print(f"[dmgan] judge {att.eval_model}: held-out accuracy {self.judge_accuracy:.4f}")
        mean, std = jnp.asarray(inp.mean, jnp.float32), jnp.asarray(inp.std, jnp.float32)
        self.gen = init_generator(gen, att, k_gen)
        self.fixed_z = jax.random.normal(k_z, (att.num_images, att.noise_dim), jnp.float32)
        self.attacker = make_attacker(
            m, gen, inp.fl, att, self.fake_class, self.num_fake, mean, std
        )

        @jax.jit
        def score(state, jd, z, before, after):
            x = sample(gen, state, z)
            pred, stats = dmgan_judge.score(
                self.eval_model, jd, m.apply, x, before, after,
                att.tracked_class, self.fake_class, mean, std,
            )  # fmt: skip
            return x, pred, stats

        self._score, self._losses = score, None
        self._prog = Progress("dmgan", inp.fl.rounds, unit="round", enabled=progress)

    def update(self, round, global_vars, hp, x_u8, y, n, key):  # noqa: A002 - protocol name
        after, self.gen, losses = self.attacker(
            global_vars, self.gen, x_u8, y, jnp.int32(n), key, jnp.float32(hp.lr)
        )
        self._losses = dmgan_judge.to_host(losses)
        return after, self.att.attacker_weight * n

    def after_round(self, point, global_before, global_after) -> RoundRecord:
        """The round's numbers (``stats``), its generated images and their judge labels
        (``arrays``; the first 64 images as the grid)."""
        x, pred, stats = self._score(
            self.gen, self.judge, self.fixed_z, global_before, global_after
        )
        stats = {**dmgan_judge.to_host(stats), **(self._losses or dict.fromkeys(LOSSES))}
        stats["attacker_selected"], self._losses = self._losses is not None, None
        bad = [k for k, v in stats.items() if v is not None and not np.all(np.isfinite(v))]
        x = np.asarray(x, np.float32)
        if bad or not np.all(np.isfinite(x)):
            what = ", ".join(bad) or "generated images"
            raise NumericalError(f"dmgan: non-finite {what} at round {point}")
        if point:
            keys = ("tracked_fraction", "knn_tracked_fraction", "fooled_fraction", "g_loss")
            self._prog.update(point, **{k: stats[k] for k in keys if stats[k] is not None})
        arrays = {"images": x, "judge_labels": np.int32(pred)}
        return RoundRecord(stats, arrays, x[:64], f"{self.title}, round {point}")

    def finish(self, history) -> ClientResult:
        """The summary's DMGAN entries and ``tracked_fraction.png``'s curves."""
        att, n = self.att, int(self.train.n[self.client_id])
        summary = {
            "tracked_class": att.tracked_class,
            "attacker": self.client_id,
            "attacker_samples": n,
            "num_fake": self.num_fake,
            "judge": att.eval_model,
            "judge_accuracy": self.judge_accuracy,
            **dmgan_judge.summarize(history),
        }
        plot = dmgan_judge.curves(history, att.tracked_class, att.eval_model, self.title)
        return ClientResult(summary, {"tracked_fraction.png": plot})


SPEC = register(
    ClientAttackSpec(
        name="dmgan",
        modes=("fedavg",),
        make=DMGAN,
        settings=DMGANConfig,
        paper="Hitaj et al. 2017, Deep Models Under the GAN (arXiv 1702.07464)",
        check=_check,
    )
)
