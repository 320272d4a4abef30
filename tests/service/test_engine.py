"""The onnxruntime engine: loading with sha256 check, warm-up and parity, falling back, refining arrays."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from core.settings import Settings
from models import ModelCard, Registry, RegistryError, providers, session
from models.providers import CPU, CPU_FP32, CUDA, Engine, cuda_unusable_reason, engines
from models.session import PARITY_GREY_LEVELS, RefinerError, RefinerSession, load_refiner, probe_images
from tests.factories import random_images

SUSPECT = Engine(CPU, "bf16")
"""A stand-in for a faster engine: the CPU provider under another name, so faults can be injected
into it alone while the real CPU provider (fp32) stays the reference."""


def plain_cpu(registry: Registry, images: np.ndarray) -> np.ndarray:
    """What onnxruntime's CPU provider, as it comes, makes of `images` with model v1."""
    model = ort.InferenceSession(str(registry.onnx_path("v1")), providers=[CPU])
    (refined,) = model.run(["refined"], {"image": images})
    return np.asarray(refined)


def offer(monkeypatch: pytest.MonkeyPatch, *candidates: Engine) -> None:
    monkeypatch.setattr(session, "engines", lambda setting, precision: list(candidates))


def break_engine(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, fault: Callable[[np.ndarray], np.ndarray]
) -> None:
    """Make `engine`'s sessions pass their output through `fault`; other engines run as they are."""
    real = RefinerSession.refine

    def refine(self: RefinerSession, images: np.ndarray) -> np.ndarray:
        refined = real(self, images)
        return fault(refined) if self.engine == engine else refined

    monkeypatch.setattr(RefinerSession, "refine", refine)


def test_the_default_engine_refines_like_the_plain_cpu_provider_and_says_how_close(
    registry: Registry, gray_model: ModelCard
) -> None:
    refiner = load_refiner(registry, "v1", Settings(provider="auto"))
    images = random_images(3, 9, 13)

    refined = refiner.refine(images)

    assert refiner.engine == engines("auto")[0]  # the first engine offered here works, so it serves
    assert (refiner.version, refiner.channels, refiner.provider) == ("v1", 1, refiner.engine.provider)
    assert refined.dtype == np.uint8 and refined.shape == images.shape
    error = np.abs(refined.astype(int) - plain_cpu(registry, images)).max()
    assert error <= PARITY_GREY_LEVELS
    assert refiner.parity is not None and refiner.parity.max_grey_levels <= PARITY_GREY_LEVELS


