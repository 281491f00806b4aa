"""The aggregate report over several seeds: one report folder per training seed (a baseline and
one or more methods evaluated on the same test images) -> table.md, summary.md, table.csv,
results.json and error-vs-eps plots, computed from each folder's per_example.csv alone.

One seed says little: the seed can move a robustness number by more than the method does. So
every method-vs-baseline difference is paired within its seed folder, averaged over seeds, and
given a 95% interval that covers seed variance and test-set sampling (the statistics live in
`winn_robust.evaluation.seeds`); the verdict paragraph says "significant" only when that
interval excludes 0.

per_example.csv columns read here (schema 2, and schema 1 of older reports):
    index, label, clean:<model>
    adv[attack=<attack>,eps=<eps>,src=<source>]:<target>    (schema 1: adv[eps=<eps>,src=<source>]:<target>)
    worst[eps=<eps>]:<model>   1 = wrong clean or on at least one adversarial example at eps
                               (schema 1 has none: computed from the clean and adv columns)
"""
from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from winn_robust.errors import UserError
from winn_robust.evaluation.metrics import correction_rate, error_rate
from winn_robust.evaluation.seeds import (
    BOOTSTRAP_METHOD,
    CI_LEVEL,
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
    seed_caveat,
    summarize_seeds,
)
from winn_robust.reporting.cost import ModelCost, cost_records, cost_table, has_costs, model_costs, plot_cost
from winn_robust.reporting.files import read_results, write_json
from winn_robust.reporting.per_example import adv_column, default_baseline, format_eps, read_per_example
from winn_robust.reporting.plots import MARKERS, save_figure
from winn_robust.storage import atomic_write_text
from winn_robust.units import DEFAULT_NORM, NORM_LABELS, PIXEL_UNITS, eps_text, eps_unit

AGGREGATE_SCHEMA_VERSION = 1
MIN_RESAMPLES = 100

# metric -> (what it is, whether it is an error rate: errors get differences, tests and intervals)
METRICS: dict[str, tuple[str, bool]] = {
    "clean_error": ("clean error", True),
    "adv_error": ("adversarial error", True),
    "robust_error": ("robust error", True),
    "correction_by_method": ("correction rate by method", False),
    "correction_by_baseline": ("correction rate by baseline", False),
}
CI_METHOD_SHORT = "95% hierarchical percentile bootstrap (seeds, then test images within each seed; paired)"
CLEAN_ATTACK = "none"   # the attack field of clean-error rows
ROBUST_ATTACK = "any"   # robust error: worst case over every attack and every source model


# ----------------------------------------------------------------------------- one seed folder
@dataclass
class SeedReport:
    """One seed's report folder, parsed: predictions, and what its results.json says."""

    folder: Path
    schema: int
    index: np.ndarray
    labels: np.ndarray
    clean: dict[str, np.ndarray]
    adv: dict[tuple[str, float, str, str], np.ndarray]  # (attack, eps, source, target) -> predictions
    worst: dict[tuple[float, str], np.ndarray]  # (eps, model) -> 1 = robust error (from the file or computed)
    provenance: dict[str, Any] = field(default_factory=dict)
    indicators: list[dict[str, Any]] = field(default_factory=list)
    has_results_json: bool = False
    label: str = ""

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def models(self) -> list[str]:
        return list(self.clean)

    @property
    def attacks(self) -> list[str]:
        return list(dict.fromkeys(key[0] for key in self.adv))

    @property
    def eps(self) -> list[float]:
        return sorted({key[1] for key in self.adv} | {key[0] for key in self.worst})

    @property
    def seed(self) -> Any:
        """The training seed (winn-robust's reports record it as `training_seed`; `seed` is the
        evaluation's attack seed in newer reports)."""
        return self.provenance.get("training_seed", self.provenance.get("seed") if "evaluation" not in self.provenance
                                   else None)

    @property
    def runs(self) -> list[tuple[str, float]]:
        """(attack, eps) pairs that ran, in file order."""
        return list(dict.fromkeys((key[0], key[1]) for key in self.adv))


def read_seed_report(path: str | Path) -> SeedReport:
    """Parse a report folder (or its per_example.csv) of either schema (reporting/per_example.py
    owns the format); results.json beside it is optional (provenance, baseline, dataset, seed,
    failure indicators)."""
    path = Path(path)
    csv_path = path / "per_example.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise UserError(f"no per_example.csv at {csv_path}; give report folders written by `winn-robust attack` or `reproduce`")
    document = read_results(csv_path.parent / "results.json")
    provenance = dict(document.get("provenance") or {})
    parsed = read_per_example(csv_path, attack=str(provenance.get("attack") or "unknown"))
    indicators = [dict(r) for r in document.get("indicators") or [] if isinstance(r, Mapping)]
    return SeedReport(folder=csv_path.parent, schema=parsed.schema, index=parsed.index, labels=parsed.labels,
                      clean=parsed.clean, adv=parsed.adv, worst=parsed.worst, provenance=provenance,
                      indicators=indicators, has_results_json=bool(document))


