"""The losses of S+U learning: the local adversarial loss and the self-regularisation L1.

Class convention, used everywhere: D's logit channel 1 means "refined", channel 0 means "real".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

REAL = 0
REFINED = 1


def local_adversarial_loss(logits: Tensor, target: int) -> Tensor:
    """Cross-entropy of every patch of D's map against `target`, averaged over patches and batch.

    logits: (B, 2, h, w) per-patch logits. Averaging (not summing) keeps the value independent
    of image size and batch: ln 2 = 0.693 when D cannot tell, 0 when it is sure and right.
    """
    batch, classes, height, width = logits.shape
    if classes != 2:
        raise ValueError(f"expected 2 logits per patch, got {classes}")
    targets = torch.full((batch, height, width), target, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), targets)


def patch_accuracy(logits: Tensor, target: int) -> Tensor:
    """Share of patches D assigns to `target`; a D stuck near 1.0 on both domains is overpowering R."""
    return (logits.argmax(dim=1) == target).float().mean()


def feature_space(images: Tensor, space: str) -> Tensor:
    """psi of the self-regularisation: (B, C, H, W) -> identity, or (B, 1, H, W) channel mean."""
    if space == "identity":
        return images
    if space == "channel_mean":
        return images.mean(dim=1, keepdim=True)
    raise ValueError(f"regularization_space must be identity or channel_mean, got {space!r}")


def self_regularization_loss(refined: Tensor, synthetic: Tensor, space: str = "identity") -> Tensor:
    """Mean over pixels (and channels) of |psi(R(x)) - psi(x)|, in [-1, 1] image units.

    Mean-normalised, so lambda does not depend on the image size: a refiner that shifts every
    pixel by 0.1 (about 13 grey levels) costs 0.1 whatever H, W and B are.
    """
    return (feature_space(refined.float(), space) - feature_space(synthetic.float(), space)).abs().mean()
