"""The typed provenance of one report: what results.json's `provenance` says (which models,
files and hashes, which data, which eps in which unit, every attack setting and seed, which
software and device, what it cost). experiments/provenance.py builds it; the reporting layer
and the job skip-check read it by attribute.

The file keeps it as a plain JSON object, and committed reports hold it in older shapes: every
field may be missing there and reads as None (or empty); keys this version does not know are
kept in `extra`. `to_dict` writes what this version writes, in the order it always wrote it;
older reports are read, never rewritten."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from winn_robust.training.cost import TrainingCost
from winn_robust.units import DEFAULT_NORM


def _number(value: Any, kind: type) -> Any:
    """`kind(value)`, or None where the file holds nothing usable (a hand-edited value)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else ()


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class ModelRecord:
    """One model of a report: where it came from and, for our checkpoints, what the checkpoint
    says and what its training cost (summed over the metrics.csv beside it)."""
    source: str | None = None           # the NAME=SPEC's SPEC as given
    kind: str | None = None             # checkpoint, torchscript, python-file, python, ...
    checkpoint: str | None = None       # the file, None for a Python object
    sha256: str | None = None
    method: str | None = None           # "external" for models that are not our checkpoints
    arch: str | None = None
    epoch: int | None = None            # the checkpoint's epoch
    val_error: float | None = None      # the validation error it reports (the indicators' expectation)
    seed: int | None = None             # its training seed
    metadata: Mapping[str, Any] | None = None   # CheckpointMeta.to_dict()
    training_cost: TrainingCost | None = None
    select_by: str | None = None
    best_epoch: int | None = None
    convention: str | None = None       # an external model's input convention
    extra: Mapping[str, Any] = field(default_factory=dict)

    ALWAYS = ("source", "kind", "checkpoint", "sha256", "method", "arch")
    FROM_METADATA = ("epoch", "val_error", "seed", "metadata")  # written (None too) for every checkpoint

    @classmethod
    def from_dict(cls, values: Any) -> ModelRecord:
        if not isinstance(values, Mapping):
            return cls()
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(source=_text(values.get("source")), kind=_text(values.get("kind")),
                   checkpoint=_text(values.get("checkpoint")), sha256=_text(values.get("sha256")),
                   method=_text(values.get("method")), arch=_text(values.get("arch")),
                   epoch=_number(values.get("epoch"), int), val_error=_number(values.get("val_error"), float),
                   seed=_number(values.get("seed"), int), metadata=_mapping(values.get("metadata")),
                   training_cost=TrainingCost.from_dict(values.get("training_cost")), select_by=_text(values.get("select_by")),
                   best_epoch=_number(values.get("best_epoch"), int), convention=_text(values.get("convention")),
                   extra={k: v for k, v in values.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                continue
            if value is not None or f.name in self.ALWAYS or (f.name in self.FROM_METADATA and self.metadata is not None):
                out[f.name] = value.to_dict() if isinstance(value, TrainingCost) else value
        return {**out, **self.extra}


@dataclass(frozen=True)
class Provenance:
    """What one evaluation was: the first of `models` is the baseline unless `baseline` says."""
    command: str | None = None
    command_timestamp: str | None = None
    dataset: str | None = None
    split: str | None = None
    n: int | None = None
    limit: int | None = None
    eps: tuple[float, ...] = ()
    table_eps: float | None = None
    norm: str | None = None             # None in reports from before L2: L-inf (see `threat_norm`)
    eps_unit: str | None = None
    attack: str | None = None           # the attacks' names joined by "+"
    evaluation: Mapping[str, Any] | None = None   # EvalSpec.describe(): every attack setting and seed
    seed: int | None = None             # the attacks' seed (older reports: the training seed)
    baseline: str | None = None
    batch_size: int | None = None
    class_names: tuple[str, ...] = ()
    models: Mapping[str, ModelRecord] = field(default_factory=dict)
    versions: Mapping[str, Any] = field(default_factory=dict)
    device: Mapping[str, Any] | None = None
    notes: tuple[str, ...] | None = None
    torch_threads: int | None = None
    ranks: int | None = None
    training_seed: int | None = None    # every model trained with one seed: a seed's report
    input_normalisation: Mapping[str, Any] | None = None
    metric: str | None = None           # "error" or "accuracy" (how table.md shows rates)
    wall_time_s: float | None = None
    attack_time_s: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    ALWAYS = ("command", "command_timestamp", "dataset", "split", "n", "limit", "eps", "table_eps", "norm", "eps_unit",
              "attack", "evaluation", "seed", "baseline", "batch_size", "class_names", "models", "versions", "device")

    @classmethod
    def from_dict(cls, values: Any) -> Provenance:
        """Any shape a results.json ever held (None or a non-object: an empty record)."""
        if not isinstance(values, Mapping):
            return cls()
        known = {f.name for f in fields(cls)} - {"extra"}
        models = values.get("models")
        eps = values.get("eps")
        notes = values.get("notes")
        return cls(
            command=_text(values.get("command")), command_timestamp=_text(values.get("command_timestamp")),
            dataset=_text(values.get("dataset")), split=_text(values.get("split")), n=_number(values.get("n"), int),
            limit=_number(values.get("limit"), int),
            eps=tuple(v for v in (_number(e, float) for e in eps) if v is not None) if isinstance(eps, list) else (),
            table_eps=_number(values.get("table_eps"), float), norm=_text(values.get("norm")),
            eps_unit=_text(values.get("eps_unit")), attack=_text(values.get("attack")),
            evaluation=_mapping(values.get("evaluation")), seed=_number(values.get("seed"), int),
            baseline=_text(values.get("baseline")), batch_size=_number(values.get("batch_size"), int),
            class_names=_strings(values.get("class_names")),
            models={str(k): ModelRecord.from_dict(v) for k, v in models.items()} if isinstance(models, Mapping) else {},
            versions=_mapping(values.get("versions")) or {}, device=_mapping(values.get("device")),
            notes=_strings(notes) if notes is not None else None, torch_threads=_number(values.get("torch_threads"), int),
            ranks=_number(values.get("ranks"), int), training_seed=_number(values.get("training_seed"), int),
            input_normalisation=_mapping(values.get("input_normalisation")), metric=_text(values.get("metric")),
            wall_time_s=_number(values.get("wall_time_s"), float),
            attack_time_s=_number(values.get("attack_time_s"), float),
            extra={k: v for k, v in values.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """results.json's object: the fields every report has, then those set, then `extra`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (value is None and f.name not in self.ALWAYS):
                continue
            if f.name == "models":
                value = {name: record.to_dict() for name, record in self.models.items()}
            out[f.name] = _plain(value)
        return {**out, **self.extra}

    @property
    def threat_norm(self) -> str:
        """The report's threat model; reports from before L2 existed are L-inf."""
        return self.norm or DEFAULT_NORM

    @property
    def shown_metric(self) -> str:
        """How the tables show rates: "error" unless the report asked for accuracy."""
        return self.metric or "error"

    @property
    def report_seed(self) -> int | None:
        """The training seed of a seed's report (newer reports record it as `training_seed`;
        `seed` is the attacks' seed there, but the training seed in reports from before
        `evaluation` was recorded)."""
        if self.training_seed is not None:
            return self.training_seed
        return self.seed if self.evaluation is None else None

    def model(self, name: str) -> ModelRecord:
        """The record of model `name` (an empty one when the report does not have it)."""
        return self.models.get(name) or ModelRecord()
