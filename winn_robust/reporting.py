"""Paper-ready reports from a cross-evaluation: table.md (laid out like the WINN paper's
Tables 2-4), table.csv, results.json and per_example.csv.

per_example.csv holds every prediction the tables are computed from, so any figure can be
recomputed by hand; `metrics_from_per_example` does exactly that, and the tests check that it
reproduces table.csv byte for byte. Fractions (0..1) go to CSV/JSON, percent only to markdown."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from winn_robust.evaluation.harness import CrossEvalResult
from winn_robust.errors import UserError
from winn_robust.evaluation.metrics import McNemar, Metrics, Rate, compute_metrics

EPS_UNIT = "[0, 1] pixel units (model inputs in [-1, 1]; model-space step 2*eps)"
PIXEL_UNITS = "[0, 1] pixel units"
RATE_COLUMNS = ("clean_error", "adv_error", "correction_by_method", "correction_by_baseline")
MCNEMAR_COLUMNS = ("mcnemar_clean", "mcnemar_adv")
FORBIDDEN_NAME_CHARS = "[],:="
_ADV_COLUMN = re.compile(r"^adv\[eps=(?P<eps>[^,\]]+),src=(?P<src>[^\]]+)\]:(?P<tgt>.+)$")
_CLEAN_PREFIX = "clean:"


# ----------------------------------------------------------------------------- formatting
def format_rate(rate: Rate | None) -> str:
    """'7.99% [7.46, 8.55]' (percent, 95% CI); 'n/a' when the denominator is zero."""
    if rate is None or rate.value is None:
        return "n/a"
    return f"{100 * rate.value:.2f}% [{100 * rate.low:.2f}, {100 * rate.high:.2f}]"


def format_pvalue(test: McNemar | None) -> str:
    if test is None:
        return "-"
    return f"{test.pvalue:.3g} (b={test.b}, c={test.c})"


def format_eps(eps: float) -> str:
    """Round-trippable (float(format_eps(e)) == e), so per_example.csv parses back exactly."""
    return repr(float(eps))


def clean_column(model: str) -> str:
    return f"{_CLEAN_PREFIX}{model}"


def adv_column(eps: float, source: str, target: str) -> str:
    return f"adv[eps={format_eps(eps)},src={source}]:{target}"


def check_model_names(names: list[str]) -> None:
    """Model names go into column headers; these characters would make them ambiguous."""
    for name in names:
        if not name or any(ch in name for ch in FORBIDDEN_NAME_CHARS):
            raise ValueError(f"model name {name!r} must be non-empty and free of {FORBIDDEN_NAME_CHARS!r}")


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


# ----------------------------------------------------------------------------- per-example
def per_example_frame(result: CrossEvalResult) -> pd.DataFrame:
    """One row per test image: every clean and adversarial prediction behind the tables."""
    names = result.model_names
    check_model_names(names)
    columns: dict[str, np.ndarray] = {"index": np.arange(result.n), "label": result.labels}
    columns.update({clean_column(m): result.clean_preds[m] for m in names})
    for eps, by_source in result.adv_preds.items():
        for source in names:
            for target in names:
                columns[adv_column(eps, source, target)] = by_source[source][target]
    return pd.DataFrame(columns)


def result_from_per_example(path: str | Path, attack: str = "unknown") -> CrossEvalResult:
    """Parse per_example.csv back into predictions (the inverse of `per_example_frame`)."""
    frame = pd.read_csv(path)
    labels = frame["label"].to_numpy(np.int64)
    clean = {c[len(_CLEAN_PREFIX):]: frame[c].to_numpy(np.int64) for c in frame.columns if c.startswith(_CLEAN_PREFIX)}
    adv: dict[float, dict[str, dict[str, np.ndarray]]] = {}
    for column in frame.columns:
        match = _ADV_COLUMN.match(column)
        if match:
            adv.setdefault(float(match["eps"]), {}).setdefault(match["src"], {})[match["tgt"]] = frame[column].to_numpy(np.int64)
    return CrossEvalResult(labels=labels, clean_preds=clean, adv_preds=adv, attack=attack)


def metrics_from_per_example(path: str | Path, baseline: str) -> Metrics:
    """Recompute every table figure from per_example.csv alone."""
    result = result_from_per_example(path)
    return compute_metrics(result.labels, result.clean_preds, result.adv_preds, baseline)


def rebuild_tables(report: str | Path, baseline: str | None = None, out_dir: str | Path | None = None) -> dict[str, Path]:
    """table.md, table.csv (and error_vs_eps.png with several eps) recomputed from per_example.csv;
    provenance, attack and baseline come from results.json when it sits beside the CSV."""
    from winn_robust.plots import plot_error_vs_eps

    report = Path(report)
    csv_path = report / "per_example.csv" if report.is_dir() else report
    if not csv_path.is_file():
        raise UserError(f"no per_example.csv at {csv_path}; give a report folder written by `winn-robust attack` or `reproduce`")
    document: dict[str, Any] = {}
    results_path = csv_path.parent / "results.json"
    if results_path.is_file():
        try:
            document = dict(json.loads(results_path.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError):
            raise UserError(f"{results_path} is not a results.json written by winn-robust; move it aside or fix it") from None
    provenance = dict(document.get("provenance") or {})
    try:
        result = result_from_per_example(csv_path, attack=provenance.get("attack", "unknown"))
    except (KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{csv_path} is not a per_example.csv written by winn-robust ({exc})") from None
    result.unchanged_images = {float(row["eps"]): dict(row["counts"]) for row in document.get("unchanged_images", [])}
    names = list(result.clean_preds)
    if not names or not result.adv_preds:
        raise UserError(f"{csv_path} has no clean:<model> or adv[...] columns; is it a per_example.csv?")
    baseline = baseline or provenance.get("baseline") or names[0]
    if baseline not in names:
        raise UserError(f"--baseline {baseline!r} is not in {csv_path}; its models are {', '.join(names)}")
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, baseline)
    out_dir = Path(out_dir) if out_dir is not None else csv_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"table.md": out_dir / "table.md", "table.csv": out_dir / "table.csv"}
    files["table.md"].write_text(table_markdown(metrics, provenance, result))
    table_frame(metrics, provenance).to_csv(files["table.csv"], index=False)
    if len(metrics.by_eps) > 1:
        files["error_vs_eps.png"] = plot_error_vs_eps(metrics, out_dir / "error_vs_eps.png")
    return files


# ----------------------------------------------------------------------------- writing
def results_document(result: CrossEvalResult, metrics: Metrics, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """All numbers (tables, transfer and correction matrices, unchanged-input counts) + provenance."""
    def by_eps(counts: Mapping[float, Mapping[str, int]]) -> list[dict[str, Any]]:
        return [{"eps": eps, "counts": dict(row)} for eps, row in counts.items()]
    return {"provenance": dict(provenance), "eps_unit": EPS_UNIT, "attack": result.attack,
            "metrics": metrics.to_dict(), "unchanged_images": by_eps(result.unchanged_images),
            "unchanged_pixels": by_eps(result.unchanged_pixels)}


def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON; write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return _json_safe(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def write_reports(out_dir: str | Path, result: CrossEvalResult, metrics: Metrics,
                  provenance: Mapping[str, Any]) -> dict[str, Path]:
    """Write table.md, table.csv, results.json and per_example.csv; return their paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("table.md", "table.csv", "results.json", "per_example.csv")}
    per_example_frame(result).to_csv(paths["per_example.csv"], index=False)
    table_frame(metrics, provenance).to_csv(paths["table.csv"], index=False)
    paths["table.md"].write_text(table_markdown(metrics, provenance, result))
    document = _json_safe(results_document(result, metrics, provenance))
    paths["results.json"].write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    return paths
