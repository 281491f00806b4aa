"""Data-parallel scaling of training and of evaluation: throughput of 1 rank against N ranks under torchrun.

Launches `python -m torch.distributed.run --standalone --nproc-per-node R -m winn_robust train ...`
as a subprocess for R = 1 and R = N with the same settings and seed, into temporary folders, and
reads the trainer's own metrics.csv (seconds_classification, seconds_synthesis: rank 0's wall
clock, which includes waiting for the other ranks). Nothing is timed here.

  classification images/s  training images / seconds_classification of an epoch
  synthesis images/s       negatives synthesized per epoch (classes x --negatives-per-class) /
                           seconds_synthesis; the ranks split the classes, so a rank's share ends
                           with its slowest group and the epoch with the slowest rank
  speedup                  N-rank images/s / 1-rank images/s
  efficiency               speedup / (N-rank resources / 1-rank resources)

On a GPU machine the 1-rank run uses one GPU and the N-rank run N GPUs (efficiency = speedup / N).
On the CPU the 1-rank run is one process with N threads and the N-rank run N processes of one
thread each (gloo): both use the same N cores, so efficiency = speedup, and it says whether
data parallelism over processes beats intra-op threads on this machine. A third CPU run, one
process on one core, gives the per-core figures (speedup against it / cores used), which tell
whether the threads or the ranks fall short. With 2+ epochs the first
(warm-up) epoch is left out, and each figure is the median over the other epochs (robust to a
spike of load on a shared machine). The two runs' final weights are compared as a check that they
trained the same model: float differences only (one process with several threads sums in another
order), which grow with the epochs.

Evaluation: the models the 1-rank and N-rank runs trained are then cross-evaluated (both attacked,
each adversarial batch evaluated on both) by `python -m torch.distributed.run ... -m winn_robust
attack` with the same run layout (1 rank, N ranks, one core), reading the evaluation's own
`attack_time_s` from results.json (rank 0's clock around the attacks alone, no start-up, no
report writing); attacked images/s = attacked images x attack runs / attack_time_s. The N-rank
tables are checked byte-identical to the 1-rank ones.

    python -m benchmarks.scaling                                  # CPU: 2 ranks; GPU: every GPU
    python -m benchmarks.scaling --ranks 4 --epochs 3 --json scaling.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmarks.common import (
    FASHION_DIR,
    Column,
    add_json_option,
    default_data,
    finish,
    run_main,
    runtime_note,
    steady,
    table,
)
from winn_robust.checkpoint import read_checkpoint
from winn_robust.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PASSES = ("classification", "synthesis")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=None, help="N (default: the GPUs torch sees, else 2)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present")
    ap.add_argument("--method", default="winn")
    ap.add_argument("--arch", default="vanilla")
    ap.add_argument("--data", default=None, help=f"dataset (default fashion-mnist from {FASHION_DIR} when present, else digits)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--val-size", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=100, help="the global batch (the paper's 100), split across the ranks")
    ap.add_argument("--negatives-per-class", type=int, default=None, help="default: 100 on CUDA, 20 on the CPU")
    ap.add_argument("--synthesis-max-steps", type=int, default=None, help="default: 2000 on CUDA, 200 on the CPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-core-reference", action="store_true",
                    help="CPU: skip the third run, one process on one core (the per-core efficiency reference)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed for each training run")
    ap.add_argument("--keep-dir", type=Path, default=None, help="train into this folder and keep it (default: a temp folder)")
    ap.add_argument("--eval-n", type=int, default=1000, help="test images the evaluation attacks (0: skip the evaluation)")
    ap.add_argument("--eval-attacks", default="fgsm,pgd", help="attacks of the evaluation, at eps 0.125")
    ap.add_argument("--eval-pgd-steps", type=int, default=10)
    ap.add_argument("--eval-batch-size", type=int, default=250, help="images per work item (items are dealt to the ranks)")
    add_json_option(ap)
    args = ap.parse_args(argv)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no GPU; use --device cpu or auto")
    args.device = "cuda" if cuda else "cpu"
    args.ranks = args.ranks or (torch.cuda.device_count() if cuda else 2)
    if args.ranks < 2:
        raise UserError(f"--ranks must be at least 2 to measure scaling, got {args.ranks}")
    if cuda and args.ranks > torch.cuda.device_count():
        raise UserError(f"--ranks {args.ranks} but torch sees {torch.cuda.device_count()} GPUs")
    if args.batch_size % args.ranks:
        raise UserError(f"--batch-size {args.batch_size} must be a multiple of --ranks {args.ranks}")
    args.negatives_per_class = args.negatives_per_class or (100 if cuda else 20)
    args.synthesis_max_steps = args.synthesis_max_steps or (2000 if cuda else 200)
    args.data, args.data_dir = default_data(args.data, args.data_dir)
    return args


@dataclass(frozen=True)
class Run:
    """One training run: `ranks` processes of `threads` CPU threads each (GPU runs: one GPU a rank)."""

    ranks: int
    threads: int

    @property
    def label(self) -> str:
        return f"{self.ranks} rank{'s' if self.ranks > 1 else ''} x {self.threads}"

    @property
    def folder(self) -> str:
        return f"ranks{self.ranks}-threads{self.threads}"

    def row_label(self, device: str) -> str:
        """The table's run column: "2 ranks x 1 thread", "1 rank x 2 threads", "2 ranks x 1 GPUs"."""
        unit = "GPU" if device == "cuda" else "thread"
        return f"{self.label} {unit}{'s' if (self.threads > 1 or unit == 'GPU') else ''}"


