"""What a training run folder holds, so that `--force` deletes only what `train` wrote.

A run folder carries a marker file (`.winn-robust-run`) beside the names `train` writes:
best.pt (and best-RULE.pt), last.pt, metrics.csv, metrics.png, pool/epoch_NNN.pt, negatives/epoch_NNN.png (and the
temporary `.NAME.XXXXXXXX.tmp` of a killed write). `holds_run` is true only when the marker or
one of those names is there; `clear` deletes exactly those names, refuses (naming them) when
anything else sits in pool/ or negatives/ or in place of one of our files, and never deletes or
writes through a symbolic link. Files of the user's own beside the run are left alone."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from winn_robust.errors import UserError
from winn_robust.locking import RUN, FolderLock, acquire, lock_name
from winn_robust.storage import atomic_write_text, leftovers, refuse_links, remove_if_only, remove_leftovers
from winn_robust.version import __version__

MARKER = ".winn-robust-run"
BEST_NAME, LAST_NAME, METRICS_NAME, METRICS_PLOT = "best.pt", "last.pt", "metrics.csv", "metrics.png"
POOL_DIR, NEGATIVES_DIR = "pool", "negatives"
TOP_FILES = (BEST_NAME, LAST_NAME, METRICS_NAME, METRICS_PLOT, MARKER, "best-clean.pt", "best-pgd.pt", "best-last.pt")
_POOL_FILE = re.compile(r"^epoch_\d{3,}\.pt$")
_GRID_FILE = re.compile(r"^epoch_\d{3,}\.png$")
_PATTERNS = {POOL_DIR: _POOL_FILE, NEGATIVES_DIR: _GRID_FILE}


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run under `root`."""
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def best(self) -> Path:
        return self.root / BEST_NAME

    @property
    def last(self) -> Path:
        return self.root / LAST_NAME

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_NAME

    @property
    def metrics_plot(self) -> Path:
        return self.root / METRICS_PLOT

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def pool_dir(self) -> Path:
        return self.root / POOL_DIR

    @property
    def negatives_dir(self) -> Path:
        return self.root / NEGATIVES_DIR

    def pool_file(self, epoch: int) -> Path:
        return self.pool_dir / f"epoch_{epoch:03d}.pt"

    def negatives_file(self, epoch: int) -> Path:
        return self.negatives_dir / f"epoch_{epoch:03d}.png"

    # ---- what is there -------------------------------------------------------------------
    def _ours_in(self, sub: str) -> tuple[list[Path], list[Path]]:
        """(our files, anything else) inside pool/ or negatives/."""
        folder = self.root / sub
        if folder.is_symlink() or not folder.is_dir():
            return [], []
        ours, other = [], []
        pattern = _PATTERNS[sub]
        tmp = leftovers(folder, lambda name: bool(pattern.match(name)))
        for entry in sorted(folder.iterdir()):
            if (pattern.match(entry.name) and entry.is_file() and not entry.is_symlink()) or entry in tmp:
                ours.append(entry)
            else:
                other.append(entry)
        return ours, other

    def our_files(self) -> list[Path]:
        """Every file of ours that is there now (what `clear` deletes)."""
        found = [self.root / name for name in TOP_FILES
                 if (self.root / name).is_file() and not (self.root / name).is_symlink()]
        found += leftovers(self.root, lambda name: name in TOP_FILES)
        for sub in _PATTERNS:
            found += self._ours_in(sub)[0]
        return found

    def in_the_way(self) -> list[Path]:
        """What is not ours where ours would go: other files in pool/ or negatives/, a folder or
        link in place of one of our files, pool/ or negatives/ as a file or a link."""
        blocking = [self.root / name for name in TOP_FILES
                    if (self.root / name).is_symlink() or ((self.root / name).exists() and not (self.root / name).is_file())]
        for sub in _PATTERNS:
            folder = self.root / sub
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                blocking.append(folder)
            else:
                blocking += self._ours_in(sub)[1]
        return blocking

    def holds_run(self) -> bool:
        """True only when our marker or one of our files is there (a user's pool/thesis.tex is not a run)."""
        return self.marker.is_file() or any(p.name != MARKER for p in self.our_files())

    # ---- changing it -----------------------------------------------------------------------
    def refuse_foreign(self, doing: str) -> None:
        blocking = self.in_the_way()
        refuse_links(*blocking)
        if blocking:
            shown = ", ".join(str(p) for p in blocking[:5]) + (f" and {len(blocking) - 5} more" if len(blocking) > 5 else "")
            raise UserError(f"cannot {doing} {self.root}: {shown} {'is' if len(blocking) == 1 else 'are'} not "
                            "winn-robust's; move them away or choose another --out")

    def clear(self) -> list[Path]:
        """Delete our files (for --force), only after checking nothing else is in the way."""
        self.refuse_foreign("replace the run in")
        removed = self.our_files()
        for path in removed:
            path.unlink()
        for sub in _PATTERNS:
            folder = self.root / sub
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()
        return removed

    def lock(self) -> FolderLock:
        """This folder's writer lock (locking.py); a folder this creates is removed again on release
        when nothing but our marker was written into it (a refused `train` leaves nothing)."""
        created = not self.root.exists()
        lock = acquire(self.root, RUN)
        if created:
            lock.on_release(lambda: remove_if_only(self.root, (MARKER,)))
        return lock

    def open_for_writing(self) -> FolderLock:
        """Lock the folder, refuse links or foreign files where ours go, remove leftovers of killed
        writes, and mark it as a run folder. The caller releases the lock when the run ends."""
        lock = self.lock()
        try:
            refuse_links(self.root / lock_name(RUN))
            self.refuse_foreign("train into")
            remove_leftovers([self.root], lambda name: name in TOP_FILES)
            for sub, pattern in _PATTERNS.items():
                remove_leftovers([self.root / sub], lambda name, p=pattern: bool(p.match(name)))  # type: ignore[misc]
            if not self.marker.is_file():
                atomic_write_text(self.marker, f"a training run folder of winn-robust {__version__}; "
                                               "`train --force` deletes only the files winn-robust wrote here\n")
        except BaseException:
            lock.release()
            raise
        return lock
