"""Helpers several test modules share (fixtures live in conftest.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def fit_full_batch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int = 150,
                   lr: float = 0.05) -> nn.Module:
    """Full-batch Adam on cross-entropy from seed 0: a small model trained in a second, in eval mode."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return model.eval()


def one_line_error(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI on bad input: exit status 2, one line on stderr holding every `expected`, no traceback."""
    from winn_robust.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


class Stop(Exception):
    """Raised from on_epoch_end to stop a run after a given iteration, as a kill would."""


def tensors(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a checkpoint payload, by its path."""
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    out: dict[str, torch.Tensor] = {}
    for key, item in items:
        out.update(tensors(item, f"{prefix}/{key}"))
    return out


def untrained_pair(folder: Path) -> list[str]:
    """Two untrained vanilla digits checkpoints (baseline seed 0, winn seed 1): a cheap pair to attack."""
    from winn_robust.checkpoint import save_checkpoint
    from winn_robust.models import build_model

    meta = {"arch": "vanilla", "dataset": "digits", "image_shape": [1, 8, 8], "num_classes": 10}
    paths = []
    for seed, method in ((0, "baseline"), (1, "winn")):
        torch.manual_seed(seed)
        path = folder / f"{method}.pt"
        save_checkpoint(path, build_model("vanilla", (1, 8, 8), 10), {**meta, "method": method})
        paths.append(str(path))
    return paths
