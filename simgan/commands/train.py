"""`simgan train --synthetic A --real B [--steps N] [--config key=value ...] [--resume CHECKPOINT]`.

Trains a refiner with S+U learning and publishes it into the model registry (SIMGAN_HOME/models).
Ctrl-C stops at the end of the current step, leaving a checkpoint to `--resume` from.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch-heavy: imported when a verb runs, so `simgan --help` stays quick
    from core.train_config import TrainConfig
    from trainer.data import ImageSet
    from trainer.training import Selector


def register(subparsers: argparse._SubParsersAction) -> None:
    from core.config_docs import config_help

    parser = subparsers.add_parser(
        "train",
        help="train a refiner on synthetic + real images and publish it",
        description=(
            "Train a refiner (S+U learning) on a synthetic and a real dataset (.npz, .h5, or a stored "
            "dataset directory) and publish it into the model registry."
        ),
        epilog="config keys (--config key=value; default, what it allows, what it does):\n" + config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--synthetic", required=True, type=Path, help="labelled synthetic images")
    parser.add_argument("--real", required=True, type=Path, help="unlabelled real images")
    parser.add_argument("--steps", type=int, help="adversarial steps after pretraining (config key steps)")
    add_config_argument(parser)
    parser.add_argument("--resume", type=Path, metavar="CHECKPOINT", help="continue from a checkpoint")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where checkpoints and pictures go (default: SIMGAN_HOME/runs/train-<time>)",
    )
    parser.add_argument(
        "--no-select",
        action="store_true",
        help="publish the last checkpoint instead of the most real-looking one (trainer/selection.py)",
    )
    parser.set_defaults(run=run)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """`--config KEY=VALUE ...`: training config overrides (read them with `parse_overrides`)."""
    parser.add_argument(
        "--config",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="training config overrides, e.g. --config batch_size=64 lambda_reg=0.1",
    )


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"simgan train: --config takes KEY=VALUE pairs, got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


@contextmanager
def console_progress(label: str) -> Iterator[Callable[[Any], None]]:
    """A tqdm bar when stderr is a terminal; otherwise a log line every 5% of the steps."""
    bar: Any = None

    def report(p: Any) -> None:
        nonlocal bar
        losses = {k: round(v, 4) for k, v in p.losses.items() if k in ("refiner", "discriminator")}
        if sys.stderr.isatty():
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=p.total_steps, initial=p.step - 1, desc=label, unit="step")
            bar.set_postfix(phase=p.phase, **losses)
            bar.update(1)
        elif p.step == p.total_steps or p.step % max(1, p.total_steps // 20) == 0:
            eta = f"{p.eta_seconds:.0f}s" if p.eta_seconds is not None else "?"
            print(f"{label}: step {p.step}/{p.total_steps} {p.phase} {losses} eta {eta}", file=sys.stderr)

    try:
        yield report
    finally:
        if bar is not None:
            bar.close()


@contextmanager
def stop_on_interrupt() -> Iterator[Callable[[], bool]]:
    """should_stop() for train(): true once Ctrl-C was pressed (a second Ctrl-C aborts at once)."""
    pressed: list[bool] = []

    def handler(signum: int, frame: object) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def _selector(args: argparse.Namespace, synthetic: ImageSet, real: ImageSet, seed: int) -> Selector | None:
    """The checkpoint selector (label consistency on the synthetic annotations where they have usable
    fields), or None with --no-select or for sets too small to score on."""
    from trainer.selection import build_selector

    if args.no_select:
        return None
    return build_selector(synthetic.images, synthetic.annotations, real.images, seed=seed)


def _inputs(args: argparse.Namespace) -> tuple[TrainConfig, ImageSet, ImageSet]:
    """The config (the checkpoint's when resuming, with the overrides) and both datasets."""
    from core.train_config import TrainConfig
    from trainer.checkpoint import load_checkpoint
    from trainer.data import load_images

    overrides = parse_overrides(args.config)
    if args.steps is not None:
        overrides["steps"] = str(args.steps)
    if args.resume:
        config = TrainConfig.from_saved(load_checkpoint(args.resume)["config"], overrides)
    else:
        config = TrainConfig.from_overrides(overrides)
    return config, load_images(args.synthetic), load_images(args.real)


def run(args: argparse.Namespace) -> int:
    from core.settings import get_settings
    from core.train_config import ConfigError
    from models import Registry
    from trainer.data import DataError
    from trainer.export import dataset_entry, publish_checkpoint
    from trainer.training import Hooks, train

    settings = get_settings()
    try:
        config, synthetic, real = _inputs(args)
    except (ConfigError, DataError) as exc:
        print(f"simgan train: {exc}", file=sys.stderr)
        return 2
    workdir = args.workdir or (
        args.resume.parent if args.resume else settings.home / "runs" / time.strftime("train-%Y%m%d-%H%M%S")
    )
    selector = _selector(args, synthetic, real, config.seed)
    print(f"training in {workdir} (checkpoints: {workdir / 'checkpoint.pt'})", file=sys.stderr)
    with console_progress("train") as progress, stop_on_interrupt() as should_stop:
        hooks = Hooks(progress=progress, should_stop=should_stop)
        result = train(
            config,
            synthetic.images,
            real.images,
            workdir=workdir,
            resume=args.resume,
            hooks=hooks,
            selector=selector,
        )
    for name, path in result.artifacts.items():
        print(f"{name}: {path}", file=sys.stderr)
    if result.stopped:
        print(f"stopped at step {result.step}; continue with --resume {result.checkpoint}", file=sys.stderr)
        return 130
    datasets = [
        dataset_entry("synthetic", synthetic.images, source=str(args.synthetic)),
        dataset_entry("real", real.images, source=str(args.real)),
    ]
    card = publish_checkpoint(result.checkpoint, Registry(settings.models_path), datasets=datasets)
    print(f"published {card.version} to {settings.models_path} ({result.step} steps)")
    return 0
