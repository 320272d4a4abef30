"""Uploaded images in and out: decode PNG / JPEG / .npy into uint8 (H, W, C), encode PNG, limits.

What /refine accepts, and why:

- 8-bit grayscale (PNG/JPEG mode "L", PNG of 1, 2 or 4 bits per pixel widened to 8) -> 1 channel.
- 8-bit RGB -> 3 channels.
- Palette PNGs without transparency are expanded: to grayscale when every palette entry is a
  gray, else to RGB. A palette stores 8-bit colours, so nothing is lost.
- `.npy`: uint8 arrays shaped (H, W), (H, W, 1) or (H, W, 3); pickled arrays are refused.
- Refused with 415, naming the part: anything with an alpha channel (RGBA, LA, palette with
  transparency), 16 bits per channel, other modes (CMYK, 32-bit, float), non-uint8 or
  2-/4-channel arrays, and formats other than PNG/JPEG/.npy. The refined image keeps its
  input's channel count and 8-bit depth, and the refiner knows nothing of transparency or
  16-bit values, so converting them silently would hand back something other than was sent.
  A wrong but supported channel count for the model (RGB to a grayscale refiner) is a 422
  raised by the route, which knows the model.

Size is checked from the file header before any pixel is decoded (decompression bombs).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np
from PIL import Image

from core.arrays import npy_header
from core.errors import ClientError

NPY_MAGIC = b"\x93NUMPY"
FORMATS = ("PNG", "JPEG")
"""Pillow decoders /refine lets near untrusted bytes; everything else is refused unread."""
PIL_BOMB_FLOOR = 64 * 1024 * 1024
"""Pillow's own decompression-bomb limit is kept at least this high, and above our pixel limit."""
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")

AlphaPolicy = Literal["refuse", "opaque"]


def allow_pixels(max_pixels: int) -> None:
    """Make Pillow's global bomb guard no stricter than our limit (ours is checked first anyway)."""
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, PIL_BOMB_FLOOR, 2 * max_pixels)


Reserve = Callable[[int], None]
"""Told how many bytes an image will decode to, before it is decoded; raises to refuse it."""


def _no_reserve(count: int) -> None:
    return None


def decode_image(
    data: bytes, part: str, max_pixels: int, alpha: AlphaPolicy = "refuse", reserve: Reserve = _no_reserve
) -> np.ndarray:
    """Bytes of a PNG, JPEG or .npy file -> uint8 (H, W, C) with C in {1, 3}; `part` names it in errors.

    `alpha` is what an alpha channel gets: "refuse" (415: /refine hands back what was sent, and a
    refiner knows nothing of transparency) or "opaque" (dataset archives: accepted and dropped when
    every pixel is fully opaque, as image editors often save them; 422 when any pixel is not).
    `reserve` gets the decoded size in bytes from the header, before any pixel is decoded: an
    archive's images share one budget that way (core.ingest).
    """
    if not data:
        raise ClientError(400, f"{part} is empty; send the bytes of a PNG, JPEG or .npy file")
    if data.startswith(NPY_MAGIC):
        return _decode_npy(data, part, max_pixels, reserve)
    return _decode_pil(data, part, max_pixels, alpha, reserve)


def _check_pixels(width: int, height: int, part: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ClientError(
            413,
            f"{part} is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels "
            "per image (SIMGAN_MAX_IMAGE_PIXELS): send a smaller image",
        )


def _decode_pil(data: bytes, part: str, max_pixels: int, alpha: AlphaPolicy, reserve: Reserve) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard, raised rather than printed; our pixel limit is checked first.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)  # lazy: reads the header only
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ClientError(413, f"{part} is refused before decoding: {exc}") from exc
    except Exception as exc:  # untrusted bytes: any failure to read a header means "not an image"
        raise ClientError(415, f"{part} is not a PNG, JPEG or .npy file; send one of those") from exc
    with image:
        _check_pixels(image.width, image.height, part, max_pixels)
        has_alpha = _check_mode(image, part, alpha)
        # Upper bound of what decoding holds: a palette may widen to RGB, alpha is decoded then dropped.
        reserve(image.width * image.height * max(3 if image.mode == "P" else 1, len(image.getbands())))
        try:
            image.load()
        except Exception as exc:  # truncated or corrupt pixel data
            raise ClientError(
                400, f"{part} could not be decoded ({exc}); send a complete, valid file"
            ) from exc
        return _to_array(_drop_opaque_alpha(image, part) if has_alpha else image)


