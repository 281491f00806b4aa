"""On a real one-node SLURM cluster (scripts/slurm-cluster.sh; .ci/run starts it): a reproduce
sweep through `--launcher slurm` writes the local launcher's table.csv byte for byte; a training
job whose time limit is shorter than its run is signalled, saves, is requeued and finishes with
weights bit-identical to an uninterrupted run; a cancelled job is named within seconds, without
sacct. Skipped, with the reason, where the cluster is not up. Every wait has a timeout.

SLURM holds a requeued job for a fixed 121 s before it is eligible again; the tests release it
at once (`scontrol update StartTime=now`, what an admin may do) so the suite stays short."""
from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

from winn_robust.cli import main
from winn_robust.errors import UserError
from winn_robust.experiments.job_spec import Runtime, TrainJob, run_job, write_spec
from winn_robust.experiments.jobs import Job, recorded_time
from winn_robust.experiments.launchers import LaunchSettings, run_submitit
from winn_robust.training import TrainConfig

TINY = ["--epochs", "1", "--train-limit", "200", "--negatives-per-class", "3", "--synthesis-max-steps", "5",
        "--test-limit", "60", "--attack", "fgsm", "--no-progress", "--device", "cpu"]


def cluster_problem() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "SLURM is not installed (scripts/slurm-cluster.sh install, as root)"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return "sinfo does not answer: the SLURM cluster is not up (scripts/slurm-cluster.sh start)"
    if not any(s.rstrip("*") in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"no SLURM node is up (sinfo: {' '.join(states) or 'nothing'}); run scripts/slurm-cluster.sh start"
    return None


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(cluster_problem() is not None, reason=str(cluster_problem()))]


@pytest.fixture
def fast_polls(monkeypatch):
    monkeypatch.setenv("WINN_ROBUST_POLL_SECONDS", "1")


