"""Cross-evaluation: every attack on every model at every eps, every adversarial batch evaluated
on every model (the K x K transfer matrix), plus probes for the failure indicators.

Work is cut into items, one per (attack, eps, batch). Each item's results are plain tensors,
so a caller can store them as they finish (`ChunkStore`: `attack --resume` continues a killed
run), and under torchrun the ranks share them out (`cross_evaluate`). Random attacks draw from a generator seeded by
(evaluation seed, attack, eps, batch), never by a model's name: identical models get identical
random starts (and numbers) whatever they are called, every model faces the same starts (a
paired comparison), and a resumed or sharded rerun gives the same numbers. Parameters are
frozen while attacking so autograd never builds weight gradients; predictions stay on the
device until an item ends, so a GPU run has no per-image host sync.

Cost per image and eps, for K models and FGSM: K forward + input-backward passes (which also
yield the clean predictions) and K^2 no-grad forwards."""
from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from winn_robust import distributed, stop_request
from winn_robust.errors import UserError
from winn_robust.evaluation.probes import ProbeResult, probe_model
from winn_robust.evaluation.spec import AttackRun, EvalSpec
from winn_robust.model_sources import PixelSpaceModel, UserModelFailure
from winn_robust.models.base import frozen_eval

RunKey = tuple[str, float]        # (attack name, eps)
EXAMPLES_KEPT = 8                  # adversarial images kept per run and model, for the figure


