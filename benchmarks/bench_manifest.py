"""Manifest size and the plan's round trip through it, for a full-class sweep (finding F8; no model, no Ray).

    PYTHONPATH=. python benchmarks/bench_manifest.py [--classes 1000] [--pairs all]

The manifest of every noise job over `--classes` classes with `--pairs` (names and schedule contents as the googlenet
preset writes them) is written to a temporary store; prints its size and lines, and the best of five timings of
`Store.write_manifest`, `Plan.options`, `json.loads`, `Plan.from_options` and the resume's comparison
(`identity` + `manifest_differences`), for this version's manifest and for one that lists the pairs as stores
written before "all" did.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def best(call, repeats: int = 5):
    """(least seconds, result) of `repeats` calls."""
    timings, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        timings.append(time.perf_counter() - started)
    return min(timings), result


def main() -> None:
    from jobs.schedules import default_schedules
    from sweep.driver import identity
    from sweep.plan import Plan, make_plan
    from sweep.store import Store, manifest_differences, new_manifest
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--pairs", default="all")
    args = parser.parse_args()
    plan = make_plan(n_classes=args.classes, pairs=args.pairs)
    schedules = default_schedules("googlenet", plan.jobs)
    manifest = new_manifest(model="googlenet", weights="w", weights_source="DEFAULT", schedule=schedules.name,
                            schedule_id=schedules.id, class_names=[f"class {c}" for c in range(args.classes)],
                            options=plan.options(), job_schedules=schedules.job_ids(plan.jobs),
                            schedule_contents={s.id: s.to_dict() for s in map(schedules.for_job, plan.jobs)})
    with tempfile.TemporaryDirectory() as root:
        store = Store.open(root)
        writing, _ = best(lambda: store.write_manifest(manifest))
        data = (Path(root) / "manifest.json").read_bytes()
    options, _ = best(plan.options)
    reading, loaded = best(lambda: json.loads(data))
    planning, back = best(lambda: Plan.from_options(loaded["options"]))
    comparing, differences = best(lambda: manifest_differences(identity(loaded), identity(manifest)))
    assert back == plan and differences == []
    print(f"{args.classes} classes, --pairs {args.pairs}: {len(plan.pairs)} pairs, kept as "
          f"{json.dumps(loaded['options']['pairs'])[:40]}")
    print(f"  manifest.json {len(data):,} bytes, {len(data.splitlines()):,} lines")
    print(f"  write_manifest {writing * 1e3:.1f} ms, Plan.options {options * 1e3:.1f} ms, json.loads "
          f"{reading * 1e3:.1f} ms, Plan.from_options {planning * 1e3:.1f} ms, resume comparison "
          f"{comparing * 1e3:.1f} ms")
    older = json.loads(json.dumps({**manifest, "options": {**manifest["options"],
                                                            "pairs": [list(p) for p in plan.pairs]}}))
    comparing, differences = best(lambda: manifest_differences(identity(older), identity(manifest)))
    planning, back = best(lambda: Plan.from_options(older["options"]))
    assert back == plan and differences == []
    print(f"  a manifest listing the pairs (older stores): resume comparison {comparing * 1e3:.1f} ms, "
          f"Plan.from_options {planning * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
