"""Engine and worker speed, from one run (on a GPU: every figure of issue 12 in one run, a few minutes on an H100).

(a) the engine's image-iterations per second next to a bare forward + input-gradient loop of the same model,
    batch and resolution (goal: ratio >= 0.95);
(b) the engine batched (B = 16, 32, 64) against the articles' one-image-at-a-time loop;
(c) on CUDA only: the full two-octave GoogLeNet preset at the automatic batch (the worker's memory probe): seconds
    per class, projected time for 1000 classes (goal <= 3 min on one H100), the articles' one-image loop on the
    same GPU side by side (goal >= 30x), peak GPU memory;
(d) the worker (in-process: two calls at a time, as a Ray actor with max_concurrency=2) over several batches,
    PNG encoding and Parquet writes included: seconds per class and the share of the run the render loop waited
    (goal < 5%);
(f) the cost of recording trajectories (`sweep run --trajectory`): the engine with every:10 (and every:10 with
    snapshots every 50 steps) against recording off, same batch and schedule (goal: < 5% at N = 10), on CUDA how
    often each made the host wait for the GPU within its steps (recording should add no wait), and the per-image
    records and table built from them (`jobs.kinds.trajectory_records`, `sweep.store.trajectories_table`), the
    table again with as many PNG encoders as torch has threads (a worker's --cpus-per-worker) and without its
    snapshot PNGs;
(h) the engine with the network's batch norms folded into its convolutions (`sweep run --fold-batchnorm`, on by
    default on GPUs, as every other section here runs) against the network as loaded, at (a)'s batch, size and
    options;
(e) quality of each half precision (bf16 and fp16 autocast, with the run's layout) against float32 on the same
    seeds: the trained digits model's class images keep label = target with p >= 0.9 (10/10); on GoogLeNet with
    He-initialised random weights, the cosine between what 1 and 20 steps did to the images (beyond the blur) with
    and without it (tolerance 0.7; losses are no measure there: they stay within 0.01% of C = 200);
(g) on CUDA (on the CPU with `--only g`): where a step's time goes, from torch.profiler: the 15 kernels that took
    most of 5 steps at the preset's crop size, each with its share.

    PYTHONPATH=. python benchmarks/bench_engine.py --model digits --size 32
    PYTHONPATH=. python benchmarks/bench_engine.py --model googlenet --size 299 --iterations 2
    PYTHONPATH=. python benchmarks/bench_engine.py --model googlenet --size 299 --iterations 2 --batch 4 --only h
    PYTHONPATH=. python benchmarks/bench_engine.py --model googlenet --device cuda        # the GPU run
    PYTHONPATH=. python benchmarks/bench_engine.py --model googlenet --device cuda --compile
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torchvision.transforms import functional as TF

from jobs import objectives as obj
from jobs.models import load_model
from jobs.render import TrajectoryOptions, generators_for, initial_images, render
from jobs.schedules import Octave, Schedule, load_schedule
from sweep.worker import AUTO_CAP, folds_batchnorm


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


def time_bare(model, batch: int, size: int, iterations: int, device, autocast_bf16=False, autocast_fp16=False,
              channels_last=False) -> float:
    """Seconds for the bare loop: forward, input gradient of sum |200 - logit|, plain step; nothing else but what
    every render also does around its steps (the start images drawn on the CPU and moved to the device, the result
    brought back), which on a GPU at a few steps is no small part of a render's time."""
    targets = torch.arange(batch, device=device) % model.n_classes
    rows = torch.arange(batch, device=device)
    autocast = torch.autocast("cuda", dtype=torch.float16 if autocast_fp16 else torch.bfloat16,
                              enabled=(autocast_bf16 or autocast_fp16) and device.type == "cuda")
    _sync(device)
    start = time.perf_counter()
    x = initial_images(one_octave(size, 1), generators_for(range(batch))).to(device)   # B x 3 x S x S
    for _ in range(iterations):
        x = x.detach().requires_grad_(True)
        with autocast:
            logits = model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
        loss = (200.0 - logits.float()[rows, targets]).abs().sum()
        (grad,) = torch.autograd.grad(loss, x)
        x = x.detach() - 1.0 * grad
    x.cpu()
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
    parser.add_argument("--fp16", action="store_true", help="CUDA: float16 autocast instead of bf16 (the engine's "
                        "loss scaling included; (e) compares both with float32 whatever is chosen)")
    parser.add_argument("--full-batch", type=int, default=None, help="CUDA: batch for the full two-octave preset "
                        "(default: the worker's automatic batch)")
    parser.add_argument("--no-channels-last", action="store_true", help="CUDA: keep the default memory format")
    parser.add_argument("--compile", action="store_true", help="CUDA: torch.compile the network")
    parser.add_argument("--fold-batchnorm", action=argparse.BooleanOptionalAction, default=None,
                        help="fold the network's batch norms into its convolutions (default: on CUDA, as the "
                        "sweep's workers)")
    parser.add_argument("--worker-batches", type=int, default=3, help="(d): batches of the worker run")
    parser.add_argument("--worker-steps", type=int, default=None, help="(d): every octave cut to this many steps "
                        "(default: the whole preset; the tests' smoke run cuts it)")
    parser.add_argument("--skip", default="", help="comma list of sections to skip (a,b,c,d,e,f,g,h)")
    parser.add_argument("--only", default="", help="comma list of the sections to run (the others skipped); (g) "
                        "runs on the CPU only when named here")
    parser.add_argument("--profile-batch", type=int, default=64, help="(g): batch of the profiled steps")
    parser.add_argument("--profile-size", type=int, default=470, help="(g): image side of the profiled steps "
                        "(default: the googlenet preset's crop, where its time goes)")
    parser.add_argument("--trajectory-iterations", type=int, default=None, help="(f): iterations per render "
                        "(default 100 for digits and on CUDA, 20 for ImageNet models on CPU)")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    if args.only:
        skip |= set("abcdefgh") - set(args.only.split(","))

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    fold = folds_batchnorm(args.fold_batchnorm, cuda)
    model = bench_model(args, device, fold=fold)
    size = args.size or model.input_size
    small = args.model == "digits"
    batch = args.batch or (64 if small or cuda else 8)
    iterations = args.iterations or (20 if small else (20 if cuda else 2))
    options = dict(autocast_bf16=cuda and not args.no_bf16 and not args.fp16, autocast_fp16=cuda and args.fp16,
                   channels_last=cuda and not args.no_channels_last)
    print(f"model {model.name} ({model.weights_id}), {size} px, device {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if cuda else ''}, torch threads "
          f"{torch.get_num_threads()}, bf16 {options['autocast_bf16']}, fp16 {options['autocast_fp16']}, channels_last {options['channels_last']}, "
          f"batch norms folded {fold} ({len(model.folded)})")

    schedule = one_octave(size, iterations)
    if "a" not in skip:
        ratio_figures(model, batch, size, schedule, device, options, args.repeats)
    if "h" not in skip:
        folding_figures(args, batch, size, schedule, device, options)
    cap = None
    if "b" not in skip:
        cap = batch_figures(model, size, schedule, device, options, args.repeats,
                            single_images=args.single or (4 if small else 2),
                            batches=[int(v) for v in args.batches.split(",") if v])
    extra_sections(args, model, device, options, skip, cap)


