"""The HTTP half of `simgan bench refine`: POST /refine through real API processes on this machine.

Every figure is images per second as a ratio to plain onnxruntime (CPU execution provider, fp32,
in process, batch 64) on the same ONNX file, measured in the same repeat, so a shared, noisy
machine moves both sides alike. The API runs as the product runs it (`simgan serve` with
REDIS_URL set: uvicorn, `SIMGAN_API_PROCESSES` processes); the load comes from this process
(simgan.benchmarks.load). Forms: `multipart` (`-F image=@eye.png`), `json` (base64 in
`{"images": [...]}`) and `raw` (the PNG itself as the body, `Accept: image/png`; one image per
request). Every answer is checked for status 200, and a sample of them for their pixels against
the baseline's output (the report gives the worst difference in grey levels).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simgan.benchmarks.load import build_request, drive, png_bytes, refined_pixels
from simgan.benchmarks.stats import cell, spread, write_report

BASELINE_BATCH = 64


@dataclass(frozen=True)
class Case:
    """One HTTP measurement: a request form, images per request, concurrent clients, API processes."""

    form: str
    images: int
    clients: int
    processes: int

    @property
    def name(self) -> str:
        per = "1 image" if self.images == 1 else f"{self.images} images"
        procs = "1 process" if self.processes == 1 else f"{self.processes} processes"
        return f"{self.form}, {per}/request, {self.clients} clients, {procs}"


DEFAULT_CASES = (
    Case("multipart", 64, 1, 1),
    Case("multipart", 64, 4, 1),
    Case("json", 64, 4, 1),
    Case("multipart", 1, 1, 1),
    Case("multipart", 1, 32, 1),
    Case("raw", 1, 1, 1),
    Case("raw", 1, 32, 1),
    Case("raw", 1, 32, 2),
    Case("multipart", 64, 4, 2),
)


def parse_cases(text: str) -> tuple[Case, ...]:
    """`form:images:clients:processes,...` -> cases (the `--http` option)."""
    cases = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        form, images, clients, processes = item.split(":")
        if form not in ("multipart", "json", "raw"):
            raise ValueError(f"unknown form {form!r}: multipart, json or raw")
        if form == "raw" and images != "1":
            raise ValueError("the raw form carries one image per request")
        cases.append(Case(form, int(images), int(clients), int(processes)))
    return tuple(cases)


def case_option(cases: tuple[Case, ...]) -> str:
    return ",".join(f"{c.form}:{c.images}:{c.clients}:{c.processes}" for c in cases)


# ------------------------------------------------------------------ servers
def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and every process below it (Linux /proc).

    On a shared machine wall-clock rates move with the neighbours' load; the server's own CPU time
    per image is what the lean path cuts, and it moves much less."""
    from service.supervisor import descendants

    ticks = 0
    for member in (pid, *descendants(pid)):
        with contextlib.suppress(OSError, IndexError):
            fields = (Path("/proc") / str(member) / "stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def api_processes(home: Path, processes: int, env: dict[str, str]) -> Iterator[tuple[int, int]]:
    """`processes` API processes as `simgan serve` starts them (with REDIS_URL set, so no workers);
    yields (port, pid of the process tree's root) once every one of them is ready."""
    port = free_port()
    environment = {
        **os.environ,
        "SIMGAN_HOME": str(home),
        "SIMGAN_API_PROCESSES": str(processes),
        "SIMGAN_RELOAD_POLL_SECONDS": "60",
        "SIMGAN_LOG_LEVEL": "warning",
        "REDIS_URL": "redis://127.0.0.1:1",  # never reached by /refine
        **env,
    }
    command = [sys.executable, "-m", "simgan.cli", "serve", "--port", str(port)]
    # cwd: an empty directory, so `-m` finds the installed (or PYTHONPATH's) simgan, not this
    # directory's, and no folder there (the home's models/, data/) shadows a package of the same name.
    cwd = home / "api-cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(command, env=environment, cwd=cwd, start_new_session=True)
    try:
        _wait_ready(port, process, processes)
        yield port, process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def _wait_ready(port: int, process: subprocess.Popen[bytes], processes: int) -> None:
    """Until /readyz says 200 `processes` times in a row on fresh connections (each process its own)."""
    deadline = time.monotonic() + 120
    ready = 0
    while ready < 4 * processes:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError("the API was not ready within 120 s")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                ready = ready + 1 if answer.status == 200 else 0
        except OSError:
            ready = 0
            time.sleep(0.2)


# ------------------------------------------------------------------ baseline
def baseline_session(onnx_path: Path) -> Any:
    """Plain onnxruntime: CPU execution provider, fp32 graph as published, default threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])


def baseline_rate(session: Any, images: np.ndarray) -> float:
    """Images per second refining `images` in batches of 64."""
    name = session.get_inputs()[0].name
    started = time.perf_counter()
    for start in range(0, len(images), BASELINE_BATCH):
        session.run(None, {name: images[start : start + BASELINE_BATCH]})
    return len(images) / (time.perf_counter() - started)


# ------------------------------------------------------------------ the run
def _readiness(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
        ready: dict[str, Any] = json.loads(answer.read())
        return ready


def _difference(refined: np.ndarray, wanted: np.ndarray) -> int:
    return int(np.abs(refined.reshape(wanted.shape).astype(int) - wanted.astype(int)).max())


def _worst_difference(answers: list[bytes], form: str, expected: np.ndarray) -> int:
    """Largest grey-level difference between the refined images answered and the baseline's."""
    worst = 0
    for answer in answers:
        for refined, wanted in zip(refined_pixels(answer, form), expected, strict=False):
            worst = max(worst, _difference(refined, wanted))
    return worst


_SERVED: dict[tuple[str, int], Any] = {}


def served_engine(home: str, batch: int, images: np.ndarray) -> tuple[str, float, float, np.ndarray]:
    """In a fresh process (see measure): the engine the API's settings choose, refining `images` in
    batches of `batch`; (provider, images/s, CPU seconds per image, the refined images)."""
    from core.settings import Settings
    from models import Registry
    from models.session import load_refiner

    if (home, batch) not in _SERVED:
        settings = Settings(home=Path(home))
        registry = Registry(settings.models_path)
        _SERVED[home, batch] = load_refiner(registry, registry.versions()[-1], settings)
    served = _SERVED[home, batch]
    used, started = time.process_time(), time.perf_counter()
    refined = [served.refine(images[i : i + batch]) for i in range(0, len(images), batch)]
    rate = len(images) / (time.perf_counter() - started)
    return str(served.provider), rate, (time.process_time() - used) / len(images), np.concatenate(refined)


def measure(
    cases: tuple[Case, ...],
    onnx_path: Path,
    home: Path,
    images: np.ndarray,
    repeats: int,
    seconds: float,
    served_batch: int,
) -> dict[str, Any]:
    """The baseline and every case, interleaved per repeat so that drift in the machine's load hits
    them alike; per case images/s, its ratio to the baseline of the same repeat, the API's CPU time
    per image, and the worst grey-level difference from the baseline's output. One more row: the
    engine the API's settings choose at the batcher's largest batch, in a fresh process of its own
    (engines opened earlier in this process, by the engine half, change how fast it runs here), as
    the API's model calls would do if HTTP cost nothing and every call were full."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    session = baseline_session(onnx_path)
    if len(session.get_inputs()) != 1:
        raise SystemExit("the HTTP bench needs a deterministic refiner (one graph input)")
    name = session.get_inputs()[0].name
    expected = session.run(None, {name: images[:BASELINE_BATCH]})[0]
    pngs = [png_bytes(image) for image in images[:BASELINE_BATCH]]
    batches = np.concatenate([images[:BASELINE_BATCH]] * 4)
    baseline_rate(session, batches)  # warm-up
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    provider, _, _, refined = pool.submit(served_engine, str(home), served_batch, batches).result()
    served_row = f"the API's engine ({provider}) in a process of its own, batch {served_batch}"
    rates: dict[str, list[float]] = {"baseline": [], served_row: []}
    cpu: dict[str, list[float]] = {"baseline": [], served_row: []}
    worst: dict[str, int] = {"baseline": 0, served_row: _difference(refined[:BASELINE_BATCH], expected)}
    loads: list[float] = []
    providers: set[str] = set()
    groups: dict[int, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.processes, []).append(case)
        rates[case.name], cpu[case.name] = [], []
    for _ in range(repeats):
        loads.append(os.getloadavg()[0])
        used = time.process_time()
        rates["baseline"].append(baseline_rate(session, batches))
        cpu["baseline"].append((time.process_time() - used) / len(batches))
        _, rate, used_per_image, _ = pool.submit(served_engine, str(home), served_batch, batches).result()
        rates[served_row].append(rate)
        cpu[served_row].append(used_per_image)
        for processes, group in groups.items():
            with api_processes(home, processes, {}) as (port, pid):
                providers.add(str(_readiness(port).get("provider")))
                for case in group:
                    request = build_request(case.form, pngs[: case.images])
                    drive(port, request, case.clients, 4 * case.clients)  # warm-up: every connection
                    # About `seconds` of load, sized from the baseline's rate.
                    total = max(2 * case.clients, int(seconds * rates["baseline"][-1] / case.images))
                    used = cpu_seconds(pid)
                    elapsed, answers = drive(port, request, case.clients, total)
                    cpu[case.name].append((cpu_seconds(pid) - used) / (total * case.images))
                    rates[case.name].append(total * case.images / elapsed)
                    difference = _worst_difference(answers, case.form, expected[: case.images])
                    worst[case.name] = max(worst.get(case.name, 0), difference)
    pool.shutdown()
    base = rates["baseline"]
    return {
        "images_per_second": {k: spread(v) for k, v in rates.items()},
        "ratio_to_baseline": {
            k: spread([x / b for x, b in zip(v, base, strict=True)]) for k, v in rates.items()
        },
        "cpu_ms_per_image": {k: spread([1000 * x for x in v]) for k, v in cpu.items()},
        "max_grey_level_difference": worst,
        "api_providers": sorted(providers),
        "load_average_1min": spread(list(loads)),
        "cases": [case.__dict__ for case in cases],
    }


def markdown(report: dict[str, Any]) -> list[str]:
    """The HTTP table (for refine.md and refine_http.md)."""
    lines = [
        "| path | images/s | ratio to the baseline | API CPU ms per image | max grey-level diff |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, figure in report["images_per_second"].items():
        label = (
            "**baseline**: plain onnxruntime, CPU EP, fp32, in process, batch 64"
            if name == "baseline"
            else name
        )
        lines.append(
            f"| {label} | {cell(figure, 0)} | {cell(report['ratio_to_baseline'][name], 2)} | "
            f"{cell(report['cpu_ms_per_image'][name], 2)} | {report['max_grey_level_difference'][name]} |"
        )
    return lines


# ------------------------------------------------------------------ the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("HTTP (POST /refine through real API processes)")
    group.add_argument(
        "--http",
        default=case_option(DEFAULT_CASES),
        help="HTTP cases, form:images:clients:processes comma-separated (multipart, json, raw); '': none",
    )
    group.add_argument("--http-repeats", type=int, default=3, help="measurements per HTTP figure")
    group.add_argument(
        "--http-seconds", type=float, default=4.0, help="about how long each HTTP measurement runs"
    )


def run(args: argparse.Namespace, command: str) -> dict[str, Any] | None:
    """Measure the HTTP cases with the bundled default refiner; write refine_http.json and .md."""
    from core.settings import Settings
    from models import Registry

    cases = parse_cases(args.http)
    if not cases:
        return None
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (BASELINE_BATCH, args.height, args.width, 1), dtype=np.uint8)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simgan-bench-http-") as tmp:
        home = Path(tmp)
        registry = Registry(Settings(home=home).models_path)
        card = registry.seed_bundled()
        if card is None:
            raise SystemExit("no bundled default refiner in models/bundled/ (make default-model)")
        figures = measure(
            cases,
            registry.onnx_path(card.version),
            home,
            images,
            args.http_repeats,
            args.http_seconds,
            Settings(home=home).batch_max_size,
        )
    environment = {k: v for k, v in sorted(os.environ.items()) if k.startswith("SIMGAN_")}
    report = {
        "command": shlex.join([f"{k}={v}" for k, v in environment.items()])
        + " " * bool(environment)
        + command,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "image": [args.height, args.width, 1],
        "seconds": round(time.perf_counter() - started, 1),
        **figures,
    }
    write_report(args.out, "refine_http", report, http_markdown(report))
    return report


def http_markdown(report: dict[str, Any]) -> str:
    load = report["load_average_1min"]
    lines = [
        "# Refine speed over HTTP (`simgan bench refine`, its HTTP half)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}, load average (1 min) at each repeat {cell(load, 1)}; the API's "
        f"provider {', '.join(report['api_providers'])}; image {report['image']}; wall time "
        f"{report['seconds']:.0f} s. The machine's cores are shared: other work ran while this ran, as "
        "the load average says.  ",
        "Each cell: median [min, max] over the repeats; every ratio is against the baseline measured in",
        "the same repeat. The API runs as `simgan serve` runs it (uvicorn, `SIMGAN_API_PROCESSES`",
        "processes); the load comes from this process over keep-alive connections, each client waiting",
        "for its answer before it sends again. API CPU: user + system seconds of every API process per",
        "image, which moves far less with the neighbours' load than images/s does. Grey-level diff: the",
        "worst pixel of the sampled answers against the baseline's output for the same image.",
        "",
        *markdown(report),
    ]
    return "\n".join(lines) + "\n"
