"""SIGINT/SIGTERM during a long loop -> a flag checked between chunks -> `Interrupted`.

The flag is also set, and the signal acknowledged on stderr, at once by a watcher thread
woken through `signal.set_wakeup_fd`: Python runs its own handler only when the main thread
is back in Python, i.e. after the jitted chunk it is waiting for ends (issue 33 #3: a Ctrl-C
looked ignored for ~100 s)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_active: StopFlag | None = None  # the flag of the outermost `catch_signals` now open


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
        self._lock = threading.Lock()  # the handler and the watcher may both set it

    def __bool__(self) -> bool:
        return self.signum is not None

    def set(self, signum: int) -> None:
        """Record ``signum`` (the first signal only) and acknowledge it on stderr."""
        with self._lock:
            if self.signum is not None:
                return
            self.signum = signum
            name = signal.Signals(signum).name
            print(f"\n{name} received: stopping after this chunk...", file=sys.stderr, flush=True)


def _watch(read_fd: int, flag: StopFlag) -> None:
    """Set ``flag`` for each SIGINT/SIGTERM byte the C-level handler writes; ends at EOF."""
    try:
        while data := os.read(read_fd, 64):
            for signum in data:
                if signum in _SIGNALS:
                    flag.set(signum)
    finally:
        os.close(read_fd)


@contextlib.contextmanager
def catch_signals():
    """Turn SIGINT/SIGTERM into a `StopFlag` checked between chunks (main thread only;
    elsewhere the flag is returned but no handler is installed). The first signal is
    acknowledged on stderr at once. Inside another `catch_signals` the outer flag is reused
    (a caller running several loops stops between them). The previous handlers and wakeup
    fd are restored on exit."""
    global _active
    if _active is not None:
        yield _active
        return
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        del frame
        flag.set(signum)

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    watcher = threading.Thread(target=_watch, args=(read_fd, flag), daemon=True)
    old = {s: signal.signal(s, handler) for s in _SIGNALS}
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher.start()
    _active = flag
    try:
        yield flag
    finally:
        _active = None
        signal.set_wakeup_fd(old_fd)
        for s, h in old.items():
            signal.signal(s, h)
        os.close(write_fd)  # the watcher reads EOF and ends
        watcher.join(timeout=5)