def _check_mode(image: Image.Image, part: str, alpha: AlphaPolicy) -> bool:
    """Refuse what cannot be refined; True when the image has an alpha channel to drop."""
    mode = image.mode
    # Pillow reads 16-bit RGB PNGs as mode RGB; only the decoder's raw mode tells (e.g. "RGB;16B").
    rawmodes = " ".join(str(tile.args) for tile in getattr(image, "tile", []))
    has_alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info)
    if has_alpha and alpha == "refuse":
        raise ClientError(
            415,
            f"{part} has an alpha channel (mode {mode}); the refiner takes 8-bit grayscale or RGB: "
            "remove the alpha channel (flatten it) and send it again",
        )
    if ";16" in rawmodes or mode.startswith("I;16"):
        raise ClientError(
            415, f"{part} has 16 bits per channel; the refiner takes 8 bits per channel: convert it to 8-bit"
        )
    if not has_alpha and mode not in ("L", "RGB", "P", "1"):
        raise ClientError(415, f"{part} has pixel mode {mode}; send 8-bit grayscale (L) or RGB without alpha")
    return has_alpha


def _drop_opaque_alpha(image: Image.Image, part: str) -> Image.Image:
    gray = image.mode in ("LA", "La")
    with_alpha = image.convert("LA" if gray else "RGBA")
    if int(np.asarray(with_alpha)[..., -1].min()) < 255:
        raise ClientError(
            422, f"{part} has transparent pixels; datasets hold gray or RGB images, so flatten it first"
        )
    return with_alpha.convert("L" if gray else "RGB")


def _to_array(image: Image.Image) -> np.ndarray:
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode == "P":
        palette = np.asarray(image.getpalette() or [0, 0, 0], dtype=np.uint8).reshape(-1, 3)
        gray = bool((palette == palette[:, :1]).all())
        image = image.convert("L" if gray else "RGB")
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels  # (H, W) -> (H, W, 1)


def _decode_npy(data: bytes, part: str, max_pixels: int, reserve: Reserve) -> np.ndarray:
    stream = io.BytesIO(data)
    shape, fortran_order, dtype = npy_header(stream, part)
    if dtype.hasobject:
        raise ClientError(415, f"{part} is a pickled .npy (dtype {dtype}); send a plain uint8 array")
    if dtype != np.uint8:
        raise ClientError(415, f"{part} has dtype {dtype}; send a uint8 array (8 bits per channel)")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise ClientError(415, f"{part} has shape {shape}; send (H, W) grayscale, (H, W, 1) or (H, W, 3) RGB")
    if 0 in shape:
        raise ClientError(422, f"{part} has shape {shape}: it holds no pixels; send an image at least 1x1")
    _check_pixels(shape[1], shape[0], part, max_pixels)
    expected = math.prod(shape)
    reserve(expected)
    body = data[stream.tell() :]
    if len(body) != expected:
        raise ClientError(400, f"{part} holds {len(body)} bytes of pixels but its header says {expected}")
    pixels = np.frombuffer(body, dtype=np.uint8).reshape(shape, order="F" if fortran_order else "C")
    pixels = np.ascontiguousarray(pixels)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W, 1) or (H, W, 3) -> PNG bytes (8-bit grayscale or RGB)."""
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # fast: PNGs here are small, CPU time is not
    return out.getvalue()


def decode_base64(data: str, part: str) -> bytes:
    """Standard base64, optionally as a `data:image/png;base64,...` URL."""
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ClientError(400, f"{part} is not valid base64 ({exc}); base64-encode the file's bytes") from exc


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ------------------------------------------------------------------ annotations
