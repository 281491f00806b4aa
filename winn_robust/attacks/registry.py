"""A small attack registry so the harness never knows which attack it runs.

Convention (DESIGN.md): models see images in [-1, 1]; `eps` is in [0, 1] pixel units, so an
L-inf budget of eps is a step of 2 * eps in model space. Every attack returns adversarial
images of the input's shape, clipped to [-1, 1], crafted on the model in eval mode."""
from __future__ import annotations

from typing import Callable, Protocol

import torch

from winn_robust.errors import UserError

MODEL_SCALE = 2.0  # [0, 1] pixel units -> [-1, 1] model units


class Attack(Protocol):
    def __call__(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor: ...


ATTACKS: dict[str, Attack] = {}


def register_attack(name: str) -> Callable[[Attack], Attack]:
    def decorate(attack: Attack) -> Attack:
        ATTACKS[name] = attack
        return attack
    return decorate


def get_attack(name: str) -> Attack:
    if name not in ATTACKS:
        raise UserError(f"unknown attack {name!r}; choose one of {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


def check_eps(eps: float) -> float:
    """eps is in [0, 1] pixel units; anything else is almost surely a unit mistake."""
    eps = float(eps)
    if not 0.0 <= eps <= 1.0:
        raise UserError(f"eps {eps} is outside [0, 1]; eps is in [0, 1] pixel units (the paper's MNIST value is 0.125)")
    return eps
