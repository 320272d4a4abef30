"""Stochastic refiners (train config noise_channels > 0): noise in training, in the ONNX graph, in
the card, and the same pixels from torch, onnxruntime and the service's session for a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from core.settings import Settings
from core.train_config import ConfigError, TrainConfig
from models import Registry
from models.noise import batch_noise
from models.session import load_refiner
from tests.factories import (
    publish_stochastic_refiner,
    publish_tiny_refiner,
    random_images,
    tiny_config,
    tiny_images,
)
from trainer.networks import RefinerConfig, build_refiner
from trainer.refining import refine_with_module
from trainer.run import SimGAN


def test_a_stochastic_refiner_refuses_to_run_without_noise() -> None:
    refiner = build_refiner(RefinerConfig(1, width=4, blocks=1, noise_channels=2))
    with pytest.raises(ValueError, match="2 noise channel"):
        refiner(torch.zeros(1, 1, 8, 8))


def test_a_residual_stochastic_refiner_starts_as_the_identity_whatever_the_noise() -> None:
    refiner = build_refiner(RefinerConfig(1, width=4, blocks=1, residual=True, noise_channels=2))
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    assert torch.equal(refiner(x, torch.randn(2, 2, 8, 8)), x)


def test_the_published_graph_takes_noise_and_the_card_says_the_model_is_stochastic(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    card = publish_stochastic_refiner(registry, channels=3, noise_channels=2)
    stored = registry.verify(card.version)
    assert stored.stochastic and stored.io.noise_channels == 2 and stored.to_dict()["stochastic"] is True
    session = ort.InferenceSession(str(registry.onnx_path(card.version)), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert set(inputs) == {"image", "noise"}
    assert inputs["noise"][-1] == 2
    assert stored.parity_max_abs_error <= 1


def test_a_deterministic_model_has_one_input_and_its_card_says_it_is_not_stochastic(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    card = publish_tiny_refiner(registry)
    session = ort.InferenceSession(str(registry.onnx_path(card.version)), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert not registry.verify(card.version).stochastic


def test_the_same_seed_gives_the_same_pixels_and_another_seed_other_pixels(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    card = publish_stochastic_refiner(registry)
    session = load_refiner(registry, card.version, Settings(home=tmp_path, provider="cpu"))
    images = random_images(3, height=20, width=24)
    first = session.refine(images, seed=11)
    assert np.array_equal(first, session.refine(images, seed=11))
    assert np.array_equal(first[1:2], session.refine(images[1:2], seed=11))  # alone or in a batch
    assert not np.array_equal(first, session.refine(images, seed=12))


def test_onnx_and_torch_agree_on_a_stochastic_refiner_for_a_seed(tmp_path: Path) -> None:
    torch.manual_seed(0)
    refiner = build_refiner(RefinerConfig(1, width=8, blocks=1, noise_channels=2))
    from trainer.export import publish_refiner

    registry = Registry(tmp_path)
    card = publish_refiner(refiner, 1, registry)
    session = load_refiner(registry, card.version, Settings(home=tmp_path, provider="cpu"))
    images = random_images(4, height=16, width=20)
    onnx_out = session.refine(images, seed=3)
    torch_out = refine_with_module(refiner, images, seed=3)
    assert np.abs(onnx_out.astype(int) - torch_out.astype(int)).max() <= 1
    explicit = session.refine(images, noise=batch_noise(images, 2, 3))
    assert np.array_equal(explicit, onnx_out)


def test_a_stochastic_run_trains_and_resumes_to_the_same_weights() -> None:
    config = tiny_config(noise_channels=2)
    synthetic, real = tiny_images(0), tiny_images(1)
    straight = SimGAN(config, synthetic, real, torch.device("cpu"))
    for _ in range(straight.total_steps):
        straight.train_step()
    first = SimGAN(config, synthetic, real, torch.device("cpu"))
    for _ in range(3):
        first.train_step()
    resumed = SimGAN(config, synthetic, real, torch.device("cpu"))
    resumed.load_state_dict(first.state_dict())
    while resumed.step < resumed.total_steps:
        resumed.train_step()
    for name, weight in straight.refiner.state_dict().items():
        assert torch.equal(weight, resumed.refiner.state_dict()[name]), name


def test_noise_channels_must_be_a_small_non_negative_integer() -> None:
    with pytest.raises(ConfigError, match="noise_channels"):
        TrainConfig.from_overrides({"noise_channels": -1})
    with pytest.raises(ConfigError, match="an integer in \\[0, 16\\]"):
        TrainConfig.from_overrides({"noise_channels": 64})
