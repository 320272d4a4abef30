"""An exponential moving average of the refiner's weights: what checkpoints are scored on and exported.

Adversarial training oscillates: R's weights at any one step carry the last few D updates' noise.
Their running average is a smoother refiner that the same run produces for free (as in
progressive GANs, StyleGAN and most diffusion trainers).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """avg <- d * avg + (1 - d) * weights after every refiner update, d = min(decay, (1 + n) / (10 + n)).

    The warm-up term lets the average follow closely at first (n updates so far), so a short run's
    average is not dominated by its pretrained starting point.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for mine, theirs in zip(self.module.parameters(), module.parameters(), strict=True):
            mine.lerp_(theirs.detach(), 1 - d)
        for kept, current in zip(self.module.buffers(), module.buffers(), strict=True):
            kept.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["weights"])
