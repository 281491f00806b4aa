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
  floor         our PGD's floor in bare torch: the same S forward+input-backward passes, sign
                step and projection per model (bit-identical iterates), then the K^2 forwards,
                without the best-iterate bookkeeping (the floor keeps the last iterate)
  No random start: the harness draws its start per (batch, model) from a derived generator, and
  neither library can be handed that start, so sharing one would need a library change.

PGD-L2 (`--iterative-n` images, the same S steps of 2.5 eps / S at the L2 budget `--l2-eps`, one
restart, no random start; units.eps_to_model: model-space L2 radius 2 eps):
  harness       cross_evaluate with our L2 `pgd` (EvalSpec norm="l2"; winn_robust.attacks.pgd_l2)
  foolbox       foolbox.attacks.L2PGD(steps=S, abs_stepsize=eps_to_model(2.5 eps / S), random_start=False)
  torchattacks  torchattacks.PGDL2(m01, eps, alpha=2.5 eps / S, steps=S, random_start=False)
  floor         the same S passes in bare torch: normalised-gradient step, L2-ball projection and
                box clip with pgd_l2's tensor ops (bit-identical iterates), then the K^2 forwards

APGD-CE (`--iterative-n` images, `--apgd-steps` iterations, one restart):
  harness       cross_evaluate with our `apgd-ce` (winn_robust.attacks.autoattack_adapter)
  direct        pyautoattack called directly: per batch and model A,
                AutoAttack(m01(A), norm="Linf", eps=eps, version="custom", attacks=["apgd-ce"],
                seed=...) with apgd.n_restarts = 1 and apgd.n_iter = steps (verbose off, like
                the wrapper), then the same clean and K x K forwards. The seed is the wrapper's:
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
PGD); our PGD stays at >= 0.9x its floor (floor seconds / harness seconds); the APGD-CE
wrapper's overhead stays under 5%. Agreement checks: FGSM, every pipeline's predictions vs the
harness's (and the first batch's adversarial images pixel by pixel); PGD, identical clean
predictions, every image the floor's last iterate fools is fooled by the harness's best
iterate, and the libraries' predictions agree with the floor's; APGD-CE, identical predictions.

    python -m benchmarks.attack_throughput                       # CPU, and CUDA when present
    python -m benchmarks.attack_throughput --device cpu --n 500 --attacks pgd --json out.json --profile
