"""Issue 20, a newcomer's second day: junk model files, changed budgets in reproduce, honest
few-seed statistics, the wrong input range, report lines that say what they mean."""

from __future__ import annotations

import pytest

from winn_robust.cli import cli_message
from winn_robust.errors import UserError
from winn_robust.model_sources import load_model


@pytest.mark.parametrize("content", [b"junk\n", b"PK\x03\x04junk", bytes(range(256)) * 2])
def test_a_junk_model_file_is_one_user_error(tmp_path, content):
    path = tmp_path / "junk.ts"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"TorchScript|checkpoint"):
        load_model(str(path))


def _finished_study(tmp_path, epochs: int):
    """A reproduce --out whose runs finished `epochs` epochs (checkpoints only, no training)."""
    from winn_robust.checkpoint import save_checkpoint
    from winn_robust.experiments.reproduce import resolve_settings
    from winn_robust.models import build_model
    from winn_robust.training.trainer import LAST_NAME

    settings = resolve_settings("quick", {"epochs": epochs, "seeds": "2"}, out=tmp_path / "R")
    for seed in settings.seeds:
        for method in settings.methods:
            config = settings.config(seed, method)
            save_checkpoint(settings.run_dir(seed, method) / LAST_NAME, build_model("vanilla", (1, 8, 8), 10),
                            {"arch": "vanilla", "dataset": "digits", "image_shape": [1, 8, 8], "num_classes": 10,
                             "method": method, "epoch": epochs, "seed": seed, "hparams": config.to_dict()})
    return settings


def test_reproduce_refuses_a_changed_budget_unless_told_to_extend(tmp_path):
    from winn_robust.experiments.reproduce import check_budget, resolve_settings

    _finished_study(tmp_path, 5)
    assert check_budget(resolve_settings("quick", {"epochs": 5, "seeds": "2"}, out=tmp_path / "R")) == []
    with pytest.raises(UserError, match=r"`epochs` 5, this run asks for `epochs` 6; pass `extend` to continue 4 run") as caught:
        check_budget(resolve_settings("quick", {"epochs": 6, "seeds": "2"}, out=tmp_path / "R"))
    assert "--epochs 5, this run asks for --epochs 6; pass --extend to continue 4 run" in cli_message(caught.value)
    lines = check_budget(resolve_settings("quick", {"epochs": 6, "seeds": "2"}, out=tmp_path / "R", extend=True))
    assert lines and "from epoch 5 to 6" in lines[0] and "winn seed 1" in lines[0]


def test_job_times_are_kept_in_their_folders_and_added_when_a_job_continues(tmp_path):
    from winn_robust.experiments.jobs import record_time, recorded_time
    from winn_robust.reporting.summary import wall_time_line

    path = tmp_path / "run" / "wall_time.json"
    assert recorded_time(path) is None
    record_time(path, 10.0)
    assert record_time(path, 5.0, add=True) == 15.0 and recorded_time(path) == 15.0
    assert record_time(path, 3.0) == 3.0  # a fresh job (--force) replaces the time
    line = wall_time_line({"training baseline": 12.0, "evaluation": None}, this_run=0.4)
    assert "training baseline 12 s, evaluation not recorded" in line and "a run of 0 s" in line


def test_zero_variance_paired_ttest_is_not_a_p_value():
    import math

    from winn_robust.evaluation.seeds import paired_ttest_pvalue

    # per-seed differences -1.50 and -1.50 points (as k/N rates give them, with float noise)
    assert math.isnan(paired_ttest_pvalue([0.300 - 0.015, 0.2 - 0.015], [0.300, 0.2]))
    assert math.isnan(paired_ttest_pvalue([0.3, 0.2], [0.3, 0.2]))
    assert 0 < paired_ttest_pvalue([0.28, 0.19, 0.25], [0.30, 0.20, 0.24]) < 1


@pytest.mark.parametrize("n_seeds, expected", [(2, "only 3 distinct seed resamples"), (3, "only 10 distinct"),
                                               (5, None)])
