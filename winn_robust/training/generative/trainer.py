"""The generative trainer: one loop for every generative method (unsupervised WINN, WGAN-GP, ...).

It owns what is the same for all of them, as the supervised trainer does for its methods: the seed
(weights, data order, every random draw comes from one seeded stream), the run folder and its
lock, metrics.csv (one row per iteration), cost accounting (forward and backward image-passes of
every network, counted by hooks, and seconds), atomic checkpoints and a --resume that continues
bit-identically. last.pt holds the networks, their optimizers, the random streams, the learner's
small state and the list of append-only part files (pool/epoch_NNN.pt, with sha256); a method's
milestones (WINN's cascades) get their own checkpoint files (`cascade-k.pt`) beside it.

A generative run has no validation error: best.pt is not written; what samples read is last.pt and
the milestone files. A stop signal (SIGTERM, SLURM's time-limit signal, Ctrl-C) is honoured at the
next iteration boundary, after last.pt is written, so --resume continues from there.

Under torchrun the same loop runs data-parallel, as the supervised trainer does: every rank
builds the same networks from the seed and keeps the same random stream, the learner computes
each global batch's critic terms on its rank's rows and averages the gradients (base.py), its
syntheses are split across ranks and all-gathered (every rank holds the same pool), the logged
terms and pass counts are reduced, a stop request on any rank stops every rank at the same
iteration boundary, and rank 0 alone writes files while the others wait at a barrier."""
from __future__ import annotations

import csv
import io
import json
import platform
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from winn_robust import distributed, stop_request
from winn_robust.checkpoint import CheckpointMeta, atomic_save, file_sha256, load_tensors, read_training_state, save_checkpoint
from winn_robust.distributed import main_only
from winn_robust.errors import SettingError, UserError
from winn_robust.images import save_image_grid
from winn_robust.storage import atomic_write_text
from winn_robust.training.config import TrainConfig
from winn_robust.training.cost import PassCounter
from winn_robust.training.generative.base import GenerativeMethod, Learner, LearnerSetup
from winn_robust.training.run_folder import LAST_NAME, METRICS_NAME, RunFolder
from winn_robust.training.trainer import TrainData, TrainResult, check_same_run, read_metrics
from winn_robust.version import __version__

HEAD_COLUMNS = ("epoch", "method")
TAIL_COLUMNS = ("seconds_total", "forward_passes", "backward_passes", "bytes_written")
PART_DIR = "pool"


def milestone_file(name: str) -> str:
    return f"{name}.pt"


