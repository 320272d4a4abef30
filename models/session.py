"""One ONNX refiner in onnxruntime: choose the execution provider, load, verify, warm up, refine.

The graph maps uint8 pixels to uint8 pixels itself (models/card.py), so `RefinerSession.refine`
takes and returns plain uint8 (N, H, W, C) arrays.
"""

from __future__ import annotations

import ctypes
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from core.settings import Settings
from models.card import ModelCard
from models.noise import DEFAULT_SEED, batch_noise
from models.registry import Registry

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
WARMUP_SHAPE = (35, 55)
"""(H, W) of the warm-up image: the eye images the product is built around."""
_ORT_ERROR = 3
"""onnxruntime log severity: errors only (its warnings about node placement are noise here)."""


class RefinerError(Exception):
    """A model cannot be loaded or does not behave as its card promises."""


@lru_cache(maxsize=1)
def cuda_unusable_reason() -> str | None:
    """None when onnxruntime can run on a CUDA device here, else why not (for one log line).

    Asks the driver itself (cuInit + cuDeviceGetCount through libcuda), then checks that
    onnxruntime's CUDA provider library and the CUDA libraries it links can be loaded, so a
    machine without a GPU never makes onnxruntime try CUDA and log errors. Calls cuInit in
    this process: call it in the process that runs inference, not in a parent that forks.
    """
    if CUDA not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA execution provider"
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1 not found)"
    if driver.cuInit(0) != 0:
        return "the NVIDIA driver failed to initialise (cuInit)"
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return "no CUDA device visible"
    capi = Path(ort.__file__).parent / "capi"
    try:
        # The provider library needs the shared one's symbols first, as onnxruntime loads them.
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(capi / "libonnxruntime_providers_cuda.so"))
    except OSError as exc:
        return f"onnxruntime's CUDA provider cannot load its CUDA libraries ({exc})"
    return None


def choose_providers(setting: str) -> list[str]:
    """Execution providers for `Settings.provider` (`auto`, `cpu`, `cuda`).

    CUDA comes first only when a CUDA device is really usable; otherwise the CPU alone, so
    onnxruntime never tries CUDA and floods the log. `cuda` without a usable device logs one
    warning and runs on the CPU (readiness and /metrics name the provider actually used).
    """
    if setting == "cpu":
        return [CPU]
    reason = cuda_unusable_reason()
    if reason is None:
        return [CUDA, CPU]
    if setting == "cuda":
        _warn_once(f"SIMGAN_PROVIDER=cuda but CUDA is not usable: {reason}; refining on the CPU")
    return [CPU]


@lru_cache(maxsize=8)
def _warn_once(message: str) -> None:
    log.warning(message)


class RefinerSession:
    """An onnxruntime session for one published refiner. `refine` is safe to call from many threads."""

    def __init__(self, onnx_path: Path, card: ModelCard, providers: list[str], intra_op_threads: int = 0):
        options = ort.SessionOptions()
        options.log_severity_level = _ORT_ERROR
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        try:
            self._session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise RefinerError(
                f"model {card.version}: onnxruntime cannot load {onnx_path.name}: {exc}"
            ) from exc
        self.card = card
        self.version = card.version
        self.channels = card.channels
        self.provider: str = self._session.get_providers()[0]
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if card.stochastic and card.io.noise_name not in inputs:
            raise RefinerError(
                f"model {card.version}: its card says it takes noise ('{card.io.noise_name}') but the "
                f"graph's inputs are {inputs}"
            )
        if card.io.input_name not in inputs or card.io.output_name not in outputs:
            raise RefinerError(
                f"model {card.version}: the graph's inputs {inputs} / outputs {outputs} do not include the "
                f"card's '{card.io.input_name}' / '{card.io.output_name}'"
            )
        self._input, self._output = card.io.input_name, card.io.output_name

    @property
    def stochastic(self) -> bool:
        return self.card.stochastic

    def noise(self, images: np.ndarray, seed: int = DEFAULT_SEED) -> np.ndarray | None:
        """The (N, H, W, k) noise a stochastic model gets for these images and seed; None otherwise."""
        return batch_noise(images, self.card.io.noise_channels, seed) if self.stochastic else None

    def refine(
        self, images: np.ndarray, seed: int = DEFAULT_SEED, noise: np.ndarray | None = None
    ) -> np.ndarray:
        """uint8 (N, H, W, C) -> refined uint8 (N, H, W, C).

        A stochastic model also takes noise: `noise` when given (a caller that cuts images into
        tiles draws it for the whole image), else drawn from `seed` and each image's pixels, so the
        same image with the same seed gives the same output in any batch. Deterministic models
        ignore both.
        """
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != self.channels:
            raise ValueError(
                f"model {self.version} takes uint8 (N, H, W, {self.channels}) images, "
                f"got {images.dtype} {images.shape}"
            )
        feeds: dict[str, np.ndarray] = {self._input: images}
        if self.stochastic:
            k = self.card.io.noise_channels
            feeds[self.card.io.noise_name] = batch_noise(images, k, seed) if noise is None else noise
        (refined,) = self._session.run([self._output], feeds)
        return np.asarray(refined)

    def warm_up(self) -> None:
        """Run one image through, so the first request pays no start-up cost; check the output contract."""
        probe = np.full((1, *WARMUP_SHAPE, self.channels), 128, dtype=np.uint8)
        try:
            refined = self.refine(probe)
        except Exception as exc:
            raise RefinerError(f"model {self.version}: warm-up run failed: {exc}") from exc
        if refined.shape != probe.shape or refined.dtype != np.uint8:
            raise RefinerError(
                f"model {self.version}: warm-up returned {refined.dtype} {refined.shape} for "
                f"uint8 {probe.shape}; a refiner must return uint8 images of its input's shape"
            )


def load_refiner(registry: Registry, version: str, settings: Settings) -> RefinerSession:
    """Verify `version`'s sha256 against its card, open it in onnxruntime and warm it up.

    Raises ModelNotFound for an unknown version and RefinerError (or RegistryError for a
    sha256 mismatch) for a model that must not serve.
    """
    card = registry.verify(version)
    refiner = RefinerSession(
        registry.onnx_path(card.version),
        card,
        providers=choose_providers(settings.provider),
        intra_op_threads=settings.intra_op_threads,
    )
    refiner.warm_up()
    return refiner
