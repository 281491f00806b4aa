"""Introspective synthesis: the classifier is also a generator.

Starting from the frozen random generator's images, Adam on the pixels minimises
|mean f(x) - tau| + 0.5 * CE(f(x), target class), clipping to [-1, 1] after every step, until
|mean f(x) - tau| <= tolerance or the step budget runs out.

All classes are synthesized as ONE batch of groups (one group = one class's new negatives,
with its own tau). Adam keeps per-pixel state and the group losses share no pixels, so one
optimizer over the batch takes exactly the steps separate per-class optimizers would; a
group that reaches its tolerance is frozen where it stands while the others go on. As in the
official code every group takes at least one step, and the stop test runs after each step.
The stop test runs on the device every step; the host looks every `check_every` steps (every step on
the CPU, every 10 on a GPU, where looking stalls the queue), to decide whether every group is done
and to drop finished groups from the forward/backward pass (compaction: late steps cost only what
the slow groups need). A frozen group stands still because its Adam first moment is zeroed when it
stops (its gradient is zero from then on), so no copy of the images is needed to restore it.

Synthesis always runs in float32: the stop test compares f with tau to 1e-3, and bfloat16
autocast moved f by more than that in our check (see README, "Mixed precision"). A non-finite
critic score stops the synthesis with `SynthesisDiverged` (NaN would otherwise pass the stop
test, since NaN > tolerance is false)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from winn_robust.models.base import Classifier, frozen_eval
from winn_robust.models.generator import RandomGenerator
from winn_robust.training.config import TrainConfig
from winn_robust.training.divergence import SynthesisDiverged
from winn_robust.units import MODEL_HIGH, MODEL_LOW


@dataclass
class SynthesisResult:
    images: torch.Tensor        # (groups, per_group, C, H, W) in [-1, 1]
    steps: torch.Tensor         # (groups,) Adam steps each group took
    final_gap: torch.Tensor     # (groups,) |mean f - tau| when the group stopped


def synthesize(model: Classifier, start: torch.Tensor, targets: torch.Tensor, tau: torch.Tensor, *,
               lr: float = 0.02, betas: tuple[float, float] = (0.9, 0.9), max_steps: int = 2000,
               tolerance: float = 1e-3, ce_weight: float = 0.5, check_every: int | None = None,
               progress: bool = False, desc: str = "synthesis") -> SynthesisResult:
    """Synthesize groups of images. start: (G, n, C, H, W); targets: (G,) class per group;
    tau: (G,) target mean critic score per group. check_every: steps between host looks
    (default: every step on the CPU, where looking costs nothing; every 10 steps on a GPU, where
    each look waits for the queued work)."""
    if check_every is None:
        check_every = 1 if start.device.type == "cpu" else 10
    groups, per_group = start.shape[:2]
    image_shape = start.shape[2:]
    x = start.reshape(groups * per_group, *image_shape).detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr, betas=betas)
    active = torch.ones(groups, dtype=torch.bool, device=x.device)
    steps = torch.zeros(groups, dtype=torch.long, device=x.device)
    gap = torch.full((groups,), float("inf"), dtype=tau.dtype, device=x.device)
    live = torch.arange(groups, device=x.device)          # groups still in the forward pass

    def score_live() -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.view(groups, per_group, *image_shape)[live].flatten(0, 1)
        logits, f = model.score(batch)
        return logits.to(tau.dtype), f.to(tau.dtype).view(len(live), per_group)

    first_bad = torch.full((), -1, dtype=torch.long, device=x.device)  # first step with a non-finite score

    def raise_if_diverged() -> None:
        if int(first_bad) >= 0:
            bad_groups = (~torch.isfinite(gap)).nonzero().squeeze(1)
            raise SynthesisDiverged(int(first_bad), [int(targets[g]) for g in bad_groups.tolist()])

    bar = tqdm(total=max_steps, desc=desc, leave=False, disable=not progress, unit="step")
    with frozen_eval(model), bar:
        for step in range(max_steps + 1):
            logits, f = score_live()
            live_gap = torch.where(active[live], (f.mean(dim=1) - tau[live]).abs().detach(), gap[live])
            gap = gap.index_copy(0, live, live_gap)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(live_gap).all(), step, first_bad)
            if step > 0:  # the official loop tests after a step, never before the first one
                active = active & (gap > tolerance)
            if step % check_every == 0 or step == max_steps:
                raise_if_diverged()
                remaining = int(active.sum())
                bar.set_postfix(active_groups=remaining)
                if remaining == 0:
                    break
                if remaining < len(live):
                    live = active.nonzero().squeeze(1)
                    logits, f = score_live()
            if step == max_steps:
                break
            labels = targets[live].repeat_interleave(per_group)
            ce = F.cross_entropy(logits, labels, reduction="none").view(len(live), per_group).mean(dim=1)
            group_loss = (f.mean(dim=1) - tau[live]).abs() + ce_weight * ce
            optimizer.zero_grad(set_to_none=True)
            (group_loss * active[live]).sum().backward()
            if step > 0:
                # A frozen group's gradient is zero (its loss is masked or it left the pass); with its
                # first moment zeroed once, Adam's update of its pixels is exactly zero from then on,
                # so it stands still without a copy of x to restore it from.
                exp_avg = optimizer.state[x]["exp_avg"]
                exp_avg.view(groups, -1).masked_fill_(~active.unsqueeze(1), 0.0)
            optimizer.step()
            with torch.no_grad():
                x.clamp_(MODEL_LOW, MODEL_HIGH)  # frozen pixels are in range already: unchanged
            steps += active
            bar.update(1)
    raise_if_diverged()
    return SynthesisResult(x.detach().view(groups, per_group, *image_shape), steps, gap)


def generator_for(config: TrainConfig, image_shape: tuple[int, int, int], device: torch.device) -> RandomGenerator:
    """The frozen random generator, rebuilt from the seed alone (so `sample` can rebuild it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 7919)
        generator = RandomGenerator(image_shape, init=config.generator_init)
    return generator.to(device).eval()


