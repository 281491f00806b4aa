"""The generative methods under torchrun: 2 gloo ranks on the CPU, tiny digits schedules.

A 2-rank run finishes with one metrics.csv and a loadable last.pt (world_size 2), `sample` draws
from it, and it is deterministic: a second run, with rank 1 forbidden to write anything, gives
the same bytes of every network, optimizer, random stream and pool part. WINN's second run is
also stopped by a signal to rank 1 alone after its first iteration (both ranks must stop at that
boundary) and resumed under torchrun, so it checks the resume too (each launch costs about 10 s
of start-up on a loaded 2-core machine, hence one run doing both)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from launch import torchrun

from tests.helpers import tensors
from winn_robust.checkpoint import read_checkpoint
from winn_robust.cli import main

COMMON = ["--data", "digits", "--val-size", "100", "--no-progress", "--device", "cpu", "--threads", "1"]
# critic batches of 10 pairs (5 + 5 rows per rank) and a last one of 5 (2 + 3); syntheses of 2 and 3
# batches of 20 (split 1 + 1 and 1 + 2 across the ranks); 2 cascades of 1 iteration
WINN = ["train", "--method", "winn-gen", *COMMON, "--cascade", "2", "--iterations", "1", "--positives", "45",
        "--negatives", "40", "--last-negatives", "60", "--initial-negatives", "40", "--ascent-max-steps", "10",
        "--critic-passes", "1", "--batch-size", "20"]
# 2 rows of 2 generator iterations; batches of 15 rows (7 + 8 per rank)
WGAN = ["train", "--method", "wgan-gp", *COMMON, "--iterations", "4", "--log-every", "2", "--gan-batch", "15"]
STATE = ("model", "optimizers", "rng_state", "cpu_rng_state", "learner_state")


def launch(args: list[str], out: Path, worker: bool = False, **env: str) -> str:
    done = torchrun([*args, "--out", str(out)], worker=worker, **env)
    assert done.returncode == 0, done.stderr
    assert "2 ranks (gloo, cpu)" in done.stderr
    return done.stderr


def assert_same_run(a: Path, b: Path) -> None:
    """The same files and, in each checkpoint and part file, the same tensors bit for bit."""
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*.pt"))
    assert files == sorted(str(p.relative_to(b)) for p in b.rglob("*.pt"))
    for name in files:
        first, second = (torch.load(run / name, weights_only=True) for run in (a, b))
        if name == "last.pt":
            first, second = ({k: c[k] for k in STATE} for c in (first, second))
        x, y = tensors(first), tensors(second)
        assert x.keys() == y.keys() and x, name
        assert not [k for k in x if not torch.equal(x[k], y[k])], name


def sampled(run: Path, out: Path) -> np.ndarray:
    assert main(["sample", "--checkpoint", str(run), "--count", "12", "--seed", "3", "--out", str(out)]) == 0
    with np.load(out) as saved:
        return saved["images"]


def check_finished(run: Path, rows: int, tmp_path: Path) -> None:
    """One metrics.csv of `rows` iterations, a last.pt of 2 ranks, and samples from it."""
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].tolist() == list(range(1, rows + 1))
    meta = read_checkpoint(run / "last.pt")["metadata"]
    assert meta["world_size"] == 2 and meta["epoch"] == rows
    images = sampled(run, tmp_path / f"{run.name}.npz")
    assert images.shape == (12, 1, 8, 8) and 0 <= images.min() and images.max() <= 1


@pytest.fixture(scope="module")
def winn_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The run (a), and again (b) stopped by a signal to rank 1 after iteration 1 and resumed,
    with rank 1 forbidden to write throughout."""
    root = tmp_path_factory.mktemp("winn-gen-ddp")
    launch(WINN, root / "a")
    done = torchrun([*WINN, "--out", str(root / "b")], worker=True, WINN_TEST_FAULT="guard-writes,signal-after-1")
    assert done.returncode != 0, done.stderr
    assert "stopped by SIGUSR2; iterations 1-1 are saved" in done.stderr  # rank 0's line: it stopped with rank 1
    assert len(pd.read_csv(root / "b" / "metrics.csv")) == 1 and not (root / "b" / "cascade-2.pt").exists()
    launch([*WINN, "--resume"], root / "b", worker=True, WINN_TEST_FAULT="guard-writes")
    return {"a": root / "a", "b": root / "b"}


def test_winn_gen_on_two_ranks_finishes_and_samples(winn_runs: dict[str, Path], tmp_path: Path) -> None:
    check_finished(winn_runs["a"], 2, tmp_path)
    assert (winn_runs["a"] / "cascade-2.pt").is_file() and len(list((winn_runs["a"] / "pool").glob("*.pt"))) == 3
    pool = pd.read_csv(winn_runs["a"] / "metrics.csv")["pool_size"].tolist()
    assert pool == [100, 160]  # 40 starts, then 60 a cascade: every rank's share of the syntheses is in the pool


def test_winn_gen_on_two_ranks_is_deterministic_through_a_stop_and_resume(winn_runs: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    assert_same_run(winn_runs["a"], winn_runs["b"])
    assert np.array_equal(sampled(winn_runs["a"], tmp_path / "a.npz"), sampled(winn_runs["b"], tmp_path / "b.npz"))


def test_wgan_gp_on_two_ranks_is_deterministic_and_samples(tmp_path: Path) -> None:
    launch(WGAN, tmp_path / "a")
    launch(WGAN, tmp_path / "b", worker=True, WINN_TEST_FAULT="guard-writes")
    check_finished(tmp_path / "a", 2, tmp_path)
    assert_same_run(tmp_path / "a", tmp_path / "b")
    assert np.array_equal(sampled(tmp_path / "a", tmp_path / "a.npz"), sampled(tmp_path / "b", tmp_path / "b.npz"))


# parameters whose exact gradient is zero (a bias before batch norm; the critic's output bias under a
# loss that is a difference of means): Adam turns their rounding noise into steps of its learning rate,
# so they (and the running mean after such a bias) differ between any two summation orders
ZERO_GRADIENT = ("critic.classifier.bias", "generator.project.bias", "generator.project_norm.running_mean")


def test_iwgan_on_two_ranks_trains_like_one_process(tmp_path: Path) -> None:
    args = ["train", "--method", "iwgan", *COMMON, "--iterations", "1", "--steps-per-iteration", "2", "--gap-steps", "1",
            "--gap-batch", "16", "--batch-size", "20"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    launch(args, tmp_path / "two")
    one, two = (read_checkpoint(tmp_path / run / "last.pt")["model"] for run in ("one", "two"))
    differences = {k: (one[k].double() - two[k].double()).abs().max().item() for k in one if k not in ZERO_GRADIENT}
    assert max(differences.values()) <= 1e-5, differences
    train = ["critic_loss", "gradient_penalty", "train_primal", "train_reconstruction", "train_mmd"]
    logged = (pd.read_csv(tmp_path / run / "metrics.csv")[train] for run in ("one", "two"))
    pd.testing.assert_frame_equal(*logged, atol=1e-5, rtol=1e-5)
