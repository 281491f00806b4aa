"""The classifier a sample score is computed with, and which of its layers gives the features.

- a winn-robust checkpoint or run folder: the input of its final linear layer (`classifier`);
- a TorchScript file or FILE.py:FUNCTION ([0, 1] images -> logits, model_sources wraps it into
  our [-1, 1] convention): the input of its last registered nn.Linear when it has one and that
  layer runs once per forward pass, else the logits; the description says which;
- `inception-v3=FILE.pth`: a torchvision inception_v3 state dict; the pooled 2048 features and the
  softmax of its logits. Only this one makes the scores "the Inception score" and "FID"."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from winn_robust.checkpoint import CheckpointMeta, file_sha256
from winn_robust.errors import UserError
from winn_robust.model_sources import PixelSpaceModel, load_model
from winn_robust.models.base import Classifier

INCEPTION_PREFIX = "inception-v3="
INCEPTION_SIZE = 299


@dataclass(frozen=True)
class ScoreClassifier:
    """A model taking [-1, 1] images to logits, the layer whose input gives the features (None:
    the logits), and how to name both in the output."""
    model: nn.Module
    feature_layer: nn.Module | None
    description: str
    features: str
    is_inception: bool = False
    meta: CheckpointMeta | None = None   # our checkpoints': the dataset, the image shape
    sha256: str | None = None            # of the classifier's file: the figures hold for this file only

    @property
    def score_name(self) -> str:
        return "Inception score" if self.is_inception else "classifier score"

    @property
    def distance_name(self) -> str:
        return "FID" if self.is_inception else "Frechet distance (classifier features)"

    def with_logit_features(self, why: str) -> ScoreClassifier:
        return replace(self, feature_layer=None, features=f"the logits ({why})")


class InceptionFeatures(nn.Module):
    """torchvision's Inception-v3 seen from our [-1, 1] images: grey repeated to 3 channels,
    bilinear resize to 299x299. Built with transform_input=False and fed x = 2u - 1, which is
    what torchvision's published weights receive after its documented pipeline (ImageNet
    Normalize, then the transform_input=True that torchvision sets for those weights)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[1] != 3:
            raise UserError(f"Inception-v3 takes grey or RGB images; these have {x.shape[1]} channels")
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return self.net(x)


def load_inception(path: Path, device: torch.device | str = "cpu") -> ScoreClassifier:
    """A torchvision inception_v3 state dict (torch.save(model.state_dict())), loaded without
    running pickled code; aux_logits and the class count follow the file's keys."""
    from torchvision.models import inception_v3

    if not path.is_file():
        raise UserError(f"Inception-v3 file {path} does not exist; give inception-v3=FILE.pth, a torchvision "
                        "inception_v3 state dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # many kinds for a file that is not a weights-only torch file
        raise UserError(f"Inception-v3 file {path} is not a state dict torch.load reads with weights_only=True "
                        f"({type(exc).__name__}); save it with torch.save(model.state_dict(), FILE)") from None
    if not isinstance(state, Mapping) or not isinstance(state.get("fc.weight"), torch.Tensor):
        raise UserError(f"Inception-v3 file {path} holds no fc.weight; give the state dict of a torchvision "
                        "inception_v3 (torch.save(model.state_dict(), FILE))")
    aux = any(str(key).startswith("AuxLogits.") for key in state)
    net = inception_v3(weights=None, aux_logits=aux, transform_input=False, init_weights=False,
                       num_classes=int(state["fc.weight"].shape[0]))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"Inception-v3 file {path} does not fit torchvision's inception_v3: "
                        f"{str(exc).splitlines()[0][:140]}") from None
    model = InceptionFeatures(net).to(device).eval()
    return ScoreClassifier(model, net.fc, f"Inception-v3 (torchvision's architecture) from {path}",
                           f"the pooled Inception-v3 features ({net.fc.in_features} values)", is_inception=True,
                           sha256=file_sha256(path))


def last_linear(module: nn.Module) -> tuple[str, nn.Linear] | None:
    """The last registered nn.Linear of a model, with its name, or None."""
    found = None
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Linear):
            found = (name, sub)
    return found


def load_score_classifier(spec: str, device: torch.device | str = "cpu") -> ScoreClassifier:
    """--classifier as given: inception-v3=FILE, or any model `attack` accepts."""
    if spec.lower().startswith(INCEPTION_PREFIX):
        return load_inception(Path(spec[len(INCEPTION_PREFIX):]), device)
    loaded = load_model(spec, device)
    model = loaded.model
    digest = file_sha256(loaded.path) if loaded.path is not None and loaded.path.is_file() else None
    if isinstance(model, Classifier) and loaded.meta is not None:
        meta = loaded.meta
        layer = getattr(model, "classifier", None)
        what = (f"{loaded.path} ({meta.method} {meta.arch}, trained on {meta.dataset}, epoch {meta.epoch}"
                + (f", validation error {meta.reported_val_error:.2%}" if meta.reported_val_error is not None else "") + ")")
        if isinstance(layer, nn.Linear):
            return ScoreClassifier(model, layer, what, f"penultimate: the input of the final linear layer "
                                                       f"({layer.in_features} values)", meta=meta, sha256=digest)
        return ScoreClassifier(model, None, what, "the logits (the architecture has no final linear layer)", meta=meta,
                               sha256=digest)
    inner = model.model if isinstance(model, PixelSpaceModel) else model
    what = f"{loaded.source} ({loaded.kind} model, [0, 1] images -> logits)"
    found = last_linear(inner)
    if found is None:
        kind = "a TorchScript model's layers cannot be hooked" if loaded.kind == "torchscript" else "it has no nn.Linear"
        return ScoreClassifier(model, None, what, f"the logits ({kind})", sha256=digest)
    name, layer = found
    return ScoreClassifier(model, layer, what, f"the input of its last nn.Linear `{name}` ({layer.in_features} values)",
                           sha256=digest)
