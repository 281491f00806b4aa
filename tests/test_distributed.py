"""Data-parallel training under torchrun, on the CPU with gloo and 2 ranks of tiny data.

Faithful: WINN (pool negatives, interpolation, synthesis) on 2 ranks gives the weights and the
pool of one process, within WEIGHT_TOL / POOL_TOL (measured: about 1e-7 and 1e-5), with a short last
batch that leaves rank 1 nothing. Rank 0 alone writes; --resume works; a rank that fails ends the
job with one line and exit status 2; the CUDA choices (a GPU per rank, NCCL) are checked with
the same code on the CPU."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from conftest import pattern_data
from launch import REPO, TIMEOUT, torchrun

from winn_robust import device as device_module
from winn_robust import distributed
from winn_robust.checkpoint import read_checkpoint
from winn_robust.cli import main
from winn_robust.errors import UserError
from winn_robust.models import build_model
from winn_robust.training import TrainConfig, train
from winn_robust.training.generative.critic import AscentSettings, critic_scores, synthesize_from
from winn_robust.training.parallel import RankSlice
from winn_robust.training.pool import load_pool
from winn_robust.training.synthesis import generator_for, synthesize_negatives
from winn_robust.training.trainer import TrainData

WEIGHT_TOL, POOL_TOL = 1e-4, 1e-3
# 181 training images in global batches of 20: the last batch has 1 image, so rank 0 runs the
# zero-weight stand-in and rank 1 carries that batch alone (loss scale 2); 101 validation images
# shard 50 / 51; 10 classes: 5 synthesized on each rank
TINY = ["--method", "winn", "--arch", "vanilla", "--data", "digits", "--batch-size", "20", "--train-limit", "181",
        "--val-size", "101", "--negatives-per-class", "3", "--initial-negatives-per-class", "3",
        "--synthesis-max-steps", "20", "--no-progress", "--device", "cpu"]
TIMING = ("seconds_classification", "seconds_synthesis", "seconds_validation", "seconds_total",
          "negatives_per_second", "bytes_written")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("winn-robust: error:")]


def root_cause(stderr: str) -> tuple[int, int]:
    """(rank, exit status) of torchrun's "Root Cause (first observed failure)"."""
    block = stderr.split("Root Cause (first observed failure):", 1)[1]
    match = re.search(r"rank\s*: (\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*: (-?\d+)", block)
    assert match, block
    return int(match.group(1)), int(match.group(2))


def largest_differences(a: Path, b: Path) -> tuple[float, float]:
    """Largest |difference| of any weight and of any pool pixel between two runs' last.pt."""
    ca, cb = read_checkpoint(a / "last.pt"), read_checkpoint(b / "last.pt")
    weights = max((ca["model"][k] - cb["model"][k]).abs().max().item() for k in ca["model"])
    cpu = torch.device("cpu")
    pool_a, pool_b = load_pool(a, ca["pool_files"], cpu).images, load_pool(b, cb["pool_files"], cpu).images
    assert pool_a.shape == pool_b.shape
    return weights, (pool_a - pool_b).abs().max().item()


