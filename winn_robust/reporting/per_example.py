"""per_example.csv: one row per test image holding every prediction the tables are computed
from, so any figure can be recomputed by hand; `metrics_from_per_example` does exactly that,
and the tests check that it reproduces table.csv byte for byte."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from winn_robust.evaluation.harness import CrossEvalResult
from winn_robust.evaluation.metrics import Metrics, compute_metrics

FORBIDDEN_NAME_CHARS = "[],:="
_ADV_COLUMN = re.compile(r"^adv\[eps=(?P<eps>[^,\]]+),src=(?P<src>[^\]]+)\]:(?P<tgt>.+)$")
_CLEAN_PREFIX = "clean:"


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
