"""Audit mode (issue 29): ``attack.clients=-1`` attacks every client sampled in the attacked
round(s), with attack keys that do not depend on a client's position among the trials."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakjax import attacks, config_files, experiment, scoring
from leakjax.attacks import Attack, Reconstruction
from leakjax.config import validate
from leakjax.fl.rounds import attacked_groups
from leakjax.types import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUMMARY_KEYS = (
    "clients_attacked",
    "clients_exposed_fraction",
    "images_recovered_fraction",
    "client_psnr_median",
    "client_psnr_p90",
)


def _config(num_clients: int = 8):
    """quickstart:tiny cut to seconds: 1 round, 4 attack steps, ~12 images a client (two
    sample counts among the clients: 100 images do not split evenly over 8)."""
    c = config_files.load(f"{ROOT}/configs/quickstart.py:tiny")
    c.fl.num_clients = num_clients
    c.fl.rounds = 1
    c.data.max_train = 100
    c.attack.clients = -1
    c.attack.steps = 4
    c.attack.chunk = 4
    c.output.progress = False
    return c


def _single_runs(config, workdir, indices):
    """Per-client best PSNR of the audit's observations ``indices``, each attacked alone
    (`experiment.attack_observations` on a one-observation list), with run()'s keys."""
    p = experiment.prepare(config)
    sim_key, attack_key = jax.random.split(jax.random.key(int(config.seed)))
    rng = np.random.default_rng(int(config.seed) + 1)
    _, history, obs, truths, _ = experiment._federate(
        p, workdir, sim_key, rng, resume=False, progress=False
    )
    out = {}
    for i in indices:
        oc = experiment.attack_observations(p, [obs[i]], [truths[i]], attack_key, progress=False)
        per_client = scoring.score(p, [obs[i]], [truths[i]], oc, history)[0]
        out[int(obs[i].client_id)] = per_client[0]["psnr_max"]
    return out, obs


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    wd = tmp_path_factory.mktemp("audit") / "run"
    summary = experiment.run(_config(), wd, progress=False)
    return wd, summary, json.loads((wd / "metrics.json").read_text())


def test_audit_attacks_every_sampled_client_and_reports_the_population(audit):
    wd, summary, m = audit
    hist = json.loads((wd / "fl_history.json").read_text())
    sampled = hist["selected"][-1]
    assert sorted(c["client_id"] for c in m["clients"]) == sorted(sampled) and len(sampled) == 8
    for name in ("leakage.png", "grid.png", "grid_most_exposed.png", "grid_least_exposed.png"):
        assert (wd / name).is_file(), name
    for c in m["clients"]:
        assert len(c["class_counts"]) == 10 and sum(c["class_counts"]) == c["num_samples"]
    assert summary["clients_attacked"] == 8
    best = np.array([c["psnr_max"] for c in m["clients"]])
    exposed = np.mean([c["num_success"] > 0 for c in m["clients"]])
    assert summary["clients_exposed_fraction"] == pytest.approx(exposed)
    assert summary["client_psnr_median"] == pytest.approx(np.median(best))
    assert summary["client_psnr_p90"] == pytest.approx(np.percentile(best, 90))
    recovered = sum(c["num_success"] for c in m["clients"]) / sum(
        c["num_truth"] for c in m["clients"]
    )
    assert summary["images_recovered_fraction"] == pytest.approx(recovered)
    assert all(k in m["summary"] for k in SUMMARY_KEYS)


def test_audit_of_n_clients_equals_n_single_client_runs(audit, tmp_path):
    """Old code: restart keys fold_in(fold_in(group key, position), r): a client's
    reconstruction depended on where it fell among the trials."""
    _, _, m = audit
    by_n = {}
    for i, c in enumerate(m["clients"]):
        by_n.setdefault(c["num_samples"], []).append(i)
    big = max(by_n.values(), key=len)
    picks = [big[0], big[-1]]  # first and last position of the largest group
    single, _ = _single_runs(_config(), tmp_path / "single", picks)
    for i in picks:
        c = m["clients"][i]
        assert single[c["client_id"]] == pytest.approx(c["psnr_max"], abs=1e-4)


