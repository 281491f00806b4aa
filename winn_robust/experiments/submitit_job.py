"""What a submitit job executes (imported only when submitit launches jobs, so `winn-robust`
itself starts without submitit): a job's command, its output appended to its log.txt.

Checkpointable: when SLURM (or submitit's local executor) signals the time limit or a
preemption, submitit requeues the same call, and the job's command resumes from its folder
(last.pt, the evaluation's saved state), as a rerun of `reproduce` would."""
from __future__ import annotations

import os
from pathlib import Path

from submitit.helpers import Checkpointable

from winn_robust.experiments.jobs import run_command


class RunInJob(Checkpointable):
    def __call__(self, command: list[str], env: dict[str, str], cwd: str, log: str) -> int:
        """Run `command` from `cwd` with `env` on top of the job's environment; the exit status."""
        return run_command(command, {**os.environ, **env}, Path(log), cwd=cwd, append=True)
