"""Runs are jobs: each training run and each seed's evaluation is a spec.json in its own folder
(OUT/jobs/<id>/, experiments/job_spec.py), run as its own process with `python -m winn_robust
run-job SPEC` (under torchrun when asked), so several can run at once with the CPU threads
split between them, or one per visible GPU, or one per cluster job (experiments/launchers.py).
A job whose work is already done is skipped; an interrupted one continues; a killed `reproduce`
restarted with the same command therefore finishes with the same report.

The local launcher: with one job at a time the child writes to the terminal (progress bars);
with several, each writes OUT/jobs/<id>/log.txt and the parent prints a line as each finishes."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winn_robust import stop_request
from winn_robust.errors import UserError
from winn_robust.storage import atomic_write_text

SPEC_NAME, LOG_NAME = "spec.json", "log.txt"
TAIL_LINES = 5
PR_SET_DEATHSIG = 1  # linux/prctl.h



@dataclass(frozen=True)
class Job:
    """One job folder (spec.json, log.txt) and the resources its process gets."""
    name: str
    folder: Path
    threads: int = 1
    gpu: int | None = None
    launcher: tuple[str, ...] = field(default_factory=tuple)  # e.g. torchrun's, before `-m winn_robust`

    @property
    def spec(self) -> Path:
        return self.folder / SPEC_NAME

    @property
    def log(self) -> Path:
        return self.folder / LOG_NAME
    timing: Path | None = None    # where the job's wall time is kept (read back by later runs that skip it)
    continues: bool = False       # a resumed or extended job: its time adds to the time already recorded

    def command(self) -> list[str]:
        prefix = list(self.launcher) or [sys.executable]
        return [*prefix, "-m", "winn_robust", "run-job", str(self.spec)]

    def environment_overrides(self) -> dict[str, str]:
        """What the job's process gets on top of the parent's (or the cluster job's) environment."""
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpu)
        return env

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.environment_overrides()}


