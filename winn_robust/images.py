"""Images for people: [-1, 1] model inputs back to [0, 1] pixels, and PNG grids
(torchvision's make_grid/save_image). Below training, so the trainer can save its negatives."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from winn_robust.storage import atomic_write
from winn_robust.units import to_pixel_range


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Model inputs in [-1, 1] -> displayable [0, 1] pixels on the CPU."""
    return to_pixel_range(images.detach().float().cpu()).clamp(0.0, 1.0)


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 10) -> Path:
    """Save a batch of [-1, 1] images (N, C, H, W) as one PNG grid, `nrow` images per row."""
    from torchvision.utils import save_image  # imported here: torchvision costs every process (each torchrun rank) ~1-2 s at start-up

    path = Path(path)
    atomic_write(path, lambda handle: save_image(to_unit_range(images), handle, format="png", nrow=nrow, padding=2,
                                                 pad_value=1.0))
    return path


def save_class_grid(images: torch.Tensor, class_names: Sequence[str], path: str | Path, min_tile: int = 56,
                    title: str = "") -> Path:
    """One row per class (images: (classes, per_class, C, H, W) in [-1, 1]), every image enlarged by
    nearest-neighbour to at least `min_tile` pixels so small images stay legible, the class name at
    the left of its row and an optional title on top."""
    from PIL import Image, ImageDraw  # pillow: torchvision's and matplotlib's own image library

    classes, per_class, channels, height, width = images.shape
    scale = max(1, -(-min_tile // max(height, width)))
    tile_h, tile_w, pad = height * scale, width * scale, 2
    label_w = 8 + 7 * max([len(str(n)) for n in class_names] + [1])
    top = 18 if title else 0
    canvas = Image.new("RGB", (label_w + per_class * (tile_w + pad) + pad, top + classes * (tile_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    pixels = to_unit_range(images.reshape(-1, channels, height, width)).mul(255).round().byte()
    pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    for row in range(classes):
        y = top + pad + row * (tile_h + pad)
        name = str(class_names[row]) if row < len(class_names) else str(row)
        draw.text((4, y + tile_h // 2 - 5), name, fill="black")
        for col in range(per_class):
            tile = pixels[row * per_class + col]
            array = tile.permute(1, 2, 0).squeeze(-1).numpy() if channels == 1 else tile.permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(array), (label_w + pad + col * (tile_w + pad), y))
    if title:
        draw.text((4, 3), title, fill="black")
    path = Path(path)
    atomic_write(path, lambda handle: canvas.save(handle, format="png"))
    return path
