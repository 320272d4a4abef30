"""Pictures of a train run: the sample grid and the loss curves."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.layout import CURVES_NAME, SAMPLES_NAME
from tests.factories import uniform_images
from trainer.artifacts import loss_curves, sample_grid, write_artifacts


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _history(phase: float) -> list[dict[str, float]]:
    return [
        {"step": 10.0 * i, "refiner": 1 + math.sin(i / 5 + phase), "discriminator": 0.7 - 0.001 * i}
        for i in range(60)
    ]


def test_sample_grid_has_three_upscaled_columns_and_one_row_per_sample() -> None:
    images = uniform_images(8, 0, 256, height=35, width=55)
    grid = _decode(sample_grid(images, images, images, rows=4, scale=3))
    assert grid.format == "PNG"
    assert grid.width >= 3 * 55 * 3
    assert 4 * 35 * 3 <= grid.height < 5 * 35 * 3


def test_sample_grid_shows_the_pixels_it_is_given() -> None:
    dark, bright = np.zeros((2, 35, 55, 1), np.uint8), np.full((2, 35, 55, 1), 255, np.uint8)
    grid = np.asarray(_decode(sample_grid(dark, bright, dark, rows=1, scale=2)).convert("L"))
    row = grid[grid.shape[0] // 2 + 10]
    third = grid.shape[1] // 3
    assert row[third // 2] == 0
    assert row[third + third // 2] == 255


def test_sample_grid_refuses_images_that_are_not_uint8() -> None:
    images = np.zeros((2, 35, 55, 1), np.float32)
    with pytest.raises(ValueError, match="synthetic: expected uint8"):
        sample_grid(images, images, images)


def test_loss_curves_are_a_png_of_the_requested_size() -> None:
    image = _decode(loss_curves(_history(0.0), size=(640, 360)))
    assert image.size == (640, 360)


def test_loss_curves_differ_for_different_losses() -> None:
    first = np.asarray(_decode(loss_curves(_history(0.0))))
    second = np.asarray(_decode(loss_curves(_history(2.0))))
    assert first.shape == second.shape
    assert (first != second).any()


def test_loss_curves_refuse_an_empty_history() -> None:
    with pytest.raises(ValueError, match="empty"):
        loss_curves([{"step": 1.0}])


def test_write_artifacts_writes_the_grid_and_the_curves(tmp_path: Path) -> None:
    images = uniform_images(4, 0, 256)
    paths = write_artifacts(tmp_path / "artifacts", images, images, images, _history(0.0))
    assert set(paths) == {SAMPLES_NAME, CURVES_NAME}
    assert all(_decode(p.read_bytes()).format == "PNG" for p in paths.values())
