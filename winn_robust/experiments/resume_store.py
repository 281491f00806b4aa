"""A long evaluation keeps its finished work items in OUT/.evaluation-state (one atomically
written file each, beside a record of what the evaluation is), so `--resume` continues a killed
run and ends with the same files as an uninterrupted one; and the output guard that refuses to
mix a new report with an older one's files."""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from winn_robust import distributed
from winn_robust.checkpoint import DamagedFile, atomic_save, load_tensors
from winn_robust.errors import SettingError, UserError
from winn_robust.experiments.provenance import plain
from winn_robust.model_set import safe_name
from winn_robust.reporting.report_folder import IDENTITY, STATE_DIR, ReportFolder
from winn_robust.storage import atomic_write_text


class FolderStore:
    """Finished work items of one evaluation, one atomically written file each, beside a record
    of what the evaluation is (so a --resume of another evaluation is refused, not mixed in).
    Every item is checked (its archive's CRCs) when read back; a damaged one is recomputed."""

    def __init__(self, folder: ReportFolder, identity: Mapping[str, Any], resume: bool) -> None:
        """Under torchrun rank 0 alone clears and writes the folder; the other ranks only read it,
        and only on --resume (otherwise they could read a file rank 0 is about to delete)."""
        root = folder.state_dir
        self.root = root
        self.readable = resume
        identity_path = root / IDENTITY
        wanted = json.dumps(plain(dict(identity)), sort_keys=True)
        if resume and identity_path.is_file():
            text = identity_path.read_text(errors="replace")
            if text != wanted:
                try:
                    saved = json.loads(text)
                    if not isinstance(saved, dict):
                        raise ValueError("not an object")
                except ValueError:
                    raise SettingError("resume", f": {identity_path} is damaged (not the JSON winn-robust wrote), so what "
                                    "the saved evaluation was cannot be checked; pass `force` instead of `resume` "
                                    "to start over", mentions=("force", "resume")) from None
                mine = json.loads(wanted)
                what = next((k for k in mine if saved.get(k) != mine.get(k)), "settings")
                raise SettingError("resume", f": {root} holds an evaluation with another {what}; run the same command "
                                "again, or pass `force` instead of `resume` to start over", mentions=("force", "resume"))
        elif distributed.world().is_main:
            folder.clear_state()
            root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(identity_path, wanted)
        self.readable = self.readable or distributed.world().is_main
        self.recomputed: list[str] = []

    def _path(self, key: str) -> Path:
        return self.root / f"{safe_name(key)}.pt"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not (self.readable and path.is_file()):
            return None
        try:
            return load_tensors(path, what="evaluation state file")
        except DamagedFile:
            print(f"winn-robust: warning: {path} is damaged; recomputing that part of the evaluation", file=sys.stderr)
            self.recomputed.append(key)
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        atomic_save(value, self._path(key))


def prepare_output(out: Path, force: bool, resume: bool) -> None:
    """Refuse to mix a new report with an older one's files unless told to replace them; with
    --force delete only our own files (ReportFolder), refusing when anything else is in the way."""
    run_files = [name for name in ("last.pt", "best.pt", "metrics.csv") if (out / name).is_file()]
    if run_files:
        raise SettingError("out", f"{out} is a training run folder (it holds {', '.join(run_files)}); write the report into "
                        "another folder, e.g. reports/<name>")
    folder = ReportFolder(out)
    existing = [p.name for p in folder.report_files()]
    has_state = folder.has_state()
    if resume:
        if not has_state and existing:
            raise SettingError("resume", f": {out} holds a finished report and no saved evaluation to continue; "
                            "pass `force` to replace it", mentions=("force",))
        return
    if (existing or has_state) and not force:
        raise UserError(f"{out} already holds a report ({', '.join(existing) or STATE_DIR}); pass `force` to replace it, "
                        "`resume` to continue a killed evaluation, or choose another `out`", mentions=("force", "resume", "out"))
    if not distributed.world().is_main:
        return
    folder.clear()
