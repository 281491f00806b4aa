"""CIFAR ResNet (He et al. 2016, option A shortcuts) with layer norm and swish, laid out as the
official WINN code lays it out: pre-activation blocks.

Depth 6n+2: a stem (3x3 conv, layer norm, swish), 3 stages of n blocks with 16/32/64 channels,
then layer norm, swish, global average pool and a linear layer to the logits. A block is
[layer norm -> swish -> conv] twice, plus the shortcut, with no activation after the sum; the
network's very first block skips its leading layer norm and swish (the stem has just applied
them). When the width doubles, the shortcut average-pools by 2 and pads the new channels with
zeros, half before and half after the old ones (no parameters)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from winn_robust.errors import UserError
from winn_robust.models.base import Classifier
from winn_robust.models.layers import layer_norm


class PreActBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, first: bool = False) -> None:
        super().__init__()
        self.norm0 = None if first else layer_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = layer_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = F.avg_pool2d(x, self.stride, ceil_mode=True)
        if self.extra_channels:
            before = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, before, self.extra_channels - before))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.norm0 is None else F.silu(self.norm0(x))
        h = F.silu(self.norm1(self.conv1(h)))
        return self.conv2(h) + self.shortcut(x)


class ResNet(Classifier):
    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, depth: int = 32) -> None:
        super().__init__(image_shape, num_classes)
        if (depth - 2) % 6:
            raise UserError(f"ResNet depth must be 6n+2 (20, 32, 44, 56), got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.depth = depth
        self.stem = nn.Sequential(nn.Conv2d(image_shape[0], 16, 3, padding=1, bias=False), layer_norm(16), nn.SiLU())
        blocks: list[nn.Module] = []
        in_channels = 16
        for stage, width in enumerate((16, 32, 64)):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(PreActBlock(in_channels, width, stride, first=(stage == 0 and block == 0)))
                in_channels = width
        self.stages = nn.Sequential(*blocks)
        self.final_norm = layer_norm(64)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.silu(self.final_norm(self.stages(self.stem(x))))
        return self.classifier(out.mean(dim=(2, 3)))
