"""Builders of real objects for tests: models, datasets, images. Add functions; do not rewrite."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np
from PIL import Image

from models import ModelCard, Registry


def publish_tiny_refiner(
    registry: Registry, channels: int = 1, seed: int = 0, width: int = 8, blocks: int = 1
) -> ModelCard:
    """A real (untrained, seeded) refiner exported by the trainer and published into `registry`."""
    import torch

    from core.train_config import TrainConfig
    from trainer.export import publish_refiner
    from trainer.networks import RefinerConfig, build_refiner

    with torch.random.fork_rng():  # seeded weights without disturbing the caller's random state
        torch.manual_seed(seed)
        refiner = build_refiner(RefinerConfig(channels=channels, width=width, blocks=blocks))
    return publish_refiner(
        refiner,
        channels,
        registry,
        config=TrainConfig(refiner_channels=width, refiner_blocks=blocks, seed=seed).to_dict(),
        notes="untrained test refiner",
    )


def random_images(
    count: int, height: int = 35, width: int = 55, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """Seeded uint8 noise images, (count, height, width, channels)."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, height, width, channels), dtype=np.uint8)


def image_file(pixels: np.ndarray, format: str = "PNG", **save_args: Any) -> bytes:
    """Bytes of a PNG/JPEG file of uint8 (H, W, 1|3) pixels, or of a .npy file with format="NPY"."""
    out = io.BytesIO()
    if format == "NPY":
        np.save(out, pixels, allow_pickle=False)
    else:
        Image.fromarray(pixels[:, :, 0] if pixels.shape[-1] == 1 else pixels).save(
            out, format=format, **save_args
        )
    return out.getvalue()


def read_image(data: bytes) -> np.ndarray:
    """A PNG/JPEG file's pixels as uint8 (H, W, C), the layout /refine works in."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header for a width x height grayscale image with almost no pixel data behind it
    (a decompression bomb's shape: huge when decoded, tiny on the wire)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


TINY_TRAIN_CONFIG = {
    "steps": 4,
    "batch_size": 4,
    "pretrain_refiner_steps": 1,
    "pretrain_discriminator_steps": 1,
    "refiner_channels": 4,
    "refiner_blocks": 1,
    "history_size": 8,
    "checkpoint_every": 2,
    "device": "cpu",
}
"""A training config that runs 6 CPU steps of a 4-wide refiner in about a second."""


def store_eye_dataset(data_path: Any, kind: str = "synthetic", count: int = 12, seed: int = 0) -> Any:
    """A simulated eye dataset (35x55 grayscale, annotated) stored in the dataset store at `data_path`."""
    from core.datasets import DatasetStore
    from simulators import simulate

    batch = simulate("eyes", count, domain=kind, seed=seed)
    names = [f"eye_{i:03d}.png" for i in range(count)]
    return DatasetStore(data_path).create_from_arrays(batch.images, batch.annotations, names, kind, "test")


def run_queued_jobs(redis_url: str, *queues: str) -> None:
    """Run every job waiting on `queues` in this process (rq's SimpleWorker, burst mode), then return."""
    import redis
    from rq import SimpleWorker

    from jobs.queue import SERIALIZER
    from jobs.worker import OnlyOurJobs

    class Worker(OnlyOurJobs, SimpleWorker):
        pass

    connection = redis.Redis.from_url(redis_url)
    try:
        Worker(list(queues), connection=connection, serializer=SERIALIZER).work(
            burst=True, logging_level="WARNING"
        )
    finally:
        connection.close()


@contextmanager
def live_server(app: Any) -> Iterator[Any]:
    """Serve `app` with a real uvicorn on a free port in a thread; yields an httpx.Client talking to it.

    For tests that drive the API from plain (sync) code while workers run in the same process.
    """
    import threading

    import httpx
    import uvicorn

    from service.redis_server import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)


