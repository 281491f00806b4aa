"""Robust error at every eps from one minimum-norm attack.

A minimum-norm attack (foolbox's FMN or DDN, DeepFool) gives each image d_i, the norm of the
smallest adversarial perturbation it found (pixel units of the threat model; 0 when the clean
image is already wrong, inf when it found none). The model's robust error at eps is then at least
#{i : d_i <= eps} / n, for every eps at once: one attack instead of a sweep. Each point carries a
95% Clopper-Pearson interval; the median d_i is the "median minimal perturbation".

The curve is an attack's estimate like any other, so it is checked against the fixed-eps attacks:
at each evaluated eps, the images the minimum-norm attack fools within eps that no fixed-eps
attack (nor the clean prediction) got wrong show the fixed-eps attacks missed them: more than
`CURVE_BEATS_FIXED_MAX` of the images is the failure indicator `curve-beats-fixed-eps`."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from winn_robust.evaluation.metrics import Rate

CURVE_POINTS = 41                 # grid points of curve.csv between 0 and the largest finite norm
CURVE_BEATS_FIXED_MAX = 0.01      # fraction of images, as for the transfer indicator


@dataclass(frozen=True)
class Curve:
    """One model's curve: the grid of eps and the robust error (with CI) at each."""
    model: str
    n: int
    eps: tuple[float, ...]
    error: tuple[Rate, ...]
    median: float               # median minimal perturbation (inf when the attack fooled at most half)
    found: int                  # images with a finite minimal perturbation

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "n": self.n, "median_min_norm": self.median, "found": self.found,
                "points": [{"eps": e, **r.to_dict()} for e, r in zip(self.eps, self.error)]}


def error_at(norms: np.ndarray, eps: float) -> Rate:
    """The fraction of images whose minimal perturbation is at most eps."""
    return Rate.of(int(np.sum(norms <= eps)), len(norms))


def curve_grid(min_norms: Mapping[str, np.ndarray], extra: Sequence[float] = ()) -> tuple[float, ...]:
    """CURVE_POINTS evenly spaced eps from 0 to the largest finite norm of any model, plus `extra`
    (the evaluated eps), sorted and de-duplicated."""
    finite = [float(v[np.isfinite(v)].max()) for v in min_norms.values() if np.isfinite(v).any()]
    top = max([*finite, *extra, 0.0])
    grid = np.linspace(0.0, top, CURVE_POINTS) if top > 0 else np.zeros(1)
    return tuple(sorted({round(float(e), 10) for e in grid} | {float(e) for e in extra}))


def compute_curves(min_norms: Mapping[str, np.ndarray], extra: Sequence[float] = ()) -> dict[str, Curve]:
    grid = curve_grid(min_norms, extra)
    out = {}
    for model, norms in min_norms.items():
        norms = np.asarray(norms, dtype=np.float64)
        median = float(np.median(norms)) if len(norms) else float("nan")
        out[model] = Curve(model, len(norms), grid, tuple(error_at(norms, e) for e in grid), median,
                           int(np.isfinite(norms).sum()))
    return out


def beats_fixed(norms: np.ndarray, worst_wrong: np.ndarray, eps: float) -> tuple[float, int, int]:
    """(fraction, count, n) of the first n images the minimum-norm attack fools within eps and the
    fixed-eps attacks do not (n = the images both cover)."""
    n = min(len(norms), len(worst_wrong))
    extra = (np.asarray(norms[:n]) <= eps) & ~np.asarray(worst_wrong[:n], dtype=bool)
    return (float(extra.mean()) if n else 0.0), int(extra.sum()), n
