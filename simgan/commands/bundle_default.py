"""`simgan bundle-default [--steps N] [--out models/bundled]`: re-create the bundled default refiner.

Simulates synthetic and real eye datasets with the built-in simulator, trains a refiner on them,
and writes model.onnx + card.json into `--out`; a fresh `simgan serve` publishes that pair first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simgan.commands.train import add_config_argument

if TYPE_CHECKING:  # imported when the verb runs, so `simgan --help` stays quick
    from models import ModelCard, Registry
    from simulators import ImageBatch

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "models" / "bundled"
DEFAULT_STEPS = 400
"""Adversarial steps of the bundled model (with BUNDLE_CONFIG: under 10 minutes on 2 busy CPU cores)."""

BUNDLE_CONFIG = {"batch_size": "16", "pretrain_refiner_steps": "100"}
"""Where the bundled model departs from the TrainConfig defaults: half the batch and half the
refiner pretraining, so that it re-creates in minutes on a laptop; --config overrides these."""

DEFAULT_COUNT = 4000
"""Images per domain; the eye simulator makes them in about a second."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bundle-default",
        help="re-create the bundled default refiner (models/bundled) from the eye simulator",
        description=(
            "Simulate synthetic and real eyes, train a refiner on them and write model.onnx and card.json "
            "into --out (the refiner a fresh `simgan serve` loads first)."
        ),
    )
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"(default {DEFAULT_STEPS})")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="images per domain")
    parser.add_argument("--seed", type=int, default=0, help="simulator and training seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="(default models/bundled)")
    add_config_argument(parser)
    parser.set_defaults(run=run)


def _simulate(args: argparse.Namespace) -> tuple[dict[str, ImageBatch], list[dict[str, Any]]]:
    """Eye images (with their gaze labels) per domain, and the card's record of how each was simulated."""
    from simulators import simulate
    from trainer.export import dataset_entry

    domains, datasets = {}, []
    for offset, domain in enumerate(("synthetic", "real")):
        # Different seeds per domain: the real set must not hold the same scenes as the synthetic one.
        seed = args.seed + offset
        domains[domain] = simulate("eyes", args.count, domain=domain, seed=seed)
        datasets.append(dataset_entry(domain, domains[domain].images, simulator="eyes", seed=seed))
    return domains, datasets


def _write_bundle(registry: Registry, card: ModelCard, out: Path) -> None:
    """model.onnx, then card.json, into `out`: a card always describes the file beside it."""
    from models.registry import CARD_NAME, ONNX_NAME

    out.mkdir(parents=True, exist_ok=True)
    staged = out / f".{ONNX_NAME}.tmp"
    shutil.copyfile(registry.onnx_path(card.version), staged)
    staged.replace(out / ONNX_NAME)
    staged_card = out / f".{CARD_NAME}.tmp"
    staged_card.write_text(replace(card, version="").to_json() + "\n")
    staged_card.replace(out / CARD_NAME)


def run(args: argparse.Namespace) -> int:
    from core.train_config import ConfigError, TrainConfig
    from models import Registry
    from models.registry import CARD_NAME, ONNX_NAME
    from simgan.commands.train import console_progress, parse_overrides
    from trainer.export import publish_checkpoint
    from trainer.selection import build_selector
    from trainer.training import Hooks, train

    try:
        overrides = {
            **BUNDLE_CONFIG,
            "seed": str(args.seed),
            **parse_overrides(args.config),
            "steps": str(args.steps),
        }
        config = TrainConfig.from_overrides(overrides)
    except ConfigError as exc:
        print(f"simgan bundle-default: {exc}", file=sys.stderr)
        return 2
    domains, datasets = _simulate(args)
    with tempfile.TemporaryDirectory(prefix="simgan-bundle-") as tmp:
        registry = Registry(Path(tmp) / "models")
        with console_progress("bundle-default") as progress:
            synthetic, real = domains["synthetic"], domains["real"]
            selector = build_selector(synthetic.images, synthetic.annotations, real.images, seed=config.seed)
            result = train(
                config,
                synthetic.images,
                real.images,
                workdir=Path(tmp) / "run",
                hooks=Hooks(progress=progress),
                selector=selector,
            )
        notes = f"bundled default: simgan bundle-default --steps {args.steps} --count {args.count}"
        card = publish_checkpoint(result.checkpoint, registry, datasets=datasets, notes=notes)
        _write_bundle(registry, card, args.out)
    size = (args.out / ONNX_NAME).stat().st_size
    print(f"wrote {args.out / ONNX_NAME} ({size / 1e6:.2f} MB) and {CARD_NAME}: {result.final_losses}")
    return 0
