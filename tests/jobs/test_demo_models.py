"""The demo models' records: one per model, read by the zoo, the schedules and the training script alike."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jobs.demo_models import DEFAULT_DEMO, DEMO_MODELS
from jobs.models import default_dream_layer, list_models, load_model
from jobs.schedules import default_schedule, default_schedules, load_schedule
from jobs.train_digits import normalised

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_training_and_inference_normalise_the_input_alike(name):
    """The zoo's Classifier feeds its network what the training script fed it: the shipped checkpoints see the
    input scaled as they were trained."""
    demo, model = DEMO_MODELS[name], load_model(name)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(images), model.net(normalised(images, demo)))


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_a_record_is_what_the_zoo_and_the_schedules_use(name):
    demo, model = DEMO_MODELS[name], load_model(name, "random")
    assert type(model.net) is type(demo.network()) and demo.checkpoint.is_file()
    assert model.layer_names[:len(demo.layers)] == demo.layers and default_dream_layer(model) == demo.dream_layer
    assert default_schedules(name).name == demo.preset and default_schedule(name) == load_schedule(demo.preset)
    assert name in {info.name for info in list_models()}
    assert demo.train_command.endswith("train_digits" if name == DEFAULT_DEMO else f"--arch {name}")


def test_reading_the_records_imports_no_torch():
    """The schedules (which the planner reads) use the records without loading torch: the factory is a string."""
    code = ("import sys; from jobs.demo_models import DEMO_MODELS; from jobs.schedules import default_schedules; "
            "[default_schedules(n) for n in DEMO_MODELS]; print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stdout + result.stderr