# ----------------------------------------------------------------------------- checks across seeds
def _names(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values) or "none"


def _eps_list(values: Sequence[float]) -> str:
    return ", ".join(eps_text(e) for e in values) or "none"


def check_same_experiment(seeds: Sequence[SeedReport]) -> None:
    """Refuse folders that cannot be paired: the same folder twice, or another dataset, test
    set, model set, baseline, attack set or eps set than the first folder's."""
    seen: dict[Path, Path] = {}
    for seed in seeds:
        key = seed.folder.resolve()
        if key in seen:
            raise UserError(f"report folder {seed.folder} is given twice (also as {seen[key]}); give each seed's report folder once")
        seen[key] = seed.folder
    first = seeds[0]
    for other in seeds[1:]:
        a, b = first.folder, other.folder
        data_a, data_b = first.provenance.get("dataset"), other.provenance.get("dataset")
        if data_a is not None and data_b is not None and data_a != data_b:
            raise UserError(f"report folders hold different datasets: {a} is {data_a}, {b} is {data_b}; "
                            "aggregate only seeds of one experiment")
        if first.n != other.n:
            raise UserError(f"report folders use different test sets: {a} has N = {first.n} test images, {b} has "
                            f"N = {other.n}; evaluate every seed on the same test images (same --data and --limit)")
        if not np.array_equal(first.index, other.index):
            raise UserError(f"report folders use different test sets: the index columns of {a} and {b} differ; "
                            "evaluate every seed on the same test images (same --data and --limit)")
        if not np.array_equal(first.labels, other.labels):
            raise UserError(f"report folders use different test sets: the label columns of {a} and {b} differ; "
                            "evaluate every seed on the same test images (same --data and --limit)")
        if set(first.models) != set(other.models):
            raise UserError(f"report folders hold different models: {a} has {_names(first.models)}, {b} has "
                            f"{_names(other.models)}; give folders that evaluate the same models (same names)")
        base_a, base_b = first.provenance.get("baseline"), other.provenance.get("baseline")
        if base_a is not None and base_b is not None and base_a != base_b:
            raise UserError(f"report folders name different baselines: {a} has {base_a}, {b} has {base_b}; "
                            "give folders with the same baseline, or name it with --baseline")
        if first.eps != other.eps:
            raise UserError(f"report folders hold different eps: {a} has {_eps_list(first.eps)}, {b} has "
                            f"{_eps_list(other.eps)}; attack every seed at the same eps")
        if set(first.attacks) != set(other.attacks):
            raise UserError(f"report folders hold different attacks: {a} has {_names(first.attacks)}, {b} has "
                            f"{_names(other.attacks)}; attack every seed with the same attacks")
        sizes_a = {(k[0], k[1]): len(v) for k, v in first.adv.items()}
        sizes_b = {(k[0], k[1]): len(v) for k, v in other.adv.items()}
        if sizes_a != sizes_b:
            run = next(r for r in sorted(set(sizes_a) | set(sizes_b), key=str) if sizes_a.get(r) != sizes_b.get(r))
            raise UserError(f"report folders ran {run[0]} at eps {eps_text(run[1])} on different images: {a} on "
                            f"{sizes_a.get(run, 0)}, {b} on {sizes_b.get(run, 0)}; use the same --attack-limit for every seed")


def _seed_labels(seeds: Sequence[SeedReport]) -> list[str]:
    """Short unique names for table columns: 'seed <s>' from results.json, else the folder names,
    else 'run 1', 'run 2', ... (results.json lists each label's folder)."""
    from_provenance = [f"seed {s.seed}" for s in seeds if s.seed is not None]
    if len(from_provenance) == len(seeds) and len(set(from_provenance)) == len(seeds):
        return from_provenance
    names = [s.folder.resolve().name for s in seeds]
    if len(set(names)) == len(names) and all(names):
        return names
    return [f"run {i + 1}" for i in range(len(seeds))]


# ----------------------------------------------------------------------------- statistics
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
        return str(next((s.provenance["norm"] for s in self.seeds if s.provenance.get("norm")), DEFAULT_NORM))

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
            if str(record.get("status", "")).upper() != "WARN":
                continue
            try:
                eps = None if record.get("eps") is None else float(record["eps"])
            except (TypeError, ValueError):
                eps = None
            key = (str(record.get("indicator", "unnamed indicator")), record.get("model"), eps, record.get("attack"))
            entry = grouped.setdefault(key, {"seeds": [], "values": [], "threshold": record.get("threshold"),
                                             "advice": str(record.get("advice") or "")})
            entry["seeds"].append(label)
            entry["values"].append(record.get("value"))
    return [IndicatorWarning(k[0], k[1], k[2], k[3], tuple(v["seeds"]), tuple(v["values"]), v["threshold"], v["advice"])
            for k, v in grouped.items()]


