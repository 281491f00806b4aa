"""What an evaluation is asked to do, validated once where it is built.

The harness and the attacks trust an `EvalSpec`: eps values are in [0, 1] pixel units and
de-duplicated, the attack exists, the batch size and limit are positive."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from winn_robust.attacks import get_attack
from winn_robust.errors import UserError
from winn_robust.units import check_eps


@dataclass(frozen=True)
class EvalSpec:
    eps: tuple[float, ...]
    attack: str = "fgsm"
    batch_size: int = 500
    limit: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.eps, (int, float)):
            raise UserError("EvalSpec.eps is a sequence of eps values, e.g. eps=(0.125,)")
        eps = tuple(dict.fromkeys(check_eps(e) for e in self.eps))  # de-duplicated, the user's order
        if not eps:
            raise UserError("give at least one eps")
        object.__setattr__(self, "eps", eps)
        get_attack(self.attack)
        if int(self.batch_size) < 1:
            raise UserError(f"--batch-size must be positive, got {self.batch_size}")
        if self.limit is not None and int(self.limit) < 1:
            raise UserError(f"--limit must be positive, got {self.limit}")

    @classmethod
    def of(cls, eps: Iterable[float], **options: object) -> EvalSpec:
        return cls(eps=tuple(eps), **options)  # type: ignore[arg-type]
