"""`winn-robust reproduce`: data -> trained baseline/ICN/WINN -> cross-evaluation -> report.

One folder holds everything: models/<method>/ (checkpoints, metrics.csv, negatives/), the
report (table.md, table.csv, results.json, per_example.csv), the plots, and summary.md with
the command, machine, stage timings and the paper's numbers beside ours."""
from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from winn_robust.data import load_dataset
from winn_robust.device import resolve_device
from winn_robust.environment import machine_description
from winn_robust.errors import UserError
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.experiments.evaluate import EvaluationReport, evaluate_models
from winn_robust.experiments.presets import get_preset
from winn_robust.reporting.summary import RunDescription, write_summary
from winn_robust.training import METHODS, TrainConfig, train
from winn_robust.training.inputs import make_train_data
from winn_robust.units import parse_eps

EXTRA_KEYS = ("methods", "eps", "sweep", "test_limit", "attack", "strong_limit", "data_dir")
DEFAULT_ATTACKS = "fgsm,pgd,autoattack"
SHARED_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name != "method")


@dataclass(frozen=True)
class ReproduceSettings:
    """Everything one `reproduce` run does, resolved from a preset and the user's overrides and
    validated once (`resolve_settings`)."""
    preset: str
    train: TrainConfig            # shared by every method; its `method` is set per run
    methods: tuple[str, ...]      # baseline first
    eps: tuple[float, ...]        # the tables' eps, [0, 1] pixel units
    sweep: tuple[float, ...]      # extra eps for the error-vs-eps plot
    attack: str                   # comma list; FGSM (the paper's) runs at every eps, the others at the table eps
    test_limit: int | None
    strong_limit: int | None      # the attacks other than FGSM run on the first strong_limit images
    data_dir: Path | None
    download: bool
    out: Path
    device: str = "auto"
    progress: bool = True
    command: str = ""
    attack_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    eval_seed: int = 0

    @property
    def eval_spec(self) -> EvalSpec:
        """FGSM (the paper's attack) at every eps on every test image; the stronger attacks at the
        table eps, on the first `strong_limit` images."""
        attacks = [a.strip().lower() for a in self.attack.split(",") if a.strip()]
        strong = [a for a in attacks if a != "fgsm"]
        table_eps = (self.eps[0],)
        return EvalSpec.build(tuple(dict.fromkeys(self.eps + self.sweep)), attacks, options=self.attack_options,
                              seed=self.eval_seed, limit=self.test_limit,
                              attack_eps={a: table_eps for a in strong} if "fgsm" in attacks else {},
                              attack_limits={a: self.strong_limit for a in strong} if self.strong_limit else {})


def resolve_settings(preset: str, overrides: Mapping[str, Any], *, out: Path | None = None, download: bool = False,
                     device: str = "auto", progress: bool = True, command: str = "",
                     attack_options: Mapping[str, Mapping[str, str]] | None = None) -> ReproduceSettings:
    """The preset, with every override that is not None taking precedence; checked here, once."""
    values = get_preset(preset)
    for key in SHARED_TRAIN_FIELDS + EXTRA_KEYS:
        if overrides.get(key) is not None:
            values[key] = overrides[key]
    eps = {key: parse_eps([values[key]] if isinstance(values.get(key), str) else values[key]) if values.get(key) else []
           for key in ("eps", "sweep")}
    if not eps["eps"]:
        raise UserError("give at least one --eps, in [0, 1] pixel units (e.g. --eps 0.125)")
    methods = list(dict.fromkeys(values["methods"]))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)} in --methods; choose from {', '.join(METHODS)}")
    if not methods or methods[0] != "baseline" or len(methods) < 2:
        raise UserError("--methods must start with baseline and name at least one other method, e.g. baseline,winn")
    for key in ("test_limit", "strong_limit"):
        if values.get(key) is not None and values[key] <= 0:
            raise UserError(f"--{key.replace('_', '-')} must be positive, got {values[key]}")
    data_dir = values.get("data_dir")
    if data_dir is None:
        data_dir = next((Path(c) for c in values.get("data_dir_candidates", []) if Path(c).is_dir()), None)
    train_config = TrainConfig(**{k: values[k] for k in SHARED_TRAIN_FIELDS if k in values}).validate()
    settings = ReproduceSettings(
        preset=preset, train=train_config, methods=tuple(methods), eps=tuple(eps["eps"]), sweep=tuple(eps["sweep"]),
        attack=values.get("attack") or DEFAULT_ATTACKS, test_limit=values.get("test_limit"),
        strong_limit=values.get("strong_limit"), attack_options=dict(attack_options or {}),
        data_dir=Path(data_dir) if data_dir is not None else None, download=download,
        out=Path(out) if out is not None else Path("runs") / preset, device=device, progress=progress,
        command=command or f"winn-robust reproduce --preset {preset}")
    settings.eval_spec  # noqa: B018  (validates the attack and eps now, before hours of training)
    return settings


