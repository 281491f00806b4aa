"""The conventions every number in winn-robust rests on, in one place (docs/conventions.md).

- Pixels: models see images in [-1, 1] (x = 2u - 1 for pixels u in [0, 1]).
- Epsilon: users give eps in [0, 1] pixel units, the unit of every attack library and paper;
  a budget of eps is a step of ``MODEL_SCALE * eps`` (= 2 eps) in model space.
- Threat model (norm): ``linf`` (default) or ``l2``. An L2 eps is the L2 norm of the
  perturbation of the [0, 1] image; u -> 2u - 1 scales every norm by 2, so in model space it is
  2 eps as well: one rule, ``eps_to_model``, for both norms.

Everything else imports these names instead of re-deriving ``2 * eps`` or the bounds."""
from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

import torch

from winn_robust.errors import SettingError, UserError

MODEL_LOW, MODEL_HIGH = -1.0, 1.0          # the pixel box the models see
MODEL_BOUNDS = (MODEL_LOW, MODEL_HIGH)
MODEL_SCALE = MODEL_HIGH - MODEL_LOW       # [0, 1] pixel units -> model units
PIXEL_UNITS = "[0, 1] pixel units"
EPS_UNIT = f"{PIXEL_UNITS} (model inputs in [-1, 1]; model-space step 2*eps)"
PAPER_MNIST_EPS = 0.125
NORMS = ("linf", "l2")
DEFAULT_NORM = "linf"
NORM_LABELS = {"linf": "L-inf", "l2": "L2"}
L2_EPS_MAX = 1000.0      # far beyond any image diagonal sqrt(C*H*W) (CIFAR: 55.4); larger is a unit mistake


def eps_to_model(eps: float) -> float:
    """A budget in pixel units (L-inf or L2 norm) as a distance in model space."""
    return MODEL_SCALE * eps


def check_norm(norm: str) -> str:
    """'linf' or 'l2' (case and an 'inf'/'Linf'/'L2' spelling forgiven); anything else is one UserError."""
    key = str(norm).strip().lower().replace("-", "")
    key = {"inf": "linf", "linfinity": "linf", "2": "l2"}.get(key, key)
    if key not in NORMS:
        raise SettingError("norm", f"{norm!r} is not a threat model; choose linf (the default) or l2")
    return key


def eps_unit(norm: str = DEFAULT_NORM) -> str:
    """The unit text every report states beside eps; L-inf keeps the historical `EPS_UNIT`."""
    if check_norm(norm) == "linf":
        return EPS_UNIT
    return f"L2 norm of the perturbation, {PIXEL_UNITS} (model inputs in [-1, 1]; model-space L2 norm 2*eps)"


def image_diagonal(shape: Iterable[int]) -> float:
    """The largest L2 distance between two [0, 1] images of this (C, H, W) shape: sqrt(C*H*W),
    the L2 budget of an unbounded attack (any image can be replaced by any other)."""
    size = 1
    for dim in shape:
        size *= int(dim)
    return float(size) ** 0.5


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> [-1, 1] model inputs (x = 2u - 1); a new tensor."""
    return pixels * MODEL_SCALE + MODEL_LOW


def to_pixel_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model inputs -> [0, 1] pixels (u = (x + 1) / 2); a new tensor."""
    return (images - MODEL_LOW) / MODEL_SCALE


def check_eps(eps: float, norm: str = DEFAULT_NORM) -> float:
    """eps is in [0, 1] pixel units; anything else is almost surely a unit mistake. An L2 eps
    is a norm over the whole image, so it may exceed 1 (up to the diagonal sqrt(C*H*W))."""
    eps = float(eps)
    if norm != DEFAULT_NORM and check_norm(norm) == "l2":
        if not 0.0 <= eps <= L2_EPS_MAX:
            raise UserError(f"L2 eps {eps:g} must be in [0, {L2_EPS_MAX:g}]: an L2 eps is the L2 norm of the "
                            f"perturbation of the [0, 1] image (common values: MNIST 1.5-2, CIFAR-10 0.5)")
        return eps
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


def parse_eps(values: Iterable[str | float], norm: str = DEFAULT_NORM) -> list[float]:
    """eps values as the user typed them (repeated and/or comma-separated; decimals or fractions
    as papers write them, 8/255, 1/32), checked for the norm, de-duplicated in the user's order.
    At least one is required."""
    eps: list[float] = []
    for value in values:
        for part in str(value).split(","):
            if not part.strip():
                continue
            try:
                value_ = float(Fraction(part.strip())) if "/" in part else float(part)
            except (ValueError, ZeroDivisionError):
                raise SettingError("eps", f"{part!r} is not a number; give eps in [0, 1] pixel units as a decimal or a "
                                f"fraction, e.g. --eps {PAPER_MNIST_EPS} or --eps 1/8 or --eps 8/255") from None
            eps.append(check_eps(value_, norm))
    if not eps:
        raise SettingError("eps", f"needs at least one value, in [0, 1] pixel units (e.g. {PAPER_MNIST_EPS})")
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
