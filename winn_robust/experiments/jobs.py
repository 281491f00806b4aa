"""Runs are jobs: each training run and each seed's evaluation is one `python -m winn_robust`
command, run as its own process, so several can run at once (`--jobs N`) with the CPU threads
split between them, or one per visible GPU. A job whose work is already done is skipped; an
interrupted one continues (`train --resume`, `attack --resume`); a killed `reproduce` restarted
with the same command therefore finishes with the same report.

With one job at a time the child writes to the terminal (progress bars); with several, each
writes a log under OUT/logs/ and the parent prints a line as each finishes."""
from __future__ import annotations

import ctypes
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

from winn_robust.errors import UserError

PR_SET_DEATHSIG = 1  # linux/prctl.h


@dataclass
class Job:
    """One command (the arguments after `winn-robust`), where it logs, and how many threads it gets."""
    name: str
    argv: list[str]
    log: Path
    threads: int = 1
    gpu: int | None = None
    launcher: list[str] = field(default_factory=list)  # e.g. torchrun's, before `-m winn_robust`

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
    job.log.parent.mkdir(parents=True, exist_ok=True)
    if to_terminal:
        code = subprocess.run(job.command(), env=job.environment(), **dies_with_parent()).returncode
    else:
        with open(job.log, "w") as handle:
            code = subprocess.run(job.command(), env=job.environment(), stdout=handle, stderr=subprocess.STDOUT,
                                  **dies_with_parent()).returncode
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        where = "above" if to_terminal else f"in {job.log}"
        detail = "" if to_terminal else f": {_last_error_line(job.log)}"
        raise UserError(f"job {job.name} failed (exit status {code}){detail}; see {where}, fix it and run the same "
                        "command again (finished jobs are kept)")
    return time.perf_counter() - started


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
