"""`sweep run --dry-run` / `--calibrate`: what a run would do, before any cluster starts.

    preview    the checked plan (the same `prepare` a run does: model, schedule, selections, store manifest) and
               the store's progress: items, batches and image-iterations per job, what is already done, what is
               left; nothing is written and Ray is not started
    calibrate  times one batch of the plan's first job on the local device with every octave cut to a few steps,
               and projects the work left (image-iterations weighted by each octave's pixels) to device-hours and
               to wall time for a number of workers of the same device
"""
from __future__ import annotations

import collections
import statistics
import time
from dataclasses import dataclass

from jobs.text import counted
from sweep.progress import format_duration

CALIBRATION_STEPS = 2   # gradient steps per octave in the timed batch (after an untimed warm-up of the same steps)
MIN_TIMED_RUNS = 3        # the timed batch runs at least this often, and again until MIN_TIMED_SECONDS are
MIN_TIMED_SECONDS = 1.0   #   measured (a tiny model's one run is a few ms, which a busy moment can stretch 40-fold),
MAX_TIMED_RUNS = 25       #   at most MAX_TIMED_RUNS times; the median run is the figure
clock = time.perf_counter


def octave_cost(schedule) -> float:
    """Pixel-steps of one image under `schedule`: each octave's iterations times the side it optimises, squared
    (the random crop when the octave has one)."""
    return float(sum(o.iterations * (o.crop or o.size) ** 2 for o in schedule.octaves))


@dataclass(frozen=True)
class JobLine:
    job: str
    items: int              # items of this job in the plan
    batches: int
    done: int               # already in the store
    iterations: int         # gradient steps per image
    cost: float             # pixel-steps per image (see `octave_cost`)
    batches_left: int = 0   # batches holding an item the store lacks

    @property
    def work(self) -> int:
        """Image-iterations of the whole job."""
        return self.items * self.iterations

    @property
    def work_left(self) -> int:
        return (self.items - self.done) * self.iterations


@dataclass(frozen=True)
class Preview:
    store: str
    model: str
    n_classes: int
    schedule: str
    batch_size: int
    jobs: tuple[JobLine, ...]
    new_store: bool
    automatic_batch: bool = False   # `--batch-size auto`: `batch_size` is the CPU's; a GPU worker measures its own

    def batch_line(self) -> str:
        if not self.automatic_batch:
            return f"batch size {self.batch_size}"
        return (f"batch size auto: {self.batch_size} on a CPU worker (the batches counted below), on a GPU the "
                f"largest that fits, measured by the first worker")

    @property
    def items(self) -> int:
        return sum(j.items for j in self.jobs)

    @property
    def done(self) -> int:
        return sum(j.done for j in self.jobs)

    @property
    def work_left(self) -> int:
        return sum(j.work_left for j in self.jobs)

    @property
    def tasks_left(self) -> int:
        """The tasks a run would hand its workers, which cap their count (`sweep.fleet.cluster_plan`): the items
        left with an automatic batch size (the first worker cuts them), else the batches holding an item left."""
        return self.items - self.done if self.automatic_batch else sum(j.batches_left for j in self.jobs)

    @property
    def cost_left(self) -> float:
        return sum((j.items - j.done) * j.cost for j in self.jobs)

    def lines(self) -> list[str]:
        out = ["dry run: nothing written, Ray not started",
               f"model {self.model} ({self.n_classes} classes), schedule {self.schedule}, {self.batch_line()}",
               f"{'job':<16}{'items':>9}{'batches':>9}{'done':>9}{'steps/image':>13}{'image-iterations':>18}"]
        for j in self.jobs:
            out.append(f"{j.job:<16}{j.items:>9}{j.batches:>9}{j.done:>9}{j.iterations:>13}{j.work:>18}")
        state = "new store" if self.new_store else f"{self.done}/{self.items} items already stored"
        out.append(f"store {self.store}: {state}; left: {counted(self.items - self.done, 'item')}, "
                   f"{self.work_left} image-iterations")
        return out


