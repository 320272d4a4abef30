"""SIMGAN_API_PROCESSES: several API processes on one port, the CPU cores divided among them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from service.redis_server import free_port, pid_alive
from service.supervisor import api_argv, api_environment, children_of, descendants
from tests.factories import image_file, random_images, serve_env, start_serve, wait_until_up


def test_one_api_process_is_uvicorn_as_before_with_onnxruntime_left_to_its_default() -> None:
    settings = Settings(log_level="INFO")

    argv = api_argv(settings, "127.0.0.1", 8123)

    assert argv[1:] == [
        "-m", "uvicorn", "service.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", "8123", "--log-level", "info",
        "--http", "service.api.timeouts:TimedH11Protocol",
    ]  # fmt: skip
    assert api_environment(settings) == {}


def test_several_api_processes_share_the_cores_unless_threads_are_set() -> None:
    share = max(1, (os.cpu_count() or 1) // 2)

    assert api_argv(Settings(api_processes=2), "h", 1)[-2:] == ["--workers", "2"]
    assert api_environment(Settings(api_processes=2)) == {"SIMGAN_INTRA_OP_THREADS": str(share)}
    assert api_environment(Settings(api_processes=2, intra_op_threads=3)) == {}


@pytest.mark.slow
def test_serve_with_two_api_processes_refines_on_both_and_stops_them_all(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**serve_env(tmp_path / "home"), "REDIS_URL": redis_url, "SIMGAN_API_PROCESSES": "2"}
    serve = start_serve(env, port, tmp_path / "serve.log")
    try:
        wait_until_up(serve, url, children=3)  # two API processes and multiprocessing's resource tracker
        apis = [
            pid
            for pid in children_of(serve.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        png = image_file(random_images(1)[0])
        with httpx.Client(base_url=url) as client:  # a new connection per request: either process may answer
            answers = [
                httpx.post(f"{url}/refine", content=png, headers={"Content-Type": "image/png"})
                for _ in range(8)
            ]
            ready = client.get("/readyz")
        environments = [Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in apis]
        family = descendants(serve.pid)
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(60)
    finally:
        if serve.poll() is None:
            serve.kill()
        print((tmp_path / "serve.log").read_text())

    assert len(apis) == 2
    assert ready.status_code == 200
    assert [a.status_code for a in answers] == [200] * 8
    share = max(1, (os.cpu_count() or 1) // 2)
    assert all(f"SIMGAN_INTRA_OP_THREADS={share}".encode() in e for e in environments)
    assert code == 0
    deadline = time.monotonic() + 10  # the resource tracker ends by itself once its parent has gone
    while any(pid_alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in family if pid_alive(pid)] == []
