"""`simgan bench refine`: how fast the service refines, as ratios against a baseline in the same run.

Two questions, each answered on the same warm machine in one run, every figure the median of
`--repeats` measurements with its min and max (the machines are shared and noisy):

1. Engine: images per second of one onnxruntime session at batch sizes 1, 4, 16, 32, as a ratio to
   batch 1. This is what dynamic batching can win at most.
2. HTTP: requests per second through the real app (ASGI, in process, no network) for one client
   sending one image at a time (the baseline), and for `--clients` concurrent clients with dynamic
   batching on and off (batch_max_size = 1).

The refiner is the bundled default (the default architecture), published into a scratch registry.
No torch: this measures exactly what the service runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from simgan.benchmarks.stats import cell, spread

RESULTS = Path("bench/results")
BATCH_SIZES = (1, 4, 16, 32)


def register(benches: argparse._SubParsersAction) -> None:
    parser = benches.add_parser("refine", help="refine throughput: batch sizes and HTTP batching on/off")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per figure (median reported)")
    parser.add_argument("--images", type=int, default=64, help="images refined per engine measurement")
    parser.add_argument("--requests", type=int, default=96, help="requests per HTTP measurement")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--height", type=int, default=35)
    parser.add_argument("--width", type=int, default=55)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for refine.json and refine.md")
    parser.set_defaults(run=run)


def _options(args: argparse.Namespace) -> list[str]:
    names = ("repeats", "images", "requests", "clients", "height", "width")
    return [part for name in names for part in (f"--{name}", str(getattr(args, name)))]


def _engine(refiner: Any, images: np.ndarray, batch: int) -> float:
    """Images per second refining `images` in chunks of `batch`."""
    started = time.perf_counter()
    for start in range(0, len(images), batch):
        refiner.refine(images[start : start + batch])
    return len(images) / (time.perf_counter() - started)


async def _http(app: Any, png: bytes, requests: int, clients: int) -> float:
    """Requests per second of `clients` concurrent senders posting one PNG each time."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        remaining = list(range(requests))

        async def sender() -> None:
            while remaining:
                remaining.pop()
                response = await client.post("/refine", files={"image": ("x.png", png, "image/png")})
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        return requests / (time.perf_counter() - started)


async def _http_figures(
    settings_overrides: dict[str, Any], png: bytes, args: argparse.Namespace
) -> list[float]:
    from core.settings import Settings
    from service.main import create_app

    app = create_app(Settings(**settings_overrides))
    clients = settings_overrides.pop("_clients")
    async with app.router.lifespan_context(app):
        await _http(app, png, 8, clients)  # warm-up
        return [await _http(app, png, args.requests, clients) for _ in range(args.repeats)]


def run(args: argparse.Namespace) -> int:
    import io

    from PIL import Image

    from core.settings import Settings
    from models import Registry
    from models.session import load_refiner

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, args.height, args.width, 1), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(images[0, :, :, 0]).save(buffer, format="PNG")
    png = buffer.getvalue()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simgan-bench-") as home:
        base = {"home": Path(home), "reload_poll_seconds": 60.0}
        registry = Registry(Settings(**base).models_path)
        card = registry.seed_bundled()
        if card is None:
            raise SystemExit("no bundled default refiner in models/bundled/ (make default-model)")
        refiner = load_refiner(registry, card.version, Settings(**base))
        _engine(refiner, images, 8)  # warm-up
        engine: dict[int, list[float]] = {b: [] for b in BATCH_SIZES}
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits every batch size alike
            for batch in BATCH_SIZES:
                engine[batch].append(_engine(refiner, images, batch))
        http = {
            "one client, one image at a time": {**base, "_clients": 1},
            f"{args.clients} clients, dynamic batching": {**base, "_clients": args.clients},
            f"{args.clients} clients, no batching": {**base, "_clients": args.clients, "batch_max_size": 1},
        }
        http_runs = {name: asyncio.run(_http_figures(dict(o), png, args)) for name, o in http.items()}
    engine_base = spread(engine[1])["median"]
    http_base = spread(next(iter(http_runs.values())))["median"]
    report = {
        "command": shlex.join(["simgan", "bench", "refine", *_options(args)]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}",
        "provider": refiner.provider,
        "model": {"channels": card.channels, "config": card.config},
        "image": [args.height, args.width, 1],
        "seconds": round(time.perf_counter() - started, 1),
        "engine_images_per_second": {str(b): spread(v) for b, v in engine.items()},
        "engine_speedup_vs_batch_1": {
            str(b): spread([x / engine_base for x in v]) for b, v in engine.items()
        },
        "http_requests_per_second": {k: spread(v) for k, v in http_runs.items()},
        "http_speedup_vs_one_client": {k: spread([x / http_base for x in v]) for k, v in http_runs.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "refine.json").write_text(json.dumps(report, indent=2))
    (args.out / "refine.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Refine speed (`simgan bench refine`)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; provider {report['provider']}; image {report['image']}; "
        f"wall time {report['seconds']:.0f} s.  ",
        "Each cell: median [min, max] over the repeats. Speed-ups are against the first row,",
        "measured in the same run.",
        "",
        "| engine batch size | images/s | speed-up vs batch 1 |",
        "| --- | --- | --- |",
    ]
    for batch, figure in report["engine_images_per_second"].items():
        lines.append(
            f"| {batch} | {cell(figure, 1)} | {cell(report['engine_speedup_vs_batch_1'][batch], 2)} |"
        )
    lines += [
        "",
        "| HTTP /refine, one 8-bit PNG per request | requests/s | speed-up vs one client |",
        "| --- | --- | --- |",
    ]
    for name, figure in report["http_requests_per_second"].items():
        lines.append(
            f"| {name} | {cell(figure, 1)} | {cell(report['http_speedup_vs_one_client'][name], 2)} |"
        )
    return "\n".join(lines) + "\n"