def preview(prepared) -> Preview:
    """The plan of a prepared run against what its store holds (reads the store's keys; writes nothing)."""
    plan, store = prepared.plan, prepared.store
    done_keys = store.done_keys() if store.read_manifest() is not None else set()
    items, batches, done, left = (collections.Counter() for _ in range(4))
    for batch in plan.batches():
        job = batch.items[0].job
        batches[job] += 1
        items[job] += len(batch.items)
        stored = sum(key in done_keys for key in batch.keys)
        done[job] += stored
        left[job] += stored < len(batch.items)
    lines = tuple(JobLine(job, items[job], batches[job], done[job],
                          prepared.schedule.for_job(job).total_iterations,
                          octave_cost(prepared.schedule.for_job(job)), left[job]) for job in items)
    return Preview(store.uri, prepared.manifest.get("model", prepared.config.model), len(prepared.class_names),
                   prepared.schedule.name, plan.batch_size, lines, store.read_manifest() is None,
                   automatic_batch=prepared.config.batch_size is None)


@dataclass(frozen=True)
class Calibration:
    device: str
    images: int             # images in the timed batch
    seconds: float          # time of the timed batch (the median of `runs` runs)
    cost: float             # its pixel-steps
    runs: int = 1           # how often it was timed
    threads: int = 0        # torch threads it ran on, on a CPU (a CPU worker's); 0 on a GPU

    @property
    def seconds_per_cost(self) -> float:
        return self.seconds / self.cost

    def lines(self, view: Preview, workers: int, whose: str = "", joined: bool = False) -> list[str]:
        """The calibration and its projection for `workers` workers of this device (`whose`: where that count
        comes from, when `--workers` did not give it: `projected_workers`). `joined`: the run would join a cluster
        (`--address`), whose workers this machine's timing does not measure."""
        speed = ("timed on this machine, not on the cluster's workers: run the dry run on one of their nodes for "
                 "their speed" if joined else "actors on other devices run at their own speed")
        total = view.cost_left * self.seconds_per_cost
        per_iteration = total / view.work_left if view.work_left else 0.0
        hours = f"{total / 3600:.2f}" if total >= 36 else "under 0.01"
        threads = f" ({counted(self.threads, 'torch thread')}, as each CPU worker)" if self.threads else ""
        return [f"calibration on {self.device}{threads}: {self.images} images x {CALIBRATION_STEPS} steps per "
                f"octave in {self.seconds:.3g} s, the median of {self.runs} run{'s' if self.runs != 1 else ''} "
                f"({per_iteration * 1e3:.1f} ms per image-iteration at the schedule's sizes)",
                f"projected: {hours} {self.device.split(':')[0].upper()}-hours; wall time "
                f"{format_duration(total / max(1, workers))} with {counted(workers, 'worker')}{whose}, plus start-up "
                f"({speed})"]


def projected_workers(cluster, device: str, tasks_left: int) -> tuple[int, str]:
    """(workers, whose) for the projection: `--workers`; else the count a run on this machine's own Ray would
    start (`sweep.fleet`: one per GPU on a GPU, else one per `--cpus-per-worker` of the CPUs that Ray offers, a
    container's quota heeded: `local_cpus`), said as this machine's; else, joining a cluster (`--address`), 1 (the
    dry run starts no Ray to count its nodes). Never more than the tasks left (`Preview.tasks_left`: a worker
    takes one at least), as the fleet, `--workers` included."""
    import torch

    from sweep.fleet import local_cpus, worker_count
    if cluster.workers:
        return worker_count(cluster, False, 0, 0, tasks_left), ""
    if cluster.address:
        return 1, " (--workers N for the cluster's)"
    if torch.device(device).type == "cuda":
        gpus = cluster.num_gpus or torch.cuda.device_count()
        return worker_count(cluster, True, gpus, 0, tasks_left), ", as this machine would start them (one per GPU)"
    cpus = cluster.num_cpus or local_cpus()
    return (worker_count(cluster, False, 0, cpus, tasks_left),
            f", as this machine would start them ({cpus:g} CPUs, {cluster.cpus_per_worker:g} a worker)")