def aggregate_seeds(seeds: Sequence[SeedReport], baseline: str | None = None, table_eps: Sequence[float] | None = None,
                    resamples: int = DEFAULT_RESAMPLES, bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
                    reference: str | None = None) -> Aggregate:
    """Every statistic of the aggregate report, after checking the seeds can be paired."""
    if not seeds:
        raise UserError("give at least one report folder")
    if resamples < MIN_RESAMPLES:
        raise UserError(f"--bootstrap-resamples must be at least {MIN_RESAMPLES} for a 95% percentile interval, got {resamples}")
    if bootstrap_seed < 0:
        raise UserError(f"--bootstrap-seed must be a non-negative integer, got {bootstrap_seed}")
    seeds = list(seeds)
    check_same_experiment(seeds)
    labels = _seed_labels(seeds)
    for seed, label in zip(seeds, labels):
        seed.label = label
    first = seeds[0]
    names = first.models
    baseline = default_baseline(names, [s.provenance.get("baseline") for s in seeds], baseline)
    if baseline not in names:
        raise UserError(f"baseline {baseline!r} is not a model of {first.folder}; its models are {_names(names)}")
    models = (baseline, *[m for m in names if m != baseline])
    eps_values = tuple(first.eps)
    if table_eps:
        missing = [e for e in table_eps if e not in eps_values]
        if missing:
            raise UserError(f"--eps {_eps_list(missing)} is not in the reports; they hold eps {_eps_list(eps_values)}")
        chosen = tuple(sorted(set(table_eps)))
    elif first.provenance.get("table_eps") in eps_values:
        chosen = (float(first.provenance["table_eps"]),)
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
            raise UserError(f"--reference {reference!r} is not a method of {first.folder}; its methods are "
                            f"{_names(models[1:])}")
        for m in (m for m in models if m != reference):
            reference_rows.append(_error_row(seeds, "clean_error", CLEAN_ATTACK, None, m, reference, resamples, bootstrap_seed))
            for eps in chosen:
                reference_rows += [_error_row(seeds, "adv_error", attack, eps, m, reference, resamples, bootstrap_seed)
                                   for attack in attacks if (attack, eps) in runs]
                reference_rows.append(_error_row(seeds, "robust_error", ROBUST_ATTACK, eps, m, reference, resamples,
                                                 bootstrap_seed))
    datasets = [s.provenance.get("dataset") for s in seeds if s.provenance.get("dataset")]
    return Aggregate(seeds=seeds, labels=labels, dataset=str(datasets[0]) if datasets else "unknown", n=first.n,
                     baseline=baseline, models=models, attacks=attacks, eps=eps_values, table_eps=chosen, rows=rows,
                     warnings=_collect_warnings(seeds, labels), resamples=int(resamples), bootstrap_seed=int(bootstrap_seed),
                     reference=reference, reference_rows=reference_rows)


# ----------------------------------------------------------------------------- reference and cost
def reference_verdict(agg: Aggregate) -> str:
    """Sentences comparing every other method with the reference (e.g. pgd-at), as the verdict
    compares them with the baseline: robust error at the table eps and clean error."""
    if agg.reference is None:
        return ""
    sentences = []
    for row in agg.reference_rows:
        if row.difference is None or row.metric == "adv_error":
            continue
        verb, amount = _change(row.difference)
        what = "clean error" if row.metric == "clean_error" else f"robust error at eps {format_eps(row.eps or 0)}"
        sentences.append(f"{row.model} {verb} {what} {amount} against {agg.reference}.")
    return (f"Against the reference defence {agg.reference} (method minus {agg.reference} of the same seed, same "
            "intervals): " + " ".join(sentences))


def reference_table(agg: Aggregate) -> list[str]:
    lines = [f"## Against the reference: {agg.reference}", "",
             f"Each model's error minus {agg.reference}'s in the same seed, percentage points (negative = fewer errors "
             f"than {agg.reference}); 95% CI as above.", "",
             "| model | metric | attack | eps | mean | difference, points (95% CI) | paired t-test p |", "|---" * 7 + "|"]
    for row in agg.reference_rows:
        d = row.difference
        diff = "-" if d is None else f"{_pts(d.mean, sign=True)} [{_pts(d.low, sign=True)}, {_pts(d.high, sign=True)}]"
        eps = "-" if row.eps is None else format_eps(row.eps)
        lines.append(f"| {row.model} | {METRICS[row.metric][0]} | {row.attack} | {eps} | {_pct(row.summary.mean)} | {diff} | "
                     f"{_num(row.ttest_p, '.3g')} |")
    return lines


def _cost_errors(agg: Aggregate) -> tuple[list[str], dict[str, dict[str, tuple[float, ...]]]]:
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
    _, errors = _cost_errors(agg)
    return model_costs([s.provenance for s in agg.seeds], agg.models, errors)


