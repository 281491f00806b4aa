"""The one entry point: `winn-robust train | attack | report | sample | reproduce`.

Bad input never shows a traceback: it is one line on stderr and exit status 2. Under torchrun
(`python -m winn_robust` on every rank) `train` runs data-parallel; any failure on any rank ends
the job with one line and exit status 2 (distributed.report_line says which rank prints it)."""
from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from winn_robust import commands, distributed
from winn_robust.attacks import ATTACKS, attacks_for
from winn_robust.errors import UserError
from winn_robust.evaluation.seeds import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES
from winn_robust.experiments.presets import PRESETS
from winn_robust.training.config import FIELD_HELP, TrainConfig
from winn_robust.version import __version__

EXAMPLE_WORKFLOW = """example workflow (scikit-learn's digits, no download):
  winn-robust train --method baseline --data digits --epochs 20 --val-size 200 --out runs/base
  winn-robust train --method winn --data digits --epochs 20 --val-size 200 --out runs/winn
  winn-robust attack --baseline runs/base --model runs/winn --eps 1/8 --attack fgsm,pgd --out reports/mine"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is a single line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_data_options(parser: argparse.ArgumentParser, required: bool = False, default: str = "") -> None:
    parser.add_argument("--data", required=required, help=FIELD_HELP["data"] + (f" [default: {default}]" if default else ""))
    parser.add_argument("--data-dir", type=Path, help="folder holding the dataset's original files")
    parser.add_argument("--download", action="store_true", help="let torchvision download the dataset (needs internet)")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda [default: auto]")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide progress bars (they also hide themselves when output is not a terminal)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads torch may use [default: torch's, all cores]; lower it when other work shares "
                             "the machine (recorded in every report)")


def add_train_parser(sub: Any) -> None:
    parser = sub.add_parser("train", help="train one model (baseline, ICN or WINN)",
                            description="Train one model. Every default is the WINN paper's value. With --resume the "
                                        "run's saved settings are restored: give only --epochs (a flag given with "
                                        "another value than the run's is refused).")
    defaults = TrainConfig()
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.name == "data":
            add_data_options(parser)
            continue
        # default None: the command must know which settings the user gave (--resume restores the rest)
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_const", const=True, default=None, help=FIELD_HELP[field.name])
        else:
            kind = int if field.name in ("train_limit",) else type(default)
            parser.add_argument(flag, type=kind, default=None, help=f"{FIELD_HELP[field.name]} [default: {default}]")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, metrics.csv, negatives/, pool/")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/last.pt exactly where it stopped, with the run's own settings")
    parser.add_argument("--force", action="store_true", help="replace a run already in --out (its files are deleted)")
    add_dist_timeout(parser)
    add_common_options(parser)


def add_dist_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dist-timeout", type=float, default=distributed.DEFAULT_TIMEOUT_MINUTES, metavar="MINUTES",
                        help="under torchrun: how long a rank waits for the others at a collective before the job "
                             f"fails [default: {distributed.DEFAULT_TIMEOUT_MINUTES:g}]")


def add_attack_parser(sub: Any) -> None:
    parser = sub.add_parser("attack", help="attack every model, evaluate every attack on every model",
                            description="Cross-evaluate models under every attack at every eps: Table 2/3/4-style "
                                        "reports with the robust error and failure indicators in --out. A model is "
                                        "NAME=SPEC or SPEC, where SPEC is a winn-robust checkpoint or run folder, a "
                                        "TorchScript file, or FILE.py:FUNCTION returning a torch.nn.Module that maps "
                                        "images in [0, 1] to logits.")
    parser.add_argument("--baseline", help="the reference model every other is compared with (NAME=SPEC) "
                                           "[default: the first --model]")
    parser.add_argument("--model", action="append", default=[], help="a model to evaluate (NAME=SPEC); repeat for more")
    parser.add_argument("--eps", action="append", required=True,
                        help="budget in [0, 1] pixel units (L-inf: paper MNIST 0.125; L2: the L2 norm of the "
                             "perturbation of the [0, 1] image, e.g. 1.0); repeat or comma-separate; the first is the "
                             "table eps")
    parser.add_argument("--norm", default="linf",
                        help="threat model of every attack and eps: linf or l2 [default: linf]")
    parser.add_argument("--attack", default=None,
                        help=f"comma list of attacks, each run at every eps: {', '.join(ATTACKS)} (at --norm l2: "
                             f"{', '.join(attacks_for('l2'))}) [default: fgsm, at l2 fgm]")
    parser.add_argument("--curve", metavar="ATTACK",
                        help="also run a minimum-norm attack unbounded (fmn: foolbox's FMN; ddn: DDN, L2 only; "
                             "deepfool): each image's smallest adversarial perturbation, the robust error at every "
                             "eps (curve.csv, curve.png) and the median minimal perturbation per model")
    parser.add_argument("--curve-limit", type=int, metavar="N",
                        help="run the --curve attack on the first N images only [default: all evaluated]")
    parser.add_argument("--attack-option", action="append", default=[], metavar="ATTACK.KEY=VALUE",
                        help="an attack's option, e.g. pgd.steps=100 or square.queries=1000; repeat for more")
    parser.add_argument("--attack-limit", action="append", default=[], metavar="ATTACK=N",
                        help="run ATTACK on the first N images only (e.g. autoattack=500); repeat for more")
    parser.add_argument("--attack-eps", action="append", default=[], metavar="ATTACK=EPS[,EPS]",
                        help="run ATTACK at these of the --eps values only (e.g. autoattack=0.125); repeat for more")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random attack (recorded) [default: 0]")
    add_data_options(parser, default="the checkpoints' dataset; required when every model is external")
    parser.add_argument("--limit", type=int, help="evaluate only the first N test images [default: all]")
    parser.add_argument("--batch-size", type=int, default=500,
                        help="images per batch; under torchrun the batches are dealt out to the ranks [default: 500]")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--resume", action="store_true", help="continue a killed evaluation in --out")
    parser.add_argument("--force", action="store_true", help="replace a report already in --out")
    parser.add_argument("--fail-on-warn", action="store_true",
                        help="exit with status 3 when a failure indicator warns (for CI); warnings never fail otherwise")
    add_dist_timeout(parser)
    add_common_options(parser)


def add_report_parser(sub: Any) -> None:
    parser = sub.add_parser("report", help="rebuild a report's tables, or aggregate several seeds' reports",
                            description="With one folder: recompute table.md, table.csv and error_vs_eps.png from "
                                        "per_example.csv alone (provenance from results.json when it is beside it): a "
                                        "check that every figure follows from the per-image predictions. With several "
                                        "folders (one per training seed, same models and test images) and --out: the "
                                        "aggregate over seeds (mean, sd, method-minus-baseline difference with a 95% "
                                        "hierarchical-bootstrap CI, paired t-test, probability of improvement) and a verdict.")
    parser.add_argument("report", type=Path, nargs="+",
                        help="a report folder holding per_example.csv (or the CSV itself); several: one per seed")
    parser.add_argument("--baseline", help="the baseline model's name [default: results.json's, else the model named "
                                           "baseline, else the first model]")
    parser.add_argument("--out", type=Path, help="folder for the rebuilt files [default: the report folder]; "
                                                 "required with several folders (the aggregate's folder)")
    parser.add_argument("--eps", action="append",
                        help="aggregate: eps for table.md and the verdict, repeat or comma-separate [default: the largest]")
    parser.add_argument("--bootstrap-resamples", type=int, default=DEFAULT_RESAMPLES,
                        help=f"aggregate: bootstrap resamples for the 95%% CIs [default: {DEFAULT_RESAMPLES}]")
    parser.add_argument("--bootstrap-seed", type=int, default=DEFAULT_BOOTSTRAP_SEED,
                        help=f"aggregate: seed of the bootstrap, for reproducible CIs [default: {DEFAULT_BOOTSTRAP_SEED}]")


def add_sample_parser(sub: Any) -> None:
    parser = sub.add_parser("sample", help="synthesize images from a trained WINN/ICN model",
                            description="The classifier is also a generator: run the training-time synthesis.")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a WINN or ICN checkpoint (.pt), or its run folder (its best.pt is used)")
    parser.add_argument("--per-class", type=int, default=10, help="images per class [default: 10]")
    parser.add_argument("--out", type=Path, required=True, help="PNG grid to write (one row per class, class names left)")
    parser.add_argument("--max-steps", type=int, help="synthesis step budget [default: the checkpoint's]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start images and tau draws [default: 0]")
    add_common_options(parser)


def add_plot_parser(sub: Any) -> None:
    parser = sub.add_parser("plot", help="draw a training run's metrics.csv (losses, Wasserstein estimate, gradient "
                                         "penalty, synthesis steps, errors per epoch)",
                            description="Draw a run's metrics.csv to a PNG (train writes RUN/metrics.png itself).")
    parser.add_argument("run", type=Path, help="a run folder of `winn-robust train` (or its metrics.csv)")
    parser.add_argument("--out", type=Path, help="PNG to write [default: RUN/metrics.png]")


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_reproduce_parser(sub: Any) -> None:
    parser = sub.add_parser("reproduce", help="train, attack and report in one command (default: the quick preset)",
                            description="Train baseline and WINN (and ICN where the preset says), attack them, "
                                        "write the Table 2/3/4 report and plots.")
    parser.add_argument("--preset", default="quick", help=f"one of {', '.join(PRESETS)} [default: quick]")
    parser.add_argument("--out", type=Path, help="report folder [default: runs/<preset>]")
    parser.add_argument("--list-presets", action="store_true", help="print the presets and their settings, then exit")
    parser.add_argument("--methods", type=comma_list,
                        help="comma list of methods to train, baseline first; choices: baseline, icn, winn "
                             "[default: the preset's]")
    parser.add_argument("--eps", help="comma list of eps in [0, 1] pixel units for the tables (decimals or fractions "
                                      "such as 1/8); the first is the table eps [default: the preset's]")
    parser.add_argument("--sweep", help="comma list of extra eps for the error-vs-eps plot (FGSM) [default: the preset's]")
    parser.add_argument("--test-limit", type=int, help="evaluate on the first N test images [default: all]")
    parser.add_argument("--attack", help=f"comma list of attacks; fgsm runs at every eps, the others at the table eps; "
                                         f"choices: {', '.join(ATTACKS)} [default: the preset's, fgsm,pgd,autoattack; "
                                         "at --norm l2 fgm,pgd,autoattack]")
    parser.add_argument("--norm", help="threat model of the evaluation: linf or l2; at l2 the preset's attacks and eps "
                                       "become their L2 counterparts unless given (docs/evaluation.md) "
                                       "[default: linf]")
    parser.add_argument("--curve", metavar="ATTACK",
                        help="also run a minimum-norm attack (fmn, ddn, deepfool) for the robust error at every eps")
    parser.add_argument("--strong-limit", type=int,
                        help="run the attacks other than fgsm on the first N test images only [default: the preset's]")
    parser.add_argument("--attack-option", action="append", default=[], metavar="ATTACK.KEY=VALUE",
                        help="an attack's option, e.g. pgd.steps=100; repeat for more")
    parser.add_argument("--seeds", help="training seeds: a comma list (0,1,2) or a count (3 means 0,1,2) "
                                        "[default: the preset's]")
    parser.add_argument("--jobs", type=int, default=1,
                        help="training runs and evaluations at once, as separate processes, the threads split "
                             "between them (one per GPU when several are visible) [default: 1]")
    parser.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                        help="run each training and evaluation under torchrun with N processes (one GPU each, or "
                             "N CPU processes), one job at a time; the batch size must divide by N [default: 1]")
    parser.add_argument("--eval-seed", type=int, default=0, help="seed of the random attacks [default: 0]")
    parser.add_argument("--data-dir", type=Path, help="folder holding the dataset's original files")
    parser.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    for field in fields(TrainConfig):
        if field.name == "method":
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, action="store_const", const=True, default=None, help=FIELD_HELP[field.name])
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(field.type).split(" ")[0], int)
            parser.add_argument(flag, type=kind, default=None, help=FIELD_HELP[field.name] + " [default: the preset's]")
    add_common_options(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="winn-robust", description=__doc__.splitlines()[0] if __doc__ else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLE_WORKFLOW)
    parser.add_argument("--version", action="version", version=f"winn-robust {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train_parser(sub)
    add_attack_parser(sub)
    add_report_parser(sub)
    add_sample_parser(sub)
    add_plot_parser(sub)
    add_reproduce_parser(sub)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    if distributed.world().distributed and args.command not in ("train", "attack"):
        raise distributed.AgreedError(f"only `train` and `attack` run under torchrun; run `winn-robust {args.command}` "
                                      "without torchrun (one process)")
    return int(getattr(commands, f"run_{args.command}")(args) or 0)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse; every rank parses the same argv, so only rank 0 prints help or a usage error."""
    if distributed.world().is_main:
        return parser.parse_args(argv)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse(parser, argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed on one line
        return int(exc.code or 0)
    args.command_line = shlex.join(["winn-robust", *argv])  # provenance: recorded in reports
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            print(f"winn-robust: error: --threads must be at least 1, got {threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(threads)
    try:
        return dispatch(args)
    except UserError as exc:
        line = distributed.report_line(exc)
        if line is not None:
            print(f"winn-robust: error: {line}", file=sys.stderr)
        if distributed.world().distributed:
            distributed.exit_after_failure(2, exc)
        return 2
    except KeyboardInterrupt as exc:
        here = distributed.world()
        if here.is_main:  # torchrun passes Ctrl-C to every rank: one line is enough
            print("winn-robust: interrupted; finished epochs and written reports are kept (attack: --resume continues)", file=sys.stderr)
        if here.distributed:
            distributed.exit_after_failure(130, exc)
        return 130
    except Exception as exc:
        if not distributed.world().distributed:
            raise  # one process: a bug shows its traceback, as always
        # one rank failing must end the whole job: one line here, the traceback in torchrun's summary
        if not distributed.lost_peer(exc):
            distributed.record_traceback(exc)
        print(f"winn-robust: error: {distributed.report_line(exc)}", file=sys.stderr)
        distributed.exit_after_failure(2, exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
