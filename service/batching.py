"""Dynamic batching: images of concurrent /refine requests share model calls.

Each image waits in a group keyed by (model version, H, W, C), since only images of one
shape stack into one (B, H, W, C) tensor. One consumer task takes the oldest group and
sends it to the model when it holds `max_size` images (fewer for large images: at most
MAX_BATCH_PIXELS per call, so a batch of large images cannot take the memory of 64) or its
first image has waited `max_delay`; while a batch runs (in a worker thread, off the event
loop), newcomers gather, so under load batches fill up by themselves. Every image carries its
own future, so each answer goes back to the request that sent it. At most `queue_size` images wait; a request
that would pass that is refused whole (QueueFull -> 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from models.noise import DEFAULT_SEED
from models.session import RefinerSession
from models.tiling import budget_calls
from service.metrics import Metrics

log = logging.getLogger(__name__)


GroupKey = tuple[str, int, int, int]
"""(model version, H, W, C)"""
MAX_BATCH_PIXELS = 4 * 1024 * 1024
"""Most input pixels (H x W per image) in one model call: 64 images of 256 x 256, 4 of 1024 x 1024;
an engine's working memory grows with it (0.3 to 0.7 GB per million pixels for the bundled refiner,
bench/results/refine.md)."""


class QueueFull(Exception):
    """Too many images wait for the model; the client should retry after `retry_after` seconds."""

    def __init__(self, waiting: int, asked: int, limit: int, retry_after: int) -> None:
        super().__init__(
            f"the refine queue is full ({waiting} images waiting, this request adds {asked}, "
            f"limit {limit}); retry in {retry_after} s"
        )
        self.retry_after = retry_after


class BatcherStopped(Exception):
    """The service is shutting down; the image was not refined."""


@dataclass
class _Waiting:
    refiner: RefinerSession
    image: np.ndarray  # (H, W, C) uint8
    future: asyncio.Future[np.ndarray]
    since: float = field(default=0.0)
    seed: int = DEFAULT_SEED  # a stochastic model's noise comes from it and the image (models/noise.py)


class Batcher:
    def __init__(
        self,
        metrics: Metrics,
        max_size: int,
        max_delay_s: float,
        queue_size: int,
        call_pixels: int = 256 * 256,
    ) -> None:
        self.metrics = metrics
        self.call_pixels = call_pixels
        self.max_size = max(1, max_size)
        self.max_delay_s = max(0.0, max_delay_s)
        self.queue_size = queue_size
        self._groups: dict[GroupKey, deque[_Waiting]] = {}
        self._waiting = 0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One batch at a time: the model already uses every core (or the GPU) for one call.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simgan-refine")

    @property
    def waiting(self) -> int:
        """Images queued and not yet handed to the model."""
        return self._waiting

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="simgan-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for group in self._groups.values():
            for item in group:
                if not item.future.done():
                    item.future.set_exception(BatcherStopped("the service is shutting down; retry"))
        self._groups.clear()
        self._waiting = 0
        self._executor.shutdown(wait=True)

    async def refine(
        self, refiner: RefinerSession, images: list[np.ndarray], seed: int = DEFAULT_SEED
    ) -> list[np.ndarray]:
        """Refine uint8 (H, W, C) images with `refiner`; results in the same order. Images of other
        requests may share the model call: a stochastic model's noise depends on each image and its
        request's `seed` only, never on the batch."""
        if self._waiting + len(images) > self.queue_size:
            retry_after = max(1, math.ceil(self.max_delay_s * 2))
            raise QueueFull(self._waiting, len(images), self.queue_size, retry_after)
        loop = asyncio.get_running_loop()
        now = loop.time()
        items = [_Waiting(refiner, image, loop.create_future(), now, seed) for image in images]
        for item in items:
            height, width, channels = item.image.shape
            self._groups.setdefault((refiner.version, height, width, channels), deque()).append(item)
        self._waiting += len(items)
        self._arrived.set()
        return list(await asyncio.gather(*(item.future for item in items)))

    # ------------------------------------------------------------- consumer
    async def _run(self) -> None:
        while True:
            if not self._groups:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            key = min(self._groups, key=lambda k: self._groups[k][0].since)
            await self._fill(self._groups[key], self._limit(key))
            batch = self._take(key)
            if batch:
                await self._call_model(batch)

    async def _fill(self, group: deque[_Waiting], limit: int) -> None:
        """Wait until `group` holds `limit` images or its oldest image has waited max_delay."""
        loop = asyncio.get_running_loop()
        deadline = group[0].since + self.max_delay_s
        while len(group) < limit and (remaining := deadline - loop.time()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _limit(self, key: GroupKey) -> int:
        """Images of this group's shape in one call: max_size, fewer where they are large."""
        _, height, width, _ = key
        return max(1, min(self.max_size, MAX_BATCH_PIXELS // max(1, height * width)))

    def _take(self, key: GroupKey) -> list[_Waiting]:
        group = self._groups[key]
        taken = [group.popleft() for _ in range(min(self._limit(key), len(group)))]
        if not group:
            del self._groups[key]
        self._waiting -= len(taken)
        return [item for item in taken if not item.future.done()]  # skip requests that went away

    async def _call_model(self, batch: list[_Waiting], between: bool = True) -> None:
        refiner = batch[0].refiner
        stacked = np.stack([item.image for item in batch])  # (B, H, W, C)
        seeds = [item.seed for item in batch]
        refined = np.empty_like(stacked)
        loop = asyncio.get_running_loop()
        try:
            # Calls of at most call_pixels each (models/tiling.py); between two of them, the small
            # batches waiting meanwhile get their turn, so one request of large images holds no one up.
            calls = list(budget_calls(refiner, stacked, seeds, self.call_pixels, refined))
            for number, call in enumerate(calls):
                if number and between:
                    await self._serve_small(exclude=(refiner.version, *stacked.shape[1:]))
                await loop.run_in_executor(self._executor, call)
        except Exception as exc:
            log.exception("model %s failed on a batch of %d", refiner.version, len(batch))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self.metrics.observe_batch(refiner.version, len(batch))
        for item, image in zip(batch, refined, strict=True):
            if not item.future.done():
                item.future.set_result(image)

    async def _serve_small(self, exclude: tuple[object, ...]) -> None:
        """One batch of every waiting group whose images fit one model call, oldest first."""
        small = [
            key
            for key in sorted(self._groups, key=lambda k: self._groups[k][0].since)
            if key != exclude and key[1] * key[2] <= self.call_pixels
        ]
        for key in small:
            if key in self._groups:
                batch = self._take(key)
                if batch:
                    await self._call_model(batch, between=False)
