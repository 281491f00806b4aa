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

# The generative side (`reproduce --preset generative-*` / `paper-gen-*`): generative runs of one data set, a
# baseline classifier as the scorer, N seeded samples per run, scores against the real test images
# (experiments/generative_study.py). The paper-gen presets keep the paper's schedules (GPU work); the two CPU
# presets are sized for a 2-core machine and say so.
CPU_WINN = {"iterations": 12, "positives": 500, "negatives": 500, "last_negatives": 1000, "initial_negatives": 1000,
            "ascent_max_steps": 300}


def generative_runs(cascades: int, winn: dict[str, Any] | None = None, wgan: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The paper's comparison as a preset's runs: WINN-single, WINN with `cascades` CNNs (both with
    the `winn` options) and WGAN-GP (with the `wgan` options), sampled also from its critic (Figure 3)."""
    winn = winn or {}
    return [{"name": "winn-single", "method": "winn-gen", "options": {**winn, "cascades": 1}},
            {"name": f"winn-{cascades}", "method": "winn-gen", "options": {**winn, "cascades": cascades}},
            {"name": "wgan-gp", "method": "wgan-gp", **({"options": wgan} if wgan else {}), "from_critic": True}]


GENERATIVE_PRESETS: dict[str, dict[str, Any]] = {
    "generative-digits": {
        "description": "generative side on scikit-learn's embedded 8x8 digits (no download): WINN-single, WINN with 2 "
                       "cascades and WGAN-GP, each with its digits schedule; 500 samples each, scored by a baseline "
                       "classifier beside the real test digits; minutes on a 2-core CPU",
        "kind": "generative", "data": "digits", "arch": "vanilla", "val_size": 143, "samples": 500,
        "runs": generative_runs(2),
        "classifier": {"epochs": 10},
    },
    "generative-fashion-mnist": {
        "description": "generative side on real Fashion-MNIST (IDX files from --data-dir), sized for a 2-core CPU: the "
                       "first 10,000 training images, WINN-single and WINN with 2 cascades of 12 iterations (500 "
                       "positives and negatives an iteration, 300 synthesis steps at most) and WGAN-GP for 1,500 "
                       "generator iterations at the reference's rates; 500 samples each, scored by a baseline classifier "
                       "beside the real test images",
        "kind": "generative", "data": "fashion-mnist", "arch": "vanilla", "train_limit": 10000, "val_size": 500,
        "samples": 500, "data_dir_candidates": ["/usr/share/datasets/fashion-mnist"],
        "runs": generative_runs(2, winn=CPU_WINN, wgan={"iterations": 1500}),
        "classifier": {"epochs": 5},
    },
    "paper-gen-celeba": {
        "description": "WINN section 5.3, CelebA faces at 64x64 with Appendix C's critic (winn64): WINN-single, "
                       "WINN-4CNNs and WGAN-GP with its critic sampled by the WINN procedure (the paper's Figure 3), "
                       "the paper's schedules (GPU); aligned JPEGs from --data-dir; no score (faces have no classes "
                       "to train a scorer on; the paper shows images only): sample grids",
        "kind": "generative", "data": "celeba", "arch": "winn64", "samples": 100,
        "runs": generative_runs(4),
        "classifier": None,
    },
    "paper-gen-svhn": {
        "description": "WINN section 5.4, unsupervised SVHN with ResNet-32 critics: WINN-single, WINN-4CNNs and WGAN-GP, "
                       "the paper's schedules (GPU)",
        "kind": "generative", "data": "svhn", "arch": "resnet32", "samples": 10000,
        "runs": generative_runs(4),
        "classifier": {"epochs": 200},
    },
    "paper-gen-cifar10": {
        "description": "WINN section 5.5 / Table 1, unsupervised CIFAR-10 with ResNet-32 critics: WINN-single, "
                       "WINN-5CNNs and WGAN-GP, the paper's schedules and 50,000 samples each (GPU; the paper's "
                       "Inception score needs an Inception-v3 file: `winn-robust score --classifier inception-v3=FILE`)",
        "kind": "generative", "data": "cifar10", "arch": "resnet32", "samples": 50000,
        "runs": generative_runs(5),
        "classifier": {"epochs": 200},
    },
}
PRESETS.update(GENERATIVE_PRESETS)


def is_generative_preset(name: str) -> bool:
    return PRESETS.get(name, {}).get("kind") == "generative"


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
