"""A procedural eye simulator: 55x35 grayscale eye crops with gaze and keypoint labels.

It stands in for UnityEyes (domain "synthetic": clean, flat-shaded, like a game render) and for
MPIIGaze (domain "real": the same scenes seen through a camera). Both domains draw scenes from one
generator, so labels mean the same thing and follow the same distribution; the real domain adds
appearance only (skin and iris texture, a duller sclera, a broad screen glint, uneven light and
vignetting, blur, shot and read noise, a camera tone curve, JPEG blocks), scaled by `gap`
(0: renders exactly like synthetic; 1: the default camera; above 1 harsher, easing towards twice
the default, see `effect_strength`).

Conventions (pixel coordinates, pixel centres at integers, x right, y down):
- yaw > 0: the eye looks towards +x (image right); the iris centre moves right.
- pitch > 0: the eye looks up; the iris centre moves up (smaller y) and both eyelids rise.
- iris_center = eyeball centre + R * (sin(yaw) cos(pitch), -sin(pitch)), R the eyeball radius.
- eyelid_upper / eyelid_lower: EYELID_POINTS points each, from the left corner to the right one
  (both lists share the two corners).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulators import camera
from simulators.batch import ImageBatch

HEIGHT, WIDTH = 35, 55
DOMAINS = ("synthetic", "real")
EYELID_POINTS = 9
# Distinct tags for the scene and the camera random streams of one seed.
_SCENE_STREAM, _LOOK_STREAM = 0x5CE7E, 0xCA3E7A
_CHUNK = 512  # images rendered at once: keeps every (chunk, 35, 55) temporary in cache
_F = np.float32
_Y = np.arange(HEIGHT, dtype=_F)[None, :, None]
_X = np.arange(WIDTH, dtype=_F)[None, None, :]

Scene = dict[str, np.ndarray]  # name -> (N,) float32 per-image parameters


def _truncated_normal(rng: np.random.Generator, std: float, limit: float, n: int) -> np.ndarray:
    values = rng.normal(0, std, n)
    redraw = np.abs(values) > limit
    values[redraw] = rng.uniform(-limit, limit, int(redraw.sum()))
    return values


def sample_scenes(count: int, rng: np.random.Generator) -> Scene:
    """Gaze, eye placement and shape, and material tones for `count` eyes, (N,) each."""
    u = rng.uniform
    pitch = np.radians(_truncated_normal(rng, 10.0, 28.0, count))
    yaw = np.radians(_truncated_normal(rng, 15.0, 40.0, count))
    iris_radius = u(5.0, 6.6, count)
    eyeball_radius = iris_radius * u(1.7, 1.95, count)
    openness = u(0.75, 1.2, count)
    side = rng.choice([-1.0, 1.0], count)  # which corner is the outer one (left or right eye)
    scene = {
        "pitch": pitch,
        "yaw": yaw,
        "cx": 27 + u(-3, 3, count),
        "cy": 17 + u(-2.5, 2.5, count),
        "roll": np.radians(u(-8, 8, count)),
        "half_width": u(16.5, 21, count),
        "upper_rest": openness * u(0.75, 0.95, count) * iris_radius,
        "lower_rest": openness * u(0.85, 1.05, count) * iris_radius,
        "skew_upper": side * u(0.1, 0.3, count),
        "skew_lower": -side * u(0.0, 0.2, count),
        "ball_u": u(-1, 1, count),
        "ball_v": u(0, 1, count),
        "eyeball_radius": eyeball_radius,
        "iris_radius": iris_radius,
        "pupil_radius": iris_radius * u(0.32, 0.5, count),
        "glint_dx": u(-2.5, 2.5, count),
        "glint_dy": u(-3, -0.5, count),
        "glint_radius": u(0.7, 1.1, count),
        "skin": u(0.38, 0.78, count),
        "sclera": u(0.76, 0.92, count),
        "iris": u(0.12, 0.5, count),
        "pupil": u(0.03, 0.08, count),
        "lashes": u(0.35, 0.75, count),
        "crease": u(0.04, 0.16, count),
        "crease_gap": u(2.0, 3.5, count),
        "brow": (rng.random(count) < 0.6) * u(0.15, 0.4, count),
        "brow_y": u(-4, 2, count),
        "brow_width": u(2.0, 3.5, count),
        "bag": u(0.02, 0.09, count),
        "bag_gap": u(2.5, 4.0, count),
    }
    return {k: np.asarray(v, dtype=_F) for k, v in scene.items()}


def _eyeball_centre(s: Scene) -> tuple[np.ndarray, np.ndarray]:
    cos, sin = np.cos(s["roll"]), np.sin(s["roll"])
    return s["cx"] + s["ball_u"] * cos - s["ball_v"] * sin, s["cy"] + s["ball_u"] * sin + s["ball_v"] * cos


def _gaze_offset(s: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit gaze vector (x right, y down, z towards the camera) as three arrays."""
    return (
        np.sin(s["yaw"]) * np.cos(s["pitch"]),
        -np.sin(s["pitch"]),
        np.cos(s["pitch"]) * np.cos(s["yaw"]),
    )


