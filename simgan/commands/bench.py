"""`simgan bench <name> ...`: benchmarks that write bench/results/<name>.json and <name>.md.

- `quality`: does refinement help? On the built-in eye simulator at several domain-gap strengths and
  seeds: train a refiner, then measure downstream gap closure, realism, kernel distance and label
  preservation (trainer/evaluate.py) for synthetic-only, refined and real-labeled (oracle) data.
- `refine`: how fast the service refines (simgan/benchmarks/refine.py).
- `train`: adversarial training steps/s in each precision (simgan/benchmarks/train_steps.py).
- `discriminator`: can D see each suite pair's gap, per D variant (simgan/benchmarks/discriminator.py).

Each benchmark is a (register, run) pair in BENCHES; `register` adds its subcommand's options.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simgan.benchmarks import discriminator, http, refine, soak, train_steps
from simgan.benchmarks.stats import cell, spread, write_report
from simgan.commands.train import add_config_argument

RESULTS = Path("bench/results")

QUALITY_CONFIG = {
    "steps": "300",
    "pretrain_refiner_steps": "100",
    "pretrain_discriminator_steps": "50",
    "checkpoint_every": "100",
    "device": "cpu",
}
"""Short CPU training for the quality bench (everything else: the TrainConfig defaults)."""

FIGURES = (
    ("downstream", "error_synthetic"),
    ("downstream", "error_refined"),
    ("downstream", "error_real"),
    ("downstream", "gap_closed"),
    ("realism", "accuracy_real_vs_synthetic"),
    ("realism", "accuracy_real_vs_refined"),
    ("realism", "accuracy_real_vs_real"),
    ("realism", "kid_synthetic_vs_real"),
    ("realism", "kid_refined_vs_real"),
    ("realism", "kid_real_vs_real"),
    ("labels", "oracle_error_synthetic"),
    ("labels", "oracle_error_refined"),
    ("labels", "oracle_error_real"),
)


def _numbers(text: str, kind: Callable[[str], Any]) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


def register_quality(benches: argparse._SubParsersAction) -> None:
    parser = benches.add_parser(
        "quality", help="gap closure, realism and label preservation on the simulator"
    )
    parser.add_argument(
        "--gaps", default="0.5,1.0", help="domain-gap strengths of the simulator's real domain"
    )
    parser.add_argument(
        "--suite",
        action="store_true",
        help="judge the defaults on the domain suite (simulators/suite.py), not the eye simulator's gaps",
    )
    parser.add_argument(
        "--quick", action="store_true", help="with --suite: one seed, two small pairs (a few minutes)"
    )
    parser.add_argument("--pairs", default=None, help="with --suite: comma-separated pairs (default: all)")
    parser.add_argument("--seeds", default="0,1,2", help="one full run (data, training, evaluation) per seed")
    parser.add_argument("--synthetic", type=int, default=1000, help="synthetic images per run")
    parser.add_argument("--real", type=int, default=1000, help="unlabeled real images per run")
    parser.add_argument("--labeled", type=int, default=1000, help="labeled real images (evaluation only)")
    add_config_argument(parser)
    parser.add_argument(
        "--task-steps", type=int, default=300, help="Adam steps of each evaluation model (simgan evaluate)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, each in its own process")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per run (0: torch's default; 1 is fastest on a shared CPU)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for quality.json and quality.md")
    parser.add_argument("--name", default="quality", help="file name stem of the results")
    parser.set_defaults(run=run_quality)


def _progress(label: str) -> Callable[[Any], None]:
    """A log line on stderr every 10% of the training steps."""

    def report(p: Any) -> None:
        if p.step == p.total_steps or p.step % max(1, p.total_steps // 10) == 0:
            losses = " ".join(f"{k}={v:.3f}" for k, v in sorted(p.losses.items()))
            print(f"{label}: step {p.step}/{p.total_steps} {p.phase} {losses}", file=sys.stderr, flush=True)

    return report


def quality_run(gap: float, seed: int, args: argparse.Namespace, overrides: dict[str, str]) -> dict[str, Any]:
    """Simulate, train, publish into a scratch registry, evaluate; the run's figures."""
    import torch

    from core.layout import CURVES_NAME, SAMPLES_NAME
    from core.train_config import TrainConfig
    from models import Registry
    from simulators import simulate
    from trainer.evaluate import evaluate
    from trainer.export import publish_checkpoint
    from trainer.selection import CheckpointSelector
    from trainer.task_models import TaskBudget
    from trainer.training import Hooks, train

    if args.threads:
        torch.set_num_threads(args.threads)

    # Distinct scene streams for the three sets, so no real image re-renders a synthetic scene.
    synthetic = simulate("eyes", args.synthetic, "synthetic", seed=100 * seed + 1, gap=gap)
    real = simulate("eyes", args.real, "real", seed=100 * seed + 2, gap=gap)
    labeled = simulate("eyes", args.labeled, "real", seed=100 * seed + 3, gap=gap)
    config = TrainConfig.from_overrides({**overrides, "seed": str(seed)})
    with tempfile.TemporaryDirectory(prefix="simgan-bench-") as tmp:
        registry = Registry(Path(tmp) / "models")
        started = time.perf_counter()
        result = train(
            config,
            synthetic.images,
            real.images,
            workdir=Path(tmp) / "run",
            hooks=Hooks(progress=_progress(f"gap {gap} seed {seed}")),
            selector=CheckpointSelector(synthetic.images, real.images, seed=seed),
        )
        card = publish_checkpoint(result.checkpoint, registry)
        train_seconds = time.perf_counter() - started
        selection = card.selection
        metrics = evaluate(
            card.version,
            synthetic,
            real.images,
            labeled,
            seed=seed,
            registry=registry,
            budget=TaskBudget(steps=args.task_steps),
        )
        if (
            seed == _numbers(args.seeds, int)[0]
        ):  # the first seed's pictures (the published refiner's), for the README
            args.out.mkdir(parents=True, exist_ok=True)
            for name, suffix in ((SAMPLES_NAME, "samples"), (CURVES_NAME, "losses")):
                target = args.out / f"{args.name}_gap{gap:g}_{suffix}.png"
                target.write_bytes(result.artifacts[name].read_bytes())
    closed = metrics["downstream"]["gap_closed"]
    print(f"gap {gap} seed {seed}: gap closed {closed}", file=sys.stderr, flush=True)
    return {
        "gap": gap,
        "seed": seed,
        "train_seconds": round(train_seconds, 1),
        "selected_step": selection.get("step"),
        **metrics,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {f"{group}.{name}": spread([r.get(group, {}).get(name) for r in runs]) for group, name in FIGURES}


ROWS = (("synthetic", "synthetic", "synthetic"), ("refined", "refined", "refined"))
ROWS += (("real-labeled (oracle)", "real", "real"),)
"""Table rows: label, suffix of the downstream/realism figures, suffix of the oracle's label error."""


def _row(label: str, s: dict[str, Any], key: str, oracle: str) -> str:
    cells = [
        cell(s[f"downstream.error_{key}"]),
        cell(s[f"realism.accuracy_real_vs_{key}"]),
        cell(s[f"realism.kid_{key}_vs_real"], 4),
        cell(s[f"labels.oracle_error_{oracle}"]),
    ]
    return f"| {label} | " + " | ".join(cells) + " |"


def _seed_line(run: dict[str, Any]) -> str:
    closed = run["downstream"]["gap_closed"]
    return (
        f"seed {run['seed']}: gap closed "
        + (f"{closed:.2f}" if closed is not None else "n/a")
        + f", published step {run['selected_step']}, train {run['train_seconds']:.0f} s"
        + f", evaluation {run['seconds']:.0f} s"
    )


def quality_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Quality: does refinement help? (`simgan bench quality`)",
        "",
        f"Command: `{report['command']}`  ",
        f"Wall time: {report['seconds']:.0f} s on {report['machine']}; seeds {report['seeds']}; "
        f"images per run: {report['counts']}.  ",
        f"Training config (overrides of the defaults): `{json.dumps(report['overrides'])}`; the published "
        f"checkpoint is chosen by `{report['selection']}` (trainer/selection.py).",
        "",
        "Each cell: median [min, max] over the seeds. Downstream error: a gaze (pitch, yaw) regressor",
        "trained on X, tested on held-out labeled real images (mean Euclidean error, degrees). Realism:",
        "held-out balanced accuracy of a fresh real-vs-X classifier (0.5 = indistinguishable). KID: unbiased",
        "MMD^2 (cubic kernel) to real images on features of a classifier trained here. Oracle label error:",
        "the real-trained regressor's error on X against X's labels (synthetic labels for refined images).",
    ]
    for setting in report["settings"]:
        s = setting["summary"]
        lines += [
            "",
            f"## Gap {setting['gap']}: gap closed {cell(setting['gap_closed'], 2)}",
            "",
            "| data (X) | downstream error | realism accuracy | KID to real | oracle label error |",
            "| --- | --- | --- | --- | --- |",
            *(_row(label, s, key, oracle) for label, key, oracle in ROWS),
            "",
            "Per seed: " + "; ".join(_seed_line(r) for r in setting["runs"]),
        ]
    return "\n".join(lines) + "\n"


