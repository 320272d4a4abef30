"""Refining within a pixel budget: no model call takes more than `budget` input pixels.

onnxruntime's working memory grows with the pixels of a call (and its CPU arena keeps the
peak), so a request of 16 megapixel images must not become one 16-megapixel call. Batches are
cut into calls of whole images while they fit; an image larger than the budget is cut into
overlapping tiles. The refiner is fully convolutional with stride 1, so an output pixel depends
only on the input pixels within its receptive radius; each tile carries a margin of at least
that radius around the part of it that is kept, which makes the tiled output the untiled one
(tests/models/test_tiling.py). The margin at the image's own border is the real border, where
the refiner's edge padding sees exactly what it sees untiled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from models.card import ModelCard
from models.noise import DEFAULT_SEED
from models.session import RefinerSession

DEFAULT_KERNEL = 3
DEFAULT_BLOCKS = 4
"""The trainer's defaults (core.train_config), for cards whose config does not name them."""


def receptive_radius(card: ModelCard) -> int:
    """How far (in pixels) an output pixel sees: one stem conv and two convs per residual block, each
    of `refiner_kernel` (trainer/networks.py); the 1x1 head adds nothing."""
    kernel = int(card.config.get("refiner_kernel", DEFAULT_KERNEL))
    blocks = int(card.config.get("refiner_blocks", DEFAULT_BLOCKS))
    return (1 + 2 * blocks) * (kernel // 2)


@dataclass(frozen=True)
class Tile:
    """One model call's window of an image: `read` is what goes in (the kept part plus margins),
    `keep` is what comes out, both as (top, bottom, left, right); `inner` is `keep` inside `read`."""

    read: tuple[int, int, int, int]
    keep: tuple[int, int, int, int]

    @property
    def inner(self) -> tuple[slice, slice]:
        top, bottom, left, right = self.keep
        return slice(top - self.read[0], bottom - self.read[0]), slice(
            left - self.read[2], right - self.read[2]
        )


def tiles(height: int, width: int, budget: int, margin: int) -> list[Tile]:
    """Windows covering a (height, width) image, each reading at most `budget` pixels, each kept part
    at least `margin` pixels from its window's edge except at the image's border."""
    side = math.isqrt(budget)
    core = side - 2 * margin
    if core < 1:
        raise ValueError(f"a pixel budget of {budget} cannot hold a tile with {margin} px margins")
    found = []
    for top in range(0, height, core):
        for left in range(0, width, core):
            bottom, right = min(top + core, height), min(left + core, width)
            read = (
                max(0, top - margin),
                min(height, bottom + margin),
                max(0, left - margin),
                min(width, right + margin),
            )
            found.append(Tile(read, (top, bottom, left, right)))
    return found


Call = Callable[[], None]
"""One model call; the calls of one batch run in order, and other work may run between them."""


def budget_calls(
    refiner: RefinerSession, images: np.ndarray, seeds: list[int], budget: int, out: np.ndarray
) -> Iterator[Call]:
    """The model calls that refine (B, H, W, C) `images` into `out`, each within `budget` pixels.

    A stochastic refiner's noise is drawn for each whole image (from its seed and pixels, as
    untiled) and cut with it, so a tile sees the noise the image would have had."""
    count, height, width, _ = images.shape
    per_call = budget // (height * width)
    if per_call >= 1:
        for start in range(0, count, per_call):
            yield _whole(refiner, images, seeds, out, slice(start, min(count, start + per_call)))
        return
    margin = receptive_radius(refiner.card)
    for index in range(count):
        noise = refiner.noise(images[index : index + 1], seeds[index])
        for tile in tiles(height, width, budget, margin):
            yield _tile(refiner, images, noise, out, index, tile)


def _whole(
    refiner: RefinerSession, images: np.ndarray, seeds: list[int], out: np.ndarray, which: slice
) -> Call:
    def call() -> None:
        part, part_seeds = images[which], seeds[which]
        if refiner.stochastic:
            noise = np.concatenate([refiner.noise(part[i : i + 1], s) for i, s in enumerate(part_seeds)])
            out[which] = refiner.refine(part, noise=noise)
        else:
            out[which] = refiner.refine(part)

    return call


def _tile(
    refiner: RefinerSession,
    images: np.ndarray,
    noise: np.ndarray | None,
    out: np.ndarray,
    index: int,
    tile: Tile,
) -> Call:
    def call() -> None:
        top, bottom, left, right = tile.read
        window = np.ascontiguousarray(images[index : index + 1, top:bottom, left:right])
        window_noise = None if noise is None else np.ascontiguousarray(noise[:, top:bottom, left:right])
        refined = refiner.refine(window, noise=window_noise)
        rows, cols = tile.inner
        k_top, k_bottom, k_left, k_right = tile.keep
        out[index, k_top:k_bottom, k_left:k_right] = refined[0, rows, cols]

    return call


def refine_within_budget(
    refiner: RefinerSession, images: np.ndarray, budget: int, seeds: list[int] | None = None
) -> np.ndarray:
    """`refiner.refine(images)`, in calls of at most `budget` pixels each (bulk jobs, tests, bench)."""
    out = np.empty_like(images)
    for call in budget_calls(refiner, images, seeds or [DEFAULT_SEED] * len(images), budget, out):
        call()
    return out
