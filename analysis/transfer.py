"""Transfer: does a class image carry its class beyond the model that made it (issue 13)?

The articles judge a generated image by eye and by the generating model's own output (Image generation I); here
every scorer present in a store (the generating model from the stored `logits`, every `sweep score` scorer from
`scores/`) is asked the same questions per job and variant:

    images             images of that job/variant the scorer has an output for
    top1_share         share whose top-1 class is the aim (the target; an interpolation's final image: class b)
    top5_share         share with the aim among the scorer's top 5
    mean_target_prob   mean softmax probability of the aim
    both_top2_share    additions: share with both classes in the scorer's top 2 (Latent space, "Vector addition")
    both_top5_share    additions: both classes in the top 5
    target_percentile  opposites: mean percentile rank of the minimised class under the scorer (0: its lowest
                       output, 100: its highest; Latent space, "Opposites": does the scorer rank it low too?)

Each job is judged by its own measure (`success_measure`, `success_table`): what the figures, the analysis summary
and the report show as a job's success on a scorer. The other columns stay in the table for closer reading.

`transfer_table` and `compare_table` are pure (tables in, DataFrame out); `transfer_figure` and `compare_figure`
return matplotlib Figures; `store_outputs` is the one reader (through `sweep.store` and `sweep.score`).
"""
from __future__ import annotations

import functools
import textwrap
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from jobs.catalog import CATALOG, CLASSLESS
from jobs.outputs import by_blocks, finite_rows, rank_matrix, softmax, top_k   # the scorer's statistics (sweep.score)
from jobs.text import counted

AIMS = {job.name: job.aim for job in CATALOG}
TRANSFER_FILE = "transfer.parquet"
TOP3_FILE = "transfer_top3.parquet"
COLUMNS = ["generator", "scorer", "own", "job", "variant", "images", "top1_share", "top5_share",
           "mean_target_prob", "both_top2_share", "both_top5_share", "target_percentile"]
LABELS = {"top1_share": "share with top-1 = target", "top5_share": "share with the target in the top 5",
          "mean_target_prob": "mean target probability", "both_top2_share": "share with both classes in the top 2",
          "both_top5_share": "share with both classes in the top 5",
          "target_percentile": "mean percentile of the minimised class (0: the lowest output)"}
PANEL_TITLE_CHARS = 28   # a compare panel's title is wrapped at this width: three panels a row leave no more
PERCENTILE = "target_percentile"   # the one statistic that is a rank (0-100, low: success), not a share (0-1)


@dataclass(frozen=True)
class Measure:
    """How one job's images are judged: a column of the transfer table and its name."""
    column: str
    name: str                       # as the figures and the summary label it


# Latent space article, "Vector Addition and Subtraction": an addition succeeds when the result shows both classes,
# "characteristics of both target classes ... found in the same contiguous object" (merging) or "both target
# objects are recognizable and separated in the final image" (juxtaposition); one class alone is a failure. So an
# addition is judged by both classes being the scorer's top two (top-1 = target is at most ~50% by construction).
# An opposite minimises its class (Latent space, "Opposites"): judged by how low the scorer ranks that class.
MEASURES = {
    "addition": Measure("both_top2_share", "both classes in the top 2"),
    "opposite": Measure(PERCENTILE, "percentile of the minimised class, low = success"),
    "interpolate": Measure("top1_share", "top-1 = class b"),   # its final image aims at class b
}
TOP1 = Measure("top1_share", "top-1 = target")   # octave and the other jobs with a target


def success_measure(job: str) -> Measure:
    """The measure a job's images are judged by (classless jobs, dreams, have none: their values are NaN)."""
    return MEASURES.get(job, TOP1)


