"""32x32 RGB shape classification whose gap is geometry and rendering: clip art against staged objects.

Synthetic: a small flat-coloured circle, square, equilateral triangle or five-pointed star, upright,
at fixed proportions, on a plain background. Real: the same four classes as larger physical objects
on a table seen from above at a slant: flattened by perspective (circles become ellipses), turned a
little, squares with rounded corners, slightly uneven triangles, thin-rayed stars, lit from one
side, casting a soft shadow on a textured cloth (smooth blotches or stripes). Nothing is added on
top of a synthetic picture, so a refiner has to change outlines, size and shading to close the gap.

Outlines are filled by pillow on a canvas 4x the output size and box-filtered down (anti-aliased);
colours and shading are numpy over the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from simulators import camera
from simulators.batch import ImageBatch
from simulators.glyphs import balanced_labels

SIZE = 32
SHAPES = ("circle", "square", "triangle", "star")
_SUPERSAMPLE = 4
CLOTH = 0.15  # std of the second cloth tone around the first (per RGB channel)
Range = tuple[float, float]  # a per-image uniform draw [low, high]
_F = np.float32
_Y = np.arange(SIZE, dtype=_F)[None, :, None]
_X = np.arange(SIZE, dtype=_F)[None, None, :]


def _ring(radii: np.ndarray, start: float) -> np.ndarray:
    """(P, 2) points at `radii` (P,), evenly spaced in angle from `start` degrees (y up)."""
    angles = np.radians(start) + 2 * np.pi * np.arange(len(radii)) / len(radii)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _rounded_rectangle(aspect: float, rounding: float) -> np.ndarray:
    """(P, 2) outline of a rectangle of half-sides (1, aspect) whose corners are arcs of `rounding`."""
    r = rounding * aspect
    corners = ((1 - r, aspect - r, 0), (-(1 - r), aspect - r, 90), (-(1 - r), -(aspect - r), 180))
    points = []
    for cx, cy, start in (*corners, (1 - r, -(aspect - r), 270)):
        angles = np.radians(start + np.linspace(0, 90, 7))
        points.append(np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1))
    return np.concatenate(points)


@dataclass(frozen=True)
class ShapeStyle:
    """How one side of the shape pair poses and paints its objects (ranges: per-image uniform draws)."""

    size: Range  # the shape's radius, pixels
    offset: float  # largest shift of its centre from the image centre, pixels
    rotation: Range = (0.0, 0.0)  # degrees, counter-clockwise
    squash: Range = (1.0, 1.0)  # vertical scale after rotation: a tabletop seen from above at a slant
    rectangle: Range = (1.0, 1.0)  # a square's short / long side
    rounding: Range = (0.0, 0.0)  # a square's corner radius / half its short side
    corner_jitter: float = 0.0  # std-like spread of a triangle's vertex angles, degrees
    radius_jitter: float = 0.0  # relative spread of triangle and star vertex radii
    star_inner: Range = (0.45, 0.45)  # a star's inner / outer radius
    textured: bool = False  # cloth (smooth blotches or stripes) instead of a plain background
    shading: Range = (0.0, 0.0)  # brightness change across the object, per radius, towards the light
    shadow: Range = (0.0, 0.0)  # how much a soft cast shadow darkens the background


SHAPES32 = {
    "synthetic": ShapeStyle(size=(7.5, 9.5), offset=2.0),
    "real": ShapeStyle(
        size=(10.0, 13.0),
        offset=4.0,
        rotation=(-12.0, 12.0),
        squash=(0.7, 0.8),
        rectangle=(0.85, 1.0),
        rounding=(0.15, 0.25),
        corner_jitter=8.0,
        radius_jitter=0.08,
        star_inner=(0.3, 0.38),
        textured=True,
        shading=(0.25, 0.5),
        shadow=(0.3, 0.5),
    ),
}
"""Clip art (small, plain, upright, canonical proportions) against larger staged objects on cloth, seen
from above at a slant (a quarter flatter than wide), with rounded corners and thin-rayed stars."""


def _draw(rng: np.random.Generator, r: Range, count: int | None = None) -> np.ndarray:
    return rng.uniform(r[0], r[1], count) if r[1] > r[0] else np.full(count or (), r[0])


def outline(shape: int, style: ShapeStyle, rng: np.random.Generator) -> np.ndarray:
    """(P, 2) outline of class `shape` in units of its radius, y up, proportions drawn from `style`."""
    if shape == 0:
        return _ring(np.full(40, 0.9), 0)
    if shape == 1:
        rounding = float(_draw(rng, style.rounding))
        corners = _rounded_rectangle(float(_draw(rng, style.rectangle)), rounding)
        return (corners if rounding > 0 else corners[::7]) * 0.82  # no rounding: the four corners
    jitter = 1 + style.radius_jitter * rng.uniform(-1, 1, 5)
    if shape == 2:
        angles = np.radians(90 + 120 * np.arange(3) + style.corner_jitter * rng.uniform(-1, 1, 3))
        return 1.1 * jitter[:3, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    radii = np.stack([jitter, np.full(5, _draw(rng, style.star_inner))], axis=1).reshape(10)
    return _ring(radii * 1.15, 90)


def _pose(points: np.ndarray, size: float, angle: float, squash: float) -> np.ndarray:
    """Rotate by `angle` (radians), then flatten y by `squash`: a flat object seen at a slant."""
    cos, sin = np.cos(angle), np.sin(angle)
    x = points[:, 0] * cos - points[:, 1] * sin
    y = points[:, 0] * sin + points[:, 1] * cos
    return np.stack([x, y * squash], axis=1) * size


def masks(labels: np.ndarray, style: ShapeStyle, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) float32 coverage in [0, 1] of each image's shape, and (N, 2) its centre [x, y]."""
    n = len(labels)
    canvas_side = SIZE * _SUPERSAMPLE
    size, angle = _draw(rng, style.size, n), np.radians(_draw(rng, style.rotation, n))
    squash = _draw(rng, style.squash, n)
    centre = SIZE / 2 + rng.uniform(-style.offset, style.offset, (n, 2))
    out = np.empty((n, SIZE, SIZE), dtype=_F)
    for i, label in enumerate(labels):
        points = _pose(outline(int(label), style, rng), size[i], angle[i], squash[i])
        xy = (centre[i] + points * np.array([1.0, -1.0])) * _SUPERSAMPLE  # y up -> image rows down
        canvas = Image.new("L", (canvas_side, canvas_side), 0)
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in xy], fill=255)
        out[i] = np.asarray(canvas.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=_F) / 255
    return out, centre


