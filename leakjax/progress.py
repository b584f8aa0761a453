"""Progress lines for long work (FL rounds, attack steps): rate and ETA."""

from __future__ import annotations

import json
import pathlib
import sys
import time


def fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def round_label(index: int, total: int) -> str:
    """A round as the user sees it, 1-based like the progress lines (``round 5/5`` for index
    4 of 5; the index is `attack.rounds`' and metrics.json's ``round``); an observation
    taken after the last round (gradient mode: ``index == total``) is ``after round 5/5``."""
    if index < total:
        return f"round {index + 1}/{total}"
    return f"after round {total}/{total}" if total else "initial model"


class Progress:
    """Prints ``[name] what i/n ... rate, ETA`` lines; silent when ``enabled`` is False."""

    def __init__(self, name: str, total: int, unit: str = "step", enabled: bool = True):
        self.name, self.total, self.unit, self.enabled = name, total, unit, enabled
        self.t0 = time.perf_counter()
        self.first_done: float | None = None  # time when the first unit finished (compile)
        self.first_count = 0

    def update(self, done: int, **fields) -> None:
        now = time.perf_counter()
        if self.first_done is None:
            self.first_done, self.first_count = now, done
            rate = float("nan")
        else:
            dt = now - self.first_done
            rate = (done - self.first_count) / dt if dt > 0 else float("nan")
        eta = (self.total - done) / rate if rate == rate and rate > 0 else float("nan")
        if not self.enabled:
            return
        parts = [f"[{self.name}] {self.unit} {done}/{self.total}"]
        for k, v in fields.items():
            parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
        if rate == rate:
            parts.append(f"{rate:.3g} {self.unit}s/s")
        parts.append(f"elapsed {fmt_seconds(now - self.t0)}")
        parts.append(f"ETA {fmt_seconds(eta)}")
        print(" | ".join(parts), file=sys.stdout, flush=True)

    def note(self, message: str) -> None:
        """One ``[name] message`` line (e.g. that the first unit includes compiling)."""
        if self.enabled:
            print(f"[{self.name}] {message}", file=sys.stdout, flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def time_parts(path, resume: bool, **this: float) -> dict[str, list[float]]:
    """Seconds per part of a run: the earlier parts that an interrupted run left in the JSON
    file ``path`` (read only when ``resume``), then ``this`` part's (e.g. ``wall=12.5``)."""
    path = pathlib.Path(path)
    earlier = json.loads(path.read_text()) if resume and path.exists() else {}
    return {k: [*earlier.get(k, []), float(v)] for k, v in this.items()}


def time_summary(parts: dict[str, list[float]]) -> dict:
    """``{k}_seconds``: each kind summed over the parts; ``wall_seconds_parts``: the list."""
    out = {f"{k}_seconds": round(sum(v), 3) for k, v in parts.items()}
    out["wall_seconds_parts"] = [round(v, 3) for v in parts.get("wall", [])]
    return out
