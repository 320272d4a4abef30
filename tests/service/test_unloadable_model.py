"""A published version the service cannot load is marked: GET /models says so and why, /readyz names
it, and nothing picks it by default (the service, `active`, POST /refine-jobs). A good model published
after it is served; replacing the broken file makes it worth another try."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core.settings import Settings
from models import ModelCard, Registry
from service.main import create_app
from tests.factories import publish_corrupt, store_eye_dataset

if TYPE_CHECKING:
    from tests.service.conftest import Serve, TinyModels

pytestmark = pytest.mark.anyio


async def test_an_unloadable_newest_model_is_marked_and_never_picked_by_default(
    registry: Registry,
    gray_model: ModelCard,
    jobs_settings: Settings,
    serve: Serve,
    tmp_path: Path,
) -> None:
    app = create_app(jobs_settings)
    async with serve(app) as client:
        broken = publish_corrupt(registry, tmp_path, gray_model)  # v2, newest, activates itself
        await asyncio.to_thread(app.state.reloader.check)
        listing = (await client.get("/models")).json()
        ready = (await client.get("/readyz")).json()
        dataset = store_eye_dataset(jobs_settings.data_path, "synthetic", count=2).id
        job = await client.post("/refine-jobs", json={"dataset": dataset})

    assert broken.version == "v2"
    assert listing["active"] == "v1" and listing["serving"] == "v1"
    marks = {model["version"]: model["unloadable"] for model in listing["models"]}
    assert marks["v1"] is None
    assert "model v2 cannot serve" in marks["v2"]
    assert ready["model"] == "v1"
    assert len(ready["skipped"]) == 1 and ready["skipped"][0].startswith("model v2 cannot serve")
    assert job.status_code == 202 and job.json()["model"] == "v1"
    assert registry.resolve("active") == "v1"


async def test_a_good_model_published_after_a_broken_one_is_served_and_a_repaired_file_is_tried_again(
    tiny_models: TinyModels,
    registry: Registry,
    gray_model: ModelCard,
    make_settings: Callable[..., Settings],
    serve: Serve,
    tmp_path: Path,
) -> None:
    app = create_app(make_settings())
    async with serve(app) as client:
        publish_corrupt(registry, tmp_path, gray_model)  # v2
        await asyncio.to_thread(app.state.reloader.check)
        assert registry.unloadable("v2") is not None
        tiny_models.publish(tiny_models.gray_other, registry)  # v3
        await asyncio.to_thread(app.state.reloader.check)
        assert (await client.get("/readyz")).json()["model"] == "v3"

    # The file replaced (by hand, or a re-publish): the mark no longer holds.
    path = registry.onnx_path("v2")
    path.write_bytes(path.read_bytes() + b" ")
    assert registry.unloadable("v2") is None
