"""Properties of leakjax.metrics: PSNR/SSIM values, matching, label metrics, evaluate."""

from __future__ import annotations

import json

import dm_pix
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakjax import metrics
from leakjax.types import ConfigError


def _images(seed: int, n: int, h: int = 8, w: int = 8, c: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).random((n, h, w, c), dtype=np.float32)


def _smooth(seed: int, n: int, h: int, w: int, c: int) -> np.ndarray:
    """Images with spatial structure (so SSIM is not dominated by its constants)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = np.empty((n, h, w, c), np.float32)
    for i in range(n):
        for k in range(c):
            fx, fy, ph = rng.uniform(1, 3, size=3)
            out[i, :, :, k] = 0.5 + 0.4 * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
    return out


# --------------------------------------------------------------------------- PSNR / MSE


def test_psnr_identical_is_cap():
    x = _images(0, 3)
    np.testing.assert_array_equal(metrics.psnr(x, x), np.full(3, metrics.PSNR_CAP))
    assert metrics.PSNR_CAP == 100.0


@pytest.mark.parametrize("err", [0.1, 0.01, 0.003])
def test_psnr_known_mse(err):
    a = np.full((2, 4, 4, 1), 0.5)
    b = a + err
    np.testing.assert_allclose(metrics.mse(a, b), err**2, rtol=1e-5)
    np.testing.assert_allclose(metrics.psnr(a, b), 10 * np.log10(1 / err**2), rtol=1e-5)
    np.testing.assert_allclose(
        metrics.psnr(2 * a, 2 * b, max_val=2.0), 10 * np.log10(1 / err**2), rtol=1e-5
    )


def test_psnr_symmetric_matches_dm_pix_and_accepts_jax():
    a, b = _images(1, 4), _images(2, 4)
    np.testing.assert_allclose(metrics.psnr(a, b), metrics.psnr(b, a))
    np.testing.assert_allclose(metrics.psnr(a, b), np.asarray(dm_pix.psnr(a, b)), rtol=1e-4)
    np.testing.assert_allclose(metrics.psnr(jnp.asarray(a), jnp.asarray(b)), metrics.psnr(a, b))
    assert metrics.psnr(a, b).shape == (4,)


def test_bad_inputs_raise_config_error():
    x = _images(0, 2)
    with pytest.raises(ConfigError, match="shape"):
        metrics.mse(x, x[:1])
    with pytest.raises(ConfigError, match="rank 4"):
        metrics.psnr(x[0], x[0])
    with pytest.raises(ConfigError, match="dtype uint8"):
        metrics.psnr((x * 255).astype(np.uint8), x)
    with pytest.raises(ConfigError, match="max_val"):
        metrics.psnr(x, x, max_val=0.0)


# --------------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("size", [8, 16, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_identical_one_noise_lower(size, channels):
    x = _smooth(size + channels, 3, size, size, channels)
    np.testing.assert_allclose(metrics.ssim(x, x), 1.0, atol=1e-4)
    rng = np.random.default_rng(0)
    light = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    heavy = np.clip(x + 0.3 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    s_light, s_heavy = metrics.ssim(x, light), metrics.ssim(x, heavy)
    assert s_light.shape == (3,)
    assert np.all(np.isfinite(s_heavy))
    assert np.all(s_light < 0.999) and np.all(s_heavy < s_light)
    np.testing.assert_allclose(s_light, metrics.ssim(light, x), atol=1e-5)


def test_ssim_matches_dm_pix_default_window_at_32():
    a, b = _smooth(0, 2, 32, 32, 3), _smooth(1, 2, 32, 32, 3)
    np.testing.assert_allclose(
        metrics.ssim(a, b), np.asarray(jax.jit(dm_pix.ssim)(a, b)), atol=1e-5
    )


# --------------------------------------------------------------------------- matching


def test_pairwise_mse_matches_mse():
    r, t = _images(3, 5), _images(4, 3)
    pw = metrics.pairwise_mse(r, t)
    assert pw.shape == (5, 3)
    for i in range(5):
        np.testing.assert_allclose(pw[i], metrics.mse(np.repeat(r[i : i + 1], 3, 0), t), rtol=1e-9)


def test_match_recovers_permutation():
    truth = _images(5, 12)
    perm = np.random.default_rng(0).permutation(12)
    noise = 0.02 * np.random.default_rng(1).standard_normal(truth.shape).astype(np.float32)
    recon = truth[perm] + noise  # recon[i] is a noisy truth[perm[i]]
    r_idx, t_idx = metrics.match(recon, truth)
    np.testing.assert_array_equal(t_idx, np.arange(12))
    np.testing.assert_array_equal(perm[r_idx], t_idx)


def test_match_rectangular_more_recon():
    truth = _images(6, 4)
    decoys = _images(7, 3)
    recon = np.concatenate([decoys[:2], truth[::-1] + 0.01, decoys[2:]])  # M=7, N=4
    r_idx, t_idx = metrics.match(recon, truth)
    np.testing.assert_array_equal(t_idx, np.arange(4))
    np.testing.assert_array_equal(r_idx, [5, 4, 3, 2])


def test_match_rectangular_fewer_recon():
    truth = _images(8, 6)
    recon = truth[[4, 1]] + 0.01  # M=2, N=6
    r_idx, t_idx = metrics.match(recon, truth)
    np.testing.assert_array_equal(t_idx, [1, 4])
    np.testing.assert_array_equal(r_idx, [1, 0])


@settings(max_examples=30, deadline=None)
@given(
    data=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.just(3), st.just(3), st.just(1)),
        elements=st.floats(0, 1, width=32),
    ),
    seed=st.integers(0, 2**16),
)
def test_match_never_worse_than_identity(data, seed):
    n = data.shape[0]
    recon = np.random.default_rng(seed).random(data.shape, dtype=np.float32)
    r_idx, t_idx = metrics.match(recon, data)
    assert sorted(t_idx.tolist()) == list(range(n)) and sorted(r_idx.tolist()) == list(range(n))
    pw = metrics.pairwise_mse(recon, data)
    assert pw[r_idx, t_idx].sum() <= np.trace(pw) + 1e-9


# --------------------------------------------------------------------------- labels


def test_label_count_accuracy_values():
    assert metrics.label_count_accuracy([2, 1, 0], [2, 1, 0]) == 1.0
    assert metrics.label_count_accuracy([0, 0, 3], [2, 1, 0]) == 0.0
    # true {0,0,1,2}, pred {0,1,1,2}: one label wrong out of four.
    assert metrics.label_count_accuracy([1, 2, 1], [2, 1, 1]) == pytest.approx(0.75)
    # unequal totals: too few and too many are both penalised, never below 0.
    assert metrics.label_count_accuracy([1, 0, 0], [2, 1, 1]) == pytest.approx(0.25)
    assert metrics.label_count_accuracy([8, 4, 4], [2, 1, 1]) == pytest.approx(0.25)
    assert metrics.label_count_accuracy([0, 9, 9], [2, 1, 1]) == pytest.approx(2 / 18)
    with pytest.raises(ConfigError, match="true_counts"):
        metrics.label_count_accuracy([1], [0])


def test_label_accuracy_and_counts():
    assert metrics.label_accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    np.testing.assert_array_equal(metrics.label_counts([0, 2, 2], 4), [1, 0, 2, 0])
    with pytest.raises(ConfigError, match="labels"):
        metrics.label_counts([5], 4)


def test_success_rate():
    assert metrics.success_rate([18.9, 19.0, 30.0, np.nan]) == 0.5
    assert metrics.success_rate([10.0], threshold=5.0) == 1.0


# --------------------------------------------------------------------------- evaluate


def test_evaluate_matched_vs_ordered_on_permuted_batch():
    truth = _smooth(10, 6, 16, 16, 3)
    perm = np.array([3, 0, 5, 1, 2, 4])  # no fixed point
    recon = np.clip(truth[perm] + 0.01, 0, 1)
    labels = np.array([0, 1, 2, 3, 4, 5])
    matched = metrics.evaluate(recon, truth, recon_labels=labels[perm], truth_labels=labels)
    ordered = metrics.evaluate(recon, truth, ordered=True)
    assert matched["psnr_mean"] > 35 and matched["success_rate"] == 1.0
    assert matched["ssim_mean"] > 0.95
    assert matched["label_accuracy"] == 1.0 and matched["label_count_accuracy"] == 1.0
    assert matched["matching"] == [[int(np.where(perm == t)[0][0]), t] for t in range(6)]
    assert ordered["psnr_max"] < 19 and ordered["success_rate"] == 0.0
    assert ordered["matching"] == [[i, i] for i in range(6)]
    for key in ("psnr", "ssim", "mse"):
        assert len(matched[key]) == 6
    json.dumps(matched, allow_nan=False)
    json.dumps(ordered, allow_nan=False)


def test_evaluate_nan_recon_is_failed_and_json_safe():
    truth = _images(11, 4)
    recon = truth.copy()
    recon[2, 0, 0, 0] = np.nan
    recon[3] = np.inf
    out = metrics.evaluate(recon, truth, ordered=True)
    json.dumps(out, allow_nan=False)
    assert out["nonfinite"] == 2
    assert out["psnr"][2] == 0.0 and out["ssim"][2] == 0.0 and out["mse"][2] == 1.0
    assert out["psnr"][0] == metrics.PSNR_CAP
    assert out["success_rate"] == 0.5
    matched = metrics.evaluate(recon, truth)
    json.dumps(matched, allow_nan=False)
    assert matched["success_rate"] == 0.5 and matched["nonfinite"] == 2


def test_evaluate_nan_recon_left_unmatched_when_spare():
    truth = _images(12, 2)
    recon = np.concatenate([np.full_like(truth[:1], np.nan), truth[::-1]])
    out = metrics.evaluate(recon, truth)
    assert out["matching"] == [[2, 0], [1, 1]]
    assert out["success_rate"] == 1.0 and out["nonfinite"] == 1


def test_evaluate_fewer_recon_counts_unmatched_as_failures():
    truth = _images(13, 4)
    out = metrics.evaluate(truth[[2]], truth, recon_labels=[1], truth_labels=[0, 0, 1, 1])
    assert out["num_matched"] == 1 and out["num_truth"] == 4
    assert out["success_rate"] == 0.25 and out["psnr"] == [metrics.PSNR_CAP]
    assert out["label_accuracy"] == 1.0
    assert out["label_count_accuracy"] == pytest.approx(0.25)  # 1 of 4 labels accounted for
    empty = metrics.evaluate(truth[:0], truth)
    assert empty["num_matched"] == 0 and empty["psnr_mean"] == 0.0
    json.dumps(empty, allow_nan=False)


def test_evaluate_clips_and_validates():
    truth = _images(14, 2)
    out = metrics.evaluate(truth * 3 - 1, truth, ordered=True)
    assert all(v > 0 for v in out["psnr"])
    with pytest.raises(ConfigError, match="ordered"):
        metrics.evaluate(truth[:1], truth, ordered=True)
    with pytest.raises(ConfigError, match="truth_labels"):
        metrics.evaluate(truth, truth, recon_labels=[0, 1])
    with pytest.raises(ConfigError, match="recon_labels"):
        metrics.evaluate(truth, truth, recon_labels=[0], truth_labels=[0, 1])
    with pytest.raises(ConfigError, match="image shape"):
        metrics.evaluate(truth[:, :4], truth)


def test_summarize_pools_runs():
    truth = _images(15, 4)
    good = metrics.evaluate(truth, truth, recon_labels=[0, 1, 2, 3], truth_labels=[0, 1, 2, 3])
    bad = metrics.evaluate(
        _images(16, 2), truth[:2], recon_labels=[1, 1], truth_labels=[0, 1], ordered=True
    )
    s = metrics.summarize([good, bad])
    json.dumps(s, allow_nan=False)
    assert s["num_runs"] == 2 and s["num_truth"] == 6 and s["num_matched"] == 6
    assert s["success_rate"] == pytest.approx(4 / 6)
    assert s["psnr_max"] == metrics.PSNR_CAP
    assert s["psnr_mean"] == pytest.approx(np.mean(good["psnr"] + bad["psnr"]))
    assert s["label_accuracy"] == pytest.approx(5 / 6)
    assert s["label_count_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(ConfigError, match="per_client"):
        metrics.summarize([])
    with pytest.raises(ConfigError, match="threshold"):
        metrics.summarize([good, metrics.evaluate(truth, truth, threshold=25.0)])


def test_package_exports_the_public_names_from_their_modules():
    """metrics is a package split by concern; `metrics.<name>` keeps working for every caller."""
    homes = {
        "psnr": "images",
        "match": "matching",
        "label_counts": "labels",
        "evaluate": "evaluation",
    }
    for name in metrics.__all__:
        value = getattr(metrics, name)
        if callable(value):
            assert value.__module__.startswith("leakjax.metrics."), name
    for name, module in homes.items():
        assert getattr(metrics, name).__module__ == f"leakjax.metrics.{module}"
