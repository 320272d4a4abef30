"""Synthetic side of the horizon pair: procedural outdoor scenes seen by a camera rolled by `tilt`.

A scene has a canonical up: a sky, a ground below a straight horizon (with furrows parallel to it),
and upright objects standing on the ground, nearer ones lower and larger: poles, buildings with a
grid of windows (half with a pitched roof), trees (round crowns or conifers). The camera rolls by
`tilt` degrees (uniform in [-TILT, TILT]); tilt > 0 turns the picture counter-clockwise, as
`PIL.Image.rotate(tilt)` does, so the scene's up direction leans left. The real side
(`simulators.photos`) rolls photographs alike.

The scenes are made so that what tells up in them is geometry, as in photographs, and not a layout
of light: the horizon is often off-centre or out of the picture, objects are often tall enough to
fill it, skies may be darker than the ground and a quarter of the scenes are grey. (With a bright
sky always above a dark ground, a model trained here read photographs by where their dark masses
were, and did worse than a constant on them.)

Rendered with numpy over a chunk of images at once, channels first: every pixel is mapped back into
the upright scene, and each shape is a signed distance, anti-aliased over one pixel.
"""

from __future__ import annotations

import numpy as np

from simulators.batch import ImageBatch

SIZE = 64
TILT = 30.0  # degrees: labels are uniform in [-TILT, TILT]
OBJECTS = 6  # object slots per scene, each present with probability 0.7
KINDS = (0.3, 0.45, 0.25)  # probabilities of a pole, a building, a tree
_CHUNK = 64  # images rendered at once: keeps the (chunk, 64, 64) temporaries in cache
_F = np.float32
_C = (SIZE - 1) / 2
_X = (np.arange(SIZE, dtype=_F) - _C)[None, None, :]  # right
_Y = (_C - np.arange(SIZE, dtype=_F))[None, :, None]  # up
_OBJECT_FIELDS = (
    *("u", "base", "half_width", "top", "crown", "window_u", "window_v", "window_dark", "top_light"),
    *("gable_width", "gable_height"),
)
_COLOURS = ("sky_top", "sky_low", "ground_far", "ground_near", "body_colour", "crown_colour", "gable_colour")

Params = dict[str, np.ndarray]


def _uniform(rng: np.random.Generator, ranges: list[tuple[float, float]], n: int) -> np.ndarray:
    """(N, len(ranges)) independent uniform draws, one column per (low, high)."""
    return np.stack([rng.uniform(lo, hi, n) for lo, hi in ranges], axis=1)


def _objects(n: int, rng: np.random.Generator) -> Params:
    """(N, OBJECTS) shape fields and (N, OBJECTS, 3) colours; absent objects have zero width."""
    k = OBJECTS
    depth = np.sort(rng.uniform(0, 1, (n, k)), axis=1)  # far objects first: nearer ones paint over them
    scale = 0.5 + 1.6 * depth
    kind = rng.choice(3, (n, k), p=KINDS)
    present = rng.random((n, k)) < 0.7
    pole, building, tree = kind == 0, kind == 1, kind == 2
    half_width = np.select([pole, building], [rng.uniform(0.8, 3, (n, k)), rng.uniform(3, 14, (n, k))], 1.0)
    height = np.select(
        [pole, building],
        [rng.uniform(20, 70, (n, k)), rng.uniform(8, 50, (n, k))],
        rng.uniform(5, 10, (n, k)),
    )
    half_width = np.maximum(half_width * scale, 0.7) * present  # far poles stay visible
    grey = rng.uniform(0.1, 0.9, (n, k, 1)) * np.array([1.0, 0.95, 0.9])
    walls = rng.uniform(0.25, 0.85, (n, k, 3))
    trunk = rng.uniform(0.2, 0.35, (n, k, 1)) * np.array([1.0, 0.75, 0.5])
    leaves = _uniform(rng, [(0.1, 0.35), (0.3, 0.6), (0.05, 0.25)], n * k).reshape(n, k, 3)
    # Gables, a triangle on top with its apex up: a pitched roof on half the buildings, and the
    # crown of half the trees (conifers); the other trees have a round crown.
    roofed = building & (rng.random((n, k)) < 0.5)
    conifer = tree & (rng.random((n, k)) < 0.5)
    crown = rng.uniform(4, 8, (n, k)) * scale * present
    roof = rng.uniform(0.15, 0.6, (n, k, 1)) * np.array([1.0, 0.55, 0.45])
    return {
        "u": rng.uniform(-44, 44, (n, k)),
        "base": 1.5 + 30 * depth,  # how far below the horizon an object stands
        "half_width": half_width,
        "top": height * scale,
        "crown": np.where(tree & ~conifer, crown, 0.0),
        "body_colour": np.where(pole[..., None], grey, np.where(building[..., None], walls, trunk)),
        "crown_colour": leaves,
        # Buildings: a grid of darker windows (pitch across, pitch up, darkening); others none.
        "window_u": rng.uniform(2.5, 5, (n, k)) * scale,
        "window_v": rng.uniform(3, 6, (n, k)) * scale,
        "window_dark": np.where(building, rng.uniform(0.25, 0.6, (n, k)), 0.0),
        "top_light": rng.uniform(0.0, 0.3, (n, k)),  # lit from the sky: brighter towards the top
        "gable_width": np.select([roofed, conifer], [half_width * 1.1, crown], 0.0),
        "gable_height": np.select(
            [roofed, conifer],
            [half_width * rng.uniform(0.4, 1.0, (n, k)), crown * rng.uniform(2, 3.5, (n, k))],
            1.0,
        ),
        "gable_colour": np.where(conifer[..., None], leaves, roof),
    }


