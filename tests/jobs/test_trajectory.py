"""Recorded trajectories: what a step records is the model's output on that step's crop of the recorded image."""
import numpy as np
import pytest
import torch

from jobs import objectives as obj
from jobs.kinds import JobSpec, run_batch
from jobs.render import TrajectoryOptions, render
from jobs.schedules import load_schedule

TINY = load_schedule("tiny")   # 2 + 2 steps; the second octave takes 32-px crops of a 40-px image


def classes(*cs):
    return [obj.class_logit(c, 200.0, absolute=True) for c in cs]


@pytest.fixture
def seen_inputs(digits_model):
    """Every input the network is given, in order (a forward pre-hook: the exact model input of each step)."""
    seen = []
    handle = digits_model.net.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    yield seen
    handle.remove()


def windows(image: torch.Tensor, side: int) -> list[torch.Tensor]:
    """All side x side windows of a B x 3 x H x W image."""
    h, w = image.shape[-2:]
    return [image[..., r:r + side, c:c + side] for r in range(h - side + 1) for c in range(w - side + 1)]


def test_recorded_outputs_match_the_model_on_the_snapshot_crop_of_that_step(digits_model, seen_inputs):
    out = render(digits_model, classes(3, 8), TINY, [0, 1], trajectory=TrajectoryOptions(every=1, snapshots=1))
    trajectory = out.trajectory
    assert trajectory.steps.tolist() == [0, 1, 2, 3] and trajectory.octaves.tolist() == [0, 0, 1, 1]
    assert len(seen_inputs) == 4                                    # no extra forward pass for the records
    with torch.no_grad():
        for t in range(4):
            model_input = seen_inputs[t]                             # 2 x 3 x 32 x 32
            direct = digits_model.net(model_input)
            assert torch.allclose(trajectory.outputs[t], direct, atol=1e-5), t
            snapshot = trajectory.snapshots[t]                       # the image the step cropped from
            for j in range(2):                                       # each element's crop is a window of it
                assert any(torch.equal(window, model_input[j]) for window in windows(snapshot[j], 32)), (t, j)
            if trajectory.octaves[t] == 0:                           # no crop: the snapshot itself is the input
                with digits_model.input_as(TINY.input):
                    assert torch.allclose(digits_model(snapshot), trajectory.outputs[t], atol=1e-5)
    assert torch.equal(trajectory.losses[-1], out.losses)           # the last step's loss is the render's


def test_job_records_are_the_rank_argmax_and_topk_of_the_recorded_outputs(digits_model):
    specs = [JobSpec("octave", 3, seed=0), JobSpec("opposite", 5, seed=1)]
    options = TrajectoryOptions(every=1, snapshots=2, k=3)
    results = run_batch(digits_model, specs, TINY, trajectory=options)
    outputs = render(digits_model, [obj.class_logit(3, TINY.C, absolute=TINY.absolute), obj.opposite(5)], TINY,
                     [0, 1], trajectory=options).trajectory.outputs.numpy()   # the same render again: 4 x 2 x 10
    for j, (spec, result) in enumerate(zip(specs, results)):
        record, values = result.trajectory, outputs[:, j]
        assert record.labels.tolist() == values.argmax(1).tolist()
        assert record.target_logit == pytest.approx(values[:, spec.target])
        order = np.argsort(-values, axis=1, kind="stable")
        assert record.target_rank.tolist() == [int(np.where(row == spec.target)[0][0]) + 1 for row in order]
        assert record.topk_classes.tolist() == order[:, :3].tolist()
        assert sorted(record.snapshots) == [0, 2]
        image, logits = record.snapshots[2]
        assert image.dtype == np.uint8 and image.shape == (40, 40, 3)
        assert logits == pytest.approx(values[2])


def test_recording_changes_no_image_and_is_off_by_default(digits_model):
    plain = render(digits_model, classes(2, 7), TINY, [4, 5])
    recorded = render(digits_model, classes(2, 7), TINY, [4, 5], trajectory=TrajectoryOptions(every=2))
    assert plain.trajectory is None
    assert torch.equal(plain.images, recorded.images)
    assert recorded.trajectory.steps.tolist() == [0, 2] and recorded.trajectory.snapshots == {}
    alone = render(digits_model, classes(2), TINY, [4], trajectory=TrajectoryOptions(every=2))
    assert alone.trajectory.outputs.shape == (2, 1, 10)            # a batch of one keeps its own records only
    assert torch.equal(alone.trajectory.outputs[:, 0], recorded.trajectory.outputs[:, 0])


@pytest.mark.parametrize("text", ["every:0", "every:2,snapshots:3", "snapshots:4", "every:x", "often:2", ""])
def test_bad_trajectory_options_are_refused(text):
    with pytest.raises(ValueError):
        TrajectoryOptions.parse(text)


def test_trajectory_options_parse():
    assert TrajectoryOptions.parse("every:10,snapshots:50") == TrajectoryOptions(every=10, snapshots=50)
