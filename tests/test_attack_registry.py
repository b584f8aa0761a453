"""Attacks register themselves (issue 27): the worked example of adding one, the registry's
hooks (``requires``, ``prepare_model``) and the one label helper the attacks share.

The worked example writes an attack module (a constant reconstruction) to ``tmp_path``, imports
it (what the one line in ``leakjax/attacks/__init__.py``'s import block does for a module in the
package), runs it through `experiment.run` on the quickstart's :tiny preset and finds it in
``leakjax --list=attacks``; the fixture removes it from the registry afterwards.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import attacks, config, experiment
from leakjax.attacks import registry
from leakjax.types import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOY = "toy_const"

# A complete attack: settings, make -> Attack(init, step, result), and its registration.
TOY_MODULE = textwrap.dedent(
    '''
    """Toy attack: a constant (clamped) image for every sample; the worked example."""

    import dataclasses

    import jax.numpy as jnp

    from leakjax.attacks.base import Attack, Reconstruction
    from leakjax.attacks.registry import AttackSpec, register
    from leakjax.settings import Checked, setting
    from leakjax.types import ConfigError

    PREPARED = []  # (model, config) pairs prepare_model saw (the test reads it)


    @dataclasses.dataclass(frozen=True)
    class ToyConfig(Checked):
        level: float = setting(0.0, key="toy_level")


    def make(obs, model, cfg, *, steps, box, labels=None):
        del steps, labels
        shape = (int(obs.num_samples),) + tuple(model.input_shape)
        lo, hi = box

        def init(key):
            del key
            return jnp.clip(jnp.full(shape, cfg.level, jnp.float32), lo, hi)

        def step(x, key):
            del key
            return x, {"loss": jnp.zeros((), jnp.float32)}

        def result(x):
            return Reconstruction(images=x, labels=None)

        return Attack(init=init, step=step, result=result)


    def requires(config):
        if config.model.name != "cnn":
            raise ConfigError(f"attack.name='{name}' needs model.name='cnn'")


    def prepare_model(model, config):
        PREPARED.append((model, config))
        return model


    SPEC = register(
        AttackSpec(
            name="{name}",
            modes=("gradient", "fedavg"),
            make=make,
            settings=ToyConfig,
            paper="toy: the worked example of tests/test_attack_registry.py",
            requires=requires,
            prepare_model=prepare_model,
        )
    )
    '''
).replace("{name}", TOY)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy attack's module, imported from ``tmp_path`` (and so registered); removed from
    the registry and ``sys.modules`` afterwards."""
    modname = f"{TOY}_attack"
    (tmp_path / f"{modname}.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert TOY not in attacks.names()
    try:
        yield importlib.import_module(modname), tmp_path
    finally:
        registry._REGISTRY.pop(TOY, None)
        sys.modules.pop(modname, None)


def _tiny():
    spec = importlib.util.spec_from_file_location("qs", ROOT / "configs" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("tiny")


def _toy_config(level: float = 0.25):
    c = _tiny()
    for key in [k for k in c.attack if k not in registry.RUN_KEYS]:  # IG's settings
        del c.attack[key]
    c.attack.name, c.attack.toy_level = TOY, level
    return c


def test_worked_example_registers_runs_and_lists(toy):
    module, path = toy
    assert attacks.get(TOY) is module.SPEC  # register() returned the spec it added
    c = _toy_config()
    wd = path / "wd"
    experiment.run(c, wd, progress=False)
    assert len(module.PREPARED) == 1  # prepare_model: once, with the run's config
    assert module.PREPARED[0][1].attack.name == TOY
    rec = np.load(wd / "reconstruction.npz")
    recons = [rec[k] for k in rec.files if k.startswith("recon_") and "labels" not in k]
    assert len(recons) == c.attack.clients, rec.files
    for r in recons:  # the toy's constant image, for every sample
        assert r.size and np.ptp(r) == 0
    metrics = json.loads((wd / "metrics.json").read_text())
    assert metrics["summary"]["attack"] == TOY
    # --list=attacks (a fresh process: the toy module is imported first, as the package's
    # import block would)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), str(ROOT), env.get("PYTHONPATH")]))
    launch = f"import {module.__name__}, runpy; runpy.run_module('leakjax', run_name='__main__')"
    out = subprocess.run(
        [sys.executable, "-c", launch, "--list=attacks"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    listed = [line.split()[0] for line in out.stdout.splitlines()]
    assert listed == sorted([*attacks.names()]), out.stdout  # the toy, in name order


def test_requires_hook_is_one_line_config_error(toy):
    c = _toy_config()
    c.model.name = "fc2"
    with pytest.raises(ConfigError, match=r"^attack.name='toy_const' needs model.name='cnn'$"):
        config.validate(c)


def test_no_leak_from_the_worked_example():
    """The fixture removed the toy (runs after the tests above in file order)."""
    assert TOY not in attacks.names()


def test_registry_order_and_every_attack_module_registers_itself():
    """Every attack module's SPEC is the registered one (no second list to keep in sync)."""
    assert attacks.names() == [
        "cpa", "cpa_fi", "dlf", "dlg", "dmgan", "ggl", "grnn", "idlg", "ig", "rgap", "rtf",
        "sme", "spear",
    ]  # fmt: skip
    for path in sorted((ROOT / "leakjax" / "attacks").glob("*.py")):
        module = importlib.import_module(f"leakjax.attacks.{path.stem}")
        spec = getattr(module, "SPEC", None)
        if spec is not None:
            assert attacks.get(spec.name) is spec, path.name


def test_rtf_requirement_lives_in_rtf():
    c = config.base_config()
    c.attack.name, c.model.imprint_bins = "rtf", 0
    with pytest.raises(ConfigError, match=r"needs model.imprint_bins > 0"):
        attacks.get("rtf").requires(c)
    c.model.imprint_bins = 16
    attacks.get("rtf").requires(c)  # no error
    # the others (but SPEAR, R-GAP: tests/test_spear.py, tests/test_rgap.py) require nothing
    for name in attacks.names():
        if name not in ("rtf", "spear", "rgap"):
            c.model.imprint_bins = 0
            attacks.get(name).requires(c)


LABELS = np.array([3, 1, 2], np.int32)


@pytest.mark.parametrize(
    "mode,labels,otherwise,want",
    [
        ("auto", LABELS, "optimize", "fixed"),
        ("auto", None, "optimize", "optimize"),
        ("auto", None, "idlg", "idlg"),
        ("fixed", LABELS, "generate", "fixed"),
        ("optimize", LABELS, "optimize", "optimize"),
        ("idlg", LABELS, "optimize", "idlg"),
    ],
)
def test_resolve_labels(mode, labels, otherwise, want):
    got, fixed = registry.resolve_labels(mode, labels, otherwise=otherwise)
    assert got == want
    if want == "fixed":
        assert fixed.dtype == jnp.int32
        np.testing.assert_array_equal(fixed, LABELS)
    else:
        assert fixed is None


def test_resolve_labels_refusals():
    with pytest.raises(ConfigError, match="fixed labels requested but none were given"):
        registry.resolve_labels("fixed", None, otherwise="optimize")
    with pytest.raises(ConfigError, match=r"got \(3,\) labels for 2 images"):
        registry.resolve_labels("fixed", LABELS, otherwise="optimize", num=2)
    registry.resolve_labels("fixed", LABELS, otherwise="optimize", num=3)
