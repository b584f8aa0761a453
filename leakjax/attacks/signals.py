"""SIGINT/SIGTERM during a long loop -> a flag checked between chunks -> `Interrupted`."""

from __future__ import annotations

import contextlib
import signal
import threading


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived during `run`; the state was checkpointed (if a path was set)."""

    def __init__(self, steps_done: int, checkpoint: str | None):
        self.steps_done, self.checkpoint = steps_done, checkpoint
        where = f"; checkpoint {checkpoint}" if checkpoint else ""
        super().__init__(f"interrupted after step {steps_done}{where}")


class StopFlag:
    """Set by the handler of `catch_signals` (or by hand): ``signum`` of the first signal."""

    def __init__(self):
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def catch_signals():
    """Turn SIGINT/SIGTERM into a `StopFlag` checked between chunks (main thread only;
    elsewhere the flag is returned but no handler is installed). The previous handlers are
    restored on exit."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        del frame
        if flag.signum is None:
            flag.signum = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
