"""Cross-evaluation throughput: our harness against foolbox, torchattacks, pyautoattack and bare-torch floors.

Every attack below is one cross-evaluation job (K models, the same images, batch size and eps in
[0, 1] pixel units; docs/conventions.md: models see [-1, 1], so a budget of eps is
units.eps_to_model(eps) = 2 eps in model space) done several ways. Each way produces the same
outputs: clean predictions of every model and every model's prediction on every model's
adversarial batch (the K x K transfer matrix).

FGSM (`--n` images):
  harness       winn_robust.evaluation.cross_evaluate(..., EvalSpec(eps=(eps,), attack="fgsm"))
  foolbox       per batch: clean predictions of every model; for every model A, foolbox's FGSM
                on foolbox_adapter.foolbox_model(A) (foolbox.PyTorchModel with bounds (-1, 1))
                with epsilons=eps_to_model(eps), then every model predicts on A's adversarial
                batch (the natural foolbox user code)
  torchattacks  the same with torchattacks.FGSM(m01, eps) where m01(u) = model(to_model_range(u))
                works in [0, 1] pixel space; to_pixel_range in, to_model_range out
  floor         bare torch, the minimum passes per batch for K models: K forward+input-backward
                passes (clean predictions come from those logits) and K^2 no-grad forwards

PGD (`--iterative-n` images; `--pgd-steps` S steps of 2.5 eps / S pixel units, one restart and
no random start in every pipeline, so all of them do the same deterministic work):
  harness       cross_evaluate with our `pgd` (steps=S, step_size=2.5 eps / S, restarts=1,
                random_start=false): S forward+input-backward passes per model and one more
                forward for the last iterate, keeping each image's most damaging iterate
  foolbox       the foolbox loop above with foolbox.attacks.LinfPGD(steps=S, abs_stepsize=
                eps_to_model(2.5 eps / S), random_start=False)
  torchattacks  the torchattacks loop above with torchattacks.PGD(m01, eps, alpha=2.5 eps / S,
                steps=S, random_start=False)
  floor         our PGD's floor in bare torch: the same S forward+input-backward passes, each
                followed by our sign step and projection (winn_robust.attacks.pgd.linf_step:
                bit-identical iterates), then the K^2 forwards, without the best-iterate
                bookkeeping (the floor keeps the last iterate)
  No random start: the harness draws its start per (batch, model) from a derived generator, and
  neither library can be handed that start, so sharing one would need a library change.

PGD-L2 (`--iterative-n` images, the same S steps of 2.5 eps / S at the L2 budget `--l2-eps`, one
restart, no random start; units.eps_to_model: model-space L2 radius 2 eps):
  harness       cross_evaluate with our L2 `pgd` (EvalSpec norm="l2"; winn_robust.attacks.pgd_l2)
  foolbox       foolbox.attacks.L2PGD(steps=S, abs_stepsize=eps_to_model(2.5 eps / S), random_start=False)
  torchattacks  torchattacks.PGDL2(m01, eps, alpha=2.5 eps / S, steps=S, random_start=False)
  floor         the PGD floor's S passes with the L2 step rule (winn_robust.attacks.pgd_l2's
                l2_step: normalised-gradient step, L2-ball projection, box clip; bit-identical
                iterates), then the K^2 forwards

APGD-CE (`--iterative-n` images, `--apgd-steps` iterations, one restart):
  harness       cross_evaluate with our `apgd-ce` (winn_robust.attacks.autoattack_adapter)
  direct        pyautoattack called directly: per batch and model A,
                AutoAttack(m01(A), norm="Linf", eps=eps, version="custom", attacks=["apgd-ce"],
                seed=...) with apgd.n_restarts = 1 and apgd.n_iter = steps (verbose off, like
                the wrapper), then the same clean and K x K forwards (on the adversarial images
                back in model units). The seed is the wrapper's:
                a generator seeded with harness.derive_seed(seed, "apgd-ce", eps, batch start)
                draws it, so both must give the same predictions.

Images already sit on the device for every pipeline (no host-to-device copy is timed). The
models are trained for `--train-steps` Adam steps first (speed does not depend on the weights,
but the adversarial errors mean more, and AutoAttack only attacks the images a model gets
right). Every pipeline of an attack is warmed up once on one batch, then timed `--repeats`
times, the pipelines interleaved round-robin so drifting machine load hits all of them alike.
The tables report the BEST (minimum) time of the repeats, the least disturbed by other load on
a shared machine; the median is printed next to it and saved with every single time in --json.

Reading the ratios (all from best times):
  x harness = pipeline seconds / harness seconds: above 1 the pipeline is slower than ours.
  x floor   = pipeline seconds / floor seconds: 1.0 is the minimum work; the excess is
              overhead (extra forwards, input checks, bookkeeping).
  overhead  = harness seconds / direct seconds - 1 (APGD-CE): what our wrapper costs on top of
              calling pyautoattack directly.
  adv error = each attacked model's error on its own adversarial examples (our PGD keeps the
              best iterate, the others return the last one, so ours can only be higher).

Requirements checked and printed: the harness is not slower than foolbox or torchattacks (FGSM,
PGD, PGD-L2); our PGD stays at >= 0.9x its floor (floor seconds / harness seconds), our L2 PGD
within 1.1x (>= 0.9091); the APGD-CE wrapper's overhead stays under 5%. Agreement checks: FGSM,
every pipeline's predictions vs the harness's (and the first batch's adversarial images pixel by
pixel); PGD and PGD-L2, identical clean
predictions, every image the floor's last iterate fools is fooled by the harness's best
iterate, and the libraries' predictions agree with the floor's; APGD-CE, identical predictions.

Each attack is one `Suite` entry of SUITES: its pipelines, built from `harness` (our
cross_evaluate), `library_pipeline` (the user loop around a `foolbox_attack`, a
`torchattacks_attack` or any other (images, labels, batch start) -> adversarial images
function) and `floor_pipeline` (the bare passes of one batch, then the K^2 forwards), plus its
requirement and agreement rule; benchmarks.common times them. PGD and PGD-L2 are one
`pgd_suite` at two `Norm`s.

    python -m benchmarks.attack_throughput                       # CPU, and CUDA when present
    python -m benchmarks.attack_throughput --device cpu --n 500 --attacks pgd --json out.json --profile
"""
from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import (
    FASHION_DIR,
    Column,
    Pipeline,
    Step,
    bare_ascent,
    finish,
    load_fashion_mnist,
    run_main,
    runtime_note,
    sync,
    table,
    time_pipelines,
)
from winn_robust.attacks.fgsm import fgsm
from winn_robust.attacks.foolbox_adapter import foolbox_model
from winn_robust.attacks.pgd import linf_step
from winn_robust.attacks.pgd_l2 import l2_step_rule
from winn_robust.device import devices_to_measure
from winn_robust.environment import machine_description
from winn_robust.errors import UserError
from winn_robust.evaluation import EvalSpec, cross_evaluate
from winn_robust.evaluation.harness import derive_seed
from winn_robust.models import build_model
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_HIGH, MODEL_LOW, eps_to_model, to_model_range, to_pixel_range

