"""One checkpoint format for every method: weights, the metadata to rebuild model and data,
and (for resumable training checkpoints) optimizer, pool and RNG state.

Written atomically (temp file + os.replace) so a killed run never leaves half a file; read
with `torch.load(weights_only=True)` so loading never executes pickled code."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from winn_robust.errors import UserError
from winn_robust.models import Classifier, build_model

FORMAT = "winn-robust-checkpoint"
FORMAT_VERSION = 2  # 2: the negative pool lives in per-epoch files beside last.pt
REQUIRED_METADATA = ("arch", "dataset", "image_shape", "num_classes", "method")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save(payload: Any, path: str | Path) -> int:
    """torch.save to a temporary file beside `path`, fsync, then rename over it: a kill at any
    moment leaves either the old file or the new one, never half of one. Returns the bytes written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
            size = handle.tell()
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return size


def save_checkpoint(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any], **state: Any) -> int:
    """Atomically write weights + metadata (+ optional training state such as optimizer, rng);
    returns the bytes written."""
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {missing}")
    # a JSON round trip keeps metadata to plain types, which weights_only loading accepts
    plain_metadata = json.loads(json.dumps(metadata, default=str))
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": plain_metadata,
               "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    payload.update(state)
    return atomic_save(payload, path)


def load_tensors(path: str | Path, map_location: str | torch.device = "cpu", what: str = "checkpoint") -> Any:
    """torch.load with weights_only=True (never runs pickled code); a damaged file is one UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist; pass the .pt file written by `winn-robust train`")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError, KeyError, IndexError,
            TypeError) as exc:  # a damaged pickle fails in torch's unpickler in many ways
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what} {path} is unreadable (truncated or not a winn-robust {what}: {reason[:120]}); "
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
