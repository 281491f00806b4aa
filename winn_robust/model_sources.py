"""Models to evaluate, from wherever they come: our checkpoints (or a run folder, whose best.pt
is used), a TorchScript archive, or `FILE.py:FUNCTION` returning a torch.nn.Module.

External models follow the ecosystem's convention (RobustBench's): images in [0, 1] in, logits
out. Inside winn-robust every model sees [-1, 1] (docs/conventions.md), so an external model is
wrapped (`PixelSpaceModel`: x -> model((x + 1) / 2)), never the data. Every failure to load is
one UserError line naming the file and what to do."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from winn_robust.checkpoint import CheckpointMeta, load_checkpoint
from winn_robust.errors import SettingError, UserError
from winn_robust.units import to_pixel_range
from winn_robust.user_code import import_function, split_function_spec

BEST = "best.pt"


class UserModelFailure(UserError):
    """A user's model (FILE.py, TorchScript, a Python object) raised or returned something that is
    not finite float logits; the harness adds which attack and batch it was."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"model {label} {reason}; it must map [0, 1] images to finite float logits")
        self.label, self.reason = label, reason


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def check_logits(label: str, out: object) -> torch.Tensor:
    """A user's model output must be a floating tensor with no NaN or Inf: NaN logits would make
    every attack 'fail' and every indicator pass, a report that looks robust and means nothing."""
    if not isinstance(out, torch.Tensor):
        raise UserModelFailure(label, f"returned a {type(out).__name__}, not a tensor of logits")
    if not out.is_floating_point():
        raise UserModelFailure(label, f"returned {str(out.dtype).replace('torch.', '')} logits, not floating point")
    if not bool(torch.isfinite(out).all()):
        raise UserModelFailure(label, "returned NaN or Inf logits")
    return out


Normalisation = tuple[tuple[float, ...], tuple[float, ...]]  # per-channel (mean, std) of [0, 1] pixels


class PixelSpaceModel(nn.Module):
    """An ecosystem model ([0, 1] images -> logits) seen from our [-1, 1] model space; with
    `normalise` = (mean, std) (--input-mean/--input-std) it gets (u - mean) / std instead, as
    models trained with torchvision's Normalize expect. Its failures become one
    `UserModelFailure` line, and its outputs are checked (`check_logits`)."""

    mean: torch.Tensor | None
    std: torch.Tensor | None

    def __init__(self, model: nn.Module, label: str = "", normalise: Normalisation | None = None) -> None:
        super().__init__()
        self.model = model
        self.label = label or type(model).__name__
        self.normalise = normalise
        if normalise is not None:
            self.register_buffer("mean", torch.tensor(normalise[0]).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(normalise[1]).view(1, -1, 1, 1), persistent=False)
        else:
            self.mean, self.std = None, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = to_pixel_range(x)
        if self.mean is not None and self.std is not None:
            pixels = (pixels - self.mean) / self.std
        try:
            out = self.model(pixels)
        except UserError:
            raise
        except Exception as exc:  # the user's code: any exception is theirs to fix, said in one line
            raise UserModelFailure(self.label, f"raised {_one_line(exc)}") from exc
        return check_logits(self.label, out)


def parse_normalisation(mean: str | None, std: str | None) -> Normalisation | None:
    """--input-mean/--input-std as comma lists (one value, or one per channel), or None."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise UserError("give `input_mean` and `input_std` together (per-channel mean and std of [0, 1] pixels, e.g. "
                        "`input_mean` 0.485,0.456,0.406 and `input_std` 0.229,0.224,0.225)",
                        mentions=("input_mean", "input_std"))
    try:
        means = tuple(float(v) for v in mean.split(","))
        stds = tuple(float(v) for v in std.split(","))
    except ValueError:
        raise SettingError("input_mean", f"{mean!r} / `input_std` {std!r} must be comma lists of numbers, "
                           "e.g. 0.485,0.456,0.406", mentions=("input_std",)) from None
    if len(means) != len(stds) or any(s <= 0 for s in stds):
        raise SettingError("input_mean", f"has {len(means)} values and `input_std` {len(stds)}; give one per channel, "
                           "every std positive", mentions=("input_std",))
    return means, stds


@dataclass
class LoadedModel:
    """A model in our convention ([-1, 1] in, logits out), eval mode, and what we know of it."""
    name: str | None          # the NAME of NAME=SPEC, when given
    model: nn.Module
    source: str               # what the user gave
    kind: str                 # "checkpoint", "torchscript" or "python"
    path: Path | None         # the file whose sha256 goes into the provenance
    meta: CheckpointMeta | None = None   # our checkpoints' record (kind "checkpoint"); None otherwise
    notes: list[str] = field(default_factory=list)

    @property
    def checkpoint(self) -> CheckpointMeta:
        """The checkpoint's metadata; only our own checkpoints have one."""
        if self.meta is None:
            raise ValueError(f"{self.source} is a {self.kind} model, not a winn-robust checkpoint")
        return self.meta


