"""Every number of the aggregate: per model x metric x attack x eps, the per-seed values, the
mean with its hierarchical-bootstrap interval, and for a method its paired difference from the
baseline (or a --reference defence) of the same seed, with a paired t-test and P(improvement).
The statistics themselves live in winn_robust.evaluation.seeds; this module pairs the seeds'
per-image mistakes and files the results as AggregateRows."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from winn_robust.errors import SettingError, UserError
from winn_robust.evaluation.metrics import correction_rate, error_rate
from winn_robust.evaluation.seeds import (
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_RESAMPLES,
    DIFFERENCE_VALUES,
    ERROR_VALUES,
    BootstrapInterval,
    SeedSummary,
    error_counts,
    hierarchical_bootstrap,
    paired_difference_counts,
    paired_ttest_pvalue,
    probability_of_improvement,
    summarize_seeds,
)
from winn_robust.reporting.aggregate.seed_reports import SeedReport, check_same_experiment, eps_list, names_text, seed_labels
from winn_robust.reporting.cost import ModelCost, model_costs
from winn_robust.reporting.per_example import adv_column, default_baseline
from winn_robust.units import DEFAULT_NORM, eps_text

MIN_RESAMPLES = 100


# metric -> (what it is, whether it is an error rate: errors get differences, tests and intervals)
METRICS: dict[str, tuple[str, bool]] = {
    "clean_error": ("clean error", True),
    "adv_error": ("adversarial error", True),
    "robust_error": ("robust error", True),
    "correction_by_method": ("correction rate by method", False),
    "correction_by_baseline": ("correction rate by baseline", False),
}


CLEAN_ATTACK = "none"   # the attack field of clean-error rows


ROBUST_ATTACK = "any"   # robust error: worst case over every attack and every source model


@dataclass(frozen=True)
class AggregateRow:
    """One model x metric x attack x eps across the seeds. The comparison fields (differences,
    interval, tests) are set for error metrics of methods only; `mean_interval` for error metrics."""

    model: str
    metric: str
    attack: str
    eps: float | None
    per_seed: tuple[float, ...]
    summary: SeedSummary
    mean_interval: BootstrapInterval | None = None
    per_seed_diff: tuple[float, ...] | None = None
    difference: BootstrapInterval | None = None
    ttest_p: float | None = None
    prob_improvement: float | None = None
    n_images: int = 0  # test images per seed behind the value (an attack run on a subset: its size)

    def to_dict(self, labels: Sequence[str]) -> dict[str, Any]:
        return {"model": self.model, "metric": self.metric, "attack": self.attack, "eps": self.eps,
                "n_images": self.n_images,
                "per_seed": dict(zip(labels, self.per_seed)), "summary": self.summary.to_dict(),
                "mean_interval": None if self.mean_interval is None else self.mean_interval.to_dict(),
                "per_seed_difference": None if self.per_seed_diff is None else dict(zip(labels, self.per_seed_diff)),
                "difference": None if self.difference is None else self.difference.to_dict(),
                "ttest_p": self.ttest_p, "prob_improvement": self.prob_improvement}


@dataclass(frozen=True)
class IndicatorWarning:
    """A failure indicator with status WARN on at least one seed."""

    indicator: str
    model: str | None
    eps: float | None
    attack: str | None
    seeds: tuple[str, ...]
    values: tuple[Any, ...]
    threshold: Any
    advice: str

    def describe(self, n_seeds: int) -> str:
        where = f" for {self.model}" if self.model else ""
        if self.eps is not None:
            where += f" at eps {eps_text(self.eps)}"
        if self.attack:
            where += f" under {self.attack}"
        values = ", ".join(_short(v) for v in self.values)
        threshold = "" if self.threshold is None else f"; threshold {_short(self.threshold)}"
        advice = f" {self.advice}" if self.advice else ""
        return (f"WARN {self.indicator}{where} on {len(self.seeds)} of {n_seeds} seeds ({', '.join(self.seeds)}; "
                f"values {values}{threshold}).{advice}")

    def to_dict(self) -> dict[str, Any]:
        return {"indicator": self.indicator, "model": self.model, "eps": self.eps, "attack": self.attack,
                "seeds": list(self.seeds), "values": list(self.values), "threshold": self.threshold, "advice": self.advice}


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@dataclass
class Aggregate:
    """Everything an aggregate report says."""

    seeds: list[SeedReport]
    labels: list[str]
    dataset: str
    n: int
    baseline: str
    models: tuple[str, ...]
    attacks: tuple[str, ...]
    eps: tuple[float, ...]
    table_eps: tuple[float, ...]
    rows: list[AggregateRow]
    warnings: list[IndicatorWarning]
    resamples: int
    bootstrap_seed: int
    reference: str | None = None  # a second comparison (e.g. pgd-at): every other method minus it
    reference_rows: list[AggregateRow] = field(default_factory=list)

    @property
    def norm(self) -> str:
        """The seeds' threat model (their results.json provenance; L-inf when none says)."""
        return next((s.provenance.norm for s in self.seeds if s.provenance.norm), DEFAULT_NORM)

    @property
    def methods(self) -> tuple[str, ...]:
        return self.models[1:]

    def row(self, model: str, metric: str, attack: str, eps: float | None) -> AggregateRow:
        for row in self.rows:
            if (row.model, row.metric, row.attack, row.eps) == (model, metric, attack, eps):
                return row
        raise KeyError((model, metric, attack, eps))


