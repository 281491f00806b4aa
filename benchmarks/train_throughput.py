"""Training throughput: what WINN's introspective training costs over the plain baseline.

Trains one architecture on one dataset as baseline and as WINN with the project's own
`winn_robust.training.train` into a temporary folder, then reads the per-epoch metrics.csv the
trainer writes (seconds_classification, seconds_synthesis, seconds_validation, seconds_total,
synthesis_steps_mean, negatives_per_second, pool_size). Nothing is timed here; the numbers are
the trainer's own.

Reading the summary:
  s/epoch        seconds per epoch, split into classification, synthesis and validation.
                 The first epoch carries one-off warm-up (oneDNN / cuDNN plans, CUDA context),
                 so with 2+ epochs the summary averages epochs 2.. and says so.
  neg/s          pseudo-negatives synthesized per second of synthesis (classes x
                 --negatives-per-class per epoch).
  steps          mean Adam steps the synthesis groups took (cap --synthesis-max-steps; the
                 batch runs until its slowest group stops, so the slowest group sets the cost).
  WINN/baseline  total: full epoch ratio; classification: the classification passes alone
                 (WINN's forward sees positives, negatives and interpolates, plus the
                 gradient-penalty double backward).

--amp-check runs one synthesis batch (`synthesize_negatives`, the trainer's own entry point)
with the trained WINN model twice, from the same start images and tau (the same rng seed),
in fp32 and under bf16 autocast, and prints the largest pixel difference, the
gap |mean f - tau| as the synthesis measured it and as fp32 re-measures it on the final
images, and the steps used: whether autocast moves results beyond the 1e-3 tolerance.

--floor times the trainer's WINN classification and synthesis passes against the same passes
done bare (benchmarks/train_floor.py: same batches, same synthesis schedule, no bookkeeping) and
prints each pass's "x floor speed" (1.0 = at the floor); --compile-check times one classification
and one synthesis step eager, channels-last, torch.compile and both.

    python -m benchmarks.train_throughput                       # CPU, and CUDA when present
    python -m benchmarks.train_throughput --device cpu --amp-check
    python -m benchmarks.train_throughput --device cpu --floor-only --compile-check
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch

from benchmarks import train_floor
from benchmarks.common import (
    FASHION_DIR,
    Column,
    add_json_option,
    default_data,
    finish,
    rule_table,
    run_main,
    runtime_note,
    steady,
    table,
    timed,
)
from winn_robust.checkpoint import load_checkpoint
from winn_robust.data import ImageDataset, load_dataset
from winn_robust.device import devices_to_measure
from winn_robust.models import Classifier
from winn_robust.models.generator import RandomGenerator
from winn_robust.training import TrainConfig, train
from winn_robust.training.inputs import make_train_data
from winn_robust.training.synthesis import SynthesisResult, generator_for, synthesize_negatives

COLUMNS = ("seconds_classification", "seconds_synthesis", "seconds_validation", "seconds_total",
           "synthesis_steps_mean", "synthesis_steps_max", "synthesis_unconverged", "negatives_per_second", "pool_size")


# Defaults that differ by device, to keep the CPU run near 5 minutes on 2 cores.
CPU_NEGATIVES_PER_CLASS = 50     # paper: 100 (used on CUDA)
CPU_AMP_NEGATIVES_PER_CLASS = 10  # bf16 on a CPU without native bf16 is ~10x slower than fp32
CPU_AMP_MAX_STEPS = 300


def negatives_for(args: argparse.Namespace, device: torch.device) -> int:
    if args.negatives_per_class is not None:
        return args.negatives_per_class
    return 100 if device.type == "cuda" else CPU_NEGATIVES_PER_CLASS


def amp_sizes(args: argparse.Namespace, device: torch.device) -> tuple[int, int]:
    cpu = device.type == "cpu"
    negatives = negatives_for(args, device)
    per_class = args.amp_negatives_per_class or (min(CPU_AMP_NEGATIVES_PER_CLASS, negatives) if cpu else negatives)
    steps = args.amp_max_steps or (min(CPU_AMP_MAX_STEPS, args.synthesis_max_steps) if cpu else args.synthesis_max_steps)
    return per_class, steps


def config_for(method: str, args: argparse.Namespace, data_name: str, device: torch.device,
               epochs: int | None = None) -> TrainConfig:
    negatives = negatives_for(args, device)
    return TrainConfig(method=method, arch=args.arch, data=data_name, epochs=epochs or args.epochs,
                       negatives_per_class=negatives, initial_negatives_per_class=negatives,
                       synthesis_max_steps=args.synthesis_max_steps, val_size=args.val_size,
                       train_limit=args.train_limit, seed=args.seed)


def summarize(device: str, runs: dict[str, pd.DataFrame]) -> dict[str, Any]:
    out: dict[str, Any] = {"device": device}
    for method, frame in runs.items():
        s = steady(frame)
        out[method] = {c: float(s[c].mean()) for c in COLUMNS if c in s}
        out[method]["epochs_averaged"] = [int(e) for e in s["epoch"]]
    if "baseline" in runs and "winn" in runs:
        b, w = out["baseline"], out["winn"]
        out["ratio_total"] = w["seconds_total"] / b["seconds_total"]
        out["ratio_classification"] = w["seconds_classification"] / b["seconds_classification"]
    return out


EPOCH_COLUMNS = (Column("method", 9, align="<"), Column("device", 6, align="<"), Column("epoch", 5, "d"),
                 Column("s classify", 10, ".2f"), Column("s synth", 8, ".2f"), Column("s valid", 8, ".2f"),
                 Column("s total", 8, ".2f"), Column("steps mean", 10, ".1f"), Column("steps max", 9, ".0f"),
                 Column("unconv", 6, ".0f"), Column("neg/s", 7, ".1f"), Column("pool", 6, "d"))
EPOCH_FIELDS = ("seconds_classification", "seconds_synthesis", "seconds_validation", "seconds_total",
                "synthesis_steps_mean", "synthesis_steps_max", "synthesis_unconverged", "negatives_per_second")
SUMMARY_COLUMNS = (Column("device", 6, align="<"), Column("epochs", 7, align="<"), Column("neg/class", 9, "d"),
                   Column("baseline s/ep", 13, ".2f"), Column("base classify", 13, ".2f"), Column("WINN s/ep", 10, ".2f"),
                   Column("WINN classify", 13, ".2f"), Column("WINN synth", 10, ".2f"), Column("neg/s", 7, ".1f"),
                   Column("steps", 7, ".1f"), Column("WINN/base total", 15, ".2f"), Column("WINN/base classify", 18, ".2f"))


def format_epochs(device: str, runs: dict[str, pd.DataFrame]) -> str:
    rows = [[method, device, int(r["epoch"]), *(r[c] for c in EPOCH_FIELDS), int(r["pool_size"])]
            for method, frame in runs.items() for _, r in frame.iterrows()]
    return table(EPOCH_COLUMNS, rows)


def format_summary(summaries: list[dict[str, Any]]) -> str:
    rows = []
    for s in summaries:
        b, w = s.get("baseline"), s.get("winn")
        if b is None or w is None:
            continue
        rows.append([s["device"], ",".join(str(e) for e in w["epochs_averaged"]), s.get("negatives_per_class", 0),
                     b["seconds_total"], b["seconds_classification"], w["seconds_total"], w["seconds_classification"],
                     w["seconds_synthesis"], w["negatives_per_second"], w["synthesis_steps_mean"], s["ratio_total"],
                     s["ratio_classification"]])
    return table(SUMMARY_COLUMNS, rows)


# ----------------------------------------------------------------------------- autocast check
class Fp32Starts:
    """The frozen generator, sampling with autocast switched off. `synthesize_negatives` samples
    its start images itself, so under the bf16 run's autocast the generator's linear and convs
    would run in bf16 and hand that run other (bf16) starts than the fp32 run's. The check is
    about the synthesis alone, so both runs must start from the same fp32 images. Duck-typed:
    `synthesize_negatives` uses only `image_shape` and `sample`."""

    def __init__(self, generator: RandomGenerator) -> None:
        self.generator = generator
        self.image_shape = generator.image_shape

    def sample(self, n: int, rng: torch.Generator | None = None, device: torch.device | None = None) -> torch.Tensor:
        device_type = (device or next(self.generator.parameters()).device).type
        with torch.autocast(device_type, enabled=False):
            return self.generator.sample(n, rng, device)


def seeded_rng(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def replay_tau(generator: RandomGenerator, num_classes: int, per_class: int, tau_range: tuple[float, float],
               seed: int, device: torch.device) -> torch.Tensor:
    """The tau a run seeded with `seed` drew: the fp32 re-measurement of the gap needs it, and
    `synthesize_negatives` documents its draw order (the starts, then one tau per class)."""
    rng = seeded_rng(seed, device)
    generator.sample(num_classes * per_class, rng, device)
    low, high = tau_range
    return low + (high - low) * torch.rand(num_classes, generator=rng, device=device)


def synthesis_run(model: Classifier, generator: RandomGenerator, config: TrainConfig, num_classes: int, per_class: int,
                  tau_range: tuple[float, float], max_steps: int, seed: int, device: torch.device,
                  bf16: bool) -> tuple[SynthesisResult, float]:
    """(result, seconds) of one synthesis batch; a fresh rng with `seed` gives every run the same
    start images and tau."""
    rng = seeded_rng(seed, device)
    starts = cast(RandomGenerator, Fp32Starts(generator))

    def run() -> SynthesisResult:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:  # the trainer never does this: synthesis stays fp32 (this check is why)
            return synthesize_negatives(model, starts, num_classes, per_class, tau_range, rng, config,
                                        max_steps=max_steps, progress=False, desc="amp check")
    return timed(run, device)


def measure(model: Classifier, result: SynthesisResult, tau: torch.Tensor, tolerance: float) -> dict[str, Any]:
    """Steps and gaps of one run: as the synthesis measured them, and re-measured in fp32 (and
    bf16) on its final images, which shows whether autocast stopped groups too early."""
    images = result.images
    groups, per_class = images.shape[:2]
    device_type = images.device.type
    with torch.no_grad():  # re-measure the gap in fp32 on the final images
        f32 = model.score(images.flatten(0, 1))[1].float().view(groups, per_class)
        with torch.autocast(device_type, dtype=torch.bfloat16):
            f16 = model.score(images.flatten(0, 1))[1].float().view(groups, per_class)
    gap32 = (f32.mean(1) - tau).abs()
    return {"steps_mean": float(result.steps.float().mean()), "steps_max": int(result.steps.max()),
            "gap_as_measured_mean": float(result.final_gap.mean()),
            "gap_as_measured_max": float(result.final_gap.max()),
            "gap_fp32_mean": float(gap32.mean()), "gap_fp32_max": float(gap32.max()),
            "groups_over_tolerance_fp32": int((gap32 > tolerance).sum()),
            "false_stops": int(((result.final_gap <= tolerance) & (gap32 > tolerance)).sum()),
            "max_abs_f_bf16_minus_fp32": float((f16 - f32).abs().max()),
            "max_abs_groupmean_f_bf16_minus_fp32": float((f16.mean(1) - f32.mean(1)).abs().max())}


def check_replayed_tau(fp32: dict[str, Any]) -> None:
    """The fp32 run measured its gap in fp32 on the same final images, so both gaps must agree;
    if not, the replayed tau is not the one the synthesis drew and every gap above is wrong."""
    if abs(fp32["gap_fp32_max"] - fp32["gap_as_measured_max"]) > 1e-4:
        raise RuntimeError("amp check: the replayed tau differs from the one synthesize_negatives drew "
                           "(has its draw order changed?)")


def amp_check(checkpoint: Path, device: torch.device, per_class: int, max_steps: int, seed: int) -> dict[str, Any]:
    """One synthesis batch in fp32 and under bf16 autocast from the same start images and tau, with
    the checkpoint's synthesis hyper-parameters, start images from its frozen generator and tau
    drawn from its last epoch's tau range."""
    model, meta = load_checkpoint(checkpoint, device)
    config = TrainConfig.from_dict(meta.hparams)
    k = meta.num_classes
    generator = generator_for(config, meta.image_shape, device)
    low, high = meta.tau_range
    tau_range = (low, high)
    tau = replay_tau(generator, k, per_class, tau_range, seed + 1, device)
    out: dict[str, Any] = {"device": str(device), "checkpoint_epoch": meta.epoch, "images": k * per_class, "groups": k,
                           "max_steps": max_steps, "tolerance": config.synthesis_tolerance, "tau_range": [low, high]}
    finals = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        result, seconds = synthesis_run(model, generator, config, k, per_class, tau_range, max_steps, seed + 1, device, bf16)
        finals[name] = result.images
        out[name] = {"seconds": seconds, **measure(model, result, tau, config.synthesis_tolerance)}
    check_replayed_tau(out["fp32"])
    out["max_abs_image_diff"] = float((finals["fp32"] - finals["bf16"]).abs().max())
    out["mean_abs_image_diff"] = float((finals["fp32"] - finals["bf16"]).abs().mean())
    return out