def split_spec(text: str) -> tuple[str | None, str]:
    """`NAME=SPEC` or `SPEC` (a Windows drive letter or a path holding '=' stays a path)."""
    name, sep, spec = text.partition("=")
    if sep and name and all(ch.isalnum() or ch in "_-." for ch in name) and not Path(text).exists():
        return name, spec
    return None, text


def load_model(text: str, device: torch.device | str = "cpu", normalise: Normalisation | None = None) -> LoadedModel:
    """One model from NAME=SPEC or SPEC, in our convention, on `device`; `normalise` applies to
    external models only (our checkpoints know their own input convention)."""
    name, spec = split_spec(str(text))
    python = split_function_spec(spec)
    if python is not None:
        return _from_python(name, spec, python[0], python[1], device, normalise)
    path = Path(spec)
    if path.suffix == ".py":
        raise UserError(f"{spec}: give the function that builds the model as FILE.py:FUNCTION, "
                        f"e.g. {spec}:build_model")
    notes = []
    if path.is_dir():
        if not (path / BEST).is_file():
            raise UserError(f"{path} is a folder without {BEST}; pass a checkpoint file or a run folder of `winn-robust train`")
        notes.append(f"{path} is a run folder: using its {BEST}")
        path = path / BEST
    if not path.is_file():
        raise UserError(f"model {spec} does not exist; pass a winn-robust checkpoint or run folder, a TorchScript "
                        "file, or FILE.py:FUNCTION")
    if _is_torchscript(path):
        return _from_torchscript(name, spec, path, device, normalise)
    if not _is_zip(path):  # torch.save and torch.jit.save both write zip archives; anything else is neither
        raise UserError(f"model {spec} is neither a TorchScript archive nor a winn-robust checkpoint (not a zip archive "
                        "as torch.jit.save and torch.save write); pass a checkpoint or run folder of `winn-robust train`, "
                        "a file saved with torch.jit.save, or FILE.py:FUNCTION")
    model, meta = load_checkpoint(path, device)
    return LoadedModel(name, model, spec, "checkpoint", path, meta, notes)


def _is_zip(path: Path) -> bool:
    import zipfile

    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _from_torchscript(name: str | None, spec: str, path: Path, device: torch.device | str,
                      normalise: Normalisation | None = None) -> LoadedModel:
    try:
        module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # torch raises many kinds for a broken archive; the user needs one line
        reason = " ".join(str(exc).split())[:160]
        raise UserError(f"TorchScript file {path} failed to load ({reason}); export it again with torch.jit.save") from None
    return LoadedModel(name, PixelSpaceModel(module, spec, normalise).to(device).eval(), spec, "torchscript", path)


def _from_python(name: str | None, spec: str, path: Path, function: str, device: torch.device | str,
                 normalise: Normalisation | None = None) -> LoadedModel:
    build = import_function(path, function, "a function returning a torch.nn.Module")
    try:
        built = build()
    except Exception as exc:
        raise UserError(f"{path}:{function}() failed: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}") from None
    if not isinstance(built, nn.Module):
        raise UserError(f"{path}:{function}() returned a {type(built).__name__}, not a torch.nn.Module; return the model "
                        "(images in [0, 1] -> logits)")
    return LoadedModel(name, PixelSpaceModel(built, spec, normalise).to(device).eval(), spec, "python", path)


def check_outputs(loaded: LoadedModel, images: torch.Tensor, num_classes: int) -> None:
    """The model must map (N, C, H, W) images to (N, classes) logits."""
    probe = images[:2]
    try:
        with torch.no_grad():
            out = loaded.model(probe)
    except UserModelFailure:
        raise
    except Exception as exc:
        raise UserError(f"model {loaded.source} failed on images of shape {list(probe.shape[1:])}: "
                        f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}") from None
    if not isinstance(out, torch.Tensor) or out.shape != (len(probe), num_classes):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"model {loaded.source} returned {shape} for {len(probe)} images; it must return logits of "
                        f"shape (N, {num_classes})")