def quality_command(args: argparse.Namespace) -> str:
    """The command line that repeats this run exactly (every option spelled out)."""
    parts = ["simgan", "bench", "quality", "--gaps", args.gaps, "--seeds", args.seeds]
    parts += ["--synthetic", str(args.synthetic), "--real", str(args.real), "--labeled", str(args.labeled)]
    parts += ["--task-steps", str(args.task_steps), "--jobs", str(args.jobs), "--threads", str(args.threads)]
    if args.config:
        parts += ["--config", *args.config]
    return shlex.join(parts)


def run_quality(args: argparse.Namespace) -> int:
    import platform

    from simgan.commands.train import parse_overrides
    from trainer.selection import CRITERION

    if args.suite:
        return _run_suite(args)
    overrides = {**QUALITY_CONFIG, **parse_overrides(args.config)}
    gaps, seeds = _numbers(args.gaps, float), _numbers(args.seeds, int)
    started = time.perf_counter()
    grid = [(gap, seed) for gap in gaps for seed in seeds]
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter per run, no torch state inherited through fork.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            done = list(
                pool.map(quality_run, *zip(*grid, strict=True), [args] * len(grid), [overrides] * len(grid))
            )
    else:
        done = [quality_run(gap, seed, args, overrides) for gap, seed in grid]
    settings = []
    for gap in gaps:
        runs = [r for r in done if r["gap"] == gap]
        summary = summarize(runs)
        settings.append(
            {"gap": gap, "gap_closed": summary["downstream.gap_closed"], "summary": summary, "runs": runs}
        )
    report = {
        "command": quality_command(args),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores",
        "seeds": seeds,
        "counts": {"synthetic": args.synthetic, "real": args.real, "labeled": args.labeled},
        "overrides": overrides,
        "selection": CRITERION,
        "settings": settings,
    }
    write_report(args.out, args.name, report, quality_markdown(report), allow_nan=False)
    return 0


