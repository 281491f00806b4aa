"""Reports: per_example.csv reproduces table.csv exactly; table.md reads like the paper; plots."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from winn_robust.errors import UserError
from winn_robust.evaluation import CrossEvalResult, EvalSpec, compute_metrics, cross_evaluate
from winn_robust.images import save_image_grid
from winn_robust.models import build_model
from winn_robust.reporting import metrics_from_per_example, result_from_per_example, table_frame, write_reports
from winn_robust.reporting.files import rebuild_tables
from winn_robust.reporting.per_example import check_model_names, default_baseline, read_per_example
from winn_robust.reporting.plots import plot_adversarial_examples, plot_error_vs_eps
from winn_robust.reporting.provenance import Provenance
from winn_robust.units import EPS_UNIT

LABELS = np.arange(10)
RUN = ("fgsm", 0.125)


def preds(wrong: set[int]) -> np.ndarray:
    return np.array([(y + 1) % 10 if i in wrong else y for i, y in enumerate(LABELS)])


def hand_result() -> CrossEvalResult:
    """tests/test_metrics.py's worked example; "robust" never errs on its own adversarial examples."""
    return CrossEvalResult(
        labels=LABELS,
        clean_preds={"base": preds({0, 1}), "meth": preds({1, 2, 3}), "robust": preds(set())},
        adv_preds={("fgsm", 0.125): {
            "base": {"base": preds({0, 1, 4, 5, 6, 7}), "meth": preds({1, 5}), "robust": preds(set())},
            "meth": {"base": preds({1, 2, 9}), "meth": preds({1, 2, 3, 8}), "robust": preds(set())},
            "robust": {"base": preds({0, 1}), "meth": preds({1, 2, 3}), "robust": preds(set())}}},
        unchanged_images={("fgsm", 0.125): {"base": 0, "meth": 2, "robust": 0}},
        unchanged_pixels={("fgsm", 0.125): {"base": 0, "meth": 128, "robust": 5}},
        run_sizes={("fgsm", 0.125): 10}, attacks={"fgsm": {"attack": "fgsm", "seed": 0}}, table_eps=0.125)


PROVENANCE = Provenance.from_dict({"dataset": "digits", "split": "test", "n": 10, "attack": "fgsm", "eps": [0.125], "eps_unit": EPS_UNIT,
              "models": {"base": {"checkpoint": "b.pt", "method": "baseline", "arch": "vanilla", "sha256": "0" * 64}},
              "versions": {"torch": torch.__version__}, "device": {"type": "cpu", "name": "cpu"},
              "command_timestamp": "2024-01-01T00:00:00+00:00", "wall_time_s": 1.0})


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
    np.testing.assert_array_equal(parsed.adv_preds[RUN]["meth"]["base"], result.adv_preds[RUN]["meth"]["base"])


def test_per_example_reproduces_a_real_sweep(tmp_path):
    torch.manual_seed(0)
    models = {"baseline": build_model("vanilla", (1, 8, 8), 10), "winn-resnet": build_model("vanilla", (1, 8, 8), 10)}
    images, labels = torch.rand(16, 1, 8, 8) * 2 - 1, torch.randint(0, 10, (16,))
    spec = EvalSpec.build((0.1, 0.0, 1 / 3), ["fgsm", "pgd"], options={"pgd": {"steps": "3", "restarts": "1"}},
                          batch_size=16, attack_limits={"pgd": 11}, attack_eps={"pgd": (0.1,)})
    result = cross_evaluate(models, images, labels, spec, progress=False)
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, "baseline")
    files = write_reports(tmp_path, result, metrics, Provenance())
    recomputed = metrics_from_per_example(files["per_example.csv"], "baseline")
    assert recomputed == metrics
    assert table_frame(recomputed, Provenance()).to_csv(index=False) == files["table.csv"].read_text()


def test_the_parsed_schema_round_trips_and_keeps_the_worst_case(hand_reports):
    files, result = hand_reports
    parsed = read_per_example(files["per_example.csv"])
    assert parsed.schema == 2 and list(parsed.clean) == ["base", "meth", "robust"]
    assert parsed.adv[("fgsm", 0.125, "base", "meth")].tolist() == result.adv_preds[RUN]["base"]["meth"].tolist()
    # worst[...] columns as written: base wrong clean on {0, 1}, on own or transferred examples on {2, 4..9}
    assert np.flatnonzero(parsed.worst[(0.125, "base")]).tolist() == [0, 1, 2, 4, 5, 6, 7, 9]
    frame = __import__("pandas").read_csv(files["per_example.csv"])
    frame["label"] = frame["label"].astype(object)
    frame.loc[3, "label"] = "x"
    frame.to_csv(files["per_example.csv"], index=False)
    with pytest.raises(UserError, match="'label' holds something other than whole numbers"):
        read_per_example(files["per_example.csv"])


@pytest.mark.parametrize("models, recorded, given, expected", [
    (["a", "baseline"], [], None, "baseline"), (["a", "b"], [], None, "a"), (["a", "baseline"], [None, "a"], None, "a"),
    (["a", "baseline"], ["a"], "baseline", "baseline")])
def test_one_rule_for_the_default_baseline(models, recorded, given, expected):
    assert default_baseline(models, recorded, given) == expected


