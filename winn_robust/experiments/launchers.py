"""Where jobs run: `local` (child processes of `reproduce`, --jobs at once), `slurm` (one SLURM
job per run, submitted through submitit, the package research clusters already use) or
`submitit-local` (the same submitit path through its local executor: real processes, no
SLURM; for trying a sweep's set-up anywhere, and for the tests).

Every launcher runs the same command, `python -m winn_robust run-job OUT/jobs/<id>/spec.json`
(behind torchrun with --nproc-per-node), from the directory `reproduce` was started in, so the
reports do not depend on the launcher. Under submitit, a job's output is its folder's log.txt
and submitit's own files are in its submitit/ sub-folder; a job stopped by its time limit or
a preemption is requeued by submitit and resumes (experiments/submitit_job.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from winn_robust.errors import SettingError, UserError
from winn_robust.experiments.jobs import Job, job_failed, run_local

LAUNCHERS = ("local", "slurm", "submitit-local")
SUBMITIT_DIR = "submitit"
MAX_REQUEUES = 50  # time-limit requeues a job may take (submitit's default, 3, ends a long run on a short limit)
LOST_AFTER = 30.0  # seconds a job may be out of the queue (or ended) without a result before it counts as lost
#                   (a requeue passes through an ended state for a few seconds)
# squeue reasons of a pending job that will never start as asked
NEVER_STARTS = ("PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints", "ReqNodeNotAvail",
                "InvalidAccount", "InvalidQOS", "QOSMaxCpuPerJobLimit")
ENDED = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "TIMEOUT", "SPECIAL_EXIT", "REVOKED")


@dataclass(frozen=True)
class LaunchSettings:
    """How `reproduce` runs its jobs; checked once, where built."""
    kind: str = "local"
    jobs: int = 1                         # local and submitit-local: jobs at once
    slurm_partition: str | None = None
    slurm_gpus_per_job: int = 0
    slurm_cpus_per_job: int = 4
    slurm_time: int = 240                 # minutes per job (also submitit-local's timeout)
    slurm_options: Mapping[str, str] = field(default_factory=dict)  # extra sbatch options, e.g. account=proj
    slurm_signal_delay: int = 90          # seconds before the time limit that SLURM signals a job to save and requeue

    def __post_init__(self) -> None:
        if self.kind not in LAUNCHERS:
            raise UserError(f"unknown `launcher` {self.kind!r}; choose one of {', '.join(LAUNCHERS)}", mentions=("launcher",))
        if self.jobs < 1:
            raise SettingError("jobs", f"must be at least 1, got {self.jobs}")
        for name in ("slurm_cpus_per_job", "slurm_time"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.slurm_gpus_per_job < 0:
            raise SettingError("slurm_gpus_per_job", f"must be 0 or more, got {self.slurm_gpus_per_job}")
        object.__setattr__(self, "slurm_options", MappingProxyType(dict(self.slurm_options)))

    @property
    def submitit(self) -> bool:
        return self.kind != "local"

    def check_available(self) -> None:
        """Before any work: SLURM needs sbatch on this machine (a cluster's login node)."""
        if self.kind == "slurm" and shutil.which("sbatch") is None:
            raise SettingError("launcher", "slurm needs SLURM's sbatch, which is not on this machine's PATH; run on the "
                            "cluster's login node, or try the set-up here with `launcher` submitit-local", mentions=("launcher",))


def parse_slurm_options(items: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` strings (sbatch's long options without the dashes, e.g. account=proj)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingError("slurm_option", f"{item!r} must look like KEY=VALUE, e.g. account=myproject")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def _executor(job: Job, launch: LaunchSettings) -> Any:
    import submitit

    executor = submitit.AutoExecutor(folder=job.folder / SUBMITIT_DIR,
                                     cluster="slurm" if launch.kind == "slurm" else "local",
                                     slurm_max_num_timeout=MAX_REQUEUES)
    parameters: dict[str, Any] = {"name": job.folder.name, "timeout_min": launch.slurm_time, "nodes": 1,
                                  "tasks_per_node": 1, "gpus_per_node": launch.slurm_gpus_per_job,
                                  "cpus_per_task": launch.slurm_cpus_per_job}
    if launch.kind == "slurm":
        parameters["slurm_signal_delay_s"] = launch.slurm_signal_delay
    if launch.kind == "slurm":
        parameters.update(slurm_partition=launch.slurm_partition,
                          slurm_additional_parameters=dict(launch.slurm_options) or None)
    executor.update_parameters(**parameters)
    return executor


def _submit(job: Job, launch: LaunchSettings) -> Any:
    env = job.environment_overrides()
    if launch.kind == "slurm":
        env.pop("CUDA_VISIBLE_DEVICES", None)  # SLURM gives each job its GPUs
    from winn_robust.experiments.submitit_job import RunInJob

    timing = None if job.timing is None else str(job.timing)
    try:
        return _executor(job, launch).submit(RunInJob(timing, job.continues), job.command(), env, os.getcwd(),
                                             str(job.log))
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:  # submitit's FailedJobError is a RuntimeError
        detail = " ".join(str(exc).split())[-300:]
        raise UserError(f"SLURM refused job {job.name} ({detail}); check `slurm_cpus_per_job`, `slurm_time` and "
                        "`slurm_partition` against `sinfo -o '%P %c %m %l'`",
                        mentions=("slurm_cpus_per_job", "slurm_time", "slurm_partition")) from None


def _failure(job: Job, submitted: Any) -> UserError | None:
    """None when the job's command exited 0; else the failure, named with its log's last lines."""
    from submitit.core.utils import UncompletedJobError

    try:
        code = submitted.result()
    except UncompletedJobError as exc:  # killed, timed out or cancelled before it could report
        log = Path(submitted.paths.stderr)
        return job_failed(job, f"{submitted.job_id}: {str(exc).splitlines()[0]}", log if log.is_file() else job.log)
    except Exception as exc:  # submitit re-raises whatever the job raised
        return job_failed(job, f"{submitted.job_id}: {type(exc).__name__}", Path(submitted.paths.stderr))
    if code == 0:
        return None
    return job_failed(job, f"exit status {code}")


def slurm_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} from squeue for the jobs still known to SLURM (no sacct needed:
    small clusters run without accounting); None when squeue cannot answer."""
    try:
        done = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        return None
    states = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


class QueueWatch:
    """Notices, from squeue alone, a SLURM job that cannot start or that left the queue without
    its result (cancelled, node failure), within LOST_AFTER seconds (a poll or two)."""

    def __init__(self, launch: LaunchSettings, lost_after: float = LOST_AFTER) -> None:
        self.launch, self.lost_after = launch, lost_after
        self.gone: dict[str, float] = {}

    def problem(self, pending: Mapping[str, tuple[Job, Any]]) -> tuple[str, UserError] | None:
        waiting = {name: sub for name, (_, sub) in pending.items() if not Path(sub.paths.result_pickle).exists()}
        if not waiting:
            return None
        states = slurm_states([sub.job_id for sub in waiting.values()])
        if states is None:
            return None
        for name, sub in waiting.items():
            state, reason = states.get(str(sub.job_id), ("GONE", ""))
            job = pending[name][0]
            if state == "PENDING" and reason in NEVER_STARTS:
                sub.cancel(check=False)
                return name, UserError(
                    f"job {job.name} ({sub.job_id}) can never start: SLURM keeps it pending with reason {reason} (it "
                    f"asks for {self.launch.slurm_cpus_per_job} CPUs, {self.launch.slurm_gpus_per_job} GPUs and "
                    f"{self.launch.slurm_time} min; `sinfo -o '%P %c %m %l'` shows what the partitions offer); it was "
                    "cancelled: lower `slurm_cpus_per_job` or `slurm_time`, or choose another `slurm_partition`, "
                    "and run the same command again", mentions=("slurm_cpus_per_job", "slurm_time", "slurm_partition"))
            if state in ENDED or state == "GONE":
                since = self.gone.setdefault(name, time.monotonic())
                if time.monotonic() - since >= self.lost_after and not Path(sub.paths.result_pickle).exists():
                    what = "is no longer in SLURM's queue" if state == "GONE" else f"ended as {state}"
                    return name, job_failed(job, f"SLURM job {sub.job_id} {what} without a result: cancelled, or its "
                                                 "node failed; the same command resumes it", Path(sub.paths.stderr))
            else:
                self.gone.pop(name, None)
        return None


def run_submitit(jobs: Sequence[Job], launch: LaunchSettings, poll: float | None = None) -> dict[str, float]:
    """Submit every job (submitit-local: at most --jobs at once), wait, and return seconds per job
    (from submission to end). A failure stops further submissions; the jobs already running
    finish, then it is raised. Ctrl-C or SIGTERM cancels the submitted jobs (SLURM then sends
    them SIGTERM: each saves its state; a rerun resumes them). Under SLURM the driver reads the
    queue with squeue (never sacct) to notice a job that can never start or that left the queue
    without a result."""
    if not jobs:
        return {}
    poll = poll if poll is not None else float(os.environ.get("WINN_ROBUST_POLL_SECONDS", 0) or 0) or \
        (15.0 if launch.kind == "slurm" else 0.5)
    watch = QueueWatch(launch) if launch.kind == "slurm" else None
    limit = len(jobs) if launch.kind == "slurm" else launch.jobs
    queue = list(jobs)
    pending: dict[str, tuple[Job, Any]] = {}
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    failure: UserError | None = None
    try:
        while queue or pending:
            while queue and len(pending) < limit and failure is None:
                job = queue.pop(0)
                submitted = _submit(job, launch)
                started[job.name] = time.perf_counter()
                pending[job.name] = (job, submitted)
                print(f"    submitted {job.name} ({launch.kind} job {submitted.job_id}; log: {job.log})",
                      file=sys.stderr, flush=True)
            if not pending:
                break
            if watch is not None:  # result files only: submitit's done() would ask sacct on every poll
                finished = [name for name, (_, sub) in pending.items() if Path(sub.paths.result_pickle).exists()]
                lost = watch.problem(pending) if not finished else None
                if lost is not None:
                    pending.pop(lost[0])
                    failure = failure or lost[1]
                    queue.clear()
                    continue
            else:
                finished = [name for name, (_, submitted) in pending.items() if submitted.done()]
            if not finished:
                time.sleep(poll)
                continue
            for name in finished:
                job, submitted = pending.pop(name)
                problem = _failure(job, submitted)
                if problem is None:
                    seconds[name] = time.perf_counter() - started[name]
                    print(f"    finished {name} in {seconds[name]:.0f} s", file=sys.stderr, flush=True)
                else:
                    failure = failure or problem
            if failure is not None:
                queue.clear()
    except KeyboardInterrupt:
        for _, submitted in pending.values():
            submitted.cancel(check=False)
        raise
    if failure is not None:
        raise failure
    return seconds


def run_jobs(jobs: Sequence[Job], launch: LaunchSettings) -> dict[str, float]:
    """Run `jobs` with the chosen launcher; seconds per job."""
    if launch.submitit:
        return run_submitit(jobs, launch)
    return run_local(jobs, launch.jobs)