@dataclass
class ReproduceResult:
    settings: ReproduceSettings
    evaluation: EvaluationReport
    summary: Path
    timings: dict[str, float]


def stage(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text}", file=sys.stderr, flush=True)


def reproduce(settings: ReproduceSettings) -> ReproduceResult:
    """Train every method, cross-evaluate them and write the report into `settings.out`."""
    out, base = settings.out, settings.train
    device = resolve_device(settings.device)
    methods = list(settings.methods)
    total = len(methods) + 2
    started = time.perf_counter()

    stage(1, total, f"loading {base.data}")
    dataset = load_dataset(base.data, settings.data_dir, settings.download)
    data = make_train_data(dataset, base.val_size, base.seed, base.train_limit, device)
    timings: dict[str, float] = {"data": time.perf_counter() - started}
    print(f"    {len(data.train_images)} train / {len(data.val_images)} validation / {len(dataset.test_images)} test images, "
          f"device {device}", file=sys.stderr)

    checkpoints: dict[str, Path] = {}
    for number, method in enumerate(methods, start=2):
        stage(number, total, f"training {method} ({base.arch}, {base.epochs} epochs)")
        t0 = time.perf_counter()
        config = base.with_method(method)
        result = train(config, data, out / "models" / method, device, progress=settings.progress)
        timings[f"train {method}"] = time.perf_counter() - t0
        checkpoints[method] = result.best_checkpoint
        print(f"    {method}: best validation error {100 * result.best_val_error:.2f}% at epoch {result.best_epoch}",
              file=sys.stderr)
        grids = sorted((result.out_dir / "negatives").glob("epoch_*.png"))
        if grids:
            shutil.copyfile(grids[-1], out / f"negatives_{method}.png")

    spec = settings.eval_spec
    runs = ", ".join(f"{run.attack.name}@{run.eps:g}" for run in spec.runs)
    stage(total, total, f"attacking every model ({runs}) and evaluating every attack on every model")
    t0 = time.perf_counter()
    report = evaluate_models([str(checkpoints[m]) for m in methods], spec, out, data=base.data,
                             data_dir=settings.data_dir, download=settings.download, device=settings.device,
                             progress=settings.progress, command=settings.command, force=True)
    timings["attack + evaluate"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    run = RunDescription(preset=settings.preset, command=settings.command, machine=machine_description(device),
                         data=base.data, arch=base.arch, epochs=base.epochs, eps=settings.eps, sweep=settings.sweep,
                         train_size=len(data.train_images), val_size=len(data.val_images))
    summary = write_summary(out, run, timings, report.metrics, report.names, methods, report.indicators)
    print("\n".join(report.summary_lines()))
    print(f"report: {out}/ (summary.md, table.md, table.csv, results.json, per_example.csv, plots); "
          f"total {timings['total']:.0f} s")
    return ReproduceResult(settings, report, summary, timings)