def bench_model(args, device, *, fold: bool):
    """The benchmarked network as the workers have it: the digits demo's shipped weights, else random ones (any
    torchvision model runs offline); batch norms folded when `fold`; on CUDA made ready as the workers make it
    (float32 as float32, not TF32: (e)'s reference, and every figure of a --no-bf16 run; --compile)."""
    weights = "DEFAULT" if args.model == "digits" else "random"
    try:
        model = load_model(args.model, weights, device=device)
    except Exception:
        model = load_model(args.model, "random", device=device)
    if fold:   # before compiling, as the workers
        model.fold_batchnorm()
    if device.type == "cuda":
        from sweep.worker import ready_for_gpu
        ready_for_gpu(model, cudnn_benchmark=True, compile=args.compile)
    return model


def ratio_figures(model, batch: int, size: int, schedule: Schedule, device, options, repeats: int) -> None:
    """(a) the engine against the bare forward + input-gradient loop, same batch, resolution and options."""
    time_engine(model, batch, one_octave(size, 2), device, **options)   # warm up (allocator, cuDNN autotuning)
    time_bare(model, batch, size, 2, device, **options)
    iterations = schedule.total_iterations
    engine = batch * iterations / best(lambda: time_engine(model, batch, schedule, device, **options), repeats)
    bare = batch * iterations / best(lambda: time_bare(model, batch, size, iterations, device, **options), repeats)
    print(f"(a) batch {batch}, {iterations} iterations: engine {engine:.1f} image-it/s, bare forward+input-grad "
          f"loop {bare:.1f} image-it/s, ratio {engine / bare:.3f} (goal >= 0.95)")