def test_the_parity_reported_is_the_difference_on_the_probe_batch(
    registry: Registry, gray_model: ModelCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    offer(monkeypatch, SUSPECT, CPU_FP32)
    break_engine(monkeypatch, SUSPECT, lambda out: np.where(out < 250, out + 1, out).astype(np.uint8))

    refiner = load_refiner(registry, "v1", Settings())

    probe = probe_images(1)
    share_shifted = float((plain_cpu(registry, probe) < 250).mean())
    assert refiner.engine == SUSPECT  # 1 grey level off: within the bound, so it serves
    assert refiner.parity is not None and refiner.parity.max_grey_levels == 1
    assert refiner.parity.mean_grey_levels == pytest.approx(share_shifted, abs=1e-4)


def test_an_engine_out_of_parity_is_not_used_and_one_line_says_why(
    registry: Registry,
    gray_model: ModelCard,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    offer(monkeypatch, SUSPECT, CPU_FP32)
    break_engine(monkeypatch, SUSPECT, lambda out: np.where(out > 5, out - 5, out).astype(np.uint8))

    with caplog.at_level(logging.WARNING, logger="models.session"):
        refiner = load_refiner(registry, "v1", Settings())

    assert refiner.engine == CPU_FP32 and refiner.parity is not None and refiner.parity.max_grey_levels == 0
    lines = [r.getMessage() for r in caplog.records if "not using" in r.getMessage()]
    assert lines == [
        "model v1: not using cpu (bf16): its output is 5 grey levels from the CPU provider's (fp32) on the "
        "probe batch, more than the 2 allowed"
    ]


def test_an_engine_whose_warm_up_fails_gives_way_to_the_next(
    registry: Registry,
    gray_model: ModelCard,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def out_of_memory(out: np.ndarray) -> np.ndarray:
        raise RuntimeError("CUDNN_STATUS_ALLOC_FAILED")

    offer(monkeypatch, SUSPECT, CPU_FP32)
    break_engine(monkeypatch, SUSPECT, out_of_memory)

    with caplog.at_level(logging.WARNING, logger="models.session"):
        refiner = load_refiner(registry, "v1", Settings())

    assert refiner.engine == CPU_FP32
    assert "not using cpu (bf16): model v1: warm-up on cpu (bf16) failed: CUDNN_STATUS_ALLOC" in caplog.text


@pytest.mark.skipif(cuda_unusable_reason() is None, reason="CUDA works here: its session would open")
def test_a_cuda_session_that_cannot_open_falls_back_instead_of_refusing_the_model(
    registry: Registry,
    gray_model: ModelCard,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Skipping the probe: onnxruntime itself meets the missing CUDA libraries.
    offer(monkeypatch, Engine(CUDA), CPU_FP32)

    with caplog.at_level(logging.WARNING, logger="models.session"):
        refiner = load_refiner(registry, "v1", Settings(provider="cuda"))

    assert refiner.engine == CPU_FP32
    assert refiner.refine(random_images(2)).shape == (2, 35, 55, 1)
    assert "not using cuda (fp32)" in caplog.text


def test_warm_up_runs_the_batchers_smallest_and_largest_batch(
    registry: Registry, gray_model: ModelCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, ...]] = []
    real = RefinerSession.refine

    def refine(self: RefinerSession, images: np.ndarray) -> np.ndarray:
        seen.append(images.shape)
        return real(self, images)

    monkeypatch.setattr(RefinerSession, "refine", refine)

    load_refiner(registry, "v1", Settings(provider="cpu", batch_max_size=24))

    assert seen == [(1, 35, 55, 1), (24, 35, 55, 1)]


def test_refine_rejects_arrays_the_model_cannot_take(registry: Registry, gray_model: ModelCard) -> None:
    refiner = load_refiner(registry, "v1", Settings())

    with pytest.raises(ValueError, match=r"takes uint8 \(N, H, W, 1\)"):
        refiner.refine(random_images(1, 4, 4, channels=3))


def test_load_refuses_a_file_that_does_not_match_its_card(registry: Registry, gray_model: ModelCard) -> None:
    with registry.onnx_path("v1").open("ab") as f:
        f.write(b"x")

    with pytest.raises(RegistryError, match="sha256"):
        load_refiner(registry, "v1", Settings())


def test_load_refuses_a_graph_that_is_not_onnx_on_every_engine(
    registry: Registry, gray_model: ModelCard, tmp_path: Path
) -> None:
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"nope")
    registry.publish(garbage, replace(gray_model, version="", onnx_sha256=""))

    with pytest.raises(RefinerError, match=r"onnxruntime cannot load .* on cpu \(fp32\)"):
        load_refiner(registry, "v2", Settings())


@pytest.mark.gpu
@pytest.mark.skipif(cuda_unusable_reason() is not None, reason="needs a usable CUDA device")
def test_refiner_runs_on_cuda_within_parity_when_a_device_is_usable(
    registry: Registry, gray_model: ModelCard
) -> None:
    refiner = load_refiner(registry, "v1", Settings(provider="auto"))
    images = random_images(64)

    assert refiner.provider == CUDA
    error = np.abs(refiner.refine(images).astype(int) - plain_cpu(registry, images)).max()
    assert error <= PARITY_GREY_LEVELS


def test_providers_module_names_the_engines_the_settings_accept() -> None:
    accepted = set(Settings.model_fields["provider"].annotation.__args__)  # type: ignore[union-attr]

    named = {engine.name for engine in [CPU_FP32, Engine(CUDA), Engine(providers.OPENVINO)]}
    assert accepted == {"auto", *named}
