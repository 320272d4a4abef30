"""/refine-jobs on a real Redis with a real worker and a real onnxruntime refiner."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from core.datasets import DatasetStore
from core.settings import Settings
from jobs import queue
from models import ModelCard, Registry
from models.session import load_refiner
from service.main import create_app
from tests.factories import image_file, live_server, random_images, run_queued_jobs, store_eye_dataset
from tests.service.conftest import TinyModels


@pytest.fixture
def api(jobs_settings: Settings, gray_model: ModelCard) -> Iterator[httpx.Client]:
    with live_server(create_app(jobs_settings)) as client:
        yield client


@pytest.fixture
def dataset(jobs_settings: Settings) -> str:
    return str(store_eye_dataset(jobs_settings.data_path, "synthetic", count=10).id)


def test_metrics_count_bulk_refined_images_and_jobs_by_kind_and_outcome(
    api: httpx.Client, dataset: str, redis_url: str, jobs_settings: Settings, gray_model: ModelCard
) -> None:
    done = api.post("/refine-jobs", json={"dataset": dataset}).json()["id"]
    run_queued_jobs(redis_url, "refine")
    canceled = api.post("/refine-jobs", json={"dataset": dataset}).json()["id"]
    queue.cancel(queue.connect(jobs_settings), jobs_settings, queue.REFINE_QUEUE, canceled)
    api.post("/refine", files={"image": ("0.png", image_file(random_images(1, 35, 55)[0]), "image/png")})

    text = api.get("/metrics").text

    assert api.get(f"/refine-jobs/{done}").json()["status"] == "succeeded"
    v = gray_model.version
    assert f'simgan_images_refined_total{{model="{v}",source="job"}} 10.0' in text
    assert f'simgan_images_refined_total{{model="{v}",source="request"}} 1.0' in text
    assert 'simgan_jobs_total{kind="refine",outcome="succeeded"} 1.0' in text
    assert 'simgan_jobs_total{kind="refine",outcome="canceled"} 1.0' in text


def test_refine_job_zip_holds_refined_pngs_under_the_same_names_and_the_annotations_unchanged(
    api: httpx.Client, dataset: str, redis_url: str, jobs_settings: Settings, gray_model: ModelCard
) -> None:
    created = api.post("/refine-jobs", json={"dataset": dataset})
    assert created.status_code == 202
    job_id = created.json()["id"]
    assert created.json()["model"] == gray_model.version
    assert api.get(f"/refine-jobs/{job_id}/result").status_code == 409  # not run yet

    run_queued_jobs(redis_url, "refine")

    job = api.get(f"/refine-jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert job["progress"] == {"images_done": 10, "images_total": 10, "eta_seconds": 0.0}
    response = api.get(job["result"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    store = DatasetStore(jobs_settings.data_path)
    images, _, names = store.load(dataset)
    expected = load_refiner(Registry(jobs_settings.models_path), gray_model.version, jobs_settings).refine(
        images
    )
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == sorted([*names, "annotations.jsonl"])
        stored_annotations = (store.images_path(dataset).parent / "annotations.jsonl").read_bytes()
        assert archive.read("annotations.jsonl") == stored_annotations
        for name, pixels in zip(names, expected, strict=True):
            refined = np.asarray(Image.open(io.BytesIO(archive.read(name))))
            assert refined.shape == pixels.shape[:2]
            np.testing.assert_array_equal(refined, pixels[..., 0])


def test_refine_job_for_a_dataset_that_does_not_exist_is_404(api: httpx.Client) -> None:
    response = api.post("/refine-jobs", json={"dataset": "0123456789abcdef"})

    assert response.status_code == 404
    assert "0123456789abcdef" in response.json()["detail"]


def test_refine_job_for_a_model_that_does_not_exist_is_404(api: httpx.Client, dataset: str) -> None:
    response = api.post("/refine-jobs", json={"dataset": dataset, "model": "v42"})

    assert response.status_code == 404
    assert "v42" in response.json()["detail"]


def test_refine_job_refuses_a_model_for_another_channel_count(
    api: httpx.Client, dataset: str, tiny_models: TinyModels, jobs_settings: Settings
) -> None:
    rgb = tiny_models.publish(tiny_models.rgb, Registry(jobs_settings.models_path))

    response = api.post("/refine-jobs", json={"dataset": dataset, "model": rgb.version})

    assert response.status_code == 422
    assert "3-channel" in response.json()["detail"] and "1-channel" in response.json()["detail"]


def test_result_of_an_unknown_refine_job_is_404(api: httpx.Client) -> None:
    assert api.get("/refine-jobs/0123/result").status_code == 404


def test_a_failed_refine_job_says_why_and_has_no_result(
    api: httpx.Client, dataset: str, redis_url: str, jobs_settings: Settings
) -> None:
    job_id = api.post("/refine-jobs", json={"dataset": dataset}).json()["id"]
    DatasetStore(jobs_settings.data_path).delete(dataset)

    run_queued_jobs(redis_url, "refine")

    job = api.get(f"/refine-jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "does not exist" in job["error"]
    response = api.get(f"/refine-jobs/{job_id}/result")
    assert response.status_code == 409
    assert "failed" in response.json()["detail"]
