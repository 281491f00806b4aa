"""WGAN-GP (`wgan-gp`): its loss against the formula, the DCGAN generator's shapes, a tiny run with
its metrics, a bit-identical --resume, seeded sampling (generator and --from-critic) and the one-line
refusal of a bad setting."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import pattern_data

from tests.helpers import Stop, tensors
from winn_robust.cli import main
from winn_robust.models.dcgan import DCGANGenerator, stage_sizes
from winn_robust.training.config import TrainConfig
from winn_robust.training.generative.base import LearnerSetup
from winn_robust.training.generative.critic import critic_loss
from winn_robust.training.generative.sampling import open_run, sample_images
from winn_robust.training.generative.trainer import train_generative
from winn_robust.training.generative.wgan_gp import WGANGP, WGANGPLearner
from winn_robust.training.trainer import TrainData

TINY = {"iterations": 6, "log_every": 2, "n_critic": 2, "gan_batch": 16, "latent_dim": 8, "generator_width": 8}


def tiny_config(**settings: Any) -> TrainConfig:
    return TrainConfig(method="wgan-gp", data="digits", method_options={**TINY, **settings}, batch_size=8)


def test_critic_loss_is_the_formula_for_a_linear_critic() -> None:
    """f(x) = w.x + b has gradient w everywhere: GP = (||w|| - 1)^2 in closed form."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, generator=g)
    b = torch.tensor(0.3)

    def f(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ w + b

    real, fake = torch.randn(5, 3, 2, 2, generator=g), torch.randn(5, 3, 2, 2, generator=g)
    a = torch.rand(5, 1, 1, 1, generator=g)
    terms = critic_loss(f, real, fake, a, 10.0)
    penalty = (w.norm() - 1) ** 2
    assert torch.allclose(terms.penalty, penalty)
    assert torch.allclose(terms.loss, f(fake).mean() - f(real).mean() + 10.0 * penalty)
    assert torch.allclose(terms.wasserstein, f(real).mean() - f(fake).mean())
    assert torch.allclose(terms.f_pos_mean, f(real).mean())


@pytest.mark.parametrize(("shape", "sizes"), [((1, 8, 8), [(4, 4), (8, 8)]),
                                              ((1, 28, 28), [(4, 4), (7, 7), (14, 14), (28, 28)]),
                                              ((3, 32, 32), [(4, 4), (8, 8), (16, 16), (32, 32)]),
                                              ((3, 64, 64), [(4, 4), (8, 8), (16, 16), (32, 32), (64, 64)])])
def test_generator_shape_and_range(shape: tuple[int, int, int], sizes: list[tuple[int, int]]) -> None:
    assert stage_sizes(*shape[1:]) == sizes
    generator = DCGANGenerator(shape, latent_dim=16, width=8)
    images = generator.sample(5, torch.Generator().manual_seed(0))
    assert images.shape == (5, *shape)
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0
    assert generator.training  # sampling restores the mode it found
    again = generator.sample(5, torch.Generator().manual_seed(0), batch_size=2)
    assert torch.allclose(images, again, atol=1e-6)  # eval mode: an image does not depend on its batch


def test_steps_update_only_their_network(tiny_data: TrainData) -> None:
    config = tiny_config()
    method = config.training_method
    assert isinstance(method, WGANGP)
    learner = WGANGPLearner(method, LearnerSetup(config, tiny_data.train_images, torch.device("cpu"),
                                                 torch.Generator().manual_seed(0)))
    before = {k: p.detach().clone() for k, p in learner.generator.named_parameters()}
    critic_before = {k: p.detach().clone() for k, p in learner.critic.named_parameters()}
    learner.critic_step()
    assert all(torch.equal(p, before[k]) for k, p in learner.generator.named_parameters())
    assert any(not torch.equal(p, critic_before[k]) for k, p in learner.critic.named_parameters())
    critic_after = {k: p.detach().clone() for k, p in learner.critic.named_parameters()}
    loss = learner.generator_step()
    assert all(torch.equal(p, critic_after[k]) for k, p in learner.critic.named_parameters())
    assert any(not torch.equal(p, before[k]) for k, p in learner.generator.named_parameters())
    assert all(p.requires_grad for p in learner.critic.parameters())
    assert loss.dim() == 0 and loss.requires_grad is False and torch.isfinite(loss)  # the logged -mean f(G(z))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = pattern_data(n_per_class=30)
    vx, vy = pattern_data(n_per_class=10, seed=1)
    data = TrainData(x, y, vx, vy, "digits", tuple(str(i) for i in range(4)))
    out = tmp_path_factory.mktemp("wgan") / "whole"
    train_generative(tiny_config(), data, out, progress=False)
    return out


def test_tiny_run_writes_metrics(uninterrupted: Path) -> None:
    with open(uninterrupted / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [int(r["generator_iterations"]) for r in rows] == [2, 4, 6]
    for column in ("wasserstein_estimate", "gradient_penalty", "critic_loss", "generator_loss", "f_real_mean",
                   "f_fake_mean", "seconds", "forward_passes"):
        assert all(r[column] != "" for r in rows), column
    last = rows[-1]
    assert float(last["wasserstein_estimate"]) == pytest.approx(float(last["f_real_mean"]) - float(last["f_fake_mean"]),
                                                               abs=1e-4)
    assert float(last["threshold_low"]) <= float(last["threshold_high"])
    assert (uninterrupted / "last.pt").is_file() and (uninterrupted / "negatives" / "epoch_003.png").is_file()


def test_resume_is_bit_identical(uninterrupted: Path, tiny_data: TrainData, tmp_path: Path) -> None:
    out = tmp_path / "resumed"

    def stop_at_2(iteration: int, row: dict[str, Any]) -> None:
        if iteration == 2:
            raise Stop

    with pytest.raises(Stop):
        train_generative(tiny_config(), tiny_data, out, progress=False, on_epoch_end=stop_at_2)
    train_generative(tiny_config(), tiny_data, out, progress=False, resume=True)
    whole = tensors(torch.load(uninterrupted / "last.pt", weights_only=True))
    resumed = tensors(torch.load(out / "last.pt", weights_only=True))
    assert whole.keys() == resumed.keys() and any(k.startswith("/model/generator.") for k in whole)
    different = [k for k in whole if not torch.equal(whole[k], resumed[k])]
    assert not different


@pytest.mark.parametrize("from_critic", [False, True])
def test_sampling_is_seeded(uninterrupted: Path, from_critic: bool) -> None:
    run = open_run(uninterrupted)
    assert isinstance(run.method, WGANGP)
    first = sample_images(run, 6, 1, torch.device("cpu"), from_critic=from_critic)
    again = sample_images(run, 6, 1, torch.device("cpu"), from_critic=from_critic)
    other = sample_images(run, 6, 2, torch.device("cpu"), from_critic=from_critic)
    assert first.shape == (6, 1, 8, 8) and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_generator_and_critic_samples_differ(uninterrupted: Path) -> None:
    run = open_run(uninterrupted)
    generated = sample_images(run, 6, 1, torch.device("cpu"))
    synthesized = sample_images(run, 6, 1, torch.device("cpu"), from_critic=True)
    assert not torch.allclose(generated, synthesized)


def test_schedules_resolve_per_dataset() -> None:
    assert WGANGP().resolved_for("cifar10").iterations == 200_000
    assert WGANGP().resolved_for("cifar10").generator_width == 128
    assert WGANGP().resolved_for("mnist").generator_width == 64
    digits = WGANGP().resolved_for("digits")
    assert digits.iterations is not None and digits.iterations < 200_000
    assert WGANGP(iterations=7).resolved_for("digits").iterations == 7
    assert (digits.critic_lr, digits.generator_lr) == (1e-3, 1e-3)
    assert WGANGP().resolved_for("mnist").critic_lr == 1e-4 and WGANGP(critic_lr=3e-4).resolved_for("digits").critic_lr == 3e-4


@pytest.mark.parametrize(("flag", "value", "expected"), [("--n-critic", "0", "--n-critic must be positive"),
                                                         ("--gan-beta1", "1", "--gan-beta1 must be in [0, 1)"),
                                                         ("--gp-lambda", "-1", "--gp-lambda must be >= 0")])
def test_bad_setting_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, value: str,
                                 expected: str) -> None:
    code = main(["train", "--method", "wgan-gp", "--data", "digits", flag, value, "--out", str(tmp_path / "x"),
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "x" / "last.pt").exists()