class GenerativeTrainer:
    def __init__(self, config: TrainConfig, data: TrainData, out_dir: Path, device: torch.device,
                 progress: bool = True) -> None:
        method = config.training_method
        if not isinstance(method, GenerativeMethod):
            raise UserError(f"{config.method} is not a generative method")
        self.world = distributed.world()
        self.config, self.method, self.data = config, method, data
        self.out_dir, self.device, self.progress = Path(out_dir), device, progress and self.world.is_main
        torch.manual_seed(config.seed)
        self.rng = torch.Generator(device=device).manual_seed(config.seed)
        self.learner: Learner = method.learner(LearnerSetup(config, data.train_images, device, self.rng, self.progress,
                                                            held_out=data.val_images, world=self.world))
        self.counters = [PassCounter(module) for module in (*self.learner.modules.values(),
                                                            *self.learner.auxiliary.values())]
        self.iteration = 0
        self.rows: list[dict[str, Any]] = []
        self.part_files: list[dict[str, Any]] = []
        self.cost: dict[str, Any] = {"train_seconds": 0.0, "forward_passes": 0, "backward_passes": 0}
        self.extra_metadata: dict[str, Any] = {}

    @property
    def fields(self) -> tuple[str, ...]:
        return HEAD_COLUMNS + tuple(self.learner.columns) + TAIL_COLUMNS

    def networks(self) -> nn.ModuleDict:
        return nn.ModuleDict(self.learner.modules)

    # ---- one iteration ------------------------------------------------------------------------
    def run_iteration(self) -> dict[str, Any]:
        self.iteration += 1
        for counter in self.counters:
            counter.take()
        started = time.perf_counter()
        row: dict[str, Any] = {"epoch": self.iteration, "method": self.config.method}
        row.update(self.learner.iterate(self.iteration))
        seconds = time.perf_counter() - started
        counts = torch.tensor([sum(c.forward for c in self.counters), sum(c.backward for c in self.counters)],
                              dtype=torch.long, device=self.device)
        forward, backward = (int(v) for v in distributed.all_reduce_sum(counts).tolist())  # every rank's passes
        row.update(seconds_total=seconds, forward_passes=forward, backward_passes=backward)
        self.cost["train_seconds"] += seconds
        self.cost["forward_passes"] += forward
        self.cost["backward_passes"] += backward
        return row

    # ---- checkpoints ----------------------------------------------------------------------------
    def metadata(self, role: str) -> CheckpointMeta:
        extra = dict(self.extra_metadata)
        return CheckpointMeta(
            arch=self.config.arch, dataset=self.data.dataset, image_shape=tuple(self.data.image_shape), num_classes=1,
            method=self.config.method, class_names=(), method_options=dict(self.config.method_options),
            hparams=self.config.to_dict(), seed=self.config.seed, select_by="last", epoch=self.iteration,
            val_size=len(self.data.val_images), train_size=len(self.data.train_images), world_size=self.world.world_size,
            winn_robust_version=__version__, torch_version=str(torch.__version__),
            python_version=platform.python_version(), saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            torch_threads=torch.get_num_threads(), cost=dict(self.cost), data_dir=extra.pop("data_dir", None),
            best_epoch=self.iteration, data_fingerprint=self.data.fingerprint(), role=role,
            extra={**extra, "generative": self.learner.summary(), "networks": list(self.learner.modules),
                   "total_iterations": self.learner.total_iterations})

    def save(self, row: dict[str, Any]) -> int:
        """Write the iteration's files on rank 0 (`write`); every rank takes the learner's new
        parts, so all keep the same state. Returns the bytes written (0 on other ranks)."""
        return self.write(row, self.learner.new_parts()) or 0

    @main_only
    def write(self, row: dict[str, Any], new_parts: dict[str, list[torch.Tensor]]) -> int:
        """The iteration's new part files, its milestone checkpoint, then last.pt (in that order,
        so last.pt never lists a file that is not on disk). Returns the bytes written."""
        written = 0
        for name, tensors in new_parts.items():
            for tensor in tensors:
                index = sum(1 for record in self.part_files if record["name"] == name)
                file = f"{PART_DIR}/epoch_{index:03d}.pt" if name == "negatives" else f"{PART_DIR}/{name}_{index:03d}.pt"
                written += atomic_save({"name": name, "index": index, "images": tensor.detach().cpu().contiguous()},
                                       self.out_dir / file)
                self.part_files.append({"file": file, "name": name, "index": index,
                                        "sha256": file_sha256(self.out_dir / file)})
        milestone = self.learner.milestone(self.iteration)
        if milestone is not None:
            written += save_checkpoint(self.out_dir / milestone_file(milestone), self.networks(),
                                       replace(self.metadata("milestone"), extra={**self.metadata("milestone").extra,
                                                                                  "milestone": milestone}))
        before = written

        def record_size(size: int) -> dict[str, Any]:
            row["bytes_written"] = before + size
            return {"metrics_rows": json.dumps(self.rows)}

        state = {"optimizers": {k: o.state_dict() for k, o in self.learner.optimizers.items()},
                 "rng_state": self.rng.get_state(), "cpu_rng_state": torch.get_rng_state(),
                 "part_files": list(self.part_files), "learner_state": self.learner.state()}
        written += save_checkpoint(self.out_dir / LAST_NAME, self.networks(), self.metadata("last"),
                                   on_size=record_size, **state)
        return written

    def resume(self, path: Path) -> None:
        payload, meta = read_training_state(path, self.device, "optimizers", "generative training state")
        check_same_run(path, meta, self.config, self.data)
        self.networks().load_state_dict(payload["model"])
        for name, optimizer in self.learner.optimizers.items():
            optimizer.load_state_dict(payload["optimizers"][name])
        self.rng.set_state(payload["rng_state"].cpu())
        torch.set_rng_state(payload["cpu_rng_state"].cpu())
        self.part_files = list(payload.get("part_files", []))
        parts: dict[str, list[torch.Tensor]] = {}
        for record in self.part_files:
            file = self.out_dir / record["file"]
            if not file.is_file() or file_sha256(file) != record["sha256"]:
                raise UserError(f"cannot resume: {file} is missing or differs from the file last.pt recorded; restore "
                                "the run's own files or start afresh in a new `out`", mentions=("out",))
            parts.setdefault(record["name"], []).append(load_tensors(file, self.device, what="part file")["images"])
        self.learner.restore_parts(parts)
        self.learner.load_state(payload["learner_state"])
        self.rows = list(json.loads(payload.get("metrics_rows", "[]")))
        self.iteration = meta.epoch
        self.cost = {**self.cost, **meta.cost}

    # ---- outputs --------------------------------------------------------------------------------
    @main_only
    def write_metrics(self) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.out_dir / METRICS_NAME, text.getvalue())

    @main_only
    def save_preview(self) -> None:
        images = self.learner.preview(100)
        if images is not None and len(images):
            save_image_grid(images, self.out_dir / "negatives" / f"epoch_{self.iteration:03d}.png", nrow=10)


