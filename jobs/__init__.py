"""Generation: models, objectives, transforms, schedules, the batched optimisation loop, and job recipes.

Knows nothing of Ray or Parquet: everything here takes tensors and returns tensors or plain results.
The public names are loaded on first use (PEP 562 `__getattr__`): importing `jobs.catalog`, the table of jobs
the planner and the analysis read, must not load torch.
"""
import importlib

_HOMES = {
    "jobs.models": ("Classifier", "InvalidWeightsFile", "ModelInfo", "UnknownModel", "WeightsUnavailable",
                    "default_dream_layer", "list_models", "load_model", "model_class_names", "model_info"),
    "jobs.images": ("ImageInputError", "SourceImage", "in_order", "load_images", "noise_images", "reading_threads",
                    "sample_images"),
    "jobs.catalog": ("ALL_JOBS", "IMAGE_JOBS", "JOBS", "JobSpec", "VARIANTS", "parse_layers"),
    "jobs.demo_models": ("DEMO_MODELS", "DemoModel"),
    "jobs.kinds": ("Frame", "JobResult", "feature_means", "margin_label", "run_batch"),
    "jobs.objectives": ("Objective",),
    "jobs.schedules": ("Octave", "Schedule", "ScheduleSet", "default_schedule", "default_schedules", "load_schedule",
                       "load_schedule_or_set", "preset_names"),
    "jobs.render": ("TrajectoryOptions",),
    "jobs.folding": ("fold_batchnorm",),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}
_MODULES = ("objectives", "outputs", "transforms")   # public as modules: jobs.objectives.logit(...)
__all__ = [*_MODULES, *_HOME]


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"jobs.{name}")
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'jobs' has no attribute {name!r}")
