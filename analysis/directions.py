"""Latent directions in the output space (the latent-directions article, "Exploring the Latent Space of a ConvNet
Image Classifier").

The stored output vectors are projected with PCA (50 components in the article, which keeps > 98% of the
variance of a ResNet50's last layer); a linear direction that separates two groups of images is fitted in that
space (logistic regression; its normal vector is the direction), or, for two or more groups, the article's own
method: a small network whose input passes through a one-unit bottleneck (`fit_bottleneck_direction`). Every
image then has a position along the direction, and walking along the line through one image retrieves the stored
images nearest to each point of the line: the article's way of showing that an attribute changes linearly in the
classifier's last layer.

With several groups the article shows where each lies along the direction ("the distribution of different sleeve
types along the latent direction": long, short and sleeveless sleeves "get segregated along this direction"), so
`DirectionsSummary` reports every group, in order, with its mean position, and how well each group is told apart
from the next one (`neighbour_separations`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from jobs.outputs import finite_rows
from jobs.text import counted, is_whole_number, listing
from sweep.store import ANALYSIS, FRAME_KEY, Store, StoreError, is_frame_key, open_store

TABLE_FILE = "directions.parquet"   # under {store}/analysis/


class GroupsError(ValueError):
    """The groups file does not describe groups of stored images (a key or class it names has none, say)."""


@dataclass(frozen=True)
class Direction:
    components: np.ndarray   # N x k PCA coordinates of every image
    direction: np.ndarray    # k, unit vector in PCA space pointing from the first group of `order` to the last
    positions: np.ndarray    # N, each image's coordinate along the direction
    order: tuple[str, ...]   # the group names, in the order the direction runs through them
    explained_variance: float  # share of the output-space variance the k components keep

    @property
    def negative(self) -> str:
        """The group at the low end of the direction."""
        return self.order[0]

    @property
    def positive(self) -> str:
        """The group at the high end of the direction."""
        return self.order[-1]


def principal_components(vectors: np.ndarray, n_components: int = 50, copy: bool = True
                         ) -> tuple[np.ndarray, float]:
    """(N x k PCA coordinates, the share of the variance the k components keep) of the output vectors `vectors`
    (N x D), k = min(n_components, N - 1, D): the article's "apply PCA on this layer and reduce the dimension to 50".

    In float32, the outputs' own precision, as in the article's PCA of a network's outputs: a float64 copy of 10^5
    images' 1000 outputs is 800 MB. scikit-learn's exact solver of the D x D covariance matrix (`covariance_eigh`;
    D is the model's classes), what its "auto" picks from N = 10 D on; below that "auto" picks a randomized solver,
    whose top 50 axes of a flat spectrum can be far from the true ones. The outputs are centred first: in float32
    that solver's own centring (N mean mean^T taken from the Gram matrix) cancels the digits of an output whose
    mean is large beside its spread (outputs shifted by up to 4.5 times their spread: an axis turned by 2.7
    degrees), where on centred outputs eigenvalues and axes agree with float64 to about 1e-6
    (tests/analysis/test_directions.py). `copy=False` centres a float32 `vectors` in place (400 MB fewer at 10^5
    images, for a caller that read them for this fit only). The coordinates come back in float64."""
    from sklearn.decomposition import PCA

    k = max(1, min(n_components, vectors.shape[0] - 1, vectors.shape[1]))
    mean = vectors.mean(axis=0, dtype=np.float64)                               # D
    centred = vectors if not copy and vectors.dtype == np.float32 else vectors.astype(np.float32)   # N x D
    centred -= mean.astype(np.float32)
    pca = PCA(n_components=k, svd_solver="covariance_eigh")
    return pca.fit_transform(centred).astype(np.float64), float(pca.explained_variance_ratio_.sum())   # N x k


def refuse_identical(grouped: np.ndarray, names: Sequence[str]) -> None:
    """GroupsError when the grouped images (M x k) all have the same outputs: no direction tells the groups apart
    (logistic regression's normal came out 0 / 0, a NaN traceback; the bottleneck's, its random start)."""
    if not np.ptp(grouped, axis=0).any():
        raise GroupsError(f"the images of {', '.join(names)} all have the same output vectors: no direction tells "
                          f"the groups apart")


def fit_direction(vectors: np.ndarray, groups: pd.Series, n_components: int = 50,
                  seed: int = 0, copy: bool = True) -> Direction:
    """PCA of `vectors` (N x D, `principal_components`), then the logistic-regression normal separating the two
    labelled groups.

    `groups`: N labels, empty string or NaN for images in no group (they are projected but not fitted).
    `copy=False`: `vectors` (float32) may be centred in place (`principal_components`).
    """
    from sklearn.linear_model import LogisticRegression

    labels = groups.fillna("").astype(str).to_numpy()
    names = sorted(set(labels) - {""})
    if len(names) != 2:
        more = "; the bottleneck network (--method bottleneck, or auto) fits more" if len(names) > 2 else ""
        raise GroupsError(f"logistic regression needs exactly two groups, found {len(names)}: "
                          f"{', '.join(names) or 'none'}{more}")
    components, explained = principal_components(vectors, n_components, copy)    # N x k
    fitted = labels != ""
    refuse_identical(components[fitted], names)
    classifier = LogisticRegression(max_iter=2000, random_state=seed)
    classifier.fit(components[fitted], (labels[fitted] == names[1]).astype(int))
    normal = classifier.coef_[0]                                            # k
    if not np.linalg.norm(normal):   # the groups' mean outputs are the same (duplicated images): normal 0, 0 / 0
        raise GroupsError(f"the images of {names[0]} and {names[1]} have the same mean output vector: logistic "
                          f"regression finds no direction between them (--method bottleneck reads more than means)")
    direction = normal / np.linalg.norm(normal)                             # k
    return Direction(components, direction, components @ direction, (names[0], names[1]), explained)


METHODS = ("auto", "logistic", "bottleneck")   # how `run_directions` fits the direction
# auto: the article's choice (latent directions, "If it was a binary Classification, we could have used logistic
# regression ... but in our case, we have multiple classes", hence the one-unit bottleneck): logistic for two
# groups, the bottleneck network for three or more.


def fit_bottleneck_direction(vectors: np.ndarray, groups: pd.Series, n_components: int = 50, seed: int = 0,
                             hidden: int = 10, epochs: int = 600, lr: float = 0.01, copy: bool = True) -> Direction:
    """The latent-directions article's method for several classes: PCA, then a classifier whose input is forced
    through a single linear unit (`Linear(k, 1), Linear(1, 10), ReLU, Linear(10, 10), ReLU, Linear(10, G)`),
    trained with cross-entropy on the grouped images; the first layer's weight vector is the direction ("the
    vector of weights of the input layer gives us the latent direction"). Full-batch Adam, seeded, on the CPU.

    `groups`: N labels, empty or NaN for images in no group; two or more groups. The network knows no order of the
    groups: `order` is theirs by mean position, and the direction points from the lowest mean to the highest.
    PCA and `copy` as `fit_direction`'s."""
    import torch

    labels = groups.fillna("").astype(str).to_numpy()
    names = sorted(set(labels) - {""})
    if len(names) < 2:
        raise GroupsError(f"need at least two groups, found {len(names)}: {', '.join(names) or 'none'}")
    components, explained = principal_components(vectors, n_components, copy)    # N x k
    k = components.shape[1]
    fitted = labels != ""
    refuse_identical(components[fitted], names)
    scale = components[fitted].std() or 1.0                                 # keep the inputs near unit scale
    x = torch.tensor(components[fitted] / scale, dtype=torch.float32)       # M x k
    y = torch.tensor([names.index(g) for g in labels[fitted]])              # M
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)   # a network this small only loses time to thread hand-offs
        net = torch.nn.Sequential(torch.nn.Linear(k, 1), torch.nn.Linear(1, hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, len(names)))
        optimiser = torch.optim.Adam(net.parameters(), lr=lr)
        try:
            for _ in range(epochs):
                optimiser.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                optimiser.step()
        finally:
            torch.set_num_threads(threads)
    weight = net[0].weight.detach().double().numpy()[0]                     # k: the bottleneck's input weights
    direction = weight / np.linalg.norm(weight)
    positions = components @ direction
    if positions[labels == names[-1]].mean() < positions[labels == names[0]].mean():   # the weights' sign is
        direction, positions = -direction, -positions                                    # arbitrary: fix it
    return Direction(components, direction, positions, tuple(group_order(positions, labels)), explained)


