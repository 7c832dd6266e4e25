"""The nearest-neighbour graph: the hand-made store's components and cliques, and networkx as the reference."""
import networkx as nx
import numpy as np
import pytest

from analysis.graph import (cliques, cliques_table, components, components_table, graph_from_tables, parse_ranges,
                            graphml, nearest_neighbour_graph, nodes_table, range_graph, ranges_table)
from analysis.load import open_store, read_rows, representatives
from analysis.synthetic import random_store
from analysis.tables import classes_table
from handmade import NAMES


def _classes(store, names):
    return classes_table(representatives(read_rows(open_store(store)).job("octave")), names)


def test_known_components_and_cliques(small_store):
    g = nearest_neighbour_graph(_classes(small_store, NAMES), NAMES)
    comps = components(g)
    assert comps == [[2, 3, 4, 5], [0, 1]]
    assert cliques(g) == [[2, 3, 4], [0, 1], [4, 5]]
    table = components_table(g, comps)
    assert table["hub"].tolist() == [4, 0] and table["hub_name"][0] == "eel"   # 4 is pointed to by 3 and 5
    assert table["edges"].tolist() == [4, 2]
    nodes = nodes_table(g, comps).set_index("node")
    assert nodes["mutual"].to_dict() == {0: True, 1: True, 2: False, 3: False, 4: False, 5: False}
    assert nodes.loc[4, "in_degree"] == 2 and nodes.loc[5, "component_size"] == 4
    assert cliques_table(g, cliques(g))["size"].tolist() == [3, 2, 2]


def test_graph_agrees_with_networkx(tmp_path):
    names = [f"c{i}" for i in range(60)]
    classes = _classes(random_store(str(tmp_path / "s"), 60, n_pairs=2, image_size=8), names)
    g = nearest_neighbour_graph(classes, names)
    reference = nx.Graph()  # built independently: the article's nx.Graph of (class, most activated other class)
    for target, logits in zip(classes["target"], classes["top5"]):
        reference.add_edge(int(target), int(next(c for c in logits if c != target)))
    assert sorted(map(sorted, nx.connected_components(reference))) == sorted(components(g))
    assert sorted(sorted(c) for c in nx.find_cliques(reference)) == sorted(cliques(g))
    assert set(map(frozenset, reference.edges)) == set(map(frozenset, g.edges))


def test_graphml_and_tables_round_trip(small_store):
    g = nearest_neighbour_graph(_classes(small_store, NAMES), NAMES)
    back = nx.parse_graphml(graphml(g), node_type=int)
    assert sorted(back.edges) == sorted(g.edges) and back.is_directed()
    assert back.nodes[4]["name"] == "eel" and back.nodes[4]["component"] == 0
    again = graph_from_tables(nodes_table(g, components(g)))
    assert sorted(again.edges) == sorted(g.edges)
    assert np.isclose(again.edges[2, 3]["logit"], 6)


def test_the_metric_is_in_the_graphml(small_store, tmp_path):
    """Issue 10 ("Smaller"): `--metric euclidean` wrote a graph.graphml identical to cosine's. The edges are the
    article's (no metric), the nodes carry each metric's closest output and the graph names its metric."""
    import os
    import shutil

    from analysis import analyze_store
    texts = {}
    for metric in ("cosine", "euclidean"):
        copy = shutil.copytree(small_store, tmp_path / metric)
        analyze_store(str(copy), metric=metric)
        texts[metric] = open(os.path.join(copy, "analysis", "graph.graphml")).read()
        g = nx.parse_graphml(texts[metric], node_type=int)
        classes = classes_table(representatives(read_rows(open_store(str(copy))).job("octave")), NAMES, metric)
        assert g.graph["metric"] == metric
        assert {n: g.nodes[n]["output_neighbour"] for n in classes["target"]} == dict(
            zip(classes["target"], classes["nn_output"]))
    assert texts["cosine"] != texts["euclidean"]
    a, b = (nx.parse_graphml(texts[m], node_type=int) for m in ("cosine", "euclidean"))
    assert sorted(a.edges) == sorted(b.edges)


