"""Objectives: values and gradients against hand computation, the algebra, batched evaluation."""
import math

import pytest
import torch

from jobs import objectives as obj
from jobs.objectives import Objective, Outputs, Step


def outputs(logits, activations=None, image=None, step=None):
    logits = torch.as_tensor(logits, dtype=torch.float32)
    k = logits.shape[0]
    image = torch.zeros(k, 3, 2, 2) if image is None else image
    return Outputs(logits, activations or {}, image, step or Step(0, 0, 10, 0, 10))


LOGITS = [[1.0, 5.0, -2.0, 0.5], [3.0, -1.0, 4.0, 2.0]]


def test_class_logit_values_match_hand_computation():
    out = outputs(LOGITS)
    assert obj.class_logit(1, 200)(out.element(0)).item() == pytest.approx(195.0)
    assert obj.class_logit(2, 3.0, absolute=True)(out.element(1)).item() == pytest.approx(1.0)  # |3 - 4|
    assert obj.class_logit(2, 3.0)(out.element(1)).item() == pytest.approx(-1.0)
    assert obj.class_logit(0)(out.element(1)).item() == pytest.approx(-3.0)                      # C=None: -O_c


def test_opposite_is_the_logit_and_its_gradient_raises_nothing_but_lowers_the_class():
    logits = torch.tensor(LOGITS, requires_grad=True)
    out = Outputs(logits, {}, torch.zeros(2, 3, 2, 2), Step(0, 0, 1, 0, 1))
    loss = obj.opposite(3)(out.element(1))
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    expected = torch.zeros(2, 4)
    expected[1, 3] = 1.0
    assert torch.equal(logits.grad, expected)


def test_algebra_against_hand_computation():
    out = outputs(LOGITS).element(0)            # logits 1, 5, -2, 0.5
    a, b, c = obj.class_logit(0, 10), obj.class_logit(1, 10), obj.class_logit(2, 10)   # 9, 5, 12
    assert (a + b)(out).item() == pytest.approx(14)
    assert (a - b)(out).item() == pytest.approx(4)
    assert (2 * a)(out).item() == pytest.approx(18)
    assert (a * 0.5)(out).item() == pytest.approx(4.5)
    assert (a / 3)(out).item() == pytest.approx(3)
    assert (-a)(out).item() == pytest.approx(-9)
    assert (a + 1.5)(out).item() == pytest.approx(10.5)
    assert (1 - a)(out).item() == pytest.approx(-8)
    assert sum([a, b, c])(out).item() == pytest.approx(26)
    assert (2 * a - b / 5 + c)(out).item() == pytest.approx(18 - 1 + 12)


def test_descriptions_are_readable():
    assert obj.class_logit(3, 200, absolute=True).description == "|200 - logit[3]|"
    assert obj.opposite(7).description == "logit[7]"
    assert obj.merge(1, 2, 200, absolute=True).description == "merge(|200 - logit[1]|, |200 - logit[2]|)"
    assert "juxtapose" in obj.juxtapose(1, 2).description
    assert (obj.class_logit(1) * 2).description == "2 * (-logit[1])"
    assert obj.channel("block2", [0, 4]).description == "sum(200 - block2[0, 4])"
    assert "fade_out(step)" in obj.interpolate(1, 2).description


def test_merge_is_the_sum_of_both_class_losses():
    out = outputs(LOGITS).element(1)             # 3, -1, 4, 2
    merged = obj.merge(0, 2, 10.0, absolute=True)
    assert merged(out).item() == pytest.approx(abs(10 - 3) + abs(10 - 4))


def test_juxtapose_follows_only_the_weaker_class():
    logits = torch.tensor([[2.0, 7.0, 0.0], [5.0, 5.0, 0.0]], requires_grad=True)
    out = Outputs(logits, {}, torch.zeros(2, 3, 2, 2), Step(0, 0, 1, 0, 1))
    j = obj.juxtapose(0, 1, 10.0)
    loss0 = j(out.element(0))                     # O_0 = 2 is weaker: loss 10 - 2, gradient on class 0 only
    assert loss0.item() == pytest.approx(8.0)
    (g0,) = torch.autograd.grad(loss0, logits)
    assert g0[0].tolist() == [-1.0, 0.0, 0.0]
    (g1,) = torch.autograd.grad(j(out.element(1)), logits)   # tie: the article pushes the second class
    assert g1[1].tolist() == [0.0, -1.0, 0.0]


def test_mix_weights_follow_the_step():
    out = outputs(LOGITS).element(0)              # a = 10 - 1 = 9, b = 10 - 5 = 5
    a, b = obj.class_logit(0, 10), obj.class_logit(1, 10)
    fixed = obj.mix(a, b, 0.25, 0.75)
    assert fixed(out).item() == pytest.approx(0.25 * 9 + 0.75 * 5)
    inter = obj.interpolate(a, b)
    for t in (0, 3, 9):
        step_out = Outputs(out.logits, {}, out.image, Step(0, t, 10, t, 10))
        assert inter(step_out).item() == pytest.approx((1 - t / 10) * 9 + (t / 10) * 5)


