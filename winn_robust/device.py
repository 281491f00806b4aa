"""Device selection shared by every command."""
from __future__ import annotations

import torch

from winn_robust.distributed import world
from winn_robust.errors import SettingError, UserError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without one is a user error, not a crash.
    Under torchrun with several ranks each rank takes its own GPU, cuda:LOCAL_RANK."""
    here = world()
    if name == "auto":
        return rank_gpu(here.local_rank) if here.distributed and torch.cuda.is_available() else \
            torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SettingError("device", f"{name} asked for a GPU but torch sees none; use `device` cpu or auto",
                               mentions=("device",))
        if here.distributed:
            if name != "cuda":
                raise SettingError("device", f"{name}: under torchrun every rank uses its own GPU, cuda:LOCAL_RANK; "
                                   "give `device` auto or cuda (CUDA_VISIBLE_DEVICES picks the GPUs)", mentions=("device",))
            return rank_gpu(here.local_rank)
        return torch.device(name)
    raise SettingError("device", f"{name!r} is unknown; choose auto, cpu or cuda")


def rank_gpu(local_rank: int) -> torch.device:
    """cuda:LOCAL_RANK, refused when the node has fewer GPUs than ranks (two ranks on one GPU
    would make NCCL fail later, with a less clear message)."""
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise UserError(f"local rank {local_rank} needs GPU cuda:{local_rank} but this node shows {count}; "
                        f"start at most {count} processes per node (torchrun --nproc-per-node {count})")
    return torch.device(f"cuda:{local_rank}")


def devices_to_measure(choice: str) -> list[torch.device]:
    """For benchmarks: 'cpu', 'cuda', or 'all' (the CPU, plus CUDA when present)."""
    if choice not in ("cpu", "cuda", "all"):
        raise SettingError("device", f"{choice!r} is unknown; choose cpu, cuda or all")
    devices = [torch.device("cpu")] if choice in ("cpu", "all") else []
    if choice != "cpu" and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if not devices:
        raise SettingError("device", "cuda: torch sees no GPU; use `device` cpu or all", mentions=("device",))
    return devices
