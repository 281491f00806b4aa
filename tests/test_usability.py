"""What a newcomer trips over: eps written as papers write it, names in any case, one dataset's
files given as another's, the images and curves a run leaves behind."""

from __future__ import annotations

import csv

import pytest
import torch
from PIL import Image

from winn_robust.data import KNOWN_LABEL_COUNTS, ImageDataset, check_identity
from winn_robust.errors import UserError
from winn_robust.images import save_class_grid
from winn_robust.reporting.plots import plot_training_metrics
from winn_robust.training import TrainConfig
from winn_robust.units import parse_eps


def test_eps_accepts_fractions_as_papers_write_them():
    assert parse_eps(["8/255", "1/8,0.25", "1/8"]) == [8 / 255, 0.125, 0.25]


@pytest.mark.parametrize("typed,expected", [("8", "8/255"), ("1/0", "not a number"), ("a/b", "not a number"),
                                             ("-0.1", "outside [0, 1]")])
def test_eps_mistakes_are_named_with_a_fix(typed, expected):
    with pytest.raises(UserError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        parse_eps([typed])


def test_names_are_case_insensitive():
    config = TrainConfig(method="WINN", arch="Vanilla", data="Fashion_MNIST", generator_init="Official")
    assert (config.method, config.arch, config.data, config.generator_init) == ("winn", "vanilla", "fashion-mnist", "official")


def fake_dataset(train_counts, test_counts) -> ImageDataset:
    def labels(counts):
        return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))

    train, test = labels(train_counts), labels(test_counts)
    return ImageDataset("x", torch.zeros(len(train), 1, 1, 1), train, torch.zeros(len(test), 1, 1, 1), test,
                        tuple(str(i) for i in range(10)))


def test_fashion_mnist_files_given_as_mnist_are_refused(tmp_path):
    fashion = fake_dataset(*KNOWN_LABEL_COUNTS["fashion-mnist"])
    with pytest.raises(UserError, match="pass --data fashion-mnist"):
        check_identity("mnist", fashion, tmp_path)
    check_identity("fashion-mnist", fashion, tmp_path)  # the right name passes silently


def test_files_of_no_known_release_are_warned_about(tmp_path, capsys):
    check_identity("mnist", fake_dataset((3,) * 10, (1,) * 10), tmp_path)
    assert "not the original MNIST release" in capsys.readouterr().err


def test_class_grid_has_one_enlarged_row_per_class(tmp_path):
    images = torch.rand(3, 4, 1, 8, 8) * 2 - 1
    path = save_class_grid(images, ["cat", "dog", "bird"], tmp_path / "grid.png", min_tile=32, title="samples")
    width, height = Image.open(path).size
    assert height >= 3 * 32 and width >= 4 * 32  # 8x8 images enlarged to 32x32 tiles, 3 rows of 4


def test_training_curves_plot_from_metrics_csv(tmp_path):
    rows = [{"epoch": e, "method": "winn", "loss": 1 / e, "ce": 1 / e, "wasserstein_estimate": e, "gradient_penalty": 0.1,
             "synthesis_steps_mean": 10, "synthesis_steps_max": 20, "train_error": 0.1 / e, "val_error": 0.2 / e}
            for e in (1, 2, 3)]
    with open(tmp_path / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    path = plot_training_metrics(tmp_path / "metrics.csv", tmp_path / "metrics.png")
    assert path.stat().st_size > 10_000 and Image.open(path).size[0] > Image.open(path).size[1]


def test_attack_records_its_thread_count(tmp_path):
    import json

    from winn_robust.cli import main

    (tmp_path / "zoo.py").write_text("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
                                     "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n")
    before = torch.get_num_threads()
    try:
        assert main(["attack", "--model", f"{tmp_path / 'zoo.py'}:build", "--data", "digits", "--eps", "1/8",
                     "--limit", "20", "--threads", "1", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "r")]) == 0
    finally:
        torch.set_num_threads(before)
    provenance = json.loads((tmp_path / "r" / "results.json").read_text())["provenance"]
    assert provenance["torch_threads"] == 1 and provenance["eps"] == [0.125]


def test_evaluate_is_public_and_takes_a_model_that_is_not_ours(tmp_path):
    """The README's Python API: `winn_robust.evaluate` on a plain nn.Sequential in [0, 1]."""
    from sklearn.datasets import load_digits

    import winn_robust
    from winn_robust.experiments.evaluate import evaluate

    assert winn_robust.evaluate is evaluate
    digits = load_digits()
    images = torch.tensor(digits.images[:60], dtype=torch.float32).unsqueeze(1) / 16
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    report = winn_robust.evaluate({"mlp": model}, images, torch.tensor(digits.target[:60]), eps=1 / 8,
                                  attacks="fgsm", dataset="digits", device="cpu", out_dir=tmp_path / "r")
    assert (tmp_path / "r" / "table.md").is_file() and report.names == ["mlp"]
    assert report.provenance.eps == (0.125,)