def _run_suite(args: argparse.Namespace) -> int:
    from simgan.benchmarks import suite
    from simgan.commands.train import parse_overrides
    from simulators.suite import PAIRS, QUICK

    if args.quick:
        args.pairs, args.seeds = list(QUICK), args.seeds.split(",")[0]
        args.synthetic, args.real, args.labeled = (
            min(args.synthetic, 600),
            min(args.real, 600),
            min(args.labeled, 400),
        )
        args.task_steps = min(args.task_steps, 100)
    else:
        args.pairs = args.pairs.split(",") if args.pairs else list(PAIRS)
    unknown = [p for p in args.pairs if p not in PAIRS]
    if unknown:
        print(
            f"simgan bench quality: unknown pair(s) {', '.join(unknown)}; pairs: {', '.join(PAIRS)}",
            file=sys.stderr,
        )
        return 2
    # --quick checks that every part of the suite runs and reports, in under 3 minutes on 2 cores: a
    # shorter run of smaller batches (its figures are not the quality claim; the whole suite's are).
    quick = {
        "steps": "60",
        "pretrain_refiner_steps": "30",
        "pretrain_discriminator_steps": "30",
        "checkpoint_every": "40",  # 3 checkpoints and the baseline: enough for a rank correlation
        "batch_size": "16",
    }
    quick = quick if args.quick else {}
    report = suite.run_suite(args, {**suite.SUITE_CONFIG, **quick, **parse_overrides(args.config)})
    name = args.name if args.name != "quality" else ("suite_quick" if args.quick else "suite")
    write_report(args.out, name, report, suite.markdown(report), allow_nan=False)
    return 0


def register_refine(benches: argparse._SubParsersAction) -> None:
    """`simgan bench refine`: the engine figures (simgan.benchmarks.refine), then the HTTP ones
    (simgan.benchmarks.http), in one run."""
    refine.register(benches)
    parser = benches.choices["refine"]
    http.add_arguments(parser)
    engine = parser.get_default("run")

    def run_both(args: argparse.Namespace) -> int:
        code: int = engine(args)
        if code == 0 and not getattr(args, "no_http", False):  # --no-http: the engines only
            http.run(args, shlex.join(["simgan", "bench", "refine", *spelled_out(parser, args)]))
        return code

    parser.set_defaults(run=run_both)


def spelled_out(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """Every option of `parser` with its value in `args`: the command line that repeats this run."""
    parts = []
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest)
        if isinstance(action, argparse._StoreTrueAction):
            parts += [action.option_strings[0]] if value else []
        else:
            parts.append(f"{action.option_strings[0]}={value}")
    return parts


BENCHES: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "quality": register_quality,
    "refine": register_refine,
    "train": train_steps.register,
    "soak": soak.register,
    "discriminator": discriminator.register,
}
"""Benchmark name -> function adding its subcommand (which sets `run`)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks that write bench/results/<name>.json and .md")
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for add in BENCHES.values():
        add(benches)
