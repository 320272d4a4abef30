"""Refining within a pixel budget gives exactly the untiled output: batches split into calls of whole
images, and images larger than the budget cut into tiles whose margins cover the receptive field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from models import Registry
from models.session import RefinerSession, load_refiner
from models.tiling import receptive_radius, refine_within_budget, tiles
from tests.factories import publish_tiny_refiner, random_images


@pytest.fixture(scope="module")
def refiner(tmp_path_factory: pytest.TempPathFactory) -> RefinerSession:
    """A random (untrained, so far from the identity) refiner of two blocks: radius 5."""
    home = tmp_path_factory.mktemp("tiling")
    registry = Registry(home / "models")
    card = publish_tiny_refiner(registry, channels=1, seed=3, blocks=2)
    return load_refiner(registry, card.version, Settings(home=home, provider="cpu"))


class Recording:
    """The refiner with every call's input shape written down."""

    def __init__(self, refiner: RefinerSession) -> None:
        self.refiner = refiner
        self.shapes: list[tuple[int, ...]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.refiner, name)

    def refine(self, images: np.ndarray, **kwargs: object) -> np.ndarray:
        self.shapes.append(images.shape)
        return self.refiner.refine(images, **kwargs)  # type: ignore[arg-type]


def test_the_receptive_radius_comes_from_the_card(refiner: RefinerSession) -> None:
    assert receptive_radius(refiner.card) == 5  # stem + 2 blocks x 2 convs, 3x3 each


def test_tiles_cover_the_image_once_each_within_the_budget() -> None:
    covered = np.zeros((61, 83), np.int32)
    for tile in tiles(61, 83, budget=400, margin=5):
        top, bottom, left, right = tile.read
        assert (bottom - top) * (right - left) <= 400
        k_top, k_bottom, k_left, k_right = tile.keep
        covered[k_top:k_bottom, k_left:k_right] += 1
        # the kept part is `margin` inside the window, except where the window meets the border
        assert k_top - top >= 5 or top == 0
        assert right - k_right >= 5 or right == 83
    assert (covered == 1).all()


def test_a_large_image_refined_in_tiles_equals_the_untiled_output(refiner: RefinerSession) -> None:
    image = random_images(1, 61, 83, seed=4)
    recording = Recording(refiner)

    tiled = refine_within_budget(recording, image, budget=400)  # type: ignore[arg-type]

    assert np.array_equal(tiled, refiner.refine(image))
    assert len(recording.shapes) > 20
    assert all(h * w <= 400 for _, h, w, _ in recording.shapes)


def test_a_margin_smaller_than_the_receptive_radius_would_show(refiner: RefinerSession) -> None:
    # The check above can fail: with margins of 1 px the seams differ from the untiled output.
    image = random_images(1, 61, 83, seed=4)
    out = np.empty_like(image)
    for tile in tiles(61, 83, budget=400, margin=1):
        top, bottom, left, right = tile.read
        rows, cols = tile.inner
        k_top, k_bottom, k_left, k_right = tile.keep
        out[0, k_top:k_bottom, k_left:k_right] = refiner.refine(image[:, top:bottom, left:right])[
            0, rows, cols
        ]
    assert not np.array_equal(out, refiner.refine(image))


def test_a_batch_over_the_budget_is_split_into_calls_of_whole_images(refiner: RefinerSession) -> None:
    images = random_images(5, 35, 55, seed=5)
    recording = Recording(refiner)

    split = refine_within_budget(recording, images, budget=2 * 35 * 55)  # type: ignore[arg-type]

    assert np.array_equal(split, refiner.refine(images))
    assert [shape[0] for shape in recording.shapes] == [2, 2, 1]


def test_a_budget_too_small_for_the_margins_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold a tile"):
        tiles(100, 100, budget=100, margin=5)


def test_tiles_work_for_images_of_one_row_or_column(refiner: RefinerSession, tmp_path: Path) -> None:
    for shape in [(1, 1, 300, 1), (1, 300, 1, 1), (1, 1, 1, 1)]:
        image = random_images(*shape, seed=6)
        assert np.array_equal(refine_within_budget(refiner, image, budget=144), refiner.refine(image))
