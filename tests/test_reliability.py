"""Reliability: determinism, kill + resume equals an uninterrupted run, generated bad configs."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import ml_collections
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leakjax import experiment
from leakjax.config import base_config
from leakjax.types import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
VOLATILE = {"fl_seconds", "attack_seconds", "wall_seconds", "wall_seconds_parts"}

SMALL = [
    "--config=configs/quickstart.py:tiny",
    "--config.fl.num_clients=40",
    "--config.fl.rounds=1",
    "--config.attack.clients=1",
    "--config.attack.steps=400",
    "--config.attack.chunk=20",
    "--config.attack.checkpoint_every=20",
    "--config.output.progress=True",
]


def _env():
    env = dict(os.environ)
    env.setdefault("LEAKJAX_JAX_CACHE", str(ROOT / ".jax_cache"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _metrics(wd):
    m = json.loads((wd / "metrics.json").read_text())
    for k in VOLATILE:
        m["summary"].pop(k, None)
    return m


def _small_config():
    cfg = _quick()
    cfg.fl.num_clients = 40
    cfg.fl.rounds = 1
    cfg.attack.clients = 1
    cfg.attack.steps = 120
    cfg.attack.chunk = 20
    cfg.attack.checkpoint_every = 20
    return cfg


def test_interrupt_and_resume_in_process_equals_uninterrupted(tmp_path, monkeypatch):
    from leakjax.attacks.signals import Interrupted
    from leakjax.progress import Progress

    full = tmp_path / "full"
    experiment.run(_small_config(), full, progress=False)

    original = Progress.update

    def update(self, done, **fields):
        original(self, done, **fields)
        if self.unit == "step" and done == 60:
            time.sleep(0.5)  # the interrupted part takes >= 0.5 s
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Progress, "update", update)
    part = tmp_path / "part"
    with pytest.raises(Interrupted):
        experiment.run(_small_config(), part, progress=False)
    monkeypatch.setattr(Progress, "update", original)
    assert not (part / "metrics.json").exists()
    assert (part / "checkpoints" / "fl.msgpack").exists()
    with pytest.raises(ConfigError, match="attack"):
        cfg = _small_config()
        cfg.attack.lr = 0.5
        experiment.run(cfg, part, progress=False, resume=True)
    experiment.run(_small_config(), part, progress=False, resume=True)
    assert _metrics(part) == _metrics(full)
    # the resumed run reports the time of both parts, not only of its own
    summary = json.loads((part / "metrics.json").read_text())["summary"]
    first, second = summary["wall_seconds_parts"]
    assert first >= 0.5 and second > 0
    assert summary["wall_seconds"] == pytest.approx(first + second, abs=0.01)
    assert summary["attack_seconds"] >= 0.5
    assert not (part / "checkpoints").exists()
    with pytest.raises(ConfigError, match="already finished"):
        experiment.run(_small_config(), part, progress=False, resume=True)


def test_sigint_during_the_last_attack_chunk_writes_the_results(tmp_path, monkeypatch, capfd):
    """The attack runs in one chunk (steps == chunk); SIGINT while it runs is acknowledged,
    and as every step is then done the results are written (issue 33 #3: they were lost)."""
    from leakjax.progress import Progress

    def config():
        cfg = _small_config()
        cfg.attack.steps = cfg.attack.chunk = 60
        return cfg

    full = tmp_path / "full"
    summary = experiment.run(config(), full, progress=False)
    assert summary["wall_seconds_parts"] == [summary["wall_seconds"]]
    original = Progress.update

    def update(self, done, **fields):
        original(self, done, **fields)
        if self.unit == "step" and done == 60:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Progress, "update", update)
    part = tmp_path / "part"
    experiment.run(config(), part, progress=False)
    assert "SIGINT received: stopping after this chunk..." in capfd.readouterr().err
    assert _metrics(part) == _metrics(full)
    assert not (part / "checkpoints").exists()


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted_and_runs_are_deterministic(tmp_path):
    full = tmp_path / "full"
    out = subprocess.run(
        [sys.executable, "-m", "leakjax", *SMALL, f"--workdir={full}"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]

    # the same run, sent SIGTERM once the attack has made progress, then resumed
    part = tmp_path / "part"
    proc = subprocess.Popen(
        [sys.executable, "-m", "leakjax", *SMALL, f"--workdir={part}"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 900
    for line in proc.stdout:
        if "[ig:" in line and "step 100/400" in line:
            proc.send_signal(signal.SIGTERM)
            break
        assert time.time() < deadline
    proc.wait(timeout=300)
    err = proc.stderr.read()
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and not (part / "metrics.json").exists()
    assert any((part / "checkpoints").glob("attack_*.msgpack"))

    # resuming with another config is refused
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "leakjax",
            *SMALL,
            "--config.attack.lr=0.2",
            f"--workdir={part}",
            "--resume",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "attack" in bad.stderr

    out = subprocess.run(
        [sys.executable, "-m", "leakjax", *SMALL, f"--workdir={part}", "--resume"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step 100/400" not in out.stdout  # it continued, not restarted
    assert _metrics(part) == _metrics(full)
    assert not (part / "checkpoints").exists()

    # determinism: an identical second run gives identical metrics
    again = tmp_path / "again"
    out = subprocess.run(
        [sys.executable, "-m", "leakjax", *SMALL, f"--workdir={again}"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0
    assert _metrics(again) == _metrics(full)


# --- generated bad configs --------------------------------------------------------------

_BAD_VALUES = {
    "data.name": st.sampled_from(["imagenet9", "", "CIFAR10", "mnist2"]),
    "data.normalize": st.sampled_from(["zscore", "", "halfway"]),
    "data.partition": st.sampled_from(["zipf", "IID", "dirichlet2"]),
    "data.beta": st.one_of(st.floats(-10, 0), st.just(0.0)),
    "data.test_fraction": st.one_of(st.floats(1.0, 5.0), st.floats(-5.0, -0.01)),
    "data.classes_per_client": st.integers(-5, 0),
    "data.min_size": st.integers(-100, -1),
    "model.name": st.sampled_from(["resnet99", "vgg19", "", "CNN"]),
    "fl.num_clients": st.integers(-100, 0),
    "fl.client_fraction": st.one_of(st.floats(-1, 0), st.floats(1.01, 10)),
    "fl.local_epochs": st.integers(-5, 0),
    "fl.batch_size": st.one_of(st.integers(-5, 0), st.integers(100_000, 10**7)),
    "fl.lr": st.floats(-10, 0),
    "fl.lr_decay": st.floats(-1, 0),
    "fl.momentum": st.one_of(st.floats(1.0, 5.0), st.floats(-5, -0.01)),
    "fl.weight_decay": st.floats(-1, -1e-6),
    "attack.name": st.sampled_from(["nope", "IG", "dlg2", ""]),
    "attack.mode": st.sampled_from(["server", "", "grad"]),
    "attack.labels": st.sampled_from(["psychic", "", "true"]),
    "attack.steps": st.integers(-10, 0),
    "attack.restarts": st.integers(-10, 0),
    "attack.lr": st.floats(-1, 0),
    "attack.tv": st.floats(-1, -1e-9),
    # -1 is audit mode (every sampled client)
    "attack.clients": st.one_of(st.integers(-5, -2), st.just(0), st.integers(10_000, 10**6)),
    "attack.chunk": st.integers(-5, 0),
}


def _set(cfg, dotted, value):
    *path, leaf = dotted.split(".")
    node = cfg
    for p in path:
        node = node[p]
    with node.ignore_type():
        node[leaf] = value


def _quick():
    sys.path.insert(0, str(ROOT / "configs"))
    try:
        import quickstart
    finally:
        sys.path.pop(0)
    return quickstart.get_config("tiny")


@settings(max_examples=220, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(sorted(_BAD_VALUES)).flatmap(lambda k: st.tuples(st.just(k), _BAD_VALUES[k]))
)
def test_generated_bad_configs_raise_one_line_config_errors(tmp_path_factory, kv):
    key, value = kv
    cfg = _quick()
    _set(cfg, key, value)
    wd = tmp_path_factory.mktemp("bad") / "wd"
    with pytest.raises(ConfigError) as info:
        experiment.run(cfg, wd, progress=False)
    msg = str(info.value)
    assert "\n" not in msg and msg
    assert key.split(".")[-1] in msg or key in msg, (key, value, msg)
    assert not wd.exists()


def test_wrong_types_are_config_errors(tmp_path):
    for key, value in [
        ("fl.lr", "fast"),
        ("attack.steps", 1.5),
        ("fl.batch_size", "ten"),
        ("seed", -1),
    ]:
        cfg = _quick()
        _set(cfg, key, value)
        with pytest.raises(ConfigError, match=key.split(".")[-1]):
            experiment.run(cfg, tmp_path / "wd", progress=False)
        assert not (tmp_path / "wd").exists()


def test_missing_group():
    cfg = ml_collections.ConfigDict({"seed": 0})
    with pytest.raises(ConfigError, match="data"):
        experiment.prepare(cfg)
    assert isinstance(base_config(), ml_collections.ConfigDict)


def _nan_spec():
    """A registered test attack whose images turn NaN at its 4th step (every restart)."""
    import jax.numpy as jnp

    from leakjax.attacks import Attack, AttackSpec, Reconstruction

    @dataclasses.dataclass(frozen=True)
    class NoSettings:
        labels: str = "auto"

    def build(obs, model, settings, *, steps, box, labels=None):
        shape = (obs.num_samples, *model.input_shape)

        def init(key):
            return {"x": jnp.zeros(shape), "t": jnp.int32(0)}

        def step(state, key):
            bad = state["t"] >= 3
            x = jnp.where(bad, jnp.nan, state["x"] + 0.01)
            return {"x": x, "t": state["t"] + 1}, {"loss": jnp.sum(x)}

        return Attack(init, step, lambda s: Reconstruction(s["x"], None))

    return AttackSpec(
        "nan_test", ("gradient", "fedavg"), build, NoSettings, "", label_modes=("auto", "optimize")
    )


def test_all_restarts_failing_is_reported_and_raises(tmp_path):
    """End to end: every restart of every attacked client hits NaN at step 3 -> metrics.json
    records each failure with its step, says all failed, and the run raises NumericalError
    (the CLI's exit status 3)."""
    from leakjax import attacks
    from leakjax.attacks import registry
    from leakjax.types import NumericalError

    attacks.register(_nan_spec())
    try:
        cfg = _quick()
        cfg.fl.num_clients, cfg.fl.rounds = 40, 1
        cfg.attack.name, cfg.attack.clients, cfg.attack.restarts = "nan_test", 2, 2
        cfg.attack.steps, cfg.attack.chunk, cfg.attack.labels = 8, 4, "optimize"
        for k in [k for k in cfg.attack if k not in registry.RUN_KEYS]:  # IG's settings
            del cfg.attack[k]
        wd = tmp_path / "wd"
        with pytest.raises(NumericalError, match="every attacked client"):
            experiment.run(cfg, wd, progress=False)
    finally:
        registry._REGISTRY.pop("nan_test", None)
    m = json.loads((wd / "metrics.json").read_text())
    assert m["summary"]["all_failed"] is True
    per = m["clients"]
    assert len(per) == 2
    for c in per:
        assert c["failed"] is True and c["failed_restarts"] == 2
        assert c["failed_step"] == [3, 3]