def test_the_aggregate_verdict_says_how_many_seeds_it_rests_on(tmp_path, n_seeds, expected):
    from test_aggregate import write_seed

    from winn_robust.reporting.aggregate import aggregate_seeds, read_seed_report, verdict

    folders = [write_seed(tmp_path / f"s{s}", s % 3) for s in range(n_seeds)]
    for s, folder in enumerate(folders):  # distinct training seeds for the labels
        text = (folder / "results.json").read_text().replace(f'"seed": {s % 3}', f'"seed": {s}')
        (folder / "results.json").write_text(text)
    text = verdict(aggregate_seeds([read_seed_report(f) for f in folders], resamples=200))
    assert f"Across {n_seeds} seeds" in text
    if expected:
        assert expected in text and "optimistic" in text and "at least 5 seeds" in text
    else:
        assert "optimistic" not in text


def test_the_one_seed_summary_states_the_verdict_with_mcnemar():
    import numpy as np

    from winn_robust.evaluation.metrics import compute_metrics
    from winn_robust.reporting.summary import one_seed_verdict

    labels = np.arange(40) % 10
    wrong = lambda k: np.where(np.arange(40) < k, (labels + 1) % 10, labels)
    clean = {"baseline": wrong(4), "winn": wrong(4)}
    adv = {("fgsm", 0.125): {"baseline": {"baseline": wrong(30), "winn": wrong(10)},
                             "winn": {"baseline": wrong(10), "winn": wrong(12)}}}
    text = one_seed_verdict(compute_metrics(labels, clean, adv, "baseline"), 0.125)
    assert "On 1 seed winn lowers fgsm adversarial error at eps 0.125 (N = 40) by 45.0 points" in text
    assert "exact McNemar p" in text and "b=18, c=0), significant at 0.05" in text
    assert "leaves clean error unchanged" in text and "1 training seed" in text and "--seeds 5" in text


def _digits_model_trained_on_unit_pixels():
    """A small MLP trained on [0, 1] digits (scikit-learn's, real data), and its test set."""
    import torch
    from torch import nn

    from winn_robust.data import load_dataset
    from winn_robust.units import to_pixel_range

    torch.manual_seed(0)
    data = load_dataset("digits")
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    pixels = to_pixel_range(data.train_images)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(pixels), data.train_labels).backward()
        optimizer.step()
    return net.eval(), to_pixel_range(data.test_images[:200]), data.test_labels[:200]


class _Affine(__import__("torch").nn.Module):
    """inner(scale * x + shift): the wrappers users write."""

    def __init__(self, inner, scale, shift):
        super().__init__()
        self.inner, self.scale, self.shift = inner, scale, shift

    def forward(self, x):
        return self.inner(self.scale * x + self.shift)


def _convention(report, model):
    return next(i for i in report.indicators if i.indicator == "input-convention" and i.model == model)


def test_the_x_times_2_minus_1_mistake_is_flagged_and_names_the_range_convention():
    from winn_robust.evaluation.indicators import PASS, WARN
    from winn_robust.experiments.evaluate import evaluate

    net, images, labels = _digits_model_trained_on_unit_pixels()
    report = evaluate({"right": net, "wrong": _Affine(net, 2.0, -1.0)}, images, labels, 0.03, dataset="digits",
                      device="cpu")
    right, wrong = _convention(report, "right"), _convention(report, "wrong")
    assert right.status == PASS and wrong.status == WARN
    assert "[0, 1]" in wrong.advice and "x*2-1" in wrong.advice


def test_a_model_trained_on_normalised_pixels_is_flagged_then_fixed_by_input_mean_and_std():
    from winn_robust.evaluation.indicators import PASS, WARN
    from winn_robust.experiments.evaluate import evaluate

    net, images, labels = _digits_model_trained_on_unit_pixels()
    mean, std = 0.3, 0.4  # this "external" model wants (u - 0.3) / 0.4, i.e. it undoes it first
    normalised = _Affine(net, std, mean)
    bare = evaluate({"m": normalised}, images, labels, 0.03, dataset="digits", device="cpu")
    assert _convention(bare, "m").status == WARN and "--input-mean" in _convention(bare, "m").advice
    fixed = evaluate({"m": normalised}, images, labels, 0.03, dataset="digits", device="cpu",
                     input_mean=[mean], input_std=[std])
    assert _convention(fixed, "m").status == PASS
    assert fixed.metrics.clean_error["m"].value < bare.metrics.clean_error["m"].value


