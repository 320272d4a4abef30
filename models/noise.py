"""Per-image noise for stochastic refiners: the same image with the same seed gets the same noise.

A stochastic refiner (train config `noise_channels` > 0) takes, beside each image, that many
channels of standard normal noise, so it can draw per-image texture or sensor noise that no
deterministic map of the image can produce. Everything that calls such a model (POST /refine,
bulk refine jobs, evaluation, checkpoint scoring) draws the noise here, from the caller's seed and
the image's own pixels, never from its position in a batch: an image refined alone or among 63
others, in one request or in a bulk job, with the same seed, comes out the same.
"""

from __future__ import annotations

import hashlib

import numpy as np

DEFAULT_SEED = 0
"""The seed when a caller gives none: refining stays reproducible unless a caller asks otherwise."""
MAX_SEED = 2**63 - 1


def image_noise(image: np.ndarray, channels: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(H, W, channels) float32 standard normal noise for one uint8 (H, W, C) image."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed}")
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(repr(image.shape).encode())
    words = np.frombuffer(digest.digest(), dtype=np.uint32)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, *words.tolist()])
    height, width = image.shape[:2]
    return rng.standard_normal((height, width, channels), dtype=np.float32)


def batch_noise(images: np.ndarray, channels: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(N, H, W, channels) float32: `image_noise` of each of the (N, H, W, C) uint8 images."""
    n, height, width = images.shape[:3]
    out = np.empty((n, height, width, channels), dtype=np.float32)
    for i in range(n):
        out[i] = image_noise(images[i], channels, seed)
    return out
