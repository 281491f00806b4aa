"""Shared fixtures: tiny models and generated data, so every test runs in seconds on a CPU."""
from __future__ import annotations

import pytest
import torch

from winn_robust.data import load_dataset
from winn_robust.training.trainer import TrainData


def pattern_data(n_per_class: int = 30, classes: int = 4, size: int = 8, noise: float = 0.3,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated images with a learnable signal: each class is a bright bar at its own row."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    images = torch.full((len(labels), 1, size, size), -0.8)
    for i, label in enumerate(labels.tolist()):
        row = label * size // classes
        images[i, 0, row:row + max(1, size // classes)] = 0.8
    images += noise * torch.randn(images.shape, generator=g)
    order = torch.randperm(len(labels), generator=g)
    return images.clamp(-1, 1)[order], labels[order]


def pattern_train_data() -> TrainData:
    """120 training and 40 validation pattern images of 4 classes, named as digits."""
    x, y = pattern_data(n_per_class=30)
    vx, vy = pattern_data(n_per_class=10, seed=1)
    return TrainData(x, y, vx, vy, "digits", tuple(str(i) for i in range(4)))


@pytest.fixture
def tiny_data() -> TrainData:
    return pattern_train_data()


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits: all training images and the first 120 test images."""
    data = load_dataset("digits")
    return data.train_images, data.train_labels, data.test_images[:120], data.test_labels[:120]
