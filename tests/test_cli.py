"""The CLI as a user meets it: real commands end to end on tiny runs, and every kind of bad
input answered with one line on stderr and exit status 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import one_line_error
from winn_robust.checkpoint import save_checkpoint
from winn_robust.cli import main
from winn_robust.models import build_model

TINY_TRAIN = ["--arch", "vanilla", "--data", "digits", "--epochs", "1", "--train-limit", "200", "--val-size", "100",
              "--negatives-per-class", "3", "--initial-negatives-per-class", "3", "--synthesis-max-steps", "10",
              "--no-progress", "--device", "cpu"]


def fake_checkpoint(path: Path, dataset: str = "digits", shape=(1, 8, 8), method: str = "baseline") -> Path:
    model = build_model("vanilla", shape, 10)
    save_checkpoint(path, model, {"arch": "vanilla", "dataset": dataset, "image_shape": list(shape),
                                  "num_classes": 10, "method": method, "epoch": 1, "seed": 0, "val_error": 0.5})
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trained")
    paths = {}
    for method in ("baseline", "winn"):
        assert main(["train", "--method", method, *TINY_TRAIN, "--out", str(root / method)]) == 0
        paths[method] = root / method / "best.pt"
    return paths



def test_train_writes_checkpoints_metrics_and_negatives(trained):
    run = trained["winn"].parent
    for name in ("best.pt", "last.pt", "metrics.csv", "negatives/epoch_001.png"):
        assert (run / name).is_file(), name
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["pool_size"]) == [2 * 3 * 10]


def test_attack_writes_the_four_reports(tmp_path, trained):
    out = tmp_path / "report"
    assert main(["attack", "--baseline", str(trained["baseline"]), "--model", str(trained["winn"]),
                 "--eps", "0.125,0.25", "--limit", "50", "--no-progress", "--out", str(out)]) == 0
    for name in ("table.md", "table.csv", "results.json", "per_example.csv"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "table.csv")
    assert sorted(set(table["eps"])) == [0.125, 0.25] and set(table["n"]) == {50}
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["eps_unit"].startswith("[0, 1] pixel units")


def test_report_rebuilds_identical_tables_from_per_example(tmp_path, trained, capsys):
    out = tmp_path / "report"
    assert main(["attack", "--baseline", str(trained["baseline"]), "--model", str(trained["winn"]),
                 "--eps", "0.0625,0.5", "--limit", "40", "--no-progress", "--out", str(out)]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "rebuilt")]) == 0
    for name in ("table.md", "table.csv"):
        assert (tmp_path / "rebuilt" / name).read_text() == (out / name).read_text(), name
    assert (tmp_path / "rebuilt" / "error_vs_eps.png").stat().st_size > 0
    one_line_error(capsys, ["report", str(out), "--baseline", "nobody"], "nobody", "its models are")
    one_line_error(capsys, ["report", str(tmp_path / "empty")], "no per_example.csv")
    (tmp_path / "bad.csv").write_text("label,whatever\n1,2\n")
    one_line_error(capsys, ["report", str(tmp_path / "bad.csv")], "bad.csv")


def test_sample_writes_a_grid(tmp_path, trained):
    out = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(trained["winn"].parent / "last.pt"), "--per-class", "2",
                 "--max-steps", "5", "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    assert out.stat().st_size > 100


def test_reproduce_end_to_end_with_reduced_sizes(tmp_path):
    out = tmp_path / "quick"
    assert main(["reproduce", "--epochs", "1", "--train-limit", "200", "--negatives-per-class", "3",
                 "--synthesis-max-steps", "10", "--test-limit", "60", "--sweep", "0,0.25", "--attack", "fgsm,pgd",
                 "--attack-option", "pgd.steps=3", "--attack-option", "pgd.restarts=1", "--strong-limit", "30",
                 "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    for name in ("table.md", "table.csv", "results.json", "per_example.csv", "summary.md", "error_vs_eps.png",
                 "adversarial_examples.png", "negatives_winn.png"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "table.csv")
    assert sorted(set(table["eps"])) == [0.0, 0.125, 0.25]
    pgd = table[table["attack"] == "pgd"]
    assert set(pgd["eps"]) == {0.125} and set(pgd["n"]) == {30}  # strong attacks: table eps, first 30 images
    at_zero = table[table["eps"] == 0.0]
    assert (at_zero["adv_error"] == at_zero["clean_error"]).all()


@pytest.mark.parametrize("argv, expected", [
    (["train", "--method", "winn", "--data", "imagenet", "--out", "x"], ["unknown dataset", "digits"]),
    (["train", "--method", "winn", "--data", "digits", "--arch", "vgg", "--out", "x"], ["--arch 'vgg' is unknown", "resnet32"]),
    (["train", "--method", "gan", "--data", "digits", "--out", "x"], ["--method 'gan' is unknown"]),
    (["train", "--method", "winn", "--data", "digits", "--epochs", "0", "--out", "x"], ["--epochs must be positive"]),
    (["reproduce", "--preset", "nope"], ["unknown preset", "quick"]),
    (["train", "--data", "digits"], ["required"]),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, tmp_path, argv, expected):
    argv = [a if a != "x" else str(tmp_path / "out") for a in argv]
    one_line_error(capsys, argv, *expected)


def test_missing_data_files_name_what_to_put_where(capsys, tmp_path):
    one_line_error(capsys, ["train", "--method", "baseline", "--data", "mnist", "--data-dir", str(tmp_path),
                            "--out", str(tmp_path / "o")], "train-images-idx3-ubyte", str(tmp_path))


@pytest.mark.parametrize("eps", ["-0.1", "1.5", "abc"])
def test_bad_eps_is_one_line(capsys, tmp_path, eps):
    ckpt = fake_checkpoint(tmp_path / "a.pt")
    one_line_error(capsys, ["attack", "--baseline", str(ckpt), "--model", str(ckpt), f"--eps={eps}",
                            "--out", str(tmp_path / "r")], "eps")


def test_checkpoint_of_another_dataset_is_one_line(capsys, tmp_path):
    a = fake_checkpoint(tmp_path / "a.pt")
    b = fake_checkpoint(tmp_path / "b.pt", dataset="mnist", shape=(1, 28, 28), method="winn")
    one_line_error(capsys, ["attack", "--baseline", str(a), "--model", str(b), "--eps", "0.1",
                            "--out", str(tmp_path / "r")], "mnist", "digits")


def test_truncated_checkpoint_is_one_line(capsys, tmp_path):
    a = fake_checkpoint(tmp_path / "a.pt")
    data = a.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:100])
    one_line_error(capsys, ["attack", "--baseline", str(a), "--model", str(tmp_path / "cut.pt"), "--eps", "0.1",
                            "--out", str(tmp_path / "r")], "cut.pt")


def test_console_script_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "winn_robust.cli", "attack", "--baseline", str(tmp_path / "no.pt"),
                           "--model", str(tmp_path / "other.pt"), "--eps", "0.1", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_without_a_run_is_one_line(capsys, tmp_path):
    one_line_error(capsys, ["train", "--method", "winn", *TINY_TRAIN, "--resume", "--out", str(tmp_path / "fresh")],
                   "--resume")
