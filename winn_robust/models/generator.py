"""The frozen random generator that seeds WINN's pseudo-negatives.

Linear 128 -> 4x4x512, then 4 x [layer norm, 5x5 conv, nearest upsample] ending at the image
size, tanh; every weight N(0, 0.1^2) and never trained. Its only job is to give the synthesis
a structured, image-shaped starting point instead of i.i.d. noise."""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from winn_robust.models.layers import layer_norm

NOISE_DIM = 128
BASE_SIZE = 4


def stage_sizes(image_size: int, stages: int = 4) -> list[int]:
    """Spatial sizes after each upsample: geometric steps from 4 to the image size."""
    ratio = image_size / BASE_SIZE
    return [max(1, round(BASE_SIZE * ratio ** ((i + 1) / stages))) for i in range(stages - 1)] + [image_size]


class RandomGenerator(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], std: float = 0.1) -> None:
        super().__init__()
        channels, height, width = image_shape
        if height != width:
            raise ValueError("the random generator expects square images")
        self.image_shape = tuple(image_shape)
        widths = [512, 256, 128, 64, channels]
        self.project = nn.Linear(NOISE_DIM, 512 * BASE_SIZE * BASE_SIZE)
        self.norms = nn.ModuleList(layer_norm(c) for c in widths[:-1])
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 5, padding=2) for a, b in itertools.pairwise(widths))
        self.sizes = stage_sizes(height)
        for p in self.parameters():
            nn.init.normal_(p, 0.0, std)
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        x = self.project(noise).view(-1, 512, BASE_SIZE, BASE_SIZE)
        for norm, conv, size in zip(self.norms, self.convs, self.sizes):
            x = F.interpolate(conv(norm(x)), size=(size, size), mode="nearest")
        return torch.tanh(x)

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None) -> torch.Tensor:
        """n images in [-1, 1] from U[-1, 1] noise."""
        device = device or self.project.weight.device
        noise = torch.rand(n, NOISE_DIM, generator=generator, device=device) * 2 - 1
        return self(noise)