def cost_section(agg: Aggregate) -> list[str]:
    costs = aggregate_costs(agg)
    if not has_costs(costs):
        return []
    labels, _ = _cost_errors(agg)
    return ["## Cost of training beside robustness", "",
            f"Per model, means over {len(agg.seeds)} seeds: how best.pt was selected (and the epoch chosen in each seed), "
            "seconds of training passes (validation and selection excluded; wall time depends on what ran beside it), "
            "forward and backward image-passes (counted by hooks on the model), and the errors at eps "
            f"{format_eps(agg.table_eps[0])}. cost.png draws robust error against training cost.", "",
            *cost_table(costs, labels)]


# ----------------------------------------------------------------------------- verdict
def _points(value: float) -> str:
    return f"{100 * value:.1f}"


def _change(diff: BootstrapInterval) -> tuple[str, str]:
    """('lowers', 'by 11.2 points (95% CI 6.1 to 16.3, significant)'): a reduction is stated
    with the interval of the reduction, an increase with the interval of the increase."""
    significance = "significant" if diff.excludes_zero else "not significant"
    if diff.mean == 0:
        return "leaves", f"unchanged (0.0 points, 95% CI {_points(diff.low)} to {_points(diff.high)}, {significance})"
    if diff.mean < 0:
        verb, size, low, high = "lowers", -diff.mean, -diff.high, -diff.low
    else:
        verb, size, low, high = "raises", diff.mean, diff.low, diff.high
    return verb, f"by {_points(size)} points (95% CI {_points(low)} to {_points(high)}, {significance})"


def _difference(agg: Aggregate, model: str, metric: str, attack: str, eps: float | None) -> BootstrapInterval:
    diff = agg.row(model, metric, attack, eps).difference
    if diff is None:
        raise ValueError(f"{model} has no difference for {metric}")
    return diff


def verdict(agg: Aggregate) -> str:
    """The verdict paragraph: for each method, its adversarial error under every attack and its
    robust error at the table eps, then clean error, each as a difference from the baseline of the
    same seed with its 95% interval; then every failure indicator that warned on any seed."""
    n_seeds = len(agg.seeds)
    seeds_text = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    sentences = [] if agg.methods else [f"The reports hold only the baseline ({agg.baseline}): no method to compare."]
    for method in agg.methods:
        for eps in agg.table_eps:
            clauses: list[str] = []
            first_verb = ""
            for attack in agg.attacks:
                verb, amount = _change(_difference(agg, method, "adv_error", attack, eps))
                if not clauses:
                    first_verb = verb
                    clauses.append(f"{verb} {attack} adversarial error at eps {eps_text(eps)} {amount} "
                                   f"against the baseline ({agg.baseline})")
                else:
                    clauses.append(f"under {attack} {amount}" if verb == first_verb else f"under {attack} it {verb} it {amount}")
            sentences.append(f"Across {seeds_text} {method} " + "; ".join(clauses) + ".")
            verb, amount = _change(_difference(agg, method, "robust_error", ROBUST_ATTACK, eps))
            sentences.append(f"It {verb} robust error at eps {eps_text(eps)} (wrong on the clean image or under at "
                             f"least one attack) {amount}.")
        verb, amount = _change(_difference(agg, method, "clean_error", CLEAN_ATTACK, None))
        sentences.append(f"{method} {verb} clean error {amount}.")
    sentences.append(f"Differences are method minus baseline of the same seed, in percentage points of error over "
                     f"N = {agg.n} {agg.dataset} test images per seed; 95% CIs from a hierarchical bootstrap over seeds "
                     f"and test images ({agg.resamples:,} resamples, seed {agg.bootstrap_seed}); \"significant\" means "
                     "the CI excludes 0.")
    caveat = seed_caveat(n_seeds)
    if caveat:
        sentences.append(caveat)
    lines = [" ".join(sentences)]
    if agg.warnings:
        lines += ["", "Failure indicators that warned (from the seeds' results.json):", ""]
        lines += [f"- {w.describe(n_seeds)}" for w in agg.warnings]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- tables
def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.2f}%"


def _pts(value: float | None, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:+.2f}" if sign else f"{100 * value:.2f}"


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def _seed_cells(row: AggregateRow, flip: bool = False) -> list[str]:
    values = [1 - v for v in row.per_seed] if flip else list(row.per_seed)
    if row.per_seed_diff is None:
        return [_pct(v) for v in values]
    diffs = [-d for d in row.per_seed_diff] if flip else list(row.per_seed_diff)
    return [f"{_pct(v)} ({_pts(d, sign=True)})" for v, d in zip(values, diffs)]