def _adv_wrong(seed: SeedReport, attack: str, eps: float, source: str, target: str) -> np.ndarray:
    key = (attack, eps, source, target)
    if key not in seed.adv:
        column = adv_column(attack, eps, source, target)
        raise UserError(f"{seed.folder}/per_example.csv has no column {column}; it is needed for the aggregate "
                        "(rewrite the report with `winn-robust attack`)")
    preds = seed.adv[key]
    return np.asarray(preds != seed.labels[: len(preds)])


def _wrong(seed: SeedReport, metric: str, attack: str, eps: float | None, model: str) -> np.ndarray:
    """Per-image mistakes behind an error metric of one seed."""
    if metric == "clean_error":
        return np.asarray(seed.clean[model] != seed.labels)
    assert eps is not None
    if metric == "adv_error":
        return _adv_wrong(seed, attack, eps, model, model)
    return np.asarray(seed.worst[(eps, model)], bool)


def _error_row(seeds: Sequence[SeedReport], metric: str, attack: str, eps: float | None, model: str, baseline: str,
               resamples: int, bootstrap_seed: int) -> AggregateRow:
    wrong = [_wrong(s, metric, attack, eps, model) for s in seeds]
    values = tuple(float(error_rate(w).value or 0.0) for w in wrong)
    mean_interval = hierarchical_bootstrap(np.stack([error_counts(w) for w in wrong]), ERROR_VALUES, resamples, bootstrap_seed)
    row = AggregateRow(model, metric, attack, eps, values, summarize_seeds(values), mean_interval, n_images=len(wrong[0]))
    if model == baseline:
        return row
    base_wrong = [_wrong(s, metric, attack, eps, baseline) for s in seeds]
    base_values = [float(error_rate(w).value or 0.0) for w in base_wrong]
    counts = np.stack([paired_difference_counts(m, b) for m, b in zip(wrong, base_wrong)])
    diffs = tuple(float(v) for v in (counts @ np.array(DIFFERENCE_VALUES)) / counts.sum(axis=1))
    return AggregateRow(model, metric, attack, eps, values, row.summary, mean_interval, diffs,
                        hierarchical_bootstrap(counts, DIFFERENCE_VALUES, resamples, bootstrap_seed),
                        paired_ttest_pvalue(values, base_values), probability_of_improvement(values, base_values),
                        n_images=len(wrong[0]))


def _correction_row(seeds: Sequence[SeedReport], metric: str, attack: str, eps: float, model: str, baseline: str) -> AggregateRow:
    values = []
    for seed in seeds:
        if metric == "correction_by_method":  # the method on the baseline's adversarial examples
            rate = correction_rate(_adv_wrong(seed, attack, eps, baseline, baseline), _adv_wrong(seed, attack, eps, baseline, model))
        else:  # the baseline on the method's adversarial examples
            rate = correction_rate(_adv_wrong(seed, attack, eps, model, model), _adv_wrong(seed, attack, eps, model, baseline))
        values.append(float("nan") if rate.value is None else rate.value)
    return AggregateRow(model, metric, attack, eps, tuple(values), summarize_seeds(values),
                        n_images=len(_adv_wrong(seeds[0], attack, eps, baseline, baseline)))


def _collect_warnings(seeds: Sequence[SeedReport], labels: Sequence[str]) -> list[IndicatorWarning]:
    grouped: dict[tuple[str, Any, Any, Any], dict[str, Any]] = {}
    for seed, label in zip(seeds, labels):
        for record in seed.indicators:
            if str(record.status).upper() != "WARN":
                continue
            try:
                eps = None if record.eps is None else float(record.eps)
            except (TypeError, ValueError):
                eps = None
            key = (str(record.indicator), record.model, eps, record.attack)
            entry = grouped.setdefault(key, {"seeds": [], "values": [], "threshold": record.threshold,
                                             "advice": str(record.advice or "")})
            entry["seeds"].append(label)
            entry["values"].append(record.value)
    return [IndicatorWarning(k[0], k[1], k[2], k[3], tuple(v["seeds"]), tuple(v["values"]), v["threshold"], v["advice"])
            for k, v in grouped.items()]


