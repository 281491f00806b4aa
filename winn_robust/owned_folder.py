"""A folder winn-robust owns: its marker, its writer lock, the names it may write, and the
checks every writer makes before the first byte (no link or foreign file where ours go, no
leftover of a killed write, every place it writes writable) and at every checkpoint (its lock is
still its own). Training runs (training/run_folder.py) and reports (reporting/report_folder.py)
are subclasses that only say which names are theirs, so `--force` deletes exactly those."""
from __future__ import annotations

import errno
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from winn_robust.errors import MachineError, UserError, fault_line
from winn_robust.locking import FolderLock, acquire, lock_name, verify
from winn_robust.storage import atomic_write_text, leftovers, refuse_links, remove_if_only, remove_leftovers
from winn_robust.version import __version__

NamePredicate = Callable[[str], bool]


class Child:
    """A fixed name in an owned folder, read as its path: `best = Child("best.pt")` makes
    `folder.best` the path `folder.root / "best.pt"`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, folder: OwnedFolder, owner: type | None = None) -> Path:
        return folder.root / self.name


@dataclass(frozen=True)
class OwnedFolder:
    """The files of one of our folders under `root`. Subclasses set MARKER, ROLE, KIND and
    `top_names()`/`subfolders()`: the names (and, per sub-folder, the file names) that are ours."""
    root: Path
    MARKER: ClassVar[str] = ".winn-robust-folder"
    ROLE: ClassVar[str] = "folder"
    KIND: ClassVar[str] = "folder"               # "a training run folder", for the marker's text
    FORCE: ClassVar[str] = "--force"             # the command that replaces it, for the marker's text

    def __init_subclass__(cls, marker: str = "", role: str = "", kind: str = "", force: str = "", **rest: object) -> None:
        """`class RunFolder(OwnedFolder, marker=..., role=..., kind=..., force=...)`."""
        super().__init_subclass__(**rest)
        cls.MARKER, cls.ROLE = marker or cls.MARKER, role or cls.ROLE
        cls.KIND, cls.FORCE = kind or cls.KIND, force or cls.FORCE

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---- what is ours (subclasses) -------------------------------------------------------------
    def top_names(self) -> tuple[str, ...]:
        """File names of ours directly in the folder (the marker included)."""
        return (self.MARKER,)

    def subfolders(self) -> Mapping[str, NamePredicate]:
        """Sub-folders of ours and which file names in each are ours."""
        return {}

    def is_top_name(self, name: str) -> bool:
        """Whether a file name directly in the folder is ours: `top_names()`, and in subclasses
        names that come in series (a generative run's cascade-K.pt)."""
        return name in self.top_names()

    # ---- what is there ---------------------------------------------------------------------------
    @property
    def marker(self) -> Path:
        return self.root / self.MARKER

    @property
    def lock_file(self) -> Path:
        return self.root / lock_name(self.ROLE)

    def _plain_file(self, path: Path) -> bool:
        return path.is_file() and not path.is_symlink()

    def top_paths(self) -> list[Path]:
        """Where our files directly in the folder go: every `top_names()` entry, then whatever
        else `is_top_name` takes that is there now."""
        named = self.top_names()
        series = sorted(p for p in self.root.iterdir() if p.name not in named and self.is_top_name(p.name)) \
            if self.root.is_dir() else []
        return [self.root / n for n in named] + series

    def entries_in(self, sub: str) -> tuple[list[Path], list[Path]]:
        """(our files, anything else) inside one of our sub-folders."""
        folder = self.root / sub
        if folder.is_symlink() or not folder.is_dir():
            return [], []
        ours_name = self.subfolders()[sub]
        tmp = set(leftovers(folder, ours_name))
        ours, other = [], []
        for entry in sorted(folder.iterdir()):
            if entry in tmp or (ours_name(entry.name) and self._plain_file(entry)):
                ours.append(entry)
            else:
                other.append(entry)
        return ours, other

    def our_files(self, subs: tuple[str, ...] | None = None, top: bool = True) -> list[Path]:
        """Every file of ours that is there now (what `clear` deletes), with killed writes' leftovers."""
        found: list[Path] = []
        if top:
            found += [path for path in self.top_paths() if self._plain_file(path)]
            found += leftovers(self.root, self.is_top_name)
        for sub in self.subfolders() if subs is None else subs:
            found += self.entries_in(sub)[0]
        return found

    def in_the_way(self) -> list[Path]:
        """What is not ours where ours would go: a link or folder in place of one of our files, a
        sub-folder of ours as a file or a link, other files inside it."""
        blocking = [path for path in self.top_paths() if path.is_symlink() or (path.exists() and not path.is_file())]
        for sub in self.subfolders():
            folder = self.root / sub
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                blocking.append(folder)
            else:
                blocking += self.entries_in(sub)[1]
        return blocking

    def holds_ours(self) -> bool:
        """True only when our marker or one of our files is there (a user's own files are not ours)."""
        return self.marker.is_file() or any(p.name != self.MARKER for p in self.our_files())

    # ---- changing it -------------------------------------------------------------------------------
    def refuse_foreign(self, doing: str) -> None:
        blocking = self.in_the_way()
        refuse_links(*blocking)
        if blocking:
            shown = ", ".join(str(p) for p in blocking[:5]) + (f" and {len(blocking) - 5} more" if len(blocking) > 5 else "")
            raise UserError(f"cannot {doing} {self.root}: {shown} {'is' if len(blocking) == 1 else 'are'} not "
                            "winn-robust's; move them away or choose another --out")

    def clear(self, subs: tuple[str, ...] | None = None, top: bool = True, doing: str = "replace the files in") -> list[Path]:
        """Delete our files (for --force; `subs`/`top` narrow it), only after checking nothing else
        is in the way; our sub-folders left empty are removed."""
        self.refuse_foreign(doing)
        removed = self.our_files(subs, top)
        for path in removed:
            path.unlink()
        for sub in self.subfolders() if subs is None else subs:
            folder = self.root / sub
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()
        return removed

    def lock(self) -> FolderLock:
        """This folder's writer lock (locking.py); a folder this creates is removed again on release
        when nothing but our marker was written into it (a refused command leaves nothing)."""
        created = not self.root.exists()
        lock = acquire(self.root, self.ROLE)
        if created:
            lock.on_release(lambda: remove_if_only(self.root, (self.MARKER,)))
        return lock

    def verify_lock(self) -> None:
        """Before writing a checkpoint or a report file: our lock is still ours (locking.verify)."""
        verify(self.root, self.ROLE)

    def check_writable(self) -> None:
        """Before any work: every place we write must take a new file and every file of ours that
        will be replaced must be replaceable (a read-only mount, an immutable file, a folder
        without write permission), so such a fault is one line now, not after an epoch of work."""
        refuse_links(*self.top_paths())
        folders = [self.root] + [self.root / sub for sub in self.subfolders() if (self.root / sub).is_dir()]
        for folder in folders:
            try:
                fd, probe = tempfile.mkstemp(prefix=".winn-robust-probe.", suffix=".tmp", dir=folder)
                os.close(fd)
                os.unlink(probe)
            except OSError as exc:
                raise MachineError(fault_line(exc, folder, "write into")) from None
        for path in self.our_files():
            code = _unreplaceable(path)  # a rename over an immutable or append-only file fails (EPERM)
            if code:
                raise MachineError(fault_line(OSError(code, os.strerror(code), str(path)), path, "replace"))

    def open_for_writing(self, doing: str = "write into") -> FolderLock:
        """Lock the folder (before anything there is read or deleted), refuse links or foreign
        files where ours go, remove leftovers of killed writes, check that we can write, and mark
        it as ours. The caller releases the lock when the work ends."""
        lock = self.lock()
        try:
            refuse_links(self.lock_file)
            self.refuse_foreign(doing)
            remove_leftovers([self.root], self.is_top_name)
            for sub, ours in self.subfolders().items():
                remove_leftovers([self.root / sub], ours)
            self.check_writable()
            if not self.marker.is_file():
                atomic_write_text(self.marker, f"{self.KIND} of winn-robust {__version__}; `{self.FORCE}` "
                                               "deletes only the files winn-robust wrote here\n")
        except BaseException:
            lock.release()
            raise
        return lock


FS_IOC_GETFLAGS = 0x80086601  # linux/fs.h, on 64-bit Linux
FS_IMMUTABLE_FL, FS_APPEND_FL = 0x10, 0x20


def _unreplaceable(path: Path) -> int:
    """The errno a rename over `path` would meet (EROFS, EPERM for chattr +i/+a), or 0."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return errno.EROFS
    except OSError:
        return 0
    if fcntl is None or not sys.platform.startswith("linux"):
        return 0
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return 0
    try:
        flags = struct.unpack("l", fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("l", 0)))[0]
    except OSError:  # a file system without these flags (tmpfs before 6.0, NFS)
        return 0
    finally:
        os.close(fd)
    return errno.EPERM if flags & (FS_IMMUTABLE_FL | FS_APPEND_FL) else 0
