"""A researcher's own training method through our trainer: `--method NAME=FILE.py:FUNCTION`.

FUNCTION(model, images, labels, context) returns the loss of one batch (a scalar tensor), or
(loss, logits) to have the trainer log the training error on those logits. `model(x)` gives
logits of [-1, 1] images (under torchrun it is the data-parallel model, so gradients are
averaged); `context` is a `UserContext`. The trainer does everything else: seeds, checkpoints,
resume, torchrun, metrics, cost, and the one-line errors naming the epoch and batch."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from winn_robust.attacks import Attack, make_attack
from winn_robust.errors import SettingError, UserError
from winn_robust.models.base import Classifier
from winn_robust.training.losses import LossTerms, Scorer
from winn_robust.training.methods.base import StepContext, TrainingMethod
from winn_robust.units import MODEL_SCALE
from winn_robust.user_code import file_digest, import_function, split_function_spec


class LogitsModel:
    """What the user's function calls: logits of the training pass (the scorer's first output)."""

    def __init__(self, scorer: Scorer, model: Classifier) -> None:
        self.scorer, self.module = scorer, model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.scorer.score(x)[0]


@dataclass
class UserContext:
    """eps: the run's training eps in [0, 1] pixel units (None when not given), model_eps = 2 eps
    its size on [-1, 1] images; epoch (from 1) and batch (from 0); generator: the run's seeded
    torch.Generator (saved in last.pt, so --resume continues it exactly); rand(shape)/randn(shape):
    draws for the whole global batch, this rank's rows (identical under torchrun);
    attack(name, **options): one of our attacks, run on the bare model in eval mode with the
    run's generator, returning adversarial images: `context.attack("pgd", steps=10)(images, labels)`."""
    eps: float | None
    epoch: int
    batch: int
    generator: torch.Generator
    rand: Callable[[tuple[int, ...]], torch.Tensor]
    randn: Callable[[tuple[int, ...]], torch.Tensor]
    model: Classifier = field(repr=False)

    @property
    def model_eps(self) -> float | None:
        return None if self.eps is None else MODEL_SCALE * self.eps

    def attack(self, name: str, eps: float | None = None, **options: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        built: Attack = make_attack(name, {k: v for k, v in options.items()})
        budget = self.eps if eps is None else eps
        if budget is None:
            raise UserError(f"context.attack({name!r}) needs an eps: give `train_eps` or eps=...", mentions=("train_eps",))

        def run(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return built.run(self.model, images, labels, budget, self.generator).adversarial

        return run


@dataclass(frozen=True)
class UserMethod(TrainingMethod):
    label: str = "mine"
    source: str = ""          # FILE.py:FUNCTION, the file's absolute path
    sha256: str = ""          # of the file when the run started; --resume refuses a changed file
    eps: float | None = None  # pixel units, given to the function as context.eps

    name = "user"
    summary = "your own method: FUNCTION(model, images, labels, context) -> loss"
    term_columns = ("", "")

    def validate(self) -> None:
        if not self.label or not all(ch.isalnum() or ch in "_-." for ch in self.label):
            raise SettingError("method", f"name {self.label!r} must be letters, digits, '_', '-' or '.'")
        parts = split_function_spec(self.source)
        if parts is None:
            raise SettingError("method", f"{self.label}={self.source} must look like NAME=FILE.py:FUNCTION")
        if not parts[0].is_file():
            raise SettingError("method", f"{self.label}: {parts[0]} does not exist; give the Python file that "
                                         "defines your loss function")
        if self.eps is not None and not 0.0 <= self.eps <= 1.0:
            raise SettingError("eps", f"must be in [0, 1] pixel units, got {self.eps}", method_setting=True)

    @classmethod
    def from_spec(cls, label: str, source: str, options: Mapping[str, Any]) -> UserMethod:
        parts = split_function_spec(source)
        if parts is None:
            raise SettingError("method", f"{label}={source} must look like NAME=FILE.py:FUNCTION")
        path, function = parts
        absolute = f"{path.resolve()}:{function}"
        digest = options.get("sha256") or (file_digest(path) if path.is_file() else "")
        extra = {k: v for k, v in options.items() if k not in ("label", "source", "sha256")}
        return cls(label=label, source=absolute, sha256=str(digest), **extra)

    @property
    def method_name(self) -> str:
        return self.label

    @property
    def train_eps(self) -> float | None:
        return self.eps

    def function(self) -> Callable[..., Any]:
        parts = split_function_spec(self.source)
        assert parts is not None
        cache = _FUNCTIONS.get(self.source)
        if cache is None:
            cache = import_function(parts[0], parts[1], "a function (model, images, labels, context) -> loss")
            _FUNCTIONS[self.source] = cache
        return cache

    def prepare(self) -> None:
        self.function()

    def loss(self, ctx: StepContext) -> LossTerms:
        where = f"method {self.label} ({Path(self.source).name}) at epoch {ctx.epoch}, batch {ctx.step + 1}"
        context = UserContext(self.eps, ctx.epoch, ctx.step, ctx.generator, ctx.rand, ctx.randn, ctx.model)
        try:
            returned = self.function()(LogitsModel(ctx.scorer, ctx.model), ctx.pos, ctx.labels, context)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{where} raised {type(exc).__name__}: {' '.join(str(exc).split())[:160]}") from None
        loss, logits = (returned if isinstance(returned, tuple) and len(returned) == 2 else (returned, None))
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
            kind = type(loss).__name__ if not isinstance(loss, torch.Tensor) else f"tensor of shape {tuple(loss.shape)}"
            raise UserError(f"{where} returned a {kind}; return the batch's loss as a scalar float tensor")
        loss = loss.reshape(())
        value = float(loss.detach())
        if not math.isfinite(value):
            raise UserError(f"{where} returned a non-finite loss ({value}); the last good checkpoint stays")
        if not loss.requires_grad:
            raise UserError(f"{where} returned a loss that does not depend on the model's parameters; compute it "
                            "from model(images)")
        zero = loss.new_zeros(())
        logged = logits.detach() if isinstance(logits, torch.Tensor) and logits.shape[:1] == ctx.labels.shape else None
        return LossTerms(loss, loss.detach(), zero, zero, zero, logged)


_FUNCTIONS: dict[str, Callable[..., Any]] = {}
