"""Statistics of a model's output vectors (N x n_classes NumPy arrays, one row per image): the one definition the
scorer (`sweep.score`) and the analysis (`analysis.tables`, `analysis.transfer`) share.

    softmax       row-wise probabilities, float64
    top_k         the k largest outputs' classes per row, largest first
    rank_of       1-based rank of one given class per row: 1 + the outputs strictly larger (ties share a rank)
    rank_matrix   0-based rank of every class in every row: 0 for the largest (ties in class order)
    label_probs   each row's softmax probability of one given class (its label)
    finite_rows   whether each row's outputs are all finite: the images the analysis uses (NOT_FINITE names the
                  others, as the coverage lines and the report's captions say it)

The N x C results (softmax, rank_matrix) are as large as the outputs, in 8-byte numbers: a reader of 10^5 images
computes them a block of ROW_BLOCK rows at a time (`by_blocks`), so its temporaries stay a few MB.

Light on purpose (NumPy; SciPy on the first softmax): the analysis reads it without the Ray-side scorer, and the
scorer without the analysis stack.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

ROW_BLOCK = 4096   # rows per block of `by_blocks`: 4096 x 1000 float64 is 33 MB
NOT_FINITE = "outputs not finite"   # an image whose outputs hold a NaN or an inf, as the analysis and report say it


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


def by_blocks(rows: int, compute: Callable[[slice], np.ndarray], block: int | None = None) -> np.ndarray:
    """`compute(rows_slice)` over consecutive blocks of `rows` rows (ROW_BLOCK unless `block`), concatenated: the
    per-row result of an N x C statistic without its N x C temporaries."""
    block = block or ROW_BLOCK
    parts = [compute(slice(start, start + block)) for start in range(0, rows, block)]
    return np.concatenate(parts) if parts else compute(slice(0, 0))


def label_probs(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each row's probability of its label (the argmax): shown beside a label that is not the row's class, whose
    own probability says nothing of the label's; nan where the label is unknown (< 0). N x C, N -> N."""
    labels = np.asarray(labels)

    def block(rows: slice) -> np.ndarray:
        probs = softmax(np.asarray(logits[rows]))
        return probs[np.arange(len(probs)), np.clip(labels[rows], 0, None)]
    return np.where(labels >= 0, by_blocks(len(labels), block), np.nan)


def finite_rows(logits: np.ndarray) -> np.ndarray:
    """Whether each row's outputs are all finite (no NaN, no inf): `sweep analyze` leaves the others out. N x C -> N.
    Read from each row's sum in float64 (a NaN or inf makes it non-finite; float32 outputs cannot overflow it), so
    that no N x C temporary is made."""
    return np.isfinite(logits.sum(axis=1, dtype=np.float64))
