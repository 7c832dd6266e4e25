"""Scoring benchmark: `sweep score` images/s next to the rate at which the same images are generated (issue 13).

    PYTHONPATH=. python benchmarks/bench_score.py [--images 32] [--scorer digits-resnet] [--no-ray]

1. Generation: the engine renders `--images` octave images of the digits model under the digits preset (batches of
   16, as the demo), in-process on this machine's CPU (or GPU); images/s.
2. Scoring, steady state: one in-process `ScoreWorker` (the actor class `sweep score` runs) scores the store's
   files: reading each images/ file, decoding the PNGs, the forward passes, writing the part file; images/s, and
   its cost as a share of generating the same images (goal: well under a tenth). Then a resume after each file
   was half scored: its time as a share of the full scoring's (about half: only the keys left are decoded).
3. Scoring end to end: `sweep score` through a local Ray (start-up, actors, model loading included), images/s.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def generate(store_path: str, n_images: int, batch: int = 16) -> float:
    """Render `n_images` octave images (classes cycling) and write them as a sweep does; returns seconds rendering."""
    from jobs.kinds import JobSpec, run_batch
    from jobs.models import load_model
    from jobs.schedules import load_schedule
    from sweep.store import IMAGES, Store, images_table, new_manifest
    model, schedule = load_model("digits"), load_schedule("digits")
    store = Store.open(store_path)
    store.write_manifest(new_manifest(model=model.name, weights=model.weights_id, weights_source="DEFAULT",
                                      schedule=schedule.name, schedule_id=schedule.id,
                                      class_names=model.class_names, options={}))
    specs = [JobSpec("octave", target=i % model.n_classes, seed=i // model.n_classes) for i in range(n_images)]
    seconds = 0.0
    for start in range(0, n_images, batch):
        began = time.perf_counter()
        results = run_batch(model, specs[start:start + batch], schedule)
        seconds += time.perf_counter() - began
        store.write_table(f"{IMAGES}/part-{start // batch:06d}.parquet",
                          images_table(results, model.class_names, "bench", schedule.total_iterations))
    return seconds


def score_in_process(store_path: str, scorer: str) -> tuple[float, int]:
    """The worker's own `score` on every unit of work, one actor's worth, without Ray; (seconds, images)."""
    from sweep.score import ScoreConfig, ScoreWorker, prepare
    from sweep.worker import WorkerConfig
    prepared = prepare(ScoreConfig(store=store_path, model=scorer))
    worker = ScoreWorker(WorkerConfig(store_path, scorer, "DEFAULT", threads=torch.get_num_threads()))
    began = time.perf_counter()
    images = sum(worker.score(task, prepared.plan) for task in prepared.tasks)
    return time.perf_counter() - began, images


def resume_in_process(store_path: str, scorer: str) -> tuple[float, int]:
    """A resume after every images/ file was half scored: the first half of each unit's keys scored (untimed),
    then the units `prepare` plans for the rest, timed as `score_in_process`; (seconds, images)."""
    from sweep.score import SCORER_FILE, ScoreConfig, ScoreTask, ScoreWorker, prepare
    from sweep.store import SCORES
    from sweep.worker import WorkerConfig
    prepared = prepare(ScoreConfig(store=store_path, model=scorer))
    worker = ScoreWorker(WorkerConfig(store_path, scorer, "DEFAULT", threads=torch.get_num_threads()))
    worker.store.write_bytes(f"{SCORES}/{prepared.plan.scorer}/{SCORER_FILE}", json.dumps(prepared.scorer).encode())
    for task in prepared.tasks:
        worker.score(ScoreTask.of(task.path, task.keys[:len(task.keys) // 2]), prepared.plan)
    resume = prepare(ScoreConfig(store=store_path, model=scorer))
    began = time.perf_counter()
    images = sum(worker.score(task, resume.plan) for task in resume.tasks)
    return time.perf_counter() - began, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="octave images to generate and score")
    parser.add_argument("--scorer", default="digits-resnet", help="scoring model (must have the digits classes)")
    parser.add_argument("--no-ray", action="store_true", help="skip the end-to-end run through Ray")
    args = parser.parse_args()
    os.environ.setdefault("CLASSWEEP_OFFLINE", "1")
    work = tempfile.mkdtemp(prefix="bench-score-")
    try:
        store = os.path.join(work, "store")
        gen_seconds = generate(store, args.images)
        gen_rate = args.images / gen_seconds
        print(f"generation (digits preset, {args.images} octave images, batches of 16): {gen_rate:.2f} images/s "
              f"({gen_seconds:.1f}s, torch threads {torch.get_num_threads()})")
        seconds, images = score_in_process(store, args.scorer)
        rate = images / seconds
        print(f"scoring with {args.scorer}, one worker in-process (read, decode, forward, write): {rate:.1f} images/s; "
              f"{gen_rate / rate:.2%} of the generation cost (goal: well under 10%)")
        shutil.rmtree(os.path.join(store, "scores"))
        resume_seconds, resumed = resume_in_process(store, args.scorer)
        print(f"resume of half-scored files ({resumed} of {images} images left): {resumed / resume_seconds:.1f} "
              f"images/s, {resume_seconds / seconds:.0%} of the full scoring's time (each file is read whole, "
              f"only its keys left decoded and scored)")
        shutil.rmtree(os.path.join(store, "scores"))
        if not args.no_ray:
            from sweep.fleet import ClusterConfig
            from sweep.score import ScoreConfig, run_score
            os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
            began = time.perf_counter()
            summary = run_score(ScoreConfig(store=store, model=args.scorer,
                                            cluster=ClusterConfig(progress_every=60.0)), stream=io.StringIO())
            wall = time.perf_counter() - began
            print(f"`sweep score` end to end through a local Ray (start-up and model loading included): "
                  f"{summary.scored / wall:.1f} images/s ({summary.scored} images in {wall:.1f}s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
