"""Writing a report folder (table.md, table.csv, results.json, per_example.csv and the figures),
and rebuilding its tables from per_example.csv alone."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from winn_robust.errors import SettingError, UserError
from winn_robust.evaluation.curves import compute_curves
from winn_robust.evaluation.harness import CrossEvalResult
from winn_robust.evaluation.indicators import Indicator
from winn_robust.evaluation.metrics import Metrics, compute_metrics
from winn_robust.reporting.curves import curve_frame, curve_lines, plot_curves
from winn_robust.reporting.per_example import default_baseline, per_example_frame, result_from_per_example
from winn_robust.reporting.plots import plot_error_vs_eps
from winn_robust.reporting.provenance import Provenance
from winn_robust.reporting.tables import table_frame, table_markdown
from winn_robust.storage import atomic_write_text
from winn_robust.units import eps_unit

SCHEMA_VERSION = 2
REPORT_FILES = ("table.md", "table.csv", "results.json", "per_example.csv", "error_vs_eps.png",
                "adversarial_examples.png", "summary.md", "curve.csv", "curve.png")


def _run_records(values: Mapping[tuple[str, float], Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"attack": attack, "eps": eps, "counts": dict(row)} for (attack, eps), row in values.items()]


def _runs_from_records(records: Sequence[Mapping[str, Any]], attack: str) -> dict[tuple[str, float], dict[str, int]]:
    return {(str(r.get("attack", attack)), float(r["eps"])): dict(r["counts"]) for r in records}


def results_document(result: CrossEvalResult, metrics: Metrics, provenance: Provenance,
                     indicators: Sequence[Indicator] = ()) -> dict[str, Any]:
    """Every number (tables, transfer and correction matrices, robust error, indicators, probes,
    unchanged-input counts) with its provenance; `schema_version` says how to read it."""
    document = {"schema_version": SCHEMA_VERSION, "provenance": provenance.to_dict(),
                "eps_unit": eps_unit(provenance.threat_norm),
                "attacks": dict(result.attacks), "indicators": [i.to_dict() for i in indicators],
                "metrics": metrics.to_dict(), "probes": {m: p.to_dict() for m, p in result.probes.items()},
                "unchanged_images": _run_records(result.unchanged_images),
                "unchanged_pixels": _run_records(result.unchanged_pixels)}
    if result.min_norms and result.curve is not None:
        curves = compute_curves(result.min_norms, result.eps_values)
        document["curve"] = {"attack": dict(result.curve), "curves": [c.to_dict() for c in curves.values()]}
    return document


def write_curve_files(out_dir: Path, result: CrossEvalResult, metrics: Metrics,
                      provenance: Provenance) -> tuple[dict[str, Path], list[str]]:
    """curve.csv and curve.png, and the table.md section, when the evaluation ran a curve attack."""
    if not result.min_norms or result.curve is None:
        return {}, []
    norm, attack = provenance.threat_norm, str(result.curve["attack"])
    curves = compute_curves(result.min_norms, result.eps_values)
    paths = {"curve.csv": out_dir / "curve.csv"}
    curve_frame(curves, attack, norm).to_csv(paths["curve.csv"], index=False)
    paths["curve.png"] = plot_curves(curves, metrics, out_dir / "curve.png", attack, norm, provenance)
    return paths, curve_lines(curves, metrics, attack, norm, sorted(result.eps_values))


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


def write_json(path: Path, document: Mapping[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(_json_safe(dict(document)), indent=2, allow_nan=False) + "\n")


def write_reports(out_dir: str | Path, result: CrossEvalResult, metrics: Metrics, provenance: Provenance,
                  indicators: Sequence[Indicator] = ()) -> dict[str, Path]:
    """Write table.md, table.csv, results.json and per_example.csv; return their paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("table.md", "table.csv", "results.json", "per_example.csv")}
    atomic_write_text(paths["per_example.csv"], per_example_frame(result).to_csv(index=False))
    atomic_write_text(paths["table.csv"], table_frame(metrics, provenance).to_csv(index=False))
    curve_paths, curve_section = write_curve_files(out_dir, result, metrics, provenance)
    atomic_write_text(paths["table.md"], table_markdown(metrics, provenance, indicators, result.unchanged_images,
                                                        result.attacks, curve_section))
    write_json(paths["results.json"], results_document(result, metrics, provenance, indicators))
    return {**paths, **curve_paths}


def read_results(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError):
        raise UserError(f"{path} is not a results.json written by winn-robust; move it aside or fix it") from None


