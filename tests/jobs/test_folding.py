"""Batch norms folded into convolutions (`jobs.folding`, `Classifier.fold_batchnorm`): the same network up to float
rounding, outputs, input gradients and every hooked layer's value, on the article networks with batch norm
statistics that are not the identity (a fresh BatchNorm2d is: mean 0, variance 1, gamma 1, beta 0)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from jobs.folding import fold_batchnorm, foldable_pairs
from jobs.models import load_model

# name -> (side of the test images, conv + batch norm pairs its forward pass runs)
NETWORKS = {"googlenet": (64, 57), "inception_v3": (80, 94), "resnet18": (64, 20)}


def with_batch_norm_statistics(model, seed: int = 1):
    """`model` with every BatchNorm2d's running mean and variance and its affine parameters drawn at random."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in model.modules():
            if isinstance(norm, nn.BatchNorm2d):
                n = norm.num_features
                norm.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                norm.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                norm.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                norm.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return model


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def networks(request):
    """(name, as loaded, folded): He-initialised weights, through which an input gradient survives."""
    plain = with_batch_norm_statistics(load_model(request.param, "random-he"))
    folded = copy.deepcopy(plain)
    folded.fold_batchnorm()
    return request.param, plain, folded


def outputs_and_input_gradients(model, images: torch.Tensor, weights: torch.Tensor):
    images = images.clone().requires_grad_(True)                       # B x 3 x S x S
    logits = model(images)                                             # B x 1000
    (gradient,) = torch.autograd.grad((logits * weights).sum(), images)
    return logits.detach(), gradient


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).abs().max() / reference.abs().max())


def test_every_batch_norm_after_a_convolution_is_folded(networks):
    name, plain, folded = networks
    side, pairs = NETWORKS[name]
    assert len(folded.folded) == pairs and not plain.folded
    remaining = [n for n, m in folded.net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    # InceptionV3's auxiliary head does not run in eval mode (its tap runs it on Mixed_6e): it stays as it is
    assert remaining == (["AuxLogits.conv0.bn", "AuxLogits.conv1.bn"] if name == "inception_v3" else [])
    assert all(isinstance(folded.net.get_submodule(norm), nn.Identity) for norm in folded.folded.values())


def test_the_folded_network_gives_the_same_outputs_and_input_gradients(networks):
    """float32: outputs within rounding. Input gradients of a network of ReLUs and max pools are piecewise: rounding
    may switch a near-tie of a max pool (one input in six moved GoogLeNet's gradient by 2% in L2), so they are
    compared in float64, where the two networks agree to rounding."""
    name, plain, folded = networks
    side = NETWORKS[name][0]
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    weights = torch.randn(2, 1000, generator=torch.Generator().manual_seed(1))
    logits, _ = outputs_and_input_gradients(plain, images, weights)
    assert relative_error(outputs_and_input_gradients(folded, images, weights)[0], logits) < 1e-5
    plain64 = copy.deepcopy(plain).double()
    folded64 = copy.deepcopy(plain64)
    assert len(folded64.fold_batchnorm()) == NETWORKS[name][1]
    (logits, gradient), (logits_f, gradient_f) = (outputs_and_input_gradients(m, images.double(), weights.double())
                                                  for m in (plain64, folded64))
    assert relative_error(logits_f, logits) < 1e-10 and relative_error(gradient_f, gradient) < 1e-10
    assert gradient.abs().max() > 0


def test_every_hooked_layer_gives_the_same_value_and_a_folded_convolution_is_refused(networks):
    """A hook on a batch norm (now an identity) returns what it returned before; a folded convolution's own output
    is gone (it is the batch norm's now), so reading it is refused in words that say how to read it."""
    name, plain, folded = networks
    side = NETWORKS[name][0]
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(2))
    layers = sorted(plain.all_layers - set(folded.folded) - {"AuxLogits"})   # the head needs 299 px: below
    with torch.no_grad():
        _, before = plain.taps(images, layers)
        _, after = folded.taps(images, layers)
        if name == "inception_v3":   # the tapped head, run on Mixed_6e's output (as a schedule's `output` reads it)
            large = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(2))
            before["AuxLogits"], after["AuxLogits"] = (m.taps(large, ["AuxLogits"])[1]["AuxLogits"]
                                                       for m in (plain, folded))
    assert before.keys() == after.keys() and set(folded.folded.values()) <= after.keys()
    for layer in before:
        assert relative_error(after[layer], before[layer]) < 1e-5, layer
    conv = sorted(folded.folded)[0]
    with pytest.raises(ValueError, match=f"{conv}.*--no-fold-batchnorm"):
        folded.taps(images, [conv])


def test_a_convolution_the_caller_reads_keeps_its_batch_norm():
    plain = with_batch_norm_statistics(load_model("resnet18", "random-he"))
    folded = copy.deepcopy(plain)
    assert "layer1.0.conv1" not in folded.fold_batchnorm(keep={"layer1.0.conv1", "layer2"})
    assert len(folded.folded) == 19 and isinstance(folded.net.layer1[0].bn1, nn.BatchNorm2d)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        (_, before), (_, after) = (m.taps(images, ["layer1.0.conv1"]) for m in (plain, folded))
    assert relative_error(after["layer1.0.conv1"], before["layer1.0.conv1"]) < 1e-6


class Shortcut(nn.Module):
    """A convolution whose output feeds its batch norm and the sum after it: folding would change the sum."""
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class SharedNorm(nn.Module):
    """One batch norm after two convolutions: it cannot be folded into both."""
    def __init__(self):
        super().__init__()
        self.a, self.b, self.bn = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.a(x)) + self.bn(self.b(x))


class NormFirst(nn.Module):
    """Attributes named like a pair, called the other way round (batch norm, then convolution)."""
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.conv(self.bn(x))


def test_only_a_convolution_whose_output_goes_to_its_batch_norm_alone_is_folded():
    net = with_batch_norm_statistics(nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU()),   # folded
        Shortcut(), SharedNorm(), NormFirst()).eval())
    x = torch.rand(2, 3, 8, 8)
    assert foldable_pairs(net, x) == {"0.0": "0.1"}
    with torch.no_grad():
        expected = net(x)
        assert fold_batchnorm(net, x) == {"0.0": "0.1"}
        assert torch.allclose(net(x), expected, rtol=1e-5, atol=1e-6)
    assert isinstance(net[0][1], nn.Identity) and isinstance(net[1].bn, nn.BatchNorm2d)
