"""Fault drill: a worker that stops heartbeating (SIGSTOP of it and its job process, as when its
machine freezes). Its job is shown `stalled` with when it will be started again, not `running` with
frozen progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from core.settings import Settings, get_settings
from models import ModelCard
from service.main import create_app
from service.supervisor import descendants
from tests.factories import live_server, store_eye_dataset


def wait_for(api: httpx.Client, path: str, done: object, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(path).json()
        if done(job):  # type: ignore[operator]
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"{path} did not get there in {timeout} s: {job}")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_job_whose_worker_stopped_heartbeating_shows_as_stalled_with_its_retry_time(
    jobs_settings: Settings, gray_model: ModelCard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMGAN_WORKER_MAINTENANCE_SECONDS", "30")  # the API and the worker agree on it
    get_settings.cache_clear()
    dataset = store_eye_dataset(jobs_settings.data_path, "synthetic", count=3000).id
    env = {
        **os.environ,
        "SIMGAN_WORKER_HEARTBEAT_SECONDS": "1",
        "SIMGAN_WORKER_MAINTENANCE_SECONDS": "30",
        "SIMGAN_REFINE_JOB_BATCH_SIZE": "1",  # a long job: one image per model call
        "SIMGAN_PROGRESS_INTERVAL_SECONDS": "0.1",
        "SIMGAN_LOG_LEVEL": "warning",
    }
    with live_server(create_app(jobs_settings)) as api:
        job = api.post("/refine-jobs", json={"dataset": dataset}).json()
        worker = subprocess.Popen(
            [sys.executable, "-m", "simgan.cli", "worker", "--queues", "refine"],
            env=env,
            start_new_session=True,
        )
        family: list[int] = []
        try:
            path = f"/refine-jobs/{job['id']}"
            wait_for(
                api, path, lambda j: j["status"] == "running" and (j["progress"] or {}).get("images_done")
            )
            family = [worker.pid, *descendants(worker.pid)]
            for pid in family:
                os.kill(pid, signal.SIGSTOP)  # no more heartbeats, no more progress
            stalled = wait_for(api, path, lambda j: j["status"] != "running", timeout=30)
        finally:
            for pid in family:
                os.kill(pid, signal.SIGKILL)
            worker.kill()
            worker.wait()

    assert stalled["status"] == "stalled"
    retry_at = datetime.fromisoformat(str(stalled["retry_at"]).replace("Z", "+00:00"))
    assert 0 < retry_at.timestamp() - time.time() <= 31  # the next cleanup of a live worker
