"""One ONNX refiner in onnxruntime: open it on the best engine that passes, verify, warm up, refine.

The graph maps uint8 pixels to uint8 pixels itself (models/card.py), so `RefinerSession.refine`
takes and returns plain uint8 (N, H, W, C) arrays. `load_refiner` tries the engines of
`models.providers.engines` in order; one that fails to load, to warm up, or to match the plain
CPU provider (fp32) within PARITY_GREY_LEVELS on a probe batch is skipped with one log line, and
the next is tried. The CPU provider comes last, so a model that runs at all serves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from core.settings import Settings
from models.card import ModelCard
from models.noise import DEFAULT_SEED, batch_noise
from models.providers import CPU, CPU_FP32, CUDA, OPENVINO, Engine, engines, session_options
from models.registry import Registry

__all__ = ["CPU", "CUDA", "OPENVINO", "Engine", "Parity", "RefinerError", "RefinerSession", "load_refiner"]

log = logging.getLogger(__name__)

WARMUP_SHAPE = (35, 55)
"""(H, W) of the warm-up and probe images: the eye images the product is built around."""
PARITY_GREY_LEVELS = 2
"""Most an engine's output may differ from the CPU provider's in fp32, in grey levels (of 255)."""
PROBE_IMAGES = 8
LARGE_RUN_PIXELS = 512 * 512
"""A call with more input pixels than this gives the arena memory it grew back afterwards, so one
large request does not leave the process that large for good (measured with the bundled refiner:
866 MB held after one 4 x 512 x 512 batch on the CPU provider, 127 MB with the shrink). Batches of
the eye images the product is built around (64 x 35 x 55 = 123,200 pixels) keep their arena."""


class RefinerError(Exception):
    """A model cannot be loaded or does not behave as its card promises."""


@dataclass(frozen=True)
class Parity:
    """How far an engine's output is from the CPU provider's in fp32 on the probe batch."""

    max_grey_levels: int
    mean_grey_levels: float


def probe_images(channels: int, count: int = PROBE_IMAGES) -> np.ndarray:
    """A fixed uint8 (count, 35, 55, channels) batch like real images: smooth shading, edges and
    noise, and one image of pure noise (the hardest case for reduced precision)."""
    rng = np.random.default_rng(0)
    height, width = WARMUP_SHAPE
    coarse = rng.uniform(0, 255, (count, 5, 8, channels))
    rows = np.linspace(0, 4, height)
    cols = np.linspace(0, 7, width)
    # Bilinear upsampling of a coarse random grid: smooth regions with gradients between them.
    r0, c0 = np.floor(rows).astype(int).clip(max=3), np.floor(cols).astype(int).clip(max=6)
    fr, fc = (rows - r0)[None, :, None, None], (cols - c0)[None, None, :, None]
    top = coarse[:, r0][:, :, c0] * (1 - fc) + coarse[:, r0][:, :, c0 + 1] * fc
    bottom = coarse[:, r0 + 1][:, :, c0] * (1 - fc) + coarse[:, r0 + 1][:, :, c0 + 1] * fc
    smooth = top * (1 - fr) + bottom * fr
    images = smooth + rng.normal(0, 8, smooth.shape)
    images[-1] = rng.uniform(0, 255, images[-1].shape)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


class RefinerSession:
    """An onnxruntime session for one published refiner. `refine` is safe to call from many threads."""

    def __init__(
        self, onnx_path: Path, card: ModelCard, engine: Engine = CPU_FP32, intra_op_threads: int = 0
    ) -> None:
        options, providers = session_options(engine, intra_op_threads)
        try:
            self._session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise RefinerError(
                f"model {card.version}: onnxruntime cannot load {onnx_path.name} on {engine}: {exc}"
            ) from exc
        self.card = card
        self.version = card.version
        self.channels = card.channels
        self.engine = engine
        self.provider: str = self._session.get_providers()[0]
        self.precision = engine.precision
        self.parity: Parity | None = None
        """Measured against the CPU provider by `load_refiner`; None until then."""
        if self.provider != engine.provider:
            raise RefinerError(f"model {card.version}: onnxruntime opened {self.provider}, not {engine}")
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
        self._shrink = ort.RunOptions()
        arenas = "cpu:0;gpu:0" if self.provider == CUDA else "cpu:0"
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", arenas)

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
        large = images.size > LARGE_RUN_PIXELS
        (refined,) = self._session.run([self._output], feeds, self._shrink if large else None)
        return np.asarray(refined)

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run each batch size through once, so requests pay no start-up cost; check the output contract."""
        for size in sorted(set(batch_sizes)):
            probe = np.full((max(1, size), *WARMUP_SHAPE, self.channels), 128, dtype=np.uint8)
            try:
                refined = self.refine(probe)
            except Exception as exc:
                raise RefinerError(f"model {self.version}: warm-up on {self.engine} failed: {exc}") from exc
            if refined.shape != probe.shape or refined.dtype != np.uint8:
                raise RefinerError(
                    f"model {self.version}: warm-up returned {refined.dtype} {refined.shape} for "
                    f"uint8 {probe.shape}; a refiner must return uint8 images of its input's shape"
                )

    def describe(self) -> str:
        if self.parity is None:
            return f"{self.provider} {self.precision}"
        return f"{self.provider} {self.precision}, {self.parity.max_grey_levels} grey levels from CPU fp32"


