"""The second built-in demo model: a tiny residual network for the same digits, trained independently.

It answers the cross-model question (does a class image mean its class to a model that did not make it?) offline:
same data, same held-out split and the same RGB-in-[0, 1] input as `digits` (see `jobs.digits`), but another
architecture (residual blocks, He et al. 2016, "Deep Residual Learning for Image Recognition"; a 5x5 stem and
strided convolutions instead of max pooling), another seed, and its own adversarial training run
(`python -m jobs.train_digits --arch digits-resnet`), so that the two models share no weights and no
initialisation. The checkpoint ships in `jobs/weights/digits-resnet.pt`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from jobs.demo_models import DEMO_MODELS
from jobs.digits import CLASS_NAMES

CHECKPOINT = DEMO_MODELS["digits-resnet"].checkpoint   # the shipped weights (the model's record: `jobs.demo_models`)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus the identity (or a strided 1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class DigitsResNet(nn.Module):
    """A 5x5 stem and three residual blocks; global average pooling makes it accept any input size >= 8."""

    def __init__(self, widths: tuple[int, int, int] = (32, 48, 96)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, w1, 5, padding=2, bias=False), nn.BatchNorm2d(w1),
                                  nn.ReLU())                  # B x 32 x 32 x 32 (for 32 px input)
        self.layer1 = BasicBlock(w1, w2, stride=2)            # B x 48 x 16 x 16
        self.layer2 = BasicBlock(w2, w3, stride=2)            # B x 96 x 8 x 8
        self.layer3 = BasicBlock(w3, w3, stride=1)            # B x 96 x 8 x 8
        self.pool = nn.AdaptiveAvgPool2d(1)                   # B x 96 x 1 x 1
        self.fc = nn.Linear(w3, len(CLASS_NAMES))             # B x 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))
