"""POST /refine in its raw form: the image file itself as the body, model and annotations beside it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from core.settings import Settings
from models import Registry
from models.session import load_refiner
from service.main import create_app
from tests.factories import image_file, random_images, read_image

if TYPE_CHECKING:
    from tests.service.conftest import Serve, TinyModels

pytestmark = pytest.mark.anyio

PNG_BODY = {"Content-Type": "image/png", "Accept": "image/png"}


def refined_alone(registry: Registry, version: str, pixels: np.ndarray, settings: Settings) -> np.ndarray:
    return load_refiner(registry, version, settings).refine(pixels[None])[0]


async def test_a_raw_png_body_comes_back_as_the_refined_png(
    client: httpx.AsyncClient, registry: Registry, make_settings: Callable[..., Settings]
) -> None:
    pixels = random_images(1, seed=3)[0]

    response = await client.post("/refine", content=image_file(pixels), headers=PNG_BODY)

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-model-version"] == "v1"
    assert "x-annotations" not in response.headers
    np.testing.assert_array_equal(
        read_image(response.content), refined_alone(registry, "v1", pixels, make_settings())
    )


@pytest.mark.parametrize(
    ("content_type", "format"),
    [("image/jpeg", "JPEG"), ("application/x-npy", "NPY"), ("application/octet-stream", "PNG")],
)
async def test_a_raw_body_of_any_accepted_kind_is_refined(
    client: httpx.AsyncClient, content_type: str, format: str
) -> None:
    pixels = random_images(1, 20, 30, seed=2)[0]
    data = image_file(pixels[:, :, 0] if format == "NPY" else pixels, format)

    response = await client.post("/refine", content=data, headers={"Content-Type": content_type})

    assert response.status_code == 200
    (item,) = response.json()["images"]
    assert (item["height"], item["width"], item["channels"]) == (20, 30, 1)


async def test_a_large_raw_image_is_refined_like_a_small_one(
    client: httpx.AsyncClient, registry: Registry, make_settings: Callable[..., Settings]
) -> None:
    pixels = random_images(1, 300, 200, seed=6)[0]  # past the inline limit: decoded in a thread

    response = await client.post("/refine", content=image_file(pixels), headers=PNG_BODY)

    assert response.status_code == 200
    np.testing.assert_array_equal(
        read_image(response.content), refined_alone(registry, "v1", pixels, make_settings())
    )


async def test_raw_annotations_come_back_exactly_as_sent_from_the_query_or_the_header(
    client: httpx.AsyncClient,
) -> None:
    annotation = [{"iris": [27.5, 17.0], "émoji": "👁"}, 12345678901234567890123, -0.0]
    text = json.dumps(annotation, ensure_ascii=False)
    png = image_file(random_images(1)[0])

    from_query = await client.post(
        "/refine", content=png, params={"annotations": text}, headers={"Content-Type": "image/png"}
    )
    from_header = await client.post(
        "/refine", content=png, headers={**PNG_BODY, "X-Annotations": json.dumps(annotation)}
    )

    assert from_query.status_code == 200
    # One image's annotation, a list or not, is never split across images; past-64-bit integers too.
    assert json.dumps(from_query.json()["images"][0]["annotations"], ensure_ascii=False) == text
    assert from_header.status_code == 200
    assert json.loads(from_header.headers["x-annotations"]) == annotation
    assert from_header.headers["x-annotations"].isascii()


async def test_a_raw_request_names_its_model_in_the_query(
    tiny_models: TinyModels,
    registry: Registry,
    make_settings: Callable[..., Settings],
    serve: Serve,
) -> None:
    tiny_models.publish(tiny_models.gray, registry)
    tiny_models.publish(tiny_models.gray_other, registry)
    registry.activate("v1")
    pixels = random_images(1, seed=9)[0]
    async with serve(create_app(make_settings())) as client:
        named = await client.post(
            "/refine", content=image_file(pixels), params={"model": "v2"}, headers=PNG_BODY
        )
        unknown = await client.post(
            "/refine", content=image_file(pixels), params={"model": "v42"}, headers=PNG_BODY
        )

    assert named.headers["x-model-version"] == "v2"
    np.testing.assert_array_equal(
        read_image(named.content), refined_alone(registry, "v2", pixels, make_settings())
    )
    assert unknown.status_code == 404
    assert "v42" in unknown.json()["detail"]


@pytest.mark.parametrize(
    ("params", "headers", "body", "status", "says"),
    [
        ({"modle": "v1"}, {}, None, 422, "'modle'"),
        ({"seed": "-1"}, {}, None, 422, "seed"),
        ({"annotations": "{}"}, {"X-Annotations": "{}"}, None, 422, "not both"),
        ({"annotations": "{nope"}, {}, None, 422, "not valid JSON"),
        ({}, {}, b"", 400, "body is empty"),
        ({}, {}, b"GIF89a not a png", 415, "not a PNG, JPEG or .npy"),
    ],
    ids=["unknown-query", "bad-seed", "annotations-twice", "bad-annotations", "empty", "not-an-image"],
)
async def test_a_bad_raw_request_says_what_to_fix(
    client: httpx.AsyncClient,
    params: dict[str, str],
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    says: str,
) -> None:
    content = image_file(random_images(1)[0]) if body is None else body

    response = await client.post(
        "/refine", content=content, params=params, headers={"Content-Type": "image/png", **headers}
    )

    assert response.status_code == status
    assert says in response.json()["detail"]


async def test_the_json_answer_is_the_documented_refine_response(client: httpx.AsyncClient) -> None:
    png = image_file(random_images(1)[0])

    raw = await client.post("/refine", content=png, headers={"Content-Type": "image/png"})
    multipart = await client.post("/refine", files={"image": ("e.png", png, "image/png")})

    for response in (raw, multipart):
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-model-version"] == "v1"
        body = response.json()
        assert list(body) == ["model", "stochastic", "seed", "images"]
        assert list(body["images"][0]) == ["data", "width", "height", "channels", "annotations"]
        assert read_image(base64.b64decode(body["images"][0]["data"])).shape == (35, 55, 1)


async def test_openapi_documents_the_raw_form(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/refine"]["post"]

    content = operation["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/png", "image/jpeg"} <= set(content)
    assert {(p["name"], p["in"]) for p in operation["parameters"]} == {
        ("seed", "query"),
        ("model", "query"),
        ("annotations", "query"),
        ("X-Annotations", "header"),
    }
    assert "RefineResponse" in json.dumps(operation["responses"]["200"])
