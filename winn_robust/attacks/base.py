"""One typed interface for every attack: an object built (and validated) once from its name and
options, then run batch by batch on [-1, 1] models.

Threat model (docs/conventions.md): L-inf or L2 (the attack's `norm`, one of the `norms` its class
supports), eps in [0, 1] pixel units, the model in eval mode, input gradients only; every attack
returns images within eps (in that norm) of the input and inside [-1, 1],
and leaves its input tensor untouched. Random attacks draw only from the `torch.Generator`
they are given (the harness derives it from the evaluation seed, the attack, eps and batch, not
the model's name), so a seeded evaluation is reproducible, resumable and shardable."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from winn_robust.errors import UserError
from winn_robust.units import DEFAULT_NORM, NORM_LABELS, check_norm


@dataclass
class AttackOutput:
    """adversarial: the images (same shape as the input); clean_logits: the model's logits on the
    clean batch when the attack computed them anyway (saves the harness a forward pass);
    loss_trace_sum / loss_trace_count: per step, the summed running-best loss over the images the
    attack did not fool and their count (for the "incomplete optimisation" indicator)."""
    adversarial: torch.Tensor
    clean_logits: torch.Tensor | None = None
    loss_trace_sum: torch.Tensor | None = None
    loss_trace_count: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Attack(ABC):
    """Subclasses are frozen dataclasses: their fields are the attack's options (recorded in every
    report), `seed` included. Class attributes describe the attack for the failure indicators,
    which group attacks by them (evaluation/indicators.py), never by name."""

    seed: int = 0
    norm: str = DEFAULT_NORM

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = (DEFAULT_NORM,)  # the threat models this attack implements
    summary: ClassVar[str] = ""
    gradient_based: ClassVar[bool] = True
    gradient_free: ClassVar[bool] = False  # queries only the model's outputs (a black-box search, no gradient)
    iterative: ClassVar[bool] = False
    randomized: ClassVar[bool] = False  # uses random numbers (a seeded generator makes it repeatable)
    returns_clean_when_failed: ClassVar[bool] = False  # images it does not fool come back exactly unchanged
    minimum_norm: ClassVar[bool] = False  # has `minimum_norms(...)`: each image's smallest adversarial norm

    def __post_init__(self) -> None:
        norm = check_norm(self.norm)
        if norm not in self.norms:
            raise UserError(f"attack {self.name} has no {NORM_LABELS[norm]} version (it supports "
                            f"{', '.join(NORM_LABELS[n] for n in self.norms)}); at --norm {norm} choose another attack")
        object.__setattr__(self, "norm", norm)
        self.validate()

    def validate(self) -> None:
        """Raise UserError for options out of the range their `option(...)` declares (called once,
        when built), naming every declared rule and value in one line; attacks with other rules
        override it."""
        rules: list[str] = []
        values: list[str] = []
        ok = True
        for f in fields(self):
            if "range" in f.metadata:
                value = getattr(self, f.name)
                rule, holds = _check_range(f.name, value, *f.metadata["range"])
                rules.append(rule)
                values.append(str(value))
                ok = ok and holds
        if not ok:
            wording = rules[0] if len(rules) == 1 else f"{', '.join(rules[:-1])} and {rules[-1]}"
            raise UserError(f"{self.name} needs {wording}, got {', '.join(values)}")

    def settings(self) -> dict[str, Any]:
        """Every option, `seed` included; `norm` only when it is not the default L-inf, so L-inf
        reports read exactly as they did before L2 existed."""
        return {"attack": self.name, **{f.name: getattr(self, f.name) for f in fields(self)
                                        if f.name != "norm" or self.norm != DEFAULT_NORM}}

    @property
    def deterministic(self) -> bool:
        """Same input, same output, whatever the batch it sits in."""
        return not self.randomized

    @abstractmethod
    def run(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
            generator: torch.Generator) -> AttackOutput:
        """Attack `model` (eval mode, frozen, [-1, 1] inputs) on one batch at budget `eps`."""

    def minimum_norms(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        """Minimum-norm attacks: each image's smallest adversarial perturbation found, in pixel
        units of the attack's norm (0 = already wrong, inf = none found)."""
        raise UserError(f"attack {self.name} is not a minimum-norm attack; a curve needs one such as foolbox-fmn")

    def __call__(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Adversarial images only; a default generator seeded with `self.seed`."""
        if generator is None:
            generator = torch.Generator(device=images.device).manual_seed(self.seed)
        return self.run(model, images, labels, eps, generator).adversarial


def option(default: Any, *, at_least: float | None = None, above: float | None = None,
           below: float | None = None) -> Any:
    """An attack option with its valid range declared beside it, so `Attack.validate` checks it
    (and words the error) the same way for every attack."""
    return field(default=default, metadata={"range": (at_least, above, below)})


def _check_range(name: str, value: float, at_least: float | None, above: float | None,
                 below: float | None) -> tuple[str, bool]:
    """The rule as the error states it ("steps >= 1", "0 < gamma < 1") and whether `value` keeps
    it (NaN never does)."""
    if at_least is not None:
        return f"{name} >= {at_least:g}", value >= at_least
    assert above is not None, "an option's range needs at_least or above"
    if below is None:
        return f"{name} > {above:g}", value > above
    return f"{above:g} < {name} < {below:g}", above < value < below


def draw_seed(generator: torch.Generator) -> int:
    """A seed for a library that draws from torch's global generators, taken from the attack's
    own generator so the run stays a function of the evaluation seed."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())


@contextmanager
def forked_global_rng(device: torch.device, seed: int | None = None) -> Iterator[None]:
    """Torch's global generators (CPU, and `device`'s when it is a GPU) saved, seeded with `seed`
    when one is given, and restored afterwards: a library that draws from them or seeds them
    itself (foolbox, AutoAttack) leaves the caller's random state alone."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def input_gradient(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d loss / d x, where a model that cut its output off from its input (x.detach(), a numpy
    round trip: a classic gradient-masking pattern) has gradient exactly zero, as autograd would
    report it had the graph existed, instead of an error: the zero-gradient indicator then WARNs."""
    if not loss.requires_grad:
        return torch.zeros_like(x)
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def coerce_options(cls: type[Attack], options: Mapping[str, str | int | float | bool]) -> dict[str, Any]:
    """Option strings from the command line converted to the types of the attack's fields;
    an unknown option or a value of the wrong type is one UserError naming the choices."""
    known = {f.name: f for f in fields(cls) if f.name not in ("seed", "norm")}
    out: dict[str, Any] = {}
    for key, raw in options.items():
        if key not in known:
            choices = ", ".join(sorted(known)) or "none"
            raise UserError(f"unknown option {key!r} for attack {cls.name}; its options are: {choices}")
        kind = type(getattr(cls, key, None)) if hasattr(cls, key) else str
        try:
            if kind is bool:
                value: Any = raw if isinstance(raw, bool) else {"true": True, "1": True, "yes": True, "false": False,
                                                                "0": False, "no": False}[str(raw).lower()]
            elif kind is int:
                value = int(raw)
            elif kind is float:
                value = float(raw)
                if not math.isfinite(value):
                    raise UserError(f"attack option {cls.name}.{key}={raw!r} must be a finite number (not nan or inf)")
            else:
                value = raw
        except (KeyError, ValueError):
            raise UserError(f"attack option {cls.name}.{key}={raw!r} is not a valid {kind.__name__}") from None
        out[key] = value
    return out
