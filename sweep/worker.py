"""The Ray worker: loads the model once, renders batches with the engine, writes their Parquet files itself.

Like a Ray Data callable class, the expensive state (model, schedule) is built in `__init__` and each call
processes one batch; the real images the image jobs start from are read from the store on first use. A call
returns a small `BatchReport` (keys done, keys failed with their errors, seconds), never images: the pictures go
straight from the worker to the store. On a GPU node each actor is given one GPU
(`num_gpus=1`) and Ray sets CUDA_VISIBLE_DEVICES; the device is still chosen by `torch.cuda.is_available()`, so an
actor holding a fake GPU resource (tests, benchmarks) runs on the CPU.
"""
from __future__ import annotations

import collections
import importlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sweep.plan import Batch
from sweep.store import FAILURES, FRAMES, IMAGES, TRAJECTORIES, UNSHARED_STORE, Store, StoreError, decode_png, \
    failures_table, frames_table, images_table, job_schedule, trajectories_table


CPU_BATCH = 8         # batch on a CPU: beyond a few images per batch a CPU gains nothing, and batches stay short
AUTO_CAP = 256        # largest automatic GPU batch: on an H200, GoogLeNet at 299 px gains < 5% beyond it (README)
HEADROOM = 0.7        # share of the GPU's free memory an automatic batch may plan to use (the probe is a bare step)
REPORT_EVERY = 0.5    # seconds between a worker's step reports within a batch
SOURCE_CACHE_BYTES = 512 * 2**20   # decoded source pictures an actor keeps between batches, least recently used
                                   #   dropped first (a sweep over a folder of thousands would fill its memory)


@dataclass(frozen=True)
class WorkerConfig:
    """What every actor of a sweep needs to build its state; sent once, at actor creation."""
    store: str                       # store URI, opened by each actor itself
    model: str                       # model zoo name
    weights: str                     # weights as given to `jobs.load_model`
    schedule: object = None          # the run's `jobs.Schedule` or `ScheduleSet` (the driver loaded and checked
                                     #   it); a `SweepWorker` needs it, the score and feature workers do not
    engine: str = "jobs.kinds:run_batch"  # "module:function" with run_batch's signature (tests plug fakes here)
    threads: int = 1                 # torch CPU threads and PNG encoders (the actor's CPU reservation)
    bf16: bool = True                # bf16 autocast on a GPU (ignored on the CPU)
    fp16: bool = False               # float16 autocast on a GPU instead, the loss scaled (`jobs.render`): takes
                                     #   bf16's place when both are set (ignored on the CPU)
    channels_last: bool = True       # channels_last memory format on a GPU (ignored on the CPU)
    compile: bool = False            # torch.compile the network on a GPU (ignored on the CPU)
    cudnn_benchmark: bool = True     # let cuDNN pick its fastest kernels per shape on a GPU
    fold_batchnorm: bool | None = False   # fold eval-mode batch norms into the convolutions before them
                                     #   (`jobs.folding`); None: on a GPU only. Off unless the sweep asks: the
                                     #   score and feature workers keep the network as loaded
    read_layers: tuple[str, ...] = ()   # layers the run's objectives read (dream layers, tapped heads): a
                                     #   convolution among them keeps its batch norm (its output stays its own)
    steps: object = None             # a `StepCounter` actor to report steps done within a batch to (None: none)
    trajectory: object = None        # `jobs.render.TrajectoryOptions` to record steps with (None: off)


@dataclass(frozen=True)
class BatchReport:
    """What a worker tells the driver about one batch: keys and timings only."""
    index: int
    done: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]   # (key, error)
    seconds: float                        # the whole call: waiting for its turn, rendering, writing
    worker: str
    render_seconds: float = 0.0           # the engine's time on this batch
    waited_seconds: float = 0.0           # the actor's render loop idle between the previous batch and this one


class StepCounter:
    """Image-steps done so far within the batches being rendered, reported by the workers (fire and forget) and
    read by the driver: token -> steps. A Ray actor of its own (no CPU), so that a dying worker loses nothing."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}

    def report(self, token: str, steps: int) -> None:
        self.steps[token] = max(steps, self.steps.get(token, 0))

    def forget(self, tokens) -> None:
        for token in tokens:
            self.steps.pop(token, None)

    def snapshot(self) -> dict[str, int]:
        return dict(self.steps)


HEAD_NODE = "node:__internal_head__"   # the resource Ray gives the head node only


def start_step_counter():
    """A `StepCounter` actor on the head node. Placed anywhere, it would often land on a GPU worker node, which on
    a spot or autoscaled cluster may go in the middle of a run, and with it the progress within batches and the
    driver's hang watch (`--stall-timeout`) for the rest of the run; the head lasts as long as the cluster."""
    import ray
    return ray.remote(StepCounter).options(num_cpus=0, resources={HEAD_NODE: 0.001}).remote()


