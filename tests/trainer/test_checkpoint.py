from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from models import Registry
from tests.factories import tiny_config, tiny_images
from trainer.checkpoint import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from trainer.export import export_checkpoint
from trainer.training import Hooks, TrainResult, train


def _stopped_run(tmp_path: Path, after: int = 3) -> TrainResult:
    seen: list[int] = []
    return train(
        tiny_config(),
        tiny_images(1),
        tiny_images(2),
        workdir=tmp_path / "run",
        # Only the steps done count: progress also reports the start (step 0, no losses yet).
        hooks=Hooks(
            progress=lambda p: seen.append(p.step) if p.losses else None,
            should_stop=lambda: len(seen) >= after,
        ),
    )


def test_checkpoint_describes_itself(tmp_path: Path) -> None:
    state = load_checkpoint(_stopped_run(tmp_path).checkpoint)
    assert state["format"] == "simgan-checkpoint"
    assert state["step"] == 3
    assert state["phase"] == "adversarial"
    assert state["config"] == tiny_config().to_dict()
    assert state["refiner_config"] == {
        "channels": 1,
        "width": 4,
        "blocks": 1,
        "kernel": 3,
        "residual": True,
        "noise_channels": 0,
    }
    assert {"refiner", "discriminator", "refiner_optimizer", "discriminator_optimizer"} <= set(state)
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python", "generator"}
    assert state["history"]["images"].shape == (4, 1, 12, 16)
    assert [d["kind"] for d in state["datasets"]] == ["synthetic", "real"]


def test_export_publishes_the_refiner_of_a_checkpoint_with_its_card(tmp_path: Path) -> None:
    checkpoint = _stopped_run(tmp_path).checkpoint
    registry = Registry(tmp_path / "exported")
    card = export_checkpoint(checkpoint, registry, notes="by hand")
    state = load_checkpoint(checkpoint)
    assert card.version == "v1"
    assert card.steps_trained == 3
    assert card.final_losses == state["losses"]
    assert card.config == state["config"]
    assert card.notes == "by hand"
    assert card.parity_max_abs_error <= 1
    assert registry.verify("v1").onnx_sha256 == card.onnx_sha256


def test_a_failed_write_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1})

    def crash(obj: object, f: object) -> None:  # a crash mid-write cannot be caused for real
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_loading_refuses_files_that_are_not_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable simgan checkpoint"):
        load_checkpoint(junk)
    torch.save({"model": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a simgan checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_random_states_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(4)
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"rng": capture_rng(generator)})

    def draw() -> tuple[float, ...]:
        return (
            torch.rand(1).item(),
            float(np.random.rand()),
            random.random(),
            torch.rand(1, generator=generator).item(),
        )

    expected = draw()
    restore_rng(load_checkpoint(path)["rng"], generator)
    assert draw() == expected


def _no_cuda_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU host (torch says CUDA is available) on which any CUDA RNG call fails the test."""

    def touched(*args: object, **kwargs: object) -> None:
        raise AssertionError("a CPU run touched CUDA")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in ("get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all", "init"):
        monkeypatch.setattr(torch.cuda, name, touched)


def test_a_cpu_run_on_a_gpu_host_never_asks_cuda_for_its_random_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Asking for them would create a CUDA context on every visible GPU for a run that uses none.
    _no_cuda_calls(monkeypatch)
    first = _stopped_run(tmp_path)
    assert load_checkpoint(first.checkpoint)["rng"]["cuda"] == []
    train(tiny_config(), tiny_images(1), tiny_images(2), workdir=tmp_path / "run", resume=first.checkpoint)


def test_a_checkpoint_from_several_gpus_resumes_on_the_cpu_with_the_same_losses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = train(tiny_config(), tiny_images(1), tiny_images(2), workdir=tmp_path / "straight")
    first = _stopped_run(tmp_path)
    state = load_checkpoint(first.checkpoint)
    # What an older build wrote on a 4-GPU machine: one CUDA generator state per visible GPU.
    state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8) + i for i in range(4)]
    save_checkpoint(first.checkpoint, state)
    _no_cuda_calls(monkeypatch)
    resumed = train(
        tiny_config(), tiny_images(1), tiny_images(2), workdir=tmp_path / "run", resume=first.checkpoint
    )
    assert resumed.final_losses == straight.final_losses


def test_a_gpu_run_saves_its_own_gpus_state_and_restores_it_on_a_machine_with_fewer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One GPU's state per checkpoint, and the first of an older checkpoint's per-GPU list on resume:
    # torch.cuda.set_rng_state_all would raise on a machine with fewer GPUs than the list.
    calls: list[tuple[str, object, object]] = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: torch.full((16,), 7, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: calls.append(("set", s, device)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(("all", states, None)))
    cuda = torch.device("cuda")
    generator = torch.Generator().manual_seed(1)

    state = capture_rng(generator, cuda)
    assert [s.tolist() for s in state["cuda"]] == [[7] * 16]
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8) + i for i in range(4)]
    restore_rng(state, generator, cuda)
    assert [(kind, s.tolist(), d) for kind, s, d in calls] == [("set", [0] * 16, cuda)]  # type: ignore[attr-defined]
    calls.clear()
    restore_rng(state, generator, torch.device("cpu"))
    assert calls == []
