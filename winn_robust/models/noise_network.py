"""The initial distribution of unsupervised WINN's pseudo-negatives (WINN paper, Appendix D).

A tensor of 4x4x512 drawn from U[-1, 1] goes through [5x5 conv, nearest upsample] x 4 (widths 256,
128, 64, C) with layer norm after each convolution except the last and no non-linearity; weights
N(0, 0.1^2), biases 0, layer-norm gain 1 and offset 0; never trained. The paper finds these starts
more diverse than Gaussian noise. Each image is then min-max rescaled to [-1, 1] (the official
notebook's normalisation), so every start spans the whole pixel box.

Upsample sizes: 8, 16, 32, 64 for the paper's 64x64 images; for an S x S image min(8, S),
min(16, S), min(32, S), S (28x28: 8, 16, 28, 28; 8x8: 8, 8, 8, 8)."""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from winn_robust.models.layers import layer_norm

NOISE_SHAPE = (512, 4, 4)
WEIGHT_STD = 0.1


def upsample_sizes(height: int, width: int) -> list[tuple[int, int]]:
    return [(min(8, height), min(8, width)), (min(16, height), min(16, width)),
            (min(32, height), min(32, width)), (height, width)]


class NoiseNetwork(nn.Module):
    """Frozen random network drawing the first cascade's starting images."""

    def __init__(self, image_shape: tuple[int, int, int], generator: torch.Generator | None = None) -> None:
        super().__init__()
        channels, height, width = image_shape
        self.image_shape = tuple(image_shape)
        widths = [NOISE_SHAPE[0], 256, 128, 64, channels]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 5, padding=2) for a, b in itertools.pairwise(widths))
        self.norms = nn.ModuleList(layer_norm(c) for c in widths[1:-1])
        self.sizes = upsample_sizes(height, width)
        with torch.no_grad():
            for conv in self.convs:
                assert isinstance(conv, nn.Conv2d) and conv.bias is not None
                conv.weight.copy_(torch.randn(tuple(conv.weight.shape), generator=generator) * WEIGHT_STD)
                conv.bias.zero_()
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def sizes_device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        x = noise
        for index, (conv, size) in enumerate(zip(self.convs, self.sizes)):
            x = conv(x)
            if index < len(self.norms):
                x = list(self.norms)[index](x)
            x = F.interpolate(x, size=size, mode="nearest")
        return min_max_rescale(x)

    def sample(self, n: int, generator: torch.Generator | None = None, batch_size: int = 500) -> torch.Tensor:
        """n starting images in [-1, 1] (drawn in batches; the noise from `generator`)."""
        device = self.sizes_device
        parts = []
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            noise = torch.rand(count, *NOISE_SHAPE, generator=generator, device=device) * 2 - 1
            parts.append(self(noise))
        return torch.cat(parts) if parts else torch.empty(0, *self.image_shape, device=device)


def min_max_rescale(x: torch.Tensor) -> torch.Tensor:
    """Each image linearly onto [-1, 1] (a constant image becomes 0)."""
    flat = x.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    span = (high - low).clamp_min(1e-12)
    return ((flat - low) / span * 2 - 1).view_as(x)
