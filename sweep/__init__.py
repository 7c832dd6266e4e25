"""Distributed sweeps: work planning, Ray workers pinned to GPUs, the crash-safe Parquet store, and the CLI.

Uses `jobs` to render images; knows nothing of the analysis beyond calling it from the CLI. torch (through the
engine and the model zoo), Ray and the analysis stack are imported inside the functions that use them: the analysis
reads stores through `sweep.store` and `sweep.plan`, and `sweep status` answers at once, without loading them.
"""
from sweep.driver import SweepConfig, SweepError, SweepSummary, check_layers, load_sources, run_sweep
from sweep.export import export_pngs
from sweep.features import FeatureConfig, run_features
from sweep.fleet import ClusterConfig
from sweep.plan import Batch, Plan, PlanError, WorkItem, make_plan, parse_classes, parse_features, parse_pairs
from sweep.score import ScoreConfig, ScoreSummary, run_score, scorer_id
from sweep.status import StoreStatus, store_status
from sweep.store import ManifestMismatch, Store, StoreError, images_schema, is_frame_key, open_store, source_hash

__all__ = ["Batch", "ClusterConfig", "FeatureConfig", "ManifestMismatch", "Plan", "PlanError", "ScoreConfig",
           "ScoreSummary", "Store", "StoreError", "StoreStatus", "SweepConfig", "SweepError", "SweepSummary",
           "WorkItem", "check_layers", "export_pngs", "images_schema", "is_frame_key", "load_sources", "make_plan",
           "open_store", "parse_classes", "parse_features", "parse_pairs", "run_features", "run_score", "run_sweep",
           "scorer_id", "source_hash", "store_status"]
