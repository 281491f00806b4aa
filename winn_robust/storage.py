"""Writing our files safely: atomically under a unique temporary name, never through a symbolic
link, and the temporary leftovers of a killed write removed on the next start.

Every file winn-robust writes goes through `atomic_write` (directly or via `atomic_write_text`,
`atomic_savefig`): the bytes go to `.NAME.XXXXXXXX.tmp` beside NAME (a unique name from
`tempfile.mkstemp`, so two writers never share one), are fsync'ed, then renamed over NAME. A kill
at any moment leaves the old file or the new one, never half of one; what it can leave is the
temporary file, which `remove_leftovers` deletes. A write the machine refuses (disk full,
read-only file system, an immutable file, a size limit) is one MachineError line naming the file,
the cause and what to do; the old file stays as it was."""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from winn_robust.errors import MachineError, UserError, fault_line

# mkstemp's random part: 8 characters of [a-z0-9_]
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_links(*paths: Path) -> None:
    """One line for the first path that is a symbolic link: we never write or delete through one."""
    for path in paths:
        if Path(path).is_symlink():
            raise UserError(f"{path} is a symbolic link; winn-robust never writes or deletes through one: replace it "
                            "with a real file or folder, or choose another --out")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> int:
    """Call `write(handle)` on a unique temporary file beside `path`, fsync, rename it over `path`.
    Refuses when `path` (or its folder) is a symbolic link. Returns the bytes written."""
    path = Path(path)
    refuse_links(path, path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise MachineError(fault_line(exc, path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            size = handle.tell()
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); ours are ordinary files
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise MachineError(fault_line(exc, path)) from None
        raise
    return size


def atomic_write_bytes(path: str | Path, data: bytes) -> int:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    return Path(path)


def atomic_savefig(figure: Any, path: str | Path, **options: Any) -> Path:
    """matplotlib's `Figure.savefig`, atomically (the format from the file's suffix)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    atomic_write(path, lambda handle: figure.savefig(handle, format=fmt, **options))
    return path


def leftovers(folder: Path, ours: Callable[[str], bool] = lambda name: True) -> list[Path]:
    """Temporary files `.NAME.XXXXXXXX.tmp` in `folder` whose NAME `ours` accepts."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    found = []
    for entry in folder.iterdir():
        match = _LEFTOVER.match(entry.name)
        if match and ours(match["name"]) and entry.is_file() and not entry.is_symlink():
            found.append(entry)
    return sorted(found)


def remove_leftovers(folders: Iterable[Path], ours: Callable[[str], bool] = lambda name: True) -> int:
    """Delete what killed writes left in `folders` (call with the folder's lock held); how many."""
    count = 0
    for folder in folders:
        for path in leftovers(Path(folder), ours):
            path.unlink(missing_ok=True)
            count += 1
    return count


def remove_if_only(folder: Path, names: Iterable[str]) -> bool:
    """Remove `folder` when it holds nothing but `names` (our marker, say): what a refused command
    that created it leaves behind. True when removed."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    allowed = set(names)
    entries = list(folder.iterdir())
    if any(e.name not in allowed or not e.is_file() or e.is_symlink() for e in entries):
        return False
    for entry in entries:
        entry.unlink()
    folder.rmdir()
    return True
