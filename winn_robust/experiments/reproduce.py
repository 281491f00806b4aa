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
from winn_robust.experiments.jobs import Job, recorded_time, run_jobs, threads_per_job
from winn_robust.experiments.presets import get_preset
from winn_robust.reporting.aggregate import write_aggregate
from winn_robust.reporting.files import read_results, rebuild_tables
from winn_robust.reporting.per_example import metrics_from_per_example
from winn_robust.reporting.summary import RunDescription, write_summary
from winn_robust.training import METHODS, TrainConfig
from winn_robust.training.inputs import effective_val_size
from winn_robust.training.trainer import LAST_NAME, check_same_settings
from winn_robust.units import eps_text, format_eps_list, parse_eps

EXTRA_KEYS = ("methods", "eps", "sweep", "test_limit", "attack", "strong_limit", "data_dir", "seeds")
DEFAULT_ATTACKS = "fgsm,pgd,autoattack"
SHARED_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("method", "seed"))
TRAIN_TIME_FILE = "wall_time.json"            # in each run folder: the training job's wall time
EVALUATION_TIME_FILE = "evaluation_time.json"  # in each seed folder: the evaluation job's


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
    extend: bool = False          # a changed --epochs may continue finished runs (else it is refused)
    metric: str = "error"         # what the seeds' table.md, the aggregate's and the plots show

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
        return [a for a in self.attacks if a != "fgsm"] if "fgsm" in self.attacks else []

    @property
    def eval_spec(self) -> EvalSpec:
        """FGSM (the paper's attack) at every eps on every test image; the stronger attacks at the
        table eps, on the first `strong_limit` images."""
        strong = self.strong_attacks
        return EvalSpec.build(tuple(dict.fromkeys(self.eps + self.sweep)), self.attacks, options=self.attack_options,
                              seed=self.eval_seed, limit=self.test_limit, probes=True,
                              attack_eps={a: (self.eps[0],) for a in strong},
                              attack_limits={a: self.strong_limit for a in strong} if self.strong_limit else {})

    def seed_dir(self, seed: int) -> Path:
        return self.out if len(self.seeds) == 1 else self.out / f"seed-{seed}"

    def run_dir(self, seed: int, method: str) -> Path:
        return self.seed_dir(seed) / "models" / method

    def config(self, seed: int, method: str) -> TrainConfig:
        return TrainConfig(**{**self.train.to_dict(), "method": method, "seed": seed}).validate()


def resolve_settings(preset: str, overrides: Mapping[str, Any], *, out: Path | None = None, download: bool = False,
                     device: str = "auto", progress: bool = True, command: str = "",
                     attack_options: Mapping[str, Mapping[str, str]] | None = None, jobs: int = 1,
                     threads: int = 0, eval_seed: int = 0, nproc_per_node: int = 1,
                     extend: bool = False, metric: str = "error") -> ReproduceSettings:
    """The preset, with every override that is not None taking precedence; checked here, once."""
    values = get_preset(preset)
    for key in (*SHARED_TRAIN_FIELDS, "seed", *EXTRA_KEYS):
        if overrides.get(key) is not None:
            values[key] = overrides[key]
    eps = {key: parse_eps([values[key]] if isinstance(values.get(key), str) else values[key]) if values.get(key) else []
           for key in ("eps", "sweep")}
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
    if overrides.get("seeds") is not None and overrides.get("seed") is not None:
        raise UserError("give --seeds (several training seeds) or --seed (one), not both")
    if overrides.get("seed") is not None:
        seeds = parse_seeds([int(overrides["seed"])])
    else:
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
        nproc_per_node=nproc_per_node, extend=extend, metric=metric)
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