def test_clean_error_far_above_the_checkpoints_validation_error_warns():
    import numpy as np

    from winn_robust.evaluation.harness import CrossEvalResult
    from winn_robust.evaluation.indicators import PASS, WARN, input_convention

    labels = np.arange(100) % 10
    preds = np.where(np.arange(100) < 40, (labels + 1) % 10, labels)  # 40% clean error
    result = CrossEvalResult(labels=labels, clean_preds={"a": preds, "b": preds}, adv_preds={})
    rows = {i.model: i for i in input_convention(result, {"a": 0.12, "b": None}, 10)}
    assert rows["a"].status == WARN and "validation error 12.00%" in rows["a"].detail
    assert rows["b"].status == PASS  # 40% < half of chance (45%): no validation error to compare with


def test_identical_models_get_identical_numbers_whatever_their_names():
    import numpy as np

    from winn_robust.experiments.evaluate import evaluate

    net, images, labels = _digits_model_trained_on_unit_pixels()
    options = {"pgd": {"steps": 3, "restarts": 1}}
    both = evaluate({"original": net, "copy": net}, images[:64], labels[:64], 0.1, attacks="pgd", options=options,
                    dataset="digits", device="cpu")
    alone = evaluate({"renamed": net}, images[:64], labels[:64], 0.1, attacks="pgd", options=options,
                     dataset="digits", device="cpu")
    run = both.result.adv_preds[("pgd", 0.1)]
    assert np.array_equal(run["original"]["original"], run["copy"]["copy"])
    assert np.array_equal(run["original"]["original"], alone.result.adv_preds[("pgd", 0.1)]["renamed"]["renamed"])
    assert both.result.probes["original"] == both.result.probes["copy"] == alone.result.probes["renamed"]


@pytest.mark.parametrize("eps, text", [(8 / 255, "8/255 (0.0314)"), (0.125, "0.125"), (1 / 32, "0.03125"),
                                       (0.0, "0"), (0.1, "0.1"), (2 / 255, "2/255 (0.0078)")])
def test_eps_is_shown_as_papers_write_it(eps, text):
    from winn_robust.units import eps_text

    assert eps_text(eps) == text


def test_report_lines_say_what_was_used_and_for_which_inputs():
    from winn_robust.reporting.provenance import Provenance
    from winn_robust.reporting.tables import _option_text, _returns_clean_images, eps_unit

    settings = {"attack": "pgd", "steps": 10, "step_size": 0.0}
    assert _option_text("step_size", 0.0, settings, [8 / 255]) == "step_size=2.5*eps/steps (used: 2/255 (0.0078) at eps " \
                                                                  "8/255 (0.0314))"
    assert _option_text("step_size", 0.01, settings, [8 / 255]) == "step_size=0.01"
    assert _returns_clean_images("apgd-ce") and _returns_clean_images("autoattack") and not _returns_clean_images("fgsm")
    assert "[-1, 1]" not in eps_unit(Provenance.from_dict({"models": {"m": {"kind": "python"}}}))
    assert "model inputs in [-1, 1]" in eps_unit(Provenance.from_dict({"models": {"m": {"kind": "checkpoint"}}}))
    assert "external models receive [0, 1]" in eps_unit(Provenance.from_dict(
        {"models": {"a": {"kind": "checkpoint"}, "b": {"kind": "torchscript"}}}))


def test_the_small_mistakes_of_day_two_are_one_line_each(tmp_path, capsys):
    from test_cli import TINY_TRAIN, fake_checkpoint, one_line_error

    from winn_robust.cli import main

    a, b = fake_checkpoint(tmp_path / "a.pt"), fake_checkpoint(tmp_path / "b.pt", method="winn")
    out = str(tmp_path / "r")
    one_line_error(capsys, ["attack", "--model", f"x={a}", "--model", f"x={b}", "--eps", "0.1", "--out", out],
                   "name 'x' is given to two models")
    one_line_error(capsys, ["attack", "--model", str(a), "--data", "fmnist", "--eps", "0.1", "--out", out],
                   "unknown dataset 'fmnist'")
    one_line_error(capsys, ["attack", "--model", str(a), "--eps", "1.5", "--out", out], "outside [0, 1]")
    assert "1.5/255" not in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", "--method", "baseline", *TINY_TRAIN, "--out", str(run)]) == 0
    capsys.readouterr()
    one_line_error(capsys, ["attack", "--model", str(run), "--eps", "0.1", "--out", str(run)], "training run folder")
    err = one_line_error(capsys, ["train", "--resume", "--epochs", "1", "--out", str(run), "--no-progress"],
                         "nothing to do")
    assert not err.startswith("training")
    assert main(["train", "--resume", "--epochs", "2", "--out", str(run), "--no-progress", "--device", "cpu"]) == 0
    assert "resuming baseline from epoch 1 to 2" in capsys.readouterr().err


