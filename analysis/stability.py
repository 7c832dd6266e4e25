"""How stable a model's classification of its own input is while the input is generated.

Input generation article, "InceptionV3 and GoogleNet Compared": watching each gradient-descent iteration beside a
scatter of all output activations, "the classification of InceptionV3 for its generated input is less stable from
one iteration to the next than what is found for GoogleNet, particularly in the second octave. Resnet60 appears to
be similar to GoogleNet with regards to activation stability." These tables make that observation a number, from
the steps `sweep run --trajectory every:N` recorded (one row per image and recorded step):

- `stability_table`: per image and octave (with the image's variant, read from its key), how often the argmax
  changed between consecutive recorded steps, the share of recorded steps where the target was top-1, and the first
  recorded step from which the target was top-1 at every later recorded step of the octave (-1: it was not top-1 at
  the octave's last record);
- `stability_summary`: per model, job, variant and octave, the means of those over the images (an addition's merge
  and juxtapose apart: juxtapose pushes the weaker class at each step, which flips the argmax by design);
- `compare_stability`: several models' summaries side by side (the article's GoogLeNet vs InceptionV3 comparison).

Counts are over recorded steps: a change between two records N steps apart counts once however often the argmax
moved in between, so stores recorded with different N are not comparable step for step: `sweep stability` compares
them on the steps all of them recorded (`common_every`: every lcm(N) steps), says so, and writes the spacing each
store was compared on (`aligned_every`); a store whose manifest does not give its N is compared on its steps as
recorded, with a warning. Octaves are numbered
from 1 in these tables, as the summary, the figures and the README count them (trajectories/ stores the engine's
index, from 0). Pure: DataFrames in, DataFrames out; at the end, `read_stability` reads a store's steps into the
per-image table a few files at a time (`sweep analyze`), and `run_stability` is the I/O of `sweep stability`.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

COLUMNS = ("key", "job", "target", "step", "octave", "label")   # what the tables read of trajectories/ (which
                                                                 #   stores no variant: the key gives it)
GROUP = ["key", "octave"]
SUMMARY_GROUP = ["job", "variant", "octave"]   # a summary row: "" for a job without variants
STEPS_AT_ONCE = 250_000   # recorded steps `read_stability` reduces at once (every:10 over 720 steps is 72 rows an
                          # image: 7 million at 10^5 images, where this many are tens of MB in pandas)
TABLE_FILE, FIGURE_FILE = "stability_compare.parquet", "stability_compare.png"   # what `sweep stability` writes


def stability_table(trajectories: pd.DataFrame) -> pd.DataFrame:
    """Per image and octave (1: the first): key, job, variant (`jobs.catalog.variant_of_key`; "" for none), target,
    octave, recorded_steps, first_step, last_step, argmax_changes, change_rate (changes per consecutive pair of
    records; nan with one record), target_top1_share (nan without a target), settled_step (first recorded step from
    which the target stayed top-1 to the octave's end; -1: never settled or no target), final_label (argmax at the
    octave's last record). A step of an image and octave given twice counts once: its first row."""
    t = trajectories.loc[:, list(COLUMNS)].sort_values([*GROUP, "step"], kind="stable")
    # a step recorded twice (a batch run again leaves an image's steps in two files): its first record, in the
    # given (file) order, so that the numbers are one run's and not two runs' steps interleaved
    t = t.drop_duplicates([*GROUP, "step"], keep="first").reset_index(drop=True)
    has_target = t["target"].notna() & (t["target"].fillna(-1) >= 0)
    on = (t["label"] == t["target"]) & has_target
    grouped = t.groupby(GROUP, sort=True)
    changed = t["label"].ne(grouped["label"].shift()) & grouped.cumcount().gt(0)
    # "became top-1 and stayed": on target at this record and at every later record of the octave
    stays = on[::-1].astype(int).groupby([t["key"][::-1], t["octave"][::-1]]).cummin()[::-1].astype(bool)
    t = t.assign(changed=changed, on=on, stays=stays, has_target=has_target)
    g = t.groupby(GROUP, sort=True)
    out = g.agg(job=("job", "first"), target=("target", "first"), recorded_steps=("step", "size"),
                first_step=("step", "min"), last_step=("step", "max"), argmax_changes=("changed", "sum"),
                top1=("on", "sum"), has_target=("has_target", "first"), final_label=("label", "last"))
    settled = t[t["stays"]].groupby(GROUP)["step"].min()
    out["settled_step"] = settled.reindex(out.index).fillna(-1).astype(np.int64)
    out["change_rate"] = np.where(out["recorded_steps"] > 1,
                                  out["argmax_changes"] / (out["recorded_steps"] - 1).clip(lower=1), np.nan)
    out["target_top1_share"] = np.where(out["has_target"], out["top1"] / out["recorded_steps"], np.nan)
    out = out.reset_index()
    out["octave"] = out["octave"] + 1   # trajectories/ counts from 0, people from 1
    out["argmax_changes"] = out["argmax_changes"].astype(np.int64)
    out["variant"] = key_variants(out["key"])
    return out[["key", "job", "variant", "target", "octave", "recorded_steps", "first_step", "last_step",
                "argmax_changes", "change_rate", "target_top1_share", "settled_step", "final_label"]]


def key_variants(keys: pd.Series) -> pd.Series:
    """The variant of each key (`jobs.catalog.variant_of_key`), each distinct key parsed once."""
    from jobs.catalog import variant_of_key
    distinct = keys.drop_duplicates()
    # in the keys' own string type, as the table is read back from Parquet
    return keys.map(dict(zip(distinct, map(variant_of_key, distinct)))).astype(keys.dtype)


def stability_summary(table: pd.DataFrame, model: str) -> pd.DataFrame:
    """Per job, variant ("" for none) and octave of one model: images, mean argmax_changes and change_rate, mean
    target_top1_share, settled_share (images whose target settled as top-1) and the median settled_step of those
    that did."""
    def settled_median(steps: pd.Series) -> float:
        kept = steps[steps >= 0]
        return float(kept.median()) if len(kept) else float("nan")

    rows = []
    for (job, variant, octave), part in table.groupby(SUMMARY_GROUP, sort=True):
        targeted = part[part["target_top1_share"].notna()]
        rows.append({"model": model, "job": job, "variant": variant, "octave": int(octave), "images": len(part),
                     "argmax_changes": float(part["argmax_changes"].mean()),
                     "change_rate": float(part["change_rate"].mean()),
                     "target_top1_share": float(targeted["target_top1_share"].mean()) if len(targeted) else np.nan,
                     "settled_share": float((targeted["settled_step"] >= 0).mean()) if len(targeted) else np.nan,
                     "settled_step_median": settled_median(targeted["settled_step"])})
    return pd.DataFrame(rows, columns=["model", "job", "variant", "octave", "images", "argmax_changes",
                                       "change_rate", "target_top1_share", "settled_share", "settled_step_median"])


def compare_stability(summaries: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several models' summaries, one row per model, job, variant and octave, ordered for reading side by side."""
    if not summaries:
        return stability_summary(pd.DataFrame(columns=SUMMARY_GROUP), "")
    both = pd.concat(list(summaries), ignore_index=True)
    return both.sort_values([*SUMMARY_GROUP, "model"], kind="stable").reset_index(drop=True)


def recorded_every(manifest: dict) -> int | None:
    """The N of the `--trajectory every:N` a store was swept with (its manifest's options); None where not
    recorded (a store written by hand)."""
    every = ((manifest.get("options") or {}).get("trajectory") or {}).get("every")
    return every if isinstance(every, int) and not isinstance(every, bool) and every >= 1 else None


def common_every(everies: Sequence[int | None]) -> int | None:
    """The spacing of the steps that every store of a known N recorded (a step t is recorded at every:N when N
    divides t): the least common multiple of the known N; None where they are all one N (nothing to align). An
    unknown N (None) has nothing to align it by: that store is left as recorded (`aligned_every`)."""
    known = {every for every in everies if every is not None}
    return math.lcm(*known) if len(known) > 1 else None


def aligned_every(every: int | None, common: int | None) -> int | None:
    """The spacing of the steps a store recorded at every:`every` is compared on: `common` when the stores are
    aligned on it, else its own N; None where its N is unknown (its steps as recorded, whatever their spacing)."""
    return every if every is None or common is None else common


def spacing_note(labels: Sequence[str], everies: Sequence[int | None], common: int) -> str:
    """The line `sweep stability` says when it aligns stores recorded at different every:N (naming those it
    knows the N of; `unknown_every_warning` names the others)."""
    each = ", ".join(f"{label} every:{every}" for label, every in zip(labels, everies) if every is not None)
    return (f"the stores recorded their steps at different intervals ({each}): a change rate counts changes "
            f"between consecutive records, so each store is compared on the steps all of them recorded, every "
            f"{common} steps")


def octaves_without_a_step(manifest: dict, jobs: Sequence[str], every: int) -> list[tuple[str, int]]:
    """(job, octave numbered from 1) of each octave of `jobs`' schedules (the manifest's contents) that holds no
    step at a multiple of `every` (steps counted from 0 over the whole schedule, as they are recorded): compared on
    that spacing, it has no record left, and it drops out of the table."""
    from sweep.store import job_schedule
    missing = []
    for job in jobs:
        start = 0
        for number, octave in enumerate(job_schedule(manifest, job).get("octaves") or [], 1):
            iterations = int(octave["iterations"])
            if -(-start // every) * every > start + iterations - 1:   # the first multiple of every past the octave
                missing.append((job, number))
            start += iterations
    return missing


def dropped_octaves_note(label: str, missing: Sequence[tuple[str, int]], every: int) -> str:
    """The line `sweep stability` says for a store whose octaves `octaves_without_a_step` left out."""
    listed = ", ".join(f"the {job} images' octave {number}" for job, number in missing)
    return (f"{label}: {listed} {'holds' if len(missing) == 1 else 'hold'} no step at a multiple of {every}, so "
            f"{'it is' if len(missing) == 1 else 'they are'} left out of the comparison")


def unknown_every_warning(label: str, uri: str) -> str:
    """The line `sweep stability` says for a store whose manifest does not give its every:N, when it compares it
    with others: its numbers count changes between its records, however far apart they were."""
    return (f"warning: {label} ({uri}): its manifest does not say the --trajectory every:N its steps were "
            f"recorded at, so it could not be aligned with the other stores: it is compared on its steps as "
            f"recorded (aligned_every empty), and its change rates are comparable to theirs only if it was "
            f"recorded at the same interval")


TARGET, MINIMISED, FIRST = "target", "minimised", "first"   # whose top-1 a job's target_top1_share counts


def top1_subject(job: str) -> str:
    """Whose top-1 `job`'s target_top1_share counts, read by the job's own measure (`analysis.transfer.
    success_measure`): TARGET where that measure is the target's top-1; MINIMISED for an opposite, the class it
    minimises (low is success); FIRST for a job the recorded argmax cannot judge (an addition, judged by both
    classes in the top 2), whose share is of its first class alone. One reading for the printed notes
    (`measure_notes`) and the figure's panel (`analysis.figures.share_title`)."""
    from analysis.transfer import PERCENTILE, TOP1, success_measure
    measure = success_measure(job)
    return TARGET if measure == TOP1 else MINIMISED if measure.column == PERCENTILE else FIRST


def measure_notes(table: pd.DataFrame) -> list[str]:
    """A line for each job of a stability table whose success is not its target's top-1 (`top1_subject`): its
    target_top1_share and settled_share, printed by `sweep stability` beside the octaves', read otherwise (an
    opposite's are those of the class it minimises; an addition's of its first class alone), as `sweep analyze`
    words them (`analysis.analyze.stability_words`)."""
    from analysis.transfer import success_measure
    from jobs.catalog import CLASSLESS
    notes = []
    for job in sorted(set(table["job"]) - CLASSLESS):
        subject = top1_subject(job)
        if subject == MINIMISED:
            notes.append(f"{job}: target_top1_share and settled_share are of the class it minimises (low: success)")
        elif subject == FIRST:
            notes.append(f"{job}: target_top1_share and settled_share are of its target alone; {job} is judged by "
                         f"{success_measure(job).name}, which the recorded argmax cannot tell")
    return notes


# -- I/O: `sweep stability STORE... --out DIR` -------------------------------------------------------------------
def read_stability(store, done: set[str] | None = None, every: int | None = None) -> pd.DataFrame | None:
    """`stability_table` of a store's recorded steps, of the images the store holds (an image row implies its
    trajectory); None when it recorded none of theirs. `done`: the keys of the store's images/ files, when the
    caller has read them (`sweep analyze`: its key index, `analysis.load.read_rows_and_keys`); else they are read.
    `every`: only the steps that are multiples of it (`common_every`); None: every recorded step.

    Read and reduced a part at a time: whole files up to about STEPS_AT_ONCE steps, never every step of the store
    at once. The numbers are per image and octave, and an image's steps are in its batch's file, so the parts'
    tables together are the store's; an image and octave found in two parts (a batch whose images/ write failed,
    run again under another name, leaves its steps twice) is reduced again from all of its image's rows, in file
    order, as one read of every step would have it (each step once: its first record). Since 2026-12-01 `sweep
    run` sets such a file aside when it resumes the store (`Store.quarantine_unreadable`): a store holds one only
    until then, or when written by an earlier version."""
    from sweep.store import TRAJECTORIES, open_store
    st = open_store(store)
    paths = st.files(TRAJECTORIES)
    if not paths:
        return None
    parts, part_files = [], []
    for files, steps in _parts(st, paths, every):
        parts.append(stability_table(steps).assign(part=len(parts)))
        part_files.append(files)
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True)
    done = st.done_keys() if done is None else done
    table = table[table["key"].isin(done)]   # once: a set of 10^5 keys is not cheap to look up in
    if table.empty:
        return None
    split = set(table.loc[table.duplicated(GROUP, keep=False), "key"])
    if split:   # reduced again from all their rows, read from the parts that hold them, in file order
        again = table["key"].isin(split)
        files = [path for part in sorted(set(table.loc[again, "part"])) for path in part_files[part]]
        steps = _as_pandas(st.each_file(_steps_reader(st, pa.array(sorted(split), pa.string()), every), files))
        table = pd.concat([table[~again], stability_table(steps)], ignore_index=True)
    return table.drop(columns="part").sort_values(GROUP, kind="stable").reset_index(drop=True)


def _parts(st, paths: Sequence[str], every: int | None = None) -> Iterator[tuple[list[str], pd.DataFrame]]:
    """(files, their steps) for `paths` in order, in parts of whole files up to about STEPS_AT_ONCE rows (on S3
    READ_THREADS files read ahead: `Store.stream_files`). Files without rows are skipped."""
    held, files, rows = [], [], 0
    for path, table in zip(paths, st.stream_files(_steps_reader(st, every=every), paths)):
        if table.num_rows:
            held.append(table)
            files.append(path)
            rows += table.num_rows
        if held and (rows >= STEPS_AT_ONCE or path == paths[-1]):
            yield files, _as_pandas(held)
            held, files, rows = [], [], 0


def _steps_reader(st, keys: pa.Array | None = None, every: int | None = None):
    """path -> COLUMNS of that trajectories/ file; only `keys`' rows if given, only the steps that are multiples of
    `every` if given."""
    import pyarrow.compute as pc

    def read(path: str) -> pa.Table:
        table = st.read_checked(path, list(COLUMNS))
        if every is not None:   # in int64: an lcm past int32 (every:65536 beside every:65535) is no OverflowError
            steps = table["step"].to_numpy(zero_copy_only=False).astype(np.int64)
            table = table.filter(pa.array(steps % every == 0))
        return table if keys is None else table.filter(pc.is_in(table["key"], value_set=keys))
    return read


def _as_pandas(tables: Sequence[pa.Table]) -> pd.DataFrame:
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def run_stability(stores: Sequence[str], out: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The side-by-side summary of several stores (each needs trajectories), written to `out` (a local folder or a
    URI) as stability_compare.parquet and stability_compare.png; (the table, the locations written, the lines to
    say first, `measure_notes` last). Stores recorded at different every:N are compared on the steps all of them
    recorded (`common_every`), which the lines say; a store whose N is unknown is compared as recorded, with a
    warning line when there are others. The table's `aligned_every` is the spacing each store was compared on.
    StoreError for a store without trajectories, before anything is written."""
    from analysis.drawing import save
    from analysis.figures import stability_figure
    from analysis.load import output_folder, refuse_repeated_stores, write_outputs
    from sweep.store import StoreError, open_store, table_bytes
    folder = output_folder(out)   # refused (a file, a store's own folder) before any store is read
    opened = [open_store(uri) for uri in stores]
    refuse_repeated_stores(opened)
    labels, everies = model_labels(opened), [recorded_every(st.manifest) for st in opened]
    common = common_every(everies)
    summaries, dropped = [], []
    for st, label, every in zip(opened, labels, everies):
        per_image = read_stability(st, every=None if every is None else common)
        if per_image is None:
            raise StoreError(f"store {st.uri} has no trajectories: run it with --trajectory every:N")
        summaries.append(with_spacing(stability_summary(per_image, label), aligned_every(every, common)))
        missing = [] if every is None or common is None else \
            octaves_without_a_step(st.manifest, sorted(set(per_image["job"])), common)
        dropped += [dropped_octaves_note(label, missing, common)] if missing else []
    table = compare_stability(summaries)
    unknown = [unknown_every_warning(label, st.uri)
               for st, label, every in zip(opened, labels, everies) if every is None and len(opened) > 1]
    # the titles name the common spacing only when every store was compared on it
    written = write_outputs(folder, {
        TABLE_FILE: table_bytes(pa.Table.from_pandas(table, preserve_index=False)),
        FIGURE_FILE: save(stability_figure(table, None if unknown else common), "png")})
    return table, written, (unknown + ([] if common is None else [spacing_note(labels, everies, common)])
                            + dropped + measure_notes(table))


def with_spacing(summary: pd.DataFrame, spacing: int | None) -> pd.DataFrame:
    """A store's summary with `aligned_every`: the step spacing its numbers were counted on (null: unknown)."""
    return summary.assign(aligned_every=pd.array([spacing] * len(summary), dtype="Int64"))


def model_labels(stores: Sequence) -> list[str]:
    """Each store's model name; with the store's folder name when two stores hold the same model, and with its
    whole location when their folders have one name too (runs/a/store and runs/b/store): one label, one store
    (`analysis.load.distinct_labels`)."""
    from analysis.load import distinct_labels
    return distinct_labels([str(st.manifest.get("model", "?")) for st in stores], stores)
