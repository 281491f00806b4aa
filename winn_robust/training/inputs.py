"""Turn a dataset into what the trainer may see: train and validation splits only."""
from __future__ import annotations

from pathlib import Path

import torch

from winn_robust.data import ImageDataset, load_dataset, split_validation
from winn_robust.training.trainer import TrainData


def effective_val_size(requested: int, n_train: int) -> int:
    """The paper's 5,000 validation images assume MNIST's 50,000; on a small dataset hold out at
    most 10% so there is still something to train on."""
    return min(requested, max(1, n_train // 10)) if requested >= n_train // 2 else requested


def make_train_data(dataset: ImageDataset, val_size: int, seed: int, train_limit: int | None,
                    device: torch.device) -> TrainData:
    train_x, train_y, val_x, val_y = split_validation(dataset.train_images, dataset.train_labels,
                                                      effective_val_size(val_size, len(dataset.train_images)), seed)
    if train_limit is not None:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    return TrainData(train_x.to(device), train_y.to(device), val_x.to(device), val_y.to(device),
                     dataset.name, dataset.class_names)


def load_train_data(name: str, data_dir: Path | None, download: bool, val_size: int, seed: int,
                    train_limit: int | None, device: torch.device) -> TrainData:
    return make_train_data(load_dataset(name, data_dir, download), val_size, seed, train_limit, device)
