"""Pictures of a train run, drawn with pillow: a sample grid, the loss curves and an evaluation's
numbers, as PNG bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.layout import CURVES_NAME, EVALUATION_NAME, SAMPLES_NAME

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


MIN_TILE = 64
"""Each image of the sample grid is drawn at least this many pixels on its shorter side."""


def tile_scale(height: int, width: int, scale: int = 2) -> int:
    """The nearest-neighbour factor that makes an image of (height, width) at least MIN_TILE px."""
    return max(scale, math.ceil(MIN_TILE / max(1, min(height, width))))


def sample_grid(
    synthetic: np.ndarray,
    refined: np.ndarray,
    real: np.ndarray,
    *,
    rows: int = 8,
    scale: int = 2,
    title: str = "",
) -> bytes:
    """PNG of `rows` rows, columns synthetic | refined | real; images uint8 (N, H, W, C), upscaled
    (nearest neighbour) to at least MIN_TILE px, under `title`.

    `synthetic` and `refined` are aligned (row i is one image before and after); `real` images are
    unpaired examples of the target look.
    """
    columns = (("synthetic", synthetic), ("refined", refined), ("real", real))
    for name, images in columns:
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
            raise ValueError(f"{name}: expected uint8 (N, H, W, C) images, got {images.dtype}{images.shape}")
    rows = min(rows, *(len(images) for _, images in columns))
    # Real images may have another size than synthetic ones (D is fully convolutional): size the
    # cells for the largest, the scale for the smallest.
    scale = tile_scale(
        min(images.shape[1] for _, images in columns), min(images.shape[2] for _, images in columns), scale
    )
    height = max(images.shape[1] for _, images in columns) * scale
    width = max(images.shape[2] for _, images in columns) * scale
    pad, header = 4, 20 + (22 if title else 0)
    title_width = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title, font=_font(14)) if title else 0
    canvas_width = max(3 * width + 4 * pad, int(title_width) + 16)
    canvas = Image.new("RGB", (canvas_width, header + rows * (height + pad) + pad), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    if title:
        draw.text((canvas_width // 2, 12), title, fill=INK, font=_font(14), anchor="mm")
    for col, (name, images) in enumerate(columns):
        left = pad + col * (width + pad)
        draw.text((left + width // 2, header - 10), name, fill=INK, font=font, anchor="mm")
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


@dataclass(frozen=True)
class Marks:
    """What the loss curves mark on the step axis: where each phase starts, the checkpoints that were
    scored, and the one chosen for publishing."""

    phases: tuple[tuple[str, int], ...] = ()
    checkpoints: tuple[int, ...] = ()
    chosen: int | None = None


CHOSEN = (0, 200, 0)
"""The chosen checkpoint's line: a green no curve of COLOURS has."""
PHASE_INK = (120, 120, 200)
"""Phase starts: a grey-blue no text or curve uses."""


def _panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    history: Sequence[dict[str, float]],
    keys: list[str],
    x_range: tuple[float, float],
    y_label: str,
    y_range: tuple[float, float] | None = None,
    colour_offset: int = 0,
) -> Callable[[float], float]:
    """One framed plot of `keys` in `box` (left, top, right, bottom); returns step -> canvas x."""
    left, top, right, bottom = box
    font = _font(11)
    xs = [float(entry.get("step", i)) for i, entry in enumerate(history)]
    values = [entry[k] for entry in history for k in keys if k in entry and math.isfinite(entry[k])]
    y_lo, y_hi = y_range or ((min(values), max(values)) if values else (0.0, 1.0))
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    if y_range is None:
        margin = 0.04 * (y_hi - y_lo)  # keeps the extreme values off the frame
        y_lo, y_hi = y_lo - margin, y_hi + margin
    x_lo, x_hi = x_range

    def x_at(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * (right - left)

    def at(x: float, y: float) -> tuple[float, float]:
        return x_at(x), bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)

    for tick in _ticks(y_lo, y_hi):
        _, py = at(x_lo, tick)
        draw.line([(left, py), (right, py)], fill=GRID)
        draw.text((left - 6, py), _label(tick), fill=INK, font=font, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline=INK)
    draw.text((left, top - 2), y_label, fill=INK, font=font, anchor="lb")  # the y axis's name
    for index, key in enumerate(keys):
        colour = COLOURS[(index + colour_offset) % len(COLOURS)]
        for points in _runs(key, xs, history, at):
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            else:
                (px, py) = points[0]
                draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        legend_y = top + 6 + index * 16
        draw.line([(right + 10, legend_y), (right + 28, legend_y)], fill=colour, width=3)
        draw.text((right + 34, legend_y), key, fill=INK, font=font, anchor="lm")
    return x_at


