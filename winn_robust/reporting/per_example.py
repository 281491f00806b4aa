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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from winn_robust.errors import UserError
from winn_robust.evaluation.harness import CrossEvalResult
from winn_robust.evaluation.metrics import Metrics, compute_metrics, worst_case_wrong

FORBIDDEN_NAME_CHARS = "[],:="
_ADV_COLUMN = re.compile(r"^adv\[attack=(?P<attack>[^,\]=]+),eps=(?P<eps>[^,\]]+),src=(?P<src>[^\]]+)\]:(?P<tgt>.+)$")
_ADV_COLUMN_V1 = re.compile(r"^adv\[eps=(?P<eps>[^,\]]+),src=(?P<src>[^\]]+)\]:(?P<tgt>.+)$")
_WORST_COLUMN = re.compile(r"^worst\[eps=(?P<eps>[^\]]+)\]:(?P<model>.+)$")
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


@dataclass
class PerExample:
    """A parsed per_example.csv of either schema: predictions keyed by what the columns name.
    `worst` holds every (eps, model): from the worst[...] columns, or (schema 1, which has none)
    computed from the clean and adv columns as `worst_case_wrong` does."""
    schema: int
    index: np.ndarray
    labels: np.ndarray
    clean: dict[str, np.ndarray]
    adv: dict[tuple[str, float, str, str], np.ndarray]  # (attack, eps, source, target) -> predictions, first n images
    worst: dict[tuple[float, str], np.ndarray]          # (eps, model) -> True = robust error

    def adv_preds(self) -> dict[tuple[str, float], dict[str, dict[str, np.ndarray]]]:
        """adv as the harness nests it: [(attack, eps)][source][target], in column order."""
        nested: dict[tuple[str, float], dict[str, dict[str, np.ndarray]]] = {}
        for (attack, eps, source, target), values in self.adv.items():
            nested.setdefault((attack, eps), {}).setdefault(source, {})[target] = values
        return nested

    def to_result(self) -> CrossEvalResult:
        adv = self.adv_preds()
        sizes = {key: len(next(iter(next(iter(by_source.values())).values()))) for key, by_source in adv.items()}
        return CrossEvalResult(labels=self.labels, clean_preds=self.clean, adv_preds=adv, run_sizes=sizes)


def _parse_eps(text: str, column: str, path: Path) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{path}: column {column!r} has eps {text!r}, not a number; "
                        "is it a per_example.csv written by winn-robust?") from None


def _ints(frame: pd.DataFrame, column: str, path: Path, prefix: bool = False) -> np.ndarray:
    """A column of whole numbers; with `prefix`, an attack run on the first n images only (its
    later cells empty) gives its first n values."""
    values = frame[column]
    if prefix:
        present = values.notna().to_numpy()
        n = int(present.sum())
        if not present[:n].all():
            raise UserError(f"{path}: column {column!r} has empty cells between values; an attack run on a "
                            "subset fills the first N rows")
        values = values.iloc[:n]
    numbers = pd.to_numeric(values, errors="coerce")
    try:
        if numbers.isna().any() or (numbers != numbers.round()).any():
            raise ValueError("not whole numbers")
        return numbers.to_numpy(np.int64)
    except (ValueError, TypeError):
        raise UserError(f"{path}: column {column!r} holds something other than whole numbers (an empty cell?); "
                        "per_example.csv must have a prediction in every cell") from None


def read_per_example(path: str | Path, attack: str = "unknown") -> PerExample:
    """Parse per_example.csv (the inverse of `per_example_frame`), checking every column; `attack`
    names the single attack of a schema-1 file. Anything malformed is one UserError."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a per_example.csv written by winn-robust ({exc})") from None
    if "label" not in frame.columns:
        raise UserError(f"{path} has no label column; is it a per_example.csv written by winn-robust?")
    labels = _ints(frame, "label", path)
    index = _ints(frame, "index", path) if "index" in frame.columns else np.arange(labels.shape[0])
    clean = {c[len(_CLEAN_PREFIX):]: _ints(frame, c, path) for c in frame.columns if c.startswith(_CLEAN_PREFIX)}
    adv: dict[tuple[str, float, str, str], np.ndarray] = {}
    worst: dict[tuple[float, str], np.ndarray] = {}
    schema = 2
    for column in frame.columns:
        if match := _ADV_COLUMN.match(column):
            adv[(match["attack"], _parse_eps(match["eps"], column, path), match["src"], match["tgt"])] = \
                _ints(frame, column, path, prefix=True)
        elif match := _ADV_COLUMN_V1.match(column):
            schema = 1
            adv[(attack, _parse_eps(match["eps"], column, path), match["src"], match["tgt"])] = _ints(frame, column, path)
        elif match := _WORST_COLUMN.match(column):
            values = _ints(frame, column, path, prefix=True)
            if not np.isin(values, (0, 1)).all():
                raise UserError(f"{path}: column {column!r} must hold 0 or 1 (1 = wrong clean or under some attack)")
            worst[(_parse_eps(match["eps"], column, path), match["model"])] = values.astype(bool)
        elif column.startswith(("adv[", "worst[")):
            raise UserError(f"{path}: column {column!r} is not adv[attack=A,eps=E,src=S]:T, adv[eps=E,src=S]:T "
                            "or worst[eps=E]:M; was it written by another version of winn-robust?")
    if not clean or not adv:
        raise UserError(f"{path} has no clean:<model> or adv[...] columns; is it a per_example.csv?")
    for (_, _, source, target) in adv:
        for model in (source, target):
            if model not in clean:
                raise UserError(f"{path}: model {model!r} of an adv column has no clean:{model} column")
    parsed = PerExample(schema, index, labels, clean, adv, worst)
    if any((eps, model) not in worst for (_, eps, _, _) in adv for model in clean):  # schema 1: computed
        for eps, by_model in worst_case_wrong(labels, clean, parsed.adv_preds()).items():
            for model, wrong in by_model.items():
                worst.setdefault((eps, model), wrong)
    return parsed


def result_from_per_example(path: str | Path, attack: str = "unknown") -> CrossEvalResult:
    """Parse per_example.csv back into predictions (the inverse of `per_example_frame`);
    `attack` names the single attack of a schema-1 file."""
    result = read_per_example(path, attack).to_result()
    frame = pd.read_csv(path)
    for column in frame.columns:  # the minimum-norm curve's columns (minnorm[attack=A]:M), when there is one
        match = _MINNORM_COLUMN.match(column)
        if match:
            result.curve = result.curve or {"attack": match["attack"]}
            result.min_norms[match["model"]] = frame[column].dropna().to_numpy(np.float64)
    return result


def default_baseline(models: Sequence[str], recorded: Sequence[str | None] = (), given: str | None = None) -> str:
    """The one rule for which model is the baseline (stated in `report --help`): the one given,
    else the first one the reports record (results.json's `baseline`), else the model named
    "baseline", else the first model. The caller refuses a choice not among `models`."""
    return given or next((r for r in recorded if r), None) or ("baseline" if "baseline" in models else models[0])


def metrics_from_per_example(path: str | Path, baseline: str) -> Metrics:
    """Recompute every table figure from per_example.csv alone."""
    result = result_from_per_example(path)
    return compute_metrics(result.labels, result.clean_preds, result.adv_preds, baseline)
