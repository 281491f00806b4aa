"""Small building blocks shared by the architectures."""
from __future__ import annotations

from torch import nn


def layer_norm(channels: int) -> nn.GroupNorm:
    """Layer norm over (C, H, W) with a per-channel affine: GroupNorm with one group."""
    return nn.GroupNorm(1, channels)
