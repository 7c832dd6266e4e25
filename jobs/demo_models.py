"""The built-in demo models, one frozen record each: what builds the network, how its input is normalised, its
shipped checkpoint, its layers, the schedule preset it runs, and how the checkpoint was trained.

The model zoo (`jobs.models`), the schedules (`jobs.schedules`) and the training script (`jobs.train_digits`) all
read these records, so that training and inference normalise the input with the same mean and std. Light on
purpose (no torch at import: the schedules and the planner read it): `build` names the network's factory as
"module:attribute", imported when `network()` is called.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"   # the shipped checkpoints, `{name}.pt`
TRAIN = "python -m jobs.train_digits"              # the command that reproduces a checkpoint


@dataclass(frozen=True)
class DemoModel:
    """A demo network on scikit-learn's digits (RGB in [0, 1], ten classes: `jobs.digits`)."""
    name: str                        # the zoo name (`sweep models`)
    build: str                       # "module:factory" of the untrained network (drawn from torch's global generator)
    layers: tuple[str, ...]          # hidden layers offered first (`Classifier.suggested_layers`)
    dream_layer: str                 # the layer a plain `dream` raises (a middle one)
    seed: int                        # training: initialisation, minibatch order, augmentation and PGD starts
    epochs: int                      # training epochs of the shipped checkpoint
    preset: str = "digits"           # the schedule preset every job of this model runs
    mean: float = 0.5                # input (x - mean) / std on every channel, in training and inference alike:
    std: float = 0.5                 #   the digits are grey strokes on black, shifted to zero mean

    @property
    def checkpoint(self) -> Path:
        """Where the shipped weights live."""
        return WEIGHTS_DIR / f"{self.name}.pt"

    @property
    def train_command(self) -> str:
        """The command that rebuilds the shipped checkpoint."""
        return TRAIN if self.name == DEFAULT_DEMO else f"{TRAIN} --arch {self.name}"

    def network(self):
        """A new, untrained network (`torch.nn.Module`); imports its module, and torch, on first use."""
        module, _, factory = self.build.partition(":")
        return getattr(importlib.import_module(module), factory)()


DEMO_MODELS = {m.name: m for m in (
    DemoModel("digits", "jobs.digits:DigitsNet", ("block1", "block2", "block3"), dream_layer="block2",
              seed=0, epochs=30),
    # Residual blocks, another seed and its own training run: shares no weights or initialisation with `digits`
    # (for scoring one model's images with another). 20 epochs, not 30, train in a few CPU minutes and still reach
    # 98% held-out accuracy.
    DemoModel("digits-resnet", "jobs.digits_resnet:DigitsResNet", ("stem", "layer1", "layer2", "layer3"),
              dream_layer="layer2", seed=1, epochs=20),
)}
DEFAULT_DEMO = "digits"   # the demo model of `sweep demo`, and the training script's default
