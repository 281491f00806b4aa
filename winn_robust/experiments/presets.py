"""Named experiment recipes for `winn-robust reproduce`. Any key can be overridden on the CLI.

Keys are TrainConfig fields (shared by every method) plus: methods, eps (the table's values),
sweep (extra eps values for the error-vs-eps plot), test_limit, attack, data_dir.
Paper presets use the paper's hyper-parameters and are meant for a GPU. The MNIST ones train on
45,000 images and validate on 5,000, the paper's split: a seeded random split of MNIST's 60,000
training images (the official code takes the first 45,000 in file order), the other 10,000 unused."""
from __future__ import annotations

from typing import Any

from winn_robust.errors import UserError

MNIST_SWEEP = [0.0, 0.03125, 0.0625, 0.125, 0.1875, 0.25]
SVHN_SWEEP = [0.0, 0.0025, 0.005, 0.01, 0.02]

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "scikit-learn's embedded 8x8 digits, vanilla CNN; minutes on a 2-core CPU, no download",
        "data": "digits", "arch": "vanilla", "methods": ["baseline", "winn"], "seeds": [0], "epochs": 30,
        "val_size": 200, "negatives_per_class": 40, "initial_negatives_per_class": 40,
        "synthesis_max_steps": 300, "eps": [0.125], "sweep": [0.0, 0.03125, 0.0625, 0.125, 0.25],
    },
    "fashion-mnist": {
        "description": "Fashion-MNIST (real 28x28 IDX files from --data-dir), vanilla CNN: baseline, WINN and the "
                       "reference defences PGD-AT, TRADES and Fast-AT (trained at the table eps), 3 seeds, reduced for "
                       "a CPU; FGSM at 1/32 (table) and 1/8 on every test image, PGD and AutoAttack at 1/32 on the "
                       "first 300 (reports/fashion-mnist says how its committed run was sized down further)",
        "data": "fashion-mnist", "arch": "vanilla", "methods": ["baseline", "winn", "pgd-at", "trades", "fast-at"],
        "seeds": [0, 1, 2], "epochs": 15,
        "val_size": 5000, "train_limit": 7200, "negatives_per_class": 100,
        "initial_negatives_per_class": 100, "synthesis_max_steps": 100,
        "eps": [0.03125, 0.125], "sweep": MNIST_SWEEP, "attack": "fgsm,pgd,autoattack", "strong_limit": 300,
        "reference": "pgd-at", "data_dir_candidates": ["/usr/share/datasets/fashion-mnist"],
    },
    "paper-mnist": {
        "description": "WINN Table 2/3, MNIST, vanilla CNN: baseline, ICN and WINN, paper hyper-parameters (GPU)",
        "data": "mnist", "arch": "vanilla", "methods": ["baseline", "icn", "winn"], "seeds": [0, 1, 2], "epochs": 200,
        "train_limit": 45000, "val_size": 5000, "eps": [0.125], "sweep": MNIST_SWEEP,
    },
    "paper-mnist-resnet32": {
        "description": "WINN Table 2/3, MNIST, ResNet-32: baseline and WINN, paper hyper-parameters (GPU)",
        "data": "mnist", "arch": "resnet32", "methods": ["baseline", "winn"], "seeds": [0, 1, 2], "epochs": 200,
        "train_limit": 45000, "val_size": 5000, "eps": [0.125], "sweep": MNIST_SWEEP,
    },
    "paper-svhn": {
        "description": "WINN Table 2/4, SVHN, ResNet-32: baseline and WINN, paper hyper-parameters (GPU)",
        "data": "svhn", "arch": "resnet32", "methods": ["baseline", "winn"], "seeds": [0, 1, 2], "epochs": 200,
        "eps": [0.005], "sweep": SVHN_SWEEP,
    },
}

def get_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def describe_presets() -> list[str]:
    """Two lines a preset: its description, then its settings."""
    lines = []
    for name, preset in PRESETS.items():
        lines.append(f"{name}: {preset['description']}")
        lines.append("    " + ", ".join(f"{k}={v}" for k, v in preset.items() if k != "description"))
    return lines
