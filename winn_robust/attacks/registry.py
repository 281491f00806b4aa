"""A small attack registry so the harness never knows which attack it runs.

Convention (docs/conventions.md): models see images in [-1, 1]; `eps` is in [0, 1] pixel
units (`winn_robust.units`). Every attack returns adversarial images of the input's shape,
clipped to [-1, 1], crafted on the model in eval mode. Registered attacks trust their eps:
it was checked once where it entered (the CLI, or `EvalSpec`)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from winn_robust.errors import UserError


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
