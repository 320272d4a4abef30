"""`simgan bench train`: adversarial training steps per second in each precision, as ratios to fp32.

One adversarial step is one iteration of Algorithm 1 (kg refiner updates, then kd discriminator
updates) at the default config (batch 32, a 32-wide 4-block refiner) on eye-sized images. Every
precision is measured in turn within each repeat, so drift in the machine's load hits all alike;
each figure is the median of the repeats with its min and max, and the ratio is taken within a
repeat. The refiner's quality in each precision is a different question: `simgan bench quality
--suite --config precision=...` answers it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Any

from simgan.benchmarks.stats import cell, spread, write_report

RESULTS = Path("bench/results")


def register(benches: argparse._SubParsersAction) -> None:
    parser = benches.add_parser(
        "train", help="adversarial training steps/s in each precision (fp32, bf16 ...)"
    )
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated config precision values")
    parser.add_argument("--device", default="cpu", help="config device: cpu, cuda or auto")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per figure (median reported)")
    parser.add_argument("--steps", type=int, default=10, help="adversarial steps per measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--height", type=int, default=35)
    parser.add_argument("--width", type=int, default=55)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    parser.add_argument("--name", default="train_steps", help="file name stem of the results")
    parser.set_defaults(run=run)


def _options(args: argparse.Namespace) -> list[str]:
    names = ("precisions", "device", "repeats", "steps", "threads", "height", "width")
    return [part for name in names for part in (f"--{name}", str(getattr(args, name)))]


def _steps_per_second(run: Any, steps: int) -> float:
    import torch

    run.step = run.config.pretrain_refiner_steps + run.config.pretrain_discriminator_steps
    run.train_step()  # warm-up: first-call allocations, oneDNN/cuDNN kernel choice
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        run.train_step()
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from core.train_config import TrainConfig
    from trainer.device import cpu_bf16_native, resolve_device
    from trainer.run import SimGAN

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    rng = np.random.default_rng(0)
    shape = (512, args.height, args.width, 1)
    synthetic = rng.integers(0, 256, shape, dtype=np.uint8)
    real = rng.integers(0, 256, shape, dtype=np.uint8)
    device = resolve_device(args.device)
    runs = {
        name: SimGAN(TrainConfig(device=args.device, precision=name), synthetic, real, device)
        for name in precisions
    }
    started = time.perf_counter()
    measured: dict[str, list[float]] = {name: [] for name in precisions}
    ratios: dict[str, list[float]] = {name: [] for name in precisions}
    for _ in range(args.repeats):
        figures = {name: _steps_per_second(r, args.steps) for name, r in runs.items()}
        for name, value in figures.items():
            measured[name].append(value)
            ratios[name].append(value / figures[precisions[0]])
    report = {
        "command": shlex.join(["simgan", "bench", "train", *_options(args)]),
        "machine": (
            f"{platform.machine()} {platform.processor() or ''}".strip()
            + f", {os.cpu_count()} CPU cores, torch {torch.__version__} on {device}"
            + f", {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}"
        ),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_native": cpu_bf16_native(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "image": [args.height, args.width, 1],
        "seconds": round(time.perf_counter() - started, 1),
        "precision": {
            name: {"name": r.precision.name, "reason": r.precision.reason} for name, r in runs.items()
        },
        "adversarial_steps_per_second": {name: spread(v) for name, v in measured.items()},
        f"ratio_to_{precisions[0]}": {name: spread(v) for name, v in ratios.items()},
    }
    write_report(args.out, args.name, report, markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    ratio_key = next(k for k in report if k.startswith("ratio_to_"))
    lines = [
        "# Training speed (`simgan bench train`)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; torch's CPU capability {report['cpu_capability']}, "
        f"bf16 matrix instructions (AMX / AVX512-BF16): {'yes' if report['cpu_bf16_native'] else 'no'}"
        + (f"; GPU {report['gpu']}" if report["gpu"] else "")
        + f"; image {report['image']}; wall time {report['seconds']:.0f} s.  ",
        "One step: one adversarial iteration of Algorithm 1 at the default config (batch 32, kg 2, kd 1).",
        f"Each cell: median [min, max] over the repeats; the ratio is to {ratio_key[9:]} in the same repeat.",
        "",
        f"| precision | runs as | adversarial steps/s | ratio to {ratio_key[9:]} |",
        "| --- | --- | --- | --- |",
    ]
    for name, figure in report["adversarial_steps_per_second"].items():
        runs_as = report["precision"][name]
        lines.append(
            f"| {name} | {runs_as['name']} ({runs_as['reason']}) | {cell(figure, 2)} "
            f"| {cell(report[ratio_key][name], 2)} |"
        )
    return "\n".join(lines) + "\n"
