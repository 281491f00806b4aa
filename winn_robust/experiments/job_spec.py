"""A job is a JSON file in its folder (OUT/jobs/<id>/spec.json), run by a child process with
`python -m winn_robust run-job SPEC` (under torchrun: every rank runs it): what to compute
(a training run or one seed's evaluation, its settings as `TrainConfig.to_dict()` /
`EvalSpec.to_dict()`) and how (device, threads, progress bars). No command line is rebuilt from
settings: the child reads the very objects the parent built.

A training job calls `run_training` (what `winn-robust train` calls); an evaluation job calls
`evaluate_models` (what `winn-robust attack` calls), so a job behaves as the command would.
Whether to resume is decided when the job starts, from its folder (last.pt, the evaluation's
saved state), so a job requeued by a cluster continues where it stopped."""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from winn_robust import distributed
from winn_robust.checkpoint import file_sha256, read_meta
from winn_robust.errors import UserError
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.experiments.evaluate import evaluate_models
from winn_robust.experiments.jobs import SPEC_NAME
from winn_robust.experiments.resume_store import STATE_DIR
from winn_robust.experiments.training_run import run_training
from winn_robust.reporting.files import read_results
from winn_robust.reporting.provenance import Provenance
from winn_robust.storage import atomic_write_text
from winn_robust.training import TrainConfig
from winn_robust.training.run_folder import PARTIAL_NAME
from winn_robust.training.trainer import BEST_NAME, LAST_NAME, check_same_settings

JOB_VERSION = 1


def _path(value: Any) -> Path | None:
    return None if value is None else Path(value)


@dataclass(frozen=True)
class Runtime:
    """How a job runs (not what it computes): never compared when deciding a job is done."""
    device: str = "auto"
    progress: bool = False
    threads: int = 0           # torch threads per process; 0 = torch's default
    dist_timeout: float = distributed.DEFAULT_TIMEOUT_MINUTES

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "progress": self.progress, "threads": self.threads,
                "dist_timeout": self.dist_timeout}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Runtime:
        return cls(device=str(values.get("device", "auto")), progress=bool(values.get("progress", False)),
                   threads=int(values.get("threads", 0)),
                   dist_timeout=float(values.get("dist_timeout", distributed.DEFAULT_TIMEOUT_MINUTES)))


@dataclass(frozen=True)
class TrainJob:
    """One (method, seed) training run into `out` (its run folder)."""
    config: TrainConfig
    out: Path
    data_dir: Path | None = None
    download: bool = False

    kind = "train"

    def state(self) -> str:
        """'finished', 'resume' or 'fresh'; a folder trained with other settings is refused
        (naming the setting), never silently overwritten or mixed in."""
        last = self.out / LAST_NAME
        if not last.is_file():
            return "resume" if (self.out / PARTIAL_NAME).is_file() else "fresh"
        meta = read_meta(last)
        check_same_settings(last, meta, self.config)
        done = meta.epoch
        if done > self.config.epochs:
            raise UserError(f"{self.out} already holds {done} epochs, more than `epochs` {self.config.epochs}; use another "
                            "`out` or the run's own epochs", mentions=("epochs", "out"))
        return "finished" if done == self.config.epochs and (self.out / BEST_NAME).is_file() else "resume"

    def run(self, runtime: Runtime) -> None:
        last = self.out / LAST_NAME
        if self.state() == "finished":  # e.g. requeued by a signal that came just after the last epoch
            distributed.main_only(print)(f"{self.out} already holds its {self.config.epochs} epochs: nothing to do",
                                         file=sys.stderr)
            return
        resume = last.is_file() or (self.out / PARTIAL_NAME).is_file()

        def settings() -> tuple[TrainConfig, Path | None]:
            if last.is_file():  # the parent compared them already; the run may have been requeued since
                check_same_settings(last, read_meta(last), self.config)
            return self.config, self.data_dir

        run_training(settings, self.out, download=self.download, device=runtime.device, resume=resume,
                     force=not resume, progress=runtime.progress and sys.stderr.isatty(),
                     dist_timeout=runtime.dist_timeout)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "out": str(self.out),
                "data_dir": None if self.data_dir is None else str(self.data_dir), "download": self.download}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainJob:
        return cls(config=TrainConfig.from_dict(dict(values["config"])), out=Path(values["out"]),
                   data_dir=_path(values.get("data_dir")), download=bool(values.get("download", False)))


