"""The trainer at its floor: the trainer's classification and synthesis passes against the same
passes done bare, and what torch.compile and channels-last memory format change.

Floor (like attack_throughput's): the minimum work of each pass, without the trainer's
bookkeeping (progress, finiteness checks, logged terms, error counts, the tau range):

  classification  the trainer's own batches of one epoch, drawn beforehand with a copy of its
                  random stream (the same positives, negatives and interpolation coefficients):
                  per batch the loss (WINN: one forward of positives, negatives and interpolates,
                  the gradient-penalty double backward), backward and the Adam step.
  synthesis       the start images and tau drawn as the trainer draws them (`draw_synthesis_inputs`
                  from the same random state: the frozen generator's forward is part of the pass,
                  and at 28x28 not a small one), then the step count each group took in the
                  trainer's synthesis: every step forward, input backward and Adam on the groups
                  still live at that step only.
                  The trainer cannot know the schedule beforehand: it learns that a group has
                  stopped from one more forward (the stop test after its last step), drops it from
                  the pass at the next host look (every step on the CPU, every 10 on a GPU) and
                  scores the smaller batch again.

Both sides start from the same weights and are timed round-robin, best of --floor-repeats. The
agreement line compares what they computed (weights after the classification pass, synthesized
images), so the floor is known to do the same work. "x floor speed" = floor seconds / trainer
seconds: 1.0 is the floor, the aim is >= 0.9.

--compile-check times one classification step and one synthesis step (the full live batch) in
eager mode, channels-last, torch.compile, and both, with the compile time (first call) apart, and
the largest difference of loss and gradients from eager."""
from __future__ import annotations

import copy
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import Column, Pipeline, table, time_pipelines, time_round_robin, timed
from winn_robust.models.base import Classifier, frozen_eval
from winn_robust.training import TrainConfig
from winn_robust.training.synthesis import draw_synthesis_inputs, synthesize_negatives
from winn_robust.training.trainer import Batch, TrainData, Trainer
from winn_robust.units import MODEL_HIGH, MODEL_LOW

ADAM_EPS = 1e-8  # torch.optim.Adam's default, which the synthesis optimizer uses
PASSES = ("classification", "synthesis")
Layout = Callable[[torch.Tensor], torch.Tensor]
Score = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]   # images -> (logits, critic f)
StepFn = Callable[[Classifier, Callable[..., Any], Layout], tuple[float, list[torch.Tensor]]]


# ----------------------------------------------------------------------------- the losses, once
def same_layout(x: torch.Tensor) -> torch.Tensor:
    return x


def classification_loss(score: Score, forward: Callable[[torch.Tensor], torch.Tensor], b: Batch, config: TrainConfig,
                        layout: Layout = same_layout) -> torch.Tensor:
    """The trainer's classification loss of one batch, bare. WINN: one forward of positives,
    negatives and interpolates, the gradient penalty's double backward; ICN: the logistic critic
    loss; else the cross-entropy of `forward` (the plain logits) on the positives."""
    n = len(b.pos)
    method: Any = config.training_method
    if config.method == "winn":
        assert b.neg is not None and b.coefficients is not None
        x_hat = layout(b.coefficients * b.pos + (1 - b.coefficients) * b.neg).requires_grad_(True)
        logits, f = score(torch.cat([layout(b.pos), layout(b.neg), x_hat]))
        (grad,) = torch.autograd.grad(f[2 * n:].sum(), x_hat, create_graph=True)
        penalty = ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()
        gap = f[n:2 * n].mean() - f[:n].mean()
        return F.cross_entropy(logits[:n], b.labels) + method.alpha * (gap + method.gp_lambda * penalty)
    if config.method == "icn":
        assert b.neg is not None
        logits, f = score(torch.cat([layout(b.pos), layout(b.neg)]))
        logistic = F.softplus(-f[:n]).mean() + F.softplus(f[n:]).mean()
        return F.cross_entropy(logits[:n], b.labels) + method.alpha * logistic
    return F.cross_entropy(forward(layout(b.pos)), b.labels)


