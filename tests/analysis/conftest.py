"""Fixtures of the analysis tests: the hand-designed store of `handmade.py`."""
import pytest

from handmade import make_small_store


@pytest.fixture
def small_store(tmp_path) -> str:
    return make_small_store(tmp_path / "store")