def format_amp(check: dict[str, Any]) -> str:
    lines = [f"autocast check on {check['device']}: one synthesis batch of {check['images']} images "
             f"({check['groups']} groups) with the WINN model of epoch {check['checkpoint_epoch']}, "
             f"max {check['max_steps']} steps, tolerance {check['tolerance']:g}, "
             f"tau range [{check['tau_range'][0]:.4f}, {check['tau_range'][1]:.4f}]"]
    header = (f"{'run':<5} {'seconds':>8} {'steps mean':>10} {'steps max':>9} {'gap (as run) mean/max':>22} "
              f"{'gap (fp32) mean/max':>20} {'groups > tol (fp32)':>19} {'max|f bf16-f32|':>15} {'max|mean f diff|':>16}")
    rows = []
    for name in ("fp32", "bf16"):
        r = check[name]
        rows.append(f"{name:<5} {r['seconds']:>8.2f} {r['steps_mean']:>10.1f} {r['steps_max']:>9d} "
                    f"{r['gap_as_measured_mean']:>11.2e}/{r['gap_as_measured_max']:<10.2e} "
                    f"{r['gap_fp32_mean']:>10.2e}/{r['gap_fp32_max']:<9.2e} {r['groups_over_tolerance_fp32']:>19d} "
                    f"{r['max_abs_f_bf16_minus_fp32']:>15.2e} {r['max_abs_groupmean_f_bf16_minus_fp32']:>16.2e}")
    lines.append(rule_table(header, rows, indent="  "))
    lines.append(f"  final images fp32 vs bf16: max |diff| {check['max_abs_image_diff']:.4g}, "
                 f"mean |diff| {check['mean_abs_image_diff']:.4g} (pixels in [-1, 1])")
    tol, groups = check["tolerance"], check["groups"]
    over16, over32 = check["bf16"]["groups_over_tolerance_fp32"], check["fp32"]["groups_over_tolerance_fp32"]
    false_stops = check["bf16"]["false_stops"]
    lines.append(f"  bf16 stopped {false_stops} of {groups} groups on a bf16 gap <= {tol:g} whose fp32 gap is > {tol:g}; "
                 f"groups over {tol:g} in fp32: bf16 run {over16}, fp32 run {over32} (step cap reached: "
                 f"bf16 {check['bf16']['steps_max'] >= check['max_steps']}, fp32 {check['fp32']['steps_max'] >= check['max_steps']})")
    if over16 > over32 or false_stops:
        verdict = f"bf16 autocast BREAKS the {tol:g} tolerance (final images off by up to {check['max_abs_image_diff']:.3g})"
    elif over32:
        verdict = "inconclusive: the fp32 run itself did not converge within the step cap; raise --amp-max-steps"
    else:
        verdict = f"bf16 autocast keeps every group within {tol:g} when re-measured in fp32"
    lines.append(f"  verdict: {verdict}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vanilla")
    ap.add_argument("--data", default=None, help=f"dataset (default fashion-mnist from {FASHION_DIR} when present, else digits)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--val-size", type=int, default=1000,
                    help="validation images (default 1000, not the paper's 5000: validation is not what is measured)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--negatives-per-class", type=int, default=None,
                    help=f"synthesized per class and epoch, also the initial pool (default: paper's 100 on CUDA, "
                         f"{CPU_NEGATIVES_PER_CLASS} on CPU)")
    ap.add_argument("--synthesis-max-steps", type=int, default=2000)
    ap.add_argument("--methods", default="baseline,winn")
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all", help="all = CPU, and CUDA when present")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--amp-check", action="store_true", help="also compare one synthesis batch in fp32 and bf16 autocast")
    ap.add_argument("--amp-check-only", action="store_true",
                    help="skip the throughput runs: train WINN for --amp-train-epochs (or use --amp-checkpoint) and run the amp check")
    ap.add_argument("--amp-train-epochs", type=int, default=1, help="WINN epochs to train for --amp-check-only")
    ap.add_argument("--amp-checkpoint", type=Path, default=None, help="a WINN last.pt to run the amp check on (no training)")
    ap.add_argument("--amp-negatives-per-class", type=int, default=None,
                    help=f"amp check batch per class (default: --negatives-per-class on CUDA, "
                         f"at most {CPU_AMP_NEGATIVES_PER_CLASS} on CPU)")
    ap.add_argument("--amp-max-steps", type=int, default=None,
                    help=f"amp check step cap (default: --synthesis-max-steps on CUDA, at most {CPU_AMP_MAX_STEPS} on CPU)")
    ap.add_argument("--floor", action="store_true", help="also time the trainer's WINN passes against their bare floor")
    ap.add_argument("--floor-only", action="store_true", help="only the floor (and --compile-check): no throughput runs")
    ap.add_argument("--floor-train-limit", type=int, default=500, help="training images of the floor's epoch (default 500)")
    ap.add_argument("--floor-repeats", type=int, default=3, help="timed repeats of each floor comparison (best is shown)")
    ap.add_argument("--compile-check", action="store_true",
                    help="time one classification and one synthesis step eager, channels-last and torch.compile")
    ap.add_argument("--compile-steps", type=int, default=3, help="steps per timed compile-check repeat")
    ap.add_argument("--keep-dir", type=Path, default=None, help="train into this folder and keep it (default: a temp folder)")
    add_json_option(ap)
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.amp_checkpoint is not None:
        args.amp_check_only = True
    if args.amp_check_only:
        args.amp_check, args.methods = True, [] if args.amp_checkpoint else ["winn"]
    if args.amp_check and "winn" not in args.methods:
        args.methods.append("winn")
    if args.floor_only:
        args.floor, args.methods = True, []
    return args


