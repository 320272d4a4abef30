"""Digit pairs whose gap is the pen, not the camera: a clean font against handwriting-like strokes.

Both sides draw the skeletons of `simulators.strokes` on a canvas `supersample` times the output size
(pillow) and shrink it with a box filter, which anti-aliases the strokes. The synthetic side is a
font: strokes of one width along the exact skeleton, upright. The real side is a different renderer:
the skeleton is bent by a smooth wobble, slanted, rotated and rescaled, and inked by a pen whose
width changes along the stroke (a round pen with pressure, or a broad nib whose width depends on the
stroke's direction), then softened by a little blur. Nothing is added on top of a synthetic image, so
a refiner has to change stroke width and shape to close the gap.

Ink is bright on a black background (0), as in MNIST.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from simulators import camera
from simulators.batch import ImageBatch
from simulators.strokes import DIGITS, SKELETONS, subdivide

Range = tuple[float, float]  # a per-image uniform draw [low, high]


@dataclass(frozen=True)
class GlyphStyle:
    """How one side of a glyph pair draws digits; lengths are in output pixels unless said otherwise."""

    size: int  # output side (square images)
    supersample: int  # the canvas is size * supersample pixels wide
    height: Range  # glyph box height, a fraction of the image side
    aspect: Range  # glyph box width / height
    width: Range  # pen width (a broad nib: its widest mark)
    slant: Range = (0.0, 0.0)  # shear: the top of the glyph moves right by slant * box height
    rotation: Range = (0.0, 0.0)  # degrees, counter-clockwise
    shift: float = 0.0  # largest offset of the glyph centre, a fraction of the image side
    wobble: float = 0.0  # size of the smooth bend of the skeleton, a fraction of the box height
    pressure: float = 0.0  # relative change of a round pen's width along a stroke
    nib: Range | None = None  # broad-nib angle in degrees; None: a round pen
    thin: Range = (1.0, 1.0)  # a nib's thinnest mark (moving along the nib) / its widest
    blur: Range = (0.0, 0.0)  # Gaussian std
    ink: Range = (1.0, 1.0)  # stroke brightness, 1 = 255


GLYPHS8 = {
    "synthetic": GlyphStyle(size=8, supersample=4, height=(0.8, 0.9), aspect=(0.6, 0.7), width=(1.0, 1.0)),
    "real": GlyphStyle(
        size=8,
        supersample=4,
        height=(0.75, 0.92),
        aspect=(0.6, 0.85),
        width=(1.2, 1.8),
        slant=(-0.1, 0.35),
        rotation=(-10.0, 10.0),
        shift=0.05,
        wobble=0.045,
        pressure=0.25,
        blur=(0.15, 0.35),
        ink=(0.75, 1.0),
    ),
}
"""8x8 digits: one-pixel font strokes against thick, bent, slanted pen strokes."""

GLYPHS28 = {
    "synthetic": GlyphStyle(
        size=28, supersample=3, height=(0.66, 0.76), aspect=(0.7, 0.8), width=(2.4, 2.4), shift=0.05
    ),
    "real": GlyphStyle(
        size=28,
        supersample=3,
        height=(0.72, 0.88),
        aspect=(0.45, 0.6),
        width=(3.2, 4.6),
        slant=(0.1, 0.35),
        rotation=(-6.0, 6.0),
        shift=0.05,
        wobble=0.03,
        nib=(25.0, 55.0),
        thin=(0.2, 0.35),
        blur=(0.3, 0.7),
    ),
}
"""28x28 digits: an upright geometric font of uniform strokes against a slanted broad-nib hand with
thick and thin strokes and taller, narrower letterforms."""


def balanced_labels(count: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) int64 labels, every class count // classes or one more times, in random order."""
    return rng.permutation(np.arange(count) % classes).astype(np.int64)


def _draw(rng: np.random.Generator, r: Range, count: int) -> np.ndarray:
    return rng.uniform(r[0], r[1], count) if r[1] > r[0] else np.full(count, r[0])


