"""Class-conditional pools of pseudo-negatives, kept on the training device, and their files.

Stored in memory as one tensor (classes, per_class, C, H, W): every class grows by the same
count each epoch, so a same-label negative for every positive is one gather, with no host
round trip. On disk the pool is one file per epoch's new entries (`pool/epoch_NNN.pt`, epoch 0
= the generator's initial images), each written atomically: an epoch writes only what it adds,
and `last.pt` lists (with sha256) the files that belong to it, so a resume reads exactly the
pool of the last finished epoch, even after a kill in the middle of a save."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from winn_robust.checkpoint import atomic_save, file_sha256, load_tensors
from winn_robust.errors import UserError
from winn_robust.models.generator import RandomGenerator

POOL_DIR = "pool"


class NegativePool:
    def __init__(self, images: torch.Tensor) -> None:
        if images.dim() != 5:
            raise ValueError("pool images must be (classes, per_class, C, H, W)")
        self.images = images

    @classmethod
    def from_generator(cls, generator: RandomGenerator, num_classes: int, per_class: int,
                       rng: torch.Generator | None, device: torch.device) -> NegativePool:
        images = generator.sample(num_classes * per_class, rng, device)
        return cls(images.view(num_classes, per_class, *images.shape[1:]))

    @property
    def num_classes(self) -> int:
        return self.images.shape[0]

    @property
    def per_class(self) -> int:
        return self.images.shape[1]

    def __len__(self) -> int:
        return self.num_classes * self.per_class

    def sample(self, labels: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
        """One uniformly drawn negative of the same class for each label."""
        return self.take(labels, self.draw(labels, rng))

    def draw(self, labels: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
        """The random half of `sample`: an entry index within its class for each label. Data-parallel
        ranks draw for the whole global batch (the same stream as one process) and `take` their slice."""
        return torch.randint(0, self.per_class, labels.shape, generator=rng, device=self.images.device)

    def take(self, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.images[labels, index]

    def append(self, new: torch.Tensor) -> None:
        """Append (classes, n, C, H, W) new negatives; entries are final, never refined."""
        self.images = torch.cat([self.images, new.to(self.images)], dim=1)

    def newest(self, n: int) -> torch.Tensor:
        return self.images[:, -n:]


def save_pool_part(run_dir: Path, epoch: int, images: torch.Tensor) -> tuple[dict[str, Any], int]:
    """Write one epoch's new negatives (classes, n, C, H, W) atomically; return the record
    `last.pt` keeps for it and the bytes written."""
    name = f"{POOL_DIR}/epoch_{epoch:03d}.pt"
    size = atomic_save({"epoch": epoch, "images": images.detach().cpu().contiguous()}, run_dir / name)
    return {"file": name, "epoch": epoch, "per_class": int(images.shape[1]), "sha256": file_sha256(run_dir / name)}, size


def load_pool(run_dir: Path, records: list[dict[str, Any]], device: torch.device) -> NegativePool:
    """The pool of the epoch whose `last.pt` lists `records`, checked file by file."""
    parts = []
    for record in records:
        path = run_dir / record["file"]
        if not path.is_file():
            raise UserError(f"cannot resume: {path} (pseudo-negatives of epoch {record['epoch']}) is missing; "
                            "restore it or start the run afresh in a new --out")
        if file_sha256(path) != record["sha256"]:
            raise UserError(f"cannot resume: {path} differs from the file last.pt recorded (sha256 mismatch); "
                            "restore the run's own pool files or start afresh in a new --out")
        parts.append(load_tensors(path, device, what="pool file")["images"])
    return NegativePool(torch.cat(parts, dim=1))
