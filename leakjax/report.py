"""Writing an experiment's results: work directory, JSON/CSV/Markdown tables, arrays, figures.

Every writer is atomic: it writes a temporary file in the destination directory and
``os.replace``-s it onto the destination, so a reader (or a crashed run) never sees a
half-written file, and a failed write leaves any earlier file untouched. Nothing here
deletes user files; :func:`prepare_workdir` refuses to reuse a non-empty directory.

Figures use matplotlib's object API (``matplotlib.figure.Figure`` rendered by the Agg
canvas), never ``pyplot``: no display is needed and no global backend state is touched.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import pathlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from leakjax.types import ConfigError

__all__ = [
    "format_markdown_table",
    "load_npz",
    "plot_curves",
    "prepare_workdir",
    "save_grid",
    "save_image_grid",
    "save_npz",
    "write_csv",
    "write_json",
    "write_markdown_table",
]

PathLike = str | os.PathLike

# Upsample images smaller than this (pixels on the short side) with nearest neighbours.
_MIN_DISPLAY_PX = 32
# Cells per row in grids.
_MAX_COLS = 8


# --------------------------------------------------------------------------- files


def prepare_workdir(path: PathLike) -> pathlib.Path:
    """Creates a fresh work directory for one run.

    Args:
        path: Directory to create (parents too). It may exist only if it is empty.

    Returns:
        The directory as a ``pathlib.Path``.

    Raises:
        ConfigError: ``path`` is a non-empty directory or not a directory. Nothing is
            deleted or modified in that case.
    """
    workdir = pathlib.Path(path).expanduser()
    if workdir.exists():
        if not workdir.is_dir():
            raise ConfigError(f"workdir {workdir} exists and is not a directory")
        if any(workdir.iterdir()):
            raise ConfigError(f"workdir {workdir} is not empty; choose a new --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (thread safety)."""
    with contextlib.suppress(OSError, ValueError):
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _atomic(path: PathLike, mode: str = "wb") -> Iterator[Any]:
    """Yields a temporary file next to ``path``; on success it replaces ``path`` whole."""
    dest = pathlib.Path(path).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        kwargs = {"newline": ""} if "b" not in mode else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give ordinary permissions
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _jsonable(obj: Any, where: str) -> Any:
    """Converts numpy/jax values to JSON types; rejects NaN/Inf naming the key path."""
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise TypeError(f"JSON key at {where} must be a string, got {type(key).__name__}")
            out[key] = _jsonable(value, f"{where}.{key}")
        return out
    if isinstance(obj, str | bool) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"non-finite value {obj} at {where}; sanitize before write_json")
        return float(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), where)
    if hasattr(obj, "__array__") and hasattr(obj, "dtype") and hasattr(obj, "shape"):
        arr = np.asarray(obj)
        if arr.dtype == object:
            raise TypeError(f"object array at {where} is not JSON-serialisable")
        return _jsonable(arr.tolist(), where)
    raise TypeError(f"value at {where} of type {type(obj).__name__} is not JSON-serialisable")