def _place(style: GlyphStyle, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-image placement and pen parameters, (N,) each, lengths in canvas pixels."""
    scale = float(style.size * style.supersample)
    height = _draw(rng, style.height, count) * scale
    return {
        "height": height,
        "width": height * _draw(rng, style.aspect, count),
        "slant": _draw(rng, style.slant, count),
        "rotation": np.radians(_draw(rng, style.rotation, count)),
        "cx": scale / 2 + rng.uniform(-1, 1, count) * style.shift * scale,
        "cy": scale / 2 + rng.uniform(-1, 1, count) * style.shift * scale,
        "pen": _draw(rng, style.width, count) * style.supersample,
        "nib": np.radians(_draw(rng, style.nib, count)) if style.nib else np.zeros(count),
        "thin": _draw(rng, style.thin, count),
        # A smooth bend: two sinusoids per axis over the unit box, random direction and phase.
        "wave": rng.uniform(-2, 2, (count, 2, 2, 2)),  # (N, axis, wave, coord), half-cycles per box
        "phase": rng.uniform(0, 2 * np.pi, (count, 2, 2)),
        "amp": rng.normal(0, style.wobble, (count, 2, 2)),
    }


def _to_canvas(points: np.ndarray, p: dict[str, np.ndarray], i: int, style: GlyphStyle) -> np.ndarray:
    """(P, 2) unit-box points of image i -> canvas pixels, bent, slanted and rotated."""
    if style.wobble > 0:
        # (P, 2 axes, 2 waves): each wave is sin(k . point + phase) along one axis.
        k = p["wave"][i] * np.pi  # (2 axes, 2 waves, 2 coords)
        arg = np.einsum("pc,awc->paw", points, k) + p["phase"][i][None]
        points = points + (p["amp"][i][None] * np.sin(arg)).sum(axis=2)
    x = (points[:, 0] - 0.5) * p["width"][i]
    y = (points[:, 1] - 0.5) * p["height"][i]
    x = x - p["slant"][i] * y  # y is down: the top (y < 0) leans right for slant > 0
    cos, sin = np.cos(p["rotation"][i]), np.sin(p["rotation"][i])
    return np.stack([p["cx"][i] + x * cos + y * sin, p["cy"][i] - x * sin + y * cos], axis=1)


def _ink_round(draw: ImageDraw.ImageDraw, points: np.ndarray, widths: np.ndarray, fill: int) -> None:
    """A round pen: segments of varying width with a disc at every point (round joints and ends)."""
    for j in range(len(points)):
        x, y = points[j]
        r = widths[j] / 2
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        if j + 1 < len(points):
            w = max(round((widths[j] + widths[j + 1]) / 2), 1)
            draw.line([tuple(points[j]), tuple(points[j + 1])], fill=fill, width=w)


def _ink_nib(draw: ImageDraw.ImageDraw, points: np.ndarray, pen: float, angle: float, thin: float) -> None:
    """A broad nib held at `angle`: each segment sweeps a parallelogram, wide across the nib, thin along."""
    half = np.array([np.cos(angle), -np.sin(angle)]) * pen / 2
    for a, b in itertools.pairwise(points):
        corners = [a + half, b + half, b - half, a - half]
        draw.polygon([tuple(c) for c in corners], fill=255)
    draw.line([tuple(q) for q in points], fill=255, width=max(round(pen * thin), 1), joint="curve")


def render_glyphs(digits: np.ndarray, style: GlyphStyle, rng: np.random.Generator) -> np.ndarray:
    """(N, size, size, 1) uint8 images of `digits` (N,) drawn in `style`."""
    count, side = len(digits), style.size * style.supersample
    p = _place(style, count, rng)
    pressure_phase = rng.uniform(0, 2 * np.pi, (count, 4))
    out = np.empty((count, style.size, style.size), dtype=np.float32)
    step = 0.12 if style.wobble > 0 or style.pressure > 0 else 1.0
    for i, digit in enumerate(digits):
        canvas = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(canvas)
        for s, stroke in enumerate(SKELETONS[int(digit)]):
            points = _to_canvas(subdivide(stroke, step), p, i, style)
            if style.nib:
                _ink_nib(draw, points, p["pen"][i], p["nib"][i], p["thin"][i])
            elif style.pressure > 0:
                t = np.linspace(0, 2 * np.pi, len(points))
                widths = p["pen"][i] * (1 + style.pressure * np.sin(t + pressure_phase[i, s % 4]))
                _ink_round(draw, points, widths, 255)
            else:
                width = max(round(p["pen"][i]), 1)
                draw.line([tuple(q) for q in points], fill=255, width=width, joint="curve")
        small = canvas.resize((style.size, style.size), Image.Resampling.BOX)  # area average: anti-aliased
        out[i] = np.asarray(small, dtype=np.float32)
    if style.blur[1] > 0:
        sigma = _draw(rng, style.blur, count).astype(np.float32)
        out = camera.blur(out, sigma, sigma)
    out *= _draw(rng, style.ink, count).astype(np.float32)[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)[..., None]


def make_glyphs(styles: dict[str, GlyphStyle], side: str, count: int, rng: np.random.Generator) -> ImageBatch:
    """`count` digits, classes balanced, drawn in `styles[side]` ("synthetic" or "real")."""
    digits = balanced_labels(count, DIGITS, rng)
    images = render_glyphs(digits, styles[side], rng)
    return ImageBatch(images=images, annotations=[{"digit": int(d)} for d in digits])
