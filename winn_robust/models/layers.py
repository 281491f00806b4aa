"""Small building blocks shared by the classifiers."""
from __future__ import annotations

from torch import nn

LAYER_NORM_EPS = 1e-12  # tf.contrib.layers.layer_norm's epsilon, which the official WINN classifier uses


def layer_norm(channels: int) -> nn.GroupNorm:
    """Layer norm over (C, H, W) with a per-channel affine: GroupNorm with one group."""
    return nn.GroupNorm(1, channels, eps=LAYER_NORM_EPS)
