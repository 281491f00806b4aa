"""The training loop shared by baseline, ICN and WINN.

Each epoch: a classification pass (positives; for ICN/WINN paired with same-label negatives
from the pool), then for ICN/WINN a synthesis pass that appends new negatives per class,
then validation. The validation split alone picks the best checkpoint; the trainer is never
given the test set. `last.pt` holds everything needed to resume exactly (weights, optimizer,
RNG state, the settings and a fingerprint of the data, and the list of pool files under
`pool/`, one per epoch); `best.pt` holds the weights with the lowest validation error.

A stop request (stop_request.py: SIGTERM, submitit's SIGUSR2 before a time limit, Ctrl-C) is
honoured at the next batch boundary of the classification pass: `partial.pt` then holds the
epoch's permutation, the step reached, the running sums and the weights, optimizer and RNG state
at that step, so a resumed run continues the epoch exactly (bit-identical weights). A request
during synthesis or validation is honoured when the epoch's last.pt is written. Before every
checkpoint the writer checks that the run folder's lock is still its own.

Under torchrun the same loop runs data-parallel (training/parallel.py): every rank draws the
randoms of the whole global batch from one shared stream and computes on its slice, under
DistributedDataParallel; synthesis is split across ranks by class and the new negatives are
all-gathered; the tau range, training and validation error and the logged loss terms are reduced
across ranks; rank 0 alone writes files and shows progress."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import signal
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from winn_robust import distributed, stop_request
from winn_robust.attacks.pgd_l2 import pgd_at_norm
from winn_robust.checkpoint import FORMAT_VERSION, CheckpointMeta, atomic_save, load_tensors, read_training_state, save_checkpoint
from winn_robust.distributed import main_only
from winn_robust.errors import SettingError, UserError
from winn_robust.images import save_class_grid
from winn_robust.models import Classifier, build_model
from winn_robust.storage import atomic_write_text
from winn_robust.training.config import TrainConfig
from winn_robust.training.cost import PassCounter, TrainingCost
from winn_robust.training.divergence import ADVICE, SynthesisDiverged, TrainingDiverged, check_finite
from winn_robust.training.losses import LossTerms, Scorer, interpolation_coefficients
from winn_robust.training.methods import StepContext
from winn_robust.training.parallel import DataParallelScorer, RankSlice
from winn_robust.training.pool import NegativePool, load_pool, save_pool_part
from winn_robust.training.run_folder import BEST_NAME, LAST_NAME, METRICS_NAME, PARTIAL_NAME, RunFolder
from winn_robust.training.synthesis import SynthesisResult, generator_for, synthesize_negatives
from winn_robust.version import __version__

CHECK_EVERY = 50  # steps between host-side finiteness checks
# settings that may differ on --resume because they cannot change what the run computes
RESUMABLE_CHANGES = ("epochs",)
METRIC_FIELDS = ("epoch", "method", "loss", "ce", "introspective", "wasserstein_estimate", "gradient_penalty",
                 "robust_term", "train_eps", "train_error", "val_error", "val_pgd_error", "tau_low", "tau_high",
                 "synthesis_steps_mean", "synthesis_steps_max",
                 "synthesis_unconverged", "pool_size", "seconds_classification", "seconds_synthesis",
                 "seconds_validation", "seconds_total", "negatives_per_second", "forward_passes", "backward_passes",
                 "bytes_written")
SELECTION_PGD_STEPS = 10  # --select-by pgd: PGD-10 (one random start, steps of 2.5 eps / 10) on the validation split

__all__ = ["TrainData", "TrainResult", "Trainer", "TrainingDiverged", "train"]


@dataclass
class TrainData:
    """What the trainer may see: training and validation images only, already on the device."""
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    dataset: str
    class_names: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> dict[str, Any]:
        """Enough to tell whether a resumed run sees the same split of the same data."""
        digest = hashlib.sha256()
        for tensor in (self.train_labels, self.val_labels, self.train_images[:256], self.val_images[:256]):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return {"dataset": self.dataset, "train_size": len(self.train_images), "val_size": len(self.val_images),
                "sha256": digest.hexdigest()}


@dataclass
class Batch:
    """This rank's part of one global batch: positives, labels, and (ICN/WINN) same-label
    negatives and (WINN) interpolation coefficients, all drawn for the whole global batch."""
    pos: torch.Tensor
    labels: torch.Tensor
    neg: torch.Tensor | None
    coefficients: torch.Tensor | None
    part: RankSlice
    global_size: int


@dataclass
class TrainResult:
    out_dir: Path
    best_epoch: int
    best_val_error: float
    last_epoch: int
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path:
        """Weights of the epoch with the lowest validation error (what reports evaluate)."""
        return RunFolder(self.out_dir).best

    @property
    def last_checkpoint(self) -> Path:
        """The full training state of the last finished epoch (what --resume reads)."""
        return RunFolder(self.out_dir).last


def wrong_count(model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """How many images the model gets wrong, on the device (ranks sum their shards' counts)."""
    was_training = model.training
    model.eval()
    wrong = torch.zeros((), dtype=torch.long, device=images.device)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(images[start:start + batch_size])
            wrong += (logits.argmax(1) != labels[start:start + batch_size]).sum()
    model.train(was_training)
    return wrong


def error_rate(model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    return wrong_count(model, images, labels, batch_size).item() / max(1, len(images))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_same_settings(path: Path, meta: CheckpointMeta, config: TrainConfig) -> None:
    """--resume continues one run: every setting that changes what it computes must be the run's
    own. Only `RESUMABLE_CHANGES` may differ."""
    saved = TrainConfig.from_dict(meta.hparams).to_dict()
    for name, value in config.to_dict().items():
        if name not in RESUMABLE_CHANGES and saved.get(name) != value:
            raise UserError(f"cannot resume: {path} was trained with {flag(name)} {saved.get(name)}, this run asks "
                            f"for {flag(name)} {value}; resume with the run's own settings (only `epochs` may change) "
                            "or train into a new `out`", mentions=("epochs", "out"))


def check_same_run(path: Path, meta: CheckpointMeta, config: TrainConfig, data: TrainData) -> None:
    """The run's own settings (`check_same_settings`) and the very data it trained on."""
    check_same_settings(path, meta, config)
    mine, theirs = data.fingerprint(), meta.data_fingerprint
    if theirs is not None and mine != theirs:
        what = next((k for k in ("dataset", "train_size", "val_size") if mine[k] != theirs[k]), "sha256")
        detail = f"{what} {theirs[what]} vs {mine[what]}" if what != "sha256" else "the same sizes but other images or labels"
        raise UserError(f"cannot resume: the training data differs from the data {path} was trained on ({detail}); "
                        "point `data_dir` at the run's own dataset or train into a new `out`", mentions=("data_dir", "out"))


class Trainer:
    def __init__(self, config: TrainConfig, data: TrainData, out_dir: Path, device: torch.device,
                 progress: bool = True) -> None:
        self.config = config
        self.method = config.training_method
        self.method.prepare()
        self.world = distributed.world()
        distributed.check_batch_split(config.batch_size, self.world.world_size)
        self.data = data
        self.out_dir = Path(out_dir)
        self.device = device
        self.progress = progress and self.world.is_main
        torch.manual_seed(config.seed)
        self.model = build_model(config.arch, data.image_shape, data.num_classes).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
        self.rng = torch.Generator(device=device).manual_seed(config.seed)
        self.generator = generator_for(config, data.image_shape, device) if config.introspective else None
        self.pool: NegativePool | None = None
        if self.generator is not None:
            self.pool = NegativePool.from_generator(self.generator, data.num_classes,
                                                    config.initial_negatives_per_class, self.rng, device)
        self.epoch = 0
        self.best_val_error = float("inf")
        self.best_epoch = 0
        self.best_select_value = float("inf")
        self.extra_best: dict[str, dict[str, float]] = {}  # further --select-by rules: value and epoch
        self.cost = {"train_seconds": 0.0, "forward_passes": 0, "backward_passes": 0}
        self.passes = PassCounter(self.model)
        self.tau_range = (0.0, 0.0)
        self.pool_files: list[dict[str, Any]] = []
        self.metric_rows: list[dict[str, Any]] = []  # every epoch's metrics row; last.pt keeps them (metrics.csv is a copy)
        self.extra_metadata: dict[str, Any] = {}
        self.verbose = True
        self.new_negatives: torch.Tensor | None = None
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.amp else nullcontext()
        self._parallel: DataParallelScorer | None = None
        self.folder: RunFolder | None = None  # set by `train`: its lock is checked before every checkpoint
        self.partial: dict[str, Any] | None = None  # a stopped epoch's state (partial.pt), consumed by the next pass
        self.resumed_seconds = 0.0

    @property
    def scorer(self) -> Scorer:
        """What the classification pass calls: the model itself, or, with several ranks, the
        model under DistributedDataParallel (built on first use, after any resume, so it starts
        from the weights every rank loaded)."""
        if not self.world.distributed:
            return self.model
        if self._parallel is None:
            self._parallel = DataParallelScorer(self.model, self.device, detach_critic=not self.config.introspective)
        return self._parallel

    # ---- one epoch ---------------------------------------------------------------------
    def classification_pass(self) -> dict[str, float]:
        cfg, model = self.config, self.model
        model.train()
        n = len(self.data.train_images)
        steps = (n + cfg.batch_size - 1) // cfg.batch_size
        partial, self.partial = self.partial, None
        if partial is None:
            order = torch.randperm(n, generator=self.rng, device=self.device)
            first, sums = 0, torch.zeros(4, device=self.device)
            f_means: list[torch.Tensor] = []
            wrong = torch.zeros((), dtype=torch.long, device=self.device)
            logged_error = True
        else:  # continue a stopped epoch exactly where it stopped
            order, first = partial["order"].to(self.device), int(partial["step"])
            sums, wrong = partial["sums"].to(self.device), partial["wrong"].to(self.device)
            f_means = list(partial["f_means"].to(self.device).unbind(0))
            logged_error = bool(partial["logged_error"])
            self.passes.forward += int(partial["passes"][0])
            self.passes.backward += int(partial["passes"][1])
        pending: list[torch.Tensor] = []
        started = time.perf_counter() - self.resumed_seconds
        bar = tqdm(range(first, steps), desc=f"epoch {self.epoch} classify", leave=False, disable=not self.progress,
                   unit="batch")
        for step in bar:
            batch = self.draw_batch(order[step * cfg.batch_size:(step + 1) * cfg.batch_size])
            with self.autocast:
                terms = self.step_loss(batch, step, steps)
            part = batch.part
            self.optimizer.zero_grad(set_to_none=True)
            (terms.loss if part.loss_scale == 1.0 else terms.loss * part.loss_scale).backward()
            self.optimizer.step()
            stacked, f_mean = terms.stacked().float(), terms.f_pos_mean.float()
            if self.world.distributed:  # this rank's share of the global batch's means
                stacked, f_mean = stacked * part.share, f_mean * part.share
            pending.append(stacked)
            sums += stacked
            f_means.append(f_mean)
            if terms.logits_pos is None:
                logged_error = False
            else:
                wrong += (terms.logits_pos.detach()[:part.real].argmax(1) != batch.labels[:part.real]).sum()
            if len(pending) == CHECK_EVERY or step == steps - 1:
                # the global batch's terms, so every rank reaches the same verdict at the same step
                block = distributed.all_reduce_sum(torch.stack(pending))
                check_finite(list(block.unbind(0)), self.method.term_names, step + 1 - len(pending), self.epoch)
                pending = []
                if self.progress:
                    bar.set_postfix(loss=f"{(sums[0] / (step + 1)).item():.4f}")
            if step < steps - 1 and self.stop_requested(mid_epoch=True):
                if pending:
                    block = torch.stack(pending)
                    check_finite(list(block.unbind(0)), self.method.term_names, step + 1 - len(pending), self.epoch)
                state = {"order": order, "step": step + 1, "sums": sums, "wrong": wrong, "logged_error": logged_error,
                         "f_means": torch.stack(f_means) if f_means else torch.zeros(0, device=self.device),
                         "passes": list(self.passes.take()), "seconds": time.perf_counter() - started}
                path = self.write_partial(state)
                raise stop_request.Stopped(stop_request.requested(),
                                           f"epoch {self.epoch} stopped after step {step + 1} of {steps}; its state is "
                                           f"saved in {path}, so the same command with --resume continues it exactly")
        distributed.all_reduce_sum(sums)
        distributed.all_reduce_sum(wrong)
        means = (sums / steps).tolist()
        f_all = distributed.all_reduce_sum(torch.stack(f_means))  # each global batch's mean f on positives
        self.tau_range = (f_all.min().item(), f_all.max().item())
        term, penalty = self.method.term_columns
        nan = float("nan")
        return {"loss": means[0], "ce": means[1], "introspective": means[2] if term in ("introspective", "") else nan,
                "wasserstein_estimate": -means[2] if self.method.uses_interpolation else nan,
                "robust_term": means[2] if term == "robust_term" else nan,
                "gradient_penalty": means[3] if penalty or not term else nan,
                "train_eps": self.method.train_eps if self.method.train_eps is not None else nan,
                "train_error": wrong.item() / n if logged_error else nan}

    def draw_batch(self, index: torch.Tensor) -> Batch:
        """The randoms of the whole global batch, in the order one process draws them (pool
        indices, then interpolation coefficients), then this rank's slice."""
        labels = self.data.train_labels[index]
        neg_index = coefficients = None
        if self.method.uses_negatives:
            assert self.pool is not None
            neg_index = self.pool.draw(labels, self.rng)
            if self.method.uses_interpolation:
                coefficients = interpolation_coefficients(len(index), self.data.train_images, self.rng)
        part = RankSlice.of(len(index), self.world)
        rows = part.rows
        pos, labels = self.data.train_images[index[rows]], labels[rows]
        neg = None
        if neg_index is not None:
            assert self.pool is not None
            neg = self.pool.take(labels, neg_index[rows])
        return Batch(pos, labels, neg, None if coefficients is None else coefficients[rows], part, len(index))

    def step_loss(self, batch: Batch, step: int = 0, steps: int = 1) -> LossTerms:
        """The method's loss of one batch; the trainer never asks which method it is."""
        def draw(sampler: str) -> Callable[[tuple[int, ...]], torch.Tensor]:
            def sample(shape: tuple[int, ...]) -> torch.Tensor:
                fn = torch.rand if sampler == "rand" else torch.randn
                values = fn((batch.global_size, *shape), generator=self.rng, device=self.device)
                return values[batch.part.rows]
            return sample

        ctx = StepContext(self.scorer, self.model, batch.pos, batch.labels, batch.neg, batch.coefficients,
                          draw("rand"), draw("randn"), self.rng, max(1, self.epoch), step, steps)
        return self.method.loss(ctx)

    def synthesis_pass(self) -> dict[str, float]:
        """New negatives for every class in one batch, started from fresh generator images. With
        several ranks each synthesizes a contiguous share of the classes (a class's group stays
        whole, so its stop rule is unchanged) from the starts and tau every rank drew for all
        classes, and the shares are all-gathered so every rank holds the same pool."""
        cfg = self.config
        assert self.pool is not None and self.generator is not None
        low, high = self.tau_range
        classes = range(*distributed.shard(self.data.num_classes, self.world)) if self.world.distributed else None
        diverged: tuple[int, list[int]] | None = None
        result: SynthesisResult | None = None
        try:
            result = synthesize_negatives(self.model, self.generator, self.data.num_classes, cfg.negatives_per_class,
                                          self.tau_range, self.rng, cfg, progress=self.progress,
                                          desc=f"epoch {self.epoch} synthesize", classes=classes)
        except SynthesisDiverged as exc:
            diverged = (exc.step, exc.classes)
        if self.world.distributed:
            reports = [r for r in distributed.all_gather_object(diverged) if r is not None]
            if reports:
                diverged = (min(step for step, _ in reports), sorted(c for _, cs in reports for c in cs))
        if diverged is not None:
            raise TrainingDiverged(f"training diverged at epoch {self.epoch}, {SynthesisDiverged(*diverged)}; {ADVICE}")
        assert result is not None
        if self.world.distributed:
            result = SynthesisResult(distributed.all_gather_tensor(result.images),
                                     distributed.all_gather_tensor(result.steps),
                                     distributed.all_gather_tensor(result.final_gap))
        self.pool.append(result.images)
        self.new_negatives = result.images
        capped = int((result.final_gap > cfg.synthesis_tolerance).sum())
        if capped and self.verbose and self.world.is_main:  # once per epoch, not per step
            print(f"epoch {self.epoch}: synthesis hit its {cfg.synthesis_max_steps}-step cap for {capped} of "
                  f"{self.data.num_classes} classes (|mean f - tau| still above {cfg.synthesis_tolerance:g}); "
                  "raise --synthesis-max-steps to let them converge", file=sys.stderr)
        steps = result.steps.float()
        return {"tau_low": low, "tau_high": high, "synthesis_steps_mean": steps.mean().item(),
                "synthesis_steps_max": int(result.steps.max().item()),
                "synthesis_unconverged": int((result.final_gap > cfg.synthesis_tolerance).sum().item())}

    def validation_error(self) -> float:
        """Each rank counts the mistakes on its shard of the validation split; the counts are summed."""
        images, labels = self.data.val_images, self.data.val_labels
        lo, hi = distributed.shard(len(images), self.world)
        wrong = distributed.all_reduce_sum(wrong_count(self.model, images[lo:hi], labels[lo:hi]))
        return wrong.item() / max(1, len(images))

    def validation_pgd_error(self) -> float:
        """PGD-10 error on the validation split at the selection eps (--select-by pgd). The random
        starts come from their own generator (seed, epoch) drawn for the whole split, so selection
        leaves the training stream untouched and several ranks attack as one process does."""
        eps = self.config.selection_eps
        assert eps is not None
        images, labels = self.data.val_images, self.data.val_labels
        if self.config.select_limit is not None:
            images, labels = images[:self.config.select_limit], labels[:self.config.select_limit]
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed * 1_000_003 + self.epoch)
        norm = self.config.selection_norm
        attack = pgd_at_norm(norm, steps=SELECTION_PGD_STEPS, restarts=1, random_start=True)
        noise = attack.draw_noise(images, generator)  # the whole split's, however it is sharded
        lo, hi = distributed.shard(len(images), self.world)
        wrong = torch.zeros((), dtype=torch.long, device=self.device)
        for start in range(lo, hi, 500):
            end = min(hi, start + 500)
            rows = tuple(part[start:end] for part in noise) if isinstance(noise, tuple) else noise[start:end]
            adv = attack.run_from(self.model, images[start:end], labels[start:end], eps, [rows]).adversarial
            wrong += wrong_count(self.model, adv, labels[start:end])
        return distributed.all_reduce_sum(wrong).item() / max(1, len(images))

    def stop_requested(self, mid_epoch: bool = False) -> bool:
        """Whether to stop here. Mid-epoch only in one process (ranks hold different running sums,
        so a data-parallel run stops at the end of the epoch); every rank agrees."""
        if self.world.distributed:
            if mid_epoch:
                return False
            return distributed.max_over_ranks(stop_request.requested(), self.device) > 0
        return bool(stop_request.requested())

    def check_lock(self) -> None:
        if self.folder is not None:
            self.folder.verify_lock()

    @main_only
    def write_partial(self, state: dict[str, Any]) -> Path:
        """partial.pt: everything a resumed run needs to continue this epoch exactly."""
        path = self.out_dir / PARTIAL_NAME
        self.check_lock()
        with stop_request.deferred():
            atomic_save({"epoch": self.epoch, "hparams": self.config.to_dict(), "data": self.data.fingerprint(),
                         "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "rng_state": self.rng.get_state(), "cpu_rng_state": torch.get_rng_state(), **state}, path)
        return path

    def load_partial(self, path: Path) -> bool:
        """Take a stopped epoch's state (partial.pt) when it continues the epoch after the one
        resumed from; False (and the file removed) when it is stale or of another run."""
        state = load_tensors(path, self.device, what="partial-epoch state")
        if not isinstance(state, dict) or state.get("epoch") != self.epoch + 1:
            return False
        saved, mine = dict(state.get("hparams") or {}), self.config.to_dict()
        if any(saved.get(k) != v for k, v in mine.items() if k not in RESUMABLE_CHANGES) or state.get("data") != self.data.fingerprint():
            raise UserError(f"cannot resume: {path} holds a stopped epoch of a run with other settings or data; "
                            "resume with the run's own settings, or delete it to continue from last.pt")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng_state"].cpu())
        torch.set_rng_state(state["cpu_rng_state"].cpu())
        self.partial = state
        self.resumed_seconds = float(state.get("seconds", 0.0))
        return True

    def run_epoch(self) -> dict[str, Any]:
        self.epoch += 1
        t0 = time.perf_counter() - self.resumed_seconds
        row: dict[str, Any] = {"epoch": self.epoch, "method": self.config.method}
        self.new_negatives = None
        self.passes.take()
        row.update(self.classification_pass())
        self.resumed_seconds = 0.0
        t1 = time.perf_counter()
        if self.config.introspective:
            row.update(self.synthesis_pass())
        t2 = time.perf_counter()
        counts = distributed.all_reduce_sum(torch.tensor(self.passes.take(), dtype=torch.long, device=self.device))
        with self.passes.paused():
            row["val_error"] = self.validation_error()
            row["val_pgd_error"] = self.validation_pgd_error() if "pgd" in self.config.select_rules else float("nan")
        t3 = time.perf_counter()
        row.update(pool_size=len(self.pool) if self.pool else 0, seconds_classification=t1 - t0,
                   seconds_synthesis=t2 - t1, seconds_validation=t3 - t2, seconds_total=t3 - t0,
                   forward_passes=int(counts[0]), backward_passes=int(counts[1]))
        self.cost["train_seconds"] += t2 - t0
        self.cost["forward_passes"] += int(counts[0])
        self.cost["backward_passes"] += int(counts[1])
        synthesized = self.data.num_classes * self.config.negatives_per_class if self.config.introspective else 0
        row["negatives_per_second"] = synthesized / (t2 - t1) if synthesized else 0.0
        return row

    # ---- checkpoints -------------------------------------------------------------------
    def metadata(self, row: dict[str, Any]) -> CheckpointMeta:
        """This epoch's checkpoint record, with the run's best so far."""
        extra = dict(self.extra_metadata)
        return CheckpointMeta(
            arch=self.config.arch, dataset=self.data.dataset, image_shape=tuple(self.data.image_shape),
            num_classes=self.data.num_classes, class_names=tuple(self.data.class_names), method=self.config.method,
            method_options=dict(self.config.method_options), hparams=self.config.to_dict(), seed=self.config.seed,
            select_by=self.config.select_rules[0], epoch=self.epoch, val_error=row["val_error"],
            train_error=row["train_error"], val_size=len(self.data.val_images), train_size=len(self.data.train_images),
            tau_range=self.tau_range, pool_size=len(self.pool) if self.pool else 0, world_size=self.world.world_size,
            winn_robust_version=__version__, torch_version=str(torch.__version__),
            python_version=platform.python_version(), saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            torch_threads=torch.get_num_threads(), cost=dict(self.cost), data_dir=extra.pop("data_dir", None),
            best_epoch=self.best_epoch, best_val_error=self.best_val_error, best_select_value=self.best_select_value,
            extra_selection=dict(self.extra_best), data_fingerprint=self.data.fingerprint(), extra=extra)

    def selection_value(self, row: dict[str, Any], rule: str | None = None) -> float:
        """What --select-by minimises: clean or PGD validation error, or -epoch (last)."""
        rule = rule or self.config.select_rules[0]
        return {"clean": row["val_error"], "pgd": row.get("val_pgd_error", float("nan")), "last": -float(self.epoch)}[rule]

    def save(self, row: dict[str, Any]) -> int:
        """Record the epoch on every rank (best so far), then write its files on rank 0 alone.
        Returns the bytes written (0 on other ranks)."""
        value = self.selection_value(row)
        improved = value <= self.best_select_value  # ties go to the later epoch
        if improved:
            self.best_select_value, self.best_val_error, self.best_epoch = value, row["val_error"], self.epoch
        extra = []
        for rule in self.config.select_rules[1:]:
            value = self.selection_value(row, rule)
            if value <= self.extra_best.get(rule, {}).get("value", float("inf")):
                self.extra_best[rule] = {"value": value, "epoch": self.epoch}
                extra.append(rule)
        return self.write_epoch(row, improved, extra) or 0

    @main_only
    def write_epoch(self, row: dict[str, Any], improved: bool, extra: list[str] | None = None) -> int:
        """best.pt when validation improved, this epoch's pool file, then last.pt (in that order,
        so last.pt never lists a file that is not on disk). Returns the bytes written."""
        metadata = self.metadata(row)
        written = 0
        self.check_lock()  # a writer whose lock file was deleted or replaced stops here, before any write
        if improved:
            written += save_checkpoint(self.out_dir / BEST_NAME, self.model, replace(metadata, role="best"))
        for rule in extra or []:
            written += save_checkpoint(self.out_dir / f"best-{rule}.pt", self.model,
                                       replace(metadata, role="best", select_by=rule))
        if self.pool is not None:
            if not self.pool_files:  # epoch 0: the generator's initial images
                record, size = save_pool_part(self.out_dir, 0, self.pool.images[:, :self.config.initial_negatives_per_class])
                self.pool_files.append(record)
                written += size
            if self.new_negatives is not None:
                record, size = save_pool_part(self.out_dir, self.epoch, self.new_negatives)
                self.pool_files.append(record)
                written += size
        state = {"optimizer": self.optimizer.state_dict(), "rng_state": self.rng.get_state(),
                 "cpu_rng_state": torch.get_rng_state(), "pool_files": list(self.pool_files)}
        before = written

        def record_size(size: int) -> dict[str, Any]:  # the rows, this one counting last.pt's own bytes too
            row["bytes_written"] = before + size
            return {"metrics_rows": json.dumps(self.metric_rows)}  # JSON: the same bytes in a resumed run

        self.check_lock()
        written += save_checkpoint(self.out_dir / LAST_NAME, self.model, replace(metadata, role="last"),
                                   on_size=record_size, **state)
        (self.out_dir / PARTIAL_NAME).unlink(missing_ok=True)  # last.pt now holds what the stopped epoch held
        return written

    def resume(self, path: Path) -> None:
        payload, meta = read_training_state(path, self.device, "optimizer")
        if payload.get("format_version", 1) < FORMAT_VERSION:
            raise UserError(f"cannot resume {path}: it was written by an older winn-robust whose pool format "
                            "this version does not read; start the run afresh in a new `out`", mentions=("out",))
        check_same_run(path, meta, self.config, self.data)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.rng.set_state(payload["rng_state"].cpu())
        torch.set_rng_state(payload["cpu_rng_state"].cpu())
        self.pool_files = list(payload.get("pool_files", []))
        self.metric_rows = list(json.loads(payload.get("metrics_rows", "[]")))
        if self.pool is not None:
            self.pool = load_pool(self.out_dir, self.pool_files, self.device)
        if meta.best_epoch is None or meta.best_val_error is None:
            raise UserError(f"{path} does not record the run's best epoch; start the run afresh in a new `out`", mentions=("out",))
        self.epoch = meta.epoch
        self.best_epoch, self.best_val_error = int(meta.best_epoch), float(meta.best_val_error)
        self.best_select_value = float(self.best_val_error if meta.best_select_value is None else meta.best_select_value)
        self.extra_best = {rule: dict(record) for rule, record in (meta.extra_selection or {}).items()}
        self.cost = {**self.cost, **meta.cost}
        low, high = meta.tau_range
        self.tau_range = (float(low), float(high))

    # ---- outputs -----------------------------------------------------------------------
    @main_only
    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.out_dir / METRICS_NAME, text.getvalue())

    @main_only
    def save_negatives_grid(self) -> None:
        if self.pool is None:
            return
        per_class = min(10, self.config.negatives_per_class)
        save_class_grid(self.pool.newest(per_class), self.data.class_names,
                        self.out_dir / "negatives" / f"epoch_{self.epoch:03d}.png",
                        title=f"{self.config.method} pseudo-negatives, epoch {self.epoch} (one row per class)")


def read_metrics(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    """metrics.csv's rows up to an epoch (only for a last.pt older than the rows it keeps); an
    unreadable file gives the rows read before the damage."""
    if not path.is_file():
        return []
    rows = []
    try:
        with open(path, newline="", errors="replace") as handle:
            for row in csv.DictReader(handle):
                if int(row["epoch"]) <= up_to_epoch:
                    rows.append(row)
    except (KeyError, ValueError, TypeError, csv.Error):
        pass
    return rows


def training_cost(run_dir: Path, train_images: int | None = None) -> TrainingCost | None:
    """What training the run cost, summed over its metrics.csv: epochs, seconds of training
    (classification and synthesis passes; validation and model selection excluded) and forward
    and backward image-passes. None without a metrics.csv or, for runs of older versions, without
    the pass counts."""
    rows = read_metrics(Path(run_dir) / METRICS_NAME, 10**9)
    if not rows or any(not row.get("forward_passes") for row in rows):
        return None
    try:
        return TrainingCost(
            epochs=len(rows),
            train_seconds=sum(float(r["seconds_classification"]) + float(r["seconds_synthesis"]) for r in rows),
            forward_passes=sum(int(r["forward_passes"]) for r in rows),
            backward_passes=sum(int(r["backward_passes"]) for r in rows), train_images=train_images)
    except (KeyError, ValueError):
        return None


def holds_run(out_dir: Path) -> bool:
    """Our marker or one of our files is there (training/run_folder.py)."""
    return RunFolder(out_dir).holds_run()


def clear_run(out_dir: Path) -> None:
    """Delete a run's files (for --force), so no file of the older run sits beside the new ones;
    only the names `train` writes, refusing when anything else is in the way."""
    RunFolder(out_dir).clear()


def start(config: TrainConfig, data: TrainData, out_dir: Path, device: torch.device, resume: bool,
          progress: bool, extra_metadata: dict[str, Any]) -> tuple[Trainer, list[dict[str, Any]]]:
    """A trainer, resumed from out_dir/last.pt when asked, and the metrics rows so far."""
    trainer = Trainer(config, data, out_dir, device, progress)
    trainer.extra_metadata = dict(extra_metadata)
    rows: list[dict[str, Any]] = []
    if resume:
        last, partial = out_dir / LAST_NAME, out_dir / PARTIAL_NAME
        if not last.is_file() and not partial.is_file():
            if RunFolder(out_dir).holds_run():
                raise SettingError("resume", f": {out_dir} holds no {LAST_NAME} (no epoch's state was ever saved, e.g. its "
                                   "first write failed), so there is nothing to continue; start it afresh with `force`",
                                   mentions=("resume", "force"))
            raise SettingError("resume", f": no {last} to resume from; run without `resume` to start fresh", mentions=("resume",))
        if last.is_file():
            trainer.resume(last)
        if partial.is_file() and not trainer.load_partial(partial):
            main_only(partial.unlink)(missing_ok=True)  # stale: last.pt is newer
        # last.pt's rows are the record (older last.pt files have none: then metrics.csv, as far as it reads)
        rows = trainer.metric_rows or read_metrics(out_dir / METRICS_NAME, trainer.epoch)
        if last.is_file():
            trainer.write_metrics(rows)  # a metrics.csv lost, cut or garbled since is rewritten from them
    if trainer.epoch >= config.epochs:
        raise UserError(f"nothing to do: {out_dir} already holds {trainer.epoch} epochs (`epochs` {config.epochs}); "
                        "raise `epochs` to train on", mentions=("epochs",))
    return trainer, rows


def train(config: TrainConfig, data: TrainData, out_dir: str | Path, device: torch.device | str = "cpu",
          resume: bool = False, progress: bool = True,
          on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
          extra_metadata: dict[str, Any] | None = None) -> TrainResult:
    """Train one model; writes best.pt, last.pt, metrics.csv, pool/ and negatives/ grids into out_dir.
    `extra_metadata` (e.g. the data folder) is stored in the checkpoints for provenance.

    Under torchrun every rank calls this alike: the ranks agree that they all could start (every
    rank reads last.pt and the pool files on --resume), train data-parallel, and rank 0 writes."""
    out_dir = Path(out_dir)
    main_only(out_dir.mkdir)(parents=True, exist_ok=True)
    folder_lock = distributed.agree(main_only(RunFolder(out_dir).open_for_writing))  # one writer per run folder
    try:
        trainer, rows = distributed.agree(lambda: start(config, data, out_dir, torch.device(device), resume, progress,
                                                            extra_metadata or {}))
    except BaseException:
        if folder_lock is not None:
            folder_lock.release()
        raise
    trainer.folder = RunFolder(out_dir) if folder_lock is not None else None
    bar = tqdm(total=config.epochs, initial=trainer.epoch, desc=f"{config.method} {config.arch}",
               disable=not trainer.progress, unit="epoch")
    try:
        with stop_request.polling():
            _train_epochs(trainer, config, rows, bar, on_epoch_end)
    finally:
        bar.close()
        if folder_lock is not None:
            folder_lock.release()
    return TrainResult(out_dir, trainer.best_epoch, trainer.best_val_error, trainer.epoch, rows)


def _train_epochs(trainer: Trainer, config: TrainConfig, rows: list[dict[str, Any]], bar: Any,
                  on_epoch_end: Callable[[int, dict[str, Any]], None] | None) -> None:
    """The epochs, until `epochs` or a stop request (honoured mid-epoch or, here, after last.pt)."""
    while trainer.epoch < config.epochs:
        row = trainer.run_epoch()
        rows.append(row)
        trainer.metric_rows = rows
        with stop_request.deferred():
            row["bytes_written"] = trainer.save(row)
            trainer.write_metrics(rows)
            trainer.save_negatives_grid()
        bar.update(1)
        bar.set_postfix(val_error=f"{row['val_error']:.4f}", best=f"{trainer.best_val_error:.4f}")
        if on_epoch_end is not None:
            on_epoch_end(trainer.epoch, row)
        if trainer.epoch < config.epochs and trainer.stop_requested():
            raise stop_request.Stopped(stop_request.requested() or signal.SIGTERM,
                                       f"epochs 1-{trainer.epoch} are saved in {trainer.out_dir / LAST_NAME}; the same "
                                       "command with --resume continues from there")
