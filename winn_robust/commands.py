"""What each CLI sub-command does, separated from argument parsing: turn the parsed options into
validated settings objects and call the layers below.

Evaluation, reporting and `reproduce` are imported by the commands that use them: they pull in
foolbox, scipy, matplotlib and torchvision, seconds of start-up that `train` (on every torchrun
rank) does not need."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

import torch

from winn_robust import distributed
from winn_robust.checkpoint import load_checkpoint, read_checkpoint
from winn_robust.device import resolve_device
from winn_robust.errors import UserError
from winn_robust.experiments.presets import describe_presets
from winn_robust.images import save_image_grid
from winn_robust.training import TrainConfig, train
from winn_robust.training.inputs import load_train_data
from winn_robust.training.synthesis import generator_for, synthesize_negatives
from winn_robust.training.trainer import LAST_NAME, TrainData, check_same_settings
from winn_robust.units import parse_eps


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


def run_train(args: argparse.Namespace) -> None:
    """Train one model. Under torchrun every rank runs this: it joins the process group on its
    own device, the ranks agree that all of them read their settings and data (or all stop with
    the failing rank's message), then train data-parallel; rank 0 prints and writes."""
    if args.dist_timeout <= 0:
        raise distributed.AgreedError(f"--dist-timeout must be positive, got {args.dist_timeout}")
    device = resolve_device(args.device)
    here = distributed.init_from_env(device, args.dist_timeout)
    config, data = distributed.agree(lambda: load_for_training(args, device))
    where = f"device {device}" if not here.distributed else \
        (f"{here.world_size} ranks ({distributed.backend_for(device)}, {device.type}), batch {config.batch_size} = "
         f"{here.world_size} x {config.batch_size // here.world_size}")
    say = distributed.main_only(print)
    say(f"training {config.method} {config.arch} on {config.data}: {len(data.train_images)} train / "
        f"{len(data.val_images)} validation images, {where}", file=sys.stderr)
    result = train(config, data, args.out, device, resume=args.resume, progress=not args.no_progress)
    say(f"best validation error {result.best_val_error:.4f} at epoch {result.best_epoch}; "
        f"checkpoints in {result.out_dir} (best.pt, last.pt), metrics in {result.out_dir / 'metrics.csv'}")
    distributed.shutdown()


def run_attack(args: argparse.Namespace) -> None:
    from winn_robust.evaluation.spec import EvalSpec
    from winn_robust.experiments.evaluate import evaluate_checkpoints

    spec = EvalSpec(eps=tuple(parse_eps(args.eps)), attack=args.attack, batch_size=args.batch_size, limit=args.limit)
    evaluate_checkpoints(args.baseline, list(args.model), spec, args.out, data=args.data, data_dir=args.data_dir,
                         download=args.download, device=args.device, progress=not args.no_progress,
                         command=args.command_line)
    print(f"report written to {args.out} (table.md, table.csv, results.json, per_example.csv)")


def run_report(args: argparse.Namespace) -> None:
    from winn_robust.reporting.files import rebuild_tables

    files = rebuild_tables(args.report, baseline=args.baseline, out_dir=args.out)
    print(f"rebuilt from per_example.csv: {', '.join(str(f) for f in files.values())}")


def run_sample(args: argparse.Namespace) -> None:
    if args.per_class <= 0:
        raise UserError(f"--per-class must be positive, got {args.per_class}")
    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device)
    if meta["method"] not in ("winn", "icn"):
        raise UserError(f"{args.checkpoint} is a {meta['method']} model; sampling needs a WINN or ICN checkpoint")
    config = TrainConfig.from_dict(meta.get("hparams", {}))
    shape = tuple(meta["image_shape"])
    generator = generator_for(config, (int(shape[0]), int(shape[1]), int(shape[2])), device)
    rng = torch.Generator(device=device).manual_seed(args.seed)
    k = int(meta["num_classes"])
    low, high = meta.get("tau_range", [0.0, 0.0])
    result = synthesize_negatives(model, generator, k, args.per_class, (low, high), rng, config,
                                  max_steps=args.max_steps or None, progress=not args.no_progress)
    save_image_grid(result.images.reshape(-1, *shape), args.out, nrow=args.per_class)
    print(f"{k} x {args.per_class} samples written to {args.out} (one row per class; "
          f"mean synthesis steps {result.steps.float().mean().item():.0f})")


def run_reproduce(args: argparse.Namespace) -> None:
    if args.list_presets:
        print("\n".join(describe_presets()))
        return
    from winn_robust.experiments.reproduce import EXTRA_KEYS, SHARED_TRAIN_FIELDS, reproduce, resolve_settings

    overrides = {key: getattr(args, key, None) for key in SHARED_TRAIN_FIELDS + EXTRA_KEYS}
    settings = resolve_settings(args.preset, overrides, out=args.out, download=args.download, device=args.device,
                                progress=not args.no_progress, command=args.command_line)
    reproduce(settings)
