"""POST /refine through the real app and a real tiny ONNX refiner: what comes back for what is sent."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from core.settings import Settings
from models import ModelCard, Registry
from models.session import load_refiner
from service.main import create_app
from tests.factories import image_file, random_images, read_image

if TYPE_CHECKING:
    from tests.service.conftest import Serve, TinyModels

pytestmark = pytest.mark.anyio


def refined_alone(registry: Registry, version: str, pixels: np.ndarray, settings: Settings) -> np.ndarray:
    """What the model makes of one (H, W, C) image on its own, outside the service."""
    return load_refiner(registry, version, settings).refine(pixels[None])[0]


def decoded(item: dict) -> np.ndarray:
    return read_image(base64.b64decode(item["data"]))


async def test_refine_one_png_returns_the_refined_png_with_the_model_version(
    client: httpx.AsyncClient, registry: Registry, make_settings: Callable[..., Settings]
) -> None:
    pixels = random_images(1)[0]

    response = await client.post("/refine", files={"image": ("eye.png", image_file(pixels), "image/png")})

    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "v1"
    (item,) = body["images"]
    assert (item["width"], item["height"], item["channels"]) == (55, 35, 1)
    assert item["annotations"] is None
    np.testing.assert_array_equal(decoded(item), refined_alone(registry, "v1", pixels, make_settings()))


async def test_refine_many_multipart_images_keeps_their_order(
    client: httpx.AsyncClient, registry: Registry, make_settings: Callable[..., Settings]
) -> None:
    images = random_images(5, seed=4)
    files = [("image", (f"{i}.png", image_file(p), "image/png")) for i, p in enumerate(images)]

    response = await client.post("/refine", files=files)

    assert response.status_code == 200
    items = response.json()["images"]
    assert len(items) == 5
    for pixels, item in zip(images, items, strict=True):
        np.testing.assert_array_equal(decoded(item), refined_alone(registry, "v1", pixels, make_settings()))


async def test_refine_json_base64_images_of_mixed_sizes_keep_each_size(
    client: httpx.AsyncClient, registry: Registry, make_settings: Callable[..., Settings]
) -> None:
    sizes = [(35, 55), (17, 9), (64, 48), (35, 55)]
    images = [random_images(1, h, w, seed=i)[0] for i, (h, w) in enumerate(sizes)]
    payload = {"images": [{"data": base64.b64encode(image_file(p)).decode()} for p in images]}

    response = await client.post("/refine", json=payload)

    assert response.status_code == 200
    items = response.json()["images"]
    assert [(item["height"], item["width"]) for item in items] == sizes
    for pixels, item in zip(images, items, strict=True):
        np.testing.assert_array_equal(decoded(item), refined_alone(registry, "v1", pixels, make_settings()))


async def test_refine_accepts_jpeg_npy_and_data_urls(
    client: httpx.AsyncClient, registry: Registry, make_settings: Callable[..., Settings]
) -> None:
    pixels = random_images(1, 20, 30, seed=2)[0]
    jpeg = image_file(pixels, "JPEG")
    files = [
        ("image", ("a.jpg", jpeg, "image/jpeg")),
        ("image", ("b.npy", image_file(pixels[:, :, 0], "NPY"), "application/octet-stream")),
    ]
    multipart = await client.post("/refine", files=files)
    data_url = "data:image/png;base64," + base64.b64encode(image_file(pixels)).decode()
    json_body = await client.post("/refine", json={"images": [{"data": data_url}]})

    assert multipart.status_code == 200
    assert [(i["height"], i["width"], i["channels"]) for i in multipart.json()["images"]] == [(20, 30, 1)] * 2
    assert json_body.status_code == 200
    refined = [decoded(item) for item in [*multipart.json()["images"], *json_body.json()["images"]]]
    # JPEG is lossy: the model refines what the JPEG decodes to; the NPY and PNG carry the pixels exactly.
    inputs = [read_image(jpeg), pixels, pixels]
    for image, got in zip(inputs, refined, strict=True):
        np.testing.assert_array_equal(got, refined_alone(registry, "v1", image, make_settings()))


async def test_refine_rgb_model_returns_rgb_images(
    tiny_models: TinyModels, registry: Registry, make_settings: Callable[..., Settings], serve: Serve
) -> None:
    tiny_models.publish(tiny_models.rgb, registry)
    pixels = random_images(1, 24, 32, channels=3, seed=5)[0]
    async with serve(create_app(make_settings())) as client:
        response = await client.post("/refine", files={"image": ("rgb.png", image_file(pixels), "image/png")})

    assert response.status_code == 200
    (item,) = response.json()["images"]
    assert item["channels"] == 3
    np.testing.assert_array_equal(decoded(item), refined_alone(registry, "v1", pixels, make_settings()))


async def test_refine_with_accept_png_returns_the_png_itself(
    client: httpx.AsyncClient, registry: Registry, make_settings: Callable[..., Settings]
) -> None:
    pixels = random_images(1)[0]

    response = await client.post(
        "/refine",
        files={"image": ("eye.png", image_file(pixels), "image/png")},
        headers={"Accept": "image/png"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-model-version"] == "v1"
    np.testing.assert_array_equal(
        read_image(response.content), refined_alone(registry, "v1", pixels, make_settings())
    )


async def test_refine_annotations_come_back_exactly_as_sent(client: httpx.AsyncClient) -> None:
    annotations = [
        {"zeta": 1, "alpha": {"nested": [1, 2.5, None, {"deep": [True, False]}]}, "émoji": "👁 regard 視線"},
        None,
        {"b": None, "a": [], "c": {}, "big": 12345678901234567890, "neg": -0.0, "exp": 1.5e-7},
    ]
    images = random_images(3, 8, 8)
    files = [("image", (f"{i}.png", image_file(p), "image/png")) for i, p in enumerate(images)]
    text = json.dumps(annotations, ensure_ascii=False)

    multipart = await client.post("/refine", files=files, data={"annotations": text})
    json_body = await client.post(
        "/refine",
        json={
            "images": [
                {"data": base64.b64encode(image_file(p)).decode(), "annotations": a}
                for p, a in zip(images, annotations, strict=True)
            ]
        },
    )

    for response in (multipart, json_body):
        assert response.status_code == 200
        returned = [item["annotations"] for item in response.json()["images"]]
        assert returned == annotations
        # Same key order, not only equal values: compare the JSON text.
        assert json.dumps(returned, ensure_ascii=False) == text


async def test_refine_one_image_takes_a_json_object_as_its_annotations(client: httpx.AsyncClient) -> None:
    annotations = {"gaze": {"pitch": -3.5, "yaw": 10}, "keypoints": {"iris_center": [27.5, 17.0]}}

    response = await client.post(
        "/refine",
        files={"image": ("eye.png", image_file(random_images(1)[0]), "image/png")},
        data={"annotations": json.dumps(annotations)},
    )

    assert response.status_code == 200
    assert response.json()["images"][0]["annotations"] == annotations


async def test_refine_named_model_version_is_loaded_on_demand(
    tiny_models: TinyModels,
    registry: Registry,
    gray_model: ModelCard,
    make_settings: Callable[..., Settings],
    serve: Serve,
) -> None:
    registry.activate("v1")
    tiny_models.publish(tiny_models.gray_other, registry)  # v2, not active
    pixels = random_images(1, seed=9)[0]
    async with serve(create_app(make_settings())) as client:
        png = image_file(pixels)
        default = await client.post("/refine", files={"image": ("e.png", png, "image/png")})
        named = await client.post(
            "/refine", files={"image": ("e.png", png, "image/png")}, data={"model": "v2"}
        )
        latest = await client.post(
            "/refine", json={"images": [{"data": base64.b64encode(png).decode()}], "model": "latest"}
        )

    assert (default.status_code, named.status_code, latest.status_code) == (200, 200, 200)
    assert (default.json()["model"], named.json()["model"], latest.json()["model"]) == ("v1", "v2", "v2")
    np.testing.assert_array_equal(
        decoded(named.json()["images"][0]), refined_alone(registry, "v2", pixels, make_settings())
    )


async def test_refine_unknown_model_version_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/refine",
        files={"image": ("e.png", image_file(random_images(1)[0]), "image/png")},
        data={"model": "v42"},
    )

    assert response.status_code == 404
    assert "v42" in response.json()["detail"]
