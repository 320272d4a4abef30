"""What a real camera does to an eye image, vectorised over a batch (numpy only).

Every function takes per-image strengths (arrays shaped (N, 1, 1) or (N,)) already scaled by the
domain gap, and is the identity where the strength is zero, so `gap=0` renders like the simulator.
Images here are float32 (N, H, W): in [0, 1] before `sensor_noise`, in [0, 255] from there on.
All effects are local (a few pixels wide) or smooth over the whole crop, so a fully convolutional
refiner can learn to add them; none moves the geometry the labels describe.
"""

from __future__ import annotations

from functools import cache

import numpy as np

_F = np.float32

# The JPEG standard's luminance quantisation table (quality 50).
_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=_F,
)


@cache
def _upsample_matrix(low: int, high: int) -> np.ndarray:
    """(high, low) linear interpolation weights from `low` samples to `high` pixels."""
    pos = np.linspace(0, low - 1, high)
    left = np.clip(np.floor(pos).astype(int), 0, low - 2)
    frac = pos - left
    matrix = np.zeros((high, low), dtype=_F)
    matrix[np.arange(high), left] = 1 - frac
    matrix[np.arange(high), left + 1] = frac
    return matrix


@cache
def _dct_2d() -> np.ndarray:
    """(64, 64) orthonormal 2-D DCT-II of a flattened 8x8 block (one BLAS matmul per batch)."""
    k = np.arange(8)[:, None]
    n = np.arange(8)[None, :]
    basis = np.cos(np.pi * (2 * n + 1) * k / 16) * np.sqrt(2 / 8)
    basis[0] /= np.sqrt(2)
    return np.kron(basis, basis).astype(_F)