def planned_runs(args: argparse.Namespace) -> list[Run]:
    """1 rank, then N ranks; on the CPU the 1-rank run gets the N ranks' N cores as threads, and
    (unless --no-core-reference) one process on one core is measured too."""
    if args.device == "cuda":
        return [Run(1, 1), Run(args.ranks, 1)]
    runs = [Run(1, args.ranks), Run(args.ranks, 1)]
    return runs + ([] if args.no_core_reference else [Run(1, 1)])


def train_command(args: argparse.Namespace, ranks: int, out: Path) -> list[str]:
    """The torchrun command line of one run (1 rank too: the same launcher for both)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
               "-m", "winn_robust", "train", "--method", args.method, "--arch", args.arch, "--data", args.data,
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--train-limit", str(args.train_limit),
               "--val-size", str(args.val_size), "--negatives-per-class", str(args.negatives_per_class),
               "--initial-negatives-per-class", str(args.negatives_per_class),
               "--synthesis-max-steps", str(args.synthesis_max_steps), "--seed", str(args.seed),
               "--device", args.device, "--no-progress", "--out", str(out)]
    return command + (["--data-dir", str(args.data_dir)] if args.data_dir else [])


def run_env(threads: int) -> dict[str, str]:
    """This environment, one torchrun job's worth: its threads, this repository first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def torchrun(args: argparse.Namespace, run: Run, command: list[str], what: str) -> None:
    """One torchrun job in this run's environment; a failure is a UserError with its error lines."""
    t0 = time.perf_counter()
    done = subprocess.run(command, env=run_env(run.threads), capture_output=True, text=True, timeout=args.timeout, cwd=REPO)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()][:3]
        raise UserError(f"the {run.label}-thread {what} failed (torchrun exit status {done.returncode}): {' | '.join(errors)}")
    prefix = "" if what == "run" else f"{what}, "
    print(f"  {prefix}{run.label} thread(s): {time.perf_counter() - t0:.1f} s wall, including start-up")


def launch(args: argparse.Namespace, run: Run, out: Path) -> pd.DataFrame:
    """Train once; the metrics.csv rows."""
    torchrun(args, run, train_command(args, run.ranks, out), "run")
    return pd.read_csv(out / "metrics.csv")


def add_speedups(args: argparse.Namespace, rows: list[dict[str, Any]], prefix: str = "") -> None:
    """`{prefix}speedup` and `{prefix}efficiency` of the second run against the first (1 rank), and,
    when one process on one core was measured, `{prefix}speedup_vs_one_core` and
    `{prefix}efficiency_vs_one_core` (per core used) of every run, from `{prefix}images_per_second`."""
    rate = f"{prefix}images_per_second"
    resources = args.ranks if args.device == "cuda" else 1  # CPU: the same cores either way
    one, many = rows[0], rows[1]
    many[f"{prefix}speedup"] = many[rate] / one[rate]
    many[f"{prefix}efficiency"] = many[f"{prefix}speedup"] / resources
    core = next((r for r in rows[2:] if r["ranks"] == 1 and r["threads_per_rank"] == 1), None)
    if core is not None:
        for row in rows:
            row[f"{prefix}speedup_vs_one_core"] = row[rate] / core[rate]
            row[f"{prefix}efficiency_vs_one_core"] = row[f"{prefix}speedup_vs_one_core"] / (row["ranks"] * row["threads_per_rank"])


