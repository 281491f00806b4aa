"""What each CLI sub-command does, separated from argument parsing."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

import torch

from winn_robust.device import resolve_device
from winn_robust.errors import UserError


def run_train(args: argparse.Namespace) -> None:
    from winn_robust.training import TrainConfig, train
    from winn_robust.training.inputs import load_train_data

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)}).validate()
    device = resolve_device(args.device)
    if args.resume and not (args.out / "last.pt").is_file():
        raise UserError(f"--resume: no {args.out / 'last.pt'} to resume from; run without --resume to start fresh")
    data = load_train_data(config.data, args.data_dir, args.download, config.val_size, config.seed,
                           config.train_limit, device)
    print(f"training {config.method} {config.arch} on {config.data}: {len(data.train_images)} train / "
          f"{len(data.val_images)} validation images, device {device}", file=sys.stderr)
    result = train(config, data, args.out, device, resume=args.resume, progress=not args.no_progress)
    print(f"best validation error {result.best_val_error:.4f} at epoch {result.best_epoch}; "
          f"checkpoints in {result.out_dir} (best.pt, last.pt), metrics in {result.out_dir / 'metrics.csv'}")


def run_attack(args: argparse.Namespace) -> None:
    from winn_robust.attacks.registry import get_attack
    from winn_robust.cli import parse_eps
    from winn_robust.evaluation.run import evaluate_checkpoints

    eps = parse_eps(args.eps)
    get_attack(args.attack)
    if args.limit is not None and args.limit <= 0:
        raise UserError(f"--limit must be positive, got {args.limit}")
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    evaluate_checkpoints(args.baseline, list(args.model), eps, args.attack, args.out, data=args.data,
                         data_dir=args.data_dir, download=args.download, limit=args.limit,
                         batch_size=args.batch_size, device=args.device, progress=not args.no_progress)
    print(f"report written to {args.out} (table.md, table.csv, results.json, per_example.csv)")


def run_report(args: argparse.Namespace) -> None:
    from winn_robust.reporting import rebuild_tables

    files = rebuild_tables(args.report, baseline=args.baseline, out_dir=args.out)
    print(f"rebuilt from per_example.csv: {', '.join(str(f) for f in files.values())}")


def run_sample(args: argparse.Namespace) -> None:
    from winn_robust.checkpoint import load_checkpoint
    from winn_robust.plots import save_image_grid
    from winn_robust.training import TrainConfig
    from winn_robust.training.synthesis import synthesize
    from winn_robust.training.trainer import generator_for

    if args.per_class <= 0:
        raise UserError(f"--per-class must be positive, got {args.per_class}")
    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device)
    if meta["method"] not in ("winn", "icn"):
        raise UserError(f"{args.checkpoint} is a {meta['method']} model; sampling needs a WINN or ICN checkpoint")
    config = TrainConfig.from_dict(meta.get("hparams", {}))
    generator = generator_for(config, tuple(meta["image_shape"]), device)
    rng = torch.Generator(device=device).manual_seed(args.seed)
    k = int(meta["num_classes"])
    start = generator.sample(k * args.per_class, rng, device).view(k, args.per_class, *meta["image_shape"])
    low, high = meta.get("tau_range", [0.0, 0.0])
    tau = low + (high - low) * torch.rand(k, generator=rng, device=device)
    result = synthesize(model, start, torch.arange(k, device=device), tau, lr=config.synthesis_lr,
                        betas=(config.synthesis_beta1, config.synthesis_beta2),
                        max_steps=args.max_steps or config.synthesis_max_steps, tolerance=config.synthesis_tolerance,
                        ce_weight=config.synthesis_ce_weight, progress=not args.no_progress)
    save_image_grid(result.images.reshape(-1, *meta["image_shape"]), args.out, nrow=args.per_class)
    print(f"{k} x {args.per_class} samples written to {args.out} (one row per class; "
          f"mean synthesis steps {result.steps.float().mean().item():.0f})")


def run_reproduce(args: argparse.Namespace) -> None:
    from winn_robust.reproduce import reproduce

    reproduce(args)
