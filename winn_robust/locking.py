"""One writer per folder: an exclusive lock file in every folder winn-robust writes (a training
run, a report with its evaluation state, a reproduce root), taken before anything there is read
or deleted.

The lock is `fcntl.flock` on `FOLDER/.winn-robust-<role>.lock`, which records the holder's pid,
host and command for the message a second writer gets. The kernel drops a flock when its holder
dies (even by kill -9), so a lock file left by a dead process is simply taken over. Where flock
does not exist (Windows) the file is created with O_CREAT|O_EXCL instead, and one whose pid is no
longer alive on this host is taken over. Locks are re-entrant within a process (the CLI and the
library function it calls may both ask), and released when the last holder releases or exits."""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from winn_robust.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

RUN, REPORT, REPRODUCE = "run", "report", "reproduce"


def lock_name(role: str) -> str:
    return f".winn-robust-{role}.lock"


class _Held:
    """One open, locked lock file and how many holders in this process share it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd, self.count = path, fd, 0
        self.after_release: list[Callable[[], object]] = []


_HELD: dict[str, _Held] = {}


class FolderLock:
    """A hold on a folder's lock; `release()` (or leaving a `with` block) gives it back."""

    def __init__(self, held: _Held) -> None:
        self._held: _Held | None = held
        held.count += 1
        self.path = held.path

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        held.count -= 1
        if held.count == 0:
            _HELD.pop(str(held.path), None)
            try:  # unlink while still holding it: a waiter that opened this inode notices and retries
                if _same_file(held.path, held.fd):
                    held.path.unlink()
            except OSError:
                pass
            os.close(held.fd)
            for action in reversed(held.after_release):
                try:
                    action()
                except OSError:
                    pass

    def on_release(self, action: Callable[[], object]) -> None:
        """Run `action` once the lock is finally given back (e.g. remove a folder left empty)."""
        if self._held is not None:
            self._held.after_release.append(action)

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def _describe_holder(path: Path) -> str:
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or "pid" not in record:
        return "another process (it has not recorded its pid yet)"
    command = f", `{record['command']}`" if record.get("command") else ""
    return f"pid {record['pid']} on {record.get('host', 'an unknown host')}{command}, since {record.get('since', '?')}"


def _record() -> bytes:
    command = " ".join(["winn-robust", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith(("__main__.py", "winn-robust")) \
        else " ".join(sys.argv)[:200]
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command[:200],
                       "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()


def _busy(folder: Path, path: Path, role: str) -> UserError:
    return UserError(f"{folder} is being written by {_describe_holder(path)} (lock {path.name}); wait for that {role} "
                     "to finish or stop it, or choose another --out")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _open_exclusive(folder: Path, path: Path, role: str) -> int:
    """The fallback without flock: create the file or take over a dead process's."""
    for _ in range(3):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                record = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                record = {}
            pid = record.get("pid") if isinstance(record, dict) else None
            if isinstance(pid, int) and record.get("host") == socket.gethostname() and not _pid_alive(pid):
                path.unlink(missing_ok=True)  # stale: its writer is gone
                continue
            raise _busy(folder, path, role) from None
    raise _busy(folder, path, role)


def acquire(folder: str | Path, role: str) -> FolderLock:
    """Hold `folder`'s lock for `role` (creating the folder), or raise one UserError line naming
    the process that holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / lock_name(role)
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link; winn-robust never writes through one: remove it")
    key = str(path.resolve())
    if key in _HELD:
        return FolderLock(_HELD[key])
    if fcntl is None:  # pragma: no cover - Windows
        fd = _open_exclusive(folder, path, role)
    else:
        for _ in range(10):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _busy(folder, path, role) from None
            if _same_file(path, fd):
                break
            os.close(fd)  # the holder released and unlinked it between our open and our lock: retry
        else:
            raise _busy(folder, path, role)
    os.ftruncate(fd, 0)
    os.write(fd, _record())
    os.fsync(fd)
    held = _Held(Path(key), fd)
    _HELD[key] = held
    return FolderLock(held)


def holder(folder: str | Path, role: str) -> dict[str, Any] | None:
    """What the lock file records (pid, host, command), when one exists: for tests and messages."""
    path = Path(folder) / lock_name(role)
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
