"""Statistics over several training seeds: arrays in, numbers out (no files).

One training run per method says little: the seed can move a robustness number by more than
the method does. These functions compare a method with the baseline across seeds, each seed
evaluated on the same test images:

- `hierarchical_bootstrap`: a 95% percentile interval of a mean over seeds that covers both
  the seed variance and the test-set sampling (resample seeds, then images within each seed);
- `paired_ttest_pvalue`: `scipy.stats.ttest_rel` over seeds (method vs baseline of one seed);
- `probability_of_improvement`: as in rliable, P(a random method seed has a LOWER error than a
  random baseline seed), ties counted half, from `scipy.stats.mannwhitneyu`'s U statistic.

Per-image values (wrong in {0, 1}, a paired difference in {-1, 0, +1}) take a few distinct
values, so resampling a seed's N images with replacement is exactly a multinomial draw over
the counts of those values: the bootstrap draws counts, never image indices, and is
vectorised over all resamples at once.
"""
from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import mannwhitneyu, ttest_rel

DEFAULT_RESAMPLES = 10_000
DEFAULT_BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
BOOTSTRAP_METHOD = ("hierarchical (two-level) percentile bootstrap: seeds resampled with replacement, then the test "
                    "images resampled with replacement within each drawn seed (paired: the same images for method "
                    "and baseline)")
DIFFERENCE_VALUES = (-1, 0, 1)  # method wrong - baseline wrong, per image
ERROR_VALUES = (0, 1)  # wrong, per image
MIN_SEEDS = 5  # below this a seed bootstrap has too few distinct resamples to show the seed variance


def distinct_seed_resamples(n_seeds: int) -> int:
    """How many different multisets of seeds a bootstrap over `n_seeds` seeds can draw
    (C(2n - 1, n)): 3 for 2 seeds, 10 for 3, 126 for 5."""
    return math.comb(2 * n_seeds - 1, n_seeds) if n_seeds > 0 else 0


def seed_caveat(n_seeds: int) -> str:
    """The sentence a verdict needs when it rests on fewer than MIN_SEEDS seeds ('' otherwise)."""
    if n_seeds >= MIN_SEEDS:
        return ""
    if n_seeds <= 1:
        return (f"This rests on 1 training seed: the interval and the McNemar test cover test-set sampling only, not "
                f"the spread between training runs, which can exceed the method's effect; train at least {MIN_SEEDS} "
                "seeds (--seeds 5) before claiming an effect.")
    return (f"This rests on {n_seeds} training seeds: a bootstrap over {n_seeds} seeds has only "
            f"{distinct_seed_resamples(n_seeds)} distinct seed resamples, so the interval is optimistic (too narrow) and "
            f"\"significant\" is weak evidence; use at least {MIN_SEEDS} seeds (--seeds 5) before claiming an effect.")


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample standard deviation (ddof=1, i.e. n - 1; NaN with one value), min and max over the seeds
    whose value is defined (NaN values, e.g. a correction rate with no mistakes, are left out)."""

    n: int
    mean: float
    sd: float
    min: float
    max: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_seeds(values: ArrayLike) -> SeedSummary:
    """Summary of per-seed values; undefined (NaN) values do not count."""
    array = np.asarray(values, float).ravel()
    array = array[~np.isnan(array)]
    if array.size == 0:
        return SeedSummary(0, float("nan"), float("nan"), float("nan"), float("nan"))
    values_list = array.tolist()  # statistics' exact sums: equal seeds give sd 0.0, not 1e-17
    sd = statistics.stdev(values_list) if array.size > 1 else float("nan")
    return SeedSummary(int(array.size), float(statistics.mean(values_list)), sd, float(array.min()), float(array.max()))


@dataclass(frozen=True)
class BootstrapInterval:
    """The observed mean over seeds and its percentile interval, with what produced it."""

    mean: float
    low: float
    high: float
    level: float
    resamples: int
    seed: int

    @property
    def excludes_zero(self) -> bool:
        """The test behind the word "significant" in an aggregate report."""
        return bool(self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def value_counts(per_image: ArrayLike, values: Sequence[int]) -> np.ndarray:
    """How many images take each of `values` (an array of len(values)); other values are refused."""
    array = np.asarray(per_image).ravel()
    counts = np.array([np.sum(array == v) for v in values], dtype=np.int64)
    if counts.sum() != array.size:
        raise ValueError(f"per-image values must be among {list(values)}, got {sorted(set(array.tolist()) - set(values))}")
    return counts


def paired_difference_counts(method_wrong: ArrayLike, baseline_wrong: ArrayLike) -> np.ndarray:
    """Counts of the per-image difference (method wrong - baseline wrong) in -1, 0, +1: the
    paired data of one seed, from which its error difference and its bootstrap follow."""
    method, base = np.asarray(method_wrong, bool), np.asarray(baseline_wrong, bool)
    if method.shape != base.shape:
        raise ValueError(f"method and baseline must be judged on the same images, got shapes {method.shape}, {base.shape}")
    return value_counts(method.astype(np.int64) - base.astype(np.int64), DIFFERENCE_VALUES)


def error_counts(wrong: ArrayLike) -> np.ndarray:
    """Counts of right (0) and wrong (1) images: one seed's data for a bootstrap of its error."""
    return value_counts(np.asarray(wrong, bool).astype(np.int64), ERROR_VALUES)


