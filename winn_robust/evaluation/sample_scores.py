"""Scores of generated images under a classifier: the Inception-score formula and the Frechet
distance between Gaussians fitted to penultimate features (docs/scores.md).

Both are only "the Inception score" and "FID" when the classifier is Inception-v3; under any
other classifier they are named for it, and only figures of the same N and the same classifier
compare (FID is biased upwards at small N). The maths works on NumPy arrays in float64; the
extraction runs the classifier in eval mode, batched, without gradients."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import scipy.linalg
import torch
from scipy.special import xlogy
from torch import nn

from winn_robust.models.base import frozen_eval


def classifier_score(probs: np.ndarray, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """(mean, sd) over `splits` parts of exp(E_x KL(p(y|x) || p(y))), p(y) the part's mean, after a
    seeded shuffle (the Inception score's recipe; sd with ddof 0, as its reference code)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probabilities must be (N, classes), got shape {p.shape}")
    if not 1 <= splits <= len(p):
        raise ValueError(f"splits must be between 1 and N = {len(p)}, got {splits}")
    order = np.random.default_rng(seed).permutation(len(p))
    scores = []
    for part in np.array_split(p[order], splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def fit_gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def gaussian_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)); the trace of the square root is the sum of
    the square roots of the eigenvalues of S1 S2 (real, non-negative for covariances: round-off
    aside, so the real part, clipped at 0; so is the result), faster and sturdier than scipy.linalg.sqrtm."""
    eigenvalues = scipy.linalg.eigvals(sigma1 @ sigma2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues.real, 0.0, None)).sum()
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(value, 0.0)  # non-negative by definition; below 0 is round-off of equal Gaussians


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets."""
    return gaussian_distance(*fit_gaussian(feat_a), *fit_gaussian(feat_b))


def number(value: float) -> str:
    """Three decimals, or four significant digits once that would be unreadable."""
    return f"{value:.3f}" if abs(value) < 1e6 else f"{value:.4g}"


@dataclass(frozen=True)
class SampleScore:
    """One scoring of a sample file, with the real reference under the same classifier and N.

    `score_name` / `distance_name` are "Inception score" / "FID" only for Inception-v3."""
    score_name: str
    distance_name: str
    classifier: str            # what the classifier is (file, architecture, dataset)
    features: str              # which layer the distance uses
    dataset: str
    n: int                     # every figure below uses N images (samples, real test, real train)
    n_samples_given: int
    n_test_available: int
    splits: int
    seed: int
    score_mean: float          # the samples' score
    score_sd: float
    distance: float            # samples vs real test
    real_score_mean: float     # the real test images' score
    real_score_sd: float
    real_distance: float       # real train subset vs real test: the floor at this N
    samples: str = ""
    samples_seed: int | None = None
    samples_checkpoint: str | None = None
    classifier_sha256: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def table_lines(self) -> list[str]:
        """The printed table: samples and the real reference side by side, N on every row."""
        score_head = f"{self.score_name} ({self.splits} splits)"
        distance_head = f"{self.distance_name} to real test"
        rows = [("samples", self.n, f"{self.score_mean:.3f} ± {self.score_sd:.3f}", number(self.distance)),
                (f"real {self.dataset} test", self.n, f"{self.real_score_mean:.3f} ± {self.real_score_sd:.3f}",
                 f"{number(self.real_distance)} (real train vs test: the floor at this N)")]
        widths = [max(len(str(r[i])) for r in [("", "N", score_head, distance_head), *rows]) for i in range(4)]
        head = ("", "N", score_head, distance_head)

        def line(cells: tuple[object, ...]) -> str:
            return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
        return [f"classifier: {self.classifier}", f"features: {self.features}", line(head), *(line(r) for r in rows)]


@contextmanager
def _captured_input(layer: nn.Module | None, store: list[torch.Tensor]) -> Iterator[None]:
    """Record the input of `layer` (flattened per image) while the block runs; nothing if None."""
    if layer is None:
        yield
        return

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        store.append(inputs[0].detach().flatten(1))
    handle = layer.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def probabilities_and_features(model: nn.Module, images: torch.Tensor, feature_layer: nn.Module | None,
                               batch_size: int = 250, device: torch.device | str = "cpu"
                               ) -> tuple[np.ndarray, np.ndarray]:
    """(softmax probabilities, features) in float64 for images in the model's range ([-1, 1]).
    The features are the input of `feature_layer` (a forward pre-hook: the logits are untouched),
    or the logits themselves when it is None."""
    probs, feats = [], []
    with frozen_eval(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            captured: list[torch.Tensor] = []
            with _captured_input(feature_layer, captured):
                logits = model(images[start:start + batch_size].to(device))
            if feature_layer is not None and len(captured) != 1:
                raise RuntimeError(f"the feature layer ran {len(captured)} times in one forward pass, expected once")
            probs.append(torch.softmax(logits.double(), dim=1).cpu())
            feats.append((captured[0] if captured else logits).double().cpu())
    return torch.cat(probs).numpy(), torch.cat(feats).numpy()
