"""`winn-robust reproduce`: data -> trained baseline/ICN/WINN (per seed) -> cross-evaluation ->
report, and across several seeds one aggregate report with its verdict.

Layout: with one seed, OUT/ is that seed's report (table.md, table.csv, results.json,
per_example.csv, plots, summary.md) beside OUT/models/<method>/ (checkpoints, metrics.csv,
negatives/, pool/). With several, OUT/seed-<k>/ holds each seed's report and models, and OUT/
the aggregate (table.md and summary.md open with the verdict). Every training run and every
evaluation is a job, a spec.json in OUT/jobs/<id>/ (experiments/job_spec.py): finished ones
are skipped after their settings are compared with what their outputs record (last.pt's
settings, results.json's evaluation and checkpoint hashes), interrupted ones resume; a
launcher (experiments/launchers.py) runs them: locally, `--jobs N` at once, or on SLURM."""
from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from winn_robust.checkpoint import read_meta
from winn_robust.data import load_dataset
from winn_robust.device import resolve_device
from winn_robust.distributed import check_batch_split
from winn_robust.environment import machine_description
from winn_robust.errors import SettingError, UserError
from winn_robust.evaluation.indicators import Indicator
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.experiments.job_spec import EvaluateJob, Runtime, TrainJob, Work, write_spec
from winn_robust.experiments.jobs import SPEC_NAME, Job, recorded_time, threads_per_job
from winn_robust.experiments.launchers import LaunchSettings, run_jobs
from winn_robust.experiments.presets import get_preset
from winn_robust.locking import REPORT, REPRODUCE, acquire
from winn_robust.reporting.aggregate import write_aggregate
from winn_robust.reporting.files import read_results, rebuild_tables
from winn_robust.reporting.per_example import metrics_from_per_example
from winn_robust.reporting.provenance import Provenance
from winn_robust.reporting.report_folder import report_names
from winn_robust.reporting.summary import RunDescription, write_summary
from winn_robust.storage import atomic_write_bytes, remove_leftovers
from winn_robust.training import TrainConfig
from winn_robust.training.inputs import effective_val_size
from winn_robust.training.methods import make_method, settings_owners, split_method_spec
from winn_robust.training.trainer import BEST_NAME, LAST_NAME
from winn_robust.units import check_norm, eps_text, parse_eps

# what a preset (and the command line, under the same names) sets besides the TrainConfig fields
PRESET_KEYS = ("methods", "eps", "sweep", "test_limit", "attack", "strong_limit", "data_dir", "seeds", "method_settings",
               "reference")
JOBS_DIR = "jobs"
DEFAULT_ATTACKS = "fgsm,pgd,autoattack"
SHARED_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("method", "seed", "method_options"))
TRAIN_TIME_FILE = "wall_time.json"            # in each run folder: the training job's wall time
EVALUATION_TIME_FILE = "evaluation_time.json"  # in each seed folder: the evaluation job's
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