def test_interpolation_from_a_later_start_holds_class_a_until_then():
    out = outputs(LOGITS).element(0)              # a = 10 - 1 = 9, b = 10 - 5 = 5
    inter = obj.interpolate(0, 1, 10.0, start=4)  # q = 10 - 4 steps
    for t, n in ((0, 0), (4, 0), (7, 3), (9, 5)):
        step_out = Outputs(out.logits, {}, out.image, Step(0, t, 10, t, 10))
        assert inter(step_out).item() == pytest.approx((1 - n / 6) * 9 + (n / 6) * 5)
    assert obj.fades(4) is obj.fades(4) and inter.key == obj.interpolate(2, 3, 10.0, start=4).key   # one group


def test_l1_penalty_on_the_input():
    image = torch.tensor([[[[0.5, -1.0], [2.0, 0.0]]] * 3])          # 1 x 3 x 2 x 2, |.| sums to 3.5 per channel
    out = outputs([[0.0, 0.0, 0.0, 0.0]], image=image).element(0)
    assert obj.l1(0.001)(out).item() == pytest.approx(0.001 * 3 * 3.5)
    assert (obj.class_logit(0, 1.0) + obj.l1(2.0))(out).item() == pytest.approx(1.0 + 21.0)


def test_layer_and_channel_objectives_read_hidden_activations():
    act = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    out = outputs(LOGITS, activations={"block2": act})
    layer, chan = obj.layer("block2", C=0.0), obj.channel("block2", [0, 2], C=1.0)
    assert layer.layers == {"block2"} and chan.layers == {"block2"}
    assert layer(out.element(1)).item() == pytest.approx(-act[1].sum().item())
    assert chan(out.element(0)).item() == pytest.approx((1.0 - act[0, [0, 2]]).sum().item())
    assert obj.layers_needed([chan, obj.class_logit(1), obj.layer("block1")]) == ["block1", "block2"]
    assert (chan + obj.class_logit(0)).layers == {"block2"}


def test_batched_evaluation_equals_element_by_element():
    torch.manual_seed(0)
    logits = torch.randn(6, 5)
    act = torch.randn(6, 4, 3, 3)
    out = outputs(logits, activations={"b": act})
    objectives = [obj.class_logit(1, 200, absolute=True), obj.class_logit(4, 200, absolute=True), obj.opposite(2),
                  obj.juxtapose(0, 3, 200.0, absolute=True), obj.merge(2, 4), obj.channel("b", 1) + obj.l1(0.1)]
    batched = obj.ObjectiveBatch(objectives)(out)
    single = torch.stack([o(out.element(j)) for j, o in enumerate(objectives)])
    assert torch.allclose(batched, single)
    # class-logit objectives for different classes share a key: one group
    assert objectives[0].key == objectives[1].key and objectives[0].params != objectives[1].params


def test_custom_per_element_objective():
    custom = Objective(lambda o: o.logits.max() * 2, "2 max logit")
    out = outputs(LOGITS)
    assert custom(out.element(1)).item() == pytest.approx(8.0)
    assert obj.ObjectiveBatch([custom, custom])(out).tolist() == [10.0, 8.0]
    nan = Objective(lambda o: o.logits[0] * math.nan, "nan")
    assert torch.isnan(nan(out.element(0)))


def test_logit_toward_tracks_a_moving_target():
    def halfway(step):
        return 10.0 * step.fraction
    objective = obj.logit_toward(2, halfway)
    early, late = Step(0, 1, 10, 1, 10), Step(0, 5, 10, 5, 10)
    assert objective(outputs(LOGITS, step=early).element(1)).item() == pytest.approx(abs(1.0 - 4.0))
    assert objective(outputs(LOGITS, step=late).element(1)).item() == pytest.approx(abs(5.0 - 4.0))
    assert objective.description == "|halfway(step) - logit[2]|"


def test_dream_scales_a_whole_layer_by_its_feature_count_and_not_chosen_maps():
    act = torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).reshape(2, 4, 3, 3)
    out = outputs(LOGITS, activations={"b": act})
    assert obj.dream("b")(out.element(1)).item() == pytest.approx(-act[1].sum().item() / 4)
    assert obj.dream("b", [0, 3])(out.element(0)).item() == pytest.approx(-act[0, [0, 3]].sum().item())
    assert obj.dream("b").layers == {"b"}
    assert obj.dream("b").description == "-sum(b) / features" and obj.dream("b", [0, 3]).description == "-sum(b[0, 3])"


@pytest.mark.parametrize("maps", [None, [0, 3]])
def test_dream_is_bit_for_bit_the_negated_sum_and_its_gradient(maps):
    """The dream objectives are `layer` / `channel` with C = 0; `0 - z` is exactly `-z`, so the loss and the
    gradient are those of `-sum(z) / F` and `-sum(z_f)` to the bit (images made before stay the same)."""
    torch.manual_seed(0)
    act = torch.randn(3, 5, 4, 4, requires_grad=True)                              # F = 5: 1/F is inexact
    out = outputs(torch.zeros(3, 2), activations={"b": act})
    loss = obj.ObjectiveBatch([obj.dream("b", maps)] * 3)(out)                       # 3
    (grad,) = torch.autograd.grad(loss.sum(), act)
    chosen = act if maps is None else act[:, maps]
    expected = -chosen.flatten(1).sum(1) / (act.shape[1] if maps is None else 1)
    (expected_grad,) = torch.autograd.grad(expected.sum(), act)
    assert torch.equal(loss, expected) and torch.equal(grad, expected_grad)