def check_against_results(csv_path: Path, result: CrossEvalResult, document: Mapping[str, Any]) -> None:
    """per_example.csv must hold the rows, models and runs that results.json counted: a cut,
    edited or partly lost file is one line, never tables quietly rebuilt on fewer images."""
    advice = "restore it from the run (or run the attack again); `report` rebuilds tables only from the complete file"
    names = list(result.clean_preds)
    for (attack, eps), by_source in result.adv_preds.items():
        for source in names:
            for target in names:
                if target not in by_source.get(source, {}):
                    raise UserError(f"{csv_path} lacks the column adv[attack={attack},eps={eps:g},src={source}]:{target} "
                                    f"(every model's prediction on every model's adversarial examples); {advice}")
    metrics = document.get("metrics") or {}
    if not metrics:
        return  # no results.json beside it: nothing more to check against
    expected_n = metrics.get("n")
    if expected_n is not None and result.n != int(expected_n):
        raise UserError(f"{csv_path} has {result.n} image rows but results.json counts N = {expected_n}; {advice}")
    missing = [f"clean:{m}" for m in metrics.get("models", []) if m not in result.clean_preds]
    for run in metrics.get("runs", []):
        key = (str(run.get("attack")), float(run.get("eps", "nan")))
        if key not in result.adv_preds:
            missing.append(f"adv[attack={key[0]},eps={key[1]:g},...]")
        elif int(run.get("n", result.run_sizes.get(key, 0))) != result.run_sizes.get(key):
            raise UserError(f"{csv_path} holds {result.run_sizes.get(key)} predictions of {key[0]} at eps {key[1]:g} "
                            f"but results.json counts {run.get('n')}; {advice}")
    if missing:
        raise UserError(f"{csv_path} lacks the column(s) {', '.join(missing[:3])} that results.json reports; {advice}")


def report_files(report: str | Path, give: str = "a report folder") -> tuple[Path, dict[str, Any]]:
    """A report folder's (or its per_example.csv's) CSV path and its results.json document ({}
    when there is none): what every reader of a finished report starts from."""
    report = Path(report)
    csv_path = report / "per_example.csv" if report.is_dir() else report
    if not csv_path.is_file():
        raise UserError(f"no per_example.csv at {csv_path}; give {give} written by `winn-robust attack` or `reproduce`")
    return csv_path, read_results(csv_path.parent / "results.json")


def rebuild_tables(report: str | Path, baseline: str | None = None, out_dir: str | Path | None = None,
                   metric: str | None = None) -> dict[str, Path]:
    """table.md, table.csv and error_vs_eps.png recomputed from per_example.csv; provenance,
    indicators, attack settings and baseline come from results.json when it sits beside the CSV."""
    csv_path, document = report_files(report)
    provenance = Provenance.from_dict(document.get("provenance"))
    if metric is not None:
        provenance = replace(provenance, metric=metric)  # table.md and the plot only; results.json is not rewritten
    attack = provenance.attack or "unknown"
    try:
        result = result_from_per_example(csv_path, attack=attack)
    except (KeyError, ValueError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{csv_path} is not a per_example.csv written by winn-robust ({exc})") from None
    check_against_results(csv_path, result, document)
    result.unchanged_images = _runs_from_records(document.get("unchanged_images", []), attack)
    result.attacks = dict(document.get("attacks") or {})
    result.table_eps = provenance.table_eps
    names = list(result.clean_preds)
    if not names or not result.adv_preds:
        raise UserError(f"{csv_path} has no clean:<model> or adv[...] columns; is it a per_example.csv?")
    baseline = default_baseline(names, [provenance.baseline], baseline)
    if baseline not in names:
        raise SettingError("baseline", f"{baseline!r} is not in {csv_path}; its models are {', '.join(names)}")
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, baseline)
    indicators = [Indicator.from_dict(record) for record in document.get("indicators") or [] if isinstance(record, Mapping)]
    out_dir = Path(out_dir) if out_dir is not None else csv_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"table.md": out_dir / "table.md", "table.csv": out_dir / "table.csv"}
    curve_paths, curve_section = write_curve_files(out_dir, result, metrics, provenance)
    files.update(curve_paths)
    atomic_write_text(files["table.md"], table_markdown(metrics, provenance, indicators, result.unchanged_images,
                                                        result.attacks, curve_section))
    atomic_write_text(files["table.csv"], table_frame(metrics, provenance).to_csv(index=False))
    files["error_vs_eps.png"] = plot_error_vs_eps(metrics, out_dir / "error_vs_eps.png", provenance)
    return files