def calibrate(prepared, device: str | None = None) -> Calibration:
    """Time one batch of the plan's first job on `device` (default: cuda when available and `--device` is not cpu,
    else cpu: the workers' device), every octave cut to CALIBRATION_STEPS steps, after an untimed warm-up of the
    same steps; the timed run is repeated (at least MIN_TIMED_RUNS times, until MIN_TIMED_SECONDS are measured, at
    most MAX_TIMED_RUNS times) and its median counts. On a GPU it runs as the sweep's GPU workers do: with the run's
    speed options (bf16 or fp16 autocast, channels_last, cuDNN benchmark, batch norms folded, `--compile`, whose
    compiling the warm-up absorbs) and, with an automatic batch size, the batch the workers' memory probe chooses
    (not the CPU's); on the CPU its batch norms are folded when `--fold-batchnorm` asks, as the CPU workers' are,
    and it runs on as many torch threads as a CPU worker (`ClusterConfig.threads`: one per `--cpus-per-worker`,
    where this process would take every core: on a busy 2-core machine the demo's steps took 22 times as long on two
    threads as on the workers' one)."""
    import dataclasses

    import torch

    from jobs.models import load_model
    config = prepared.config
    device = device or ("cuda" if torch.cuda.is_available() and config.cluster.device != "cpu" else "cpu")
    on_gpu = torch.device(device).type == "cuda"
    from sweep.worker import auto_batch_size, autocast_options, folds_batchnorm, layers_read, ready_for_gpu
    speed = {**autocast_options(config, on_gpu), "channels_last": config.channels_last and on_gpu}
    model = load_model(config.model, config.weights, device=device)
    plan = prepared.plan
    if folds_batchnorm(config.fold_batchnorm, on_gpu):   # as the workers: before compiling
        model.fold_batchnorm(keep=layers_read(plan.layers, prepared.schedule))
    if on_gpu:   # as the workers (the warm-up below compiles, with --compile)
        ready_for_gpu(model, cudnn_benchmark=config.cudnn_benchmark, compile=config.compile)
        if config.batch_size is None:
            plan = dataclasses.replace(plan, batch_size=auto_batch_size(
                model, prepared.schedule, device, bf16=speed["autocast_bf16"], fp16=speed["autocast_fp16"],
                channels_last=config.channels_last))
    batch = plan.batches()[0]
    schedule = prepared.schedule.for_job(batch.items[0].job)   # a batch holds one job: time that job's schedule
    threads = torch.get_num_threads()
    if not on_gpu:
        torch.set_num_threads(config.cluster.threads)
    try:
        timed = _timed(model, batch.items, schedule, device, prepared.sources, speed)
    finally:
        torch.set_num_threads(threads)
    return timed if on_gpu else dataclasses.replace(timed, threads=config.cluster.threads)


def _timed(model, specs, schedule, device: str, sources, speed: dict) -> Calibration:
    """`calibrate`'s timing of one batch of `specs` under `schedule`, its octaves cut short."""
    import torch

    from jobs.kinds import run_batch
    sources = {name: sources[name].read() for name in {s.source for s in specs if s.source}}
    kwargs = {**speed, **({"sources": sources} if sources else {})}
    timed = schedule.shortened(CALIBRATION_STEPS)
    run_batch(model, specs, timed, device=device, **kwargs)   # warm-up: kernels, allocator, caches, every input size
                                                              # the timed run feeds (--compile compiles each)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    runs: list[float] = []
    while len(runs) < MIN_TIMED_RUNS or (sum(runs) < MIN_TIMED_SECONDS and len(runs) < MAX_TIMED_RUNS):
        start = clock()
        run_batch(model, specs, timed, device=device, **kwargs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        runs.append(clock() - start)
    return Calibration(device, len(specs), statistics.median(runs), len(specs) * octave_cost(timed), len(runs))