@dataclass(frozen=True)
class EvaluateJob:
    """One seed's cross-evaluation of its checkpoints (the first is the baseline) into `out`."""
    evaluation: EvalSpec
    models: tuple[Path, ...]
    out: Path
    data_dir: Path | None = None
    download: bool = False
    command: str = ""           # recorded as the report's provenance
    names: tuple[str | None, ...] = ()  # a model's NAME= (e.g. winn-last for best-last.pt), None: from its checkpoint

    kind = "evaluate"

    def model_specs(self) -> list[str]:
        names = [*self.names, *[None] * len(self.models)]
        return [str(p) if n is None else f"{n}={p}" for p, n in zip(self.models, names)]

    def state(self) -> str:
        """'finished' when the report exists and was made by this very evaluation of these very
        checkpoints (results.json records both), else 'resume' or 'fresh'."""
        document = read_results(self.out / "results.json") if (self.out / "results.json").is_file() else {}
        provenance = Provenance.from_dict(document.get("provenance"))
        if provenance.evaluation == self.evaluation.describe() and (self.out / "per_example.csv").is_file():
            shas = [m.sha256 for m in provenance.models.values()]
            if shas == [file_sha256(p) for p in self.models]:
                return "finished"
        return "resume" if (self.out / STATE_DIR).is_dir() else "fresh"

    def run(self, runtime: Runtime) -> None:
        from winn_robust.device import resolve_device

        if self.state() == "finished":  # e.g. requeued by a signal that came just after it finished
            distributed.main_only(print)(f"{self.out} already holds this evaluation's report: nothing to do",
                                         file=sys.stderr)
            return
        resume = (self.out / STATE_DIR).is_dir()
        device = resolve_device(runtime.device)
        distributed.init_from_env(device, runtime.dist_timeout)
        notes: list[str] = []
        report = evaluate_models(self.model_specs(), self.evaluation, self.out, data_dir=self.data_dir,
                                 download=self.download, device=str(device),
                                 progress=runtime.progress and sys.stderr.isatty(), command=self.command,
                                 resume=resume, force=not resume, notes=notes)
        distributed.shutdown()
        if distributed.world().is_main:
            for note in notes:
                print(note, file=sys.stderr)
            print("\n".join(report.summary_lines()))
            print(f"report written to {self.out}: {', '.join(sorted(p.name for p in report.files.values()))}")

    def to_dict(self) -> dict[str, Any]:
        return {"evaluation": self.evaluation.to_dict(), "models": [str(p) for p in self.models], "out": str(self.out),
                "data_dir": None if self.data_dir is None else str(self.data_dir), "download": self.download,
                "command": self.command, "names": list(self.names)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvaluateJob:
        return cls(evaluation=EvalSpec.from_dict(values["evaluation"]), models=tuple(Path(p) for p in values["models"]),
                   out=Path(values["out"]), data_dir=_path(values.get("data_dir")),
                   download=bool(values.get("download", False)), command=str(values.get("command", "")),
                   names=tuple(values.get("names") or ()))


Work = TrainJob | EvaluateJob
KINDS: dict[str, type[TrainJob] | type[EvaluateJob]] = {TrainJob.kind: TrainJob, EvaluateJob.kind: EvaluateJob}


def write_spec(folder: Path, name: str, work: Work, runtime: Runtime) -> Path:
    """OUT/jobs/<id>/spec.json: the job's name, what it computes and how it runs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SPEC_NAME
    document = {"version": JOB_VERSION, "kind": work.kind, "name": name, "work": work.to_dict(),
                "runtime": runtime.to_dict()}
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    return path


def read_spec(path: Path) -> tuple[str, Work, Runtime]:
    """(name, work, runtime) of a spec.json; anything else is one UserError saying what is wrong."""
    if not path.is_file():
        raise UserError(f"no job spec at {path}; give the spec.json of a job folder that `reproduce` wrote")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not JSON ({exc}); give the spec.json that `reproduce` wrote") from None
    if not isinstance(document, dict) or document.get("version") != JOB_VERSION:
        version = document.get("version") if isinstance(document, dict) else None
        raise UserError(f"{path} is a job spec of version {version!r}; this winn-robust runs version {JOB_VERSION}: "
                        "run `reproduce` again to write it anew")
    kind = document.get("kind")
    if kind not in KINDS:
        raise UserError(f"{path} has job kind {kind!r}; known kinds: {', '.join(KINDS)}")
    try:
        work = KINDS[kind].from_dict(document["work"])
        runtime = Runtime.from_dict(document.get("runtime") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is not a complete {kind} job spec (missing or bad {exc}); run `reproduce` again to "
                        "write it anew") from None
    return str(document.get("name", kind)), work, runtime


def run_job(path: Path) -> None:
    """What `winn-robust run-job SPEC` does (in a job's own process, or on each torchrun rank)."""
    name, work, runtime = read_spec(Path(path))
    if runtime.threads > 0:
        torch.set_num_threads(runtime.threads)
    distributed.main_only(print)(f"job {name} ({path})", file=sys.stderr)
    work.run(runtime)