def parse_seeds(value: str | int | Sequence[int]) -> tuple[int, ...]:
    """`0,1,2` (these seeds) or `3` (that many: 0, 1, 2); refuses empty, negative or repeated seeds."""
    if isinstance(value, int):
        items = [str(value)]
    elif isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    else:
        items = [str(v) for v in value]
    if not items or any(not part for part in items):
        raise SettingError("seeds", f"{value!r} is empty; give seeds like 0,1,2 or a count like 3")
    try:
        numbers = [int(part) for part in items]
    except ValueError:
        raise SettingError("seeds", f"{value!r} must be whole numbers, like 0,1,2 or a count like 3") from None
    if isinstance(value, str) and len(numbers) == 1 and "," not in value:
        if numbers[0] < 1:
            raise SettingError("seeds", f"{value} asks for {numbers[0]} seeds; give a count of at least 1, or seeds like 0,1,2")
        return tuple(range(numbers[0]))
    if any(n < 0 for n in numbers):
        raise SettingError("seeds", f"{value!r} has a negative seed; seeds are whole numbers >= 0")
    if len(set(numbers)) != len(numbers):
        raise SettingError("seeds", f"{value!r} repeats a seed; give each seed once")
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
    launch: LaunchSettings = field(default_factory=LaunchSettings)
    threads: int = 0              # CPU threads in all; 0 = torch's default
    nproc_per_node: int = 1       # >1: every job runs under torchrun with this many processes
    method_specs: Mapping[str, str] = field(default_factory=dict)   # name -> spec (NAME=FILE.py:FUNCTION for yours)
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> its own settings
    reference: str | None = None  # a second comparison in the aggregate (e.g. pgd-at), beside the baseline
    extend: bool = False          # a changed --epochs may continue finished runs (else it is refused)
    metric: str = "error"         # what the seeds' table.md, the aggregate's and the plots show
    norm: str = "linf"            # threat model of every attack and eps
    curve: str | None = None      # a minimum-norm attack for the robust error at every eps

    @property
    def jobs(self) -> int:
        return self.launch.jobs

    def torchrun_prefix(self) -> list[str]:
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
        shared = {k: v for k, v in self.train.to_dict().items() if k not in ("method", "method_options", "seed")}
        return TrainConfig(**shared, method=self.method_specs.get(method, method),
                           method_options=dict(self.method_options.get(method, {})), seed=seed)


def resolve_settings(preset: str, overrides: Mapping[str, Any], *, out: Path | None = None, download: bool = False,
                     device: str = "auto", progress: bool = True, command: str = "",
                     attack_options: Mapping[str, Mapping[str, str]] | None = None, jobs: int = 1,
                     threads: int = 0, eval_seed: int = 0, nproc_per_node: int = 1,
                     launch: LaunchSettings | None = None, extend: bool = False,
                     metric: str = "error") -> ReproduceSettings:
    """The preset, with every override that is not None taking precedence; checked here, once.
    `launch` (how the jobs run) carries its own --jobs; without it, a local launcher with `jobs`."""
    values = get_preset(preset)
    norm = check_norm(overrides.get("norm") or "linf")
    if norm != "linf":  # the preset's L-inf eps and FGSM do not carry over: their L2 counterparts
        l2_eps, l2_sweep = L2_EPS.get(str(overrides.get("data") or values["data"]), ([0.5], [0.0, 0.25, 0.5, 1.0]))
        values["eps"], values["sweep"] = l2_eps, l2_sweep
        values["attack"] = ",".join(SINGLE_STEP[norm] if a.strip().lower() == "fgsm" else a.strip()
                                    for a in str(values.get("attack") or DEFAULT_ATTACKS).split(","))
    for key in (*SHARED_TRAIN_FIELDS, "seed", *PRESET_KEYS):
        if overrides.get(key) is not None:
            values[key] = {**values.get(key, {}), **overrides[key]} if key == "method_settings" else overrides[key]
    eps = {key: parse_eps([values[key]] if isinstance(values.get(key), str) else values[key], norm)
           if values.get(key) else [] for key in ("eps", "sweep")}
    if not eps["eps"]:
        raise SettingError("eps", "needs at least one value, in [0, 1] pixel units (e.g. 0.125)")
    specs = {split_method_spec(m)[0]: m.strip() for m in values["methods"]}
    methods = list(specs)
    if not methods or methods[0] != "baseline" or len(methods) < 2:
        raise SettingError("methods", "must start with baseline and name at least one other method, e.g. baseline,winn")
    eps_values = eps["eps"]
    method_options = resolve_method_options(specs, values.get("method_settings") or {},
                                            overrides.get("method_preset"), eps_values[0], norm)
    reference = values.get("reference")
    if reference is not None and reference not in methods[1:]:
        raise SettingError("reference", f"{reference} is not among the methods ({', '.join(methods[1:])}); name one of them")
    for key in ("test_limit", "strong_limit"):
        if values.get(key) is not None and values[key] <= 0:
            raise SettingError(key, f"must be positive, got {values[key]}")
    launch = launch or LaunchSettings(jobs=jobs)
    if threads < 0:
        raise SettingError("threads", f"must be positive, got {threads}")
    if nproc_per_node < 1:
        raise SettingError("nproc_per_node", f"must be at least 1, got {nproc_per_node}")
    if launch.kind == "slurm" and 0 < launch.slurm_gpus_per_job < nproc_per_node:
        raise SettingError("nproc_per_node", f"{nproc_per_node} starts {nproc_per_node} processes, one GPU each, but "
                        f"`slurm_gpus_per_job` is {launch.slurm_gpus_per_job}; give `slurm_gpus_per_job` {nproc_per_node}",
                           mentions=("slurm_gpus_per_job",))
    if nproc_per_node > 1 and launch.jobs > 1:
        raise SettingError("nproc_per_node", f"{nproc_per_node} runs each job on {nproc_per_node} processes (one GPU each); "
                        "run the jobs one at a time: drop `jobs`", mentions=("jobs",))
    if overrides.get("seeds") is not None and overrides.get("seed") is not None:
        raise UserError("give `seeds` (several training seeds) or `seed` (one), not both", mentions=("seeds", "seed"))
    if overrides.get("seed") is not None:
        seeds = parse_seeds([int(overrides["seed"])])
    else:
        seeds = parse_seeds(values["seeds"]) if overrides.get("seeds") is not None else \
            parse_seeds(values.get("seeds", [values.get("seed", 0)]))
    data_dir = values.get("data_dir")
    if data_dir is None:
        data_dir = next((Path(c) for c in values.get("data_dir_candidates", []) if Path(c).is_dir()), None)
    train_config = TrainConfig(**{k: values[k] for k in (*SHARED_TRAIN_FIELDS, "seed") if k in values}, method="baseline")
    check_batch_split(train_config.batch_size, nproc_per_node)
    settings = ReproduceSettings(
        preset=preset, train=train_config, methods=tuple(methods), seeds=seeds, eps=tuple(eps["eps"]),
        sweep=tuple(eps["sweep"]), attack=values.get("attack") or DEFAULT_ATTACKS, test_limit=values.get("test_limit"),
        strong_limit=values.get("strong_limit"), attack_options=dict(attack_options or {}),
        data_dir=Path(data_dir) if data_dir is not None else None, download=download,
        out=Path(out) if out is not None else Path("runs") / preset, device=device, progress=progress,
        command=command or f"winn-robust reproduce --preset {preset}", launch=launch, threads=threads,
        eval_seed=eval_seed, nproc_per_node=nproc_per_node, method_specs=specs, method_options=method_options,
        reference=reference, extend=extend, metric=metric, norm=norm, curve=overrides.get("curve"))
    for method in methods:  # every method's settings, checked now, before hours of training
        settings.config(settings.seeds[0], method)
    settings.eval_spec  # noqa: B018  (validates the attacks and eps now, before hours of training)
    return settings


