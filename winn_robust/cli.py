"""The one entry point: `winn-robust train | attack | report | sample | score | quality | reconstruct | plot | reproduce | texture`.

Bad input never shows a traceback: it is one line on stderr and exit status 2. Under torchrun
(`python -m winn_robust` on every rank) `train` runs data-parallel; any failure on any rank ends
the job with one line and exit status 2 (distributed.report_line says which rank prints it).
A fault of the machine (disk full, a read-only file system, a lost lock) is one line and exit
status 1. SIGTERM (and submitit's SIGUSR2) is handled like Ctrl-C: one line, a resumable state."""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from winn_robust import commands, distributed, stop_request
from winn_robust.attacks import ATTACKS, attacks_for
from winn_robust.commands import METHOD_SETTING_FLAGS, flag_of
from winn_robust.errors import MachineError, UserError, fault_line, is_fault
from winn_robust.evaluation.seeds import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES
from winn_robust.experiments.launchers import LAUNCHERS, LaunchSettings
from winn_robust.experiments.presets import PRESETS
from winn_robust.training.config import FIELD_HELP, TrainConfig
from winn_robust.training.methods import PUBLISHED
from winn_robust.training.methods.registry import SETTING_HELP, settings_owners
from winn_robust.version import __version__


def fraction(text: str) -> float:
    """A number as papers write it (0.3, 8/255), for argparse."""
    from winn_robust.units import parse_fraction

    try:
        value = parse_fraction(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (a decimal or a fraction such as 8/255)") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def cli_message(exc: UserError, text: str | None = None) -> str:
    """The library names settings by field; on the command line they are flags. `text` is the
    line to print (the message, or it with the rank that hit it)."""
    text = str(exc) if text is None else text
    field = getattr(exc, "field", None)  # a SettingError, or another rank's agreed report of one
    if isinstance(field, str) and field in text:
        at = text.index(field)
        text = text[:at] + flag_of(field, bool(getattr(exc, "method_setting", False))) + text[at + len(field):]
    for name in getattr(exc, "mentions", ()):  # settings the advice names, each written `name`
        text = text.replace(f"`{name}`", flag_of(name))
    return text


def add_method_setting_options(parser: argparse.ArgumentParser, default_note: str) -> None:
    """Each method's own settings, in one group, each saying which methods have it."""
    group = parser.add_argument_group("method settings", "each method's own settings (a flag the chosen method "
                                                         "does not have is refused)")
    owners = settings_owners()
    for name, flag in METHOD_SETTING_FLAGS.items():
        group.add_argument(flag, dest=f"method_{name}", default=None, metavar="VALUE",
                           help=f"{', '.join(owners.get(name, []))}: {SETTING_HELP[name]}{default_note}")
    group.add_argument("--method-preset", choices=sorted(PUBLISHED), type=str.lower,
                       help="a paper's published settings for its method (madry-mnist: eps 0.3, 40 steps of 0.01; "
                            "madry-cifar10: 8/255, 10 steps of 2/255; trades-mnist: beta 1; trades-cifar10: beta 6, "
                            "eps 0.031, 10 steps of 0.007); flags given beside it win")


EXAMPLE_WORKFLOW = """example workflow (scikit-learn's digits, no download):
  winn-robust train --method baseline --data digits --epochs 20 --val-size 200 --out runs/base
  winn-robust train --method winn --data digits --epochs 20 --val-size 200 --out runs/winn
  winn-robust attack --baseline runs/base --model runs/winn --eps 1/8 --attack fgsm,pgd --out reports/mine"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is a single line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def finite_float(text: str) -> float:
    """A float option: nan and inf are refused here, where the text enters, not after training starts."""
    value = float(text)  # a ValueError is argparse's one line "invalid float value"
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


finite_float.__name__ = "float"  # argparse names the type in its message
def attack_option_help(example: str) -> str:
    """--attack-option's help: every attack's own keys (its options' names and defaults)."""
    from dataclasses import fields as dataclass_fields

    keys = []
    for name, cls in ATTACKS.items():
        options = [f"{f.name}={getattr(cls, f.name, f.default)}" + (" (= 2.5*eps/steps)" if f.name == "step_size" else "")
                   for f in dataclass_fields(cls) if f.name not in ("seed", "norm")]  # --norm sets the norm
        keys.append(f"{name}: {', '.join(options) or 'no options'}")
    return f"an attack's option as ATTACK.KEY=VALUE, e.g. {example}; repeat for more. Keys (defaults): " + "; ".join(keys)


def add_metric_option(parser: argparse.ArgumentParser, extra: str = "") -> None:
    parser.add_argument("--metric", choices=("error", "accuracy"), default=None,
                        help="what table.md and the plots show: error (the WINN paper's) or accuracy = 1 - error "
                             f"(RobustBench's robust accuracy); table.csv always has both{extra} [default: error]")


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
        if field.name == "method_options":
            continue
        # default None: the command must know which settings the user gave (--resume restores the rest)
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_const", const=True, default=None, help=FIELD_HELP[field.name])
        else:
            kind: Any = {"train_limit": int, "select_limit": int, "select_eps": fraction}.get(field.name, type(default))
            kind = finite_float if kind is float else kind
            parser.add_argument(flag, type=kind, default=None, help=f"{FIELD_HELP[field.name]} [default: {default}]")
    add_method_setting_options(parser, "")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, metrics.csv, negatives/, pool/")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/last.pt exactly where it stopped, with the run's own settings")
    parser.add_argument("--force", action="store_true", help="replace a run already in --out (its files are deleted)")
    add_dist_timeout(parser)
    add_common_options(parser)


def add_dist_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dist-timeout", type=finite_float, default=distributed.DEFAULT_TIMEOUT_MINUTES, metavar="MINUTES",
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
                        help=attack_option_help("pgd.steps=100 or square.queries=1000"))
    parser.add_argument("--attack-limit", action="append", default=[], metavar="ATTACK=N",
                        help="run ATTACK on the first N images only (e.g. autoattack=500); repeat for more")
    parser.add_argument("--attack-eps", action="append", default=[], metavar="ATTACK=EPS[,EPS]",
                        help="run ATTACK at these of the --eps values only (e.g. autoattack=0.125); repeat for more")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random attack (recorded) [default: 0]")
    add_data_options(parser, default="the checkpoints' dataset; required when every model is external")
    parser.add_argument("--limit", "--test-limit", dest="limit", type=int,
                        help="evaluate only the first N test images (--test-limit is the same) [default: all]")
    parser.add_argument("--input-mean", metavar="M[,M,M]",
                        help="external models trained on normalised pixels: per-channel mean of [0, 1] pixels; the "
                             "model then receives (u - mean) / std (e.g. ImageNet: 0.485,0.456,0.406) [default: none, "
                             "the model receives [0, 1] images]")
    parser.add_argument("--input-std", metavar="S[,S,S]",
                        help="with --input-mean: the per-channel std (e.g. ImageNet: 0.229,0.224,0.225)")
    parser.add_argument("--batch-size", type=int, default=500,
                        help="images per batch; under torchrun the batches are dealt out to the ranks [default: 500]")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--resume", action="store_true", help="continue a killed evaluation in --out")
    parser.add_argument("--force", action="store_true", help="replace a report already in --out")
    add_metric_option(parser)
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
    parser.add_argument("--baseline", help="the baseline model's name [default, for one folder and for several alike: "
                                           "the one results.json records (the first folder's that records one), else "
                                           "the model named baseline, else the first model]")
    parser.add_argument("--reference", help="aggregate: a second comparison beside the baseline, e.g. pgd-at (every "
                                            "other model minus it, with intervals)")
    parser.add_argument("--out", type=Path, help="folder for the rebuilt files [default: the report folder]; "
                                                 "required with several folders (the aggregate's folder)")
    parser.add_argument("--eps", action="append",
                        help="aggregate: eps for table.md and the verdict, repeat or comma-separate [default: the largest]")
    add_metric_option(parser, "; the aggregate's verdict is stated in error")
    parser.add_argument("--bootstrap-resamples", type=int, default=DEFAULT_RESAMPLES,
                        help=f"aggregate: bootstrap resamples for the 95%% CIs [default: {DEFAULT_RESAMPLES}]")
    parser.add_argument("--bootstrap-seed", type=int, default=DEFAULT_BOOTSTRAP_SEED,
                        help=f"aggregate: seed of the bootstrap, for reproducible CIs [default: {DEFAULT_BOOTSTRAP_SEED}]")