def test_rebuilding_without_results_json_takes_the_model_named_baseline(hand_reports, tmp_path):
    """The same rule as the aggregate's: without results.json, the model named baseline, not the first."""
    files, _ = hand_reports
    frame = __import__("pandas").read_csv(files["per_example.csv"])
    frame = frame.rename(columns=lambda c: c.replace("meth", "baseline"))
    (tmp_path / "bare").mkdir()
    frame.to_csv(tmp_path / "bare" / "per_example.csv", index=False)
    rebuilt = rebuild_tables(tmp_path / "bare")
    table = __import__("pandas").read_csv(rebuilt["table.csv"])
    assert table["model"].iloc[0] == "baseline"  # the baseline leads the table and corrects nobody
    assert table.loc[table["model"] == "baseline", "correction_by_method"].isna().all()
    assert table.loc[table["model"] == "base", "correction_by_method"].notna().all()


def test_table_csv_columns_and_fractions(hand_reports):
    import pandas as pd

    frame = pd.read_csv(hand_reports[0]["table.csv"])
    assert list(frame.columns[:9]) == ["model", "checkpoint", "method", "arch", "attack", "eps", "eps_unit", "n",
                                       "n_robust"]
    meth = frame[frame.model == "meth"].iloc[0]
    assert meth.adv_error == pytest.approx(0.4) and meth.adv_error_k == 4 and meth.adv_error_n == 10
    assert meth.correction_by_method == pytest.approx(4 / 6) and meth.correction_by_baseline_n == 4
    assert (meth.mcnemar_adv_b, meth.mcnemar_adv_c) == (5, 3)
    assert frame[frame.model == "base"].iloc[0].checkpoint == "b.pt"
    assert (meth.robust_error_k, meth.robust_error_n) == (5, 10)   # see test_metrics.py
    assert meth.adv_error_diff == pytest.approx(-0.2)
    robust = frame[frame.model == "robust"].iloc[0]
    assert np.isnan(robust.correction_by_baseline) and robust.correction_by_baseline_n == 0


def test_table_md_rows_and_na(hand_reports):
    text = hand_reports[0]["table.md"].read_text()
    assert ("Dataset: digits, split: test, N = 10. Attacks: fgsm; table eps = 0.125, in [0, 1] pixel units" in text)
    assert "| base | 20.00% [2.52, 55.61] | - |" in text  # Table 2
    # Table 3/4: base row has "-" for corrections and McNemar; meth row by hand (see test_metrics.py)
    assert "| base | 20.00% [2.52, 55.61] | 60.00% [26.24, 87.84] | 80.00% [44.39, 97.48] | - | - | - | - |" in text
    meth = next(line for line in text.splitlines() if line.startswith("| meth | 30.00%") and "66.67%" in line)
    cells = meth.split(" | ")
    assert cells[2:4] == ["40.00% [12.16, 73.76]", "50.00% [18.71, 81.29]"]  # adversarial and robust error
    assert cells[4].startswith("-20.00 [") and cells[5:] == ["66.67% [22.28, 95.67]", "50.00% [6.76, 93.24]",
                                                             "0.727 (b=5, c=3) |"]
    robust_row = next(line for line in text.splitlines() if line.startswith("| robust | 0.00%") and "100.00%" in line)
    assert robust_row.split(" | ")[6] == "n/a"  # correction by baseline: robust made no mistakes
    assert "meth: 2" in text  # unchanged-image sanity note


def test_results_json(hand_reports):
    doc = json.loads(hand_reports[0]["results.json"].read_text())
    assert {"dataset", "split", "n", "attack", "eps", "eps_unit", "models", "versions", "device",
            "command_timestamp", "wall_time_s"} <= set(doc["provenance"])
    assert doc["schema_version"] == 2 and doc["attacks"]["fgsm"]["seed"] == 0
    at = doc["metrics"]["runs"][0]
    assert (at["attack"], at["eps"], at["n"]) == ("fgsm", 0.125, 10)
    assert doc["metrics"]["robust"][0]["error"]["meth"]["k"] == 5
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
    rows = [("fgsm on a", (images + 0.1).clamp(-1, 1)[:4], [1, 2, 3, 4]), ("pgd on b", (images - 0.2).clamp(-1, 1)[:4],
                                                                         [0, 0, 0, 0])]
    examples = plot_adversarial_examples(images[:4], rows, [0, 1, 2, 3], {"a": [0, 1, 2, 3], "b": [0, 1, 1, 3]},
                                         ["zero", "one", "two", "three", "four"], tmp_path / "examples.png", "title")
    assert Image.open(examples).format == "PNG"
    result = hand_result()
    result.adv_preds[("fgsm", 0.25)] = result.adv_preds[RUN]
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, "base")
    sweep = plot_error_vs_eps(metrics, tmp_path / "sweep.png", Provenance(dataset="digits"))
    assert Image.open(sweep).format == "PNG" and sweep.stat().st_size > 5000
    single = compute_metrics(result.labels, result.clean_preds, {RUN: result.adv_preds[RUN]}, "base")
    assert plot_error_vs_eps(single, tmp_path / "single.png").stat().st_size > 5000  # one eps still gets a figure
