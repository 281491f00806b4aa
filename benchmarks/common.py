"""What every benchmark script shares, so each differs only in what it measures.

- data: Fashion-MNIST from the Debian folder when present (each script has its own fallback),
  the dataset default, the steady epochs of a metrics.csv
- pipelines: a `Pipeline` is a name (its table row) and a callable doing the same work as the
  other pipelines of its group; `time_pipelines` warms each up once and times them round-robin
  (`Timings`: best and median seconds, ratio columns such as "x harness", "x floor speed")
- floors: the bare-torch projected ascent the attack and defence floors share
- provenance: the machine line (CPUs, torch, threads, load), the library's machine / device /
  software description
- output: `Column` tables, the JSON report (`--json`) and the `UserError` -> exit status 2 wrapper"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from winn_robust.data import ImageDataset, load_dataset
from winn_robust.environment import device_description, machine_description, software_versions
from winn_robust.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

FASHION_DIR = "/usr/share/datasets/fashion-mnist"

T = TypeVar("T")


# ----------------------------------------------------------------------------- data
def fashion_mnist_folder(data_dir: str | None) -> str | None:
    """The Fashion-MNIST folder to use (--data-dir, else the Debian package's), or None when it
    does not exist: the caller then falls back to data that is always there."""
    folder = data_dir or FASHION_DIR
    return folder if Path(folder).is_dir() else None


def default_data(data: str | None, data_dir: str | None) -> tuple[str, str | None]:
    """(dataset name, folder): --data when given, else Fashion-MNIST when its folder exists,
    else the bundled digits."""
    if data is not None:
        return data, data_dir
    folder = fashion_mnist_folder(data_dir)
    return ("fashion-mnist", folder) if folder is not None else ("digits", None)


def load_fashion_mnist(data_dir: str | None, fallback: str) -> tuple[ImageDataset, str] | None:
    """(dataset, folder) when Fashion-MNIST can be read, else None. A folder that exists but
    cannot be read prints a note naming `fallback` instead of failing: a benchmark measures
    speed, and any images of the right shape serve that."""
    folder = fashion_mnist_folder(data_dir)
    if folder is None:
        return None
    try:
        return load_dataset("fashion-mnist", data_dir=folder), folder
    except Exception as exc:  # a broken folder must not stop a benchmark
        print(f"note: could not read Fashion-MNIST from {folder} ({exc}); using {fallback}")
        return None


def steady(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a trainer's metrics.csv after the first (warm-up) epoch, when there are two or more."""
    return frame[frame["epoch"] > 1] if len(frame) > 1 else frame


# ----------------------------------------------------------------------------- pipelines and timing
def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so a timer measures the work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """(result, wall seconds) of one call, synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    result = run()
    sync(device)
    return result, time.perf_counter() - start


@dataclass(frozen=True)
class Pipeline:
    """One way of doing a benchmark's job: its name (the table row) and a callable doing the same
    work as the other pipelines of its group. `warm_up` is a cheaper stand-in for the warm-up call
    (e.g. one batch of the images); default: `run` itself."""

    name: str
    run: Callable[[], Any]
    warm_up: Callable[[], Any] | None = None


@dataclass
class Timings:
    """Every repeat's seconds per pipeline (in run order) and each one's output of the last repeat."""

    seconds: dict[str, list[float]]
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, float]:
        """The minimum: the run least disturbed by other load on a shared machine."""
        return {name: min(times) for name, times in self.seconds.items()}

    @property
    def median(self) -> dict[str, float]:
        return {name: statistics.median(times) for name, times in self.seconds.items()}

    def ratio(self, name: str, reference: str) -> float:
        """best[name] / best[reference]: "x harness" and "x floor" (above 1: `name` is slower)
        with the reference second; "x floor speed" and "speedup" with the floor or the slower
        pipeline first (above 1: faster than the reference)."""
        best = self.best
        return best[name] / best[reference]

    def rows(self, items: int | None = None, ratios: Mapping[str, str | None] | None = None,
             per_second: str = "images_per_second") -> dict[str, dict[str, Any]]:
        """One record per pipeline: best, median and every time; `items / best` as `per_second`
        when `items` is given; and for each (column, reference) of `ratios` (a None reference is
        skipped) best / the reference's best."""
        best, median = self.best, self.median
        out: dict[str, dict[str, Any]] = {}
        for name in self.seconds:
            row: dict[str, Any] = {"seconds_best": best[name], "seconds_median": median[name],
                                   "seconds_all": self.seconds[name]}
            if items is not None:
                row[per_second] = items / best[name]
            for column, reference in (ratios or {}).items():
                if reference is not None:
                    row[column] = best[name] / best[reference]
            out[name] = row
        return out


def time_pipelines(pipelines: Iterable[Pipeline], device: torch.device, repeats: int) -> Timings:
    """Warm every pipeline up once (allocator, oneDNN / cuDNN plans, lazy imports), then time them
    `repeats` times round-robin, so drifting machine load hits all of them alike."""
    pipelines = list(pipelines)
    names = [p.name for p in pipelines]
    if len(set(names)) != len(names):
        raise ValueError(f"pipeline names must be unique, got {names}")
    for p in pipelines:
        (p.warm_up or p.run)()
    sync(device)
    timings = Timings({name: [] for name in names})
    for _ in range(repeats):
        for p in pipelines:
            timings.outputs[p.name], seconds = timed(p.run, device)
            timings.seconds[p.name].append(seconds)
    return timings


def time_round_robin(runs: Mapping[str, Callable[[], Any]], device: torch.device, repeats: int) -> Timings:
    """`time_pipelines` of named callables."""
    return time_pipelines([Pipeline(name, run) for name, run in runs.items()], device, repeats)


# ----------------------------------------------------------------------------- floors
Loss = Callable[[torch.Tensor], torch.Tensor]          # logits -> the scalar the ascent maximises
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (iterate, input gradient) -> next iterate


def bare_ascent(model: torch.nn.Module, start: torch.Tensor, loss_of: Loss, step: Step, steps: int,
                first_logits: list[torch.Tensor] | None = None) -> torch.Tensor:
    """`steps` forward + input-backward passes, each followed by the threat model's `step` (the
    library's step rule: winn_robust.attacks.pgd.linf_step, pgd_l2.l2_step_rule, so the iterates
    are bit-identical to ours); nothing else: no bookkeeping, no forward on the last iterate.
    `first_logits` receives the first pass's logits (the clean predictions when starting at x).
    The caller freezes the model (frozen_eval). Returns the last iterate, detached."""
    current = start
    for index in range(steps):
        current = current.detach().requires_grad_(True)
        logits = model(current)
        if index == 0 and first_logits is not None:
            first_logits.append(logits.detach())
        (grad,) = torch.autograd.grad(loss_of(logits), current)
        current = step(current.detach(), grad)
    return current.detach()


# ----------------------------------------------------------------------------- provenance
def load_average() -> float:
    return os.getloadavg()[0]


def runtime_note() -> str:
    """The machine line: CPUs, torch version, CPU threads and load now (what explains a slow
    number on a shared machine)."""
    return (f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
            f"load average {load_average():.2f}")


def environment_record(devices: Iterable[torch.device]) -> dict[str, Any]:
    """Which machine, devices and software produced the numbers (the library's own description)."""
    devices = list(devices)
    return {"machine": {str(d): machine_description(d) for d in devices},
            "devices": {str(d): device_description(d) for d in devices},
            "software": software_versions(), "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "load_average": load_average()}


# ----------------------------------------------------------------------------- output
@dataclass(frozen=True)
class Column:
    """One column of a printed table: its title, its width (at least the title's), the format
    spec of a number cell (".2f", "+.1%"; a str cell is printed as it is), the alignment, and the
    text before it (dropped for the first column)."""

    title: str
    width: int = 0
    fmt: str = ""
    align: str = ">"
    gap: str = " "

    def cell(self, value: Any) -> str:
        text = value if isinstance(value, str) else format(value, self.fmt)
        return f"{text:{self.align}{max(self.width, len(self.title))}}"


def table(columns: Sequence[Column], rows: Iterable[Sequence[Any]], indent: str = "") -> str:
    """The header, a rule and one line per row (a short row leaves the last columns out)."""
    def line(cells: Sequence[Any]) -> str:
        return "".join((c.gap if i else "") + c.cell(v) for i, (c, v) in enumerate(zip(columns, cells))).rstrip()
    return rule_table(line([c.title for c in columns]), [line(r) for r in rows], indent)


def rule_table(header: str, rows: Iterable[str], indent: str = "") -> str:
    """A header, a rule as wide as the header, then the rows; every line indented by `indent`."""
    return "\n".join([indent + header, indent + "-" * len(header), *(indent + row for row in rows)])


def total_line(seconds: float) -> str:
    return f"\ntotal benchmark time {seconds:.1f} s; load average now {load_average():.2f}"


def add_json_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", type=Path, default=None, help="write every number (and every repeat's time) here")


def config_record(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as JSON values (paths as strings)."""
    return {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}


def write_json(path: Path | None, report: Mapping[str, Any], default: Callable[[Any], Any] | None = None) -> None:
    """Write the report to `path` (creating its folder) and say so; nothing when `path` is None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=default))
    print(f"wrote {path}")


def finish(args: argparse.Namespace, begin: float, devices: Iterable[torch.device], report: Mapping[str, Any],
           default: Callable[[Any], Any] | None = float) -> dict[str, Any]:
    """The end of every benchmark's main: the total-time line, then the report with the options,
    the environment and the total seconds, written to --json when given. Returns the report."""
    total = time.perf_counter() - begin
    print(total_line(total))
    out = {"config": config_record(args), **report, "environment": environment_record(devices), "total_seconds": total}
    write_json(getattr(args, "json", None), out, default=default)
    return out


def run_main(main: Callable[[], object]) -> None:
    """Run a benchmark's main: input the user can fix (`UserError`) is one line on stderr and
    exit status 2, like the CLI, instead of a traceback."""
    try:
        main()
    except UserError as exc:
        print(f"{Path(inspect.getfile(main)).name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
