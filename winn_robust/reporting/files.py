"""Writing a report folder (table.md, table.csv, results.json, per_example.csv, and the eps plot),
and rebuilding its tables from per_example.csv alone."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from winn_robust.errors import UserError
from winn_robust.evaluation.harness import CrossEvalResult
from winn_robust.evaluation.metrics import Metrics, compute_metrics
from winn_robust.reporting.per_example import per_example_frame, result_from_per_example
from winn_robust.reporting.plots import plot_error_vs_eps
from winn_robust.reporting.tables import table_frame, table_markdown
from winn_robust.units import EPS_UNIT


def rebuild_tables(report: str | Path, baseline: str | None = None, out_dir: str | Path | None = None) -> dict[str, Path]:
    """table.md, table.csv (and error_vs_eps.png with several eps) recomputed from per_example.csv;
    provenance, attack and baseline come from results.json when it sits beside the CSV."""
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
