"""Export a refiner to ONNX (uint8 in, uint8 out), check it against torch, publish it.

Export reads checkpoints, never live training objects: train() ends at a checkpoint, and its
callers (the CLI, the job, bundle-default, bench) publish it with `publish_checkpoint`.
`publish_refiner` is the step all share, and what tests use for an untrained refiner.
`dataset_entry` is the one builder of a model card's dataset entries.
"""

from __future__ import annotations

import copy
import hashlib
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models import IOSpec, ModelCard, Registry, RegistryError
from trainer.verdict import NO_CHANGE, activates

NOT_JUDGED: dict[str, Any] = {
    "verdict": NO_CHANGE,
    "basis": "none",
    "numbers": {},
    "why": "not measured: the run had no checkpoint selector (too few images, or selection turned off)",
    "try": ["train with at least 4 images of each domain and checkpoint selection on"],
}

ONNX_OPSET = 17
"""Opset 17 runs on every onnxruntime >= 1.13, which covers the service's range."""

PARITY_SIZES = ((35, 55), (48, 64))
"""(H, W) of the parity inputs: the eye size and another, to exercise the dynamic axes."""

PARITY_BATCH = 2
MAX_PARITY_ERROR = 1.0
"""Most pixel levels onnxruntime may differ from torch: rounding at x.5 may flip one level."""


def dataset_entry(
    kind: str, images: np.ndarray, *, sha256: str | None = None, **provenance: Any
) -> dict[str, Any]:
    """A model card's (and checkpoint's) record of one training dataset, given as uint8 images.

    kind, count, height, width, channels and sha256, plus `provenance` (a store id and source, a
    file path, a simulator and its seed). `sha256` defaults to the hash of the pixels; a stored
    dataset passes its own (of images.npy), so that its card names the file the store serves.
    """
    channels = images.shape[3] if images.ndim == 4 else 1  # (N, H, W) is single-channel
    return {
        "kind": kind,
        "count": int(images.shape[0]),
        "height": int(images.shape[1]),
        "width": int(images.shape[2]),
        "channels": int(channels),
        "sha256": sha256 if sha256 is not None else hashlib.sha256(images.tobytes()).hexdigest(),
        **provenance,
    }


class ExportError(RuntimeError):
    """The exported graph does not behave like the torch refiner; nothing was published."""


class Uint8Refiner(nn.Module):
    """Export-only wrapper: (N, H, W, C) uint8 pixels in, the same shape of uint8 pixels out.

    A stochastic refiner's graph takes a second input, (N, H, W, k) float32 noise (models/noise.py).
    """

    def __init__(self, refiner: nn.Module) -> None:
        super().__init__()
        self.refiner = refiner

    def forward(self, image: Tensor, noise: Tensor | None = None) -> Tensor:
        x = image.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, C, H, W) in [-1, 1]
        # y: (N, C, H, W) in (-1, 1); noise (N, H, W, k) goes in as (N, k, H, W)
        y = self.refiner(x) if noise is None else self.refiner(x, noise.permute(0, 3, 1, 2))
        pixels = torch.round((y + 1.0) * 127.5).clamp(0.0, 255.0).to(torch.uint8)
        return pixels.permute(0, 2, 3, 1)  # (N, H, W, C) uint8


def noise_channels_of(refiner: nn.Module) -> int:
    """How many noise channels `refiner` takes beside its image (0 for a deterministic one)."""
    config = getattr(refiner, "config", None)
    return int(getattr(config, "noise_channels", 0))


def export_onnx(refiner: nn.Module, channels: int, path: Path) -> Uint8Refiner:
    """Write `refiner` wrapped in `Uint8Refiner` to `path`; returns the wrapper (on CPU, eval mode)."""
    wrapper = Uint8Refiner(copy.deepcopy(refiner).float().cpu().eval()).eval()
    k = noise_channels_of(refiner)
    image = torch.zeros((1, *PARITY_SIZES[0], channels), dtype=torch.uint8)
    example: tuple[Tensor, ...] = (image,) if k == 0 else (image, torch.zeros((1, *PARITY_SIZES[0], k)))
    names = ["image"] if k == 0 else ["image", "noise"]
    axes = {name: {0: "N", 1: "H", 2: "W"} for name in [*names, "refined"]}
    # The TorchScript exporter (dynamo=False) takes 0.2 s where the dynamo one takes 4 s and needs
    # onnxscript. It announces its deprecation; pyproject filters that for tests, and this keeps
    # it out of users' terminals.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # Edge padding exports as Pad(mode=edge) behind a Slice the exporter cannot pre-compute; it
        # says so, and the graph is correct (the parity check below proves it on every export).
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=names,
            output_names=["refined"],
            dynamic_axes=axes,
        )
    return wrapper


