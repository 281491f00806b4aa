"""Paper-ready tables from the metrics: table.md (the failure indicators first, then tables laid
out like the WINN paper's Tables 2-4, one per attack and eps, with the robust error beside each
attack's own error) and table.csv. Fractions (0..1) go to CSV, percent only to markdown."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from winn_robust.evaluation.indicators import NA, WARN, Indicator
from winn_robust.evaluation.metrics import Difference, EpsMetrics, McNemar, Metrics, Rate
from winn_robust.reporting.cost import cost_table, has_costs, model_costs
from winn_robust.reporting.per_example import format_eps
from winn_robust.reporting.provenance import Provenance
from winn_robust.units import DEFAULT_NORM, EPS_UNIT, NORM_LABELS, PIXEL_UNITS, eps_text
from winn_robust.units import eps_unit as norm_unit

RATE_COLUMNS = ("clean_error", "adv_error", "robust_error", "correction_by_method", "correction_by_baseline")
MCNEMAR_COLUMNS = ("mcnemar_clean", "mcnemar_adv", "mcnemar_robust")
STATUS_ORDER = {WARN: 0, "PASS": 1, NA: 2}
METRIC_CHOICES = ("error", "accuracy")  # what table.md and the plots show; table.csv has both


def shown_rate(rate: Rate | None, metric: str) -> Rate | None:
    """An error rate as the metric shown: itself, or the accuracy (n - k of n; the exact CI of
    an accuracy is one minus the error's, flipped)."""
    if metric != "accuracy" or rate is None or rate.interval is None:
        return rate
    value, low, high = rate.interval
    return Rate(rate.n - rate.k, rate.n, 1 - value, 1 - high, 1 - low)


def shown_difference(diff: Difference | None, metric: str) -> Difference | None:
    if metric != "accuracy" or diff is None:
        return diff
    return Difference(-diff.value, -diff.high, -diff.low, diff.resamples)


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
def eps_label(norm: str) -> str:
    """'eps' at L-inf (as reports always said), 'L2 eps' otherwise."""
    return "eps" if norm == DEFAULT_NORM else f"{NORM_LABELS[norm]} eps"


def table_frame(metrics: Metrics, provenance: Provenance) -> pd.DataFrame:
    """One row per eps, attack and model (baseline first); value, CI and counts for every rate.
    An L2 report has a `norm` column and says L2 in `eps_unit` (an L-inf one is as it always was)."""
    norm = provenance.threat_norm
    unit = norm_unit(norm)
    rows = []
    for attack, eps in ordered_runs(metrics, provenance.table_eps):
        at_run = metrics.by_run[(attack, eps)]
        robust = metrics.robust[eps]
        for name in metrics.models:
            info = provenance.model(name)
            row: dict[str, Any] = {"model": name, "checkpoint": info.checkpoint, "method": info.method or "",
                                   "arch": info.arch or "", "attack": attack,
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
            for col in ("clean_error", "adv_error", "robust_error"):  # the accuracy RobustBench reports, beside the error
                rate = rates[col]
                row[col.replace("_error", "_accuracy")] = None if rate is None or rate.value is None else 1 - rate.value
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
def eps_unit(provenance: Provenance) -> str:
    """The unit line, true for the models of this report: winn-robust checkpoints see [-1, 1]
    (model-space step 2*eps), external models (FILE.py, TorchScript, Python objects) [0, 1]; at
    L2 the L2 unit."""
    if provenance.threat_norm != DEFAULT_NORM:
        return norm_unit(provenance.threat_norm)
    ours = ("checkpoint", "classifier")  # a checkpoint file, or a winn-robust Classifier given to evaluate()
    kinds = {m.kind or "checkpoint" for m in provenance.models.values()} or {"checkpoint"}
    if not kinds & set(ours):
        return f"{PIXEL_UNITS} (the models receive [0, 1] images: eps is measured in their own input space)"
    if kinds <= set(ours):
        return EPS_UNIT
    return (f"{PIXEL_UNITS} (external models receive [0, 1] images; winn-robust checkpoints see [-1, 1], a "
            "model-space step of 2*eps)")


def _header(metrics: Metrics, provenance: Provenance) -> list[str]:
    order = eps_order(metrics, provenance.table_eps)
    sweep = ", ".join(eps_text(e) for e in order[1:])
    eps_line = f"table eps = {eps_text(order[0])}" + (f", sweep {sweep}" if sweep else "") if order else "no eps"
    seed = provenance.seed
    norm = provenance.threat_norm
    threat = "" if norm == DEFAULT_NORM else f"Threat model: {NORM_LABELS[norm]}. "
    return [f"{threat}Dataset: {provenance.dataset or 'unknown'}, split: {provenance.split or 'test'}, "
            f"N = {metrics.n}. Attacks: {', '.join(metrics.attacks)}; {eps_line}, in {eps_unit(provenance)}. "
            f"Baseline: {metrics.baseline}." + (f" Evaluation seed: {seed}." if seed is not None else ""),
            "",
            "Rates in percent with exact 95% Clopper-Pearson CIs in brackets; 'n/a' = zero denominator. "
            "McNemar: exact two-sided binomial test on the discordant pairs "
            "(b = baseline wrong & method right, c = baseline right & method wrong). Robust error: wrong on the clean "
            "image or on at least one adversarial example at that eps (every attack, crafted on any model). "
            "Differences: method minus baseline in percentage points, 95% paired bootstrap interval over the images "
            "(2,000 resamples, seed 0)." + (" Accuracy = 1 - error, as RobustBench reports it (robust accuracy = "
                                            "1 - robust error); table.csv holds both." if provenance.metric ==
                                            "accuracy" else "")]


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
        eps_cell = ", ".join(eps_text(e) for e in dict.fromkeys(eps)) or ("-" if worst.eps is None else eps_text(worst.eps))
        lines.append(f"| {worst.model} | {worst.title} | {worst.attack or '-'} | {format_value(worst.value)} | "
                     f"{format_value(worst.threshold)} | {status} | {eps_cell} | {worst.advice} | {worst.detail} |")
    return [*lines, ""]


def _option_text(key: str, value: Any, settings: Mapping[str, Any], eps: Sequence[float]) -> str:
    """`key=value`; a step size of 0 (PGD's "2.5 * eps / steps") is shown as the step used."""
    if key == "step_size" and not value and settings.get("steps"):
        used = ", ".join(f"{eps_text(2.5 * e / int(settings['steps']))} at eps {eps_text(e)}" for e in eps if e > 0)
        return "step_size=2.5*eps/steps" + (f" (used: {used})" if used else "")
    return f"{key}={value}"


def attack_lines(attacks: Mapping[str, Mapping[str, Any]], metrics: Metrics) -> list[str]:
    if not attacks:
        return []
    lines = ["## Attacks", "", "| attack | settings | images | eps |", "|---|---|---|---|"]
    for name, settings in attacks.items():
        runs = metrics.for_attack(name)
        images = sorted({m.n for m in runs.values()})
        options = ", ".join(_option_text(k, v, settings, list(runs)) for k, v in settings.items() if k != "attack")
        lines.append(f"| {name} | {options or '-'} | {', '.join(map(str, images))} | "
                     f"{', '.join(eps_text(e) for e in runs)} |")
    return [*lines, ""]


def run_table(metrics: Metrics, at_run: EpsMetrics, metric: str = "error", norm: str = DEFAULT_NORM) -> list[str]:
    robust = metrics.robust[at_run.eps]
    word = metric
    lines = [f"| model | clean {word} | adversarial {word} | robust {word} (worst of {', '.join(robust.attacks)}; "
             f"N = {robust.n}) | adv. {word} minus baseline's (points, 95% CI) | correction rate by method | "
             f"correction rate by baseline | McNemar p (adv. {word} vs baseline) |", "|---|---|---|---|---|---|---|---|"]
    for name in metrics.models:
        row = at_run.models[name]
        base = name == metrics.baseline
        lines.append(f"| {name} | {format_rate(shown_rate(row.clean_error, metric))} | "
                     f"{format_rate(shown_rate(row.adv_error, metric))} | {format_rate(shown_rate(robust.error[name], metric))} "
                     f"| {format_difference(shown_difference(row.adv_difference, metric))} | "
                     f"{'-' if base else format_rate(row.correction_by_method)} | "
                     f"{'-' if base else format_rate(row.correction_by_baseline)} | {format_pvalue(row.mcnemar_adv)} |")
    lines += ["", f"Transfer {word} ({at_run.attack}, {eps_label(norm)} = {eps_text(at_run.eps)}): rows = model the "
              f"adversarial examples were crafted on, columns = model evaluated (diagonal = adversarial {word}).", "",
              "| crafted on \\ evaluated on | " + " | ".join(metrics.models) + " |",
              "|---|" + "---|" * len(metrics.models)]
    for source in metrics.models:
        cells = " | ".join(format_rate(shown_rate(at_run.transfer_error[source][t], metric)) for t in metrics.models)
        lines.append(f"| {source} | {cells} |")
    return lines


def cost_lines(metrics: Metrics, provenance: Provenance) -> list[str]:
    """The cost of training each model beside its errors at the table eps (empty when no model
    has a cost record: external models, runs of older versions)."""
    eps = eps_order(metrics, provenance.table_eps)[0]
    attacks = [a for a in metrics.attacks if (a, eps) in metrics.by_run]
    errors: dict[str, dict[str, tuple[float, ...]]] = {}
    for name in metrics.models:
        values = {"clean": metrics.clean_error[name].value}
        values.update({a: metrics.by_run[(a, eps)].models[name].adv_error.value for a in attacks})
        values["robust"] = metrics.robust[eps].error[name].value if eps in metrics.robust else None
        errors[name] = {k: (float(v),) for k, v in values.items() if v is not None}
    costs = model_costs([provenance], metrics.models, errors)
    if not has_costs(costs):
        return []
    return ["## Cost of training beside robustness", "",
            f"How best.pt was selected (the epoch chosen), forward and backward image-passes of training (counted by "
            f"hooks on the model; validation and selection excluded), and the errors at eps {format_eps(eps)}. The "
            "training seconds are in results.json (`training_cost`) and the aggregate.", "",
            *cost_table(costs, ["clean", *attacks, "robust"], seconds=False), ""]
def _returns_clean_images(attack: str) -> bool:
    """Attacks (AutoAttack's) that hand back the clean image wherever they fail: for them an
    unchanged image counts failures, not zero gradients, so the line is left out."""
    from winn_robust.attacks import ATTACKS

    cls = ATTACKS.get(attack)
    return bool(cls is not None and cls.returns_clean_when_failed)


def table_markdown(metrics: Metrics, provenance: Provenance, indicators: Sequence[Indicator] = (),
                   unchanged_images: Mapping[tuple[str, float], Mapping[str, int]] | None = None,
                   attacks: Mapping[str, Mapping[str, Any]] | None = None, extra: Sequence[str] = ()) -> str:
    """The indicators, the attacks, Table 2 (clean error), then per eps (the table eps first) and
    attack a Table 3/4 with the robust error and the transfer matrix; `extra` lines (the
    minimum-norm curve's section) after Table 2."""
    metric, norm = provenance.shown_metric, provenance.threat_norm
    lines = ["# Adversarial robustness report", "", *_header(metrics, provenance), "",
             *indicator_lines(indicators, metrics.models), *attack_lines(attacks or {}, metrics),
             f"## Table 2: clean test {metric}", "",
             f"| model | clean {metric} | McNemar p (clean error vs baseline) |", "|---|---|---|"]
    for name in metrics.models:
        lines.append(f"| {name} | {format_rate(shown_rate(metrics.clean_error[name], metric))} | "
                     f"{format_pvalue(metrics.mcnemar_clean.get(name))} |")
    cost = cost_lines(metrics, provenance)
    if cost:
        lines += ["", *cost[:-1]]
    lines += list(extra)
    table_eps = provenance.table_eps
    for attack, eps in ordered_runs(metrics, table_eps):
        at_run = metrics.by_run[(attack, eps)]
        label = " (table eps)" if eps == eps_order(metrics, table_eps)[0] else ""
        lines += ["", f"## Table 3/4: {attack}, {eps_label(norm)} = {eps_text(eps)}{label} ({PIXEL_UNITS}), "
                  f"N = {at_run.n}", "", *run_table(metrics, at_run, metric, norm)]
        unchanged = {s: c for s, c in (unchanged_images or {}).get((attack, eps), {}).items() if c}
        if unchanged and eps > 0 and not _returns_clean_images(attack):
            lines += ["", f"Images {attack} left exactly unchanged (every pixel as it was; for a gradient attack an "
                      "all-zero input gradient): " + ", ".join(f"{s}: {c}" for s, c in unchanged.items()) + "."]
    return "\n".join(lines) + "\n"
