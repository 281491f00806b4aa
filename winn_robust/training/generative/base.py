"""Generative methods as typed objects of the same registry as the supervised ones.

A generative method (unsupervised WINN, WGAN-GP, ...) is a frozen `TrainingMethod` whose fields are
its own settings (recorded in every checkpoint, checked on --resume, given on the command line like
any method's), but it does not train through the supervised `loss` of one batch: its unit of work is
an iteration (WINN: k critic passes, then a synthesis; WGAN-GP: a block of generator steps), so it
builds a `Learner` that the generative trainer (training/generative/trainer.py) drives. The trainer
owns everything that is the same for every method: seeds, the run folder and its lock, metrics.csv,
cost accounting, atomic checkpoints and a bit-identical --resume; the learner owns the networks,
their optimizers and whatever state the method keeps between iterations.

Under torchrun (docs/distributed.md) every rank builds the same learner from the same seed and
keeps the same random stream: a learner draws the randoms of the whole global batch as one
process does, computes its critic terms on its rank's rows (`parallel.RankSlice`) and steps
through `optimizer_step`, which averages the gradients over ranks, so every rank's networks stay
equal; what it synthesizes it splits across ranks and all-gathers."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from winn_robust import distributed
from winn_robust.distributed import World
from winn_robust.errors import UserError
from winn_robust.training.losses import LossTerms
from winn_robust.training.methods.base import StepContext, TrainingMethod


@dataclass
class LearnerSetup:
    """What a learner is built from: the shared settings (TrainConfig, kept untyped here to stay
    below the config module), the training images ([-1, 1], labels unused), the device, and the run's
    seeded random stream (every random draw of training comes from it, so a seed fixes the run and a
    resume continues it exactly)."""
    config: Any
    images: torch.Tensor
    device: torch.device
    rng: torch.Generator
    progress: bool = False
    #: the validation images (or points), never trained on: for held-out measures such as iWGAN's duality gap
    held_out: torch.Tensor | None = None
    #: this process's rank under torchrun (a world of one otherwise)
    world: World = field(default_factory=World)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One update on `loss`: zero, backward, the gradients averaged over ranks (a no-op in one
    process, so a single-process run computes exactly what it did before data parallelism), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(p for group in optimizer.param_groups for p in group["params"])
    optimizer.step()


class Learner(ABC):
    """The mutable half of a generative method: networks, optimizers and state between iterations."""

    #: the networks, by name; the trainer saves and restores them all and counts their passes
    modules: dict[str, nn.Module]
    #: their optimizers, by name; saved and restored with them
    optimizers: dict[str, torch.optim.Optimizer]
    #: metrics.csv's columns of this method, after `epoch` (the iteration) and `method`
    columns: ClassVar[tuple[str, ...]] = ()
    #: networks whose passes count in the run's cost but that are not saved (e.g. throw-away probes)
    auxiliary: dict[str, nn.Module] = {}  # noqa: RUF012  (replaced per instance, never mutated)

    @property
    @abstractmethod
    def total_iterations(self) -> int:
        """How many iterations (metrics.csv rows, resumable checkpoints) the run has."""

    @property
    def finished(self) -> bool:
        """True once the method's own stopping rule ended the run before total_iterations."""
        return False

    @abstractmethod
    def iterate(self, iteration: int) -> dict[str, float]:
        """Run iteration `iteration` (from 1); return its metrics (column -> value)."""

    def new_parts(self) -> dict[str, list[torch.Tensor]]:
        """Append-only tensors added since the last call (e.g. new pseudo-negatives), by name: the
        trainer writes each to its own file once, and gives them all back in order to
        `restore_parts` on resume."""
        return {}

    def restore_parts(self, parts: Mapping[str, list[torch.Tensor]]) -> None:  # noqa: B027  (optional hook)
        """Rebuild the append-only state from every part written so far, in order."""

    def state(self) -> dict[str, Any]:
        """Small state beside the networks (tensors or JSON-able values) that a resume needs."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027  (optional hook)
        """The inverse of `state`."""

    def milestone(self, iteration: int) -> str | None:
        """A name (e.g. "cascade-1") when iteration ends a stage worth its own checkpoint file."""
        return None

    def summary(self) -> dict[str, Any]:
        """JSON-able facts sampling needs (e.g. WINN's stopping thresholds), stored in every checkpoint."""
        return {}

    def preview(self, n: int) -> torch.Tensor | None:
        """Up to n recent images in [-1, 1] for the run's progress grid (None: no grid)."""
        return None


@dataclass(frozen=True)
class GenerativeMethod(TrainingMethod):
    """A method that models the training images themselves; labels are unused."""

    generative: ClassVar[bool] = True
    term_columns: ClassVar[tuple[str, str]] = ("", "")  # no supervised loss terms: each learner logs its own
    #: the architecture family the method needs: "image" (the project's CNNs) or "points" (2-D MLPs)
    data_kind: ClassVar[str] = "image"

    def loss(self, ctx: StepContext) -> LossTerms:
        raise UserError(f"{self.name} is a generative method: it trains with the generative trainer, not batch by batch")

    @abstractmethod
    def learner(self, setup: LearnerSetup) -> Learner:
        """A fresh learner for one run (networks initialised from the run's seed)."""

    @abstractmethod
    def sample(self, run: Any, count: int, seed: int, rng: torch.Generator, device: torch.device, *,
               from_critic: bool = False, progress: bool = False) -> torch.Tensor:
        """count images in [-1, 1] drawn from the run (a sampling.GenerativeRun) with the seeded `rng`;
        `from_critic`: synthesize from the critic by the WINN procedure, for methods with a separate
        generator (WGAN-GP), to show what its critic alone generates."""


def is_generative(method: TrainingMethod) -> bool:
    return bool(getattr(method, "generative", False))


def decay_rates(optimizers: Mapping[str, torch.optim.Optimizer], rates: Mapping[str, float], done: int,
                total: int) -> None:
    """Each optimizer's learning rate set to rates[name] * (1 - done / total): a linear decay to 0
    over `total` steps (as the WGAN-GP reference's gan_cifar_resnet.py), a function of the step
    index alone, so a resumed run takes the same rates."""
    fraction = max(0.0, 1.0 - done / total)
    for name, optimizer in optimizers.items():
        for group in optimizer.param_groups:
            group["lr"] = rates[name] * fraction