def loss_curves(
    history: Sequence[dict[str, float]],
    *,
    size: tuple[int, int] = (760, 560),
    title: str = "Training losses",
    marks: Marks = Marks(),  # frozen: one shared default is safe
) -> bytes:
    """PNG of every loss in `history` (one dict per logged step) against its `step` (the entry's index
    when there is none), titled; accuracies (0..1) on a panel of their own below; phases, scored
    checkpoints and the chosen checkpoint marked on both."""
    keys = sorted({k for entry in history for k in entry if k != "step"})
    if not keys:
        raise ValueError("the loss history is empty: nothing to plot")
    losses = [k for k in keys if "accuracy" not in k]
    accuracies = [k for k in keys if "accuracy" in k]
    xs = [float(entry.get("step", i)) for i, entry in enumerate(history)]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    width, height = size
    canvas = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(11)
    left, top, bottom = 56, 40, 40
    right = width - 44 - max(int(draw.textlength(key, font=font)) for key in keys)
    draw.text((width / 2, 14), title, fill=INK, font=_font(14), anchor="mm")
    split = top + int((height - top - bottom) * (0.68 if accuracies and losses else 1.0))
    panels = []
    if losses:
        box = (left, top, right, split - (12 if accuracies else 0))
        panels.append((box, _panel(draw, box, history, losses, (x_lo, x_hi), "loss")))
    if accuracies:
        box = (left, split + 4 if losses else top, right, height - bottom)
        x_at = _panel(draw, box, history, accuracies, (x_lo, x_hi), "accuracy", (0.0, 1.0), len(losses))
        panels.append((box, x_at))
    last_box, x_at = panels[-1]
    for tick in _ticks(x_lo, x_hi):
        px = x_at(tick)
        draw.line([(px, last_box[3]), (px, last_box[3] + 4)], fill=INK)
        draw.text((px, last_box[3] + 6), _label(tick), fill=INK, font=font, anchor="mt")
    draw.text(((left + right) / 2, height - 4), "step", fill=INK, font=font, anchor="mb")
    for box, x_at in panels:
        _mark(draw, box, x_at, marks, (x_lo, x_hi), label=box is panels[0][0])
    return _png(canvas)


def _mark(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    x_at: Callable[[float], float],
    marks: Marks,
    x_range: tuple[float, float],
    label: bool,
) -> None:
    """Phase starts (grey, named), scored checkpoints (short ticks), the chosen one (green)."""
    _, top, _, bottom = box
    font = _font(10)
    for index, (name, start) in enumerate(marks.phases):
        if x_range[0] < start < x_range[1]:
            px = x_at(start)
            for y in range(top, bottom, 6):  # dashed
                draw.line([(px, y), (px, min(y + 3, bottom))], fill=PHASE_INK)
            if label:  # staggered: short phases put their starts close together
                draw.text((px + 3, top + 3 + 12 * index), name, fill=PHASE_INK, font=font, anchor="lt")
    for step in marks.checkpoints:
        if x_range[0] <= step <= x_range[1]:
            px = x_at(step)
            draw.line([(px, bottom - 8), (px, bottom)], fill=INK, width=2)
    if marks.chosen is not None and x_range[0] <= marks.chosen <= x_range[1]:
        px = x_at(marks.chosen)
        draw.line([(px, top), (px, bottom)], fill=CHOSEN, width=3)
        if label:
            draw.text(
                (px - 3, bottom - 12), f"chosen: step {marks.chosen}", fill=CHOSEN, font=font, anchor="rb"
            )


