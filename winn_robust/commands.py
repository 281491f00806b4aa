"""What each CLI sub-command does, separated from argument parsing: turn the parsed options into
validated settings objects and call the layers below.

Evaluation, reporting and `reproduce` are imported by the commands that use them: they pull in
foolbox, scipy, matplotlib and torchvision, seconds of start-up that `train` (on every torchrun
rank) does not need."""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from winn_robust import distributed
from winn_robust.checkpoint import load_checkpoint, read_checkpoint
from winn_robust.device import resolve_device
from winn_robust.errors import UserError
from winn_robust.experiments.presets import describe_presets
from winn_robust.images import save_class_grid
from winn_robust.training import TrainConfig, train
from winn_robust.training.inputs import load_train_data
from winn_robust.training.synthesis import generator_for, synthesize_negatives
from winn_robust.training.trainer import LAST_NAME, TrainData, check_same_settings, clear_run, holds_run
from winn_robust.units import parse_eps

if TYPE_CHECKING:
    from winn_robust.evaluation.spec import EvalSpec


def progress_wanted(args: argparse.Namespace) -> bool:
    """Progress bars unless --no-progress, or when stderr is not a terminal (logs, CI, jobs)."""
    return not args.no_progress and sys.stderr.isatty()


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The settings given on the command line; with --resume, the run's saved settings with the
    given ones on top (the trainer then refuses any that differ from the run's)."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    if args.resume:
        last = args.out / LAST_NAME
        if not last.is_file():
            raise UserError(f"--resume: no {last} to resume from; run without --resume to start fresh")
        meta = read_checkpoint(last)["metadata"]
        config = TrainConfig.from_dict({**meta.get("hparams", {}), **given}).validate()
        check_same_settings(last, meta, config)  # before loading any data
        if args.data_dir is None and meta.get("data_dir") and Path(meta["data_dir"]).is_dir():
            args.data_dir = Path(meta["data_dir"])
            print(f"--resume: reading {config.data} from {args.data_dir}, where the run read it", file=sys.stderr)
        return config
    if "data" not in given:
        raise UserError("train needs --data (mnist, svhn, fashion-mnist, cifar10 or digits)")
    return TrainConfig(**given).validate()


def load_for_training(args: argparse.Namespace, device: torch.device) -> tuple[TrainConfig, TrainData]:
    config = train_config(args)
    distributed.check_batch_split(config.batch_size)  # before loading any data
    data = load_train_data(config.data, args.data_dir, args.download, config.val_size, config.seed,
                           config.train_limit, device)
    return config, data


def prepare_run_folder(args: argparse.Namespace) -> None:
    """--resume continues, --force replaces, and nothing else overwrites a run."""
    if args.resume and args.force:
        raise UserError("--resume and --force contradict each other: --resume continues the run, --force replaces it")
    if not args.resume and holds_run(args.out):
        if not args.force:
            raise UserError(f"{args.out} already holds a training run; pass --resume to continue it, --force to replace "
                            "it, or choose another --out")
        if distributed.world().is_main:
            clear_run(args.out)


def run_train(args: argparse.Namespace) -> None:
    """Train one model. Under torchrun every rank runs this: it joins the process group on its
    own device, the ranks agree that all of them read their settings and data (or all stop with
    the failing rank's message), then train data-parallel; rank 0 prints and writes."""
    if args.dist_timeout <= 0:
        raise distributed.AgreedError(f"--dist-timeout must be positive, got {args.dist_timeout}")
    started = time.perf_counter()
    device = resolve_device(args.device)
    here = distributed.init_from_env(device, args.dist_timeout)

    def prepare() -> tuple[TrainConfig, TrainData]:
        prepare_run_folder(args)
        return load_for_training(args, device)

    config, data = distributed.agree(prepare)
    where = f"device {device}, {torch.get_num_threads()} thread(s)" if not here.distributed else \
        (f"{here.world_size} ranks ({distributed.backend_for(device)}, {device.type}), batch {config.batch_size} = "
         f"{here.world_size} x {config.batch_size // here.world_size}")
    say = distributed.main_only(print)
    say(f"training {config.method} {config.arch} on {config.data}: {len(data.train_images)} train / "
        f"{len(data.val_images)} validation images, seed {config.seed}, {where}", file=sys.stderr)
    extra = {"data_dir": str(args.data_dir.resolve())} if args.data_dir else {}
    result = train(config, data, args.out, device, resume=args.resume, progress=progress_wanted(args),
                   extra_metadata=extra)
    if here.is_main:
        from winn_robust.reporting.plots import plot_training_metrics

        plot = plot_training_metrics(result.out_dir / "metrics.csv", result.out_dir / "metrics.png")
        print(f"seed {config.seed}: best validation error {result.best_val_error:.4f} at epoch {result.best_epoch} of "
              f"{result.last_epoch}; total {time.perf_counter() - started:.0f} s; checkpoints in {result.out_dir} "
              f"(best.pt, last.pt), metrics in {result.out_dir / 'metrics.csv'} and {plot}")
    distributed.shutdown()


def parse_limits(items: list[str]) -> dict[str, int]:
    limits = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            limits[name.strip().lower()] = int(value)
        except ValueError:
            raise UserError(f"--attack-limit {item!r} must look like ATTACK=N, e.g. autoattack=500") from None
        if not sep:
            raise UserError(f"--attack-limit {item!r} must look like ATTACK=N, e.g. autoattack=500")
    return limits


def eval_spec(args: argparse.Namespace) -> EvalSpec:
    from winn_robust.attacks import parse_attack_options
    from winn_robust.evaluation.spec import EvalSpec
    from winn_robust.units import check_norm

    norm = check_norm(args.norm)
    attack_text = args.attack if args.attack is not None else ("fgsm" if norm == "linf" else "fgm")
    attacks = [a.strip() for a in attack_text.split(",") if a.strip()]
    if not attacks:
        raise UserError("--attack needs at least one attack name")
    attack_eps = {}
    for item in args.attack_eps:
        name, sep, values = item.partition("=")
        if not sep:
            raise UserError(f"--attack-eps {item!r} must look like ATTACK=EPS[,EPS], e.g. autoattack=0.125")
        attack_eps[name.strip().lower()] = tuple(parse_eps([values], norm))
    return EvalSpec.build(parse_eps(args.eps, norm), attacks, options=parse_attack_options(args.attack_option),
                          seed=args.seed, batch_size=args.batch_size, limit=args.limit,
                          attack_limits=parse_limits(args.attack_limit), attack_eps=attack_eps, norm=norm,
                          curve=args.curve, curve_limit=args.curve_limit)


def check_attack_args(args: argparse.Namespace) -> EvalSpec:
    sources = ([args.baseline] if args.baseline else []) + list(args.model)
    if not sources:
        raise UserError("give the models to evaluate: --model SPEC (repeat), and optionally --baseline SPEC")
    if args.resume and args.force:
        raise UserError("--resume and --force contradict each other: --resume continues, --force starts over")
    return eval_spec(args)


def run_attack(args: argparse.Namespace) -> int:
    """Evaluate. Under torchrun every rank runs this: each crafts and evaluates its share of the
    batches (one device per rank), and rank 0 prints and writes the report."""
    from winn_robust.experiments.evaluate import evaluate_models

    if args.dist_timeout <= 0:
        raise distributed.AgreedError(f"--dist-timeout must be positive, got {args.dist_timeout}")
    device = resolve_device(args.device)
    distributed.init_from_env(device, args.dist_timeout)
    spec = distributed.agree(lambda: check_attack_args(args))
    sources = ([args.baseline] if args.baseline else []) + list(args.model)
    notes: list[str] = []
    report = evaluate_models(sources, spec, args.out, data=args.data, data_dir=args.data_dir, download=args.download,
                             device=str(device), progress=progress_wanted(args), command=args.command_line,
                             resume=args.resume, force=args.force, notes=notes)
    distributed.shutdown()
    if not distributed.world().is_main:
        return 3 if report.warnings and args.fail_on_warn else 0
    for note in notes:
        print(note, file=sys.stderr)
    print("\n".join(report.summary_lines()))
    print(f"report written to {args.out}: {', '.join(sorted(p.name for p in report.files.values()))}")
    if report.warnings and args.fail_on_warn:
        print(f"winn-robust: {len(report.warnings)} failure indicator(s) warned (--fail-on-warn): see "
              f"{args.out / 'table.md'}", file=sys.stderr)
        return 3
    return 0


def run_report(args: argparse.Namespace) -> None:
    """One folder: rebuild its tables. Several: the aggregate over seeds into --out."""
    from winn_robust.reporting.aggregate import write_aggregate
    from winn_robust.reporting.files import rebuild_tables

    if len(args.report) == 1:
        files = rebuild_tables(args.report[0], baseline=args.baseline, out_dir=args.out)
        print(f"rebuilt from per_example.csv: {', '.join(str(f) for f in files.values())}")
        return
    if args.out is None:
        raise UserError(f"report with {len(args.report)} folders aggregates them over seeds and needs --out AGG, "
                        "a new folder for the aggregate")
    table_eps = parse_eps(args.eps) if args.eps else None
    files = write_aggregate(args.report, args.out, baseline=args.baseline, table_eps=table_eps,
                            resamples=args.bootstrap_resamples, bootstrap_seed=args.bootstrap_seed)
    print(f"aggregate of {len(args.report)} seeds written to {args.out} ({', '.join(files)})")


def run_plot(args: argparse.Namespace) -> None:
    csv = args.run / "metrics.csv" if args.run.is_dir() else args.run
    if not csv.is_file():
        raise UserError(f"no metrics.csv at {csv}; give a run folder written by `winn-robust train`")
    from winn_robust.reporting.plots import plot_training_metrics

    out = args.out or csv.parent / "metrics.png"
    print(f"training curves written to {plot_training_metrics(csv, out)}")


def checkpoint_file(path: Path) -> Path:
    """A run folder means its best.pt (and says so)."""
    if path.is_dir():
        if not (path / "best.pt").is_file():
            raise UserError(f"{path} is a folder without best.pt; pass a checkpoint or a run folder of `winn-robust train`")
        print(f"{path} is a run folder: using its best.pt", file=sys.stderr)
        return path / "best.pt"
    return path


def run_sample(args: argparse.Namespace) -> None:
    if args.per_class <= 0:
        raise UserError(f"--per-class must be positive, got {args.per_class}")
    device = resolve_device(args.device)
    model, meta = load_checkpoint(checkpoint_file(args.checkpoint), device)
    if meta["method"] not in ("winn", "icn"):
        raise UserError(f"{args.checkpoint} is a {meta['method']} model; sampling needs a WINN or ICN checkpoint")
    config = TrainConfig.from_dict(meta.get("hparams", {}))
    shape = tuple(meta["image_shape"])
    generator = generator_for(config, (int(shape[0]), int(shape[1]), int(shape[2])), device)
    rng = torch.Generator(device=device).manual_seed(args.seed)
    k = int(meta["num_classes"])
    low, high = meta.get("tau_range", [0.0, 0.0])
    result = synthesize_negatives(model, generator, k, args.per_class, (low, high), rng, config,
                                  max_steps=args.max_steps or None, progress=progress_wanted(args))
    class_names = meta.get("class_names") or [str(i) for i in range(k)]
    save_class_grid(result.images, class_names, args.out,
                    title=f"{meta['method']} samples ({meta['dataset']}, epoch {meta.get('epoch')}), one row per class")
    print(f"{k} x {args.per_class} samples written to {args.out} (one row per class; "
          f"mean synthesis steps {result.steps.float().mean().item():.0f})")


def run_reproduce(args: argparse.Namespace) -> None:
    if args.list_presets:
        print("\n".join(describe_presets()))
        return
    from winn_robust.attacks import parse_attack_options
    from winn_robust.experiments.reproduce import EXTRA_KEYS, SHARED_TRAIN_FIELDS, reproduce, resolve_settings

    overrides = {key: getattr(args, key, None) for key in SHARED_TRAIN_FIELDS + EXTRA_KEYS}
    overrides["norm"], overrides["curve"] = args.norm, args.curve
    settings = resolve_settings(args.preset, overrides, out=args.out, download=args.download, device=args.device,
                                progress=progress_wanted(args), command=args.command_line,
                                attack_options=parse_attack_options(args.attack_option), jobs=args.jobs,
                                threads=args.threads or 0, eval_seed=args.eval_seed,
                                nproc_per_node=args.nproc_per_node)
    reproduce(settings)
