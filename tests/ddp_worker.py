"""`winn_robust`'s CLI with one rank tampered with, for tests/test_distributed.py and
tests/test_generative_distributed.py (torchrun runs this file on every rank; it is not a test module).

WINN_TEST_RANK picks the rank, WINN_TEST_FAULT what happens there (several: comma-separated):
  bad-data      its --data-dir points at an empty folder (a node without the dataset)
  raise         Trainer.synthesis_pass raises RuntimeError (a bug or a device fault mid-epoch)
  guard-writes  any attempt to create, write or rename a file under --out raises
  signal-after-1  the generative trainer sends itself SIGUSR2 after its first iteration (a stop
                asked of this rank alone: every rank must stop at that iteration boundary)
Any other rank runs the plain CLI."""
from __future__ import annotations

import builtins
import os
import sys
from pathlib import Path

from winn_robust.cli import main


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def guard_writes(out: Path) -> None:
    """Every way the package writes a file (open for writing, os.open with O_CREAT/O_WRONLY, mkdir,
    replace, rename) fails under `out`, so a write from this rank ends the run (exit status 2)."""
    out = out.resolve()

    def check(path: object, what: str) -> None:
        if isinstance(path, (str, os.PathLike)) and Path(os.fspath(path)).resolve().is_relative_to(out):
            raise AssertionError(f"rank {os.environ['RANK']} tried to {what} {path}")

    real_open, real_os_open = builtins.open, os.open
    real_mkdir, real_replace, real_rename = os.mkdir, os.replace, os.rename

    def guarded_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if any(c in mode for c in "wax+"):
            check(file, "write")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            check(path, "write")
        return real_os_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        check(path, "create the folder")
        return real_mkdir(path, *args, **kwargs)

    def guarded_replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        check(dst, "replace")
        return real_replace(src, dst, *args, **kwargs)

    def guarded_rename(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        check(dst, "rename onto")
        return real_rename(src, dst, *args, **kwargs)

    builtins.open, os.open, os.mkdir = guarded_open, guarded_os_open, guarded_mkdir  # type: ignore[assignment]
    os.replace, os.rename = guarded_replace, guarded_rename  # type: ignore[assignment]
    print(f"write guard active on rank {os.environ['RANK']} for {out}", file=sys.stderr)


def tamper(argv: list[str]) -> list[str]:
    if os.environ.get("RANK") != os.environ.get("WINN_TEST_RANK", "1"):
        return argv
    for fault in os.environ.get("WINN_TEST_FAULT", "").split(","):
        argv = inject(fault, argv)
    return argv


def inject(fault: str, argv: list[str]) -> list[str]:
    if fault == "bad-data":
        empty = Path(option(argv, "--out")).parent / "no-dataset-here"
        empty.mkdir(parents=True, exist_ok=True)
        argv[argv.index("--data-dir") + 1] = str(empty)
    elif fault == "raise":
        from winn_robust.training.trainer import Trainer

        def broken(self: Trainer) -> dict[str, float]:
            raise RuntimeError(f"injected failure in epoch {self.epoch} on rank {os.environ['RANK']}")

        Trainer.synthesis_pass = broken  # type: ignore[method-assign]
    elif fault == "signal-after-1":
        import signal

        from winn_robust.training.generative.trainer import GenerativeTrainer

        iterate = GenerativeTrainer.run_iteration

        def signalled(self: GenerativeTrainer) -> dict[str, object]:
            row = iterate(self)
            if self.iteration == 1:
                os.kill(os.getpid(), signal.SIGUSR2)
            return row

        GenerativeTrainer.run_iteration = signalled  # type: ignore[method-assign]
    elif fault == "guard-writes":
        guard_writes(Path(option(argv, "--out")))
    return argv


if __name__ == "__main__":
    sys.exit(main(tamper(sys.argv[1:])))
