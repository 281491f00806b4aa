"""Cheap probes of each model on one batch, for the failure indicators (evaluation/indicators.py):
do its input gradients vanish, does it output probabilities rather than logits, is it random,
does an unbounded attack fool it, and would it do far better under another input convention (a
[0, 1] vs [-1, 1] mix-up, or missing mean/std normalisation)? Unbounded means L-inf eps = 1 (the
whole pixel range), or at L2 the image diagonal sqrt(C*H*W) (the largest L2 distance between two [0, 1] images).

Thresholds and checks follow AutoAttack's flags (check_zero_gradients, check_range_output,
check_randomized; Croce and Hein's pyautoattack) and the checklist of Carlini et al. 2019."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from winn_robust.attacks.base import input_gradient
from winn_robust.attacks.pgd import PGD
from winn_robust.attacks.pgd_l2 import PGDL2
from winn_robust.models.base import frozen_eval
from winn_robust.units import DEFAULT_NORM, image_diagonal, to_model_range, to_pixel_range

RANDOMNESS_PASSES = 3
PROBABILITY_TOLERANCE = 1e-5       # AutoAttack's check_range_output alpha
UNBOUNDED_STEPS = 20


@dataclass(frozen=True)
class ProbeResult:
    n: int                      # images probed (the first batch)
    zero_gradient: int          # images whose input gradient of the CE loss is exactly zero
    probability_outputs: int    # images whose outputs lie in [0, 1] and sum to 1
    randomness: float           # largest L2 distance between repeated passes' normalised outputs
    unbounded_wrong: int        # images an eps = 1 PGD turns into mistakes (of n)
    # clean mistakes (of n) under each input convention: RANGE_CONVENTIONS' keys
    range_wrong: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# What the model is given in each probe, in model space x ([-1, 1], from pixels u = (x + 1) / 2):
# "given" is the convention; "fewer" undoes one [0, 1] -> [-1, 1] conversion (the model, or its
# wrapper, converts although it was trained on [0, 1]: the x*2-1 mistake); "more" applies one
# more (it expects [-1, 1] but gets [0, 1]); "standardised": the model receives (u - mean) / std
# of the batch, as models trained with mean/std normalisation expect.
RANGE_CONVENTIONS = ("given", "fewer", "more", "standardised")


def convention_inputs(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The probe batch under each of RANGE_CONVENTIONS (model space; an external model's wrapper
    maps x -> (x + 1) / 2, so "standardised" is built to reach it as (u - mean) / std)."""
    pixels = to_pixel_range(images)
    mean = pixels.mean(dim=(0, 2, 3), keepdim=True)
    std = pixels.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return {"given": images, "fewer": to_pixel_range(images), "more": to_model_range(images),
            "standardised": to_model_range((pixels - mean) / std)}


def unbounded_eps(norm: str, image_shape: tuple[int, ...]) -> float:
    """The budget of the unbounded-attack probe, in pixel units of `norm`."""
    return 1.0 if norm == DEFAULT_NORM else image_diagonal(image_shape)


def probe_model(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, seed: int,
                norm: str = DEFAULT_NORM) -> ProbeResult:
    """All four probes on one batch; the model stays as the caller left it."""
    x = images.detach().clone().requires_grad_(True)
    with frozen_eval(model), torch.enable_grad():
        logits = model(x)
        grad = input_gradient(F.cross_entropy(logits, labels, reduction="sum"), x)
    zero = int((grad.flatten(1).abs().sum(1) == 0).sum())
    outputs = logits.detach()
    sums_to_one = ((outputs.min(1).values > -PROBABILITY_TOLERANCE) & (outputs.max(1).values < 1 + PROBABILITY_TOLERANCE)
                   & ((outputs.sum(1) - 1).abs() < PROBABILITY_TOLERANCE))
    with frozen_eval(model), torch.no_grad():
        passes = [model(images) for _ in range(RANDOMNESS_PASSES)]
    normalised = [p / (p.norm(dim=1, keepdim=True) + 1e-10) for p in passes]
    randomness = max(float((a - b).norm(dim=1).max()) for i, a in enumerate(normalised) for b in normalised[i + 1:])
    unbounded = PGD(steps=UNBOUNDED_STEPS, restarts=1, random_start=False, seed=seed) if norm == DEFAULT_NORM else \
        PGDL2(steps=UNBOUNDED_STEPS, restarts=1, random_start=False, seed=seed, norm=norm)
    adversarial = unbounded(model, images, labels, unbounded_eps(norm, tuple(images.shape[1:])))
    with frozen_eval(model), torch.no_grad():
        wrong = int((model(adversarial).argmax(1) != labels).sum())
        range_wrong = {name: int((model(x).argmax(1) != labels).sum()) for name, x in convention_inputs(images).items()}
    return ProbeResult(len(images), zero, int(sums_to_one.sum()), randomness, wrong, range_wrong)
