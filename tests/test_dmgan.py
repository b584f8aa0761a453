"""DMGAN (Hitaj et al. 2017), a client-side attack: the malicious client's update, its setting
checks, that it runs through the main CLI / `experiment.run`, and that it learns the tracked
class."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import attacks, client_attack, experiment
from leakjax.attacks import dmgan
from leakjax.fl import FLSettings
from leakjax.models.generators import DMGANGenerator
from leakjax.types import ConfigError, NumericalError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAPE = (8, 8, 1)
C = 10


def _close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _tiny(**overrides):
    sys.path.insert(0, str(ROOT / "configs"))
    try:
        from dmgan_mnist import get_config
    finally:
        sys.path.pop(0)
    c = get_config("tiny")
    c.output.progress = False
    for key, value in overrides.items():
        group, field = key.split(".")
        c[group][field] = value
    return c


def test_registered_as_a_client_attack():
    spec = attacks.get("dmgan")
    assert spec.kind == "client" and spec.settings is dmgan.DMGANConfig
    assert spec.bind(_tiny().attack).g_steps == 5
    with pytest.raises(ConfigError, match="^attack.g_steps and attack.gan_steps are both 0"):
        spec.bind(_tiny(**{"attack.g_steps": 0}).attack)


def test_federation_model_has_an_extra_fake_class():
    for name in (dmgan.DISCRIMINATOR, "mlp", "cnn"):
        shape = SHAPE if name != "cnn" else (12, 12, 1)
        model = dmgan.federation_model(name, C, shape, d_width=4)
        assert model.num_classes == C + 1
        logits, _ = model.apply(model.init(jax.random.key(0)), jnp.zeros((2, *shape)))
        assert logits.shape == (2, C + 1)


def test_generator_shapes_and_range():
    for shape in ((28, 28, 1), (16, 16, 1), (32, 32, 3)):
        gen = DMGANGenerator(shape, width=4)
        att = dmgan.DMGANConfig(noise_dim=8)
        state = dmgan.init_generator(gen, att, jax.random.key(0))
        x = dmgan.sample(gen, state, jax.random.normal(jax.random.key(1), (3, 8)))
        assert x.shape == (3, *shape)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_generator_training_fools_the_frozen_model():
    """G trained against a frozen D makes D call its samples the tracked class (none before)."""
    # width 4 on 8x8 is too weak a function of its input to be fooled
    model = dmgan.federation_model(dmgan.DISCRIMINATOR, C, SHAPE, d_width=16)
    gen = DMGANGenerator(SHAPE, width=8)
    att = dmgan.DMGANConfig(tracked_class=3, noise_dim=8, g_steps=60, g_batch=8, g_lr=1e-2)
    gvars = model.init(jax.random.key(0))
    state = dmgan.init_generator(gen, att, jax.random.key(1))
    z = jax.random.normal(jax.random.key(5), (32, 8))

    def tracked(s):
        x = dmgan.sample(gen, s, z)
        return float(jnp.mean(jnp.argmax(model.apply(gvars, (x - 0.5) / 0.5)[0], -1) == 3))

    new, losses = jax.jit(
        lambda s: dmgan.train_generator(gen, model.apply, gvars, s, jax.random.key(2), att, 0.5, 0.5)
    )(state)  # fmt: skip
    assert losses.shape == (60,)
    assert float(losses[-5:].mean()) < float(losses[:5].mean()) - 0.2
    assert tracked(state) == 0.0 and tracked(new) >= 0.9
    _close(model.init(jax.random.key(0)), gvars)  # the discriminator is untouched


def _attacker(gan_steps):
    model = dmgan.federation_model(dmgan.DISCRIMINATOR, C, SHAPE, d_width=4)
    gen = DMGANGenerator(SHAPE, width=4)
    fl = FLSettings(epochs=2, batch_size=4, lr=0.1, momentum=0.5, weight_decay=1e-3)
    att = dmgan.DMGANConfig(
        tracked_class=3, num_fake=6, g_steps=3, g_batch=4, noise_dim=8, gan_steps=gan_steps,
        d_batch=3, d_lr=0.05,
    )  # fmt: skip
    fn = dmgan.make_attacker(model, gen, fl, att, C, 6, jnp.float32(0.5), jnp.float32(0.5))
    ks = jax.random.split(jax.random.key(0), 4)
    gvars, gstate = model.init(ks[0]), dmgan.init_generator(gen, att, ks[1])
    ax = jax.random.randint(ks[2], (10,) + SHAPE, 0, 256).astype(jnp.uint8)
    ay = jax.random.randint(ks[3], (10,), 0, 3)  # no sample of the fake class
    return fn, gvars, gstate, ax, ay


@pytest.mark.parametrize("gan_steps", [0, 2])
def test_attacker_upload_learns_the_fake_class(gan_steps):
    """The adversary trains G and its upload on real + fakes labelled fake_class: the head's
    bias for that class grows the most; G changed; the losses are finite."""
    fn, gvars, gstate, ax, ay = _attacker(gan_steps)
    after, gen, stats = fn(gvars, gstate, ax, ay, jnp.int32(8), jax.random.key(9), jnp.float32(0.1))
    bias = after["params"]["head"]["bias"] - gvars["params"]["head"]["bias"]
    assert float(bias[C]) > 0.0 and float(bias[C]) > float(jnp.max(bias[:C]))
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), gen.params, gstate.params)
    assert max(jax.tree.leaves(moved)) > 0.0
    assert all(np.isfinite(float(v)) for v in stats.values())
    assert (float(stats["d_loss"]) > 0.0) == (gan_steps > 0)


def test_attacker_compiles_once():
    fn, gvars, gstate, ax, ay = _attacker(0)
    for r in range(3):
        gvars, gstate, _ = fn(
            gvars, gstate, ax, ay, jnp.int32(8 - r), jax.random.key(r), jnp.float32(0.1 * 0.95**r)
        )
    assert fn._cache_size() == 1


def test_runs_through_experiment_run(tmp_path):
    """experiment.run dispatches the client attack: FedAvg with the malicious client, the
    judge's numbers per round in metrics.json, the round images and figures."""
    c = _tiny(**{"fl.rounds": 2})
    s = experiment.run(c, tmp_path / "run")
    wd = tmp_path / "run"
    m = json.loads((wd / "metrics.json").read_text())
    assert m["summary"] == json.loads(json.dumps(s))
    tf = m["summary"]["tracked_fraction"]
    assert len(tf) == 3 and all(0.0 <= v <= 1.0 for v in tf)  # round 0 .. round 2
    assert m["summary"]["final_tracked_fraction"] == tf[-1] == m["rounds"]["tracked_fraction"][-1]
    assert s["attack"] == "dmgan" and s["mode"] == "client" and s["attacker"] == 0
    assert 0.0 < s["judge_accuracy"] <= 1.0
    h = m["rounds"]
    assert h["round"] == [0, 1, 2] and h["attacker_selected"] == [False, True, True]
    assert h["g_loss"][0] is None and all(np.isfinite(h["g_loss"][1:]))
    p = experiment.prepare(c)  # the attacker holds no image of the tracked class
    n0 = int(p.train.n[0])
    tracked = int(np.sum(p.train.y[0, :n0] == 3))
    assert tracked > 0 and s["attacker_samples"] == s["num_fake"] == n0 - tracked
    assert json.loads((wd / "dmgan.json").read_text())["round"] == [0, 1, 2]
    for r in range(3):
        saved = np.load(wd / "rounds" / f"round_{r:03d}.npz")
        assert saved["images"].shape == (8, 16, 16, 1) and saved["judge_labels"].shape == (8,)
        assert (wd / "rounds" / f"round_{r:03d}.png").is_file()
    for name in ("tracked_fraction.png", "fl_accuracy.png", "fl_history.json", "summary.csv"):
        assert (wd / name).is_file(), name
    cfg = json.loads((wd / "config.json").read_text())
    assert cfg["attack_settings"]["tracked_class"] == 3 and cfg["attack_settings"]["d_width"] == 8