def seed_means(counts: ArrayLike, values: ArrayLike) -> np.ndarray:
    """Each seed's mean per-image value (e.g. its error, or its error difference)."""
    counts_arr, values_arr = _check_counts(counts, values)
    return (counts_arr @ values_arr) / counts_arr.sum(axis=1)


def _check_counts(counts: ArrayLike, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    counts_arr = np.asarray(counts, dtype=np.int64)
    values_arr = np.asarray(values, dtype=float)
    if counts_arr.ndim != 2 or counts_arr.shape[0] == 0 or counts_arr.shape[1] != values_arr.shape[0]:
        raise ValueError(f"counts must be (seeds, {values_arr.shape[0]}) with at least one seed, got {counts_arr.shape}")
    if (counts_arr < 0).any() or (counts_arr.sum(axis=1) == 0).any():
        raise ValueError("counts must be non-negative and every seed needs at least one image")
    return counts_arr, values_arr


def hierarchical_bootstrap(counts: ArrayLike, values: ArrayLike, resamples: int = DEFAULT_RESAMPLES,
                           seed: int = DEFAULT_BOOTSTRAP_SEED, level: float = CI_LEVEL) -> BootstrapInterval:
    """Percentile interval of the mean over seeds of each seed's mean per-image value.

    counts: (S, K) ints, counts[s, k] = images of seed s whose per-image value is values[k].
    Each resample draws S seeds with replacement, then for each drawn seed a multinomial of its
    N_s images with probabilities counts[s] / N_s (= resampling its images with replacement),
    and averages. The interval covers seed variance and test-set sampling; with one seed it
    covers test-set sampling only. Reproducible: the same seed gives the same interval."""
    counts_arr, values_arr = _check_counts(counts, values)
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n_seeds = counts_arr.shape[0]
    sizes = counts_arr.sum(axis=1)
    probs = counts_arr / sizes[:, None]
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    draws = rng.multinomial(sizes[drawn], probs[drawn])  # (resamples, S, K)
    stats = ((draws @ values_arr) / sizes[drawn]).mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    mean = float(seed_means(counts_arr, values_arr).mean())
    return BootstrapInterval(mean, float(low), float(high), float(level), int(resamples), int(seed))


def paired_ttest_pvalue(method: ArrayLike, baseline: ArrayLike) -> float:
    """Two-sided p of `scipy.stats.ttest_rel` over seeds (seed s of the method paired with seed s
    of the baseline). NaN (reported "n/a") with fewer than two seeds or when the differences do not
    vary (all equal, e.g. -1.5 and -1.5): the t statistic divides by their zero spread and is undefined."""
    method_arr, base_arr = np.asarray(method, float).ravel(), np.asarray(baseline, float).ravel()
    if method_arr.shape != base_arr.shape:
        raise ValueError(f"paired values need one method and one baseline value per seed, got {method_arr.size} and {base_arr.size}")
    if method_arr.size < 2:
        return float("nan")
    differences = (method_arr - base_arr).tolist()
    if max(differences) - min(differences) <= 1e-12 * max(1.0, max(abs(d) for d in differences)):
        return float("nan")  # zero variance: scipy answers 0 or NaN, neither is a p-value
    with warnings.catch_warnings():  # degenerate (constant) differences: scipy warns and answers 0 or NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_rel(method_arr, base_arr).pvalue)


def probability_of_improvement(method: ArrayLike, baseline: ArrayLike) -> float:
    """P(method error < baseline error) + 0.5 P(equal) for a random method seed and a random
    baseline seed (rliable's probability of improvement, for errors: lower is better), i.e.
    U / (n_method n_baseline) with U scipy's Mann-Whitney statistic of baseline against method."""
    method_arr, base_arr = np.asarray(method, float).ravel(), np.asarray(baseline, float).ravel()
    if method_arr.size == 0 or base_arr.size == 0:
        return float("nan")
    with warnings.catch_warnings():  # one seed each: scipy may warn about the p-value; U is still exact
        warnings.simplefilter("ignore", RuntimeWarning)
        u_baseline = mannwhitneyu(base_arr, method_arr, alternative="two-sided").statistic
    return float(u_baseline) / (method_arr.size * base_arr.size)
