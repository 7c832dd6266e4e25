"""The analysis stage: read a store's numbers, compute every table, write them under {store}/analysis/.

    store rows (no PNGs) -> coverage statement
                         -> octave representatives -> classes, PCA, nearest-neighbour graph (whole, and per
                                                      class range: the article's halves by default)
                         -> opposite images        -> opposites (+ summary)
                         -> addition images        -> additions (+ summary)
                         -> recorded trajectories  -> stability (+ summary), when the run recorded them
    -> Parquet tables, graph.graphml, summary.json (atomic writes)

`analyze_store` is what `sweep analyze` calls. Tables a store cannot have (no opposite images, say) are not
written and any stale copy is removed, so {store}/analysis/ always describes the store as it is now. A store
without octave images (only image jobs, say) gets every table that does not start from a class image, and a note
saying which were skipped (NO_CLASS_IMAGES).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from analysis import graph as graph_mod
from analysis.coverage import coverage
from analysis.load import NUMERIC_COLUMNS, Rows, RowsWanted, read_rows_for, representatives
from analysis.projection import ConstantOutputs, pca_tables
from analysis.stability import read_stability, stability_summary
from analysis.tables import (DEFAULT_METRIC, MARGIN_SHARE, METRICS, additions_summary, additions_table,
                             classes_table, opposites_summary, opposites_table)
from analysis.transfer import PERCENTILE, TOP1, TOP3_FILE, TRANSFER_FILE, aim_class, partly_scored, \
    success_measure, success_table, transfer_tables
from jobs.catalog import BY_NAME, CLASSLESS, IMAGE_JOBS, job_variant_name
from jobs.outputs import finite_rows
from jobs.text import counted
from sweep.store import ANALYSIS as ANALYSIS_DIR, SCORES, Store, StoreError, all_keys, open_store

SUMMARY_FILE = "summary.json"
ANALYSIS_VERSION = 6   # what the tables and summary hold; `sweep figures` analyses a store with an older one again
                       #   (2: the summary's transfer judges each job by its own measure; the stability
                       #   tables number octaves from 1; 3: summary.json keeps the computed order and names the
                       #   generating model's scorer; 4: the opposites' `least` criterion, the article's first;
                       #   5: the nearest-neighbour graph per class range, graph_ranges.parquet, halves by default;
                       #   6: the stability tables carry the variant, and the summary has a row per job, variant
                       #   and octave: an addition's merge and juxtapose, a dream's layers, apart)
# Every file the stage may write (names under {store}/analysis/).
TABLE_FILES = ("classes.parquet", "opposites.parquet", "opposites_summary.parquet", "additions.parquet",
               "additions_summary.parquet", "pca.parquet", "pca_variance.parquet", "graph_nodes.parquet",
               "graph_components.parquet", "graph_cliques.parquet", "graph_ranges.parquet", TRANSFER_FILE, TOP3_FILE,
               "stability.parquet", "stability_summary.parquet", "graph.graphml")
# The note of a store without octave images; `sweep figures` repeats it on the report's index.
NO_CLASS_IMAGES = ("no octave images: classes table, PCA and nearest-neighbour graph skipped (each starts from a "
                   "class's octave image; run the octave job for them)")


@dataclass
class AnalysisSummary:
    """What the analysis found, in numbers; `lines()` reads them out."""
    store: str
    metric: str
    model: str
    n_classes: int
    fingerprint: str                                  # of the images/ files analysed
    images: dict[str, int]                            # job -> images analysed
    coverage: list[str]                               # statements of what the store covers / misses
    complete: bool
    classes: int = 0                                  # classes with an octave image
    correct: int = 0                                  # ... whose image the model labels as the class
    opposites: dict = field(default_factory=dict)     # criterion -> {distinct, mutual_pairs, mutual_share, ...}
    additions: dict = field(default_factory=dict)     # variant -> {images, top_two, top_two_share}
    pca_ratio: list[float] = field(default_factory=list)   # explained-variance ratio of PC1, PC2, ...
    components: int = 0
    largest_components: list[int] = field(default_factory=list)   # classes per component, nodes without an image
    neighbours_only: int = 0                          # graph nodes without an octave image (another's neighbour)
    cliques_over_two: int = 0
    image_jobs: dict = field(default_factory=dict)   # job from a real image -> {images, on_target}
    transfer: dict = field(default_factory=dict)     # scorer -> {job[/variant]: its own measure's value}, the
                                                     #   generating model's first
    generator: str = ""                              # the generating model's scorer id among `transfer`'s
    stability: list = field(default_factory=list)     # stability_summary rows (with --trajectory runs only)
    notes: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)   # files written under {store}/analysis/
    version: int = 1                                  # ANALYSIS_VERSION of the analysis (1: before it was recorded)
    scores_fingerprint: str = ""                      # of the scores/ files analysed (`sweep score`'s)
    margin_share: float = MARGIN_SHARE                # the margin opposite's share of the lowest outputs searched
    graph_ranges: str = graph_mod.HALVES              # `--graph-ranges` (`graph.ranges_spec`): the class ranges
                                                      #   graphed apart, the article's halves by default
    ranges: list = field(default_factory=list)        # per range: {range, classes, components, largest, outside,
                                                      #   cliques_over_two} (`range_numbers`)

    def lines(self) -> list[str]:
        out = [f"store {self.store}: model {self.model}, {self.n_classes} classes; "
               + ", ".join(f"{n} {job}" for job, n in self.images.items())
               + (" image" if sum(self.images.values()) == 1 else " images")]
        out += self.coverage
        if self.classes:
            out.append(f"classes with an octave image: {self.classes}; labelled as their class: {self.correct}")
        for criterion, s in self.opposites.items():
            common = ", ".join(f"{name} ({count})" for name, count in s["most_common"][:5])
            share = "n/a" if s["mutual_share"] is None else f"{s['mutual_share']:.1%}"
            among = {"margin": f" (among the lowest {self.margin_share:.0%} of outputs)",
                     "least": " (the class image's least activated output, the article's first criterion)"
                     }.get(criterion, "")
            out.append(f"opposites by {criterion}{among}: {s['distinct']} distinct among {s['classes']} classes; "
                       f"mutual pairs {s['mutual_pairs']} (share of classes in a mutual pair {share}); "
                       f"most common: {common}")
        for variant, s in self.additions.items():
            out.append(f"additions ({variant}): both classes in the top two for {s['top_two']} of {s['images']} "
                       f"({s['top_two_share']:.1%})")
        for job, s in self.image_jobs.items():
            if s.get("on_target") is None:
                out.append(f"{job}: {counted(s['images'], 'image')}")
            else:
                aim = "class b" if BY_NAME[job].aim == "partner" else "target class"
                out.append(f"{job}: {s['on_target']} of {s['images']} images labelled as their {aim}")
        if self.pca_ratio:
            ratios = ", ".join(f"PC{i + 1} {r:.1%}" for i, r in enumerate(self.pca_ratio[:2]))
            out.append(f"PCA of the class outputs: explained variance {ratios}")
        if self.classes:
            out.append(f"nearest-neighbour graph (the article's most activated other class; closest outputs by "
                       f"{self.metric} in classes.parquet and graph.graphml): "
                       f"{self.components} component{'s' * (self.components != 1)}, "
                       f"largest {', '.join(map(str, self.largest_components[:5]))} classes"
                       f"{neighbours_only_words(self.neighbours_only)}; "
                       f"cliques of more than two classes: {self.cliques_over_two}")
            out += [range_words(r) for r in self.ranges]
        for scorer, values in self.transfer.items():
            own = " (the generating model)" if scorer == self.generator else ""
            out.append(f"scorer {scorer}{own}, each job by its own measure: {transfer_words(values)}")
        out += [stability_words(s) for s in self.stability]
        out += self.notes
        return out

    def to_json(self) -> str:
        # Keys in the order they were computed (no sort_keys): the report, which reads this file, lists the
        # opposites' criteria, the scorers (the generating model first) and the rest as the terminal does.
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "AnalysisSummary":
        return cls(**json.loads(text))


def neighbours_only_words(count: int) -> str:
    """Why a component can hold more classes than have an image: the graph's nodes include every class that is some
    image's nearest neighbour."""
    if not count:
        return ""
    return f" (counting {counted(count, 'class', 'classes')} with no octave image, there as another's neighbour)"


