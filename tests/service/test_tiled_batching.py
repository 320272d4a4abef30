"""The batcher keeps every model call within the pixel budget, and a small request sent while a
request of large images is being refined is answered between two of its calls, not after them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
import pytest

from core.settings import Settings
from models import ModelCard, Registry
from models.session import RefinerSession, load_refiner
from service.batching import Batcher
from service.metrics import Metrics
from tests.factories import random_images

pytestmark = pytest.mark.anyio


class Gated:
    """A real refiner whose first call waits for the test: the test then knows a large batch is
    mid-way when it sends the small request. Every call's input shape is written down."""

    def __init__(self, refiner: RefinerSession) -> None:
        self.refiner = refiner
        self.gate = threading.Event()
        self.shapes: list[tuple[int, ...]] = []
        self.started = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.refiner, name)

    def refine(self, images: np.ndarray, **kwargs: object) -> np.ndarray:
        self.started.set()
        self.gate.wait(30)
        self.shapes.append(images.shape)
        return self.refiner.refine(images, **kwargs)  # type: ignore[arg-type]


async def test_a_small_request_is_answered_between_the_tiles_of_a_large_one(
    make_settings: Callable[..., Settings], registry: Registry, gray_model: ModelCard
) -> None:
    refiner = Gated(load_refiner(registry, "v1", make_settings()))
    batcher = Batcher(Metrics(), max_size=16, max_delay_s=0.001, queue_size=256, call_pixels=64 * 64)
    batcher.start()
    try:
        large = random_images(4, 128, 128, seed=1)
        small = random_images(1, 35, 55, seed=2)
        finished: list[str] = []

        async def send(name: str, images: np.ndarray) -> list[np.ndarray]:
            result = await batcher.refine(refiner, list(images))  # type: ignore[arg-type]
            finished.append(name)
            return result

        large_task = asyncio.create_task(send("large", large))
        await asyncio.to_thread(refiner.started.wait, 30)  # the large batch's first call is running
        small_task = asyncio.create_task(send("small", small))
        await asyncio.sleep(0.05)  # the small request is queued behind the running call
        refiner.gate.set()
        large_out, small_out = await asyncio.gather(large_task, small_task)
    finally:
        await batcher.stop()

    assert finished == ["small", "large"]
    assert all(n * h * w <= 64 * 64 for n, h, w, _ in refiner.shapes)
    assert np.array_equal(np.stack(large_out), refiner.refiner.refine(large))
    assert np.array_equal(small_out[0], refiner.refiner.refine(small)[0])
