"""GGL: Generative Gradient Leakage (Li, Zhou, Liang, Lu, Chen, Chen, "Auditing Privacy
Defenses in Federated Learning via Generative Gradient Leakage", CVPR 2022,
https://arxiv.org/abs/2203.15696), as benchmarked by Zhu, Huang, Xie
(https://arxiv.org/abs/2409.19301).

Instead of optimizing pixels, GGL searches the latent space of a generator ``G`` trained on
public data of the same domain (`leakjax.train_generator`) for a code ``z`` whose image
produces the observed update:

    F(z) = (1 / L) sum_l ||u_l(G(z), y) - u_l^obs||^2 + kl_weight * KL(z)

with ``L`` the number of parameter tensors, ``y`` the label (iDLG's sign rule for one image,
or labels given to the attack) and ``KL(z) = -1/2 (1 + log var(z) - mean(z)^2 - var(z))``,
the divergence of N(mean(z), var(z)) (statistics over the entries of ``z``) from N(0, 1)
that keeps ``z`` where the generator was trained (paper Eq. 5-6; the reference,
attack/ggl.py:93-132, weight 0.1). ``F`` is minimized without gradients by CMA-ES (paper
Sec. III-C; the reference calls nevergrad's CMA with a budget of 25000 evaluations, one
candidate per ask/tell). Here the search is evosax's CMA-ES (or separable CMA-ES for large
search spaces, ``es='auto'``), and one attack step is one *generation*: ask for
``population`` codes, evaluate all their fitnesses in one vmapped call, tell. So
`leakjax.attacks.run` scans generations and vmaps restarts and trials as for every other
attack, and ``steps * population`` is the evaluation budget. The best code seen so far is
kept in the state; the reconstruction is ``G(best z)``.

The generator outputs [0, 1] pixels and is mapped into the data's normalized box,
``x = lo + (hi - lo) * G(z)``; it runs in eval mode (running BatchNorm statistics), as in
the reference. An empty ``generator_path`` uses an untrained generator (seeded), the
paper's ablation (Sec. IV-J, Fig. 47 of the benchmark).

Two modes (the update comes from `leakjax.attacks.simulation.simulated_update`):
``gradient`` (one gradient at the observed weights) and ``fedavg`` (the client's local
training re-run with `leakjax.fl.client_update` on the generated batch; both the simulated
and the observed ``theta_0 - theta_T`` are divided by the round's lr, so that the L2 term
is on a gradient's scale and ``kl_weight`` means what it means in gradient mode). Several
images are searched jointly (``z`` is [B, d]); they need labels from the experiment
(``attack.labels='oracle'`` or a `leakjax.labels` count method), and the KL term is
summed over the images.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from leakjax.attacks import losses
from leakjax.attacks.base import Attack, Reconstruction, hyperparams
from leakjax.attacks.registry import AttackSpec, register, resolve_labels
from leakjax.attacks.simulation import FACTORED_MODES, SIMULATIONS, simulated_update
from leakjax.labels.idlg import idlg_label
from leakjax.models import generator_checkpoint, generators
from leakjax.settings import Checked, setting
from leakjax.types import Array, ConfigError

LABEL_MODES = ("auto", "idlg", "fixed")
STRATEGIES = ("auto", "cma", "sep_cma")
HYPERPARAMS = ("sigma", "kl_weight")  # traced (`leakjax.attacks.base.hyperparams`)
# es='auto': full-covariance CMA-ES up to this many searched dimensions (one image with the
# reference's 128-d latent), separable CMA-ES (diagonal covariance, O(d) per generation and
# faster learning rates) above.
FULL_CMA_MAX_DIM = 512
_LOG_EPS = 1e-10  # the reference's guard inside log(var)


@dataclasses.dataclass(frozen=True)
class GGLConfig(Checked):
    """Hyperparameters (defaults: the reference's attack/ggl.py and ggl_attack.py).

    Attributes:
      generator_path: a `leakjax.train_generator` checkpoint; '' = an untrained generator
        (the paper's ablation).
      generator_dim: width of the untrained generator (ignored with a checkpoint, whose
        architecture is stored in it).
      latent_dim: latent size of the untrained generator (ignored with a checkpoint).
      generator_seed: seed of the untrained generator's initialization.
      population: codes per generation; 0 = CMA-ES's default ``4 + floor(3 ln D)`` for the
        searched dimension D (18 for one 128-d code, as nevergrad's CMA in the reference).
      es: 'cma' (CMA-ES), 'sep_cma' (separable CMA-ES) or 'auto' (CMA-ES up to
        `FULL_CMA_MAX_DIM` searched dimensions, Sep-CMA-ES above).
      sigma: initial step size (the search starts at z = 0, as the reference).
      kl_weight: weight of the KL prior on z (the reference: 0.1).
      population_chunk: 0 = the whole population's fitness in one vmap; k > 0 = a
        ``lax.map`` over chunks of k vmapped candidates (still one jitted call; bounds the
        memory of the per-candidate updates, P x #params floats, for large models).
      labels: 'auto' (the labels given to `make` if any, else iDLG's rule for one image),
        'idlg', or 'fixed' (the labels given to `make`).
      num_images: images searched (default: the observation's sample count).
      simulation: fedavg mode: 'exact' or 'reference' (see `simulated_update`).
      factored: 'auto' / 'on' / 'off'. 'gradient' mode: keep big dense-kernel gradients factored
        (`leakjax.attacks.lowrank`; same fitness to float32 rounding, several times faster).
        'fedavg' mode: the simulated client's big dense kernels factored through its local
        steps (`leakjax.fl.factored`; 'auto': above its size threshold; 'off': dense).
    """

    generator_path: str = ""
    generator_dim: int = setting(128, low=1)
    latent_dim: int = setting(128, low=1)
    generator_seed: int = setting(0, low=0)
    population: int = setting(0, low=0)
    es: str = setting("auto", choices=STRATEGIES)
    sigma: float = setting(1.0, low=0, low_open=True)
    kl_weight: float = setting(0.1, low=0)
    population_chunk: int = setting(0, low=0)
    labels: str = "auto"
    num_images: int | None = setting(None, low=1)
    simulation: str = setting("exact", choices=SIMULATIONS)
    factored: str = setting("auto", choices=FACTORED_MODES)


@struct.dataclass
class GGLState:
    es: Any  # the evolution strategy's state (mean, step size, covariance, paths)
    best_z: Array  # best code found so far [B, d]
    best_fitness: Array  # its fitness (inf before the first generation)
    step: Array  # generations done


def check_config(cfg: GGLConfig, mode: str) -> None:
    """One-line ConfigErrors the binder cannot find alone (a bad checkpoint included: it is
    read, and cached, here so that it fails before any work)."""
    if mode not in ("gradient", "fedavg"):
        raise ConfigError(f"attack.mode={mode!r} not in ('gradient', 'fedavg')")
    if cfg.labels not in LABEL_MODES:
        raise ConfigError(f"attack.labels={cfg.labels!r} not in {LABEL_MODES}")
    if cfg.population == 1:
        raise ConfigError("attack.population must be 0 (auto) or >= 2, got 1")
    if cfg.generator_path:
        path = pathlib.Path(cfg.generator_path).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"attack.generator_path={cfg.generator_path!r}: no such file (train one with "
                "python -m leakjax.train_generator, or use '' for an untrained generator)"
            )
        st = path.stat()
        _read_checkpoint(str(path.resolve()), st.st_mtime_ns, st.st_size)


def kl_prior(z: Array) -> Array:
    """Sum over codes [B, d] of ``-1/2 (1 + log(var + 1e-10) - mean^2 - var)`` (the
    reference's KLD, with mean and population variance over each code's entries)."""
    mean = jnp.mean(z, axis=-1)
    var = jnp.var(z, axis=-1)
    return jnp.sum(-0.5 * (1.0 + jnp.log(var + _LOG_EPS) - jnp.square(mean) - var))


def default_population(dim: int) -> int:
    """CMA-ES's default population ``4 + floor(3 ln dim)`` (Hansen 2016, arXiv 1604.00772)."""
    return 4 + int(3 * math.log(dim))


def strategy_name(es: str, dim: int) -> str:
    """'cma' or 'sep_cma' for ``attack.es`` and ``dim`` searched dimensions."""
    if es == "auto":
        return "cma" if dim <= FULL_CMA_MAX_DIM else "sep_cma"
    return es


@functools.lru_cache(maxsize=32)
def _strategy(name: str, population: int, shape: tuple[int, int], sigma: float = 1.0):
    """The evosax strategy and its params (built eagerly, also when called under a trace,
    and cached so that its jitted ask/tell are compiled once); ``make`` replaces ``std_init``
    with the traced ``sigma``."""
    # imported here: evosax builds jax arrays at import time, which would start the backend
    # (and its log lines) whenever the attack registry is imported, e.g. for a config error
    from evosax.algorithms import CMA_ES, Sep_CMA_ES

    cls = {"cma": CMA_ES, "sep_cma": Sep_CMA_ES}[name]
    with jax.ensure_compile_time_eval():
        es = cls(population_size=population, solution=jnp.zeros(shape, jnp.float32))
        params = es.default_params.replace(std_init=jnp.asarray(sigma, jnp.float32))
    return es, params


@functools.lru_cache(maxsize=4)
def _read_checkpoint(path: str, mtime_ns: int, size: int):
    del mtime_ns, size  # cache keys: a rewritten file is read again
    return generator_checkpoint.load_generator(path, what="attack.generator_path")


@functools.lru_cache(maxsize=8)
def _untrained(image_shape: tuple[int, int, int], dim: int, latent_dim: int, seed: int):
    module = generators.GGLGenerator(image_shape, dim=dim)
    with jax.ensure_compile_time_eval():
        variables = generators.init_generator(module, jax.random.key(seed), 2, latent_dim)
    return module, jax.tree.map(np.asarray, variables)


def load_generator(cfg: GGLConfig, image_shape) -> tuple[Any, Any, int]:
    """The attack's generator: ``(module, variables (numpy), latent_dim)``.

    From ``cfg.generator_path`` (a `leakjax.train_generator` checkpoint, read once and
    cached; the arrays are exactly the saved ones), or, when it is '', an untrained
    `GGLGenerator` initialized with ``cfg.generator_seed``.

    Raises:
      ConfigError naming attack.generator_path: missing or unreadable file, or a generator
        whose images do not have the model's input shape.
    """
    shape = tuple(int(v) for v in image_shape)
    if not cfg.generator_path:
        module, variables = _untrained(
            shape, int(cfg.generator_dim), int(cfg.latent_dim), int(cfg.generator_seed)
        )
        return module, variables, int(cfg.latent_dim)
    path = pathlib.Path(cfg.generator_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"attack.generator_path={cfg.generator_path!r}: no such file")
    st = path.stat()
    module, variables, info = _read_checkpoint(str(path.resolve()), st.st_mtime_ns, st.st_size)
    gen_shape = tuple(getattr(module, "image_shape", ()))
    if gen_shape != shape:
        raise ConfigError(
            f"attack.generator_path={cfg.generator_path!r}: the generator makes {gen_shape} "
            f"images but the model takes {shape}"
        )
    return module, variables, int(info["latent_dim"])


def image_fn(module, variables, box):
    """``z [B, d] -> G(z)`` in normalized pixels ``lo + (hi - lo) * G(z)`` (eval mode)."""
    lo, hi = (jnp.asarray(b, jnp.float32) for b in box)

    def images(z: Array) -> Array:
        return lo + (hi - lo) * module.apply(variables, z, train=False)

    return images


def fitness_fn(obs, model, images, labels, cfg: GGLConfig, kl_weight=None):
    """GGL's fitness of one candidate ``z [B, d] -> scalar``: mean squared update distance
    per parameter tensor plus ``kl_weight * KL(z)`` (see the module docstring).

    Args:
      obs: the `Observation`.
      model: the attacked `leakjax.models.Model`.
      images: ``z -> normalized images`` (`image_fn`).
      labels: int labels [B].
      cfg: GGLConfig (kl_weight, simulation).
      kl_weight: the KL prior's weight (a traced scalar); None: ``cfg.kl_weight``.
    """
    kl_weight = cfg.kl_weight if kl_weight is None else kl_weight
    scale = 1.0 / jnp.asarray(obs.hp.lr, jnp.float32) if obs.mode == "fedavg" else 1.0
    observed = jax.tree.map(lambda u: u * scale, obs.update)
    num_tensors = len(jax.tree.leaves(observed))

    def fitness(z: Array) -> Array:
        upd = simulated_update(model, obs, images(z), labels, cfg.simulation, factored=cfg.factored)
        upd = jax.tree.map(lambda u: u * scale, upd)
        return losses.l2(upd, observed) / num_tensors + kl_weight * kl_prior(z)

    return fitness


def make(obs, model, cfg: GGLConfig, *, steps: int, box, labels=None, hparams=None) -> Attack:
    """GGL against one observation.

    Args:
      obs: `leakjax.fl.observation.Observation` ('gradient' or 'fedavg' mode).
      model: `leakjax.models.Model` the client trains.
      cfg: GGLConfig.
      steps: generations (unused: no schedule; kept for the interface).
      box: (lo, hi) per-channel bounds of valid normalized pixels.
      labels: fixed int labels [B] (true or inferred upstream), or None.
      hparams: traced {'sigma', 'kl_weight'} (float32 scalars) used instead of the
        settings' values (`leakjax.attacks.base.hyperparams`).

    Returns:
      `Attack` whose step is one CMA-ES generation; ``result`` gives ``G(best z)`` (in the
      box) and the labels used.
    """
    del steps
    check_config(cfg, obs.mode)
    num = int(cfg.num_images or obs.num_samples)
    if obs.mode == "fedavg" and num != obs.num_samples:
        raise ConfigError(
            f"attack.num_images={num} but the client trained on {obs.num_samples} samples"
        )
    mode, fixed = resolve_labels(cfg.labels, labels, otherwise="idlg", num=num)
    if mode == "idlg":
        if num != 1:
            raise ConfigError(
                f"attack.labels: iDLG's rule gives one label but GGL searches {num} images; "
                "use attack.labels='oracle' or a label-count method (e.g. 'geng')"
            )
        fixed = jnp.reshape(idlg_label(obs.update), (1,))

    module, variables, latent = load_generator(cfg, model.input_shape)
    shape = (num, latent)
    dim = num * latent
    population = int(cfg.population) or default_population(dim)
    hp = hyperparams(cfg, HYPERPARAMS, hparams)
    es, params = _strategy(strategy_name(cfg.es, dim), population, shape)
    params = params.replace(std_init=hp["sigma"])  # CMA-ES's initial step size
    images = image_fn(module, variables, box)
    fitness = fitness_fn(obs, model, images, fixed, cfg, kl_weight=hp["kl_weight"])
    chunk = int(cfg.population_chunk)
    if 0 < chunk < population:
        evaluate = lambda pop: jax.lax.map(fitness, pop, batch_size=chunk)
    else:
        evaluate = jax.vmap(fitness)  # the whole population in one vmapped call

    def init(key):
        mean = jnp.zeros(shape, jnp.float32)  # the reference starts nevergrad's CMA at 0
        return GGLState(
            es=es.init(key, mean, params),
            best_z=mean,
            best_fitness=jnp.asarray(jnp.inf, jnp.float32),
            step=jnp.int32(0),
        )

    def step(state, key):
        k_ask, k_tell = jax.random.split(key)
        pop, es_state = es.ask(k_ask, state.es, params)  # [P, B, d]
        fit = evaluate(pop)  # [P]
        fit = jnp.where(jnp.isnan(fit), jnp.inf, fit)
        es_state, _ = es.tell(k_tell, pop, fit, es_state, params)
        i = jnp.argmin(fit)
        better = fit[i] < state.best_fitness
        new = GGLState(
            es=es_state,
            best_z=jnp.where(better, pop[i], state.best_z),
            best_fitness=jnp.where(better, fit[i], state.best_fitness),
            step=state.step + 1,
        )
        return new, {"loss": new.best_fitness, "generation_best": fit[i]}

    def result(state):
        return Reconstruction(images=images(state.best_z), labels=fixed)

    return Attack(init=init, step=step, result=result)


SPEC = register(
    AttackSpec(
        name="ggl",
        modes=("gradient", "fedavg"),
        make=make,
        settings=GGLConfig,
        label_modes=("auto", "idlg"),
        check=check_config,
        paper="Li et al. 2022, Generative Gradient Leakage, CVPR, arXiv:2203.15696",
        hyperparams=HYPERPARAMS,
    )
)
