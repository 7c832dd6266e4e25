"""Shared fixtures: the tiny demo model (trained and random) used by tests of all three packages, and its images of
the class jobs under the `digits` preset (the suite's longest computation, made once per session)."""
from __future__ import annotations

import itertools
import os

import pytest

# The checks the fault tests share (tests/sweep/sweep_fakes.py) get pytest's assert messages, under both the names
# that test modules import that file by.
pytest.register_assert_rewrite("sweep_fakes", "tests.sweep.sweep_fakes")

DIGIT_PAIRS = list(itertools.combinations(range(10), 2))
# The additions every run checks: 5 of the 45 pairs, each digit in one (with the digit five away). The slow tests
# add the other 40 pairs (`digits_all_additions`); the 15 pairs every run used to check cost 11 s more CPU.
SAMPLED_PAIRS = [(a, a + 5) for a in range(5)]


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


# `make test` runs three test processes (pytest-xdist), a module's tests on one process (`--dist loadfile`: Ray
# starts once per module). Three, on two cores: the actor tests wait on Ray much of their time, and a third process
# fills those waits (measured on this 2-core machine: 4m06s-4m22s with two processes, 3m44s with three or four).
# The longest modules, longest first (their time in `make test`, measured): they run first, so that the processes
# end on short modules instead of one of them alone on a long one. Most of them start Ray and real actors.
LONG_FIRST = tuple(f"tests/{name}.py" for name in (
    "sweep/test_driver", "sweep/test_object_stores", "sweep/test_image_jobs_sweep", "sweep/test_fleet_actors",
    "sweep/test_score", "sweep/test_faults", "sweep/test_cluster", "analysis/test_report", "jobs/test_kinds",
    "sweep/test_hostile", "sweep/test_readers", "jobs/test_image_jobs", "analysis/test_image_figures",
    "sweep/test_readme_commands", "benchmarks/test_bench_scripts", "sweep/test_cli", "sweep/test_lease",
    "analysis/test_transfer", "jobs/test_digits_resnet"))


def pytest_configure(config):
    # pytest-xdist hands out the modules with the most tests first unless told not to, which would undo LONG_FIRST.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


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
    # only lose time to a second thread's hand-offs, worse on a busy machine or under `make test`'s three processes
    # (measured: test_digits_resnet 11 s and 8 s with one thread, 59 s and 51 s with two; the workers run one too).
    import torch   # here, not at the top: `make test`'s controlling process runs no test and needs no torch
    os.environ.setdefault("CLASSWEEP_OFFLINE", "1")
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def digits_model():
    """The shipped demo classifier (trained), on CPU."""
    from jobs.models import load_model
    return load_model("digits", "DEFAULT")


@pytest.fixture(scope="session")
def random_digits_model():
    """The demo architecture with seeded random weights: cheap plumbing checks."""
    from jobs.models import load_model
    return load_model("digits", "random", seed=0)


def _class_images(model, jobs: tuple[str, ...], pairs) -> dict:
    """JobSpec -> result of `model` under the `digits` preset, seed 0, in one run_batch call: `jobs`' 10 classes
    and the additions of `pairs`."""
    from jobs.kinds import JobSpec, run_batch
    from jobs.schedules import load_schedule
    specs = [JobSpec(job, c) for job in jobs for c in range(10)]
    specs += [JobSpec("addition", a, 0, v, b) for a, b in pairs for v in ("merge", "juxtapose")]
    return {r.spec: r for r in run_batch(model, specs, load_schedule("digits"))}


def once_per_run(tmp_path_factory, name: str, make):
    """`make()`, made by the first test process of this run that asks and read back by the others (pytest-xdist's
    recipe for a session fixture made once: a file under the run's shared temporary folder, behind a lock)."""
    import pickle
    from filelock import FileLock
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return make()
    path = tmp_path_factory.getbasetemp().parent / f"{name}.pickle"
    with FileLock(f"{path}.lock"):
        if not path.exists():
            path.write_bytes(pickle.dumps(make()))
        return pickle.loads(path.read_bytes())


@pytest.fixture(scope="session")
def digits_octaves(digits_model, tmp_path_factory):
    """JobSpec -> result of the trained demo model's 10 octave images (the `digits` preset, seed 0): what
    test_digits_resnet and the bf16 check need, without the rest of `digits_class_images` when that fixture runs
    in another test process; made once per run, whichever test process asks first (`once_per_run`)."""
    return once_per_run(tmp_path_factory, "digits_octaves", lambda: _class_images(digits_model, ("octave",), ()))


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
