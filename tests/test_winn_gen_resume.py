"""Unsupervised WINN (`winn-gen`): a --resume that continues bit-identically (networks, optimizers,
random streams, the pool's part files and the cascade checkpoints), seeded sampling, and the
threshold-stopped ascent of its synthesis step."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import pattern_train_data

from tests.helpers import Stop, tensors
from winn_robust.training.config import TrainConfig
from winn_robust.training.generative.critic import AscentSettings, ascend
from winn_robust.training.generative.sampling import open_run, sample_images
from winn_robust.training.generative.trainer import train_generative
from winn_robust.training.generative.winn_gen import WinnGen

TINY = {"cascades": 2, "iterations": 2, "positives": 16, "negatives": 8, "last_negatives": 8, "initial_negatives": 16,
        "ascent_max_steps": 5, "critic_passes": 1}


def tiny_config() -> TrainConfig:
    return TrainConfig(method="winn-gen", data="digits", batch_size=8, method_options=TINY)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("winn-gen") / "whole"
    train_generative(tiny_config(), pattern_train_data(), out, progress=False)
    return out


@pytest.mark.parametrize("stop_after", [1, 2])  # inside the first cascade, and at its end (a milestone)
def test_resume_is_bit_identical(uninterrupted: Path, tmp_path: Path, stop_after: int) -> None:
    out = tmp_path / "resumed"

    def stop(iteration: int, row: dict[str, Any]) -> None:
        if iteration == stop_after:
            raise Stop

    with pytest.raises(Stop):
        train_generative(tiny_config(), pattern_train_data(), out, progress=False, on_epoch_end=stop)
    train_generative(tiny_config(), pattern_train_data(), out, progress=False, resume=True)
    files = ["last.pt", "cascade-1.pt", "cascade-2.pt", *(f"pool/epoch_{k:03d}.pt" for k in range(5))]
    for name in files:
        whole = tensors(torch.load(uninterrupted / name, weights_only=True))
        resumed = tensors(torch.load(out / name, weights_only=True))
        assert whole.keys() == resumed.keys() and whole, name
        assert not [k for k in whole if not torch.equal(whole[k], resumed[k])], name


def test_sampling_is_seeded(uninterrupted: Path) -> None:
    run = open_run(uninterrupted)
    assert isinstance(run.method, WinnGen)
    first = sample_images(run, 4, 1, torch.device("cpu"))
    assert first.shape == (4, 1, 8, 8) and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, sample_images(run, 4, 1, torch.device("cpu")))
    assert not torch.equal(first, sample_images(run, 4, 2, torch.device("cpu")))


def test_ascent_stops_at_the_threshold() -> None:
    """A linear critic f(x) = w.x: Adam raises mean f until it reaches the threshold, then stops;
    a threshold out of reach in the pixel box runs the whole budget."""
    w = torch.linspace(-1, 1, 16)

    def f(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ w

    start = torch.zeros(3, 1, 4, 4)
    settings = AscentSettings(lr=0.01, betas=(0.9, 0.999), max_steps=200)
    reached = ascend(f, start, 0.5, settings)
    assert reached.final_mean >= 0.5 and 0 < reached.steps < 200
    assert float(f(reached.images).mean()) == pytest.approx(reached.final_mean, abs=1e-5)
    unreachable = ascend(f, start, float(w.abs().sum()) + 1, settings)
    assert unreachable.steps == 200 and unreachable.images.abs().max() <= 1
    assert ascend(f, start, -1.0, settings).steps == 0  # already past the threshold: returned as it is