def add_sample_parser(sub: Any) -> None:
    parser = sub.add_parser("sample", help="draw images from a generative run (winn-gen, wgan-gp), or per class from a "
                                           "WINN/ICN classifier",
                            description="A generative run (train --method winn-gen|wgan-gp|iwgan): --count N images, "
                                        "seeded, into FILE.npz (`images`, (N, C, H, W) float32 in [0, 1], with the seed "
                                        "and checkpoint) or FILE.png (a grid); a run on 2-D points (--data ring8, ...) "
                                        "writes `points` (N, 2), or a scatter plot beside the real mixture. A WINN/ICN classifier: "
                                        "--per-class images of "
                                        "every class by the training-time synthesis, as a PNG grid.")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a generative run folder (or a checkpoint in it), or a WINN/ICN checkpoint or run folder")
    parser.add_argument("--count", type=int, help="generative runs: how many images [default: 100]")
    parser.add_argument("--from-critic", action="store_true",
                        help="wgan-gp: synthesize from its critic by the WINN procedure instead of its generator "
                             "(the WINN paper's Figure 3 comparison)")
    parser.add_argument("--per-class", type=int, default=None, help="classifiers: images per class [default: 10]")
    parser.add_argument("--out", type=Path, required=True,
                        help="FILE.npz (generative runs) or FILE.png (a grid; classifiers: one row per class)")
    parser.add_argument("--max-steps", type=int, help="classifiers: synthesis step budget [default: the checkpoint's]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start images and thresholds [default: 0]")
    add_common_options(parser)