def write_json(path: PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically.

    NumPy / JAX scalars and arrays become numbers and (nested) lists, tuples become lists,
    paths become strings. NaN and Inf are refused (strict JSON): callers sanitize first.

    Args:
        path: Destination file.
        obj: JSON-like value.

    Raises:
        ValueError: a NaN/Inf value; the message names its key path (e.g. ``$.psnr[3]``).
            The destination is not touched.
        TypeError: a value that has no JSON form.
    """
    text = json.dumps(_jsonable(obj, "$"), indent=2, allow_nan=False) + "\n"
    with _atomic(path, "w") as fh:
        fh.write(text)


_RESERVED_NPZ = frozenset({"file", "allow_pickle", "args", "kwds"})


def save_npz(path: PathLike, **arrays: Any) -> None:
    """Saves arrays with ``np.savez_compressed``, atomically and without pickles.

    The file is written exactly at ``path`` (no ``.npz`` suffix is appended). JAX
    arrays are converted; ml_dtypes (e.g. bfloat16) are stored as float32.

    Args:
        path: Destination file.
        **arrays: Name -> array. Names ``file`` and ``allow_pickle`` are reserved by numpy.

    Raises:
        ValueError: an object array (would need pickle), or a reserved name.
    """
    out = {}
    for name, value in arrays.items():
        if name in _RESERVED_NPZ:
            raise ValueError(f"save_npz: array name {name!r} is reserved by numpy.savez")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ValueError(f"save_npz: array {name!r} has dtype object; it needs pickle")
        if type(arr.dtype).__module__.startswith("ml_dtypes") or "bfloat16" in str(arr.dtype):
            arr = arr.astype(np.float32)
        out[name] = arr
    with _atomic(path, "wb") as fh:
        np.savez_compressed(fh, **out)


def load_npz(path: PathLike) -> dict[str, np.ndarray]:
    """Loads every array of an ``.npz`` file (``allow_pickle=False``).

    Args:
        path: File written by :func:`save_npz` (or any pickle-free npz).

    Returns:
        Dict name -> array.

    Raises:
        ConfigError: the file does not exist.
    """
    src = pathlib.Path(path).expanduser()
    if not src.is_file():
        raise ConfigError(f"npz file {src} does not exist")
    with np.load(src, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _cell(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list | tuple | dict | np.ndarray):
        return json.dumps(_jsonable(value, "$"))
    return value


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return [str(c) for c in columns]
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def write_csv(path: PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Writes rows as CSV, atomically; the header is the union of keys in first-seen order.

    Missing values are empty; lists/dicts/arrays are written as JSON strings. No rows gives
    an empty file.

    Args:
        path: Destination file.
        rows: Sequence of dicts.
    """
    rows = [{str(k): v for k, v in row.items()} for row in rows]
    header = _columns(rows, None)
    buf = io.StringIO()
    if header:
        writer = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    with _atomic(path, "w") as fh:
        fh.write(buf.getvalue())


def _md(value: Any, float_format: str) -> str:
    value = _cell(value)
    if value is None:
        return ""
    if isinstance(value, float):
        text = format(value, float_format)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    float_format: str = ".4g",
) -> str:
    """Formats rows as a GitHub-flavoured Markdown table.

    Args:
        rows: Sequence of dicts.
        columns: Columns to show, in order (default: union of keys, first-seen order).
        float_format: Format spec for floats.

    Returns:
        The table, ending in a newline (empty string when there are no columns).
    """
    cols = _columns(rows, columns)
    if not cols:
        return ""
    lines = [
        "| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |",
        "|" + "|".join(" --- " for _ in cols) + "|",
    ]
    for row in rows:
        row = {str(k): v for k, v in row.items()}
        lines.append("| " + " | ".join(_md(row.get(c), float_format) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_markdown_table(
    path: PathLike,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    float_format: str = ".4g",
) -> None:
    """Writes :func:`format_markdown_table` output to ``path``, atomically."""
    text = format_markdown_table(rows, columns, float_format)
    with _atomic(path, "w") as fh:
        fh.write(text)


# --------------------------------------------------------------------------- figures


def _figure(width: float, height: float, dpi: float = 100.0):
    from matplotlib.figure import Figure  # lazy: matplotlib import costs ~0.3 s

    return Figure(figsize=(width, height), dpi=dpi)


def _save_figure(fig, path: PathLike) -> None:
    with _atomic(path, "wb") as fh:
        fig.savefig(fh, format="png")


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

    def render(self, path: PathLike, height: int, width: int, title: str | None) -> None:
        canvas = np.ones((height, width, 3), np.float32)
        for top, left, img in self.pastes:
            canvas[top : top + img.shape[0], left : left + img.shape[1]] = img
        title_in = 0.35 if title else 0.0
        fig_w, fig_h = width / self.unit, height / self.unit
        # An integer number of output pixels per canvas pixel (about 100 dpi): crisp pixels.
        dpi = math.ceil(100.0 / self.unit) * self.unit
        fig = _figure(fig_w, fig_h + title_in, dpi=dpi)
        ax = fig.add_axes((0.0, 0.0, 1.0, fig_h / (fig_h + title_in)))
        ax.imshow(canvas, interpolation="nearest", aspect="equal")
        ax.set_axis_off()
        for x, y, s, kwargs in self.texts:
            ax.text(x, y, s, fontsize=8, **kwargs)
        if title:
            fig.suptitle(title, fontsize=10, y=1.0 - 0.06 / (fig_h + title_in), va="top")
        _save_figure(fig, path)


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
) -> None:
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
        title: Figure title.
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
    mo.render(path, pair_rows * block, left + ncols * (w + gap), title)


def save_image_grid(
    path: PathLike, images: Any, ncols: int | None = None, title: str | None = None
) -> None:
    """Saves a plain grid of images as a PNG.

    Args:
        path: Destination PNG.
        images: Images [N, H, W, C] (or [N, H, W]), float in [0, 1]; N >= 1. Drawn as
            :func:`save_grid` draws them (gray for C = 1, tiny images upsampled).
        ncols: Columns (default ``ceil(sqrt(N))``).
        title: Figure title.
    """
    images = _display_images(images, "images")
    n = images.shape[0]
    if n == 0:
        raise ConfigError("images must hold at least one image")
    if ncols is None:
        ncols = math.ceil(math.sqrt(n))
    if int(ncols) != ncols or ncols < 1:
        raise ConfigError(f"ncols must be a positive integer, got {ncols!r}")
    ncols = min(int(ncols), n)
    nrows = -(-n // ncols)
    h, w = images.shape[1], images.shape[2]
    mo = _Mosaic(w)
    gap = mo.px(0.08)
    for i in range(n):
        r, c = divmod(i, ncols)
        mo.paste(gap + r * (h + gap), gap + c * (w + gap), images[i])
    mo.render(path, gap + nrows * (h + gap), gap + ncols * (w + gap), title)


def plot_curves(
    path: PathLike,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    *,
    logy: bool = False,
) -> None:
    """Saves a line plot of named curves (e.g. accuracy vs round, attack loss vs step).

    Args:
        path: Destination PNG.
        curves: Name -> ``(xs, ys)`` of equal length. NaN values leave gaps.
        xlabel: X axis label.
        ylabel: Y axis label.
        title: Plot title.
        logy: Logarithmic y axis (non-positive values are not drawn).
    """
    if not curves:
        raise ConfigError("curves must hold at least one curve")
    fig = _figure(6.0, 4.0)
    ax = fig.subplots()
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
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