def check_budget(settings: ReproduceSettings) -> list[str]:
    """Runs in `settings.out` trained with another --epochs than this run's: refused (one line saying
    what --extend would continue) unless `settings.extend`; with it, what will be continued."""
    changed: list[tuple[str, int, int]] = []  # (run, its --epochs, epochs done)
    for seed in settings.seeds:
        for method in settings.methods:
            last = settings.run_dir(seed, method) / LAST_NAME
            if not last.is_file():
                continue
            meta = read_checkpoint(last)["metadata"]
            saved = int((meta.get("hparams") or {}).get("epochs", settings.train.epochs))
            done = int(meta.get("epoch", 0))
            if saved != settings.train.epochs and done <= settings.train.epochs:
                changed.append((f"{method} seed {seed}", saved, done))
    if not changed:
        return []
    budgets = ", ".join(sorted({str(c[1]) for c in changed}))
    done_at = ", ".join(sorted({str(c[2]) for c in changed}))
    what = (f"{len(changed)} run(s) ({', '.join(c[0] for c in changed)}) from epoch {done_at} to "
            f"{settings.train.epochs}, then evaluate them again and replace the report")
    if not settings.extend:
        raise UserError(f"{settings.out} holds a study trained with --epochs {budgets}, this run asks for --epochs "
                        f"{settings.train.epochs}; pass --extend to continue {what}, or use another --out")
    return [f"--extend: continuing {what}"]


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
    for attack in spec.attacks:
        defaults = type(attack)(seed=attack.seed).settings()
        for key, value in attack.settings().items():
            if key not in ("attack", "seed") and defaults[key] != value:
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

    for line in check_budget(settings):
        print(line, file=sys.stderr, flush=True)
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
                            settings.launcher(), timing=run_dir / TRAIN_TIME_FILE, continues=state == "resume"))
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
                               out / "logs" / f"evaluate-seed{seed}.log", threads, gpu, settings.launcher(),
                               timing=seed_dir / EVALUATION_TIME_FILE, continues=(seed_dir / STATE_DIR).is_dir()))
    runs = ", ".join(f"{run.attack.name}@{eps_text(run.eps)}" + (f" on {run.n}" if run.n else "") for run in spec.runs)
    stage(3, 4, f"evaluating {len(evaluations)} seed(s) ({runs}); every attack on every model")
    t0 = time.perf_counter()
    timings.update(run_jobs(evaluations, parallel))
    timings["evaluation"] = time.perf_counter() - t0

    stage(4, 4, "writing the summaries" + (" and the aggregate over seeds" if len(settings.seeds) > 1 else ""))
    timings["total"] = time.perf_counter() - started
    run = RunDescription(preset=settings.preset, command=settings.command, machine=machine_description(device),
                         data=base.data, arch=base.arch, epochs=base.epochs, eps=settings.eps, sweep=settings.sweep,
                         train_size=train_size, val_size=val)
    seed_dirs = [settings.seed_dir(seed) for seed in settings.seeds]
    if settings.metric != "error":  # the evaluation jobs write error; restate table.md and the plot
        for seed_dir in seed_dirs:
            rebuild_tables(seed_dir, metric=settings.metric)
    for seed, seed_dir in zip(settings.seeds, seed_dirs):
        write_seed_summary(seed_dir, run, work_timings(settings, seed), list(settings.methods),
                           this_run=timings["total"])
    summary = seed_dirs[0] / "summary.md"
    if len(seed_dirs) > 1:
        write_aggregate(seed_dirs, out, table_eps=[settings.eps[0]], metric=settings.metric)
        summary = out / "summary.md"
    if len(seed_dirs) > 1:
        print((out / "table.md").read_text().split("\n\n")[1])  # the verdict paragraph
    else:
        print((out / "summary.md").read_text().split("## Ours beside the paper")[0].strip())
    print(f"report: {out}/ (summary.md, table.md, table.csv, results.json"
          + (", per_example.csv" if len(seed_dirs) == 1 else ", seed-*/") + ", plots); total "
          f"{timings['total']:.0f} s" + (f"; skipped (already done): {', '.join(skipped)}" if skipped else ""))
    return ReproduceResult(settings, seed_dirs, summary, timings, skipped)


def work_timings(settings: ReproduceSettings, seed: int) -> dict[str, float | None]:
    """The wall time of the jobs whose work made one seed's numbers, as they recorded it in their
    folders (a run that skipped a finished job reads it back; None: never recorded)."""
    times: dict[str, float | None] = {f"training {m}": recorded_time(settings.run_dir(seed, m) / TRAIN_TIME_FILE)
                                      for m in settings.methods}
    times["evaluation"] = recorded_time(settings.seed_dir(seed) / EVALUATION_TIME_FILE)
    return times


def write_seed_summary(seed_dir: Path, run: RunDescription, timings: Mapping[str, float | None], methods: list[str],
                       this_run: float | None = None) -> Path:
    """summary.md of one seed: rebuilt from its per_example.csv and results.json (the report files
    the evaluation job wrote), so it never disagrees with them."""
    document = read_results(seed_dir / "results.json")
    provenance = document.get("provenance") or {}
    names = list((provenance.get("models") or {}).keys())
    metrics = metrics_from_per_example(seed_dir / "per_example.csv", provenance.get("baseline", names[0]))
    indicators = [Indicator(**record) for record in document.get("indicators", [])]
    return write_summary(seed_dir, run, timings, metrics, names, methods, indicators, this_run=this_run)
