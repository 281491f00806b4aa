"""`winn-robust reproduce`: data -> trained baseline/ICN/WINN -> cross-evaluation -> report.

One folder holds everything: models/<method>/ (checkpoints, metrics.csv, negatives/), the
report (table.md, table.csv, results.json, per_example.csv), the plots, and summary.md with
the command, machine, stage timings and the paper's numbers beside ours."""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from winn_robust.device import resolve_device
from winn_robust.errors import UserError
from winn_robust.presets import PAPER_NUMBERS, PRESETS, get_preset
from winn_robust.training import METHODS, TrainConfig

EXTRA_KEYS = ("methods", "eps", "sweep", "test_limit", "attack", "data_dir")


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_reproduce_options(parser: argparse.ArgumentParser) -> None:
    from winn_robust.cli import TRAIN_HELP

    parser.add_argument("--preset", default="quick", help=f"one of {', '.join(PRESETS)} [default: quick]")
    parser.add_argument("--out", type=Path, help="report folder [default: runs/<preset>]")
    parser.add_argument("--list-presets", action="store_true", help="print the presets and their settings, then exit")
    parser.add_argument("--methods", type=comma_list, help="comma list of methods to train, baseline first")
    parser.add_argument("--eps", help="comma list of eps in [0, 1] pixel units for the tables")
    parser.add_argument("--sweep", help="comma list of extra eps for the error-vs-eps plot")
    parser.add_argument("--test-limit", type=int, help="evaluate on the first N test images")
    parser.add_argument("--attack", help="attack name [default: fgsm]")
    parser.add_argument("--data-dir", type=Path, help="folder holding the dataset's original files")
    parser.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    for field in fields(TrainConfig):
        if field.name == "method":
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, action="store_const", const=True, default=None, help=TRAIN_HELP[field.name])
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(field.type).split(" ")[0], int)
            parser.add_argument(flag, type=kind, default=None, help=TRAIN_HELP[field.name] + " [default: the preset's]")


def resolve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The preset, with every option given on the command line taking precedence."""
    from winn_robust.cli import parse_eps

    settings = get_preset(args.preset)
    for key in [f.name for f in fields(TrainConfig) if f.name != "method"] + list(EXTRA_KEYS):
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    for key in ("eps", "sweep"):
        if isinstance(settings.get(key), str):
            settings[key] = parse_eps([settings[key]])
        else:
            settings[key] = parse_eps([str(e) for e in settings.get(key, [])]) if settings.get(key) else []
    methods = settings["methods"]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)} in --methods; choose from {', '.join(METHODS)}")
    if not methods or methods[0] != "baseline" or len(methods) < 2:
        raise UserError("--methods must start with baseline and name at least one other method, e.g. baseline,winn")
    if settings.get("test_limit") is not None and settings["test_limit"] <= 0:
        raise UserError(f"--test-limit must be positive, got {settings['test_limit']}")
    if settings.get("data_dir") is None:
        for candidate in settings.get("data_dir_candidates", []):
            if Path(candidate).is_dir():
                settings["data_dir"] = Path(candidate)
                break
    settings.setdefault("attack", "fgsm")
    return settings


def machine_description(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} using {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text + f", device {device}"


def stage(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text}", file=sys.stderr, flush=True)


def paper_comparison(settings: dict[str, Any], metrics: Any, names: list[str], methods: list[str]) -> list[str]:
    """Our headline numbers beside the paper's, where the paper has this dataset and arch."""
    eps = settings["eps"][0]
    lines = [f"| model | ours: clean | paper: clean | ours: adv. error (eps {eps:g}) | paper: adv. error | "
             "ours: corr. by method | paper | ours: corr. by baseline | paper |", "|---" * 9 + "|"]

    def pct(rate: Any) -> str:
        return "n/a" if rate is None or rate.value is None else f"{100 * rate.value:.2f}%"

    def paper(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}%"

    for name, method in zip(names, methods):
        row = metrics.by_eps[eps].models[name]
        ref = PAPER_NUMBERS.get((settings["data"], settings["arch"], method))
        ref = ref or (None, None, None, None)
        lines.append(f"| {name} | {pct(row.clean_error)} | {paper(ref[0])} | {pct(row.adv_error)} | {paper(ref[1])} | "
                     f"{pct(row.correction_by_method) if method != 'baseline' else '-'} | {paper(ref[2])} | "
                     f"{pct(row.correction_by_baseline) if method != 'baseline' else '-'} | {paper(ref[3])} |")
    if not any(PAPER_NUMBERS.get((settings["data"], settings["arch"], m)) for m in methods):
        lines.append("")
        lines.append(f"The paper reports no numbers for {settings['data']} / {settings['arch']}; its columns show '-'.")
    return lines


