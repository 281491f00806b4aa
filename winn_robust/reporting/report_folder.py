"""What a report folder holds, so that `attack --force` deletes only what winn-robust wrote.

A report folder carries a marker (`.winn-robust-report`) beside the names `attack`, `reproduce`
and `report` write (`REPORT_FILES`, `error_vs_eps_<attack>.png` for a known attack) and the
evaluation state of an unfinished run (`.evaluation-state/`: identity.json and one `.pt` per
finished work item). The marker, lock, writability and clearing logic is the shared
OwnedFolder's (owned_folder.py); this module only names the report's files. Files of the user's
own beside the report (`error_vs_eps_mine.png`) stay."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from winn_robust.attacks import ATTACKS
from winn_robust.locking import REPORT, FolderLock
from winn_robust.owned_folder import Child, NamePredicate, OwnedFolder
from winn_robust.reporting.files import REPORT_FILES

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
class ReportFolder(OwnedFolder, marker=MARKER, role=REPORT, kind="a report folder", force="attack --force"):
    """The files of one report (and its evaluation state) under `root`."""

    state_dir = Child(STATE_DIR)

    def top_names(self) -> tuple[str, ...]:
        return (*report_names(), MARKER)

    def subfolders(self) -> Mapping[str, NamePredicate]:
        return {STATE_DIR: _is_state_name}


    def report_files(self) -> list[Path]:
        """Our finished report's files that are there now."""
        return [self.root / n for n in report_names() if self._plain_file(self.root / n)]

    def has_state(self) -> bool:
        return self.state_dir.is_dir() and not self.state_dir.is_symlink()

    def clear_state(self) -> None:
        """Delete the evaluation state (ours only; call after `refuse_foreign`)."""
        for path in self.entries_in(STATE_DIR)[0]:
            path.unlink()
        if self.has_state() and not any(self.state_dir.iterdir()):
            self.state_dir.rmdir()

    def clear(self, subs: tuple[str, ...] | None = None, top: bool = True,
              doing: str = "replace the report in") -> list[Path]:
        """For --force: delete our report files and evaluation state, after checking nothing else
        is in the way (the marker stays: the folder is still ours)."""
        self.refuse_foreign(doing)
        removed = self.report_files()
        for path in removed:
            path.unlink()
        self.clear_state()
        return removed

    def open_for_writing(self, doing: str = "write a report into") -> FolderLock:
        return super().open_for_writing(doing)