def log_tail(log: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last non-empty lines of a job's log (what a failure is reported with)."""
    if not log.is_file():
        return []
    return [line.rstrip() for line in log.read_text(errors="replace").splitlines() if line.strip()][-lines:]


def job_failed(job: Job, detail: str, log: Path | None = None) -> UserError:
    """A failed job, named, with its log's last lines printed above the one-line error."""
    log = log or job.log
    tail = log_tail(log)
    if tail:
        print(f"    last lines of {log}:", *(f"    | {line}" for line in tail), sep="\n", file=sys.stderr, flush=True)
    errors = [line for line in tail if "error" in line.lower()]
    last = (errors or tail or ["no log"])[-1].strip()
    return UserError(f"job {job.name} failed ({detail}) in {log}: {last}; fix it and run the same command again "
                     "(finished jobs are kept)")


STOP_GRACE = 120.0  # seconds a stopped job gets to save its state before it is killed

_CHILDREN: set[subprocess.Popen[bytes]] = set()  # running jobs' processes, to pass a stop on to


def run_command(command: Sequence[str], env: dict[str, str], log: Path | None, cwd: str | None = None,
                append: bool = False) -> int:
    """Run a job's command; its output goes to `log` (None: the terminal). The exit status. When
    this process is stopped (Ctrl-C, SIGTERM: an exception while waiting) the job gets SIGTERM
    and up to STOP_GRACE seconds to save a resumable state before it is killed."""
    if log is None:
        return _wait(subprocess.Popen(list(command), env=env, cwd=cwd, **dies_with_parent()))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a" if append else "w") as handle:
        return _wait(subprocess.Popen(list(command), env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                      **dies_with_parent()))


def _wait(process: subprocess.Popen[bytes]) -> int:
    _CHILDREN.add(process)
    try:
        return process.wait()
    except BaseException:
        stop_child(process)
        raise
    finally:
        _CHILDREN.discard(process)


def stop_child(process: subprocess.Popen[bytes], grace: float = STOP_GRACE, signum: int = signal.SIGTERM) -> None:
    """Ask a job's process to stop (it saves its state at the next batch boundary), wait, then kill."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(signum)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except BaseException:  # a second Ctrl-C while waiting: stop at once
        process.kill()
        raise


def stop_children(grace: float = STOP_GRACE) -> None:
    """Stop every running job's process (from another thread's jobs too), each saving its state."""
    for process in list(_CHILDREN):
        try:
            process.send_signal(signal.SIGTERM)
        except OSError:
            pass
    for process in list(_CHILDREN):
        stop_child(process, grace)


def dies_with_parent() -> dict[str, Any]:
    """Keyword arguments for subprocess.run/Popen so that the child dies when this process dies,
    even by kill -9: on Linux the kernel sends it SIGTERM when its parent goes (prctl
    PR_SET_DEATHSIG, set in the child before exec; torchrun passes the SIGTERM on to its ranks).
    Elsewhere nothing: the folders' locks still refuse a second writer beside a survivor."""
    if not sys.platform.startswith("linux"):
        return {}
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, in the parent: the child only calls it
    except (OSError, AttributeError):
        return {}
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        prctl(PR_SET_DEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return {"preexec_fn": set_parent_death_signal}


def _run(job: Job, to_terminal: bool) -> float:
    started = time.perf_counter()
    code = run_command(job.command(), job.environment(), None if to_terminal else job.log)
    if code in (130, 143):  # the job was stopped by Ctrl-C or SIGTERM and saved its state
        raise stop_request.Stopped(code - 128, f"job {job.name} was stopped and saved its state; the same command "
                                               "continues it")
    if code != 0:
        if to_terminal:
            raise UserError(f"job {job.name} failed (exit status {code}); see above, fix it and run the same command "
                            "again (finished jobs are kept)")
        raise job_failed(job, f"exit status {code}")
    seconds = time.perf_counter() - started
    if job.timing is not None:
        record_time(job.timing, seconds, add=job.continues)
    return seconds


def record_time(path: Path, seconds: float, add: bool = False) -> float:
    """Keep a job's wall time in its own folder (added to the time already there for a job that
    continued earlier work), so a later run that skips the job still reports the time behind its
    numbers. Returns the time now recorded."""
    total = seconds + ((recorded_time(path) or 0.0) if add else 0.0)
    atomic_write_text(path, json.dumps({"seconds": round(total, 3)}) + "\n")
    return total


def recorded_time(path: Path) -> float | None:
    """The wall time `record_time` kept, or None (never recorded, or unreadable)."""
    try:
        return float(json.loads(path.read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_local(jobs: Sequence[Job], parallel: int) -> dict[str, float]:
    """Run `jobs` as child processes, at most `parallel` at once; seconds per job. The first
    failure stops the rest from starting (running ones finish) and is raised as one UserError."""
    if not jobs:
        return {}
    if parallel <= 1:
        return {job.name: _run(job, to_terminal=True) for job in jobs}
    seconds: dict[str, float] = {}
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        try:
            pending: dict[Future[float], Job] = {}
            queue = list(jobs)
            while queue or pending:
                while queue and len(pending) < parallel and failure is None:
                    job = queue.pop(0)
                    print(f"    started {job.name} (log: {job.log})", file=sys.stderr, flush=True)
                    pending[pool.submit(_run, job, False)] = job
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    try:
                        seconds[job.name] = future.result()
                        print(f"    finished {job.name} in {seconds[job.name]:.0f} s", file=sys.stderr, flush=True)
                    except BaseException as exc:  # re-raised below, after the running jobs end
                        failure = failure or exc
                if failure is not None:
                    queue.clear()
        except BaseException:  # Ctrl-C or SIGTERM while waiting: every running job saves its state and stops
            stop_children()
            raise
    if failure is not None:
        raise failure
    return seconds


def threads_per_job(total: int, parallel: int) -> int:
    return max(1, total // max(1, parallel))