"""
from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import (
    FASHION_DIR,
    config_record,
    environment_record,
    load_fashion_mnist,
    rule_table,
    run_main,
    runtime_note,
    sync,
    time_round_robin,
    total_line,
    write_json,
)
from winn_robust.attacks.fgsm import fgsm
from winn_robust.attacks.foolbox_adapter import foolbox_model
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
ATTACKS = ("fgsm", "pgd", "apgd-ce", "pgd-l2")
PIPELINES = ("harness", "foolbox", "torchattacks", "floor")          # FGSM
PGD_PIPELINES = ("harness", "foolbox", "torchattacks", "floor")
APGD_PIPELINES = ("harness", "direct")
LIBRARIES = ("foolbox", "torchattacks")
PGD_FLOOR_MIN = 0.9          # floor seconds / harness seconds
L2_FLOOR_MIN = 1 / 1.1       # L2 PGD: within 1.1x of its floor
APGD_OVERHEAD_MAX = 0.05     # harness seconds / direct seconds - 1
TRAIN_BATCH = 128

Models = dict[str, nn.Module]
# Predictions of one pipeline: clean[name] (N,), adv[source][target] (N,) as numpy int64.
Preds = tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]
# One library attack bound to one model: (images, labels) -> adversarial images in model units.
AttackFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


Pipeline = Callable[[Models, torch.Tensor, torch.Tensor, Work], Preds]


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


def batches(n: int, batch_size: int) -> range:
    return range(0, n, batch_size)


def to_numpy(parts: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(parts).cpu().numpy().astype(np.int64)


def collect(clean: dict[str, list[torch.Tensor]], adv: dict[str, dict[str, list[torch.Tensor]]]) -> Preds:
    return ({m: to_numpy(p) for m, p in clean.items()},
            {s: {t: to_numpy(p) for t, p in row.items()} for s, row in adv.items()})


def empty_preds(names: list[str]) -> tuple[dict[str, list[torch.Tensor]], dict[str, dict[str, list[torch.Tensor]]]]:
    return {m: [] for m in names}, {s: {t: [] for t in names} for s in names}


def append_clean(models: Models, x: torch.Tensor, clean: dict[str, list[torch.Tensor]]) -> None:
    """The library pipelines' clean pass: every model's predictions on one batch."""
    with torch.no_grad():
        for m, model in models.items():
            clean[m].append(model(x).argmax(1))


# ----------------------------------------------------------------------------- the harness, any attack
def harness_pipeline(attack: str, options: Callable[[Work], dict[str, Any]] | None = None,
                     norm: str = "linf") -> Pipeline:
    """Our cross-evaluation with one attack (and its options for this work) at `norm`."""

    def run(models: Models, images: torch.Tensor, labels: torch.Tensor, work: Work) -> Preds:
        opts = {attack: options(work)} if options else None
        eps = work.eps if norm == "linf" else work.l2_eps
        spec = EvalSpec.build((eps,), [attack], options=opts, batch_size=work.batch_size, probes=False,
                              seed=work.seed, norm=norm)
        result = cross_evaluate(models, images, labels, spec, device=images.device, progress=False)
        return result.clean_preds, result.adv_preds[(attack, eps)]
    return run


run_harness = harness_pipeline("fgsm")


# ----------------------------------------------------------------------------- FGSM: libraries and floor
def fgsm_foolbox(model: nn.Module, device: torch.device, eps: float) -> AttackFn:
    """foolbox's FGSM on the project's foolbox view of the model (bounds in model units)."""
    import foolbox

    fmodel = foolbox_model(model, device)
    attack = foolbox.attacks.FGSM()

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _, clipped, _ = attack(fmodel, x, y, epsilons=eps_to_model(eps))
        return clipped
    return run


class ZeroOne(nn.Module):
    """m01(u) = model(to_model_range(u)): a [-1, 1] model seen from [0, 1] pixel space
    (torchattacks' and AutoAttack's range)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(to_model_range(u))


def fgsm_torchattacks(model: nn.Module, eps: float) -> AttackFn:
    """torchattacks' FGSM in [0, 1] pixel space, converted at the boundary both ways."""
    import torchattacks

    attack = torchattacks.FGSM(ZeroOne(model).eval(), eps=eps)

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return to_model_range(attack(to_pixel_range(x), y))
    return run


def library_pipeline(make: Callable[[nn.Module, torch.device, Work], AttackFn]) -> Pipeline:
    """The natural user loop around a library attack: clean predictions, then for every model A
    the library's attack on A and every model's prediction on A's adversarial batch."""

    def run(models: Models, images: torch.Tensor, labels: torch.Tensor, work: Work) -> Preds:
        device = images.device
        names = list(models)
        for model in models.values():
            model.eval()
        attacks = {a: make(models[a], device, work) for a in names}
        clean, adv = empty_preds(names)
        for start in batches(len(images), work.batch_size):
            x, y = images[start:start + work.batch_size], labels[start:start + work.batch_size]
            append_clean(models, x, clean)
            for a in names:
                x_adv = attacks[a](x, y)
                with torch.no_grad():
                    for b in names:
                        adv[a][b].append(models[b](x_adv).argmax(1))
        return collect(clean, adv)
    return run


run_foolbox = library_pipeline(lambda model, device, work: fgsm_foolbox(model, device, work.eps))
run_torchattacks = library_pipeline(lambda model, device, work: fgsm_torchattacks(model, work.eps))


def run_floor(models: Models, images: torch.Tensor, labels: torch.Tensor, work: Work) -> Preds:
    """Bare torch: per batch K forward+input-backward passes and K^2 no-grad forwards. Weights
    are frozen (as the harness does) so autograd builds input gradients only."""
    names = list(models)
    step = eps_to_model(work.eps)
    clean, adv = empty_preds(names)
    with frozen_eval(*models.values()):
        for start in batches(len(images), work.batch_size):
            x, y = images[start:start + work.batch_size], labels[start:start + work.batch_size]
            crafted = {}
            for s in names:
                xg = x.detach().requires_grad_(True)
                logits = models[s](xg)
                (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xg)
                crafted[s] = (x + step * grad.sign()).clamp_(-1.0, 1.0)
                clean[s].append(logits.detach().argmax(1))
            with torch.inference_mode():
                for s in names:
                    for t in names:
                        adv[s][t].append(models[t](crafted[s]).argmax(1))
    return collect(clean, adv)


