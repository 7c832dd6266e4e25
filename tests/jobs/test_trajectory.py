"""Recorded trajectories: what a step records is the model's output on that step's crop of the recorded image."""
import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

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


@pytest.mark.parametrize("text, message", [
    ("every:0", "trajectory: every must be at least 1, got every:0"),   # it showed the dataclass's repr
    ("every:2,k:0", "trajectory: k must be at least 1, got k:0"),
    ("every:\u00b2", "--trajectory 'every:\u00b2': expected every:N[,snapshots:M] with whole numbers"),   # int()'s
    ("every:2,every:4", "--trajectory 'every:2,every:4': every is given twice"),   # the last one silently won
    ("every:" + "1" + "0" * 20, "trajectory: every must be at most 2147483647 (a step number), got "
                                "every:100000000000000000000"),   # accepted: sweep stability's filter overflowed
])
def test_bad_trajectory_options_say_which_field_is_wrong(text, message):
    with pytest.raises(ValueError) as error:
        TrajectoryOptions.parse(text)
    assert str(error.value) == message


def test_trajectory_options_parse():
    assert TrajectoryOptions.parse("every:10,snapshots:50") == TrajectoryOptions(every=10, snapshots=50)


class HostReads(TorchFunctionMode):
    """Counts, per step of a render, the calls that make the host wait for the device on a GPU: reading values
    (`.cpu()`, `.item()`, `.tolist()`, `.numpy()`, a tensor's truth or Python number) and blocking copies (`.to`
    a device without `non_blocking=True`). Steps are told apart by the render's progress callback."""
    READS = {"cpu", "cuda", "item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"}

    def __init__(self) -> None:
        super().__init__()
        self.per_step = [0]                                          # [calls before step 1's end, step 2's, ...]

    def progress(self, done: int, total: int) -> None:
        self.per_step.append(0)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        moves = name == "to" and any(isinstance(a, (str, torch.device)) for a in (*args[1:], kwargs.get("device")))
        if name in self.READS or (moves and not kwargs.get("non_blocking", False)):
            self.per_step[-1] += 1
        return func(*args, **kwargs)


def host_reads(digits_model, trajectory) -> list[int]:
    with HostReads() as reads:
        render(digits_model, classes(3, 8), TINY, [0, 1], trajectory=trajectory, progress=reads.progress)
    return reads.per_step[:-1]                                       # the end of the render copies results back


def test_recording_adds_no_wait_for_the_device_to_any_step(digits_model):
    """On a GPU a read of a value, or a blocking copy, drains the queue of work the host runs ahead with: the
    recorded steps must add none (outputs stay on the device to the end; snapshots are copied without waiting)."""
    plain = host_reads(digits_model, None)
    assert host_reads(digits_model, TrajectoryOptions(every=1, snapshots=1)) == plain
    assert host_reads(digits_model, TrajectoryOptions(every=2, snapshots=2)) == plain


def test_the_records_are_the_steps_own_outputs_losses_and_images_bit_for_bit(digits_model, seen_inputs):
    """The reference: the network's output at each step (a forward hook), the class loss `|C - O_c|` computed from
    it, and the first octave's input itself (no crop there)."""
    outputs = []
    handle = digits_model.net.register_forward_hook(lambda module, args, out: outputs.append(out.detach().clone()))
    try:
        out = render(digits_model, classes(3, 8), TINY, [0, 1], trajectory=TrajectoryOptions(every=1, snapshots=1))
    finally:
        handle.remove()
    trajectory = out.trajectory
    assert trajectory.outputs.dtype == trajectory.losses.dtype == torch.float32
    for t in range(4):
        assert torch.equal(trajectory.outputs[t], outputs[t].float()), t
        picked = outputs[t].float()[[0, 1], [3, 8]]                                   # each element's target
        assert torch.equal(trajectory.losses[t], (TINY.C - picked).abs()), t
        assert trajectory.snapshots[t].dtype == torch.float32 and trajectory.snapshots[t].device.type == "cpu"
    for t in (0, 1):                                                                  # the first octave: whole images
        assert torch.equal(trajectory.snapshots[t], seen_inputs[t]), t


