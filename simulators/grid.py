"""Contact sheets: labelled rows of small images, upscaled with nearest neighbour (pillow)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def image_grid(
    rows: Sequence[tuple[str, np.ndarray]], scale: int = 4, columns: int = 8, gutter: int = 4
) -> Image.Image:
    """One picture of `rows`, each (label, images uint8 (N, H, W, C)), `columns` images per line."""
    if not rows:
        raise ValueError("a grid needs at least one row of images")
    height, width, channels = rows[0][1].shape[1:]
    font = ImageFont.load_default()
    label_width = max(
        int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(label, font=font)) for label, _ in rows
    )
    label_width += 2 * gutter
    cell_w, cell_h = width * scale + gutter, height * scale + gutter
    lines = [
        (label, images[i : i + columns]) for label, images in rows for i in range(0, len(images), columns)
    ]
    mode = "L" if channels == 1 else "RGB"
    white = 255 if mode == "L" else (255, 255, 255)  # a bare 255 in RGB is red
    sheet = Image.new(mode, (label_width + columns * cell_w + gutter, len(lines) * cell_h + gutter), white)
    draw = ImageDraw.Draw(sheet)
    previous = None
    for line, (label, images) in enumerate(lines):
        top = gutter + line * cell_h
        if label != previous:
            draw.text((gutter, top + cell_h // 2), label, fill=0, font=font, anchor="lm")
            previous = label
        for column, image in enumerate(images):
            tile = Image.fromarray(image[:, :, 0] if channels == 1 else image, mode)
            tile = tile.resize((width * scale, height * scale), Image.Resampling.NEAREST)
            sheet.paste(tile, (label_width + column * cell_w, top))
    return sheet


def save_grid(
    path: str | Path, rows: Sequence[tuple[str, np.ndarray]], scale: int = 4, columns: int = 8
) -> Path:
    """Write `image_grid(rows)` as a PNG at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(rows, scale=scale, columns=columns).save(path, format="PNG", optimize=True)
    return path