def _error_table(agg: Aggregate, metric: str, attack: str, eps: float | None, shown: str = "error") -> list[str]:
    """One error metric across seeds; `shown` = "accuracy" states it as 1 - error (differences,
    their intervals, min and max flipped accordingly; the tests do not change)."""
    flip = shown == "accuracy"
    lines = ["| model | " + " | ".join(agg.labels) + " | mean | sd (points) | min | max | difference, points (95% CI) "
             "| paired t-test p | P(improvement) |", "|---" * (len(agg.labels) + 8) + "|"]
    for model in agg.models:
        row = agg.row(model, metric, attack, eps)
        s = row.summary
        mean, low, high = (1 - s.mean, 1 - s.max, 1 - s.min) if flip else (s.mean, s.min, s.max)
        if row.difference is None:
            comparison = ["-", "-", "-"]
        else:
            d = row.difference
            d_mean, d_low, d_high = (-d.mean, -d.high, -d.low) if flip else (d.mean, d.low, d.high)
            comparison = [f"{_pts(d_mean, sign=True)} [{_pts(d_low, sign=True)}, {_pts(d_high, sign=True)}]",
                          _num(row.ttest_p, ".3g"), _num(row.prob_improvement, ".2f")]
        lines.append(f"| {model} | " + " | ".join(_seed_cells(row, flip)) + f" | {_pct(mean)} | {_pts(s.sd)} | "
                     f"{_pct(low)} | {_pct(high)} | " + " | ".join(comparison) + " |")
    return lines


def _correction_table(agg: Aggregate, attack: str, eps: float) -> list[str]:
    lines = ["| model | rate | " + " | ".join(agg.labels) + " | mean | sd (points) | min | max | seeds defined |",
             "|---" * (len(agg.labels) + 7) + "|"]
    for model in agg.methods:
        for metric in ("correction_by_method", "correction_by_baseline"):
            row = agg.row(model, metric, attack, eps)
            s = row.summary
            lines.append(f"| {model} | {METRICS[metric][0]} | " + " | ".join(_seed_cells(row)) +
                         f" | {_pct(s.mean)} | {_pts(s.sd)} | {_pct(s.min)} | {_pct(s.max)} | {s.n} of {len(agg.seeds)} |")
    return lines


def _statistics_lines(agg: Aggregate) -> list[str]:
    return [f"- interval: 95% {BOOTSTRAP_METHOD}; {agg.resamples:,} resamples, bootstrap seed {agg.bootstrap_seed}",
            "- difference: method error minus the baseline's error in the same seed folder (per seed, then the mean over seeds)",
            "- sd: standard deviation over seeds (ddof=1); paired t-test: scipy.stats.ttest_rel over seeds, two-sided "
            "(n/a with one seed, or when every seed has the same difference: zero variance leaves t undefined)",
            "- P(improvement): the probability that a random method seed has a lower error than a random baseline seed, "
            "ties counted half (rliable's probability of improvement, from scipy.stats.mannwhitneyu's U)",
            "- per-seed McNemar tests are in each seed folder's own table.md"]


def _seed_lines(agg: Aggregate) -> list[str]:
    return [f"- {label}: {seed.folder} (per_example.csv schema {seed.schema}"
            + ("" if seed.has_results_json else ", no results.json") + ")" for label, seed in zip(agg.labels, agg.seeds)]


def _subset_note(agg: Aggregate, metric: str, attack: str, eps: float) -> str:
    """', N = 500 per seed' when the attack ran on the first images only."""
    try:
        n = agg.row(agg.baseline, metric, attack, eps).n_images
    except KeyError:
        return ""
    return f", N = {n} per seed (the first {n} test images)" if n and n != agg.n else ""