def range_words(r: dict) -> str:
    """One class range's graph in words (`range_numbers`), for the article's comparison of the halves ("a component
    with more members than was observed for any animal component")."""
    head = f"nearest-neighbour graph of classes {r['range']}"
    if not r["classes"]:
        return f"{head}: no class with an octave image"
    largest = r["largest"]
    nxt = f" (next {', '.join(map(str, largest[1:5]))})" if len(largest) > 1 else ""
    outside = (f"; counting {counted(r['outside'], 'class', 'classes')} outside the range, there as a neighbour"
               if r["outside"] else "")
    return (f"{head}: {counted(r['classes'], 'class', 'classes')} with an image, "
            f"{counted(r['components'], 'component')}, the largest has {largest[0]} members{nxt}{outside}; "
            f"cliques of more than two classes: {r['cliques_over_two']}")


def range_numbers(span: graph_mod.ClassRange, sub) -> dict:
    """A class range's graph (`graph.range_graph`) in numbers: classes with an image (one edge each), components,
    their sizes (largest first, ten at most), nodes outside the range, cliques of more than two classes."""
    comps = graph_mod.components(sub)
    return {"range": span.name, "classes": sub.number_of_edges(), "components": len(comps),
            "largest": [len(c) for c in comps[:10]], "outside": sum(n not in span for n in sub.nodes),
            "cliques_over_two": sum(len(c) > 2 for c in graph_mod.cliques(sub))}