def resolve_method_options(specs: Mapping[str, str], shared: Mapping[str, Any], method_preset: str | None,
                           table_eps: float, table_norm: str = "linf") -> dict[str, dict[str, Any]]:
    """Each method's own settings: a shared setting (a preset's `method_settings`, or a flag such
    as --train-steps) goes to every method that has it; a --method-preset (published, L-inf) to its
    method; the training eps and norm of a method that has them default to the table's first eps
    and its --norm (a defence is trained in the threat model it is evaluated in unless told)."""
    from winn_robust.training.methods import published_settings

    owners = settings_owners()
    names = {name: split_method_spec(spec)[0] if "=" not in spec else "user" for name, spec in specs.items()}
    for setting in shared:
        if not any(n in owners.get(setting, []) for n in names.values()):
            holders = ", ".join(owners.get(setting, [])) or "no method"
            raise SettingError(setting, f"is a setting of {holders}, none of which is in `methods`", mentions=("methods",),
                               method_setting=True)
    options: dict[str, dict[str, Any]] = {}
    for name, kind in names.items():
        mine = {k: v for k, v in shared.items() if kind in owners.get(k, [])}
        if method_preset:
            preset_method, values = published_settings(method_preset)
            if preset_method == kind:
                mine = {**values, **mine}
        if "eps" in owners and kind in owners["eps"] and mine.get("eps") is None:
            mine["eps"] = table_eps
        if table_norm != "linf" and kind in owners.get("norm", []) and mine.get("norm") is None:
            mine["norm"] = table_norm
        options[name] = mine
        make_method(specs[name], mine)  # refuses bad values now, naming the setting
    if method_preset and not any(published_settings(method_preset)[0] == k for k in names.values()):
        raise SettingError("method_preset", f"{method_preset} is for {published_settings(method_preset)[0]}, which is not in "
                        "`methods`", mentions=("methods",))
    return options


