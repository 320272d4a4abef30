"""`simgan <verb> ...`: each verb lives in simgan/commands/<verb>.py.

A verb module exposes `register(subparsers)`, which adds its parser and sets `run`
(a function taking the parsed args and returning an exit code). Heavy imports (torch,
onnxruntime, fastapi) happen inside `run`, so `simgan --help` is instant and a verb that
needs no torch never loads it.
"""

from __future__ import annotations

import argparse
import sys

from core import __version__
from simgan.commands import (
    bench,
    bundle_default,
    evaluate,
    export,
    models,
    serve,
    simulate,
    status,
    train,
    worker,
)

VERBS = (simulate, train, export, models, serve, status, worker, evaluate, bench, bundle_default)
"""Every verb, in the order `simgan --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simgan", description="Sim-to-real image refinement (S+U learning)."
    )
    parser.add_argument("--version", action="version", version=f"simgan {__version__}")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