def aggregate_markdown(agg: Aggregate, shown: str = "error") -> str:
    """table.md: the verdict, what was aggregated and how, then the tables at the table eps (as
    error, or with `shown` = "accuracy" as 1 - error; the verdict is stated in error)."""
    old = any(s.schema == 1 for s in agg.seeds)
    word = "accuracy" if shown == "accuracy" else "error"
    cells = ("Per-seed cells of a method: its accuracy (1 - error, as RobustBench reports it), and in parentheses its "
             "difference from the same seed's baseline in percentage points (positive = more accurate than the "
             "baseline); the verdict above is stated in error.") if shown == "accuracy" else (
        "Per-seed cells of a method: its error, and in parentheses its difference from the same seed's baseline in "
        "percentage points (negative = fewer errors than the baseline).")
    lines = [f"# Aggregate robustness report: {len(agg.seeds)} seeds", "", verdict(agg), "",
             *([reference_verdict(agg), ""] if agg.reference else []),
             ("" if agg.norm == DEFAULT_NORM else f"Threat model: {NORM_LABELS[agg.norm]}. ") +
             f"Dataset: {agg.dataset}, N = {agg.n} test images (the same images in every seed). Baseline: {agg.baseline}. "
             f"Methods: {_names(agg.methods)}. Attacks: {_names(agg.attacks)}. eps in {eps_unit(agg.norm)}: {_eps_list(agg.eps)}; "
             f"the tables show eps {_eps_list(agg.table_eps)}, table.csv and results.json every eps.", "",
             "Seeds:", "", *_seed_lines(agg), "", "Statistics:", "", *_statistics_lines(agg), "",
             "Rates in percent. " + cells, "",
             f"## Clean {word}", "", *_error_table(agg, "clean_error", CLEAN_ATTACK, None, shown)]
    for eps in agg.table_eps:
        for attack in agg.attacks:
            lines += ["", f"## Adversarial {word}: {attack}, eps = {eps_text(eps)} ({PIXEL_UNITS})"
                      + _subset_note(agg, "adv_error", attack, eps), "",
                      f"Each model's {word} on its own (white-box) adversarial examples.", "",
                      *_error_table(agg, "adv_error", attack, eps, shown)]
        lines += ["", f"## Robust {word}, eps = {eps_text(eps)}" + _subset_note(agg, "robust_error", ROBUST_ATTACK, eps), "",
                  "Wrong on the clean image or on at least one adversarial example at this eps (every attack, crafted on "
                  "every model)" + ("; computed from the adv columns of the schema-1 per_example.csv files." if old else "."),
                  "", *_error_table(agg, "robust_error", ROBUST_ATTACK, eps, shown)]
        if agg.methods:
            for attack in agg.attacks:
                lines += ["", f"## Correction rates: {attack}, eps = {eps_text(eps)}", "",
                          "By method: 1 - N_{base and M} / N_base on the baseline's adversarial examples; by baseline: "
                          "1 - N_{M and base} / N_M on the method's. n/a: no mistakes to correct in that seed.", "",
                          *_correction_table(agg, attack, eps)]
    if agg.reference:
        lines += ["", *reference_table(agg)]
    cost = cost_section(agg)
    if cost:
        lines += ["", *cost]
    return "\n".join(lines) + "\n"


def summary_markdown(agg: Aggregate) -> str:
    """summary.md: the verdict, the seed folders and how the statistics were computed."""
    return "\n".join([f"# Summary: {len(agg.seeds)} seeds", "", verdict(agg), "",
                      *([reference_verdict(agg), ""] if agg.reference else []),
                      *([*cost_section(agg), ""] if cost_section(agg) else []), "Seed folders:", "", *_seed_lines(agg),
                      "", "Statistics:", "", *_statistics_lines(agg), "",
                      "All tables: table.md (percent), table.csv (fractions), results.json (everything)."]) + "\n"


def aggregate_frame(agg: Aggregate) -> pd.DataFrame:
    """table.csv: one row per model x metric x attack x eps, fractions (not percent)."""
    records = []
    for row in agg.rows:
        record: dict[str, Any] = {"model": row.model, "baseline": agg.baseline, "metric": row.metric, "attack": row.attack,
                                  "eps": row.eps, "eps_unit": eps_unit(agg.norm), "n_seeds": row.summary.n,
                                  "n_images": row.n_images or agg.n}
        record.update({f"value:{label}": v for label, v in zip(agg.labels, row.per_seed)})
        record.update({"mean": row.summary.mean, "sd": row.summary.sd, "min": row.summary.min, "max": row.summary.max,
                       "mean_ci_low": row.mean_interval.low if row.mean_interval else None,
                       "mean_ci_high": row.mean_interval.high if row.mean_interval else None})
        diffs = row.per_seed_diff or (None,) * len(agg.labels)
        record.update({f"diff:{label}": d for label, d in zip(agg.labels, diffs)})
        d = row.difference
        record.update({"diff_mean": d.mean if d else None, "diff_ci_low": d.low if d else None,
                       "diff_ci_high": d.high if d else None, "ttest_p": row.ttest_p, "prob_improvement": row.prob_improvement,
                       "bootstrap_resamples": agg.resamples, "bootstrap_seed": agg.bootstrap_seed,
                       "ci_method": CI_METHOD_SHORT})
        records.append(record)
    frame = pd.DataFrame(records)
    text = ["model", "baseline", "metric", "attack", "eps_unit", "ci_method"]
    counts = ["n_seeds", "n_images", "bootstrap_resamples", "bootstrap_seed"]
    return frame.astype({**{c: "Int64" for c in counts},
                         **{c: "float64" for c in frame.columns if c not in text and c not in counts}})


