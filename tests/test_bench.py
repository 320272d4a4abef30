"""`simgan bench refine` writes its figures as JSON and Markdown (the numbers are not judged here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simgan.cli import main


def test_bench_refine_reports_medians_and_spreads_against_its_baselines(tmp_path: Path) -> None:
    args = ["bench", "refine", "--repeats", "2", "--images", "4", "--requests", "4", "--clients", "2"]
    assert main([*args, "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "refine.json").read_text())
    engine = report["engine_images_per_second"]
    assert set(engine) == {"1", "4", "16", "32"}
    assert all(
        figure["n"] == 2 and figure["min"] <= figure["median"] <= figure["max"] for figure in engine.values()
    )
    assert report["engine_speedup_vs_batch_1"]["1"]["median"] == pytest.approx(1.0)
    assert len(report["http_requests_per_second"]) == 3
    assert report["provider"] == "CPUExecutionProvider"
    markdown = (tmp_path / "refine.md").read_text()
    assert report["command"] in markdown
    assert "| 16 clients" not in markdown and "| 2 clients, dynamic batching |" in markdown