def train_epochs(args: argparse.Namespace) -> int | None:
    """Epochs per training run: --amp-train-epochs for --amp-check-only, else --epochs (None)."""
    return args.amp_train_epochs if args.amp_check_only else None


def print_header(args: argparse.Namespace, dataset: ImageDataset, devices: list[torch.device]) -> None:
    epochs = train_epochs(args) or args.epochs
    negatives = ", ".join(f"{negatives_for(args, d)} on {d.type}" for d in devices)
    print(f"training throughput: {args.arch} on {dataset.name} {tuple(dataset.image_shape)}, train limit "
          f"{args.train_limit}, {epochs} epochs, batch 100, negatives per class (initial pool and per epoch) "
          f"{negatives}, synthesis max {args.synthesis_max_steps} steps, validation {args.val_size} images; "
          f"methods {', '.join(args.methods)}")
    if args.negatives_per_class is None and any(d.type == "cpu" for d in devices):
        print(f"note: on CPU the default is {CPU_NEGATIVES_PER_CLASS} negatives per class, not the paper's 100, "
              "to keep the run near 5 minutes on 2 cores (--negatives-per-class 100 for the paper's value)")
    if args.val_size != 5000:
        print(f"note: validation uses {args.val_size} images instead of the paper's 5000 to keep the run short")