RUNNERS: dict[str, Pipeline] = {"harness": run_harness, "foolbox": run_foolbox,
                                "torchattacks": run_torchattacks, "floor": run_floor}


# ----------------------------------------------------------------------------- PGD
def pgd_options(work: Work) -> dict[str, Any]:
    """Our pgd doing the libraries' work: one restart, no random start, 2.5 eps / steps."""
    return {"steps": work.pgd_steps, "step_size": work.pgd_step, "restarts": 1, "random_start": False}


def pgd_foolbox(model: nn.Module, device: torch.device, work: Work) -> AttackFn:
    """foolbox's LinfPGD in model units: abs_stepsize = eps_to_model(step), epsilons = eps_to_model(eps)."""
    import foolbox

    fmodel = foolbox_model(model, device)
    attack = foolbox.attacks.LinfPGD(steps=work.pgd_steps, abs_stepsize=eps_to_model(work.pgd_step), random_start=False)

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _, clipped, _ = attack(fmodel, x, y, epsilons=eps_to_model(work.eps))
        return clipped
    return run


def pgd_torchattacks(model: nn.Module, work: Work) -> AttackFn:
    """torchattacks' PGD in [0, 1] pixel space (eps and alpha in pixel units)."""
    import torchattacks

    attack = torchattacks.PGD(ZeroOne(model).eval(), eps=work.eps, alpha=work.pgd_step, steps=work.pgd_steps,
                              random_start=False)

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return to_model_range(attack(to_pixel_range(x), y))
    return run


def run_pgd_floor(models: Models, images: torch.Tensor, labels: torch.Tensor, work: Work) -> Preds:
    """Our PGD in bare torch, per batch and model: `steps` forward+input-backward passes, each a
    sign step of eps_to_model(step) projected onto the eps-ball and the box (the same tensor ops
    as winn_robust.attacks.pgd, so the iterates are bit-identical), clean predictions from the
    first pass; then the K^2 no-grad forwards on the last iterates. No best-iterate bookkeeping
    and no forward on the last iterate beyond the K^2 evaluation."""
    names = list(models)
    radius, alpha = eps_to_model(work.eps), eps_to_model(work.pgd_step)
    clean, adv = empty_preds(names)
    with frozen_eval(*models.values()):
        for start in batches(len(images), work.batch_size):
            x, y = images[start:start + work.batch_size], labels[start:start + work.batch_size]
            low, high = (x - radius).clamp(min=MODEL_LOW), (x + radius).clamp(max=MODEL_HIGH)
            crafted = {}
            for s in names:
                current = x
                for step in range(work.pgd_steps):
                    current = current.detach().requires_grad_(True)
                    logits = models[s](current)
                    if step == 0:
                        clean[s].append(logits.detach().argmax(1))
                    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="none").sum(), current)
                    current = torch.min(torch.max(current.detach() + alpha * grad.sign(), low), high)
                crafted[s] = current.detach()
            with torch.inference_mode():
                for s in names:
                    for t in names:
                        adv[s][t].append(models[t](crafted[s]).argmax(1))
    return collect(clean, adv)


PGD_RUNNERS: dict[str, Pipeline] = {
    "harness": harness_pipeline("pgd", pgd_options),
    "foolbox": library_pipeline(pgd_foolbox),
    "torchattacks": library_pipeline(lambda model, device, work: pgd_torchattacks(model, work)),
    "floor": run_pgd_floor}


# ----------------------------------------------------------------------------- PGD-L2
def pgd_l2_options(work: Work) -> dict[str, Any]:
    """Our L2 pgd doing the libraries' work: one restart, no random start, 2.5 eps / steps."""
    return {"steps": work.pgd_steps, "step_size": work.l2_step, "restarts": 1, "random_start": False}


def pgd_l2_foolbox(model: nn.Module, device: torch.device, work: Work) -> AttackFn:
    """foolbox's L2PGD in model units (radius and step 2x the pixel-unit values)."""
    import foolbox

    fmodel = foolbox_model(model, device)
    attack = foolbox.attacks.L2PGD(steps=work.pgd_steps, abs_stepsize=eps_to_model(work.l2_step), random_start=False)

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _, clipped, _ = attack(fmodel, x, y, epsilons=eps_to_model(work.l2_eps))
        return clipped
    return run


