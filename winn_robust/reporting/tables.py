"""Paper-ready tables from the metrics: table.md (the failure indicators first, then tables laid
out like the WINN paper's Tables 2-4, one per attack and eps, with the robust error beside each
attack's own error) and table.csv. Fractions (0..1) go to CSV, percent only to markdown."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from winn_robust.evaluation.indicators import NA, WARN, Indicator
from winn_robust.evaluation.metrics import Difference, EpsMetrics, McNemar, Metrics, Rate
from winn_robust.reporting.per_example import format_eps
from winn_robust.units import DEFAULT_NORM, NORM_LABELS, PIXEL_UNITS, eps_unit

RATE_COLUMNS = ("clean_error", "adv_error", "robust_error", "correction_by_method", "correction_by_baseline")
MCNEMAR_COLUMNS = ("mcnemar_clean", "mcnemar_adv", "mcnemar_robust")
STATUS_ORDER = {WARN: 0, "PASS": 1, NA: 2}


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


def format_difference(diff: Difference | None) -> str:
    """'-11.20 [-12.77, -10.12]' (points, 95% CI)."""
    if diff is None:
        return "-"
    return f"{100 * diff.value:+.2f} [{100 * diff.low:+.2f}, {100 * diff.high:+.2f}]"


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4g}"


def eps_order(metrics: Metrics, table_eps: float | None) -> list[float]:
    """The table eps first, then the rest ascending."""
    values = sorted({eps for _, eps in metrics.by_run})
    first = table_eps if table_eps in values else (next(iter(metrics.by_run))[1] if metrics.by_run else None)
    return ([first] if first is not None else []) + [e for e in values if e != first]


def ordered_runs(metrics: Metrics, table_eps: float | None) -> list[tuple[str, float]]:
    return [(attack, eps) for eps in eps_order(metrics, table_eps) for attack in metrics.attacks
            if (attack, eps) in metrics.by_run]


# ----------------------------------------------------------------------------- table.csv
def _model_info(provenance: Mapping[str, Any], name: str) -> dict[str, Any]:
    return dict(provenance.get("models", {}).get(name, {}))


def report_norm(provenance: Mapping[str, Any]) -> str:
    """The report's threat model; reports from before L2 existed are L-inf."""
    return str(provenance.get("norm") or DEFAULT_NORM)


def eps_label(norm: str) -> str:
    """'eps' at L-inf (as reports always said), 'L2 eps' otherwise."""
    return "eps" if norm == DEFAULT_NORM else f"{NORM_LABELS[norm]} eps"


def table_frame(metrics: Metrics, provenance: Mapping[str, Any]) -> pd.DataFrame:
    """One row per eps, attack and model (baseline first); value, CI and counts for every rate.
    An L2 report has a `norm` column and says L2 in `eps_unit` (an L-inf one is as it always was)."""
    norm = report_norm(provenance)
    unit = eps_unit(norm)
    rows = []
    for attack, eps in ordered_runs(metrics, provenance.get("table_eps")):
        at_run = metrics.by_run[(attack, eps)]
        robust = metrics.robust[eps]
        for name in metrics.models:
            info = _model_info(provenance, name)
            row: dict[str, Any] = {"model": name, "checkpoint": info.get("checkpoint", ""),
                                   "method": info.get("method", ""), "arch": info.get("arch", ""), "attack": attack,
                                   "eps": eps, **({"norm": norm} if norm != DEFAULT_NORM else {}),
                                   "eps_unit": unit, "n": at_run.n, "n_robust": robust.n}
            model = at_run.models[name]
            rates: dict[str, Rate | None] = {col: getattr(model, col) for col in RATE_COLUMNS if col != "robust_error"}
            rates["robust_error"] = robust.error[name]
            for col in RATE_COLUMNS:
                rate = rates[col]
                row[col] = None if rate is None else rate.value
                row[f"{col}_ci_low"] = None if rate is None else rate.low
                row[f"{col}_ci_high"] = None if rate is None else rate.high
                row[f"{col}_k"] = None if rate is None else rate.k
                row[f"{col}_n"] = None if rate is None else rate.n
            tests: dict[str, McNemar | None] = {"mcnemar_clean": model.mcnemar_clean, "mcnemar_adv": model.mcnemar_adv,
                                                "mcnemar_robust": robust.mcnemar.get(name)}
            diff = model.adv_difference
            row["adv_error_diff"] = None if diff is None else diff.value
            row["adv_error_diff_ci_low"] = None if diff is None else diff.low
            row["adv_error_diff_ci_high"] = None if diff is None else diff.high
            for col in MCNEMAR_COLUMNS:
                test = tests[col]
                row[f"{col}_b"] = None if test is None else test.b
                row[f"{col}_c"] = None if test is None else test.c
                row[f"{col}_p"] = None if test is None else test.pvalue
            rows.append(row)
    frame = pd.DataFrame(rows)
    text = ("model", "checkpoint", "method", "arch", "attack", "norm", "eps_unit")
    counts = [c for c in frame.columns if c.endswith(("_k", "_n", "_b", "_c")) or c in ("n", "n_robust")]
    float_cols = [c for c in frame.columns if c not in counts and c not in text]
    return frame.astype({**{c: "Int64" for c in counts}, **{c: "float64" for c in float_cols}})


