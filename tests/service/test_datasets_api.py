"""/datasets through the real app: upload, simulate, list, inspect, delete, and the refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest

from core.datasets import DatasetStore
from core.settings import Settings
from models import Registry
from service.api.schemas import MAX_SIMULATE_COUNT
from service.api.schemas.datasets import EXAMPLE_DATASETS
from service.main import create_app
from tests.factories import h5_file, image_file, npz_file, random_images, zip_file
from tests.service.conftest import TinyModels

pytestmark = pytest.mark.anyio

EYES_ZIP = zip_file({f"eyes/{i}.png": image_file(random_images(1, 35, 55, seed=i)[0]) for i in range(3)})


@asynccontextmanager
async def api_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://simgan.test") as client:
        yield client


@pytest.fixture
def api_settings(redis_url: str, make_settings: Callable[..., Settings]) -> Settings:
    """Dataset store in this test's tmp dir; a real Redis, which dataset writes check first."""
    return make_settings()


@pytest.fixture
async def api(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app (no model needed for datasets)."""
    async with api_for(api_settings) as client:
        yield client


async def post_file(
    api: httpx.AsyncClient, name: str, data: bytes, kind: str = "synthetic"
) -> httpx.Response:
    return await api.post("/datasets", files={"file": (name, data)}, data={"kind": kind})


def stored(settings: Settings) -> list[str]:
    return [info.id for info in DatasetStore(settings.data_path).list()]


async def test_upload_stores_the_dataset_and_answers_its_shape(api: httpx.AsyncClient) -> None:
    response = await post_file(api, "eyes.zip", EYES_ZIP, kind="real")
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("kind", "count", "height", "width", "channels")} == {
        "kind": "real",
        "count": 3,
        "height": 35,
        "width": 55,
        "channels": 1,
    }
    assert body["source"] == "upload:eyes.zip"

    listed = await api.get("/datasets")
    assert listed.status_code == 200
    assert listed.json() == {"datasets": [body]}
    one = await api.get(f"/datasets/{body['id']}")
    assert one.status_code == 200
    assert one.json() == body


async def test_the_openapi_examples_work_as_shown_in_order(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()["components"]["schemas"]
    made = []
    for example in spec["SimulateRequest"]["examples"]:
        response = await api.post("/datasets/simulate", json=example)
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])

    assert made == [dataset_id for _, dataset_id in EXAMPLE_DATASETS]
    for example in spec["TrainJobCreate"]["examples"]:
        assert (await api.post("/train-jobs", json=example)).status_code == 202


async def test_delete_of_a_dataset_models_were_trained_on_is_409_naming_them_unless_forced(
    api: httpx.AsyncClient, api_settings: Settings, tiny_models: TinyModels
) -> None:
    dataset_id = (await post_file(api, "eyes.zip", EYES_ZIP)).json()["id"]
    registry = Registry(api_settings.models_path)
    card = replace(tiny_models.gray, datasets=[{"kind": "synthetic", "id": dataset_id}])
    published = tiny_models.publish(card, registry)

    refused = await api.delete(f"/datasets/{dataset_id}")
    assert refused.status_code == 409
    assert (
        f"published model(s) {published.version} were trained on dataset '{dataset_id}'"
        in (refused.json()["detail"])
    )
    assert f"DELETE /datasets/{dataset_id}?force=true" in refused.json()["detail"]
    assert dataset_id in stored(api_settings)

    assert (await api.delete(f"/datasets/{dataset_id}", params={"force": "true"})).status_code == 204
    assert dataset_id not in stored(api_settings)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("eyes.npz", npz_file(random_images(4, 8, 8), [{"gaze": i} for i in range(4)])),
        ("eyes.h5", h5_file(random_images(4, 8, 8)[..., 0], key="image")),
    ],
)
async def test_upload_accepts_array_files(api: httpx.AsyncClient, name: str, data: bytes) -> None:
    response = await post_file(api, name, data)
    assert response.status_code == 201
    assert (response.json()["count"], response.json()["height"]) == (4, 8)


async def test_uploading_the_same_file_twice_gives_the_same_dataset(
    api: httpx.AsyncClient, api_settings: Settings
) -> None:
    first = await post_file(api, "eyes.zip", EYES_ZIP)
    second = await post_file(api, "copy.zip", EYES_ZIP)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["id"] == first.json()["id"]
    assert stored(api_settings) == [first.json()["id"]]


async def test_simulate_makes_an_annotated_eye_dataset_deterministically(
    api: httpx.AsyncClient, api_settings: Settings
) -> None:
    request = {"simulator": "eyes", "count": 6, "domain": "synthetic", "seed": 3}
    response = await api.post("/datasets/simulate", json=request)
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("kind", "count", "height", "width", "channels", "has_annotations")} == {
        "kind": "synthetic",
        "count": 6,
        "height": 35,
        "width": 55,
        "channels": 1,
        "has_annotations": True,
    }
    again = await api.post("/datasets/simulate", json=request)
    assert again.json()["id"] == body["id"]

    images, annotations, _ = DatasetStore(api_settings.data_path).load(body["id"])
    assert images.shape == (6, 35, 55, 1) and images.dtype == np.uint8
    assert annotations is not None and set(annotations[0]) >= {"gaze", "keypoints"}


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"simulator": "faces", "count": 2}, "unknown simulator 'faces'; built-in: eyes"),
        ({"count": MAX_SIMULATE_COUNT + 1}, "count"),
        ({"count": 2, "domain": "cartoon"}, "domain"),
        ({"count": 2, "colour": "red"}, "colour"),
    ],
)
async def test_simulate_refuses_bad_requests(
    api: httpx.AsyncClient, request_body: dict[str, Any], message: str
) -> None:
    response = await api.post("/datasets/simulate", json=request_body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


async def test_delete_removes_a_dataset_and_unknown_ids_are_404(api: httpx.AsyncClient) -> None:
    dataset_id = (await post_file(api, "eyes.zip", EYES_ZIP)).json()["id"]
    deleted = await api.delete(f"/datasets/{dataset_id}")
    assert deleted.status_code == 204

    for response in (await api.get(f"/datasets/{dataset_id}"), await api.delete(f"/datasets/{dataset_id}")):
        assert response.status_code == 404
        assert response.json() == {
            "detail": f"dataset '{dataset_id}' does not exist; GET /datasets lists the stored ones"
        }


@pytest.mark.parametrize(
    ("files", "form", "status", "message"),
    [
        ({"file": ("eyes.zip", EYES_ZIP)}, {}, 422, "send a form field 'kind'"),
        ({"file": ("eyes.zip", EYES_ZIP)}, {"kind": "fake"}, 422, "kind must be 'synthetic' or 'real'"),
        ({}, {"kind": "real"}, 422, "send the dataset as a multipart part named 'file'"),
        ({"file": ("eyes.7z", b"7z")}, {"kind": "real"}, 415, "send one of .zip, .tar, .tar.gz"),
        ({"file": ("eyes.zip", zip_file({"../x.png": b""}))}, {"kind": "real"}, 400, "climbs out"),
    ],
)
async def test_upload_refusals_answer_what_to_fix_and_store_nothing(
    api: httpx.AsyncClient,
    api_settings: Settings,
    files: dict[str, Any],
    form: dict[str, str],
    status: int,
    message: str,
) -> None:
    response = await api.post("/datasets", files=files or {"other": ("x.txt", b"x")}, data=form)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert stored(api_settings) == []


@pytest.mark.parametrize("size", [2_000, 200_000], ids=["over-limit", "declared-length-over-limit"])
async def test_upload_over_the_size_limit_is_413(
    redis_url: str, make_settings: Callable[..., Settings], size: int
) -> None:
    settings = make_settings(max_upload_bytes=1_000)
    async with api_for(settings) as api:
        response = await post_file(api, "eyes.zip", bytes(size))
    assert response.status_code == 413
    assert "(SIMGAN_MAX_UPLOAD_BYTES)" in response.json()["detail"]
    assert stored(settings) == []


async def test_writes_answer_503_while_redis_is_down_and_reads_still_work(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    dataset_id = DatasetStore(settings.data_path).create_from_arrays(random_images(2)).id
    async with api_for(settings) as api:
        refused = [
            await post_file(api, "eyes.zip", EYES_ZIP),
            await api.post("/datasets/simulate", json={"count": 2}),
            await api.delete(f"/datasets/{dataset_id}"),
        ]
        assert [r.status_code for r in refused] == [503, 503, 503]
        assert "Redis" in refused[0].json()["detail"]
        assert (await api.get("/datasets")).status_code == 200
        assert (await api.get(f"/datasets/{dataset_id}")).status_code == 200
    assert stored(settings) == [dataset_id]


async def test_docs_describe_the_upload_form(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    body = schema["paths"]["/datasets"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file", "kind"]
    assert body["properties"]["kind"]["enum"] == ["synthetic", "real"]