def folding_figures(args, batch: int, size: int, schedule: Schedule, device, options) -> None:
    """(h) the engine on the network with its batch norms folded into its convolutions against the network as
    loaded, same batch, size and options; interleaved, the best of `--repeats` runs each (at least 3). On a CPU
    the process's CPU time is printed beside the wall time, as in (f): other work on the machine moves the wall
    time by tens of percent."""
    cuda = device.type == "cuda"
    networks = {"as loaded": bench_model(args, device, fold=False), "folded": bench_model(args, device, fold=True)}
    pairs = len(networks["folded"].folded)
    if not pairs:
        print(f"(h) {args.model} has no batch norm right after a convolution: nothing to fold")
        return
    for net in networks.values():   # warm up (allocator, cuDNN autotuning)
        time_engine(net, batch, one_octave(size, 2), device, **options)
    wall: dict[str, list[float]] = {name: [] for name in networks}
    cpu: dict[str, list[float]] = {name: [] for name in networks}
    for _ in range(max(args.repeats, 3)):   # interleaved: a machine that slows down slows both
        for name, net in networks.items():
            before = time.process_time()
            wall[name].append(time_engine(net, batch, schedule, device, **options))
            cpu[name].append(time.process_time() - before)

    def rates(times: dict[str, list[float]]) -> str:
        rate = {name: batch * schedule.total_iterations / min(t) for name, t in times.items()}
        return (f"{rate['as loaded']:.2f} image-it/s as loaded, {rate['folded']:.2f} folded: "
                f"{rate['folded'] / rate['as loaded']:.3f}x")
    print(f"(h) batch norms folded into {pairs} convolutions, batch {batch}, {schedule.total_iterations} iterations "
          f"at {size} px: wall {rates(wall)}" + ("" if cuda else f"; CPU time {rates(cpu)}"))


