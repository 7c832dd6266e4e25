"""Generation: models, objectives, transforms, schedules, the batched optimisation loop, and job recipes.

Knows nothing of Ray or Parquet: everything here takes tensors and returns tensors or plain results.
"""
from jobs.models import (Classifier, InvalidWeightsFile, ModelInfo, UnknownModel, WeightsUnavailable,
                         default_dream_layer, list_models, load_model, model_info)
from jobs import objectives, transforms
from jobs.images import ImageInputError, SourceImage, load_images, sample_images
from jobs.kinds import (ALL_JOBS, IMAGE_JOBS, JOBS, VARIANTS, Frame, JobResult, JobSpec, feature_means, margin_label,
                        parse_layers, run_batch)
from jobs.objectives import Objective
from jobs.schedules import Octave, Schedule, default_schedule, load_schedule, preset_names

__all__ = ["Classifier", "InvalidWeightsFile", "ModelInfo", "UnknownModel", "WeightsUnavailable",
           "default_dream_layer", "list_models", "load_model", "model_info",
           "objectives", "transforms", "ImageInputError", "SourceImage", "load_images", "sample_images",
           "Objective", "ALL_JOBS", "IMAGE_JOBS", "JOBS", "VARIANTS", "Frame", "JobResult", "JobSpec",
           "feature_means", "margin_label", "parse_layers", "run_batch",
           "Octave", "Schedule", "default_schedule", "load_schedule", "preset_names"]