def train_methods(args: argparse.Namespace, dataset: ImageDataset, device: torch.device, root: Path) -> dict[str, pd.DataFrame]:
    """Train every method on one device; each method's per-epoch metrics.csv as a frame."""
    data = make_train_data(dataset, args.val_size, args.seed, args.train_limit, device)
    runs: dict[str, pd.DataFrame] = {}
    for method in args.methods:
        out_dir = root / device.type / method
        config = config_for(method, args, dataset.name, device, train_epochs(args))
        t0 = time.perf_counter()
        train(config, data, out_dir, device, progress=False)
        runs[method] = pd.read_csv(out_dir / "metrics.csv")
        print(f"  {method} on {device}: {time.perf_counter() - t0:.1f} s wall for {config.epochs} epochs")
    return runs


def floor_and_compile(args: argparse.Namespace, dataset: ImageDataset, device: torch.device, root: Path
                      ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The trainer against its floor (WINN, --floor-train-limit images), and the compile check."""
    data = make_train_data(dataset, args.val_size, args.seed, args.floor_train_limit, device)
    config = dataclasses.replace(config_for("winn", args, dataset.name, device), train_limit=args.floor_train_limit)
    out = root / device.type / "floor"
    floor = train_floor.measure_floor(config, data, device, out, args.floor_repeats) if args.floor else None
    check = None
    if args.compile_check:
        inputs = train_floor.prepare(config, data, device, out)
        check = train_floor.measure_compile(inputs, config, device, args.floor_repeats, args.compile_steps)
    return floor, check


def print_results(args: argparse.Namespace, frames: dict[str, dict[str, pd.DataFrame]], summaries: list[dict[str, Any]],
                  checks: list[dict[str, Any]]) -> None:
    print()
    for device_type, runs in frames.items():
        print(format_epochs(device_type, runs))
        print()
    if summaries:
        epochs_note = "epochs 2.. (epoch 1 includes warm-up)" if args.epochs > 1 else "epoch 1 only (includes warm-up)"
        print(f"per-epoch means over {epochs_note}:")
        print(format_summary(summaries))
    for check in checks:
        print()
        print(format_amp(check))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    devices = devices_to_measure(args.device)
    begin = time.perf_counter()
    dataset = None
    if args.methods or args.floor or args.compile_check:
        data_name, data_dir = default_data(args.data, args.data_dir)
        dataset = load_dataset(data_name, data_dir)
        print_header(args, dataset, devices)
    print(f"{runtime_note()}; seconds are the trainer's own metrics.csv columns")
    summaries: list[dict[str, Any]] = []
    frames: dict[str, dict[str, pd.DataFrame]] = {}
    checks: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    compiles: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="winn-train-bench-") as tmp:
        root = args.keep_dir or Path(tmp)
        for device in devices:
            if dataset is not None and (args.floor or args.compile_check):
                floor, compiled = floor_and_compile(args, dataset, device, root)
                floors += [floor] if floor else []
                compiles += [compiled] if compiled else []
            if dataset is not None and args.methods:
                runs = frames[device.type] = train_methods(args, dataset, device, root)
                if not args.amp_check_only:
                    summaries.append({**summarize(device.type, runs), "negatives_per_class": negatives_for(args, device)})
            if args.amp_check:
                per_class, steps = amp_sizes(args, device)
                checkpoint = args.amp_checkpoint or root / device.type / "winn" / "last.pt"
                checks.append(amp_check(checkpoint, device, per_class, steps, args.seed))
    print_results(args, frames, summaries, checks)
    for floor in floors:
        print()
        print(train_floor.format_floor(floor))
    for compiled in compiles:
        print()
        print(train_floor.format_compile(compiled))
    return finish(args, begin, devices, {
        "dataset": dataset.name if dataset else None, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "epochs": {d: {m: f.to_dict(orient="records") for m, f in runs.items()} for d, runs in frames.items()},
        "summary": summaries, "amp_check": checks, "floor": floors, "compile_check": compiles})


if __name__ == "__main__":
    run_main(main)