def add_score_parser(sub: Any) -> None:
    parser = sub.add_parser("score", help="score generated images offline: the Inception-score formula and the Frechet "
                                          "distance under a classifier, beside the real test images'",
                            description="Score a sample file (.npz with `images`, (N, C, H, W) floats in [0, 1]) with "
                                        "exp(E KL(p(y|x) || p(y))) and the Frechet distance between Gaussians fitted to "
                                        "the classifier's penultimate features, beside the same figures for the real "
                                        "test images, all at one N (docs/scores.md). Only an Inception-v3 classifier "
                                        "makes them the Inception score and FID.")
    parser.add_argument("--samples", type=Path, required=True, help="the .npz to score (`images`: (N, C, H, W) in [0, 1])")
    parser.add_argument("--classifier", required=True, metavar="RUN_OR_MODEL",
                        help="a baseline trained by `train` on the same data (run folder or checkpoint; the documented "
                             "default), a TorchScript file or FILE.py:FUNCTION ([0, 1] images -> logits), or "
                             "inception-v3=FILE.pth (a torchvision inception_v3 state dict: the real Inception score and FID)")
    add_data_options(parser, default="the classifier's dataset; required for models that are not winn-robust checkpoints")
    parser.add_argument("--splits", type=int, default=10, help="splits of the score (mean and sd over them) [default: 10]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle and of the subsets of N images [default: 0]")
    parser.add_argument("--out", type=Path, help="also write the figures to this .json (and a .csv beside it)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda [default: auto]")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads torch may use [default: torch's, all cores]")


def add_iwgan_io_options(parser: argparse.ArgumentParser, out: str) -> None:
    """quality and reconstruct: the same iWGAN run and input file, each command its own output."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="a `train --method iwgan` run folder")
    parser.add_argument("--input", type=Path, required=True, help="FILE.npz with `images` in [0, 1] or `points`")
    parser.add_argument("--out", type=Path, required=True, help=out)


def add_quality_parser(sub: Any) -> None:
    parser = sub.add_parser("quality", help="iWGAN quality score exp(-||x - G(Q(x))||) of every input",
                            description="The iWGAN paper's quality score and reconstruction error of every input of "
                                        "--input (a .npz with `images` (N, C, H, W) in [0, 1] or `points` (N, 2)), "
                                        "written to --out (CSV: index, quality, reconstruction_error), with a plot of "
                                        "the highest and lowest scoring inputs beside it (OUT with .png).")
    add_iwgan_io_options(parser, out="scores.csv (the plot goes to scores.png)")
    parser.add_argument("--show", type=int, default=16, help="inputs shown at each end of the plot [default: 16]")
    add_common_options(parser)


def add_reconstruct_parser(sub: Any) -> None:
    parser = sub.add_parser("reconstruct", help="iWGAN: inputs beside G(Q(x)), or latent interpolations",
                            description="Rows of inputs (a .npz with `images` in [0, 1] or `points`), each followed by "
                                        "its reconstruction G(Q(x)); with --interpolate N, one row per pair of inputs "
                                        "(0-1, 2-3, ...): G of N codes evenly between Q(x1) and Q(x2), framed by the "
                                        "two inputs (the paper's Figure 5c).")
    add_iwgan_io_options(parser, out="FILE.png")
    parser.add_argument("--count", type=int, default=50, help="inputs reconstructed (the first N) [default: 50]")
    parser.add_argument("--interpolate", type=int, default=None, metavar="STEPS",
                        help="draw latent interpolations with STEPS images per pair instead of reconstructions")
    parser.add_argument("--pairs", type=int, default=8, help="--interpolate: pairs of inputs [default: 8]")
    add_common_options(parser)


def add_plot_parser(sub: Any) -> None:
    parser = sub.add_parser("plot", help="draw a training run's metrics.csv (losses, Wasserstein estimate, gradient "
                                         "penalty, synthesis steps, errors per epoch)",
                            description="Draw a run's metrics.csv to a PNG (train writes RUN/metrics.png itself).")
    parser.add_argument("run", type=Path, help="a run folder of `winn-robust train` (or its metrics.csv)")
    parser.add_argument("--out", type=Path, help="PNG to write [default: RUN/metrics.png]")


def add_texture_parser(sub: Any) -> None:
    from dataclasses import fields as dataclass_fields

    from winn_robust.training.generative import WinnGen

    parser = sub.add_parser("texture", help="train unsupervised WINN on patches of one image and synthesize a texture "
                                            "of any size (WINN paper section 5.2)",
                            description="Train winn-gen with Appendix C's critic (winn64) on random PATCH x PATCH "
                                        "crops of one image, then synthesize a SIZE x SIZE texture by anysize "
                                        "synthesis: a working image one patch larger, random patches each step, "
                                        "overlapping gradients averaged, the centre cut out (docs/textures.md). Every "
                                        "default is the paper's: a GPU's work; for a CPU see docs/textures.md.")
    parser.add_argument("--image", type=Path, required=True, help="the texture: a PNG or JPEG (grey or colour)")
    parser.add_argument("--size", type=int, default=256, help="side of the output texture in pixels [default: 256]")
    parser.add_argument("--out", type=Path, required=True, help="the output PNG")
    parser.add_argument("--patch", type=int, default=64,
                        help="side of the training crops, the critic's input [default: 64, the paper's]")
    parser.add_argument("--patches-per-step", type=int, default=200,
                        help="random patches scored per synthesis step [default: 200, the paper's]")
    parser.add_argument("--steps", type=int, default=None,
                        help="synthesis step budget per cascade stage; a stage stops earlier once the mean patch "
                             "score reaches its critic's threshold [default: --ascent-max-steps]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops, the training and the synthesis "
                                                            "[default: 0]")
    parser.add_argument("--synthesis-seed", type=int, default=None,
                        help="seed of the synthesis alone (start canvas, patches, thresholds): other textures from one "
                             "kept --run [default: --seed]")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="critic and synthesis batch (half positives, half negatives) [default: 100]")
    parser.add_argument("--run", type=Path, default=None,
                        help="keep the training run in this folder: an unfinished run there is resumed, a finished "
                             "one is reused (synthesis only) [default: a temporary folder, deleted]")
    group = parser.add_argument_group("winn-gen settings", "the training schedule (WINN paper section 5.1; "
                                                           "[default: the paper's])")
    for f in dataclass_fields(WinnGen):
        flag = METHOD_SETTING_FLAGS[f.name]
        kind = finite_float if isinstance(WinnGen.__dataclass_fields__[f.name].default, float) else int
        group.add_argument(flag, dest=f"method_{f.name}", type=kind, default=None, metavar="VALUE",
                           help=SETTING_HELP[f.name])
    add_common_options(parser)


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
                        help="comma list of methods to train, baseline first; choices: baseline, icn, winn, pgd-at, "
                             "trades, fast-at, or your own as NAME=FILE.py:FUNCTION [default: the preset's]")
    parser.add_argument("--reference", type=str.lower,
                        help="a second comparison in the aggregate beside the baseline, e.g. pgd-at: the verdict gives "
                             "every other method's difference from it too, with its interval")
    parser.add_argument("--eps", help="comma list of eps in [0, 1] pixel units for the tables (decimals or fractions "
                                      "such as 1/8); the first is the table eps [default: the preset's]")
    parser.add_argument("--sweep", help="comma list of extra eps for the error-vs-eps plot (FGSM) [default: the preset's]")
    parser.add_argument("--test-limit", "--limit", dest="test_limit", type=int,
                        help="evaluate on the first N test images (--limit is the same, as in attack) [default: all]")
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
                        help=attack_option_help("pgd.steps=100"))
    parser.add_argument("--seeds", help="training seeds: a comma list (0,1,2) or a count (3 means 0,1,2); use this "
                                        "or --seed, not both [default: the preset's]")
    parser.add_argument("--jobs", type=int, default=1,
                        help="training runs and evaluations at once, as separate processes, the threads split "
                             "between them (one per GPU when several are visible) [default: 1]")
    parser.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                        help="run each training and evaluation under torchrun with N processes (one GPU each, or "
                             "N CPU processes), one job at a time; the batch size must divide by N [default: 1]")
    add_launcher_options(parser)
    parser.add_argument("--eval-seed", type=int, default=0, help="seed of the random attacks [default: 0]")
    add_metric_option(parser, "; summary.md, beside the paper, stays in error")
    parser.add_argument("--extend", action="store_true",
                        help="allow a changed --epochs on a study already in --out: continue its runs to the new "
                             "budget and evaluate again (without it a changed budget is refused)")
    parser.add_argument("--data-dir", type=Path, help="folder holding the dataset's original files")
    parser.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    add_method_setting_options(parser, " [default: the preset's or the method's]")
    for field in fields(TrainConfig):
        if field.name in ("method", "method_options"):
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.name == "seed":
            parser.add_argument(flag, type=int, default=None,
                                help="one training seed S (the same as --seeds S,); for several use --seeds")
            continue
        if field.type in ("bool", bool):
            parser.add_argument(flag, action="store_const", const=True, default=None, help=FIELD_HELP[field.name])
        else:
            kind = fraction if field.name == "select_eps" else \
                {"int": int, "float": finite_float, "str": str}.get(str(field.type).split(" ")[0], int)
            parser.add_argument(flag, type=kind, default=None, help=FIELD_HELP[field.name] + " [default: the preset's]")
    add_common_options(parser)


def add_launcher_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local",
                        help="where the jobs run: local (child processes, --jobs at once), slurm (one SLURM job per "
                             "training run and per evaluation, through submitit, from a login node) or submitit-local "
                             "(submitit's local executor: the slurm path without SLURM, to try a set-up) "
                             "[default: local]; see docs/cluster.md")
    defaults = LaunchSettings()
    parser.add_argument("--slurm-partition", help="slurm: the partition to submit to [default: the cluster's]")
    parser.add_argument("--slurm-gpus-per-job", type=int, default=defaults.slurm_gpus_per_job, metavar="G",
                        help="slurm: GPUs per job; with --nproc-per-node N give N [default: 0]")
    parser.add_argument("--slurm-cpus-per-job", type=int, default=defaults.slurm_cpus_per_job, metavar="C",
                        help=f"slurm: CPUs per job, split over its torchrun processes [default: {defaults.slurm_cpus_per_job}]")
    parser.add_argument("--slurm-time", type=int, default=defaults.slurm_time, metavar="MIN",
                        help=f"slurm and submitit-local: time limit per job, minutes [default: {defaults.slurm_time}]")
    parser.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                        help="slurm: any other sbatch option, e.g. account=myproject or qos=high; repeat for more")


def add_run_job_parser(sub: Any) -> None:
    parser = sub.add_parser("run-job", help="run one job of `reproduce` from its spec.json (what reproduce's launchers "
                                            "start; also under torchrun)",
                            description="Run the training or evaluation a spec.json in OUT/jobs/<id>/ describes, as "
                                        "`reproduce` does: a killed job continues where it stopped.")
    parser.add_argument("spec", type=Path, help="a job's spec.json (OUT/jobs/<id>/spec.json)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="winn-robust", description=__doc__.splitlines()[0] if __doc__ else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLE_WORKFLOW)
    parser.add_argument("--version", action="version", version=f"winn-robust {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train_parser(sub)
    add_attack_parser(sub)
    add_report_parser(sub)
    add_sample_parser(sub)
    add_score_parser(sub)
    add_quality_parser(sub)
    add_reconstruct_parser(sub)
    add_plot_parser(sub)
    add_reproduce_parser(sub)
    add_run_job_parser(sub)
    add_texture_parser(sub)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    if distributed.world().distributed and args.command not in ("train", "attack", "run-job"):
        raise distributed.AgreedError(f"only `train`, `attack` and `run-job` run under torchrun; run `winn-robust {args.command}` "
                                      "without torchrun (one process)")
    return int(getattr(commands, f"run_{args.command.replace('-', '_')}")(args) or 0)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse; every rank parses the same argv, so only rank 0 prints help or a usage error."""
    if distributed.world().is_main:
        return parser.parse_args(argv)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return parser.parse_args(argv)


def interrupted_hint(args: argparse.Namespace) -> str:
    """What Ctrl-C kept, and the command that continues, for the interrupted sub-command."""
    out = getattr(args, "out", None)
    if args.command == "train" and out is not None:
        last = Path(out) / "last.pt"
        try:
            from winn_robust.checkpoint import read_meta

            epoch = read_meta(last).epoch if last.is_file() else 0
        except UserError:
            epoch = 0
        if not epoch:
            return "no epoch had finished, nothing was kept; run the same command again"
        return (f"epochs 1-{epoch} are kept in {last}; `winn-robust train --out {out} --resume` continues from "
                f"epoch {epoch}")
    if args.command == "attack" and out is not None:
        return f"finished batches are kept in {out}; the same command with --resume continues"
    if args.command == "texture":
        run = getattr(args, "run", None)
        return (f"finished iterations are kept in {run}; the same command continues" if run is not None else
                "the training run was in a temporary folder and is gone; give --run DIR to keep it")
    if args.command == "reproduce":
        return "finished epochs and evaluations are kept; the same command continues where it stopped"
    return "written files are kept"


def machine_fault(line: str, exc: BaseException) -> int:
    """A fault of the machine: one line, exit 1 (WINN_ROBUST_DEBUG=1 shows the traceback too)."""
    if os.environ.get("WINN_ROBUST_DEBUG"):
        traceback.print_exception(exc)
    if distributed.world().is_main or not distributed.world().distributed:
        print(f"winn-robust: error: {line}", file=sys.stderr)
    if distributed.world().distributed:
        distributed.exit_after_failure(1, exc)
    return 1


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
    previous = stop_request.install()  # SIGTERM and submitit's SIGUSR2 are handled like Ctrl-C
    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        previous[signal.SIGXFSZ] = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ulimit -f: EFBIG, one line
    try:
        return run_command(args)
    finally:
        stop_request.restore(previous)


def run_command(args: argparse.Namespace) -> int:
    """The sub-command, its failures each turned into one line and an exit status."""
    try:
        if stop_request.requested() and args.command not in ("train", "run-job"):
            raise stop_request.Stopped(stop_request.requested())  # asked during start-up; training saves first
        return dispatch(args)
    except MachineError as exc:
        return machine_fault(str(exc), exc)
    except OSError as exc:
        if not is_fault(exc):
            raise
        return machine_fault(fault_line(exc), exc)
    except UserError as exc:
        line = distributed.report_line(exc)
        if line is not None:
            print(f"winn-robust: error: {cli_message(exc, line)}", file=sys.stderr)
        if distributed.world().distributed:
            distributed.exit_after_failure(2, exc)
        return 2
    except KeyboardInterrupt as exc:
        here = distributed.world()
        stopped = exc if isinstance(exc, stop_request.Stopped) else stop_request.Stopped()
        if here.is_main:  # torchrun passes Ctrl-C to every rank: one line is enough
            how = "interrupted" if stopped.signum == signal.SIGINT else f"stopped by {stopped.signal_name}"
            print(f"winn-robust: {how}; {stopped.saved or interrupted_hint(args)}", file=sys.stderr)
        if here.distributed:
            distributed.exit_after_failure(stopped.exit_status, exc)
        return stopped.exit_status
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