def pgd_l2_torchattacks(model: nn.Module, work: Work) -> AttackFn:
    """torchattacks' PGDL2 in [0, 1] pixel space (eps and alpha in pixel units)."""
    import torchattacks

    attack = torchattacks.PGDL2(ZeroOne(model).eval(), eps=work.l2_eps, alpha=work.l2_step, steps=work.pgd_steps,
                                random_start=False)

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return to_model_range(attack(to_pixel_range(x), y))
    return run


def run_pgd_l2_floor(models: Models, images: torch.Tensor, labels: torch.Tensor, work: Work) -> Preds:
    """Our L2 PGD in bare torch, per batch and model: `steps` forward+input-backward passes, each a
    step of eps_to_model(step) along the gradient normalised per image, projected onto the L2
    ball and clipped to the box with the ops of attacks/pgd_l2.py (bit-identical iterates); then
    the K^2 forwards on the last iterates. No best-iterate bookkeeping, no extra last forward."""
    names = list(models)
    radius, alpha = eps_to_model(work.l2_eps), eps_to_model(work.l2_step)
    clean, adv = empty_preds(names)
    with frozen_eval(*models.values()):
        for start in batches(len(images), work.batch_size):
            x, y = images[start:start + work.batch_size], labels[start:start + work.batch_size]
            shape = (-1, *[1] * (x.dim() - 1))
            crafted = {}
            for s in names:
                current = x
                for step in range(work.pgd_steps):
                    current = current.detach().requires_grad_(True)
                    logits = models[s](current)
                    if step == 0:
                        clean[s].append(logits.detach().argmax(1))
                    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="none").sum(), current)
                    moved = current.detach() + alpha * (grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape))
                    delta = moved - x
                    factor = torch.clamp(radius / delta.flatten(1).norm(dim=1).clamp_min(1e-12), max=1.0)
                    current = (x + delta * factor.view(shape)).clamp(MODEL_LOW, MODEL_HIGH)
                crafted[s] = current.detach()
            with torch.inference_mode():
                for s in names:
                    for t in names:
                        adv[s][t].append(models[t](crafted[s]).argmax(1))
    return collect(clean, adv)


PGD_L2_RUNNERS: dict[str, Pipeline] = {
    "harness": harness_pipeline("pgd", pgd_l2_options, norm="l2"),
    "foolbox": library_pipeline(pgd_l2_foolbox),
    "torchattacks": library_pipeline(lambda model, device, work: pgd_l2_torchattacks(model, work)),
    "floor": run_pgd_l2_floor}


# ----------------------------------------------------------------------------- APGD-CE
def apgd_options(work: Work) -> dict[str, Any]:
    return {"steps": work.apgd_steps, "restarts": 1}


def autoattack_seed(work: Work, start: int, model_name: str, device: torch.device) -> int:
    """The seed our wrapper hands AutoAttack for this batch and model: drawn from a generator
    seeded with derive_seed(seed, "apgd-ce", eps, batch start), as the harness does (no model name:
    identical models get identical starts)."""
    generator = torch.Generator(device=device).manual_seed(derive_seed(work.seed, "apgd-ce", work.eps, start))
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())


def run_apgd_direct(models: Models, images: torch.Tensor, labels: torch.Tensor, work: Work) -> Preds:
    """pyautoattack called directly on a [0, 1] view of each model, seeded like our wrapper,
    then the clean and K x K forwards (on the [0, 1] adversarial images, through the views)."""
    from pyautoattack import AutoAttack

    names = list(models)
    for model in models.values():
        model.eval()
    views = {m: ZeroOne(models[m]).eval() for m in names}
    clean, adv = empty_preds(names)
    for start in batches(len(images), work.batch_size):
        x, y = images[start:start + work.batch_size], labels[start:start + work.batch_size]
        append_clean(models, x, clean)
        pixels = to_pixel_range(x)
        for a in names:
            adversary = AutoAttack(views[a], norm="Linf", eps=work.eps, version="custom", attacks=["apgd-ce"],
                                   seed=autoattack_seed(work, start, a, x.device), device=x.device)
            adversary.verbose = False
            adversary.apgd.n_restarts = 1
            adversary.apgd.n_iter = work.apgd_steps
            adv01, _ = adversary.run_standard_evaluation(pixels, y, batch_size=len(x))
            with torch.no_grad():
                for b in names:
                    adv[a][b].append(views[b](adv01).argmax(1))
    return collect(clean, adv)


