"""The conventions every number in winn-robust rests on, in one place (docs/conventions.md).

- Pixels: models see images in [-1, 1] (x = 2u - 1 for pixels u in [0, 1]).
- Epsilon: users give eps in [0, 1] pixel units, the unit of every attack library and paper;
  a budget of eps is a step of ``MODEL_SCALE * eps`` (= 2 eps) in model space.

Everything else imports these names instead of re-deriving ``2 * eps`` or the bounds."""
from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import torch

from winn_robust.errors import UserError

MODEL_LOW, MODEL_HIGH = -1.0, 1.0          # the pixel box the models see
MODEL_BOUNDS = (MODEL_LOW, MODEL_HIGH)
MODEL_SCALE = MODEL_HIGH - MODEL_LOW       # [0, 1] pixel units -> model units
PIXEL_UNITS = "[0, 1] pixel units"
EPS_UNIT = f"{PIXEL_UNITS} (model inputs in [-1, 1]; model-space step 2*eps)"
PAPER_MNIST_EPS = 0.125


def eps_to_model(eps: float) -> float:
    """An L-inf budget in pixel units as a distance in model space."""
    return MODEL_SCALE * eps


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> [-1, 1] model inputs (x = 2u - 1); a new tensor."""
    return pixels * MODEL_SCALE + MODEL_LOW


def to_pixel_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model inputs -> [0, 1] pixels (u = (x + 1) / 2); a new tensor."""
    return (images - MODEL_LOW) / MODEL_SCALE


def check_eps(eps: float) -> float:
    """eps is in [0, 1] pixel units; anything else is almost surely a unit mistake."""
    eps = float(eps)
    if not 0.0 <= eps <= 1.0:
        hint = f"; did you mean {eps:g}/255 = {eps / 255:.4g}?" if 1.0 < eps <= 255.0 and eps.is_integer() else ""
        raise UserError(f"eps {eps:g} is outside [0, 1]; eps is in [0, 1] pixel units, as a decimal or a fraction "
                        f"(the paper's MNIST value is {PAPER_MNIST_EPS} = 1/8; CIFAR's usual 8/255 = 0.0314){hint}")
    return eps


def parse_fraction(text: str) -> float:
    """A number as papers write it: a decimal or a fraction such as 8/255 (ValueError otherwise)."""
    try:
        return float(Fraction(text.strip())) if "/" in text else float(text)
    except ZeroDivisionError:
        raise ValueError(f"{text!r} divides by zero") from None


def parse_eps(values: Iterable[str | float]) -> list[float]:
    """eps values as the user typed them (repeated and/or comma-separated; decimals or fractions
    as papers write them, 8/255, 1/32), checked, de-duplicated in the user's order. At least one
    is required."""
    eps: list[float] = []
    for value in values:
        for part in str(value).split(","):
            if not part.strip():
                continue
            try:
                value_ = float(Fraction(part.strip())) if "/" in part else float(part)
            except (ValueError, ZeroDivisionError):
                raise UserError(f"--eps {part!r} is not a number; give eps in [0, 1] pixel units as a decimal or a "
                                f"fraction, e.g. --eps {PAPER_MNIST_EPS} or --eps 1/8 or --eps 8/255") from None
            eps.append(check_eps(value_))
    if not eps:
        raise UserError(f"give at least one --eps, in [0, 1] pixel units (e.g. --eps {PAPER_MNIST_EPS})")
    return sorted(set(eps), key=eps.index)



def eps_text(eps: float) -> str:
    """eps for people: '0.125' when its decimal is short, else the fraction papers write and
    four decimals, '8/255 (0.0314)'. Files keep the exact float (results.json, CSV columns)."""
    eps = float(eps)
    short = f"{eps:g}"
    if float(short) == eps and len(short) <= 7:  # 0.125, 0.03125, 0.005: exact as written
        return short
    fraction = Fraction(eps).limit_denominator(1024)
    if fraction.denominator > 1 and abs(float(fraction) - eps) <= 1e-12:
        return f"{fraction.numerator}/{fraction.denominator} ({eps:.4f})" if eps >= 1e-3 else \
            f"{fraction.numerator}/{fraction.denominator} ({eps:.3g})"
    return f"{eps:.4g}"


def eps_list_text(values: Iterable[float]) -> str:
    return ", ".join(eps_text(e) for e in values)


def format_eps_list(values: Iterable[float]) -> str:
    """eps values as a comma list that parses back exactly (`parse_eps`)."""
    return ",".join(repr(float(e)) for e in values)
