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
from trainer.artifacts import (
    CHOSEN,
    COLOURS,
    INK,
    MIN_TILE,
    PHASE_INK,
    TITLE_BAND,
    Marks,
    evaluation_chart,
    loss_curves,
    retitle,
    sample_grid,
    write_artifacts,
)


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
    assert 4 * 35 * 3 <= grid.height < 5 * 35 * 3 + 40


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


def _count(image: Image.Image, colour: tuple[int, int, int]) -> int:
    return int((np.asarray(image.convert("RGB")) == colour).all(axis=-1).sum())


def test_small_images_are_scaled_up_to_at_least_64_pixels_under_a_title() -> None:
    images = np.full((4, 8, 8, 1), 0, np.uint8)
    grid = _decode(sample_grid(images, images, images, rows=2, title="job j1 - step 40"))
    pixels = np.asarray(grid.convert("L"))

    black_columns = np.flatnonzero((pixels == 0).all(axis=0) | (pixels[60:, :] == 0).any(axis=0))
    first_tile = black_columns[black_columns < grid.width // 3]
    assert first_tile.max() - first_tile.min() + 1 >= MIN_TILE
    assert (pixels[:30] < 128).any()  # the title's ink above the column names


def test_loss_curves_put_accuracy_on_its_own_axis_and_mark_phases_and_the_chosen_checkpoint() -> None:
    history = [
        {"step": float(s), "refiner": 2.0 - s / 100, "discriminator_accuracy": 0.5 + s / 1000}
        for s in range(0, 300, 10)
    ]
    marked = _decode(loss_curves(history, marks=Marks((("adversarial", 100),), (150, 250), chosen=250)))
    plain = _decode(loss_curves(history))

    assert _count(marked, CHOSEN) > 50 and _count(plain, CHOSEN) == 0
    assert _count(marked, PHASE_INK) > 20 and _count(plain, PHASE_INK) == 0
    # Two framed panels: two horizontal frame lines where one panel ends and the next begins.
    ink = (np.asarray(plain.convert("RGB")) == INK).all(axis=-1)
    frame_rows = np.flatnonzero(ink.sum(axis=1) > plain.width // 2)
    assert len(frame_rows) >= 4


def test_an_evaluation_chart_shows_synthetic_refined_and_oracle() -> None:
    metrics = {
        "downstream": {"error_synthetic": 9.0, "error_refined": 6.0, "error_real": 3.0, "gap_closed": 0.5},
        "realism": {"accuracy_real_vs_synthetic": 0.95, "accuracy_real_vs_refined": 0.7},
    }
    chart = _decode(evaluation_chart(metrics))
    assert chart.size == (760, 340)
    assert _count(chart, COLOURS[0]) > 100 and _count(chart, COLOURS[2]) > 100  # synthetic, oracle bars
    with pytest.raises(ValueError, match="no downstream or realism numbers"):
        evaluation_chart({"counts": {}})


def test_contact_sheets_of_rgb_images_are_drawn_on_white() -> None:
    from simulators.grid import image_grid

    sheet = image_grid([("rgb", np.zeros((2, 8, 8, 3), np.uint8))])
    assert sheet.getpixel((0, 0)) == (255, 255, 255)


def test_retitle_redraws_only_the_title_band(tmp_path: Path) -> None:
    images = uniform_images(4, 0, 256)
    paths = write_artifacts(tmp_path, images, images, images, _history(0.0), title="job j1 - step 6")
    before = {name: np.asarray(_decode(path.read_bytes()).convert("RGB")) for name, path in paths.items()}

    for path in paths.values():
        retitle(path, "job j1 - step 6 - model v3 (the refiner of step 4)")

    for name, path in paths.items():
        after = np.asarray(_decode(path.read_bytes()).convert("RGB"))
        assert (after[:TITLE_BAND] != before[name][:TITLE_BAND]).any(), name
        assert (after[TITLE_BAND:] == before[name][TITLE_BAND:]).all(), name
