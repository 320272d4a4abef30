"""`simgan models`: list the published refiners."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list published refiners (the model registry)")
    parser.add_argument("--json", action="store_true", help="print the model cards as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from core.settings import get_settings
    from models import Registry

    registry = Registry(get_settings().models_path)
    cards = registry.list()
    if args.json:
        print(json.dumps([c.to_dict() for c in cards], indent=2))
        return 0
    if not cards:
        print(f"no models in {registry.root}")
        return 0
    pinned = registry.pinned()
    print(f"{'version':<8} {'created':<26} {'steps':>7} {'ch':>3} {'parity':>9}  note")
    for card in cards:
        mark = " (active)" if card.version == (pinned or registry.latest()) else ""
        print(
            f"{card.version:<8} {card.created_at:<26} {card.steps_trained:>7} {card.channels:>3} "
            f"{card.parity_max_abs_error:>9.2g}  {card.notes}{mark}"
        )
    return 0
