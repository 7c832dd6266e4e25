"""Train a demo model and write the checkpoint that ships in `jobs/weights/{arch}.pt`.

    python -m jobs.train_digits [--arch digits] [--epochs 30] [--eps 0.15] [--out jobs/weights/digits.pt]
    python -m jobs.train_digits --arch digits-resnet        # the second demo model (jobs.digits_resnet)

Adversarial training (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"): each
minibatch is replaced by its L-infinity PGD perturbation before the update. Robust models have input gradients
that look like the data (Santurkar et al. 2019, "Image Synthesis with a Single (Robust) Classifier"), so the
class images that gradient descent draws from noise look like digits instead of noise. Random shifts, contrast
and a grey background level make the model accept the noisy, mid-grey images that generation starts from.
Fixed seed, single thread, CPU: the same command gives the same file. Each architecture has its own default
seed, epoch count and checkpoint (`ARCHITECTURES`); the held-out split is the same for all.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from jobs import digits, digits_resnet
from jobs.digits import digits_dataset

MEAN, STD = 0.5, 0.5


@dataclass(frozen=True)
class Architecture:
    """A demo network and how its shipped checkpoint was made."""
    build: Callable[[], nn.Module]   # the untrained network (drawn from torch's global generator)
    checkpoint: Path                 # where the shipped weights live
    seed: int                        # initialisation, minibatch order, augmentation and PGD starts
    epochs: int                      # training epochs of the shipped checkpoint


ARCHITECTURES = {
    "digits": Architecture(digits.DigitsNet, digits.CHECKPOINT, seed=0, epochs=30),
    # 20 epochs, not 30, to train in a few CPU minutes; it still reaches 98% held-out accuracy
    "digits-resnet": Architecture(digits_resnet.DigitsResNet, digits_resnet.CHECKPOINT,
                                  seed=digits_resnet.TRAIN_SEED, epochs=20),
}


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shift (up to 3 px), contrast, background level and noise; images B x 3 x H x W in [0, 1]."""
    b = images.shape[0]
    shifts = torch.randint(-3, 4, (2,), generator=generator).tolist()
    images = torch.roll(images, shifts=shifts, dims=(2, 3))
    contrast = 0.6 + 0.4 * torch.rand(b, 1, 1, 1, generator=generator)
    background = 0.4 * torch.rand(b, 1, 1, 1, generator=generator)
    images = background + (1 - background) * contrast * images
    noise = 0.05 * torch.randn(images.shape, generator=generator)
    return (images + noise).clamp(0, 1)


def pgd(net, images, labels, eps: float, steps: int, generator: torch.Generator) -> torch.Tensor:
    """L-infinity projected gradient ascent on the loss, started at a random point of the eps-ball."""
    step = 2.5 * eps / steps
    delta = (torch.rand(images.shape, generator=generator) * 2 - 1) * eps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(net(((images + delta).clamp(0, 1) - MEAN) / STD), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
    return (images + delta).clamp(0, 1).detach()


def accuracy(net, images, labels) -> float:
    net.eval()
    with torch.no_grad():
        return (net((images - MEAN) / STD).argmax(1) == labels).float().mean().item()


def train(epochs: int = 30, eps: float = 0.15, pgd_steps: int = 5, batch_size: int = 64, seed: int = 0,
          log=print, build: Callable[[], nn.Module] = digits.DigitsNet) -> tuple[nn.Module, float]:
    """Adversarial training of the network `build()` returns; the trained network and its held-out accuracy."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_x, train_y, test_x, test_y = digits_dataset()
    net = build()
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=4e-3, total_steps=epochs *
                                                   ((len(train_x) + batch_size - 1) // batch_size))
    for epoch in range(epochs):
        start = time.time()
        order = torch.randperm(len(train_x), generator=generator)
        # The perturbation grows over the first third of training (a curriculum keeps early training stable).
        epoch_eps = eps * min(1.0, (epoch + 1) / max(1, epochs // 3))
        net.train()
        for first in range(0, len(order), batch_size):
            idx = order[first:first + batch_size]
            x, y = augment(train_x[idx], generator), train_y[idx]
            net.eval()  # attack against fixed batch-norm statistics
            x_adv = pgd(net, x, y, epoch_eps, pgd_steps, generator)
            net.train()
            loss = F.cross_entropy(net((torch.cat([x, x_adv]) - MEAN) / STD), torch.cat([y, y]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        log(f"epoch {epoch + 1}/{epochs} eps={epoch_eps:.3f} loss={loss.item():.3f} "
            f"held-out acc={accuracy(net, test_x, test_y):.4f} ({time.time() - start:.1f}s)")
    return net.eval(), accuracy(net, test_x, test_y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="digits")
    parser.add_argument("--epochs", type=int, help="default: the architecture's (digits 30, digits-resnet 20)")
    parser.add_argument("--eps", type=float, default=0.15, help="L-infinity PGD radius on [0, 1] pixels")
    parser.add_argument("--pgd-steps", type=int, default=5)
    parser.add_argument("--seed", type=int, help="default: the architecture's (digits 0, digits-resnet 1)")
    parser.add_argument("--out", type=Path, help="default: the architecture's shipped checkpoint")
    args = parser.parse_args()
    arch = ARCHITECTURES[args.arch]
    args.out = args.out or arch.checkpoint
    torch.set_num_threads(1)  # bit-reproducible on CPU
    net, acc = train(args.epochs or arch.epochs, args.eps, args.pgd_steps,
                     seed=arch.seed if args.seed is None else args.seed, build=arch.build)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out)
    print(f"held-out accuracy {acc:.4f}; wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