def batch_figures(model, size: int, schedule: Schedule, device, options, repeats: int, *, single_images: int,
                  batches: list[int]) -> int | None:
    """(b) the articles' one-image loop, then the engine at each batch size; the smallest batch within 5% of the
    best rate (where a larger batch stops paying: what AUTO_CAP should be), None when no batch was timed."""
    iterations = schedule.total_iterations
    single_iters = max(2, iterations // 2)
    time_article_loop(model, 1, size, 1, device)
    single = single_images * single_iters / best(
        lambda: time_article_loop(model, single_images, size, single_iters, device), repeats)
    print(f"(b) one image at a time (articles' loop): {single:.1f} image-it/s")
    rates = {}
    for b in batches:
        rates[b] = rate = b * iterations / best(lambda: time_engine(model, b, schedule, device, **options), repeats)
        print(f"    engine batch {b:3d}: {rate:.1f} image-it/s, {rate / single:.1f}x the one-image loop")
    if not rates:
        return None
    knee = min(b for b, rate in rates.items() if rate >= 0.95 * max(rates.values()))
    print(f"    the smallest batch within 5% of the best rate: {knee} (AUTO_CAP in sweep/worker.py: {AUTO_CAP})")
    return knee


def extra_sections(args, model, device, options, skip, cap: int | None) -> None:
    cuda = device.type == "cuda"
    if "f" not in skip:
        trajectory_figures(args, model, device, options)
    if cuda and "c" not in skip:
        preset_figures(args, model, device, options, cap)
    if "g" not in skip and (cuda or "g" in args.only):
        profile_figures(args, model, device, options)
    if "e" not in skip:   # before (d), the longest: a GPU session cut short by its time limit still has (e)
        quality_figures(device, options)
    if "d" not in skip:
        worker_figures(args, device, options)


def trajectory_figures(args, model, device, options) -> None:
    """(f) recording trajectories against recording off: the engine alone, then the per-image records and the
    table (what the worker adds on its writer thread)."""
    from jobs.kinds import JobSpec, trajectory_records
    from sweep.store import trajectories_table
    cuda = device.type == "cuda"
    size = args.size or model.input_size
    batch = args.batch or (64 if model.name == "digits" or cuda else 8)
    iterations = args.trajectory_iterations or (100 if model.name == "digits" or cuda else 20)
    schedule = one_octave(size, iterations)
    variants = {"off": None, "every:10": TrajectoryOptions(every=10),
                "every:10,snapshots:50": TrajectoryOptions(every=10, snapshots=50)}
    time_engine(model, batch, one_octave(size, 2), device, **options)   # warm-up
    # On a CPU shared with other work, wall time varies by tens of percent from run to run; the process's CPU time
    # (what this render itself computed) is the fairer measure there, and is printed beside it.
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(max(args.repeats, 3)):   # interleaved: a machine that slows down slows every variant
        turn = repeat % len(names)               # and each variant first in turn: none always runs after another
        for name in names[turn:] + names[:turn]:
            trajectory = variants[name]
            before = time.process_time()
            wall[name].append(time_engine(model, batch, schedule, device, **options, trajectory=trajectory))
            cpu[name].append(time.process_time() - before)

    def costs(times: dict[str, list[float]]) -> str:   # the best of each, and how far the off runs spread
        base = min(times["off"])
        return (f"off {base:.2f} s (its runs within {100 * (max(times['off']) / base - 1):.1f}%); "
                + ", ".join(f"{name} {min(t):.2f} s ({100 * (min(t) / base - 1):+.1f}%)"
                            for name, t in times.items() if name != "off"))
    print(f"(f) trajectories, batch {batch}, {iterations} iterations at {size} px (goal < 5% at every:10): "
          f"wall {costs(wall)}" + ("" if cuda else f"; CPU time {costs(cpu)}"))
    if cuda:
        try:   # never measured on a GPU before: a failure here must not cost the session its later sections
            waits = {name: host_waits(model, batch, one_octave(size, 60), device, options, trajectory)
                     for name, trajectory in variants.items()}   # 60 steps: a snapshot (step 50) between marks
            print("    the host waited for the GPU within the steps (torch's sync debug mode): "
                  + ", ".join(f"{name} {n} times" for name, n in waits.items()) + " (recording should add none)")
        except Exception as error:
            print(f"    (counting the host's waits failed: {type(error).__name__}: {error})")
    base = min(wall["off"])
    specs = [JobSpec("octave", j % model.n_classes, seed=j) for j in range(batch)]
    objectives = [obj.class_logit(s.target, schedule.C, absolute=schedule.absolute) for s in specs]
    rendered = render(model, objectives, schedule, [s.seed for s in specs], device=device, **options,
                      trajectory=variants["every:10,snapshots:50"])
    start = time.perf_counter()
    records = trajectory_records(rendered.trajectory, specs)
    middle = time.perf_counter()

    class Result:   # what trajectories_table reads of a JobResult
        def __init__(self, spec, record):
            self.spec, self.trajectory, self.error = spec, record, None
    results = [Result(s, records[j]) for j, s in enumerate(specs)]
    table = trajectories_table(results, model.n_classes)
    end = time.perf_counter()
    encoders = torch.get_num_threads()   # a worker encodes its PNGs on its CPU reservation (--cpus-per-worker)
    threaded = time.perf_counter()
    trajectories_table(results, model.n_classes, threads=encoders)
    threaded = time.perf_counter() - threaded
    without = [Result(s, dataclasses.replace(records[j], snapshots={})) for j, s in enumerate(specs)]
    plain = time.perf_counter()
    trajectories_table(without, model.n_classes)
    plain = time.perf_counter() - plain
    pngs = sum(len(r.snapshots) for r in records.values())
    print(f"    per-image records {middle - start:.3f} s, table of {table.num_rows} rows ({table.nbytes / 2**20:.1f} "
          f"MiB in memory) {end - middle:.3f} s: {100 * (end - start) / base:.1f}% of the render, on the worker's "
          f"writer thread for the table; its {pngs} snapshot PNGs (Pillow, {size} px) are nearly all of it: "
          f"{threaded:.3f} s with {encoders} encoders at once (--cpus-per-worker {encoders}), {plain:.4f} s "
          f"without them")


def host_waits(model, batch: int, schedule: Schedule, device, options, trajectory) -> int:
    """CUDA: how often a render made the host wait for the GPU between the end of its first step and the end of
    its last (torch's sync debug mode warns at each wait: a read of a value, a blocking copy)."""
    objectives = [obj.class_logit(j % model.n_classes, schedule.C, absolute=schedule.absolute) for j in range(batch)]
    marks: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            render(model, objectives, schedule, list(range(batch)), device=device, **options, trajectory=trajectory,
                   progress=lambda done, total: marks.append(sum("synchroniz" in str(w.message) for w in caught)))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return marks[-1] - marks[0]


def preset_figures(args, model, device, options, cap: int | None) -> None:
    """(c) the full preset at the automatic batch (capped where (b)'s scan stopped gaining, when it ran), the
    one-image loop beside it, peak memory."""
    from sweep.worker import auto_batch_size, largest_input
    preset = load_schedule("googlenet")
    side = largest_input(preset, model.input_size)
    b = args.full_batch or auto_batch_size(model, preset, device, bf16=options["autocast_bf16"],
                                           fp16=options["autocast_fp16"], channels_last=options["channels_last"],
                                           cap=cap or AUTO_CAP)
    warm_up = time_engine(model, b, dataclasses.replace(preset, octaves=tuple(
        dataclasses.replace(o, iterations=2) for o in preset.octaves)), device, **options)   # compiles, autotunes
    torch.cuda.reset_peak_memory_stats(device)
    seconds = time_engine(model, b, preset, device, **options)
    per_class = seconds / b
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    print(f"(c) preset {preset.name} ({preset.total_iterations} iterations, largest input {side} px), "
          f"{'given' if args.full_batch else 'automatic'} batch {b}"
          f"{'' if args.full_batch else f' (cap {cap or AUTO_CAP})'}: {seconds:.1f} s, {per_class:.3f} s per class, "
          f"projected 1000 classes: {per_class * 1000 / 60:.2f} min on this GPU (goal <= 3 min); peak GPU memory "
          f"{peak:.1f} of {total:.0f} GiB; the warm-up's 2 steps an octave took {warm_up:.1f} s"
          f"{' (compiling each shape)' if args.compile else ''}")
    if args.compile:   # a batch of one is another shape: two more compilations, and no figure of the articles' loop
        print("    one-image loop: not run under --compile (see the eager run)")
        return
    o1, o2 = preset.octaves
    rates = {}
    for side in (o1.size, o2.crop or o2.size):
        time_article_loop(model, 1, side, 2, device)
        rates[side] = 10 / time_article_loop(model, 1, side, 10, device)
    loop_seconds = o1.iterations / rates[o1.size] + o2.iterations / rates[o2.crop or o2.size]
    print(f"    one-image loop on the same GPU: {loop_seconds:.1f} s per class, projected 1000 classes "
          f"{loop_seconds * 1000 / 3600:.1f} h; engine speed-up {loop_seconds / per_class:.1f}x (goal >= 30x)")


def profile_figures(args, model, device, options) -> None:
    """(g) where a step's time goes: a few steps at `--profile-batch` and `--profile-size` under torch.profiler,
    the kernels (CUDA) or operators (CPU) that took most of it, each with its share."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == "cuda"
    batch, side, steps = args.profile_batch, args.profile_size, 5
    time_engine(model, batch, one_octave(side, 2), device, **options)            # warm-up: autotuning, allocator
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        seconds = time_engine(model, batch, one_octave(side, steps), device, **options)

    def self_time(event) -> float:   # microseconds; the attribute was renamed from cuda_ to device_ in torch 2.4
        if not cuda:
            return event.self_cpu_time_total
        return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)
    events = sorted(prof.key_averages(), key=self_time, reverse=True)
    total = sum(self_time(e) for e in events) or 1.0
    print(f"(g) profile, batch {batch}, {side} px, {steps} steps: {seconds:.2f} s with the profiler; "
          f"{'GPU kernel' if cuda else 'CPU operator'} time {total / 1e6:.2f} s, the 15 largest:")
    for e in events[:15]:
        print(f"    {100 * self_time(e) / total:5.1f}%  {e.count:6d} calls  {e.key[:110]}")


def worker_figures(args, device, options) -> None:
    """(d) the worker over several batches, writes included, two calls at a time (in-process)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # `python benchmarks/bench_engine.py` from anywhere
    from benchmarks.bench_sweep import run_in_process, wait_share
    from sweep.plan import make_plan
    from sweep.worker import SweepWorker, WorkerConfig
    cuda = device.type == "cuda"
    name, schedule = ("googlenet", load_schedule("googlenet")) if cuda else ("digits", load_schedule("digits"))
    if args.worker_steps:
        schedule = schedule.shortened(args.worker_steps)
    with tempfile.TemporaryDirectory() as root:
        worker = SweepWorker(WorkerConfig(root, name, "random" if cuda else "DEFAULT", schedule,
                                          bf16=options["autocast_bf16"], fp16=options["autocast_fp16"],
                                          channels_last=options["channels_last"],
                                          compile=args.compile, fold_batchnorm=args.fold_batchnorm,
                                          threads=torch.get_num_threads()))
        b = worker.setup(args.full_batch)["batch_size"]
        n_classes = worker.model.n_classes
        seeds = (b * (args.worker_batches + 1) + n_classes - 1) // n_classes
        batches = make_plan(n_classes=n_classes, jobs="octave", classes="all", seeds=seeds,
                            batch_size=b).batches()[:args.worker_batches + 1]
        worker.run(batches[0], (1,) * len(batches[0].items))        # warm-up batch (kernels, allocator)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        elapsed, reports = run_in_process(worker, batches[1:], 2)
        images = sum(len(r.done) for r in reports)
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if cuda else ""
        print(f"(d) worker, {name} preset, batch {b}, {len(reports)} batches ({images} images, PNG + Parquet "
              f"included): {elapsed:.1f} s, {elapsed / max(images, 1):.3f} s per class, projected 1000 classes "
              f"{elapsed / max(images, 1) * 1000 / 60:.2f} min; render loop waited {100 * wait_share(reports):.1f}% "
              f"(goal < 5%){peak}")


def quality_figures(device, options) -> None:
    """(e) the speed options against float32 on the same seeds, each half precision in turn, bf16 and fp16
    autocast, with the run's other options (on the CPU, slow there, but the same rounding)."""
    from jobs.kinds import JobSpec, run_batch
    cuda = device.type == "cuda"
    layout = dict(channels_last=options["channels_last"]) if cuda else {}
    halves = {"bf16": dict(autocast_bf16=True, **layout), "fp16": dict(autocast_fp16=True, **layout)}
    digits = load_model("digits", "DEFAULT", device=device)
    specs = [JobSpec(job="octave", target=c, seed=0) for c in range(10)]
    for label, opts in (("float32", {}), *halves.items()):
        results = run_batch(digits, specs, load_schedule("digits"), device=device, **opts)
        good = sum(r.label == r.spec.target and r.target_prob >= 0.9 for r in results)
        print(f"(e) digits, {label} ({opts or 'float32'}): label = target with p >= 0.9 for {good}/10")
    # torchvision's random GoogLeNet passes no input gradient (~1e-13): He-initialised weights do
    net = load_model("googlenet", "random-he", device=device)
    preset = load_schedule("googlenet")
    objectives = [obj.class_logit(j, preset.C, absolute=preset.absolute) for j in range(4)]
    size = preset.octaves[0].size if cuda else 128
    for steps in (1, 20):
        run = dataclasses.replace(preset, octaves=(dataclasses.replace(preset.octaves[0], iterations=steps,
                                                                       size=size),))
        still = dataclasses.replace(run, octaves=(dataclasses.replace(run.octaves[0], lr=(0.0, 0.0)),))
        blurred = render(net, objectives, still, list(range(4)), device=device).images
        full = (render(net, objectives, run, list(range(4)), device=device).images - blurred).flatten(1)
        for label, opts in halves.items():
            fast = (render(net, objectives, run, list(range(4)), device=device, **opts).images - blurred).flatten(1)
            cosine = torch.nn.functional.cosine_similarity(full, fast)
            print(f"    googlenet (random-he weights, {size} px), {steps:2d} step(s): what the gradient did to the "
                  f"image, {label} vs float32: cosine min {cosine.min():.3f}, mean {cosine.mean():.3f} "
                  f"(tolerance 0.7)")


if __name__ == "__main__":
    main()
