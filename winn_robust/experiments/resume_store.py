"""A long evaluation keeps its finished work items in OUT/.evaluation-state (one atomically
written file each, beside a record of what the evaluation is), so `--resume` continues a killed
run and ends with the same files as an uninterrupted one; and the output guard that refuses to
mix a new report with an older one's files."""
from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from winn_robust import distributed
from winn_robust.checkpoint import atomic_save, load_tensors
from winn_robust.errors import UserError
from winn_robust.experiments.provenance import plain
from winn_robust.model_set import safe_name
from winn_robust.reporting.files import REPORT_FILES

STATE_DIR = ".evaluation-state"


class FolderStore:
    """Finished work items of one evaluation, one atomically written file each, beside a record
    of what the evaluation is (so a --resume of another evaluation is refused, not mixed in)."""

    def __init__(self, root: Path, identity: Mapping[str, Any], resume: bool) -> None:
        """Under torchrun rank 0 alone clears and writes the folder; the other ranks only read it,
        and only on --resume (otherwise they could read a file rank 0 is about to delete)."""
        self.root = root
        self.readable = resume
        identity_path = root / "identity.json"
        wanted = json.dumps(plain(dict(identity)), sort_keys=True)
        if resume and identity_path.is_file():
            if identity_path.read_text() != wanted:
                saved, mine = json.loads(identity_path.read_text()), json.loads(wanted)
                what = next((k for k in mine if saved.get(k) != mine.get(k)), "settings")
                raise UserError(f"--resume: {root} holds an evaluation with another {what}; run the same command "
                                "again, or pass --force instead of --resume to start over")
        elif distributed.world().is_main:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            identity_path.write_text(wanted)
        self.readable = self.readable or distributed.world().is_main

    def _path(self, key: str) -> Path:
        return self.root / f"{safe_name(key)}.pt"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        return load_tensors(path, what="evaluation state file") if self.readable and path.is_file() else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        atomic_save(value, self._path(key))


def prepare_output(out: Path, force: bool, resume: bool) -> None:
    """Refuse to mix a new report with an older one's files unless told to replace them."""
    existing = [name for name in REPORT_FILES if (out / name).exists()]
    has_state = (out / STATE_DIR).is_dir()
    if resume:
        if not has_state and existing:
            raise UserError(f"--resume: {out} holds a finished report and no saved evaluation to continue; "
                            "pass --force to replace it")
        return
    if (existing or has_state) and not force:
        raise UserError(f"{out} already holds a report ({', '.join(existing) or STATE_DIR}); pass --force to replace it, "
                        "--resume to continue a killed evaluation, or choose another --out")
    if not distributed.world().is_main:
        return
    for name in existing:
        (out / name).unlink()
    for stale in out.glob("error_vs_eps*.png") if out.is_dir() else []:
        stale.unlink()
