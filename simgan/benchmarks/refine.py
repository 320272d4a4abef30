"""`simgan bench refine`: how fast the service refines, as ratios against a baseline in the same run.

Two questions, each answered on the same warm machine in one run, every figure the median of
`--repeats` measurements with its min and max (the machines are shared and noisy):

1. Engines (simgan/benchmarks/engines.py): images per second of every engine this machine offers
   (the plain onnxruntime CPU provider as the baseline, OpenVINO, CUDA, the CPU provider as the
   service sets it up) at batch sizes 1-64, as ratios to the baseline at batch 64, with GFLOP/s
   and the share of the machine's own matmul bound measured in the same run.
2. HTTP: requests per second through the real app (ASGI, in process, no network) for one client
   sending one image at a time (the baseline), and for `--clients` concurrent clients with dynamic
   batching on and off (batch_max_size = 1).

The refiner is the bundled default (the default architecture), published into a scratch registry.
No torch: this measures exactly what the service runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from simgan.benchmarks import batcher, engines
from simgan.benchmarks.stats import cell, spread, write_report

RESULTS = Path("bench/results")


def register(benches: argparse._SubParsersAction) -> None:
    parser = benches.add_parser("refine", help="refine throughput: batch sizes and HTTP batching on/off")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per figure (median reported)")
    parser.add_argument("--images", type=int, default=256, help="images refined per engine measurement")
    parser.add_argument("--threads", type=int, default=0, help="engine threads (0: each engine's default)")
    parser.add_argument("--large-side", type=int, default=512, help="side of the memory test's images")
    parser.add_argument("--batches", default="1,4,16,32,64", help="engine batch sizes (baseline: largest)")
    parser.add_argument("--no-http", action="store_true", help="measure the engines only (no app)")
    parser.add_argument("--requests", type=int, default=96, help="requests per HTTP measurement")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--height", type=int, default=35)
    parser.add_argument("--width", type=int, default=55)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for refine.json and refine.md")
    parser.set_defaults(run=run)


def _options(args: argparse.Namespace) -> list[str]:
    names = ("repeats", "images", "batches", "threads", "large_side", "requests", "clients", "height")
    names += ("width",)
    flags = ["--no-http"] if args.no_http else []
    pairs = [(f"--{name.replace('_', '-')}", str(getattr(args, name))) for name in names]
    return [part for pair in pairs for part in pair] + flags


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
    from models.providers import cpu_has_amx

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
        load_average = os.getloadavg()
        path = registry.onnx_path(card.version)
        sizes = tuple(int(b) for b in args.batches.split(","))
        engine = engines.measure(path, card, images, args.repeats, args.threads, args.large_side, sizes)
        batching = None if args.no_http else batcher.measure(base, png, args.requests, args.repeats)
        http = {
            "one client, one image at a time": {**base, "_clients": 1},
            f"{args.clients} clients, dynamic batching": {**base, "_clients": args.clients},
            f"{args.clients} clients, no batching": {**base, "_clients": args.clients, "batch_max_size": 1},
        }
        if args.no_http:
            http = {}
        http_runs = {name: asyncio.run(_http_figures(dict(o), png, args)) for name, o in http.items()}
        load_average = tuple(max(a, b) for a, b in zip(load_average, os.getloadavg(), strict=True))
    http_base = spread(next(iter(http_runs.values())))["median"] if http_runs else 1.0
    report = {
        "command": shlex.join(["simgan", "bench", "refine", *_options(args)]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {_cpu_name()}, AMX "
        f"{'yes' if cpu_has_amx() else 'no'}",
        "load_average": {"1 min": round(load_average[0], 2), "5 min": round(load_average[1], 2)},
        "model": {"channels": card.channels, "config": card.config},
        "image": [args.height, args.width, 1],
        "seconds": round(time.perf_counter() - started, 1),
        "engines": engine,
        "batcher": batching,
        "http_requests_per_second": {k: spread(v) for k, v in http_runs.items()},
        "http_speedup_vs_one_client": {k: spread([x / http_base for x in v]) for k, v in http_runs.items()},
    }
    write_report(args.out, "refine", report, markdown(report))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def markdown(report: dict[str, Any]) -> str:
    load = report["load_average"]
    lines = [
        "# Refine speed (`simgan bench refine`)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; highest load average during the run {load['1 min']} (1 min), "
        f"{load['5 min']} (5 min); image {report['image']}; wall time {report['seconds']:.0f} s.  ",
        "Each cell: median [min, max] over the repeats. Ratios are against the baseline measured in the",
        "same run (for engines: the same repeat).",
        "",
        *engines.markdown(report["engines"]),
        *(batcher.markdown(report["batcher"]) if report["batcher"] else []),
    ]
    if not report["http_requests_per_second"]:
        return "\n".join(lines) + "\n"
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