def class_ranges(st: Store, graph_ranges: str) -> tuple[graph_mod.ClassRange, ...]:
    """The class ranges `--graph-ranges graph_ranges` names in the store's class list (`graph.parse_ranges`);
    StoreError (one line) for ranges malformed or past the last class."""
    try:
        return graph_mod.parse_ranges(graph_ranges, st.n_classes)
    except ValueError as err:
        raise StoreError(f"--graph-ranges {err}") from None


def analyze_store(store: Store | str, metric: str = DEFAULT_METRIC, margin_share: float = MARGIN_SHARE,
                  graph_ranges: str = graph_mod.HALVES) -> AnalysisSummary:
    """Compute every table of a store and write them under {store}/analysis/; returns the summary. `margin_share`:
    the share of the lowest outputs among which the article's margin opposite is sought (`tables.MARGIN_SHARE`).
    `graph_ranges`: the class ranges whose nearest-neighbour graphs are taken apart besides the whole graph's
    (`graph.parse_ranges`: `halves`, the article's, `all` for none, or ranges such as `0-499,500-999`).

    Raises StoreError for a store that cannot be analysed: none there, no manifest, no images, a foreign Parquet
    file in images/, an unknown metric, a margin share outside (0, 1], ranges malformed or past the last class.
    Without octave images the class tables are skipped (see NO_CLASS_IMAGES).
    """
    return analyze_store_and_keys(store, metric, margin_share, graph_ranges=graph_ranges)[0]


