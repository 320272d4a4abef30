"""Trainer tests run torch on one thread: tiny networks run several times faster than on two busy ones."""

import pytest


@pytest.fixture(autouse=True)
def every_test_on_one_torch_thread(one_torch_thread: None) -> None:
    """Applies tests/conftest.py's `one_torch_thread` to every test in this folder."""
