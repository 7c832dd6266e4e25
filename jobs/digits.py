"""The built-in demo model: a small CNN for scikit-learn's bundled digits (1797 images of 8x8, ten classes).

The images are upsampled to 32x32 and repeated over three channels, so the network takes the same RGB-in-[0, 1]
input as the ImageNet models and every job runs on it unchanged. The checkpoint ships in `jobs/weights/`;
`python -m jobs.train_digits` reproduces it (fixed seed). It was trained adversarially (PGD), which makes its
input gradients point toward digit-like strokes rather than high-frequency noise. `jobs.models.load_model("digits")`
builds the `Classifier` from this network, with the zoo's weights policy (one for every model).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from jobs.demo_models import DEMO_MODELS

INPUT_SIZE = 32
CLASS_NAMES = tuple(f"digit {d}" for d in range(10))
CHECKPOINT = DEMO_MODELS["digits"].checkpoint   # the shipped weights (the model's record: `jobs.demo_models`)
SPLIT_SEED = 0          # the held-out split is fixed so that the accuracy test measures unseen images
TEST_FRACTION = 0.2


class DigitsNet(nn.Module):
    """Three conv blocks and a linear head; global average pooling makes it accept any input size >= 8."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                       nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
            return nn.Sequential(*layers)

        self.block1 = block(3, width, pool=True)              # B x 32 x 16 x 16 (for 32 px input)
        self.block2 = block(width, 2 * width, pool=True)      # B x 64 x 8 x 8
        self.block3 = block(2 * width, 4 * width, pool=False)  # B x 128 x 8 x 8
        self.pool = nn.AdaptiveAvgPool2d(1)                    # B x 128 x 1 x 1
        self.fc = nn.Linear(4 * width, len(CLASS_NAMES))       # B x 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def digits_dataset(size: int = INPUT_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_images, train_labels, test_images, test_labels); images N x 3 x size x size in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)  # N x 1 x 8 x 8
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = images.clamp(0, 1).repeat(1, 3, 1, 1)                                # N x 3 x size x size
    labels = torch.tensor(data.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION,
                                           random_state=SPLIT_SEED, stratify=labels.numpy())
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
