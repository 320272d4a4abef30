"""The self-regularisation budget: in the data's own units, held by a weight that adapts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.train_config import TrainConfig
from tests.factories import uniform_images
from trainer.budget import DualWeight, budget_for, pixel_w1
from trainer.ema import WeightAverage
from trainer.networks import PATCH_SIZES, patch_depth


def test_the_budget_is_the_same_multiple_of_the_domain_distance_at_any_image_size() -> None:
    small_syn, small_real = (
        uniform_images(64, 0, 100, 8, 8, seed=1),
        uniform_images(64, 30, 130, 8, 8, seed=2),
    )
    big_syn, big_real = (
        uniform_images(8, 0, 100, 224, 224, seed=1),
        uniform_images(8, 30, 130, 224, 224, seed=2),
    )

    assert budget_for(small_syn, small_real, 2.0) == pytest.approx(2 * 30 / 127.5, rel=0.05)
    assert budget_for(big_syn, big_real, 2.0) == pytest.approx(
        budget_for(small_syn, small_real, 2.0), rel=0.05
    )


def test_domains_with_alike_pixel_values_still_leave_a_budget_set_by_contrast() -> None:
    images = uniform_images(64, 0, 200, seed=1)
    low_contrast = uniform_images(64, 90, 110, seed=1)

    assert pixel_w1(images, images) == 0
    assert budget_for(images, images, 1.0) > 5 * budget_for(low_contrast, low_contrast, 1.0) > 0


def test_the_weight_grows_while_the_refiner_overspends_and_shrinks_while_it_saves() -> None:
    weight = DualWeight(eps=0.1, initial=1.0)
    for _ in range(20):
        weight.update(0.3)
    assert weight.value > 1.5
    grown = weight.value
    for _ in range(20):
        weight.update(0.01)
    assert weight.value < grown

    restored = DualWeight(eps=1.0, initial=5.0)
    restored.load_state_dict(weight.state_dict())
    assert (restored.eps, restored.value) == (weight.eps, weight.value)


def test_a_floor_keeps_the_weight_of_the_distance_from_falling_below_it() -> None:
    floored, free = DualWeight(eps=0.1, initial=2.0, floor=5.0), DualWeight(eps=0.1, initial=2.0)
    for _ in range(100):
        floored.update(0.0)
        free.update(0.0)
    assert floored.value / floored.eps == pytest.approx(5.0)  # lambda / eps, the weight of the distance
    assert free.value < 0.1
    for _ in range(20):
        floored.update(0.3)
    assert floored.value / floored.eps > 5.0  # the budget still tightens it

    # A checkpoint saved before the floor existed resumes with the floor it ran with (1e-3).
    restored = DualWeight(eps=0.1, initial=2.0, floor=5.0)
    restored.load_state_dict({"eps": 0.1, "log_lambda": 0.0})
    for _ in range(200):
        restored.update(0.0)
    assert restored.value < 0.01


def test_the_discriminator_patch_stays_a_share_of_the_image() -> None:
    assert PATCH_SIZES[patch_depth(8, 8, 0.5) - 1] <= 4
    assert PATCH_SIZES[patch_depth(28, 28, 0.5) - 1] <= 14
    assert patch_depth(224, 224, 0.5) == len(PATCH_SIZES)  # never wider than the paper's 23 px
    assert patch_depth(8, 8, 0.0) == len(PATCH_SIZES)  # 0: the paper's D
    # The default share: smaller than an 8x8 image, the paper's 23 px from 26 px up.
    assert PATCH_SIZES[patch_depth(8, 8, TrainConfig().discriminator_patch) - 1] == 7
    assert patch_depth(26, 26, TrainConfig().discriminator_patch) == len(PATCH_SIZES)


def test_the_weight_average_lags_behind_the_weights_it_follows() -> None:
    module = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(module.weight)
    average = WeightAverage(module, decay=0.9)
    with torch.no_grad():
        module.weight.fill_(1.0)
    for _ in range(50):
        average.update(module)
    value = average.module.weight.item()
    assert 0.9 < value < 1.0
    assert np.isclose(module.weight.item(), 1.0)
