"""Does an iWGAN run's quality score rank real inputs above others? (the iWGAN paper's 5.1 Figure 4
and its Figure 7 claim, as a number).

    python examples/iwgan_quality_ranking.py --checkpoint runs/ring8 --data ring8 --out ranking.json
    python examples/iwgan_quality_ranking.py --checkpoint runs/digits --data digits --out ranking.json

Toys: `--count` points drawn from the mixture (seed --seed) against as many drawn uniformly from the
square around it (data.ToyMixture.bounds, margin 1). Images: the test images against the same
images drowned in noise (0.5 x + 0.5 u, u ~ U[0, 1] per pixel, seed --seed). Writes the ROC AUC
of the quality score (real = positive; sklearn.metrics.roc_auc_score; 1 = every real input scores
above every other one), both groups' median quality and the share of real inputs above the other
group's median, as JSON."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from winn_robust.data import is_toy, load_dataset, toy_mixture
from winn_robust.storage import atomic_write_text
from winn_robust.training.generative.inspection import open_iwgan_run
from winn_robust.training.generative.iwgan import load_run_networks, quality_scores
from winn_robust.units import to_model_range, to_pixel_range


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sklearn.metrics import roc_auc_score

    generator = torch.Generator().manual_seed(args.seed)
    if is_toy(args.data):
        mixture = toy_mixture(args.data)
        real, _ = mixture.draw(args.count, generator)
        low, high = mixture.bounds()
        other = low + (high - low) * torch.rand(args.count, 2, generator=generator)
        what = f"{args.count} mixture points vs {args.count} uniform on [{low:g}, {high:g}]^2"
    else:
        test = load_dataset(args.data).test_images[:args.count]
        pixels = to_pixel_range(test)
        real = test
        other = to_model_range(0.5 * pixels + 0.5 * torch.rand(pixels.shape, generator=generator))
        what = f"{len(test)} test images vs the same drowned in noise (0.5 x + 0.5 U[0, 1])"
    nets = load_run_networks(open_iwgan_run(args.checkpoint), torch.device("cpu"))
    q_real, _ = quality_scores(nets, real)
    q_other, _ = quality_scores(nets, other)
    labels = np.r_[np.ones(len(q_real)), np.zeros(len(q_other))]
    result = {"checkpoint": str(args.checkpoint), "data": args.data, "compared": what,
              "roc_auc": float(roc_auc_score(labels, np.r_[q_real.numpy(), q_other.numpy()])),
              "median_quality_real": float(q_real.median()), "median_quality_other": float(q_other.median()),
              "share_real_above_other_median": float((q_real > q_other.median()).float().mean())}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