def parity_error(
    wrapper: nn.Module, path: Path, channels: int, seed: int = 0, noise_channels: int = 0
) -> float:
    """Max abs difference in pixel levels between onnxruntime (CPU) and torch on random images
    (and, for a stochastic refiner, the noise models/noise.py draws for them)."""
    import onnxruntime as ort

    from models.noise import batch_noise

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for height, width in PARITY_SIZES:
        image = rng.integers(0, 256, size=(PARITY_BATCH, height, width, channels), dtype=np.uint8)
        inputs = {"image": image}
        if noise_channels:
            inputs["noise"] = batch_noise(image, noise_channels, seed)
        (onnx_out,) = session.run(["refined"], inputs)
        if onnx_out.shape != image.shape or onnx_out.dtype != np.uint8:
            raise ExportError(f"ONNX output is {onnx_out.dtype}{onnx_out.shape}, expected uint8{image.shape}")
        with torch.no_grad():
            torch_inputs = [torch.from_numpy(array) for array in inputs.values()]
            torch_out = wrapper(*torch_inputs).numpy()
        diff = np.abs(onnx_out.astype(np.int16) - torch_out.astype(np.int16)).max()
        worst = max(worst, float(diff))
    return worst


def _producer() -> dict[str, str]:
    from core import __version__

    return {"simgan": __version__, "torch": torch.__version__}


def publish_refiner(refiner: nn.Module, channels: int, registry: Registry, **card_fields: Any) -> ModelCard:
    """Export, parity-check and publish `refiner`; `card_fields` fill the rest of the ModelCard.

    Raises ExportError (and publishes nothing) when onnxruntime differs from torch by more than
    MAX_PARITY_ERROR pixel levels.
    """
    with tempfile.TemporaryDirectory(prefix="simgan-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        wrapper = export_onnx(refiner, channels, path)
        noise_channels = noise_channels_of(refiner)
        error = parity_error(wrapper, path, channels, noise_channels=noise_channels)
        if error > MAX_PARITY_ERROR:
            raise ExportError(
                f"onnxruntime output differs from torch by {error:g} pixel levels "
                f"(at most {MAX_PARITY_ERROR:g} allowed); the model was not published"
            )
        card_fields.setdefault("producer", _producer())
        notes = card_fields.pop("notes", "")
        card = ModelCard(
            io=IOSpec(channels=channels, noise_channels=noise_channels),
            onnx_sha256="",
            onnx_opset=ONNX_OPSET,
            parity_max_abs_error=error,
            notes=notes,
            **card_fields,
        )
        return registry.publish(path, card)


def export_checkpoint(checkpoint: Path, registry: Registry, **card_fields: Any) -> ModelCard:
    """Publish the refiner of a training checkpoint; `card_fields` add to or override its card."""
    from trainer.checkpoint import load_checkpoint
    from trainer.networks import RefinerConfig, build_refiner

    state = load_checkpoint(checkpoint)
    refiner_config = RefinerConfig(**state["refiner_config"])
    refiner = build_refiner(refiner_config)
    # A run with a checkpoint selector publishes the refiner it chose; otherwise the last one (its
    # weight average where the run kept one).
    selected = state.get("selected_refiner")
    average = (state.get("refiner_average") or {}).get("weights")
    refiner.load_state_dict(next(w for w in (selected, average, state["refiner"]) if w is not None))
    selection = state.get("selection") if selected is not None else None
    judged = state.get("verdict") or NOT_JUDGED
    policy = state["config"].get("activate", "always")  # a checkpoint from before verdicts: as it was
    fields = {
        "config": state["config"],
        "datasets": state["datasets"],
        "steps_trained": state["step"],
        "final_losses": state["losses"],
        "selection": selection or {"criterion": "last", "step": state["step"]},
        "verdict": judged,
        "auto_activate": activates(judged, policy),
        **card_fields,
    }
    return publish_refiner(refiner, refiner_config.channels, registry, **fields)


def _active(registry: Registry) -> str | None:
    try:
        return registry.resolve("active")
    except RegistryError:  # nothing published yet
        return None


def publish_checkpoint(
    checkpoint: Path,
    registry: Registry,
    *,
    datasets: list[dict[str, Any]] | None = None,
    notes: str = "",
    job_id: str | None = None,
) -> ModelCard:
    """Publish what a finished train() left in `checkpoint`: the selected refiner, or the last.

    `datasets` (built with `dataset_entry`) replaces the checkpoint's own record of the training
    arrays, for callers that know more about them (store ids, file paths, simulator seeds). The card's
    `parent` is the model active now, the one this one is meant to replace; `job_id` the train job.
    """
    fields: dict[str, Any] = {"notes": notes, "job_id": job_id, "parent": _active(registry)}
    if datasets is not None:
        fields["datasets"] = datasets
    return export_checkpoint(checkpoint, registry, **fields)
