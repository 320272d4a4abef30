"""Summaries of repeated measurements: the median with its spread, never a single best run."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def spread(values: list[float | None]) -> dict[str, Any]:
    """median, min, max, mean and std of the known values (None: undefined in that run)."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return {"median": None, "min": None, "max": None, "mean": None, "std": None, "n": 0}
    return {
        "median": statistics.median(known),
        "min": min(known),
        "max": max(known),
        "mean": statistics.fmean(known),
        "std": statistics.pstdev(known),
        "n": len(known),
    }


def cell(figure: dict[str, Any], digits: int = 3) -> str:
    """`median [min, max]` for a Markdown table."""
    if figure["median"] is None:
        return "n/a"
    return f"{figure['median']:.{digits}f} [{figure['min']:.{digits}f}, {figure['max']:.{digits}f}]"


def write_report(
    out: Path, name: str, report: dict[str, Any], markdown: str, *, allow_nan: bool = True
) -> None:
    """out/name.json and out/name.md, and the Markdown on stdout: every bench leaves both.
    `allow_nan=False` refuses a NaN in the JSON (quality figures must be numbers or null)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2, allow_nan=allow_nan))
    (out / f"{name}.md").write_text(markdown)
    print(markdown)
