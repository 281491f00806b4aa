"""The iWGAN quality score as an adversarial-example detector, judged honestly.

    python examples/iwgan_detector.py --iwgan runs/digits-iwgan --classifier runs/digits-base \\
        --eps 1/8 --out reports/iwgan/detector

For the classifier's test set (the dataset both runs trained on; --limit N for the first N), the
detector score of an input is its iWGAN reconstruction error ||x - G(Q(x))|| (high = flagged; the
quality score exp(-error) ranks the same way, reversed). It is judged on the test images the
classifier gets right (the negatives) against their adversarial examples that fool it (the
positives), for:

- attacks that ignore the detector: FGSM and PGD (the project's, winn_robust.attacks: PGD 50 steps,
  step 2.5 eps / 50, 1 random start) at eps (pixel units, L-inf);
- an adaptive attack that also keeps the quality score high: PGD (same steps, step, random start)
  maximising, per image, CE(classifier(x'), y) - c * ||x' - G(Q(x'))|| (c = --adaptive-weight,
  one row per value), i.e. fooling the classifier while keeping the reconstruction error low.

Per row: attack success (share of correctly classified images fooled), the share that fools the
classifier AND passes the detector at 5% false positives (error <= the clean errors' 95th
percentile; the number an adaptive attacker cares about), N (negatives, positives),
ROC AUC (sklearn.metrics.roc_auc_score) and the true-positive rate at 5% false positives (the
threshold is the clean errors' 95th percentile), each with a 95% bootstrap interval (--resamples
resamples of negatives and positives separately, percentile method, seed 0). Writes
OUT/detector.csv, OUT/detector.md and OUT/errors.png (the error histograms)."""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from winn_robust.attacks import make_attack
from winn_robust.attacks.pgd import linf_step, projected_ascent, uniform_start
from winn_robust.checkpoint import load_checkpoint
from winn_robust.data import load_dataset
from winn_robust.models.base import frozen_eval
from winn_robust.storage import atomic_savefig, atomic_write_text
from winn_robust.training.generative.inspection import open_iwgan_run
from winn_robust.training.generative.iwgan import load_run_networks, reconstruction_errors
from winn_robust.units import eps_to_model, parse_fraction

STEPS = 50