def test_a_smaller_client_gets_the_same_result_in_the_audit_as_alone(audit, tmp_path):
    _, _, m = audit
    sizes = [c["num_samples"] for c in m["clients"]]
    assert len(set(sizes)) >= 2, sizes  # unequal clients: several vmapped groups
    i = max(j for j, n in enumerate(sizes) if n == min(sizes))  # the last of the smallest
    single, _ = _single_runs(_config(), tmp_path / "single", [i])
    c = m["clients"][i]
    assert single[c["client_id"]] == pytest.approx(c["psnr_max"], abs=1e-4)


_SHARDED = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    import jax
    assert jax.device_count() == 4, jax.devices()
    from leakjax import experiment
    from test_audit import _config
    c = _config()
    c.attack.num_devices = 4
    s = experiment.run(c, {wd!r}, progress=False)
    """
)


@pytest.mark.slow
def test_audit_on_4_devices_equals_the_1_device_audit(audit, tmp_path):
    _, _, m = audit
    wd = tmp_path / "four"
    code = _SHARDED.format(root=str(ROOT), tests=str(ROOT / "tests"), wd=str(wd))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    m4 = json.loads((wd / "metrics.json").read_text())
    one = {c["client_id"]: c["psnr_max"] for c in m["clients"]}
    four = {c["client_id"]: c["psnr_max"] for c in m4["clients"]}
    assert one.keys() == four.keys()
    for cid, v in one.items():
        assert four[cid] == pytest.approx(v, abs=1e-4), cid


def _noise_attack(target):
    """A state that is its initial noise plus the step keys' noise: the result shows the keys."""

    def init(key):
        return jax.random.normal(key, target.shape)

    def step(x, key):
        return x + 0.1 * jax.random.normal(key, x.shape), {"loss": jnp.sum(x**2)}

    return Attack(init, step, lambda x: Reconstruction(images=x, labels=None))


def test_trial_keys_make_a_trial_independent_of_its_position():
    targets = jnp.zeros((3, 2, 2))
    keys = jnp.stack([jax.random.key(k) for k in (7, 8, 9)])
    kw = dict(steps=3, restarts=2, progress=False)
    together = attacks.run(_noise_attack, jax.random.key(0), trials=targets, trial_keys=keys, **kw)
    for t in range(3):
        alone = attacks.run(
            _noise_attack, jax.random.key(5), trials=targets[t : t + 1], trial_keys=keys[t : t + 1],
            **kw,
        )  # fmt: skip
        np.testing.assert_array_equal(alone.restarts.images[0], together.restarts.images[t])
    with pytest.raises(ValueError, match="trial_keys holds 2 keys for 3 trials"):
        attacks.run(_noise_attack, jax.random.key(0), trials=targets, trial_keys=keys[:2], **kw)


def test_all_clients_take_every_selected_client_and_draw_nothing():
    sel = np.array([1, 4, 6, 9])
    rng = np.random.default_rng(3)
    assert attacked_groups(rng, sel, -1, 1) == [[1], [4], [6], [9]]
    assert rng.integers(2**31) == np.random.default_rng(3).integers(2**31)  # no draw
    groups = attacked_groups(np.random.default_rng(0), sel, -1, 2)  # secure aggregation
    assert [g[0] for g in groups] == [1, 4, 6, 9] and all(len(set(g)) == 2 for g in groups)


@pytest.mark.parametrize("value", [-2, 0, 9, True])
def test_bad_attack_clients_is_one_line_naming_the_key(value):
    c = _config()
    c.attack.clients = value
    with pytest.raises(ConfigError, match=r"^attack\.clients must be -1 .* or 1\.\.8") as e:
        validate(c)
    assert "\n" not in str(e.value)


def test_cli_attack_clients_minus_2_exits_2_before_writing(cli_refuses):
    cli_refuses("--config.attack.clients=-2", words="attack.clients")
