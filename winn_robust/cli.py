"""The one entry point: `winn-robust train | attack | report | sample | reproduce`.

Bad input never shows a traceback: it is one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from winn_robust.errors import UserError

TRAIN_HELP = {
    "method": "baseline (CE only), icn (logistic introspective loss) or winn (Wasserstein)",
    "arch": "vanilla, resnet20, resnet32, resnet44 or resnet56",
    "data": "mnist, svhn, fashion-mnist, cifar10 or digits (embedded, no download)",
    "epochs": "training epochs (paper: 200)",
    "batch_size": "positives per batch; WINN pairs each with a same-label negative (paper: 100)",
    "lr": "Adam learning rate (paper: 1e-3)",
    "beta1": "Adam beta1 (paper: 0.0)",
    "beta2": "Adam beta2 (paper: 0.9)",
    "alpha": "weight of the introspective term (paper: 0.01)",
    "gp_lambda": "gradient-penalty weight lambda (paper: 10)",
    "negatives_per_class": "pseudo-negatives synthesized per class each epoch (paper: 100)",
    "initial_negatives_per_class": "pool entries per class drawn from the frozen random generator",
    "synthesis_lr": "Adam learning rate on the pixels during synthesis (paper: 0.02)",
    "synthesis_beta1": "synthesis Adam beta1 (paper: 0.9)",
    "synthesis_beta2": "synthesis Adam beta2 (paper: 0.9)",
    "synthesis_max_steps": "step budget per synthesis batch (paper: 2000)",
    "synthesis_tolerance": "stop when |mean f(x) - tau| <= this (paper: 1e-3)",
    "synthesis_ce_weight": "weight of CE(target class) in the synthesis loss (paper: 0.5)",
    "val_size": "validation images held out of training for model selection (paper: 5000; "
                "capped at 10%% of the training set for small datasets)",
    "train_limit": "use only the first N training images (quick runs)",
    "seed": "seed for weights, shuffling, pools and synthesis",
    "amp": "bfloat16 autocast for the classification pass; synthesis stays float32 (off by default; see README)",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is a single line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_data_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--data", required=required, help=TRAIN_HELP["data"])
    parser.add_argument("--data-dir", type=Path, help="folder holding the dataset's original files")
    parser.add_argument("--download", action="store_true", help="let torchvision download the dataset (needs internet)")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_train_parser(sub: Any) -> None:
    from winn_robust.training import TrainConfig

    parser = sub.add_parser("train", help="train one model (baseline, ICN or WINN)",
                            description="Train one model. Every default is the WINN paper's value.")
    defaults = TrainConfig()
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.name == "data":
            add_data_options(parser, required=True)
            continue
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=TRAIN_HELP[field.name])
        else:
            kind = int if field.name in ("train_limit",) else type(default)
            parser.add_argument(flag, type=kind, default=default, help=f"{TRAIN_HELP[field.name]} [default: {default}]")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, metrics.csv, negatives/")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly where it stopped")
    add_common_options(parser)


def add_attack_parser(sub: Any) -> None:
    parser = sub.add_parser("attack", help="attack every model, evaluate every attack on every model",
                            description="Cross-evaluate checkpoints: Table 2/3/4-style reports in --out.")
    parser.add_argument("--baseline", type=Path, required=True, help="the baseline checkpoint (.pt)")
    parser.add_argument("--model", type=Path, action="append", required=True, help="a method checkpoint; repeat for more")
    parser.add_argument("--eps", action="append", required=True,
                        help="L-inf budget in [0, 1] pixel units (paper MNIST: 0.125); repeat or comma-separate")
    parser.add_argument("--attack", default="fgsm", help="fgsm (ours), foolbox-fgsm or foolbox-pgd [default: fgsm]")
    add_data_options(parser)
    parser.add_argument("--limit", type=int, help="evaluate only the first N test images")
    parser.add_argument("--batch-size", type=int, default=500, help="images per batch [default: 500]")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    add_common_options(parser)


def add_report_parser(sub: Any) -> None:
    parser = sub.add_parser("report", help="rebuild the tables and the eps plot from a report's per_example.csv",
                            description="Recompute table.md, table.csv and error_vs_eps.png from per_example.csv "
                                        "alone (provenance from results.json when it is beside it): a check that "
                                        "every figure follows from the per-image predictions.")
    parser.add_argument("report", type=Path, help="a report folder holding per_example.csv, or the CSV itself")
    parser.add_argument("--baseline", help="the baseline model's name [default: results.json's, else the first model]")
    parser.add_argument("--out", type=Path, help="folder for the rebuilt files [default: the report folder]")


def add_sample_parser(sub: Any) -> None:
    parser = sub.add_parser("sample", help="synthesize images from a trained WINN/ICN model",
                            description="The classifier is also a generator: run the training-time synthesis.")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--per-class", type=int, default=10, help="images per class [default: 10]")
    parser.add_argument("--out", type=Path, required=True, help="PNG grid to write (one row per class)")
    parser.add_argument("--max-steps", type=int, help="synthesis step budget [default: the checkpoint's]")
    parser.add_argument("--seed", type=int, default=0)
    add_common_options(parser)


def add_reproduce_parser(sub: Any) -> None:
    from winn_robust.reproduce import add_reproduce_options

    parser = sub.add_parser("reproduce", help="train, attack and report in one command (default: the quick preset)",
                            description="Train baseline and WINN (and ICN where the preset says), attack them, "
                                        "write the Table 2/3/4 report and plots.")
    add_reproduce_options(parser)
    add_common_options(parser)


def parse_eps(values: Sequence[str]) -> list[float]:
    from winn_robust.attacks.registry import check_eps

    eps: list[float] = []
    for value in values:
        for part in str(value).split(","):
            if not part.strip():
                continue
            try:
                eps.append(check_eps(float(part)))
            except ValueError:
                raise UserError(f"--eps {part!r} is not a number; give eps in [0, 1] pixel units, e.g. --eps 0.125") from None
    if not eps:
        raise UserError("give at least one --eps, in [0, 1] pixel units (e.g. --eps 0.125)")
    return sorted(set(eps), key=eps.index)


def build_parser() -> argparse.ArgumentParser:
    from winn_robust import __version__

    parser = OneLineParser(prog="winn-robust", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"winn-robust {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train_parser(sub)
    add_attack_parser(sub)
    add_report_parser(sub)
    add_sample_parser(sub)
    add_reproduce_parser(sub)
    return parser


def dispatch(args: argparse.Namespace) -> None:
    from winn_robust import commands

    getattr(commands, f"run_{args.command}")(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed on one line
        return int(exc.code or 0)
    try:
        dispatch(args)
    except UserError as exc:
        print(f"winn-robust: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("winn-robust: interrupted; finished epochs and written reports are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