class ClassifierAndError(nn.Module):
    """x -> [classifier logits, ||x - G(Q(x))||] in one output, so the project's projected ascent
    can maximise an objective of both."""

    def __init__(self, classifier: nn.Module, nets: dict[str, nn.Module]) -> None:
        super().__init__()
        self.classifier, self.encoder, self.generator = classifier, nets["encoder"], nets["generator"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        error = reconstruction_errors(x, self.generator(self.encoder(x)))
        return torch.cat([self.classifier(x), error[:, None]], dim=1)


def adaptive_pgd(model: ClassifierAndError, x: torch.Tensor, y: torch.Tensor, eps: float, weight: float,
                 generator: torch.Generator) -> torch.Tensor:
    """PGD on CE(classifier(x'), y) - weight * ||x' - G(Q(x'))||; per image, the iterate kept is
    the fooling one with the lowest reconstruction error (else the last)."""
    radius, alpha = eps_to_model(eps), eps_to_model(2.5 * eps / STEPS)
    best = x.clone()
    best_error = torch.full((len(x),), float("inf"))
    found = torch.zeros(len(x), dtype=torch.bool)

    def objective(out: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out[:, :-1], y, reduction="none") - weight * out[:, -1]

    def keep(step: int, candidate: torch.Tensor, out: torch.Tensor, value: torch.Tensor) -> None:
        fooled = out[:, :-1].argmax(1) != y
        better = fooled & (out[:, -1] < best_error)
        best[better] = candidate[better]
        best_error[better] = out[better, -1]
        found[better] = True
        if step == STEPS:
            best[~found] = candidate[~found]

    start = uniform_start(x, radius, torch.rand(x.shape, generator=generator))
    with frozen_eval(model):
        projected_ascent(model, start, objective, linf_step(x, radius, alpha), STEPS, on_iterate=keep)
    return best


def detection(clean: np.ndarray, adversarial: np.ndarray, resamples: int) -> dict[str, float]:
    """ROC AUC and TPR at 5% FPR of the error as a score, with 95% bootstrap intervals."""
    from sklearn.metrics import roc_auc_score

    def stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
        auc = float(roc_auc_score(labels, np.r_[a, b]))
        threshold = np.quantile(a, 0.95)
        return auc, float((b > threshold).mean())

    if len(adversarial) == 0 or len(clean) == 0:
        return {"auc": float("nan"), "auc_low": float("nan"), "auc_high": float("nan"), "tpr5": float("nan"),
                "tpr5_low": float("nan"), "tpr5_high": float("nan")}
    auc, tpr = stats(clean, adversarial)
    rng = np.random.default_rng(0)
    draws = np.array([stats(clean[rng.integers(0, len(clean), len(clean))],
                            adversarial[rng.integers(0, len(adversarial), len(adversarial))]) for _ in range(resamples)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return {"auc": auc, "auc_low": low[0], "auc_high": high[0], "tpr5": tpr, "tpr5_low": low[1], "tpr5_high": high[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iwgan", type=Path, required=True, help="a `train --method iwgan` run folder")
    parser.add_argument("--classifier", type=Path, required=True, help="a classifier checkpoint (best.pt) or run folder")
    parser.add_argument("--eps", default="1/8", help="L-inf budget in [0, 1] pixel units [default: 1/8]")
    parser.add_argument("--adaptive-weight", default="0.1,1", help="values of c, comma-separated [default: 0.1,1]")
    parser.add_argument("--limit", type=int, default=None, help="first N test images [default: all]")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    eps = parse_fraction(args.eps)
    device = torch.device("cpu")
    run = open_iwgan_run(args.iwgan)
    nets = load_run_networks(run, device)
    file = args.classifier / "best.pt" if args.classifier.is_dir() else args.classifier
    classifier, meta = load_checkpoint(file, device)
    if meta.dataset != run.meta.dataset:
        print(f"error: the classifier trained on {meta.dataset}, the iWGAN on {run.meta.dataset}", file=sys.stderr)
        return 2
    data = load_dataset(run.meta.dataset)
    x, y = data.test_images[:args.limit], data.test_labels[:args.limit]
    combined = ClassifierAndError(classifier, nets).eval()
    with torch.no_grad():
        out = combined(x)
    correct = out[:, :-1].argmax(1) == y
    clean_errors = out[:, -1]
    generator = torch.Generator().manual_seed(args.seed)
    attacks: list[tuple[str, str, torch.Tensor]] = []
    for name in ("fgsm", "pgd"):
        options = {"steps": STEPS, "restarts": 1} if name == "pgd" else {}
        attack = make_attack(name, options, seed=args.seed)
        attacks.append(("ignores the detector", name, attack.run(classifier, x, y, eps, generator).adversarial))
    for weight in (float(w) for w in args.adaptive_weight.split(",")):
        attacks.append(("adaptive", f"pgd on CE - {weight:g} * error", adaptive_pgd(combined, x, y, eps, weight, generator)))
    rows = []
    histograms = {"clean (correct)": clean_errors[correct].numpy()}
    for kind, name, adversarial in attacks:
        with torch.no_grad():
            result = combined(adversarial)
        fooled = correct & (result[:, :-1].argmax(1) != y)
        positives = result[fooled, -1].numpy()
        histograms[name] = positives
        numbers = detection(clean_errors[correct].numpy(), positives, args.resamples)
        threshold = float(np.quantile(clean_errors[correct].numpy(), 0.95))
        evading = fooled & (result[:, -1] <= threshold)
        rows.append({"attack": name, "kind": kind, "eps": args.eps, "negatives": int(correct.sum()),
                     "positives": int(fooled.sum()), "success": float(fooled.sum()) / max(1, int(correct.sum())),
                     "success_undetected": float(evading.sum()) / max(1, int(correct.sum())),
                     "clean_error_median": float(clean_errors[correct].median()),
                     "adversarial_error_median": float(np.median(positives)) if len(positives) else float("nan"),
                     **numbers})
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "detector.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"iWGAN reconstruction error as a detector ({run.meta.dataset}, {len(x)} test images, L-inf eps {args.eps}, "
             f"classifier {meta.method}; 95% bootstrap intervals, {args.resamples} resamples)", "",
             "| attack | kind | fools the classifier | ... and passes the detector at 5% FPR | N clean / adv | ROC AUC [95% CI] | "
             "TPR at 5% FPR [95% CI] | median error clean / adv |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['attack']} | {r['kind']} | {r['success']:.3f} | {r['success_undetected']:.3f} | "
                     f"{r['negatives']} / {r['positives']} | "
                     f"{r['auc']:.3f} [{r['auc_low']:.3f}, {r['auc_high']:.3f}] | {r['tpr5']:.3f} [{r['tpr5_low']:.3f}, "
                     f"{r['tpr5_high']:.3f}] | {r['clean_error_median']:.3f} / {r['adversarial_error_median']:.3f} |")
    atomic_write_text(args.out / "detector.md", "\n".join(lines) + "\n")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for label, values in histograms.items():
        if len(values):
            ax.hist(values, bins=30, histtype="step", label=f"{label} (N={len(values)})", density=True)
    ax.set_xlabel("reconstruction error ||x - G(Q(x))||", fontsize=8)
    ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_savefig(fig, args.out / "errors.png", dpi=110)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
