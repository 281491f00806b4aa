"""The generative trainer at its floor: one iteration of `train --method winn-gen` through
GenerativeTrainer.run_iteration against the same passes done in a bare PyTorch loop.

winn-gen (training/generative/winn_gen.py): the trainer is run for --warm-iterations (so the
critic is trained a little and the synthesis runs in its usual regime), then one iteration is
recorded: every critic batch (positives, negatives, interpolation weights) and every synthesis
batch (its start images and the Adam steps it took), by wrapping `critic_loss` and `ascend`.
Floor, from the same critic weights and optimizer state:
  critic     per batch one forward of positives and negatives together, the gradient penalty's
             forward and double backward at the same interpolates, backward, Adam step;
  synthesis  per batch from the same start images the trainer's step count of
             [forward, mean, backward, Adam, clamp], then one forward of the result: the stop
             test the trainer cannot skip (it learns that a batch has reached its threshold by
             scoring it), done here without building a graph.
wgan-gp (training/generative/wgan_gp.py): one row (--log-every generator iterations of n_critic
critic steps and a generator step, then the threshold range's real batches), its real batches,
latent codes and interpolation weights recorded; the floor replays them through copies of the
same networks and optimizers (the generator's forward for the fakes without a graph, the critic
loss as above, -mean f(G(z)) through the frozen critic) and scores the same real batches.
No bookkeeping: no loss terms, finiteness checks, threshold draws, pool growth, pass counting.

Both sides are reset to the same state before each timed run and timed round-robin, best of
--repeats (critic, synthesis and total each the best of their own). Passes: the trainer's
PassCounter numbers for the iteration beside the floor's own count of its forward and backward
image-passes (they must agree). Agreement: the largest difference of the critic weights after the
iteration and of the synthesized images. "x floor speed" = floor seconds / trainer seconds
(1.0 = at the floor; the aim: >= 0.91, i.e. within 1.1x).

    OMP_NUM_THREADS=1 python -m benchmarks.generative_floor --threads 1 --json generative.json
"""
from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import (
    FASHION_DIR,
    Column,
    Pipeline,
    Timings,
    add_json_option,
    finish,
    load_fashion_mnist,
    run_main,
    runtime_note,
    table,
    time_pipelines,
)
from winn_robust.data import ImageDataset, load_dataset
from winn_robust.errors import UserError
from winn_robust.models.base import frozen_eval
from winn_robust.training import TrainConfig
from winn_robust.training.generative import critic as critic_module
from winn_robust.training.generative import winn_gen
from winn_robust.training.generative.trainer import GenerativeTrainer
from winn_robust.training.inputs import make_train_data
from winn_robust.training.trainer import TrainData
from winn_robust.units import MODEL_HIGH, MODEL_LOW

METHODS = ("winn-gen", "wgan-gp")
PARTS = ("critic", "synthesis", "total")
CLOCKS = ("wall", "cpu")


