"""Where training runs, and how: CPU in float32, or CUDA with bf16 autocast and channels_last."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class DeviceError(RuntimeError):
    """The requested device cannot be used here."""


def resolve_device(setting: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cuda` without a usable GPU is refused."""
    if setting == "cpu":
        return torch.device("cpu")
    if setting in ("auto", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if setting == "cuda":
            raise DeviceError(
                "device=cuda but torch sees no usable CUDA device (this torch build is "
                f"{torch.__version__}); install a CUDA build of torch or use device=auto"
            )
        return torch.device("cpu")
    raise DeviceError(f"device must be auto, cpu or cuda, got {setting!r}")


def prepare_module(module: nn.Module, device: torch.device) -> nn.Module:
    """Move to `device`; on CUDA use channels_last, which lets cuDNN pick its fastest conv kernels."""
    module = module.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return module


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); plain float32 on CPU."""
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
