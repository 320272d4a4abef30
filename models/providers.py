"""Which onnxruntime execution provider refines here, and how each one's session is set up.

`engines(setting, precision)` lists the candidates for `SIMGAN_PROVIDER` in the order they are
tried; `models/session.py` opens the first that loads, warms up and passes the parity check
against the plain CPU provider. Probing a provider never makes onnxruntime itself try it: a
machine without a GPU or without the OpenVINO plugin logs one line saying why, nothing more.

- CUDA: onnxruntime-gpu's CUDA provider, its CUDA and cuDNN libraries found (from the NVIDIA
  wheels through `onnxruntime.preload_dlls()` where they are installed that way) and a device
  the driver sees.
- OpenVINO: the `onnxruntime-ep-openvino` plugin, registered with onnxruntime as a plugin
  library, on the OpenVINO CPU device. In bf16 where the CPU has AMX (its matrix units run bf16
  only), else fp32.
- CPU: onnxruntime's own CPU provider, fp32: everywhere, and the reference for parity.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import logging
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import onnxruntime as ort

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
OPENVINO_PLUGIN = "onnxruntime_ep_openvino"
"""The Python package of the OpenVINO plugin (PyPI: onnxruntime-ep-openvino)."""
CUDNN_LIBRARY = "libcudnn.so.9"
"""cuDNN 9: what onnxruntime-gpu 1.19 and later link; without it the CUDA provider cannot load."""
CUDA_MEMORY_LIMIT_BYTES = 8 * 1024**3
"""The CUDA arena's bound: it never holds more, whatever sizes requests came in."""


@dataclass(frozen=True)
class Engine:
    """One way to run a refiner: an execution provider at a precision."""

    provider: str
    precision: str = "fp32"

    @property
    def name(self) -> str:
        """What SIMGAN_PROVIDER calls it: cpu, cuda, openvino."""
        return {CPU: "cpu", CUDA: "cuda", OPENVINO: "openvino"}[self.provider]

    def __str__(self) -> str:
        return f"{self.name} ({self.precision})"


CPU_FP32 = Engine(CPU, "fp32")


def _cdll(name: str, mode: int = ctypes.DEFAULT_MODE) -> Any:
    """ctypes.CDLL, in one place so tests can inject a missing library."""
    return ctypes.CDLL(name, mode=mode)


def _available_providers() -> list[str]:
    return list(ort.get_available_providers())


def _nvidia_wheels_installed() -> bool:
    """The CUDA libraries as pip wheels (nvidia-cuda-runtime, nvidia-cudnn, ...: the `nvidia` package)."""
    return importlib.util.find_spec("nvidia") is not None


@lru_cache(maxsize=1)
def preload_cuda_libraries() -> bool:
    """Load CUDA and cuDNN from the NVIDIA wheels, which onnxruntime's CUDA provider cannot find by
    itself (it has no RUNPATH to them); True when it did. Without those wheels the system's
    libraries (an NVIDIA CUDA image, LD_LIBRARY_PATH) are used as they are."""
    if not _nvidia_wheels_installed() or not hasattr(ort, "preload_dlls"):
        return False
    try:
        ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
    except Exception as exc:  # a broken wheel must not stop the CPU path
        log.warning("onnxruntime.preload_dlls() failed: %s", exc)
        return False
    return True


