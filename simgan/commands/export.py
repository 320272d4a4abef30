"""`simgan export CHECKPOINT`: publish the refiner of a training checkpoint into the registry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a training checkpoint to ONNX and publish it",
        description=(
            "Export the refiner of CHECKPOINT to ONNX (uint8 NHWC in and out, dynamic batch, height and "
            "width), check onnxruntime against torch, and publish it into the model registry."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="a checkpoint.pt written by `simgan train`")
    parser.add_argument("--notes", default="", help="a note for the model card")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from core.settings import get_settings
    from models import Registry
    from trainer.checkpoint import CheckpointError
    from trainer.export import ExportError, export_checkpoint

    registry = Registry(get_settings().models_path)
    try:
        card = export_checkpoint(args.checkpoint, registry, notes=args.notes)
    except (CheckpointError, ExportError) as exc:
        print(f"simgan export: {exc}", file=sys.stderr)
        return 2
    print(
        f"published {card.version} to {registry.root} "
        f"(step {card.steps_trained}, parity error {card.parity_max_abs_error:g} pixel levels)"
    )
    return 0
