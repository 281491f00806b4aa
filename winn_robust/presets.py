"""Named experiment recipes for `winn-robust reproduce`. Any key can be overridden on the CLI.

Keys are TrainConfig fields (shared by every method) plus: methods, eps (the table's values),
sweep (extra eps values for the error-vs-eps plot), test_limit, attack, data_dir.
Paper presets use the paper's hyper-parameters and are meant for a GPU."""
from __future__ import annotations

from typing import Any

from winn_robust.errors import UserError

MNIST_SWEEP = [0.0, 0.03125, 0.0625, 0.125, 0.1875, 0.25]
SVHN_SWEEP = [0.0, 0.0025, 0.005, 0.01, 0.02]

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "scikit-learn's embedded 8x8 digits, vanilla CNN; minutes on a 2-core CPU, no download",
        "data": "digits", "arch": "vanilla", "methods": ["baseline", "winn"], "epochs": 30,
        "val_size": 200, "negatives_per_class": 40, "initial_negatives_per_class": 40,
        "synthesis_max_steps": 300, "eps": [0.125], "sweep": [0.0, 0.03125, 0.0625, 0.125, 0.25],
    },
    "fashion-mnist": {
        "description": "Fashion-MNIST (real 28x28 IDX files from --data-dir), vanilla CNN, reduced for a CPU",
        "data": "fashion-mnist", "arch": "vanilla", "methods": ["baseline", "winn"], "epochs": 8,
        "val_size": 5000, "train_limit": 20000, "negatives_per_class": 50,
        "initial_negatives_per_class": 50, "synthesis_max_steps": 300,
        "eps": [0.125], "sweep": MNIST_SWEEP,
        "data_dir_candidates": ["/usr/share/datasets/fashion-mnist"],
    },
    "paper-mnist": {
        "description": "WINN Table 2/3, MNIST, vanilla CNN: baseline, ICN and WINN, paper hyper-parameters (GPU)",
        "data": "mnist", "arch": "vanilla", "methods": ["baseline", "icn", "winn"], "epochs": 200,
        "eps": [0.125], "sweep": MNIST_SWEEP,
    },
    "paper-mnist-resnet32": {
        "description": "WINN Table 2/3, MNIST, ResNet-32: baseline and WINN, paper hyper-parameters (GPU)",
        "data": "mnist", "arch": "resnet32", "methods": ["baseline", "winn"], "epochs": 200,
        "eps": [0.125], "sweep": MNIST_SWEEP,
    },
    "paper-svhn": {
        "description": "WINN Table 2/4, SVHN, ResNet-32: baseline and WINN, paper hyper-parameters (GPU)",
        "data": "svhn", "arch": "resnet32", "methods": ["baseline", "winn"], "epochs": 200,
        "eps": [0.005], "sweep": SVHN_SWEEP,
    },
}

# The paper's published numbers (DESIGN.md), keyed by (dataset, arch, method): percentages of
# clean error, FGSM adversarial error, correction rate by method, correction rate by baseline.
PAPER_NUMBERS: dict[tuple[str, str, str], tuple[float, float, float | None, float | None]] = {
    ("mnist", "vanilla", "baseline"): (0.89, 32.41, None, None),
    ("mnist", "vanilla", "icn"): (0.81, 19.02, 52.58, 58.68),
    ("mnist", "vanilla", "winn"): (0.67, 7.99, 90.00, 46.93),
    ("mnist", "resnet32", "baseline"): (0.45, 11.28, None, None),
    ("mnist", "resnet32", "winn"): (0.48, 2.05, 89.68, 43.69),
    ("svhn", "resnet32", "baseline"): (4.64, 29.29, None, None),
    ("svhn", "resnet32", "winn"): (4.50, 19.53, 74.39, 51.37),
}


def get_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
