"""Where training runs, and in what precision.

Device: `auto` is CUDA when torch sees a usable GPU, else the CPU. Precision (config `precision`):

- `auto`: on CUDA, bf16 autocast where the GPU computes bf16 natively (compute capability 8.0 and
  up: Ampere, Hopper, ...), else fp16 autocast with a gradient scaler (fp16's narrow exponent
  underflows small gradients without one); on the CPU, CPU_AUTO (fp32, see there).
- `fp32`: plain float32 everywhere; the only path whose resume is bit-exact (tests/trainer).
- `bf16`: bf16 autocast; refused on a GPU that only emulates it (torch's autocast would refuse
  too, later and less clearly). On a CPU it is allowed anywhere but only fast with AMX
  (Sapphire Rapids and later) or AVX512-BF16; without them torch emulates it, several times slower.
- `fp16`: fp16 autocast with a gradient scaler, CUDA only.

Every reduced precision uses channels_last, the memory layout cuDNN's and oneDNN's fast conv
kernels want; fp32 on the CPU keeps the default layout.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""The values of config `precision` (core.train_config.CHOICES repeats them, torch-free)."""

CPU_AUTO = "fp32"
"""What `precision=auto` means on the CPU. bf16 + channels_last is opt-in (`precision=bf16`): where
AMX is present it should pay, but that was not measured, and without AMX it trained at half fp32's
speed while the quick domain suite showed no evidence of equal quality (bench/results/precision_cpu.md)."""

NATIVE_BF16_CAPABILITY = (8, 0)
"""CUDA compute capability from which bf16 runs on tensor cores (Ampere); below it torch emulates it."""

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of CPUs with bf16 matrix instructions (AMX tiles, or AVX-512 BF16 dot products)."""

CPUINFO = Path("/proc/cpuinfo")

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(RuntimeError):
    """The requested device or precision cannot be used here."""


@dataclass(frozen=True)
class Precision:
    """How a run computes: `name` fp32, bf16 or fp16 on `device_type` (cpu, cuda), and why."""

    name: str
    device_type: str
    reason: str = ""

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for plain float32."""
        return _DTYPES[self.name]

    @property
    def scaled(self) -> bool:
        """fp16 needs a gradient scaler; bf16 has fp32's exponent range and does not."""
        return self.name == "fp16"

    @property
    def channels_last(self) -> bool:
        return self.device_type == "cuda" or self.name != "fp32"


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


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where that file does not exist."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16_native(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX or AVX512-BF16), by its flags or by torch."""
    flags = cpu_flags() if flags is None else flags
    if any(flag in flags for flag in CPU_BF16_FLAGS):
        return True
    capability = torch.backends.cpu.get_cpu_capability().upper()
    return "AMX" in capability or "BF16" in capability


def cuda_bf16_native(device: torch.device) -> bool:
    """Whether this GPU computes bf16 natively (compute capability 8.0 and up)."""
    return tuple(torch.cuda.get_device_capability(device)) >= NATIVE_BF16_CAPABILITY


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """Config `precision` on `device`, as the module docstring says; DeviceError where it cannot run."""
    if setting not in PRECISIONS:
        raise DeviceError(f"precision must be one of {', '.join(PRECISIONS)}, got {setting!r}")
    if device.type == "cuda":
        return _cuda_precision(setting, device)
    if device.type != "cpu":
        raise DeviceError(f"training runs on cpu or cuda, not {device.type}")
    if setting == "fp16":
        raise DeviceError("precision=fp16 needs CUDA; on the CPU use fp32, or bf16 where the CPU has AMX")
    if setting == "bf16":
        native = cpu_bf16_native()
        if not native:
            log.warning(
                "precision=bf16 on a CPU without AMX or AVX512-BF16: torch emulates bf16 here, which is "
                "slower than fp32; use precision=fp32 (or auto)"
            )
        return Precision("bf16", "cpu", "asked for" + ("" if native else "; emulated on this CPU"))
    if setting == "auto" and CPU_AUTO != "fp32" and cpu_bf16_native():
        return Precision(CPU_AUTO, "cpu", "auto on a CPU with bf16 matrix instructions")
    return Precision("fp32", "cpu", "asked for" if setting == "fp32" else "auto on the CPU")


def _cuda_precision(setting: str, device: torch.device) -> Precision:
    if setting == "fp32":
        return Precision("fp32", "cuda", "asked for")
    if setting == "fp16":
        return Precision("fp16", "cuda", "asked for")
    native = cuda_bf16_native(device)
    if setting == "bf16":
        if not native:
            major, minor = torch.cuda.get_device_capability(device)
            raise DeviceError(
                f"precision=bf16 but this GPU (compute capability {major}.{minor}) has no native bf16; "
                "use precision=auto (fp16 with a gradient scaler here) or fp32"
            )
        return Precision("bf16", "cuda", "asked for")
    if native:
        return Precision("bf16", "cuda", "auto: the GPU computes bf16 natively")
    return Precision("fp16", "cuda", "auto: the GPU has no native bf16, so fp16 with a gradient scaler")


def prepare_module(module: nn.Module, device: torch.device, precision: Precision | None = None) -> nn.Module:
    """Move to `device`; channels_last where the precision wants it (all but fp32 on the CPU)."""
    module = module.to(device)
    precision = precision or Precision("fp32", device.type)
    if precision.channels_last:
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return module


@contextlib.contextmanager
def autocast(precision: Precision) -> Iterator[None]:
    """Autocast to the precision's dtype on its device; nothing at all for fp32."""
    if precision.dtype is None:
        yield
        return
    with torch.autocast(precision.device_type, dtype=precision.dtype):
        yield


def grad_scaler(precision: Precision) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only; disabled it passes losses and steps through unchanged."""
    return torch.amp.GradScaler(precision.device_type, enabled=precision.scaled)
