"""Check a `reproduce` report folder: every file there, and every table figure recomputed
from per_example.csv by hand-simple counting agrees with table.csv and results.json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED = ("table.md", "table.csv", "results.json", "per_example.csv", "summary.md",
            "error_vs_eps.png", "adversarial_examples.png")


def main(folder: Path) -> None:
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    assert not missing, f"missing report files: {missing}"
    table = pd.read_csv(folder / "table.csv")
    per_example = pd.read_csv(folder / "per_example.csv")
    results = json.loads((folder / "results.json").read_text())
    labels = per_example["label"].to_numpy()
    models = list(dict.fromkeys(table["model"]))
    baseline = results["provenance"]["baseline"]
    assert models[0] == baseline, (models, baseline)
    assert len(per_example) == results["provenance"]["n"] == int(table["n"].iloc[0])
    checked = 0
    for _, row in table.iterrows():
        eps, model = row["eps"], row["model"]
        clean_wrong = per_example[f"clean:{model}"].to_numpy() != labels
        assert np.isclose(row["clean_error"], clean_wrong.mean()), (model, "clean")
        own = per_example[f"adv[eps={eps!r},src={model}]:{model}"].to_numpy() != labels
        assert np.isclose(row["adv_error"], own.mean()), (model, eps, "adv")
        if model != baseline:
            base_adv = per_example[f"adv[eps={eps!r},src={baseline}]:{baseline}"].to_numpy() != labels
            method_on_base = per_example[f"adv[eps={eps!r},src={baseline}]:{model}"].to_numpy() != labels
            if base_adv.sum():
                assert np.isclose(row["correction_by_method"], 1 - (base_adv & method_on_base).sum() / base_adv.sum())
            base_on_method = per_example[f"adv[eps={eps!r},src={model}]:{baseline}"].to_numpy() != labels
            if own.sum():
                assert np.isclose(row["correction_by_baseline"], 1 - (own & base_on_method).sum() / own.sum())
        for metric in ("clean_error", "adv_error"):
            if not pd.isna(row[metric]):
                assert row[f"{metric}_ci_low"] <= row[metric] <= row[f"{metric}_ci_high"], (model, metric)
        checked += 1
    clean_by_eps = table.groupby("model")["clean_error"].nunique()
    assert (clean_by_eps == 1).all(), "clean error must not depend on eps"
    print(f"report {folder}: {checked} table rows recomputed from per_example.csv and consistent")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
