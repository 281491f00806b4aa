"""The frozen random generator that seeds WINN's pseudo-negatives.

Linear 128 -> 4x4x512, then 4 x [layer norm, 5x5 conv, nearest resize], tanh; never trained.
Its job is to give synthesis structured, image-shaped and *diverse* starting points.

Two initialisations (`GENERATOR_INITS`):

- ``official`` (default): as the official WINN code (tflib with weights stdev 0.1): conv and
  linear weights drawn uniformly with standard deviation 0.1, i.e. U[-0.1*sqrt(3), 0.1*sqrt(3)],
  biases 0, layer-norm gain 1 and offset 0 (layer-norm epsilon 1e-5, tflib's). At 28x28 the
  per-pixel standard deviation across images is about 0.9: the starts differ.
- ``legacy``: winn-robust 0.1's generator, *every* parameter (gains and biases included) drawn
  from N(0, 0.1^2). Gains near 0.1 shrink the signal about tenfold and the random biases add one
  template to every image: the per-pixel standard deviation across images is about 0.09, so
  nearly every synthesis run starts from the same image. Kept to measure what that costs.

Resize sizes follow the official code, which resizes a 28x28 generator to 8, 16, 28, 28: in
general min(8, S), min(16, S), S, S for an S x S image (32x32: 8, 16, 32, 32; 8x8: 8, 8, 8, 8)."""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

NOISE_DIM = 128
BASE_SIZE = 4
WEIGHT_STD = 0.1
GENERATOR_LN_EPS = 1e-5  # tflib's layer norm
GENERATOR_INITS = ("official", "legacy")


def stage_sizes(image_size: int) -> list[int]:
    """Spatial sizes after each of the four resizes: the official 8, 16, S, S, capped at S."""
    return [min(8, image_size), min(16, image_size), image_size, image_size]


def init_official(generator: nn.Module) -> None:
    bound = WEIGHT_STD * math.sqrt(3.0)  # a uniform distribution with standard deviation WEIGHT_STD
    for module in generator.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def init_legacy(generator: nn.Module) -> None:
    for p in generator.parameters():
        nn.init.normal_(p, 0.0, WEIGHT_STD)


class RandomGenerator(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], init: str = "official") -> None:
        super().__init__()
        channels, height, width = image_shape
        if height != width:
            raise ValueError("the random generator expects square images")
        if init not in GENERATOR_INITS:
            raise ValueError(f"unknown generator initialisation {init!r}; choose one of {', '.join(GENERATOR_INITS)}")
        self.image_shape = tuple(image_shape)
        self.init = init
        widths = [512, 256, 128, 64, channels]
        self.project = nn.Linear(NOISE_DIM, 512 * BASE_SIZE * BASE_SIZE)
        self.norms = nn.ModuleList(nn.GroupNorm(1, c, eps=GENERATOR_LN_EPS) for c in widths[:-1])
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 5, padding=2) for a, b in itertools.pairwise(widths))
        self.sizes = stage_sizes(height)
        (init_official if init == "official" else init_legacy)(self)
        for p in self.parameters():
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