def group_order(positions: np.ndarray, labels: np.ndarray) -> list[str]:
    """The groups of `labels` ('' is no group) by their images' mean position, lowest first."""
    names = sorted(set(labels) - {""})
    return sorted(names, key=lambda g: positions[labels == g].mean())


def neighbour_separations(positions: np.ndarray, labels: np.ndarray, order: Sequence[str]
                          ) -> list[tuple[str, str, float]]:
    """(group, next group, ROC AUC) for each neighbouring pair of `order`: the chance that an image of the next
    group lies further along the direction than one of the group (1: no overlap; 0.5: no separation; below 0.5:
    the pair is the other way round). With two groups, the one AUC of the two. Every group takes part, and a group
    split in two along the direction lowers both of its pairs. A rank correlation of position with group order
    would say less: the bottleneck's order is itself read from the positions, so it flatters the fit."""
    from sklearn.metrics import roc_auc_score
    pairs = []
    for low, high in zip(order, order[1:]):
        both = np.isin(labels, [low, high])
        pairs.append((low, high, float(roc_auc_score(labels[both] == high, positions[both]))))
    return pairs


# The images a class stands for in a groups file's `class` column, unless the file or the command names jobs: the
# images made to be that class (octave from noise, transfiguration of a photograph toward it). An opposite is the
# class's negation and an addition half another class: in the class's group they would skew the direction.
CLASS_JOBS = ("octave", "transfigure")


