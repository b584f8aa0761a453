"""The precision policy (`leakjax.precision`, config ``precision.fl`` / ``precision.attack``):
'f32' is today's numbers bit for bit; 'tf32' / 'bf16' round the model's conv and dense operands
(bounded change); bad values are one line and exit 2; benchmarks/gpu_check.sh --tiny."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import attacks, models, precision
from leakjax.config import base_config, validate
from leakjax.fl.client import ClientHParams
from leakjax.fl.observation import fedavg_observation
from leakjax.provenance import resolved_config
from leakjax.types import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BOX = (jnp.full(3, -2.0), jnp.full(3, 2.0))


@pytest.fixture(scope="module")
def ig_fedavg():
    """An IG fedavg-mode attack on a small cnn: 3 images, 2 epochs of batch 2."""
    model = models.get("cnn", 10, (8, 8, 3))
    v = model.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (3, 8, 8, 3), minval=-1, maxval=1)
    y = jnp.array([1, 4, 7], jnp.int32)
    obs = fedavg_observation(model, v, x, y, ClientHParams(lr=0.1, epochs=2, batch_size=2))
    acfg = base_config().attack
    acfg.name, acfg.mode, acfg.steps, acfg.labels = "ig", "fedavg", 4, "oracle"
    atk = attacks.get("ig").build(obs, model, acfg, box=BOX, labels=np.asarray(y))
    return model, v, x, y, atk


def _attack(atk):
    """Images after 4 IG steps (one jitted program per policy) and the restart's losses."""
    res = attacks.run(atk, jax.random.key(3), steps=4, chunk=4, progress=False)
    return np.asarray(res.reconstruction.images), np.asarray(res.losses)


def _grad(model, v, x, y):
    """Gradient w.r.t. the input of a squared parameter-gradient norm (double backprop
    through the model's convs and dense layers, as gradient matching does)."""

    def inner(x):
        g = jax.grad(lambda p: _ce(model, p, x, y))(v)
        return sum(jnp.vdot(a, a) for a in jax.tree.leaves(g))

    return jax.jit(jax.value_and_grad(inner))(x)


def _ce(model, p, x, y):
    logits = model.apply(p, x, train=True)[0]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def test_f32_is_todays_numbers_bit_for_bit(ig_fedavg):
    model, v, x, y, atk = ig_fedavg
    today = _attack(atk)
    with precision.scope("f32"):
        f32 = _attack(atk)
    np.testing.assert_array_equal(f32[0], today[0])
    np.testing.assert_array_equal(f32[1], today[1])


def test_bf16_and_tf32_change_the_numbers_by_a_bounded_amount(ig_fedavg):
    model, v, x, y, _ = ig_fedavg
    val0, g0 = _grad(model, v, x, y)
    err = {}
    for policy in ("tf32", "bf16"):
        with precision.scope(policy):
            val, g = _grad(model, v, x, y)
        err[policy] = float(jnp.linalg.norm(g - g0) / jnp.linalg.norm(g0))
        assert abs(float(val) - float(val0)) <= 0.05 * abs(float(val0)), policy
    # bf16 (8-bit mantissa operands) moves the gradient by ~1e-2, tf32 (11 bits) ~8x less
    assert 1e-4 < err["bf16"] < 0.15, err
    assert 1e-6 < err["tf32"] < err["bf16"] / 3, err


def test_operands_are_rounded_straight_through():
    x = jax.random.normal(jax.random.key(0), (64,))
    with precision.scope("bf16"):
        (r,) = precision.operands(x)
        g = jax.grad(lambda x: jnp.sum(precision.operands(x)[0] * 3.0))(x)
    np.testing.assert_array_equal(r, x.astype(jnp.bfloat16).astype(jnp.float32))
    assert not np.array_equal(r, x)
    np.testing.assert_array_equal(g, jnp.full_like(x, 3.0))  # d round(x) = dx
    (same,) = precision.operands(x)  # outside a scope: float32, untouched
    assert same is x


def test_a_jitted_function_is_not_reused_across_policies():
    f = jax.jit(lambda a, b: models.conv.conv2d(a, b, 1, 1, "hybrid"))
    a = jax.random.normal(jax.random.key(1), (1, 6, 6, 4))
    b = jax.random.normal(jax.random.key(2), (3, 3, 4, 5))
    with precision.scope("f32"):
        y32 = f(a, b)
    with precision.scope("bf16"):
        y16 = f(a, b)
    with precision.scope("f32"):
        np.testing.assert_array_equal(f(a, b), y32)
    assert not np.array_equal(y16, y32)


@pytest.mark.parametrize("key", ["precision.attack", "precision.fl"])
def test_bad_precision_is_one_line(key):
    c = base_config()
    c.precision[key.split(".")[1]] = "fp8"
    with pytest.raises(ConfigError) as e:
        validate(c)
    assert str(e.value) == f"{key}='fp8' is not one of ('f32', 'tf32', 'bf16')"


def test_precision_is_a_recorded_config_field():
    c = base_config()
    c.precision.attack = "bf16"
    validate(c)
    assert resolved_config(c)["precision"] == {"attack": "bf16", "fl": "f32"}
    assert precision.policies(c) == {"fl": "f32", "attack": "bf16"}


def test_client_attack_runs_in_f32_only():
    c = base_config()
    c.attack.name = "dmgan"
    c.precision.fl = "bf16"
    with pytest.raises(ConfigError, match="precision.fl='bf16'.*'f32' only"):
        validate(c)


def test_cli_bad_precision_exits_2(cli_refuses):
    cli_refuses(
        "--config.precision.attack=fp16",
        words="precision.attack='fp16' is not one of ('f32', 'tf32', 'bf16')",
    )


def test_gpu_check_rejects_unknown_arguments():
    out = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--huge"], cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "unknown argument '--huge'" in out.stderr


@pytest.mark.slow
def test_gpu_check_tiny(tmp_path):
    """gpu_check.sh --tiny on CPU: one JSON with f32/tf32/bf16 rows of each entry."""
    out_json = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--tiny", f"--out={out_json}"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out_json.read_text())[1:]
    seen = {(r["name"], r["precision"]) for r in rows}
    for name in ("ig", "ig_fedavg", "fedavg"):
        for p in precision.POLICIES:
            assert (name, p) in seen, (name, p)
    assert all("error" not in r and r["iter_s"] > 0 for r in rows)


def test_summary_records_the_policies():
    from types import SimpleNamespace

    from leakjax import scoring

    c = base_config()
    c.precision.fl, c.precision.attack = "tf32", "bf16"
    p = SimpleNamespace(config=c, defense=None)
    s = scoring.summary(p, [], [], {"round": [0]}, {"wall": [1.0]})
    assert (s["precision_fl"], s["precision_attack"]) == ("tf32", "bf16")
