"""What both benchmark scripts share, so they differ only in what they measure.

- data: Fashion-MNIST from the Debian folder when present (each script has its own fallback)
- timing: device synchronisation, one timed call, and the warm-up + round-robin repeat loop
- provenance: the library's machine / device / software description, runtime notes
- output: aligned tables, the JSON report, and the `UserError` -> exit status 2 wrapper"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from winn_robust.data import ImageDataset, load_dataset
from winn_robust.environment import device_description, machine_description, software_versions
from winn_robust.errors import UserError

FASHION_DIR = "/usr/share/datasets/fashion-mnist"

T = TypeVar("T")


# ----------------------------------------------------------------------------- data
def fashion_mnist_folder(data_dir: str | None) -> str | None:
    """The Fashion-MNIST folder to use (--data-dir, else the Debian package's), or None when it
    does not exist: the caller then falls back to data that is always there."""
    folder = data_dir or FASHION_DIR
    return folder if Path(folder).is_dir() else None


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


# ----------------------------------------------------------------------------- timing
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


@dataclass
class Timings:
    """Every repeat's seconds per name (in run order) and each name's output of the last repeat."""

    seconds: dict[str, list[float]]
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, float]:
        """The minimum: the run least disturbed by other load on a shared machine."""
        return {name: min(times) for name, times in self.seconds.items()}

    @property
    def median(self) -> dict[str, float]:
        return {name: statistics.median(times) for name, times in self.seconds.items()}


def time_round_robin(runs: Mapping[str, Callable[[], Any]], device: torch.device, repeats: int,
                     warm_up: Mapping[str, Callable[[], Any]] | None = None) -> Timings:
    """Warm every callable up once (allocator, oneDNN / cuDNN plans, lazy imports), then time
    them `repeats` times round-robin, so drifting machine load hits all of them alike.
    `warm_up` gives cheaper stand-ins for the warm-up calls (e.g. one batch); default: `runs`."""
    for run in (warm_up or runs).values():
        run()
    sync(device)
    timings = Timings({name: [] for name in runs})
    for _ in range(repeats):
        for name, run in runs.items():
            timings.outputs[name], seconds = timed(run, device)
            timings.seconds[name].append(seconds)
    return timings


# ----------------------------------------------------------------------------- provenance
def load_average() -> float:
    return os.getloadavg()[0]


def runtime_note() -> str:
    """torch version, CPU threads and load now: what explains a slow number on a shared machine."""
    return f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {load_average():.2f}"


def environment_record(devices: Iterable[torch.device]) -> dict[str, Any]:
    """Which machine, devices and software produced the numbers (the library's own description)."""
    devices = list(devices)
    return {"machine": {str(d): machine_description(d) for d in devices},
            "devices": {str(d): device_description(d) for d in devices},
            "software": software_versions(), "torch_threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------- output
def rule_table(header: str, rows: Iterable[str], indent: str = "") -> str:
    """A header, a rule as wide as the header, then the rows; every line indented by `indent`."""
    return "\n".join([indent + header, indent + "-" * len(header), *(indent + row for row in rows)])


def total_line(seconds: float) -> str:
    return f"\ntotal benchmark time {seconds:.1f} s; load average now {load_average():.2f}"


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


def run_main(main: Callable[[], object]) -> None:
    """Run a benchmark's main: input the user can fix (`UserError`) is one line on stderr and
    exit status 2, like the CLI, instead of a traceback."""
    try:
        main()
    except UserError as exc:
        print(f"{Path(inspect.getfile(main)).name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
