"""One writer per folder: an exclusive lock file in every folder winn-robust writes (a training
run, a report with its evaluation state, a reproduce root), taken before anything there is read
or deleted.

The lock is `fcntl.flock` on `FOLDER/.winn-robust-<role>.lock`, which records the holder's pid,
host and command for the message a second writer gets. The kernel drops a flock when its holder
dies (even by kill -9), so a lock file left by a dead process is simply taken over. Where flock
does not exist (Windows) the file is created with O_CREAT|O_EXCL instead, and one whose pid is no
longer alive on this host is taken over. Locks are re-entrant within a process (the CLI and the
library function it calls may both ask), and released when the last holder releases or exits.

A writer checks before each checkpoint that its lock is still its own (`FolderLock.verify`): the
lock file at the path is the very file it locked and records its pid and host. A lock file
deleted or replaced under a live writer (by hand, by a cleaning script) stops that writer with
one line instead of letting a second writer share the folder unnoticed. flock is per host on
some network file systems (NFS without its lock manager, some FUSE mounts): a lock file that
records another host is therefore never taken over; the user removes it once sure no run on
that host writes the folder (docs/integrity.md)."""
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

from winn_robust.errors import MachineError, UserError, fault_line

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

    def verify(self) -> None:
        """Raise one MachineError line unless the lock file at our path is still the file we
        locked, recording this process: called before every checkpoint a writer writes."""
        held = self._held
        if held is None:
            raise MachineError(f"the lock on {self.path.parent} was released before writing; this is a bug of winn-robust")
        record = _read_record(held.path)
        if _same_file(held.path, held.fd) and record.get("pid") == os.getpid() and record.get("host") == socket.gethostname():
            return
        now = "is gone" if not held.path.exists() else f"now names {_describe_holder(held.path)}"
        raise MachineError(f"lost the lock on {held.path.parent}: its lock file {held.path.name} {now}; stopped "
                           "without writing, so no two writers share the folder (the last checkpoint is kept); make "
                           "sure only one run writes there, then run the same command again")

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


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _describe_holder(path: Path) -> str:
    record = _read_record(path)
    if "pid" not in record:
        return "another process (it has not recorded its pid yet)"
    shown = str(record.get("command") or "")
    command = f", `{shown if len(shown) <= 300 else shown[:297] + '...'}`" if shown else ""
    return f"pid {record['pid']} on {record.get('host', 'an unknown host')}{command}, since {record.get('since', '?')}"


COMMAND_LIMIT = 4000  # characters of the command kept in the lock record (the whole of any real one)


def _record() -> bytes:
    command = " ".join(["winn-robust", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith(("__main__.py", "winn-robust")) \
        else " ".join(sys.argv)
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command[:COMMAND_LIMIT],
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


def _lock_file(folder: Path, path: Path, role: str) -> int:
    """An open descriptor of the lock file, locked by us; a busy lock raises one UserError."""
    if fcntl is None:  # pragma: no cover - Windows
        return _open_exclusive(folder, path, role)
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder, path, role) from None
        except OSError:
            os.close(fd)
            raise
        if not _same_file(path, fd):
            os.close(fd)  # the holder released and unlinked it between our open and our lock: retry
            continue
        host = _read_record(path).get("host")
        if host and host != socket.gethostname():  # flock may not reach across hosts: never take it over
            os.close(fd)
            raise UserError(f"{folder} is locked by {_describe_holder(path)} (lock {path.name}), another host; locks "
                            "may not be shared between hosts on a network file system, so winn-robust does not take "
                            f"it over: once sure no run on {host} writes there, delete {path}")
        return fd
    raise _busy(folder, path, role)


def acquire(folder: str | Path, role: str) -> FolderLock:
    """Hold `folder`'s lock for `role` (creating the folder), or raise one UserError line naming
    the process that holds it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MachineError(fault_line(exc, folder, "create")) from None
    path = folder / lock_name(role)
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link; winn-robust never writes through one: remove it")
    key = str(path.resolve())
    if key in _HELD:
        return FolderLock(_HELD[key])
    try:
        fd = _lock_file(folder, path, role)
        os.ftruncate(fd, 0)
        os.write(fd, _record())
        os.fsync(fd)
    except OSError as exc:
        raise MachineError(fault_line(exc, path, "lock")) from None
    held = _Held(Path(key), fd)
    _HELD[key] = held
    return FolderLock(held)


def verify(folder: str | Path, role: str) -> None:
    """Check that this process still holds `folder`'s lock for `role` and that the lock file is
    still its own (FolderLock.verify); one MachineError line if not. For the writers, before
    every checkpoint or report file."""
    path = Path(folder) / lock_name(role)
    try:
        key = str(path.resolve())
    except OSError as exc:
        raise MachineError(fault_line(exc, path, "check the lock")) from None
    held = _HELD.get(key)
    if held is None:
        raise MachineError(f"lost the lock on {folder}: this process does not hold {path.name}; stopped without writing")
    with FolderLock(held) as lock:
        lock.verify()


def holder(folder: str | Path, role: str) -> dict[str, Any] | None:
    """What the lock file records (pid, host, command), when one exists: for tests and messages."""
    path = Path(folder) / lock_name(role)
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
