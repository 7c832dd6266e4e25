"""Engine speed, from one run.

(a) the engine's image-iterations per second next to a bare forward + input-gradient loop of the same model,
    batch and resolution (goal: ratio >= 0.9);
(b) the engine batched (B = 16, 32, 64) against the articles' one-image-at-a-time loop;
(c) on CUDA only: the full two-octave GoogLeNet preset on one batch, seconds per class and the projected time for
    1000 classes on this GPU.

    python benchmarks/engine.py --model digits --size 32
    python benchmarks/engine.py --model googlenet --size 299 --iterations 2
    python benchmarks/engine.py --model googlenet --device cuda --size 299 --iterations 20
"""
from __future__ import annotations

import argparse
import time

import torch
from torchvision.transforms import functional as TF

from jobs import objectives as obj
from jobs.models import load_model
from jobs.render import generators_for, initial_images, render
from jobs.schedules import Octave, Schedule, load_schedule


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_octave(size: int, iterations: int) -> Schedule:
    """A single octave at `size` without crops: what (a) and (b) time."""
    return Schedule(name="bench", octaves=(Octave(size=size, iterations=iterations, lr=(1.5, 1.0),
                                                  sigma=(2.4, 0.8)),))


def time_engine(model, batch: int, schedule: Schedule, device, **options) -> float:
    """Seconds for the engine to render `batch` class images (classes 0..batch-1 modulo n_classes)."""
    objectives = [obj.class_logit(j % model.n_classes, schedule.C, absolute=schedule.absolute)
                  for j in range(batch)]
    _sync(device)
    start = time.perf_counter()
    render(model, objectives, schedule, list(range(batch)), device=device, **options)
    _sync(device)
    return time.perf_counter() - start


def time_bare(model, batch: int, size: int, iterations: int, device, autocast_bf16=False) -> float:
    """Seconds for the bare loop: forward, input gradient of sum |200 - logit|, plain step; nothing else."""
    x = initial_images(one_octave(size, 1), generators_for(range(batch))).to(device)
    targets = torch.arange(batch, device=device) % model.n_classes
    rows = torch.arange(batch, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast_bf16 and device.type == "cuda")
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        x = x.detach().requires_grad_(True)
        with autocast:
            logits = model(x)
        loss = (200.0 - logits.float()[rows, targets]).abs().sum()
        (grad,) = torch.autograd.grad(loss, x)
        x = x.detach() - 1.0 * grad
    _sync(device)
    return time.perf_counter() - start


def time_article_loop(model, images: int, size: int, iterations: int, device) -> float:
    """Seconds for the articles' loop: one image at a time, forward, input gradient, step, blur."""
    _sync(device)
    start = time.perf_counter()
    for c in range(images):
        x = initial_images(one_octave(size, 1), generators_for([c])).to(device)   # 1 x 3 x S x S
        for i in range(iterations):
            x = x.detach().requires_grad_(True)
            loss = torch.abs(200 - model(x)[0][c % model.n_classes])
            loss.backward()
            x = x.detach() - (1.5 * (iterations - i) / iterations + 1.0 * i / iterations) * x.grad
            x = TF.gaussian_blur(x, 3, sigma=2.4 * (iterations - i) / iterations + 0.8 * i / iterations)
    _sync(device)
    return time.perf_counter() - start


def best(measure, repeats: int) -> float:
    """The fastest of `repeats` runs: other processes sharing the machine only ever slow a run down."""
    return min(measure() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="digits", help="digits or a torchvision model (random weights)")
    parser.add_argument("--size", type=int, default=None, help="image side (default: the model's input size)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="batch for (a) (default 64, 8 for ImageNet "
                        "models on CPU)")
    parser.add_argument("--batches", default="16,32,64", help="batch sizes for (b)")
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations per measurement")
    parser.add_argument("--single", type=int, default=None, help="images for the one-at-a-time loop")
    parser.add_argument("--repeats", type=int, default=3, help="time each measurement this often, keep the best")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-bf16", action="store_true", help="CUDA: run in float32")
    parser.add_argument("--full-batch", type=int, default=64, help="CUDA: batch for the full two-octave preset")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    weights = "DEFAULT" if args.model == "digits" else "random"
    try:
        model = load_model(args.model, weights, device=device)
    except Exception:
        model = load_model(args.model, "random", device=device)
    size = args.size or model.input_size
    small = args.model == "digits"
    batch = args.batch or (64 if small or cuda else 8)
    iterations = args.iterations or (20 if small else (20 if cuda else 2))
    options = dict(autocast_bf16=cuda and not args.no_bf16, channels_last=cuda)
    print(f"model {model.name} ({model.weights_id}), {size} px, device {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if cuda else ''}, torch threads "
          f"{torch.get_num_threads()}, bf16 {options['autocast_bf16']}, channels_last {options['channels_last']}")

    # warm up (allocator, cudnn autotuning, lazy init)
    time_engine(model, batch, one_octave(size, 2), device, **options)
    time_bare(model, batch, size, 2, device, options["autocast_bf16"])

    schedule = one_octave(size, iterations)
    r = args.repeats
    engine = batch * iterations / best(lambda: time_engine(model, batch, schedule, device, **options), r)
    bare = batch * iterations / best(lambda: time_bare(model, batch, size, iterations, device,
                                                       options["autocast_bf16"]), r)
    print(f"(a) batch {batch}, {iterations} iterations: engine {engine:.1f} image-it/s, bare forward+input-grad "
          f"loop {bare:.1f} image-it/s, ratio {engine / bare:.3f} (goal >= 0.9)")

    single_images = args.single or (4 if small else 2)
    single_iters = max(2, iterations // 2)
    time_article_loop(model, 1, size, 1, device)
    single = single_images * single_iters / best(
        lambda: time_article_loop(model, single_images, size, single_iters, device), r)
    print(f"(b) one image at a time (articles' loop): {single:.1f} image-it/s")
    for b in [int(v) for v in args.batches.split(",") if v]:
        rate = b * iterations / best(lambda: time_engine(model, b, schedule, device, **options), r)
        print(f"    engine batch {b:3d}: {rate:.1f} image-it/s, {rate / single:.1f}x the one-image loop")

    if cuda:
        preset = load_schedule("googlenet")
        b = args.full_batch
        seconds = time_engine(model, b, preset, device, **options)
        per_class = seconds / b
        print(f"(c) preset {preset.name} ({preset.total_iterations} iterations, final {preset.final_size} px), "
              f"batch {b}: {seconds:.1f} s, {per_class:.3f} s per class, projected 1000 classes: "
              f"{per_class * 1000 / 60:.1f} min on this GPU (goal < 5 min)")
        # the articles' loop on this GPU: octave 1 at 299 px, octave 2 on 470-px crops, timed over a few steps
        o1, o2 = preset.octaves
        rates = {}
        for side in (o1.size, o2.crop or o2.size):
            time_article_loop(model, 1, side, 2, device)
            rates[side] = 10 / time_article_loop(model, 1, side, 10, device)
        loop_seconds = o1.iterations / rates[o1.size] + o2.iterations / rates[o2.crop or o2.size]
        print(f"    one-image loop on the same GPU: {loop_seconds:.1f} s per class, projected 1000 classes "
              f"{loop_seconds * 1000 / 3600:.1f} h; engine speed-up {loop_seconds / per_class:.1f}x (goal >= 10x)")

if __name__ == "__main__":
    main()
