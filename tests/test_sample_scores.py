"""`winn-robust score`: the Inception-score formula and the Frechet distance checked against hand
computations, closed forms and torchmetrics; the command end to end on a tiny baseline, real
digits against noise; every bad input one line and exit status 2."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import one_line_error
from winn_robust.cli import main
from winn_robust.data import load_digits_dataset
from winn_robust.evaluation.sample_scores import (
    classifier_score,
    fit_gaussian,
    frechet_distance,
    gaussian_distance,
    probabilities_and_features,
)
from winn_robust.models import build_model

# ------------------------------------------------------------------ the formulas


def test_uniform_predictions_score_one():
    probs = np.full((20, 10), 0.1)
    mean, sd = classifier_score(probs, splits=4)
    assert mean == pytest.approx(1.0) and sd == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 5, 10])
def test_one_hot_spread_evenly_over_k_classes_scores_k(k):
    probs = np.eye(k)[np.arange(6 * k) % k]
    mean, sd = classifier_score(probs, splits=1)
    assert mean == pytest.approx(k) and sd == 0.0


def test_score_equals_a_hand_computation():
    table = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]
    marginal = [sum(row[j] for row in table) / 3 for j in range(2)]
    kl = [sum(p * math.log(p / q) for p, q in zip(row, marginal)) for row in table]
    mean, _ = classifier_score(np.array(table), splits=1)
    assert mean == pytest.approx(math.exp(sum(kl) / 3), rel=1e-12)


def test_one_image_per_split_scores_one_and_the_seed_only_shuffles():
    probs = np.random.default_rng(0).dirichlet(np.ones(5), size=12)
    assert classifier_score(probs, splits=12) == pytest.approx((1.0, 0.0))  # p(y) = p(y|x) in a split of one
    assert classifier_score(probs, splits=1, seed=0) == classifier_score(probs, splits=1, seed=7)
    assert classifier_score(probs, splits=3, seed=0) != classifier_score(probs, splits=3, seed=7)
    with pytest.raises(ValueError):
        classifier_score(probs, splits=13)


def test_frechet_distance_of_identical_features_is_zero():
    features = np.random.default_rng(1).normal(size=(200, 16))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(features, features + 1.0) == pytest.approx(16.0)  # a shift of 1 in each of 16 dims


def test_frechet_distance_equals_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    closed = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum())
    assert gaussian_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(closed, rel=1e-10)
    # and from samples: the fitted Gaussians approach the closed form
    a = mu1 + np.sqrt(s1) * rng.normal(size=(200_000, 6))
    b = mu2 + np.sqrt(s2) * rng.normal(size=(200_000, 6))
    assert frechet_distance(a, b) == pytest.approx(closed, rel=0.02)


def test_fit_gaussian_is_float64_and_unbiased():
    features = np.random.default_rng(3).normal(size=(10, 3)).astype(np.float32)
    mu, sigma = fit_gaussian(features)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    centred = features.astype(np.float64) - mu
    assert sigma == pytest.approx(centred.T @ centred / 9)


class Penultimate(nn.Module):
    """The vanilla CNN's penultimate features computed directly (no hook): the oracle's extractor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_features = model.classifier.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x).flatten(1)