# ----------------------------------------------------------------------------- jobs
def job_folder(settings: ReproduceSettings, job_id: str) -> Path:
    return settings.out / JOBS_DIR / job_id


def make_job(settings: ReproduceSettings, job_id: str, name: str, work: Work, runtime: Runtime, threads: int,
             gpu: int | None, timing: Path | None = None, continues: bool = False) -> Job:
    """Write the job's spec.json into its folder; the Job that runs it."""
    folder = job_folder(settings, job_id)
    write_spec(folder, name, work, runtime)
    return Job(name, folder, threads, gpu, tuple(settings.torchrun_prefix()), timing=timing, continues=continues)


def check_budget(settings: ReproduceSettings) -> list[str]:
    """Runs in `settings.out` trained with another --epochs than this run's: refused (one line saying
    what --extend would continue) unless `settings.extend`; with it, what will be continued."""
    changed: list[tuple[str, int, int]] = []  # (run, its --epochs, epochs done)
    for seed in settings.seeds:
        for method in settings.methods:
            last = settings.run_dir(seed, method) / LAST_NAME
            if not last.is_file():
                continue
            meta = read_meta(last)
            saved = int(meta.hparams.get("epochs", settings.train.epochs))
            done = meta.epoch
            if saved != settings.train.epochs and done <= settings.train.epochs:
                changed.append((f"{method} seed {seed}", saved, done))
    if not changed:
        return []
    budgets = ", ".join(sorted({str(c[1]) for c in changed}))
    done_at = ", ".join(sorted({str(c[2]) for c in changed}))
    what = (f"{len(changed)} run(s) ({', '.join(c[0] for c in changed)}) from epoch {done_at} to "
            f"{settings.train.epochs}, then evaluate them again and replace the report")
    if not settings.extend:
        raise UserError(f"{settings.out} holds a study trained with `epochs` {budgets}, this run asks for `epochs` "
                        f"{settings.train.epochs}; pass `extend` to continue {what}, or use another `out`",
                        mentions=("epochs", "extend", "out"))
    return [f"--extend: continuing {what}"]


def evaluated_models(settings: ReproduceSettings, seed: int) -> tuple[list[Path], list[str | None]]:
    """Every method's best.pt and, for each further --select-by rule, each method's best-RULE.pt
    as the model METHOD-RULE (the baseline is the reference: its first rule only)."""
    checkpoints: list[Path] = [settings.run_dir(seed, m) / BEST_NAME for m in settings.methods]
    names: list[str | None] = [None] * len(checkpoints)
    for rule in settings.train.select_rules[1:]:
        for method in settings.methods[1:]:
            checkpoints.append(settings.run_dir(seed, method) / f"best-{rule}.pt")
            names.append(f"{method}-{rule}")
    return checkpoints, names


def devices_for_jobs(settings: ReproduceSettings) -> list[int | None]:
    """One GPU per job when several are visible (and CUDA is wanted), else the CPU; on a cluster
    (submitit) the scheduler gives each job its devices."""
    if settings.nproc_per_node > 1 or settings.launch.submitit:
        return [None]  # torchrun's ranks take cuda:LOCAL_RANK themselves
    wants_cuda = settings.device == "auto" or settings.device.startswith("cuda")
    count = torch.cuda.device_count() if wants_cuda and torch.cuda.is_available() else 0
    return list(range(count)) if count > 1 else [None]


