"""`winn-robust reproduce`: data -> trained baseline/ICN/WINN (per seed) -> cross-evaluation ->
report, and across several seeds one aggregate report with its verdict.

Layout: with one seed, OUT/ is that seed's report (table.md, table.csv, results.json,
per_example.csv, plots, summary.md) beside OUT/models/<method>/ (checkpoints, metrics.csv,
negatives/, pool/). With several, OUT/seed-<k>/ holds each seed's report and models, and OUT/
the aggregate (table.md and summary.md open with the verdict). Every training run and every
evaluation is a job (experiments/jobs.py): finished ones are skipped after checking their
settings match, interrupted ones resume, `--jobs N` runs N at once."""
from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from winn_robust.checkpoint import file_sha256, read_checkpoint
from winn_robust.data import load_dataset
from winn_robust.device import resolve_device
from winn_robust.distributed import check_batch_split
from winn_robust.environment import machine_description
from winn_robust.errors import UserError
from winn_robust.evaluation.indicators import Indicator
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.experiments.evaluate import STATE_DIR
from winn_robust.experiments.jobs import Job, run_jobs, threads_per_job
from winn_robust.experiments.presets import get_preset
from winn_robust.reporting.aggregate import write_aggregate
from winn_robust.reporting.files import read_results
from winn_robust.reporting.per_example import metrics_from_per_example
from winn_robust.reporting.summary import RunDescription, write_summary
from winn_robust.training import METHODS, TrainConfig
from winn_robust.training.inputs import effective_val_size
from winn_robust.training.trainer import LAST_NAME, check_same_settings
from winn_robust.units import check_norm, format_eps_list, parse_eps

EXTRA_KEYS = ("methods", "eps", "sweep", "test_limit", "attack", "strong_limit", "data_dir", "seeds")
DEFAULT_ATTACKS = "fgsm,pgd,autoattack"
SINGLE_STEP = {"linf": "fgsm", "l2": "fgm"}     # the attack run at every eps (the paper's FGSM at L-inf)
# L2 budgets (pixel units, the L2 norm of the perturbation of the [0, 1] image) a preset uses at
# --norm l2 unless --eps / --sweep are given: its L-inf values do not carry over. 28x28 images:
# MNIST's usual 1.5-2 (Croce and Hein) and half of it; 32x32x3: RobustBench's CIFAR-10 0.5.
L2_EPS = {
    "digits": ([0.5, 1.0], [0.0, 0.25, 0.5, 1.0, 1.5]),
    "mnist": ([1.5, 0.5], [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]),
    "fashion-mnist": ([0.5, 1.0], [0.0, 0.25, 0.5, 1.0, 1.5, 2.0]),
    "svhn": ([0.5], [0.0, 0.125, 0.25, 0.5, 1.0]),
    "cifar10": ([0.5], [0.0, 0.125, 0.25, 0.5, 1.0]),
}
SHARED_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("method", "seed"))


def parse_seeds(value: str | int | Sequence[int]) -> tuple[int, ...]:
    """`0,1,2` (these seeds) or `3` (that many: 0, 1, 2); refuses empty, negative or repeated seeds."""
    if isinstance(value, int):
        items = [str(value)]
    elif isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    else:
        items = [str(v) for v in value]
    if not items or any(not part for part in items):
        raise UserError(f"--seeds {value!r} is empty; give seeds like 0,1,2 or a count like 3")
    try:
        numbers = [int(part) for part in items]
    except ValueError:
        raise UserError(f"--seeds {value!r} must be whole numbers, like 0,1,2 or a count like 3") from None
    if isinstance(value, str) and len(numbers) == 1 and "," not in value:
        if numbers[0] < 1:
            raise UserError(f"--seeds {value} asks for {numbers[0]} seeds; give a count of at least 1, or seeds like 0,1,2")
        return tuple(range(numbers[0]))
    if any(n < 0 for n in numbers):
        raise UserError(f"--seeds {value!r} has a negative seed; seeds are whole numbers >= 0")
    if len(set(numbers)) != len(numbers):
        raise UserError(f"--seeds {value!r} repeats a seed; give each seed once")
    return tuple(numbers)