def same_metrics(a: Path, b: Path) -> None:
    """Every logged figure but the timings agrees; the counts (steps, pool size, errors) exactly."""
    # image-passes of WINN's synthesis differ: each rank synthesizes its share of the classes and
    # learns that a group stopped from one forward more of its own (the defences' counts are equal:
    # test_collectives_agreement_and_baseline_training_on_two_gloo_processes)
    passes = ["forward_passes", "backward_passes"]
    ma, mb = (pd.read_csv(p / "metrics.csv").drop(columns=[*TIMING, *passes]) for p in (a, b))
    exact = ["epoch", "method", "train_error", "val_error", "synthesis_steps_max", "synthesis_unconverged", "pool_size"]
    pd.testing.assert_frame_equal(ma[exact], mb[exact])
    pd.testing.assert_frame_equal(ma.drop(columns=exact), mb.drop(columns=exact), atol=1e-4, rtol=1e-4)


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One epoch in one process (in-process CLI) and on 2 ranks under torchrun."""
    root = tmp_path_factory.mktemp("ddp")
    one, two = root / "one", root / "two"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(one)]) == 0
    done = torchrun(["train", *TINY, "--epochs", "1", "--out", str(two)])
    assert done.returncode == 0, done.stderr
    assert "2 ranks (gloo, cpu), batch 20 = 2 x 10" in done.stderr
    return {"one": one, "two": two, "root": root}


# ----------------------------------------------------------------------------- faithful
def test_two_ranks_train_like_one_process(runs):
    weights, pool = largest_differences(runs["one"], runs["two"])
    print(f"1 vs 2 ranks after 1 epoch: max |weight diff| {weights:.3g}, max |pool diff| {pool:.3g}")
    assert weights <= WEIGHT_TOL and pool <= POOL_TOL
    same_metrics(runs["one"], runs["two"])
    a, b = (read_checkpoint(runs[k] / "last.pt") for k in ("one", "two"))
    assert torch.equal(a["rng_state"], b["rng_state"])  # every rank kept the one process's random stream
    assert b["metadata"]["world_size"] == 2 and a["metadata"]["world_size"] == 1


def test_resume_under_torchrun_with_rank_one_forbidden_to_write(runs):
    """Every rank reads last.pt and the pool files; rank 1 cannot create, write or rename
    anything under --out (the worker guards it), and the resumed run still matches one process."""
    one, two = runs["root"] / "one-resumed", runs["root"] / "two-resumed"
    shutil.copytree(runs["one"], one)
    shutil.copytree(runs["two"], two)
    resume = ["train", "--resume", "--epochs", "2", "--no-progress", "--device", "cpu"]
    assert main([*resume, "--out", str(one)]) == 0
    done = torchrun([*resume, "--out", str(two)], worker=True, WINN_TEST_FAULT="guard-writes")
    assert done.returncode == 0, done.stderr
    assert f"write guard active on rank 1 for {two.resolve()}" in done.stderr
    weights, pool = largest_differences(one, two)
    print(f"1 vs 2 ranks after resuming to epoch 2: max |weight diff| {weights:.3g}, max |pool diff| {pool:.3g}")
    assert weights <= WEIGHT_TOL and pool <= POOL_TOL
    same_metrics(one, two)
    assert files_in(one) == files_in(two)


def test_rank_zero_alone_writes_the_run_folder(runs):
    # the same files as one process: no per-rank copies, no stray temporary files
    assert files_in(runs["two"]) == files_in(runs["one"])
    assert "pool/epoch_001.pt" in files_in(runs["two"]) and "negatives/epoch_001.png" in files_in(runs["two"])


def test_main_only_guard_skips_writes_on_other_ranks(tmp_path, monkeypatch):
    target = tmp_path / "written.txt"
    write = distributed.main_only(target.write_text)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert write("rank 1") is None and not target.exists()
    monkeypatch.setenv("RANK", "0")
    write("rank 0")
    assert target.read_text() == "rank 0"


# ----------------------------------------------------------------------------- sharded evaluation
# 130 test images in batches of 20: FGSM on the first 60 at two eps, PGD (random start, seeded per
# batch) on the first 40, clean predictions alone for the rest: 15 items, so the last round leaves
# rank 1 idle
ATTACK = ["--attack", "fgsm,pgd", "--eps", "0.1,0.2", "--attack-limit", "fgsm=60", "--attack-limit", "pgd=40",
          "--attack-option", "pgd.steps=3", "--limit", "130", "--batch-size", "20", "--no-progress", "--device", "cpu"]
REPORT_TABLES = ("per_example.csv", "table.csv", "table.md")


@pytest.fixture(scope="module")
def evaluations(runs) -> dict[str, Path]:
    models = ["--baseline", f"a={runs['one']}", "--model", f"b={runs['two']}"]
    one, two = runs["root"] / "eval-one", runs["root"] / "eval-two"
    assert main(["attack", *models, *ATTACK, "--out", str(one)]) == 0
    done = torchrun(["attack", *models, *ATTACK, "--out", str(two)], worker=True, WINN_TEST_FAULT="guard-writes")
    assert done.returncode == 0, done.stderr
    assert f"write guard active on rank 1 for {two.resolve()}" in done.stderr
    return {"one": one, "two": two, "stdout": done.stdout}


def test_sharded_evaluation_writes_byte_identical_tables(evaluations):
    for name in REPORT_TABLES:
        assert (evaluations["one"] / name).read_bytes() == (evaluations["two"] / name).read_bytes(), name
    ranks = [json.loads((evaluations[k] / "results.json").read_text())["provenance"]["ranks"] for k in ("one", "two")]
    assert ranks == [1, 2]


def test_sharded_evaluation_rank_zero_alone_writes_and_prints(evaluations):
    assert files_in(evaluations["one"]) == files_in(evaluations["two"])  # no state folder left, no per-rank files
    assert evaluations["stdout"].count("report written to") == 1


def test_sharded_evaluation_resumes_a_killed_one_process_evaluation(evaluations, runs, tmp_path, monkeypatch):
    """A one-process evaluation killed after 5 items (its state folder keeps them), finished under
    torchrun with --resume: the same tables as the uninterrupted run."""
    import winn_robust.experiments.evaluate as evaluate_module
    from winn_robust.evaluation.harness import cross_evaluate
    from winn_robust.reporting.report_folder import STATE_DIR

    def stop_after_five(key: str, finished: list[str] = []) -> None:  # noqa: B006 (a counter across calls)
        finished.append(key)
        if len(finished) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "cross_evaluate",
                        lambda *args, **kwargs: cross_evaluate(*args, **{**kwargs, "on_item": stop_after_five}))
    models = ["--baseline", f"a={runs['one']}", "--model", f"b={runs['two']}"]
    out = tmp_path / "resumed"
    assert main(["attack", *models, *ATTACK, "--out", str(out)]) == 130
    assert len(list((out / STATE_DIR).glob("run*.pt"))) == 5
    done = torchrun(["attack", *models, *ATTACK, "--out", str(out), "--resume"])
    assert done.returncode == 0, done.stderr
    for name in REPORT_TABLES:
        assert (evaluations["one"] / name).read_bytes() == (out / name).read_bytes(), name


def test_a_rank_without_the_test_data_stops_the_evaluation(tmp_path):
    write_idx(tmp_path / "mnist", n_test=30)
    assert main(["train", *MNIST_TINY, "--data-dir", str(tmp_path / "mnist"), "--out", str(tmp_path / "run")]) == 0
    done = torchrun(["attack", "--model", str(tmp_path / "run"), "--eps", "0.1", "--data-dir", str(tmp_path / "mnist"),
                     "--no-progress", "--device", "cpu", "--out", str(tmp_path / "report")],
                    worker=True, WINN_TEST_FAULT="bad-data")
    assert_failed_on_rank_one(done, "winn-robust: error: rank 1 of 2: mnist: no data in ")
    assert not (tmp_path / "report" / "table.md").exists()


# ----------------------------------------------------------------------------- reproduce
def test_reproduce_hands_training_and_evaluation_to_torchrun(tmp_path, capsys):
    out = tmp_path / "reproduce"
    assert main(["reproduce", "--epochs", "1", "--train-limit", "150", "--val-size", "60", "--negatives-per-class", "2",
                 "--initial-negatives-per-class", "2", "--synthesis-max-steps", "5", "--test-limit", "40",
                 "--attack", "fgsm", "--no-progress", "--device", "cpu", "--nproc-per-node", "2",
                 "--threads", "2", "--out", str(out)]) == 0
    assert "1 thread(s) each, device cpu; every job under torchrun with 2 processes" in capsys.readouterr().err
    for method in ("baseline", "winn"):
        assert read_checkpoint(out / "models" / method / "last.pt")["metadata"]["world_size"] == 2
    assert json.loads((out / "results.json").read_text())["provenance"]["ranks"] == 2


@pytest.mark.parametrize("extra,message", [
    (["--jobs", "2"], "runs each job on 2 processes (one GPU each); run the jobs one at a time: drop --jobs"),
    (["--batch-size", "25"], "--batch-size 25 is the global batch, split evenly across 2 ranks"),
    (["--nproc-per-node", "0"], "--nproc-per-node must be at least 1, got 0"),
])
def test_reproduce_refuses_what_torchrun_cannot_run(tmp_path, capsys, extra, message):
    assert main(["reproduce", "--nproc-per-node", "2", *extra, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- failures
def write_idx(folder: Path, n_train: int = 40, n_test: int = 10) -> None:
    """A tiny MNIST in its IDX files (magic, big-endian sizes, uint8 payload)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def idx(array: np.ndarray) -> bytes:
        return struct.pack(">I", 0x800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()

    for prefix, n in (("train", n_train), ("t10k", n_test)):
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(np.arange(n, dtype=np.uint8) % 10))


