"""Faults of the machine and of the scheduler, injected for real: a signal mid-epoch, a lock file
deleted under a live writer, a lock recorded by another host, ENOLCK, a file-size limit, a full
disk (a small tmpfs), a read-only mount and immutable files (chattr +i). Each ends in one line
naming the file, the cause and what to do, exit status 1 (2 stays for bad input), with the last
good checkpoint intact. The injections that need root (mounts, chattr) skip with a reason."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from winn_robust import locking, stop_request
from winn_robust.checkpoint import read_meta
from winn_robust.cli import main
from winn_robust.errors import MachineError, UserError
from winn_robust.experiments.job_spec import Runtime, TrainJob, run_job, write_spec
from winn_robust.training import TrainConfig

ROOT = Path(__file__).parents[1]
TINY = ["--arch", "vanilla", "--data", "digits", "--train-limit", "300", "--val-size", "100",
        "--negatives-per-class", "3", "--initial-negatives-per-class", "3", "--synthesis-max-steps", "10",
        "--batch-size", "10", "--no-progress", "--device", "cpu", "--threads", "1"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount") or not shutil.which("chattr"),
                               reason="needs root with mount and chattr (tmpfs, read-only mounts, immutable files)")


def train_cli(*args: str, preexec=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winn_robust", "train", *args], env=ENV, cwd=ROOT, text=True,
                          capture_output=True, timeout=300, preexec_fn=preexec)


def start_training(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """A training process, returned once its first batch has run (its progress line is in `log`)."""
    handle = open(log, "w")
    child = subprocess.Popen([sys.executable, "-m", "winn_robust", "train", *args], env=ENV, cwd=ROOT,
                             stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while "training " not in log.read_text() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return child


def train_here(capsys, *args: str) -> subprocess.CompletedProcess[str]:
    """`winn-robust train` in this process (a traceback would fail the test), as a CompletedProcess."""
    capsys.readouterr()
    code = main(["train", *args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["train"], code, captured.out, captured.err)


def one_fault_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit 1, one line on stderr (no traceback) holding `expected`."""
    err = [line for line in result.stderr.splitlines() if line.startswith("winn-robust: error")]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and len(err) == 1, result.stderr
    for text in expected:
        assert text in err[0], err[0]
    return err[0]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- signals -----------------------------------------------------------------------------------
def test_sigterm_mid_epoch_saves_partial_state_and_resume_is_bit_identical(tmp_path):
    """SIGTERM (what SLURM sends first) during the first epoch: one line, exit 143, partial.pt
    kept; --resume (signalled again, then to the end) ends with weights bit-identical to an
    uninterrupted run's, best.pt and last.pt alike."""
    args = ["--method", "winn", "--epochs", "2", *TINY]
    assert main(["train", *args, "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "stopped"
    for attempt in range(2):
        child = start_training(*args, *(["--resume"] if attempt else []), "--out", str(out), log=tmp_path / "log")
        time.sleep(1.0)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=120) == 143
        text = (tmp_path / "log").read_text()
        assert "Traceback" not in text and "winn-robust: stopped by SIGTERM;" in text, text
        assert (out / "partial.pt").is_file() or (out / "last.pt").is_file(), text
    assert main(["train", *args, "--resume", "--out", str(out)]) == 0
    assert not (out / "partial.pt").exists()
    for name in ("best.pt", "last.pt"):
        assert same_weights(tmp_path / "whole" / name, out / name), name


def test_stop_request_polling_records_and_raises_outside(tmp_path):
    previous = stop_request.install()
    try:
        with stop_request.polling():
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)
            assert stop_request.requested() == signal.SIGUSR2
        stop_request.clear()
        with pytest.raises(stop_request.Stopped) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
        assert caught.value.exit_status == 143
    finally:
        stop_request.clear()
        stop_request.restore(previous)


