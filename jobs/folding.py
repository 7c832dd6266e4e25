"""Batch norms folded into the convolutions before them (`sweep run --fold-batchnorm`, on by default on GPUs).

In eval mode a BatchNorm2d is a fixed per-channel affine map, y = (x - mean) / sqrt(var + eps) * gamma + beta
(Ioffe & Szegedy 2015, "Batch Normalization", 3.1: at inference "the normalization is simply a linear transform
applied to each activation"). After a convolution it equals that convolution with each output channel's weights
scaled by gamma / sqrt(var + eps) and its bias shifted (`torch.nn.utils.fusion.fuse_conv_bn_eval`): the network
computes the same function up to float rounding, with one full read and write of each such activation fewer in the
forward pass and again in the backward pass. GoogLeNet's and InceptionV3's convolutions (BasicConv2d: conv, bn,
relu) and the ResNets' are each followed by one.

Pairs are found on the module tree and confirmed by one forward pass (torch.fx cannot trace GoogLeNet's control
flow): a pair is folded only where the convolution's output went to the batch norm and to nothing else, and each
ran once. The batch norm becomes `nn.Identity`, so a hook on it returns what it returned before; the convolution's
own output becomes the batch norm's, so a convolution the caller reads (`keep`) is left as it is.
"""
from __future__ import annotations

import collections
from typing import Collection, Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.overrides import TorchFunctionMode


def tensors_in(value) -> Iterator[Tensor]:
    """The tensors in an op's arguments, however nested in lists, tuples and dicts (`torch.cat` takes a list)."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


class ConvOutputUses(TorchFunctionMode):
    """Within the block, records which convolutions' outputs an op outside a batch norm took (`used`). The
    convolutions' forward hooks fill `outputs` (id -> (name, tensor): the tensor is held, so that no other tensor
    takes its id); the batch norms' hooks count `inside_norm`, since a batch norm's own ops read its input."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: dict[int, tuple[str, Tensor]] = {}
        self.used: set[str] = set()
        self.inside_norm = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.inside_norm:
            self.used.update(self.outputs[id(t)][0] for t in tensors_in((args, kwargs)) if id(t) in self.outputs)
        return func(*args, **kwargs)


def single_named(net: nn.Module) -> dict[str, nn.Module]:
    """name -> module of `net`'s modules registered under one name only (one registered twice cannot be swapped in
    one place)."""
    names = collections.Counter(id(m) for _, m in net.named_modules(remove_duplicate=False))
    return {name: m for name, m in net.named_modules() if name and names[id(m)] == 1}


def foldable_pairs(net: nn.Module, example: Tensor) -> dict[str, str]:
    """{convolution: batch norm} module names of `net` (in eval mode) where, in a forward pass of `example`, the
    Conv2d's output was the eval-mode BatchNorm2d's input and no other op's, and each ran once."""
    modules = single_named(net)
    convs = {n: m for n, m in modules.items() if isinstance(m, nn.Conv2d) and not m.training}
    norms = {n: m for n, m in modules.items() if isinstance(m, nn.BatchNorm2d) and not m.training
             and m.running_mean is not None and m.running_var is not None}
    uses = ConvOutputUses()
    calls: collections.Counter = collections.Counter()
    fed_by: dict[str, str] = {}   # batch norm -> the convolution whose output it took

    def conv_ran(name):
        def hook(_module, _inputs, output):
            calls[name] += 1
            uses.outputs[id(output)] = (name, output)
        return hook

    def norm_starts(name):
        def hook(_module, inputs):
            calls[name] += 1
            uses.inside_norm += 1
            if inputs and id(inputs[0]) in uses.outputs:
                fed_by[name] = uses.outputs[id(inputs[0])][0]
        return hook

    def norm_ends(_module, _inputs, _output):
        uses.inside_norm -= 1

    handles = [m.register_forward_hook(conv_ran(n)) for n, m in convs.items()]
    handles += [m.register_forward_pre_hook(norm_starts(n)) for n, m in norms.items()]
    handles += [m.register_forward_hook(norm_ends) for m in norms.values()]
    try:
        with torch.no_grad(), uses:
            net(example)
    finally:
        for handle in handles:
            handle.remove()
    return {conv: norm for norm, conv in fed_by.items()
            if calls[conv] == calls[norm] == 1 and conv not in uses.used
            and convs[conv].out_channels == norms[norm].num_features}


def replace(net: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where `net`'s submodule `name` (a dotted path) was."""
    parent, _, attribute = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, attribute, module)


def fold_batchnorm(net: nn.Module, example: Tensor, keep: Collection[str] = ()) -> dict[str, str]:
    """Fold every batch norm of `net` (frozen, eval mode) that only a convolution feeds into that convolution, in
    place, except where the convolution is named in `keep`; the batch norms become `nn.Identity`. `example`: an
    input `net` takes (on its device), for the one forward pass that finds the pairs. Returns {convolution: batch
    norm} of the pairs folded."""
    pairs = {conv: norm for conv, norm in foldable_pairs(net, example).items() if conv not in keep}
    with torch.no_grad():
        for conv, norm in pairs.items():
            replace(net, conv, fuse_conv_bn_eval(net.get_submodule(conv), net.get_submodule(norm)))
            replace(net, norm, nn.Identity())
    return pairs
