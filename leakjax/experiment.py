"""One experiment, end to end: ``run(config, workdir)``.

config -> data.load -> data.partition -> models.get -> fl.simulate (observations at
the attacked rounds) -> attacks.run (all attacked clients as vmapped trials) ->
metrics.evaluate -> files in workdir. The CLI (`leakjax.cli`) and the Colab
notebooks call this same function.

Everything that can be checked is checked before the workdir is created: a bad
config leaves no trace on disk.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from leakjax import (
    attacks,
    client_attack,
    data,
    defenses,
    distributed,
    models,
    plan,
    precision,
    report,
    scoring,
)
from leakjax import labels as labels_lib
from leakjax.attacks.signals import Interrupted, catch_signals
from leakjax.config import ALL_CLIENTS, NO_ATTACK, resolve_rounds, validate
from leakjax.fl import FLSettings, check_secure_agg, client_mesh, simulate
from leakjax.fl import cache as fl_cache
from leakjax.fl.observation import GroundTruth, gradient_observation, stack
from leakjax.models import imprint
from leakjax.progress import time_parts
from leakjax.provenance import resolved_config, write_config
from leakjax.types import ConfigError, NumericalError


@dataclasses.dataclass
class Prepared:
    """Everything loaded and checked, before any file is written."""

    config: object
    dataset: object
    mean: np.ndarray
    std: np.ndarray
    train: object
    local_test: object
    model: object
    settings: FLSettings
    spec: attacks.AttackSpec | attacks.ClientAttackSpec | None
    mesh: object
    defense: object = None  # leakjax.defenses.Pipeline (empty: no defense)


def prepare(config) -> Prepared:
    """Validate the config and load/partition the data; raises ConfigError/DataError."""
    validate(config)
    d, f, a = config.data, config.fl, config.attack
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
    if d.get("max_test", 0):
        ds = dataclasses.replace(
            ds,
            test_images=ds.test_images[: d.max_test],
            test_labels=ds.test_labels[: d.max_test],
        )
    mean, std = data.normalization(ds.info, d.normalize)
    if f.num_clients > len(ds.train_labels):
        raise ConfigError(
            f"fl.num_clients={f.num_clients} exceeds the {len(ds.train_labels)} training images"
        )
    part = data.partition_from_config(ds.train_labels, config)
    train = data.gather_padded(ds.train_images, ds.train_labels, part.train_idx)
    local_test = data.gather_padded(ds.train_images, ds.train_labels, part.test_idx)
    smallest = int(np.min(train.n))
    if f.batch_size > smallest and f.rounds > 0:
        raise ConfigError(
            f"fl.batch_size={f.batch_size} is larger than the smallest client's training data "
            f"({smallest} samples); lower it or change data.partition/fl.num_clients"
        )
    no_attack = a.name == NO_ATTACK  # FedAvg only: nothing below about the attack applies
    if a.mode == "gradient" and a.batch_size > smallest and not no_attack:
        raise ConfigError(
            f"attack.batch_size={a.batch_size} is larger than the smallest client's training "
            f"data ({smallest} samples)"
        )
    model = models.get(
        config.model.name,
        ds.info.num_classes,
        ds.info.image_shape,
        conv_impl=config.model.conv_impl,
        **{k: config.model[k] for k in models.options(config.model.name) if k in config.model},
    )
    # model.imprint_bins is a model setting (FedAvg with the block and no attack: Fig. 48);
    # attacks.rtf requires it (AttackSpec.requires)
    if config.model.get("imprint_bins", 0) > 0:
        model = imprint.wrap(
            model,
            bins=int(config.model.imprint_bins),
            distribution=str(config.model.get("imprint_distribution", "laplace")),
        )
    spec = None if no_attack else attacks.get(a.name)
    if spec is not None:
        model = spec.prepare_model(model, config)
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
    m = settings.num_selected(int(f.num_clients))
    if a.mode == "fedavg" and a.clients > m and not no_attack:
        raise ConfigError(f"attack.clients={a.clients} exceeds the {m} clients selected per round")
    pipeline = defenses.bind(config.get("defense"))
    check_secure_agg(pipeline, m)
    mesh = None if int(f.num_devices) == 1 else client_mesh(int(f.num_devices))
    prepared = Prepared(
        config, ds, mean, std, train, local_test, model, settings, spec, mesh, pipeline
    )
    if not no_attack:
        plan.dry_build(prepared)
    return prepared


def _gradient_observations(p: Prepared, variables, rng):
    a = p.config.attack
    if int(a.clients) == ALL_CLIENTS:  # audit: every client, nothing drawn
        ids = np.arange(len(p.train.n))
    else:
        ids = np.sort(rng.choice(len(p.train.n), size=int(a.clients), replace=False))
    obs, truths = [], []
    for cid in ids:
        x = data.normalize(p.train.x[cid, : a.batch_size], p.mean, p.std)
        y = p.train.y[cid, : a.batch_size].astype(np.int32)
        k = jax.random.key(int(rng.integers(2**31))) if p.defense else None
        o = gradient_observation(p.model, variables, x, y, defense=p.defense, key=k)
        obs.append(o.replace(client_id=int(cid), round=int(p.settings.rounds)))
        truths.append(GroundTruth(images=np.asarray(x), labels=y))
    return obs, truths


def fixed_labels(p: Prepared, obs, truth, key):
    """Labels handed to the attack: the truth ('oracle'), a `leakjax.labels` method's
    output (run here, on the host, before the vmapped attack), or None (the attack
    finds its own)."""
    method = p.spec.upstream_labels(str(p.config.attack.labels))
    if method == "oracle":
        return np.asarray(truth.labels, np.int32)
    if method in labels_lib.METHODS:
        return np.asarray(labels_lib.infer(obs, p.model, method, key=key), np.int32)
    return None


def _check_resume(config, workdir: pathlib.Path) -> None:
    cfg_file = workdir / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"--resume: {str(workdir)!r} has no config.json of an earlier run")
    if (workdir / "metrics.json").exists():
        raise ConfigError(f"--resume: the run in {str(workdir)!r} already finished")
    old = _leaves(json.loads(cfg_file.read_text()))
    new = _leaves(resolved_config(config))  # resolved values: an explicit default equals no setting
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        shown = ", ".join(
            f"{k} ({old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r})" for k in diff[:5]
        )
        raise ConfigError(
            f"--resume: the config differs from the earlier run's in {shown}; use the same config"
        )


def _leaves(tree: dict, prefix: str = "") -> dict:
    """``{'a.b': value}`` of a nested config dict (without the run's metadata)."""
    out = {}
    if not prefix:  # the attack's bound settings (config.json) stand for what config.attack set
        out.update({f"attack.{k}": v for k, v in tree.get("attack_settings", {}).items()})
    for k, v in tree.items():
        if not prefix and k in ("_meta", "attack_settings"):
            continue
        if not prefix and k == "attack" and isinstance(v, dict):
            v = {k2: v2 for k2, v2 in v.items() if f"attack.{k2}" not in out}
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def observation_key(key, obs):
    """The attack key of one observation: ``fold_in(fold_in(key, round), client id)``, the
    same wherever the client falls among the trials (an audit of N clients equals N
    single-client runs)."""
    return jax.random.fold_in(jax.random.fold_in(key, int(obs.round)), int(obs.client_id))


def attack_observations(
    p: Prepared, observations, truths, key, *, progress=True, checkpoint_dir=None, resume=False
):
    """Run the configured attack on every observation; returns per-trial result dicts.

    Restart r of an observation's trial uses ``fold_in(observation_key(key, obs), r)``."""
    a = p.config.attack
    audit = int(a.clients) == ALL_CLIENTS and progress
    done_clients = 0
    lo, hi = data.box(p.mean, p.std)
    box = (jnp.asarray(lo), jnp.asarray(hi))
    # one vmapped program per sample count (and, under secure aggregation, group sizes)
    groups: dict[tuple, list[int]] = {}
    for i, o in enumerate(observations):
        groups.setdefault((o.num_samples, tuple(o.group_sizes or ())), []).append(i)
    out = [None] * len(observations)
    # One flag for all groups: a signal during a group's last chunk lets that group finish
    # (`attacks.run` returns), then stops here before the next group starts.
    with catch_signals() as stop:
        for (n, sizes), idx in groups.items():
            if stop:
                done = int(a.steps)  # the groups before this one are complete
                raise Interrupted(done, None if checkpoint_dir is None else str(checkpoint_dir))
            tag = str(n) + ("" if not sizes else "g" + "-".join(map(str, sizes)))
            trial_keys = jnp.stack([observation_key(key, observations[i]) for i in idx])
            given = [fixed_labels(p, observations[i], truths[i], key) for i in idx]
            if any(g is None for g in given):
                trials = (stack([observations[i] for i in idx]), None)
            else:
                trials = (stack([observations[i] for i in idx]), np.stack(given))

            def factory(t, hp):
                obs, labels = t
                return p.spec.build(obs, p.model, a, box=box, labels=labels, hparams=hp)

            res = attacks.run(
                factory,
                key,
                steps=int(a.steps),
                restarts=int(a.restarts),
                trials=trials,
                hparams=p.spec.hparams(p.spec.bind(a)),  # traced: arguments of the program
                chunk=int(a.chunk),
                progress=progress,
                name=f"{a.name}:{a.mode}:n={tag}x{len(idx)}",
                checkpoint=None
                if checkpoint_dir is None
                else checkpoint_dir / f"attack_n{tag}.msgpack",
                checkpoint_every=int(a.checkpoint_every) if a.steps > a.checkpoint_every else 0,
                resume=resume,
                num_devices=int(a.get("num_devices", 1)),
                vmap_chunk=attacks.resolve_vmap_chunk(
                    int(a.get("vmap_chunk", -1)), str(a.mode), p.spec.sequential(a)
                ),
                trial_keys=trial_keys,
            )
            for j, i in enumerate(idx):
                out[i] = {"result": res, "trial": j}
            done_clients += len(idx)
            if audit:
                print(
                    f"[audit] clients {done_clients}/{len(observations)} done, group of "
                    f"n={tag} samples x {len(idx)} clients",
                    flush=True,
                )
    return out


def _federate(p: Prepared, workdir, sim_key, rng, *, resume: bool, progress: bool):
    """FedAvg (or its cache, on resume) and the observations to attack; fl_history.json."""
    config = p.config
    a, f = config.attack, config.fl
    no_attack = a.name == NO_ATTACK
    ckdir = workdir / "checkpoints"
    t0 = time.perf_counter()
    cache_path = ckdir / "fl.msgpack"
    if resume and cache_path.exists():
        variables, history, observations, truths = fl_cache.load(cache_path)
    elif f.rounds > 0:
        att_rounds = resolve_rounds(a.rounds, f.rounds) if a.mode == "fedavg" else ()
        att_rounds = () if no_attack else att_rounds
        sim = simulate(
            p.model,
            p.train,
            p.local_test,
            p.dataset.test_images,
            p.dataset.test_labels,
            p.mean,
            p.std,
            p.settings,
            sim_key,
            attack_rounds=att_rounds,
            attack_clients=0 if no_attack else int(a.clients),
            mesh=p.mesh,
            progress=progress,
            seed=int(config.seed),
            defense=p.defense or None,
        )
        variables, history = sim.variables, sim.history
        observations, truths = sim.observations, sim.truths
    else:
        variables = p.model.init(jax.random.fold_in(sim_key, 0))
        history, observations, truths = {"round": [0]}, [], []
    fl_seconds = time.perf_counter() - t0
    if distributed.is_main_process():
        report.write_json(workdir / "fl_history.json", history)
        if not (resume and cache_path.exists()):
            fl_cache.save(cache_path, variables, history, observations, truths)
    if a.mode == "gradient" and not no_attack:
        observations, truths = _gradient_observations(p, variables, rng)
    return variables, history, observations, truths, fl_seconds


def run(config, workdir, *, progress: bool | None = None, resume: bool = False, notes=()) -> dict:
    """Run one experiment and write its results into ``workdir``.

    Args:
      config: the experiment config (`leakjax.config.base_config` schema).
      workdir: a new or empty directory (or, with ``resume``, an interrupted run's).
      progress: print progress lines (default: ``config.output.progress``).
      resume: continue an interrupted run in ``workdir`` (same config): the FL results
        are reloaded from its cache and each attack from its last checkpoint; the
        results equal those of an uninterrupted run.
      notes: lines printed to stderr once every check has passed (a rejected run prints
        only its error).

    Returns the summary dict (also written to metrics.json['summary']).
    Raises ConfigError / DataError (nothing written) for bad input, and
    NumericalError if every attacked client's reconstruction failed with NaN/Inf.
    """
    t_start = time.perf_counter()
    workdir = pathlib.Path(workdir).expanduser()  # once: checked, written and cleaned alike
    plan.check_workdir(workdir, resume=resume)
    if resume:
        _check_resume(config, workdir)
    elif workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise ConfigError(
            f"workdir {str(workdir)!r} exists and is not empty; choose a new --workdir "
            "(or pass --resume to continue an interrupted run)"
        )
    p = prepare(config)
    if isinstance(p.spec, attacks.ClientAttackSpec) and distributed.process_count() > 1:
        raise ConfigError(
            f"attack.name={config.attack.name!r} (a malicious client) runs in one process, "
            f"not {distributed.process_count()} (--num_processes)"
        )
    distributed.barrier("leakjax: config checked")  # every process checked it: now write
    main = distributed.is_main_process()  # the one process that writes files
    for note in notes:
        print(note, file=sys.stderr)
    if progress is None:
        progress = bool(config.output.progress)
    if isinstance(p.spec, attacks.ClientAttackSpec):  # a malicious client (e.g. DMGAN)
        return client_attack.run(p, workdir, progress=progress, resume=resume)
    a = config.attack
    ckdir = workdir / "checkpoints"
    if not resume and main:
        workdir = report.prepare_workdir(workdir)
        write_config(config, workdir)

    key = jax.random.key(int(config.seed))
    sim_key, attack_key = jax.random.split(key)
    rng = np.random.default_rng(int(config.seed) + 1)
    fl_precision, attack_precision = precision.scopes(config)
    with fl_precision:  # FedAvg and the clients' observations (gradient mode's too)
        variables, history, observations, truths, fl_seconds = _federate(
            p, workdir, sim_key, rng, resume=resume, progress=progress
        )
    adaptive = p.defense if (p.defense and a.get("adaptive", True)) else None
    observations = [o.replace(defense=adaptive) for o in observations]

    t0 = time.perf_counter()
    timing = ckdir / "timing.json"  # an interrupted run's seconds, summed in the resume's summary
    try:
        with attack_precision:  # label inference and the attack's program
            outcomes = attack_observations(
                p,
                observations,
                truths,
                attack_key,
                progress=progress,
                checkpoint_dir=ckdir,  # several processes: gathered, written by process 0
                resume=resume,
            )
    except KeyboardInterrupt:  # attacks.Interrupted included
        now = time.perf_counter()
        parts = time_parts(timing, resume, fl=fl_seconds, attack=now - t0, wall=now - t_start)
        if main:
            report.write_json(timing, parts)
        raise
    attack_seconds = time.perf_counter() - t0

    per_client, arrays, pairs_of, curves = scoring.score(p, observations, truths, outcomes, history)
    now = time.perf_counter()
    parts = time_parts(timing, resume, fl=fl_seconds, attack=attack_seconds, wall=now - t_start)
    summary = scoring.summary(p, per_client, observations, history, parts)
    all_failed = bool(per_client) and all(c["failed"] for c in per_client)
    summary["all_failed"] = all_failed
    if main:
        report.write_json(workdir / "metrics.json", {"summary": summary, "clients": per_client})
        report.save_npz(workdir / "reconstruction.npz", **arrays)
        report.write_csv(workdir / "summary.csv", [report.scalars(summary)])
        scoring.write_figures(workdir, config, pairs_of, curves, history, per_client)
        shutil.rmtree(ckdir, ignore_errors=True)  # results are complete; checkpoints are spent
    if all_failed:
        raise NumericalError(
            f"{a.name}: every attacked client's reconstruction hit NaN/Inf "
            f"(see {workdir / 'metrics.json'})"
        )
    return summary