@dataclass(frozen=True)
class ReproduceSettings:
    """Everything one `reproduce` run does, resolved from a preset and the user's overrides and
    validated once (`resolve_settings`)."""
    preset: str
    train: TrainConfig            # shared by every method and seed; `method` and `seed` are set per job
    methods: tuple[str, ...]      # baseline first
    seeds: tuple[int, ...]
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
    jobs: int = 1
    threads: int = 0              # CPU threads in all; 0 = torch's default
    nproc_per_node: int = 1       # >1: every job runs under torchrun with this many processes
    norm: str = "linf"            # threat model of every attack and eps
    curve: str | None = None      # a minimum-norm attack for the robust error at every eps

    def launcher(self) -> list[str]:
        """torchrun's command (as `python -m torch.distributed.run`, so the same interpreter) or none."""
        if self.nproc_per_node <= 1:
            return []
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                str(self.nproc_per_node)]

    @property
    def attacks(self) -> list[str]:
        return [a.strip().lower() for a in self.attack.split(",") if a.strip()]

    @property
    def strong_attacks(self) -> list[str]:
        single = SINGLE_STEP[self.norm]
        return [a for a in self.attacks if a != single] if single in self.attacks else []

    @property
    def eval_spec(self) -> EvalSpec:
        """FGSM (the paper's attack; FGM at L2) at every eps on every test image; the stronger
        attacks at the table eps, on the first `strong_limit` images (the curve attack as well)."""
        strong = self.strong_attacks
        return EvalSpec.build(tuple(dict.fromkeys(self.eps + self.sweep)), self.attacks, options=self.attack_options,
                              seed=self.eval_seed, limit=self.test_limit, probes=True,
                              attack_eps={a: (self.eps[0],) for a in strong},
                              attack_limits={a: self.strong_limit for a in strong} if self.strong_limit else {},
                              norm=self.norm, curve=self.curve, curve_limit=self.strong_limit if self.curve else None)

    def seed_dir(self, seed: int) -> Path:
        return self.out if len(self.seeds) == 1 else self.out / f"seed-{seed}"

    def run_dir(self, seed: int, method: str) -> Path:
        return self.seed_dir(seed) / "models" / method

    def config(self, seed: int, method: str) -> TrainConfig:
        return TrainConfig(**{**self.train.to_dict(), "method": method, "seed": seed}).validate()


