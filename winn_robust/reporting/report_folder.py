"""What a report folder holds, so that `attack --force` deletes only what winn-robust wrote.

A report folder carries a marker (`.winn-robust-report`) beside the names `attack`, `reproduce`
and `report` write (`REPORT_FILES`, `error_vs_eps_<attack>.png` for a known attack) and the
evaluation state of an unfinished run (`.evaluation-state/`: identity.json and one `.pt` per
finished work item). `clear` deletes exactly those, refuses (naming them) when anything else
sits in the state folder or in place of one of our files, and never deletes or writes through a
symbolic link. Files of the user's own beside the report (`error_vs_eps_mine.png`) stay."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from winn_robust.attacks import ATTACKS
from winn_robust.errors import UserError
from winn_robust.locking import REPORT, FolderLock, acquire
from winn_robust.reporting.files import REPORT_FILES
from winn_robust.storage import atomic_write_text, leftovers, refuse_links, remove_if_only, remove_leftovers
from winn_robust.version import __version__

MARKER = ".winn-robust-report"
STATE_DIR = ".evaluation-state"
IDENTITY = "identity.json"
_STATE_ITEM = re.compile(r"^[A-Za-z0-9_.+()-]+\.pt$")


def _safe_attack(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def report_names() -> tuple[str, ...]:
    """Every file name a report folder of ours may hold (besides the marker and state folder)."""
    return (*REPORT_FILES, *(f"error_vs_eps_{_safe_attack(a)}.png" for a in ATTACKS))


def _is_state_name(name: str) -> bool:
    return name == IDENTITY or bool(_STATE_ITEM.match(name))


@dataclass(frozen=True)
class ReportFolder:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def report_files(self) -> list[Path]:
        """Our finished report's files that are there now."""
        return [self.root / n for n in report_names() if (self.root / n).is_file() and not (self.root / n).is_symlink()]

    def _state_entries(self) -> tuple[list[Path], list[Path]]:
        folder = self.state_dir
        if folder.is_symlink() or not folder.is_dir():
            return [], []
        tmp = set(leftovers(folder, _is_state_name))
        ours, other = [], []
        for entry in sorted(folder.iterdir()):
            if entry in tmp or (_is_state_name(entry.name) and entry.is_file() and not entry.is_symlink()):
                ours.append(entry)
            else:
                other.append(entry)
        return ours, other

    def has_state(self) -> bool:
        return self.state_dir.is_dir() and not self.state_dir.is_symlink()

    def in_the_way(self) -> list[Path]:
        """Links or folders in place of our files, the state folder as a link or file, other files in it."""
        names = (*report_names(), MARKER)
        blocking = [self.root / n for n in names
                    if (self.root / n).is_symlink() or ((self.root / n).exists() and not (self.root / n).is_file())]
        if self.state_dir.is_symlink() or (self.state_dir.exists() and not self.state_dir.is_dir()):
            blocking.append(self.state_dir)
        else:
            blocking += self._state_entries()[1]
        return blocking

    def refuse_foreign(self, doing: str) -> None:
        blocking = self.in_the_way()
        refuse_links(*blocking)
        if blocking:
            shown = ", ".join(str(p) for p in blocking[:5]) + (f" and {len(blocking) - 5} more" if len(blocking) > 5 else "")
            raise UserError(f"cannot {doing} {self.root}: {shown} {'is' if len(blocking) == 1 else 'are'} not "
                            "winn-robust's; move them away or choose another --out")

    def clear_state(self) -> None:
        """Delete the evaluation state (ours only; call after `refuse_foreign`)."""
        for path in self._state_entries()[0]:
            path.unlink()
        if self.has_state() and not any(self.state_dir.iterdir()):
            self.state_dir.rmdir()

    def clear(self) -> None:
        """For --force: delete our report files and evaluation state, after checking nothing else is in the way."""
        self.refuse_foreign("replace the report in")
        for path in self.report_files():
            path.unlink()
        self.clear_state()

    def open_for_writing(self) -> FolderLock:
        """Lock the folder (before anything there is read or deleted), refuse links or foreign files
        where ours go, remove leftovers of killed writes and mark it as a report folder. A folder
        this created is removed again on release when nothing was written into it."""
        created = not self.root.exists()
        lock = acquire(self.root, REPORT)
        if created:
            lock.on_release(lambda: remove_if_only(self.root, (MARKER,)))
        try:
            self.refuse_foreign("write a report into")
            remove_leftovers([self.root], lambda name: name in report_names())
            remove_leftovers([self.state_dir], _is_state_name)
            if not self.marker.is_file():
                atomic_write_text(self.marker, f"a report folder of winn-robust {__version__}; `attack --force` "
                                               "deletes only the files winn-robust wrote here\n")
        except BaseException:
            lock.release()
            raise
        return lock

    def check_writable(self) -> None:
        """Before writing the report files: none of their names may be a link (we never write through one)."""
        refuse_links(*(self.root / n for n in report_names()))