def line_neighbours(fit: Direction, start: int, n_points: int = 8, candidates: np.ndarray | None = None
                    ) -> list[int]:
    """Indices of distinct images nearest to evenly spaced points on the line through image `start` along the
    direction, from the lowest to the highest position any candidate has: each point takes the nearest image no
    earlier point took, so that a gap in the data does not show one image over and over (the article's strip shows
    a progression). `candidates`: N booleans, the images the strip may show (default all)."""
    allowed = np.ones(len(fit.positions), bool) if candidates is None else np.asarray(candidates, bool).copy()
    low, high = fit.positions[allowed].min(), fit.positions[allowed].max()
    origin = fit.components[start] - fit.positions[start] * fit.direction   # the line's point at position 0
    picks = []
    for t in np.linspace(low, high, min(n_points, int(allowed.sum()))):
        point = origin + t * fit.direction
        distance = np.where(allowed, np.linalg.norm(fit.components - point, axis=1), np.inf)
        pick = int(np.argmin(distance))
        picks.append(pick)
        allowed[pick] = False
    return picks


def _class_index(value: str, class_names: tuple[str, ...], path: str) -> int:
    """A `class` cell (an index or a class name of the store's model) -> the class index."""
    if is_whole_number(value):
        if int(value) >= len(class_names):
            raise GroupsError(f"{path}: class {value} is out of range: the store's model has {len(class_names)} "
                              f"classes (0-{len(class_names) - 1})")
        return int(value)
    if value not in class_names:
        spelled = list(dict.fromkeys(name for name in class_names if name.casefold() == value.casefold()))
        raise GroupsError(f"{path}: unknown class {value!r}: not a class name of the store's model "
                          + (f"(did you mean {' or '.join(map(repr, spelled))}? names are matched as written)"
                             if spelled else f"(e.g. {', '.join(map(repr, class_names[:3]))}; or give its index)"))
    shared = [i for i, name in enumerate(class_names) if name == value]
    if len(shared) > 1:   # ImageNet's two "crane" (134, 517) and two "maillot" (638, 639)
        raise GroupsError(f"{path}: class name {value!r} is shared by classes {', '.join(map(str, shared[:-1]))} "
                          f"and {shared[-1]}: give the index instead")
    return shared[0]


