"""Distributed sweeps: work planning, Ray workers pinned to GPUs, the crash-safe Parquet store, and the CLI.

Uses `jobs` to render images; knows nothing of the analysis beyond calling it from the CLI. torch (through the
engine and the model zoo), Ray and the analysis stack are imported inside the functions that use them: the analysis
reads stores through `sweep.store` and `sweep.plan`, and `sweep status` answers at once, without loading them.
The public names are loaded on first use (PEP 562 `__getattr__`), so that the console command (`sweep.entry`) can
take the interrupt signals over before anything heavy is imported.
"""
import importlib

_HOMES = {
    "sweep.driver": ("SweepConfig", "SweepError", "SweepSummary", "check_layers", "load_sources", "run_sweep"),
    "sweep.export": ("export_pngs",),
    "sweep.features": ("FeatureConfig", "FeatureSummary", "run_features"),
    "sweep.fleet": ("ClusterConfig",),
    "sweep.plan": ("Batch", "Plan", "PlanError", "make_plan", "parse_classes", "parse_features", "parse_pairs"),
    "sweep.score": ("ScoreConfig", "ScoreSummary", "run_score", "scorer_id"),
    "sweep.sources": ("source_images",),
    "sweep.status": ("StoreStatus", "store_status"),
    "sweep.store": ("ManifestMismatch", "Store", "StoreError", "images_schema", "is_frame_key", "open_store",
                    "source_hash"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")