def iris_centres(s: Scene) -> np.ndarray:
    """(N, 2) iris centre [x, y] in pixels."""
    bx, by = _eyeball_centre(s)
    gx, gy, _ = _gaze_offset(s)
    return np.stack([bx + s["eyeball_radius"] * gx, by + s["eyeball_radius"] * gy], axis=1)


def lid_heights(s: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid heights at mid-eye (pixels from the corner line): looking up lifts both."""
    lift = s["eyeball_radius"] * np.sin(s["pitch"])
    return np.maximum(s["upper_rest"] + _F(0.6) * lift, _F(0.8)), np.maximum(
        s["lower_rest"] - _F(0.25) * lift, _F(1.5)
    )


def _lid(t: np.ndarray, height: np.ndarray, skew: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lid margin's distance from the corner line at eye-axis position t (corners at t=+-1), and dv/dt."""
    tc = np.clip(t, -1, 1)
    bulge = 1 - t * t
    return height * bulge * (1 + skew * tc), height * (-2 * t * (1 + skew * tc) + skew * bulge)


def eyelid_points(s: Scene) -> tuple[np.ndarray, np.ndarray]:
    """(N, EYELID_POINTS, 2) upper and lower lid margins [x, y], left corner to right corner."""
    t = np.linspace(-1, 1, EYELID_POINTS, dtype=_F)[None, :]
    p = {k: v[:, None] for k, v in s.items()}
    cos, sin = np.cos(p["roll"]), np.sin(p["roll"])
    u = p["half_width"] * t
    upper, lower = lid_heights(p)
    lids = []
    for v in (-_lid(t, upper, p["skew_upper"])[0], _lid(t, lower, p["skew_lower"])[0]):
        lids.append(np.stack([p["cx"] + u * cos - v * sin, p["cy"] + u * sin + v * cos], axis=2))
    return lids[0], lids[1]


def effect_strength(gap: float) -> float:
    """How strongly the real domain's effects apply: `gap` up to 1, then easing towards 2 (gap 2: 1.5).

    Smooth at 1 and increasing, so a larger gap is always a harsher camera but the eye stays visible.
    """
    return float(gap) if gap <= 1 else 2.0 - 1.0 / float(gap)


def _soft(distance: np.ndarray) -> np.ndarray:
    """Coverage of a pixel by a shape from its signed distance (pixels, > 0 inside): 1-px anti-aliasing."""
    return np.clip(distance + _F(0.5), 0, 1)


def _eye_frame(p: Scene) -> dict[str, np.ndarray]:
    """Per-pixel eye-frame coordinates and signed distances to the lid margins, (N, H, W) each."""
    dx, dy = _X - p["cx"], _Y - p["cy"]
    cos, sin = np.cos(p["roll"]), np.sin(p["roll"])
    # u along the corner line, v across it (down), both in pixels; t = +-1 at the corners.
    u, v = dx * cos + dy * sin, dy * cos - dx * sin
    t = u / p["half_width"]
    upper_height, lower_height = lid_heights(p)
    upper, upper_slope = _lid(t, upper_height, p["skew_upper"])
    lower, lower_slope = _lid(t, lower_height, p["skew_lower"])
    below_upper = (v + upper) / np.sqrt(1 + (upper_slope / p["half_width"]) ** 2)
    above_lower = (lower - v) / np.sqrt(1 + (lower_slope / p["half_width"]) ** 2)
    return {
        "dx": dx,
        "u": u,
        "v": v,
        "t": t,
        "upper_height": upper_height,
        "lower": lower,
        "below_upper": below_upper,
        "above_lower": above_lower,
        "opening": _soft(np.minimum(below_upper, above_lower)),
    }


def _skin(p: Scene, f: dict[str, np.ndarray]) -> np.ndarray:
    """Skin in [0, 1]: a darker socket, the lid crease and lid, a lower fold, an eyebrow for some."""
    u, v, t = f["u"], f["v"], f["t"]
    skin = p["skin"] * (1 - _F(0.12) * np.exp(-((u / (1.3 * p["half_width"])) ** 2) - ((v + 2) / 12) ** 2))
    rest = p["upper_rest"] + p["crease_gap"]
    crease_v = -rest * np.clip(1 - (t / _F(1.15)) ** 2, 0, None) - 0.5 * (f["upper_height"] - p["upper_rest"])
    fade = np.clip((1.1 - np.abs(t)) * 5, 0, 1)  # lid features end smoothly past the corners
    skin = skin * (1 - p["crease"] * np.exp(-(((v - crease_v) / _F(0.9)) ** 2)) * fade)
    lid_skin = (
        np.clip(1.5 + f["below_upper"], 0, 1)
        * np.clip(crease_v - v, 0, 1)
        * np.clip((1 - np.abs(t)) * 5, 0, 1)
    )
    skin = skin * (1 + _F(0.06) * lid_skin)
    bag_v = f["lower"] + p["bag_gap"] * np.clip(1 - (t / _F(1.1)) ** 2, 0, None)
    skin = skin * (1 - p["bag"] * np.exp(-(((v - bag_v) / _F(1.3)) ** 2)) * (np.abs(t) < 1.0))
    brow_y = p["brow_y"] + _F(0.006) * f["dx"] ** 2
    brow = np.clip((p["brow_width"] - np.abs(_Y - brow_y)) / _F(1.5), 0, 1)
    return skin * (1 - p["brow"] * brow * np.clip(1.4 - np.abs(f["dx"]) / 28, 0, 1))


def _eyeball(
    s: Scene, p: Scene, f: dict[str, np.ndarray], g: np.float32, look: Scene, texture: np.ndarray
) -> np.ndarray:
    """Shaded sclera, then iris and pupil as projected discs facing the gaze, in [0, 1]."""
    sclera = p["sclera"] * (1 - g * look["dull"]) * (1 - _F(0.28) * np.clip(f["t"], -1, 1) ** 2)
    sclera = sclera * (1 + g * _F(0.03) * texture)
    gx, gy, gz = _gaze_offset(p)
    norm = np.maximum(np.sqrt(gx * gx + gy * gy), _F(1e-6))
    wx, wy = np.where(norm > 1e-5, gx / norm, 1), gy / norm  # image direction the eye turns to
    centre = iris_centres(s)
    ix, iy = _X - centre[:, 0, None, None], _Y - centre[:, 1, None, None]
    along, across = ix * wx + iy * wy, iy * wx - ix * wy
    radial = np.sqrt(across * across + (along / gz) ** 2)  # distance in the iris plane, pixels
    rel = radial / p["iris_radius"]
    iris = p["iris"] * (_F(1.12) - _F(0.35) * rel) * (1 - _F(0.4) * np.clip((rel - 0.8) * 5, 0, 1))
    iris = iris * (1 + g * look["iris_texture"] * texture)
    ball = sclera + (iris - sclera) * _soft(p["iris_radius"] - radial)
    ball = ball + (p["pupil"] - ball) * _soft(p["pupil_radius"] - radial)
    return ball * (1 - _F(0.35) * np.exp(-np.maximum(f["below_upper"], 0) / _F(1.5)))  # the lid's shadow


def _glint(p: Scene, g: np.float32, look: Scene) -> np.ndarray:
    """Corneal glint coverage: a small saturated disc; through a camera, a broad dimmer screen reflection."""
    gx, gy, _ = _gaze_offset(p)
    bx, by = _eyeball_centre(p)
    # The glint moves half as far as the iris with the gaze: it sits on the cornea's bulge.
    glint_x = bx + _F(0.5) * p["eyeball_radius"] * gx + p["glint_dx"]
    glint_y = by + _F(0.5) * p["eyeball_radius"] * gy + p["glint_dy"]
    dist2 = (_X - glint_x) ** 2 + (_Y - glint_y) ** 2
    sharp = _soft(p["glint_radius"] - np.sqrt(dist2))
    mix = _F(min(float(g), 1.0))
    if mix == 0:
        return sharp
    spread = p["glint_radius"] * _F(0.7) + g * look["glint_spread"]
    broad = (1 - g * look["glint_dim"]).clip(0.3, 1) * np.exp(-dist2 / (2 * spread * spread))
    return (1 - mix) * sharp + mix * broad


def _render(s: Scene, domain: str, gap: float, rng: np.random.Generator | None) -> np.ndarray:
    """(N, H, W) float32 in [0, 255] for one chunk of scenes; `rng` drives the real domain only."""
    n = len(s["cx"])
    p = {k: v[:, None, None] for k, v in s.items()}  # (N, 1, 1) each, broadcast over pixels
    real = domain == "real"
    g = _F(effect_strength(gap) if real else 0.0)
    if real:
        assert rng is not None
        texture = camera.texture_field(n, HEIGHT, WIDTH, rng)
        look = {k: rng.uniform(lo, hi, (n, 1, 1)).astype(_F) for k, (lo, hi) in _REAL_LOOK.items()}
    else:
        texture = np.zeros((1, 1, 1), dtype=_F)
        look = {k: np.zeros((1, 1, 1), dtype=_F) for k in _REAL_LOOK}
    f = _eye_frame(p)
    skin = _skin(p, f) * (1 + g * look["skin_texture"] * texture)
    ball = _eyeball(s, p, f, g, look, texture)
    ball = ball + (1 - ball) * _glint(p, g, look) * f["opening"]
    # Lashes darken the upper margin (more towards the outer corner), a thin line the lower one.
    t, below_upper, above_lower = f["t"], f["below_upper"], f["above_lower"]
    outer = 1 + _F(0.3) * np.clip(t * np.sign(p["skew_upper"]), -1, 1)
    lash = p["lashes"] * outer * _soft(below_upper + 2) * _soft(-below_upper) * (np.abs(t) < 1.05)
    lower_line = _F(0.18) * _soft(above_lower + 1.3) * _soft(-above_lower) * (np.abs(t) < 1.0)
    image = (skin + (ball - skin) * f["opening"]) * (1 - np.clip(lash + lower_line, 0, 0.9))
    if not real:
        return np.clip(image, 0, 1) * _F(255)
    assert rng is not None
    return camera.photograph(image, float(g), rng)


# Per-image ranges of the real domain's looks, each multiplied by the gap.
_REAL_LOOK = {
    "skin_texture": (0.04, 0.09),
    "iris_texture": (0.10, 0.25),
    "dull": (0.05, 0.15),
    "glint_spread": (0.3, 1.0),
    "glint_dim": (0.15, 0.5),
}


def annotate(s: Scene) -> list[dict[str, Any]]:
    """One annotation object per scene (degrees and pixels, rounded for compact JSON)."""
    gaze = np.round(np.degrees(np.stack([s["pitch"], s["yaw"]], axis=1)).astype(np.float64), 3).tolist()
    iris = np.round(iris_centres(s).astype(np.float64), 3).tolist()
    upper, lower = (np.round(lid.astype(np.float64), 3).tolist() for lid in eyelid_points(s))
    return [
        {
            "gaze": {"pitch": g[0], "yaw": g[1]},
            "keypoints": {"iris_center": c, "eyelid_upper": up, "eyelid_lower": lo},
        }
        for g, c, up, lo in zip(gaze, iris, upper, lower, strict=True)
    ]


def render_scenes(s: Scene, domain: str = "synthetic", gap: float = 1.0, seed: int = 0) -> np.ndarray:
    """(N, 35, 55, 1) uint8 images of given scenes; the real domain's randomness comes from `seed`."""
    _check(1, domain, gap, seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _LOOK_STREAM])) if domain == "real" else None
    count = len(s["cx"])
    images = np.empty((count, HEIGHT, WIDTH, 1), dtype=np.uint8)
    for start in range(0, count, _CHUNK):
        chunk = {k: v[start : start + _CHUNK] for k, v in s.items()}
        pixels = _render(chunk, domain, gap, rng)
        images[start : start + _CHUNK, :, :, 0] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return images


def _check(count: int, domain: str, gap: float, seed: int = 0) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if domain not in DOMAINS:
        raise ValueError(
            f"unknown domain {domain!r} for the eyes simulator; choose one of: {', '.join(DOMAINS)}"
        )
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        raise ValueError(f"count must be a positive whole number of images, got {count!r}")
    if not np.isfinite(gap) or gap < 0:
        raise ValueError(
            f"gap must be a finite number >= 0 (0: real looks synthetic, 1: default), got {gap!r}"
        )


def simulate_eyes(count: int, domain: str = "synthetic", seed: int = 0, gap: float = 1.0) -> ImageBatch:
    """`count` labelled eye images of one domain; the same arguments give identical bytes.

    The two domains draw different scenes for the same seed (so a real set is never a re-render of a
    synthetic one), from the same distribution.
    """
    _check(count, domain, gap, seed)
    salt = DOMAINS.index(domain)
    scenes = sample_scenes(
        int(count), np.random.default_rng(np.random.SeedSequence([seed, salt, _SCENE_STREAM]))
    )
    images = render_scenes(scenes, domain, gap, seed=seed)
    return ImageBatch(images=images, annotations=annotate(scenes))