class ChunkStore(Protocol):
    """Where finished work items are kept (a folder for `attack --resume`, or nothing)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...


@dataclass
class CrossEvalResult:
    """Predictions only (numpy int64), enough to recompute every metric.

    adv_preds[(attack, eps)][source][target]: target's prediction on the adversarial example the
    attack crafted on source, for the first run_sizes[(attack, eps)] images. unchanged_images /
    unchanged_pixels[(attack, eps)][source]: images (pixels) the attack left exactly as they were
    (for a gradient attack at eps > 0, an unchanged image means an all-zero input gradient).
    loss_traces[(attack, eps)][source] = (per-step summed running-best loss over unfooled
    images, their count), for iterative attacks that report it. probes[model]: one batch probed."""

    labels: np.ndarray
    clean_preds: dict[str, np.ndarray]
    adv_preds: dict[RunKey, dict[str, dict[str, np.ndarray]]]
    run_sizes: dict[RunKey, int] = field(default_factory=dict)
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict)   # name -> settings
    table_eps: float | None = None
    unchanged_images: dict[RunKey, dict[str, int]] = field(default_factory=dict)
    unchanged_pixels: dict[RunKey, dict[str, int]] = field(default_factory=dict)
    loss_traces: dict[RunKey, dict[str, tuple[list[float], int]]] = field(default_factory=dict)
    notes: dict[RunKey, dict[str, list[str]]] = field(default_factory=dict)
    probes: dict[str, ProbeResult] = field(default_factory=dict)
    examples: dict[RunKey, dict[str, torch.Tensor]] = field(default_factory=dict)
    example_images: torch.Tensor | None = None
    norm: str = "linf"
    curve: dict[str, Any] | None = None                              # the minimum-norm attack's settings
    min_norms: dict[str, np.ndarray] = field(default_factory=dict)   # model -> per image, pixel units (inf: none)

    @property
    def model_names(self) -> list[str]:
        return list(self.clean_preds)

    @property
    def runs(self) -> list[RunKey]:
        return list(self.adv_preds)

    @property
    def eps_values(self) -> list[float]:
        """Every eps, the table eps first, then ascending."""
        values = sorted({eps for _, eps in self.adv_preds})
        if self.table_eps in values:
            values.remove(self.table_eps)
            values.insert(0, self.table_eps)
        return values

    @property
    def attack_names(self) -> list[str]:
        return list(dict.fromkeys(attack for attack, _ in self.adv_preds))

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


def derive_seed(seed: int, *parts: object) -> int:
    """A stable seed for one (attack, eps, batch): the same in every process and rerun. Callers
    pass no model name, so renaming (or re-exporting) a model never changes its numbers."""
    return zlib.crc32(repr((seed, *parts)).encode()) & 0x7FFFFFFF


def _check_inputs(models: Mapping[str, torch.nn.Module], images: torch.Tensor, labels: torch.Tensor) -> None:
    if not models:
        raise UserError("cross-evaluation needs at least one model")
    if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise UserError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match: need (N, C, H, W) and (N,)")


def run_item(models: Mapping[str, torch.nn.Module], run: AttackRun, x: torch.Tensor, y: torch.Tensor, seed: int,
             start: int, want_clean: bool, keep_examples: bool) -> dict[str, Any]:
    """One attack at one eps on one batch: every model attacked, every model evaluated on every
    adversarial batch. Returns plain tensors on the CPU (a chunk)."""
    names = list(models)
    attack, eps = run.attack, run.eps
    crafted: list[torch.Tensor] = []
    chunk: dict[str, dict[str, Any]] = {"clean": {}, "adv": {}, "unchanged_images": {}, "unchanged_pixels": {},
                                        "trace_sum": {}, "trace_count": {}, "notes": {}, "examples": {}}
    where = f"while {attack.name} at eps {eps:g} attacked %s on test images {start}-{start + len(x) - 1}"
    for source in names:
        generator = torch.Generator(device=x.device).manual_seed(derive_seed(seed, attack.name, eps, start))
        try:
            output = attack.run(models[source], x, y, eps, generator)
        except UserModelFailure as exc:
            raise _failed(exc, where % source) from None
        except Exception as exc:
            user_model = models[source]
            if not isinstance(user_model, PixelSpaceModel):
                raise  # our own model: a bug of ours shows its traceback
            # a user's model broke an attack library's assumptions (e.g. no gradient at all)
            raise _failed(UserModelFailure(user_model.label, f"made the attack fail ({type(exc).__name__}: "
                                           f"{' '.join(str(exc).split())[:160]})"), where % source) from None
        adversarial = output.adversarial.detach()
        if adversarial.shape != x.shape:
            raise RuntimeError(f"attack {attack.name!r} returned shape {tuple(adversarial.shape)} for input {tuple(x.shape)}")
        if want_clean and output.clean_logits is not None:
            chunk["clean"][source] = output.clean_logits.argmax(1).cpu()
        unchanged = (adversarial == x).flatten(1)
        chunk["unchanged_pixels"][source] = int(unchanged.sum())
        chunk["unchanged_images"][source] = int(unchanged.all(1).sum())
        if output.loss_trace_sum is not None:
            chunk["trace_sum"][source] = output.loss_trace_sum.detach().cpu()
            chunk["trace_count"][source] = output.loss_trace_count
        chunk["notes"][source] = list(output.notes)
        if keep_examples:
            chunk["examples"][source] = adversarial[:EXAMPLES_KEPT].cpu()
        crafted.append(adversarial)
    batch = torch.cat(crafted)
    with torch.inference_mode():
        for target in names:
            try:
                if want_clean and target not in chunk["clean"]:
                    chunk["clean"][target] = models[target](x).argmax(1).cpu()
                predictions = models[target](batch).argmax(1)
            except UserModelFailure as exc:
                raise _failed(exc, f"evaluating {attack.name} at eps {eps:g} adversarial examples of test images "
                                   f"{start}-{start + len(x) - 1}") from None
            for source, preds in zip(names, predictions.split(x.shape[0])):
                chunk["adv"].setdefault(source, {})[target] = preds.cpu()
    return chunk


def _failed(exc: UserModelFailure, where: str) -> UserError:
    return UserError(f"model {exc.label} {exc.reason} {where}; fix the model: it must map every [0, 1] image to finite "
                     "float logits")


@dataclass(frozen=True)
class WorkItem:
    """One (attack run, batch), or the clean predictions of a batch no run covers (run None).
    `want_clean`: this item also records the batch's clean predictions (the first run covering it)."""

    key: str
    run: int | None
    start: int
    stop: int
    want_clean: bool
    curve: bool = False      # a batch of the minimum-norm curve attack (spec.curve)