def start(config: TrainConfig, data: TrainData, out_dir: Path, device: torch.device, resume: bool, progress: bool,
          extra_metadata: dict[str, Any]) -> GenerativeTrainer:
    """A trainer, resumed from out_dir/last.pt when asked (every rank reads it and the part files),
    with work left to do."""
    trainer = GenerativeTrainer(config, data, out_dir, device, progress)
    trainer.extra_metadata = dict(extra_metadata)
    if resume:
        last = out_dir / LAST_NAME
        if not last.is_file():
            raise SettingError("resume", f": no {last} to resume from; run without `resume` to start fresh",
                               mentions=("resume",))
        trainer.resume(last)
        trainer.rows = trainer.rows or read_metrics(out_dir / METRICS_NAME, trainer.iteration)
        trainer.write_metrics()
    total = trainer.learner.total_iterations
    if trainer.iteration >= total:
        raise UserError(f"nothing to do: {out_dir} already holds all {total} iterations of {config.method}")
    if trainer.learner.finished:
        raise UserError(f"nothing to do: {out_dir} stopped by its own rule after {trainer.iteration} iterations "
                        f"of {config.method}")
    return trainer


def train_generative(config: TrainConfig, data: TrainData, out_dir: str | Path, device: torch.device | str = "cpu",
                     resume: bool = False, progress: bool = True,
                     on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
                     extra_metadata: dict[str, Any] | None = None) -> TrainResult:
    """Train a generative method into out_dir (last.pt, milestone checkpoints, metrics.csv, pool/,
    negatives/ grids); `train`'s counterpart, called for methods whose `generative` is true.
    Under torchrun every rank calls it alike (see the module's docstring)."""
    out_dir = Path(out_dir)
    main_only(out_dir.mkdir)(parents=True, exist_ok=True)
    lock = distributed.agree(main_only(RunFolder(out_dir).open_for_writing))  # one writer per run folder
    try:
        trainer = distributed.agree(lambda: start(config, data, out_dir, torch.device(device), resume, progress,
                                                  extra_metadata or {}))
        total = trainer.learner.total_iterations
        bar = tqdm(total=total, initial=trainer.iteration, desc=f"{config.method} {config.arch}",
                   disable=not trainer.progress, unit="iteration")
        try:
            with stop_request.polling():  # a stop signal is honoured at the next iteration boundary, after last.pt
                while trainer.iteration < total and not trainer.learner.finished:
                    row = trainer.run_iteration()
                    trainer.rows.append(row)
                    with stop_request.deferred():
                        trainer.save(row)
                        trainer.write_metrics()
                        trainer.save_preview()
                    distributed.barrier()  # the other ranks wait for rank 0's files
                    bar.update(1)
                    if on_epoch_end is not None:
                        on_epoch_end(trainer.iteration, row)
                    signum = distributed.max_over_ranks(stop_request.requested(), trainer.device)  # any rank's
                    if trainer.iteration < total and signum:
                        raise stop_request.Stopped(signum,
                                                   f"iterations 1-{trainer.iteration} are saved in {out_dir / LAST_NAME}; "
                                                   "the same command with --resume continues from there")
        finally:
            bar.close()
    finally:
        if lock is not None:
            lock.release()
    return TrainResult(out_dir, trainer.iteration, float("nan"), trainer.iteration, trainer.rows)