def test_a_requeued_job_whose_training_is_done_exits_zero(tmp_path, capsys):
    """A preemption or time-limit signal just after the last epoch requeues the job: its rerun
    finds the work done and succeeds (it used to exit 2, `nothing to do`, failing the sweep)."""
    out = tmp_path / "run"
    assert main(["train", "--method", "baseline", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    config = TrainConfig.from_dict(read_meta(out / "last.pt").hparams)
    spec = write_spec(tmp_path / "job", "train baseline seed 0", TrainJob(config, out), Runtime())
    before = (out / "last.pt").read_bytes()
    run_job(spec)  # no exception: exit 0
    assert "nothing to do" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == before


# ---- locks -------------------------------------------------------------------------------------
def test_a_writer_whose_lock_file_is_deleted_never_shares_its_folder(tmp_path):
    """Delete a live writer's lock file and start a second writer (--force --seed 1) there: the
    first stops at its next checkpoint with one line, writing nothing more; every file in the
    folder is the second run's (the same seed in best.pt and last.pt, pool files whose sha256 match)."""
    out = tmp_path / "run"
    first = start_training("--method", "winn", "--epochs", "30", *TINY, "--out", str(out), log=tmp_path / "first.log")
    lock = out / locking.lock_name(locking.RUN)
    assert lock.is_file()
    lock.unlink()
    second = train_cli("--method", "winn", "--epochs", "2", "--seed", "1", "--force", *TINY, "--out", str(out))
    assert first.wait(timeout=300) == 1
    text = (tmp_path / "first.log").read_text()
    assert "lost the lock on" in text and "Traceback" not in text, text
    assert second.returncode == 0, second.stderr
    for name in ("best.pt", "last.pt"):
        assert read_meta(out / name).seed == 1, name
    payload = torch.load(out / "last.pt", weights_only=True)
    for record in payload["pool_files"]:
        data = (out / record["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"], record


def test_lock_checks(tmp_path, monkeypatch):
    """A replaced lock file fails `verify` in one line; a lock recorded by another host is never
    taken over; ENOLCK from the file system is one MachineError line naming the lock."""
    folder = tmp_path / "f"
    with locking.acquire(folder, locking.RUN) as held:
        held.verify()
        path = folder / locking.lock_name(locking.RUN)
        path.unlink()
        path.write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "command": "other"}))
        with pytest.raises(MachineError, match="lost the lock"):
            held.verify()
    other = tmp_path / "g"
    other.mkdir()
    (other / locking.lock_name(locking.RUN)).write_text(json.dumps({"pid": os.getpid(), "host": "node-17",
                                                                    "command": "winn-robust train"}))
    with pytest.raises(UserError, match=r"another host.*node-17"):
        locking.acquire(other, locking.RUN)

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(37, "No locks available")

    monkeypatch.setattr(locking.fcntl, "flock", no_locks)
    with pytest.raises(MachineError, match=r"cannot lock .*does not support locks.*\[ENOLCK\]"):
        locking.acquire(tmp_path / "h", locking.REPORT)


