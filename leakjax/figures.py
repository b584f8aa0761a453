"""Figures: reconstruction grids, image grids and line plots, written as PNGs.

Figures use matplotlib's object API (``matplotlib.figure.Figure`` rendered by the Agg
canvas), never ``pyplot``: no display is needed and no global backend state is touched.
Every function returns the ``Figure`` it saved, so callers and tests can inspect it.
Titles are wrapped (at most three lines, then clipped with an ellipsis) to the figure's
width, measured with the Agg renderer, so they never run off the image.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from leakjax.atomic import PathLike
from leakjax.atomic import atomic_open as _atomic
from leakjax.types import ConfigError

__all__ = [
    "plot_attack_loss",
    "plot_curves",
    "plot_fl_accuracy",
    "save_grid",
    "save_image_grid",
    "wrap_title",
]

_MIN_DISPLAY_PX = 32  # upsample images with a shorter side below this (nearest neighbours)
_MAX_COLS = 8  # cells per row in grids
_MAX_TITLE_LINES = 3  # lines a title is wrapped into before it is clipped


def _figure(width: float, height: float, dpi: float = 100.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # lazy: matplotlib import costs ~0.3 s

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)  # a renderer for measuring text, and PNG output
    return fig


def _save_figure(fig, path: PathLike) -> None:
    with _atomic(path, "wb") as fh:
        fig.savefig(fh, format="png")


def wrap_title(title: str, width_in: float, fontsize: float, dpi: float = 100.0) -> str:
    """Wraps ``title`` (newlines kept) into lines at most ``width_in`` inches wide.

    Widths are measured with the Agg renderer at ``fontsize`` points and ``dpi``; more than
    three lines are clipped, the third ending in an ellipsis. Returns the wrapped title.
    """
    fig = _figure(max(width_in, 0.1) * 2, 1.0, dpi)
    text = fig.text(0, 0.5, "", fontsize=fontsize)
    renderer = fig.canvas.get_renderer()
    limit = width_in * dpi

    def fits(s: str) -> bool:
        text.set_text(s)
        return text.get_window_extent(renderer).width <= limit

    if fits(title):
        return title
    chars = max(1, int(len(title) * limit / max(text.get_window_extent(renderer).width, 1.0)))
    while True:
        lines = [
            line
            for part in title.split("\n")
            for line in (textwrap.wrap(part, chars, break_on_hyphens=False) or [""])
        ]
        if len(lines) > _MAX_TITLE_LINES:
            lines = lines[:_MAX_TITLE_LINES]
            lines[-1] = lines[-1].rstrip() + "…"
            while len(lines[-1]) > 1 and not fits(lines[-1]):
                lines[-1] = lines[-1][:-2].rstrip() + "…"
        if chars == 1 or all(fits(line) for line in lines):
            return "\n".join(lines)
        chars = max(1, int(chars * 0.9))


def _display_images(x: Any, name: str) -> np.ndarray:
    """Images as RGB float [N, H, W, 3] in [0, 1], nearest-upsampled when tiny.

    Gray (C = 1, or rank 3) is repeated to RGB, RGBA is composited over white; values are
    clipped to [0, 1] and NaN is drawn black.
    """
    arr = np.asarray(x)
    if arr.ndim == 3:  # [N, H, W] gray
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
        raise ConfigError(
            f"{name} must be images [N, H, W, C] with C in (1, 3, 4), got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise ConfigError(f"{name} must be float images in [0, 1], got dtype {arr.dtype}")
    arr = np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0, 1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3] * arr[..., 3:] + (1.0 - arr[..., 3:])
    short = min(arr.shape[1], arr.shape[2])
    if 0 < short < _MIN_DISPLAY_PX:
        k = -(-_MIN_DISPLAY_PX // short)
        arr = np.repeat(np.repeat(arr, k, axis=1), k, axis=2)
    return arr


class _Mosaic:
    """Cells pasted into one RGB canvas, drawn with a single ``imshow`` plus text.

    One axes for the whole grid instead of one per image keeps a 16-pair grid well under
    a second (matplotlib axes creation dominates otherwise). Lengths given in inches are
    converted with ``unit`` canvas pixels per inch; a cell is ``cell_in`` inches wide.
    """

    def __init__(self, w: int, cell_in: float = 1.1):
        self.unit = w / cell_in
        self.texts: list[tuple[float, float, str, dict[str, Any]]] = []
        self.pastes: list[tuple[int, int, np.ndarray]] = []

    def px(self, inches: float) -> int:
        return max(1, int(round(inches * self.unit)))

    def paste(self, top: int, left: int, img: np.ndarray) -> None:
        self.pastes.append((top, left, img))

    def text(self, x: float, y: float, s: str, **kwargs: Any) -> None:
        self.texts.append((x, y, s, kwargs))

    def render(self, path: PathLike, height: int, width: int, title: str | None):
        canvas = np.ones((height, width, 3), np.float32)
        for top, left, img in self.pastes:
            canvas[top : top + img.shape[0], left : left + img.shape[1]] = img
        fig_w, fig_h = width / self.unit, height / self.unit
        # An integer number of output pixels per canvas pixel (about 100 dpi): crisp pixels.
        dpi = math.ceil(100.0 / self.unit) * self.unit
        if title:
            title = wrap_title(title, 0.94 * fig_w, 10, dpi)
        lines = title.count("\n") + 1 if title else 0
        title_in = 0.12 + 0.19 * lines if title else 0.0
        fig = _figure(fig_w, fig_h + title_in, dpi=dpi)
        ax = fig.add_axes((0.0, 0.0, 1.0, fig_h / (fig_h + title_in)))
        ax.imshow(canvas, interpolation="nearest", aspect="equal")
        ax.set_axis_off()
        for x, y, s, kwargs in self.texts:
            ax.text(x, y, s, fontsize=8, **kwargs)
        if title:
            fig.suptitle(title, fontsize=10, y=1.0 - 0.06 / (fig_h + title_in), va="top")
        _save_figure(fig, path)
        return fig


def _max_images(value: int) -> int:
    if int(value) != value or value < 1:
        raise ConfigError(f"max_images must be a positive integer, got {value!r}")
    return int(value)


def save_grid(
    path: PathLike,
    truth: Any,
    recon: Any,
    *,
    labels_true: Any = None,
    labels_pred: Any = None,
    psnr: Any = None,
    max_images: int = 16,
    title: str | None = None,
    total: int | None = None,
):
    """Saves a PNG comparing ground truth (upper row) with reconstructions (lower row).

    Column ``i`` shows ``truth[i]`` above ``recon[i]``: the caller aligns the pairs (e.g.
    with the ``matching`` of :func:`leakjax.metrics.evaluate`). When M != N, the first
    ``max(M, N)`` columns (at most ``max_images``) are drawn and a missing partner is a
    light-gray cell. More than 8 columns wrap into several truth/recon row pairs. Gray
    for C = 1; images are clipped to [0, 1] (NaN drawn black) and images smaller than 32
    pixels are upsampled with nearest neighbours. Captions: ``y=<label>`` above the truth;
    ``<psnr> dB`` and ``pred <label>`` below the reconstruction (red when the label is
    wrong).

    Args:
        path: Destination PNG.
        truth: Ground-truth images [N, H, W, C] (or [N, H, W]), float in [0, 1].
        recon: Reconstructions [M, H, W, C] (or [M, H, W]), same H and W.
        labels_true: Labels [N] for the truth captions.
        labels_pred: Labels [M] for the reconstruction captions.
        psnr: Values for the reconstruction captions; ``psnr[i]`` belongs to column ``i``.
        max_images: Most columns drawn.
        title: Figure title. When fewer pairs are drawn than there are (``max_images``, or
            ``total``), it ends in ``(first k of n)``.
        total: How many pairs the caller has, when it passes only the first ones
            (default ``max(N, M)``).

    Returns:
        The saved ``matplotlib.figure.Figure``.
    """
    truth = _display_images(truth, "truth")
    recon = _display_images(recon, "recon")
    if truth.shape[1:] != recon.shape[1:]:
        raise ConfigError(
            f"recon and truth must have the same image size, got {recon.shape[1:3]} "
            f"and {truth.shape[1:3]}"
        )
    max_images = _max_images(max_images)
    n, m = truth.shape[0], recon.shape[0]
    lt = None if labels_true is None else np.asarray(labels_true).reshape(-1)
    lp = None if labels_pred is None else np.asarray(labels_pred).reshape(-1)
    ps = None if psnr is None else np.asarray(psnr, dtype=np.float64).reshape(-1)
    if lt is not None and lt.size != n:
        raise ConfigError(f"labels_true must have {n} entries (one per truth), got {lt.size}")
    if lp is not None and lp.size != m:
        raise ConfigError(f"labels_pred must have {m} entries (one per recon), got {lp.size}")
    if ps is not None and ps.size > max(n, m):
        raise ConfigError(f"psnr must have at most {max(n, m)} entries, got {ps.size}")

    count = max(1, min(max(n, m), max_images))
    if total is None:
        total = max(n, m)
    if int(total) != total or total < max(n, m):
        raise ConfigError(f"total must be an integer >= {max(n, m)} (the pairs given), got {total}")
    if count < total:
        shown = f"first {count} of {int(total)}"
        title = f"{title} ({shown})" if title else shown
    ncols = min(count, _MAX_COLS)
    pair_rows = -(-count // ncols)
    h, w = truth.shape[1], truth.shape[2]
    mo = _Mosaic(w)
    gap, left = mo.px(0.08), mo.px(0.5)
    cap_top = mo.px(0.2) if lt is not None else gap
    recon_lines = (ps is not None) + (lp is not None)
    cap_bottom = mo.px(0.05 + 0.15 * recon_lines) if recon_lines else gap
    block = cap_top + h + gap + h + cap_bottom
    missing = np.full((h, w, 3), 0.9, np.float32)
    for r in range(pair_rows):
        y0 = r * block + cap_top
        y1 = y0 + h + gap
        mo.text(left - gap, y0 + h / 2, "truth", ha="right", va="center")
        mo.text(left - gap, y1 + h / 2, "recon", ha="right", va="center")
        for c in range(ncols):
            i = r * ncols + c
            if i >= count:
                break
            x0 = left + c * (w + gap)
            mo.paste(y0, x0, truth[i] if i < n else missing)
            mo.paste(y1, x0, recon[i] if i < m else missing)
            if lt is not None and i < n:
                mo.text(x0 + w / 2, y0 - 1, f"y={lt[i]}", ha="center", va="bottom")
            lines, color = [], "black"
            if ps is not None and i < ps.size and i < m:
                lines.append(f"{ps[i]:.1f} dB")
            if lp is not None and i < m:
                lines.append(f"pred {lp[i]}")
                if lt is not None and i < n and lp[i] != lt[i]:
                    color = "red"
            if lines:
                mo.text(
                    x0 + w / 2, y1 + h + 1, "\n".join(lines), ha="center", va="top", color=color
                )
    return mo.render(path, pair_rows * block, left + ncols * (w + gap), title)


def save_image_grid(
    path: PathLike,
    images: Any,
    ncols: int | None = None,
    title: str | None = None,
    captions: Sequence[str] | None = None,
):
    """Saves a plain grid of images as a PNG.

    Args:
        path: Destination PNG.
        images: Images [N, H, W, C] (or [N, H, W]), float in [0, 1]; N >= 1. Drawn as
            :func:`save_grid` draws them (gray for C = 1, tiny images upsampled); images
            wider than 110 pixels are drawn at 100 pixels per inch, so that the title and
            captions keep their usual size next to large pictures (e.g. the sweep's
            contact sheet of grid.png files).
        ncols: Columns (default ``ceil(sqrt(N))``).
        title: Figure title.
        captions: One line above each image (N strings), e.g. its name.

    Returns:
        The saved ``matplotlib.figure.Figure``.
    """
    images = _display_images(images, "images")
    n = images.shape[0]
    if n == 0:
        raise ConfigError("images must hold at least one image")
    if captions is not None and len(captions) != n:
        raise ConfigError(f"captions must hold one line per image ({n}), got {len(captions)}")
    if ncols is None:
        ncols = math.ceil(math.sqrt(n))
    if int(ncols) != ncols or ncols < 1:
        raise ConfigError(f"ncols must be a positive integer, got {ncols!r}")
    ncols = min(int(ncols), n)
    nrows = -(-n // ncols)
    h, w = images.shape[1], images.shape[2]
    mo = _Mosaic(w, cell_in=max(1.1, w / 100.0))
    gap = mo.px(0.08)
    cap = mo.px(0.18) if captions is not None else 0  # a caption band above each row
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = gap + cap + r * (h + gap + cap), gap + c * (w + gap)
        mo.paste(top, left, images[i])
        if captions is not None:
            mo.text(left + w / 2, top - gap / 2, str(captions[i]), ha="center", va="bottom")
    return mo.render(path, gap + nrows * (h + gap + cap), gap + ncols * (w + gap), title)


def _integral(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return finite.size > 0 and bool(np.all(finite == np.round(finite)))


def plot_curves(
    path: PathLike,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    *,
    logy: bool | str = False,
    integer_x: bool | None = None,
    vline: tuple[float, str] | None = None,
):
    """Saves a line plot of named curves (e.g. accuracy vs round, attack loss vs step).

    Args:
        path: Destination PNG.
        curves: Name -> ``(xs, ys)`` of equal length. NaN values leave gaps.
        xlabel: X axis label.
        ylabel: Y axis label.
        title: Plot title (wrapped to the figure's width).
        logy: ``True``: logarithmic y axis (non-positive values are not drawn). ``'auto'``:
            logarithmic when every finite value is positive, else linear with a note
            saying why. ``False``: linear.
        integer_x: Integer x ticks only (``MaxNLocator(integer=True)``). ``None``: when
            every finite x is a whole number (rounds, steps).
        vline: ``(x, label)``: a dashed vertical line at ``x`` (e.g. a threshold).

    Returns:
        The saved ``matplotlib.figure.Figure``.
    """
    from matplotlib.ticker import MaxNLocator

    if not curves:
        raise ConfigError("curves must hold at least one curve")
    if logy not in (True, False, "auto"):
        raise ConfigError(f"logy must be True, False or 'auto', got {logy!r}")
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
    all_x, all_y = [], []
    for name, pair in curves.items():
        try:
            xs, ys = pair
        except (TypeError, ValueError):
            raise ConfigError(f"curves[{name!r}] must be a pair (xs, ys)") from None
        xs = np.asarray(xs, dtype=np.float64).reshape(-1)
        ys = np.asarray(ys, dtype=np.float64).reshape(-1)
        if xs.size != ys.size:
            raise ConfigError(f"curves[{name!r}] has {xs.size} xs but {ys.size} ys")
        ax.plot(xs, ys, label=str(name), marker="." if xs.size <= 50 else None)
        all_x.append(xs)
        all_y.append(ys)
    xs, ys = np.concatenate(all_x), np.concatenate(all_y)
    if logy == "auto":
        finite = ys[np.isfinite(ys)]
        logy = finite.size > 0 and bool(np.all(finite > 0))
        if not logy:
            ax.text(
                0.01, 0.99, "linear y axis: some values are <= 0" if finite.size else
                "no finite values", transform=ax.transAxes, ha="left", va="top", fontsize=7,
                color="0.4",
            )  # fmt: skip
    if vline is not None:
        ax.axvline(float(vline[0]), color="0.3", linestyle="--", linewidth=1, label=vline[1])
    if logy:
        ax.set_yscale("log")
    if integer_x if integer_x is not None else _integral(xs):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if title:  # centred over the axes: wrap to the axes' width once the layout is known
        width_in = ax.get_position().width * fig.get_figwidth()
        ax.set_title(wrap_title(title, 0.98 * width_in, 12, fig.dpi), fontsize=12)
        fig.tight_layout()
    _save_figure(fig, path)
    return fig


def plot_attack_loss(
    path: PathLike,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str | None = None,
    ylabel: str = "attack objective",
):
    """The attack objective vs step: log y axis when every value is positive, else linear."""
    return plot_curves(path, curves, "step", ylabel, title, logy="auto", integer_x=True)


def plot_fl_accuracy(
    path: PathLike,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str | None = None,
    ylabel: str = "accuracy",
):
    """FedAvg accuracy vs round, with integer round ticks."""
    return plot_curves(path, curves, "round", ylabel, title, integer_x=True)


def plot_leakage(
    path: PathLike,
    best_psnr: Mapping[str, Sequence[float]],
    threshold: float,
    title: str | None = None,
):
    """The CDF of the attacked clients' best PSNR, one curve per name (e.g. per attacked
    round), with the success threshold marked: the fraction of clients at or below each PSNR
    (a client right of the line has at least one image recovered)."""
    curves = {}
    for name, values in best_psnr.items():
        v = np.sort(np.asarray(values, np.float64).reshape(-1))
        if v.size == 0:
            raise ConfigError(f"best_psnr[{name!r}] holds no clients")
        curves[f"{name} ({v.size} clients)"] = (v, np.arange(1, v.size + 1) / v.size)
    if title is None:
        title = "how private the clients are: CDF of each client's best reconstruction PSNR"
    return plot_curves(
        path, curves, "best PSNR of a client (dB)", "fraction of clients", title,
        integer_x=False, vline=(threshold, f"success threshold {threshold:g} dB"),
    )  # fmt: skip


def plot_frontier(path: PathLike, rows: Sequence[Mapping[str, Any]], metric: str = "psnr_mean"):
    """The privacy-utility-leakage frontier of a defense sweep: leakage (``metric`` of each
    row) against the final test accuracy, one curve per attack and defense (non-adaptive
    attackers dashed), each from that attack's undefended run through the strengths in the
    rows' order; points with an epsilon are annotated with it."""
    ok = [r for r in rows if r.get("status", "ok") == "ok" and r.get(metric) is not None]
    ok = [r for r in ok if r.get("final_test_acc") is not None]
    who = lambda r: f"{r.get('attack')} ({r.get('mode')})"  # noqa: E731
    naive = lambda r: (
        r.get("adaptive") in (False, "False")
        or str(  # noqa: E731
            r.get("experiment", "")
        ).endswith("-naive")
    )
    fam = lambda r: str(r.get("defense")).split(",")[0]  # noqa: E731
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    attacks = list(dict.fromkeys(who(r) for r in ok))
    for attack in attacks:
        mine = [r for r in ok if who(r) == attack]
        base = [r for r in mine if r.get("defense") in (None, "none")][:1]
        curves = dict.fromkeys((fam(r), naive(r)) for r in mine if r not in base)
        for family, is_naive in curves:
            pts = base + [r for r in mine if fam(r) == family and naive(r) == is_naive]
            xs = [float(r["final_test_acc"]) for r in pts]
            ys = [float(r[metric]) for r in pts]
            label = f"{attack}: {family}" + (" (naive attacker)" if is_naive else "")
            (line,) = ax.plot(xs, ys, marker="o", ls="--" if is_naive else "-", label=label)
            for r, x, y in zip(pts, xs, ys, strict=True):
                if r.get("epsilon") not in (None, ""):
                    ax.annotate(
                        f"eps={float(r['epsilon']):.3g}",
                        (x, y),
                        fontsize=7,
                        color=line.get_color(),
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
    ax.set_xlabel("final test accuracy (FedAvg, same run)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(wrap_title("Leakage vs utility under defenses", 7.0, 11))
    if attacks:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save_figure(fig, path)
    return fig
