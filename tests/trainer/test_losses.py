from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import (
    REAL,
    REFINED,
    local_adversarial_loss,
    patch_accuracy,
    self_regularization_loss,
)


def _logits(real_logit: float, refined_logit: float, batch: int = 2, h: int = 3, w: int = 4) -> torch.Tensor:
    logits = torch.empty(batch, 2, h, w)
    logits[:, REAL] = real_logit
    logits[:, REFINED] = refined_logit
    return logits


def test_adversarial_loss_is_ln2_when_the_discriminator_cannot_tell() -> None:
    assert local_adversarial_loss(_logits(0.0, 0.0), REAL).item() == pytest.approx(math.log(2))


def test_adversarial_loss_is_the_cross_entropy_of_each_patch() -> None:
    # softmax([0, ln 3]) = [1/4, 3/4]: every patch says "refined" with probability 3/4.
    logits = _logits(0.0, math.log(3))
    assert local_adversarial_loss(logits, REFINED).item() == pytest.approx(-math.log(0.75))
    assert local_adversarial_loss(logits, REAL).item() == pytest.approx(-math.log(0.25))


def test_adversarial_loss_averages_over_patches_and_images() -> None:
    logits = _logits(0.0, 0.0, batch=2, h=1, w=2)
    logits[0, REFINED, 0, 0] = math.log(3)  # one patch of four is sure-ish it is refined
    expected = (3 * math.log(2) - math.log(0.75)) / 4
    assert local_adversarial_loss(logits, REFINED).item() == pytest.approx(expected)


def test_patch_accuracy_counts_patches_assigned_to_the_target() -> None:
    logits = _logits(1.0, 0.0, batch=1, h=1, w=4)
    logits[0, REFINED, 0, :1] = 2.0
    assert patch_accuracy(logits, REFINED).item() == pytest.approx(0.25)
    assert patch_accuracy(logits, REAL).item() == pytest.approx(0.75)


@pytest.mark.parametrize("space", ["identity", "channel_mean"])
def test_self_regularization_is_zero_for_an_identity_refiner(space: str) -> None:
    synthetic = torch.rand(4, 3, 9, 11) * 2 - 1
    refined = torch.nn.Identity()(synthetic)
    assert self_regularization_loss(refined, synthetic, space).item() == 0.0


def test_self_regularization_is_the_mean_absolute_difference_whatever_the_size() -> None:
    for shape in [(1, 1, 4, 4), (8, 1, 35, 55)]:
        synthetic = torch.zeros(shape)
        assert self_regularization_loss(synthetic + 0.1, synthetic).item() == pytest.approx(0.1)


def test_channel_mean_space_ignores_changes_that_keep_the_mean() -> None:
    synthetic = torch.zeros(1, 3, 2, 2)
    refined = synthetic.clone()
    refined[:, 0] += 0.3
    refined[:, 1] -= 0.3
    assert self_regularization_loss(refined, synthetic, "channel_mean").item() == pytest.approx(0.0)
    assert self_regularization_loss(refined, synthetic, "identity").item() == pytest.approx(0.2)


def test_unknown_feature_space_is_refused() -> None:
    with pytest.raises(ValueError, match="identity or channel_mean"):
        self_regularization_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), "vgg")
