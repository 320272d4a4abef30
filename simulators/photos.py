"""Real side of the horizon pair: crops of real photographs, rolled by `tilt` like the synthetic scenes.

The photographs are ones the scikit-image wheel ships in `skimage/data/` (freely licensed pictures
with a clear up direction: an astronaut, a cat, a cup, a motorcycle, a rocket). Textures,
microscopy, sky surveys and drawings are left out: they have no up. So is camera.png (a cameraman
with a tripod): models trained on the procedural scenes read its crops turning the wrong way
(correlation -0.6 to -0.98 between prediction and tilt for every scene renderer tried, after 300
or 1000 training steps; its big dark coat moves like a ground does the other way), so its crops
scored worse than a constant (error 20-34 degrees against 15): an adversarial photo rather than a
gap a refiner could close. The folder is found without importing scikit-image (slow, and it pulls
in scipy); pillow reads the files.

Each photograph is cut into a checkerboard of square cells (CELL of its shorter side): windows of the
"real" split are centred in the dark cells, windows of "real_heldout" in the light ones, so no
held-out crop is framed like a training crop. The windows are large (WINDOW of the shorter side, so
that a crop shows enough of the scene to tell its up), so held-out crops overlap training ones in
content: the held-out split measures how well a model reads tilt from new framings, scales and
tilts of the same five scenes, not from new scenes. (Splitting each photo into a left half for
"real" and a right half for "real_heldout" was tried: a model trained on real crops of one half
then did worse than a constant on the other, so the pair had no usable oracle.)

A crop: a random square window of `side` photo pixels, taken with a margin of sqrt(2) so that no
rotation leaves empty corners, resized so the window spans 64 pixels (anti-aliased), rotated
counter-clockwise by `tilt`, and centre-cropped to 64x64.
"""

from __future__ import annotations

import importlib.util
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from simulators.batch import ImageBatch
from simulators.horizon import SIZE, TILT

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
WINDOW = (0.45, 0.7)  # crop window side, a fraction of the photo's shorter side (uniform)
CELL = 0.125  # checkerboard cell side, a fraction of the photo's shorter side
SHORT_SIDE = 256  # photos are shrunk to this shorter side once, when loaded


class PhotosMissing(RuntimeError):
    """The photographs of the horizon pair's real side cannot be found."""


def photo_folder() -> Path:
    """scikit-image's bundled `data/` folder, found without importing scikit-image."""
    hint = "the horizon64 pair's real side crops the photos scikit-image ships: pip install scikit-image"
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise PhotosMissing(f"scikit-image is not installed; {hint}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [name for name in PHOTOS if not (folder / name).is_file()]
    if missing:
        raise PhotosMissing(f"{folder} lacks {', '.join(missing)}; {hint}")
    return folder


@cache
def load_photos(folder: Path) -> tuple[Image.Image, ...]:
    """The PHOTOS as RGB pillow images (grey ones copied to three channels), read once per folder.

    Each is shrunk so its shorter side is SHORT_SIDE pixels: the smallest window still spans more
    than 64 of them, and cropping and resizing the smaller picture is several times faster.
    """
    photos = []
    for name in PHOTOS:
        with Image.open(folder / name) as photo:
            rgb = photo.convert("RGB")
        scale = SHORT_SIDE / min(rgb.size)
        size = (round(rgb.size[0] * scale), round(rgb.size[1] * scale))
        photos.append(rgb.resize(size, Image.Resampling.LANCZOS) if scale < 1 else rgb)
    return tuple(photos)


def centres(photo: Image.Image, footprint: np.ndarray, heldout: bool, rng: np.random.Generator) -> np.ndarray:
    """(N, 2) window centres [x, y] in `photo` for footprints (N,): inside it, on one split's cells."""
    width, height = photo.size
    cell = CELL * min(width, height)
    half = footprint[:, None] / 2
    low, high = half, np.array([width, height])[None, :] - half
    out = low + (high - low) * rng.uniform(0, 1, (len(footprint), 2))
    for _ in range(200):  # each redraw lands on the right colour half the time
        wrong = (np.floor(out / cell).sum(axis=1) % 2 == 1) != heldout
        if not wrong.any():
            return out
        out[wrong] = low[wrong] + (high - low)[wrong] * rng.uniform(0, 1, (int(wrong.sum()), 2))
    raise AssertionError("no window centre found on the split's cells")  # about 2**-200 per window


def crop(photo: Image.Image, x: int, y: int, side: float, tilt: float) -> np.ndarray:
    """(64, 64, 3) uint8: the window of `side` centred in its footprint square at corner (x, y), rolled."""
    footprint = math.ceil(side * math.sqrt(2)) + 1
    region = photo.crop((x, y, x + footprint, y + footprint))
    scaled = max(round(footprint * SIZE / side), SIZE + 2)
    region = region.resize((scaled, scaled), Image.Resampling.BILINEAR)  # shrinking: anti-aliased
    region = region.rotate(tilt, resample=Image.Resampling.BICUBIC)
    left = (scaled - SIZE) // 2
    return np.asarray(region.crop((left, left, left + SIZE, left + SIZE)))


def make_photo_crops(count: int, rng: np.random.Generator, heldout: bool) -> ImageBatch:
    """`count` rolled photo crops, annotated with `tilt` (degrees), the photo, and the window [x, y, side]
    (its centre and side in photo pixels).

    heldout: windows centred on the light cells of each photo (the "real_heldout" split), else the dark.
    """
    photos = load_photos(photo_folder())
    which = rng.integers(0, len(photos), count)
    tilt = np.round(rng.uniform(-TILT, TILT, count), 3)
    fraction = rng.uniform(*WINDOW, count)
    images = np.empty((count, SIZE, SIZE, 3), dtype=np.uint8)
    annotations: list[dict[str, Any]] = [{} for _ in range(count)]
    for j, photo in enumerate(photos):
        (index,) = np.nonzero(which == j)
        sides = np.round(fraction[index] * min(photo.size), 2)
        footprints = np.ceil(sides * math.sqrt(2)) + 1
        corners = np.floor(centres(photo, footprints, heldout, rng) - footprints[:, None] / 2).astype(int)
        for i, side, footprint, (x, y) in zip(index, sides, footprints, corners, strict=True):
            images[i] = crop(photo, int(x), int(y), float(side), float(tilt[i]))
            centre = [float(x + footprint / 2), float(y + footprint / 2)]
            annotations[i] = {"tilt": float(tilt[i]), "photo": PHOTOS[j], "window": [*centre, float(side)]}
    return ImageBatch(images=images, annotations=annotations)