APGD_RUNNERS: dict[str, Pipeline] = {"harness": harness_pipeline("apgd-ce", apgd_options), "direct": run_apgd_direct}


# ----------------------------------------------------------------------------- what is measured per attack
@dataclass(frozen=True)
class Suite:
    """One attack's pipelines (table order, the harness first), the pipeline the `x floor` column
    divides by, and the libraries the harness must not be slower than."""
    attack: str
    runners: Mapping[str, Pipeline]
    floor: str | None
    libraries: tuple[str, ...]

    @property
    def pipelines(self) -> tuple[str, ...]:
        return tuple(self.runners)


SUITES: dict[str, Suite] = {
    "fgsm": Suite("fgsm", RUNNERS, "floor", LIBRARIES),
    "pgd": Suite("pgd", PGD_RUNNERS, "floor", LIBRARIES),
    "apgd-ce": Suite("apgd-ce", APGD_RUNNERS, None, ()),
    "pgd-l2": Suite("pgd-l2", PGD_L2_RUNNERS, "floor", LIBRARIES),
}


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


def pgd_superset(harness: Preds, floor: Preds, labels: np.ndarray) -> dict[str, Any]:
    """Images whose floor last iterate fools the attacked model but whose harness best iterate
    does not (0 when the harness keeps every mistake it meets: its iterates are the floor's)."""
    misses = {s: int(((floor[1][s][s] != labels) & (harness[1][s][s] == labels)).sum()) for s in floor[1]}
    return {"floor_fooled_harness_not": sum(misses.values()), "per_model": misses}


def pixel_agreement(models: Models, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, dict[str, float]]:
    """Adversarial images of one batch from each library vs our FGSM: max |diff| and the fraction
    of pixels that are bit-identical (untimed)."""
    makers: dict[str, Callable[[nn.Module], AttackFn]] = {
        "foolbox": lambda m: fgsm_foolbox(m, x.device, eps), "torchattacks": lambda m: fgsm_torchattacks(m, eps)}
    out: dict[str, dict[str, float]] = {}
    for lib, make in makers.items():
        diffs, equal, total = [], 0, 0
        for model in models.values():
            ours = fgsm(model, x, y, eps)
            theirs = make(model)(x, y).detach()
            diffs.append(float((ours - theirs).abs().max()))
            equal += int((ours == theirs).sum())
            total += ours.numel()
        out[lib] = {"max_abs_diff": max(diffs), "pixels_identical": equal / total}
    return out


def check_agreement(attack: str, outputs: Mapping[str, Preds], labels: np.ndarray) -> dict[str, Any]:
    """The agreement numbers of one attack's pipelines (see the module docstring)."""
    if attack in ("pgd", "pgd-l2"):
        return {"vs_harness": {p: agreement(outputs["harness"], outputs[p]) for p in ("foolbox", "torchattacks", "floor")},
                "vs_floor": {p: agreement(outputs["floor"], outputs[p]) for p in ("foolbox", "torchattacks")},
                "superset": pgd_superset(outputs["harness"], outputs["floor"], labels)}
    return {"vs_harness": {p: agreement(outputs["harness"], outputs[p]) for p in outputs if p != "harness"}}


# ----------------------------------------------------------------------------- timing
def time_attack(suite: Suite, models: Models, x: torch.Tensor, y: torch.Tensor, work: Work, repeats: int,
                device: torch.device) -> tuple[dict[str, Any], dict[str, Preds]]:
    """Every pipeline of one attack: times (warm-up on one batch), errors, agreement, requirement."""

    def pipeline(name: str, n: int) -> Callable[[], Preds]:
        return lambda: suite.runners[name](models, x[:n], y[:n], work)

    timings = time_round_robin({p: pipeline(p, len(x)) for p in suite.pipelines}, device, repeats,
                               warm_up={p: pipeline(p, work.batch_size) for p in suite.pipelines})
    best, median = timings.best, timings.median
    labels = y.cpu().numpy().astype(np.int64)
    outputs: dict[str, Preds] = timings.outputs
    rows = {}
    for p in suite.pipelines:
        rows[p] = {"seconds_best": best[p], "seconds_median": median[p], "seconds_all": timings.seconds[p],
                   "images_per_second": len(x) / best[p], "x_harness": best[p] / best["harness"],
                   "adversarial_error": adversarial_error(outputs[p], labels)}
        if suite.floor:
            rows[p]["x_floor"] = best[p] / best[suite.floor]
    result = {"n": len(x), "pipelines": rows, "agreement": check_agreement(suite.attack, outputs, labels),
              "requirement": requirement(suite, rows)}
    return result, outputs