def analyze_store_and_keys(store: Store | str, metric: str = DEFAULT_METRIC, margin_share: float = MARGIN_SHARE,
                           also: Sequence[RowsWanted] = (), graph_ranges: str = graph_mod.HALVES
                           ) -> tuple[AnalysisSummary, dict[str, list[str]], list[tuple[Rows, dict[str, list[str]]]]]:
    """`analyze_store`, and the key index of the images/ files it read ({path: keys}, `read_rows_and_keys`), from
    the same reads: the stability tables take the stored images' keys from it, and a command that goes on to read
    pictures (`sweep figures`) opens the files holding them without reading every file's keys again. `also`: what
    that command reads of the rows next (`sweep figures`: the image jobs' numbers and frames), read in the same
    pass as the analysis' own (`read_rows_for`); their rows and key indexes come third, in order."""
    if metric not in METRICS:
        raise StoreError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    if not 0 < margin_share <= 1:
        raise StoreError(f"margin share must be in (0, 1], got {margin_share}")
    st = open_store(store)
    spans = class_ranges(st, graph_ranges)
    fingerprint = st.fingerprint()   # before reading: a file the sweep adds meanwhile makes the tables stale
    scores_fingerprint = st.fingerprint(SCORES)
    (rows, index), *others = read_rows_for(st, [RowsWanted(NUMERIC_COLUMNS), *also])
    finite = finite_rows(rows.logits)                                       # N
    not_finite = rows.meta["key"][~finite]
    rows, dropped = usable_rows(rows, st.n_classes, finite)
    cov = coverage(st.manifest, rows.meta["key"], not_finite)
    octaves = rows.job("octave")
    reps = representatives(octaves) if len(octaves) else None
    summary = AnalysisSummary(
        store=st.uri, metric=metric, model=str(st.manifest.get("model", "?")), n_classes=st.n_classes,
        fingerprint=fingerprint,
        images={job: int(n) for job, n in rows.meta["job"].value_counts(sort=False).sort_index().items()},
        coverage=cov.lines(st.class_names), complete=cov.complete, version=ANALYSIS_VERSION,
        scores_fingerprint=scores_fingerprint, margin_share=margin_share,
        graph_ranges=graph_mod.ranges_spec(graph_ranges))
    if len(not_finite):
        summary.notes.append(f"{counted(len(not_finite), 'image')} left out: outputs that are not finite (NaN or "
                             f"inf)")
    if dropped > len(not_finite):
        summary.notes.append(f"{counted(dropped - len(not_finite), 'image')} left out: class indices outside the "
                             f"model's {st.n_classes} classes")
    try:
        tables, g = _compute(rows, reps, st.class_names, metric, summary, margin_share, spans)
    except ValueError as err:  # data the tables cannot make sense of: say so in one line
        raise StoreError(f"store {st.uri} cannot be analysed: {err}") from None
    tables.update(transfer_tables(st, rows))
    summary.transfer = _transfer_numbers(tables[TRANSFER_FILE])
    summary.notes += partly_scored(tables[TRANSFER_FILE])
    own = tables[TRANSFER_FILE].loc[tables[TRANSFER_FILE]["own"], "scorer"]
    summary.generator = str(own.iloc[0]) if len(own) else ""
    per_image = read_stability(st, all_keys(index))
    if per_image is not None:
        tables["stability.parquet"] = per_image
        tables["stability_summary.parquet"] = stability_summary(per_image, summary.model)
        summary.stability = json.loads(tables["stability_summary.parquet"].to_json(orient="records"))
    _write(st, tables, None if g is None else graph_mod.graphml(g), summary)
    return summary, index, others


def _transfer_numbers(table: pd.DataFrame) -> dict:
    """scorer -> {job[/variant]: the value of the job's own measure (`analysis.transfer.success_measure`)}."""
    out: dict = {}
    for r in success_table(table).itertuples():
        out.setdefault(r.scorer, {})[job_variant_name(r.job, r.variant)] = float(r.value)
    return out


def transfer_words(values: dict) -> str:
    """One scorer's {job[/variant]: value} in words, rows of one measure together, each measure named once:
    `octave 100%, transfigure 90% (top-1 = target); addition/merge 98% (both classes in the top 2); ...`."""
    by_measure: dict = {}
    for row, value in values.items():
        by_measure.setdefault(success_measure(row.split("/")[0]), []).append((row, value))
    return "; ".join(", ".join(f"{row} pct {v:.0f}" if measure.column == PERCENTILE else f"{row} {v:.0%}"
                               for row, v in rows) + f" ({measure.name})" for measure, rows in by_measure.items())