def draw_synthesis_inputs(generator: RandomGenerator, num_classes: int, per_class: int, tau_range: tuple[float, float],
                          rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Start images (classes, per_class, C, H, W) from the frozen generator, then one
    tau ~ U[tau_range] per class: the randoms of one synthesis pass, in their order."""
    start = generator.sample(num_classes * per_class, rng, rng.device).view(num_classes, per_class, *generator.image_shape)
    low, high = tau_range
    tau = low + (high - low) * torch.rand(num_classes, generator=rng, device=rng.device)
    return start, tau


def synthesize_negatives(model: Classifier, generator: RandomGenerator, num_classes: int, per_class: int,
                         tau_range: tuple[float, float], rng: torch.Generator, config: TrainConfig, *,
                         max_steps: int | None = None, progress: bool = False,
                         desc: str = "synthesis", classes: range | None = None) -> SynthesisResult:
    """The one synthesis entry point (trainer, `sample`, benchmarks): fresh generator images as
    starts, one tau ~ U[tau_range] per class, then `synthesize` with the config's settings.
    Draws from `rng` in that order (starts, then tau), so a seeded rng gives the same images.

    `classes` (default: all) synthesizes only those classes' groups, but still draws the starts
    and tau of every class: data-parallel ranks each take a share of the classes and keep one
    shared random stream, and a group's result does not depend on which other groups run
    beside it (see the module docstring), so the union of the shares is the single-process result."""
    device = rng.device
    start, tau = draw_synthesis_inputs(generator, num_classes, per_class, tau_range, rng)
    targets = torch.arange(num_classes, device=device)
    if classes is not None:
        mine = slice(classes.start, classes.stop)
        start, tau, targets = start[mine], tau[mine], targets[mine]
        if len(targets) == 0:  # more ranks than classes: nothing to synthesize here
            return SynthesisResult(start, torch.zeros(0, dtype=torch.long, device=device), tau.clone())
    return synthesize(model, start, targets, tau, lr=config.synthesis_lr,
                      betas=(config.synthesis_beta1, config.synthesis_beta2),
                      max_steps=config.synthesis_max_steps if max_steps is None else max_steps,
                      tolerance=config.synthesis_tolerance, ce_weight=config.synthesis_ce_weight,
                      progress=progress, desc=desc)
