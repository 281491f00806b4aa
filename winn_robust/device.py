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


def devices_to_measure(choice: str) -> list[torch.device]:
    """For benchmarks: 'cpu', 'cuda', or 'all' (the CPU, plus CUDA when present)."""
    if choice not in ("cpu", "cuda", "all"):
        raise UserError(f"unknown --device {choice!r}; choose cpu, cuda or all")
    devices = [torch.device("cpu")] if choice in ("cpu", "all") else []
    if choice != "cpu" and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if not devices:
        raise UserError("--device cuda: torch sees no GPU; use --device cpu or all")
    return devices
