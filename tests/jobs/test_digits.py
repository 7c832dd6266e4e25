"""The built-in demo model: its shipped checkpoint is accurate on held-out digits it never saw."""
from __future__ import annotations

import torch

from jobs.digits import CHECKPOINT, digits_dataset


def test_shipped_checkpoint_meets_held_out_accuracy(digits_model):
    _, _, test_images, test_labels = digits_dataset()
    with torch.no_grad():
        predicted = digits_model(test_images).argmax(1)
    accuracy = (predicted == test_labels).float().mean().item()
    assert len(test_labels) == 360
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.3f}"


def test_held_out_split_is_disjoint_and_fixed():
    train_a, _, test_a, _ = digits_dataset()
    train_b, _, test_b, _ = digits_dataset()
    torch.testing.assert_close(test_a, test_b, rtol=0, atol=0)
    flat_train = {tuple(x.flatten().tolist()) for x in train_a[:, 0, ::4, ::4]}
    overlap = sum(tuple(x.flatten().tolist()) in flat_train for x in test_a[:, 0, ::4, ::4])
    assert overlap <= 5  # sklearn's digits holds a handful of exact duplicates, nothing more


def test_demo_model_interface(digits_model):
    assert CHECKPOINT.stat().st_size < 2 * 1024 * 1024  # small enough to ship inside the package
    assert digits_model.n_classes == 10 and digits_model.input_size == 32
    assert digits_model.class_names[7] == "digit 7"
    assert digits_model.weights_id == "shipped"
    logits, acts = digits_model.taps(torch.rand(2, 3, 40, 40), ["block2"])
    assert logits.shape == (2, 10) and acts["block2"].shape == (2, 64, 10, 10)
