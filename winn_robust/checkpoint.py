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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from winn_robust.errors import UserError
from winn_robust.models import Classifier, build_model
from winn_robust.storage import atomic_write, atomic_write_bytes

FORMAT = "winn-robust-checkpoint"
FORMAT_VERSION = 2  # 2: the negative pool lives in per-epoch files beside last.pt
REQUIRED_METADATA = ("arch", "dataset", "image_shape", "num_classes", "method")


def atomic_save(payload: Any, path: str | Path) -> int:
    """torch.save to a unique temporary file beside `path`, fsync, then rename over it: a kill at
    any moment leaves either the old file or the new one, never half of one (storage.atomic_write:
    never through a symbolic link). Returns the bytes written."""
    return atomic_write(path, lambda handle: torch.save(payload, handle))


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


def save_checkpoint(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any],
                    on_size: Callable[[int], dict[str, Any]] | None = None, **state: Any) -> int:
    """Atomically write weights + metadata (+ optional training state such as optimizer, rng);
    returns the bytes written. `on_size(n)` is told the file's size before it is written and
    returns state entries that record it (serialized again until the recorded size is the real one)."""
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


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the model from a checkpoint: (model in eval mode taking [-1, 1] images and
    returning logits, metadata). Never executes pickled code."""
    payload = read_checkpoint(path)
    metadata = payload["metadata"]
    model = build_model(metadata["arch"], tuple(metadata["image_shape"]), int(metadata["num_classes"]))
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {path} does not match architecture {metadata['arch']!r}: {str(exc).splitlines()[0][:120]}") from None
    return model.to(device).eval(), metadata


def file_sha256(path: str | Path) -> str:
    """Provenance: which exact file produced a number."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