def sample_scenes(count: int, rng: np.random.Generator) -> Params:
    """Per-scene parameters: (N,) scalars, (N, 3) colours and the `_objects` fields."""
    n = count
    sky_top = _uniform(rng, [(0.15, 0.6), (0.35, 0.75), (0.6, 1.0)], n)
    sky_low = sky_top + (1 - sky_top) * rng.uniform(0.3, 0.7, (n, 1))  # haze pales the sky downwards
    ground = _uniform(rng, [(0.2, 0.55), (0.25, 0.55), (0.08, 0.35)], n)
    params = {
        "tilt": np.round(rng.uniform(-TILT, TILT, n), 3),
        # Often off-centre, sometimes out of the picture: then only the objects tell where up is.
        "horizon": rng.uniform(-44, 44, n),
        # Light varies so that it tells little about up: dusk skies, sand or snow brighter than the sky.
        "sky_top": sky_top * rng.uniform(0.25, 1.0, (n, 1)),
        "sky_low": sky_low * rng.uniform(0.25, 1.0, (n, 1)),
        "ground_far": ground + (sky_low - ground) * rng.uniform(0.1, 0.4, (n, 1)),
        "ground_near": ground * rng.uniform(0.6, 1.0, (n, 1)),
        "furrows": rng.uniform(0, 0.12, n) * (rng.random(n) < 0.6),  # lines parallel to the horizon
        "furrow_pitch": rng.uniform(30, 90, n),
        "fog": rng.uniform(0, 0.3, n),  # the whole picture fades a little towards one colour
        "fog_colour": rng.uniform(0.2, 0.9, (n, 3)),
        **_objects(n, rng),
    }
    brighten = rng.uniform(0.6, 2.2, (n, 1))
    for name in ("ground_far", "ground_near"):
        params[name] = np.clip(params[name] * brighten, 0, 1)
    saturation = np.where(rng.random(n) < 0.25, 0.0, rng.uniform(0.4, 1.2, n))  # a quarter grey
    for name in _COLOURS:
        colour = params[name]
        grey_level = colour.mean(axis=-1, keepdims=True)
        shape = (n,) + (1,) * (colour.ndim - 1)
        params[name] = np.clip(grey_level + saturation.reshape(shape) * (colour - grey_level), 0, 1)
    # The tilt stays float64: the label written is exactly the angle rendered.
    return {
        name: np.asarray(value, dtype=np.float64 if name == "tilt" else _F) for name, value in params.items()
    }


def _soft(distance: np.ndarray) -> np.ndarray:
    """Coverage from a signed distance in pixels (> 0 inside): one-pixel anti-aliasing."""
    return np.clip(distance + _F(0.5), 0, 1)


def _colour(p: Params, name: str, rows: np.ndarray | slice = slice(None), k: int | None = None) -> np.ndarray:
    """(3, M, 1, 1) view of colour `name` for `rows` (of object k): channels first, so that numpy's
    inner loops run along image rows rather than over three channels (4x faster)."""
    value = p[name][rows] if k is None else p[name][rows, k]
    return value.T[:, :, None, None]


