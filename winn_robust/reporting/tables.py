"""Paper-ready tables from the metrics: table.md (laid out like the WINN paper's Tables 2-4) and
table.csv. Fractions (0..1) go to CSV, percent only to markdown."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from winn_robust.evaluation.harness import CrossEvalResult
from winn_robust.evaluation.metrics import McNemar, Metrics, Rate
from winn_robust.reporting.per_example import format_eps
from winn_robust.units import EPS_UNIT, PIXEL_UNITS

RATE_COLUMNS = ("clean_error", "adv_error", "correction_by_method", "correction_by_baseline")
MCNEMAR_COLUMNS = ("mcnemar_clean", "mcnemar_adv")


# ----------------------------------------------------------------------------- formatting
def format_rate(rate: Rate | None) -> str:
    """'7.99% [7.46, 8.55]' (percent, 95% CI); 'n/a' when the denominator is zero."""
    if rate is None or rate.interval is None:
        return "n/a"
    value, low, high = rate.interval
    return f"{100 * value:.2f}% [{100 * low:.2f}, {100 * high:.2f}]"


def format_pvalue(test: McNemar | None) -> str:
    if test is None:
        return "-"
    return f"{test.pvalue:.3g} (b={test.b}, c={test.c})"


# ----------------------------------------------------------------------------- tables
def _model_info(provenance: Mapping[str, Any], name: str) -> dict[str, Any]:
    return dict(provenance.get("models", {}).get(name, {}))


def table_frame(metrics: Metrics, provenance: Mapping[str, Any]) -> pd.DataFrame:
    """One row per eps and model (baseline first); value, CI and counts for every rate."""
    rows = []
    for eps, at_eps in metrics.by_eps.items():
        for name in metrics.models:
            info = _model_info(provenance, name)
            row: dict[str, Any] = {"model": name, "checkpoint": info.get("checkpoint", ""),
                                   "method": info.get("method", ""), "arch": info.get("arch", ""),
                                   "eps": eps, "eps_unit": EPS_UNIT, "n": metrics.n}
            model = at_eps.models[name]
            for col in RATE_COLUMNS:
                rate: Rate | None = getattr(model, col)
                row[col] = None if rate is None else rate.value
                row[f"{col}_ci_low"] = None if rate is None else rate.low
                row[f"{col}_ci_high"] = None if rate is None else rate.high
                row[f"{col}_k"] = None if rate is None else rate.k
                row[f"{col}_n"] = None if rate is None else rate.n
            for col in MCNEMAR_COLUMNS:
                test: McNemar | None = getattr(model, col)
                row[f"{col}_b"] = None if test is None else test.b
                row[f"{col}_c"] = None if test is None else test.c
                row[f"{col}_p"] = None if test is None else test.pvalue
            rows.append(row)
    frame = pd.DataFrame(rows)
    counts = [c for c in frame.columns if c.endswith(("_k", "_n", "_b", "_c")) or c == "n"]
    float_cols = [c for c in frame.columns if c not in counts and c not in ("model", "checkpoint", "method", "arch", "eps_unit")]
    return frame.astype({**{c: "Int64" for c in counts}, **{c: "float64" for c in float_cols}})


def _header(metrics: Metrics, provenance: Mapping[str, Any], attack: str) -> list[str]:
    eps = ", ".join(format_eps(e) for e in metrics.by_eps)
    return [f"Dataset: {provenance.get('dataset', 'unknown')}, split: {provenance.get('split', 'test')}, "
            f"N = {metrics.n}. Attack: {attack}, eps = {eps} in {EPS_UNIT}. Baseline: {metrics.baseline}.",
            "",
            "Rates in percent with exact 95% Clopper-Pearson CIs in brackets; 'n/a' = zero denominator. "
            "McNemar: exact two-sided binomial test on the discordant pairs "
            "(b = baseline wrong & method right, c = baseline right & method wrong)."]


def table_markdown(metrics: Metrics, provenance: Mapping[str, Any], result: CrossEvalResult | None = None) -> str:
    """Table 2 (clean error), then Table 3/4 and the transfer matrix for each eps."""
    attack = provenance.get("attack", result.attack if result else "unknown")
    lines = ["# Adversarial robustness report", "", *_header(metrics, provenance, attack), "",
             "## Table 2: clean test error", "",
             "| model | clean error | McNemar p (clean error vs baseline) |", "|---|---|---|"]
    for name in metrics.models:
        lines.append(f"| {name} | {format_rate(metrics.clean_error[name])} | {format_pvalue(metrics.mcnemar_clean.get(name))} |")
    for eps, at_eps in metrics.by_eps.items():
        lines += ["", f"## Table 3/4: {attack}, eps = {format_eps(eps)} ({PIXEL_UNITS})", "",
                  "| model | clean error | adversarial error | correction rate by method | correction rate by baseline "
                  "| McNemar p (adv. error vs baseline) |", "|---|---|---|---|---|---|"]
        for name in metrics.models:
            row = at_eps.models[name]
            base = name == metrics.baseline
            lines.append(f"| {name} | {format_rate(row.clean_error)} | {format_rate(row.adv_error)} | "
                         f"{'-' if base else format_rate(row.correction_by_method)} | "
                         f"{'-' if base else format_rate(row.correction_by_baseline)} | {format_pvalue(row.mcnemar_adv)} |")
        lines += ["", f"Transfer error at eps = {format_eps(eps)}: rows = model the adversarial examples were crafted on, "
                  "columns = model evaluated (diagonal = adversarial error).", "",
                  "| crafted on \\ evaluated on | " + " | ".join(metrics.models) + " |",
                  "|---|" + "---|" * len(metrics.models)]
        for source in metrics.models:
            cells = " | ".join(format_rate(at_eps.transfer_error[source][t]) for t in metrics.models)
            lines.append(f"| {source} | {cells} |")
        if result is not None and eps > 0:
            unchanged = {s: c for s, c in result.unchanged_images.get(eps, {}).items() if c}
            if unchanged:
                lines += ["", "Images the attack left exactly unchanged (zero input gradient for FGSM): "
                          + ", ".join(f"{s}: {c}" for s, c in unchanged.items()) + "."]
    return "\n".join(lines) + "\n"