def test_attack_without_progress_bars_logs_each_finished_run(tmp_path, capsys):
    from test_cli import fake_checkpoint

    from winn_robust.cli import main

    a = fake_checkpoint(tmp_path / "a.pt")
    assert main(["attack", "--model", str(a), "--eps", "0.1,0.1,8/255", "--limit", "20", "--no-progress",
                 "--device", "cpu", "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert "repeats a value; each eps is evaluated once (2 eps)" in captured.err
    assert "finished fgsm at eps 0.1 on 1 model(s), 20 images, in" in captured.out
    assert "finished fgsm at eps 8/255 (0.0314)" in captured.out


def test_ctrl_c_in_train_names_the_epoch_kept_and_the_command(tmp_path):
    import argparse

    from test_cli import fake_checkpoint

    from winn_robust.cli import interrupted_hint

    fake_checkpoint(tmp_path / "last.pt")  # epoch 1
    hint = interrupted_hint(argparse.Namespace(command="train", out=tmp_path))
    assert "epochs 1-1 are kept" in hint and f"winn-robust train --out {tmp_path} --resume" in hint


def test_help_lists_plot_every_attacks_keys_and_one_name_for_the_test_limit(capsys):
    from winn_robust.cli import build_parser, main
    from winn_robust.experiments.reproduce import resolve_settings

    assert main(["--help"]) == 0
    assert "| plot |" in capsys.readouterr().out
    assert main(["attack", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "square: queries=5000" in text and "apgd-t: steps=100, target_classes=9" in text
    args = build_parser().parse_args(["reproduce", "--limit", "7", "--seed", "3"])
    assert args.test_limit == 7
    assert resolve_settings("quick", {"seed": 3}).seeds == (3,)
    with pytest.raises(UserError, match="not both"):
        resolve_settings("quick", {"seed": 3, "seeds": "2"})
    assert build_parser().parse_args(["attack", "--test-limit", "5", "--eps", "0.1", "--out", "x"]).limit == 5


def test_metric_accuracy_shows_one_minus_the_error_and_the_csv_has_both(tmp_path):
    import pandas as pd

    from winn_robust.experiments.evaluate import evaluate

    net, images, labels = _digits_model_trained_on_unit_pixels()
    report = evaluate({"m": net}, images[:100], labels[:100], 0.1, dataset="digits", device="cpu", metric="accuracy",
                      out_dir=tmp_path / "r")
    table = (tmp_path / "r" / "table.md").read_text()
    error = report.metrics.by_run[("fgsm", 0.1)].models["m"].adv_error.value
    assert "| model | clean accuracy | adversarial accuracy |" in table
    assert f"| {100 * (1 - error):.2f}% [" in table
    frame = pd.read_csv(tmp_path / "r" / "table.csv")
    assert frame["adv_accuracy"].iloc[0] == pytest.approx(1 - frame["adv_error"].iloc[0])
    assert any("accuracy" in line for line in report.summary_lines())


def test_the_aggregate_tables_can_show_accuracy(tmp_path):
    from test_aggregate import write_seed

    from winn_robust.reporting.aggregate import aggregate_markdown, aggregate_seeds, read_seed_report

    agg = aggregate_seeds([read_seed_report(write_seed(tmp_path / f"s{s}", s)) for s in range(3)], resamples=200)
    error, accuracy = aggregate_markdown(agg), aggregate_markdown(agg, "accuracy")
    assert "## Adversarial error: fgsm" in error and "## Adversarial accuracy: fgsm" in accuracy
    row = agg.row("winn", "adv_error", "fgsm", 0.125)
    mean = f"{100 * (1 - row.summary.mean):.2f}%"
    assert mean in accuracy.split("## Adversarial accuracy: fgsm, eps = 0.125")[1].split("##")[0]
    assert f"{-100 * row.difference.mean:+.2f} [" in accuracy