MNIST_TINY = ["--method", "winn", "--arch", "vanilla", "--data", "mnist", "--epochs", "1", "--batch-size", "10",
              "--val-size", "10", "--negatives-per-class", "1", "--initial-negatives-per-class", "1",
              "--synthesis-max-steps", "2", "--no-progress", "--device", "cpu"]


def assert_failed_on_rank_one(done: subprocess.CompletedProcess[str], expected: str) -> None:
    lines = error_lines(done.stderr)
    assert lines and lines[0].startswith(expected), done.stderr
    assert lines[1:] == [] or all("stopped: a collective failed" in line for line in lines[1:]), lines
    assert root_cause(done.stderr) == (1, 2), done.stderr  # torchrun: the failing rank exited with status 2
    assert done.returncode == 1  # torchrun's own status when a worker failed


def test_a_rank_without_its_data_folder_stops_every_rank(tmp_path):
    write_idx(tmp_path / "mnist")
    done = torchrun(["train", *MNIST_TINY, "--data-dir", str(tmp_path / "mnist"), "--out", str(tmp_path / "run")],
                    worker=True, WINN_TEST_FAULT="bad-data")
    assert_failed_on_rank_one(done, "winn-robust: error: rank 1 of 2: mnist: no data in ")
    assert len(error_lines(done.stderr)) == 1
    assert not (tmp_path / "run" / "last.pt").exists()