def measure_parity(refiner: RefinerSession, reference: RefinerSession) -> Parity:
    """Largest and mean absolute difference of the two on the probe batch, in grey levels."""
    probe = probe_images(refiner.channels)
    difference = np.abs(refiner.refine(probe).astype(np.int16) - reference.refine(probe).astype(np.int16))
    return Parity(int(difference.max()), round(float(difference.mean()), 4))


def load_refiner(
    registry: Registry, version: str, settings: Settings, warm_batch_sizes: tuple[int, ...] | None = None
) -> RefinerSession:
    """Verify `version`'s sha256 against its card, then open it on the first engine that loads, warms
    up and matches the CPU provider (fp32) within PARITY_GREY_LEVELS on the probe batch.

    Warm-up runs the batcher's smallest and largest batch (`warm_batch_sizes`, default 1 and
    SIMGAN_BATCH_MAX_SIZE). Raises ModelNotFound for an unknown version and RefinerError (or
    RegistryError for a sha256 mismatch) for a model that must not serve on any engine.
    """
    card = registry.verify(version)
    path = registry.onnx_path(card.version)
    sizes = warm_batch_sizes or (1, settings.batch_max_size)
    reference: RefinerSession | None = None
    candidates = engines(settings.provider, settings.precision)
    for engine in candidates:
        try:
            refiner = RefinerSession(path, card, engine, settings.intra_op_threads)
            refiner.warm_up(sizes)
            if engine == CPU_FP32:
                refiner.parity = Parity(0, 0.0)  # it is the reference
                return _chosen(refiner)
            if reference is None:
                reference = RefinerSession(path, card, CPU_FP32, settings.intra_op_threads)
            refiner.parity = measure_parity(refiner, reference)
        except RefinerError as exc:
            if engine == candidates[-1]:
                raise
            log.warning("model %s: not using %s: %s", card.version, engine, exc)
            continue
        if refiner.parity.max_grey_levels <= PARITY_GREY_LEVELS:
            return _chosen(refiner)
        log.warning(
            "model %s: not using %s: its output is %d grey levels from the CPU provider's (fp32) on the "
            "probe batch, more than the %d allowed",
            card.version,
            engine,
            refiner.parity.max_grey_levels,
            PARITY_GREY_LEVELS,
        )
    raise AssertionError("unreachable: the CPU provider is always the last engine")


def _chosen(refiner: RefinerSession) -> RefinerSession:
    log.info("model %s: refining on %s", refiner.version, refiner.describe())
    return refiner
