"""A torch refiner over uint8 images, exactly as the exported ONNX graph refines them.

Selection scores checkpoints and training draws its sample grids with it, so what they judge is what
the service will serve: the same [-1, 1] scaling, the same rounding to uint8, and for a stochastic
refiner the same per-image noise the service draws for a seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.noise import DEFAULT_SEED, batch_noise
from trainer import task_models


@torch.no_grad()
def refine_with_module(
    refiner: nn.Module, images: np.ndarray, batch: int = 128, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """uint8 (N, H, W, C) through a torch refiner, rounded as the exported graph does; a stochastic
    refiner gets the noise the service would draw for these images with `seed`."""
    device = next(refiner.parameters()).device
    k = int(getattr(getattr(refiner, "config", None), "noise_channels", 0))
    was_training = refiner.training
    refiner.eval()
    try:
        out = []
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            x = task_models.to_tensor(chunk).to(device)  # (B, C, H, W) in [-1, 1]
            if k:
                noise = torch.from_numpy(batch_noise(chunk, k, seed)).permute(0, 3, 1, 2).to(device)
                y = refiner(x, noise)  # noise (B, k, H, W)
            else:
                y = refiner(x)
            y = torch.round((y.float() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
            out.append(y.permute(0, 2, 3, 1).cpu().numpy())  # (B, H, W, C)
        return np.concatenate(out)
    finally:
        refiner.train(was_training)