def _colours(n: int, rng: np.random.Generator, away_from: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) random RGB in [0, 1]; with `away_from` (N, 3), redrawn until at least 0.5 from it."""
    colours = rng.uniform(0.05, 0.95, (n, 3))
    if away_from is None:
        return colours
    for _ in range(20):
        close = np.linalg.norm(colours - away_from, axis=1) < 0.5
        if not close.any():
            break
        colours[close] = rng.uniform(0.05, 0.95, (int(close.sum()), 3))
    return colours


def _smooth_field(n: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """(N, H, W) smooth noise in about [0, 1]: a (cells x cells) random grid, bilinearly upsampled."""
    coarse = rng.uniform(0, 1, (n, cells, cells)).astype(_F)
    pos = np.linspace(0, cells - 1, SIZE)
    left = np.minimum(pos.astype(int), cells - 2)
    up = np.zeros((SIZE, cells), dtype=_F)  # (H, cells) interpolation weights
    up[np.arange(SIZE), left] = 1 - (pos - left)
    up[np.arange(SIZE), left + 1] = pos - left
    return up @ coarse @ up.T


def _cloth(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) textured backgrounds, half blotches and half stripes, and (N, 3) their mean colour."""
    a = _colours(n, rng)
    b = np.clip(a + rng.normal(0, CLOTH, (n, 3)), 0, 1)  # a second tone near the first: cloth, not clutter
    blotches = _smooth_field(n, int(rng.integers(3, 7)), rng)
    angle = rng.uniform(0, np.pi, (n, 1, 1))
    period = rng.uniform(4.0, 10.0, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    wave = np.sin(2 * np.pi * (_X * np.cos(angle) + _Y * np.sin(angle)) / period + phase)
    stripes = np.clip(wave * 2, -1, 1) * 0.5 + 0.5
    mix = np.where(rng.random((n, 1, 1)) < 0.5, blotches, stripes).astype(_F)[..., None]
    return (a[:, None, None] * (1 - mix) + b[:, None, None] * mix).astype(_F), (a + b) / 2


def render_shapes(labels: np.ndarray, style: ShapeStyle, rng: np.random.Generator) -> np.ndarray:
    """(N, 32, 32, 3) uint8 pictures of shapes `labels` (N,) drawn in `style`."""
    n = len(labels)
    cover, centre = masks(labels, style, rng)
    m = cover[..., None]  # (N, H, W, 1)
    if style.textured:
        background, mean = _cloth(n, rng)
    else:
        mean = _colours(n, rng)
        background = np.broadcast_to(mean[:, None, None], (n, SIZE, SIZE, 3)).astype(_F)
    colour = _colours(n, rng, away_from=mean)
    light = rng.uniform(0, 2 * np.pi, n)
    if style.shadow[1] > 0:
        # A soft shadow: the outline shifted away from the light, blurred, darkening the background.
        dx, dy = np.rint(-2 * np.cos(light)).astype(int), np.rint(2 * np.sin(light)).astype(int)
        shadow = np.stack([np.roll(c, (y, x), axis=(0, 1)) for c, x, y in zip(cover, dx, dy, strict=True)])
        shadow = camera.blur(shadow, np.full(n, 1.2, _F), np.full(n, 1.2, _F))
        background = background * (1 - _draw(rng, style.shadow, n)[:, None, None, None] * shadow[..., None])
    # Lit from `light`: brighter on that side, darker on the other, `shading` per 10 pixels.
    along = (_X - centre[:, 0, None, None]) * np.cos(light)[:, None, None]
    along = along - (_Y - centre[:, 1, None, None]) * np.sin(light)[:, None, None]
    shade = np.clip(1 + _draw(rng, style.shading, n)[:, None, None] * along / 10, 0.3, 1.5)[..., None]
    image = background * (1 - m) + np.clip(colour[:, None, None] * shade, 0, 1) * m
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def make_shapes(side: str, count: int, rng: np.random.Generator) -> ImageBatch:
    """`count` shapes, classes balanced, drawn in the style of `side` ("synthetic" or "real")."""
    labels = balanced_labels(count, len(SHAPES), rng)
    images = render_shapes(labels, SHAPES32[side], rng)
    annotations = [{"shape": int(k), "shape_name": SHAPES[int(k)]} for k in labels]
    return ImageBatch(images=images, annotations=annotations)
