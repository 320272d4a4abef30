"""Per-image noise of stochastic refiners: decided by the seed and the image, nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from models.noise import MAX_SEED, batch_noise, image_noise
from tests.factories import random_images


def test_the_same_image_and_seed_always_get_the_same_noise() -> None:
    image = random_images(1)[0]
    assert np.array_equal(image_noise(image, 2, seed=7), image_noise(image.copy(), 2, seed=7))


def test_another_seed_or_another_image_gets_other_noise() -> None:
    first, second = random_images(2)
    noise = image_noise(first, 1, seed=7)
    assert not np.array_equal(noise, image_noise(first, 1, seed=8))
    assert not np.array_equal(noise, image_noise(second, 1, seed=7))


def test_an_images_noise_does_not_depend_on_its_place_in_a_batch() -> None:
    images = random_images(4)
    alone = batch_noise(images[2:3], 3, seed=5)[0]
    assert np.array_equal(batch_noise(images, 3, seed=5)[2], alone)
    assert np.array_equal(batch_noise(images[::-1], 3, seed=5)[1], alone)


def test_noise_is_standard_normal_float32_in_nhwc() -> None:
    noise = batch_noise(random_images(2, height=40, width=50), 4, seed=0)
    assert noise.shape == (2, 40, 50, 4) and noise.dtype == np.float32
    assert abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - 1.0) < 0.05


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
def test_a_seed_outside_the_range_is_refused(seed: int) -> None:
    with pytest.raises(ValueError, match="seed must be"):
        image_noise(random_images(1)[0], 1, seed=seed)
