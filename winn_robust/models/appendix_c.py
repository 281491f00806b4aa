"""The WINN paper's texture and CelebA critic (Appendix C, Table 5), for 64x64 images.

Conv3-32, Conv3-64, AvgPool2, Conv3-64, Conv3-128, AvgPool2, Conv3-128, Conv3-256, AvgPool2,
Conv3-256, Conv3-512, AvgPool2, FC: every convolution 3x3, stride 1, padding 1; swish after each,
layer norm after each except the first (both as the paper says: "Swish after each convolutional
layer ... Layer Normalization after each convolution except the first layer"); 2x2 average pools
of stride 2, so a 64x64 input ends at 4x4x512 before the fully connected layer.

Smaller inputs (the CPU-sized texture runs use 16x16 or 32x32 patches): a pool that would leave a
side below 1 pixel is skipped, so every input of at least 1x1 gets the same eight convolutions
(32x32 ends at 2x2, 8x8 skips the last pool and ends at 1x1). Odd sides are floored by the pool."""
from __future__ import annotations

import torch
from torch import nn

from winn_robust.models.base import Classifier
from winn_robust.models.layers import layer_norm

#: (output channels of the block's two convolutions), each block followed by a 2x2 average pool
BLOCKS = ((32, 64), (64, 128), (128, 256), (256, 512))


class AppendixC(Classifier):
    """Appendix C's CNN; `num_classes` outputs (1 for a critic: FC-1)."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__(image_shape, num_classes)
        channels, height, width = image_shape
        layers: list[nn.Module] = []
        first = True
        for widths in BLOCKS:
            for out in widths:
                layers.append(nn.Conv2d(channels, out, 3, padding=1))
                if not first:
                    layers.append(layer_norm(out))
                layers.append(nn.SiLU())
                channels, first = out, False
            if height >= 2 and width >= 2:  # a pool that would shrink a side below 1 pixel is skipped
                layers.append(nn.AvgPool2d(2, 2))
                height, width = height // 2, width // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels * height * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
