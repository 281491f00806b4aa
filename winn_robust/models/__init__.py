"""Architectures by name. Every model maps [-1, 1] images to class logits and carries the
1-d Wasserstein head (`critic`) that WINN/ICN training and synthesis use."""
from __future__ import annotations

from collections.abc import Callable

from winn_robust.errors import UserError
from winn_robust.models.appendix_c import AppendixC
from winn_robust.models.base import Classifier
from winn_robust.models.generator import RandomGenerator
from winn_robust.models.resnet import ResNet
from winn_robust.models.vanilla import VanillaCNN

ARCHITECTURES: dict[str, Callable[..., Classifier]] = {
    "vanilla": VanillaCNN,
    "resnet20": lambda **kw: ResNet(depth=20, **kw),
    "resnet32": lambda **kw: ResNet(depth=32, **kw),
    "resnet44": lambda **kw: ResNet(depth=44, **kw),
    "resnet56": lambda **kw: ResNet(depth=56, **kw),
    "winn64": AppendixC,  # the WINN paper's Appendix C critic for 64x64 textures and faces
}

#: architectures for 2-D points (the toy mixtures of the generative methods), built by the method itself
POINT_ARCHITECTURES = ("mlp",)


def build_model(arch: str, image_shape: tuple[int, int, int], num_classes: int) -> Classifier:
    """Build an architecture by name for images of shape (C, H, W)."""
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](image_shape=tuple(image_shape), num_classes=num_classes)


__all__ = ["ARCHITECTURES", "POINT_ARCHITECTURES", "Classifier", "RandomGenerator", "build_model"]
