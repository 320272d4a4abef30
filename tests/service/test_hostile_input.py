"""Inputs a hostile or careless client sends get a 4xx saying what to fix, never a 500, and the
service keeps serving: annotations nested 10,000 deep, empty arrays, a malformed Accept header."""

from __future__ import annotations

import base64
import io
import json
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from core.annotations import MAX_JSON_DEPTH
from core.settings import Settings
from service.main import create_app
from tests.factories import image_file, random_images

if TYPE_CHECKING:
    from tests.service.conftest import Serve

pytestmark = pytest.mark.anyio

PNG = image_file(random_images(1, 8, 8)[0])
DEEP = "[" * 10_000 + "]" * 10_000


async def test_refine_refuses_annotations_nested_10000_deep_in_a_multipart_field(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/refine", files=[("image", ("eye.png", PNG, "image/png"))], data={"annotations": DEEP}
    )
    assert response.status_code == 422
    assert f"deeper than {MAX_JSON_DEPTH} levels" in response.json()["detail"]


async def test_refine_refuses_annotations_nested_10000_deep_in_a_json_body(client: httpx.AsyncClient) -> None:
    data = base64.b64encode(PNG).decode()
    body = '{"images": [{"data": "' + data + '", "annotations": ' + DEEP + "}]}"
    response = await client.post("/refine", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert f"deeper than {MAX_JSON_DEPTH} levels" in response.json()["detail"]


@pytest.mark.parametrize("shape", [(0, 10), (10, 0), (0, 0, 3)])
async def test_refine_refuses_an_npy_that_holds_no_pixels(
    client: httpx.AsyncClient, shape: tuple[int, ...]
) -> None:
    out = io.BytesIO()
    np.save(out, np.zeros(shape, np.uint8))
    response = await client.post(
        "/refine", files=[("image", ("empty.npy", out.getvalue(), "application/octet-stream"))]
    )
    assert response.status_code == 422
    assert "holds no pixels" in response.json()["detail"]


@pytest.mark.parametrize(
    "accept", [b"image/png;q=\xb2", "image/png;q=2", "image/png;q=abc", "image/png;q=", "image/png;q=0.5.5"]
)
async def test_a_malformed_accept_header_is_treated_as_absent(
    client: httpx.AsyncClient, accept: str | bytes
) -> None:
    response = await client.post(
        "/refine", files=[("image", ("eye.png", PNG, "image/png"))], headers={"Accept": accept}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.content)["images"][0]["width"] == 8


async def test_a_well_formed_accept_header_with_weights_is_still_honoured(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/refine",
        files=[("image", ("eye.png", PNG, "image/png"))],
        headers={"Accept": "application/json;q=0.5, image/png;q=1.0"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/datasets", "GET, HEAD, POST"),
        ("PUT", "/datasets/abc", "DELETE, GET, HEAD"),
        ("DELETE", "/train-jobs", "GET, HEAD, POST"),
    ],
)
async def test_a_method_not_served_is_a_405_whose_allow_lists_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert f"use {allow}" in response.json()["detail"]


async def test_the_openapi_document_describes_validation_errors_as_the_problem_body_sent(
    jobs_settings: Settings, serve: Serve
) -> None:
    async with serve(create_app(jobs_settings)) as client:
        document = (await client.get("/openapi.json")).json()
        response = await client.get("/train-jobs", params={"limit": 0})
    assert "HTTPValidationError" not in document["components"]["schemas"]
    listing = document["paths"]["/train-jobs"]["get"]["responses"]["422"]
    assert listing["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "400" in document["paths"]["/train-jobs"]["post"]["responses"]
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)
