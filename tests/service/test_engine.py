"""The onnxruntime engine: providers, loading with sha256 check and warm-up, refining arrays."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from models import ModelCard, Registry, RegistryError
from models.session import CPU, CUDA, RefinerError, choose_providers, cuda_unusable_reason, load_refiner
from tests.factories import random_images


def test_cpu_setting_uses_only_the_cpu_provider() -> None:
    assert choose_providers("cpu") == [CPU]


def test_auto_uses_cuda_only_when_a_cuda_device_is_usable() -> None:
    expected = [CUDA, CPU] if cuda_unusable_reason() is None else [CPU]

    assert choose_providers("auto") == expected


def test_loaded_refiner_maps_uint8_nhwc_to_the_same_shape(registry: Registry, gray_model: ModelCard) -> None:
    refiner = load_refiner(registry, "v1", Settings(provider="cpu"))
    images = random_images(3, 9, 13)

    refined = refiner.refine(images)

    assert (refiner.version, refiner.channels, refiner.provider) == ("v1", 1, CPU)
    assert refined.dtype == np.uint8 and refined.shape == images.shape


def test_refine_rejects_arrays_the_model_cannot_take(registry: Registry, gray_model: ModelCard) -> None:
    refiner = load_refiner(registry, "v1", Settings(provider="cpu"))

    with pytest.raises(ValueError, match=r"takes uint8 \(N, H, W, 1\)"):
        refiner.refine(random_images(1, 4, 4, channels=3))


def test_load_refuses_a_file_that_does_not_match_its_card(registry: Registry, gray_model: ModelCard) -> None:
    with registry.onnx_path("v1").open("ab") as f:
        f.write(b"x")

    with pytest.raises(RegistryError, match="sha256"):
        load_refiner(registry, "v1", Settings(provider="cpu"))


def test_load_refuses_a_graph_that_is_not_onnx(
    registry: Registry, gray_model: ModelCard, tmp_path: Path
) -> None:
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"nope")
    registry.publish(garbage, replace(gray_model, version="", onnx_sha256=""))

    with pytest.raises(RefinerError, match="onnxruntime cannot load"):
        load_refiner(registry, "v2", Settings(provider="cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(cuda_unusable_reason() is not None, reason="needs a usable CUDA device")
def test_refiner_runs_on_cuda_when_a_device_is_usable(registry: Registry, gray_model: ModelCard) -> None:
    refiner = load_refiner(registry, "v1", Settings(provider="auto"))

    assert refiner.provider == CUDA
    assert refiner.refine(random_images(2)).shape == (2, 35, 55, 1)
