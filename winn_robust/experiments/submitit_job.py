"""What a submitit job executes (imported only when submitit launches jobs, so `winn-robust`
itself starts without submitit): a job's command, its output appended to its log.txt.

Checkpointable: when SLURM (or submitit's local executor) signals the time limit or a
preemption (SIGUSR2), submitit calls `checkpoint` in this process before it requeues the job:
the signal is passed on to the job's command, which writes a resumable state at its next batch
boundary (training: partial.pt; evaluation: its finished batches) and exits; only then is the
job requeued, and the rerun continues from that state. The job's own wall time, summed over
its attempts, is kept in its work's folder (wall_time.json) under every launcher."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable, DelayedSubmission

from winn_robust.experiments.jobs import STOP_GRACE, dies_with_parent, record_time

_RUNNING: dict[str, Any] = {}  # the command's process and start time (not pickled with the job)


class RunInJob(Checkpointable):
    def __init__(self, timing: str | None = None, continues: bool = False) -> None:
        self.timing, self.continues = timing, continues

    def __call__(self, command: list[str], env: dict[str, str], cwd: str, log: str) -> int:
        """Run `command` from `cwd` with `env` on top of the job's environment; the exit status."""
        with open(log, "a") as handle:
            process = subprocess.Popen(command, env={**os.environ, **env}, cwd=cwd, stdout=handle,
                                       stderr=subprocess.STDOUT, **dies_with_parent())
        _RUNNING.update(process=process, started=time.perf_counter())
        code = process.wait()
        self._record()
        return code

    def _record(self) -> None:
        started = _RUNNING.pop("started", None)
        if self.timing is not None and started is not None:
            record_time(Path(self.timing), time.perf_counter() - started, add=self.continues)
            self.continues = True

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """On the time-limit or preemption signal: pass it on, wait until the command has saved
        its state and exited (up to STOP_GRACE s), then hand submitit the same call to requeue."""
        process: subprocess.Popen[bytes] | None = _RUNNING.get("process")
        if process is not None:
            try:
                os.kill(process.pid, signal.SIGUSR2)
            except OSError:
                pass
            deadline = time.monotonic() + STOP_GRACE
            # waitid(WNOWAIT) sees the exit without reaping it (the interrupted Popen.wait still will)
            while time.monotonic() < deadline and not _exited(process):
                time.sleep(0.2)
            self._record()
        return DelayedSubmission(self, *args, **kwargs)


def _exited(process: subprocess.Popen[bytes]) -> bool:
    if process.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
