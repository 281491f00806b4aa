"""Class-conditional pools of pseudo-negatives, kept on the training device.

Stored as one tensor (classes, per_class, C, H, W): every class grows by the same count each
epoch, so a same-label negative for every positive is one gather, with no host round trip."""
from __future__ import annotations

import torch

from winn_robust.models.generator import RandomGenerator


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
        index = torch.randint(0, self.per_class, labels.shape, generator=rng, device=self.images.device)
        return self.images[labels, index]

    def append(self, new: torch.Tensor) -> None:
        """Append (classes, n, C, H, W) new negatives; entries are final, never refined."""
        self.images = torch.cat([self.images, new.to(self.images)], dim=1)

    def newest(self, n: int) -> torch.Tensor:
        return self.images[:, -n:]