def resolve_settings(preset: str, overrides: Mapping[str, Any], *, out: Path | None = None, download: bool = False,
                     device: str = "auto", progress: bool = True, command: str = "",
                     attack_options: Mapping[str, Mapping[str, str]] | None = None, jobs: int = 1,
                     threads: int = 0, eval_seed: int = 0, nproc_per_node: int = 1) -> ReproduceSettings:
    """The preset, with every override that is not None taking precedence; checked here, once."""
    values = get_preset(preset)
    norm = check_norm(overrides.get("norm") or "linf")
    if norm != "linf":  # the preset's L-inf eps and FGSM do not carry over: their L2 counterparts
        l2_eps, l2_sweep = L2_EPS.get(str(overrides.get("data") or values["data"]), ([0.5], [0.0, 0.25, 0.5, 1.0]))
        values["eps"], values["sweep"] = l2_eps, l2_sweep
        values["attack"] = ",".join(SINGLE_STEP[norm] if a.strip().lower() == "fgsm" else a.strip()
                                    for a in str(values.get("attack") or DEFAULT_ATTACKS).split(","))
    for key in (*SHARED_TRAIN_FIELDS, "seed", *EXTRA_KEYS):
        if overrides.get(key) is not None:
            values[key] = overrides[key]
    eps = {key: parse_eps([values[key]] if isinstance(values.get(key), str) else values[key], norm)
           if values.get(key) else [] for key in ("eps", "sweep")}
    if not eps["eps"]:
        raise UserError("give at least one --eps, in [0, 1] pixel units (e.g. --eps 0.125)")
    methods = list(dict.fromkeys(m.strip().lower() for m in values["methods"]))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)} in --methods; choose from {', '.join(METHODS)}")
    if not methods or methods[0] != "baseline" or len(methods) < 2:
        raise UserError("--methods must start with baseline and name at least one other method, e.g. baseline,winn")
    for key in ("test_limit", "strong_limit"):
        if values.get(key) is not None and values[key] <= 0:
            raise UserError(f"--{key.replace('_', '-')} must be positive, got {values[key]}")
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if threads < 0:
        raise UserError(f"--threads must be positive, got {threads}")
    if nproc_per_node < 1:
        raise UserError(f"--nproc-per-node must be at least 1, got {nproc_per_node}")
    if nproc_per_node > 1 and jobs > 1:
        raise UserError(f"--nproc-per-node {nproc_per_node} runs each job on {nproc_per_node} processes (one GPU each); "
                        "run the jobs one at a time: drop --jobs")
    seeds = parse_seeds(values["seeds"]) if overrides.get("seeds") is not None else \
        parse_seeds(values.get("seeds", [values.get("seed", 0)]))
    data_dir = values.get("data_dir")
    if data_dir is None:
        data_dir = next((Path(c) for c in values.get("data_dir_candidates", []) if Path(c).is_dir()), None)
    train_config = TrainConfig(**{k: values[k] for k in (*SHARED_TRAIN_FIELDS, "seed") if k in values}).validate()
    check_batch_split(train_config.batch_size, nproc_per_node)
    settings = ReproduceSettings(
        preset=preset, train=train_config, methods=tuple(methods), seeds=seeds, eps=tuple(eps["eps"]),
        sweep=tuple(eps["sweep"]), attack=values.get("attack") or DEFAULT_ATTACKS, test_limit=values.get("test_limit"),
        strong_limit=values.get("strong_limit"), attack_options=dict(attack_options or {}),
        data_dir=Path(data_dir) if data_dir is not None else None, download=download,
        out=Path(out) if out is not None else Path("runs") / preset, device=device, progress=progress,
        command=command or f"winn-robust reproduce --preset {preset}", jobs=jobs, threads=threads, eval_seed=eval_seed,
        nproc_per_node=nproc_per_node, norm=norm, curve=overrides.get("curve"))
    settings.eval_spec  # noqa: B018  (validates the attacks and eps now, before hours of training)
    return settings


# ----------------------------------------------------------------------------- jobs
def training_state(run_dir: Path, config: TrainConfig) -> str:
    """'finished', 'resume' or 'fresh' for one (method, seed) run folder; a folder trained with
    other settings is refused (naming the setting), never silently overwritten or mixed in."""
    last = run_dir / LAST_NAME
    if not last.is_file():
        return "fresh"
    meta = read_checkpoint(last)["metadata"]
    check_same_settings(last, meta, config)
    done = int(meta.get("epoch", 0))
    if done > config.epochs:
        raise UserError(f"{run_dir} already holds {done} epochs, more than --epochs {config.epochs}; use another --out "
                        "or the run's own epochs")
    return "finished" if done == config.epochs and (run_dir / "best.pt").is_file() else "resume"


def train_argv(settings: ReproduceSettings, config: TrainConfig, run_dir: Path, state: str, device: str) -> list[str]:
    argv = ["train"]
    for name, value in config.to_dict().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif value is not None:
            argv += [flag, str(value)]
    if settings.data_dir is not None:
        argv += ["--data-dir", str(settings.data_dir)]
    if settings.download:
        argv += ["--download"]
    argv += ["--out", str(run_dir), "--device", device] + (["--resume"] if state == "resume" else ["--force"])
    return argv + ([] if settings.progress and settings.jobs == 1 else ["--no-progress"])


def evaluation_done(seed_dir: Path, spec: EvalSpec, checkpoints: Sequence[Path]) -> bool:
    """The seed's report exists and was made by this very evaluation of these very checkpoints."""
    document = read_results(seed_dir / "results.json") if (seed_dir / "results.json").is_file() else {}
    provenance = document.get("provenance") or {}
    if provenance.get("evaluation") != spec.describe() or not (seed_dir / "per_example.csv").is_file():
        return False
    shas = [m.get("sha256") for m in (provenance.get("models") or {}).values()]
    return shas == [file_sha256(p) for p in checkpoints]


