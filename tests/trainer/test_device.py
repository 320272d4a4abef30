"""trainer/device.py: which device and precision a run gets, on every kind of machine.

The GPU branches are reached on the CPU by injecting what a GPU machine would report
(torch.cuda's answers, /proc/cpuinfo's flags): the decisions are plain functions of those.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

from tests.factories import tiny_config, tiny_images
from trainer import device as device_module
from trainer.device import (
    DeviceError,
    Precision,
    autocast,
    cpu_bf16_native,
    cpu_flags,
    grad_scaler,
    prepare_module,
    resolve_device,
    resolve_precision,
)
from trainer.networks import RefinerConfig, build_refiner
from trainer.run import SimGAN

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def _gpu(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]) -> None:
    """Make torch report one GPU of `capability` (no CUDA call is made by the code under test)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


def _cpu_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "cpu_flags", lambda cpuinfo=None: frozenset({"avx2", "avx512f"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")


# ---------------------------------------------------------------- device


def test_cpu_is_the_cpu_even_where_a_gpu_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpu(monkeypatch, (9, 0))
    assert resolve_device("cpu") == CPU


def test_auto_takes_a_usable_gpu_and_falls_back_to_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == CUDA
    assert resolve_device("cuda") == CUDA


def test_cuda_without_a_usable_gpu_is_refused_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="install a CUDA build of torch or use device=auto"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="device must be auto, cpu or cuda"):
        resolve_device("tpu")


# ---------------------------------------------------------------- CPU precision


def test_cpu_flags_are_read_from_cpuinfo_and_missing_ones_are_none(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512f", "amx_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "absent") == frozenset()
    cpuinfo.write_text("Processor\t: AArch64\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(cpuinfo) == {"fp", "asimd", "bf16"}


def test_bf16_is_native_on_cpus_with_amx_or_avx512_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert cpu_bf16_native(frozenset({"avx512f", "amx_bf16"}))
    assert cpu_bf16_native(frozenset({"avx512f", "avx512_bf16"}))
    assert not cpu_bf16_native(frozenset({"avx512f", "avx2"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AMX")
    assert cpu_bf16_native(frozenset())


def test_auto_on_the_cpu_is_fp32_in_the_default_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "cpu_flags", lambda cpuinfo=None: frozenset({"amx_bf16"}))
    for setting in ("auto", "fp32"):
        precision = resolve_precision(setting, CPU)
        assert (precision.name, precision.dtype, precision.scaled) == ("fp32", None, False)
        assert not precision.channels_last


def test_bf16_on_a_cpu_with_amx_is_quiet_and_channels_last(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(device_module, "cpu_flags", lambda cpuinfo=None: frozenset({"amx_bf16"}))
    with caplog.at_level(logging.WARNING, logger="trainer.device"):
        precision = resolve_precision("bf16", CPU)
    assert (precision.name, precision.dtype, precision.channels_last) == ("bf16", torch.bfloat16, True)
    assert caplog.records == []


def test_bf16_on_a_cpu_without_it_runs_but_warns_that_fp32_is_faster(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _cpu_without_bf16(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="trainer.device"):
        precision = resolve_precision("bf16", CPU)
    assert precision.name == "bf16"
    assert "emulated" in precision.reason
    assert ["slower than fp32" in r.getMessage() for r in caplog.records] == [True]


def test_fp16_and_unknown_precisions_are_refused_on_the_cpu() -> None:
    with pytest.raises(DeviceError, match="fp16 needs CUDA"):
        resolve_precision("fp16", CPU)
    with pytest.raises(DeviceError, match="precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision("fp8", CPU)


# ---------------------------------------------------------------- CUDA precision (injected GPUs)


@pytest.mark.parametrize("capability", [(8, 0), (8, 9), (9, 0), (12, 0)])
def test_auto_on_a_gpu_with_native_bf16_is_bf16_without_a_scaler(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]
) -> None:
    _gpu(monkeypatch, capability)
    precision = resolve_precision("auto", CUDA)
    assert (precision.name, precision.dtype, precision.scaled) == ("bf16", torch.bfloat16, False)
    assert precision.channels_last
    assert resolve_precision("bf16", CUDA).name == "bf16"


@pytest.mark.parametrize("capability", [(6, 1), (7, 0), (7, 5)])
def test_auto_on_a_gpu_that_only_emulates_bf16_is_fp16_with_a_scaler(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]
) -> None:
    _gpu(monkeypatch, capability)
    precision = resolve_precision("auto", CUDA)
    assert (precision.name, precision.dtype, precision.scaled) == ("fp16", torch.float16, True)
    assert "no native bf16" in precision.reason
    with pytest.raises(DeviceError, match=rf"compute capability {capability[0]}\.{capability[1]}"):
        resolve_precision("bf16", CUDA)


def test_fp32_and_fp16_on_a_gpu_are_what_was_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpu(monkeypatch, (9, 0))
    fp32 = resolve_precision("fp32", CUDA)
    assert (fp32.name, fp32.dtype, fp32.channels_last) == ("fp32", None, True)
    assert resolve_precision("fp16", CUDA).scaled


# ---------------------------------------------------------------- what a precision does to a run


def test_fp32_autocast_and_the_disabled_scaler_change_nothing() -> None:
    precision = Precision("fp32", "cpu")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(precision):
        product = a @ b
    assert product.dtype == torch.float32
    scaler = grad_scaler(precision)
    assert not scaler.is_enabled()
    loss = product.sum()
    assert scaler.scale(loss) is loss


def test_bf16_autocast_computes_convolutions_in_bf16_on_channels_last_weights() -> None:
    precision = Precision("bf16", "cpu")
    refiner = prepare_module(build_refiner(RefinerConfig(1, 4, 1, 3, True)), CPU, precision)
    conv = next(m for m in refiner.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with autocast(precision):
        assert conv(torch.zeros(2, 1, 12, 16)).dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_reduced_precision_runs_train_and_an_fp16_run_checkpoints_its_loss_scales(
    tmp_path: Path, name: str
) -> None:
    # fp16 with a scaler is CUDA's path; torch runs the same autocast and scaler on the CPU, so the
    # run's code for it (scale, step, update, checkpoint) is exercised here for real.
    config = tiny_config()
    run = SimGAN(config, tiny_images(1), tiny_images(2), CPU, Precision(name, "cpu"))
    losses = [run.train_step() for _ in range(run.total_steps)]
    assert all(math.isfinite(v) for step in losses for v in step.values())
    state = run.state_dict()
    if name == "bf16":
        assert state["scalers"] is None
        return
    assert state["scalers"]["refiner"]["scale"] > 0
    resumed = SimGAN(config, tiny_images(1), tiny_images(2), CPU, Precision("fp16", "cpu"))
    resumed.load_state_dict(state)
    assert resumed.refiner_scaler.get_scale() == run.refiner_scaler.get_scale()
    # The same checkpoint resumed on a machine that trains in fp32 (the CPU) ignores the scales.
    on_cpu = SimGAN(config, tiny_images(1), tiny_images(2), CPU)
    on_cpu.load_state_dict(state)
    assert on_cpu.precision.name == "fp32"
    assert math.isfinite(on_cpu.train_step()["refiner"])