def threads_for_jobs(settings: ReproduceSettings, gpus: Sequence[int | None]) -> int:
    """Torch threads of each job's process: SLURM's CPUs per job split over its torchrun ranks;
    locally the machine's (or --threads) split over the jobs running at once."""
    if settings.launch.kind == "slurm":
        return threads_per_job(settings.threads or settings.launch.slurm_cpus_per_job, settings.nproc_per_node)
    total = settings.threads or torch.get_num_threads()
    return threads_per_job(total, max(settings.jobs, settings.nproc_per_node) if list(gpus) == [None] else 1)


def stage(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text}", file=sys.stderr, flush=True)


@dataclass
class ReproduceResult:
    settings: ReproduceSettings
    seed_dirs: list[Path]
    summary: Path
    timings: dict[str, float]
    skipped: list[str]


@dataclass
class JobPlan:
    """The jobs of one stage: the ones to run and the names of those already finished."""
    todo: list[Job] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def training_jobs(settings: ReproduceSettings, runtime: Runtime, threads: int, gpus: Sequence[int | None]) -> JobPlan:
    plan = JobPlan()
    for seed in settings.seeds:
        for method in settings.methods:
            work = TrainJob(settings.config(seed, method), settings.run_dir(seed, method), settings.data_dir,
                            settings.download)
            name = f"train {method} seed {seed}"
            if work.state() == "finished":
                plan.skipped.append(name)
                continue
            gpu = gpus[len(plan.todo) % len(gpus)]
            plan.todo.append(make_job(settings, f"train-{method}-seed{seed}", name, work, runtime, threads, gpu,
                                      timing=settings.run_dir(seed, method) / TRAIN_TIME_FILE,
                                      continues=work.state() == "resume"))
    return plan


def evaluation_jobs(settings: ReproduceSettings, runtime: Runtime, threads: int, gpus: Sequence[int | None]) -> JobPlan:
    plan = JobPlan()
    for seed in settings.seeds:
        seed_dir = settings.seed_dir(seed)
        for method in settings.methods:
            grids = sorted((settings.run_dir(seed, method) / "negatives").glob("epoch_*.png"))
            if grids:
                atomic_write_bytes(seed_dir / f"negatives_{method}.png", grids[-1].read_bytes())
        name, job_id = f"evaluate seed {seed}", f"evaluate-seed{seed}"
        checkpoints, names = evaluated_models(settings, seed)
        work = EvaluateJob(settings.eval_spec, tuple(checkpoints), seed_dir, settings.data_dir, settings.download,
                           command=f"{settings.command} (job {name}: winn-robust run-job "
                                   f"{job_folder(settings, job_id) / SPEC_NAME})", names=tuple(names))
        if work.state() == "finished":
            plan.skipped.append(name)
            continue
        gpu = gpus[len(plan.todo) % len(gpus)]
        plan.todo.append(make_job(settings, job_id, name, work, runtime, threads, gpu,
                                  timing=seed_dir / EVALUATION_TIME_FILE, continues=work.state() == "resume"))
    return plan


def reproduce(settings: ReproduceSettings) -> ReproduceResult:
    """Train every method for every seed, evaluate each seed, write each seed's report and (with
    several seeds) the aggregate, into `settings.out`. One reproduce per folder: its lock is held
    from before the first run folder is read to the last summary written (every job locks its own
    run or report folder as well)."""
    settings.launch.check_available()  # before the lock creates the folder
    with acquire(settings.out, REPRODUCE):
        # what a killed reproduce's summary, table or aggregate writes left behind
        remove_leftovers([settings.out, *(settings.seed_dir(seed) for seed in settings.seeds)], reproduce_writes)
        return _reproduce(settings)


def reproduce_writes(name: str) -> bool:
    """A file name reproduce itself writes into its root or a seed folder (besides the jobs' own)."""
    return name in report_names() or name in ("cost.png", "summary.md") or bool(re.match(r"^negatives_[\w.+-]+\.png$", name))