def attack_argv(settings: ReproduceSettings, spec: EvalSpec, checkpoints: Sequence[Path], seed_dir: Path,
                device: str) -> list[str]:
    argv = ["attack", "--baseline", str(checkpoints[0])]
    for path in checkpoints[1:]:
        argv += ["--model", str(path)]
    argv += ["--eps", format_eps_list(spec.eps), "--attack", ",".join(spec.attack_names), "--seed", str(spec.seed),
             "--batch-size", str(spec.batch_size)]
    if spec.norm != "linf":
        argv += ["--norm", spec.norm]
    if spec.curve is not None:
        argv += ["--curve", spec.curve.name] + (["--curve-limit", str(spec.curve_limit)] if spec.curve_limit else [])
    for attack in (*spec.attacks, *([spec.curve] if spec.curve else [])):
        defaults = type(attack)(seed=attack.seed, norm=attack.norm).settings()
        for key, value in attack.settings().items():
            if key not in ("attack", "seed", "norm") and defaults[key] != value:
                argv += ["--attack-option", f"{attack.name}.{key}={value}"]
    for name, n in spec.attack_limits.items():
        argv += ["--attack-limit", f"{name}={n}"]
    for name, values in spec.attack_eps.items():
        argv += ["--attack-eps", f"{name}={format_eps_list(values)}"]
    if spec.limit is not None:
        argv += ["--limit", str(spec.limit)]
    if settings.data_dir is not None:
        argv += ["--data-dir", str(settings.data_dir)]
    resume = (seed_dir / STATE_DIR).is_dir()
    argv += ["--out", str(seed_dir), "--device", device] + (["--resume"] if resume else ["--force"])
    return argv + ([] if settings.progress and settings.jobs == 1 else ["--no-progress"])


def devices_for_jobs(settings: ReproduceSettings) -> list[int | None]:
    """One GPU per job when several are visible (and CUDA is wanted), else the CPU."""
    if settings.nproc_per_node > 1:
        return [None]  # torchrun's ranks take cuda:LOCAL_RANK themselves
    wants_cuda = settings.device == "auto" or settings.device.startswith("cuda")
    count = torch.cuda.device_count() if wants_cuda and torch.cuda.is_available() else 0
    return list(range(count)) if count > 1 else [None]


def stage(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text}", file=sys.stderr, flush=True)


@dataclass
class ReproduceResult:
    settings: ReproduceSettings
    seed_dirs: list[Path]
    summary: Path
    timings: dict[str, float]
    skipped: list[str]