def _background(p: Params, u: np.ndarray, above: np.ndarray) -> np.ndarray:
    """(3, N, H, W) sky over ground; `above` (N, H, W) is each pixel's height over the horizon."""
    below = np.maximum(-above, 0)
    # Furrows: stripes parallel to the horizon, closer together towards it (perspective), faded there.
    furrow = np.sin(p["furrow_pitch"][:, None, None] / (below + 2)) * np.clip(below / 6, 0, 1)
    ground_t = np.clip(below / 30, 0, 1)
    ground = _colour(p, "ground_far") + (_colour(p, "ground_near") - _colour(p, "ground_far")) * ground_t
    ground *= 1 + p["furrows"][:, None, None] * furrow
    sky = _colour(p, "sky_low") + (_colour(p, "sky_top") - _colour(p, "sky_low")) * np.clip(above / 40, 0, 1)
    return ground + (sky - ground) * _soft(above)


def _draw_object(image: np.ndarray, p: Params, k: int, u: np.ndarray, above: np.ndarray) -> None:
    """Paint object slot k over `image` (3, N, H, W) in place, in the scenes that have one."""
    rows = np.flatnonzero(p["half_width"][:, k] > 0)
    o = {name: p[name][rows, k, None, None] for name in _OBJECT_FIELDS}  # (M, 1, 1) each
    rise = above[rows] + o["base"]  # (M, H, W) height over the object's foot
    across = np.abs(u[rows] - o["u"])  # (M, H, W) distance from its axis
    body = _soft(np.minimum(np.minimum(o["half_width"] - across, rise), o["top"] - rise))
    light = 1 + o["top_light"] * (np.clip(rise / o["top"], 0, 1) - 0.5)
    windowed = np.flatnonzero(o["window_dark"][:, 0, 0] > 0)
    if len(windowed):
        wu, wv = o["window_u"][windowed], o["window_v"][windowed]
        in_u = _soft(wu * (0.22 - np.abs(np.mod(across[windowed] / wu, 1) - 0.5)))
        in_v = _soft(wv * (0.2 - np.abs(np.mod(rise[windowed] / wv, 1) - 0.5)))
        light[windowed] -= o["window_dark"][windowed] * in_u * in_v
    layer = image[:, rows]  # (3, M, H, W) copy, written back at the end
    layer += body * (_colour(p, "body_colour", rows, k) * light - layer)
    crowned = np.flatnonzero(o["crown"][:, 0, 0] > 0)
    if len(crowned):
        radius = o["crown"][crowned]
        height = rise[crowned] - o["top"][crowned] - 0.7 * radius
        crown = _soft(radius - np.sqrt(across[crowned] ** 2 + height * height))
        layer[:, crowned] += crown * (_colour(p, "crown_colour", rows[crowned], k) - layer[:, crowned])
    gabled = np.flatnonzero(o["gable_width"][:, 0, 0] > 0)
    if len(gabled):
        width, height = o["gable_width"][gabled], o["gable_height"][gabled]
        up = rise[gabled] - o["top"][gabled]  # height over the gable's base
        side = (width - across[gabled] - up * width / height) / np.sqrt(1 + (width / height) ** 2)
        gable = _soft(np.minimum(up + 0.5, side))
        layer[:, gabled] += gable * (_colour(p, "gable_colour", rows[gabled], k) - layer[:, gabled])
    image[:, rows] = layer


def render(p: Params) -> np.ndarray:
    """(3, N, 64, 64) float32 in [0, 1], channels first, for one chunk of scene parameters."""
    theta = np.radians(p["tilt"]).astype(_F)[:, None, None]
    cos, sin = np.cos(theta), np.sin(theta)
    # Scene coordinates of every pixel: the picture is the scene turned counter-clockwise by tilt.
    u = _X * cos + _Y * sin  # (N, H, W) along the horizon
    above = _Y * cos - _X * sin - p["horizon"][:, None, None]  # (N, H, W) height over the horizon
    image = _background(p, u, above)
    for k in range(OBJECTS):
        _draw_object(image, p, k, u, above)
    image += p["fog"][:, None, None] * (_colour(p, "fog_colour") - image)
    return np.clip(image, 0, 1)


def make_scenes(count: int, rng: np.random.Generator) -> ImageBatch:
    """`count` tilted scenes, (N, 64, 64, 3) uint8, annotated with their `tilt` in degrees."""
    p = sample_scenes(count, rng)
    images = np.empty((count, SIZE, SIZE, 3), dtype=np.uint8)
    for start in range(0, count, _CHUNK):
        chunk = {name: value[start : start + _CHUNK] for name, value in p.items()}
        pixels = np.rint(render(chunk) * 255).astype(np.uint8)  # (3, n, H, W)
        images[start : start + _CHUNK] = pixels.transpose(1, 2, 3, 0)
    return ImageBatch(images=images, annotations=[{"tilt": float(t)} for t in p["tilt"]])
