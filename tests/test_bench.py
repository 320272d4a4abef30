"""`simgan bench refine` writes its figures as JSON and Markdown (the numbers are not judged here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.settings import Settings
from models.providers import engines
from simgan.benchmarks.engines import BASELINE
from simgan.cli import main


def test_bench_refine_reports_medians_and_spreads_against_its_baselines(tmp_path: Path) -> None:
    args = ["bench", "refine", "--repeats", "2", "--images", "4", "--requests", "4", "--clients", "2"]
    # The HTTP half ("--http", "") is tests/test_bench_http.py's.
    assert main([*args, "--http", "", "--large-side", "16", "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "refine.json").read_text())
    rows = report["engines"]["rows"]
    offered = [f"{engine.provider} (service settings)" for engine in engines("auto")]
    assert {row["engine"] for row in rows} >= {BASELINE, *offered}
    assert {row["batch"] for row in rows} == {1, 4, 16, 32, 64}
    speeds = [row["images_per_second"] for row in rows]
    assert all(s["n"] == 2 and s["min"] <= s["median"] <= s["max"] for s in speeds)
    baseline = next(row for row in rows if row["engine"] == BASELINE and row["batch"] == 64)
    assert baseline["ratio_to_baseline_at_largest_batch"]["median"] == pytest.approx(1.0)
    assert baseline["max_grey_levels_from_baseline"] == 0
    assert all(row["max_grey_levels_from_baseline"] <= 2 for row in rows)
    assert report["engines"]["gflop_per_image"] == pytest.approx(0.285, abs=0.001)  # the bundled refiner
    assert all(row["gflop_per_second"] > 0 and row["share_of_matmul_bound"] > 0 for row in rows)
    memory = report["engines"]["resident_mb_around_a_large_batch"]
    assert set(memory) == {"batch", *(row["engine"] for row in rows)}
    assert set(report["load_average"]) == {"1 min", "5 min"}
    assert len(report["http_requests_per_second"]) == 3
    settings = {(row["batch_max_size"], row["batch_max_delay_ms"]) for row in report["batcher"]["rows"]}
    assert (16, 5.0) in settings and (Settings().batch_max_size, Settings().batch_max_delay_ms) in settings
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
        assert 0 <= run["dynamics"]["discriminator_accuracy_median"] <= 1
        assert {"realism", "consistency", "retention", "reg_distance"} <= set(
            run["ranking"]["checkpoints"][0]
        )
        assert run["ranking"]["checkpoints"][0]["retention"] == pytest.approx(1.0)  # the identity keeps all
    assert set(report["summary"]["pairs"]) == {"glyphs8", "shapes32"}
    assert {"realism", "kid", "-retention", "-consistency"} <= set(report["summary"]["validators"])
    markdown = (tmp_path / "suite_quick.md").read_text()
    assert report["command"] in markdown and "| glyphs8 |" in markdown and "Rank correlation" in markdown


def test_the_rank_correlation_is_one_for_the_same_order_and_minus_one_for_the_reverse() -> None:
    from simgan.benchmarks.ranking import spearman

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


def test_bench_discriminator_shows_a_wider_unblurred_d_sees_a_shape_gap_the_old_local_one_misses(
    tmp_path: Path,
) -> None:
    old, new = "discriminator_patch=0.5,instance_noise=0.25", "discriminator_patch=0.9,instance_noise=0"
    args = ["bench", "discriminator", "--pairs", "glyphs8", "--variants", old, new, "--seeds", "0"]
    assert main([*args, "--steps", "60", "--images", "300", "--threads", "1", "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "discriminator_probe.json").read_text())
    accuracy = report["accuracy"]["glyphs8"]
    assert accuracy[new]["median"] > accuracy[old]["median"] + 0.1
    assert accuracy[new]["median"] > 0.75  # 8x8 one-pixel font vs pen strokes: plain to a 7x7 patch
    assert report["command"] in (tmp_path / "discriminator_probe.md").read_text()
