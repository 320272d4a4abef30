"""Pictures of a train run, drawn with pillow: a sample grid and the loss curves, as PNG bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.layout import CURVES_NAME, SAMPLES_NAME

BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)
COLOURS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
)
"""Line colours in legend order (a colour-blind-tolerant qualitative palette)."""


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _tile(image: np.ndarray, scale: int) -> Image.Image:
    """(H, W, C) uint8 -> RGB pillow image `scale` times larger (nearest neighbour keeps pixels visible)."""
    pixels = image[..., 0] if image.shape[-1] == 1 else image
    tile = Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")
    return tile.resize((tile.width * scale, tile.height * scale), Image.Resampling.NEAREST)


def sample_grid(
    synthetic: np.ndarray, refined: np.ndarray, real: np.ndarray, *, rows: int = 8, scale: int = 3
) -> bytes:
    """PNG of `rows` rows, columns synthetic | refined | real; images uint8 (N, H, W, C).

    `synthetic` and `refined` are aligned (row i is one image before and after); `real` images are
    unpaired examples of the target look.
    """
    columns = (("synthetic", synthetic), ("refined", refined), ("real", real))
    for name, images in columns:
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
            raise ValueError(f"{name}: expected uint8 (N, H, W, C) images, got {images.dtype}{images.shape}")
    rows = min(rows, *(len(images) for _, images in columns))
    # Real images may have another size than synthetic ones (D is fully convolutional): size the
    # cells for the largest.
    height = max(images.shape[1] for _, images in columns) * scale
    width = max(images.shape[2] for _, images in columns) * scale
    pad, header = 4, 20
    canvas = Image.new("RGB", (3 * width + 4 * pad, header + rows * (height + pad) + pad), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    for col, (name, images) in enumerate(columns):
        left = pad + col * (width + pad)
        draw.text((left + width // 2, header // 2), name, fill=INK, font=font, anchor="mm")
        for row in range(rows):
            tile = _tile(images[row], scale)
            canvas.paste(tile, (left, header + row * (height + pad)))
    return _png(canvas)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    span = high - low if high > low else 1.0
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


def _runs(
    key: str,
    xs: list[float],
    history: Sequence[dict[str, float]],
    at: Callable[[float, float], tuple[float, float]],
) -> list[list[tuple[float, float]]]:
    """Canvas points of `key`, split where it is missing (a loss not logged in some phase): no line
    is drawn across a phase that did not have it."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, entry in zip(xs, history, strict=True):
        if key in entry and math.isfinite(entry[key]):
            runs[-1].append(at(x, entry[key]))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def loss_curves(history: Sequence[dict[str, float]], *, size: tuple[int, int] = (720, 420)) -> bytes:
    """PNG line plot of every loss in `history` (one dict per logged step) against its `step`
    (the entry's index when there is none), with axes, ticks and a legend."""
    keys = sorted({k for entry in history for k in entry if k != "step"})
    if not keys:
        raise ValueError("the loss history is empty: nothing to plot")
    xs = [float(entry.get("step", i)) for i, entry in enumerate(history)]
    values = [v for entry in history for k, v in entry.items() if k != "step" and math.isfinite(v)]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_lo, y_hi = (min(values), max(values)) if values else (0.0, 1.0)
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    margin = 0.04 * (y_hi - y_lo)  # keeps the extreme values off the frame
    y_lo, y_hi = y_lo - margin, y_hi + margin
    width, height = size
    canvas = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(11)
    # The legend column is as wide as the longest loss name.
    left, top, bottom = 64, 16, 40
    right = 44 + max(int(draw.textlength(key, font=font)) for key in keys)

    def at(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)
        py = height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)
        return px, py

    for tick in _ticks(y_lo, y_hi):
        _, py = at(x_lo, tick)
        draw.line([(left, py), (width - right, py)], fill=GRID)
        draw.text((left - 6, py), _label(tick), fill=INK, font=font, anchor="rm")
    for tick in _ticks(x_lo, x_hi):
        px, _ = at(tick, y_lo)
        draw.line([(px, height - bottom), (px, height - bottom + 4)], fill=INK)
        draw.text((px, height - bottom + 6), _label(tick), fill=INK, font=font, anchor="mt")
    draw.rectangle([left, top, width - right, height - bottom], outline=INK)
    draw.text(((left + width - right) / 2, height - 4), "step", fill=INK, font=font, anchor="mb")
    for index, key in enumerate(keys):
        colour = COLOURS[index % len(COLOURS)]
        for points in _runs(key, xs, history, at):
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            else:
                (px, py) = points[0]
                draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        legend_y = top + 6 + index * 16
        draw.line([(width - right + 10, legend_y), (width - right + 28, legend_y)], fill=colour, width=3)
        draw.text((width - right + 34, legend_y), key, fill=INK, font=font, anchor="lm")
    return _png(canvas)


def write_artifacts(
    directory: Path,
    synthetic: np.ndarray,
    refined: np.ndarray,
    real: np.ndarray,
    history: Sequence[dict[str, float]],
) -> dict[str, Path]:
    """Write the sample grid and the loss curves into `directory`; name -> path of what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {SAMPLES_NAME: sample_grid(synthetic, refined, real)}
    if any(k != "step" for entry in history for k in entry):
        written[CURVES_NAME] = loss_curves(history)
    paths = {}
    for name, data in written.items():
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(directory / name)
        paths[name] = directory / name
    return paths
