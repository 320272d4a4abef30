from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from core.settings import Settings
from core.train_config import TrainConfig
from models import Registry
from simgan.cli import main
from tests.factories import publish_tiny_refiner, tiny_config, tiny_images
from trainer.checkpoint import load_checkpoint
from trainer.export import (
    MAX_PARITY_ERROR,
    ExportError,
    Uint8Refiner,
    dataset_entry,
    publish_checkpoint,
    publish_refiner,
)
from trainer.networks import RefinerConfig, build_refiner
from trainer.training import Hooks, train


def _session(registry: Registry, version: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(registry.onnx_path(version)), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("channels", [1, 3])
def test_published_refiner_takes_uint8_nhwc_of_any_size_and_returns_the_same_shape(
    tmp_path: Path, channels: int
) -> None:
    registry = Registry(tmp_path)
    card = publish_tiny_refiner(registry, channels=channels)
    session = _session(registry, card.version)
    for shape in [(1, 35, 55, channels), (3, 17, 9, channels)]:
        image = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
        (refined,) = session.run(["refined"], {"image": image})
        assert refined.dtype == np.uint8
        assert refined.shape == shape


def test_published_onnx_output_matches_the_torch_refiner(tmp_path: Path) -> None:
    torch.manual_seed(3)
    refiner = build_refiner(RefinerConfig(channels=1, width=8, blocks=1))
    registry = Registry(tmp_path)
    card = publish_refiner(refiner, 1, registry)
    image = np.random.default_rng(1).integers(0, 256, size=(2, 35, 55, 1), dtype=np.uint8)
    (onnx_out,) = _session(registry, card.version).run(["refined"], {"image": image})
    with torch.no_grad():
        y = refiner(torch.from_numpy(image).permute(0, 3, 1, 2).float() / 127.5 - 1)
    expected = torch.round((y + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(onnx_out.astype(int) - expected.astype(int)).max() <= 1
    assert card.parity_max_abs_error <= 1


def test_card_says_how_to_feed_the_model_and_who_made_it(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    card = publish_tiny_refiner(registry, channels=3)
    stored = registry.verify(card.version)
    assert stored.io.channels == 3
    assert (stored.io.input_name, stored.io.output_name, stored.io.dtype) == ("image", "refined", "uint8")
    assert stored.onnx_opset == 17
    assert stored.producer["torch"] == torch.__version__
    assert stored.config["refiner_channels"] == 8


def test_uint8_wrapper_maps_pixels_through_minus_one_to_one() -> None:
    wrapper = Uint8Refiner(torch.nn.Identity())
    pixels = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8).reshape(1, 1, 6, 1)
    assert torch.equal(wrapper(pixels), pixels)


class _DriftsWithEveryCall(torch.nn.Module):
    """A refiner whose output depends on Python state: it brightens a little with every call. The
    ONNX trace bakes in the shift of the call it recorded, so onnxruntime and torch really disagree,
    as they would for any network with Python-side state or control flow."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return 0.5 * x + 0.1 * self.calls


def test_export_refuses_to_publish_when_onnxruntime_disagrees_with_torch(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(ExportError, match=r"differs from torch by (\d+) pixel levels") as refused:
        publish_refiner(_DriftsWithEveryCall(), 1, registry)

    levels = int(re.search(r"by (\d+) pixel levels", str(refused.value)).group(1))  # type: ignore[union-attr]
    assert levels > MAX_PARITY_ERROR
    assert "the model was not published" in str(refused.value)
    assert registry.versions() == []


def test_export_command_publishes_a_checkpoint(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    config = TrainConfig(batch_size=2, refiner_channels=4, refiner_blocks=1, device="cpu")
    images = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 1), dtype=np.uint8)
    result = train(config, images, images, workdir=tmp_path / "run", hooks=Hooks(should_stop=lambda: True))
    assert main(["export", str(result.checkpoint), "--notes", "by hand"]) == 0
    assert "published v1" in capsys.readouterr().out
    assert Registry(settings.models_path).get("v1").notes == "by hand"


def test_export_command_says_when_the_file_is_not_a_checkpoint(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(tmp_path / "nope.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_a_dataset_entry_records_kind_shape_pixel_hash_and_provenance() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4, 1)
    entry = dataset_entry("real", images, source="eyes.npz")
    assert entry == {
        "kind": "real",
        "count": 2,
        "height": 3,
        "width": 4,
        "channels": 1,
        "sha256": hashlib.sha256(images.tobytes()).hexdigest(),
        "source": "eyes.npz",
    }
    assert dataset_entry("real", images[..., 0]) == {k: v for k, v in entry.items() if k != "source"}
    # A stored dataset names the hash of its images.npy, not of the pixels.
    assert dataset_entry("real", images, sha256="ab", id="0123")["sha256"] == "ab"


def test_publishing_a_checkpoint_records_the_datasets_its_caller_knows(tmp_path: Path) -> None:
    synthetic, real = tiny_images(1), tiny_images(2)
    checkpoint = train(tiny_config(), synthetic, real, workdir=tmp_path / "run").checkpoint
    registry = Registry(tmp_path / "models")

    plain = publish_checkpoint(checkpoint, registry)
    assert plain.datasets == load_checkpoint(checkpoint)["datasets"]
    assert [d["kind"] for d in plain.datasets] == ["synthetic", "real"]
    assert plain.notes == ""
    known = [dataset_entry("synthetic", synthetic, id="a"), dataset_entry("real", real, id="b")]
    card = publish_checkpoint(checkpoint, registry, datasets=known, notes="from the store")
    assert (card.version, card.datasets, card.notes) == ("v2", known, "from the store")
    assert card.onnx_sha256 == plain.onnx_sha256  # the same refiner, described better