def test_the_client_writes_nothing_and_returns_its_arrays(tmp_path, monkeypatch):
    """Built from explicit inputs, DMGAN's setup / update / after_round / finish write no file
    (the runner, `client_attack`, writes): the working directory stays empty, and the
    records hold the round's images and judge labels and the figure's curves as data."""
    c = _tiny(**{"fl.rounds": 1})
    p = experiment.prepare(c)
    spec = attacks.get("dmgan")
    assert isinstance(spec, attacks.ClientAttackSpec)
    inputs = client_attack.inputs(p)
    client = spec.make(inputs, spec.bind(c.attack))
    empty = tmp_path / "cwd"
    empty.mkdir()
    monkeypatch.chdir(empty)
    client.setup(jax.random.key(0))
    v = client.model.init(jax.random.key(1))
    a, tr = client.client_id, client.train
    rec0 = client.after_round(0, v, v)
    after, weight = client.update(
        0, v, p.settings.hparams(0), tr.x[a], tr.y[a], int(tr.n[a]), jax.random.key(2)
    )
    assert weight == int(tr.n[a])
    rec1 = client.after_round(1, v, after)
    history = {"round": [0, 1]}
    for r in (rec0, rec1):
        for k, val in r.stats.items():
            history.setdefault(k, []).append(val)
    result = client.finish(history)
    assert list(empty.iterdir()) == []
    for r in (rec0, rec1):
        assert r.arrays["images"].shape == (8, 16, 16, 1)
        assert r.arrays["judge_labels"].shape == (8,) and r.grid.shape == (8, 16, 16, 1)
        assert all(np.ndim(val) == 0 or isinstance(val, list) for val in r.stats.values())
    assert rec0.stats["attacker_selected"] is False and rec1.stats["attacker_selected"] is True
    assert result.summary["tracked_fraction"] == history["tracked_fraction"]
    plot = result.plots["tracked_fraction.png"]
    assert len(plot.curves) == 4 and all(x == [0, 1] for x, _ in plot.curves.values())


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("attack.tracked_class", 10, "attack.tracked_class"),
        ("attack.attacker", 4, "attack.attacker"),
        ("attack.g_steps", -1, "attack.g_steps"),
        ("attack.g_lr", 0.0, "attack.g_lr"),
        ("attack.eval_model", "nope", "attack.eval_model"),
        ("attack.fake_class", 3, "attack.fake_class"),
        ("model.name", "nope", "model.name"),
        ("data.image_size", 18, "data.image_size"),
        ("fl.batch_size", 10_000, "fl.batch_size"),
        ("data.name", "nope", "data.name"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, field, value, needle):
    c = _tiny()
    group, key = field.split(".")
    c[group][key] = value
    with pytest.raises(ConfigError) as err:
        experiment.run(c, tmp_path / "run")
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_cli_bad_setting_exits_2_before_the_workdir_exists(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-m", "leakjax.cli", "--config=configs/dmgan_mnist.py:tiny",
         f"--workdir={tmp_path / 'run'}", "--config.attack.tracked_class=10"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("leakjax: error:")]
    assert len(lines) == 1 and "attack.tracked_class=10" in lines[0], out.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_nan_is_reported_with_the_round(tmp_path):
    c = _tiny(**{"fl.lr": 1e30, "fl.rounds": 1})
    with pytest.raises(NumericalError, match=r"round \d"):
        experiment.run(c, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
def test_dmgan_learns_the_tracked_class_on_mnist(tmp_path, shared_data_dir):
    """The issue's criterion: on real MNIST with 10 clients, more than half of the generated
    images are recognized as the tracked class by round 10, by the separately trained judge and
    by their nearest held-out image, while the untrained generator's are not; the attacker
    holds no image of that class. A CPU-sized run: discriminator and generator at width 16,
    30 generator steps per round, one local epoch."""
    c = _tiny()
    c.data.name, c.data.partition = "mnist", "dirichlet"
    c.data.data_dir = str(shared_data_dir)
    c.fl.num_clients, c.fl.rounds, c.fl.local_epochs, c.fl.batch_size = 10, 10, 1, 50
    a = c.attack
    a.d_width = a.g_width = 16
    a.g_steps, a.g_batch, a.num_images = 30, 32, 32
    a.eval_model, a.eval_steps, a.eval_max = "cnn", 300, 3000
    s = experiment.run(c, tmp_path / "run")
    assert s["num_clients"] == 10 and s["tracked_class"] == 3
    assert s["judge_accuracy"] > 0.9
    judge, knn = s["tracked_fraction"], s["knn_tracked_fraction"]
    assert len(judge) == 11  # round 0 (untrained generator) .. round 10
    assert judge[0] < 0.5
    assert judge[10] > 0.5 and knn[10] > 0.5, (judge, knn)
    for r in (0, 10):
        saved = np.load(tmp_path / "run" / "rounds" / f"round_{r:03d}.npz")
        assert saved["images"].shape == (32, 28, 28, 1)
