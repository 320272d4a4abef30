"""Built-in simulators: labelled synthetic images and camera-like "real" ones, made offline.

Numpy only (no torch): the service imports this for `POST /datasets/simulate`.
"""

from __future__ import annotations

from collections.abc import Callable

from simulators.batch import ImageBatch, save_npz, save_zip
from simulators.eyes import DOMAINS, simulate_eyes
from simulators.suite import PAIRS

SIMULATORS: dict[str, Callable[..., ImageBatch]] = {"eyes": simulate_eyes}
"""Simulator name -> function(count, domain, seed, gap) -> ImageBatch.

The domain suite's pairs (`PAIRS`, simulators/suite.py) are not listed here: they have three splits
and no gap, so they do not fit this signature; use `simulators.suite.make_split`."""


def simulate(name: str, count: int, domain: str = "synthetic", seed: int = 0, gap: float = 1.0) -> ImageBatch:
    """Run the built-in simulator `name`; unknown names, domains or counts raise ValueError."""
    if name not in SIMULATORS:
        raise ValueError(f"unknown simulator {name!r}; choose one of: {', '.join(sorted(SIMULATORS))}")
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of: {', '.join(DOMAINS)}")
    return SIMULATORS[name](count, domain=domain, seed=seed, gap=gap)


__all__ = [
    "DOMAINS",
    "PAIRS",
    "SIMULATORS",
    "ImageBatch",
    "save_npz",
    "save_zip",
    "simulate",
    "simulate_eyes",
]