def write_summary(out: Path, settings: dict[str, Any], timings: dict[str, float], device: torch.device,
                  evaluation: dict[str, Any], methods: list[str], command: str) -> Path:
    metrics = evaluation["metrics"]
    lines = [f"# winn-robust reproduce: preset `{settings['preset']}`", "",
             f"- command: `{command}`", f"- machine: {machine_description(device)}",
             f"- data: {settings['data']}, arch {settings['arch']}, methods {', '.join(methods)}, "
             f"{settings['epochs']} epochs; test images N = {metrics.n}",
             f"- eps in [0, 1] pixel units (models see [-1, 1]; model-space step 2*eps); tables at {settings['eps']}, "
             f"sweep {settings['sweep']}",
             "- wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()), "",
             "## Ours beside the paper (Tables 2-4)", "", *paper_comparison(settings, metrics, evaluation['names'], methods),
             "", "Full tables with 95% confidence intervals and McNemar tests: table.md; every number per image: per_example.csv.",
             ""]
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path


def reproduce(args: argparse.Namespace) -> dict[str, Any]:
    from winn_robust.data import load_dataset
    from winn_robust.evaluation.run import evaluate_checkpoints
    from winn_robust.training import train
    from winn_robust.training.inputs import make_train_data

    if getattr(args, "list_presets", False):
        for name, preset in PRESETS.items():
            print(f"{name}: {preset['description']}")
            print("    " + ", ".join(f"{k}={v}" for k, v in preset.items() if k != "description"))
        return {}
    settings = resolve_settings(args)
    settings["preset"] = args.preset
    out = Path(args.out or Path("runs") / args.preset)
    device = resolve_device(args.device)
    progress = not args.no_progress
    methods = list(dict.fromkeys(settings["methods"]))
    total = len(methods) + 2
    started = time.perf_counter()
    command = shlex.join(["winn-robust", *sys.argv[1:]]) if sys.argv and "winn-robust" in sys.argv[0] else \
        f"winn-robust reproduce --preset {args.preset}"

    stage(1, total, f"loading {settings['data']}")
    dataset = load_dataset(settings["data"], settings.get("data_dir"), args.download)
    shared = {f.name: settings[f.name] for f in fields(TrainConfig) if f.name in settings and f.name != "method"}
    base = TrainConfig(**shared).validate()
    data = make_train_data(dataset, base.val_size, base.seed, base.train_limit, device)
    timings: dict[str, float] = {"data": time.perf_counter() - started}
    print(f"    {len(data.train_images)} train / {len(data.val_images)} validation / {len(dataset.test_images)} test images, "
          f"device {device}", file=sys.stderr)

    checkpoints: dict[str, Path] = {}
    for number, method in enumerate(methods, start=2):
        stage(number, total, f"training {method} ({base.arch}, {base.epochs} epochs)")
        t0 = time.perf_counter()
        config = TrainConfig(**{**shared, "method": method}).validate()
        result = train(config, data, out / "models" / method, device, progress=progress)
        timings[f"train {method}"] = time.perf_counter() - t0
        checkpoints[method] = out / "models" / method / "best.pt"
        print(f"    {method}: best validation error {100 * result.best_val_error:.2f}% at epoch {result.best_epoch}",
              file=sys.stderr)
        grids = sorted((out / "models" / method / "negatives").glob("epoch_*.png"))
        if grids:
            shutil.copyfile(grids[-1], out / f"negatives_{method}.png")

    eps_values = list(dict.fromkeys(settings["eps"] + settings["sweep"]))
    stage(total, total, f"attacking every model with {settings['attack']} at eps {eps_values} and evaluating on every model")
    t0 = time.perf_counter()
    evaluation = evaluate_checkpoints(checkpoints["baseline"], [checkpoints[m] for m in methods[1:]], eps_values,
                                      settings["attack"], out, data=settings["data"], data_dir=settings.get("data_dir"),
                                      download=args.download, limit=settings.get("test_limit"), device=args.device,
                                      progress=progress)
    timings["attack + evaluate"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    summary = write_summary(out, settings, timings, device, evaluation, methods, command)
    print((out / "table.md").read_text())
    print(f"report: {out}/ (summary.md, table.md, table.csv, results.json, per_example.csv, plots); "
          f"total {timings['total']:.0f} s")
    return {"settings": settings, "evaluation": evaluation, "summary": summary, "timings": timings}
