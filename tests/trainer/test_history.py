from __future__ import annotations

import torch

from trainer.history import ImageHistory


def _numbered(start: int, count: int) -> torch.Tensor:
    """(count, 1, 2, 2) images whose pixels all equal their number, so samples can be told apart."""
    return torch.arange(start, start + count, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)


def _numbers(images: torch.Tensor) -> list[int]:
    return [int(v) for v in images[:, 0, 0, 0]]


def test_history_fills_before_it_overwrites() -> None:
    history = ImageHistory(10, (1, 2, 2))
    generator = torch.Generator().manual_seed(0)
    for start in (0, 4):
        history.push(_numbered(start, 4), generator)
    assert len(history) == 8
    assert not history.full
    history.push(_numbered(8, 2), generator)
    assert history.full
    assert _numbers(history.images) == list(range(10))


def test_full_history_overwrites_random_slots() -> None:
    history = ImageHistory(20, (1, 2, 2))
    generator = torch.Generator().manual_seed(0)
    history.push(_numbered(0, 20), generator)
    history.push(_numbered(100, 5), generator)
    stored = _numbers(history.images)
    assert len(history) == 20
    assert sorted(n for n in stored if n >= 100) == [100, 101, 102, 103, 104]
    assert [i for i, n in enumerate(stored) if n >= 100] != [0, 1, 2, 3, 4]


def test_history_samples_stored_images_at_random() -> None:
    history = ImageHistory(50, (1, 2, 2))
    generator = torch.Generator().manual_seed(0)
    history.push(_numbered(0, 30), generator)
    first = _numbers(history.sample(8, generator))
    second = _numbers(history.sample(8, generator))
    assert first != second
    assert set(first + second) <= set(range(30))
    assert len(set(first + second)) > 8


def test_history_state_round_trips_only_the_filled_part() -> None:
    history = ImageHistory(100, (1, 2, 2))
    generator = torch.Generator().manual_seed(0)
    history.push(_numbered(0, 3), generator)
    state = history.state_dict()
    assert state["images"].shape == (3, 1, 2, 2)
    restored = ImageHistory(100, (1, 2, 2))
    restored.load_state_dict(state)
    assert len(restored) == 3
    assert torch.equal(restored.images, history.images)
