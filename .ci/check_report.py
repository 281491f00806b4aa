"""Check a `reproduce` report folder: every file is there, and every table figure recomputed from
per_example.csv by hand-simple counting agrees with table.csv and results.json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED = ("table.md", "table.csv", "results.json", "per_example.csv", "summary.md",
            "error_vs_eps.png", "adversarial_examples.png")


def column(frame: pd.DataFrame, name: str, n: int) -> np.ndarray:
    values = frame[name].to_numpy()[:n]
    assert not pd.isna(values).any(), f"{name} has empty cells among its first {n} rows"
    return values.astype(np.int64)


def main(folder: Path) -> None:
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    assert not missing, f"missing report files: {missing}"
    table = pd.read_csv(folder / "table.csv")
    per_example = pd.read_csv(folder / "per_example.csv")
    results = json.loads((folder / "results.json").read_text())
    assert results["schema_version"] == 2
    labels = per_example["label"].to_numpy()
    models = list(dict.fromkeys(table["model"]))
    baseline = results["provenance"]["baseline"]
    assert models[0] == baseline, (models, baseline)
    assert len(per_example) == results["provenance"]["n"]
    assert "## Can these numbers be trusted?" in (folder / "table.md").read_text()
    assert results["indicators"], "no failure indicators computed"
    checked = 0
    for _, row in table.iterrows():
        attack, eps, model, n = row["attack"], row["eps"], row["model"], int(row["n"])
        y = labels[:n]
        clean_wrong = column(per_example, f"clean:{model}", n) != y
        assert np.isclose(row["clean_error"], clean_wrong.mean()), (model, "clean")
        own = column(per_example, f"adv[attack={attack},eps={eps!r},src={model}]:{model}", n) != y
        assert np.isclose(row["adv_error"], own.mean()), (model, attack, eps, "adv")
        worst = column(per_example, f"worst[eps={eps!r}]:{model}", int(row["n_robust"]))
        assert np.isclose(row["robust_error"], worst.mean()), (model, eps, "robust")
        assert row["robust_error"] >= (own[: int(row["n_robust"])]).mean() - 1e-12, (model, eps, "robust >= own")
        if model != baseline:
            base_adv = column(per_example, f"adv[attack={attack},eps={eps!r},src={baseline}]:{baseline}", n) != y
            method_on_base = column(per_example, f"adv[attack={attack},eps={eps!r},src={baseline}]:{model}", n) != y
            if base_adv.sum():
                assert np.isclose(row["correction_by_method"], 1 - (base_adv & method_on_base).sum() / base_adv.sum())
            base_on_method = column(per_example, f"adv[attack={attack},eps={eps!r},src={model}]:{baseline}", n) != y
            if own.sum():
                assert np.isclose(row["correction_by_baseline"], 1 - (own & base_on_method).sum() / own.sum())
            assert np.isclose(row["adv_error_diff"], own.mean() - base_adv.mean())
        for metric in ("clean_error", "adv_error", "robust_error"):
            if not pd.isna(row[metric]):
                assert row[f"{metric}_ci_low"] <= row[metric] <= row[f"{metric}_ci_high"], (model, metric)
        checked += 1
    full = table[table["n"] == len(per_example)]
    assert (full.groupby("model")["clean_error"].nunique() == 1).all(), "clean error must not depend on eps or attack"
    print(f"report {folder}: {checked} table rows recomputed from per_example.csv and consistent")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