# ----------------------------------------------------------------------------- table.md
def _header(metrics: Metrics, provenance: Mapping[str, Any]) -> list[str]:
    order = eps_order(metrics, provenance.get("table_eps"))
    sweep = ", ".join(format_eps(e) for e in order[1:])
    eps_text = f"table eps = {format_eps(order[0])}" + (f", sweep {sweep}" if sweep else "") if order else "no eps"
    seed = provenance.get("seed")
    norm = report_norm(provenance)
    threat = "" if norm == DEFAULT_NORM else f"Threat model: {NORM_LABELS[norm]}. "
    return [f"{threat}Dataset: {provenance.get('dataset', 'unknown')}, split: {provenance.get('split', 'test')}, "
            f"N = {metrics.n}. Attacks: {', '.join(metrics.attacks)}; {eps_text}, in {eps_unit(norm)}. "
            f"Baseline: {metrics.baseline}." + (f" Evaluation seed: {seed}." if seed is not None else ""),
            "",
            "Rates in percent with exact 95% Clopper-Pearson CIs in brackets; 'n/a' = zero denominator. "
            "McNemar: exact two-sided binomial test on the discordant pairs "
            "(b = baseline wrong & method right, c = baseline right & method wrong). Robust error: wrong on the clean "
            "image or on at least one adversarial example at that eps (every attack, crafted on any model). "
            "Differences: method minus baseline in percentage points, 95% paired bootstrap interval over the images "
            "(2,000 resamples, seed 0)."]


def grouped_indicators(indicators: Sequence[Indicator]) -> list[tuple[Indicator, list[float], list[float]]]:
    """One row per model, indicator and attack: the worst value over eps, the eps it warned at and
    the eps it was checked at (results.json keeps every single record)."""
    groups: dict[tuple[str, str, str | None], list[Indicator]] = {}
    for item in indicators:
        groups.setdefault((item.model, item.indicator, item.attack), []).append(item)
    rows = []
    for members in groups.values():
        warned = [i for i in members if i.status == WARN]
        measured = [i for i in members if i.value is not None]
        pool = warned or measured or members
        lower_is_bad = pool[0].indicator == "unbounded-attack"
        worst = min(pool, key=lambda i: i.value if i.value is not None else 0) if lower_is_bad else \
            max(pool, key=lambda i: i.value if i.value is not None else 0)
        rows.append((worst, [i.eps for i in warned if i.eps is not None], [i.eps for i in measured if i.eps is not None]))
    return rows


def indicator_lines(indicators: Sequence[Indicator], models: Sequence[str]) -> list[str]:
    """The "Can these numbers be trusted?" section: a verdict line per model, then one row per model
    and indicator (the worst value over the eps it was checked at)."""
    lines = ["## Can these numbers be trusted?", ""]
    if not indicators:
        return [*lines, "No failure indicators were computed for this report.", ""]
    for model in models:
        warned = [i for i in indicators if i.model == model and i.status == WARN]
        if warned:
            what = "; ".join(dict.fromkeys(f"{i.title}" + (f" ({i.attack})" if i.attack else "") for i in warned))
            lines.append(f"- **{model}: {len(warned)} warning(s)**: {what}.")
        else:
            lines.append(f"- {model}: no warnings.")
    lines += ["", "Each row: the worst value over the eps the indicator was checked at; WARN rows list the eps that "
              "warned. Every single record is in results.json.", "",
              "| model | indicator | attack | value | threshold | status | eps | what it means / what to do | detail |",
              "|---|---|---|---|---|---|---|---|---|"]
    rows = grouped_indicators(indicators)
    rows.sort(key=lambda r: (STATUS_ORDER.get(r[0].status, 3), list(models).index(r[0].model)
                             if r[0].model in models else 99))
    for worst, warned_eps, checked_eps in rows:
        status = f"**{worst.status}**" if worst.status == WARN else worst.status
        eps = warned_eps if worst.status == WARN else checked_eps
        eps_text = ", ".join(format_eps(e) for e in dict.fromkeys(eps)) or ("-" if worst.eps is None else format_eps(worst.eps))
        lines.append(f"| {worst.model} | {worst.title} | {worst.attack or '-'} | {format_value(worst.value)} | "
                     f"{format_value(worst.threshold)} | {status} | {eps_text} | {worst.advice} | {worst.detail} |")
    return [*lines, ""]


