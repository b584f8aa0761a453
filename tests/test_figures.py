"""Plot defects: integer round ticks, log loss axis, 'first k of n' titles, titles that fit."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from leakjax import figures  # noqa: E402
from leakjax.types import ConfigError  # noqa: E402

LONG = (
    "inverting_gradients (multi) on cifar100/resnet18: truth (top) vs reconstruction "
    "(bottom), clients 0-7, rounds 1-3, cosine objective, total variation 1e-4, "
    "32 restarts, learning rate 0.1 with a cosine schedule"
)


def _assert_inside(fig, text):
    fig.canvas.draw()
    box, frame = text.get_window_extent(fig.canvas.get_renderer()), fig.bbox
    assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, (box, frame, text.get_text())
    assert frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1, (box, frame, text.get_text())


def _visible_xticks(ax):
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]


def test_fl_accuracy_round_ticks_are_integers(tmp_path):
    rounds = [0, 1, 2]
    for fig in (
        figures.plot_curves(
            tmp_path / "a.png", {"test_acc": (rounds, [0.1, 0.5, 0.7])}, "round", "accuracy"
        ),  # fmt: skip
        figures.plot_fl_accuracy(tmp_path / "b.png", {"test_acc": (rounds, [0.1, 0.5, 0.7])}),
    ):
        ticks = _visible_xticks(fig.axes[0])
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
    # Fractional xs keep the ordinary locator.
    fig = figures.plot_curves(tmp_path / "c.png", {"a": ([0.0, 0.5, 1.5], [1, 2, 3])}, "t", "y")
    assert not all(float(t).is_integer() for t in _visible_xticks(fig.axes[0]))


def test_attack_loss_log_axis_when_positive(tmp_path):
    steps = np.arange(200)
    positive = {"client 0 r1": (steps, 10.0 * np.exp(-steps / 20.0) + 1e-6)}
    fig = figures.plot_attack_loss(tmp_path / "loss.png", positive)
    assert fig.axes[0].get_yscale() == "log"
    assert not fig.axes[0].texts
    fig = figures.plot_curves(tmp_path / "l2.png", positive, "step", "loss", logy="auto")
    assert fig.axes[0].get_yscale() == "log"
    mixed = {"client 0 r1": (steps, np.linspace(1.0, -0.5, 200)), "nan": ([0, 1], [np.nan, 1])}
    fig = figures.plot_attack_loss(tmp_path / "mixed.png", mixed)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    assert any("<= 0" in t.get_text() for t in ax.texts)
    with pytest.raises(ConfigError, match="logy"):
        figures.plot_curves(tmp_path / "x.png", mixed, "step", "loss", logy="sometimes")


def test_grid_title_says_first_k_of_n(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.random((10, 8, 8, 1), dtype=np.float32)
    recon = rng.random((10, 8, 8, 1), dtype=np.float32)
    fig = figures.save_grid(tmp_path / "g.png", truth, recon, max_images=4, title="DLG")
    assert fig._suptitle.get_text() == "DLG (first 4 of 10)"
    # The caller passes the first k of its n pairs.
    fig = figures.save_grid(tmp_path / "h.png", truth[:4], recon[:4], max_images=4, total=25)
    assert fig._suptitle.get_text() == "first 4 of 25"
    fig = figures.save_grid(tmp_path / "i.png", truth[:4], recon[:4], title="all")
    assert fig._suptitle.get_text() == "all"
    with pytest.raises(ConfigError, match="total"):
        figures.save_grid(tmp_path / "j.png", truth[:4], recon[:4], total=3)


@pytest.mark.parametrize("cells", [1, 3, 8])
def test_long_grid_titles_fit_the_figure(tmp_path, cells):
    x = np.random.default_rng(1).random((cells, 8, 8, 3), dtype=np.float32)
    fig = figures.save_grid(tmp_path / "g.png", x, x, title=LONG)
    title = fig._suptitle
    _assert_inside(fig, title)
    assert title.get_text().count("\n") <= 2
    words = LONG.split()
    assert title.get_text().startswith(words[0])
    fig = figures.save_image_grid(tmp_path / "i.png", x, title=LONG)
    _assert_inside(fig, fig._suptitle)


def test_long_plot_title_fits_and_short_one_is_kept(tmp_path):
    curves = {"a": ([0, 1, 2], [3.0, 2.0, 1.0])}
    fig = figures.plot_curves(tmp_path / "p.png", curves, "step", "loss", title=LONG)
    _assert_inside(fig, fig.axes[0].title)
    assert "\n" in fig.axes[0].title.get_text()
    fig = figures.plot_curves(tmp_path / "q.png", curves, "step", "loss", title="FedAvg")
    assert fig.axes[0].title.get_text() == "FedAvg"


def test_wrap_title_clips_what_cannot_fit():
    wrapped = figures.wrap_title("word " * 200, 2.0, 10)
    assert wrapped.count("\n") == 2 and wrapped.endswith("…")
    assert figures.wrap_title("short", 5.0, 10) == "short"
    unbroken = figures.wrap_title("x" * 300, 1.0, 10)  # no spaces: words are broken
    assert unbroken.count("\n") == 2


def test_rounds_are_shown_one_based_like_the_progress_lines():
    """Issue 33 #13: loss.png's legend said "r4" where progress said "round 5/5"."""
    from leakjax.progress import round_label

    assert round_label(4, 5) == "round 5/5"  # fedavg mode: attack.rounds=-1 of 5
    assert round_label(0, 5) == "round 1/5"
    assert round_label(5, 5) == "after round 5/5"  # gradient mode: the model after FedAvg
    assert round_label(0, 0) == "initial model"
