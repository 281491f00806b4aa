"""The reference paper's published numbers: Lee, Xu, Fan, Tu, "Wasserstein Introspective Neural
Networks", CVPR 2018, Tables 2-4 (MNIST FGSM eps 0.125, SVHN eps 0.005, [0, 1] pixel units).

Keyed by (dataset, arch, method): percentages of clean error, FGSM adversarial error,
correction rate by method, correction rate by baseline."""
from __future__ import annotations

PAPER_NUMBERS: dict[tuple[str, str, str], tuple[float, float, float | None, float | None]] = {
    ("mnist", "vanilla", "baseline"): (0.89, 32.41, None, None),
    ("mnist", "vanilla", "icn"): (0.81, 19.02, 52.58, 58.68),
    ("mnist", "vanilla", "winn"): (0.67, 7.99, 90.00, 46.93),
    ("mnist", "resnet32", "baseline"): (0.45, 11.28, None, None),
    ("mnist", "resnet32", "winn"): (0.48, 2.05, 89.68, 43.69),
    ("svhn", "resnet32", "baseline"): (4.64, 29.29, None, None),
    ("svhn", "resnet32", "winn"): (4.50, 19.53, 74.39, 51.37),
}
