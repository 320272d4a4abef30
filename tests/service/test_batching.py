"""Dynamic batching: concurrent requests share model calls, answers stay paired, the queue is bounded."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest

from core.settings import Settings
from models import ModelCard, Registry
from models.session import load_refiner
from service import batching
from service.main import create_app
from tests.factories import image_file, random_images, read_image

if TYPE_CHECKING:
    from tests.service.conftest import Serve

pytestmark = pytest.mark.anyio


def metric(text: str, name: str) -> float:
    """Sum of one series over its labels, from Prometheus text."""
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, flags=re.MULTILINE))


async def test_concurrent_requests_share_batches_and_each_gets_its_own_image_back(
    make_settings: Callable[..., Settings], registry: Registry, gray_model: ModelCard, serve: Serve
) -> None:
    # A long delay and 16 images of one shape: exactly two full batches of 8, whatever the timing.
    settings = make_settings(batch_max_size=8, batch_max_delay_ms=30_000)
    images = random_images(16, seed=11)
    alone = load_refiner(registry, "v1", settings)
    async with serve(create_app(settings)) as client:
        responses = await asyncio.gather(
            *(
                client.post("/refine", files={"image": (f"{i}.png", image_file(p), "image/png")})
                for i, p in enumerate(images)
            )
        )
        metrics = (await client.get("/metrics")).text

    assert [r.status_code for r in responses] == [200] * 16
    for pixels, response in zip(images, responses, strict=True):
        refined = read_image(base64.b64decode(response.json()["images"][0]["data"]))
        expected = alone.refine(pixels[None])[0]
        assert np.abs(refined.astype(int) - expected).max() <= 1  # its own input's result, not a neighbour's
    assert metric(metrics, "simgan_refine_batch_size_count") == 2
    assert metric(metrics, "simgan_refine_batch_size_sum") == 16
    assert metric(metrics, "simgan_images_refined_total") == 16


async def test_images_of_different_shapes_are_batched_separately(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    settings = make_settings(batch_max_size=4, batch_max_delay_ms=30_000)
    small, large = random_images(4, 10, 10), random_images(4, 20, 30)
    async with serve(create_app(settings)) as client:
        responses = await asyncio.gather(
            *(
                client.post("/refine", files={"image": ("x.png", image_file(p), "image/png")})
                for p in [*small, *large]
            )
        )
        metrics = (await client.get("/metrics")).text

    assert [r.status_code for r in responses] == [200] * 8
    assert [r.json()["images"][0]["width"] for r in responses] == [10] * 4 + [30] * 4
    assert metric(metrics, "simgan_refine_batch_size_count") == 2


async def test_large_images_go_to_the_model_in_smaller_batches(
    make_settings: Callable[..., Settings],
    gray_model: ModelCard,
    serve: Serve,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batching, "MAX_BATCH_PIXELS", 2 * 20 * 30)  # two 20 x 30 images per call
    settings = make_settings(batch_max_size=4, batch_max_delay_ms=30_000)
    async with serve(create_app(settings)) as client:
        responses = await asyncio.gather(
            *(
                client.post("/refine", files={"image": ("x.png", image_file(p), "image/png")})
                for p in random_images(4, 20, 30)
            )
        )
        metrics = (await client.get("/metrics")).text

    assert [r.status_code for r in responses] == [200] * 4
    assert metric(metrics, "simgan_refine_batch_size_count") == 2
    assert metric(metrics, "simgan_refine_batch_size_sum") == 4


async def test_full_queue_answers_503_with_retry_after_and_recovers(
    make_settings: Callable[..., Settings], gray_model: ModelCard, serve: Serve
) -> None:
    settings = make_settings(batch_queue_size=4, batch_max_size=4, batch_max_delay_ms=30_000)
    app = create_app(settings)
    files = [("image", ("x.png", image_file(p), "image/png")) for p in random_images(3, 8, 8)]
    async with serve(app) as client:
        first = asyncio.ensure_future(client.post("/refine", files=files))
        async with asyncio.timeout(30):  # the first request's 3 images wait for a 4th
            while app.state.batcher.waiting < 3:
                await asyncio.sleep(0.01)
        refused = await client.post("/refine", files=files)
        filler = await client.post("/refine", files=files[:1])  # the 4th image: the batch is full and runs
        accepted = await first

    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert "queue is full" in refused.json()["detail"]
    assert (accepted.status_code, filler.status_code) == (200, 200)