def item_steps(schedule, job: str) -> int:
    """Optimisation steps of one image of `job` under the run's schedule (a `Schedule` or a `ScheduleSet`)."""
    return int(schedule.for_job(job).total_iterations)


def import_callable(path: str) -> Callable:
    """"package.module:function" -> the function."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def worker_name() -> str:
    """host/node/actor, short: identifies where an image was made (the `worker` column)."""
    try:
        import ray
    except ImportError:            # in-process on a machine without Ray (the GPU benchmark)
        return f"{socket.gethostname()}/local"
    if not ray.is_initialized():   # used in-process (tests, tools): no node or actor to name
        return f"{socket.gethostname()}/local"
    context = ray.get_runtime_context()
    actor = context.get_actor_id() or "driver"
    return f"{socket.gethostname()}/{context.get_node_id()[:8]}/{actor[:8]}"


def autocast_options(config, on_gpu: bool) -> dict[str, bool]:
    """The engine's autocast switches for a worker of `config` (a `WorkerConfig` or a `SweepConfig`): float16 when
    `fp16` asks (it takes bf16's place), else bf16 when `bf16` does; neither on the CPU, where the run is the
    float32 run bit for bit."""
    fp16 = config.fp16 and on_gpu
    return {"autocast_bf16": config.bf16 and on_gpu and not fp16, "autocast_fp16": fp16}


def folds_batchnorm(option: bool | None, on_gpu: bool) -> bool:
    """Whether a worker folds batch norms into convolutions: as `option` says, or when None on a GPU only (like
    bf16 and channels_last; on the CPU the network stays as loaded, bit for bit)."""
    return on_gpu if option is None else option


def layers_read(layer_specs, schedules) -> tuple[str, ...]:
    """The hidden layers a sweep's objectives read: the dreams' layers (`layer_specs`, `NAME[:maps]` joined by
    `+`) and the tapped heads of `schedules` (a `Schedule` or `ScheduleSet`), e.g. AuxLogits."""
    from jobs.catalog import parse_layers
    dreams = [name for spec in layer_specs for name, _ in parse_layers(spec)]
    heads = [s.output for s in getattr(schedules, "members", ()) if s.output != "logits"]
    return tuple(sorted(set(dreams) | set(heads)))


def ready_for_gpu(model, *, cudnn_benchmark: bool, compile: bool) -> None:
    """A GPU process's settings for `model`: cuDNN's kernel autotuning; float32 kept float32 (PyTorch runs float32
    convolutions on GPUs in TF32 by default, a 10-bit mantissa; here a `--no-bf16` run computes as the articles
    did, and the stored logits and scores, always float32, are those of the image; autocast's convolutions are
    bf16 or float16 either way); and `torch.compile` when asked (`nn.Module.compile`: torch >= 2.2)."""
    import torch
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if compile and hasattr(model.net, "compile"):
        model.net.compile()


def auto_batch_size(model, schedules, device, *, bf16: bool, channels_last: bool, fp16: bool = False,
                    cap: int = AUTO_CAP) -> int:
    """`--batch-size auto` on a GPU: the memory probe's largest batch, at most `cap`, for the largest image any
    job of `schedules` feeds `model`."""
    return probe_batch_size(model, largest_input(schedules, model.input_size), device, bf16=bf16,
                            channels_last=channels_last, fp16=fp16, cap=cap)


def largest_input(schedules, default: int) -> int:
    """Side of the largest image the network is fed under `schedules`, a `Schedule` or a sweep's `ScheduleSet`
    (then every schedule in it): crops, a padded frame, the image a padded octave grows (googlenet-pad's first
    octave reaches 737 px), resize cycles. `default` (the model's input size) when there is no schedule."""
    return max([max(s.model_input_sizes()) for s in getattr(schedules, "members", ())] or [default])


def probe_batch_size(model, side: int, device, *, bf16: bool, channels_last: bool, fp16: bool = False,
                     cap: int = AUTO_CAP, headroom: float = HEADROOM) -> int:
    """The largest batch whose forward + input gradient at `side` x `side` fits in `headroom` of the GPU's free
    memory, at most `cap`: two short steps (batches 2 and 4) tell the fixed and the per-image memory. Each is
    measured on its second run: a shape's first step also holds cuDNN benchmarking's trial workspaces (and lazy
    library handles, a compiled network's first trace), which the render's steady steps do not. The steps run
    under the render's autocast: float16 when `fp16` (it takes bf16's place), else bf16 when `bf16`."""
    import torch
    half = torch.float16 if fp16 else torch.bfloat16

    def step(batch: int) -> None:
        x = torch.rand(batch, 3, side, side, device=device)                    # B x 3 x S x S
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        with torch.enable_grad(), torch.autocast("cuda", dtype=half, enabled=bf16 or fp16):
            out = model(x)
            torch.autograd.grad(out.float().sum(), x)

    def peak(batch: int) -> int:
        step(batch)                                                             # warm: autotuning, handles
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step(batch)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base

    net = model.to(device).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    try:
        small, large = peak(2), peak(4)
    except torch.cuda.OutOfMemoryError:
        return 1
    per_image = max((large - small) / 2, 1.0)
    fixed = max(small - 2 * per_image, 0.0)
    torch.cuda.empty_cache()   # the probe's steps left their memory in PyTorch's cache: the render may use it
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(cap, int((free * headroom - fixed) // per_image)))


def out_of_memory(error: BaseException, batch: int, side: int, device) -> str | None:
    """The failure line of a render that ran out of memory (None for any other error): what ran out, the batch
    and image size, and what to lower."""
    import torch
    text = str(error)
    if not (isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or isinstance(error, RuntimeError)
            and ("out of memory" in text or "not enough memory" in text)):
        return None
    return (f"out of memory on {device} rendering a batch of {batch} images of up to {side} x {side} px: lower "
            f"--batch-size, or the schedule's octave sizes")


class RecentSources:
    """Decoded source pictures kept between batches, least recently used dropped first once they hold more than
    `budget` bytes; the pictures of the batch asking are always kept (a batch over the budget still runs)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.pictures: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()   # oldest use first

    def get(self, names, read: Callable[[str], np.ndarray], unreadable: dict[str, str] | None = None
            ) -> dict[str, np.ndarray]:
        """name -> pixels of `names`, each read with `read(name)` unless kept from an earlier call. When given
        `unreadable`, a name whose read raises StoreError is left out, its message put there."""
        wanted = set(names)
        for name in sorted(wanted):
            if name in self.pictures:
                self.pictures.move_to_end(name)
                continue
            try:
                self.pictures[name] = read(name)
            except StoreError as error:
                if unreadable is None:
                    raise
                unreadable[name] = str(error)
                wanted.discard(name)
        held = sum(pixels.nbytes for pixels in self.pictures.values())
        for name in [n for n in self.pictures if n not in wanted]:   # oldest first
            if held <= self.budget:
                break
            held -= self.pictures.pop(name).nbytes
        return {name: self.pictures[name] for name in wanted}


class SweepWorker:
    """One model replica. Wrapped with `ray.remote(...)` by the driver; also usable in-process in tests.

    Overlap: `run` renders under the actor's render lock, then hands the images to the actor's one writer thread
    (PNG encoding, Parquet write) and waits for its own write before it reports. An actor given two calls at once
    (`max_concurrency`) thus renders batch k+1 while batch k is written; the writer takes batches in the order they
    were rendered, a batch's report leaves only once its file is written, and an actor that dies in between takes
    the batch's call with it (the driver runs the batch again)."""

    def __init__(self, config: WorkerConfig) -> None:
        import torch
        from jobs.models import load_model
        torch.set_num_threads(max(1, config.threads))
        self.config = config
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.on_gpu = self.device.type == "cuda"
        self.model = load_model(config.model, config.weights, device=self.device)
        self.folds = folds_batchnorm(config.fold_batchnorm, self.on_gpu)
        if self.folds:   # before compiling: the compiled graph is the folded network's
            self.model.fold_batchnorm(keep=config.read_layers)
        if self.on_gpu:
            ready_for_gpu(self.model, cudnn_benchmark=config.cudnn_benchmark, compile=config.compile)
        self.run_batch = import_callable(config.engine)
        self.store = Store.open(config.store)
        self.name = worker_name()
        self.sources = RecentSources(SOURCE_CACHE_BYTES)   # source images read from the store, the recent kept
        self.render_lock = threading.Lock()         # one render at a time on this actor's device
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="classweep-writer")   # writes in render order
        self.last_render_end: float | None = None   # perf_counter when the previous render ended

    def info(self) -> dict:
        return {"worker": self.name, "device": str(self.device)}

    @property
    def autocast(self) -> dict[str, bool]:
        """The engine's autocast switches on this actor (`autocast_options`)."""
        return autocast_options(self.config, self.on_gpu)

    def options(self) -> dict:
        """The speed options in effect on this actor (the ones that change images are recorded per run)."""
        import torch
        return {"device": self.device.type,
                "gpu": torch.cuda.get_device_name(self.device) if self.on_gpu else "",
                "bf16": self.autocast["autocast_bf16"], "fp16": self.autocast["autocast_fp16"],
                "channels_last": self.config.channels_last and self.on_gpu,
                "compile": self.config.compile and self.on_gpu, "fold_batchnorm": self.folds}

    def setup(self, batch_size: int | None = None) -> dict:
        """This actor's options and the batch size to use: `batch_size`, or on a GPU the probe's largest batch that
        fits the schedule's largest octave, on a CPU `CPU_BATCH`."""
        if batch_size is None:
            if self.on_gpu:
                batch_size = auto_batch_size(self.model, self.config.schedule, self.device,
                                             bf16=self.autocast["autocast_bf16"], fp16=self.autocast["autocast_fp16"],
                                             channels_last=self.config.channels_last)
            else:
                batch_size = CPU_BATCH
        return {**self.options(), "worker": self.name, "batch_size": batch_size}

    def run(self, batch: Batch, attempts: tuple[int, ...], token: str | None = None) -> BatchReport:
        """Render `batch`, write its images (and failures) to the store, report keys only.

        `attempts[i]` is the try number of `batch.items[i]`; it is recorded with each failure. `token` names this
        call in the step reports (when the config has a `StepCounter`).
        """
        started = time.perf_counter()
        with self.render_lock:
            render_started = time.perf_counter()
            waited = render_started - self.last_render_end if self.last_render_end is not None else 0.0
            results, errors = self.render(batch, token)
            self.last_render_end = time.perf_counter()
            rendering = self.last_render_end - render_started
            # Submitted under the lock: the writer sees batches in the order they were rendered.
            written = self.writer.submit(self.write, batch, attempts, results, errors)
        done, failed = written.result()
        return BatchReport(batch.index, done, failed, time.perf_counter() - started, self.name,
                           render_seconds=rendering, waited_seconds=waited)

    def render(self, batch: Batch, token: str | None) -> tuple[list, dict[str, str]]:
        """The engine's results for `batch` and {key: error} of the items it failed (all of them if it raised)."""
        specs, failed, unreadable = list(batch.items), {}, {}
        try:
            # a source missing or damaged in the store fails its own items; the batch's others render
            sources = self.source_images({spec.source for spec in specs if spec.source}, unreadable)
            failed = {spec.key: unreadable[spec.source] for spec in specs if spec.source in unreadable}
            specs = [spec for spec in specs if spec.source not in unreadable]
            if not specs:
                return [], failed
            options = {"sources": sources} if sources else {}
            if self.config.trajectory is not None:
                options["trajectory"] = self.config.trajectory
            if self.config.steps is not None and token is not None:
                options["progress"] = self.step_reporter(specs, token)
            results = self.run_batch(self.model, specs, self.config.schedule, device=self.device,
                                     **self.autocast, channels_last=self.config.channels_last and self.on_gpu,
                                     **options)
            return results, {**failed, **{r.spec.key: r.error for r in results if r.error is not None}}
        except Exception as error:  # the engine failed the whole batch: every item records why
            schedule = self.config.schedule.for_job(batch.items[0].job)
            why = out_of_memory(error, len(specs), largest_input(schedule, self.model.input_size), self.device)
            if why and self.on_gpu:   # give the failed batch's memory back before the next one
                import torch
                torch.cuda.empty_cache()
            return [], {**failed, **{spec.key: why or f"{type(error).__name__}: {error}" for spec in specs}}

    def step_reporter(self, specs, token: str) -> Callable[[int, int], None]:
        """The engine's progress callback: image-steps done in this batch (its items `specs` that render), sent to
        the StepCounter at most every REPORT_EVERY seconds (fire and forget: the render never waits for it)."""
        steps = len(specs) * item_steps(self.config.schedule, specs[0].job)
        last = [time.monotonic()]

        def report(t: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= REPORT_EVERY and total:
                last[0] = now
                self.config.steps.report.remote(token, steps * t // total)
        return report

    def write(self, batch: Batch, attempts: tuple[int, ...], results: list, errors: dict[str, str]
              ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        """On the writer thread: encode and write the batch's trajectories (when recorded) and frames, then its
        images, then its failures; (done keys, failed). Trajectories and frames first: a row in images/ (what resume
        counts as done) implies they are stored; all are named by the batch, so a re-run overwrites them (exactly
        once). A failed write fails the batch's items (recorded like engine failures)."""
        try:
            trajectories = trajectories_table(results, len(self.model.class_names), threads=self.config.threads)
            if trajectories.num_rows:
                self.store.write_table(f"{TRAJECTORIES}/{batch.name}.parquet", trajectories)
            # A batch holds one job, so one step count: that job's own schedule's (not the longest of the set).
            steps = item_steps(self.config.schedule, batch.items[0].job)
            frames = frames_table(results, self.model.class_names, self.name, threads=self.config.threads)
            if frames.num_rows:   # named like the images file: a re-run of the batch overwrites both
                self.store.write_table(f"{FRAMES}/{batch.name}.parquet", frames)
            images = images_table(results, self.model.class_names, self.name, total_steps=steps,
                                  threads=self.config.threads)
            if images.num_rows:
                self.store.write_table(f"{IMAGES}/{batch.name}.parquet", images)
            done = set(images.column("key").to_pylist())
        except Exception as error:
            done = set()
            errors = {key: f"writing the batch failed: {type(error).__name__}: {error}" for key in batch.keys}
        failed = [(item, attempt, errors.get(item.key) or "the engine returned no result for this item")
                  for item, attempt in zip(batch.items, attempts) if item.key not in done]
        if failed:
            # Named by the batch and its highest try: a re-run of this very call overwrites, a later try adds.
            self.store.write_table(f"{FAILURES}/{batch.name}-a{max(attempts)}.parquet",
                                   failures_table(failed, self.name))
        return (tuple(k for k in batch.keys if k in done),
                tuple((item.key, error) for item, _, error in failed))

    def source_images(self, names, unreadable: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        """name -> pixels of the source images a batch needs, read from the store (where the driver put them, so
        that they reach actors on any node, and actors that replace dead ones); the recent ones are kept for the
        next batches (`RecentSources`). One that is missing or damaged goes into `unreadable` (name -> why) when
        given."""
        return self.sources.get(names, self.store.read_source, unreadable)

    def read_listed(self, path: str, columns: Sequence[str]) -> pa.Table:
        """`columns` of a store file the driver listed (`sweep score`'s and the feature pass's work). On a local
        store, a file missing on this worker's node means the store is not shared with it (a local path on a
        cluster without a shared file system): StoreError saying so, where the read named a missing file only."""
        try:
            return self.store.read_file(path, columns)
        except FileNotFoundError:
            if self.store.is_object_store:
                raise
            raise StoreError(f"{self.store.location_of(path)} is not on this worker's node ({socket.gethostname()}), "
                             f"though the driver listed it: {UNSHARED_STORE}") from None

    def features(self, path: str, layer: str, maps: tuple[int, ...], job: str = "octave",
                 size: str = "input") -> pa.Table:
        """Feature means of `job`'s images in one `images/` file, each image resized to the side its job started
        at (`size` "input", `features.input_side`; antialiased as the job's schedule resized) or as stored
        ("stored"): key, target, target_name, layer, feature_size (`size`), side (of the square the model saw),
        map_<i>."""
        from jobs.kinds import feature_means
        from sweep.features import FEATURE_SIZES, input_side
        if size not in FEATURE_SIZES:
            raise ValueError(f"feature size {size!r}: one of {', '.join(FEATURE_SIZES)}")
        table = self.read_listed(path, ["key", "job", "target", "target_name", "png"])
        table = table.filter(pc.equal(table.column("job"), job))
        images = [decode_png(png) for png in table.column("png").to_pylist()]     # N x (H x W x 3)
        same_size = len({image.shape for image in images}) <= 1
        # Under the input convention the job's images were made with (the manifest's job_schedules), resized as
        # its schedule resized between octaves (antialiased unless it says otherwise, as before the field).
        manifest = self.store.read_manifest() or {}
        convention = (manifest.get("job_schedules") or {}).get(job, {}).get("input")
        antialias = bool(job_schedule(manifest, job).get("antialias", True))
        side = input_side(manifest, job, self.model.input_size) if size == "input" else None
        values = feature_means(self.model, np.stack(images) if images and same_size else images, layer, maps,
                               self.device, input=convention, side=side, antialias=antialias)   # N x M
        columns = {"key": table.column("key"), "target": table.column("target"),
                   "target_name": table.column("target_name"),
                   "layer": pa.array([layer] * table.num_rows, pa.string()),
                   "feature_size": pa.array([size] * table.num_rows, pa.string()),
                   "side": pa.array([side or image.shape[0] for image in images], pa.int32())}
        columns.update({f"map_{m}": pa.array(values[:, i], pa.float32()) for i, m in enumerate(maps)})
        return pa.table(columns)
