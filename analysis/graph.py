"""The nearest-neighbour graph on classes ("Input Generation II", "Graphs on ImageNet classes").

"We will start by only plotting the 'nearest neighbor' relationship, which is defined as the output that is most
activated by the generated image distinct from the target output": one edge from each class to that class. The
relation is not symmetric, so it is a graph, not a metric space; the article then reads its components ("nodes
that are connected together") and cliques ("nodes that are all connected to each other"). We keep the edges
directed (GraphML for Gephi keeps the direction) and take components and cliques on the undirected graph, as the
article's `nx.Graph` does.

The article draws the graph twice, by halves of the class list: "The first half of the 1000 ImageNet categories
are mostly animals, and plotting a graphs for them yields ..." and "For the non-animal half of ImageNet, graphing
nearest neighbors yields a component with more members than was observed for any animal component." A range's
graph (`parse_ranges`, `range_graph`) holds the edges of its classes' images; the edge is the same (the most
activated other output over every class), so a neighbour outside the range is a node of it, as in the article's
graph of the pairs of a half.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import networkx as nx
import numpy as np
import pandas as pd


HALVES, ALL = "halves", "all"   # `--graph-ranges`: the article's two halves (the default), or the whole graph only
RANGE = re.compile(r"\s*([0-9]+)\s*-\s*([0-9]+)\s*")   # one explicit range, `500-999`


@dataclass(frozen=True, order=True)
class ClassRange:
    """Classes `first` to `last` (both included) of the model's class list."""
    first: int
    last: int

    @property
    def name(self) -> str:
        return f"{self.first}-{self.last}"

    def __contains__(self, node: int) -> bool:
        return self.first <= node <= self.last


def explicit_ranges(spec: str) -> tuple[ClassRange, ...]:
    """`0-499,500-999` -> its ranges, ascending; ValueError (one line) for anything else, for a range that ends
    before it starts, and for two ranges that share a class."""
    matches = [RANGE.fullmatch(part) for part in spec.split(",")]
    if not all(matches):
        raise ValueError(f"{spec!r}: give {HALVES}, {ALL} or class ranges such as 0-499,500-999")
    ranges = sorted(ClassRange(int(m[1]), int(m[2])) for m in matches)
    backwards = [r for r in ranges if r.first > r.last]
    if backwards:
        raise ValueError(f"{spec!r}: the range {backwards[0].name} ends before it starts (write "
                         f"{backwards[0].last}-{backwards[0].first})")
    for low, high in zip(ranges, ranges[1:]):
        if high.first <= low.last:
            raise ValueError(f"{spec!r}: {low.name} and {high.name} overlap (a class belongs to one range at "
                             f"most)")
    return tuple(ranges)


def ranges_spec(spec: str) -> str:
    """`spec` written as the summary keeps it: `halves`, `all` or its ranges ascending (`explicit_ranges`, which
    refuses a malformed one)."""
    text = spec.strip()
    return text.lower() if text.lower() in (HALVES, ALL) else ",".join(r.name for r in explicit_ranges(text))


def parse_ranges(spec: str, n_classes: int) -> tuple[ClassRange, ...]:
    """The class ranges `--graph-ranges spec` names in a class list of `n_classes`: `halves` (the article's) its
    first and second half (0-499 and 500-999 of ImageNet's 1000; the first takes an odd class out), `all` none (the
    whole graph only), else `explicit_ranges(spec)`, each inside the class list (ValueError otherwise)."""
    text = ranges_spec(spec)
    if text == ALL:
        return ()
    if text == HALVES:
        half = (n_classes + 1) // 2
        return tuple(r for r in (ClassRange(0, half - 1), ClassRange(half, n_classes - 1)) if r.first <= r.last)
    ranges = explicit_ranges(text)
    beyond = [r for r in ranges if r.last >= n_classes]
    if beyond:
        raise ValueError(f"{spec!r}: {beyond[0].name} goes past the last class, {n_classes - 1} "
                         f"(the model has {n_classes} classes)")
    return ranges


