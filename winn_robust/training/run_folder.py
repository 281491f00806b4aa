"""What a training run folder holds, so that `--force` deletes only what `train` wrote.

A run folder carries a marker file (`.winn-robust-run`) beside the names `train` writes:
best.pt (and best-RULE.pt), last.pt, partial.pt (a stopped epoch's state), metrics.csv,
metrics.png, a generative run's milestone checkpoints cascade-K.pt, pool/epoch_NNN.pt,
negatives/epoch_NNN.png (and the temporary
`.NAME.XXXXXXXX.tmp` of a killed write). The marker, lock, writability and clearing logic is
the shared OwnedFolder's (owned_folder.py); this module only names the run's files."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from winn_robust.locking import RUN, FolderLock
from winn_robust.owned_folder import Child, NamePredicate, OwnedFolder

MARKER = ".winn-robust-run"
BEST_NAME, LAST_NAME, METRICS_NAME, METRICS_PLOT = "best.pt", "last.pt", "metrics.csv", "metrics.png"
PARTIAL_NAME = "partial.pt"  # the state of an epoch stopped at a batch boundary (SIGTERM, a time limit)
POOL_DIR, NEGATIVES_DIR = "pool", "negatives"
TOP_FILES = (BEST_NAME, LAST_NAME, PARTIAL_NAME, METRICS_NAME, METRICS_PLOT, MARKER, "best-clean.pt", "best-pgd.pt",
             "best-last.pt")
_POOL_FILE = re.compile(r"^epoch_\d{3,}\.pt$")
_GRID_FILE = re.compile(r"^epoch_\d{3,}\.png$")
_MILESTONE_FILE = re.compile(r"^cascade-\d+\.pt$")  # a generative run's milestones (training/generative/trainer.py)


def _is_pool_file(name: str) -> bool:
    return bool(_POOL_FILE.match(name))


def _is_grid_file(name: str) -> bool:
    return bool(_GRID_FILE.match(name))


@dataclass(frozen=True)
class RunFolder(OwnedFolder, marker=MARKER, role=RUN, kind="a training run folder", force="train --force"):
    """The files of one training run under `root`."""

    best = Child(BEST_NAME)
    last = Child(LAST_NAME)
    partial = Child(PARTIAL_NAME)
    metrics = Child(METRICS_NAME)
    metrics_plot = Child(METRICS_PLOT)
    pool_dir = Child(POOL_DIR)
    negatives_dir = Child(NEGATIVES_DIR)

    def top_names(self) -> tuple[str, ...]:
        return TOP_FILES

    def subfolders(self) -> Mapping[str, NamePredicate]:
        return {POOL_DIR: _is_pool_file, NEGATIVES_DIR: _is_grid_file}

    def is_top_name(self, name: str) -> bool:
        return name in TOP_FILES or bool(_MILESTONE_FILE.match(name))

    def pool_file(self, epoch: int) -> Path:
        return self.pool_dir / f"epoch_{epoch:03d}.pt"

    def negatives_file(self, epoch: int) -> Path:
        return self.negatives_dir / f"epoch_{epoch:03d}.png"

    def holds_run(self) -> bool:
        """True only when our marker or one of our files is there (a user's pool/thesis.tex is not a run)."""
        return self.holds_ours()

    def clear(self, subs: tuple[str, ...] | None = None, top: bool = True,
              doing: str = "replace the run in") -> list[Path]:
        """Delete our files (for --force), only after checking nothing else is in the way."""
        return super().clear(subs, top, doing)

    def open_for_writing(self, doing: str = "train into") -> FolderLock:
        return super().open_for_writing(doing)
