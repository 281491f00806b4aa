"""A stop asked for by a signal, honoured at a safe boundary: SIGTERM (what SLURM, most
schedulers and `kill` send first), SIGUSR2 (what submitit asks SLURM to send 90 s before a time
limit) and SIGINT (Ctrl-C) all mean "save what you can and stop".

Outside a `polling()` block a stop signal raises `Stopped` at once in the main thread (as
Ctrl-C raises KeyboardInterrupt), so a command waiting on children or files ends with one line.
Inside one, the signal only records the request, and the loop asks `requested()` at each batch
boundary, writes a resumable state and raises `Stopped` itself. A second Ctrl-C raises at once.

How a training loop uses it (training/trainer.py does exactly this):

    with stop_request.polling():
        for step in range(steps):
            ...one optimizer step...
            if stop_request.requested():          # under torchrun: stop_request.agreed(...)
                save_state(step + 1)              # everything needed to continue exactly
                raise stop_request.Stopped(stop_request.requested(), f"state saved in {path}")

`install()` is called once by the CLI; library users who want the behaviour call it too."""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR2", None), signal.SIGINT)
                     if s is not None)

_state: dict[str, int] = {"requested": 0, "polling": 0, "installed": 0}


class Stopped(KeyboardInterrupt):
    """The work stopped on a signal (a KeyboardInterrupt, so every Ctrl-C clean-up runs too);
    `saved` says what was kept, for the one line the CLI prints."""

    def __init__(self, signum: int = signal.SIGINT, saved: str = "") -> None:
        super().__init__(saved)
        self.signum, self.saved = int(signum), saved

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def _handle(signum: int, frame: FrameType | None) -> None:
    again = _state["requested"] == signal.SIGINT and signum == signal.SIGINT
    first = not _state["requested"]
    _state["requested"] = _state["requested"] or signum
    if not _state["polling"] or again:
        raise Stopped(signum)
    if first:
        print(f"winn-robust: {name(signum)} received; saving a resumable state at the next safe point"
              + (" (Ctrl-C again stops at once, losing the current epoch)" if signum == signal.SIGINT else ""),
              file=sys.stderr, flush=True)


def install() -> dict[int, Any]:
    """Route the stop signals here (main thread only; elsewhere nothing changes). Returns the
    handlers replaced, for `restore`."""
    if threading.current_thread() is not threading.main_thread() or _state["installed"]:
        return {}
    previous = {signum: signal.signal(signum, _handle) for signum in STOP_SIGNALS}
    _state["installed"] = 1
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Put back the handlers `install` replaced (a library caller such as a test runner keeps its own)."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    if any(signum in previous for signum in STOP_SIGNALS):
        _state["installed"] = 0
        clear()


def requested() -> int:
    """The signal that asked for a stop (0: none)."""
    return _state["requested"]


def clear() -> None:
    """Forget a request (tests; a library caller that handled it)."""
    _state["requested"] = 0


def name(signum: int) -> str:
    return signal.Signals(signum).name if signum else ""


@contextmanager
def polling() -> Iterator[None]:
    """Inside: a stop signal is only recorded, for the loop to honour at its next boundary."""
    _state["polling"] += 1
    try:
        yield
    finally:
        _state["polling"] -= 1


@contextmanager
def starting() -> Iterator[None]:
    """Start-up (imports): the handlers installed and a request only recorded; `main` honours it."""
    install()
    with polling():
        yield


@contextmanager
def deferred() -> Iterator[None]:
    """A block a stop must not cut in half (writing a state file): a signal inside it is
    recorded and raised as Stopped when the block ends (unless polling)."""
    with polling():
        yield
    if _state["requested"] and not _state["polling"]:
        raise Stopped(_state["requested"])
