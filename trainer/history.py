"""The history of refined images that D also trains on (SIMGAN.md, "Stabilisers").

D sees b/2 freshly refined images and b/2 from this buffer, so it keeps rejecting the artefacts
of earlier refiners and R cannot cycle back to them. The buffer fills first; once full, each push
overwrites random slots. Storage is one preallocated tensor on the training device.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ImageHistory:
    def __init__(
        self, capacity: int, image_shape: tuple[int, int, int], device: torch.device | str = "cpu"
    ) -> None:
        if capacity < 1:
            raise ValueError(f"history capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.images = torch.zeros((capacity, *image_shape), device=device)  # (capacity, C, H, W)
        self.count = 0

    def __len__(self) -> int:
        return self.count

    @property
    def full(self) -> bool:
        return self.count == self.capacity

    def push(self, images: Tensor, generator: torch.Generator) -> None:
        """Store (n, C, H, W) refined images: into empty slots first, then over random old ones."""
        images = images.detach().to(self.images.device, self.images.dtype)
        free = min(self.capacity - self.count, len(images))
        if free:
            self.images[self.count : self.count + free] = images[:free]
            self.count += free
        rest = images[free:]
        if len(rest):
            slots = torch.randperm(self.capacity, generator=generator)[: len(rest)]
            self.images[slots.to(self.images.device)] = rest[: len(slots)]

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """(n, C, H, W) stored images picked at random (with replacement); needs a non-empty buffer."""
        if self.count == 0:
            raise ValueError("the history is empty; push refined images before sampling")
        picks = torch.randint(0, self.count, (n,), generator=generator)
        return self.images[picks.to(self.images.device)]

    def state_dict(self) -> dict[str, object]:
        # Only the filled part (cloned: a view would save the whole preallocated storage).
        return {"capacity": self.capacity, "images": self.images[: self.count].clone().cpu()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        stored = state["images"]
        assert isinstance(stored, Tensor)
        if state["capacity"] != self.capacity or stored.shape[1:] != self.images.shape[1:]:
            raise ValueError(
                f"checkpoint history holds {state['capacity']} images of {tuple(stored.shape[1:])}, "
                f"this run expects {self.capacity} of {tuple(self.images.shape[1:])}"
            )
        self.images.zero_()
        self.images[: len(stored)] = stored.to(self.images.device)
        self.count = len(stored)