def zip_file(members: dict[str, bytes]) -> bytes:
    """Bytes of a zip archive holding `members` (path inside the archive -> bytes), deflated."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def tar_file(members: dict[str, bytes], compression: str = "") -> bytes:
    """Bytes of a tar archive holding `members`; compression "gz" makes a .tar.gz."""
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=f"w:{compression}") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def npz_file(images: np.ndarray, annotations: list[dict[str, Any]] | None = None) -> bytes:
    """Bytes of a dataset .npz: `images` and, when given, `annotations` as one JSON string."""
    import json

    arrays = {"images": images}
    if annotations is not None:
        arrays["annotations"] = np.array(json.dumps(annotations))
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def h5_file(images: np.ndarray, key: str = "images", **extra: Any) -> bytes:
    """Bytes of a dataset .h5: images under `key` (or "image"), plus datasets `extra` (e.g. look_vec)."""
    import h5py

    out = io.BytesIO()
    with h5py.File(out, "w") as file:
        file.create_dataset(key, data=images)
        for name, values in extra.items():
            file.create_dataset(name, data=values)
    return out.getvalue()


def uniform_images(
    count: int, low: int, high: int, height: int = 12, width: int = 16, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """Seeded uint8 noise, pixels uniform in [low, high), shaped (count, height, width, channels)."""
    rng = np.random.default_rng(seed)
    return rng.integers(low, high, size=(count, height, width, channels), dtype=np.uint8)


def shift_refiner(levels: float) -> Any:
    """A torch 'refiner' that brightens every pixel by `levels` grey levels (clipped), with one parameter
    so that it has a device and a state_dict like a real refiner."""
    import torch
    from torch import nn

    class Shift(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.offset = nn.Parameter(torch.tensor(levels / 127.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x + self.offset).clamp(-1.0, 1.0)  # (B, C, H, W) in [-1, 1]

    return Shift()


def serve_env(home: Any, **extra: str) -> dict[str, str]:
    """The environment of a `simgan serve` subprocess: state in `home`, no REDIS_URL unless in `extra`."""
    import os

    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "SIMGAN_REDIS_URL")}
    return {**env, "SIMGAN_HOME": str(home), "SIMGAN_LOG_LEVEL": "warning", **extra}


def start_serve(env: dict[str, str], port: int, log: Any) -> Any:
    """`simgan serve --port PORT` as a subprocess, its output appended to the file `log`."""
    import subprocess
    import sys

    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "simgan.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_until_up(process: Any, url: str, children: int, timeout: float = 90) -> None:
    """Until `url`/healthz answers 200 and `process` has `children` child processes."""
    import httpx

    from service.supervisor import children_of

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "simgan serve exited early"
        try:
            if httpx.get(f"{url}/healthz").status_code == 200 and len(children_of(process.pid)) == children:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"simgan serve did not come up at {url} within {timeout} s")


TINY = {
    "batch_size": 4,
    "history_size": 4,
    "refiner_channels": 4,
    "refiner_blocks": 1,
    "pretrain_refiner_steps": 1,
    "pretrain_discriminator_steps": 1,
    "steps": 4,
    "checkpoint_every": 100,
    "device": "cpu",
}
"""Trainer unit tests: 6 CPU steps of a 4-wide, 1-block refiner; no periodic checkpoint unless asked."""


def tiny_config(**overrides: object) -> Any:
    """TINY with `overrides`, as a TrainConfig (core.train_config is torch-free)."""
    from core.train_config import TrainConfig

    return TrainConfig.from_overrides({**TINY, **overrides})


def tiny_images(seed: int, count: int = 16, channels: int = 1) -> np.ndarray:
    """Random uint8 (count, 12, 16, channels) images."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, 12, 16, channels), dtype=np.uint8)


def publish_stochastic_refiner(registry: Registry, channels: int = 1, noise_channels: int = 2) -> ModelCard:
    """A real untrained refiner that takes `noise_channels` of noise beside the image, published.

    Not residual: its random weights already make the output depend on the noise."""
    import torch

    from trainer.export import publish_refiner
    from trainer.networks import RefinerConfig, build_refiner

    with torch.random.fork_rng():
        torch.manual_seed(0)
        refiner = build_refiner(RefinerConfig(channels, width=8, blocks=1, noise_channels=noise_channels))
    return publish_refiner(refiner, channels, registry, notes="untrained stochastic test refiner")


def kill_serve(process: Any) -> None:
    """SIGKILL a `start_serve` process that is still running, and every process it started: a test
    that failed half-way must not leave a Redis, an API or workers behind on the shared machine."""
    import os
    import signal

    from service.supervisor import descendants

    if process.poll() is not None:
        return
    family = descendants(process.pid)
    process.kill()
    process.wait(30)
    for pid in family:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def publish_corrupt(registry: Registry, tmp_path: Any, card: ModelCard) -> ModelCard:
    """A model whose file matches its card's sha256 but is not ONNX: the registry takes it, loading fails."""
    from dataclasses import replace

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 this is not an onnx graph" * 10)
    return registry.publish(garbage, replace(card, version="", onnx_sha256=""))
