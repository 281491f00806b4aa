"""Datasets as float tensors in [-1, 1], NCHW, plus their labels.

(Minimal version: digits only; the torchvision-backed loaders are being added.)"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from winn_robust.errors import UserError

DATASETS = ("mnist", "svhn", "fashion-mnist", "cifar10", "digits")


@dataclass(frozen=True)
class ImageDataset:
    name: str
    train_images: torch.Tensor  # float32 (N, C, H, W) in [-1, 1]
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]


def to_model_range(pixels: torch.Tensor | np.ndarray, max_value: float = 255.0) -> torch.Tensor:
    """x = 2 * u - 1 with u = pixels / max_value in [0, 1] (DESIGN.md's pixel convention)."""
    u = torch.as_tensor(np.asarray(pixels), dtype=torch.float32) / max_value
    return u * 2.0 - 1.0


def split_validation(images: torch.Tensor, labels: torch.Tensor, val_size: int, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded train/validation split of the training set; the test set is never touched."""
    n = len(images)
    if not 0 < val_size < n:
        raise UserError(f"--val-size {val_size} must be between 1 and {n - 1} (the training set has {n} images)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:val_size], order[val_size:]
    return images[train], labels[train], images[val], labels[val]


def load_digits_dataset() -> ImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = to_model_range(digits.images[:, None, :, :], max_value=16.0)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=digits.target, random_state=0)
    return ImageDataset("digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                        tuple(str(i) for i in range(10)))


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False) -> ImageDataset:
    if name == "digits":
        return load_digits_dataset()
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
