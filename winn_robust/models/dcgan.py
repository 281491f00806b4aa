"""The DCGAN-style generator of WGAN-GP (Gulrajani et al. 2017, the official gan_cifar.py /
gan_mnist.py / gan_64x64.py generators), for any image size.

    z (latent_dim, N(0, I)) -> linear -> (2^(n-1) W) x b x b, batch norm, ReLU
    -> n - 1 x [5x5 transposed conv, stride 2 (doubles the size), crop, batch norm, ReLU], halving the width
    -> 5x5 transposed conv, stride 2, to C channels, crop, tanh  (images in [-1, 1])

n (the number of doublings) is the smallest n >= 1 with ceil(S / 2^n) <= 4 for S = max(H, W); the
spatial sizes are ceil(H / 2^(n-k)) x ceil(W / 2^(n-k)) for k = 0..n, so the linear layer projects to
about 4x4 and each doubling is cropped (top-left rows and columns kept) to the next size when it
overshoots by one. That is exactly the reference's choices:

- 8x8 (digits): 4 -> 8, one transposed conv (W -> C);
- 28x28 (MNIST): 4 -> 8, cropped to 7 -> 14 -> 28 (gan_mnist.py's crop 8 -> 7);
- 32x32 (CIFAR-10): 4 -> 8 -> 16 -> 32, widths 4W, 2W, W (gan_cifar.py);
- 64x64: 4 -> 8 -> 16 -> 32 -> 64, widths 8W, 4W, 2W, W (gan_64x64.py's DCGAN generator).

W (`width`) is the reference's DIM: 64 for MNIST and 64x64, 128 for CIFAR-10. Batch norm is
per feature after the linear layer and per channel after each hidden transposed conv (as
gan_cifar.py; gan_mnist.py has none); its running statistics are what sampling uses in eval mode.
Weights use PyTorch's default initialisation."""
from __future__ import annotations

import itertools
import math

import torch
from torch import nn

KERNEL = 5
MAX_BASE = 4


def doublings(height: int, width: int) -> int:
    """The number of stride-2 transposed convolutions: the smallest n >= 1 with ceil(S / 2^n) <= 4."""
    size, n = max(height, width), 1
    while math.ceil(size / 2 ** n) > MAX_BASE:
        n += 1
    return n


def stage_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Spatial size after the linear layer (k = 0) and after each transposed conv (k = 1..n)."""
    n = doublings(height, width)
    return [(math.ceil(height / 2 ** (n - k)), math.ceil(width / 2 ** (n - k))) for k in range(n + 1)]


class DCGANGenerator(nn.Module):
    """Maps latent codes (N, latent_dim) to images (N, C, H, W) in [-1, 1]."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int = 128, width: int = 64) -> None:
        super().__init__()
        channels, height, wide = image_shape
        if min(channels, height, wide, latent_dim, width) < 1:
            raise ValueError(f"image shape {image_shape}, latent_dim {latent_dim} and width {width} must be positive")
        self.image_shape = (channels, height, wide)
        self.latent_dim = latent_dim
        self.sizes = stage_sizes(height, wide)
        n = len(self.sizes) - 1
        widths = [width * 2 ** (n - 1 - k) for k in range(n)] + [channels]
        base_h, base_w = self.sizes[0]
        self.project = nn.Linear(latent_dim, widths[0] * base_h * base_w)
        self.project_norm = nn.BatchNorm1d(widths[0] * base_h * base_w)
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(a, b, KERNEL, stride=2, padding=KERNEL // 2, output_padding=1)
            for a, b in itertools.pairwise(widths))
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in widths[1:-1])
        self.widths = widths

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        base_h, base_w = self.sizes[0]
        x = torch.relu(self.project_norm(self.project(z))).view(len(z), self.widths[0], base_h, base_w)
        for k, deconv in enumerate(self.deconvs):
            height, wide = self.sizes[k + 1]
            x = deconv(x)[:, :, :height, :wide]
            if k < len(self.norms):
                x = torch.relu(self.norms[k](x))
        return torch.tanh(x)

    def sample(self, count: int, rng: torch.Generator, batch_size: int = 500) -> torch.Tensor:
        """count images from z ~ N(0, I) drawn from rng, in eval mode (batch norm's running
        statistics, so an image does not depend on its batch), without gradients."""
        device = self.project.weight.device
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = [self(torch.randn(min(batch_size, count - start), self.latent_dim, generator=rng, device=device))
                       for start in range(0, count, batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, *self.image_shape, device=device)
