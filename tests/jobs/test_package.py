"""The `jobs` package's public names: each one resolves to the object of the module that defines it."""
from __future__ import annotations

import importlib

import pytest

import jobs


@pytest.mark.parametrize("name", jobs.__all__)
def test_every_public_name_resolves(name):
    value = getattr(jobs, name)
    home = jobs._HOME.get(name)
    assert value is (importlib.import_module(home).__dict__[name] if home else importlib.import_module(f"jobs.{name}"))


def test_the_schedule_and_trajectory_names_are_public():
    assert {"ScheduleSet", "default_schedules", "load_schedule_or_set", "TrajectoryOptions"} <= set(jobs.__all__)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        jobs.nothing  # noqa: B018