def plan_items(spec: EvalSpec, n_total: int) -> list[WorkItem]:
    """Every item of an evaluation, in a fixed order that does not depend on who runs them."""
    items: list[WorkItem] = []
    covered: set[int] = set()
    for r, run in enumerate(spec.runs):
        end = min(n_total, run.n or n_total)
        for start in range(0, end, spec.batch_size):
            items.append(WorkItem(f"run{r}-{run.attack.name}-eps{run.eps!r}-batch{start}", r, start,
                                  min(start + spec.batch_size, end), start not in covered))
            covered.add(start)
    items += [WorkItem(f"clean-batch{start}", None, start, min(start + spec.batch_size, n_total), True)
              for start in range(0, n_total, spec.batch_size) if start not in covered]
    if spec.curve is not None:
        end = min(n_total, spec.curve_limit or n_total)
        items += [WorkItem(f"curve-{spec.curve.name}-batch{start}", None, start, min(start + spec.batch_size, end), False,
                           curve=True) for start in range(0, end, spec.batch_size)]
    return items


def stop_agreed(here: distributed.World) -> bool:
    """A stop was asked for (on any rank): the evaluation stops after the round just saved."""
    if not here.distributed:
        return bool(stop_request.requested())
    return any(distributed.all_gather_object(stop_request.requested()))


def cross_evaluate(models: Mapping[str, torch.nn.Module], images: torch.Tensor, labels: torch.Tensor,
                   spec: EvalSpec, device: torch.device | str = "cpu", progress: bool = True,
                   store: ChunkStore | None = None,
                   on_item: Callable[[str], None] | None = None) -> CrossEvalResult:
    """Craft every run of `spec` on every model and record every model's prediction on every
    adversarial example, plus clean predictions and the probes.

    Models are moved to `device` (in place, like `Module.to`) and run in eval mode; their training
    and requires_grad flags are restored afterwards. `spec` was validated when built (eps in
    [0, 1] pixel units); the caller applies `spec.limit` when it loads the images. `store`
    keeps finished items (and hands them back on a rerun); `on_item` is told each finished key.

    Under torchrun (a live process group of N ranks) the items are dealt round-robin: in each
    round rank r runs item round*N + r, and one all_gather gives every rank the round's chunks.
    Batches, seeds and the assembly order are those of one process, so every prediction is the
    same, and rank 0 alone stores chunks (the report's files come from rank 0 as well)."""
    _check_inputs(models, images, labels)
    device = torch.device(device)
    here = distributed.world()
    names = list(models)
    for model in models.values():
        model.to(device)
    items = plan_items(spec, images.shape[0])
    done: dict[str, dict[str, Any]] = {}

    def batch_of(item: WorkItem) -> tuple[torch.Tensor, torch.Tensor]:
        return (images[item.start:item.stop].to(device, non_blocking=True),
                labels[item.start:item.stop].to(device, torch.int64, non_blocking=True))

    def compute(item: WorkItem) -> dict[str, Any]:
        x, y = batch_of(item)
        if item.curve and spec.curve is not None:
            return {name: spec.curve.minimum_norms(
                models[name], x, y, torch.Generator(device=x.device).manual_seed(
                    derive_seed(spec.seed, "curve", spec.curve.name, item.start, name))).detach().cpu()
                for name in names}
        if item.run is None:
            with torch.inference_mode():
                return {name: models[name](x).argmax(1).cpu() for name in names}
        return run_item(models, spec.runs[item.run], x, y, spec.seed, item.start, want_clean=item.want_clean,
                        keep_examples=item.start == 0)

    bar = tqdm(total=len(items) + 1, desc=f"{'+'.join(spec.attack_names)} x {len(names)} models", unit="batch",
               disable=not progress or not here.is_main, leave=False)
    probes: dict[str, ProbeResult] = {}
    with frozen_eval(*models.values()), bar, (stop_request.polling() if store is not None else nullcontext()):
        if spec.probes:
            saved = store.get("probes") if store else None
            fresh = saved is None and here.is_main
            if fresh:
                first = WorkItem("probes", None, 0, min(spec.batch_size, images.shape[0]), False)
                x, y = batch_of(first)
                saved = {}
                for name in names:
                    try:
                        saved[name] = probe_model(models[name], x, y, derive_seed(spec.seed, "probe"), spec.norm).to_dict()
                    except UserModelFailure as exc:
                        raise _failed(exc, f"while it was probed (input gradients, randomness, an unbounded PGD) on "
                                           f"test images 0-{len(x) - 1}") from None
            saved = distributed.all_gather_object(saved)[0]  # rank 0's
            if fresh and store:
                store.put("probes", saved)
            probes = {name: ProbeResult(**values) for name, values in saved.items()}
        bar.update(1)
        for round_start in range(0, len(items), here.world_size):
            index = round_start + here.rank
            mine: tuple[str, dict[str, Any], bool] | None = None
            if index < len(items):
                item = items[index]
                chunk = store.get(item.key) if store else None
                mine = (item.key, chunk, False) if chunk is not None else (item.key, compute(item), True)
            for entry in distributed.all_gather_object(mine):
                if entry is None:
                    continue
                key, chunk, fresh = entry
                if fresh and store and here.is_main:
                    store.put(key, chunk)
                done[key] = chunk
                bar.update(1)
                if on_item:
                    on_item(key)
            if store is not None and stop_agreed(here) and round_start + here.world_size < len(items):
                raise stop_request.Stopped(max(distributed.all_gather_object(stop_request.requested())),
                                           "finished batches are saved in the report folder's .evaluation-state; the "
                                           "same command with --resume continues from them")
    clean: dict[int, dict[str, torch.Tensor]] = {}
    chunks: dict[tuple[int, int], dict[str, Any]] = {}
    curve_parts: dict[int, dict[str, torch.Tensor]] = {}
    for item in items:
        chunk = done[item.key]
        if item.curve:
            curve_parts[item.start] = chunk
            continue
        if item.run is None:
            clean[item.start] = chunk
            continue
        if item.want_clean:
            clean[item.start] = chunk["clean"]
        chunks[(item.run, item.start)] = chunk
    result = assemble(names, labels, spec, spec.runs, clean, chunks, probes, images[:EXAMPLES_KEPT].detach().cpu())
    if spec.curve is not None:
        result.curve = {**spec.curve.settings(), "limit": spec.curve_limit}
        result.min_norms = {m: torch.cat([curve_parts[s][m] for s in sorted(curve_parts)]).numpy().astype(np.float64)
                            for m in names} if curve_parts else {m: np.zeros(0) for m in names}
    return result


