"""The unsupervised critic's objective and its synthesis step, shared by WINN, the WGAN-GP critic's
sampling and textures.

Critic step (WINN paper, section 4.1; WGAN-GP): minimise
    mean f(neg) - mean f(pos) + lambda * mean_i (||grad f(x_hat_i)||_2 - 1)^2,
x_hat_i = a_i pos_i + (1 - a_i) neg_i, a_i ~ U[0, 1] per image.
Synthesis step: Adam on the images maximising mean f, clipping to [-1, 1] after every step, until
the batch's mean score reaches a threshold (or a step budget runs out)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from winn_robust import distributed
from winn_robust.distributed import World
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_HIGH, MODEL_LOW

Critic = Callable[[torch.Tensor], torch.Tensor]  # images (N, ...) -> scores (N,)


def critic_scores(model: nn.Module) -> Critic:
    """f(x) of a one-output network of the project's architectures: its single logit."""
    def f(x: torch.Tensor) -> torch.Tensor:
        return model(x).reshape(len(x), -1)[:, 0]
    return f


def wasserstein_term(f_pos: torch.Tensor, f_neg: torch.Tensor) -> torch.Tensor:
    """mean f(neg) - mean f(pos): minus the critic's estimate of the Wasserstein-1 distance."""
    return f_neg.mean() - f_pos.mean()


def gradient_penalty(f: Critic, pos: torch.Tensor, neg: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """mean over interpolates x_hat = a pos + (1 - a) neg of (||grad_x f(x_hat)||_2 - 1)^2,
    differentiable in the critic's parameters (create_graph)."""
    x_hat = (a * pos + (1 - a) * neg).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def interpolation_weights(n: int, like: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """a ~ U[0, 1], one per sample, shaped to broadcast over `like`'s sample dimensions."""
    return torch.rand(n, *([1] * (like.dim() - 1)), generator=rng, device=like.device, dtype=like.dtype)


@dataclass
class CriticLoss:
    loss: torch.Tensor
    wasserstein: torch.Tensor      # mean f(pos) - mean f(neg), the distance estimate
    penalty: torch.Tensor
    f_pos_mean: torch.Tensor


def critic_loss(f: Critic, pos: torch.Tensor, neg: torch.Tensor, a: torch.Tensor, gp_lambda: float) -> CriticLoss:
    """The critic step's loss on one batch (positives and negatives in one forward pass)."""
    scores = f(torch.cat([pos, neg]))
    f_pos, f_neg = scores[:len(pos)], scores[len(pos):]
    term = wasserstein_term(f_pos, f_neg)
    penalty = gradient_penalty(f, pos, neg, a)
    return CriticLoss(term + gp_lambda * penalty, -term.detach(), penalty.detach(), f_pos.detach().mean())


@dataclass(frozen=True)
class AscentSettings:
    """Synthesis by Adam on the images: learning rate, betas and the step budget of one batch."""
    lr: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    max_steps: int = 2000


@dataclass
class Ascent:
    images: torch.Tensor   # (N, ...) in [-1, 1]
    steps: int             # Adam steps taken
    final_mean: float      # the batch's mean f when it stopped


def ascend(f: Critic, start: torch.Tensor, threshold: float, settings: AscentSettings,
           modules: tuple[nn.Module, ...] = ()) -> Ascent:
    """One synthesis batch: Adam (a fresh optimizer) on the images maximising mean f, clipped to
    [-1, 1] after every step, stopping once mean f >= threshold (tested before each step, so a start
    already past the threshold is returned as it is) or after max_steps. `modules` are put in eval
    mode with frozen parameters meanwhile (input gradients only)."""
    x = start.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=settings.lr, betas=settings.betas)
    steps, mean = 0, float("nan")
    with frozen_eval(*modules):
        while True:
            score = f(x).mean()
            mean = float(score.detach())
            if mean >= threshold or steps >= settings.max_steps or mean != mean:
                break
            optimizer.zero_grad(set_to_none=True)
            (-score).backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(MODEL_LOW, MODEL_HIGH)
            steps += 1
    return Ascent(x.detach(), steps, mean)


def synthesize_from(f: Critic, critic: nn.Module, starts: torch.Tensor, count: int,
                    threshold_range: tuple[float, float], settings: AscentSettings, batch_size: int,
                    rng: torch.Generator, progress: bool = False, desc: str = "synthesize",
                    world: World | None = None) -> tuple[torch.Tensor, list[int]]:
    """`count` images synthesized from starts drawn at random (without replacement where there are
    enough), in batches of batch_size, each batch with its own threshold ~ U[threshold_range].

    With a `world` of several ranks each rank ascends a contiguous share of the batches (a batch
    stays whole, so its stop rule is unchanged) from the starts and thresholds every rank drew for
    all batches, and the shares are all-gathered in batch order: every rank returns the images
    and step counts one process returns (the ascent draws no randoms, so drawing every threshold
    first leaves the stream as it was)."""
    from tqdm.auto import tqdm

    device = starts.device
    if count <= len(starts):
        index = torch.randperm(len(starts), generator=rng, device=device)[:count]
    else:
        index = torch.randint(0, len(starts), (count,), generator=rng, device=device)
    low, high = threshold_range
    firsts = range(0, count, batch_size)
    thresholds = [low + (high - low) * float(torch.rand((), generator=rng, device=device)) for _ in firsts]
    parallel = world is not None and world.distributed
    mine = range(*distributed.shard(len(firsts), world)) if parallel else range(len(firsts))
    out, steps = [], []
    diverged: int | None = None  # the steps after which a batch's mean score became NaN
    for b in tqdm(mine, desc=desc, leave=False, disable=not progress, unit="batch"):
        rows = index[firsts[b]:firsts[b] + batch_size]
        result = ascend(f, starts[rows], thresholds[b], settings, modules=(critic,))
        if result.final_mean != result.final_mean:
            diverged = result.steps
            break
        out.append(result.images)
        steps.append(result.steps)
    if parallel:  # every rank learns of a divergence on any rank, and stops with it
        diverged = next((d for d in distributed.all_gather_object(diverged) if d is not None), None)
    if diverged is not None:
        from winn_robust.training.divergence import TrainingDiverged

        raise TrainingDiverged(f"synthesis diverged: the critic's mean score became NaN after {diverged} steps; "
                               "lower `critic_lr` or raise `gp_lambda`", mentions=("critic_lr", "gp_lambda"))
    images = torch.cat(out) if out else starts.new_zeros((0, *starts.shape[1:]))
    if parallel:
        images = distributed.all_gather_tensor(images)
        steps = distributed.all_gather_tensor(torch.tensor(steps, dtype=torch.long, device=device)).tolist()
    return images, steps