def nearest_neighbour_graph(classes: pd.DataFrame, class_names: Sequence[str], metric: str | None = None
                            ) -> nx.DiGraph:
    """Directed graph: node per class (with an image, or named as a neighbour), edge class -> nn_article.

    Node attributes: name, has_image, label (argmax of the class's image, -1 without image), component (int, see
    `components`), and with `metric` (the graph attribute of that name) output_neighbour / output_distance: the
    closest other class representative by that metric (`nn_output`, -1 without image), so that the GraphML file
    says which metric the analysis ran with. Edge attribute: logit (the neighbour's output on the class's image).
    The edges are the article's relation, which no metric changes.
    """
    g = nx.DiGraph()
    if metric is not None:
        g.graph["metric"] = metric
    sources = classes["target"].to_numpy().astype(int)
    targets = classes["nn_article"].to_numpy().astype(int)
    logits = classes["nn_article_logit"].to_numpy().astype(float)
    labels = dict(zip(sources.tolist(), classes["label"].to_numpy().astype(int).tolist()))
    for node in sorted(set(sources.tolist()) | set(targets.tolist())):
        g.add_node(node, name=str(class_names[node]), has_image=node in labels, label=labels.get(node, -1))
    if metric is not None and "nn_output" in classes.columns:
        closest = dict(zip(sources.tolist(), classes["nn_output"].to_numpy().astype(int).tolist()))
        distance = dict(zip(sources.tolist(), classes["nn_output_distance"].to_numpy().astype(float).tolist()))
        for node in g.nodes:
            g.nodes[node]["output_neighbour"] = closest.get(node, -1)
            g.nodes[node]["output_distance"] = distance.get(node, float("nan"))
    for s, t, v in sorted(zip(sources.tolist(), targets.tolist(), logits.tolist())):
        g.add_edge(s, t, logit=v)
    for i, members in enumerate(components(g)):
        for node in members:
            g.nodes[node]["component"] = i
    return g


def components(g: nx.DiGraph) -> list[list[int]]:
    """Connected components of the undirected graph, members sorted, largest first (ties: lowest member first)."""
    comps = [sorted(c) for c in nx.connected_components(g.to_undirected(as_view=True))]
    return sorted(comps, key=lambda c: (-len(c), c[0]))


def cliques(g: nx.DiGraph) -> list[list[int]]:
    """Maximal cliques of the undirected graph (networkx.find_cliques), members sorted, largest first."""
    found = [sorted(c) for c in nx.find_cliques(nx.Graph(g.to_undirected(as_view=True)))]
    return sorted(found, key=lambda c: (-len(c), c))


def nodes_table(g: nx.DiGraph, comps: list[list[int]]) -> pd.DataFrame:
    """One row per node: node, name, has_image, neighbour (-1 without image), neighbour_name, neighbour_logit,
    mutual (the neighbour's neighbour is the node), in_degree, component, component_size."""
    size = {i: len(c) for i, c in enumerate(comps)}
    rows = []
    for node in sorted(g.nodes):
        data = g.nodes[node]
        succ = sorted(g.successors(node))
        nb = succ[0] if succ else -1
        rows.append({
            "node": node, "name": data["name"], "has_image": bool(data["has_image"]),
            "neighbour": nb, "neighbour_name": g.nodes[nb]["name"] if nb >= 0 else "",
            "neighbour_logit": g.edges[node, nb]["logit"] if nb >= 0 else np.nan,
            "mutual": bool(nb >= 0 and g.has_edge(nb, node) and nb != node),
            "in_degree": g.in_degree(node), "component": data["component"],
            "component_size": size[data["component"]],
        })
    frame = pd.DataFrame(rows, columns=["node", "name", "has_image", "neighbour", "neighbour_name",
                                        "neighbour_logit", "mutual", "in_degree", "component", "component_size"])
    for col in ("node", "neighbour", "in_degree", "component", "component_size"):
        frame[col] = frame[col].astype(np.int32)
    frame["neighbour_logit"] = frame["neighbour_logit"].astype(np.float32)
    return frame


