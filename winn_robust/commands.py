"""What each CLI sub-command does, separated from argument parsing: turn the parsed options into
validated settings objects and call the layers below.

Evaluation, reporting and `reproduce` are imported by the commands that use them: they pull in
foolbox, scipy, matplotlib and torchvision, seconds of start-up that `train` (on every torchrun
rank) does not need."""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from winn_robust import distributed
from winn_robust.checkpoint import load_checkpoint, read_meta
from winn_robust.device import resolve_device
from winn_robust.errors import UserError
from winn_robust.experiments.presets import describe_presets
from winn_robust.images import save_class_grid
from winn_robust.reporting.report_folder import ReportFolder
from winn_robust.training import TrainConfig
from winn_robust.training.generative import is_generative
from winn_robust.training.methods.registry import CLI_FLAGS
from winn_robust.training.synthesis import generator_for, synthesize_negatives
from winn_robust.training.trainer import LAST_NAME, check_same_settings
from winn_robust.units import parse_eps

if TYPE_CHECKING:
    from winn_robust.evaluation.spec import EvalSpec


# the methods' own settings on the command line: setting name -> flag (the CLI alone knows flags)
METHOD_SETTING_FLAGS = CLI_FLAGS


FIELD_FLAGS = {"attacks": "--attack", "options": "--attack-option"}  # fields whose flag is not --FIELD


def flag_of(field: str, method_setting: bool = False) -> str:
    """The command-line flag of a setting named in a library error (a training method's own
    settings have flags of their own: its eps is --train-eps)."""
    flags = METHOD_SETTING_FLAGS if method_setting else FIELD_FLAGS
    return flags.get(field, "--" + field.replace("_", "-"))



def progress_wanted(args: argparse.Namespace) -> bool:
    """Progress bars unless --no-progress, or when stderr is not a terminal (logs, CI, jobs)."""
    return not args.no_progress and sys.stderr.isatty()


