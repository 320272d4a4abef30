from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.networks import DiscriminatorConfig, RefinerConfig, build_discriminator, build_refiner

TINY_D = (8, 8, 8, 8)


@pytest.mark.parametrize("channels", [1, 3])
def test_refiner_keeps_the_shape_of_any_image_and_stays_in_range(channels: int) -> None:
    refiner = build_refiner(RefinerConfig(channels=channels, width=8, blocks=2))
    for height, width in [(35, 55), (8, 8), (13, 21)]:
        x = torch.rand(2, channels, height, width) * 2 - 1
        y = refiner(x)
        assert y.shape == x.shape
        assert y.abs().max() < 1


def test_refiner_has_the_papers_size_at_the_papers_shape() -> None:
    refiner = build_refiner(RefinerConfig(channels=1, width=64, blocks=4, kernel=3))
    assert 290_000 < sum(p.numel() for p in refiner.parameters()) < 300_000


def test_discriminator_gives_a_map_of_two_logits_per_patch_for_an_eye() -> None:
    discriminator = build_discriminator(DiscriminatorConfig(channels=1))
    assert discriminator(torch.zeros(3, 1, 35, 55)).shape == (3, 2, 9, 14)


def test_discriminator_still_gives_a_map_for_an_8x8_image() -> None:
    discriminator = build_discriminator(DiscriminatorConfig(channels=1, widths=TINY_D))
    assert discriminator(torch.zeros(2, 1, 8, 8)).shape == (2, 2, 2, 2)
    assert discriminator(torch.zeros(1, 1, 1, 1)).shape == (1, 2, 1, 1)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (RefinerConfig(channels=2), "channels must be 1"),
        (RefinerConfig(channels=1, width=0), "width must be a positive integer"),
        (RefinerConfig(channels=1, blocks=-1), "blocks must be a positive integer"),
        (RefinerConfig(channels=1, kernel=4), "kernel must be odd"),
    ],
)
def test_build_refiner_refuses_bad_shapes(config: RefinerConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_refiner(config)


def test_build_discriminator_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError, match="channels must be 1"):
        build_discriminator(DiscriminatorConfig(channels=4))
    with pytest.raises(ValueError, match="positive integer"):
        build_discriminator(DiscriminatorConfig(channels=1, widths=(8, 0, 8, 8)))


def test_a_residual_refiner_starts_as_the_exact_identity() -> None:

    from trainer.refining import refine_with_module

    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    residual = build_refiner(RefinerConfig(channels=1, width=8, blocks=1, residual=True))
    plain = build_refiner(RefinerConfig(channels=1, width=8, blocks=1))

    assert np.array_equal(refine_with_module(residual, images), images)
    assert not np.array_equal(refine_with_module(plain, images), images)
