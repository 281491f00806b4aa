"""One checkpoint format for every method: weights, the metadata to rebuild model and data,
and (for resumable training checkpoints) optimizer, pool and RNG state.

Written atomically (temp file + os.replace) so a killed run never leaves half a file; read
with `torch.load(weights_only=True)` so loading never executes pickled code, after checking the
zip archive's CRC-32 of every member, so a damaged file is refused instead of silently used."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from winn_robust.errors import UserError
from winn_robust.models import Classifier, build_model
from winn_robust.storage import atomic_write_bytes

FORMAT = "winn-robust-checkpoint"
FORMAT_VERSION = 2  # 2: the negative pool lives in per-epoch files beside last.pt
REQUIRED_METADATA = ("arch", "dataset", "image_shape", "num_classes", "method")


def _holds(annotation: str, value: Any) -> bool:
    """Whether a metadata value is of its field's type (the annotation's text: str, int, float,
    tuples of them, Mapping, each optionally `| None`), so a damaged or edited file is refused
    with one line instead of failing later inside a model or a report."""
    if value is None:
        return annotation.endswith("| None")
    base = annotation.removesuffix(" | None")
    kinds: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float)}
    if isinstance(value, bool):
        return False
    if base in kinds:
        return isinstance(value, kinds[base])
    if base.startswith("tuple["):
        item = kinds[base[6:].split(",")[0].split("]")[0]]
        return isinstance(value, (list, tuple)) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
    if base.startswith("Mapping"):
        return isinstance(value, Mapping)
    return True


def _kind_text(annotation: str) -> str:
    base = annotation.removesuffix(" | None")
    words = {"str": "text", "int": "an integer", "float": "a number", "tuple[int, ...]": "a list of integers",
             "tuple[str, ...]": "a list of text", "tuple[float, float]": "a pair of numbers"}
    kind = words.get(base, "an object of named values" if base.startswith("Mapping") else base)
    return kind + (" or null" if annotation.endswith("| None") else "")


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about its model and run, typed (the file keeps it as a plain JSON
    dict, so weights_only loading accepts it). Older checkpoints lack some fields: they read as
    the defaults; keys this version does not know are kept in `extra` and written back."""
    arch: str
    dataset: str
    image_shape: tuple[int, ...]
    num_classes: int
    method: str
    class_names: tuple[str, ...] = ()
    method_options: Mapping[str, Any] = field(default_factory=dict)
    hparams: Mapping[str, Any] = field(default_factory=dict)   # TrainConfig.to_dict() of the run
    seed: int | None = None
    select_by: str = "clean"
    epoch: int = 0
    val_error: float | None = None
    train_error: float | None = None
    val_size: int | None = None
    train_size: int | None = None
    tau_range: tuple[float, float] = (0.0, 0.0)
    pool_size: int = 0
    world_size: int = 1
    winn_robust_version: str | None = None
    torch_version: str | None = None
    python_version: str | None = None
    saved_at: str | None = None
    torch_threads: int | None = None
    cost: Mapping[str, Any] = field(default_factory=dict)
    data_dir: str | None = None                  # where the run read its data (the test set is beside it)
    best_epoch: int | None = None                # the run's state when this file was written
    best_val_error: float | None = None
    best_select_value: float | None = None
    extra_selection: Mapping[str, Mapping[str, Any]] | None = None
    data_fingerprint: Mapping[str, Any] | None = None
    role: str | None = None                      # "best" (a selected epoch) or "last" (resumable state)
    extra: Mapping[str, Any] = field(default_factory=dict)

    OPTIONAL = ("data_dir", "best_epoch", "best_val_error", "best_select_value", "extra_selection", "data_fingerprint",
                "role", "winn_robust_version", "torch_version", "python_version", "saved_at", "torch_threads")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CheckpointMeta:
        missing = [k for k in REQUIRED_METADATA if k not in values]
        if missing:
            raise UserError(f"checkpoint metadata lacks {', '.join(missing)}; pass a .pt file written by `winn-robust train`")
        known = {f.name for f in fields(cls)} - {"extra"}
        given = {k: v for k, v in values.items() if k in known}
        for f in fields(cls):
            if f.name in given and given[f.name] is None and f.default is not MISSING:
                given[f.name] = f.default  # null where an older file had nothing to say: the default
            elif f.name in given and given[f.name] is None and f.default_factory is not MISSING:
                given[f.name] = f.default_factory()
            if f.name in given and not _holds(str(f.type), given[f.name]):
                shown = repr(given[f.name])
                raise UserError(f"checkpoint metadata field {f.name} holds {shown[:60]}, not {_kind_text(str(f.type))}; "
                                "the file was damaged or edited: pass a .pt file written by `winn-robust train`")
        for name in ("image_shape", "class_names", "tau_range"):
            if name in given and given[name] is not None:
                given[name] = tuple(given[name])
        return cls(**given, extra={k: v for k, v in values.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The file's plain dict: every field (the optional ones only when set), then `extra`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (f.name in self.OPTIONAL and value is None):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return {**out, **self.extra}

    @property
    def data_signature(self) -> tuple[str, tuple[int, ...], int]:
        """(dataset, image shape, class count) the model was trained on."""
        return self.dataset, tuple(int(v) for v in self.image_shape), int(self.num_classes)

    @property
    def reported_val_error(self) -> float | None:
        """The validation error of this file's epoch (older files: the run's best)."""
        return self.val_error if self.val_error is not None else self.best_val_error


def atomic_save(payload: Any, path: str | Path) -> int:
    """torch.save to a unique temporary file beside `path`, fsync, then rename over it: a kill at
    any moment leaves either the old file or the new one, never half of one (storage.atomic_write:
    never through a symbolic link). Returns the bytes written."""
    buffer = io.BytesIO()  # serialised first: torch's writer hides a failed write (ENOSPC) behind "unexpected pos"
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def damaged_member(path: Path) -> str | None:
    """The first member of a torch zip archive whose bytes no longer match their CRC-32 (a flipped
    bit, a truncation), or None when all match. torch.load itself reads damaged bytes silently."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except zipfile.BadZipFile as exc:
        return str(exc) or "not a zip archive"
    except (OSError, EOFError, ValueError) as exc:  # zlib errors on a truncated member, short reads
        return f"{type(exc).__name__}: {exc}"


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: CheckpointMeta | dict[str, Any],
                    on_size: Callable[[int], dict[str, Any]] | None = None, **state: Any) -> int:
    """Atomically write weights + metadata (+ optional training state such as optimizer, rng);
    returns the bytes written. `on_size(n)` is told the file's size before it is written and
    returns state entries that record it (serialized again until the recorded size is the real one)."""
    metadata = meta.to_dict() if isinstance(meta, CheckpointMeta) else meta
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {missing}")
    # a JSON round trip keeps metadata to plain types, which weights_only loading accepts
    plain_metadata = json.loads(json.dumps(metadata, default=str))
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": plain_metadata,
               "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    payload.update(state)
    if on_size is None:
        return atomic_save(payload, path)
    size = 0
    for _ in range(4):
        payload.update(on_size(size))
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        if buffer.tell() == size:
            break
        size = buffer.tell()
    return atomic_write_bytes(path, buffer.getvalue())


class DamagedFile(UserError):
    """A file we wrote whose bytes changed since (callers that can recompute it catch this)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


def load_tensors(path: str | Path, map_location: str | torch.device = "cpu", what: str = "checkpoint") -> Any:
    """torch.load with weights_only=True (never runs pickled code); a damaged file is one UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist; pass the .pt file written by `winn-robust train`")
    damaged = damaged_member(path) if zipfile.is_zipfile(path) else None
    if damaged is not None:
        raise DamagedFile(path, f"{what} {path} is damaged (its bytes no longer match their checksums, in "
                                f"{damaged[:80]}); restore it from a copy, or re-create it by running again the "
                                "command that wrote it")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError, KeyError, IndexError,
            TypeError) as exc:  # a damaged pickle fails in torch's unpickler in many ways
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DamagedFile(path, f"{what} {path} is unreadable (truncated or not a winn-robust {what}: {reason[:120]}); "
                        "re-run training or pick another file") from None


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw payload, validated; every failure is one UserError line naming the file."""
    payload = load_tensors(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a winn-robust checkpoint; pass a .pt file written by `winn-robust train`")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer winn-robust (format {payload['format_version']}); upgrade winn-robust")
    return payload


def payload_meta(payload: Mapping[str, Any], path: str | Path | None = None) -> CheckpointMeta:
    """The typed metadata of a payload `read_checkpoint` returned (from `path`, named in errors)."""
    try:
        return CheckpointMeta.from_dict(payload.get("metadata") or {})
    except UserError as exc:
        raise UserError(str(exc) if path is None else f"{path}: {exc}", exc.mentions) from None


def read_training_state(path: str | Path, map_location: str | torch.device, state_key: str,
                        what: str = "training state") -> tuple[dict[str, Any], CheckpointMeta]:
    """What --resume reads: a last.pt's payload and metadata; a checkpoint without the trainer's
    `state_key` (best.pt, a milestone, another trainer's run) is one line naming the file."""
    payload = read_checkpoint(path, map_location=map_location)
    meta = payload_meta(payload, path)
    if meta.role != "last" or state_key not in payload:
        raise UserError(f"{path} holds no {what}; resume from the run's last.pt")
    return payload, meta


def read_meta(path: str | Path) -> CheckpointMeta:
    """A checkpoint's metadata alone, typed."""
    return payload_meta(read_checkpoint(path), path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, CheckpointMeta]:
    """Rebuild the model from a checkpoint: (model in eval mode taking [-1, 1] images and
    returning logits, metadata). Never executes pickled code."""
    payload = read_checkpoint(path)
    meta = payload_meta(payload, path)
    channels, height, width = (int(v) for v in meta.image_shape)
    model = build_model(meta.arch, (channels, height, width), int(meta.num_classes))
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {path} does not match architecture {meta.arch!r}: {str(exc).splitlines()[0][:120]}") from None
    return model.to(device).eval(), meta


def file_sha256(path: str | Path) -> str:
    """Provenance: which exact file produced a number."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
