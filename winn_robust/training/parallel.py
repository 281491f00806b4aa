"""Data parallelism for the trainer: the model under DistributedDataParallel, and a rank's slice
of a global batch.

Faithfulness rests on one rule: every rank keeps the same random stream and draws the randoms of
the WHOLE global batch exactly as one process does (permutation, pool indices, interpolation
coefficients), then keeps its slice. The global batch therefore holds the same positives, the
same negatives and the same coefficients as a single-process run with the same seed.

Gradients: DDP averages the ranks' gradients. Each rank's loss is a mean over its slice, so with
equal slices the average of the ranks' means is the global mean. A short last batch may split
unevenly (or leave a rank nothing): the rank's loss is then scaled by n_rank * world / n_batch,
which makes DDP's average the global mean again; an empty rank runs a stand-in row with scale 0,
because every rank must take part in every DDP step."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from winn_robust.distributed import World, ddp_device_ids
from winn_robust.models.base import Classifier


class ScoreModule(nn.Module):
    """`forward` is the classifier's `score` (logits, f). DDP hooks only run through `forward`,
    and every loss needs logits and f from one pass, so this is the module DDP wraps.

    The baseline never trains the critic (its f is only logged): `detach_critic` returns f
    detached so DDP, with find_unused_parameters, treats the critic as unused and leaves its
    gradient None, as in one process, instead of waiting for a gradient that never comes."""

    def __init__(self, model: Classifier, detach_critic: bool = False) -> None:
        super().__init__()
        self.model = model
        self.detach_critic = detach_critic

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, f = self.model.score(x)
        return logits, (f.detach() if self.detach_critic else f)


class DataParallelScorer:
    """The model under DistributedDataParallel, with the `score` interface the losses call.

    WINN's gradient penalty differentiates f with respect to the interpolates with
    create_graph=True, then the loss is backpropagated once: a double backward. DDP supports it
    here because the inner autograd.grad asks for input gradients only (it never reaches the
    parameters' AccumulateGrad hooks), and the single loss.backward() then delivers each
    parameter's gradient once, which DDP averages; tests/test_distributed.py checks the weights
    against one process."""

    def __init__(self, model: Classifier, device: torch.device, detach_critic: bool) -> None:
        # The critic's weight is (1, classes): its double-backward gradient comes with strides
        # (1, 1) instead of (classes, 1). Same memory layout for a single row, so DDP's warning
        # about mismatched bucket strides is harmless here.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        self.ddp = DistributedDataParallel(ScoreModule(model, detach_critic), device_ids=ddp_device_ids(device),
                                           find_unused_parameters=detach_critic)

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ddp(x)


@dataclass(frozen=True)
class RankSlice:
    """This rank's rows [lo, hi) of a global batch of n rows, as the trainer uses them.

    rows: the rows to compute on (a stand-in row 0 when the rank's share is empty);
    real: how many of them count (0 for the stand-in);
    loss_scale: multiplies the rank's mean loss so DDP's average is the global mean (1.0 for
    equal slices); share: the rank's weight n_rank / n in a global mean of per-rank means."""

    rows: slice
    real: int
    loss_scale: float
    share: float

    @classmethod
    def of(cls, n: int, here: World) -> RankSlice:
        if not here.distributed:
            return cls(slice(0, n), n, 1.0, 1.0)
        lo, hi = here.rank * n // here.world_size, (here.rank + 1) * n // here.world_size
        if hi == lo:
            return cls(slice(0, 1), 0, 0.0, 0.0)
        return cls(slice(lo, hi), hi - lo, (hi - lo) * here.world_size / n, (hi - lo) / n)