def method_settings(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The method's own settings given on the command line (`--method-preset` first, flags on
    top); a setting the method does not have is refused, naming the methods that have it."""
    from winn_robust.training.methods import published_settings, settings_owners, split_method_spec

    given: dict[str, Any] = {}
    if getattr(args, "method_preset", None):
        preset_method, given = published_settings(args.method_preset)
        if split_method_spec(method)[0] != preset_method:
            raise UserError(f"--method-preset {args.method_preset} is for --method {preset_method}, not {method}")
    owners = settings_owners()
    name, source = split_method_spec(method)
    for setting in owners:
        value = getattr(args, f"method_{setting}", None)
        if value is None:
            continue
        has = ["user"] if source is not None else []
        if name not in owners[setting] and not (source is not None and "user" in owners[setting]):
            holders = ", ".join(m for m in owners[setting] if m not in has)
            raise UserError(f"{flag_of(setting, method_setting=True)} is a setting of {holders}, not of {name}; drop it or choose one of "
                            "those methods")
        given[setting] = value
    return given


# shared training settings a generative method does not use (it has its own; docs/generative.md)
SUPERVISED_ONLY = ("epochs", "lr", "negatives_per_class", "initial_negatives_per_class", "synthesis_lr", "synthesis_beta1",
                   "synthesis_beta2", "synthesis_max_steps", "synthesis_tolerance", "synthesis_ce_weight", "select_by",
                   "select_eps", "select_limit", "generator_init", "amp")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The settings given on the command line; with --resume, the run's saved settings with the
    given ones on top (the trainer then refuses any that differ from the run's)."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if f.name != "method_options" and getattr(args, f.name, None) is not None}
    if args.resume:
        last = args.out / LAST_NAME
        if not last.is_file():
            return stopped_first_epoch_config(args, given)
        meta = read_meta(last)
        saved = TrainConfig.from_dict(meta.hparams).to_dict()
        method = given.get("method", saved["method"])
        options = {**(saved["method_options"] if method == saved["method"] else {}), **method_settings(args, method)}
        config = TrainConfig.from_dict({**saved, **given, "method_options": options})
        check_same_settings(last, meta, config)  # before loading any data
        done = meta.epoch
        if is_generative(config.training_method):
            total = int(meta.extra.get("total_iterations", 0))
            if done >= total:
                raise UserError(f"nothing to do: {args.out} already holds all {total} iterations of {config.method}")
            distributed.main_only(print)(f"resuming {config.method} from iteration {done} of {total}", file=sys.stderr)
        elif done >= config.epochs:
            raise UserError(f"nothing to do: {args.out} already holds {done} epochs (--epochs {config.epochs}); "
                            "raise --epochs to train on")
        else:
            distributed.main_only(print)(f"resuming {config.method} from epoch {done} to {config.epochs}", file=sys.stderr)
        if args.data_dir is None and meta.data_dir and Path(meta.data_dir).is_dir():
            args.data_dir = Path(meta.data_dir)
            print(f"--resume: reading {config.data} from {args.data_dir}, where the run read it", file=sys.stderr)
        return config
    if "data" not in given:
        raise UserError("train needs --data (mnist, svhn, fashion-mnist, cifar10 or digits)")
    method = given.get("method", TrainConfig.method)
    from winn_robust.data import is_toy

    if is_toy(str(given["data"])) and "arch" not in given:
        given["arch"] = "mlp"  # the toys' architecture (an image one given for them is refused in one line)
    config = TrainConfig(**given, method_options=method_settings(args, method))
    if is_generative(config.training_method):
        unused = [f"--{name.replace('_', '-')}" for name in SUPERVISED_ONLY if name in given]
        if unused:
            raise UserError(f"{' '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used by {config.method}: it counts "
                            "iterations (--iterations, --cascade) and has its own critic and synthesis settings "
                            "(--critic-lr, --ascent-lr, --ascent-max-steps; see train --help)")
    if config.training_method.train_eps is None and getattr(config.training_method, "eps", 0) is None \
            and config.training_method.name != "user":
        raise UserError(f"--method {config.method} trains against a budget: give --train-eps in [0, 1] pixel units "
                        "(MNIST: 0.3, CIFAR-10: 8/255) or a --method-preset")
    return config


def stopped_first_epoch_config(args: argparse.Namespace, given: dict[str, Any]) -> TrainConfig:
    """--resume of a run stopped inside its first epoch: its settings are partial.pt's. Without
    that either, one line that sends the user the right way (never back and forth)."""
    from winn_robust.checkpoint import load_tensors
    from winn_robust.training.run_folder import RunFolder

    folder = RunFolder(args.out)
    if not folder.partial.is_file():
        if folder.holds_run():
            raise UserError(f"--resume: {args.out} holds no {LAST_NAME} (no epoch's state was ever saved, e.g. its first "
                            "write failed), so there is nothing to continue; start it afresh with --force")
        raise UserError(f"--resume: no {args.out / LAST_NAME} to resume from; run without --resume to start fresh")
    state = load_tensors(folder.partial, what="partial-epoch state")
    saved = state.get("hparams") if isinstance(state, dict) else None
    if not isinstance(saved, dict):
        raise UserError(f"--resume: {folder.partial} records no settings; delete it and start afresh with --force")
    method = str(given.get("method", saved["method"]))
    options = {**(saved["method_options"] if method == saved["method"] else {}), **method_settings(args, method)}
    distributed.main_only(print)(f"resuming {method} inside epoch 1 from {folder.partial}", file=sys.stderr)
    return TrainConfig.from_dict({**saved, **given, "method_options": options})


def run_train(args: argparse.Namespace) -> None:
    """Train one model (experiments/training_run.py, which a `reproduce` training job runs too).
    Under torchrun every rank runs this: it joins the process group on its own device, the ranks
    agree that all of them read their settings and data (or all stop with the failing rank's
    message), then train data-parallel; rank 0 prints and writes."""
    from winn_robust.experiments.training_run import run_training

    run_training(lambda: (train_config(args), args.data_dir), args.out, download=args.download, device=args.device,
                 resume=args.resume, force=args.force, progress=progress_wanted(args), dist_timeout=args.dist_timeout)


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
    typed = [part.strip() for value in args.eps for part in str(value).split(",") if part.strip()]
    eps = parse_eps(args.eps, norm)
    if len(typed) > len(eps):
        print(f"note: --eps {','.join(typed)} repeats a value; each eps is evaluated once ({len(eps)} eps)",
              file=sys.stderr)
    return EvalSpec.build(eps, attacks, options=parse_attack_options(args.attack_option), seed=args.seed,
                          batch_size=args.batch_size, limit=args.limit, attack_limits=parse_limits(args.attack_limit),
                          attack_eps=attack_eps, norm=norm, curve=args.curve, curve_limit=args.curve_limit)


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
    from winn_robust.model_sources import parse_normalisation

    if args.dist_timeout <= 0:
        raise distributed.AgreedError(f"--dist-timeout must be positive, got {args.dist_timeout}")
    device = resolve_device(args.device)
    distributed.init_from_env(device, args.dist_timeout)
    spec = distributed.agree(lambda: check_attack_args(args))
    sources = ([args.baseline] if args.baseline else []) + list(args.model)
    notes: list[str] = []
    report = evaluate_models(sources, spec, args.out, data=args.data, data_dir=args.data_dir, download=args.download,
                             device=str(device), progress=progress_wanted(args), command=args.command_line,
                             resume=args.resume, force=args.force, notes=notes,
                             normalise=parse_normalisation(args.input_mean, args.input_std), metric=args.metric)
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
        target = args.out or (args.report[0] if args.report[0].is_dir() else args.report[0].parent)
        hold = ReportFolder(target).open_for_writing() if args.out is not None or target.is_dir() else ExitStack()
        with hold:  # like every writer: locked (no `attack` beside it), leftovers of a killed run removed
            files = rebuild_tables(args.report[0], baseline=args.baseline, out_dir=args.out, metric=args.metric)
        print(f"rebuilt from per_example.csv: {', '.join(str(f) for f in files.values())}")
        return
    if args.out is None:
        raise UserError(f"report with {len(args.report)} folders aggregates them over seeds and needs --out AGG, "
                        "a new folder for the aggregate")
    table_eps = parse_eps(args.eps) if args.eps else None
    with ReportFolder(args.out).open_for_writing():
        files = write_aggregate(args.report, args.out, baseline=args.baseline, table_eps=table_eps,
                                reference=args.reference, resamples=args.bootstrap_resamples,
                                bootstrap_seed=args.bootstrap_seed, metric=args.metric or "error")
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
    from winn_robust.training.generative.sampling import open_run

    if generative_run(args.checkpoint):
        run_generative_sample(args, open_run(args.checkpoint))
        return
    if args.count is not None:
        open_run(args.checkpoint)  # says in one line what the folder is and what to sample from instead
    if args.per_class is None:
        args.per_class = 10
    if args.per_class <= 0:
        raise UserError(f"--per-class must be positive, got {args.per_class}")
    device = resolve_device(args.device)
    model, meta = load_checkpoint(checkpoint_file(args.checkpoint), device)
    if meta.method not in ("winn", "icn"):
        raise UserError(f"{args.checkpoint} is a {meta.method} model; sampling needs a WINN or ICN checkpoint")
    config = TrainConfig.from_dict(meta.hparams)
    shape = meta.image_shape
    generator = generator_for(config, (int(shape[0]), int(shape[1]), int(shape[2])), device)
    rng = torch.Generator(device=device).manual_seed(args.seed)
    k = meta.num_classes
    low, high = meta.tau_range
    result = synthesize_negatives(model, generator, k, args.per_class, (low, high), rng, config,
                                  max_steps=args.max_steps or None, progress=progress_wanted(args))
    class_names = list(meta.class_names) or [str(i) for i in range(k)]
    save_class_grid(result.images, class_names, args.out,
                    title=f"{meta.method} samples ({meta.dataset}, epoch {meta.epoch}), one row per class")
    print(f"{k} x {args.per_class} samples written to {args.out} (one row per class; "
          f"mean synthesis steps {result.steps.float().mean().item():.0f})")


def generative_run(path: Path) -> bool:
    """Whether `path` (a folder or a checkpoint in it) is a generative run: its last.pt names a
    generative method."""
    from winn_robust.training.generative import is_generative
    from winn_robust.training.methods import METHOD_CLASSES

    folder = path if path.is_dir() else path.parent
    last = folder / LAST_NAME
    if not last.is_file():
        return False
    cls = METHOD_CLASSES.get(read_meta(last).method)
    return cls is not None and is_generative(cls)  # type: ignore[arg-type]


def run_generative_sample(args: argparse.Namespace, run: Any) -> None:
    from winn_robust.training.generative.sampling import sample_images, write_samples

    if args.per_class is not None or args.max_steps is not None:
        raise UserError(f"{args.checkpoint} is a generative run: give --count N (--per-class and --max-steps are for "
                        "classifiers)")
    count = 100 if args.count is None else args.count
    device = resolve_device(args.device)
    images = sample_images(run, count, args.seed, device, from_critic=args.from_critic, progress=progress_wanted(args))
    source = "critic" if args.from_critic else "model"
    out = write_samples(images, args.out, args.seed, str(run.folder.resolve()),
                        {"method": run.meta.method, "dataset": run.meta.dataset, "source": source})
    print(f"{count} samples of {run.meta.method} ({run.meta.dataset}, iteration {run.meta.epoch}, seed {args.seed}"
          f"{', from its critic' if args.from_critic else ''}) written to {out}")


def run_score(args: argparse.Namespace) -> None:
    """Score a sample file and the real reference under one classifier (experiments/sample_score.py)."""
    import pandas as pd

    from winn_robust.experiments.sample_score import ScoreRequest, score_samples
    from winn_robust.storage import atomic_write_text

    if args.out is not None and args.out.suffix.lower() != ".json":
        raise UserError(f"--out {args.out} must name a .json file (a .csv is written beside it)")
    request = ScoreRequest(args.samples, args.classifier, data=args.data, data_dir=args.data_dir, download=args.download,
                           splits=args.splits, seed=args.seed, device=str(resolve_device(args.device)))
    result = score_samples(request)
    for note in request.notes:
        print(note, file=sys.stderr)
    print("\n".join(result.table_lines()))
    if args.out is not None:
        record = {**result.to_dict(), "command": args.command_line}
        atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
        csv = args.out.with_suffix(".csv")
        atomic_write_text(csv, pd.DataFrame([record]).to_csv(index=False))
        print(f"written to {args.out} and {csv}")


def run_texture(args: argparse.Namespace) -> None:
    """Train winn-gen on crops of one image (or resume or reuse --run), then anysize synthesis."""
    from winn_robust.training.generative import WinnGen
    from winn_robust.training.generative.texture import TextureSettings, make_texture, save_texture, texture_config

    if args.out.suffix.lower() != ".png":
        raise UserError(f"--out {args.out} must end in .png")
    settings = TextureSettings(size=args.size, patch=args.patch, patches_per_step=args.patches_per_step,
                               steps=args.steps, seed=args.seed if args.synthesis_seed is None else args.synthesis_seed)
    options = {f.name: getattr(args, f"method_{f.name}") for f in fields(WinnGen)
               if getattr(args, f"method_{f.name}", None) is not None}
    config = texture_config(options, args.seed, args.batch_size)
    device = resolve_device(args.device)
    result = make_texture(args.image, settings, config, device, run_dir=args.run, progress=progress_wanted(args))
    out = save_texture(result.image, args.out)
    stages = "; ".join(f"stage {int(s['stage'])}: {int(s['steps'])} steps, mean patch score {s['final_mean']:.3g} "
                       f"(threshold {s['threshold']:.3g})" for s in result.stages)
    trained = f"reused the finished run in {args.run} ({result.iterations} iterations)" if result.reused else \
        f"trained {result.iterations} iterations in {result.train_seconds:.0f} s"
    kept = f"; the run is kept in {args.run}" if args.run is not None else ""
    print(f"{settings.size}x{settings.size} texture written to {out}: {trained}, synthesized in "
          f"{result.synth_seconds:.0f} s ({stages}){kept}")


def run_quality(args: argparse.Namespace) -> None:
    """iWGAN quality scores of every input: scores.csv and the plot of the best and worst."""
    from winn_robust.training.generative.inspection import open_iwgan_run, plot_extremes, read_inputs, score_inputs, write_scores

    if args.out.suffix.lower() != ".csv":
        raise UserError(f"--out {args.out} must end in .csv (the plot is written beside it as .png)")
    if args.show < 1:
        raise UserError(f"--show must be positive, got {args.show}")
    run = open_iwgan_run(args.checkpoint)
    inputs = read_inputs(args.input, run)
    quality, errors = score_inputs(run, inputs, resolve_device(args.device))
    write_scores(quality, errors, args.out)
    plot = plot_extremes(inputs, quality, args.out.with_suffix(".png"), run.meta.dataset, args.show)
    print(f"quality of {len(quality)} inputs written to {args.out} (median {float(quality.median()):.4g}, range "
          f"{float(quality.min()):.4g} to {float(quality.max()):.4g}); plot in {plot}")


def run_reconstruct(args: argparse.Namespace) -> None:
    """iWGAN reconstructions G(Q(x)) beside their inputs, or latent interpolations."""
    from winn_robust.training.generative.inspection import interpolation_grid, open_iwgan_run, read_inputs, reconstruction_grid

    if args.out.suffix.lower() != ".png":
        raise UserError(f"--out {args.out} must end in .png")
    if args.count < 1 or args.pairs < 1:
        raise UserError(f"--count and --pairs must be positive, got {args.count} and {args.pairs}")
    run = open_iwgan_run(args.checkpoint)
    inputs = read_inputs(args.input, run)
    device = resolve_device(args.device)
    if args.interpolate is not None:
        out = interpolation_grid(run, inputs, args.out, device, args.interpolate, args.pairs)
        print(f"latent interpolations ({args.interpolate} steps per pair) written to {out}")
        return
    out = reconstruction_grid(run, inputs, args.out, device, args.count)
    print(f"{min(args.count, len(inputs.values))} inputs and their reconstructions G(Q(x)) written to {out}")


# reproduce's flags a generative study honours (experiments/generative_study.py); any other given is refused
STUDY_FLAGS = {"preset", "out", "list_presets", "train_limit", "val_size", "data_dir", "test_limit"}


def study_unused_flags(args: argparse.Namespace) -> list[str]:
    """The reproduce-only and training flags given to a generative preset, which its study would ignore."""
    from winn_robust.experiments.launchers import LaunchSettings

    launch = LaunchSettings()
    neutral = {"jobs": 1, "nproc_per_node": 1, "launcher": "local", "eval_seed": 0,
               **{name: getattr(launch, name) for name in ("slurm_gpus_per_job", "slurm_cpus_per_job", "slurm_time")}}
    candidates = ["methods", "reference", "eps", "sweep", "attack", "norm", "curve", "strong_limit", "attack_option",
                  "seeds", "jobs", "nproc_per_node", "launcher", "slurm_partition", "slurm_gpus_per_job",
                  "slurm_cpus_per_job", "slurm_time", "slurm_option", "eval_seed", "metric", "extend", "download",
                  "method_preset", *(f.name for f in fields(TrainConfig) if f.name not in ("method", "method_options")),
                  *(f"method_{name}" for name in METHOD_SETTING_FLAGS)]
    given = []
    for name in candidates:
        value = getattr(args, name, None)
        if name not in STUDY_FLAGS and value not in (None, False, []) and value != neutral.get(name):
            setting = name.removeprefix("method_")
            given.append(METHOD_SETTING_FLAGS[setting] if name.startswith("method_") and setting in METHOD_SETTING_FLAGS
                         else "--" + name.replace("_", "-"))
    return given


def run_reproduce(args: argparse.Namespace) -> None:
    if args.list_presets:
        print("\n".join(describe_presets()))
        return
    from winn_robust.experiments.presets import get_preset, is_generative_preset

    if is_generative_preset(args.preset):
        from winn_robust.experiments.generative_study import run_study, study_settings

        unused = study_unused_flags(args)
        if unused:
            raise UserError(f"{' '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used by the generative preset "
                            f"{args.preset}: its study trains its runs in this process with the preset's settings and "
                            "takes --out, --data-dir, --train-limit, --val-size, --test-limit (the samples per run), "
                            "--device and --threads; for data-parallel runs use `torchrun ... -m winn_robust train`")
        overrides = {"train_limit": args.train_limit, "val_size": args.val_size, "seed": None,
                     "data_dir": args.data_dir, "samples": args.test_limit}
        run_study(study_settings(get_preset(args.preset), args.preset, args.out or Path("runs") / args.preset, overrides,
                                 args.device, progress_wanted(args), args.command_line))
        return
    from winn_robust.attacks import parse_attack_options
    from winn_robust.experiments.launchers import LaunchSettings, parse_slurm_options
    from winn_robust.experiments.reproduce import PRESET_KEYS, SHARED_TRAIN_FIELDS, reproduce, resolve_settings

    overrides = {key: getattr(args, key, None) for key in SHARED_TRAIN_FIELDS + PRESET_KEYS}
    overrides["method_settings"] = {name: getattr(args, f"method_{name}") for name in METHOD_SETTING_FLAGS
                                    if getattr(args, f"method_{name}", None) is not None} or None
    overrides["method_preset"] = getattr(args, "method_preset", None)
    launch = LaunchSettings(args.launcher, args.jobs, args.slurm_partition, args.slurm_gpus_per_job,
                            args.slurm_cpus_per_job, args.slurm_time, parse_slurm_options(args.slurm_option))
    overrides["norm"], overrides["curve"] = args.norm, args.curve
    settings = resolve_settings(args.preset, overrides, out=args.out, download=args.download, device=args.device,
                                progress=progress_wanted(args), command=args.command_line,
                                attack_options=parse_attack_options(args.attack_option), launch=launch,
                                threads=args.threads or 0, eval_seed=args.eval_seed,
                                nproc_per_node=args.nproc_per_node, extend=args.extend,
                                metric=args.metric or "error")
    reproduce(settings)


def run_run_job(args: argparse.Namespace) -> None:
    """One job of `reproduce` (its spec.json), in the job's own process or on each torchrun rank."""
    from winn_robust.experiments.job_spec import run_job

    run_job(args.spec)
