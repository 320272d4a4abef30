"""The evaluation: gap closure arithmetic, realism classifier, kernel distance, label preservation, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core.settings import Settings
from models import Registry
from simgan.cli import main
from simulators import save_npz, simulate
from tests.factories import publish_tiny_refiner, uniform_images
from trainer import task_models
from trainer.evaluate import EvaluationError, choose_targets, evaluate, gap_closed, target_array
from trainer.task_models import TaskBudget

TINY = TaskBudget(steps=40, batch_size=32)
QUICK = TaskBudget(steps=8, batch_size=16, members=2)
"""Task models that learn nothing much: enough to run the evaluation end to end on eye images."""


def _without_time(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "seconds"}


def test_gap_closed_is_the_fraction_of_the_gap_that_refined_data_recovers() -> None:
    assert gap_closed(10.0, 7.0, 4.0) == pytest.approx(0.5)
    assert gap_closed(10.0, 10.0, 4.0) == pytest.approx(0.0)
    assert gap_closed(10.0, 4.0, 4.0) == pytest.approx(1.0)
    assert gap_closed(10.0, 13.0, 4.0) == pytest.approx(-0.5)


def test_gap_closed_is_undefined_when_real_data_is_no_better_than_synthetic() -> None:
    assert gap_closed(5.0, 4.0, 5.0) is None
    assert gap_closed(5.0, 4.0, 6.0) is None


def test_a_gap_within_its_noise_is_no_gap_to_close() -> None:
    assert gap_closed(0.340, 0.323, 0.335, noise=0.067) is None  # a ratio of 3.4 over noise
    assert gap_closed(0.40, 0.30, 0.20, noise=0.067) == pytest.approx(0.5)


def test_realism_classifier_is_near_one_on_trivially_separable_images() -> None:
    real = uniform_images(200, 0, 80, seed=1)
    other = uniform_images(200, 170, 256, seed=2)
    classifier = task_models.fit_domain_classifier(real[:100], other[:100], seed=0, budget=TINY)
    assert task_models.domain_accuracy(classifier, real[100:], other[100:]) > 0.95


def test_realism_classifier_is_near_chance_on_one_distribution() -> None:
    real = uniform_images(400, 0, 256, seed=1)
    other = uniform_images(400, 0, 256, seed=2)
    classifier = task_models.fit_domain_classifier(real[:200], other[:200], seed=0, budget=TINY)
    assert abs(task_models.domain_accuracy(classifier, real[200:], other[200:]) - 0.5) < 0.1


def test_kernel_distance_is_near_zero_for_one_distribution_and_larger_for_a_shifted_one() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    shifted = rng.normal(size=(300, 16)) + 0.5
    same = task_models.kernel_distance(a, b)
    assert abs(same) < 0.05
    assert task_models.kernel_distance(a, shifted) > 10 * max(abs(same), 1e-3)


def test_task_models_are_the_same_for_the_same_seed() -> None:
    images = uniform_images(64, 0, 256)
    targets = np.linspace(-1, 1, 128).reshape(64, 2)
    first = task_models.fit_regressor(images, targets, seed=3, budget=TINY).predict(images)
    second = task_models.fit_regressor(images, targets, seed=3, budget=TINY).predict(images)
    np.testing.assert_array_equal(first, second)


def test_a_fit_with_an_epoch_cap_trains_only_that_many_passes_over_a_small_set() -> None:
    images = uniform_images(16, 0, 256, seed=5)
    targets = images.reshape(16, -1).mean(axis=1, keepdims=True).astype(np.float64)
    capped = TaskBudget(steps=200, batch_size=8, members=1, max_epochs=3)  # 16 images / 8 = 2 per epoch
    explicit = TaskBudget(steps=6, batch_size=8, members=1)
    first = task_models.fit_regressor(images, targets, seed=1, budget=capped).predict(images)
    second = task_models.fit_regressor(images, targets, seed=1, budget=explicit).predict(images)
    longer = task_models.fit_regressor(images, targets, seed=1, budget=TaskBudget(steps=7, batch_size=8))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, longer.predict(images))


def test_targets_default_to_gaze_and_missing_fields_are_named() -> None:
    annotations = simulate("eyes", 3, seed=0).annotations
    chosen = choose_targets(annotations)
    assert chosen.fields == ("gaze.pitch", "gaze.yaw")
    assert target_array(annotations, chosen).shape == (3, 2)
    with pytest.raises(EvaluationError, match=r"no 'gaze\.roll'"):
        choose_targets(annotations, ["gaze.roll"])


def test_string_targets_are_classified() -> None:
    annotations = [{"label": name} for name in ("open", "closed", "open", "closed")]
    chosen = choose_targets(annotations, ["label"])
    assert chosen.kind == "classification"
    assert target_array(annotations, chosen).tolist() == [1, 0, 1, 0]


@pytest.fixture(scope="module")
def eyes() -> dict:
    return {
        "synthetic": simulate("eyes", 48, "synthetic", seed=1),
        "real": simulate("eyes", 48, "real", seed=2).images,
        "labeled": simulate("eyes", 48, "real", seed=3),
    }


def test_identity_refiner_preserves_labels_and_closes_none_of_the_gap(eyes: dict) -> None:
    metrics = evaluate(
        lambda images: images, eyes["synthetic"], eyes["real"], eyes["labeled"], seed=0, budget=QUICK
    )
    assert metrics["labels"]["shift"] == 0.0
    down = metrics["downstream"]
    assert down["error_refined"] == down["error_synthetic"]
    assert down["gap_closed"] in (0.0, None)
    assert metrics["realism"]["accuracy_real_vs_refined"] == metrics["realism"]["accuracy_real_vs_synthetic"]


def test_evaluate_runs_end_to_end_on_a_published_model(tmp_path: Path, eyes: dict) -> None:
    registry = Registry(tmp_path / "models")
    publish_tiny_refiner(registry)
    run = [
        evaluate("latest", eyes["synthetic"], eyes["real"], eyes["labeled"], registry=registry, budget=QUICK)
    ]
    run.append(
        evaluate("v1", eyes["synthetic"], eyes["real"], eyes["labeled"], registry=registry, budget=QUICK)
    )
    metrics = run[0]
    assert metrics["model"] == "v1"
    assert metrics["counts"] == {"synthetic": 48, "real": 48, "real_labeled": 48}
    assert 0.0 <= metrics["realism"]["accuracy_real_vs_refined"] <= 1.0
    assert metrics["downstream"]["error_refined"] > 0
    assert np.isfinite(metrics["realism"]["kid_refined_vs_real"])
    assert _without_time(run[0]) == _without_time(run[1])


def test_evaluate_without_labeled_real_images_measures_realism_only(eyes: dict) -> None:
    metrics = evaluate(lambda images: images, eyes["synthetic"].images, eyes["real"], budget=QUICK)
    assert set(metrics["realism"]) == {
        "accuracy_real_vs_refined",
        "accuracy_real_vs_synthetic",
        "kid_refined_vs_real",
        "kid_synthetic_vs_real",
    }
    assert "downstream" not in metrics


def test_evaluate_classifies_a_field_the_user_names(eyes: dict) -> None:
    def sides(batch: Any) -> Any:
        notes = [{"side": "left" if a["gaze"]["yaw"] < 0 else "right"} for a in batch.annotations]
        return SimpleNamespace(images=batch.images, annotations=notes)

    metrics = evaluate(
        lambda images: images,
        sides(eyes["synthetic"]),
        eyes["real"],
        sides(eyes["labeled"]),
        targets=["side"],
        budget=QUICK,
    )
    assert metrics["task"] == {"kind": "classification", "targets": ["side"]}
    assert 0.0 <= metrics["downstream"]["error_real"] <= 1.0


def test_evaluate_refuses_real_images_of_another_size(eyes: dict) -> None:
    with pytest.raises(EvaluationError, match="real: images are"):
        evaluate(lambda images: images, eyes["synthetic"], uniform_images(8, 0, 256), budget=QUICK)


def test_evaluate_command_prints_and_writes_the_metrics(settings: Settings, tmp_path: Path) -> None:
    publish_tiny_refiner(Registry(settings.models_path))
    for name, domain, seed in (("syn", "synthetic", 1), ("real", "real", 2), ("labeled", "real", 3)):
        batch = simulate("eyes", 24, domain, seed=seed)
        save_npz(tmp_path / f"{name}.npz", batch.images, batch.annotations)
    out = tmp_path / "metrics.json"
    code = main(
        [
            "evaluate",
            "--model",
            "v1",
            "--synthetic",
            str(tmp_path / "syn.npz"),
            "--real",
            str(tmp_path / "real.npz"),
            "--real-labeled",
            str(tmp_path / "labeled.npz"),
            "--task-steps",
            "8",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["model"] == "v1"
    assert metrics["task"] == {"kind": "regression", "targets": ["gaze.pitch", "gaze.yaw"]}
    recorded = Registry(settings.models_path).get("v1").metrics["latest"]
    assert recorded["downstream"] == metrics["downstream"]
    assert recorded["datasets"]["real_labeled"] == str(tmp_path / "labeled.npz")


def test_evaluate_command_names_a_missing_dataset(settings: Settings, capsys: pytest.CaptureFixture) -> None:
    code = main(["evaluate", "--synthetic", "nowhere.npz", "--real", "nowhere.npz"])
    assert code == 2
    assert "nowhere.npz" in capsys.readouterr().err