def _pairs_in_both_orders(table: pd.DataFrame) -> int:
    """How many addition images have a twin with the pair the other way round (same variant and seed)."""
    low = np.minimum(table["target"], table["partner"])
    high = np.maximum(table["target"], table["partner"])
    keys = pd.DataFrame({"low": low, "high": high, "variant": table["variant"], "seed": table["seed"]})
    twins = keys.duplicated(keep=False)
    return int(twins.sum() - keys[twins].drop_duplicates().shape[0])


def stability_words(s: dict) -> str:
    """One stability_summary row in words (`job/variant`, as the transfer numbers name it), its job judged by the
    job's own measure (`success_measure`): the target's top-1 share and settling for octave and image jobs; for an
    opposite, which minimises its class, the share of recorded steps where that class is not top-1; for a job whose
    measure the recorded argmax of the target cannot give (an addition: both classes in the top 2; an
    interpolation: class b top-1), no share, and why."""
    def share(value) -> str:
        return "n/a" if value is None else f"{value:.1%}"
    job = job_variant_name(s["job"], s.get("variant"))
    head = (f"stability ({job}, octave {s['octave']}, {counted(s['images'], 'image')}): argmax changed between "
            f"{share(s['change_rate'])} of recorded steps")
    measure = success_measure(s["job"])
    top1 = s["target_top1_share"]
    if s["job"] in CLASSLESS:
        return f"{head} (no target class)"
    if measure == TOP1:
        return f"{head}; target top-1 on {share(top1)}; settled as top-1: {share(s['settled_share'])}"
    if measure.column == PERCENTILE:
        return (f"{head}; the minimised class not top-1 on {share(None if top1 is None else 1 - top1)} of "
                f"them (an opposite minimises its class)")
    return f"{head}; no top-1 share: {s['job']} is judged by {measure.name}, not by the target's top-1"


def usable_rows(rows: Rows, n_classes: int, finite: np.ndarray | None = None) -> tuple[Rows, int]:
    """Rows whose classes are valid indices and whose outputs are finite; and how many others were dropped.
    `finite`: `finite_rows(rows.logits)` when the caller has it already (one pass over the N x C outputs)."""
    meta = rows.meta
    ok = finite_rows(rows.logits) if finite is None else finite.copy()
    ok &= (meta["target"].between(0, n_classes - 1)
           | (meta["job"].isin(CLASSLESS) & (meta["target"] == -1))).to_numpy()
    for column in ("label",):
        ok &= meta[column].between(0, n_classes - 1).to_numpy()
    ok &= meta["partner"].between(-1, n_classes - 1).to_numpy()
    return (rows if ok.all() else rows.select(ok)), int((~ok).sum())