def component_hubs(g: nx.DiGraph, members: Sequence[int]) -> list[int]:
    """The members most pointed at (in index order: several on a tie); none when every member is pointed at as often
    (a cycle, a mutual pair), where no class stands out as a hub."""
    degree = {n: g.in_degree(n) for n in members}
    top = max(degree.values(), default=0)
    hubs = sorted(n for n in members if degree[n] == top)
    return [] if len(hubs) == len(members) else hubs


def components_table(g: nx.DiGraph, comps: list[list[int]]) -> pd.DataFrame:
    """One row per component: component, size, edges, hub (most pointed-to member, `component_hubs`; lowest index
    on ties, and the lowest member when none stands out), hub_name, members (list of classes), member_names."""
    rows = []
    for i, members in enumerate(comps):
        sub = g.subgraph(members)
        hub = (component_hubs(g, members) or sorted(members))[0]
        rows.append({"component": i, "size": len(members), "edges": sub.number_of_edges(), "hub": hub,
                     "hub_name": g.nodes[hub]["name"], "members": np.asarray(members, dtype=np.int32),
                     "member_names": [g.nodes[n]["name"] for n in members]})
    frame = pd.DataFrame(rows, columns=["component", "size", "edges", "hub", "hub_name", "members",
                                        "member_names"])
    for col in ("component", "size", "edges", "hub"):
        frame[col] = frame[col].astype(np.int32)
    return frame


def cliques_table(g: nx.DiGraph, found: list[list[int]]) -> pd.DataFrame:
    """One row per maximal clique: clique, size, component, members, member_names (a size-2 clique is an edge
    in no triangle; the article finds larger ones 'extremely rare')."""
    rows = [{"clique": i, "size": len(c), "component": g.nodes[c[0]]["component"],
             "members": np.asarray(c, dtype=np.int32), "member_names": [g.nodes[n]["name"] for n in c]}
            for i, c in enumerate(found)]
    frame = pd.DataFrame(rows, columns=["clique", "size", "component", "members", "member_names"])
    for col in ("clique", "size", "component"):
        frame[col] = frame[col].astype(np.int32)
    return frame


def range_graph(g: nx.DiGraph, span: ClassRange) -> nx.DiGraph:
    """The graph of the classes in `span`: the edges of `g` whose source (the class whose image it is) lies in the
    range, and their ends, a neighbour outside the range included (the article's graph of a half draws the pairs of
    the half's classes). The nodes keep their attributes in `g` (`component`: the whole graph's, as the PCA colours
    it)."""
    return g.edge_subgraph([(s, t) for s, t in g.edges if s in span]).copy()


def ranges_table(graphs: Sequence[tuple[ClassRange, nx.DiGraph]]) -> pd.DataFrame:
    """One row per component of each range's graph (`range_graph`; at least one range), ranges in order: range
    (`0-499`), first, last, then `components_table`'s columns (components numbered within the range, largest
    first; the hub by in-degree within it), and outside (members outside the range, there as a neighbour of one of
    its classes). A range without a class image adds no row."""
    parts = []
    for span, sub in graphs:
        comps = components(sub)
        part = components_table(sub, comps)
        part.insert(0, "range", span.name)
        part.insert(1, "first", np.int32(span.first))
        part.insert(2, "last", np.int32(span.last))
        part["outside"] = np.asarray([sum(n not in span for n in members) for members in comps], dtype=np.int32)
        parts.append(part)
    # an empty part left out of the concatenation (pandas would cast the columns' types over it)
    frame = pd.concat([part for part in parts if len(part)] or parts[:1], ignore_index=True)
    return frame.astype({"first": np.int32, "last": np.int32})


def graph_from_tables(nodes: pd.DataFrame) -> nx.DiGraph:
    """The graph again from its `graph_nodes` table (for drawing without recomputing it)."""
    g = nx.DiGraph()
    for r in nodes.itertuples():
        g.add_node(int(r.node), name=str(r.name), has_image=bool(r.has_image), component=int(r.component))
    for r in nodes.itertuples():
        if r.neighbour >= 0:
            g.add_edge(int(r.node), int(r.neighbour), logit=float(r.neighbour_logit))
    return g


def graphml(g: nx.DiGraph) -> str:
    """The graph as GraphML text (for Gephi and the like)."""
    return "\n".join(nx.generate_graphml(g)) + "\n"
