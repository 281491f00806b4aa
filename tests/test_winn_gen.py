"""Unsupervised WINN (winn-gen): its terms equal their formulas, cascades chain, the CLI trains and
samples, and bad input is one line (resume, seeded sampling and the ascent: test_winn_gen_resume.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from winn_robust.cli import main
from winn_robust.training import TrainConfig
from winn_robust.training.generative import winn_gen
from winn_robust.training.generative.critic import critic_loss, gradient_penalty, wasserstein_term
from winn_robust.training.generative.trainer import train_generative

SCHEDULE = {"cascades": 2, "iterations": 2, "positives": 20, "negatives": 20, "last_negatives": 30,
            "initial_negatives": 30, "ascent_max_steps": 15, "critic_passes": 1}


def tiny_config(**options) -> TrainConfig:
    return TrainConfig(method="winn-gen", arch="vanilla", data="digits", batch_size=20, seed=0,
                       method_options={**SCHEDULE, **options})


class Linear(nn.Module):
    """f(x) = w . x + b: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 2, dim))
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + self.b


def test_wasserstein_term_and_gradient_penalty_equal_their_formulas():
    g = torch.Generator().manual_seed(0)
    critic = Linear(12)
    pos, neg = torch.randn(6, 3, 2, 2, generator=g), torch.randn(6, 3, 2, 2, generator=g)
    a = torch.rand(6, 1, 1, 1, generator=g)
    f_pos, f_neg = critic(pos), critic(neg)
    assert wasserstein_term(f_pos, f_neg).item() == pytest.approx((f_neg.mean() - f_pos.mean()).item())
    expected_gp = (critic.w.detach().norm() - 1) ** 2
    assert gradient_penalty(critic, pos, neg, a).item() == pytest.approx(expected_gp.item(), rel=1e-6)
    terms = critic_loss(critic, pos, neg, a, gp_lambda=10.0)
    by_hand = f_neg.mean() - f_pos.mean() + 10.0 * expected_gp
    assert terms.loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert terms.wasserstein.item() == pytest.approx((f_pos.mean() - f_neg.mean()).item(), rel=1e-6)
    # the penalty is differentiable in the critic's parameters: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    critic.zero_grad()
    gradient_penalty(critic, pos, neg, a).backward()
    w = critic.w.detach()
    assert torch.allclose(critic.w.grad, 2 * (w.norm() - 1) * w / w.norm(), atol=1e-5)


def test_the_second_cascade_starts_from_the_first_cascades_last_samples(tmp_path, tiny_data, monkeypatch):
    seen: list[torch.Tensor] = []
    real = winn_gen.synthesize_from

    def spy(f, critic, starts, *args, **kwargs):
        seen.append(starts.clone())
        return real(f, critic, starts, *args, **kwargs)

    monkeypatch.setattr(winn_gen, "synthesize_from", spy)
    train_generative(tiny_config(), tiny_data, tmp_path, progress=False)
    assert len(seen) == 4  # 2 cascades x 2 iterations
    first_cascade_last = torch.load(tmp_path / "pool" / "epoch_002.pt", weights_only=True)["images"]
    initial = torch.load(tmp_path / "pool" / "epoch_000.pt", weights_only=True)["images"]
    assert torch.equal(seen[0], initial) and torch.equal(seen[1], initial)
    assert torch.equal(seen[2], first_cascade_last) and torch.equal(seen[3], first_cascade_last)
    assert len(first_cascade_last) == 30  # a cascade's last iteration synthesizes last_negatives
    assert (tmp_path / "cascade-1.pt").is_file() and (tmp_path / "cascade-2.pt").is_file()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,method,cascade,") and len(rows) == 5


def test_cli_trains_on_digits_and_samples_an_npz(tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["--cascade", "1", "--iterations", "2", "--positives", "50", "--negatives", "50", "--last-negatives", "50",
             "--initial-negatives", "50", "--ascent-max-steps", "10", "--critic-passes", "1"]
    assert main(["train", "--method", "winn-gen", "--data", "digits", "--out", str(run), "--no-progress", *flags]) == 0
    assert (run / "metrics.png").is_file() and (run / "cascade-1.pt").is_file()
    out = tmp_path / "s.npz"
    assert main(["sample", "--checkpoint", str(run), "--count", "12", "--seed", "5", "--out", str(out)]) == 0
    with np.load(out) as saved:
        assert saved["images"].shape == (12, 1, 8, 8) and saved["images"].dtype == np.float32
        assert int(saved["seed"]) == 5 and str(saved["checkpoint"]).endswith("run")
        assert 0 <= saved["images"].min() and saved["images"].max() <= 1
    assert main(["sample", "--checkpoint", str(run), "--count", "9", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_bad_generative_input_is_one_line(tmp_path, capsys):
    assert main(["train", "--method", "winn-gen", "--data", "digits", "--cascade", "0", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--cascade" in err and "positive" in err
    supervised = tmp_path / "baseline"
    assert main(["train", "--method", "baseline", "--data", "digits", "--epochs", "1", "--train-limit", "200",
                 "--val-size", "50", "--out", str(supervised), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(supervised), "--count", "5", "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no generative model" in err
    assert all(name in err for name in ("winn-gen", "wgan-gp", "iwgan"))  # every generative method, iwgan too
    assert main(["sample", "--checkpoint", str(tmp_path / "missing"), "--count", "5", "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(name in err for name in ("winn-gen", "wgan-gp", "iwgan"))
