"""per_example.csv: one row per test image holding every prediction the tables are computed
from, so any figure can be recomputed by hand; `metrics_from_per_example` does exactly that,
and the tests check that it reproduces table.csv byte for byte.

Columns (schema 2): `index`, `label`, `clean:<model>`, then for every attack run
`adv[attack=<a>,eps=<e>,src=<s>]:<t>` (t's prediction on the example attack a crafted on s at
eps e; empty beyond the images that attack ran on), then `worst[eps=<e>]:<m>` (1 when m is wrong
on the clean image or on any adversarial example at eps e: the robust error's indicator).
Schema-1 files (`adv[eps=<e>,src=<s>]:<t>`, one attack) are still read. With a minimum-norm
curve, `minnorm[attack=<a>]:<m>` holds each image's smallest adversarial perturbation found on m
(pixel units of the report's norm; inf = none found; empty beyond the images the curve covers)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from winn_robust.evaluation.harness import CrossEvalResult
from winn_robust.evaluation.metrics import Metrics, compute_metrics, worst_case_wrong

FORBIDDEN_NAME_CHARS = "[],:="
_ADV_COLUMN = re.compile(r"^adv\[attack=(?P<attack>[^,\]=]+),eps=(?P<eps>[^,\]]+),src=(?P<src>[^\]]+)\]:(?P<tgt>.+)$")
_ADV_COLUMN_V1 = re.compile(r"^adv\[eps=(?P<eps>[^,\]]+),src=(?P<src>[^\]]+)\]:(?P<tgt>.+)$")
_CLEAN_PREFIX = "clean:"
_MINNORM_COLUMN = re.compile(r"^minnorm\[attack=(?P<attack>[^\]]+)\]:(?P<model>.+)$")


def format_eps(eps: float) -> str:
    """Round-trippable (float(format_eps(e)) == e), so per_example.csv parses back exactly."""
    return repr(float(eps))


def clean_column(model: str) -> str:
    return f"{_CLEAN_PREFIX}{model}"


def adv_column(attack: str, eps: float, source: str, target: str) -> str:
    return f"adv[attack={attack},eps={format_eps(eps)},src={source}]:{target}"


def minnorm_column(attack: str, model: str) -> str:
    return f"minnorm[attack={attack}]:{model}"


def worst_column(eps: float, model: str) -> str:
    return f"worst[eps={format_eps(eps)}]:{model}"


def check_model_names(names: list[str]) -> None:
    """Model and attack names go into column headers; these characters would make them ambiguous."""
    for name in names:
        if not name or any(ch in name for ch in FORBIDDEN_NAME_CHARS):
            raise ValueError(f"name {name!r} must be non-empty and free of {FORBIDDEN_NAME_CHARS!r}")


def _padded(values: np.ndarray, n: int) -> pd.array:
    """Predictions of a run on its first len(values) images, as a nullable column of length n."""
    column = pd.array([pd.NA] * n, dtype="Int64")
    column[: len(values)] = values
    return column


def per_example_frame(result: CrossEvalResult) -> pd.DataFrame:
    """One row per test image: every clean and adversarial prediction behind the tables."""
    names = result.model_names
    check_model_names(names + result.attack_names)
    n = result.n
    columns: dict[str, object] = {"index": np.arange(n), "label": result.labels}
    columns.update({clean_column(m): result.clean_preds[m] for m in names})
    for (attack, eps), by_source in result.adv_preds.items():
        for source in names:
            for target in names:
                values = by_source[source][target]
                columns[adv_column(attack, eps, source, target)] = values if len(values) == n else _padded(values, n)
    for eps, by_model in worst_case_wrong(result.labels, result.clean_preds, result.adv_preds).items():
        for model in names:
            values = by_model[model].astype(np.int64)
            columns[worst_column(eps, model)] = values if len(values) == n else _padded(values, n)
    if result.min_norms and result.curve is not None:
        for model in names:
            norms = np.full(n, np.nan)
            norms[: len(result.min_norms[model])] = result.min_norms[model]
            columns[minnorm_column(str(result.curve["attack"]), model)] = norms
    return pd.DataFrame(columns)


def result_from_per_example(path: str | Path, attack: str = "unknown") -> CrossEvalResult:
    """Parse per_example.csv back into predictions (the inverse of `per_example_frame`);
    `attack` names the single attack of a schema-1 file."""
    frame = pd.read_csv(path)
    labels = frame["label"].to_numpy(np.int64)
    clean = {c[len(_CLEAN_PREFIX):]: frame[c].to_numpy(np.int64) for c in frame.columns if c.startswith(_CLEAN_PREFIX)}
    adv: dict[tuple[str, float], dict[str, dict[str, np.ndarray]]] = {}
    for column in frame.columns:
        match = _ADV_COLUMN.match(column) or _ADV_COLUMN_V1.match(column)
        if match:
            name = match.groupdict().get("attack") or attack
            values = frame[column].dropna().to_numpy(np.int64)
            adv.setdefault((name, float(match["eps"])), {}).setdefault(match["src"], {})[match["tgt"]] = values
    sizes = {key: len(next(iter(row.values()))) for key, by_source in adv.items() for row in [next(iter(by_source.values()))]}
    result = CrossEvalResult(labels=labels, clean_preds=clean, adv_preds=adv, run_sizes=sizes)
    for column in frame.columns:
        match = _MINNORM_COLUMN.match(column)
        if match:
            result.curve = result.curve or {"attack": match["attack"]}
            result.min_norms[match["model"]] = frame[column].dropna().to_numpy(np.float64)
    return result


def metrics_from_per_example(path: str | Path, baseline: str) -> Metrics:
    """Recompute every table figure from per_example.csv alone."""
    result = result_from_per_example(path)
    return compute_metrics(result.labels, result.clean_preds, result.adv_preds, baseline)
