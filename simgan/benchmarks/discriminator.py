"""`simgan bench discriminator`: can the discriminator see a pair's gap at all?

A refiner learns only what D's gradient tells it. If D, trained on the raw synthetic images against
the real ones (the refiner still the identity), stays near 0.5 patch accuracy, the adversarial phase
pushes R by noise: it drifts inside its self-regularisation budget and loses labels without becoming
more real. This bench trains D alone, exactly as D pretraining does (trainer.run: Adam, the run's
batch size, the per-patch loss), on every pair of the domain suite under each D variant (patch share,
spectral norm, instance noise), and reports its patch accuracy over the last steps. It is cheap (D
only) and it is how the D defaults in core/train_config.py were chosen: the variant must see the gap
on every pair, not on one.
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
VARIANTS = (
    "discriminator_patch=0.5,discriminator_norm=spectral,instance_noise=0.25",
    "discriminator_patch=0.9,discriminator_norm=spectral,instance_noise=0.25",
    "discriminator_patch=0.9,discriminator_norm=spectral,instance_noise=0",
    "discriminator_patch=0.9,discriminator_norm=none,instance_noise=0.25",
    "discriminator_patch=0.9,discriminator_norm=none,instance_noise=0",
    "discriminator_patch=0,discriminator_norm=none,instance_noise=0",
)
"""D variants, each a comma-separated list of train-config overrides; the first is the old default."""
TAIL = 50
"""D's accuracy is averaged over its last this many steps (one batch is noisy)."""


def register(benches: argparse._SubParsersAction) -> None:
    parser = benches.add_parser(
        "discriminator", help="D's patch accuracy on raw synthetic vs real images, per pair and D variant"
    )
    parser.add_argument("--pairs", default="", help="comma-separated suite pairs (default: all)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="comma-separated overrides")
    parser.add_argument("--seeds", default="0,1,2", help="one D per seed (the median is reported)")
    parser.add_argument("--steps", type=int, default=200, help="D updates per measurement")
    parser.add_argument("--images", type=int, default=1000, help="images of each domain")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    parser.add_argument("--name", default="discriminator_probe", help="file name stem of the results")
    parser.set_defaults(run=run)


def _command(args: argparse.Namespace) -> str:
    parts = ["simgan", "bench", "discriminator"]
    if args.pairs:
        parts += ["--pairs", args.pairs]
    parts += ["--variants", *args.variants]
    for name in ("seeds", "steps", "images", "threads"):
        parts += [f"--{name}", str(getattr(args, name))]
    return shlex.join(parts)


def _overrides(variant: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in variant.split(",") if part)


def probe(pair: str, variant: str, seed: int, steps: int, images: int) -> float:
    """D's mean patch accuracy over its last TAIL updates, trained from scratch on raw images."""
    import torch

    from core.train_config import TrainConfig
    from simulators.suite import make_split
    from trainer.run import SimGAN

    synthetic = make_split(pair, "synthetic", images, seed).images
    real = make_split(pair, "real", images, seed).images
    config = TrainConfig.from_overrides(
        {**_overrides(variant), "seed": str(seed), "device": "cpu", "pretrain_refiner_steps": "0"}
    )
    run = SimGAN(config, synthetic, real, torch.device("cpu"))  # R is the identity (residual, untrained)
    accuracies = [run.discriminator_step()["discriminator_accuracy"] for _ in range(steps)]
    tail = accuracies[-min(TAIL, steps) :]
    return float(sum(tail) / len(tail))


def run(args: argparse.Namespace) -> int:
    import torch

    from simulators.suite import PAIRS

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    pairs = [p for p in args.pairs.split(",") if p] or list(PAIRS)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    started = time.perf_counter()
    table: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        table[pair] = {}
        for variant in args.variants:
            values = [probe(pair, variant, seed, args.steps, args.images) for seed in seeds]
            table[pair][variant] = spread(values)
            print(f"{pair} {variant}: {cell(table[pair][variant], 2)}", flush=True)
    report = {
        "command": _command(args),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads"
        ),
        "seconds": round(time.perf_counter() - started, 1),
        "seeds": seeds,
        "steps": args.steps,
        "accuracy": table,
    }
    write_report(args.out, args.name, report, markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    variants = list(next(iter(report["accuracy"].values())))
    lines = [
        "# Can the discriminator see the gap? (`simgan bench discriminator`)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; wall time {report['seconds']:.0f} s; seeds {report['seeds']}.",
        "",
        f"D alone, trained {report['steps']} steps on raw synthetic vs real images (the refiner is still "
        f"the identity), as D pretraining trains it. Each cell: D's patch accuracy over its last "
        f"{min(TAIL, report['steps'])} "
        "steps, median [min, max] over the seeds; 0.5 = it sees nothing, so the refiner gets no direction.",
        "",
        "| D variant | " + " | ".join(report["accuracy"]) + " |",
        "| --- |" + " --- |" * len(report["accuracy"]),
    ]
    for variant in variants:
        cells = [cell(report["accuracy"][pair][variant], 2) for pair in report["accuracy"]]
        lines.append(f"| `{variant}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
