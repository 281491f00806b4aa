"""One provenance builder for both evaluation entry points (`attack` / `evaluate_models` and
the Python API `evaluate`): which models (files and hashes), which data, which eps in which
unit, every attack setting and seed, which software, which device; recorded in results.json."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import torch

from winn_robust.checkpoint import file_sha256
from winn_robust.environment import device_description, software_versions
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.model_sources import LoadedModel
from winn_robust.reporting.provenance import ModelRecord, Provenance
from winn_robust.training.trainer import training_cost
from winn_robust.units import eps_unit

SPLIT = "test"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def plain(value: Any) -> Any:
    """JSON-ready: containers as lists and string-keyed dicts, anything else unknown as its str."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


def model_provenance(loaded: LoadedModel) -> ModelRecord:
    """A loaded model's record: where it came from, its file's sha256, what its checkpoint says."""
    where = ModelRecord(source=loaded.source, kind=loaded.kind, checkpoint=str(loaded.path) if loaded.path else None,
                        sha256=file_sha256(loaded.path) if loaded.path else None)
    meta = loaded.meta
    if meta is None:
        return replace(where, method="external", arch=loaded.kind, convention="images in [0, 1] -> logits")
    record = replace(where, method=meta.method, arch=meta.arch, epoch=meta.epoch, val_error=meta.reported_val_error,
                     seed=meta.seed, metadata=plain(meta.to_dict()))
    cost = training_cost(loaded.path.parent, meta.train_size) if loaded.path else None
    if cost is None:  # what training cost, summed over the metrics.csv beside the checkpoint
        return record
    return replace(record, training_cost=cost, select_by=meta.select_by, best_epoch=meta.epoch)


def python_model_provenance(model: torch.nn.Module) -> ModelRecord:
    """A model handed to `evaluate()` as an object: no file, its class name."""
    return ModelRecord(source="python object", kind="python", method="external", arch=type(model).__name__)


def build_provenance(spec: EvalSpec, *, command: str | None, timestamp: str, dataset: str, n: int,
                     names: Sequence[str], class_names: Sequence[str], models: Mapping[str, ModelRecord],
                     device: torch.device, notes: Sequence[str] | None = None,
                     ranks: int | None = None) -> Provenance:
    """The provenance of one evaluation; the first of `names` is the baseline. `notes` and
    `ranks` are recorded when given (the command-line path)."""
    return Provenance(
        command=command, command_timestamp=timestamp, dataset=dataset, split=SPLIT, n=n, limit=spec.limit,
        eps=tuple(spec.eps), table_eps=spec.table_eps, norm=spec.norm, eps_unit=eps_unit(spec.norm),
        attack="+".join(spec.attack_names), evaluation=spec.describe(), seed=spec.seed, baseline=names[0],
        batch_size=spec.batch_size, class_names=tuple(class_names), models=dict(models), versions=software_versions(),
        device=device_description(device), notes=None if notes is None else tuple(notes),
        torch_threads=torch.get_num_threads(), ranks=ranks)