@lru_cache(maxsize=1)
def cuda_unusable_reason() -> str | None:
    """None when onnxruntime can run on a CUDA device here, else why not (for one log line).

    Asks the driver itself (cuInit + cuDeviceGetCount through libcuda), then checks that cuDNN
    and onnxruntime's CUDA provider library (with the CUDA libraries it links) load, so a machine
    without a usable GPU never makes onnxruntime try CUDA and log errors. Calls cuInit in this
    process: call it in the process that runs inference, not in a parent that forks.
    """
    if CUDA not in _available_providers():
        return "this onnxruntime build has no CUDA execution provider (install onnxruntime-gpu)"
    try:
        driver = _cdll("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1 not found)"
    if driver.cuInit(0) != 0:
        return "the NVIDIA driver failed to initialise (cuInit)"
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return "no CUDA device visible"
    preload_cuda_libraries()
    try:
        _cdll(CUDNN_LIBRARY)
    except OSError as exc:
        return f"cuDNN 9 is not installed ({exc}); install onnxruntime-gpu[cuda,cudnn] or a cuDNN image"
    capi = Path(ort.__file__).parent / "capi"
    try:
        # The provider library needs the shared one's symbols first, as onnxruntime loads them.
        _cdll(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        _cdll(str(capi / "libonnxruntime_providers_cuda.so"))
    except OSError as exc:
        return f"onnxruntime's CUDA provider cannot load its CUDA libraries ({exc})"
    return None


def _import_plugin() -> Any:
    return importlib.import_module(OPENVINO_PLUGIN)


@lru_cache(maxsize=1)
def _openvino_state() -> tuple[tuple[Any, ...], str | None]:
    """(OpenVINO CPU devices, None) once the plugin is registered, or ((), why not)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return (), f"the OpenVINO plugin is built for x86-64 only, this is {platform.machine()}"
    try:
        plugin = _import_plugin()
    except ImportError:
        return (), "the OpenVINO plugin is not installed (pip install onnxruntime-ep-openvino)"
    if not hasattr(ort, "register_execution_provider_library"):
        return (), f"onnxruntime {ort.__version__} cannot load plugin execution providers (needs 1.23+)"
    try:
        _register_plugin(plugin.get_library_path())
    except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
        return (), f"onnxruntime cannot load the OpenVINO plugin: {exc}"
    devices = tuple(
        d for d in ort.get_ep_devices() if d.ep_name == OPENVINO and d.ep_metadata.get("ov_device") == "CPU"
    )
    if not devices:
        return (), "the OpenVINO plugin finds no CPU device"
    return devices, None


@lru_cache(maxsize=1)
def _register_plugin(library: str) -> None:
    """Once per process: onnxruntime refuses to register one name twice."""
    ort.register_execution_provider_library("openvino", library)


def openvino_unusable_reason() -> str | None:
    """None when the OpenVINO plugin is registered and offers its CPU device, else why not."""
    return _openvino_state()[1]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux), empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_amx() -> bool:
    """Intel AMX with bf16 (Sapphire Rapids and later): where OpenVINO's bf16 is several times fp32."""
    return "amx_bf16" in cpu_flags()


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AMX or AVX512-BF16). Elsewhere OpenVINO ignores a bf16 hint and runs
    fp32 (measured: outputs identical to fp32), so calling that bf16 would misreport it."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def engines(setting: str, precision: str = "auto") -> list[Engine]:
    """The engines to try, in order, for SIMGAN_PROVIDER `setting` and SIMGAN_PRECISION `precision`.

    `auto`: CUDA where usable, else OpenVINO where its plugin loads, else the CPU provider.
    `cuda` / `openvino`: that one, then the CPU provider (one warning when it is not usable).
    The CPU provider always comes last, so a model that runs anywhere runs here.
    `precision` (`auto`, `fp32`, `bf16`) applies to OpenVINO; `auto` is bf16 where the CPU has
    AMX, with OpenVINO fp32 next in case bf16 fails the parity check.
    """
    if setting == "cpu":
        return [CPU_FP32]
    found: list[Engine] = []
    if setting in ("auto", "cuda"):
        reason = cuda_unusable_reason()
        if reason is None:
            found.append(Engine(CUDA, "fp32"))
        elif setting == "cuda":
            warn_once(f"SIMGAN_PROVIDER=cuda but CUDA is not usable: {reason}; using the next provider")
        else:
            info_once(f"SIMGAN_PROVIDER=auto: not using CUDA: {reason}")
    if setting in ("auto", "openvino"):
        reason = openvino_unusable_reason()
        if reason is None:
            if (precision == "auto" and cpu_has_amx()) or (precision == "bf16" and cpu_has_bf16()):
                found.append(Engine(OPENVINO, "bf16"))
            elif precision == "bf16":
                warn_once("SIMGAN_PRECISION=bf16 but this CPU has no native bf16 (AMX, AVX512-BF16); fp32")
            found.append(Engine(OPENVINO, "fp32"))
        elif setting == "openvino":
            warn_once(f"SIMGAN_PROVIDER=openvino but OpenVINO is not usable: {reason}; using the CPU")
        else:
            info_once(f"SIMGAN_PROVIDER=auto: not using OpenVINO: {reason}")
    return [*found, CPU_FP32]


@lru_cache(maxsize=32)
def warn_once(message: str) -> None:
    log.warning(message)


@lru_cache(maxsize=32)
def info_once(message: str) -> None:
    log.info(message)


def session_options(engine: Engine, intra_op_threads: int = 0) -> tuple[ort.SessionOptions, list[Any] | None]:
    """(SessionOptions, providers for InferenceSession) that run `engine` with bounded memory.

    The arenas stay on (they are faster for the many small batches) and `RefinerSession` gives
    their memory back after every large call (models/session.py, LARGE_RUN_PIXELS). CUDA's arena
    grows by what is asked, never past CUDA_MEMORY_LIMIT_BYTES, and cuDNN picks convolution
    algorithms by heuristic rather than benchmarking every one for each new batch shape.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: onnxruntime's node-placement warnings are noise here
    # Idle threads sleep instead of spinning: between calls the service's own threads (event loop,
    # decoding, encoding) need those cores. On 2 busy cores: 1.32x the images/s of spinning threads.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if intra_op_threads > 0:
        options.intra_op_num_threads = intra_op_threads
    if engine.provider == CUDA:
        cuda = {
            "cudnn_conv_algo_search": "HEURISTIC",
            "arena_extend_strategy": "kSameAsRequested",
            "gpu_mem_limit": str(CUDA_MEMORY_LIMIT_BYTES),
        }
        return options, [(CUDA, cuda), CPU]
    if engine.provider == OPENVINO:
        devices, reason = _openvino_state()
        if reason is not None:
            raise RuntimeError(reason)
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if engine.precision == "bf16" else "f32",
            # One call at a time (the batcher's): every core on it, not throughput streams.
            "PERFORMANCE_HINT": "LATENCY",
        }
        if intra_op_threads > 0:
            config["INFERENCE_NUM_THREADS"] = intra_op_threads
        options.add_provider_for_devices(list(devices[:1]), {"load_config": json.dumps({"CPU": config})})
        return options, None
    return options, [CPU]
