"""The HTTP half of `simgan bench refine`: real API processes, ratios to plain onnxruntime, checked
answers (the numbers themselves are not judged here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simgan.benchmarks.http import Case, parse_cases
from simgan.cli import main


def test_http_cases_are_read_from_form_images_clients_processes() -> None:
    assert parse_cases("raw:1:32:2, multipart:64:4:1,") == (
        Case("raw", 1, 32, 2),
        Case("multipart", 64, 4, 1),
    )
    assert parse_cases("") == ()
    with pytest.raises(ValueError, match="one image per request"):
        parse_cases("raw:4:1:1")
    with pytest.raises(ValueError, match="unknown form"):
        parse_cases("xml:1:1:1")


@pytest.mark.slow
def test_bench_refine_measures_each_http_form_and_process_count_against_plain_onnxruntime(
    tmp_path: Path,
) -> None:
    args = ["bench", "refine", "--repeats", "1", "--images", "4", "--requests", "2", "--clients", "1"]
    args += ["--http", "raw:1:2:1,json:3:1:1,multipart:2:2:2", "--http-repeats", "1", "--http-seconds", "0.1"]
    assert main([*args, "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "refine_http.json").read_text())
    names = [
        "baseline",
        "raw, 1 image/request, 2 clients, 1 process",
        "json, 3 images/request, 1 clients, 1 process",
        "multipart, 2 images/request, 2 clients, 2 processes",
    ]
    baseline, ceiling, *measured = report["images_per_second"]
    assert [baseline, *measured] == names
    assert ceiling.startswith("the API's engine (") and "in a process of its own, batch" in ceiling
    names.append(ceiling)
    assert all(report["images_per_second"][name]["n"] == 1 for name in names)
    assert report["ratio_to_baseline"]["baseline"]["median"] == pytest.approx(1.0)
    assert all(report["cpu_ms_per_image"][name]["median"] > 0 for name in names)
    # The service refines what plain onnxruntime refines, over every form and process count.
    assert all(report["max_grey_level_difference"][name] <= 2 for name in names)
    assert report["api_providers"] and report["load_average_1min"]["n"] == 1
    markdown = (tmp_path / "refine_http.md").read_text()
    assert report["command"] in markdown and "| raw, 1 image/request, 2 clients, 1 process |" in markdown
    assert "--http=raw:1:2:1,json:3:1:1,multipart:2:2:2" in report["command"]