def _brute_force_components(pairs):
    """Components of the undirected graph of (class, neighbour) `pairs`, by repeated merging of sets (no networkx):
    {frozenset(members)}."""
    groups = []
    for pair in pairs:
        touching = [g for g in groups if g & set(pair)]
        merged = set(pair).union(*touching)
        groups = [g for g in groups if g not in touching] + [merged]
    return {frozenset(g) for g in groups}


def _check_against_brute_force(classes, names, spec):
    g = nearest_neighbour_graph(classes, names)
    spans = parse_ranges(spec, len(names))
    table = ranges_table([(span, range_graph(g, span)) for span in spans])
    pairs = list(zip(classes["target"].astype(int), classes["nn_article"].astype(int)))
    for span in spans:
        mine = [(s, t) for s, t in pairs if span.first <= s <= span.last]   # the edges of the range's classes
        expected = _brute_force_components(mine)
        rows = table[table["range"] == f"{span.first}-{span.last}"]
        assert {frozenset(m) for m in rows["members"]} == expected, span
        assert sorted(rows["size"], reverse=True) == rows["size"].tolist()      # largest first
        for r in rows.itertuples():
            assert r.size == len(r.members) and (r.first, r.last) == (span.first, span.last)
            assert r.edges == sum(s in set(r.members) for s, _ in mine)          # one edge per class with an image
            assert r.outside == sum(not span.first <= m <= span.last for m in r.members)
    return table


def test_the_halves_of_the_handmade_store_agree_with_a_brute_force_count(small_store):
    """The article graphs each half of the class list apart ("The first half of the 1000 ImageNet categories are
    mostly animals ..."). Classes 0-2: 0 <-> 1 and 2 -> 3 (3, outside, is a node); classes 3-5: 3 -> 4, 4 -> 2,
    5 -> 4 (2, outside, is a node), one component where the whole graph has the 3-cycle plus a tail."""
    table = _check_against_brute_force(_classes(small_store, NAMES), NAMES, "halves")
    assert table["range"].tolist() == ["0-2", "0-2", "3-5"]
    assert table["members"].map(list).tolist() == [[0, 1], [2, 3], [2, 3, 4, 5]]
    assert table["outside"].tolist() == [0, 1, 1] and table["hub_name"].tolist() == ["apple", "dog", "eel"]


def test_explicit_ranges_of_a_random_graph_agree_with_a_brute_force_count(tmp_path):
    names = [f"c{i}" for i in range(60)]
    classes = _classes(random_store(str(tmp_path / "s"), 60, n_pairs=2, image_size=8), names)
    table = _check_against_brute_force(classes, names, "30-59,0-9,12-12")
    assert table["range"].unique().tolist() == ["0-9", "12-12", "30-59"]
    assert (table[table["range"] == "12-12"]["size"] == 2).all()   # one class and its neighbour


@pytest.mark.parametrize("spec, n_classes, ranges", [
    ("halves", 1000, [(0, 499), (500, 999)]),   # the article's two halves of ImageNet
    ("halves", 10, [(0, 4), (5, 9)]),           # the digits demo
    ("HALVES", 7, [(0, 3), (4, 6)]),            # the first half takes the odd class out
    ("halves", 1, [(0, 0)]),
    ("all", 1000, []),                           # the whole graph only
    (" 500-999 , 0-499", 1000, [(0, 499), (500, 999)]),
])
def test_graph_ranges_spec(spec, n_classes, ranges):
    assert [(r.first, r.last) for r in parse_ranges(spec, n_classes)] == ranges


@pytest.mark.parametrize("spec, message", [
    ("0-4,,5-9", "'0-4,,5-9': give halves, all or class ranges such as 0-499,500-999"),
    ("half", "'half': give halves, all"),
    ("0-4;5-9", "'0-4;5-9': give halves, all"),
    ("-3-4", "'-3-4': give halves, all"),
    ("5-3", "'5-3': the range 5-3 ends before it starts (write 3-5)"),
    ("5-9,0-5", "'5-9,0-5': 0-5 and 5-9 overlap (a class belongs to one range at most)"),
    ("0-4,5-10", "'0-4,5-10': 5-10 goes past the last class, 9 (the model has 10 classes)"),
])
def test_graph_ranges_spec_errors(spec, message):
    with pytest.raises(ValueError) as error:
        parse_ranges(spec, 10)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
