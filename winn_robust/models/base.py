"""The contract every architecture keeps: logits for attacks, logits plus critic score for WINN."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

CRITIC_INIT_STD = 0.02


class Classifier(nn.Module):
    """A classifier whose `forward` gives logits and whose `critic` head (10 -> 1 linear on the
    logits, as in WINN) gives the Wasserstein score f(x). Subclasses implement `forward`."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.critic = nn.Linear(num_classes, 1)
        # the official code's `linear(..., 'wass')`: weights N(0, 0.02^2), bias 0
        nn.init.normal_(self.critic.weight, 0.0, CRITIC_INIT_STD)
        nn.init.zeros_(self.critic.bias)

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, f) in one pass: f is the critic on the logits, shape (N,)."""
        logits = self(x)
        return logits, self.critic(logits).squeeze(-1)


@contextmanager
def frozen_eval(*models: nn.Module) -> Iterator[None]:
    """Eval mode and requires_grad=False for the duration, both restored afterwards even on
    error: attacks and synthesis need input gradients only, and must leave a model in training
    exactly as they found it."""
    modes = [(m, m.training) for m in models]
    params = [(p, p.requires_grad) for m in models for p in m.parameters()]
    for m, _ in modes:
        m.eval()
    for p, _ in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in reversed(params):
            p.requires_grad_(flag)
        for m, mode in modes:
            m.train(mode)
