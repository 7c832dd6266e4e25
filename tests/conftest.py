"""Shared fixtures: the tiny demo model (trained and random) used by tests of all three packages."""
from __future__ import annotations

import pytest
import torch

from jobs.models import load_model


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True, scope="session")
def _offline_and_quiet():
    # Never reach for the network in tests, and keep torch on the two cores we have.
    import os
    os.environ.setdefault("CLASSWEEP_OFFLINE", "1")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


@pytest.fixture(scope="session")
def digits_model():
    """The shipped demo classifier (trained), on CPU."""
    return load_model("digits", "DEFAULT")


@pytest.fixture(scope="session")
def random_digits_model():
    """The demo architecture with seeded random weights: cheap plumbing checks."""
    return load_model("digits", "random", seed=0)
