"""Shared fixtures: the tiny demo model (trained and random) used by tests of all three packages, and its images of
the class jobs under the `digits` preset (the suite's longest computation, made once per session)."""
from __future__ import annotations

import itertools

import pytest
import torch

from jobs.models import load_model

# The checks the fault tests share (tests/sweep/sweep_fakes.py) get pytest's assert messages, under both the names
# that test modules import that file by.
pytest.register_assert_rewrite("sweep_fakes", "tests.sweep.sweep_fakes")

DIGIT_PAIRS = list(itertools.combinations(range(10), 2))
# The additions every run checks: 15 of the 45 pairs, each digit in three (its two neighbours on the ring of the ten
# digits, and the digit five away). The slow tests add the other 30 pairs (`digits_all_additions`).
SAMPLED_PAIRS = sorted({tuple(sorted((a, (a + 1) % 10))) for a in range(10)} | {(a, a + 5) for a in range(5)})


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


# The modules that start Ray and real actors take most of the suite's time: they run first, so that the two test
# processes (`make test`: pytest-xdist, one module to a process) do not end with one of them alone on a long module.
LONG_FIRST = ("tests/sweep/test_driver.py", "tests/sweep/test_object_stores.py", "tests/sweep/test_faults.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: LONG_FIRST.index(item.nodeid.split("::")[0])
               if item.nodeid.split("::")[0] in LONG_FIRST else len(LONG_FIRST))   # stable: the rest keep order
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True, scope="session")
def _offline_and_quiet():
    # Never reach for the network in tests, and one torch thread per test process: the tiny demo nets at 32-40 px
    # only lose time to a second thread's hand-offs, worse on a busy machine or under `make test`'s two processes
    # (measured: test_digits_resnet 11 s and 8 s with one thread, 59 s and 51 s with two; the workers run one too).
    import os
    os.environ.setdefault("CLASSWEEP_OFFLINE", "1")
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def digits_model():
    """The shipped demo classifier (trained), on CPU."""
    return load_model("digits", "DEFAULT")


@pytest.fixture(scope="session")
def random_digits_model():
    """The demo architecture with seeded random weights: cheap plumbing checks."""
    return load_model("digits", "random", seed=0)


def _class_images(model, jobs: tuple[str, ...], pairs) -> dict:
    """JobSpec -> result of `model` under the `digits` preset, seed 0, in one run_batch call: `jobs`' 10 classes
    and the additions of `pairs`."""
    from jobs.kinds import JobSpec, run_batch
    from jobs.schedules import load_schedule
    specs = [JobSpec(job, c) for job in jobs for c in range(10)]
    specs += [JobSpec("addition", a, 0, v, b) for a, b in pairs for v in ("merge", "juxtapose")]
    return {r.spec: r for r in run_batch(model, specs, load_schedule("digits"))}


@pytest.fixture(scope="session")
def digits_octaves(digits_model):
    """JobSpec -> result of the trained demo model's 10 octave images (the `digits` preset, seed 0): what
    test_digits_resnet and the bf16 check need, without the rest of `digits_class_images` when that fixture runs
    in another test process."""
    return _class_images(digits_model, ("octave",), ())


@pytest.fixture(scope="session")
def digits_class_images(digits_model, digits_octaves):
    """JobSpec -> result of the trained demo model under its `digits` preset, seed 0: the 10 octaves, 10 opposites
    and the SAMPLED_PAIRS x 2 addition variants (test_kinds checks their quality). The octaves come from their own
    run: an image is the same alone or in any batch, bit for bit on the CPU (test_render)."""
    return {**digits_octaves, **_class_images(digits_model, ("opposite",), SAMPLED_PAIRS)}


@pytest.fixture(scope="session")
def digits_all_additions(digits_model, digits_class_images):
    """`digits_class_images` and the additions of the other 30 pairs: all 45 pairs x 2 variants (slow tests)."""
    rest = [pair for pair in DIGIT_PAIRS if pair not in SAMPLED_PAIRS]
    return {**digits_class_images, **_class_images(digits_model, (), rest)}
