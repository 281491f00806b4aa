"""Device selection shared by every command."""
from __future__ import annotations

import torch

from winn_robust.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is a user error, not a crash."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} asked for a GPU but torch sees none; use --device cpu or auto")
        return torch.device(name)
    raise UserError(f"unknown --device {name!r}; choose auto, cpu or cuda")
