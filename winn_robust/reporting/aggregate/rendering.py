"""The aggregate's files as text: table.md and summary.md (percent, per-seed cells with their
differences), table.csv (fractions, one row per AggregateRow) and results.json's document."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from winn_robust.evaluation.seeds import (
    BOOTSTRAP_METHOD,
    CI_LEVEL,
)
from winn_robust.reporting.aggregate.seed_reports import eps_list, names_text
from winn_robust.reporting.aggregate.statistics import (
    CLEAN_ATTACK,
    METRICS,
    ROBUST_ATTACK,
    Aggregate,
    AggregateRow,
    aggregate_costs,
    cost_errors,
)
from winn_robust.reporting.aggregate.verdicts import reference_verdict, verdict
from winn_robust.reporting.cost import cost_records, cost_table, has_costs
from winn_robust.reporting.per_example import format_eps
from winn_robust.units import DEFAULT_NORM, NORM_LABELS, PIXEL_UNITS, eps_text, eps_unit

AGGREGATE_SCHEMA_VERSION = 1


CI_METHOD_SHORT = "95% hierarchical percentile bootstrap (seeds, then test images within each seed; paired)"


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


def cost_section(agg: Aggregate) -> list[str]:
    costs = aggregate_costs(agg)
    if not has_costs(costs):
        return []
    labels, _ = cost_errors(agg)
    return ["## Cost of training beside robustness", "",
            f"Per model, means over {len(agg.seeds)} seeds: how best.pt was selected (and the epoch chosen in each seed), "
            "seconds of training passes (validation and selection excluded; wall time depends on what ran beside it), "
            "forward and backward image-passes (counted by hooks on the model), and the errors at eps "
            f"{format_eps(agg.table_eps[0])}. cost.png draws robust error against training cost.", "",
            *cost_table(costs, labels)]


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
             f"Methods: {names_text(agg.methods)}. Attacks: {names_text(agg.attacks)}. eps in {eps_unit(agg.norm)}: {eps_list(agg.eps)}; "
             f"the tables show eps {eps_list(agg.table_eps)}, table.csv and results.json every eps.", "",
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