def _compute(rows: Rows, reps: Rows | None, names, metric: str, summary: AnalysisSummary,
             margin_share: float = MARGIN_SHARE, spans: Sequence[graph_mod.ClassRange] = ()):
    """Every table (by file name) and the graph (None without class images: `reps` None); fills in the summary's
    numbers. `spans`: the class ranges graphed apart (`graph.parse_ranges`)."""
    tables: dict[str, pd.DataFrame] = {}

    classes = None
    if reps is not None:
        classes = classes_table(reps, names, metric, margin_share)
        tables["classes.parquet"] = classes
        summary.classes, summary.correct = len(classes), int(classes["correct"].sum())
    else:
        summary.notes.append(NO_CLASS_IMAGES)

    opps = rows.job("opposite")
    if len(opps):
        opp_table = opposites_table(representatives(opps), names, classes)
        opp_summary = opposites_summary(opp_table, names)
        tables["opposites.parquet"], tables["opposites_summary.parquet"] = opp_table, opp_summary
        summary.opposites = _opposite_numbers(opp_summary)
    else:
        summary.notes.append("no opposite images: opposites tables skipped")

    adds = rows.job("addition")
    if len(adds):
        add_table = additions_table(adds, names)
        add_summary = additions_summary(add_table)
        tables["additions.parquet"], tables["additions_summary.parquet"] = add_table, add_summary
        summary.additions = {r.variant: {"images": int(r.images), "top_two": int(r.top_two),
                                         "top_two_share": float(r.top_two_share)}
                             for r in add_summary.itertuples()}
        both_ways = _pairs_in_both_orders(add_table)
        if both_ways:
            summary.notes.append(f"{both_ways} addition images repeat a pair given in the other order (B+A beside "
                                 f"A+B, the same image; stores made before a pair was rendered once): they count "
                                 f"twice in the additions tables")
    else:
        summary.notes.append("no addition images: additions tables skipped")

    for job in IMAGE_JOBS:   # the jobs from real images: counted here, shown by the figures
        part = rows.job(job).meta
        if len(part):
            summary.image_jobs[job] = {"images": len(part), "on_target": None if job in CLASSLESS
                                       else int((part["label"].to_numpy() == aim_class(part)).sum())}

    if classes is None:
        return tables, None
    if len(reps) >= 2:
        try:
            coords, variance = pca_tables(reps, names)
        except ConstantOutputs as error:   # e.g. random weights: say so, instead of `PC1 nan%` and a warning
            summary.notes.append(f"{error}; PCA skipped")
        else:
            tables["pca.parquet"], tables["pca_variance.parquet"] = coords, variance
            summary.pca_ratio = [float(r) for r in variance["explained_variance_ratio"]]
    else:
        summary.notes.append("fewer than two classes with an octave image: PCA skipped")

    g = graph_mod.nearest_neighbour_graph(classes, names, metric)
    comps, cliques = graph_mod.components(g), graph_mod.cliques(g)
    tables["graph_nodes.parquet"] = graph_mod.nodes_table(g, comps)
    tables["graph_components.parquet"] = graph_mod.components_table(g, comps)
    tables["graph_cliques.parquet"] = graph_mod.cliques_table(g, cliques)
    summary.components = len(comps)
    summary.largest_components = [len(c) for c in comps[:10]]
    summary.neighbours_only = sum(not has_image for _, has_image in g.nodes(data="has_image"))
    summary.cliques_over_two = sum(len(c) > 2 for c in cliques)
    if spans:
        per_range = [(span, graph_mod.range_graph(g, span)) for span in spans]
        tables["graph_ranges.parquet"] = graph_mod.ranges_table(per_range)
        summary.ranges = [range_numbers(span, sub) for span, sub in per_range]
    return tables, g


def _opposite_numbers(opp_summary: pd.DataFrame) -> dict:
    out = {}
    for criterion, part in opp_summary.groupby("criterion", sort=False):
        first = part.iloc[0]
        share = float(first["mutual_share"])
        out[criterion] = {"classes": int(first["classes"]), "distinct": int(first["distinct"]),
                          "mutual_pairs": int(first["mutual_pairs"]),
                          "mutual_share": None if np.isnan(share) else share,
                          "most_common": [(str(n), int(c)) for n, c in zip(part["opposite_name"], part["count"])]}
    return out


def _write(st: Store, tables: dict[str, pd.DataFrame], graphml: str | None, summary: AnalysisSummary) -> None:
    """Write the tables (and graph.graphml when there is a graph), delete every other TABLE_FILES name (stale
    copies of an earlier analysis), then the summary."""
    # The summary goes last: its fingerprint marks the tables as complete and current for `write_figures`.
    st.delete(f"{ANALYSIS_DIR}/{SUMMARY_FILE}")
    for name in TABLE_FILES:
        if name in tables:
            st.write_table(f"{ANALYSIS_DIR}/{name}", pa.Table.from_pandas(tables[name], preserve_index=False))
        elif name != "graph.graphml" or graphml is None:
            st.delete(f"{ANALYSIS_DIR}/{name}")
    if graphml is not None:
        st.write_bytes(f"{ANALYSIS_DIR}/graph.graphml", graphml.encode("utf-8"))
    summary.tables = sorted([*tables, *(["graph.graphml"] if graphml is not None else [])])
    st.write_bytes(f"{ANALYSIS_DIR}/{SUMMARY_FILE}", summary.to_json().encode("utf-8"))
