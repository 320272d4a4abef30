"""The label-keeping loss (train config label_weight): a frozen task model must read from R(x) what it
reads from x; zero for the identity, large for a refiner that changes the labels, and part of the run."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.factories import tiny_config, uniform_images
from trainer.evaluate import Targets
from trainer.label_keeper import build_keeper
from trainer.run import SimGAN
from trainer.selection import CheckpointSelector, LabeledSet
from trainer.task_models import TaskBudget
from trainer.training import train


def _two_classes() -> tuple[np.ndarray, LabeledSet]:
    """Dark images are class 0, bright ones class 1: brightness is the label."""
    images = np.concatenate([uniform_images(64, 0, 60, seed=1), uniform_images(64, 160, 220, seed=3)])
    labels = [{"bright": int(i >= 64)} for i in range(128)]
    return images, LabeledSet(images, labels, Targets(("bright",), "classification", (0, 1)))


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def test_the_identity_keeps_every_label_and_flipping_brightness_does_not() -> None:
    images, labels = _two_classes()
    keeper = build_keeper(labels, seed=0, device=torch.device("cpu"))
    assert keeper is not None
    x = _tensor(images)
    assert keeper.loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert keeper.loss(x, -x).item() > 1.0  # dark <-> bright: every label read the other way


def test_the_keeper_has_no_trainable_weights_so_only_the_refiner_learns_from_it() -> None:
    _, labels = _two_classes()
    keeper = build_keeper(labels, seed=0, device=torch.device("cpu"))
    assert keeper is not None and not any(p.requires_grad for p in keeper.parameters())


def test_there_is_no_keeper_without_labels() -> None:
    assert build_keeper(None, seed=0, device=torch.device("cpu")) is None


def test_a_run_with_label_weight_logs_the_label_loss_and_resumes_exactly(tmp_path: Path) -> None:
    images, labels = _two_classes()
    real = uniform_images(128, 40, 160, seed=2)
    config = tiny_config(label_weight=1.0)
    keeper = build_keeper(labels, seed=0, device=torch.device("cpu"))
    straight = SimGAN(config, images, real, torch.device("cpu"), keeper=keeper)
    for _ in range(straight.total_steps):
        straight.train_step()
    assert straight.losses["label_loss"] > -1e-9  # KL is non-negative (up to rounding)
    first = SimGAN(
        config, images, real, torch.device("cpu"), keeper=build_keeper(labels, 0, torch.device("cpu"))
    )
    for _ in range(3):
        first.train_step()
    resumed = SimGAN(
        config, images, real, torch.device("cpu"), keeper=build_keeper(labels, 0, torch.device("cpu"))
    )
    resumed.load_state_dict(first.state_dict())
    while resumed.step < resumed.total_steps:
        resumed.train_step()
    assert resumed.losses == straight.losses


def test_train_fits_the_keeper_from_the_selectors_labeled_set(tmp_path: Path) -> None:
    images, labels = _two_classes()
    real = uniform_images(128, 40, 160, seed=2)
    selector = CheckpointSelector(
        images, real, labels=labels, seed=0, probe_size=32, budget=TaskBudget(steps=20, batch_size=32)
    )
    result = train(tiny_config(label_weight=1.0), images, real, workdir=tmp_path, selector=selector)
    assert "label_loss" in result.final_losses


def test_label_weight_without_annotations_is_ignored_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    images, _ = _two_classes()
    with caplog.at_level(logging.WARNING, logger="trainer.training"):
        result = train(tiny_config(label_weight=1.0), images, images, workdir=tmp_path)
    assert "label_loss" not in result.final_losses
    assert "no usable annotations" in caplog.text