def test_frechet_distance_equals_torchmetrics_with_the_same_features():
    fid_module = pytest.importorskip("torchmetrics.image.fid")
    torch.manual_seed(0)
    model = build_model("vanilla", (1, 8, 8), 10).eval()
    digits = load_digits_dataset()
    real, fake = digits.test_images[:150], digits.train_images[:150].flip(-1)
    metric = fid_module.FrechetInceptionDistance(feature=Penultimate(model), normalize=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    _, f_real = probabilities_and_features(model, real, model.classifier)
    _, f_fake = probabilities_and_features(model, fake, model.classifier)
    ours = frechet_distance(f_fake, f_real)
    assert ours > 0.01
    assert ours == pytest.approx(float(metric.compute()), rel=1e-5)


def test_the_feature_hook_leaves_the_logits_bit_identical():
    torch.manual_seed(0)
    model = build_model("resnet20", (1, 8, 8), 10).eval()
    x = load_digits_dataset().test_images[:20]
    probs, features = probabilities_and_features(model, x, model.classifier, batch_size=7)
    with torch.no_grad():
        direct = torch.softmax(model(x).double(), dim=1).numpy()
    assert np.array_equal(probs, direct) and features.shape == (20, 64)


# ------------------------------------------------------------------ the command

@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("score") / "base"
    assert main(["train", "--method", "baseline", "--arch", "vanilla", "--data", "digits", "--epochs", "3",
                 "--val-size", "100", "--no-progress", "--device", "cpu", "--out", str(run)]) == 0
    return run


def write_npz(path: Path, images: np.ndarray, **extra: object) -> Path:
    np.savez(path, images=images, **extra)
    return path


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("samples")
    real = ((load_digits_dataset().train_images[:200] + 1) / 2).numpy()
    noise = np.random.default_rng(0).uniform(0, 1, (200, 1, 8, 8)).astype(np.float32)
    return {"real": write_npz(folder / "real.npz", real, seed=np.int64(3), checkpoint="runs/x/best.pt"),
            "noise": write_npz(folder / "noise.npz", noise)}


def test_score_real_digits_above_noise_end_to_end(baseline, sample_files, tmp_path, capsys):
    results = {}
    for name, path in sample_files.items():
        out = tmp_path / f"{name}.json"
        assert main(["score", "--samples", str(path), "--classifier", str(baseline), "--splits", "5", "--device", "cpu",
                     "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "classifier score (5 splits)" in printed and "Inception" not in printed
        assert "input of the final linear layer" in printed
        results[name] = json.loads(out.read_text())
        assert out.with_suffix(".csv").is_file()
    real, noise = results["real"], results["noise"]
    assert real["n"] == noise["n"] == 200 and real["splits"] == 5
    assert real["score_mean"] > noise["score_mean"]
    assert real["distance"] < noise["distance"]
    assert real["real_score_mean"] == noise["real_score_mean"]  # the same reference: same classifier, N, seed
    assert real["samples_seed"] == 3 and real["samples_checkpoint"] == "runs/x/best.pt"
    assert len(real["classifier_sha256"]) == 64


def test_more_samples_than_test_images_scores_at_the_test_count(baseline, tmp_path, capsys):
    images = ((load_digits_dataset().train_images[:400] + 1) / 2).numpy()
    out = tmp_path / "s.json"
    assert main(["score", "--samples", str(write_npz(tmp_path / "many.npz", images)), "--classifier", str(baseline),
                 "--device", "cpu", "--out", str(out)]) == 0
    assert "N = 360" in capsys.readouterr().err
    record = json.loads(out.read_text())
    assert record["n"] == 360 and record["n_samples_given"] == 400 and record["n_test_available"] == 360


def test_a_real_inception_state_dict_makes_it_the_inception_score(tmp_path, capsys):
    """A randomly initialised torchvision inception_v3 saved as a state dict, on 4 images: the
    wiring (load, resize, grey to RGB, pooled features, names), not its values."""
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    weights = tmp_path / "inception.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False, num_classes=10).state_dict(), weights)
    images = ((load_digits_dataset().test_images[:4] + 1) / 2).numpy()
    out = tmp_path / "inc.json"
    assert main(["score", "--samples", str(write_npz(tmp_path / "four.npz", images)), "--classifier",
                 f"inception-v3={weights}", "--data", "digits", "--splits", "2", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Inception score (2 splits)" in printed and "FID to real test" in printed and "2048 values" in printed
    record = json.loads(out.read_text())
    assert record["n"] == 4 and record["score_name"] == "Inception score" and record["distance_name"] == "FID"
    assert 1.0 <= record["score_mean"] <= 10.0 and math.isfinite(record["distance"])


def test_a_user_model_uses_its_last_linear_or_says_it_uses_logits(tmp_path, capsys):
    source = tmp_path / "nets.py"
    source.write_text("import torch\nfrom torch import nn\n"
                      "def mlp():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))\n"
                      "def conv():\n    return nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())\n")
    images = ((load_digits_dataset().test_images[:40] + 1) / 2).numpy()
    samples = write_npz(tmp_path / "s.npz", images)
    for function, expected in (("mlp", "last nn.Linear `3` (12 values)"), ("conv", "the logits (it has no nn.Linear)")):
        assert main(["score", "--samples", str(samples), "--classifier", f"{source}:{function}", "--data", "digits",
                     "--splits", "2", "--device", "cpu"]) == 0
        assert expected in capsys.readouterr().out



def test_bad_input_is_one_line_and_exit_two(baseline, sample_files, tmp_path, capsys):
    real = np.load(sample_files["real"])["images"]
    clf = ["--classifier", str(baseline), "--device", "cpu"]
    one_line_error(capsys, ["score", "--samples", str(tmp_path / "none.npz"), *clf], "does not exist")
    np.savez(tmp_path / "other.npz", pictures=real)
    one_line_error(capsys, ["score", "--samples", str(tmp_path / "other.npz"), *clf], "no `images`", "pictures")
    (tmp_path / "text.npz").write_text("not numpy")
    one_line_error(capsys, ["score", "--samples", str(tmp_path / "text.npz"), *clf], "not a readable .npz")
    flat = write_npz(tmp_path / "flat.npz", real[:, 0])
    one_line_error(capsys, ["score", "--samples", str(flat), *clf], "4-D")
    wide = write_npz(tmp_path / "wide.npz", real * 2 - 1)
    one_line_error(capsys, ["score", "--samples", str(wide), *clf], "[0, 1]")
    nan = real.copy()
    nan[0, 0, 0, 0] = np.nan
    one_line_error(capsys, ["score", "--samples", str(write_npz(tmp_path / "nan.npz", nan)), *clf], "NaN")
    bytes_ = write_npz(tmp_path / "bytes.npz", (real * 255).astype(np.uint8))
    one_line_error(capsys, ["score", "--samples", str(bytes_), *clf], "uint8", "255")
    big = write_npz(tmp_path / "big.npz", np.zeros((10, 1, 16, 16), np.float32))
    one_line_error(capsys, ["score", "--samples", str(big), *clf], "1x16x16", "1x8x8")
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(capsys, ["score", "--samples", str(sample_files["real"]), "--classifier", str(tmp_path / "notes.txt")],
                   "neither a TorchScript archive nor a winn-robust checkpoint")
    one_line_error(capsys, ["score", "--samples", str(sample_files["real"]), "--classifier", str(tmp_path)],
                   "without best.pt")
    one_line_error(capsys, ["score", "--samples", str(sample_files["real"]), "--classifier",
                            f"inception-v3={tmp_path / 'missing.pth'}"], "does not exist")
    one_line_error(capsys, ["score", "--samples", str(sample_files["real"]), *clf, "--splits", "0"],
                   "--splits must be at least 1")
    one_line_error(capsys, ["score", "--samples", str(sample_files["real"]), *clf, "--splits", "201"],
                   "--splits 201 is more than N = 200")
    one_line_error(capsys, ["score", "--samples", str(sample_files["real"]), *clf, "--out", str(tmp_path / "x.txt")],
                   ".json")
    (tmp_path / "net.py").write_text("from torch import nn\ndef net():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n")
    one_line_error(capsys, ["score", "--samples", str(sample_files["real"]), "--classifier", f"{tmp_path / 'net.py'}:net"],
                   "give --data")
