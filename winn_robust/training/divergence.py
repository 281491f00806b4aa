"""Stopping a run that blew up, with a message that says where: the epoch, the step (of the
classification pass or of synthesis) and the term that went non-finite or exploded."""
from __future__ import annotations

import torch

from winn_robust.errors import UserError

LOSS_LIMIT = 1e8
ADVICE = "the last good checkpoint stays; try a lower --lr or --alpha"


class TrainingDiverged(UserError):
    """A NaN/Inf or exploding loss or synthesis: the message names epoch, step and term.

    Under torchrun every rank raises it alike (the trainer checks loss terms reduced across ranks
    and gathers synthesis verdicts), so rank 0 alone reports it (distributed.report_line)."""

    agreed = True


class SynthesisDiverged(TrainingDiverged):
    """Synthesis produced a non-finite critic score; the trainer adds the epoch."""

    def __init__(self, step: int, classes: list[int]) -> None:
        self.step, self.classes = step, classes
        super().__init__(f"synthesis step {step}: mean critic score f of the images of class(es) "
                         f"{', '.join(map(str, classes))} = nan/inf")


def check_finite(terms: list[torch.Tensor], names: tuple[str, ...], first_step: int, epoch: int) -> None:
    """One host sync per call over a block of per-step loss terms; names the first bad step and term."""
    if not terms:
        return
    block = torch.stack(terms)
    bad = ~torch.isfinite(block) | (block.abs() > LOSS_LIMIT)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        value = block[row, col].item()
        raise TrainingDiverged(f"training diverged at epoch {epoch}, step {first_step + row + 1}: "
                               f"{names[col]} = {value:.4g}; {ADVICE}")
