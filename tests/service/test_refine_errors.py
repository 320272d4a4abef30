"""POST /refine refuses what it cannot use, with a status code and a message that says what to fix,
and keeps serving afterwards."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from core.settings import Settings
from models import ModelCard
from service.main import create_app
from tests.factories import image_file, png_header_only, random_images

if TYPE_CHECKING:
    from tests.service.conftest import Serve

pytestmark = pytest.mark.anyio

GRAY = random_images(1, 8, 8)[0]


def png_part(pixels: np.ndarray = GRAY, name: str = "eye.png") -> tuple[str, tuple[str, bytes, str]]:
    return ("image", (name, image_file(pixels), "image/png"))


async def assert_still_serves(client: httpx.AsyncClient) -> None:
    response = await client.post("/refine", files=[png_part()])
    assert response.status_code == 200


# ------------------------------------------------------------------ limits
async def test_refine_rejects_request_larger_than_limit_by_content_length(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    async with serve(create_app(make_settings(max_request_bytes=2000))) as client:
        response = await client.post("/refine", files=[png_part(random_images(1, 64, 64)[0])])
        assert response.status_code == 413
        assert "2000 bytes" in response.json()["detail"]
        await assert_still_serves(client)


async def test_refine_rejects_streamed_body_larger_than_limit_while_reading(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    payload = json.dumps({"images": [{"data": base64.b64encode(b"x" * 5000).decode()}]}).encode()

    async def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: sent chunked
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    async with serve(create_app(make_settings(max_request_bytes=3000))) as client:
        response = await client.post(
            "/refine", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert "3000 bytes" in response.json()["detail"]
        await assert_still_serves(client)


async def test_refine_rejects_image_larger_than_limit(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    async with serve(create_app(make_settings(max_image_pixels=1000))) as client:
        response = await client.post(
            "/refine", files=[png_part(GRAY), png_part(random_images(1, 30, 40)[0], "big.png")]
        )
        assert response.status_code == 413
        detail = response.json()["detail"]
        assert "image 2 ('big.png')" in detail and "40x30" in detail and "1000 pixels" in detail


async def test_refine_refuses_decompression_bomb_before_decoding(client: httpx.AsyncClient) -> None:
    # 100000 x 100000 pixels would need 10 GB decoded; the file is 100 bytes.
    for width, height in [(100_000, 100_000), (5000, 5000)]:
        response = await client.post(
            "/refine", files=[("image", ("bomb.png", png_header_only(width, height), "image/png"))]
        )
        assert response.status_code == 413
        assert "bomb.png" in response.json()["detail"]
    await assert_still_serves(client)


async def test_refine_rejects_more_images_than_limit(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    async with serve(create_app(make_settings(max_images_per_request=3))) as client:
        multipart = await client.post("/refine", files=[png_part()] * 4)
        data = base64.b64encode(image_file(GRAY)).decode()
        json_body = await client.post("/refine", json={"images": [{"data": data}] * 4})
        at_limit = await client.post("/refine", files=[png_part()] * 3)

    for response in (multipart, json_body):
        assert response.status_code == 413
        assert "limit is 3 images per request" in response.json()["detail"]
    assert at_limit.status_code == 200


# ------------------------------------------------------------ bad images
@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, "empty"),
        (b"GIF89a not a png at all", 415, "not a PNG, JPEG or .npy"),
        (image_file(GRAY)[:60], 400, "could not be decoded"),
        (image_file(np.zeros((8, 8, 4), np.uint8) + 9), 415, "alpha channel"),
        (image_file(np.full((8, 8, 1), 300, np.uint16)), 415, "16 bits"),
        (image_file(np.zeros((8, 8, 2), np.uint8), "NPY"), 415, "shape (8, 8, 2)"),
        (image_file(np.zeros((8, 8), np.float32), "NPY"), 415, "dtype float32"),
        (image_file(np.zeros((8, 8, 3), np.uint8), "NPY")[:-10], 400, "header says 192"),
    ],
    ids=[
        "empty",
        "gif-bytes",
        "truncated-png",
        "rgba",
        "16-bit",
        "npy-2-channels",
        "npy-float",
        "npy-truncated",
    ],
)
async def test_refine_names_the_part_it_cannot_use(
    client: httpx.AsyncClient, data: bytes, status: int, words: str
) -> None:
    response = await client.post("/refine", files=[png_part(), ("image", ("bad.file", data, "image/png"))])

    assert response.status_code == status
    detail = response.json()["detail"]
    assert "image 2 ('bad.file')" in detail and words in detail
    await assert_still_serves(client)


async def test_refine_refuses_pickled_npy(client: httpx.AsyncClient) -> None:
    out = io.BytesIO()
    np.save(out, np.array([{"a": 1}], dtype=object), allow_pickle=True)

    response = await client.post(
        "/refine", files=[("image", ("evil.npy", out.getvalue(), "application/octet-stream"))]
    )

    assert response.status_code == 415
    assert "pickled" in response.json()["detail"]


async def test_refine_rejects_rgb_image_for_grayscale_model_naming_what_it_expects(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/refine", files=[png_part(random_images(1, 8, 8, channels=3)[0], "color.png")]
    )

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "image 1 ('color.png')" in detail and "takes grayscale (1 channel)" in detail


async def test_refine_rejects_bad_base64_naming_the_entry(client: httpx.AsyncClient) -> None:
    data = base64.b64encode(image_file(GRAY)).decode()
    response = await client.post("/refine", json={"images": [{"data": data}, {"data": "%%% not base64"}]})

    assert response.status_code == 400
    assert "images[1]" in response.json()["detail"]


# ------------------------------------------------------- malformed requests
@pytest.mark.parametrize(
    ("annotations", "words"),
    [
        ("{not json", "not valid JSON"),
        ('[{"a": 1}]', "list of 1 entries but the request has 2"),
        ('{"a": 1}', "one entry per image"),
        ('{"a": NaN}', "NaN"),
        ('{"a": 1e999}', "64-bit float"),
    ],
    ids=["malformed", "count-mismatch", "object-for-two", "nan", "overflow"],
)
async def test_refine_rejects_bad_annotations(
    client: httpx.AsyncClient, annotations: str, words: str
) -> None:
    response = await client.post("/refine", files=[png_part(), png_part()], data={"annotations": annotations})

    assert response.status_code == 422
    assert words in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not a refine request"),
        (b'{"images": [{"annotations": {}}]}', "images.0.data"),
        (b'{"images": "eye.png"}', "images"),
        (b'{"images": []}', "no image"),
    ],
    ids=["malformed", "missing-data", "wrong-type", "no-images"],
)
async def test_refine_rejects_malformed_json_body(client: httpx.AsyncClient, body: bytes, words: str) -> None:
    response = await client.post("/refine", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    assert words in response.json()["detail"]


async def test_refine_rejects_multipart_without_image_or_with_unknown_fields(
    client: httpx.AsyncClient,
) -> None:
    no_image = await client.post(
        "/refine", data={"annotations": "{}"}, files=[("other", ("x", b"x", "text/plain"))]
    )
    text_image = await client.post("/refine", data={"image": "iVBOR..."}, files=[png_part()])

    assert no_image.status_code == 422
    assert "'other'" in no_image.json()["detail"]
    assert text_image.status_code == 400
    assert "as a file" in text_image.json()["detail"]


async def test_refine_rejects_other_content_types(client: httpx.AsyncClient) -> None:
    response = await client.post("/refine", content=b"a text", headers={"Content-Type": "text/plain"})

    assert response.status_code == 415
    assert "multipart/form-data, application/json, or one image file" in response.json()["detail"]


async def test_refine_with_accept_png_and_several_images_is_406(client: httpx.AsyncClient) -> None:
    response = await client.post("/refine", files=[png_part(), png_part()], headers={"Accept": "image/png"})

    assert response.status_code == 406
    assert "one image" in response.json()["detail"]


async def test_refine_before_any_model_exists_is_503_with_retry_after(
    make_settings: Callable[..., Settings], serve: Serve
) -> None:
    async with serve(create_app(make_settings())) as client:
        response = await client.post("/refine", files=[png_part()])

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert "no model is published yet" in response.json()["detail"]
