"""Digit skeletons: the centre lines a pen follows for 0-9, shared by every glyph renderer.

Both sides of a glyph pair draw the same skeletons, so a label means the same shape on each; what
differs is how a renderer puts ink along them (see `simulators.glyphs`).

Coordinates are in the glyph's unit box: x right, y down, (0, 0) its top-left, (1, 1) its bottom-right.
"""

from __future__ import annotations

import itertools

import numpy as np

DIGITS = 10
Stroke = np.ndarray  # (P, 2) float64 points [x, y] one pen movement passes through, in order


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> Stroke:
    """Points on an elliptical arc from angle `start` to `end` (degrees; 0 = right, 90 = down)."""
    steps = max(int(abs(end - start) / 15), 2) + 1  # one point per 15 degrees keeps curves round
    angles = np.radians(np.linspace(start, end, steps))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def line(*points: tuple[float, float]) -> Stroke:
    """A polyline through `points`."""
    return np.array(points, dtype=np.float64)


def _skeletons() -> tuple[tuple[Stroke, ...], ...]:
    """One tuple of strokes per digit, written as a pen would: few strokes, curves as arcs."""
    two_bowl = arc(0.5, 0.3, 0.32, 0.25, 195, 385)
    three_top = arc(0.47, 0.28, 0.3, 0.23, 210, 450)
    five_bowl = arc(0.46, 0.66, 0.33, 0.28, 230, 490)
    return (
        (arc(0.5, 0.5, 0.34, 0.46, -90, 270),),  # 0: one closed oval
        (line((0.3, 0.24), (0.55, 0.04), (0.55, 0.96)),),  # 1: flag and stem
        (np.concatenate([two_bowl, line((0.16, 0.96), (0.88, 0.96))]),),  # 2: bowl, diagonal, base
        (three_top, arc(0.47, 0.72, 0.34, 0.25, -90, 150)),  # 3: two bowls meeting at mid-height
        (line((0.66, 0.96), (0.66, 0.04), (0.12, 0.68), (0.9, 0.68)),),  # 4: closed-top four
        (np.concatenate([line((0.84, 0.04), (0.24, 0.04), (0.2, 0.46)), five_bowl[1:]]),),  # 5
        (np.concatenate([arc(0.8, 0.62, 0.62, 0.6, 242, 180), arc(0.5, 0.69, 0.3, 0.27, 180, 540)]),),  # 6
        (line((0.12, 0.04), (0.88, 0.04), (0.4, 0.96)),),  # 7: bar and diagonal
        (arc(0.5, 0.26, 0.26, 0.22, 90, 450), arc(0.5, 0.71, 0.32, 0.25, -90, 270)),  # 8: two loops
        (np.concatenate([arc(0.5, 0.31, 0.3, 0.27, 0, 360), line((0.8, 0.31), (0.62, 0.96))]),),  # 9
    )


SKELETONS = _skeletons()
"""SKELETONS[d]: the strokes of digit d in the unit box."""


def subdivide(stroke: Stroke, step: float) -> Stroke:
    """The same polyline with points at most `step` apart, so a wobble can bend straight parts."""
    out = [stroke[:1]]
    for start, end in itertools.pairwise(stroke):
        pieces = max(int(np.ceil(np.linalg.norm(end - start) / step)), 1)
        t = np.linspace(0, 1, pieces + 1)[1:, None]
        out.append(start + t * (end - start))
    return np.concatenate(out)