def speed_cells(row: dict[str, Any], first: bool, prefix: str = "") -> list[str | float]:
    """The speedup and efficiency cells of one row: the first run is the 1.00 reference."""
    if f"{prefix}speedup" in row:
        return [row[f"{prefix}speedup"], row[f"{prefix}efficiency"]]
    return ["1.00" if first else "", "-"]


def summarize(args: argparse.Namespace, frames: dict[Run, pd.DataFrame], classes: int) -> dict[str, Any]:
    """Images/s per pass and run; speedup and efficiency against the first run (1 rank), and on
    the CPU also against one process on one core when it was measured."""
    images = {"classification": args.train_limit, "synthesis": classes * args.negatives_per_class}
    rows: list[dict[str, Any]] = []
    for run, frame in frames.items():
        s = steady(frame)
        row: dict[str, Any] = {"run": run.label, "ranks": run.ranks, "threads_per_rank": run.threads,
                               "epochs_averaged": [int(e) for e in s["epoch"]],
                               "synthesis_steps_mean": float(s["synthesis_steps_mean"].median())}
        for name in PASSES:
            seconds = float(s[f"seconds_{name}"].median())
            row[f"seconds_{name}"] = seconds
            row[f"{name}_images_per_second"] = images[name] / seconds if seconds > 0 else float("nan")
        rows.append(row)
    for name in PASSES:
        add_speedups(args, rows, f"{name}_")
    return {"runs": rows, "images_per_epoch": images, "resources_ratio": args.ranks if args.device == "cuda" else 1}


RUN_COLUMN = Column("run", 16, align="<")
SPEED_COLUMNS = (Column("speedup", 7, ".2f"), Column("effic.", 6, ".2f"))


def format_table(args: argparse.Namespace, summary: dict[str, Any]) -> str:
    columns = [RUN_COLUMN, Column("classify s", 10, ".2f"), Column("classify img/s", 14, ".1f"), *SPEED_COLUMNS,
               Column("synth s", 8, ".2f"), Column("synth img/s", 11, ".1f"), *SPEED_COLUMNS, Column("steps", 6, ".1f")]
    rows = [[Run(r["ranks"], r["threads_per_rank"]).row_label(args.device),
             r["seconds_classification"], r["classification_images_per_second"], *speed_cells(r, i == 0, "classification_"),
             r["seconds_synthesis"], r["synthesis_images_per_second"], *speed_cells(r, i == 0, "synthesis_"),
             r["synthesis_steps_mean"]] for i, r in enumerate(summary["runs"])]
    lines = [table(columns, rows)]
    if "classification_speedup_vs_one_core" in summary["runs"][0]:
        lines.append("against one process on one core (speedup / efficiency per core): " + "; ".join(
            f"{r['run']} thread(s): classify {r['classification_speedup_vs_one_core']:.2f} / "
            f"{r['classification_efficiency_vs_one_core']:.2f}, synth {r['synthesis_speedup_vs_one_core']:.2f} / "
            f"{r['synthesis_efficiency_vs_one_core']:.2f}" for r in summary["runs"][:2]))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- evaluation
EVAL_TABLES = ("per_example.csv", "table.csv", "table.md")


def eval_command(args: argparse.Namespace, ranks: int, models: list[Path], out: Path) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
               "-m", "winn_robust", "attack", "--baseline", f"a={models[0]}", "--model", f"b={models[1]}",
               "--eps", "0.125", "--attack", args.eval_attacks, "--attack-option", f"pgd.steps={args.eval_pgd_steps}",
               "--limit", str(args.eval_n), "--batch-size", str(args.eval_batch_size), "--device", args.device,
               "--no-progress", "--out", str(out)]
    return command + (["--data-dir", str(args.data_dir)] if args.data_dir else [])


