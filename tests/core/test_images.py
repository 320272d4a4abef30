"""Decoding uploads: which pixel formats become which arrays, and what is refused before decoding."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from core.annotations import parse_annotations
from core.errors import ClientError
from core.images import decode_image, encode_png
from tests.factories import image_file, png_header_only, random_images, read_image

LIMIT = 1024 * 1024


def pil_file(image: Image.Image, format: str = "PNG", **save_args: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, **save_args)
    return out.getvalue()


@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trips_exactly(channels: int) -> None:
    pixels = random_images(1, 7, 5, channels=channels)[0]

    decoded = decode_image(image_file(pixels), "image 1", LIMIT)

    np.testing.assert_array_equal(decoded, pixels)
    np.testing.assert_array_equal(read_image(encode_png(decoded)), pixels)


def test_grayscale_palette_png_becomes_one_channel_and_colour_palette_becomes_rgb() -> None:
    gray = Image.fromarray(random_images(1, 6, 6)[0][:, :, 0]).convert("P")
    gray.putpalette([v for i in range(256) for v in (i, i, i)])
    colour = Image.fromarray(random_images(1, 6, 6, channels=3)[0]).convert(
        "P", palette=Image.Palette.ADAPTIVE
    )

    assert decode_image(pil_file(gray), "gray", LIMIT).shape == (6, 6, 1)
    assert decode_image(pil_file(colour), "colour", LIMIT).shape == (6, 6, 3)


def test_one_bit_png_becomes_8_bit_grayscale() -> None:
    image = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")

    decoded = decode_image(pil_file(image), "bits", LIMIT)

    np.testing.assert_array_equal(decoded[:, :, 0], [[0, 255], [255, 0]])


def test_palette_with_transparency_is_refused_as_alpha() -> None:
    image = Image.fromarray(random_images(1, 4, 4)[0][:, :, 0]).convert("P")

    with pytest.raises(ClientError) as caught:
        decode_image(pil_file(image, transparency=0), "image 3 ('t.png')", LIMIT)

    assert caught.value.status_code == 415
    assert "image 3 ('t.png') has an alpha channel" in caught.value.detail


def test_cmyk_jpeg_is_refused_naming_its_mode() -> None:
    image = Image.new("CMYK", (4, 4))

    with pytest.raises(ClientError) as caught:
        decode_image(pil_file(image, "JPEG"), "scan", LIMIT)

    assert caught.value.status_code == 415
    assert "mode CMYK" in caught.value.detail


def test_npy_in_fortran_order_and_2d_decode_to_hwc() -> None:
    pixels = random_images(1, 5, 4, channels=3)[0]
    out = io.BytesIO()
    np.save(out, np.asfortranarray(pixels))

    np.testing.assert_array_equal(decode_image(out.getvalue(), "f", LIMIT), pixels)
    assert decode_image(image_file(pixels[:, :, 0], "NPY"), "g", LIMIT).shape == (5, 4, 1)


def test_size_is_checked_from_the_header_before_decoding() -> None:
    # The file holds no pixels for 3000x2000; a decoder would fail, the header check answers first.
    with pytest.raises(ClientError) as caught:
        decode_image(png_header_only(3000, 2000), "big", LIMIT)

    assert caught.value.status_code == 413
    assert "3000x2000" in caught.value.detail


def test_npy_size_is_checked_from_its_header() -> None:
    with pytest.raises(ClientError) as caught:
        decode_image(image_file(np.zeros((2000, 1000), np.uint8), "NPY"), "big.npy", 1000)

    assert caught.value.status_code == 413


def test_annotations_keep_key_order_and_values() -> None:
    text = '[{"z": 1, "a": {"y": null, "b": [1.5, "ü"]}}, null]'

    parsed = parse_annotations(text, 2)

    assert json.dumps(parsed, ensure_ascii=False) == text