def reference_to_uint8(images: torch.Tensor) -> np.ndarray:
    """`jobs.kinds.to_uint8` as it was: a new tensor per operation, a permuted (strided) result."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def reference_trajectory_records(recorded, specs, k: int = 5) -> dict:
    """`jobs.kinds.trajectory_records` as it was: each element's arrays cut from the batch's one by one."""
    from jobs.kinds import TrajectoryRecord
    outputs = recorded.outputs                                                # T x B x C
    targets = torch.tensor([s.target for s in specs], dtype=torch.long)     # B
    has_target = targets >= 0
    picked = outputs.gather(2, targets.clamp(min=0)[None, :, None].expand(outputs.shape[0], -1, 1))[..., 0]  # T x B
    ranks = 1 + (outputs > picked[..., None]).sum(-1)                         # T x B
    top = outputs.topk(min(k, outputs.shape[-1]), dim=-1)                     # T x B x k
    labels = outputs.argmax(-1)                                               # T x B
    shots = {t: reference_to_uint8(x) for t, x in recorded.snapshots.items()}
    steps = recorded.steps.numpy().astype(np.int32)
    index = {int(t): r for r, t in enumerate(recorded.steps.tolist())}
    return {j: TrajectoryRecord(
        steps=steps, octaves=recorded.octaves.numpy().astype(np.int32),
        losses=recorded.losses[:, j].numpy().astype(np.float32),
        target_logit=np.where(has_target[j].item(), picked[:, j].numpy(), np.nan).astype(np.float32),
        target_rank=np.where(has_target[j].item(), ranks[:, j].numpy(), -1).astype(np.int32),
        labels=labels[:, j].numpy().astype(np.int32),
        topk_classes=top.indices[:, j].numpy().astype(np.int32),
        topk_logits=top.values[:, j].numpy().astype(np.float32),
        snapshots={t: (shots[t][j], outputs[index[t], j].numpy().astype(np.float32)) for t in shots})
        for j in range(len(specs))}


def test_records_and_their_uint8_snapshots_are_the_reference_ones_value_for_value():
    """Cut from B x T arrays computed once, each element's record is what the element-by-element code made."""
    from jobs.kinds import to_uint8, trajectory_records
    from jobs.render import Trajectory
    g = torch.Generator().manual_seed(0)
    steps, n_classes = torch.tensor([0, 3, 6, 9, 12]), 20                     # T = 5
    outputs = torch.randn(5, 6, n_classes, generator=g)                       # T x B x C
    outputs[2, 1, :4] = outputs[2, 1, 7]                                      # ties for the rank and the top-k
    images = torch.randn(6, 3, 9, 7, generator=g) / 2 + 0.5                  # beyond [0, 1] too
    images[0, 0, 0, :4] = torch.tensor([0.5 / 255, 1.5 / 255, 254.5 / 255, 1.0])  # halves: rounding to even
    trajectory = Trajectory(steps, torch.tensor([0, 0, 0, 1, 1]), outputs, torch.randn(5, 6, generator=g),
                            {0: images, 9: images.flip(-1)})
    specs = [JobSpec("octave", 3), JobSpec("dream", -1, variant="mixed4a"), JobSpec("opposite", 19),
             JobSpec("addition", 0, partner=4, variant="merge"), JobSpec("octave", 7), JobSpec("octave", 11)]
    assert np.array_equal(to_uint8(images), reference_to_uint8(images)) and to_uint8(images).flags.c_contiguous
    records, expected = trajectory_records(trajectory, specs, 3), reference_trajectory_records(trajectory, specs, 3)
    assert sorted(records) == sorted(expected) == list(range(6))
    for j, record in records.items():
        for name in ("steps", "octaves", "losses", "target_logit", "target_rank", "labels", "topk_classes",
                     "topk_logits"):
            value, reference = getattr(record, name), getattr(expected[j], name)
            assert value.dtype == reference.dtype and value.shape == reference.shape, (j, name)
            assert np.array_equal(value, reference, equal_nan=True), (j, name)
        assert sorted(record.snapshots) == sorted(expected[j].snapshots) == [0, 9]
        for t, (image, values) in record.snapshots.items():
            assert image.dtype == np.uint8 and np.array_equal(image, expected[j].snapshots[t][0]), (j, t)
            assert values.dtype == np.float32 and np.array_equal(values, expected[j].snapshots[t][1]), (j, t)
