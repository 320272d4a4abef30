"""`simgan bench soak`: the API under sustained load and under one request of large images, on loopback.

Two phases against one API process (`simgan serve` with the bundled refiner, no workers):

- soak: `--clients` threads for `--seconds`, each sending one-image requests (a 55x35 eye) and,
  every `--large-every`-th request, a 64-image one; errors, p50/p99 latency per kind, and the API's
  RSS at the start and the end.
- big: the request that once took 17 GB: 16 blank 1024x1024 PNGs in one POST /refine, repeated
  `--repeats` times; meanwhile a 55x35 request every 0.2 s. Reported: the big request's time, the
  small ones' worst and median latency during it against the same request on an idle API (the
  baseline, measured in the same run), peak and final RSS.

Only 127.0.0.1 is ever contacted, every loop is bounded in count and time, and it stops by itself.
"""

from __future__ import annotations

import argparse
import io
import shlex
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from simgan.benchmarks.http import api_processes
from simgan.benchmarks.stats import cell, spread, write_report

MAX_SECONDS = 600
GB = 1024**3


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


EYE = png(np.random.default_rng(0).integers(0, 256, (35, 55), dtype=np.uint8))


def rss_bytes(pid: int) -> int:
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def post(client: httpx.Client, count: int, image: bytes = EYE) -> tuple[int, float]:
    started = time.perf_counter()
    answer = client.post("/refine", files=[("image", (f"{i}.png", image, "image/png")) for i in range(count)])
    return answer.status_code, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def soak(port: int, pid: int, clients: int, seconds: float, large_every: int) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {"1 image": [], "64 images": []}
    errors: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    start_rss = rss_bytes(pid)

    def client_loop(number: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            sent = 0
            while time.monotonic() < deadline:
                sent += 1
                kind = "64 images" if large_every and (sent + number) % large_every == 0 else "1 image"
                try:
                    status, took = post(client, 64 if kind == "64 images" else 1)
                except httpx.HTTPError as exc:
                    status, took = -1, 0.0
                    with lock:
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                with lock:
                    if status == 200:
                        latencies[kind].append(took)
                    elif status != -1:
                        errors[str(status)] = errors.get(str(status), 0) + 1

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 180)
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": {kind: len(values) for kind, values in latencies.items()},
        "errors": errors,
        "p50_s": {kind: percentile(values, 0.5) for kind, values in latencies.items()},
        "p99_s": {kind: percentile(values, 0.99) for kind, values in latencies.items()},
        "rss_start_gb": start_rss / GB,
        "rss_end_gb": rss_bytes(pid) / GB,
    }


def big_request(port: int, pid: int, side: int) -> dict[str, Any]:
    """One request of 16 blank side x side PNGs with 55x35 requests alongside; RSS sampled every 50 ms."""
    blank = png(np.zeros((side, side), np.uint8))
    base = f"http://127.0.0.1:{port}"
    done = threading.Event()
    peak = [rss_bytes(pid)]
    small: list[float] = []
    outcome: dict[str, Any] = {}

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            time.sleep(0.05)

    def big() -> None:
        with httpx.Client(base_url=base, timeout=600) as client:
            outcome["status"], outcome["seconds"] = post(client, 16, blank)
        done.set()

    threads = [threading.Thread(target=sample), threading.Thread(target=big)]
    for thread in threads:
        thread.start()
    with httpx.Client(base_url=base, timeout=120) as client:
        time.sleep(0.2)  # the big request is being read and refined
        while not done.is_set():
            status, took = post(client, 1)
            if status == 200:
                small.append(took)
            time.sleep(0.2)
    for thread in threads:
        thread.join(660)
    time.sleep(1.0)  # what the process keeps once it is idle again
    return {
        "status": outcome.get("status"),
        "big_seconds": outcome.get("seconds"),
        "small_during": len(small),
        "small_worst_s": max(small) if small else None,
        "small_median_s": statistics.median(small) if small else None,
        "rss_peak_gb": peak[0] / GB,
        "rss_after_gb": rss_bytes(pid) / GB,
    }


