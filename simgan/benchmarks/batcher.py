"""The batcher part of `simgan bench refine`: which batch size and delay suit the engine that serves.

Through the real app (ASGI in process, no network, the multipart form with one eye PNG per
request), one app per (batch_max_size, batch_max_delay_ms) setting, all running at once so the
repeats interleave: `clients` concurrent senders, for 1 and 16 clients. Reports requests per
second and the median time a request takes, as ratios against the old defaults (16, 5 ms) in
the same repeat. The engine is whatever `load_refiner` chooses here.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from contextlib import AsyncExitStack
from typing import Any

from simgan.benchmarks.stats import cell, spread

SETTINGS = ((16, 5.0), (4, 0.0), (8, 0.0), (16, 0.0), (64, 0.0), (4, 1.0))
"""(batch_max_size, batch_max_delay_ms): the old defaults first, then the candidates."""
CLIENTS = (1, 16)


async def _send(client: Any, png: bytes, requests: int, clients: int) -> tuple[float, float]:
    """(requests per second, median seconds per request) of `clients` senders sharing `requests`."""
    remaining = list(range(requests))
    took: list[float] = []

    async def sender() -> None:
        while remaining:
            remaining.pop()
            started = time.perf_counter()
            response = await client.post("/refine", files={"image": ("x.png", png, "image/png")})
            response.raise_for_status()
            took.append(time.perf_counter() - started)

    await asyncio.sleep(0.05)  # let the previous run's idle engine threads settle (engines.py)
    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(clients)))
    return requests / (time.perf_counter() - started), statistics.median(took)


async def _measure(base: dict[str, Any], png: bytes, requests: int, repeats: int) -> dict[str, Any]:
    import httpx

    from core.settings import Settings
    from service.main import create_app

    keys = [(size, delay, clients) for clients in CLIENTS for size, delay in SETTINGS]
    rates: dict[tuple[float, ...], list[float]] = {k: [] for k in keys}
    took: dict[tuple[float, ...], list[float]] = {k: [] for k in keys}
    async with AsyncExitStack() as stack:
        apps = {}
        for size, delay in SETTINGS:
            app = create_app(Settings(**base, batch_max_size=size, batch_max_delay_ms=delay))
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://bench")
            apps[(size, delay)] = await stack.enter_async_context(client)
            await _send(apps[(size, delay)], png, 8, 4)  # warm-up
        for _ in range(repeats):
            for size, delay, clients in keys:
                rate, median = await _send(apps[(size, delay)], png, requests, int(clients))
                rates[(size, delay, clients)].append(rate)
                took[(size, delay, clients)].append(median)
    rows = []
    for key in keys:
        size, delay, clients = key
        first = rates[(SETTINGS[0][0], SETTINGS[0][1], clients)]
        rows.append(
            {
                "batch_max_size": size,
                "batch_max_delay_ms": delay,
                "clients": clients,
                "requests_per_second": spread(rates[key]),
                "ratio_to_old_defaults": spread([a / b for a, b in zip(rates[key], first, strict=True)]),
                "median_request_ms": spread([t * 1000 for t in took[key]]),
            }
        )
    return {"requests": requests, "rows": rows}


def measure(base: dict[str, Any], png: bytes, requests: int, repeats: int) -> dict[str, Any]:
    """Every setting at every client count, interleaved over the repeats; `base`: Settings fields."""
    return asyncio.run(_measure(base, png, requests, repeats))


def markdown(batcher: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Batcher settings through the app (ASGI in process, multipart, one eye PNG per request, "
        f"{batcher['requests']} requests per measurement); ratios against the old defaults (16, 5 ms) in "
        "the same repeat.",
        "",
        "| batch_max_size | batch_max_delay_ms | clients | requests/s | vs old defaults | median ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in batcher["rows"]:
        lines.append(
            f"| {row['batch_max_size']} | {row['batch_max_delay_ms']} | {row['clients']} "
            f"| {cell(row['requests_per_second'], 1)} | {cell(row['ratio_to_old_defaults'], 2)} "
            f"| {cell(row['median_request_ms'], 1)} |"
        )
    return lines
