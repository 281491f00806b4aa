"""Cross-evaluation: attack every model, evaluate every adversarial batch on every model.

Cost per image and eps, for K models: K attacks (for FGSM one forward + input-backward each,
which also yields the clean predictions) and K^2 no-grad forwards (each target sees all K
sources' adversarial batches in one concatenated forward). Parameters are frozen while
attacking so autograd never builds weight gradients; predictions stay on the device until
the end so a GPU run has no per-batch host sync."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from winn_robust.attacks import get_attack
from winn_robust.attacks.fgsm import fgsm_with_logits
from winn_robust.errors import UserError
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.models.base import frozen_eval


@dataclass
class CrossEvalResult:
    """Predictions only (numpy int64, length N), enough to recompute every metric.

    adv_preds[eps][source][target] = target's prediction on source's adversarial example.
    unchanged_images / unchanged_pixels[eps][source]: how many images (pixels) the attack left
    exactly unchanged. For FGSM at eps > 0 an unchanged image means an all-zero input gradient
    (gradient masking / saturated softmax); unchanged pixels bound the zero-gradient pixels
    from above (a pixel already at the bound and pushed outward also stays)."""

    labels: np.ndarray
    clean_preds: dict[str, np.ndarray]
    adv_preds: dict[float, dict[str, dict[str, np.ndarray]]]
    attack: str = "fgsm"
    unchanged_images: dict[float, dict[str, int]] = field(default_factory=dict)
    unchanged_pixels: dict[float, dict[str, int]] = field(default_factory=dict)

    @property
    def model_names(self) -> list[str]:
        return list(self.clean_preds)

    @property
    def eps_values(self) -> list[float]:
        return list(self.adv_preds)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


def _check_inputs(models: Mapping[str, torch.nn.Module], images: torch.Tensor, labels: torch.Tensor) -> None:
    if not models:
        raise UserError("cross-evaluation needs at least one model")
    if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise UserError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match: need (N, C, H, W) and (N,)")


def cross_evaluate(models: Mapping[str, torch.nn.Module], images: torch.Tensor, labels: torch.Tensor,
                   spec: EvalSpec, device: torch.device | str = "cpu", progress: bool = True) -> CrossEvalResult:
    """Craft `attack` on every model at every eps and record every model's prediction on
    every adversarial example (the N x N transfer matrix), plus clean predictions.

    Models are moved to `device` (in place, like `Module.to`) and run in eval mode; their
    training flags and requires_grad flags are restored afterwards. `spec` was validated when
    built (eps in [0, 1] pixel units); `spec.limit` is applied by the caller that loads the data."""
    _check_inputs(models, images, labels)
    eps_values, attack, batch_size = list(spec.eps), spec.attack, spec.batch_size
    attack_fn = get_attack(attack)
    fast_fgsm = attack == "fgsm"
    device = torch.device(device)
    names = list(models)
    for model in models.values():
        model.to(device)
    n = images.shape[0]
    starts = range(0, n, batch_size)

    clean: dict[str, list[torch.Tensor]] = {m: [] for m in names}
    adv: dict[float, dict[str, dict[str, list[torch.Tensor]]]] = {
        e: {s: {t: [] for t in names} for s in names} for e in eps_values}
    zero = torch.zeros((), dtype=torch.int64, device=device)
    same_images = {e: {s: zero.clone() for s in names} for e in eps_values}
    same_pixels = {e: {s: zero.clone() for s in names} for e in eps_values}

    bar = tqdm(total=len(eps_values) * len(starts), desc=f"{attack} x {len(names)} models", unit="batch",
               disable=not progress, leave=False)
    with frozen_eval(*models.values()), bar:
        for i, eps in enumerate(eps_values):
            bar.set_postfix(eps=eps)
            for start in starts:
                x = images[start:start + batch_size].to(device, non_blocking=True)
                y = labels[start:start + batch_size].to(device, torch.int64, non_blocking=True)
                crafted = []
                for s in names:
                    if fast_fgsm:
                        x_adv, logits = fgsm_with_logits(models[s], x, y, eps)
                        if i == 0:
                            clean[s].append(logits.argmax(1))
                    else:
                        if i == 0:
                            with torch.inference_mode():
                                clean[s].append(models[s](x).argmax(1))
                        x_adv = attack_fn(models[s], x, y, eps).detach()
                    if x_adv.shape != x.shape:
                        raise RuntimeError(f"attack {attack!r} returned shape {tuple(x_adv.shape)} for input {tuple(x.shape)}")
                    unchanged = (x_adv == x).flatten(1)
                    same_pixels[eps][s] += unchanged.sum()
                    same_images[eps][s] += unchanged.all(1).sum()
                    crafted.append(x_adv)
                batch = torch.cat(crafted)
                with torch.inference_mode():
                    for t in names:
                        for s, preds in zip(names, models[t](batch).argmax(1).split(x.shape[0])):
                            adv[eps][s][t].append(preds)
                bar.update(1)

    def to_numpy(parts: list[torch.Tensor]) -> np.ndarray:
        return torch.cat(parts).cpu().numpy().astype(np.int64) if parts else np.zeros(0, np.int64)

    return CrossEvalResult(
        labels=labels.detach().cpu().numpy().astype(np.int64),
        clean_preds={m: to_numpy(clean[m]) for m in names},
        adv_preds={e: {s: {t: to_numpy(adv[e][s][t]) for t in names} for s in names} for e in eps_values},
        attack=attack,
        unchanged_images={e: {s: int(v.item()) for s, v in row.items()} for e, row in same_images.items()},
        unchanged_pixels={e: {s: int(v.item()) for s, v in row.items()} for e, row in same_pixels.items()})
