"""Every training hyper-parameter in one place; defaults are the WINN paper's (DESIGN.md)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from winn_robust.errors import UserError

METHODS = ("baseline", "icn", "winn")


@dataclass
class TrainConfig:
    method: str = "winn"
    arch: str = "vanilla"
    data: str = "mnist"
    epochs: int = 200
    batch_size: int = 100
    lr: float = 1e-3
    beta1: float = 0.0
    beta2: float = 0.9
    alpha: float = 0.01            # weight of the introspective term
    gp_lambda: float = 10.0        # weight of the gradient penalty (WINN)
    negatives_per_class: int = 100         # synthesized and appended each epoch
    initial_negatives_per_class: int = 100  # drawn from the frozen random generator
    synthesis_lr: float = 0.02
    synthesis_beta1: float = 0.9
    synthesis_beta2: float = 0.9
    synthesis_max_steps: int = 2000
    synthesis_tolerance: float = 1e-3
    synthesis_ce_weight: float = 0.5
    val_size: int = 5000
    train_limit: int | None = None
    seed: int = 0
    amp: bool = False

    @property
    def introspective(self) -> bool:
        return self.method in ("icn", "winn")

    def validate(self) -> "TrainConfig":
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        from winn_robust.models import ARCHITECTURES
        if self.arch not in ARCHITECTURES:
            raise UserError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        positive = ("epochs", "batch_size", "lr", "negatives_per_class", "initial_negatives_per_class",
                    "synthesis_lr", "synthesis_max_steps", "val_size")
        for name in positive:
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "synthesis_beta1", "synthesis_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        for name in ("alpha", "gp_lambda", "synthesis_tolerance", "synthesis_ce_weight"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.train_limit is not None and self.train_limit <= 0:
            raise UserError(f"--train-limit must be positive, got {self.train_limit}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