def attack_lines(attacks: Mapping[str, Mapping[str, Any]], metrics: Metrics) -> list[str]:
    if not attacks:
        return []
    lines = ["## Attacks", "", "| attack | settings | images | eps |", "|---|---|---|---|"]
    for name, settings in attacks.items():
        runs = metrics.for_attack(name)
        images = sorted({m.n for m in runs.values()})
        options = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "attack")
        lines.append(f"| {name} | {options or '-'} | {', '.join(map(str, images))} | "
                     f"{', '.join(format_eps(e) for e in runs)} |")
    return [*lines, ""]


def run_table(metrics: Metrics, at_run: EpsMetrics, norm: str = DEFAULT_NORM) -> list[str]:
    robust = metrics.robust[at_run.eps]
    lines = [f"| model | clean error | adversarial error | robust error (worst of {', '.join(robust.attacks)}; "
             f"N = {robust.n}) | adv. error minus baseline's (points, 95% CI) | correction rate by method | "
             "correction rate by baseline | McNemar p (adv. error vs baseline) |", "|---|---|---|---|---|---|---|---|"]
    for name in metrics.models:
        row = at_run.models[name]
        base = name == metrics.baseline
        lines.append(f"| {name} | {format_rate(row.clean_error)} | {format_rate(row.adv_error)} | "
                     f"{format_rate(robust.error[name])} | {format_difference(row.adv_difference)} | "
                     f"{'-' if base else format_rate(row.correction_by_method)} | "
                     f"{'-' if base else format_rate(row.correction_by_baseline)} | {format_pvalue(row.mcnemar_adv)} |")
    lines += ["", f"Transfer error ({at_run.attack}, {eps_label(norm)} = {format_eps(at_run.eps)}): rows = model the adversarial "
              "examples were crafted on, columns = model evaluated (diagonal = adversarial error).", "",
              "| crafted on \\ evaluated on | " + " | ".join(metrics.models) + " |",
              "|---|" + "---|" * len(metrics.models)]
    for source in metrics.models:
        cells = " | ".join(format_rate(at_run.transfer_error[source][t]) for t in metrics.models)
        lines.append(f"| {source} | {cells} |")
    return lines


def table_markdown(metrics: Metrics, provenance: Mapping[str, Any], indicators: Sequence[Indicator] = (),
                   unchanged_images: Mapping[tuple[str, float], Mapping[str, int]] | None = None,
                   attacks: Mapping[str, Mapping[str, Any]] | None = None, extra: Sequence[str] = ()) -> str:
    """The indicators, the attacks, Table 2 (clean error), then per eps (the table eps first) and
    attack a Table 3/4 with the robust error and the transfer matrix; `extra` lines (the
    minimum-norm curve's section) after Table 2."""
    norm = report_norm(provenance)
    lines = ["# Adversarial robustness report", "", *_header(metrics, provenance), "",
             *indicator_lines(indicators, metrics.models), *attack_lines(attacks or {}, metrics),
             "## Table 2: clean test error", "",
             "| model | clean error | McNemar p (clean error vs baseline) |", "|---|---|---|"]
    for name in metrics.models:
        lines.append(f"| {name} | {format_rate(metrics.clean_error[name])} | {format_pvalue(metrics.mcnemar_clean.get(name))} |")
    lines += list(extra)
    table_eps = provenance.get("table_eps")
    for attack, eps in ordered_runs(metrics, table_eps):
        at_run = metrics.by_run[(attack, eps)]
        label = " (table eps)" if eps == eps_order(metrics, table_eps)[0] else ""
        lines += ["", f"## Table 3/4: {attack}, {eps_label(norm)} = {format_eps(eps)}{label} ({PIXEL_UNITS}), "
                  f"N = {at_run.n}", "", *run_table(metrics, at_run, norm)]
        unchanged = {s: c for s, c in (unchanged_images or {}).get((attack, eps), {}).items() if c}
        if unchanged and eps > 0:
            lines += ["", "Images the attack left exactly unchanged (for a gradient attack: an all-zero input "
                      "gradient): " + ", ".join(f"{s}: {c}" for s, c in unchanged.items()) + "."]
    return "\n".join(lines) + "\n"
