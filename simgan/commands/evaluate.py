"""`simgan evaluate --model VERSION --synthetic A --real B [--real-labeled C] [--json OUT]`.

Measures a published refiner (through its ONNX file, as served): downstream gap closure and label
preservation (with a labeled real set C), realism and a KID-style distance (with real images B).
The metrics are recorded beside the model's card in the registry and printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="measure a published refiner: gap closure, realism, kernel distance, label preservation",
        description=(
            "Refine the synthetic set with a published model and measure it. Datasets are .npz, .h5, a "
            "stored dataset directory, or a stored dataset id. C is used only for evaluation: half trains "
            "the oracle task model, half is the test set of every task model."
        ),
    )
    parser.add_argument("--model", default="latest", help="model version (vN, latest, active)")
    parser.add_argument("--synthetic", required=True, help="labeled synthetic images A")
    parser.add_argument("--real", required=True, help="unlabeled real images B (realism, kernel distance)")
    parser.add_argument("--real-labeled", help="labeled real images C (downstream task, label preservation)")
    parser.add_argument(
        "--target",
        help="annotation fields the task model predicts, comma-separated dotted paths "
        "(default gaze.pitch,gaze.yaw)",
    )
    parser.add_argument(
        "--task",
        choices=("auto", "regression", "classification"),
        default="auto",
        help="auto: classification when a target value is a string or bool",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and task models")
    parser.add_argument("--max-images", type=int, default=2000, help="most images used from each set")
    parser.add_argument(
        "--task-steps", type=int, default=300, help="Adam steps each task model and classifier trains for"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the metrics to this file")
    parser.add_argument("--no-record", action="store_true", help="do not record the metrics in the registry")
    parser.set_defaults(run=run)


def dataset_path(value: str, data_root: Path) -> Path:
    """A dataset file or directory, or the id of a stored dataset under `data_root`."""
    path = Path(value)
    if path.exists():
        return path
    if (data_root / value).is_dir():
        return data_root / value
    raise FileNotFoundError(f"{value}: no such dataset file, directory, or stored dataset id in {data_root}")


def summary(metrics: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"model {metrics.get('model')}  ({metrics['seconds']:.0f} s, seed {metrics['seed']})"]
    down = metrics.get("downstream")
    if down:
        closed = down["gap_closed"]
        lines.append(
            f"downstream error  synthetic {down['error_synthetic']:.3f}  "
            f"refined {down['error_refined']:.3f}  real (oracle) {down['error_real']:.3f}  gap closed "
            + (f"{closed:.2f}" if closed is not None else "n/a (no gap)")
        )
    real = metrics["realism"]
    lines.append(
        f"realism accuracy  real-vs-refined {real['accuracy_real_vs_refined']:.3f}  "
        f"real-vs-synthetic {real['accuracy_real_vs_synthetic']:.3f}  (0.5 = indistinguishable)"
    )
    lines.append(
        f"kernel distance   refined {real['kid_refined_vs_real']:.4g}  "
        f"synthetic {real['kid_synthetic_vs_real']:.4g}"
    )
    labels = metrics.get("labels")
    if labels:
        lines.append(
            f"label shift       oracle error on refined {labels['oracle_error_refined']:.3f}  "
            f"on synthetic {labels['oracle_error_synthetic']:.3f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from core.settings import get_settings
    from models import Registry, RegistryError
    from trainer.data import DataError, load_images
    from trainer.evaluate import EvaluationError, evaluate
    from trainer.task_models import TaskBudget

    settings = get_settings()
    registry = Registry(settings.models_path)
    try:
        sources = {"synthetic": args.synthetic, "real": args.real}
        synthetic = load_images(dataset_path(args.synthetic, settings.data_path))
        real = load_images(dataset_path(args.real, settings.data_path))
        labeled = None
        if args.real_labeled:
            sources["real_labeled"] = args.real_labeled
            labeled = load_images(dataset_path(args.real_labeled, settings.data_path))
        targets = [t.strip() for t in args.target.split(",") if t.strip()] if args.target else None
        metrics = evaluate(
            args.model,
            synthetic,
            real.images,
            labeled,
            seed=args.seed,
            registry=registry,
            targets=targets,
            task=args.task,
            max_images=args.max_images,
            budget=TaskBudget(steps=args.task_steps),
        )
    except (FileNotFoundError, DataError, EvaluationError, RegistryError) as exc:
        print(f"simgan evaluate: {exc}", file=sys.stderr)
        return 2
    print(summary(metrics))
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=2, allow_nan=False))
    if not args.no_record:
        registry.add_metrics(metrics["model"], {**metrics, "datasets": sources})
    return 0
