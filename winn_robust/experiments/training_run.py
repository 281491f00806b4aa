"""One training run into one folder, as `winn-robust train` and a `reproduce` training job both
do it: join torchrun's process group (when launched by it), prepare the folder (--resume
continues, --force replaces, nothing else overwrites), load the data, train, draw the curves.

The settings come from a callable because under torchrun every rank resolves them inside
`distributed.agree` (a resume reads them from the run's last.pt): one rank failing stops all."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch

from winn_robust import distributed, stop_request
from winn_robust.device import resolve_device
from winn_robust.errors import SettingError, UserError
from winn_robust.training import TrainConfig, train
from winn_robust.training.generative import is_generative
from winn_robust.training.generative.trainer import train_generative
from winn_robust.training.inputs import load_train_data
from winn_robust.training.run_folder import RunFolder
from winn_robust.training.trainer import TrainData, TrainResult

Settings = Callable[[], tuple[TrainConfig, "Path | None"]]  # -> (config, data folder)


def prepare_run_folder(out: Path, resume: bool, force: bool) -> None:
    """--resume continues, --force replaces (only the files winn-robust wrote), and nothing else
    overwrites a run."""
    if resume and force:
        raise SettingError("resume", "and `force` contradict each other: `resume` continues the run, `force` replaces it",
                           mentions=("force", "resume"))
    folder = RunFolder(out)
    folder.refuse_foreign("train into")
    if not resume and folder.holds_run():
        if not force:
            raise UserError(f"{out} already holds a training run; pass `resume` to continue it, `force` to replace "
                            "it, or choose another `out`", mentions=("resume", "force", "out"))
        if distributed.world().is_main:
            folder.clear()


def run_training(settings: Settings, out: Path, *, download: bool = False, device: str = "auto",
                 resume: bool = False, force: bool = False, progress: bool = False,
                 dist_timeout: float = distributed.DEFAULT_TIMEOUT_MINUTES) -> TrainResult | None:
    """Train one model into `out`; rank 0 returns the result (the other ranks None)."""
    if dist_timeout <= 0:
        raise distributed.AgreedError(f"`dist_timeout` must be positive, got {dist_timeout}", mentions=("dist_timeout",))
    started = time.perf_counter()
    dev = resolve_device(device)
    here = distributed.init_from_env(dev, dist_timeout)

    hold = ExitStack()

    def prepare() -> tuple[TrainConfig, Path | None, TrainData]:
        if here.is_main:  # one writer per run folder, before anything there is read or deleted
            hold.enter_context(RunFolder(out).lock())
        prepare_run_folder(out, resume, force)
        config, data_dir = settings()
        distributed.check_batch_split(config.batch_size)  # before loading any data
        data = load_train_data(config.data, data_dir, download, config.val_size, config.seed, config.train_limit, dev)
        return config, data_dir, data

    with hold, stop_request.polling():  # a stop signal from here on is honoured at the first batch boundary
        return _train_prepared(out, dev, here, started, resume, progress, download, distributed.agree(prepare))


def _train_prepared(out: Path, dev: torch.device, here: distributed.World, started: float, resume: bool,
                    progress: bool, download: bool, prepared: tuple[TrainConfig, Path | None, TrainData]
                    ) -> TrainResult | None:
    """The training itself, while this process holds the run folder's lock."""
    config, data_dir, data = prepared
    where = f"device {dev}, {torch.get_num_threads()} thread(s)" if not here.distributed else \
        (f"{here.world_size} ranks ({distributed.backend_for(dev)}, {dev.type}), batch {config.batch_size} = "
         f"{here.world_size} x {config.batch_size // here.world_size}")
    say = distributed.main_only(print)
    say(f"training {config.method} {config.arch} on {config.data}: {len(data.train_images)} train / "
        f"{len(data.val_images)} validation images, seed {config.seed}, {where}", file=sys.stderr)
    extra = {"data_dir": str(Path(data_dir).resolve())} if data_dir else {}
    generative = is_generative(config.training_method)
    trainer = train_generative if generative else train
    result = trainer(config, data, out, dev, resume=resume, progress=progress, extra_metadata=extra)
    if here.is_main and generative:
        from winn_robust.reporting.plots import plot_generative_metrics

        plot = plot_generative_metrics(result.out_dir / "metrics.csv", result.out_dir / "metrics.png")
        print(f"seed {config.seed}: {config.method} trained {result.last_epoch} iterations; total "
              f"{time.perf_counter() - started:.0f} s; checkpoints in {result.out_dir} (last.pt and each stage's), "
              f"metrics in {result.out_dir / 'metrics.csv'} and {plot}; draw images with `winn-robust sample "
              f"--checkpoint {result.out_dir} --count N --out FILE.npz`")
    elif here.is_main:
        from winn_robust.reporting.plots import plot_training_metrics

        plot = plot_training_metrics(result.out_dir / "metrics.csv", result.out_dir / "metrics.png")
        print(f"seed {config.seed}: best validation error {result.best_val_error:.4f} at epoch {result.best_epoch} of "
              f"{result.last_epoch}; total {time.perf_counter() - started:.0f} s; checkpoints in {result.out_dir} "
              f"(best.pt, last.pt), metrics in {result.out_dir / 'metrics.csv'} and {plot}")
    distributed.shutdown()
    return result if here.is_main else None