class ReleaseRequeued:
    """While running: make requeued jobs eligible at once (SLURM's own delay is 121 s); counts them."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.released: set[str] = set()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                lines = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i|%r"], capture_output=True, text=True,
                                       timeout=10).stdout.splitlines()
            except (OSError, subprocess.TimeoutExpired):
                continue
            for line in lines:
                job, _, reason = line.partition("|")
                if reason == "BeginTime":
                    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True,
                                   timeout=10)
                    self.released.add(job)

    def __enter__(self) -> ReleaseRequeued:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


def test_a_slurm_sweep_writes_the_local_launchers_table_byte_for_byte(tmp_path, fast_polls, monkeypatch):
    out = tmp_path / "run"
    assert main(["reproduce", *TINY, "--threads", "1", "--out", str(out)]) == 0
    local = (out / "table.csv").read_bytes()
    out.rename(tmp_path / "local")
    assert main(["reproduce", *TINY, "--threads", "1", "--launcher", "slurm", "--slurm-cpus-per-job", "1",
                 "--slurm-time", "10", "--out", str(out)]) == 0
    assert (out / "table.csv").read_bytes() == local
    for run in ("baseline", "winn"):  # wall times are recorded under every launcher
        assert (recorded_time(out / "models" / run / "wall_time.json") or 0) > 0, run
    assert "not recorded" not in (out / "summary.md").read_text()


WORK_SECONDS = 90  # the run must outlast the signal, which comes 20-50 s (SLURM: up to 60 s) after each start


def train_job(root: Path, epochs: int) -> tuple[TrainJob, Path]:
    config = TrainConfig(method="baseline", arch="vanilla", data="digits", epochs=epochs, train_limit=1000,
                         val_size=100, batch_size=8, seed=0)
    work = TrainJob(config, root / "run")
    return work, write_spec(root / "job", "train baseline seed 0", work, Runtime(device="cpu", threads=1))


def epochs_lasting(seconds: float, root: Path) -> int:
    """Epochs of train_job that last about `seconds` here: a fixed count ran 14 s on a fast CI
    machine, ended before the signal, and the test saw no requeue."""
    _, spec = train_job(root, epochs=4)
    started = time.monotonic()
    run_job(spec)
    per_epoch = (time.monotonic() - started) / 4
    return max(20, min(400, math.ceil(seconds / per_epoch)))


def test_a_time_limit_shorter_than_the_run_requeues_and_ends_bit_identical(tmp_path, capsys):
    """--slurm-time 2 with the save signal 100 s before it: the job is signalled mid-run, writes
    partial.pt or last.pt at the next batch boundary, is requeued and continues; its weights equal
    an uninterrupted run's bit for bit; its wall time sums its attempts."""
    epochs = epochs_lasting(WORK_SECONDS, tmp_path / "calibration")
    work, spec = train_job(tmp_path / "slurm", epochs=epochs)
    job = Job("train baseline seed 0", spec.parent, threads=1, timing=work.out / "wall_time.json")
    launch = LaunchSettings("slurm", slurm_cpus_per_job=1, slurm_time=2, slurm_signal_delay=100)
    reference, reference_spec = train_job(tmp_path / "here", epochs=epochs)
    uninterrupted = threading.Thread(target=run_job, args=(reference_spec,), daemon=True)  # meanwhile, here
    started = time.monotonic()
    with ReleaseRequeued():
        uninterrupted.start()
        run_submitit([job], launch, poll=2)
    seconds = time.monotonic() - started
    uninterrupted.join(timeout=600)
    log = (spec.parent / "log.txt").read_text()
    requeues = log.count("winn-robust: stopped by SIGUSR2")
    print(f"time-limit run: {epochs} epochs, {seconds:.0f} s, {requeues} save(s) on SIGUSR2 and as many requeues")
    assert requeues >= 1, log
    assert "Traceback" not in log
    for name in ("best.pt", "last.pt"):
        a = torch.load(work.out / name, weights_only=True)["model"]
        b = torch.load(reference.out / name, weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert (recorded_time(work.out / "wall_time.json") or 0) > 0


def test_a_cancelled_job_is_named_within_seconds_without_sacct(tmp_path):
    """scancel of a running job (no accounting on this cluster: sacct fails): the driver names it
    within LOST_AFTER seconds instead of polling on."""
    folder = tmp_path / "sleeper"  # the SLURM job's name: unique, so squeue finds this job, not another test's "job"
    folder.mkdir()
    (folder / "spec.json").write_text("{}")
    sleeper = Job("sleeper", folder, launcher=("/bin/sh", "-c", "sleep 300", "sh"))
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            run_submitit([sleeper], LaunchSettings("slurm", slurm_cpus_per_job=1, slurm_time=10), poll=1)
        except BaseException as exc:
            errors.append(exc)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    deadline = time.monotonic() + 120
    job_id = ""
    while not job_id and time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-t", "R", "-n", "sleeper", "-o", "%i"], capture_output=True, text=True,
                             timeout=10).stdout.split()
        job_id = out[0] if out else ""
        time.sleep(0.5)
    assert job_id, "the job never started"
    subprocess.run(["scancel", job_id], check=True, timeout=30)
    cancelled = time.monotonic()
    driver.join(timeout=120)
    assert not driver.is_alive(), "the driver kept polling a cancelled job"
    print(f"cancelled job named {time.monotonic() - cancelled:.0f} s after scancel")
    assert errors and isinstance(errors[0], UserError), errors
    assert "sleeper" in str(errors[0]) and job_id in str(errors[0]), errors[0]


def test_a_job_that_can_never_start_is_named_not_waited_for(tmp_path):
    """More CPUs per job than any node has: SLURM keeps it pending (PartitionConfig or
    Resources); the driver says so in one line instead of waiting silently."""
    nodes = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, timeout=10).stdout.split()
    too_many = max(int(n.rstrip("+")) for n in nodes) + 2  # the default 4 on a 2-CPU node: pending, PartitionConfig
    folder = tmp_path / "job"
    folder.mkdir()
    job = Job("greedy", folder, launcher=("/bin/true",))
    try:
        run_submitit([job], LaunchSettings("slurm", slurm_cpus_per_job=too_many, slurm_time=10), poll=1)
    except UserError as exc:
        assert ("can never start" in str(exc) or "SLURM refused" in str(exc)) and "slurm_cpus_per_job" in str(exc), exc
    else:
        pytest.fail("a job asking for more CPUs than the cluster has was not refused")