def aggregate_document(agg: Aggregate) -> dict[str, Any]:
    """results.json: every statistic, the seed folders, how it was computed (NaN -> null on writing)."""
    return {
        "schema_version": AGGREGATE_SCHEMA_VERSION, "kind": "winn-robust aggregate over seeds",
        "dataset": agg.dataset, "n_images": agg.n, "baseline": agg.baseline, "models": list(agg.models),
        "attacks": list(agg.attacks), "eps": list(agg.eps), "table_eps": list(agg.table_eps), "eps_unit": eps_unit(agg.norm),
        "seed_folders": [{"label": label, "folder": str(seed.folder), "seed": seed.seed, "per_example_schema": seed.schema,
                          "has_results_json": seed.has_results_json} for label, seed in zip(agg.labels, agg.seeds)],
        "statistics": {"interval": f"{int(CI_LEVEL * 100)}% {BOOTSTRAP_METHOD}", "bootstrap_resamples": agg.resamples,
                       "bootstrap_seed": agg.bootstrap_seed, "level": CI_LEVEL,
                       "sd": "over seeds, ddof=1", "paired_test": "scipy.stats.ttest_rel over seeds, two-sided",
                       "prob_improvement": "P(method seed error < baseline seed error) + 0.5 P(equal), from "
                                           "scipy.stats.mannwhitneyu's U"},
        "verdict": verdict(agg), "warnings": [w.to_dict() for w in agg.warnings],
        "rows": [row.to_dict(agg.labels) for row in agg.rows],
        **({"reference": agg.reference, "reference_verdict": reference_verdict(agg),
            "reference_rows": [row.to_dict(agg.labels) for row in agg.reference_rows]} if agg.reference else {}),
        **({"cost": cost_records(aggregate_costs(agg))} if has_costs(aggregate_costs(agg)) else {})}


# ----------------------------------------------------------------------------- plots

def _shown_value(value: float, metric: str) -> float:
    return 100 * (1 - value) if metric == "accuracy" else 100 * value


def _shown_interval(interval: BootstrapInterval | None, metric: str) -> tuple[float, float]:
    if interval is None:
        return np.nan, np.nan
    if metric == "accuracy":
        return 100 * (1 - interval.high), 100 * (1 - interval.low)
    return 100 * interval.low, 100 * interval.high


def _attack_n(agg: Aggregate, attack: str, eps: Sequence[float]) -> str:
    sizes = sorted({agg.row(agg.baseline, "adv_error", attack, e).n_images or agg.n for e in eps})
    return ", ".join(map(str, sizes))


def _draw_attack(ax: Any, agg: Aggregate, attack: str, metric: str = "error") -> None:
    eps = sorted({row.eps for row in agg.rows if row.metric == "adv_error" and row.attack == attack and row.eps is not None})
    colors = [f"C{i % 10}" for i in range(len(agg.models))]
    for i, model in enumerate(agg.models):
        rows = [agg.row(model, "adv_error", attack, e) for e in eps]
        for s in range(len(agg.seeds)):
            ax.plot(eps, [_shown_value(r.per_seed[s], metric) for r in rows], color=colors[i], alpha=0.25, linewidth=0.8)
        ax.plot(eps, [_shown_value(r.summary.mean, metric) for r in rows], color=colors[i],
                marker=MARKERS[i % len(MARKERS)], linewidth=1.8, label=f"{model} (mean)")
        bands = [_shown_interval(r.mean_interval, metric) for r in rows]
        ax.fill_between(eps, [b[0] for b in bands], [b[1] for b in bands], color=colors[i], alpha=0.2, linewidth=0)
    ax.set_xlim(0, max(eps) * 1.05 if eps and max(eps) > 0 else 1)
    ax.set_ylim(0, 100)
    ax.set_xlabel(f"eps, {PIXEL_UNITS}")
    ax.set_ylabel(f"adversarial {metric} (%)")
    ax.set_title(f"{agg.dataset}, {attack}: N = {_attack_n(agg, attack, eps)}, {len(agg.seeds)} seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _draw_single(ax: Any, agg: Aggregate, eps: float, entries: Sequence[tuple[str, str, str]], metric: str = "error") -> None:
    """Attacks run at one eps: a column per attack (its N under its name), the seeds as faint
    dots and the mean over seeds with its 95% hierarchical-bootstrap interval as an error bar."""
    width = 0.7 / max(len(agg.models), 1)
    for i, model in enumerate(agg.models):
        colour = f"C{i % 10}"
        for column, (_, metric_name, attack) in enumerate(entries):
            row = agg.row(model, metric_name, attack, eps)
            x = column + (i - (len(agg.models) - 1) / 2) * width
            ax.plot([x] * len(row.per_seed), [_shown_value(v, metric) for v in row.per_seed], linestyle="none",
                    marker=".", color=colour, alpha=0.35)
            mean = _shown_value(row.summary.mean, metric)
            low, high = _shown_interval(row.mean_interval, metric)
            ax.errorbar([x], [mean], yerr=[[mean - low], [high - mean]], color=colour, marker=MARKERS[i % len(MARKERS)],
                        capsize=4, linestyle="none", label=f"{model} (mean)" if column == 0 else None)
            ax.annotate(f"{mean:.1f}", (x, mean), textcoords="offset points", xytext=(6, -3), fontsize=7, color=colour)
    ax.set_xticks(range(len(entries)), [label for label, _, _ in entries], fontsize=8)
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{agg.dataset}, attacks at eps {eps_text(eps)}: {len(agg.seeds)} seeds", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)


def _save_figure(fig: Figure, path: Path) -> Path:
    with warnings.catch_warnings():  # fill_between with NaN bands only warns
        warnings.simplefilter("ignore", RuntimeWarning)
        return save_figure(fig, path)


PANEL_COLUMNS = 3  # wider figures wrap into rows


def _panels(agg: Aggregate) -> list[tuple[str, Any]]:
    """('sweep', attack) for attacks run at several eps; ('single', (eps, entries)) for each eps
    at which attacks ran at that eps only (with the robust error there)."""
    panels: list[tuple[str, Any]] = []
    single: dict[float, list[tuple[str, str, str]]] = {}
    for attack in agg.attacks:
        eps = sorted({r.eps for r in agg.rows if r.metric == "adv_error" and r.attack == attack and r.eps is not None})
        if len(eps) > 1:
            panels.append(("sweep", attack))
        elif eps:
            single.setdefault(eps[0], []).append((f"{attack}\nN = {_attack_n(agg, attack, eps)}", "adv_error", attack))
    for at, entries in single.items():
        if len(agg.attacks) > 1:
            n = agg.row(agg.baseline, "robust_error", ROBUST_ATTACK, at).n_images or agg.n
            entries.append((f"robust\n(any attack)\nN = {n}", "robust_error", ROBUST_ATTACK))
        panels.append(("single", (at, entries)))
    return panels


def plot_aggregate(agg: Aggregate, out_dir: Path, metric: str = "error") -> dict[str, Path]:
    """error_vs_eps.png (a panel per attack run at several eps: faint lines per seed, the mean over
    seeds and its 95% hierarchical-bootstrap band; a panel of points with intervals for the attacks
    run at one eps; at most three panels a row) and, with several attacks, error_vs_eps_<attack>.png."""
    caption = (f"faint: one per seed; band / bars: 95% CI of the mean ({BOOTSTRAP_METHOD.split(':')[0]}, "
               f"{agg.resamples:,} resamples)")
    files: dict[str, Path] = {}
    panels = _panels(agg)
    columns = min(PANEL_COLUMNS, len(panels))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(5.5 * columns, 4.2 * rows))
    for i, (kind, content) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1)
        if kind == "sweep":
            _draw_attack(ax, agg, content, metric)
        else:
            _draw_single(ax, agg, content[0], content[1], metric)
    fig.suptitle(f"adversarial {metric} vs eps; " + caption, fontsize=8)
    files["error_vs_eps.png"] = _save_figure(fig, out_dir / "error_vs_eps.png")
    if len(agg.attacks) > 1:
        for kind, content in panels:
            for attack in [content] if kind == "sweep" else [e[2] for e in content[1] if e[1] == "adv_error"]:
                name = "error_vs_eps_" + re.sub(r"[^A-Za-z0-9._-]", "_", attack) + ".png"
                fig = Figure(figsize=(6, 4.2))
                if kind == "sweep":
                    _draw_attack(fig.add_subplot(), agg, attack, metric)
                else:
                    _draw_single(fig.add_subplot(), agg, content[0], [e for e in content[1] if e[2] == attack], metric)
                fig.suptitle(caption, fontsize=7)
                files[name] = _save_figure(fig, out_dir / name)
    return files


