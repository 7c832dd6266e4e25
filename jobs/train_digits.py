"""Train a demo model and write the checkpoint that ships in `jobs/weights/{arch}.pt`.

    python -m jobs.train_digits [--arch digits] [--epochs 30] [--eps 0.15] [--out jobs/weights/digits.pt]
    python -m jobs.train_digits --arch digits-resnet        # the second demo model (jobs.digits_resnet)

Adversarial training (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"): each
minibatch is replaced by its L-infinity PGD perturbation before the update. Robust models have input gradients
that look like the data (Santurkar et al. 2019, "Image Synthesis with a Single (Robust) Classifier"), so the
class images that gradient descent draws from noise look like digits instead of noise. Random shifts, contrast
and a grey background level make the model accept the noisy, mid-grey images that generation starts from.
Fixed seed, single thread, CPU: the same command gives the same file. Each demo model has its own network, seed,
epoch count and checkpoint (its record in `jobs.demo_models`), and its input normalisation, which the model zoo
applies at inference too; the held-out split is the same for all.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from jobs.demo_models import DEFAULT_DEMO, DEMO_MODELS, DemoModel
from jobs.digits import digits_dataset


def normalised(images: torch.Tensor, demo: DemoModel) -> torch.Tensor:
    """The network's input for images in [0, 1]: (x - mean) / std, as `jobs.models.load_model` feeds it."""
    return (images - demo.mean) / demo.std


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


def pgd(net, images, labels, eps: float, steps: int, generator: torch.Generator, demo: DemoModel) -> torch.Tensor:
    """L-infinity projected gradient ascent on the loss, started at a random point of the eps-ball."""
    step = 2.5 * eps / steps
    delta = (torch.rand(images.shape, generator=generator) * 2 - 1) * eps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(net(normalised((images + delta).clamp(0, 1), demo)), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
    return (images + delta).clamp(0, 1).detach()


def accuracy(net, images, labels, demo: DemoModel) -> float:
    net.eval()
    with torch.no_grad():
        return (net(normalised(images, demo)).argmax(1) == labels).float().mean().item()


def train(epochs: int = 30, eps: float = 0.15, pgd_steps: int = 5, batch_size: int = 64, seed: int = 0,
          log=print, demo: DemoModel = DEMO_MODELS[DEFAULT_DEMO]) -> tuple[torch.nn.Module, float]:
    """Adversarial training of `demo`'s network; the trained network and its held-out accuracy."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_x, train_y, test_x, test_y = digits_dataset()
    net = demo.network()
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
            x_adv = pgd(net, x, y, epoch_eps, pgd_steps, generator, demo)
            net.train()
            loss = F.cross_entropy(net(normalised(torch.cat([x, x_adv]), demo)), torch.cat([y, y]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        log(f"epoch {epoch + 1}/{epochs} eps={epoch_eps:.3f} loss={loss.item():.3f} "
            f"held-out acc={accuracy(net, test_x, test_y, demo):.4f} ({time.time() - start:.1f}s)")
    return net.eval(), accuracy(net, test_x, test_y, demo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(DEMO_MODELS), default=DEFAULT_DEMO)
    parser.add_argument("--epochs", type=int, help="default: the model's (" + ", ".join(
        f"{m.name} {m.epochs}" for m in DEMO_MODELS.values()) + ")")
    parser.add_argument("--eps", type=float, default=0.15, help="L-infinity PGD radius on [0, 1] pixels")
    parser.add_argument("--pgd-steps", type=int, default=5)
    parser.add_argument("--seed", type=int, help="default: the model's (" + ", ".join(
        f"{m.name} {m.seed}" for m in DEMO_MODELS.values()) + ")")
    parser.add_argument("--out", type=Path, help="default: the model's shipped checkpoint")
    args = parser.parse_args()
    demo = DEMO_MODELS[args.arch]
    args.out = args.out or demo.checkpoint
    torch.set_num_threads(1)  # bit-reproducible on CPU
    net, acc = train(args.epochs or demo.epochs, args.eps, args.pgd_steps,
                     seed=demo.seed if args.seed is None else args.seed, demo=demo)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out)
    print(f"held-out accuracy {acc:.4f}; wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
