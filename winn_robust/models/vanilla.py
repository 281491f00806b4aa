"""WINN's simple CNN: 4 x [5x5 conv, 64 channels, stride 2, layer norm, swish], then linear."""
from __future__ import annotations

import torch
from torch import nn

from winn_robust.models.base import Classifier
from winn_robust.models.layers import layer_norm


class VanillaCNN(Classifier):
    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: int = 64) -> None:
        super().__init__(image_shape, num_classes)
        channels, height, w = image_shape
        layers: list[nn.Module] = []
        for _ in range(4):
            layers += [nn.Conv2d(channels, width, 5, stride=2, padding=2), layer_norm(width), nn.SiLU()]
            channels = width
            height, w = (height + 1) // 2, (w + 1) // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * height * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
