"""Images for people: [-1, 1] model inputs back to [0, 1] pixels, and PNG grids
(torchvision's make_grid/save_image). Below training, so the trainer can save its negatives."""
from __future__ import annotations

from pathlib import Path

import torch

from winn_robust.units import to_pixel_range


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Model inputs in [-1, 1] -> displayable [0, 1] pixels on the CPU."""
    return to_pixel_range(images.detach().float().cpu()).clamp(0.0, 1.0)


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 10) -> Path:
    """Save a batch of [-1, 1] images (N, C, H, W) as one PNG grid, `nrow` images per row."""
    from torchvision.utils import save_image  # imported here: torchvision costs every process (each torchrun rank) ~1-2 s at start-up

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(to_unit_range(images), path, nrow=nrow, padding=2, pad_value=1.0)
    return path
