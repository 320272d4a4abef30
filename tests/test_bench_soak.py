"""`simgan bench soak` on a small scale: it runs to its end by itself and reports what it promises."""

from __future__ import annotations

import json
from pathlib import Path

from simgan.cli import main


def test_bench_soak_reports_errors_latencies_and_memory_with_its_command(tmp_path: Path) -> None:
    args = ["bench", "soak", "--clients", "2", "--seconds", "2", "--repeats", "1", "--big-side", "64"]
    assert main([*args, "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "soak.json").read_text())
    soak = report["soak"]
    assert soak["errors"] == {}
    assert soak["requests"]["1 image"] > 0
    assert soak["p50_s"]["1 image"] <= soak["p99_s"]["1 image"]
    assert soak["rss_start_gb"] > 0 and soak["rss_end_gb"] > 0
    (big,) = report["big"]
    assert big["status"] == 200 and big["rss_peak_gb"] > 0 and big["rss_after_gb"] > 0
    assert report["big_summary"]["big_seconds"]["n"] == 1
    assert report["baseline_small_s"] > 0
    assert report["command"] in (tmp_path / "soak.md").read_text()