def launch_eval(args: argparse.Namespace, run: Run, models: list[Path], out: Path) -> dict[str, Any]:
    """Evaluate once; the attack seconds and the work done, from results.json."""
    torchrun(args, run, eval_command(args, run.ranks, models, out), "evaluation")
    provenance = json.loads((out / "results.json").read_text())["provenance"]
    runs = len(provenance["evaluation"]["attacks"]) * len(provenance["eps"])  # one eps: one run per attack
    seconds = float(provenance["attack_time_s"])
    return {"run": run.label, "ranks": run.ranks, "threads_per_rank": run.threads, "seconds": seconds,
            "attacked_images": int(provenance["n"]) * runs,
            "images_per_second": int(provenance["n"]) * runs / seconds}


def summarize_eval(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    add_speedups(args, rows)
    return rows


def format_eval_table(args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    columns = [RUN_COLUMN, Column("attack s", 9, ".2f"), Column("attacked img/s", 14, ".1f"), *SPEED_COLUMNS,
               Column("x 1 core", 8, ".2f")]
    return table(columns, [[Run(r["ranks"], r["threads_per_rank"]).row_label(args.device), r["seconds"],
                            r["images_per_second"], *speed_cells(r, i == 0), r.get("speedup_vs_one_core", "-")]
                           for i, r in enumerate(rows)])


def weight_difference(one: Path, many: Path) -> float:
    a, b = read_checkpoint(one / "last.pt")["model"], read_checkpoint(many / "last.pt")["model"]
    return max((a[k] - b[k]).abs().max().item() for k in a)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    begin = time.perf_counter()
    backend = "nccl" if args.device == "cuda" else "gloo"
    print(f"data-parallel scaling: {args.method} {args.arch} on {args.data}, {args.train_limit} training images, "
          f"global batch {args.batch_size}, {args.negatives_per_class} negatives per class, synthesis max "
          f"{args.synthesis_max_steps} steps, {args.epochs} epochs; 1 rank vs {args.ranks} ranks ({backend}, {args.device})")
    print(f"{runtime_note()} (this process); seconds are the trainer's own metrics.csv columns (rank 0)")
    frames: dict[Run, pd.DataFrame] = {}
    runs = planned_runs(args)
    with tempfile.TemporaryDirectory(prefix="winn-scaling-") as tmp:
        root = args.keep_dir or Path(tmp)
        for run in runs:
            frames[run] = launch(args, run, root / run.folder)
        classes = int(read_checkpoint(root / runs[0].folder / "last.pt")["metadata"]["num_classes"])
        diff = weight_difference(root / runs[0].folder, root / runs[1].folder)
        eval_rows: list[dict[str, Any]] = []
        identical = True
        if args.eval_n > 0:
            models = [root / runs[0].folder / "best.pt", root / runs[1].folder / "best.pt"]
            for run in runs:
                eval_rows.append(launch_eval(args, run, models, root / f"eval-{run.folder}"))
            first, second = root / f"eval-{runs[0].folder}", root / f"eval-{runs[1].folder}"
            identical = all((first / n).read_bytes() == (second / n).read_bytes() for n in EVAL_TABLES)
    summary = summarize(args, frames, classes)
    means = "epochs 2.. (epoch 1 is warm-up)" if args.epochs > 1 else "epoch 1 (includes warm-up)"
    print(f"\nper-epoch medians over {means}:")
    print(format_table(args, summary))
    basis = "speedup / N (N GPUs against one)" if args.device == "cuda" else \
        "speedup (both runs use the same cores: N threads in one process, or N processes of one thread)"
    print(f"efficiency = {basis}; final weights of the two runs differ by at most {diff:.3g}")
    if eval_rows:
        summarize_eval(args, eval_rows)
        print(f"\ncross-evaluation of the two trained models ({args.eval_attacks} at eps 0.125, pgd {args.eval_pgd_steps} "
              f"steps, {args.eval_n} test images, items of {args.eval_batch_size} dealt to the ranks):")
        print(format_eval_table(args, eval_rows))
        print(f"the {args.ranks}-rank report tables are {'byte-identical to' if identical else 'DIFFERENT from'} "
              "the 1-rank ones")
    return finish(args, begin, [torch.device(args.device)], {
        "summary": summary, "max_abs_weight_diff": diff, "evaluation": eval_rows,
        "evaluation_tables_identical": identical,
        "epochs": {r.label: f.to_dict(orient="records") for r, f in frames.items()}})


if __name__ == "__main__":
    run_main(main)