def reproduce(settings: ReproduceSettings) -> ReproduceResult:
    """Train every method for every seed, evaluate each seed, write each seed's report and (with
    several seeds) the aggregate, into `settings.out`."""
    started = time.perf_counter()
    base, spec, out = settings.train, settings.eval_spec, settings.out
    device = resolve_device(settings.device)
    gpus = devices_for_jobs(settings)
    parallel = max(settings.jobs, 1)
    total_threads = settings.threads or torch.get_num_threads()
    threads = threads_per_job(total_threads, max(parallel, settings.nproc_per_node) if gpus == [None] else 1)
    device_arg = settings.device if gpus == [None] else "cuda"

    jobs: list[Job] = []
    skipped: list[str] = []
    for seed in settings.seeds:
        for method in settings.methods:
            config, run_dir = settings.config(seed, method), settings.run_dir(seed, method)
            state = training_state(run_dir, config)
            name = f"train {method} seed {seed}"
            if state == "finished":
                skipped.append(name)
                continue
            gpu = gpus[len(jobs) % len(gpus)]
            log = out / "logs" / f"{method}-seed{seed}.log"
            jobs.append(Job(name, train_argv(settings, config, run_dir, state, device_arg), log, threads, gpu,
                            settings.launcher()))
    out.mkdir(parents=True, exist_ok=True)
    stage(1, 4, f"loading {base.data}")
    dataset = load_dataset(base.data, settings.data_dir, settings.download)
    n_train = len(dataset.train_images)
    val = effective_val_size(base.val_size, n_train)
    train_size = min(n_train - val, base.train_limit or n_train)
    timings: dict[str, float] = {"data": time.perf_counter() - started}
    print(f"    {train_size} train / {val} validation / {len(dataset.test_images)} test images; seeds "
          f"{', '.join(map(str, settings.seeds))}; up to {parallel} job(s) at once, {threads} thread(s) each, device "
          f"{device}" + (f"; every job under torchrun with {settings.nproc_per_node} processes"
                         if settings.nproc_per_node > 1 else ""), file=sys.stderr)

    stage(2, 4, f"training: {len(jobs)} run(s) to do" + (f", {len(skipped)} already finished ({', '.join(skipped)})"
                                                        if skipped else ""))
    t0 = time.perf_counter()
    timings.update({k: v for k, v in run_jobs(jobs, parallel).items()})
    timings["training"] = time.perf_counter() - t0

    evaluations: list[Job] = []
    for seed in settings.seeds:
        checkpoints = [settings.run_dir(seed, m) / "best.pt" for m in settings.methods]
        seed_dir = settings.seed_dir(seed)
        for method in settings.methods:
            grids = sorted((settings.run_dir(seed, method) / "negatives").glob("epoch_*.png"))
            if grids:
                shutil.copyfile(grids[-1], seed_dir / f"negatives_{method}.png")
        name = f"evaluate seed {seed}"
        if evaluation_done(seed_dir, spec, checkpoints):
            skipped.append(name)
            continue
        gpu = gpus[len(evaluations) % len(gpus)]
        evaluations.append(Job(name, attack_argv(settings, spec, checkpoints, seed_dir, device_arg),
                               out / "logs" / f"evaluate-seed{seed}.log", threads, gpu, settings.launcher()))
    runs = ", ".join(f"{run.attack.name}@{run.eps:g}" + (f" on {run.n}" if run.n else "") for run in spec.runs)
    stage(3, 4, f"evaluating {len(evaluations)} seed(s) ({runs}); every attack on every model")
    t0 = time.perf_counter()
    timings.update(run_jobs(evaluations, parallel))
    timings["evaluation"] = time.perf_counter() - t0

    stage(4, 4, "writing the summaries" + (" and the aggregate over seeds" if len(settings.seeds) > 1 else ""))
    timings["total"] = time.perf_counter() - started
    run = RunDescription(preset=settings.preset, command=settings.command, machine=machine_description(device),
                         data=base.data, arch=base.arch, epochs=base.epochs, eps=settings.eps, sweep=settings.sweep,
                         train_size=train_size, val_size=val, norm=settings.norm)
    seed_dirs = [settings.seed_dir(seed) for seed in settings.seeds]
    for seed_dir in seed_dirs:
        write_seed_summary(seed_dir, run, timings, list(settings.methods))
    summary = seed_dirs[0] / "summary.md"
    if len(seed_dirs) > 1:
        write_aggregate(seed_dirs, out, table_eps=[settings.eps[0]])
        summary = out / "summary.md"
    if len(seed_dirs) > 1:
        print((out / "table.md").read_text().split("\n\n")[1])  # the verdict paragraph
    else:
        print((out / "summary.md").read_text().split("## Ours beside the paper")[0].strip())
    print(f"report: {out}/ (summary.md, table.md, table.csv, results.json"
          + (", per_example.csv" if len(seed_dirs) == 1 else ", seed-*/") + ", plots); total "
          f"{timings['total']:.0f} s" + (f"; skipped (already done): {', '.join(skipped)}" if skipped else ""))
    return ReproduceResult(settings, seed_dirs, summary, timings, skipped)


def write_seed_summary(seed_dir: Path, run: RunDescription, timings: dict[str, float], methods: list[str]) -> Path:
    """summary.md of one seed: rebuilt from its per_example.csv and results.json (the report files
    the evaluation job wrote), so it never disagrees with them."""
    document = read_results(seed_dir / "results.json")
    provenance = document.get("provenance") or {}
    names = list((provenance.get("models") or {}).keys())
    metrics = metrics_from_per_example(seed_dir / "per_example.csv", provenance.get("baseline", names[0]))
    indicators = [Indicator(**record) for record in document.get("indicators", [])]
    return write_summary(seed_dir, run, timings, metrics, names, methods, indicators)