def test_report_out_beside_a_writer_of_the_same_folder_is_refused_in_one_line(tmp_path, capsys):
    """`report RUN --out NEW` locks NEW like every writer: beside an `attack` into NEW (here a
    process holding its report lock) it is refused in one line, and the attack's folder is left
    as it was; alone, it cleans a killed report's temporary file first."""
    new = tmp_path / "new"
    holder = subprocess.Popen([sys.executable, "-c", "import sys,time\nfrom winn_robust import locking\n"
                               "h=locking.acquire(sys.argv[1],'report'); print('ready', flush=True); time.sleep(600)",
                               str(new)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert main(["report", str(ROOT / "reports/quick/seed-0"), "--out", str(new)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is being written by pid" in err, err
        assert sorted(p.name for p in new.iterdir()) == [locking.lock_name(locking.REPORT)]
    finally:
        holder.kill()
        holder.wait()
    leftover = new / ".table.md.abcd1234.tmp"
    leftover.write_text("half a table")
    assert main(["report", str(ROOT / "reports/quick/seed-0"), "--out", str(new)]) == 0
    assert not leftover.exists() and (new / "table.csv").is_file()


# ---- file-system faults ------------------------------------------------------------------------
def test_a_file_size_limit_is_one_line_and_keeps_nothing_half_written(tmp_path):
    """ulimit -f smaller than a checkpoint: EFBIG, one line naming the file, exit 1; no temporary
    file is left behind."""
    out = tmp_path / "run"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = train_cli("--method", "baseline", "--epochs", "1", *TINY, "--out", str(out), preexec=limit)
    one_fault_line(result, "cannot write", "[EFBIG]")
    assert not list(out.glob(".*.tmp"))


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@ROOT_ONLY
def test_disk_full_is_one_line_and_keeps_the_last_checkpoint(small_disk, capsys):
    """A full disk at epoch 2's checkpoint: one line (ENOSPC, the file, what to do), exit 1;
    last.pt still holds epoch 1 and --resume says how to continue (not `run without --resume`)."""
    out = small_disk / "run"
    assert main(["train", "--method", "baseline", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    before = (out / "last.pt").read_bytes()
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 32 * 1024))
    result = train_here(capsys, "--method", "baseline", "--epochs", "2", *TINY, "--resume", "--out", str(out))
    one_fault_line(result, "cannot write", str(out), "the disk is full [ENOSPC]", "free space")
    assert (out / "last.pt").read_bytes() == before and read_meta(out / "last.pt").epoch == 1
    assert not list(out.glob(".*.tmp"))


@ROOT_ONLY
def test_read_only_mount_is_one_line_before_any_epoch(small_disk, capsys):
    out = small_disk / "run"
    assert main(["train", "--method", "baseline", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = train_here(capsys, "--method", "baseline", "--epochs", "2", *TINY, "--resume", "--out", str(out))
    one_fault_line(result, str(out), "read-only [EROFS]")
    assert "training baseline" not in result.stderr  # refused before the data was even loaded
    assert read_meta(out / "last.pt").epoch == 1


@ROOT_ONLY
@pytest.mark.parametrize("target", ["last.pt", "pool"])
def test_an_immutable_file_in_the_run_is_found_before_any_epoch(tmp_path, target, capsys):
    """chattr +i on last.pt (or on the pool/ folder): one line naming it before the first epoch."""
    out = tmp_path / "run"
    assert main(["train", "--method", "winn", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    path = out / target
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("this file system does not take chattr +i")
    try:
        result = train_here(capsys, "--method", "winn", "--epochs", "2", *TINY, "--resume", "--out", str(out))
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)
    one_fault_line(result, str(path), "[EPERM]", "chattr -i")
    assert "epoch 2" not in result.stderr and read_meta(out / "last.pt").epoch == 1


def test_sigterm_during_an_evaluation_stops_after_the_batch_and_resume_matches(tmp_path):
    """SIGTERM inside an evaluation (polled after each saved batch): Stopped with what was kept;
    --resume ends with the per-example file of an uninterrupted evaluation."""
    import winn_robust.experiments.evaluate as evaluate_module
    from tests.test_integrity import checkpoint
    from winn_robust.evaluation.harness import cross_evaluate
    from winn_robust.evaluation.spec import EvalSpec

    base, other = checkpoint(tmp_path / "base.pt"), checkpoint(tmp_path / "other.pt", seed=1, method="winn")
    spec = EvalSpec(eps=(0.1,), limit=40, batch_size=10)
    evaluate_module.evaluate_models([str(base), str(other)], spec, tmp_path / "whole", progress=False, plots=False)

    def terminate_once(key: str, sent: list[str] = []) -> None:  # noqa: B006 - one shared record
        if not sent:
            sent.append(key)
            os.kill(os.getpid(), signal.SIGTERM)

    original = evaluate_module.cross_evaluate
    evaluate_module.cross_evaluate = lambda *a, **k: cross_evaluate(*a, **{**k, "on_item": terminate_once})
    previous = stop_request.install()
    out = tmp_path / "R"
    try:
        with pytest.raises(stop_request.Stopped) as stopped:
            evaluate_module.evaluate_models([str(base), str(other)], spec, out, progress=False, plots=False)
    finally:
        evaluate_module.cross_evaluate = original
        stop_request.restore(previous)
    assert stopped.value.exit_status == 143 and "--resume" in stopped.value.saved
    assert list((out / ".evaluation-state").glob("run*.pt"))
    evaluate_module.evaluate_models([str(base), str(other)], spec, out, progress=False, plots=False, resume=True)
    assert (out / "per_example.csv").read_text() == (tmp_path / "whole" / "per_example.csv").read_text()
