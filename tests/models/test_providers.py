"""Engine choice: which providers are tried in which order, and why CUDA or OpenVINO is not used.

The CUDA branches run on any machine: the missing driver, device, cuDNN or provider library is
injected where the code loads it (`_cdll`), since a CPU machine cannot lack them one at a time.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from models import providers
from models.providers import CPU, CPU_FP32, CUDA, OPENVINO, Engine, cuda_unusable_reason, engines


@pytest.fixture(autouse=True)
def fresh_probes() -> Iterator[None]:
    """Every probe and once-only log line is cached per process: start and end each test clean."""
    caches = (providers.cuda_unusable_reason, providers.preload_cuda_libraries, providers._openvino_state)
    once = (providers.warn_once, providers.info_once)
    for cached in (*caches, *once):
        cached.cache_clear()
    yield
    for cached in (*caches, *once):
        cached.cache_clear()


class FakeDriver:
    """libcuda.so.1 as ctypes sees it: cuInit and cuDeviceGetCount with chosen results."""

    def __init__(self, init: int = 0, devices: int = 1) -> None:
        self.init, self.devices = init, devices

    def cuInit(self, flags: int) -> int:
        return self.init

    def cuDeviceGetCount(self, count: Any) -> int:
        ctypes.cast(count, ctypes.POINTER(ctypes.c_int)).contents.value = self.devices
        return 0


def cuda_machine(
    monkeypatch: pytest.MonkeyPatch, driver: FakeDriver | None = None, missing: tuple[str, ...] = ()
) -> list[str]:
    """Pretend onnxruntime has its CUDA provider and the machine a driver; libraries whose name
    contains one of `missing` fail to load. Returns the names loaded, in order."""
    loaded: list[str] = []

    def cdll(name: str, mode: int = 0) -> Any:
        if any(part in name for part in missing):
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        loaded.append(name)
        return driver or FakeDriver() if name == "libcuda.so.1" else object()

    monkeypatch.setattr(providers, "_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(providers, "_cdll", cdll)
    monkeypatch.setattr(providers, "_nvidia_wheels_installed", lambda: False)
    return loaded


def test_the_cpu_setting_offers_only_the_cpu_provider() -> None:
    assert engines("cpu") == [CPU_FP32]


def test_an_onnxruntime_without_cuda_is_named_as_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "_available_providers", lambda: [CPU])

    assert "no CUDA execution provider" in (cuda_unusable_reason() or "")


@pytest.mark.parametrize(
    ("driver", "missing", "reason"),
    [
        (None, ("libcuda",), "no NVIDIA driver"),
        (FakeDriver(init=100), (), "failed to initialise"),
        (FakeDriver(devices=0), (), "no CUDA device visible"),
        (None, ("libcudnn",), "cuDNN 9 is not installed"),
        (None, ("providers_cuda",), "CUDA provider cannot load its CUDA libraries"),
    ],
)
def test_each_missing_piece_of_cuda_is_named_as_the_reason(
    monkeypatch: pytest.MonkeyPatch, driver: FakeDriver | None, missing: tuple[str, ...], reason: str
) -> None:
    cuda_machine(monkeypatch, driver, missing)

    assert reason in (cuda_unusable_reason() or "")


def test_cudnn_is_checked_after_the_wheels_are_preloaded_and_before_the_provider_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = cuda_machine(monkeypatch)
    preloads: list[dict[str, Any]] = []
    monkeypatch.setattr(providers, "_nvidia_wheels_installed", lambda: True)

    def preload_dlls(**options: Any) -> None:
        preloads.append(options)
        loaded.append("preload")

    monkeypatch.setattr(providers.ort, "preload_dlls", preload_dlls)

    assert cuda_unusable_reason() is None
    assert preloads == [{"cuda": True, "cudnn": True, "msvc": False}]
    assert [name.rsplit("/", 1)[-1] for name in loaded] == [
        "libcuda.so.1",
        "preload",
        "libcudnn.so.9",
        "libonnxruntime_providers_shared.so",
        "libonnxruntime_providers_cuda.so",
    ]


def test_without_nvidia_wheels_nothing_is_preloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda_machine(monkeypatch)
    monkeypatch.setattr(providers.ort, "preload_dlls", lambda **kw: pytest.fail("preloaded without wheels"))

    assert cuda_unusable_reason() is None


def test_auto_tries_cuda_first_where_it_is_usable_and_the_cpu_provider_always_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda_machine(monkeypatch)
    monkeypatch.setattr(providers, "_openvino_state", lambda: ((), "not installed"))

    assert engines("auto") == [Engine(CUDA, "fp32"), CPU_FP32]


def test_auto_logs_once_why_cuda_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cuda_machine(monkeypatch, missing=("libcudnn",))
    monkeypatch.setattr(providers, "_openvino_state", lambda: ((), "not installed"))

    with caplog.at_level(logging.INFO, logger="models.providers"):
        first, second = engines("auto"), engines("auto")

    assert first == second == [CPU_FP32]
    lines = [r.getMessage() for r in caplog.records if "not using CUDA" in r.getMessage()]
    assert len(lines) == 1 and "cuDNN 9 is not installed" in lines[0]


def test_cuda_asked_for_but_unusable_warns_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cuda_machine(monkeypatch, missing=("libcuda",))

    with caplog.at_level(logging.WARNING, logger="models.providers"):
        assert engines("cuda") == [CPU_FP32]

    assert "SIMGAN_PROVIDER=cuda but CUDA is not usable: no NVIDIA driver" in caplog.text


def test_a_missing_openvino_plugin_is_named_and_the_cpu_provider_serves(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def missing() -> Any:
        raise ImportError("No module named 'onnxruntime_ep_openvino'")

    monkeypatch.setattr(providers, "_import_plugin", missing)
    monkeypatch.setattr(providers.platform, "machine", lambda: "x86_64")

    with caplog.at_level(logging.WARNING, logger="models.providers"):
        assert engines("openvino") == [CPU_FP32]

    assert "pip install onnxruntime-ep-openvino" in caplog.text


def test_openvino_is_not_offered_off_x86(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers.platform, "machine", lambda: "aarch64")

    assert "x86-64 only, this is aarch64" in (providers.openvino_unusable_reason() or "")
    assert engines("openvino") == [CPU_FP32]


@pytest.mark.parametrize(
    ("flags", "precision", "expected"),
    [
        ({"avx512f", "amx_bf16", "amx_tile"}, "auto", ["bf16", "fp32"]),
        ({"avx512f", "avx512_bf16"}, "auto", ["fp32"]),  # bf16 without AMX is no faster
        ({"avx512f", "avx512_bf16"}, "bf16", ["bf16", "fp32"]),
        ({"avx2"}, "bf16", ["fp32"]),  # no native bf16: OpenVINO would run fp32 anyway
        ({"avx512f", "amx_bf16"}, "fp32", ["fp32"]),
    ],
)
def test_openvino_runs_bf16_only_where_the_cpu_has_it_with_fp32_next(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], precision: str, expected: list[str]
) -> None:
    monkeypatch.setattr(providers, "_openvino_state", lambda: ((object(),), None))
    monkeypatch.setattr(providers, "cpu_flags", lambda: frozenset(flags))

    assert engines("openvino", precision) == [*(Engine(OPENVINO, p) for p in expected), CPU_FP32]


def test_cuda_sessions_have_a_bounded_arena_and_pick_cudnn_algorithms_by_heuristic() -> None:
    cpu_options, cpu_providers = providers.session_options(CPU_FP32, intra_op_threads=2)
    _, cuda_providers = providers.session_options(Engine(CUDA))

    assert (cpu_options.intra_op_num_threads, cpu_providers) == (2, [CPU])
    assert cuda_providers is not None
    name, cuda = cuda_providers[0]
    assert name == CUDA and cuda["cudnn_conv_algo_search"] == "HEURISTIC"
    assert cuda["arena_extend_strategy"] == "kSameAsRequested" and int(cuda["gpu_mem_limit"]) > 0
