"""Runs are jobs: each training run and each seed's evaluation is one `python -m winn_robust`
command, run as its own process, so several can run at once (`--jobs N`) with the CPU threads
split between them, or one per visible GPU. A job whose work is already done is skipped; an
interrupted one continues (`train --resume`, `attack --resume`); a killed `reproduce` restarted
with the same command therefore finishes with the same report.

With one job at a time the child writes to the terminal (progress bars); with several, each
writes a log under OUT/logs/ and the parent prints a line as each finishes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from winn_robust.errors import UserError


@dataclass
class Job:
    """One command (the arguments after `winn-robust`), where it logs, and how many threads it gets."""
    name: str
    argv: list[str]
    log: Path
    threads: int = 1
    gpu: int | None = None
    launcher: list[str] = field(default_factory=list)  # e.g. torchrun's, before `-m winn_robust`
    timing: Path | None = None    # where the job's wall time is kept (read back by later runs that skip it)
    continues: bool = False       # a resumed or extended job: its time adds to the time already recorded

    def command(self) -> list[str]:
        prefix = self.launcher or [sys.executable]
        return [*prefix, "-m", "winn_robust", *self.argv, "--threads", str(self.threads)]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpu)
        return env


def _last_error_line(log: Path) -> str:
    if not log.is_file():
        return "no log"
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["empty log"])[-1].strip()


def _run(job: Job, to_terminal: bool) -> float:
    started = time.perf_counter()
    job.log.parent.mkdir(parents=True, exist_ok=True)
    if to_terminal:
        code = subprocess.run(job.command(), env=job.environment()).returncode
    else:
        with open(job.log, "w") as handle:
            code = subprocess.run(job.command(), env=job.environment(), stdout=handle, stderr=subprocess.STDOUT).returncode
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        where = "above" if to_terminal else f"in {job.log}"
        detail = "" if to_terminal else f": {_last_error_line(job.log)}"
        raise UserError(f"job {job.name} failed (exit status {code}){detail}; see {where}, fix it and run the same "
                        "command again (finished jobs are kept)")
    seconds = time.perf_counter() - started
    if job.timing is not None:
        record_time(job.timing, seconds, add=job.continues)
    return seconds


def record_time(path: Path, seconds: float, add: bool = False) -> float:
    """Keep a job's wall time in its own folder (added to the time already there for a job that
    continued earlier work), so a later run that skips the job still reports the time behind its
    numbers. Returns the time now recorded."""
    total = seconds + ((recorded_time(path) or 0.0) if add else 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seconds": round(total, 3)}) + "\n")
    return total


def recorded_time(path: Path) -> float | None:
    """The wall time `record_time` kept, or None (never recorded, or unreadable)."""
    try:
        return float(json.loads(path.read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_jobs(jobs: Sequence[Job], parallel: int) -> dict[str, float]:
    """Run `jobs`, at most `parallel` at once; seconds per job. The first failure stops the rest
    from starting (running ones finish) and is raised as one UserError."""
    if not jobs:
        return {}
    if parallel <= 1:
        return {job.name: _run(job, to_terminal=True) for job in jobs}
    seconds: dict[str, float] = {}
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=parallel) as pool:
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
    if failure is not None:
        raise failure
    return seconds


def threads_per_job(total: int, parallel: int) -> int:
    return max(1, total // max(1, parallel))