def _groups_table(path: str) -> tuple[pd.DataFrame, pd.Series]:
    """The groups file's cells as written (text: a group named None or NA is one; spaces around cells and column
    names dropped), and each row's line number; lines of empty cells (a spreadsheet's trailing ',') left out."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise GroupsError(f"cannot read groups file {path}: {error}") from None
    table.columns = [str(c).strip() for c in table.columns]
    table = table.apply(lambda column: column.str.strip())
    lines = pd.Series(table.index + 2, index=table.index)   # line 1 is the header
    written = (table != "").any(axis=1)
    return table[written].reset_index(drop=True), lines[written].reset_index(drop=True)


def _one_group_each(path: str, places: list[tuple[object, str]], noun) -> dict:
    """{place: group} of the (place, group) pairs; GroupsError when a place is given two groups (the later line
    used to win silently). `noun(place)` names a place in the message."""
    groups: dict = {}
    for place, group in places:
        if groups.setdefault(place, group) != group:
            raise GroupsError(f"{path}: {noun(place)} is in two groups, {groups[place]!r} and {group!r}: give each "
                              f"image one group")
    return groups


def read_groups(path: str, frame: pd.DataFrame, class_names: tuple[str, ...] | None = None,
                jobs: tuple[str, ...] | None = None) -> pd.Series:
    """Group label per row of `frame` (key, job, target, target_name) from a CSV with a `group` column and either
    `key` (one image) or `class` (a class index or name). A class means its class images, the jobs CLASS_JOBS,
    unless the command names `jobs` or the file has a `job` column (the job of each row's images; not both).
    `class_names`: the store's model's (default: the names seen in `frame`). GroupsError, naming them, when keys
    or classes of the file have no image in `frame`: a typo must not quietly shrink a group."""
    table, lines = _groups_table(path)
    if "group" not in table.columns or not ({"key", "class"} & set(table.columns)):
        raise GroupsError(f"{path} needs a 'group' column and a 'key' or 'class' column; "
                          f"it has {', '.join(table.columns)}")
    if {"key", "class"} <= set(table.columns):
        raise GroupsError(f"{path}: both a 'key' and a 'class' column: a file places images either by key or by "
                          f"class; put each kind in a file of its own")
    if table.empty:
        raise GroupsError(f"{path} has no rows: give a key or class and its group on each line")
    place = "key" if "key" in table.columns else "class"
    if place == "key" and ("job" in table.columns or jobs):   # it was ignored: the key's own job was taken
        raise GroupsError(f"{path} places images by key, each of its own job: "
                          + ("its 'job' column applies to a 'class' column (leave it out)" if "job" in table.columns
                             else "--jobs applies to a 'class' column (leave it out)"))
    if place == "class" and "job" in table.columns and jobs:   # the column won and --jobs was dropped unsaid
        raise GroupsError(f"{path} has a 'job' column and --jobs names jobs too: give each class's jobs once, in "
                          f"the file or with --jobs")
    for line, value, group in zip(lines, table[place], table["group"]):
        if not value or not group:
            raise GroupsError(f"{path} line {line}: " + (f"no group for {place} {value!r}: give it one, or leave the "
                                                         f"line out" if value else f"no {place} for group {group!r}"))
    for line, value, job in zip(lines, table[place], table.get("job", ())):
        if not job:   # else read as a job named '' ("no  images in the store")
            raise GroupsError(f"{path} line {line}: no job for class {value!r}: give it one (the job column names "
                              f"each row's job), or leave the line out")
    if "key" in table.columns:
        keys = table["key"]
        stored = set(frame["key"])   # once: a file of 10^4 keys against 10^5 images
        missing = list(dict.fromkeys(k for k in keys if k not in stored))
        if missing:
            raise GroupsError(f"{path}: {_matching(len(missing), 'key')} no image in the store: "
                              f"{listing(map(repr, missing))}")
        placed = _one_group_each(path, list(zip(keys, table["group"])), lambda key: f"key {key!r}")
        return frame["key"].map(placed).fillna("")
    if class_names is None:
        seen = frame.drop_duplicates("target")
        names = dict(zip(seen["target"], seen["target_name"]))
        class_names = tuple(names.get(i, "") for i in range(max(names, default=-1) + 1))
    job_column = table["job"] if "job" in table.columns else None
    present = set(frame["job"])
    wanted_jobs = list(job_column) if job_column is not None else list(jobs or ())
    unknown = sorted(set(wanted_jobs) - present)
    if unknown:
        raise GroupsError(f"{path}: no {', '.join(unknown)} images in the store "
                          f"(jobs present: {', '.join(sorted(present))})")
    stored = set(zip(frame["job"], frame["target"]))
    places = []    # ((job, class), group) of every class cell
    missing = []   # the class cells (with their job, from a job column) that stand for no stored image
    for i, (value, group) in enumerate(zip(table["class"], table["group"])):
        target = _class_index(value, class_names, path)
        row_jobs = [job_column.iloc[i]] if job_column is not None else list(jobs or CLASS_JOBS)
        places += [((job, target), group) for job in row_jobs]
        if not any((job, target) in stored for job in row_jobs):
            missing.append(value if job_column is None else f"{value} ({row_jobs[0]})")
    by_key = _one_group_each(path, places, lambda place: f"class {place[1]} ({class_names[place[1]]})"
                             + (f" of job {place[0]}" if job_column is not None else ""))
    if len(missing) == len(table):
        raise GroupsError(f"{path}: none of its rows matches an image in the store"
                          + ("" if jobs or job_column is not None else
                             f" (a class means its {' and '.join(CLASS_JOBS)} images; name others with a job "
                             f"column or --jobs)"))
    if missing:
        missing = list(dict.fromkeys(missing))
        kind = "images of their job" if job_column is not None else f"{'/'.join(jobs or CLASS_JOBS)} images"
        raise GroupsError(f"{path}: {'class' if len(missing) == 1 else f'{len(missing)} classes'} "
                          f"{listing(missing)} {'has' if len(missing) == 1 else 'have'} no {kind} in the store")
    groups = pd.Series([by_key.get((j, t)) for j, t in zip(frame["job"], frame["target"])], index=frame.index)
    return groups.fillna("")


def _matching(n: int, noun: str) -> str:
    """'key matches' / '3 keys match'."""
    return f"{noun} matches" if n == 1 else f"{n} {noun}s match"


# --- the stage: store in, table and figures out ------------------------------------------------------------------

MIN_GROUP_IMAGES = 5   # below this many images in a group, the summary warns: its direction and AUC say little


@dataclass(frozen=True)
class DirectionsSummary:
    table: str                    # where the positions table was written
    figures: tuple[str, ...]      # figure files written
    fit: Direction
    means: dict                   # group -> its images' mean position, in the order of `fit.order`
    separations: tuple            # (group, next group, ROC AUC) along `fit.order`: `neighbour_separations`
    counts: dict                  # group -> number of images, in the order of `fit.order`; then "(no group)"
    method: str = ""              # how the direction was fitted: "logistic" or "bottleneck"
    left_out: int = 0             # images left out: outputs not finite

    @property
    def auc(self) -> float:
        """The weakest separation of neighbouring groups (with two groups, their ROC AUC)."""
        return min(auc for _, _, auc in self.separations)

    def lines(self) -> list[str]:
        order, ungrouped = self.fit.order, self.counts.get("(no group)", 0)
        through = "".join(f" through {g!r}" for g in order[1:-1])
        places = ", ".join(f"{g} {self.means[g]:+.2f} ({self.counts[g]})" for g in order)
        pairs = ", ".join(f"{low}|{high} {auc:.3f}" for low, high, auc in self.separations)
        few = [g for g in order if self.counts[g] < MIN_GROUP_IMAGES]
        fitted = {"logistic": " by logistic regression", "bottleneck": " by the one-unit bottleneck network"}
        return [f"direction from {order[0]!r}{through} to {order[-1]!r} in {self.fit.components.shape[1]} PCA "
                f"components ({self.fit.explained_variance:.1%} of the variance){fitted.get(self.method, '')}",
                f"groups along it, mean position (images): {places}"
                + (f"; in no group: {counted(ungrouped, 'image')}" if ungrouped else ""),
                f"separation ROC AUC of each neighbouring pair (1.000: no overlap, 0.500: none): {pairs}",
                *([f"note: {listing(few)} {'has' if len(few) == 1 else 'have'} fewer than {MIN_GROUP_IMAGES} "
                   f"images: a direction fitted on so few says little, whatever its AUC"] if few else []),
                *([f"left out: {counted(self.left_out, 'image')} whose outputs are not finite (as `sweep analyze` "
                   f"leaves them out)"] if self.left_out else []),
                f"positions: {self.table}", *[f"figure: {f}" for f in self.figures]]


def run_directions(store: Store | str, groups_file: str, *, start: str | None = None, n_components: int = 50,
                   n_points: int = 8, out: str | None = None, method: str = "auto",
                   jobs: tuple[str, ...] | None = None) -> DirectionsSummary:
    """`sweep directions`: fit the direction through the groups of `groups_file` over the store's output vectors,
    write `{store}/analysis/directions.parquet` (key, job, target, target_name, group, position) and two figures in
    `out` (default {store}/figures): the per-group distribution along the direction, and the strip of stored images
    nearest to the line through the `start` image (a key; default the first image of the first group). `method`:
    "logistic" (two groups), "bottleneck" (the article's one-unit network, two or more), or "auto" (the
    article's choice: logistic for two groups, the bottleneck for more). `jobs`: the jobs a
    `class` row of the groups file means (default CLASS_JOBS, or the file's `job` column). The strip shows distinct
    images of the jobs the groups are made of, in position order, the start image among them."""
    from analysis.drawing import save, thumbnail
    from analysis.figures import direction_distribution, direction_strip, image_label
    from analysis.load import iter_pngs, output_folder, read_rows_and_keys, write_outputs

    st = open_store(store)
    figures = output_folder(out, st)   # refused (a file there) before anything is written
    with st.keeping_objects() as st:   # on an object store the strip's files: numbers and pictures in one fetch
        rows, index = read_rows_and_keys(st)   # the index: which files hold the strip's pictures
        meta = rows.meta.copy()
        names = st.class_names
        meta["target_name"] = [names[t] if 0 <= t < len(names) else "" for t in meta["target"]]
        # an image whose outputs are not finite is left out, as `sweep analyze` leaves it out (the PCA refuses NaN)
        finite = finite_rows(rows.logits)                                  # N
        left_out = meta["key"][~finite].tolist()
        try:
            groups = read_groups(groups_file, meta, names, tuple(jobs) if jobs else None)   # a left-out key is no typo
            logits = rows.logits
            if left_out:
                refuse_emptied_groups(groups, finite)
                meta, groups, logits = (meta[finite].reset_index(drop=True), groups[finite].reset_index(drop=True),
                                        logits[finite])
            del rows   # the outputs are held once, in `logits`
            if method not in METHODS:
                raise GroupsError(f"unknown direction method {method!r}: use {' or '.join(METHODS)}")
            if method == "auto":
                method = "logistic" if groups[groups != ""].nunique() == 2 else "bottleneck"
            fitter = fit_bottleneck_direction if method == "bottleneck" else fit_direction
            fit = fitter(logits, groups, n_components=n_components, copy=False)   # outputs read for this fit
        except GroupsError as error:
            raise StoreError(str(error)) from None
        labels = groups.to_numpy()
        separations = tuple(neighbour_separations(fit.positions, labels, fit.order))
        candidates = meta["job"].isin(set(meta["job"][labels != ""])).to_numpy().copy()   # the grouped images' jobs
        first_index = int(np.flatnonzero(labels == fit.negative)[0])   # seed 0's octave image when the group has one
        start_index = first_index if start is None else _start_index(start, meta["key"], first_index, left_out, st.uri)
        table = meta[["key", "job", "target", "target_name"]].assign(group=labels, position=fit.positions)
        st.write_table(f"{ANALYSIS}/{TABLE_FILE}", pa.Table.from_pandas(table, preserve_index=False))
        candidates[start_index] = False   # the strip shows the start image once, as the start
        shown_rows = [start_index, *line_neighbours(fit, start_index, n_points, candidates)]
        pngs = dict(iter_pngs(st, [meta["key"][i] for i in shown_rows], index))

    distribution = direction_distribution(fit.positions, labels, [*fit.order, ""],
                                          f"Images along the direction {' -> '.join(fit.order)}")
    written = {"directions-distribution.png": save(distribution, "png"),
               "directions-distribution.svg": save(distribution, "svg")}
    shown = meta.iloc[shown_rows][["key", "target_name", "job", "seed", "source"]].assign(
        position=fit.positions[shown_rows], group=labels[shown_rows], start=[True] + [False] * (len(shown_rows) - 1))
    thumbs = {key: thumbnail(pngs[key], 96) for key in shown["key"]}
    first = shown.iloc[0]
    strip = direction_strip(shown, thumbs, "Nearest stored images along the line through "
                            + image_label(first.target_name, first.job, first.seed, first.source))
    written["directions-strip.png"] = save(strip, "png")
    paths = write_outputs(figures, written)
    counts = {g: int((labels == g).sum()) for g in fit.order}
    if (labels == "").any():
        counts["(no group)"] = int((labels == "").sum())
    means = {g: float(fit.positions[labels == g].mean()) for g in fit.order}
    return DirectionsSummary(st.location(ANALYSIS, TABLE_FILE), tuple(paths), fit, means, separations, counts,
                             method, len(left_out))


def refuse_emptied_groups(groups: pd.Series, finite: np.ndarray) -> None:
    """GroupsError naming the groups of the file whose every image has outputs that are not finite (`finite`: N
    booleans): left out, such a group would be gone from the fit unsaid (three groups fitted as two, by logistic
    regression, or "at least two groups, found 1")."""
    emptied = sorted(set(groups[groups != ""]) - set(groups[finite & (groups != "").to_numpy()]))
    if emptied:
        raise GroupsError(f"{'group' if len(emptied) == 1 else 'groups'} {listing(emptied)}: every image's outputs "
                          f"are not finite (NaN or inf), so {'it has' if len(emptied) == 1 else 'they have'} no "
                          f"image left to place along a direction (as `sweep analyze` leaves such images out)")


def _start_index(start: str, keys: pd.Series, default: int, left_out: Sequence[str], uri: str) -> int:
    """The row of the `--start` key among the placed images' `keys`; StoreError saying which keys it takes (checked
    before anything is written). `default`: the default start's row, named as an example."""
    matches = np.flatnonzero(keys.to_numpy() == start)
    if len(matches):
        return int(matches[0])
    if is_frame_key(start):
        image = FRAME_KEY.sub("", start)
        example = f"{image!r} (its interpolation's final image)" if (keys == image).any() else repr(keys[default])
        raise StoreError(f"--start {start!r} is an interpolation frame: the direction places images only; give an "
                         f"image's key, as {example}")
    if start in left_out:
        raise StoreError(f"--start {start!r}: its outputs are not finite, so it has no place along the direction; "
                         f"give another image's key, as {keys[default]!r}")
    raise StoreError(f"no image with key {start!r} in {uri}: --start takes a key of its images/, as {keys[default]!r}")