def aggregate_seeds(seeds: Sequence[SeedReport], baseline: str | None = None, table_eps: Sequence[float] | None = None,
                    resamples: int = DEFAULT_RESAMPLES, bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
                    reference: str | None = None) -> Aggregate:
    """Every statistic of the aggregate report, after checking the seeds can be paired."""
    if not seeds:
        raise UserError("give at least one report folder")
    if resamples < MIN_RESAMPLES:
        raise SettingError("bootstrap_resamples", f"must be at least {MIN_RESAMPLES} for a 95% percentile interval, got {resamples}")
    if bootstrap_seed < 0:
        raise SettingError("bootstrap_seed", f"must be a non-negative integer, got {bootstrap_seed}")
    seeds = list(seeds)
    check_same_experiment(seeds)
    labels = seed_labels(seeds)
    for seed, label in zip(seeds, labels):
        seed.label = label
    first = seeds[0]
    names = first.models
    baseline = default_baseline(names, [s.provenance.baseline for s in seeds], baseline)
    if baseline not in names:
        raise UserError(f"baseline {baseline!r} is not a model of {first.folder}; its models are {names_text(names)}")
    models = (baseline, *[m for m in names if m != baseline])
    eps_values = tuple(first.eps)
    if table_eps:
        missing = [e for e in table_eps if e not in eps_values]
        if missing:
            raise SettingError("eps", f"{eps_list(missing)} is not in the reports; they hold eps {eps_list(eps_values)}")
        chosen = tuple(sorted(set(table_eps)))
    elif first.provenance.table_eps is not None and first.provenance.table_eps in eps_values:
        chosen = (first.provenance.table_eps,)
    else:
        chosen = (max(eps_values),)
    attacks = tuple(first.attacks)
    runs = sorted(first.runs, key=lambda r: (attacks.index(r[0]), r[1]))

    rows = [_error_row(seeds, "clean_error", CLEAN_ATTACK, None, m, baseline, resamples, bootstrap_seed) for m in models]
    for attack, eps in runs:
        rows += [_error_row(seeds, "adv_error", attack, eps, m, baseline, resamples, bootstrap_seed) for m in models]
    for eps in eps_values:
        rows += [_error_row(seeds, "robust_error", ROBUST_ATTACK, eps, m, baseline, resamples, bootstrap_seed) for m in models]
    for metric in ("correction_by_method", "correction_by_baseline"):
        for attack, eps in runs:
            rows += [_correction_row(seeds, metric, attack, eps, m, baseline) for m in models[1:]]
    reference_rows: list[AggregateRow] = []
    if reference is not None:
        if reference not in models[1:]:
            raise SettingError("reference", f"{reference!r} is not a method of {first.folder}; its methods are "
                            f"{names_text(models[1:])}")
        for m in (m for m in models if m != reference):
            reference_rows.append(_error_row(seeds, "clean_error", CLEAN_ATTACK, None, m, reference, resamples, bootstrap_seed))
            for eps in chosen:
                reference_rows += [_error_row(seeds, "adv_error", attack, eps, m, reference, resamples, bootstrap_seed)
                                   for attack in attacks if (attack, eps) in runs]
                reference_rows.append(_error_row(seeds, "robust_error", ROBUST_ATTACK, eps, m, reference, resamples,
                                                 bootstrap_seed))
    datasets = [s.provenance.dataset for s in seeds if s.provenance.dataset]
    return Aggregate(seeds=seeds, labels=labels, dataset=datasets[0] if datasets else "unknown", n=first.n,
                     baseline=baseline, models=models, attacks=attacks, eps=eps_values, table_eps=chosen, rows=rows,
                     warnings=_collect_warnings(seeds, labels), resamples=int(resamples), bootstrap_seed=int(bootstrap_seed),
                     reference=reference, reference_rows=reference_rows)


def cost_errors(agg: Aggregate) -> tuple[list[str], dict[str, dict[str, tuple[float, ...]]]]:
    """The errors the cost table sets beside the cost, at the first table eps."""
    eps = agg.table_eps[0]
    labels = ["clean", *[a for a in agg.attacks if any(r.attack == a and r.eps == eps and r.metric == "adv_error"
                                                       for r in agg.rows)], "robust"]
    errors: dict[str, dict[str, tuple[float, ...]]] = {}
    for m in agg.models:
        values = {"clean": agg.row(m, "clean_error", CLEAN_ATTACK, None).per_seed,
                  "robust": agg.row(m, "robust_error", ROBUST_ATTACK, eps).per_seed}
        values.update({a: agg.row(m, "adv_error", a, eps).per_seed for a in labels[1:-1]})
        errors[m] = values
    return labels, errors


def aggregate_costs(agg: Aggregate) -> list[ModelCost]:
    _, errors = cost_errors(agg)
    return model_costs([s.provenance for s in agg.seeds], agg.models, errors)