def texture_field(n: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(N, H, W) zero-mean, roughly unit-std texture: blotches of a few pixels plus pore-scale grain."""
    coarse = rng.standard_normal((n, 7, 11), dtype=_F)
    blotches = _upsample_matrix(7, height) @ coarse @ _upsample_matrix(11, width).T  # (N, H, W)
    grain = rng.standard_normal((n, height, width), dtype=_F)
    # A 3-tap smoothing gives the grain a correlation length of about a pixel, like skin pores.
    grain[:, 1:-1, :] = 0.5 * grain[:, 1:-1, :] + 0.25 * (grain[:, :-2, :] + grain[:, 2:, :])
    grain[:, :, 1:-1] = 0.5 * grain[:, :, 1:-1] + 0.25 * (grain[:, :, :-2] + grain[:, :, 2:])
    return (blotches * _F(1.4) + grain * _F(1.2)).astype(_F)


def lighting_field(
    n: int, height: int, width: int, strength: float | np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(N, H, W) multiplicative light: a random linear gradient times a vignette off-centre."""
    y = np.linspace(-1, 1, height, dtype=_F)[None, :, None]
    x = np.linspace(-1, 1, width, dtype=_F)[None, None, :]
    angle = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(_F)
    slope = rng.uniform(0.05, 0.22, (n, 1, 1)).astype(_F)
    vignette = rng.uniform(0.08, 0.3, (n, 1, 1)).astype(_F)
    cx = rng.uniform(-0.4, 0.4, (n, 1, 1)).astype(_F)
    cy = rng.uniform(-0.4, 0.4, (n, 1, 1)).astype(_F)
    gradient = slope * (np.cos(angle) * x + np.sin(angle) * y)
    falloff = vignette * ((x - cx) ** 2 + (y - cy) ** 2) / 2
    return np.maximum(1 + strength * (gradient - falloff), _F(0.1)).astype(_F)


def blur(images: np.ndarray, sigma_x: np.ndarray, sigma_y: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur with per-image widths (N,), anisotropic like slight motion or defocus."""
    taps = np.arange(-3, 4, dtype=_F)
    out = images
    for axis, sigma in ((2, sigma_x), (1, sigma_y)):
        # A zero width gives weights (0, .., 1, .., 0): exactly the input.
        s = np.maximum(np.asarray(sigma, dtype=_F), _F(1e-3))[:, None]
        kernel = np.exp(-(taps[None, :] ** 2) / (2 * s * s))
        kernel /= kernel.sum(axis=1, keepdims=True)  # (N, 7)
        pad = [(0, 0), (0, 0), (0, 0)]
        pad[axis] = (3, 3)
        padded = np.pad(out, pad, mode="edge")
        size = out.shape[axis]
        acc = np.zeros_like(out)
        for i in range(7):
            window = padded[:, :, i : i + size] if axis == 2 else padded[:, i : i + size, :]
            acc += kernel[:, i, None, None] * window
        out = acc
    return out


def sensor_noise(
    images: np.ndarray, shot: np.ndarray, read: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Shot noise (variance proportional to the signal) plus read noise, on [0, 255] images."""
    std = np.sqrt(shot * np.maximum(images, 0) + read * read)
    return images + std * rng.standard_normal(images.shape, dtype=_F)


def tone_curve(images: np.ndarray, black: np.ndarray, white: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Camera response on [0, 255]: lifted blacks, clipped whites, a gamma; flattens contrast."""
    unit = np.clip(images / _F(255), 0, 1)
    black = np.minimum(black, _F(0.35))
    white = np.maximum(white, black + _F(0.3))  # a very large gap still keeps the image positive
    return (black + (white - black) * unit**gamma) * _F(255)


def jpeg_blocks(images: np.ndarray, quality_scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG-like 8x8 DCT quantisation on [0, 255] images, quantiser = standard table * scale (N,).

    The block grid starts at a random offset per image, as for a crop out of a larger JPEG frame,
    so blockiness is a texture and carries no position.
    """
    n, height, width = images.shape
    off_y = np.asarray(rng.integers(0, 8, size=n))
    off_x = np.asarray(rng.integers(0, 8, size=n))
    rows, cols = -(-(height + 7) // 8) * 8, -(-(width + 7) // 8) * 8
    iy = np.clip(np.arange(rows)[None, :] - off_y[:, None], 0, height - 1)  # (N, rows)
    ix = np.clip(np.arange(cols)[None, :] - off_x[:, None], 0, width - 1)  # (N, cols)
    batch = np.arange(n)[:, None, None]
    canvas = images[batch, iy[:, :, None], ix[:, None, :]] - _F(128)  # (N, rows, cols)
    blocks = canvas.reshape(n, rows // 8, 8, cols // 8, 8).transpose(0, 1, 3, 2, 4)  # (N, by, bx, 8, 8)
    blocks = blocks.reshape(n, -1, 64)  # (N, blocks, 64)
    dct = _dct_2d()
    coeffs = blocks @ dct.T
    step = np.maximum(
        _JPEG_LUMA.reshape(1, 1, 64) * np.asarray(quality_scale, dtype=_F)[:, None, None], _F(1e-3)
    )
    coeffs = np.round(coeffs / step) * step
    blocks = (coeffs @ dct).reshape(n, rows // 8, cols // 8, 8, 8)
    canvas = blocks.transpose(0, 1, 3, 2, 4).reshape(n, rows, cols) + _F(128)
    ys = np.arange(height)[None, :, None] + off_y[:, None, None]
    xs = np.arange(width)[None, None, :] + off_x[:, None, None]
    return canvas[batch, ys, xs]


def photograph(scene: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A (N, H, W) scene in [0, 1] as a webcam records it; returns [0, 255] float32.

    `strength` (0: no change, 1: the default camera) scales every effect's per-image random size.

    Order as in a camera: light on the scene, optics, sensor noise, tone curve, JPEG.
    """
    n, height, width = scene.shape
    g = _F(strength)

    def draw(low: float, high: float, shape: int | tuple[int, ...] = (n, 1, 1)) -> np.ndarray:
        return (g * rng.uniform(low, high, shape)).astype(_F)

    image = scene * lighting_field(n, height, width, strength, rng) * np.exp(draw(-0.25, 0.1))  # exposure
    image = blur(image, sigma_x=draw(0.35, 1.0, n), sigma_y=draw(0.35, 1.0, n))
    image = sensor_noise(image * _F(255), shot=draw(0.1, 0.5), read=draw(1.0, 3.5), rng=rng)
    image = tone_curve(
        image, black=draw(0.02, 0.1), white=1 - draw(0.0, 0.12), gamma=np.exp(draw(-0.15, 0.25))
    )
    # JPEG quality about 82-95, as webcams save; it saturates at gap 1 so more gap keeps adding noise.
    quality = (min(float(strength), 1.0) * np.asarray(rng.uniform(0.1, 0.35, size=n))).astype(_F)
    if g > 0:  # at zero strength the DCT round trip would only add float error
        image = jpeg_blocks(image, quality, rng)
    return image
