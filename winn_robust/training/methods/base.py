"""One typed interface for every training method, as `Attack` is for attacks: a frozen dataclass
whose fields are the method's own settings (recorded in every checkpoint), validated once when
built, whose `loss` turns one batch into the loss the trainer minimises. The trainer calls
`loss` and never special-cases a method's name; what a method needs from the trainer
(pseudo-negatives, interpolation coefficients, a training eps) it declares in class attributes."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from winn_robust.errors import SettingError
from winn_robust.models.base import Classifier
from winn_robust.training.losses import LossTerms, Scorer

TERM_NAMES = ("total loss", "cross-entropy", "introspective term", "gradient penalty")


@dataclass
class StepContext:
    """What one classification step gives the method.

    scorer: what the training pass calls (the model, or its DistributedDataParallel wrapper under
    torchrun): `scorer.score(x)` gives (logits, f). model: the bare model, for inner attacks (in
    eval mode with frozen parameters, outside the data-parallel wrapper). pos / labels: this
    rank's positives ([-1, 1]) and labels; neg / coefficients: same-label pseudo-negatives and
    interpolation coefficients for the methods that declare them. rand / randn: U[0, 1) / N(0, 1)
    draws of shape (n, *shape) for the WHOLE global batch from the run's seeded stream, this
    rank's rows returned, so several ranks draw exactly what one process draws.
    epoch (from 1), step (from 0) and steps (per epoch): for schedules."""
    scorer: Scorer
    model: Classifier
    pos: torch.Tensor
    labels: torch.Tensor
    neg: torch.Tensor | None
    coefficients: torch.Tensor | None
    rand: Callable[[tuple[int, ...]], torch.Tensor]
    randn: Callable[[tuple[int, ...]], torch.Tensor]
    generator: torch.Generator
    epoch: int
    step: int
    steps: int

    @property
    def progress(self) -> float:
        """Epochs done so far, counting this batch (1.0 at the end of epoch 1)."""
        return self.epoch - 1 + (self.step + 1) / max(1, self.steps)


@dataclass(frozen=True)
class TrainingMethod(ABC):
    """Subclasses are frozen dataclasses; their fields are the method's settings."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    uses_negatives: ClassVar[bool] = False      # pseudo-negative pool and synthesis pass (ICN, WINN)
    uses_interpolation: ClassVar[bool] = False  # interpolation coefficients drawn per batch (WINN)
    term_names: ClassVar[tuple[str, str, str, str]] = TERM_NAMES
    # metrics.csv columns of LossTerms' introspective and penalty terms ("" = not logged)
    term_columns: ClassVar[tuple[str, str]] = ("introspective", "gradient_penalty")

    def __post_init__(self) -> None:
        self.validate()
        for f in fields(self):
            if "check" in f.metadata:
                f.metadata["check"](f.name, getattr(self, f.name))

    def validate(self) -> None:  # noqa: B027  (optional hook)
        """Raise SettingError for settings out of range (called once, when built, before the
        range checks each `setting(...)` declares)."""

    @property
    def method_name(self) -> str:
        """How runs, checkpoints and reports name the method."""
        return self.name

    @property
    def train_eps(self) -> float | None:
        """The training budget in [0, 1] pixel units, for methods that have one."""
        return None

    @property
    def threat_norm(self) -> str:
        """The threat model of the training budget (and of PGD model selection): linf or l2."""
        return "linf"

    def resolved_for(self, dataset: str) -> TrainingMethod:
        """The method with settings left to the dataset's default filled in (most methods have none)."""
        return self

    def settings(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def prepare(self) -> None:  # noqa: B027  (optional hook)
        """Called once before the first batch (a user method imports its file here)."""

    @abstractmethod
    def loss(self, ctx: StepContext) -> LossTerms:
        """The loss of one batch, with its logged terms."""


def setting(default: Any, check: Callable[[str, Any], None]) -> Any:
    """A method setting with its range check (`check_positive`, `check_non_negative`) declared
    beside it: every method checks its settings, and words the error, the same way."""
    return field(default=default, metadata={"check": check})


def check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise SettingError(name, f"must be positive, got {value}", method_setting=True)


def check_non_negative(name: str, value: float) -> None:
    if not value >= 0:  # NaN fails too
        raise SettingError(name, f"must be >= 0, got {value}", method_setting=True)


def coerce_settings(cls: type[TrainingMethod], values: Mapping[str, Any]) -> dict[str, Any]:
    """Settings (strings from a command line, or JSON values) converted to the types of the
    method's fields; an unknown one is a SettingError naming the method's settings."""
    known = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in known:
            choices = ", ".join(sorted(known)) or "none"
            raise SettingError(key, f"is not a setting of method {cls.name} (its settings: {choices})", method_setting=True)
        kind = {"float": float, "int": int, "bool": bool, "str": str}.get(str(known[key].type).split(" ")[0])
        try:
            if raw is None or kind is None or isinstance(raw, kind):
                value: Any = raw
            elif kind is bool:
                value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[str(raw).lower()]
            elif kind is float and isinstance(raw, str):
                from winn_robust.units import parse_fraction

                value = parse_fraction(raw)
            else:
                value = kind(raw)
        except (KeyError, ValueError, TypeError):
            hint = " (give true or false)" if kind is bool else ""
            raise SettingError(key, f"{raw!r} is not a valid {kind.__name__ if kind else 'value'}{hint}",
                               method_setting=True) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingError(key, f"must be a finite number, got {value}", method_setting=True)
        out[key] = value
    return out
