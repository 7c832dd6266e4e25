"""`sweep`: the command line. Thin: it parses options and calls the library (`run_sweep`, `store_status`, ...).

Every user error (bad selection, unknown model or schedule, missing weights, a store of another sweep) is one line
`Error: ...` and exit status 2, raised before anything is written or Ray is started.
"""
from __future__ import annotations

import contextlib
import math
import sys
from typing import Iterator

import click

from jobs.text import first_line, is_whole_number
from sweep.driver import SweepConfig, SweepError, run_sweep
from sweep.features import FEATURE_SIZES
from sweep.fleet import DEVICES, ClusterConfig
from sweep.interrupts import INTERRUPTED, INTERRUPTED_STATUS, install_interrupt_handlers, restore_handlers
from sweep.plan import PlanError, comma_items
from sweep.score import SCORE_BATCH, ScoreConfig, run_score
from sweep.store import ManifestMismatch, StoreError, object_store_problem, open_store, require_images

DEMO_STORE = "./demo-store"
DEMO_BATCH = 16   # the digits preset renders fastest per image around 16 per batch on a CPU
DEMO_INTERPOLATIONS = "0+1,3+8,7+2,4+9,5+6"   # a few pairs: each interpolation keeps a strip of frames
DEMO_SCORER = "digits-resnet"   # the second demo model, independently trained: does a digits image transfer?


class UserError(click.ClickException):
    """Printed by click as `Error: <message>`; exit status 2 like click's own usage errors."""
    exit_code = 2


def user_errors() -> tuple[type[BaseException], ...]:
    from jobs.models import InvalidWeightsFile, UnknownModel, WeightsUnavailable
    return PlanError, StoreError, WeightsUnavailable, InvalidWeightsFile, UnknownModel


def os_error_line(error: OSError) -> str:
    """An OSError (disk full, read-only file system, permission, a path that is a file) as one line naming the
    file: `cannot write /s/images/x.parquet: No space left on device`."""
    what = error.strerror or first_line(error)
    paths = [p for p in (error.filename, error.filename2) if p]
    return f"{what}: {' -> '.join(map(str, paths))}" if paths else what


