"""The GPU path end to end (`make test-gpu`; every test here is marked gpu and skipped without CUDA).

Train a few CUDA steps in mixed precision, export the CUDA checkpoint, resume it on the CPU, refine
with onnxruntime's CUDA provider against its CPU provider, and write the CUDA provider's throughput
at batch 1-256 to bench/results/gpu_refine.{json,md}. `make test` never runs these (-m "not gpu").
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.settings import Settings
from models import Registry
from models.session import load_refiner
from simgan.benchmarks.stats import cell, spread
from tests.factories import tiny_config, tiny_images
from trainer.checkpoint import load_checkpoint
from trainer.export import publish_checkpoint
from trainer.run import SimGAN
from trainer.training import Hooks, TrainResult, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a usable CUDA device"),
]

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
BATCHES = (1, 4, 16, 64, 256)
CUDA_EP, CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"


def _cuda_run(workdir: Path, stop_after: int | None = None, **config: object) -> tuple[TrainResult, SimGAN]:
    runs: list[SimGAN] = []
    done: list[int] = []
    hooks = Hooks(
        progress=lambda p: done.append(p.step),
        should_stop=(lambda: len(done) >= stop_after) if stop_after else None,
        on_checkpoint=lambda run, path: runs.append(run),
    )
    result = train(
        tiny_config(device="cuda", **config), tiny_images(1), tiny_images(2), workdir=workdir, hooks=hooks
    )
    return result, runs[-1]


def test_a_few_cuda_steps_train_in_mixed_precision_and_export(tmp_path: Path) -> None:
    result, run = _cuda_run(tmp_path / "run")

    assert run.device.type == "cuda"
    assert run.precision.name in ("bf16", "fp16")  # auto: bf16 where native, else fp16 with a scaler
    assert run.precision.name == ("bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp16")
    assert all(math.isfinite(v) for v in result.final_losses.values())
    card = publish_checkpoint(result.checkpoint, Registry(tmp_path / "models"))
    assert card.parity_max_abs_error <= 1
    assert load_checkpoint(result.checkpoint)["rng"]["cuda"]  # a CUDA run keeps its GPU's RNG state


def test_fp16_with_a_gradient_scaler_trains_on_cuda(tmp_path: Path) -> None:
    result, run = _cuda_run(tmp_path / "run", precision="fp16")

    assert run.precision.scaled
    assert run.refiner_scaler.get_scale() > 0
    assert all(math.isfinite(v) for v in result.final_losses.values())
    assert load_checkpoint(result.checkpoint)["scalers"]["refiner"]["scale"] > 0


def test_a_cuda_checkpoint_resumes_on_the_cpu(tmp_path: Path) -> None:
    stopped, _ = _cuda_run(tmp_path / "run", stop_after=3)
    assert stopped.stopped

    resumed = train(
        tiny_config(device="cpu"),
        tiny_images(1),
        tiny_images(2),
        workdir=tmp_path / "run",
        resume=stopped.checkpoint,
    )

    assert (resumed.stopped, resumed.step) == (False, 6)
    assert all(math.isfinite(v) for v in resumed.final_losses.values())


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A refiner that changes its input (tanh output, not the identity), trained and exported on CUDA,
    and the bundled default (the default architecture) for the throughput figures."""
    home = tmp_path_factory.mktemp("gpu")
    registry = Registry(home / "models")
    registry.seed_bundled()
    result, _ = _cuda_run(home / "run", refiner_residual=False, refiner_channels=16)
    publish_checkpoint(result.checkpoint, registry)
    return registry


def test_the_cuda_provider_refines_within_2_grey_levels_of_the_cpu_provider(published: Registry) -> None:
    images = np.random.default_rng(0).integers(0, 256, (256, 12, 16, 1), dtype=np.uint8)
    on_cuda = load_refiner(published, "v2", Settings(provider="cuda"))
    on_cpu = load_refiner(published, "v2", Settings(provider="cpu"))
    assert (on_cuda.provider, on_cpu.provider) == (CUDA_EP, CPU_EP)

    for batch in (1, 7, 64, 256):
        expected = on_cpu.refine(images[:batch]).astype(int)
        assert np.abs(on_cuda.refine(images[:batch]).astype(int) - expected).max() <= 2
    assert np.abs(on_cpu.refine(images).astype(int) - images.astype(int)).max() > 2  # it does refine


def test_cuda_provider_throughput_at_batch_1_to_256_is_written_to_bench_results(published: Registry) -> None:
    repeats, images_per_figure = 5, 1024
    images = np.random.default_rng(1).integers(0, 256, (images_per_figure, 35, 55, 1), dtype=np.uint8)
    sessions = {p: load_refiner(published, "v1", Settings(provider=p)) for p in ("cuda", "cpu")}
    assert sessions["cuda"].provider == CUDA_EP
    figures: dict[str, dict[int, list[float]]] = {p: {b: [] for b in BATCHES} for p in sessions}
    for provider, session in sessions.items():
        for batch in BATCHES:
            session.refine(images[:batch])  # warm-up: this batch shape's kernels
        for _ in range(repeats):  # interleaved: drift in load hits every batch size alike
            for batch in BATCHES:
                count = images_per_figure if provider == "cuda" else min(images_per_figure, 64 * batch)
                started = time.perf_counter()
                for start in range(0, count, batch):
                    session.refine(images[start : start + batch])
                figures[provider][batch].append(count / (time.perf_counter() - started))
    report = {
        "command": "make test-gpu  # " + shlex.join(["pytest", "-m", "gpu", "tests/test_gpu.py"]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, GPU {torch.cuda.get_device_name()}",
        "driver": _driver(),
        "model": "the bundled default refiner (55x35 grayscale eyes)",
        "repeats": repeats,
        "images_per_second": {p: {str(b): spread(v) for b, v in f.items()} for p, f in figures.items()},
        "cuda_vs_cpu": {
            str(b): spread([c / p for c, p in zip(figures["cuda"][b], figures["cpu"][b], strict=True)])
            for b in BATCHES
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu_refine.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "gpu_refine.md").write_text(_markdown(report))
    assert all(f["median"] > 0 for f in report["images_per_second"]["cuda"].values())


def _driver() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no nvidia-smi)"


def _markdown(report: dict[str, object]) -> str:
    speeds = report["images_per_second"]
    ratios = report["cuda_vs_cpu"]
    assert isinstance(speeds, dict) and isinstance(ratios, dict)
    lines = [
        "# Refine on the GPU (onnxruntime CUDA provider against its CPU provider)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; driver, memory: {report['driver']}; model: {report['model']}.  ",
        f"Each cell: images/s, median [min, max] of {report['repeats']} repeats, in-process, no HTTP;",
        "the ratio is taken within a repeat.",
        "",
        "| batch | CUDA provider | CPU provider | CUDA / CPU |",
        "| --- | --- | --- | --- |",
    ]
    for batch in BATCHES:
        key = str(batch)
        cuda, cpu = cell(speeds["cuda"][key], 0), cell(speeds["cpu"][key], 0)
        lines.append(f"| {batch} | {cuda} | {cpu} | {cell(ratios[key], 2)} |")
    return "\n".join(lines) + "\n"