def assemble(names: list[str], labels: torch.Tensor, spec: EvalSpec, runs: tuple[AttackRun, ...],
             clean: dict[int, dict[str, torch.Tensor]], chunks: dict[tuple[int, int], dict[str, Any]],
             probes: dict[str, ProbeResult], example_images: torch.Tensor) -> CrossEvalResult:
    """Concatenate the items' chunks, in test-set order, into one result."""
    def cat(parts: list[torch.Tensor]) -> np.ndarray:
        return torch.cat(parts).numpy().astype(np.int64) if parts else np.zeros(0, np.int64)

    starts = sorted(clean)
    result = CrossEvalResult(
        labels=labels.detach().cpu().numpy().astype(np.int64),
        clean_preds={m: cat([clean[s][m] for s in starts]) for m in names}, adv_preds={},
        attacks={a.name: a.settings() for a in spec.attacks}, table_eps=spec.table_eps, probes=probes,
        example_images=example_images, norm=spec.norm)
    for r, run in enumerate(runs):
        mine = [chunks[(r, s)] for s in sorted(s for (i, s) in chunks if i == r)]
        key = run.key
        result.adv_preds[key] = {s: {t: cat([c["adv"][s][t] for c in mine]) for t in names} for s in names}
        result.run_sizes[key] = int(result.adv_preds[key][names[0]][names[0]].shape[0])
        result.unchanged_images[key] = {s: sum(c["unchanged_images"][s] for c in mine) for s in names}
        result.unchanged_pixels[key] = {s: sum(c["unchanged_pixels"][s] for c in mine) for s in names}
        result.notes[key] = {s: list(dict.fromkeys(n for c in mine for n in c["notes"][s])) for s in names}
        traced = [s for s in names if all(s in c["trace_sum"] for c in mine) and mine]
        result.loss_traces[key] = {s: (torch.stack([c["trace_sum"][s] for c in mine]).sum(0).tolist(),
                                       sum(c["trace_count"][s] for c in mine)) for s in traced}
        if mine and mine[0]["examples"]:
            result.examples[key] = dict(mine[0]["examples"])
    return result
