"""The nearest-neighbour graph: the hand-made store's components and cliques, and networkx as the reference."""
import networkx as nx
import numpy as np

from analysis.graph import (cliques, cliques_table, components, components_table, graph_from_tables, graphml,
                            nearest_neighbour_graph, nodes_table)
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