def evaluation_chart(
    metrics: dict[str, Any], *, title: str = "Evaluation", size: tuple[int, int] = (760, 340)
) -> bytes:
    """PNG bar charts of an evaluation: the downstream task's error trained on synthetic, refined and
    real (oracle) images, and the realism classifier's accuracy (0.5 = indistinguishable)."""
    groups: list[tuple[str, list[tuple[str, float]]]] = []
    downstream = metrics.get("downstream") or {}
    if downstream.get("error_synthetic") is not None:
        groups.append(
            (
                f"downstream error ({downstream.get('metric', 'lower is better')})",
                [
                    ("synthetic", downstream["error_synthetic"]),
                    ("refined", downstream["error_refined"]),
                    ("oracle (real)", downstream["error_real"]),
                ],
            )
        )
    realism = metrics.get("realism") or {}
    if realism.get("accuracy_real_vs_refined") is not None:
        groups.append(
            (
                "realism: classifier accuracy (0.5 = looks real)",
                [
                    ("synthetic", realism["accuracy_real_vs_synthetic"]),
                    ("refined", realism["accuracy_real_vs_refined"]),
                    *(
                        [("real", realism["accuracy_real_vs_real"])]
                        if "accuracy_real_vs_real" in realism
                        else []
                    ),
                ],
            )
        )
    if not groups:
        raise ValueError("the evaluation has no downstream or realism numbers to draw")
    width, height = size
    canvas = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(11)
    gap_closed = downstream.get("gap_closed")
    heading = title + (f" - gap closed {gap_closed:.2f}" if isinstance(gap_closed, float) else "")
    draw.text((width / 2, 14), heading, fill=INK, font=_font(14), anchor="mm")
    panel_width = (width - 40) // len(groups)
    for index, (name, bars) in enumerate(groups):
        left, top, bottom = 20 + index * panel_width + 40, 56, height - 40
        right = left + panel_width - 60
        high = max(value for _, value in bars) * 1.15 or 1.0
        draw.text(((left + right) / 2, 38), name, fill=INK, font=font, anchor="mm")
        draw.line([(left, bottom), (right, bottom)], fill=INK)
        bar_width = (right - left) / (len(bars) * 1.5)
        for position, (label, value) in enumerate(bars):
            x0 = left + bar_width * (0.25 + 1.5 * position)
            y0 = bottom - value / high * (bottom - top)
            draw.rectangle([x0, y0, x0 + bar_width, bottom], fill=COLOURS[position])
            draw.text((x0 + bar_width / 2, y0 - 3), _label(value), fill=INK, font=font, anchor="mb")
            draw.text((x0 + bar_width / 2, bottom + 6), label, fill=INK, font=font, anchor="mt")
    return _png(canvas)


def write_artifacts(
    directory: Path,
    synthetic: np.ndarray,
    refined: np.ndarray,
    real: np.ndarray,
    history: Sequence[dict[str, float]],
    *,
    title: str = "",
    marks: Marks = Marks(),  # frozen: one shared default is safe
) -> dict[str, Path]:
    """Write the sample grid and the loss curves into `directory`; name -> path of what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {SAMPLES_NAME: sample_grid(synthetic, refined, real, title=title)}
    if any(k != "step" for entry in history for k in entry):
        curves_title = f"Losses - {title}" if title else "Training losses"
        written[CURVES_NAME] = loss_curves(history, title=curves_title, marks=marks)
    return _write(directory, written)


TITLE_BAND = 24
"""Pixels at the top of the sample grid and the loss curves that hold the title (retitle redraws them)."""


def retitle(path: Path, title: str) -> None:
    """Redraw the title of a picture written by write_artifacts, e.g. once its model has a version."""
    image = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, image.width, TITLE_BAND - 1], fill=BACKGROUND)
    font = _font(14)
    if draw.textlength(title, font=font) > image.width - 8:
        font = _font(10)
    draw.text((image.width // 2, 12), title, fill=INK, font=font, anchor="mm")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(_png(image))
    tmp.replace(path)


def write_evaluation_chart(directory: Path, metrics: dict[str, Any], title: str = "Evaluation") -> Path:
    """Draw `metrics` (trainer.evaluate's) as EVALUATION_NAME in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    return _write(directory, {EVALUATION_NAME: evaluation_chart(metrics, title=title)})[EVALUATION_NAME]


def _write(directory: Path, written: dict[str, bytes]) -> dict[str, Path]:
    paths = {}
    for name, data in written.items():
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(directory / name)
        paths[name] = directory / name
    return paths
