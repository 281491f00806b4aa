"""What a training run costs: forward and backward image-passes through the network, counted by
hooks on the model, so every method (ours, the defences' inner attacks, synthesis, a user's own
function) is counted by the same rule without declaring anything.

A forward image-pass is one image through the model's forward; a backward image-pass is one
image's gradient flowing back through the model's output (a loss.backward() or an
autograd.grad() for an input gradient alike; WINN's double backward through its gradient penalty
counts as the backward of the pass it belongs to). Validation and model selection are not
training cost: the trainer pauses the counter for them."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class TrainingCost:
    """What a run's training cost, summed over its metrics.csv (a report's provenance records it
    per model as `training_cost`). Seconds depend on the machine and on what ran beside it;
    passes do not."""
    epochs: int
    train_seconds: float          # classification and synthesis passes; validation and selection excluded
    forward_passes: int
    backward_passes: int
    train_images: int | None = None

    @classmethod
    def from_dict(cls, values: Any) -> TrainingCost | None:
        """The record results.json holds, or None where it holds none (or a damaged one)."""
        if not isinstance(values, Mapping):
            return None
        try:
            images = values.get("train_images")
            return cls(int(values["epochs"]), float(values["train_seconds"]), int(values["forward_passes"]),
                       int(values["backward_passes"]), None if images is None else int(images))
        except (KeyError, TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def passes(self) -> int:
        return self.forward_passes + self.backward_passes


class PassCounter:
    def __init__(self, model: nn.Module) -> None:
        self.forward = 0
        self.backward = 0
        self.active = True
        self._handle = model.register_forward_hook(self._on_forward)

    def _on_forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not self.active or not inputs or not isinstance(inputs[0], torch.Tensor):
            return
        n = int(inputs[0].shape[0])
        self.forward += n
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._on_backward)

    def _on_backward(self, grad: torch.Tensor) -> None:
        if self.active:
            self.backward += int(grad.shape[0])

    @contextmanager
    def paused(self) -> Iterator[None]:
        was, self.active = self.active, False
        try:
            yield
        finally:
            self.active = was

    def take(self) -> tuple[int, int]:
        """(forward, backward) image-passes since the last take."""
        counts = (self.forward, self.backward)
        self.forward = self.backward = 0
        return counts

    def remove(self) -> None:
        self._handle.remove()