def synthesis_loss(logits: torch.Tensor, f: torch.Tensor, labels: torch.Tensor, tau: torch.Tensor, groups: int,
                   per_group: int, config: TrainConfig) -> torch.Tensor:
    """The synthesis objective of `groups` groups: |mean f - tau| plus the weighted mean
    cross-entropy on the group's class, summed over the groups."""
    ce = F.cross_entropy(logits, labels, reduction="none").view(groups, per_group).mean(1)
    return ((f.view(groups, per_group).mean(1) - tau).abs() + config.synthesis_ce_weight * ce).sum()


# ----------------------------------------------------------------------------- classification
def trainer_batches(trainer: Trainer) -> list[Batch]:
    """The batches the trainer's next classification pass will see, drawn with its own code from a
    copy of its random state (the state is put back)."""
    state = trainer.rng.get_state()
    n, size = len(trainer.data.train_images), trainer.config.batch_size
    order = torch.randperm(n, generator=trainer.rng, device=trainer.device)
    batches = [trainer.draw_batch(order[i:i + size]) for i in range(0, n, size)]
    trainer.rng.set_state(state)
    return batches


def floor_classification(model: Classifier, optimizer: torch.optim.Optimizer, batches: list[Batch],
                         config: TrainConfig) -> None:
    """One epoch of classification steps, bare: loss, backward, Adam step; nothing else."""
    model.train()
    for b in batches:
        loss = classification_loss(model.score, model, b, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def twin(trainer: Trainer) -> tuple[Classifier, torch.optim.Optimizer]:
    """A copy of the trainer's model and Adam state, for the floor to train from the same start."""
    model = copy.deepcopy(trainer.model)
    cfg = trainer.config
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    optimizer.load_state_dict(copy.deepcopy(trainer.optimizer.state_dict()))  # load_state_dict may alias tensors
    return model, optimizer


def max_weight_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def reset(trainer: Trainer, weights: dict[str, torch.Tensor], rng_state: torch.Tensor,
          tau_range: tuple[float, float] | None = None) -> None:
    """The trainer back to the same weights and random state (and tau range) before a timed pass,
    so every repeat does the same work (a ~1 ms copy)."""
    trainer.model.load_state_dict(weights)
    trainer.rng.set_state(rng_state)
    if tau_range is not None:
        trainer.tau_range = tau_range


def trainer_vs_floor(trainer_s: float, floor_s: float) -> float:
    """"x floor speed": floor seconds / trainer seconds (1.0 = at the floor)."""
    return floor_s / trainer_s


# ----------------------------------------------------------------------------- synthesis
def live_schedule(steps: list[int]) -> list[tuple[int, torch.Tensor]]:
    """(number of steps, live group indices) runs: the groups that still step, in order."""
    runs: list[tuple[int, torch.Tensor]] = []
    done = 0
    for stop in sorted(set(s for s in steps if s > 0)):
        runs.append((stop - done, torch.tensor([g for g, s in enumerate(steps) if s >= stop])))
        done = stop
    return runs


def floor_synthesis(model: Classifier, start: torch.Tensor, tau: torch.Tensor, steps: list[int],
                    config: TrainConfig) -> torch.Tensor:
    """Replay the trainer's synthesis schedule bare: each step forward, input backward and the Adam
    update (torch.optim.Adam's formula) on the live groups only, then clip. Returns the images."""
    groups, per_group = start.shape[:2]
    x, m, v = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
    targets = torch.arange(groups, device=start.device)
    b1, b2, lr = config.synthesis_beta1, config.synthesis_beta2, config.synthesis_lr
    step = 0
    with frozen_eval(model):
        for count, live in live_schedule(steps):
            live = live.to(start.device)
            everyone = len(live) == groups
            labels = targets[live].repeat_interleave(per_group)
            for _ in range(count):
                step += 1
                xl = (x if everyone else x[live]).detach().requires_grad_(True)
                logits, f = model.score(xl.flatten(0, 1))
                loss = synthesis_loss(logits, f, labels, tau[live], len(live), per_group, config)
                (grad,) = torch.autograd.grad(loss, xl)
                with torch.no_grad():
                    ml, vl = (m, v) if everyone else (m[live], v[live])
                    ml.mul_(b1).add_(grad, alpha=1 - b1)
                    vl.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                    denom = (vl.sqrt() / math.sqrt(1 - b2 ** step)).add_(ADAM_EPS)
                    new = (xl.detach() - (lr / (1 - b1 ** step)) * ml / denom).clamp_(MODEL_LOW, MODEL_HIGH)
                    if everyone:
                        x = new
                    else:
                        x[live], m[live], v[live] = new, ml, vl
    return x


@dataclass
class FloorInputs:
    trainer: Trainer
    batches: list[Batch]
    start: torch.Tensor
    tau: torch.Tensor
    steps: list[int]
    reference_images: torch.Tensor


def prepare(config: TrainConfig, data: TrainData, device: torch.device, out_dir: Path) -> FloorInputs:
    """A trainer one classification pass in (so the critic and tau range are the trained ones),
    its next epoch's batches, and its synthesis schedule from a fixed random state."""
    trainer = Trainer(config, data, out_dir, device, progress=False)
    trainer.epoch = 1
    trainer.classification_pass()
    batches = trainer_batches(trainer)
    state = trainer.rng.get_state()
    assert trainer.generator is not None
    start, tau = draw_synthesis_inputs(trainer.generator, data.num_classes, config.negatives_per_class,
                                       trainer.tau_range, trainer.rng)
    trainer.rng.set_state(state)
    result = synthesize_negatives(trainer.model, trainer.generator, data.num_classes, config.negatives_per_class,
                                  trainer.tau_range, trainer.rng, config)
    trainer.rng.set_state(state)
    return FloorInputs(trainer, batches, start, tau, result.steps.tolist(), result.images)


def measure_floor(config: TrainConfig, data: TrainData, device: torch.device, out_dir: Path,
                  repeats: int) -> dict[str, Any]:
    """Trainer vs floor, classification and synthesis, timed round-robin (best of `repeats`)."""
    inputs = prepare(config, data, device, out_dir)
    trainer = inputs.trainer
    # agreement first, from identical states: the floor must compute what the trainer computes
    model, optimizer = twin(trainer)
    check_model, check_optimizer = twin(trainer)
    rng_state, tau_range = trainer.rng.get_state(), trainer.tau_range
    reference = copy.deepcopy(trainer.model.state_dict())
    trainer.classification_pass()
    floor_classification(check_model, check_optimizer, inputs.batches, config)
    weight_diff = max_weight_diff(trainer.model, check_model)
    trainer.model.load_state_dict(reference)  # back to the same weights for the synthesis comparison
    trainer.rng.set_state(rng_state)
    synth_model = copy.deepcopy(trainer.model)  # synthesis always with these weights: the same steps every repeat
    assert trainer.generator is not None
    generator, classes = trainer.generator, data.num_classes

    def floor_synthesis_pass() -> torch.Tensor:
        rng = torch.Generator(device=device)
        rng.set_state(rng_state)
        start, tau = draw_synthesis_inputs(generator, classes, config.negatives_per_class, tau_range, rng)
        return floor_synthesis(synth_model, start, tau, inputs.steps, config)

    image_diff = (floor_synthesis_pass() - inputs.reference_images).abs().max().item()

    def trainer_synthesis() -> None:
        # undo the timed classification passes, and the same start images and tau every repeat
        reset(trainer, reference, rng_state, tau_range)
        trainer.synthesis_pass()

    timings = time_pipelines([
        Pipeline("trainer classification", trainer.classification_pass),
        Pipeline("floor classification", lambda: floor_classification(model, optimizer, inputs.batches, config)),
        Pipeline("trainer synthesis", trainer_synthesis),
        Pipeline("floor synthesis", floor_synthesis_pass),
    ], device, repeats)
    assert trainer.new_negatives is not None
    # the timed trainer synthesis redid the reference synthesis (same weights, starts and tau)
    repeat_diff = (trainer.new_negatives - inputs.reference_images).abs().max().item()
    best = timings.best
    steps = inputs.steps
    return {"device": str(device), "method": config.method, "train_images": len(data.train_images),
            "batch_size": config.batch_size, "groups": len(steps), "per_group": config.negatives_per_class,
            "synthesis_steps": steps, "seconds_best": best, "seconds_median": timings.median,
            "seconds_all": timings.seconds,
            **{f"{name}_x_floor": trainer_vs_floor(best[f"trainer {name}"], best[f"floor {name}"]) for name in PASSES},
            "agreement": {"max_abs_weight_diff": weight_diff, "max_abs_image_diff": image_diff,
                          "trainer_repeat_image_diff": repeat_diff}}


FLOOR_COLUMNS = (Column("trainer s", 9, ".3f"), Column("floor s", 8, ".3f"))
X_FLOOR_SPEED = Column("x floor speed", 13, ".2f")


def format_floor(result: dict[str, Any]) -> str:
    best, median = result["seconds_best"], result["seconds_median"]
    columns = [Column("pass", 15, align="<"), *FLOOR_COLUMNS, Column("trainer median", 14, ".3f"),
               Column("floor median", 12, ".3f"), X_FLOOR_SPEED]
    rows = [[name, best["trainer " + name], best["floor " + name], median["trainer " + name], median["floor " + name],
             result[name + "_x_floor"]] for name in PASSES]
    steps = result["synthesis_steps"]
    agree = result["agreement"]
    lines = [f"trainer vs floor on {result['device']} ({result['method']}, {result['train_images']} images in batches of "
             f"{result['batch_size']}; synthesis {result['groups']} groups x {result['per_group']}, steps per group "
             f"{min(steps)}..{max(steps)}, mean {sum(steps) / len(steps):.1f}); best of the repeats:",
             table(columns, rows, indent="  "),
             f"  agreement: weights after one classification pass differ by at most {agree['max_abs_weight_diff']:.3g}, "
             f"synthesized images by at most {agree['max_abs_image_diff']:.3g} (the trainer's timed synthesis repeats "
             f"its reference to {agree['trainer_repeat_image_diff']:.3g})"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- compile / channels-last
VARIANTS = ("eager", "channels_last", "compile", "compile+channels_last")


def variant_model(model: Classifier, variant: str) -> tuple[Classifier, Callable[..., Any], Layout]:
    """(the model copy, its score function, the input layout) for one variant."""
    copy_ = copy.deepcopy(model)
    last = "channels_last" in variant
    if last:
        copy_ = copy_.to(memory_format=torch.channels_last)
    score: Callable[..., Any] = copy_.score
    if "compile" in variant:
        score = torch.compile(copy_.score)
    layout = (lambda x: x.contiguous(memory_format=torch.channels_last)) if last else (lambda x: x)
    return copy_, score, layout


def classification_step(model: Classifier, score: Callable[..., Any], layout: Layout,
                        batch: Batch, config: TrainConfig) -> tuple[float, list[torch.Tensor]]:
    """One classification step's loss (the floor's, `classification_loss`) and parameter gradients (no update)."""
    model.zero_grad(set_to_none=True)
    loss = classification_loss(score, lambda x: score(x)[0], batch, config, layout)
    loss.backward()
    return loss.item(), [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def synthesis_step(model: Classifier, score: Callable[..., Any], layout: Layout,
                   start: torch.Tensor, tau: torch.Tensor, config: TrainConfig) -> tuple[float, list[torch.Tensor]]:
    """One synthesis step's loss and input gradient on every group (the first, widest step)."""
    groups, per_group = start.shape[:2]
    with frozen_eval(model):
        x = layout(start.flatten(0, 1)).requires_grad_(True)
        logits, f = score(x)
        labels = torch.arange(groups, device=x.device).repeat_interleave(per_group)
        loss = synthesis_loss(logits, f, labels, tau, groups, per_group, config)
        (grad,) = torch.autograd.grad(loss, x)
    return loss.item(), [grad.contiguous()]


def measure_compile(inputs: FloorInputs, config: TrainConfig, device: torch.device, repeats: int,
                    steps: int) -> dict[str, Any]:
    """Seconds per step of each variant (best of `repeats` runs of `steps` steps, the variants
    interleaved round-robin so drifting load hits them alike), the first call (compilation, from
    an empty compile cache) apart, and the largest difference of loss and gradients from eager."""
    model = inputs.trainer.model
    batch = inputs.batches[0]
    baseline = config.with_method("baseline")
    cases: dict[str, StepFn] = {
        f"{config.method} classify": lambda m, s, lay: classification_step(m, s, lay, batch, config),
        "CE classify": lambda m, s, lay: classification_step(m, s, lay, batch, baseline),
        "synthesis": lambda m, s, lay: synthesis_step(m, s, lay, inputs.start, inputs.tau, config),
    }
    out: dict[str, Any] = {"device": str(device), "method": config.method, "batch": len(batch.pos),
                           "synthesis_images": int(inputs.start.shape[0] * inputs.start.shape[1]), "cases": {}}
    with tempfile.TemporaryDirectory(prefix="winn-inductor-") as cache:
        previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # cold compiles: what a user's first run pays
        try:
            for case, run in cases.items():
                out["cases"][case] = measure_case(model, run, device, repeats, steps)
        finally:
            if previous is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous
    return out


def repeat_steps(run: StepFn, model: Classifier, score: Callable[..., Any], layout: Layout, steps: int) -> Callable[[], None]:
    def steps_() -> None:
        for _ in range(steps):
            run(model, score, layout)
    return steps_


def measure_case(model: Classifier, run: StepFn, device: torch.device, repeats: int, steps: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    ready: dict[str, Callable[[], Any]] = {}
    eager_loss, eager_grads = 0.0, []
    for variant in VARIANTS:
        if variant == "compile+channels_last" and "error" in results.get("compile", {}):
            results[variant] = results["compile"]  # the same failure; compiling again costs a minute
            continue
        torch._dynamo.reset()
        copy_, score, layout = variant_model(model, variant)
        try:
            (loss, grads), first = timed(lambda copy_=copy_, score=score, layout=layout: run(copy_, score, layout), device)
        except Exception as exc:  # torch.compile cannot do everything (e.g. double backward)
            results[variant] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"}
            continue
        if variant == "eager":
            eager_loss, eager_grads = loss, grads
        results[variant] = {"first_call_seconds": first, "max_abs_loss_diff": abs(loss - eager_loss),
                            "max_abs_grad_diff": max((g - e).abs().max().item() for g, e in zip(grads, eager_grads))}
        ready[variant] = repeat_steps(run, copy_, score, layout, steps)
    timings = time_round_robin(ready, device, repeats)
    for variant, seconds in timings.best.items():
        results[variant]["seconds_per_step"] = seconds / steps
        results[variant]["speedup"] = timings.ratio("eager", variant)
    return results


def format_compile(check: dict[str, Any]) -> str:
    lines = [f"torch.compile and channels-last on {check['device']}: one classification step on {check['batch']} positives "
             f"({check['method']}: with negatives, interpolates and the gradient-penalty double backward; CE: positives "
             f"only), one synthesis step on {check['synthesis_images']} images (every group live); best of the repeats:"]
    columns = [Column("step", 15, align="<"), Column("variant", 22, align="<"), Column("s/step", 8, ".4f"),
               Column("speedup", 8, ".2f"), Column("first call s", 12, ".2f"), Column("max|loss diff|", 14, ".2e"),
               Column("max|grad diff|", 14, ".2e")]
    rows: list[list[Any]] = []
    for case, results in check["cases"].items():
        for variant in VARIANTS:
            r = results[variant]
            if "error" in r:
                rows.append([case, variant, f"unsupported: {r['error']}"])
                continue
            rows.append([case, variant, r["seconds_per_step"], r["speedup"], r["first_call_seconds"],
                         r["max_abs_loss_diff"], r["max_abs_grad_diff"]])
    lines.append(table(columns, rows, indent="  "))
    return "\n".join(lines)