SHAPE = (1, 28, 28)
NUM_CLASSES = 10
LIBRARIES = ("foolbox", "torchattacks")
PGD_FLOOR_MIN = 0.9          # floor seconds / harness seconds
L2_FLOOR_MIN = 1 / 1.1       # L2 PGD: within 1.1x of its floor
APGD_OVERHEAD_MAX = 0.05     # harness seconds / direct seconds - 1
TRAIN_BATCH = 128

Models = dict[str, nn.Module]
# Predictions of one pipeline: clean[name] (N,), adv[source][target] (N,) as numpy int64.
Preds = tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]
PredLists = tuple[dict[str, list[torch.Tensor]], dict[str, dict[str, list[torch.Tensor]]]]


@dataclass(frozen=True)
class Work:
    """What every pipeline is asked to do (eps in [0, 1] pixel units)."""
    eps: float
    batch_size: int
    seed: int = 0
    pgd_steps: int = 20
    apgd_steps: int = 20
    l2_eps: float = 1.0

    @property
    def pgd_step(self) -> float:
        """PGD's step in pixel units: 2.5 eps / steps, the same in every pipeline."""
        return 2.5 * self.eps / self.pgd_steps

    @property
    def l2_step(self) -> float:
        """L2 PGD's step in pixel units: 2.5 l2_eps / steps."""
        return 2.5 * self.l2_eps / self.pgd_steps


# One attack's pipeline before it is bound to the models and images: it does the whole job.
PipelineFn = Callable[[Models, torch.Tensor, torch.Tensor, Work], Preds]
# One library attack bound to one model: (images, labels, batch start) -> adversarial images in model units.
AttackFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
Maker = Callable[[nn.Module, torch.device, Work], AttackFn]


@dataclass(frozen=True)
class Norm:
    """A threat model as the pipelines see it: the EvalSpec norm, the budget and PGD step (pixel
    units) of the work, our step rule (x, radius, alpha in model units) -> (iterate, gradient) ->
    next iterate, and the libraries' PGD classes."""
    name: str
    eps: Callable[[Work], float]
    step: Callable[[Work], float]
    step_rule: Callable[[torch.Tensor, float, float], Step]
    foolbox_pgd: str
    torchattacks_pgd: str


LINF = Norm("linf", lambda w: w.eps, lambda w: w.pgd_step, linf_step, "LinfPGD", "PGD")
L2 = Norm("l2", lambda w: w.l2_eps, lambda w: w.l2_step, l2_step_rule, "L2PGD", "PGDL2")


# ----------------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    images: torch.Tensor          # test images in [-1, 1]
    labels: torch.Tensor
    train_images: torch.Tensor    # what --train-steps trains on
    train_labels: torch.Tensor
    source: str


def load_inputs(n: int, data_dir: str | None, seed: int) -> Inputs:
    """n Fashion-MNIST test images in [-1, 1] (tiled if n > 10,000) and the training split, else
    seeded random images (which then also serve as the training set)."""
    found = load_fashion_mnist(data_dir, fallback="random images")
    if found is not None:
        ds, folder = found
        reps = -(-n // len(ds.test_images))
        images = ds.test_images.repeat(reps, 1, 1, 1)[:n].contiguous()
        labels = ds.test_labels.repeat(reps)[:n].contiguous()
        return Inputs(images, labels, ds.train_images, ds.train_labels, f"Fashion-MNIST test images from {folder}")
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, *SHAPE, generator=g) * 2 - 1
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return Inputs(images, labels, images, labels, "random images (Fashion-MNIST not found)")


def build_models(archs: list[str], device: torch.device, seed: int) -> Models:
    """One randomly initialised model per architecture (seeded)."""
    models: Models = {}
    for i, arch in enumerate(archs):
        torch.manual_seed(seed + i)
        name = arch if arch not in models else f"{arch}_{i}"
        models[name] = build_model(arch, SHAPE, NUM_CLASSES).to(device).eval()
    return models


