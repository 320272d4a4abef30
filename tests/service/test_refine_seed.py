"""Stochastic models through the service: POST /refine and bulk refine jobs take a seed, and the same
image with the same seed comes out the same, alone, in a batch, or in a bulk job."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from PIL import Image

from core.datasets import DatasetStore
from core.settings import Settings
from models import ModelCard, Registry
from service.main import create_app
from tests.factories import (
    image_file,
    live_server,
    publish_stochastic_refiner,
    random_images,
    read_image,
    run_queued_jobs,
    store_eye_dataset,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def stochastic_model(registry: Registry) -> ModelCard:
    return publish_stochastic_refiner(registry)


def _files(images: np.ndarray) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (f"{i}.png", image_file(p), "image/png")) for i, p in enumerate(images)]


def _refined(response: httpx.Response) -> list[np.ndarray]:
    assert response.status_code == 200, response.text
    return [read_image(base64.b64decode(item["data"])) for item in response.json()["images"]]


async def test_the_same_image_and_seed_give_the_same_output_alone_or_among_others(
    make_settings: Callable[..., Settings], stochastic_model: ModelCard, serve: Callable
) -> None:
    images = random_images(3, height=20, width=24)
    async with serve(create_app(make_settings())) as client:
        together = await client.post("/refine?seed=5", files=_files(images))
        alone = await client.post("/refine?seed=5", files=_files(images[2:]))
        other_seed = await client.post("/refine?seed=6", files=_files(images[2:]))
    assert together.json()["stochastic"] is True and together.json()["seed"] == 5
    assert np.array_equal(_refined(together)[2], _refined(alone)[0])
    assert not np.array_equal(_refined(alone)[0], _refined(other_seed)[0])


async def test_without_a_seed_refining_is_reproducible_with_seed_0(
    make_settings: Callable[..., Settings], stochastic_model: ModelCard, serve: Callable
) -> None:
    pixels = random_images(1, height=20, width=24)
    async with serve(create_app(make_settings())) as client:
        default = await client.post("/refine", files=_files(pixels), headers={"Accept": "image/png"})
        zero = await client.post("/refine?seed=0", files=_files(pixels), headers={"Accept": "image/png"})
    assert default.headers["X-Refine-Seed"] == "0"
    assert read_image(default.content).tolist() == read_image(zero.content).tolist()


@pytest.mark.parametrize("seed", ["-1", "x", str(2**63)])
async def test_a_bad_seed_is_422_naming_it(
    make_settings: Callable[..., Settings], stochastic_model: ModelCard, serve: Callable, seed: str
) -> None:
    async with serve(create_app(make_settings())) as client:
        response = await client.post(f"/refine?seed={seed}", files=_files(random_images(1)))
    assert response.status_code == 422
    assert "seed" in response.text


async def test_a_deterministic_model_reports_that_the_seed_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    pixels = random_images(1)
    first = await client.post("/refine?seed=1", files=_files(pixels))
    second = await client.post("/refine?seed=2", files=_files(pixels))
    assert first.json()["stochastic"] is False
    assert np.array_equal(_refined(first)[0], _refined(second)[0])


def test_a_bulk_refine_job_with_a_seed_matches_post_refine_with_that_seed(
    jobs_settings: Settings, redis_url: str
) -> None:
    card = publish_stochastic_refiner(Registry(jobs_settings.models_path))
    dataset = str(store_eye_dataset(jobs_settings.data_path, "synthetic", count=3).id)
    with live_server(create_app(jobs_settings)) as api:
        created = api.post("/refine-jobs", json={"dataset": dataset, "model": card.version, "seed": 9})
        assert created.status_code == 202 and created.json()["seed"] == 9
        run_queued_jobs(redis_url, "refine")
        job = api.get(f"/refine-jobs/{created.json()['id']}").json()
        assert job["status"] == "succeeded", job
        archive = zipfile.ZipFile(io.BytesIO(api.get(job["result"]).content))
        images, _, names = DatasetStore(jobs_settings.data_path).load(dataset)
        direct = api.post(
            "/refine?seed=9",
            files=[*_files(images[1:2]), ("model", (None, card.version))],  # type: ignore[list-item]
        )
    from_job = np.asarray(Image.open(io.BytesIO(archive.read(names[1]))))
    assert np.array_equal(from_job, _refined(direct)[0][..., 0])