def test_an_exception_in_one_rank_ends_the_job(tmp_path):
    done = torchrun(["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "run")], worker=True, WINN_TEST_FAULT="raise")
    assert_failed_on_rank_one(done, "winn-robust: error: rank 1 of 2 failed: RuntimeError: injected failure in epoch 1 on rank 1")
    assert "RuntimeError: injected failure" in done.stderr.split("Root Cause", 1)[1]  # its traceback, in torchrun's summary


def test_a_batch_the_ranks_cannot_split_evenly_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """Every rank refuses it alike, before loading data; rank 0 alone prints the line. (Run in
    this process as rank 0 and as rank 1 of 2, without a process group: the refusal comes first.)"""
    monkeypatch.setattr(distributed, "init_from_env", lambda device, timeout: distributed.world())
    monkeypatch.setattr(distributed, "exit_after_failure", lambda code, exc: None)
    from winn_robust.experiments import training_run

    monkeypatch.setattr(training_run, "load_train_data", lambda *args: pytest.fail("data loaded before the refusal"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, printed in (("0", ["winn-robust: error: --batch-size 25 is the global batch, split evenly across 2 ranks; "
                                 "choose a multiple of 2 (e.g. 24 or 26)"]), ("1", [])):
        monkeypatch.setenv("RANK", rank)
        assert main(["train", *TINY, "--batch-size", "25", "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
        assert capsys.readouterr().err.splitlines() == printed
    with pytest.raises(UserError, match="multiple of 8"):
        distributed.check_batch_split(100, 8)
    assert distributed.check_batch_split(100, 4) == 25


def test_python_m_winn_robust_is_the_entry_point():
    done = subprocess.run([sys.executable, "-m", "winn_robust", "--help"], capture_output=True, text=True,
                          timeout=TIMEOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and "train" in done.stdout and "reproduce" in done.stdout


def test_only_train_and_attack_run_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(distributed, "exit_after_failure", lambda code, exc: None)
    assert main(["report", "nowhere"]) == 2
    assert capsys.readouterr().err.strip() == ("winn-robust: error: only `train`, `attack` and `run-job` run under torchrun; "
                                               "run `winn-robust "
                                               "report` without torchrun (one process)")


# ----------------------------------------------------------------------------- the plumbing
def test_world_comes_from_torchrun_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.world() == distributed.World(0, 1, 0) and not distributed.world().distributed
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    here = distributed.world()
    assert (here.rank, here.world_size, here.local_rank, here.is_main, here.distributed) == (5, 8, 1, False, True)
    assert distributed.shard(10, here) == (6, 7)


def test_cuda_choices_by_construction(monkeypatch):
    """NCCL for CUDA, gloo for the CPU; one GPU per rank from LOCAL_RANK; checked without a GPU."""
    assert distributed.backend_for(torch.device("cuda:3")) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.ddp_device_ids(torch.device("cuda:3")) == [3]
    assert distributed.ddp_device_ids(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert device_module.resolve_device("auto") == torch.device("cuda")  # one process: as always
    assert device_module.resolve_device("cuda:2") == torch.device("cuda:2")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "7")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert device_module.resolve_device("auto") == torch.device("cuda:3")
    assert device_module.resolve_device("cuda") == torch.device("cuda:3")
    assert device_module.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="every rank uses its own GPU"):
        device_module.resolve_device("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "4")
    with pytest.raises(UserError, match=r"this node shows 4; start at most 4 processes per node"):
        device_module.resolve_device("auto")


def test_rank_slices_make_ddp_average_the_global_mean():
    for n, size in ((20, 2), (9, 2), (1, 2), (13, 3), (100, 8)):
        parts = [RankSlice.of(n, distributed.World(r, size, r)) for r in range(size)]
        assert sum(p.real for p in parts) == n
        assert sum(p.share for p in parts) == pytest.approx(1.0)
        # DDP divides the summed gradients by the world size: scale / size must be each rank's share
        assert all(p.loss_scale / size == pytest.approx(p.share) for p in parts)
        if n % size == 0:
            assert all(p.loss_scale == 1.0 for p in parts)
    empty = RankSlice.of(1, distributed.World(0, 2, 0))  # the tail goes to the last rank
    assert (empty.rows, empty.real, empty.loss_scale) == (slice(0, 1), 0, 0.0)


def test_synthesis_split_by_class_equals_all_classes_at_once():
    """Ranks draw every class's start images and tau, synthesize their share: the union is the
    single-process synthesis."""
    torch.manual_seed(0)
    model = build_model("vanilla", (1, 8, 8), 5).eval()
    torch.nn.init.normal_(model.critic.weight, 0.0, 1.0)
    config = TrainConfig(synthesis_max_steps=40)
    generator = generator_for(config, (1, 8, 8), torch.device("cpu"))

    def run(classes: range | None):
        rng = torch.Generator().manual_seed(3)
        return synthesize_negatives(model, generator, 5, 4, (-0.5, 0.5), rng, config, classes=classes)

    whole = run(None)
    parts = [run(range(lo, hi)) for lo, hi in ((0, 2), (2, 5), (5, 5))]
    assert torch.equal(torch.cat([p.steps for p in parts]), whole.steps)
    torch.testing.assert_close(torch.cat([p.images for p in parts]), whole.images, atol=1e-5, rtol=0)


def split_synthesis(world: distributed.World) -> tuple[torch.Tensor, list[int]]:
    """50 images in batches of 20 synthesized from a seeded one-output critic (generative/critic.py)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        critic = build_model("vanilla", (1, 8, 8), 1)
    starts = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return synthesize_from(critic_scores(critic), critic, starts, 50, (0.5, 1.0), AscentSettings(max_steps=5), 20,
                           torch.Generator().manual_seed(2), world=world)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def collectives_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init_from_env(torch.device("cpu"), timeout_minutes=1)
    gathered = distributed.all_gather_tensor(torch.full((rank * 3, 2), float(rank)))  # rank 0 holds nothing
    total = distributed.all_reduce_sum(torch.tensor([rank + 1.0]))
    mean = distributed.all_reduce_mean(torch.tensor([rank + 1.0]))
    objects = distributed.all_gather_object({"rank": rank})
    weight = torch.nn.Parameter(torch.zeros(2, 2))
    weight.grad = torch.full((2, 2), float(rank * 2))  # gradients 0 and 2: averaged to 1 on both ranks
    distributed.average_gradients([weight, torch.nn.Parameter(torch.zeros(1))])  # one without a gradient
    largest = distributed.max_over_ranks(10 + rank, torch.device("cpu"))
    synthesized = split_synthesis(distributed.world())

    def fail_on_rank_one() -> int:
        if rank == 1:
            raise UserError("no data here")
        return 7

    try:
        distributed.agree(fail_on_rank_one)
        outcome = "ok"
    except UserError as exc:
        outcome = f"{type(exc).__name__}: {distributed.report_line(exc)}"
    torch.save({"gathered": gathered, "sum": total, "mean": mean, "objects": objects, "outcome": outcome,
                "grad": weight.grad, "largest": largest, "synthesized": synthesized}, f"{out}/{rank}.pt")
    # the baseline under DDP: its critic gets no gradient (WINN and its critic run under torchrun above)
    train(TrainConfig(method="baseline", **SPAWN_TINY), tiny_train_data(), f"{out}/baseline", progress=False)
    # the defences: their random starts are drawn for the whole global batch, so two ranks attack as one process
    for method, options in DEFENCES.items():
        train(TrainConfig(method=method, method_options=options, **SPAWN_TINY), tiny_train_data(), f"{out}/{method}",
              progress=False)
    distributed.shutdown()


DEFENCES = {"pgd-at": {"eps": 0.1, "steps": 2}, "trades": {"eps": 0.1, "steps": 2}}


SPAWN_TINY = dict(arch="vanilla", data="digits", epochs=1, batch_size=20, val_size=40)


def tiny_train_data() -> TrainData:
    x, y = pattern_data(n_per_class=20)
    vx, vy = pattern_data(n_per_class=10, seed=1)
    return TrainData(x, y, vx, vy, "digits", tuple(str(i) for i in range(4)))


def test_collectives_agreement_and_baseline_training_on_two_gloo_processes(tmp_path):
    mp.spawn(collectives_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{rank}.pt", weights_only=False) for rank in (0, 1))
    single = split_synthesis(distributed.World())
    for r in (r0, r1):
        assert torch.equal(r["gathered"], torch.ones(3, 2))  # rank 0's empty piece, then rank 1's three rows
        assert r["sum"].item() == 3.0 and r["mean"].item() == 1.5
        assert r["objects"] == [{"rank": 0}, {"rank": 1}]
        assert torch.equal(r["grad"], torch.ones(2, 2)) and r["largest"] == 11
        # the generative synthesis: batches split 1 + 2 over the ranks, gathered: one process's images and steps
        assert torch.equal(r["synthesized"][0], single[0]) and r["synthesized"][1] == single[1]
    assert r0["outcome"] == "PeerFailed: None"  # healthy: stops quietly
    assert r1["outcome"] == "ReportedError: rank 1 of 2: no data here"
    train(TrainConfig(method="baseline", **SPAWN_TINY), tiny_train_data(), tmp_path / "one", progress=False)
    one, two = (read_checkpoint(tmp_path / name / "last.pt") for name in ("one", "baseline"))
    assert max((one["model"][k] - two["model"][k]).abs().max().item() for k in one["model"]) <= WEIGHT_TOL
    # the baseline never trains its critic, under DDP neither (no gradient, so no Adam state)
    assert one["optimizer"]["state"].keys() == two["optimizer"]["state"].keys()
    assert torch.equal(one["model"]["critic.weight"], two["model"]["critic.weight"])
    for method, options in DEFENCES.items():
        train(TrainConfig(method=method, method_options=options, **SPAWN_TINY), tiny_train_data(), tmp_path / f"one-{method}",
              progress=False)
        one, two = (read_checkpoint(tmp_path / name / "last.pt") for name in (f"one-{method}", method))
        assert max((one["model"][k] - two["model"][k]).abs().max().item() for k in one["model"]) <= WEIGHT_TOL, method
        assert one["metadata"]["cost"]["forward_passes"] == two["metadata"]["cost"]["forward_passes"]