def train_models(models: Models, images: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int,
                 seed: int) -> dict[str, float]:
    """A few seeded Adam steps per model (lr 1e-3) on random training batches; seconds per model.
    Not to make good models: to make the adversarial errors and AutoAttack's work (it attacks
    only the images a model gets right) look like those of a real evaluation."""
    seconds = {}
    for i, (name, model) in enumerate(models.items()):
        g = torch.Generator().manual_seed(seed + 1000 + i)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        device = next(model.parameters()).device
        model.train()
        start = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(0, len(images), (batch_size,), generator=g)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images[idx].to(device)), labels[idx].to(device)).backward()
            optimizer.step()
        model.eval()
        seconds[name] = time.perf_counter() - start
    return seconds


# ----------------------------------------------------------------------------- what every pipeline shares
def batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """(images, labels, start) of every batch."""
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size], start


def to_numpy(parts: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(parts).cpu().numpy().astype(np.int64)


def collect(preds: PredLists) -> Preds:
    clean, adv = preds
    return ({m: to_numpy(p) for m, p in clean.items()},
            {s: {t: to_numpy(p) for t, p in row.items()} for s, row in adv.items()})


def empty_preds(names: list[str]) -> PredLists:
    return {m: [] for m in names}, {s: {t: [] for t in names} for s in names}


def predict_all(models: Models, crafted: Mapping[str, torch.Tensor], adv: dict[str, dict[str, list[torch.Tensor]]]) -> None:
    """Every model's predictions on every crafted batch: the K x K transfer matrix of one batch."""
    with torch.inference_mode():
        for s, x_adv in crafted.items():
            for t, model in models.items():
                adv[s][t].append(model(x_adv).argmax(1))


# ----------------------------------------------------------------------------- the three kinds of pipeline
def harness(attack: str, options: Callable[[Work], dict[str, Any]] | None = None, norm: Norm = LINF) -> PipelineFn:
    """Our cross-evaluation with one attack (and its options for this work) at `norm`."""

    def run(models: Models, images: torch.Tensor, labels: torch.Tensor, work: Work) -> Preds:
        opts = {attack: options(work)} if options else None
        eps = norm.eps(work)
        spec = EvalSpec.build((eps,), [attack], options=opts, batch_size=work.batch_size, probes=False,
                              seed=work.seed, norm=norm.name)
        result = cross_evaluate(models, images, labels, spec, device=images.device, progress=False)
        return result.clean_preds, result.adv_preds[(attack, eps)]
    return run


def library_pipeline(make: Maker) -> PipelineFn:
    """The natural user loop around a library attack: per batch, clean predictions of every model,
    then for every model A the attack on A and every model's prediction on A's adversarial batch."""

    def run(models: Models, images: torch.Tensor, labels: torch.Tensor, work: Work) -> Preds:
        names = list(models)
        for model in models.values():
            model.eval()
        attacks = {a: make(models[a], images.device, work) for a in names}
        clean, adv = preds = empty_preds(names)
        for x, y, start in batches(images, labels, work.batch_size):
            with torch.no_grad():
                for m, model in models.items():
                    clean[m].append(model(x).argmax(1))
            for a in names:
                x_adv = attacks[a](x, y, start)
                with torch.no_grad():
                    for b in names:
                        adv[a][b].append(models[b](x_adv).argmax(1))
        return collect(preds)
    return run


# the bare attack of one batch: model -> (adversarial batch, clean logits of the first pass)
Craft = Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor]]
BatchFloor = Callable[[torch.Tensor, torch.Tensor, Work], Craft]


def floor_pipeline(prepare: BatchFloor) -> PipelineFn:
    """Bare torch: per batch, each model's minimum attack passes (`prepare(x, y, work)` gives the
    batch's attack; the clean predictions come from its first pass's logits), then the K^2
    no-grad forwards. Weights are frozen (as the harness does) so autograd builds input
    gradients only."""

    def run(models: Models, images: torch.Tensor, labels: torch.Tensor, work: Work) -> Preds:
        clean, adv = preds = empty_preds(list(models))
        with frozen_eval(*models.values()):
            for x, y, _ in batches(images, labels, work.batch_size):
                craft = prepare(x, y, work)
                crafted = {}
                for s, model in models.items():
                    crafted[s], logits = craft(model)
                    clean[s].append(logits.argmax(1))
                predict_all(models, crafted, adv)
        return collect(preds)
    return run