def _reproduce(settings: ReproduceSettings) -> ReproduceResult:
    started = time.perf_counter()
    base, spec, out = settings.train, settings.eval_spec, settings.out
    device = resolve_device(settings.device)
    gpus = devices_for_jobs(settings)
    threads = threads_for_jobs(settings, gpus)
    runtime = Runtime(device=settings.device if gpus == [None] else "cuda",
                      progress=settings.progress and settings.jobs == 1 and not settings.launch.submitit,
                      threads=threads)

    for line in check_budget(settings):
        print(line, file=sys.stderr, flush=True)
    settings.launch.check_available()
    training = training_jobs(settings, runtime, threads, gpus)
    out.mkdir(parents=True, exist_ok=True)
    stage(1, 4, f"loading {base.data}")
    dataset = load_dataset(base.data, settings.data_dir, settings.download)
    n_train = len(dataset.train_images)
    val = effective_val_size(base.val_size, n_train)
    train_size = min(n_train - val, base.train_limit or n_train)
    timings: dict[str, float] = {"data": time.perf_counter() - started}
    at_once = "one SLURM job per run" if settings.launch.kind == "slurm" else f"up to {settings.jobs} job(s) at once"
    print(f"    {train_size} train / {val} validation / {len(dataset.test_images)} test images; seeds "
          f"{', '.join(map(str, settings.seeds))}; {at_once} ({settings.launch.kind}), {threads} thread(s) each, device "
          f"{device}" + (f"; every job under torchrun with {settings.nproc_per_node} processes"
                         if settings.nproc_per_node > 1 else ""), file=sys.stderr)

    skipped = list(training.skipped)
    stage(2, 4, f"training: {len(training.todo)} run(s) to do" + (f", {len(skipped)} already finished "
                                                                 f"({', '.join(skipped)})" if skipped else ""))
    t0 = time.perf_counter()
    timings.update(run_jobs(training.todo, settings.launch))
    timings["training"] = time.perf_counter() - t0

    evaluations = evaluation_jobs(settings, runtime, threads, gpus)
    skipped += evaluations.skipped
    runs = ", ".join(f"{run.attack.name}@{eps_text(run.eps)}" + (f" on {run.n}" if run.n else "") for run in spec.runs)
    stage(3, 4, f"evaluating {len(evaluations.todo)} seed(s) ({runs}); every attack on every model")
    t0 = time.perf_counter()
    timings.update(run_jobs(evaluations.todo, settings.launch))
    timings["evaluation"] = time.perf_counter() - t0

    stage(4, 4, "writing the summaries" + (" and the aggregate over seeds" if len(settings.seeds) > 1 else ""))
    timings["total"] = time.perf_counter() - started
    run = RunDescription(preset=settings.preset, command=settings.command, machine=machine_description(device),
                         data=base.data, arch=base.arch, epochs=base.epochs, eps=settings.eps, sweep=settings.sweep,
                         train_size=train_size, val_size=val, norm=settings.norm)
    seed_dirs = [settings.seed_dir(seed) for seed in settings.seeds]
    if settings.metric != "error":  # the evaluation jobs write error; restate table.md and the plot
        for seed_dir in seed_dirs:
            rebuild_tables(seed_dir, metric=settings.metric)
    for seed, seed_dir in zip(settings.seeds, seed_dirs):
        with acquire(seed_dir, REPORT):  # no `attack` into this folder while its summary is written
            write_seed_summary(seed_dir, run, work_timings(settings, seed), list(settings.methods),
                               this_run=timings["total"])
    summary = seed_dirs[0] / "summary.md"
    if len(seed_dirs) > 1:
        with acquire(out, REPORT):
            write_aggregate(seed_dirs, out, table_eps=[settings.eps[0]], reference=settings.reference,
                            metric=settings.metric)
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
    provenance = Provenance.from_dict(document.get("provenance"))
    names = list(provenance.models)
    metrics = metrics_from_per_example(seed_dir / "per_example.csv", provenance.baseline or names[0])
    indicators = [Indicator.from_dict(record) for record in document.get("indicators") or []]
    return write_summary(seed_dir, run, timings, metrics, names, methods, indicators, this_run=this_run)
