"""Reports: per_example.csv reproduces table.csv exactly; table.md reads like the paper; plots."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from winn_robust.evaluation import CrossEvalResult, EvalSpec, compute_metrics, cross_evaluate
from winn_robust.images import save_image_grid
from winn_robust.models import build_model
from winn_robust.reporting import metrics_from_per_example, result_from_per_example, table_frame, write_reports
from winn_robust.reporting.per_example import check_model_names
from winn_robust.reporting.plots import plot_adversarial_examples, plot_eps_sweep
from winn_robust.units import EPS_UNIT

LABELS = np.arange(10)


def preds(wrong: set[int]) -> np.ndarray:
    return np.array([(y + 1) % 10 if i in wrong else y for i, y in enumerate(LABELS)])


def hand_result() -> CrossEvalResult:
    """tests/test_metrics.py's worked example; "robust" never errs on its own adversarial examples."""
    return CrossEvalResult(
        labels=LABELS,
        clean_preds={"base": preds({0, 1}), "meth": preds({1, 2, 3}), "robust": preds(set())},
        adv_preds={0.125: {
            "base": {"base": preds({0, 1, 4, 5, 6, 7}), "meth": preds({1, 5}), "robust": preds(set())},
            "meth": {"base": preds({1, 2, 9}), "meth": preds({1, 2, 3, 8}), "robust": preds(set())},
            "robust": {"base": preds({0, 1}), "meth": preds({1, 2, 3}), "robust": preds(set())}}},
        unchanged_images={0.125: {"base": 0, "meth": 2, "robust": 0}},
        unchanged_pixels={0.125: {"base": 0, "meth": 128, "robust": 5}})


PROVENANCE = {"dataset": "digits", "split": "test", "n": 10, "attack": "fgsm", "eps": [0.125], "eps_unit": EPS_UNIT,
              "models": {"base": {"checkpoint": "b.pt", "method": "baseline", "arch": "vanilla", "sha256": "0" * 64}},
              "versions": {"torch": torch.__version__}, "device": {"type": "cpu", "name": "cpu"},
              "command_timestamp": "2024-01-01T00:00:00+00:00", "wall_time_s": 1.0}


@pytest.fixture()
def hand_reports(tmp_path):
    result = hand_result()
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, "base")
    return write_reports(tmp_path, result, metrics, PROVENANCE), result


def test_per_example_reproduces_table_csv_exactly(hand_reports):
    files, result = hand_reports
    recomputed = table_frame(metrics_from_per_example(files["per_example.csv"], "base"), PROVENANCE)
    assert recomputed.to_csv(index=False) == files["table.csv"].read_text()
    parsed = result_from_per_example(files["per_example.csv"])
    assert parsed.model_names == result.model_names
    np.testing.assert_array_equal(parsed.adv_preds[0.125]["meth"]["base"], result.adv_preds[0.125]["meth"]["base"])


def test_per_example_reproduces_a_real_sweep(tmp_path):
    torch.manual_seed(0)
    models = {"baseline": build_model("vanilla", (1, 8, 8), 10), "winn-resnet": build_model("vanilla", (1, 8, 8), 10)}
    images, labels = torch.rand(16, 1, 8, 8) * 2 - 1, torch.randint(0, 10, (16,))
    result = cross_evaluate(models, images, labels, EvalSpec(eps=(0.1, 0.0, 1 / 3), batch_size=16), progress=False)
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, "baseline")
    files = write_reports(tmp_path, result, metrics, {})
    recomputed = metrics_from_per_example(files["per_example.csv"], "baseline")
    assert recomputed == metrics
    assert table_frame(recomputed, {}).to_csv(index=False) == files["table.csv"].read_text()


def test_table_csv_columns_and_fractions(hand_reports):
    import pandas as pd

    frame = pd.read_csv(hand_reports[0]["table.csv"])
    assert list(frame.columns[:7]) == ["model", "checkpoint", "method", "arch", "eps", "eps_unit", "n"]
    meth = frame[frame.model == "meth"].iloc[0]
    assert meth.adv_error == pytest.approx(0.4) and meth.adv_error_k == 4 and meth.adv_error_n == 10
    assert meth.correction_by_method == pytest.approx(4 / 6) and meth.correction_by_baseline_n == 4
    assert (meth.mcnemar_adv_b, meth.mcnemar_adv_c) == (5, 3)
    assert frame[frame.model == "base"].iloc[0].checkpoint == "b.pt"
    robust = frame[frame.model == "robust"].iloc[0]
    assert np.isnan(robust.correction_by_baseline) and robust.correction_by_baseline_n == 0


def test_table_md_rows_and_na(hand_reports):
    text = hand_reports[0]["table.md"].read_text()
    assert "Dataset: digits, split: test, N = 10. Attack: fgsm, eps = 0.125 in [0, 1] pixel units" in text
    assert "| base | 20.00% [2.52, 55.61] | - |" in text  # Table 2
    # Table 3/4: base row has "-" for corrections and McNemar; meth row by hand (see test_metrics.py)
    assert "| base | 20.00% [2.52, 55.61] | 60.00% [26.24, 87.84] | - | - | - |" in text
    assert ("| meth | 30.00% [6.67, 65.25] | 40.00% [12.16, 73.76] | 66.67% [22.28, 95.67] | 50.00% [6.76, 93.24] "
            "| 0.727 (b=5, c=3) |") in text
    robust_row = next(line for line in text.splitlines() if line.startswith("| robust | 0.00%") and "100.00%" in line)
    assert robust_row.split(" | ")[4] == "n/a"  # correction by baseline: robust made no mistakes
    assert "meth: 2" in text  # unchanged-image sanity note


def test_results_json(hand_reports):
    doc = json.loads(hand_reports[0]["results.json"].read_text())
    assert {"dataset", "split", "n", "attack", "eps", "eps_unit", "models", "versions", "device",
            "command_timestamp", "wall_time_s"} <= set(doc["provenance"])
    at = doc["metrics"]["by_eps"][0]
    assert at["eps"] == 0.125
    assert at["transfer_error"]["meth"]["base"]["k"] == 3
    assert at["models"]["robust"]["correction_by_baseline"]["value"] is None
    assert doc["unchanged_pixels"][0]["counts"]["meth"] == 128


def test_model_names_with_separators_are_refused():
    with pytest.raises(ValueError):
        check_model_names(["ok", "bad:name"])


def test_plots_write_pngs(tmp_path):
    torch.manual_seed(0)
    images = torch.rand(10, 1, 8, 8) * 2 - 1
    grid = save_image_grid(images, tmp_path / "grid.png", nrow=5)
    assert Image.open(grid).size == (5 * 10 + 2, 2 * 10 + 2)  # 8x8 tiles with 2-pixel padding
    adv = {"a": (images + 0.1).clamp(-1, 1), "b": (images - 0.2).clamp(-1, 1)}
    examples = plot_adversarial_examples(images, adv, tmp_path / "examples.png", n=4)
    assert Image.open(examples).format == "PNG"
    result = hand_result()
    result.adv_preds[0.25] = result.adv_preds[0.125]
    sweep = plot_eps_sweep(result, tmp_path / "sweep.png", baseline="base")
    assert Image.open(sweep).format == "PNG" and sweep.stat().st_size > 5000
