"""The reference defences trained at L2 (`--train-norm l2`): their inner examples are the L2
attacks' and stay in the L2 ball and the pixel box, PGD model selection follows the training norm,
reproduce trains in the threat model it evaluates, and on real digits L2 PGD-AT and TRADES beat
the baseline of the same seed under L2 PGD."""
from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F

from winn_robust.attacks.pgd_l2 import PGDL2, l2_norms
from winn_robust.checkpoint import load_checkpoint, read_checkpoint
from winn_robust.cli import main
from winn_robust.data import load_dataset
from winn_robust.experiments.reproduce import resolve_method_options
from winn_robust.models import build_model
from winn_robust.training import TrainConfig, train
from winn_robust.training.inputs import load_train_data
from winn_robust.training.methods import PGDAT, TRADES, FastAT, StepContext
from winn_robust.units import eps_to_model

EPS = 1.0  # L2 pixel units; on 8x8 digits the L2 size of an L-inf 1/8 perturbation of every pixel


def context(model, images, labels, generator):
    def draw(fn):
        return lambda shape: fn((len(images), *shape), generator=generator)
    return StepContext(model, model, images, labels, None, None, draw(torch.rand), draw(torch.randn), generator, 1, 0, 1)


@pytest.fixture(scope="module")
def digits():
    torch.manual_seed(0)
    data = load_dataset("digits")
    return data.test_images[:64], data.test_labels[:64]


def in_ball_and_box(adv: torch.Tensor, x: torch.Tensor, eps: float) -> bool:
    return bool((l2_norms(adv - x) <= eps_to_model(eps) + 1e-5).all() and adv.min() >= -1 and adv.max() <= 1)


def test_l2_pgd_at_trains_on_the_harness_l2_pgd_examples(digits, monkeypatch):
    images, labels = digits
    model = build_model("vanilla", (1, 8, 8), 10).eval()
    seen = []
    import winn_robust.training.methods.adversarial as adversarial

    original = adversarial.adversarial_loss
    monkeypatch.setattr(adversarial, "adversarial_loss", lambda scorer, adv, y: seen.append(adv) or original(scorer, adv, y))
    PGDAT(eps=EPS, steps=5, norm="l2").loss(context(model, images, labels, torch.Generator().manual_seed(7)))
    harness = PGDL2(steps=5, restarts=1, norm="l2")(model, images, labels, EPS, torch.Generator().manual_seed(7))
    assert torch.equal(seen[0], harness)
    assert in_ball_and_box(seen[0], images, EPS)
    # an L2 attack, not an L-inf one: the perturbation is far from the L-inf ball's corners
    assert (seen[0] - images).abs().max() > eps_to_model(EPS) / 8


def test_l2_trades_examples_raise_the_kl_within_the_l2_ball(digits):
    images, _ = digits
    model = build_model("vanilla", (1, 8, 8), 10).eval()
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    adv = TRADES(eps=EPS, steps=5, norm="l2").perturb(model, images, EPS, noise)
    assert in_ball_and_box(adv, images, EPS)
    p = F.softmax(model(images), 1)
    kl = lambda z: F.kl_div(F.log_softmax(model(z), 1), p, reduction="batchmean").item()
    assert kl(adv) > 10 * kl((images + 0.002 * noise).clamp(-1, 1))


def test_l2_fast_at_ends_on_the_sphere_where_the_box_allows(digits):
    images, labels = digits
    model = build_model("vanilla", (1, 8, 8), 10).eval()
    method = FastAT(eps=EPS, norm="l2")
    ctx = context(model, images, labels, torch.Generator().manual_seed(2))
    start = method.random_start(ctx, images, eps_to_model(EPS))
    assert in_ball_and_box(start, images, EPS)
    adv = method.perturb(model, images, labels, EPS, start)
    assert in_ball_and_box(adv, images, EPS)
    assert (l2_norms(adv - images) > 0.7 * eps_to_model(EPS)).float().mean() > 0.8


def test_l2_defences_beat_the_baseline_of_the_same_seed_on_real_digits(tmp_path):
    """4 epochs of 800 digits, K = 5 at L2 eps 1.0; L2 PGD-20 on 240 test digits. Measured:
    baseline 94.2%, PGD-AT 78.3%, TRADES 78.3% PGD error."""
    data = load_train_data("digits", None, False, 200, 0, 800, torch.device("cpu"))
    test = load_dataset("digits")
    x, y = test.test_images[:240], test.test_labels[:240]
    errors = {}
    for method in ("baseline", "pgd-at", "trades"):
        options = {"eps": EPS, "steps": 5, "norm": "l2"} if method != "baseline" else {}
        config = TrainConfig(method=method, method_options=options, arch="vanilla", data="digits", epochs=4,
                             batch_size=50, val_size=200, seed=0)
        model, _ = load_checkpoint(train(config, data, tmp_path / method, progress=False).best_checkpoint)
        adv = PGDL2(steps=20, restarts=1, norm="l2")(model, x, y, EPS, torch.Generator().manual_seed(0))
        errors[method] = (model(adv).argmax(1) != y).float().mean().item()
    assert errors["pgd-at"] < errors["baseline"] - 0.08 and errors["trades"] < errors["baseline"] - 0.08, errors


def test_train_norm_l2_on_the_command_line_selects_by_l2_pgd(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--method", "pgd-at", "--data", "digits", "--train-norm", "l2", "--train-eps", "1.5",
                 "--train-steps", "2", "--epochs", "1", "--train-limit", "200", "--val-size", "60", "--select-by", "pgd",
                 "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    meta = read_checkpoint(out / "best.pt")["metadata"]
    assert meta["hparams"]["method_options"]["norm"] == "l2" and meta["hparams"]["method_options"]["eps"] == 1.5
    row = next(csv.DictReader(open(out / "metrics.csv")))
    assert float(row["val_pgd_error"]) >= float(row["val_error"])
    config = TrainConfig.from_dict(meta["hparams"])
    assert config.selection_norm == "l2" and config.selection_eps == 1.5


@pytest.mark.parametrize("argv, expected", [
    (["--train-norm", "l3", "--train-eps", "1"], "--train-norm 'l3' is not a threat model"),
    (["--train-norm", "l2", "--train-eps", "5000"], "--train-eps must be an L2 norm in [0, 1000]"),
    (["--train-eps", "1.5"], "--train-eps must be in [0, 1] pixel units"),
    (["--train-norm", "l2", "--train-eps", "0.5", "--select-by", "pgd", "--select-eps", "2000"], "--select-eps must be in (0, 1000]"),
])
def test_bad_l2_training_settings_are_one_line(tmp_path, capsys, argv, expected):
    code = main(["train", "--method", "trades", *argv, "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "r").exists()


def test_reproduce_at_l2_trains_the_defences_at_l2_unless_told():
    specs = {"baseline": "baseline", "winn": "winn", "pgd-at": "pgd-at", "trades": "trades"}
    options = resolve_method_options(specs, {}, None, 1.5, "l2")
    assert options["pgd-at"] == {"eps": 1.5, "norm": "l2"} and options["trades"]["norm"] == "l2"
    assert "norm" not in options["winn"] and options["baseline"] == {}
    assert resolve_method_options(specs, {}, None, 0.1)["pgd-at"] == {"eps": 0.1}  # L-inf jobs as before
    madry = resolve_method_options(specs, {}, "madry-mnist", 1.5, "l2")["pgd-at"]
    assert madry["norm"] == "linf" and madry["eps"] == 0.3  # a published (L-inf) preset keeps its threat model
