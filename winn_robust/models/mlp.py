"""ReLU MLPs for 2-D points (the toy mixtures): iWGAN's encoder, generator and critic as in the
iWGAN paper's Appendix D1 (and the width-512 ReLU MLPs of the WGAN-GP toy script, gan_toy.py).

    encoder Q:  2 -> 1024 -> 512 -> 256 -> 128 -> latent_dim
    generator G: latent_dim -> 512 -> 512 -> 512 -> 2
    critic f:   2 -> 512 -> 512 -> 512 -> 1

Only for points: the image architectures are refused for the toys and these for images
(training/config.py says which in one line)."""
from __future__ import annotations

import torch
from torch import nn

ENCODER_WIDTHS = (1024, 512, 256, 128)
GENERATOR_WIDTHS = (512, 512, 512)
CRITIC_WIDTHS = (512, 512, 512)


class MLP(nn.Module):
    """Linear layers of the given widths with ReLU between them (none after the last)."""

    def __init__(self, inputs: int, widths: tuple[int, ...], outputs: int) -> None:
        super().__init__()
        sizes = (inputs, *widths, outputs)
        layers: list[nn.Module] = []
        for k in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[k], sizes[k + 1]))
            if k < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def point_encoder(latent_dim: int, dims: int = 2, scale: float = 1.0) -> MLP:
    return MLP(dims, tuple(max(1, round(w * scale)) for w in ENCODER_WIDTHS), latent_dim)


def point_generator(latent_dim: int, dims: int = 2, scale: float = 1.0) -> MLP:
    return MLP(latent_dim, tuple(max(1, round(w * scale)) for w in GENERATOR_WIDTHS), dims)


def point_critic(dims: int = 2, scale: float = 1.0) -> MLP:
    return MLP(dims, tuple(max(1, round(w * scale)) for w in CRITIC_WIDTHS), 1)