# ----------------------------------------------------------------------------- clocks
class Clock:
    """Wall and CPU seconds of one run's named parts. CPU time (the process's: with one torch
    thread, the work itself) is what other users' load on a shared machine disturbs least; wall
    time is what a user waits."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = {clock: {} for clock in CLOCKS}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:  # summed over the calls: the wgan-gp steps of a row are many
            self.seconds["wall"][name] = self.seconds["wall"].get(name, 0.0) + time.perf_counter() - wall
            self.seconds["cpu"][name] = self.seconds["cpu"].get(name, 0.0) + time.process_time() - cpu


@contextmanager
def clocked_methods(obj: Any, parts: dict[str, str], current: list[Clock]) -> Iterator[None]:
    """Time `obj`'s methods (part name -> method name) on the clock last appended to `current`
    meanwhile (instance attributes shadowing the class's, removed after)."""
    def wrap(part: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed_method(*args: Any, **kwargs: Any) -> Any:
            with current[-1].part(part):
                return method(*args, **kwargs)
        return timed_method

    for part, name in parts.items():
        setattr(obj, name, wrap(part, getattr(obj, name)))
    try:
        yield
    finally:
        for name in parts.values():
            delattr(obj, name)


def best_seconds(runs: list[Clock], pick: Callable[[list[float]], float] = min) -> dict[str, dict[str, float]]:
    """Per clock and part, the best (least disturbed) of the runs, or another statistic `pick`."""
    return {clock: {part: pick([r.seconds[clock][part] for r in runs]) for part in PARTS} for clock in CLOCKS}


def floor_speeds(clocks: dict[str, list[Clock]]) -> dict[str, Any]:
    """Best and median seconds of each side (the first run of each is time_pipelines' warm-up), and
    "x floor speed" of both: one lucky floor run moves the best, the median shows it."""
    best = {side: best_seconds(runs[1:]) for side, runs in clocks.items()}
    median = {side: best_seconds(runs[1:], statistics.median) for side, runs in clocks.items()}
    return {"seconds": best, "seconds_median": median,
            "seconds_all": {side: [r.seconds for r in runs[1:]] for side, runs in clocks.items()},
            "x_floor_speed": {c: {p: best["floor"][c][p] / best["trainer"][c][p] for p in PARTS} for c in CLOCKS},
            "x_floor_speed_median": {c: {p: median["floor"][c][p] / median["trainer"][c][p] for p in PARTS}
                                     for c in CLOCKS}}


def trainer_against_floor(trainer: GenerativeTrainer, start: Snapshot, learner: Any, parts: dict[str, str],
                          floor: Callable[[Clock], Any], device: torch.device, repeats: int
                          ) -> tuple[Timings, dict[str, list[Clock]], list[dict[str, Any]]]:
    """Time one trainer iteration (put back to `start` before each repeat, its `parts` clocked) side
    by side with `floor` (given its clock); returns the timings, every run's clock and the trainer's rows."""
    clocks: dict[str, list[Clock]] = {"trainer": [], "floor": []}
    rows: list[dict[str, Any]] = []

    def trainer_run() -> None:
        clocks["trainer"].append(Clock())
        with clocks["trainer"][-1].part("total"):
            start.restore(trainer)
            rows.append(trainer.run_iteration())

    def floor_run() -> Any:
        clocks["floor"].append(Clock())
        with clocks["floor"][-1].part("total"):
            return floor(clocks["floor"][-1])

    with clocked_methods(learner, parts, clocks["trainer"]):
        timings = time_pipelines([Pipeline("trainer", trainer_run), Pipeline("floor", floor_run)], device, repeats)
    return timings, clocks, rows


# ----------------------------------------------------------------------------- recording the trainer
@dataclass
class Recording:
    """What one trainer iteration did: its critic batches and its synthesis batches."""
    critic_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    ascents: list[tuple[torch.Tensor, int]] = field(default_factory=list)   # (start images, Adam steps)
    images: list[torch.Tensor] = field(default_factory=list)                # the trainer's synthesized batches


@contextmanager
def recording() -> Iterator[Recording]:
    """Wrap the critic loss and the ascent (the names winn_gen and synthesize_from look up) to
    record every batch of the iterations run meanwhile; the originals are put back after."""
    record = Recording()
    loss, ascend = winn_gen.critic_loss, critic_module.ascend

    def logged_loss(f: Any, pos: torch.Tensor, neg: torch.Tensor, a: torch.Tensor, gp_lambda: float) -> Any:
        record.critic_batches.append((pos.clone(), neg.clone(), a.clone()))
        return loss(f, pos, neg, a, gp_lambda)

    def logged_ascend(f: Any, start: torch.Tensor, threshold: float, settings: Any, modules: Any = ()) -> Any:
        result = ascend(f, start, threshold, settings, modules)
        record.ascents.append((start.clone(), result.steps))
        record.images.append(result.images.clone())
        return result

    winn_gen.critic_loss, critic_module.ascend = logged_loss, logged_ascend
    try:
        yield record
    finally:
        winn_gen.critic_loss, critic_module.ascend = loss, ascend


@dataclass
class Snapshot:
    """A generative trainer's whole state between iterations (every network and optimizer, the
    random stream, the learner's pool and small state), to put it back before every timed run."""
    iteration: int
    weights: dict[str, dict[str, torch.Tensor]]
    optimizers: dict[str, dict[str, Any]]
    rng: torch.Tensor
    parts: list[torch.Tensor] | None
    state: dict[str, Any]

    @classmethod
    def of(cls, trainer: GenerativeTrainer) -> Snapshot:
        learner: Any = trainer.learner
        parts = getattr(learner, "parts", None)
        return cls(trainer.iteration, {k: copy.deepcopy(m.state_dict()) for k, m in learner.modules.items()},
                   {k: copy.deepcopy(o.state_dict()) for k, o in learner.optimizers.items()}, trainer.rng.get_state(),
                   None if parts is None else list(parts), copy.deepcopy(learner.state()))

    def restore(self, trainer: GenerativeTrainer) -> None:
        learner: Any = trainer.learner
        trainer.iteration = self.iteration
        for name, module in learner.modules.items():
            module.load_state_dict(self.weights[name])
        for name, optimizer in learner.optimizers.items():
            optimizer.load_state_dict(copy.deepcopy(self.optimizers[name]))  # it may alias the tensors
        trainer.rng.set_state(self.rng)
        if self.parts is not None:
            learner.restore_parts({"negatives": self.parts})
        learner.load_state(copy.deepcopy(self.state))


# ----------------------------------------------------------------------------- the floor
@dataclass
class FloorRun:
    forward: int
    backward: int
    images: torch.Tensor


def scores(critic: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return critic(x).reshape(len(x), -1)[:, 0]


def floor_critic(critic: nn.Module, optimizer: torch.optim.Optimizer,
                 batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], gp_lambda: float) -> tuple[int, int]:
    """The critic's batches bare; returns the (forward, backward) image-passes made."""
    forward = backward = 0
    critic.train()
    for pos, neg, a in batches:
        n = len(pos)
        f = scores(critic, torch.cat([pos, neg]))
        x_hat = (a * pos + (1 - a) * neg).requires_grad_(True)
        (grad,) = torch.autograd.grad(scores(critic, x_hat).sum(), x_hat, create_graph=True)
        penalty = ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
        loss = f[n:].mean() - f[:n].mean() + gp_lambda * penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        forward += 3 * n      # positives and negatives, then the interpolates
        backward += 3 * n     # the interpolates' input gradient (its double backward belongs to it), the loss's
    return forward, backward


def floor_synthesis(critic: nn.Module, ascents: list[tuple[torch.Tensor, int]], lr: float,
                    betas: tuple[float, float]) -> tuple[torch.Tensor, int, int]:
    """Every synthesis batch bare, for the trainer's step count; returns (images, forward, backward)."""
    forward = backward = 0
    out = []
    with frozen_eval(critic):
        for start, steps in ascents:
            x = start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([x], lr=lr, betas=betas)
            for _ in range(steps):
                loss = -scores(critic, x).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    x.clamp_(MODEL_LOW, MODEL_HIGH)
            with torch.no_grad():
                scores(critic, x)  # the stop test
            forward += (steps + 1) * len(x)
            backward += steps * len(x)
            out.append(x.detach())
    return torch.cat(out), forward, backward


def floor_iteration(critic: nn.Module, optimizer: torch.optim.Optimizer, record: Recording, method: Any,
                    clock: Clock) -> FloorRun:
    with clock.part("critic"):
        critic_forward, critic_backward = floor_critic(critic, optimizer, record.critic_batches, method.gp_lambda)
    with clock.part("synthesis"):
        images, forward, backward = floor_synthesis(critic, record.ascents, method.ascent_lr,
                                                    (method.ascent_beta1, method.ascent_beta2))
    return FloorRun(critic_forward + forward, critic_backward + backward, images)


# ----------------------------------------------------------------------------- winn-gen
def winn_gen_config(args: argparse.Namespace, dataset: str) -> TrainConfig:
    options = {"cascades": 1, "iterations": args.warm_iterations + 1, "positives": args.positives,
               "negatives": args.negatives, "last_negatives": args.negatives, "initial_negatives": args.initial_negatives,
               "critic_passes": args.critic_passes, "ascent_max_steps": args.ascent_max_steps}
    return TrainConfig(method="winn-gen", arch=args.arch, data=dataset, batch_size=args.batch_size, seed=args.seed,
                       method_options=options)


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def warmed_trainer(args: argparse.Namespace, dataset: ImageDataset, device: torch.device, out: Path,
                   make_config: Callable[[argparse.Namespace, str], TrainConfig]
                   ) -> tuple[TrainData, TrainConfig, GenerativeTrainer, Snapshot]:
    """A trainer past its warm-up iterations, and the snapshot every timed run starts from."""
    data = make_train_data(dataset, 100, args.seed, args.train_limit, device)  # validation is unused
    config = make_config(args, data.dataset)
    trainer = GenerativeTrainer(config, data, out, device, progress=False)
    for _ in range(args.warm_iterations):
        trainer.run_iteration()
    return data, config, trainer, Snapshot.of(trainer)


def measure_winn_gen(args: argparse.Namespace, dataset: ImageDataset, device: torch.device, out: Path) -> dict[str, Any]:
    data, config, trainer, start = warmed_trainer(args, dataset, device, out / "winn-gen", winn_gen_config)
    learner: Any = trainer.learner
    method = learner.method
    with recording() as record:
        row = trainer.run_iteration()
    trainer_weights = copy.deepcopy(learner.critic.state_dict())
    if not record.ascents or len(record.critic_batches) == 0:
        raise RuntimeError("the recorded iteration made no critic batch or no synthesis batch")

    critic = copy.deepcopy(learner.critic)
    optimizer = torch.optim.Adam(critic.parameters(), lr=method.critic_lr, betas=(config.beta1, config.beta2))

    def reset_floor() -> None:
        critic.load_state_dict(start.weights["critic"])
        optimizer.load_state_dict(copy.deepcopy(start.optimizers["critic"]))

    reset_floor()
    check = floor_iteration(critic, optimizer, record, method, Clock())
    weight_diff = max_diff(trainer_weights, critic.state_dict())
    image_diff = (check.images - torch.cat(record.images)).abs().max().item()

    def floor_run(clock: Clock) -> FloorRun:
        reset_floor()
        return floor_iteration(critic, optimizer, record, method, clock)

    timings, clocks, rows = trainer_against_floor(trainer, start, learner, {"critic": "critic_step",
                                                  "synthesis": "synthesize"}, floor_run, device, args.repeats)
    repeat_same = all(r["forward_passes"] == row["forward_passes"] and r["synthesis_steps_mean"] == row["synthesis_steps_mean"]
                      for r in rows)
    floor_out: FloorRun = timings.outputs["floor"]
    steps = [s for _, s in record.ascents]
    return {"method": "winn-gen", "dataset": data.dataset, "image_shape": list(data.image_shape),
            "train_images": len(data.train_images), "timed_iteration": row["epoch"], "critic_batches": len(record.critic_batches),
            "batch_size": config.batch_size, "synthesis_batches": len(steps), "synthesis_steps": steps,
            **floor_speeds(clocks),
            "passes": {"trainer": {"forward": int(row["forward_passes"]), "backward": int(row["backward_passes"])},
                       "floor": {"forward": floor_out.forward, "backward": floor_out.backward}},
            "agreement": {"max_abs_weight_diff": weight_diff, "max_abs_image_diff": image_diff,
                          "timed_repeats_same_work": repeat_same}}


# ----------------------------------------------------------------------------- wgan-gp
def wgan_gp_module() -> Any:
    """training/generative/wgan_gp.py (imported when measured, so the winn-gen half runs without it)."""
    try:
        return importlib.import_module("winn_robust.training.generative.wgan_gp")
    except ModuleNotFoundError:
        raise UserError("this winn_robust has no wgan-gp; measure --methods winn-gen") from None


@dataclass
class GanRecording:
    """What one wgan-gp row did: every real batch, latent code and interpolation weight in the
    order drawn, and the random state its threshold range drew its real batches from."""
    reals: list[torch.Tensor] = field(default_factory=list)
    latents: list[torch.Tensor] = field(default_factory=list)
    weights: list[torch.Tensor] = field(default_factory=list)
    threshold_rng: list[torch.Tensor] = field(default_factory=list)


@contextmanager
def gan_recording(learner: Any, rng: torch.Generator) -> Iterator[GanRecording]:
    """Record a wgan-gp learner's draws meanwhile (instance attributes shadowing its methods, and
    the name wgan_gp looks interpolation weights up by)."""
    record = GanRecording()
    wgan_gp = wgan_gp_module()
    real_batch, latent, range_ = learner.real_batch, learner.latent, learner.real_score_range
    weights = wgan_gp.interpolation_weights

    def logged_real() -> torch.Tensor:
        record.reals.append(real_batch().clone())
        return record.reals[-1]

    def logged_latent(n: int) -> torch.Tensor:
        record.latents.append(latent(n).clone())
        return record.latents[-1]

    def logged_weights(n: int, like: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        record.weights.append(weights(n, like, rng).clone())
        return record.weights[-1]

    def logged_range() -> tuple[float, float]:
        record.threshold_rng.append(rng.get_state())
        return range_()

    learner.real_batch, learner.latent, learner.real_score_range = logged_real, logged_latent, logged_range
    wgan_gp.interpolation_weights = logged_weights
    try:
        yield record
    finally:
        del learner.real_batch, learner.latent, learner.real_score_range
        wgan_gp.interpolation_weights = weights


@dataclass
class GanFloorRun:
    forward: int
    backward: int
    threshold_range: tuple[float, float]


def floor_gan(critic: nn.Module, generator: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer],
              record: GanRecording, images: torch.Tensor, method: Any, clock: Clock) -> GanFloorRun:
    """The row's generator iterations bare: n_critic critic steps (the generator's forward on the
    latent codes without a graph, the critic loss as winn-gen's floor, Adam), then a generator
    step (-mean f(G(z)), backward through the frozen critic, Adam); then the real batches' mean
    scores of the threshold range."""
    forward = backward = 0
    critic.train()
    generator.train()
    latents = iter(record.latents)
    reals, weights = iter(record.reals), iter(record.weights)
    for _ in range(len(record.reals) // method.n_critic):
        with clock.part("critic"):
            for _ in range(method.n_critic):
                real, z, a = next(reals), next(latents), next(weights)
                with torch.no_grad():
                    fake = generator(z)
                n = len(real)
                f = scores(critic, torch.cat([real, fake]))
                x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
                (grad,) = torch.autograd.grad(scores(critic, x_hat).sum(), x_hat, create_graph=True)
                loss = f[n:].mean() - f[:n].mean() + method.gp_lambda * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
                optimizers["critic"].zero_grad(set_to_none=True)
                loss.backward()
                optimizers["critic"].step()
                forward, backward = forward + 4 * n, backward + 3 * n  # G's forward; the critic's 3 n both ways
        with clock.part("synthesis"):
            z = next(latents)
            for p in critic.parameters():
                p.requires_grad_(False)
            loss = -scores(critic, generator(z)).mean()
            optimizers["generator"].zero_grad(set_to_none=True)
            loss.backward()
            optimizers["generator"].step()
            for p in critic.parameters():
                p.requires_grad_(True)
            forward, backward = forward + 2 * len(z), backward + 2 * len(z)  # through G and the critic
    wgan_gp = wgan_gp_module()
    (state,) = record.threshold_rng
    rng = torch.Generator(device=images.device)
    rng.set_state(state)
    index = torch.randperm(len(images), generator=rng, device=images.device)
    size = min(method.gan_batch, len(images))
    critic.eval()
    with torch.no_grad():
        means = [float(scores(critic, images[index[s:s + size]]).mean())
                 for s in range(0, min(len(index), wgan_gp.THRESHOLD_BATCHES * size), size) if s + size <= len(index)]
    critic.train()
    return GanFloorRun(forward + size * len(means), backward, (min(means), max(means)))


def wgan_gp_config(args: argparse.Namespace, dataset: str) -> TrainConfig:
    options = {"iterations": (args.warm_iterations + 1) * args.log_every, "log_every": args.log_every,
               "gan_batch": args.gan_batch}
    return TrainConfig(method="wgan-gp", arch=args.arch, data=dataset, batch_size=args.batch_size, seed=args.seed,
                       method_options=options)


def measure_wgan_gp(args: argparse.Namespace, dataset: ImageDataset, device: torch.device, out: Path) -> dict[str, Any]:
    data, _, trainer, start = warmed_trainer(args, dataset, device, out / "wgan-gp", wgan_gp_config)
    learner: Any = trainer.learner
    method = learner.method
    with gan_recording(learner, trainer.rng) as record:
        row = trainer.run_iteration()
    trainer_weights = {k: copy.deepcopy(m.state_dict()) for k, m in learner.modules.items()}

    critic, generator = copy.deepcopy(learner.critic), copy.deepcopy(learner.generator)
    betas = (method.gan_beta1, method.gan_beta2)
    optimizers = {"critic": torch.optim.Adam(critic.parameters(), lr=method.critic_lr, betas=betas),
                  "generator": torch.optim.Adam(generator.parameters(), lr=method.generator_lr, betas=betas)}
    images = learner.images

    def reset_floor() -> None:
        for name, module in (("critic", critic), ("generator", generator)):
            module.load_state_dict(start.weights[name])
            optimizers[name].load_state_dict(copy.deepcopy(start.optimizers[name]))

    reset_floor()
    check = floor_gan(critic, generator, optimizers, record, images, method, Clock())
    weight_diff = max(max_diff(trainer_weights["critic"], critic.state_dict()),
                      max_diff(trainer_weights["generator"], generator.state_dict()))
    threshold_diff = max(abs(check.threshold_range[0] - row["threshold_low"]),
                         abs(check.threshold_range[1] - row["threshold_high"]))

    def floor_run(clock: Clock) -> GanFloorRun:
        reset_floor()
        return floor_gan(critic, generator, optimizers, record, images, method, clock)

    timings, clocks, rows = trainer_against_floor(trainer, start, learner, {"critic": "critic_step",
                                                  "synthesis": "generator_step"}, floor_run, device, args.repeats)
    floor_out: GanFloorRun = timings.outputs["floor"]
    steps = len(record.reals) // method.n_critic
    return {"method": "wgan-gp", "dataset": data.dataset, "image_shape": list(data.image_shape),
            "train_images": len(data.train_images), "timed_iteration": row["epoch"],
            "generator_iterations": steps, "n_critic": method.n_critic, "batch_size": method.gan_batch,
            **floor_speeds(clocks),
            "passes": {"trainer": {"forward": int(row["forward_passes"]), "backward": int(row["backward_passes"])},
                       "floor": {"forward": floor_out.forward, "backward": floor_out.backward}},
            "agreement": {"max_abs_weight_diff": weight_diff, "max_abs_threshold_diff": threshold_diff,
                          "timed_repeats_same_work": all(r["forward_passes"] == row["forward_passes"] for r in rows)}}


# ----------------------------------------------------------------------------- output
def passes_agree(result: dict[str, Any]) -> bool:
    return bool(result["passes"]["trainer"] == result["passes"]["floor"])


def describe(r: dict[str, Any]) -> str:
    """The line under the table: what the timed iteration did and how far trainer and floor agree."""
    agree = r["agreement"]
    median = r["x_floor_speed_median"]["cpu"]
    head = (f"  {r['method']}: x floor speed by the median CPU seconds {median['critic']:.2f} / {median['synthesis']:.2f} / "
            f"{median['total']:.2f}; ")
    head += f"iteration {r['timed_iteration']} on {r['dataset']} {tuple(r['image_shape'])}: "
    passes = f"passes {'AGREE' if passes_agree(r) else 'DIFFER'}"
    if r["method"] == "wgan-gp":
        return (head + f"{r['generator_iterations']} generator iterations of {r['n_critic']} critic steps, batch "
                f"{r['batch_size']}; {passes}; after the row the weights differ by at most "
                f"{agree['max_abs_weight_diff']:.3g}, the threshold range by {agree['max_abs_threshold_diff']:.3g}")
    steps = r["synthesis_steps"]
    return (head + f"{r['critic_batches']} critic batches of {r['batch_size']}, {r['synthesis_batches']} synthesis "
            f"batches, Adam steps {min(steps)}..{max(steps)} (mean {sum(steps) / len(steps):.1f}); {passes}; after the "
            f"iteration the critic weights differ by at most {agree['max_abs_weight_diff']:.3g}, the synthesized images "
            f"by {agree['max_abs_image_diff']:.3g}")


def format_results(results: list[dict[str, Any]]) -> str:
    columns = [Column("method", 8, align="<"), Column("side", 7, align="<"), Column("clock", 5, align="<"),
               Column("critic s", 8, ".3f"), Column("synth/G s", 9, ".3f"), Column("total s", 8, ".3f"),
               Column("fwd passes", 10, "d"), Column("bwd passes", 10, "d"),
               Column("x floor speed (critic/synth/total)", 34, align=">")]
    rows: list[list[Any]] = []
    notes = []
    for r in results:
        for clock in CLOCKS:
            speed = r["x_floor_speed"][clock]
            for side in ("trainer", "floor"):
                s, p = r["seconds"][side][clock], r["passes"][side]
                passes = [p["forward"], p["backward"]] if clock == "wall" else ["", ""]
                ratio = f"{speed['critic']:.2f} / {speed['synthesis']:.2f} / {speed['total']:.2f}" if side == "trainer" else ""
                rows.append([r["method"], side, clock, s["critic"], s["synthesis"], s["total"], *passes, ratio])
        notes.append(describe(r))
    return table(columns, rows, indent="  ") + "\n" + "\n".join(notes)


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--data", choices=("digits", "fashion-mnist"), default="digits",
                    help=f"digits (embedded) or fashion-mnist (from --data-dir, default {FASHION_DIR}; else digits)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-limit", type=int, default=1000, help="training images (default 1000)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--arch", default="vanilla", help="the critic's architecture")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warm-iterations", type=int, default=2, help="winn-gen iterations run before the timed one")
    ap.add_argument("--positives", type=int, default=100, help="winn-gen positives P (the timed iteration sees "
                    "min(warm + 1, 5) x P)")
    ap.add_argument("--negatives", type=int, default=200, help="winn-gen negatives synthesized per iteration")
    ap.add_argument("--initial-negatives", type=int, default=200)
    ap.add_argument("--critic-passes", type=int, default=3)
    ap.add_argument("--ascent-max-steps", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=10, help="wgan-gp generator iterations per row (the timed unit)")
    ap.add_argument("--gan-batch", type=int, default=64, help="wgan-gp batch (the reference's 64)")
    ap.add_argument("--repeats", type=int, default=3)
    add_json_option(ap)
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        raise UserError(f"--methods {','.join(args.methods)!r}: choose from {', '.join(METHODS)}")
    for name in ("repeats", "train_limit", "batch_size", "positives", "negatives", "initial_negatives",
                 "critic_passes", "ascent_max_steps", "log_every", "gan_batch"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warm_iterations < 0:
        raise UserError(f"--warm-iterations must be >= 0, got {args.warm_iterations}")
    return args


MEASURES: dict[str, Callable[[argparse.Namespace, ImageDataset, torch.device, Path], dict[str, Any]]] = {
    "winn-gen": measure_winn_gen,
    "wgan-gp": measure_wgan_gp,
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    begin = time.perf_counter()
    device = torch.device(args.device)
    if args.data == "fashion-mnist":
        dataset, source = load_fashion_mnist(args.data_dir, "digits") or (load_dataset("digits"), "embedded")
    else:
        dataset, source = load_dataset("digits"), "embedded"
    print(f"generative trainer at its floor: {dataset.name} ({source}), critic {args.arch}, batch {args.batch_size}, "
          f"{args.repeats} timed repeats (best shown); {runtime_note()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="winn-gen-floor-") as tmp:
        for method in args.methods:
            results.append(MEASURES[method](args, dataset, device, Path(tmp)))
    print(format_results(results))
    return finish(args, begin, [device], {"dataset": dataset.name, "results": results})


if __name__ == "__main__":
    run_main(main)