@contextlib.contextmanager
def reported(store: str | None = None) -> Iterator[None]:
    """Turn the library's user errors, and the file system's (OSError: disk full, read-only store, ...; with the
    `store` URI, an object store's failures met outside the store layer) and Arrow's (a damaged Parquet file),
    into one-line CLI errors (no traceback)."""
    import pyarrow as pa
    try:
        yield
    except user_errors() as error:
        raise UserError(first_line(error)) from None
    except SweepError as error:
        raise click.ClickException(first_line(error)) from None
    except UnicodeDecodeError as error:   # a binary file where a text file belongs (before ValueError: a subclass)
        raise UserError(f"a file given is not text ({first_line(error)})") from None
    except OSError as error:
        if store is not None and store.lower().startswith(("s3://", "gs://", "gcs://")):
            raise UserError(object_store_problem(store, error)) from None
        raise UserError(os_error_line(error)) from None
    except pa.ArrowException as error:
        raise UserError(f"unreadable data: {first_line(error)}") from None


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that refuses nan and inf: nan passes every bound (nan < 1 is false), and neither is a
    number of seconds, CPUs or a share (a nan lease timeout made the heartbeat rewrite the lease in a busy loop)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def cluster_options(command):
    """Options shared by the commands that start workers (run, demo, analyze --features)."""
    options = [
        click.option("--address", default=None, help="Join this Ray cluster (auto or HOST:PORT); "
                     "default: start a local Ray."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Number of actors (default: one per GPU, or one per --cpus-per-worker CPUs without GPUs)."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                     help="gpu: one GPU per actor even before the autoscaler has added GPU nodes."),
        click.option("--cpus-per-worker", type=FiniteFloatRange(min=0.01), default=1.0, show_default=True,
                     help="CPUs reserved by each actor (also its torch threads)."),
        click.option("--gpu-wait", type=FiniteFloatRange(min=0), default=600.0, show_default=True,
                     help="--device gpu on a cluster without GPUs: seconds to wait for GPU nodes before giving up "
                          "(a run whose first worker does not answer, or that has lost every worker, waits this "
                          "long too, at least 600 s)."),
        click.option("--stall-timeout", type=FiniteFloatRange(min=1), default=1200.0, show_default=True,
                     help="Seconds a worker holding work may go without progress (a step done, a task finished "
                          "or handed to it) before it counts as hung: it is ended and its work runs again on a new "
                          "worker."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def given(name: str) -> bool:
    """Whether the current command's option `name` was given (on the command line), not left at its default."""
    return click.get_current_context().get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def refuse_given(needed: str, names: tuple[str, ...]) -> None:
    """Refuse options of the current command that only `needed` uses, when given without it (else they would be
    silently ignored)."""
    named = [f"--{name.replace('_', '-')}" for name in names if given(name)]
    if named:
        raise click.UsageError(f"{', '.join(named)} only appl{'ies' if len(named) == 1 else 'y'} to {needed}, "
                               f"which was not given")


def non_empty(ctx, param, value):
    """A --store, --out, --images or STORES value, refused when empty or blank: `--out "$OUT"` with OUT unset meant a
    folder, not the current one (export wrote its PNGs there, run would make it a store, compare failed with a
    traceback, `run --images` started from the current folder's pictures)."""
    if any(text is not None and not text.strip() for text in (value if isinstance(value, tuple) else (value,))):
        raise click.BadParameter("an empty path (write . for the current folder)", ctx, param)
    return value


def path_option(name: str, **kwargs):
    """click.option for a --store or --out path, refused when given empty (`non_empty`)."""
    return click.option(name, callback=non_empty, **kwargs)


def cluster_config(address, workers, device, cpus_per_worker, gpu_wait, stall_timeout) -> ClusterConfig:
    return ClusterConfig(address=address, workers=workers, device=device, cpus_per_worker=cpus_per_worker,
                         gpu_wait=gpu_wait, stall_timeout=stall_timeout)


class BatchSize(click.ParamType):
    """`auto` (None) or a whole number of at least 1."""
    name = "auto|N"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "auto":
            return None
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither auto nor a whole number", param, ctx)
        if number < 1:
            self.fail(f"{value!r}: a batch holds at least 1 image", param, ctx)
        return number


class TrajectoryOption(click.ParamType):
    """`every:N[,snapshots:M]` -> `jobs.render.TrajectoryOptions`."""
    name = "every:N[,snapshots:M]"

    def convert(self, value, param, ctx):
        if value is None or not isinstance(value, str):
            return value
        from jobs.render import TrajectoryOptions
        try:
            return TrajectoryOptions.parse(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


class SeedList(click.ParamType):
    """`all` (None: every seed) or a comma list of seeds `0` | `0,2` -> the seeds, ascending, each once."""
    name = "all|S,S,..."

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, tuple):
            return value
        text = str(value).strip()
        if text.lower() == "all":
            return None
        parts = [part.strip() for part in text.split(",")]
        if not all(is_whole_number(part) for part in parts):
            self.fail(f"{value!r} is neither all nor a comma list of seeds (e.g. 0 or 0,2)", param, ctx)
        return tuple(sorted({int(part) for part in parts}))


class GraphRanges(click.ParamType):
    """`halves`, `all` or class ranges `0-499,500-999` (`analysis.graph.ranges_spec`: ascending, none sharing a
    class); whether they lie inside the class list is checked against the store (`analysis.graph.parse_ranges`)."""
    name = "halves|all|A-B,C-D,..."

    def convert(self, value, param, ctx):
        from analysis.graph import ranges_spec   # on use: `sweep run` never loads the analysis stack
        try:
            return ranges_spec(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


class OneLineErrors(click.Group):
    """A group whose usage errors (a bad option value, a missing option) print one `Error: ...` line, like every
    other user error of the command, followed by click's hint (`Try 'sweep run -h' for help.`) instead of its usage
    block. Bare `sweep` shows the help and exits 0."""

    def parse_args(self, ctx, args):
        if not args:
            click.echo(ctx.get_help())
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def main(self, *args, **kwargs):
        previous = install_interrupt_handlers()   # before anything starts: SIGTERM and SIGINT stop every stage alike
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except (click.exceptions.Abort, KeyboardInterrupt):   # click turns Ctrl-C into Abort
            click.echo(INTERRUPTED, err=True)
            sys.exit(INTERRUPTED_STATUS)
        except click.exceptions.Exit as done:   # --help, --version, bare `sweep`
            sys.exit(done.exit_code)
        except click.ClickException as error:
            click.echo(f"Error: {error.format_message()}", err=True)
            ctx = getattr(error, "ctx", None)
            if isinstance(error, click.UsageError) and ctx is not None:
                click.echo(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.", err=True)
            sys.exit(error.exit_code)
        finally:
            restore_handlers(previous)   # called in-process (tests, notebooks): leave the caller's handlers


WEIGHTS_OPTION = click.option("--weights", default="DEFAULT", show_default=True,
                              help="Weights name, random (random-he: He-initialised), or a .pth file.")


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(None, "--version", package_name="classweep", prog_name="sweep",
                      message="%(prog)s %(version)s")
def main() -> None:
    """Class-image sweeps over image classifiers on Ray, stored as Parquet, and their analysis."""


@main.command()
def models() -> None:
    """List the models, their class count, input size and whether their weights are available offline."""
    from jobs.models import list_models
    click.echo(f"{'model':<28}{'classes':>8}{'input':>7}  weights offline")
    for info in list_models():
        click.echo(f"{info.name:<28}{info.n_classes:>8}{info.input_size:>7}  "
                   f"{'yes' if info.weights_offline else 'no'}")
    click.echo("(any model also runs with --weights random or random-he, or --weights /path/to/state_dict.pth)")


@main.command()
@path_option("--store", required=True, help="Directory or s3:// / gs:// URI of the Parquet store.")
@click.option("--model", required=True, help="Model name (`sweep models`).")
@WEIGHTS_OPTION
@click.option("--jobs", default=None, help="Comma list of jobs: octave, opposite, addition, and from real images "
              "transfigure, interpolate, dream, directed-dream (default: the first three, and the image jobs too "
              "with --images).")
@click.option("--classes", default="all", show_default=True, help="all | 0-999 | 1,5,7-9")
@click.option("--pairs", default=None, help="Addition (and interpolation) pairs: 1+2,3+4 | FILE | random:N | all "
              "(default: all pairs of the classes, if at most 1000).")
@click.option("--interpolate-pairs", default=None, help="Interpolation pairs, written as --pairs "
              "(default: the --pairs pairs).")
@click.option("--variants", default=None, help="Addition variants (default: merge,juxtapose).")
@click.option("--images", multiple=True, callback=non_empty, help="What the image jobs start from (repeatable): an "
              "image file, a folder (its image files), store:URI[:JOB] (the final images of JOB, default octave, in "
              "another, finished store: one per item, its lowest seed, named like octave-0042-goldfish), or "
              "noise:N[:SIZE] (N images noise-000.. uniform on [0.5, 0.6], the same in every run; SIZE default: the "
              "side the model's image jobs start at, 299 for ImageNet models).")
@click.option("--layers", multiple=True, help="Dream layer NAME[:maps], e.g. block2 or a+b:0,4 (repeatable, one "
              "dream variant each; default: the model's default dream layer).")
@click.option("--seeds", type=int, default=1, show_default=True, help="Seeds 0..N-1 per item.")
@click.option("--schedule", default=None, help="Schedule preset, schedule file or schedule-set file for every job "
              "(default: the model's preset per job family).")
@click.option("--job-schedule", "job_schedules", multiple=True, help="JOB=PRESET_OR_FILE: one job's schedule "
              "(repeatable), e.g. dream=dream.")
@click.option("--batch-size", type=BatchSize(), default="auto", show_default=True,
              help="Images rendered together: auto (on a GPU the largest batch that fits, from a short memory "
              "probe; on a CPU a small one) or a number. May change between runs of one store.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True,
              help="Tries per item in this run before it is left in failures/.")
@click.option("--bf16/--no-bf16", default=True, show_default=True, help="bf16 autocast on GPUs (recorded in "
              "the manifest's runs).")
@click.option("--fp16/--no-fp16", default=False, show_default=True, help="float16 autocast on GPUs instead of "
              "bf16 (loss scaled by 2^10 so that small gradients survive float16's range; 3 more mantissa bits than "
              "bf16, closer to float32; recorded in the manifest's runs; not with --bf16).")
@click.option("--channels-last/--no-channels-last", default=True, show_default=True,
              help="channels_last memory format on GPUs.")
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True,
              help="torch.compile the network on GPUs (compiles once per input shape).")
@click.option("--cudnn-benchmark/--no-cudnn-benchmark", default=True, show_default=True,
              help="Let cuDNN pick its fastest kernels on GPUs.")
@click.option("--fold-batchnorm/--no-fold-batchnorm", default=None, help="Fold each eval-mode batch norm into "
              "the convolution before it (the same network up to float rounding, faster; recorded in the manifest's "
              "runs). Default: on GPUs only.")
@click.option("--trajectory", type=TrajectoryOption(), default=None,
              help="Record each image's generation: every:N keeps the target's output and rank, the argmax, the "
              "loss and the top-5 outputs every N steps; every:N,snapshots:M also the image (PNG) and all outputs "
              "every M steps. Stored in {store}/trajectories/ (default: off).")
@click.option("--lease-timeout", type=FiniteFloatRange(min=1), default=60.0, show_default=True,
              help="Seconds without a heartbeat after which another driver's lease on the store counts as stale "
              "(a crashed driver's) and this run takes the store over.")
@click.option("--check-files", is_flag=True, help="Before the run, read every column of every stored file, not "
              "only the keys, and move a file that cannot be read whole into {store}/quarantine/ (its items run "
              "again): for a file another command refused as damaged. Reads the whole store once.")
@click.option("--dry-run", is_flag=True, help="Print the plan (items, batches, image-iterations per job) and the "
              "store's progress; start nothing, write nothing.")
@click.option("--calibrate", is_flag=True, help="With the dry run: time a few steps on this machine's device and "
              "print the projected device-hours (GPU- or CPU-hours) and wall time for --workers (default: the workers "
              "a run on this machine would start, one per GPU, else one per --cpus-per-worker CPUs; 1 with --address), "
              "never more than a run would start (the batches left; the items left with --batch-size auto); with "
              "--device cpu it times the CPU. With --address it still times this machine, not the cluster's workers.")
@cluster_options
def run(store, model, weights, jobs, classes, pairs, interpolate_pairs, variants, images, layers, seeds, schedule,
        job_schedules, batch_size, max_attempts, bf16, fp16, channels_last, compile_, cudnn_benchmark,
        fold_batchnorm, trajectory, lease_timeout, check_files, dry_run, calibrate, address, workers, device,
        cpus_per_worker, gpu_wait, stall_timeout) -> None:
    """Generate images for every selected class (resumes an interrupted run of the same command)."""
    if fp16 and bf16 and given("bf16"):   # a bare --fp16 turns the default bf16 off
        raise click.UsageError("--bf16 and --fp16 ask for two autocasts: choose one (--fp16 alone runs float16 in "
                               "bf16's place)")
    config = SweepConfig(store=store, model=model, weights=weights, jobs=jobs, classes=classes, pairs=pairs,
                         interpolate_pairs=interpolate_pairs, variants=variants, images=tuple(images),
                         layers=tuple(layers), seeds=seeds, schedule=schedule,
                         job_schedules=tuple(job_schedules), batch_size=batch_size,
                         cluster=cluster_config(address, workers, device, cpus_per_worker, gpu_wait, stall_timeout),
                         max_attempts=max_attempts, bf16=bf16 and not fp16, fp16=fp16,
                         channels_last=channels_last, compile=compile_,
                         cudnn_benchmark=cudnn_benchmark, fold_batchnorm=fold_batchnorm, trajectory=trajectory,
                         lease_timeout=lease_timeout, check_files=check_files)
    if dry_run or calibrate:
        from sweep.driver import prepare
        from sweep.preview import calibrate as time_steps, preview, projected_workers
        with reported(store):
            prepared = prepare(config)
            view = preview(prepared)
        for line in [*prepared.lines(), *view.lines()]:
            click.echo(line)
        if calibrate and view.work_left:
            timed = time_steps(prepared)
            count, whose = projected_workers(config.cluster, timed.device, view.tasks_left)
            for line in timed.lines(view, count, whose, joined=bool(config.cluster.address)):
                click.echo(line)
        return
    with reported(store):
        summary = run_sweep(config)
    for line in summary.lines():
        click.echo(line)
    sys.exit(summary.exit_status)


@main.command()
@path_option("--store", required=True, help="The store to report on.")
def status(store) -> None:
    """Done / total per job and the failures of a store (exit status 1 while items are missing or failing)."""
    from sweep.status import store_status
    with reported(store):
        report = store_status(open_store(store))
    for line in report.lines():
        click.echo(line)
    sys.exit(0 if report.complete else 1)


@main.command()
@path_option("--store", required=True, help="The store to export.")
@path_option("--out", required=True, type=click.Path(file_okay=False),
             help="Local directory for the PNG files (not a URI).")
@click.option("--overwrite", is_flag=True, help="Replace files under --out that hold other contents than the "
              "export's (without it they are refused before anything is written; files with the same contents are "
              "left as they are either way).")
def export(store, out, overwrite) -> None:
    """Write the stored images as PNG files named like octave/0042_goldfish_s0.png."""
    from sweep.export import export_pngs
    with reported(store):
        exported = export_pngs(open_store(store), out, overwrite=overwrite)
    click.echo(exported.line(out))


def analysis_functions():
    """(analyze_store, write_figures): imported on use, so that `sweep run` never loads the analysis stack."""
    import analysis
    return analysis.analyze_store, analysis.write_figures


@main.command()
@path_option("--store", required=True, help="The store to analyse.")
@click.option("--metric", type=click.Choice(["euclidean", "cosine"]), default="euclidean", show_default=True,
              help="Distance in the output space (each class's closest other class image; the graph's edges "
              "are the article's most activated other class, whatever the metric). The article asks for the "
              "closest point in the output space and leaves the metric open (\"the metric m(y1, y2) may be chosen "
              "from any number of possible methods\"): euclidean, its plain distance; cosine is ours (scale-free).")
@click.option("--margin-share", type=FiniteFloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="The article's margin opposite (Latent space, \"Opposites\": the largest gap to the next output) "
              "is sought among this share of a class image's lowest outputs (our reading: over all of them the "
              "largest gap sits at the top).")
@click.option("--graph-ranges", type=GraphRanges(), default="halves", show_default=True,
              help="The class ranges whose nearest-neighbour graphs are also taken apart (components, cliques, "
              "figures per range; a neighbour outside a range stays its node): halves, the article's (\"The first "
              "half of the 1000 ImageNet categories are mostly animals\" ... \"For the non-animal half of "
              "ImageNet, graphing nearest neighbors yields a component with more members than was observed for any "
              "animal component\"): the first and second half of the model's classes (0-499 and 500-999 of "
              "ImageNet's, 0-4 and 5-9 of the demo's); all: the whole graph only; or ranges such as "
              "0-499,500-999. The whole graph's tables are written either way.")
@click.option("--features", default=None, help="Also compute the feature latent space, LAYER:MAPS "
              "(e.g. inception5a:0,4), through Ray workers.")
@click.option("--weights", default=None, help="Weights for --features (default: the sweep's).")
@click.option("--feature-size", type=click.Choice(FEATURE_SIZES), default="input", show_default=True,
              help="--features on each image resized to the side its job started at, its first octave's (the "
              "article's 299 px for GoogLeNet: it evaluates its class images at 299 x 299, not torchvision's 224), "
              "or at the size it was stored at (490 px for the googlenet preset).")
@cluster_options
def analyze(store, metric, margin_share, graph_ranges, features, weights, feature_size, address, workers, device,
            cpus_per_worker, gpu_wait, stall_timeout) -> None:
    """Tables under {store}/analysis/: classes, opposites, additions, PCA, nearest-neighbour graph, whole and per
    --graph-ranges range (those a store can have: without octave images, no class tables)."""
    if features is None:   # given empty, it is refused below (parse_features), not taken for "not given"
        refuse_given("--features", ("weights", "feature_size", "address", "workers", "device", "cpus_per_worker",
                                    "gpu_wait", "stall_timeout"))
    functions = analysis_functions()
    with reported(store):
        st = open_store(store)
        if features is not None:
            from analysis.analyze import class_ranges
            from sweep.features import FeatureConfig, run_features
            from sweep.plan import parse_features
            layer, maps = parse_features(features)
            class_ranges(st, graph_ranges)   # refused before the feature workers start, not after
            written = run_features(FeatureConfig(store=store, layer=layer, maps=maps, weights=weights,
                                                 size=feature_size,
                                                 cluster=cluster_config(address, workers, device, cpus_per_worker,
                                                                        gpu_wait, stall_timeout)))
            for line in written.lines():
                click.echo(line)
        summary = functions[0](st, metric=metric, margin_share=margin_share, graph_ranges=graph_ranges)
    for line in summary.lines():
        click.echo(line)


@main.command()
@path_option("--store", required=True, help="The analysed store.")
@path_option("--out", default=None, help="Directory for figures and index.html (default: {store}/figures).")
@click.option("--trajectories", multiple=True, help="Image KEY whose recorded generation to animate (repeatable; "
              "needs a run with --trajectory every:N,snapshots:M): a GIF, and an MP4 when ffmpeg is available, "
              "linked from the class page (from the index for an image without one); a KEY without snapshots is "
              "refused with keys that have some. Videos earlier runs made stay (see --drop-trajectories); a KEY "
              "given again is drawn anew.")
@click.option("--keep-trajectories/--drop-trajectories", default=True, show_default=True,
              help="Keep the trajectory videos earlier runs made in the folder, linked as before, or remove them "
              "(--trajectories keys of this run are drawn either way).")
@click.option("--seeds", type=SeedList(), default="all", show_default=True,
              help="The seeds (of `sweep run --seeds N`: 0..N-1) whose images the report draws: all, or a comma "
              "list such as 0 or 0,2, for a smaller report. The additions and the jobs from photographs (grids, "
              "class pages, interpolation strips and GIFs) show those seeds; the class images (contact sheets, "
              "opposites) are each class's lowest seed and the tables cover every seed either way; --trajectories "
              "keys are drawn whatever their seed.")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Worker processes that draw the interpolation strips and GIFs (about 0.3 GB each; default: one "
              "per CPU, at most 8); 1 draws everything in this process.")
def figures(store, out, trajectories, keep_trajectories, seeds, processes) -> None:
    """Figures and a static HTML report from the analysis tables (the analysis runs again first when it is older
    than the store's images or scores)."""
    functions = analysis_functions()
    from analysis.seeds import SeedChoice
    with reported(store):
        st = open_store(store)
        choice = SeedChoice.of_store(st.manifest, seeds)   # a seed the store lacks: refused before anything runs
        require_images(st)                                  # no hint about the seeds of a store without images
        if choice.hint() and not given("seeds"):
            click.echo(choice.hint())
        index = functions[1](st, out, trajectories=trajectories, keep_trajectories=keep_trajectories, seeds=seeds,
                             processes=processes)
    click.echo(f"report: {index}" + (f" ({choice.line()})" if choice.line() else ""))


@main.command()
@path_option("--store", required=True, help="The store whose output vectors to use.")
@click.option("--groups", required=True, help="CSV file: a group column and a key (one image) or class "
              "(index or name: its class images) column, and optionally a job column; two groups for "
              "--method logistic, two or more for bottleneck. Every key and class must have images in the store.")
@click.option("--start", default=None, help="Key of the image the strip's line goes through "
              "(default: the first image of the first group).")
@click.option("--components", type=click.IntRange(min=1), default=50, show_default=True,
              help="PCA components of the output vectors the direction is fitted in.")
@path_option("--out", default=None, help="Directory for the figures (default: {store}/figures).")
@click.option("--method", type=click.Choice(["auto", "logistic", "bottleneck"]), default="auto", show_default=True,
              help="logistic: logistic regression, two groups; bottleneck: the article's network with a one-unit "
              "bottleneck, two or more groups; auto: the article's choice, logistic for two groups, the "
              "bottleneck for more.")
@click.option("--jobs", default=None, help="Comma list of the jobs whose images a class of the groups file "
              "stands for, those made with the class as their target (an addition: its first class) (default: "
              "octave,transfigure, its class images; not with a job column in the file, which names them there).")
def directions(store, groups, start, components, out, method, jobs) -> None:
    """A direction in the output space along which groups of images lie: positions table and figures.

    Prints the groups in order along the direction with their mean position, and the ROC AUC of each neighbouring
    pair in that order (1.000: the pair does not overlap; 0.500: not told apart)."""
    from analysis.directions import run_directions
    with reported():   # an empty entry (`octave,,transfigure`), refused as `run --jobs` refuses it
        chosen = tuple(comma_items(jobs, f"--jobs {jobs!r}")) if jobs is not None else None
    if chosen == ():   # given empty: refused, as `run --jobs ""`, not taken for the default
        raise UserError(f"no job given (--jobs {jobs!r}): name the jobs whose images a class stands for, e.g. "
                        f"octave,transfigure")
    with reported(store):
        summary = run_directions(open_store(store), groups, start=start, n_components=components, out=out,
                                 method=method, jobs=chosen)
    for line in summary.lines():
        click.echo(line)
    click.echo(f"index.html links these figures from the next `sweep figures --store {store}"
               f"{' --out ' + out if out else ''}` on")


@main.command()
@path_option("--store", required=True, help="The store whose images to score.")
@click.option("--model", required=True, help="The scoring model (`sweep models`); it must have the store's classes.")
@WEIGHTS_OPTION
@click.option("--jobs", default=None, help="Comma list of jobs whose images to score (default: every job; "
              "interpolation frames are never scored).")
@click.option("--batch-size", type=click.IntRange(min=1), default=SCORE_BATCH, show_default=True,
              help="Images per forward pass on a worker.")
@cluster_options
def score(store, model, weights, jobs, batch_size, address, workers, device, cpus_per_worker, gpu_wait,
          stall_timeout) -> None:
    """Score every stored image with another model, on the workers; written under {store}/scores/{scorer}/
    (resumes: only images no part file holds yet are scored)."""
    with reported():
        summary = run_score(ScoreConfig(store=store, model=model, weights=weights, jobs=jobs, batch_size=batch_size,
                                        cluster=cluster_config(address, workers, device, cpus_per_worker, gpu_wait,
                                                               stall_timeout)))
    for line in summary.lines():
        click.echo(line)
    if summary.scored and summary.generator:   # the transfer table reads the stored logits for this scorer
        click.echo(f"{summary.scorer} is the store's generating model: its scores check the stored logits, which the "
                   f"transfer table reads for it (not these scores)")
    elif summary.scored:
        click.echo(f"the transfer table and figure include this scorer after `sweep analyze --store {store}` (or "
                   "`sweep figures`, which analyses again first)")


@main.command()
@click.argument("stores", nargs=-1, required=True, callback=non_empty)
@path_option("--out", required=True, type=click.Path(file_okay=False), help="Directory (or URI) for "
              "compare.parquet and compare.png.")
def compare(stores, out) -> None:
    """The generating model x scoring model matrix, per job, of STORES scored by each other's models."""
    from analysis.transfer import run_compare
    with reported():
        lines = run_compare(stores, out)
    for line in lines:
        click.echo(line)


@main.command()
@click.argument("stores", nargs=-1, required=True, callback=non_empty)
@path_option("--out", required=True, type=click.Path(file_okay=False), help="Directory (or URI) for the table and "
              "figure.")
def stability(stores, out) -> None:
    """Models side by side: how stable each store's classification was during generation (stores run with
    --trajectory); writes stability_compare.parquet and stability_compare.png."""
    from analysis.stability import run_stability
    with reported():
        table, paths, notes = run_stability(list(stores), out)
    for note in notes:
        click.echo(note)
    shown = table[["model", "job", "variant", "octave", "images", "change_rate", "target_top1_share",
                   "settled_share"]]
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for path in paths:
        click.echo(f"wrote {path}")


@main.command()
@path_option("--store", default=DEMO_STORE, show_default=True, help="Where to write the demo store.")
@cluster_options
def demo(store, address, workers, device, cpus_per_worker, gpu_wait, stall_timeout) -> None:
    """The built-in example: the digits model, all jobs, all classes and pairs (interpolations: five pairs), and
    the image jobs on scikit-learn's two sample photographs; its images scored by the second demo model
    (digits-resnet); then analysis (with the transfer table) and figures."""
    cluster = cluster_config(address, workers, device, cpus_per_worker, gpu_wait, stall_timeout)
    config = SweepConfig(store=store, model="digits", schedule="digits", pairs="all", seeds=1, batch_size=DEMO_BATCH,
                         sample_images=True, interpolate_pairs=DEMO_INTERPOLATIONS, cluster=cluster)
    with reported():
        try:
            summary = run_sweep(config)
        except ManifestMismatch as error:   # the demo takes no sweep settings to match the store's with
            raise UserError(f"store {error.uri} holds another sweep than the demo's: {'; '.join(error.differences)} "
                            f"(give the demo another --store; {error.uri} resumes with its own `sweep run` "
                            f"command)") from None
        scoring = run_score(ScoreConfig(store=store, model=DEMO_SCORER, cluster=cluster)) \
            if not summary.exit_status else None
    for line in summary.lines():
        click.echo(line)
    if summary.exit_status:
        sys.exit(summary.exit_status)
    for line in scoring.lines():
        click.echo(line)
    functions = analysis_functions()
    with reported():
        for line in functions[0](store).lines():
            click.echo(line)
        index = functions[1](store, None)
    click.echo(f"report: {index}")


if __name__ == "__main__":
    main()