def success_table(table: pd.DataFrame) -> pd.DataFrame:
    """The transfer table's rows with each job's own measure: `measure` (its column), `measure_name` and `value`;
    rows without a value (classless jobs) are left out."""
    measures = [success_measure(job) for job in table["job"]]
    columns = np.array([m.column for m in measures], dtype=object)
    value = np.full(len(table), np.nan)
    for column in set(columns):
        mine = columns == column
        value[mine] = table[column].to_numpy(dtype=float)[mine]
    out = table.assign(measure=columns, measure_name=[m.name for m in measures], value=value)
    return out[out["value"].notna()].reset_index(drop=True)


@dataclass(frozen=True)
class Outputs:
    """One scorer's output vectors on a store's images."""
    keys: Sequence[str]             # image keys, same order as logits
    logits: np.ndarray              # N x n_classes


def aim_class(images: pd.DataFrame) -> np.ndarray:
    """The class each image should read as (its job's `aim` in `jobs.catalog`): its target, or for an
    interpolation's final image class b (its partner)."""
    aim = images["target"].to_numpy().copy()
    on_partner = images["job"].map(AIMS).eq("partner").to_numpy()
    aim[on_partner] = images["partner"].to_numpy()[on_partner]
    return aim


def _pick(matrix: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """matrix[i, classes[i]], NaN where classes[i] < 0."""
    valid = classes >= 0
    out = np.full(len(classes), np.nan)
    out[valid] = matrix[np.flatnonzero(valid), classes[valid]]
    return out


def _aligned(images: pd.DataFrame, out: Outputs) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of `images` a scorer has outputs for, and the indices of their outputs in `out.logits` (a key held
    twice, in two of its parts: the first, as `analysis.load.read_rows` keeps a key's first row)."""
    position = pd.Series(np.arange(len(out.keys)), index=pd.Index(out.keys))
    position = position[~position.index.duplicated(keep="first")]   # else one key gives two rows: all shift
    present = images[images["key"].isin(position.index)]
    return present, position[present["key"]].to_numpy()


def aim_statistics(logits: np.ndarray, rows: np.ndarray, aim: np.ndarray, partner: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank of the aim, rank of the partner, probability of the aim) on `logits[rows]` (0: the largest output;
    NaN where the class is < 0), a block of rows at a time: the N x C ranks and probabilities of 10^5 images
    would take gigabytes."""
    def block(part: slice) -> np.ndarray:
        values = np.asarray(logits[rows[part]], dtype=np.float64)                   # n x C
        rank = rank_matrix(values)
        return np.stack([_pick(rank, aim[part]), _pick(rank, partner[part]), _pick(softmax(values), aim[part])], 1)
    stats = by_blocks(len(rows), block)                                              # N x 3
    return stats[:, 0], stats[:, 1], stats[:, 2]


def transfer_table(images: pd.DataFrame, outputs: Mapping[str, Outputs], generator: str) -> pd.DataFrame:
    """One row per scorer and job/variant (columns `COLUMNS`).

    `images`: key, job, variant, target, partner (-1: none), one row per image (no interpolation frames);
    `outputs`: scorer id -> its outputs (keys it lacks are left out of its rows); `generator`: the generating
    model's scorer id (its row is marked `own`)."""
    rows = []
    for scorer, out in outputs.items():
        present, rows_of = _aligned(images, out)
        if present.empty:
            continue
        n_classes = out.logits.shape[1]
        aim_rank, partner_rank, aim_prob = aim_statistics(out.logits, rows_of, aim_class(present),
                                                          present["partner"].to_numpy())
        for (job, variant), index in present.groupby(["job", "variant"], sort=True).indices.items():
            r, p = aim_rank[index], partner_rank[index]
            classless = job in CLASSLESS
            addition = job == "addition"
            rows.append({
                "generator": generator, "scorer": scorer, "own": scorer == generator, "job": job, "variant": variant,
                "images": len(index),
                "top1_share": np.nan if classless else float(np.mean(r == 0)),
                "top5_share": np.nan if classless else float(np.mean(r < 5)),
                "mean_target_prob": np.nan if classless else float(np.mean(aim_prob[index])),
                "both_top2_share": float(np.mean((r < 2) & (p < 2))) if addition else np.nan,
                "both_top5_share": float(np.mean((r < 5) & (p < 5))) if addition else np.nan,
                # rank 0 is the highest output: percentile 100 * (C - 1 - rank) / (C - 1), 0 for the lowest
                "target_percentile": (float(np.mean(100.0 * (n_classes - 1 - r) / max(n_classes - 1, 1)))
                                      if job == "opposite" else np.nan),
            })
    table = pd.DataFrame(rows, columns=COLUMNS)
    # The generating model first, then the other scorers by name.
    return table.sort_values(["own", "scorer", "job", "variant"], ascending=[False, True, True, True],
                             kind="stable").reset_index(drop=True)


def partly_scored(table: pd.DataFrame) -> list[str]:
    """A note per generator and scorer of a transfer or compare table where the scorer has outputs for fewer of a
    job's images than the generating model (a `sweep score` stopped early, or run with --jobs, or outputs that are
    not finite, left out): its shares are of the images it scored, which the share alone does not say."""
    notes = []
    for generator, rows in table.groupby("generator", sort=False):
        stored = rows[rows["own"]].set_index(["job", "variant"])["images"]
        for scorer, its_rows in rows[~rows["own"]].groupby("scorer", sort=False):
            scored = its_rows.set_index(["job", "variant"])["images"].reindex(stored.index, fill_value=0)
            short = [f"{job}{'/' + variant if variant else ''} {n} of {stored[job, variant]}"
                     for (job, variant), n in scored.items() if n < stored[job, variant]]
            if short:
                notes.append(f"scorer {scorer} has outputs for only some images of {generator} "
                             f"({', '.join(short)}): its shares are of those (`sweep score` with it scores the rest; "
                             f"an output that is not finite is left out, and scoring again gives it again)")
    return notes


def top_classes(images: pd.DataFrame, outputs: Mapping[str, Outputs], class_names: Sequence[str],
                k: int = 3) -> pd.DataFrame:
    """Every scorer's top-k classes on each image (for the class pages): key, job, target, scorer, rank (0..k-1),
    label, label_name, prob."""
    rows = []
    for scorer, out in outputs.items():
        present, rows_of = _aligned(images, out)
        if present.empty:
            continue
        logits = np.asarray(out.logits[rows_of], dtype=np.float64)   # the octave images: a few thousand rows
        probs = softmax(logits)
        order = top_k(logits, k)
        for i, row in enumerate(present.itertuples(index=False)):
            for rank, label in enumerate(order[i]):
                rows.append({"key": row.key, "job": row.job, "target": int(row.target), "scorer": scorer,
                             "rank": rank, "label": int(label), "label_name": class_names[label],
                             "prob": float(probs[i, label])})
    return pd.DataFrame(rows, columns=["key", "job", "target", "scorer", "rank", "label", "label_name", "prob"])


def compare_table(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several stores' transfer tables -> one long table (generator x scorer per job/variant); a row repeated with
    one generator, scorer, job and variant is kept once (the first). Two stores of one model must carry distinct
    generator names to stay apart (`run_compare` names them: `analysis.load.distinct_labels`)."""
    table = pd.concat([t[COLUMNS] for t in tables if len(t)], ignore_index=True) if tables else \
        pd.DataFrame(columns=COLUMNS)
    table = table.drop_duplicates(["generator", "scorer", "job", "variant"], keep="first")
    return table.sort_values(["job", "variant", "generator", "scorer"], kind="stable").reset_index(drop=True)


def matrix(table: pd.DataFrame, index: str, columns: str, value: str = "top1_share") -> pd.DataFrame:
    """A pivot of one statistic (NaN where a pair is missing)."""
    return table.pivot_table(index=index, columns=columns, values=value, aggfunc="first", sort=True)


def _heatmap(ax, grid: pd.DataFrame, title: str, percentile_rows: Sequence = ()) -> None:
    """Shares as percentages; rows in `percentile_rows` hold percentile ranks (written `pct N`, shaded dark when
    low: the colour always means success)."""
    values = grid.to_numpy(dtype=float)
    percentile = np.isin(np.asarray(grid.index, dtype=object), list(percentile_rows))[:, None]   # rows x 1
    strength = np.where(percentile, 1.0 - values / 100.0, values)
    ax.imshow(np.nan_to_num(strength, nan=0.0), vmin=0.0, vmax=1.0, cmap="Blues", aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        text = "–" if np.isnan(v) else f"pct {v:.0f}" if percentile[i, 0] else f"{v:.0%}"
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="white" if strength[i, j] > 0.6 else "black")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index], fontsize=8)
    ax.set_title(title, fontsize=9)


def _judged(table: pd.DataFrame, value: str | None) -> pd.DataFrame:
    """The rows a figure shows, with `value` and `measure_name`: each job by its own measure (`value` None), or one
    statistic for every job (opposites are left out of the top-k shares: their class is meant to rank low)."""
    if value is None:
        return success_table(table)
    rows = table[table[value].notna()]
    if value in ("top1_share", "top5_share"):
        rows = rows[rows["job"] != "opposite"]
    return rows.assign(measure=value, measure_name=LABELS.get(value, value), value=rows[value])


def literal_text(build):
    """`analysis.drawing.literal_text` (names holding '$' drawn as written), imported only when a figure is built:
    this module's tables need no matplotlib."""
    @functools.wraps(build)
    def literal(*args, **kwargs):
        from analysis.drawing import literal_text as drawn_as_written
        return drawn_as_written(build)(*args, **kwargs)
    return literal


@literal_text
def transfer_figure(table: pd.DataFrame, value: str | None = None):
    """The job x scorer matrix, numbers in the cells, the generating model's column first: each job judged by its
    own measure (`success_measure`, named in the row label), or with `value` one statistic for every job."""
    from matplotlib.figure import Figure
    rows = _judged(table, value)
    label = rows["job"] + np.where(rows["variant"] != "", " / " + rows["variant"], "")
    rows = rows.assign(row=label + (": " + rows["measure_name"] if value is None else ""))
    grid = matrix(rows, "row", "scorer", "value") if len(rows) else pd.DataFrame()
    if len(grid):
        own = list(dict.fromkeys(rows.loc[rows["own"], "scorer"]))
        grid = grid[own + [c for c in grid.columns if c not in own]]
    label_inches = 0.065 * max((len(str(r)) for r in grid.index), default=10)   # row labels at 8 pt
    figure = Figure(figsize=(1.0 + label_inches + 1.1 * max(grid.shape[1], 1), 1.2 + 0.4 * max(grid.shape[0], 1)),
                    layout="constrained")
    ax = figure.add_subplot()
    if grid.empty:
        ax.text(0.5, 0.5, "no scored images", ha="center", va="center")
        ax.set_axis_off()
        return figure
    percentile = set(rows.loc[rows["measure"] == PERCENTILE, "row"])
    _heatmap(ax, grid, "each job by its own measure" if value is None else LABELS.get(value, value), percentile)
    ax.set_xlabel(f"scoring model (images made by {rows['generator'].iloc[0]})", fontsize=8)
    return figure


@literal_text
def compare_figure(table: pd.DataFrame, value: str | None = None):
    """One generator x scorer matrix per job/variant (the N x N comparison of `sweep compare`): each job judged by
    its own measure (`success_measure`, named in the panel's title), or with `value` one statistic for every job."""
    from matplotlib.figure import Figure
    rows = _judged(table, value)
    groups = list(rows.groupby(["job", "variant"], sort=True))
    n = max(len(groups), 1)
    columns = min(n, 3)
    side = 1.2 + 0.9 * max(rows["scorer"].nunique(), 1)
    figure = Figure(figsize=(side * columns + 1.0, (side * 0.8 + 0.6) * ((n + columns - 1) // columns)),
                    layout="constrained")
    if not groups:
        ax = figure.add_subplot()
        ax.text(0.5, 0.5, "no scored images", ha="center", va="center")
        ax.set_axis_off()
        return figure
    for i, ((job, variant), part) in enumerate(groups):
        ax = figure.add_subplot((n + columns - 1) // columns, columns, i + 1)
        grid = matrix(part, "generator", "scorer", "value")
        title = f"{job}{' / ' + variant if variant else ''}" + (f":\n{part['measure_name'].iloc[0]}"
                                                                 if value is None else "")
        title = "\n".join(textwrap.fill(line, PANEL_TITLE_CHARS) for line in title.split("\n"))
        _heatmap(ax, grid, title, grid.index if part["measure"].iloc[0] == PERCENTILE else ())
        ax.set_xlabel("scorer", fontsize=8)
        ax.set_ylabel("generator", fontsize=8)
    figure.suptitle(("each job by its own measure" if value is None else LABELS.get(value, value))
                    + ": generating model x scoring model", fontsize=10)
    return figure


# ---- reading a store ------------------------------------------------------------------------------------------
def store_outputs(store, rows=None) -> tuple[pd.DataFrame, dict[str, Outputs], str]:
    """(images, outputs per scorer, generator id) of a store: the stored logits as the generating model's
    outputs, and every `sweep score` scorer's (a scorer with the generator's id is the stored logits) on the images
    stored now (`sweep.score.rows_of_stored_images`: a score of an image written again since is left out), its
    outputs that are not finite left out as the analysis leaves out the stored ones (`usable_rows`). `rows`:
    the store's `analysis.load.Rows` when already read (frames left out; the usable rows, `usable_rows`), else read
    here and kept as `sweep analyze` keeps them, so that `sweep compare` counts the images the analysis counts."""
    from analysis.analyze import usable_rows
    from analysis.load import read_rows
    from sweep.score import IMAGE_DIGEST, generating_scorer, image_digests, logits_matrix, read_scores, \
        rows_of_stored_images, scorers
    from sweep.store import open_store
    st = open_store(store)
    if rows is None:
        rows = usable_rows(read_rows(st, ["key", "job", "variant", "target", "partner", "label"]), st.n_classes)[0]
    images = rows.meta[["key", "job", "variant", "target", "partner"]].copy()
    images["partner"] = images["partner"].fillna(-1).astype(int)
    images["variant"] = images["variant"].fillna("")
    generator = generating_scorer(st.manifest)
    outputs = {generator: Outputs(list(images["key"]), np.asarray(rows.logits))}
    others = [scorer for scorer in scorers(st) if scorer not in outputs]
    stored = dict(zip(images["key"], image_digests(np.asarray(rows.logits)))) if others else {}
    for scorer in others:
        table = read_scores(st, scorer, ["key", "logits", IMAGE_DIGEST])
        keys = table.column("key").to_pylist()
        kept = rows_of_stored_images(keys, table.column(IMAGE_DIGEST).to_pylist(), stored)   # a stale row left out
        logits = logits_matrix(table.column("logits"))[kept]                                # kept x C
        finite = finite_rows(logits)   # as the generator's: a NaN output made its job's mean probability NaN
        if finite.any():
            outputs[scorer] = Outputs([keys[i] for i in kept[finite]], logits[finite])
    return images, outputs, generator


def transfer_tables(store, rows=None) -> dict[str, pd.DataFrame]:
    """What `sweep analyze` writes: the transfer table, and every scorer's top 3 on the octave images (the
    class pages' per-scorer top 3)."""
    from sweep.store import open_store
    st = open_store(store)
    images, outputs, generator = store_outputs(st, rows)
    return {TRANSFER_FILE: transfer_table(images, outputs, generator),
            TOP3_FILE: top_classes(images[images["job"] == "octave"], outputs, st.class_names)}


def store_transfer(store) -> pd.DataFrame:
    """The transfer table of one store."""
    images, outputs, generator = store_outputs(store)
    return transfer_table(images, outputs, generator)


COMPARE_FILE, COMPARE_FIGURE = "compare.parquet", "compare.png"


def generator_labels(stores: Sequence) -> list[str]:
    """Each store's generator as `sweep compare` names it: its model and weights (`sweep.score.scorer_id`, the name
    its images have as another store's scorer), with the store's folder where two stores hold one model and weights
    (two sweeps of `digits` with other seeds or schedules), as `sweep stability` names them."""
    from analysis.load import distinct_labels
    from sweep.score import generating_scorer
    return distinct_labels([generating_scorer(st.manifest) for st in stores], stores)


def other_label_set(stores: Sequence) -> str | None:
    """Where the stores' label sets differ, in words: their class counts, else the first two stores whose known
    class names differ (`sweep.score.generator_class_names`: unknown names and the stand-ins `class 0`, ... are not
    compared) and the first class that differs; None when one label set holds for all. A scorer shares its store's
    label set (`sweep score` refuses another), so stores of two label sets share no scorer: their matrix would be
    two blocks with nothing between them, each row read as if class i meant one thing throughout."""
    from sweep.score import generator_class_names, renamed_classes
    counts = {st.uri: st.n_classes for st in stores}
    if len(set(counts.values())) > 1:
        return "the stores have different class counts (" + ", ".join(f"{uri}: {n}" for uri, n in counts.items()) + ")"
    named = [(st, names) for st in stores if (names := generator_class_names(st.manifest)) is not None]
    for st, names in named[1:]:
        first, first_names = named[0]
        differ = renamed_classes(first_names, names)
        if differ:
            i, a, b = differ[0]
            return (f"{first.uri} and {st.uri} name their classes otherwise (class {i} is {a!r} in the first, {b!r} "
                    f"in the second; {len(differ)} of {len(names)} classes differ)")
    return None


def refuse_other_label_sets(stores: Sequence) -> None:
    """StoreError, in one line, for stores of more than one label set (`other_label_set`)."""
    from sweep.store import StoreError
    differ = other_label_set(stores)
    if differ:
        raise StoreError(f"{differ}: a transfer matrix needs one label set, nothing to compare")


def run_compare(stores: Sequence[str], out: str) -> list[str]:
    """`sweep compare`: every store's transfer table, joined into the generator x scorer table, written to
    `out`/compare.parquet with its figure `out`/compare.png (`out`: a local folder or a URI); returns the lines to
    print. Each store is one generator row, named by `generator_labels`. StoreError, before anything is written,
    for a store that cannot be read, a store given twice, or stores of different label sets
    (`other_label_set`)."""
    import pyarrow as pa

    from analysis.drawing import save
    from analysis.load import output_folder, refuse_repeated_stores, write_outputs
    from sweep.store import open_store, table_bytes
    folder = output_folder(out)   # refused (a file, a store's own folder) before any store is read
    opened = [open_store(s) for s in stores]
    refuse_repeated_stores(opened)
    refuse_other_label_sets(opened)
    table = compare_table([store_transfer(s).assign(generator=label)
                           for s, label in zip(opened, generator_labels(opened))])
    written = write_outputs(folder, {
        COMPARE_FILE: table_bytes(pa.Table.from_pandas(table, preserve_index=False)),
        COMPARE_FIGURE: save(compare_figure(table), "png")})
    lines = [f"wrote {written[0]} and {COMPARE_FIGURE} ({counted(table['generator'].nunique(), 'generating store')} "
             f"x {counted(table['scorer'].nunique(), 'scoring model')})"]
    octave = table[table["job"] == "octave"]
    if len(octave):
        grid = matrix(octave, "generator", "scorer")
        lines.append("octave images, share top-1 = target (rows: generating model, columns: scoring model):")
        lines += grid.to_string(float_format=lambda v: f"{v:.0%}", na_rep="-").splitlines()
    return lines + partly_scored(table)