class ZeroOne(nn.Module):
    """m01(u) = model(to_model_range(u)): a [-1, 1] model seen from [0, 1] pixel space
    (torchattacks' and AutoAttack's range)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(to_model_range(u))


def foolbox_attack(build: Callable[[Any, Work], Any], norm: Norm = LINF) -> Maker:
    """foolbox's attack `build(foolbox.attacks, work)` on the project's foolbox view of the model
    (bounds in model units), epsilons = eps_to_model(the norm's budget)."""

    def make(model: nn.Module, device: torch.device, work: Work) -> AttackFn:
        import foolbox

        fmodel = foolbox_model(model, device)
        attack, eps = build(foolbox.attacks, work), eps_to_model(norm.eps(work))

        def run(x: torch.Tensor, y: torch.Tensor, start: int) -> torch.Tensor:
            _, clipped, _ = attack(fmodel, x, y, epsilons=eps)
            return clipped
        return run
    return make


def torchattacks_attack(build: Callable[[Any, nn.Module, Work], Any]) -> Maker:
    """torchattacks' attack `build(torchattacks, m01, work)` in [0, 1] pixel space (eps and
    alpha in pixel units), converted at the boundary both ways."""

    def make(model: nn.Module, device: torch.device, work: Work) -> AttackFn:
        import torchattacks

        attack = build(torchattacks, ZeroOne(model).eval(), work)

        def run(x: torch.Tensor, y: torch.Tensor, start: int) -> torch.Tensor:
            return to_model_range(attack(to_pixel_range(x), y))
        return run
    return make


# ----------------------------------------------------------------------------- FGSM
FGSM_LIBRARIES: dict[str, Maker] = {
    "foolbox": foolbox_attack(lambda attacks, work: attacks.FGSM()),
    "torchattacks": torchattacks_attack(lambda ta, m01, work: ta.FGSM(m01, eps=work.eps)),
}


def fgsm_floor(x: torch.Tensor, y: torch.Tensor, work: Work) -> Craft:
    """Per model one forward+input-backward pass and the sign step of eps_to_model(eps), clipped."""
    step = eps_to_model(work.eps)

    def craft(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        xg = x.detach().requires_grad_(True)
        logits = model(xg)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xg)
        return (x + step * grad.sign()).clamp_(MODEL_LOW, MODEL_HIGH), logits.detach()
    return craft


def pixel_agreement(models: Models, x: torch.Tensor, y: torch.Tensor, work: Work) -> dict[str, dict[str, float]]:
    """Adversarial images of one batch from each library vs our FGSM: max |diff| and the fraction
    of pixels that are bit-identical (untimed)."""
    out: dict[str, dict[str, float]] = {}
    for lib, make in FGSM_LIBRARIES.items():
        diffs, equal, total = [], 0, 0
        for model in models.values():
            ours = fgsm(model, x, y, work.eps)
            theirs = make(model, x.device, work)(x, y, 0).detach()
            diffs.append(float((ours - theirs).abs().max()))
            equal += int((ours == theirs).sum())
            total += ours.numel()
        out[lib] = {"max_abs_diff": max(diffs), "pixels_identical": equal / total}
    return out


# ----------------------------------------------------------------------------- PGD at either norm
def pgd_options(norm: Norm) -> Callable[[Work], dict[str, Any]]:
    """Our pgd doing the libraries' work: one restart, no random start, 2.5 eps / steps."""
    return lambda work: {"steps": work.pgd_steps, "step_size": norm.step(work), "restarts": 1, "random_start": False}


def pgd_libraries(norm: Norm) -> dict[str, Maker]:
    """foolbox's and torchattacks' PGD at `norm`: foolbox in model units (abs_stepsize =
    eps_to_model(step)), torchattacks in pixel units; one restart, no random start."""
    return {"foolbox": foolbox_attack(lambda attacks, work: getattr(attacks, norm.foolbox_pgd)(
                steps=work.pgd_steps, abs_stepsize=eps_to_model(norm.step(work)), random_start=False), norm),
            "torchattacks": torchattacks_attack(lambda ta, m01, work: getattr(ta, norm.torchattacks_pgd)(
                m01, eps=norm.eps(work), alpha=norm.step(work), steps=work.pgd_steps, random_start=False))}


def pgd_floor(norm: Norm) -> BatchFloor:
    """Our PGD in bare torch, per batch and model: `steps` forward+input-backward passes from x,
    each followed by our step rule at `norm` (L-inf: sign step, eps-ball and box; L2: normalised
    step, L2 ball, box clip; the library's own step, so the iterates are bit-identical), clean
    predictions from the first pass; then the K^2 forwards on the last iterates. No best-iterate
    bookkeeping and no forward on the last iterate beyond the K^2 evaluation."""

    def prepare(x: torch.Tensor, y: torch.Tensor, work: Work) -> Craft:
        step = norm.step_rule(x, eps_to_model(norm.eps(work)), eps_to_model(norm.step(work)))

        def craft(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
            first: list[torch.Tensor] = []
            last = bare_ascent(model, x, lambda logits: F.cross_entropy(logits, y, reduction="none").sum(), step,
                               work.pgd_steps, first)
            return last, first[0]
        return craft
    return prepare


# ----------------------------------------------------------------------------- APGD-CE
def autoattack_seed(work: Work, start: int, device: torch.device) -> int:
    """The seed our wrapper hands AutoAttack for this batch: drawn from a generator seeded with
    derive_seed(seed, "apgd-ce", eps, batch start), as the harness does (no model name:
    identical models get identical starts)."""
    generator = torch.Generator(device=device).manual_seed(derive_seed(work.seed, "apgd-ce", work.eps, start))
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())


def apgd_direct(model: nn.Module, device: torch.device, work: Work) -> AttackFn:
    """pyautoattack called directly on a [0, 1] view of the model, seeded like our wrapper."""
    from pyautoattack import AutoAttack

    view = ZeroOne(model).eval()

    def run(x: torch.Tensor, y: torch.Tensor, start: int) -> torch.Tensor:
        adversary = AutoAttack(view, norm="Linf", eps=work.eps, version="custom", attacks=["apgd-ce"],
                               seed=autoattack_seed(work, start, x.device), device=x.device)
        adversary.verbose = False
        adversary.apgd.n_restarts = 1
        adversary.apgd.n_iter = work.apgd_steps
        adv01, _ = adversary.run_standard_evaluation(to_pixel_range(x), y, batch_size=len(x))
        return to_model_range(adv01)
    return run


# ----------------------------------------------------------------------------- the registry
Describe = Callable[[argparse.Namespace, Work, int], str]


@dataclass(frozen=True)
class Suite:
    """One attack of the benchmark: its pipelines (table order, the harness first), the option
    giving its image count, the pipeline the `x floor` column divides by (None: an `overhead`
    column of the harness over `overhead_of` instead), the libraries the harness must not be
    slower than, the least floor / harness seconds, the agreement rule ("identical": every
    pipeline's predictions equal the harness's; "last-iterate": see check_agreement), whether the
    table shows the adversarial errors, the header line, and an untimed pixel check."""
    runners: Mapping[str, PipelineFn]
    describe: Describe
    images: str = "iterative_n"
    floor: str | None = "floor"
    libraries: tuple[str, ...] = LIBRARIES
    floor_min: float | None = None
    overhead_of: str | None = None
    overhead_max: float | None = None
    agreement: str = "identical"
    agreement_note: str = ""
    adv_error_column: bool = True
    pixels: Callable[[Models, torch.Tensor, torch.Tensor, Work], dict[str, Any]] | None = None

    @property
    def pipelines(self) -> tuple[str, ...]:
        return tuple(self.runners)


def pgd_suite(norm: Norm, floor_min: float, describe: Describe) -> Suite:
    """PGD at `norm`: our harness, foolbox, torchattacks and the bare floor, all doing the same
    deterministic steps (one restart, no random start)."""
    libraries = {lib: library_pipeline(make) for lib, make in pgd_libraries(norm).items()}
    return Suite({"harness": harness("pgd", pgd_options(norm), norm), **libraries, "floor": floor_pipeline(pgd_floor(norm))},
                 describe, floor_min=floor_min, agreement="last-iterate")


def describe_fgsm(args: argparse.Namespace, work: Work, k: int) -> str:
    return (f"fgsm ({args.n} images), per batch: harness and floor do {k} fwd+input-bwd and {k * k} forwards; the library "
            f"loops also do {k} clean forwards (and foolbox one more forward per attack for its success flag)")


def describe_pgd(args: argparse.Namespace, work: Work, k: int) -> str:
    s = args.pgd_steps
    return (f"pgd ({args.iterative_n} images, {s} steps of {work.pgd_step:.6g} pixel units, 1 restart, no random start), "
            f"per batch: floor {k}x{s} fwd+input-bwd and {k * k} forwards; the harness also {k} forwards on the last "
            f"iterates (best-iterate bookkeeping); the library loops {k} clean forwards (foolbox {k} more for its flag)")


def describe_pgd_l2(args: argparse.Namespace, work: Work, k: int) -> str:
    return (f"pgd-l2 ({args.iterative_n} images, L2 eps {args.l2_eps} pixel units, {args.pgd_steps} steps of "
            f"{work.l2_step:.6g}, 1 restart, no random start): the same passes as pgd, normalised-gradient steps and "
            "L2-ball projection")


def describe_apgd(args: argparse.Namespace, work: Work, k: int) -> str:
    return (f"apgd-ce ({args.iterative_n} images, {args.apgd_steps} iterations, 1 restart): both pipelines run the same "
            f"pyautoattack code (its checks, clean pass, APGD on the images each model gets right), "
            f"then {k} clean and {k * k} forwards")


SUITES: dict[str, Suite] = {
    "fgsm": Suite({"harness": harness("fgsm"), **{lib: library_pipeline(m) for lib, m in FGSM_LIBRARIES.items()},
                   "floor": floor_pipeline(fgsm_floor)},
                  describe_fgsm, images="n", adv_error_column=False, pixels=pixel_agreement),
    "pgd": pgd_suite(LINF, PGD_FLOOR_MIN, describe_pgd),
    "apgd-ce": Suite({"harness": harness("apgd-ce", lambda work: {"steps": work.apgd_steps, "restarts": 1}),
                      "direct": library_pipeline(apgd_direct)},
                     describe_apgd, floor=None, libraries=(), overhead_of="direct", overhead_max=APGD_OVERHEAD_MAX,
                     agreement_note=" (seeded alike)"),
    "pgd-l2": pgd_suite(L2, L2_FLOOR_MIN, describe_pgd_l2),
}
ATTACKS = tuple(SUITES)
PIPELINES = SUITES["fgsm"].pipelines
PGD_PIPELINES = SUITES["pgd"].pipelines
APGD_PIPELINES = SUITES["apgd-ce"].pipelines


# ----------------------------------------------------------------------------- checks
def agreement(reference: Preds, other: Preds) -> dict[str, float | int]:
    """Fraction of predictions (clean and K x K adversarial) equal to the reference's, and the
    fraction of images on which every one of them is equal."""
    ref_clean, ref_adv = reference
    clean, adv = other
    ref_all = np.stack([ref_clean[m] for m in ref_clean] + [ref_adv[s][t] for s in ref_adv for t in ref_adv[s]])
    all_ = np.stack([clean[m] for m in ref_clean] + [adv[s][t] for s in ref_adv for t in ref_adv[s]])
    k = len(ref_clean)
    same = ref_all == all_
    return {"predictions": int(same.size), "predictions_equal": int(same.sum()),
            "adv_fraction": float(same[k:].mean()), "clean_fraction": float(same[:k].mean()),
            "image_fraction": float(same.all(0).mean())}


def adversarial_error(preds: Preds, labels: np.ndarray) -> dict[str, float]:
    """Each model's error on its own adversarial examples."""
    _, adv = preds
    return {s: float((adv[s][s] != labels).mean()) for s in adv}


def pgd_superset(harness_preds: Preds, floor: Preds, labels: np.ndarray) -> dict[str, Any]:
    """Images whose floor last iterate fools the attacked model but whose harness best iterate
    does not (0 when the harness keeps every mistake it meets: its iterates are the floor's)."""
    misses = {s: int(((floor[1][s][s] != labels) & (harness_preds[1][s][s] == labels)).sum()) for s in floor[1]}
    return {"floor_fooled_harness_not": sum(misses.values()), "per_model": misses}


def check_agreement(suite: Suite, outputs: Mapping[str, Preds], labels: np.ndarray) -> dict[str, Any]:
    """Every pipeline's predictions against the harness's; at "last-iterate" (PGD) also the
    libraries' against the floor's, and the images the floor fools that the harness does not."""
    out: dict[str, Any] = {"vs_harness": {p: agreement(outputs["harness"], outputs[p]) for p in suite.pipelines
                                          if p != "harness"}}
    if suite.agreement == "last-iterate" and suite.floor is not None:
        out["vs_floor"] = {p: agreement(outputs[suite.floor], outputs[p]) for p in suite.pipelines
                           if p not in ("harness", suite.floor)}
        out["superset"] = pgd_superset(outputs["harness"], outputs[suite.floor], labels)
    return out


def requirement(suite: Suite, rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The speed requirement of one attack, from best times."""
    harness_s = rows["harness"]["seconds_best"]
    out: dict[str, Any] = {"not_slower_than": {lib: rows[lib]["seconds_best"] >= harness_s for lib in suite.libraries}}
    met = all(out["not_slower_than"].values())
    if suite.floor_min is not None and suite.floor is not None:
        out["floor_over_harness"] = rows[suite.floor]["seconds_best"] / harness_s
        out["floor_min"] = round(suite.floor_min, 4)
        met &= out["floor_over_harness"] >= out["floor_min"]
    if suite.overhead_of is not None and suite.overhead_max is not None:
        out["overhead"] = harness_s / rows[suite.overhead_of]["seconds_best"] - 1
        out["overhead_max"] = suite.overhead_max
        met &= out["overhead"] < suite.overhead_max
    out["met"] = bool(met)
    return out


# ----------------------------------------------------------------------------- timing
def time_attack(suite: Suite, models: Models, x: torch.Tensor, y: torch.Tensor, work: Work, repeats: int,
                device: torch.device) -> tuple[dict[str, Any], dict[str, Preds]]:
    """Every pipeline of one attack: times (warm-up on one batch), errors, agreement, requirement."""

    def bound(name: str, n: int) -> Callable[[], Preds]:
        return lambda: suite.runners[name](models, x[:n], y[:n], work)

    timings = time_pipelines([Pipeline(p, bound(p, len(x)), warm_up=bound(p, work.batch_size)) for p in suite.pipelines],
                             device, repeats)
    labels = y.cpu().numpy().astype(np.int64)
    outputs: dict[str, Preds] = timings.outputs
    rows = timings.rows(len(x), {"x_harness": "harness", "x_floor": suite.floor})
    for p, row in rows.items():
        row["adversarial_error"] = adversarial_error(outputs[p], labels)
    result = {"n": len(x), "pipelines": rows, "agreement": check_agreement(suite, outputs, labels),
              "requirement": requirement(suite, rows)}
    return result, outputs


def time_device(device: torch.device, args: argparse.Namespace, inputs: Inputs, models_cpu: Models) -> dict[str, Any]:
    """Every selected attack on one device: times, agreement, requirements, optional profiles."""
    models = {name: copy.deepcopy(model).to(device).eval() for name, model in models_cpu.items()}
    x_all, y_all = inputs.images.to(device), inputs.labels.to(device)
    work = work_of(args)
    attacks: dict[str, Any] = {}
    for attack in args.attacks:
        suite = SUITES[attack]
        n = getattr(args, suite.images)
        x, y = x_all[:n], y_all[:n]
        t0 = time.perf_counter()
        res, _ = time_attack(suite, models, x, y, work, args.repeats, device)
        if suite.pixels is not None:
            res["pixels"] = suite.pixels(models, x[:args.batch_size], y[:args.batch_size], work)
        res["profile"] = profile_pipelines(suite, models, x, y, work, args, device) if args.profile else None
        res["wall_seconds"] = time.perf_counter() - t0
        attacks[attack] = res
        print(f"  {device} {attack}: {res['wall_seconds']:.1f} s including warm-up and checks")
    return {"device": str(device), "machine": machine_description(device), "attacks": attacks}


def profile_pipelines(suite: Suite, models: Models, x: torch.Tensor, y: torch.Tensor, work: Work,
                      args: argparse.Namespace, device: torch.device) -> dict[str, str]:
    """torch.profiler tables (top ops by self time) of one run of every pipeline of one attack."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    tables = {}
    for name in suite.pipelines:
        with profile(activities=activities) as prof:
            suite.runners[name](models, x, y, work)
            sync(device)
        tables[name] = prof.key_averages().table(sort_by=key, row_limit=args.profile_rows)
    return tables


# ----------------------------------------------------------------------------- output
def format_table(results: list[dict[str, Any]], attack: str = "fgsm") -> str:
    """One attack's table, every device: best and median seconds, x harness, then x floor (or the
    wrapper's overhead when there is no floor) and each attacked model's adversarial error."""
    suite = SUITES[attack]
    columns = [Column("pipeline", 13, align="<"), Column("device", 6, align="<"), Column("images/s", 9, ".1f"),
               Column("s best", 8, ".3f"), Column("s median", 9, ".3f"), Column("x harness", 10, ".2f"),
               Column("x floor", 8, ".2f") if suite.floor else Column("overhead", 9, "+.1%")]
    if suite.adv_error_column:
        names = list(next(iter(results[0]["attacks"][attack]["pipelines"].values()))["adversarial_error"])
        columns.append(Column("adv error (" + ", ".join(names) + ")", align="<", gap="  "))
    rows = []
    for res in results:
        result = res["attacks"][attack]
        for p in suite.pipelines:
            r = result["pipelines"][p]
            last = r["x_floor"] if suite.floor else (result["requirement"]["overhead"] if p == "harness" else "-")
            errors = ", ".join(f"{e:.1%}" for e in r["adversarial_error"].values())
            rows.append([p, res["device"], r["images_per_second"], r["seconds_best"], r["seconds_median"],
                         r["x_harness"], last, errors])
    return table(columns, rows)


def agreement_line(p: str, a: Mapping[str, Any], what: str, passed: bool) -> str:
    exact = a["predictions_equal"] == a["predictions"]
    verdict = "identical" if exact else f"{a['predictions'] - a['predictions_equal']} of {a['predictions']} differ"
    return (f"  {p:<13} vs {what}: adversarial predictions {a['adv_fraction']:.4%} equal, "
            f"clean {a['clean_fraction']:.4%}, images with every prediction equal {a['image_fraction']:.4%} "
            f"({verdict}) {'PASS' if passed else 'FAIL'}")


def format_agreement(res: dict[str, Any], torchattacks_min: float, attack: str = "fgsm",
                     pgd_min: float = 0.99) -> tuple[list[str], bool]:
    """The agreement lines of one attack on one device, and whether they all pass."""
    suite = SUITES[attack]
    result = res["attacks"][attack]
    agree, device = result["agreement"], res["device"]
    lines, ok = [], True
    if suite.agreement == "identical":
        for p, a in agree["vs_harness"].items():
            # foolbox, the floor and pyautoattack compute the same float ops as the harness: demand
            # identity; torchattacks goes through [0, 1] and back, so its inputs differ in the last bits.
            exact = a["predictions_equal"] == a["predictions"]
            passed = exact or (p == "torchattacks" and a["image_fraction"] >= torchattacks_min)
            ok &= passed
            lines.append(agreement_line(p, a, f"harness on {device}{suite.agreement_note}", passed))
        for lib, px in result.get("pixels", {}).items():
            lines.append(f"  {lib:<13} adversarial images vs our {attack.upper()} (first batch): max |diff| "
                         f"{px['max_abs_diff']:.3g}, {px['pixels_identical']:.4%} of pixels bit-identical")
        return lines, ok
    for p, a in agree["vs_harness"].items():
        passed = a["clean_fraction"] == 1.0
        ok &= passed
        lines.append(f"  {p:<13} vs harness on {device}: clean predictions {a['clean_fraction']:.4%} equal "
                     f"{'PASS' if passed else 'FAIL'} (adversarial {a['adv_fraction']:.4%}: the harness keeps "
                     f"the best iterate, the others the last)")
    sup = agree["superset"]
    passed = sup["floor_fooled_harness_not"] == 0
    ok &= passed
    lines.append(f"  {'floor':<13} vs harness on {device}: images the floor's last iterate fools and the harness's "
                 f"best iterate does not: {sup['floor_fooled_harness_not']} {'PASS' if passed else 'FAIL'}")
    for p, a in agree["vs_floor"].items():
        passed = a["image_fraction"] >= pgd_min and a["clean_fraction"] == 1.0
        ok &= passed
        lines.append(agreement_line(p, a, f"floor on {device}", passed))
    return lines, ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated, from {', '.join(ATTACKS)} (default all)")
    ap.add_argument("--n", type=int, default=2000, help="FGSM images (the same images on every device)")
    ap.add_argument("--iterative-n", type=int, default=500, help="PGD and APGD-CE images (the first of the FGSM images)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per pipeline; the table shows the best")
    ap.add_argument("--archs", default="vanilla,resnet32", help="comma-separated architectures, one model each")
    ap.add_argument("--eps", type=float, default=0.125, help="eps in [0, 1] pixel units (every attack)")
    ap.add_argument("--pgd-steps", type=int, default=20, help="PGD steps of 2.5*eps/steps in every pipeline")
    ap.add_argument("--apgd-steps", type=int, default=20, help="APGD-CE iterations (n_iter) in both pipelines")
    ap.add_argument("--l2-eps", type=float, default=1.0,
                    help="PGD-L2's budget: the L2 norm of the perturbation in [0, 1] pixel units")
    ap.add_argument("--train-steps", type=int, default=100,
                    help="Adam steps (batch 128) per model on the training split first; 0 = random weights")
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                    help="all = CPU, and CUDA when torch sees a GPU")
    ap.add_argument("--data-dir", default=None, help=f"Fashion-MNIST folder (default {FASHION_DIR})")
    ap.add_argument("--seed", type=int, default=0, help="model initialisation, training and attack seed")
    ap.add_argument("--json", type=Path, default=None, help="write every number (and every repeat's time) here")
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler top ops of one run of each pipeline")
    ap.add_argument("--profile-rows", type=int, default=12)
    ap.add_argument("--torchattacks-min-agreement", type=float, default=0.99,
                    help="least fraction of images on which torchattacks' FGSM must agree with the harness")
    ap.add_argument("--pgd-min-agreement", type=float, default=0.99,
                    help="least fraction of images on which foolbox's and torchattacks' PGD must agree with the floor")
    args = ap.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    attacks = [a.strip().lower() for a in args.attacks.split(",") if a.strip()]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise UserError(f"--attacks {args.attacks!r}: choose from {', '.join(ATTACKS)}")
    args.attacks = list(dict.fromkeys(attacks))
    for name in ("n", "iterative_n", "batch_size", "repeats", "pgd_steps", "apgd_steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.train_steps < 0:
        raise UserError(f"--train-steps must be >= 0, got {args.train_steps}")
    if not 0.0 <= args.eps <= 1.0:
        raise UserError(f"--eps {args.eps} is outside [0, 1]; eps is in [0, 1] pixel units")
    return args


def work_of(args: argparse.Namespace) -> Work:
    return Work(eps=args.eps, batch_size=args.batch_size, seed=args.seed, pgd_steps=args.pgd_steps,
                apgd_steps=args.apgd_steps, l2_eps=args.l2_eps)


def images_needed(args: argparse.Namespace) -> int:
    return max(getattr(args, SUITES[attack].images) for attack in args.attacks)


def print_header(args: argparse.Namespace, source: str, trained: str) -> None:
    k = len(args.archs)
    work = work_of(args)
    print(f"cross-evaluation throughput: {k} models ({', '.join(args.archs)}; {trained}), eps {args.eps} "
          f"pixel units ({eps_to_model(args.eps)} in [-1, 1] model space), images of {SHAPE}, batch {args.batch_size}")
    print(f"data: {source}; {runtime_note()}; best of {args.repeats} repeats after 1 warm-up batch")
    for attack in args.attacks:
        print(SUITES[attack].describe(args, work, k))


def print_verdicts(results: list[dict[str, Any]], args: argparse.Namespace) -> tuple[bool, bool, bool]:
    """Print the agreement lines and the requirements of every attack; (agreement passed, the
    harness is not slower than any library, every requirement met)."""
    all_ok, not_slower, met = True, True, True
    for attack in args.attacks:
        print(f"{attack} agreement:")
        ok = True
        for res in results:
            lines, passed = format_agreement(res, args.torchattacks_min_agreement, attack, args.pgd_min_agreement)
            ok &= passed
            print("\n".join(lines))
        print(f"{attack} agreement check: {'PASSED' if ok else 'FAILED'}")
        all_ok &= ok
        for res in results:
            req, device = res["attacks"][attack]["requirement"], res["device"]
            slower = [lib for lib, fine in req["not_slower_than"].items() if not fine]
            not_slower &= not slower
            met &= req["met"]
            parts = []
            if req["not_slower_than"]:
                parts.append("the harness is " + ("slower than " + ", ".join(slower) if slower
                                                   else "not slower than " + " or ".join(req["not_slower_than"])))
            if "floor_over_harness" in req:
                parts.append(f"floor / harness = {req['floor_over_harness']:.2f} (needs >= {req['floor_min']})")
            if "overhead" in req:
                parts.append(f"wrapper overhead {req['overhead']:+.1%} (needs < {req['overhead_max']:.0%})")
            verdict = "requirement met" if req["met"] else "requirement NOT met"
            hint = "" if req["met"] else " (run with --profile to see where the time goes)"
            print(f"{verdict} ({attack} on {device}): " + "; ".join(parts) + hint)
        print()
    return all_ok, not_slower, met


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    devices = devices_to_measure(args.device)
    inputs = load_inputs(images_needed(args), args.data_dir, args.seed)
    models_cpu = build_models(args.archs, torch.device("cpu"), args.seed)
    train_seconds = sum(train_models(models_cpu, inputs.train_images, inputs.train_labels, args.train_steps,
                                     TRAIN_BATCH, args.seed).values())
    trained = (f"trained {args.train_steps} Adam steps of {TRAIN_BATCH} images on the CPU in {train_seconds:.1f} s"
               if args.train_steps else "random weights")
    print_header(args, inputs.source, trained)
    start = time.perf_counter()
    results = []
    for device in devices:
        t0 = time.perf_counter()
        results.append(time_device(device, args, inputs, models_cpu))
        results[-1]["wall_seconds"] = time.perf_counter() - t0
        print(f"  {device}: {results[-1]['machine']}, {results[-1]['wall_seconds']:.1f} s including warm-up and checks")
    print()
    for attack in args.attacks:
        print(f"{attack}:")
        print(format_table(results, attack))
        print()
    all_ok, not_slower, met = print_verdicts(results, args)
    for res in results:
        for attack, result in res["attacks"].items():
            for name, prof in (result["profile"] or {}).items():
                print(f"\nprofile of {attack} {name} on {res['device']}:\n{prof}")
    return finish(args, start, devices, {
        "data": inputs.source, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "training": {"steps": args.train_steps, "seconds": train_seconds}, "results": results,
        "agreement_passed": all_ok, "harness_not_slower": not_slower, "requirements_met": met}, default=None)


if __name__ == "__main__":
    run_main(main)