# ----------------------------------------------------------------------------- writing
def write_aggregate(folders: Sequence[str | Path], out_dir: str | Path, baseline: str | None = None,
                    table_eps: Sequence[float] | None = None, resamples: int = DEFAULT_RESAMPLES,
                    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED, reference: str | None = None,
                    metric: str = "error") -> dict[str, Path]:
    """Read the seed folders, check they pair up, and write table.md, summary.md, table.csv,
    results.json and the plots into out_dir (which must not be one of the seed folders)."""
    out_dir = Path(out_dir)
    seeds = [read_seed_report(folder) for folder in folders]
    for seed in seeds:
        if seed.folder.resolve() == out_dir.resolve():
            raise UserError(f"--out {out_dir} is one of the seed folders; its table.md would be overwritten: "
                            "give a new folder for the aggregate")
    agg = aggregate_seeds(seeds, baseline=baseline, table_eps=table_eps, resamples=resamples, bootstrap_seed=bootstrap_seed,
                          reference=reference)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / name for name in ("table.md", "summary.md", "table.csv", "results.json")}
    atomic_write_text(files["table.md"], aggregate_markdown(agg, metric))
    atomic_write_text(files["summary.md"], summary_markdown(agg))
    atomic_write_text(files["table.csv"], aggregate_frame(agg).to_csv(index=False))
    write_json(files["results.json"], aggregate_document(agg))
    files.update(plot_aggregate(agg, out_dir, metric))
    cost_plot = plot_cost(aggregate_costs(agg), "robust", out_dir / "cost.png",
                          f"{agg.dataset}: robust error at eps {format_eps(agg.table_eps[0])} against training cost "
                          f"({len(agg.seeds)} seeds; faint: one seed, large: the mean)")
    if cost_plot is not None:
        files["cost.png"] = cost_plot
    return files
