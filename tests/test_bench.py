"""`simgan bench refine` writes its figures as JSON and Markdown (the numbers are not judged here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simgan.cli import main


def test_bench_refine_reports_medians_and_spreads_against_its_baselines(tmp_path: Path) -> None:
    args = ["bench", "refine", "--repeats", "2", "--images", "4", "--requests", "4", "--clients", "2"]
    assert main([*args, "--http", "", "--out", str(tmp_path)]) == 0  # HTTP: tests/test_bench_http.py

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


def test_bench_quality_reports_gap_closure_per_setting_with_its_command_and_pictures(tmp_path: Path) -> None:
    tiny = ["steps=2", "pretrain_refiner_steps=1", "pretrain_discriminator_steps=1", "refiner_channels=4"]
    args = ["bench", "quality", "--gaps", "0.5,1", "--seeds", "3", "--synthetic", "24", "--real", "24"]
    args += ["--labeled", "24", "--task-steps", "5", "--jobs", "1", "--config", *tiny]
    assert main([*args, "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "quality.json").read_text())
    assert [setting["gap"] for setting in report["settings"]] == [0.5, 1.0]
    for setting in report["settings"]:
        assert [run["seed"] for run in setting["runs"]] == [3]
        closed = [run["downstream"]["gap_closed"] for run in setting["runs"]]
        assert setting["gap_closed"]["n"] == sum(c is not None for c in closed)
        assert {"median", "min", "max"} <= set(setting["gap_closed"])
    assert "--task-steps 5" in report["command"] and report["overrides"]["steps"] == "2"
    markdown = (tmp_path / "quality.md").read_text()
    assert report["command"] in markdown and "## Gap 0.5: gap closed" in markdown
    for gap in ("0.5", "1"):
        for picture in ("samples", "losses"):
            assert (tmp_path / f"quality_gap{gap}_{picture}.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 3 minutes on 2 free cores; more on a loaded CI machine
def test_the_quick_suite_runs_two_pairs_end_to_end_and_reports_every_figure(tmp_path: Path) -> None:
    # Exactly what a user runs (`simgan bench quality --suite --quick`), a few minutes on 2 cores.
    assert main(["bench", "quality", "--suite", "--quick", "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "suite_quick.json").read_text())
    assert [run["pair"] for run in report["runs"]] == ["glyphs8", "shapes32"]
    for run in report["runs"]:
        assert run["verdict"]["verdict"] in ("improved", "no measurable change", "worse")
        assert run["verdict"]["why"] and run["ranking"]["checkpoints"]
        assert {"error_synthetic", "error_refined", "error_real"} <= set(run["downstream"])
    assert set(report["summary"]["pairs"]) == {"glyphs8", "shapes32"}
    markdown = (tmp_path / "suite_quick.md").read_text()
    assert report["command"] in markdown and "| glyphs8 |" in markdown and "Rank correlation" in markdown


def test_the_rank_correlation_is_one_for_the_same_order_and_minus_one_for_the_reverse() -> None:
    from simgan.benchmarks.suite import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None


def test_bench_train_reports_steps_per_second_per_precision_as_ratios_to_the_first(tmp_path: Path) -> None:
    args = ["bench", "train", "--precisions", "fp32,auto", "--repeats", "2", "--steps", "1"]
    assert main([*args, "--height", "8", "--width", "8", "--threads", "1", "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "train_steps.json").read_text())
    steps = report["adversarial_steps_per_second"]
    assert set(steps) == {"fp32", "auto"}
    assert all(f["n"] == 2 and 0 < f["min"] <= f["median"] <= f["max"] for f in steps.values())
    assert report["ratio_to_fp32"]["fp32"]["median"] == pytest.approx(1.0)
    assert report["precision"]["auto"]["name"] == "fp32"  # auto on the CPU
    assert report["command"] in (tmp_path / "train_steps.md").read_text()
