"""Checkpoint selection: the most real-looking refiner that keeps the labels wins; the verdict is honest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import Registry
from tests.factories import publish_tiny_refiner, shift_refiner, uniform_images
from trainer import verdict
from trainer.evaluate import Targets, published_refiner
from trainer.refining import refine_with_module
from trainer.selection import CheckpointSelector, LabeledSet, build_selector, pixel_w1
from trainer.task_models import TaskBudget

FAST = TaskBudget(steps=40, batch_size=32)


@pytest.fixture
def selector() -> CheckpointSelector:
    # Real images are the synthetic ones 40 grey levels brighter.
    synthetic = uniform_images(128, 0, 120, seed=1)
    real = uniform_images(128, 40, 160, seed=2)
    return CheckpointSelector(synthetic, real, seed=0, probe_size=64, budget=FAST)


def test_pixel_distance_is_zero_for_one_set_and_the_shift_for_a_shifted_one() -> None:
    images = uniform_images(32, 0, 100)
    assert pixel_w1(images, images) == 0.0
    assert pixel_w1(images, images + 20) == pytest.approx(20 / 127.5)


def test_selector_keeps_the_refiner_that_makes_images_look_real(selector: CheckpointSelector) -> None:
    assert selector.consider(100, shift_refiner(0.0))
    assert selector.consider(200, shift_refiner(40.0))
    assert not selector.consider(300, shift_refiner(10.0))
    summary = selector.summary()
    assert summary["step"] == 200
    assert summary["why"].startswith("most real-looking")
    assert summary["realism"] < 0.75
    assert [c["step"] for c in summary["candidates"]] == [100, 200, 300]
    assert selector.best_state is not None
    assert selector.best_state["offset"].item() == pytest.approx(40 / 127.5)


def two_class_selector(real_low: int = 60, real_high: int = 180) -> CheckpointSelector:
    """Dark vs bright synthetic classes (0-60 and 60-120 grey levels); real images real_low-real_high."""
    synthetic = np.concatenate([uniform_images(300, 0, 60, seed=1), uniform_images(300, 60, 120, seed=3)])
    labels = [{"bright": int(i >= 300)} for i in range(600)]
    targets = Targets(("bright",), "classification", (0, 1))
    return CheckpointSelector(
        synthetic,
        uniform_images(128, real_low, real_high, seed=2),
        labels=LabeledSet(synthetic, labels, targets),
        seed=0,
        probe_size=64,
        budget=FAST,
    )


def test_selector_refuses_a_refiner_that_destroys_the_labels() -> None:
    # A refiner that saturates every pixel erases the difference between the dark and bright class.
    selector = two_class_selector(40, 160)
    assert selector.baseline.consistency == pytest.approx(1.0)
    selector.consider(100, shift_refiner(0.0))
    assert not selector.consider(200, shift_refiner(300.0))  # every pixel of both classes at 255
    assert selector.candidates[-1].eligible is False
    assert selector.candidates[-1].retention is not None and selector.candidates[-1].retention < 0.95
    assert selector.summary()["step"] == 100


def test_selector_keeps_a_refiner_that_moves_the_domain_but_keeps_the_labels_learnable() -> None:
    # +30 levels: some dark images now look like synthetic bright ones to a synthetic-trained model
    # (consistency falls below 95%), yet the classes stay apart and a model learns them from the output.
    selector = two_class_selector()
    selector.consider(100, shift_refiner(0.0))
    assert selector.consider(200, shift_refiner(30.0))
    moved = selector.candidates[-1]
    assert moved.consistency is not None and 0.5 <= moved.consistency < 0.95
    assert moved.retention is not None and moved.retention > 0.95 and moved.eligible


def test_selector_refuses_a_refiner_whose_output_a_synthetic_trained_model_can_no_longer_read() -> None:
    # +60 levels: every dark image is drawn as a bright one. A model still learns the classes from the
    # output (retention 1.0), but the images were redrawn, not restyled (consistency near 0).
    selector = two_class_selector()
    selector.consider(100, shift_refiner(0.0))
    assert not selector.consider(200, shift_refiner(60.0))
    redrawn = selector.candidates[-1]
    assert redrawn.retention is not None and redrawn.retention > 0.95
    assert redrawn.consistency is not None and redrawn.consistency < 0.5 and not redrawn.eligible
    assert selector.summary()["step"] == 100


def test_checkpoints_equally_real_within_the_noise_are_told_apart_by_their_distance_to_real(
    selector: CheckpointSelector,
) -> None:
    selector.consider(100, shift_refiner(38.0))  # 2 levels short: its classifier is *less* accurate
    selector.consider(200, shift_refiner(40.0))  # the real set's exact offset
    near, exact = selector.candidates
    margin = verdict.accuracy_margin(near.realism, len(selector.probe_real))
    assert abs(near.realism - exact.realism) <= margin  # the classifier cannot tell them apart
    assert exact.kid < near.kid
    assert selector.summary()["step"] == 200


def test_the_verdict_says_no_measurable_change_for_an_identity_refiner(selector: CheckpointSelector) -> None:
    selector.consider(100, shift_refiner(0.0))
    assert selector.verdict()["verdict"] == "no measurable change"
    assert selector.verdict()["try"]
    assert selector.summary()["why"].startswith("no checkpoint looked measurably more real")


def test_the_verdict_says_improved_when_refined_images_look_real(selector: CheckpointSelector) -> None:
    selector.consider(100, shift_refiner(40.0))
    assert selector.verdict()["verdict"] == "improved"
    assert selector.verdict()["numbers"]["realism_gain"] > selector.verdict()["numbers"]["margin"]


def test_selector_state_round_trips_for_a_resumed_run(selector: CheckpointSelector) -> None:
    selector.consider(100, shift_refiner(0.0))
    selector.consider(200, shift_refiner(40.0))
    resumed = CheckpointSelector(
        uniform_images(128, 0, 120, seed=1),
        uniform_images(128, 40, 160, seed=2),
        seed=0,
        probe_size=64,
        budget=FAST,
    )
    resumed.load_state_dict(selector.state_dict())
    assert resumed.summary() == selector.summary()
    assert resumed.consider(300, shift_refiner(40.0)) is False


def test_torch_refining_matches_the_published_onnx_model(tmp_path: Path) -> None:
    import torch

    from trainer.networks import RefinerConfig, build_refiner

    registry = Registry(tmp_path)
    card = publish_tiny_refiner(registry, seed=5)
    torch.manual_seed(5)
    refiner = build_refiner(RefinerConfig(channels=1, width=8, blocks=1))
    images = uniform_images(6, 0, 256, height=35, width=55)
    served = published_refiner(card.version, registry)[1](images)
    ours = refine_with_module(refiner, images)
    # The served engine may be OpenVINO in bf16 (on AMX CPUs), which the service admits within 2 levels.
    assert np.abs(served.astype(int) - ours.astype(int)).max() <= 2


def test_build_selector_trains_its_probes_for_the_budget_it_is_given() -> None:
    synthetic = uniform_images(64, 0, 120, seed=1)
    annotations = [{"bright": int(i >= 32)} for i in range(64)]
    real = uniform_images(64, 40, 160, seed=2)
    selector = build_selector(synthetic, annotations, real, targets=["bright"], budget=FAST)
    assert selector is not None and selector.budget == FAST
    assert selector.targets is not None and selector.targets.fields == ("bright",)  # from the annotations
