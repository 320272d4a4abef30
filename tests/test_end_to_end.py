"""The whole product as a user meets it: `simgan serve`, then only HTTP.

simulate two datasets -> train job (a few CPU steps) -> model published -> the service switches to
it -> /refine uses it -> a bulk refine job's zip has the dataset's file names and annotations.
"""

from __future__ import annotations

import io
import json
import signal
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.redis_server import free_port, pid_alive
from service.supervisor import descendants
from tests.factories import (
    TINY_TRAIN_CONFIG,
    image_file,
    kill_serve,
    random_images,
    serve_env,
    start_serve,
    wait_until_up,
)


def poll(
    get: Callable[[], dict[str, Any]], until: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = get()
        if until(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting after {timeout} s: {body}")


@pytest.mark.slow
def test_simulate_train_serve_refine_and_bulk_refine_over_http(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    env = serve_env(home, SIMGAN_RELOAD_POLL_SECONDS="0.2", OMP_NUM_THREADS="1", SIMGAN_SEED_BUNDLED="false")
    serve = start_serve(env, port, tmp_path / "serve.log")
    try:
        wait_until_up(serve, f"http://127.0.0.1:{port}", children=4)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            run_the_whole_flow(api, home)
            family = descendants(serve.pid)
        serve.send_signal(signal.SIGINT)
        assert serve.wait(60) == 0
    finally:
        kill_serve(serve)
        print((tmp_path / "serve.log").read_text())  # shown by pytest when the test failed
    assert [pid for pid in family if pid_alive(pid)] == []


def run_the_whole_flow(api: httpx.Client, home: Path) -> None:
    # 1. datasets from the built-in simulator
    synthetic = api.post("/datasets/simulate", json={"count": 16, "domain": "synthetic", "seed": 0})
    real = api.post("/datasets/simulate", json={"count": 16, "domain": "real", "seed": 1})
    assert synthetic.status_code == real.status_code == 201
    synthetic_id, real_id = synthetic.json()["id"], real.json()["id"]
    assert api.get("/readyz").status_code == 503  # no model yet

    # 2. a training job (its own spawned process in the train worker)
    created = api.post(
        "/train-jobs",
        json={"synthetic_dataset": synthetic_id, "real_dataset": real_id, "config": TINY_TRAIN_CONFIG},
    )
    assert created.status_code == 202
    job_url = f"/train-jobs/{created.json()['id']}"
    job = poll(lambda: api.get(job_url).json(), lambda job: job["status"] in ("succeeded", "failed"))
    assert job["status"] == "succeeded", job
    assert job["progress"]["step"] == job["progress"]["total_steps"]
    version = job["model_version"]
    assert api.get(f"/models/{version}").json()["version"] == version

    # 3. the service switches to the new model by itself, and /refine uses it
    ready = poll(lambda: api.get("/readyz").json(), lambda body: body.get("model") == version, timeout=30)
    assert ready["model"] == version
    annotations = {"gaze": {"pitch": 1.5, "yaw": -3.0}}
    refined = api.post(
        "/refine",
        files={"image": ("eye.png", image_file(random_images(1)[0]), "image/png")},
        data={"annotations": json.dumps(annotations)},
    )
    assert refined.status_code == 200
    assert refined.json()["model"] == version
    assert refined.json()["images"][0]["annotations"] == annotations
    assert (refined.json()["images"][0]["height"], refined.json()["images"][0]["width"]) == (35, 55)

    # 4. a bulk refine job over the synthetic dataset, downloaded as a zip
    bulk = api.post("/refine-jobs", json={"dataset": synthetic_id})
    assert bulk.status_code == 202
    assert bulk.json()["model"] == version
    bulk_url = f"/refine-jobs/{bulk.json()['id']}"
    done = poll(lambda: api.get(bulk_url).json(), lambda job: job["status"] in ("succeeded", "failed"))
    assert done["status"] == "succeeded", done
    result = api.get(done["result"])
    assert result.status_code == 200
    stored = (home / "data" / synthetic_id / "annotations.jsonl").read_bytes()
    names = [json.loads(line)["file"] for line in stored.decode().splitlines()]
    with zipfile.ZipFile(io.BytesIO(result.content)) as archive:
        assert sorted(archive.namelist()) == sorted([*names, "annotations.jsonl"])
        assert archive.read("annotations.jsonl") == stored
        assert all(archive.read(name).startswith(b"\x89PNG") for name in names)
