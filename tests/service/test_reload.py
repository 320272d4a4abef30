"""Hot reload: new models are swapped in under load without failing a request; broken ones are skipped."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from core.settings import Settings
from models import ModelCard, Registry
from models.providers import engines
from models.session import load_refiner
from service.main import create_app
from tests.factories import image_file, publish_corrupt, random_images, read_image

if TYPE_CHECKING:
    from tests.service.conftest import Serve, TinyModels

pytestmark = pytest.mark.anyio


DEADLINE_SECONDS = 60.0
"""How long a test waits for something the service does by itself; past it the test fails, saying what."""


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after DEADLINE_SECONDS."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not so after {DEADLINE_SECONDS:.0f} s")
        await asyncio.sleep(0.01)


async def wait_until_serving(client: httpx.AsyncClient, version: str) -> None:
    async def serving() -> bool:
        return bool((await client.get("/readyz")).json().get("model") == version)

    await until(serving, f"the service serves {version}")


async def test_new_model_is_swapped_in_while_requests_are_in_flight_without_failing_one(
    tiny_models: TinyModels,
    registry: Registry,
    gray_model: ModelCard,
    make_settings: Callable[..., Settings],
    serve: Serve,
) -> None:
    settings = make_settings(reload_poll_seconds=0.02)
    pixels = random_images(1, 12, 12, seed=3)[0]
    png = image_file(pixels)
    results: list[tuple[int, str | None, np.ndarray | None]] = []
    swapped = asyncio.Event()

    async def send_until(stop: asyncio.Event, extra: int) -> None:
        while not stop.is_set() or extra > 0:
            extra -= stop.is_set()
            response = await client.post("/refine", files={"image": ("e.png", png, "image/png")})
            body = response.json() if response.status_code == 200 else {}
            image = read_image(base64.b64decode(body["images"][0]["data"])) if body else None
            results.append((response.status_code, body.get("model"), image))

    async with serve(create_app(settings)) as client:
        senders = [asyncio.ensure_future(send_until(swapped, extra=4)) for _ in range(16)]

        async def flowing() -> bool:
            return len(results) >= 40

        await until(flowing, "40 answers from v1")  # a steady stream is flowing on v1
        await asyncio.to_thread(tiny_models.publish, tiny_models.gray_other, registry)
        await wait_until_serving(client, "v2")
        swapped.set()
        await asyncio.gather(*senders)

    assert len(results) >= 100
    assert [status for status, _, _ in results if status != 200] == []
    versions = [version for _, version, _ in results]
    assert versions[0] == "v1" and versions[-1] == "v2" and set(versions) == {"v1", "v2"}
    expected = {v: load_refiner(registry, v, settings).refine(pixels[None])[0] for v in ("v1", "v2")}
    for _, version, image in results:  # each answer was made by the model it names
        assert version is not None
        np.testing.assert_array_equal(image, expected[version])


@pytest.mark.parametrize("damage", ["not-onnx", "sha256-mismatch"])
async def test_broken_model_is_skipped_and_the_old_one_keeps_serving(
    tiny_models: TinyModels,
    registry: Registry,
    gray_model: ModelCard,
    make_settings: Callable[..., Settings],
    serve: Serve,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    app = create_app(make_settings())
    async with serve(app) as client:
        if damage == "not-onnx":
            broken = publish_corrupt(registry, tmp_path, gray_model)
        else:
            broken = tiny_models.publish(tiny_models.gray_other, registry)
            with registry.onnx_path(broken.version).open("ab") as f:
                f.write(b"tampered")
        with caplog.at_level(logging.ERROR, logger="service.reloader"):
            for _ in range(3):  # the poller and these direct checks all meet the same broken model
                await asyncio.to_thread(app.state.reloader.check)
        ready = await client.get("/readyz")
        refined = await client.post(
            "/refine", files={"image": ("e.png", image_file(random_images(1)[0]), "image/png")}
        )

    assert broken.version == "v2"
    assert ready.status_code == 200
    assert ready.json()["model"] == "v1"
    assert refined.status_code == 200
    assert refined.json()["model"] == "v1"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "v2" in r.getMessage()]
    assert len(errors) == 1  # once, by whoever met it first (the poller thread or a direct check)
    assert all("still serving: v1" in message for message in errors)


async def test_newer_good_model_after_a_broken_one_is_loaded(
    tiny_models: TinyModels,
    registry: Registry,
    gray_model: ModelCard,
    make_settings: Callable[..., Settings],
    serve: Serve,
    tmp_path: Path,
) -> None:
    async with serve(create_app(make_settings())) as client:
        publish_corrupt(registry, tmp_path, gray_model)
        tiny_models.publish(tiny_models.gray_other, registry)
        await wait_until_serving(client, "v3")
        metrics = (await client.get("/metrics")).text

    engine = engines("auto")[0]
    labels = f'precision="{engine.precision}",provider="{engine.provider}",version="v3"'
    assert f"simgan_active_model{{{labels}}} 1.0" in metrics
    assert 'version="v1"' not in metrics.split("simgan_active_model")[-1]


async def test_fresh_start_with_a_broken_newest_model_serves_the_newest_that_works(
    registry: Registry,
    gray_model: ModelCard,
    make_settings: Callable[..., Settings],
    serve: Serve,
    tmp_path: Path,
) -> None:
    publish_corrupt(registry, tmp_path, gray_model)  # v2

    async with serve(create_app(make_settings())) as client:
        ready = await client.get("/readyz")
        refined = await client.post(
            "/refine", files={"image": ("e.png", image_file(random_images(1)[0]), "image/png")}
        )

    assert ready.status_code == 200
    assert ready.json()["model"] == "v1"
    assert refined.status_code == 200


async def test_readiness_turns_ready_when_the_first_model_is_published(
    tiny_models: TinyModels, registry: Registry, make_settings: Callable[..., Settings], serve: Serve
) -> None:
    async with serve(create_app(make_settings())) as client:
        before = await client.get("/readyz")
        tiny_models.publish(tiny_models.gray, registry)
        await wait_until_serving(client, "v1")
        after = await client.get("/readyz")

    assert before.status_code == 503
    assert "no model is published yet" in before.json()["detail"]
    assert after.status_code == 200


async def test_the_model_cache_keeps_the_most_recently_used_versions_and_evicts_the_oldest(
    tiny_models: TinyModels, registry: Registry, make_settings: Callable[..., Settings], serve: Serve
) -> None:
    for card in (tiny_models.gray, tiny_models.gray_other, tiny_models.gray, tiny_models.gray_other):
        tiny_models.publish(card, registry)  # v1 .. v4
    app = create_app(make_settings(model_cache_size=2))
    async with serve(app) as client:
        active = (await client.get("/readyz")).json()["model"]
        a, b, c = [v for v in ("v1", "v2", "v3", "v4") if v != active]
        reloader = app.state.reloader
        first_a, first_b = await reloader.get(a), await reloader.get(b)
        assert await reloader.get(a) is first_a  # cached, and now the most recently used
        first_c = await reloader.get(c)  # a third one: the least recently used (b) goes

        assert await reloader.get(c) is first_c
        assert await reloader.get(a) is first_a
        again_b = await reloader.get(b)  # loaded anew; now c is the oldest and goes
        assert again_b is not first_b and again_b.version == b
        assert await reloader.get(c) is not first_c
        assert reloader.current.version == active  # served beside the cache, never evicted
