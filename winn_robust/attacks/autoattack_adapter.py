"""AutoAttack (Croce and Hein 2020) through the `pyautoattack` package, the code RobustBench uses.

AutoAttack expects models on [0, 1] images; ours see [-1, 1], so the *model* is wrapped
(u -> model(2u - 1)), never the images re-scaled behind the attack's back, and eps (already in
[0, 1] pixel units) is passed unchanged. Single attacks run through AutoAttack's own driver
(version 'custom') with the standard version's settings (APGD-CE 1 restart of 100 steps, APGD-T
and FAB-T 9 target classes, Square 5,000 queries) unless an option changes them; `autoattack`
is the standard ensemble. Every one runs at L-inf or L2 (AutoAttack's norm 'Linf' / 'L2', eps
in the same pixel units). As in AutoAttack, an image the attack does not fool is returned
unchanged. AutoAttack's own warnings (its flags: randomized or dynamic defence, probabilities
instead of logits, Square beating the gradient attacks) are captured and reported as notes."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from winn_robust.attacks.base import Attack, AttackOutput, draw_seed, forked_global_rng, option
from winn_robust.attacks.pgd_l2 import l2_project
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_HIGH, MODEL_LOW, eps_to_model, to_model_range, to_pixel_range

STANDARD_TARGET_CLASSES = 9
AUTOATTACK_NORMS = {"linf": "Linf", "l2": "L2"}


class PixelInputs(nn.Module):
    """A [-1, 1] model seen from [0, 1] pixel space: u -> model(2u - 1)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(to_model_range(pixels))


class _CaptureWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass(frozen=True)
class AutoAttackBase(Attack):
    """One AutoAttack run; subclasses name the attacks and their knobs."""

    randomized = True
    iterative = True
    returns_clean_when_failed = True  # AutoAttack keeps the clean image wherever it finds no adversarial example
    norms = ("linf", "l2")
    ensemble: ClassVar[bool] = False  # the standard version; otherwise the one attack AutoAttack calls `name`

    def configure(self, adversary: Any, num_classes: int) -> None:
        """Set the standard version's settings (and this attack's options) on AutoAttack's objects."""
        targets = max(1, min(STANDARD_TARGET_CLASSES, num_classes - 1))
        adversary.apgd.n_restarts = 1
        adversary.apgd_targeted.n_target_classes = targets
        adversary.fab.n_restarts = 1
        adversary.fab.n_target_classes = targets
        adversary.square.n_queries = 5000

    def run(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
            generator: torch.Generator) -> AttackOutput:
        from pyautoattack import AutoAttack

        seed = draw_seed(generator)
        wrapped = PixelInputs(model).eval()
        with frozen_eval(model), torch.no_grad():
            num_classes = int(model(images[:1]).shape[-1])
        version = "standard" if self.ensemble else "custom"
        attacks = None if self.ensemble else [self.name]
        adversary = AutoAttack(wrapped, attacks=attacks, device=images.device, eps=eps, norm=AUTOATTACK_NORMS[self.norm], seed=seed,
                               version=version)
        adversary.verbose = False
        self.configure(adversary, num_classes)
        capture, logger = _CaptureWarnings(), logging.getLogger("auto-attack")
        logger.addHandler(capture)
        propagate, logger.propagate = logger.propagate, False
        try:
            # AutoAttack seeds torch's global generators itself: keep the caller's RNG state intact
            with frozen_eval(model), forked_global_rng(images.device):
                adv01, _ = adversary.run_standard_evaluation(to_pixel_range(images.detach()), labels,
                                                            batch_size=len(images))
        finally:
            logger.removeHandler(capture)
            logger.propagate = propagate
        # back to model space; an image AutoAttack left alone stays bit-identical, and the float
        # round trip can never step outside the eps-ball or the box
        x, pixels = images.detach(), to_pixel_range(images.detach())
        adv01 = adv01.to(images.device)
        radius = eps_to_model(eps)
        adversarial = torch.where(adv01 == pixels, x, to_model_range(adv01))
        if self.norm == "l2":
            adversarial = (x + l2_project(adversarial - x, radius)).clamp(MODEL_LOW, MODEL_HIGH)
        else:
            adversarial = torch.min(torch.max(adversarial, x - radius), x + radius).clamp(MODEL_LOW, MODEL_HIGH)
        return AttackOutput(adversarial, notes=[f"AutoAttack: {m}" for m in capture.messages])


@dataclass(frozen=True)
class APGDCE(AutoAttackBase):
    steps: int = option(100, at_least=1)
    restarts: int = option(1, at_least=1)

    name = "apgd-ce"
    summary = "APGD on the cross-entropy (AutoAttack; step-size free PGD)"

    def configure(self, adversary: Any, num_classes: int) -> None:
        super().configure(adversary, num_classes)
        adversary.apgd.n_iter, adversary.apgd.n_restarts = self.steps, self.restarts


@dataclass(frozen=True)
class TargetedAutoAttack(AutoAttackBase):
    """APGD-T and FAB-T: the same two options on different AutoAttack components."""

    steps: int = option(100, at_least=1)
    target_classes: int = option(STANDARD_TARGET_CLASSES, at_least=1)

    component: ClassVar[str] = ""  # the attribute of AutoAttack holding this attack

    def configure(self, adversary: Any, num_classes: int) -> None:
        super().configure(adversary, num_classes)
        part = getattr(adversary, self.component)
        part.n_iter = self.steps
        part.n_target_classes = max(1, min(self.target_classes, num_classes - 1))


@dataclass(frozen=True)
class APGDT(TargetedAutoAttack):
    name = "apgd-t"
    summary = "targeted APGD on the DLR loss (AutoAttack)"
    component = "apgd_targeted"


@dataclass(frozen=True)
class FABT(TargetedAutoAttack):
    name = "fab-t"
    summary = "targeted FAB, a minimum-norm attack (AutoAttack)"
    component = "fab"


@dataclass(frozen=True)
class Square(AutoAttackBase):
    queries: int = option(5000, at_least=1)

    name = "square"
    summary = "Square Attack, gradient-free random search (AutoAttack)"
    gradient_based = False
    gradient_free = True

    def configure(self, adversary: Any, num_classes: int) -> None:
        super().configure(adversary, num_classes)
        adversary.square.n_queries = self.queries


@dataclass(frozen=True)
class StandardAutoAttack(AutoAttackBase):
    name = "autoattack"
    summary = "AutoAttack's standard ensemble: APGD-CE, APGD-T, FAB-T, Square"
    ensemble = True
