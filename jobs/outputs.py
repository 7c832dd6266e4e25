"""Statistics of a model's output vectors (N x n_classes NumPy arrays, one row per image): the one definition the
scorer (`sweep.score`) and the analysis (`analysis.tables`, `analysis.transfer`) share.

    softmax       row-wise probabilities, float64
    top_k         the k largest outputs' classes per row, largest first
    rank_of       1-based rank of one given class per row: 1 + the outputs strictly larger (ties share a rank)
    rank_matrix   0-based rank of every class in every row: 0 for the largest (ties in class order)

Light on purpose (NumPy; SciPy on the first softmax): the analysis reads it without the Ray-side scorer, and the
scorer without the analysis stack.
"""
from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (SciPy's, numerically stable). N x C -> N x C."""
    from scipy.special import softmax as scipy_softmax
    return scipy_softmax(logits.astype(np.float64), axis=1)


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Classes of the k largest outputs per row, largest first; equal outputs in class order. N x C -> N x k."""
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def rank_of(logits: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """1-based rank of `classes[i]` among row i's outputs: 1 + the number of strictly larger outputs (1: top-1; a
    tie shares the better rank). N x C, N -> N."""
    values = logits[np.arange(len(classes)), classes]
    return 1 + (logits > values[:, None]).sum(axis=1)


def rank_matrix(logits: np.ndarray) -> np.ndarray:
    """0-based rank of every class in every row: 0 for the largest output, ties in class order. N x C -> N x C."""
    order = top_k(logits, logits.shape[1])
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(logits.shape[1])[None, :].repeat(len(logits), 0), axis=1)
    return out
