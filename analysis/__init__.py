"""Analysis of a classweep store: tables, projections, nearest-neighbour graphs, figures and an offline report.

Two calls do everything (what `sweep analyze` and `sweep figures` run):
`analyze_store(store, metric)` writes the tables under {store}/analysis/ and returns an `AnalysisSummary`;
`write_figures(store, out)` writes the figures and index.html (analysing first when needed).
The table functions are pure (store rows in, DataFrames out) and can be used on their own.
Reads only the columns it needs from images/, through `sweep.store` (the one store layer); the maths follows the
latent-space article ("Input Generation II"). The CLI imports this package only inside the commands that analyse,
so that `sweep run` never loads scikit-learn or networkx; torch is imported only where a feature map or the engine's own
scoring rule is needed (`analysis.synthetic`), never by the tables: the job table comes from the light `jobs.catalog`.
"""
from analysis.analyze import AnalysisSummary, analyze_store
from analysis.coverage import Coverage, coverage
from analysis.directions import DirectionsSummary, run_directions
from analysis.graph import cliques, components, nearest_neighbour_graph
from analysis.load import Rows, read_rows, representatives
from analysis.projection import pca_tables
from analysis.report import write_figures
from analysis.seeds import SeedChoice
from analysis.tables import (additions_summary, additions_table, classes_table, opposites_summary,
                             opposites_table)
from analysis.transfer import (compare_figure, compare_table, run_compare, store_transfer, top_classes,
                               transfer_figure, transfer_table)
from sweep.store import Store, StoreError, open_store   # the one store layer, re-exported for convenience

__all__ = ["AnalysisSummary", "Coverage", "DirectionsSummary", "Rows", "SeedChoice", "Store", "StoreError",
           "additions_summary", "additions_table", "analyze_store", "classes_table", "cliques", "compare_figure",
           "compare_table", "components", "coverage", "nearest_neighbour_graph", "open_store", "opposites_summary",
           "opposites_table", "pca_tables", "read_rows", "representatives", "run_compare", "run_directions",
           "store_transfer", "top_classes", "transfer_figure", "transfer_table", "write_figures"]