def idle_latency(port: int, count: int = 20) -> float:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        return statistics.median(post(client, 1)[1] for _ in range(count))


def run(args: argparse.Namespace) -> int:
    seconds = min(float(args.seconds), MAX_SECONDS)
    command = shlex.join(
        ["simgan", "bench", "soak", f"--clients={args.clients}", f"--seconds={args.seconds}",
         f"--large-every={args.large_every}", f"--repeats={args.repeats}", f"--big-side={args.big_side}"]
    )  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="simgan-soak-") as tmp,
        api_processes(Path(tmp), 1, {}) as (port, pid),
    ):
        baseline = idle_latency(port)
        bigs = [big_request(port, pid, args.big_side) for _ in range(args.repeats)]
        soaked = soak(port, pid, args.clients, seconds, args.large_every)
    report = {
        "command": command,
        "big_side": args.big_side,
        "baseline_small_s": baseline,
        "big": bigs,
        "big_summary": {
            key: spread([run[key] for run in bigs])
            for key in ("big_seconds", "small_worst_s", "small_median_s", "rss_peak_gb", "rss_after_gb")
        },
        "small_worst_vs_baseline": spread(
            [run["small_worst_s"] / baseline if run["small_worst_s"] else None for run in bigs]
        ),
        "soak": soaked,
    }
    write_report(args.out, "soak", report, markdown(report))
    return 0 if not soaked["errors"] and all(run["status"] == 200 for run in bigs) else 1


def markdown(report: dict[str, Any]) -> str:
    big, soaked = report["big_summary"], report["soak"]
    lines = [
        "# simgan bench soak",
        "",
        f"`{report['command']}` (one API process, bundled refiner, this machine; median [min, max] over "
        f"{big['big_seconds']['n']} runs)",
        "",
        f"## 16 blank {report['big_side']}px squares in one POST /refine, 55x35 ones alongside",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| big request, s | {cell(big['big_seconds'], 1)} |",
        f"| 55x35 request during it, worst, s | {cell(big['small_worst_s'], 2)} |",
        f"| 55x35 request during it, median, s | {cell(big['small_median_s'], 2)} |",
        f"| 55x35 request on an idle API (baseline), s | {report['baseline_small_s']:.3f} |",
        f"| worst during / baseline | {cell(report['small_worst_vs_baseline'], 1)} |",
        f"| API RSS peak, GB | {cell(big['rss_peak_gb'], 2)} |",
        f"| API RSS after, GB | {cell(big['rss_after_gb'], 2)} |",
        "",
        f"## Soak: {soaked['clients']} clients for {soaked['seconds']:g} s",
        "",
        "| kind | requests | p50 s | p99 s |",
        "| --- | --- | --- | --- |",
    ]
    for kind, count in soaked["requests"].items():
        p50, p99 = soaked["p50_s"][kind], soaked["p99_s"][kind]
        lines.append(f"| {kind} | {count} | {p50 or 0:.3f} | {p99 or 0:.3f} |")
    lines += [
        "",
        f"Errors: {soaked['errors'] or 'none'}. API RSS {soaked['rss_start_gb']:.2f} GB at the start, "
        f"{soaked['rss_end_gb']:.2f} GB at the end.",
        "",
    ]
    return "\n".join(lines)


def register(benches: argparse._SubParsersAction) -> None:
    parser = benches.add_parser("soak", help="sustained load and one large request, on loopback (bounded)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the soak phase")
    parser.add_argument("--seconds", type=float, default=30, help=f"soak duration (at most {MAX_SECONDS})")
    parser.add_argument("--large-every", type=int, default=10, help="every n-th request carries 64 images")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the 16-megapixel request")
    parser.add_argument(
        "--big-side", type=int, default=1024, help="side of the 16 blank PNGs of the big request"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.set_defaults(run=run)