def requirement(suite: Suite, rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The speed requirement of one attack, from best times."""
    harness = rows["harness"]["seconds_best"]
    out: dict[str, Any] = {"not_slower_than": {lib: rows[lib]["seconds_best"] >= harness for lib in suite.libraries}}
    met = all(out["not_slower_than"].values())
    if suite.attack in ("pgd", "pgd-l2"):
        out["floor_over_harness"] = rows["floor"]["seconds_best"] / harness
        out["floor_min"] = PGD_FLOOR_MIN if suite.attack == "pgd" else round(L2_FLOOR_MIN, 4)
        met &= out["floor_over_harness"] >= out["floor_min"]
    if suite.attack == "apgd-ce":
        out["overhead"] = harness / rows["direct"]["seconds_best"] - 1
        out["overhead_max"] = APGD_OVERHEAD_MAX
        met &= out["overhead"] < APGD_OVERHEAD_MAX
    out["met"] = bool(met)
    return out


def time_device(device: torch.device, args: argparse.Namespace, inputs: Inputs, models_cpu: Models) -> dict[str, Any]:
    """Every selected attack on one device: times, agreement, requirements, optional profiles."""
    models = {name: copy.deepcopy(model).to(device).eval() for name, model in models_cpu.items()}
    x_all, y_all = inputs.images.to(device), inputs.labels.to(device)
    work = work_of(args)
    attacks: dict[str, Any] = {}
    for attack in args.attacks:
        n = args.n if attack == "fgsm" else args.iterative_n
        x, y = x_all[:n], y_all[:n]
        t0 = time.perf_counter()
        res, _ = time_attack(SUITES[attack], models, x, y, work, args.repeats, device)
        if attack == "fgsm":
            res["pixels"] = pixel_agreement(models, x[:args.batch_size], y[:args.batch_size], args.eps)
        res["profile"] = profile_pipelines(SUITES[attack], models, x, y, work, args, device) if args.profile else None
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
    """One attack's table, every device: FGSM as it always was; PGD adds each attacked model's
    adversarial error; APGD-CE has the wrapper's overhead instead of a floor."""
    suite = SUITES[attack]
    header = f"{'pipeline':<13} {'device':<6} {'images/s':>9} {'s best':>8} {'s median':>9} {'x harness':>10}"
    header += f" {'x floor':>8}" if suite.floor else f" {'overhead':>9}"
    if attack != "fgsm":
        names = list(next(iter(results[0]["attacks"][attack]["pipelines"].values()))["adversarial_error"])
        header += "  adv error (" + ", ".join(names) + ")"
    rows = []
    for res in results:
        table = res["attacks"][attack]
        for p in suite.pipelines:
            r = table["pipelines"][p]
            row = (f"{p:<13} {res['device']:<6} {r['images_per_second']:>9.1f} {r['seconds_best']:>8.3f} "
                   f"{r['seconds_median']:>9.3f} {r['x_harness']:>10.2f}")
            if suite.floor:
                row += f" {r['x_floor']:>8.2f}"
            else:
                overhead = table["requirement"]["overhead"]
                row += f" {overhead:>+9.1%}" if p == "harness" else f" {'-':>9}"
            if attack != "fgsm":
                row += "  " + ", ".join(f"{e:.1%}" for e in r["adversarial_error"].values())
            rows.append(row)
    return rule_table(header, rows)


def agreement_line(p: str, a: Mapping[str, Any], what: str, passed: bool) -> str:
    exact = a["predictions_equal"] == a["predictions"]
    verdict = "identical" if exact else f"{a['predictions'] - a['predictions_equal']} of {a['predictions']} differ"
    return (f"  {p:<13} vs {what}: adversarial predictions {a['adv_fraction']:.4%} equal, "
            f"clean {a['clean_fraction']:.4%}, images with every prediction equal {a['image_fraction']:.4%} "
            f"({verdict}) {'PASS' if passed else 'FAIL'}")


def format_agreement(res: dict[str, Any], torchattacks_min: float, attack: str = "fgsm",
                     pgd_min: float = 0.99) -> tuple[list[str], bool]:
    """The agreement lines of one attack on one device, and whether they all pass."""
    table = res["attacks"][attack]
    agree, device = table["agreement"], res["device"]
    lines, ok = [], True
    if attack == "fgsm":
        for p, a in agree["vs_harness"].items():
            # foolbox and the floor compute the same float ops as the harness: demand identity;
            # torchattacks goes through [0, 1] and back, so its inputs differ in the last bits.
            exact = a["predictions_equal"] == a["predictions"]
            passed = exact or (p == "torchattacks" and a["image_fraction"] >= torchattacks_min)
            ok &= passed
            lines.append(agreement_line(p, a, f"harness on {device}", passed))
        for lib, px in table["pixels"].items():
            lines.append(f"  {lib:<13} adversarial images vs our FGSM (first batch): max |diff| {px['max_abs_diff']:.3g}, "
                         f"{px['pixels_identical']:.4%} of pixels bit-identical")
    elif attack in ("pgd", "pgd-l2"):
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
    else:
        a = agree["vs_harness"]["direct"]
        passed = a["predictions_equal"] == a["predictions"]
        ok &= passed
        lines.append(agreement_line("direct", a, f"harness on {device} (seeded alike)", passed))
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
    return max(args.n if "fgsm" in args.attacks else 0, args.iterative_n if set(args.attacks) - {"fgsm"} else 0)


def print_header(args: argparse.Namespace, source: str, trained: str) -> None:
    k = len(args.archs)
    work = work_of(args)
    print(f"cross-evaluation throughput: {k} models ({', '.join(args.archs)}; {trained}), eps {args.eps} "
          f"pixel units ({eps_to_model(args.eps)} in [-1, 1] model space), images of {SHAPE}, batch {args.batch_size}")
    print(f"data: {source}; {runtime_note()}; best of {args.repeats} repeats after 1 warm-up batch")
    if "fgsm" in args.attacks:
        print(f"fgsm ({args.n} images), per batch: harness and floor do {k} fwd+input-bwd and {k * k} forwards; the library "
              f"loops also do {k} clean forwards (and foolbox one more forward per attack for its success flag)")
    if "pgd" in args.attacks:
        s = args.pgd_steps
        print(f"pgd ({args.iterative_n} images, {s} steps of {work.pgd_step:.6g} pixel units, 1 restart, no random start), "
              f"per batch: floor {k}x{s} fwd+input-bwd and {k * k} forwards; the harness also {k} forwards on the last "
              f"iterates (best-iterate bookkeeping); the library loops {k} clean forwards (foolbox {k} more for its flag)")
    if "pgd-l2" in args.attacks:
        print(f"pgd-l2 ({args.iterative_n} images, L2 eps {args.l2_eps} pixel units, {args.pgd_steps} steps of "
              f"{work.l2_step:.6g}, 1 restart, no random start): the same passes as pgd, normalised-gradient steps and "
              "L2-ball projection")
    if "apgd-ce" in args.attacks:
        print(f"apgd-ce ({args.iterative_n} images, {args.apgd_steps} iterations, 1 restart): both pipelines run the same "
              f"pyautoattack code (its checks, clean pass, APGD on the images each model gets right), "
              f"then {k} clean and {k * k} forwards")


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
        for attack, table in res["attacks"].items():
            for name, prof in (table["profile"] or {}).items():
                print(f"\nprofile of {attack} {name} on {res['device']}:\n{prof}")
    total = time.perf_counter() - start
    print(total_line(total))
    report = {"config": config_record(args), "data": inputs.source, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "training": {"steps": args.train_steps, "seconds": train_seconds},
              "environment": environment_record(devices), "results": results, "agreement_passed": all_ok,
              "harness_not_slower": not_slower, "requirements_met": met, "total_seconds": total}
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    run_main(main)
