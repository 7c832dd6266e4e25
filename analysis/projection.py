"""PCA of the class representatives' output vectors ("Input Generation II", "Output Latent Space").

The article maps each class's generated image to its 1000-d output and projects the points on the first two
principal components; for GoogLeNet these explain only about 15% and 4% of the variance. scikit-learn's PCA with
the exact (full SVD) solver, so the result is deterministic (sign fixed by sklearn's svd_flip).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from analysis.load import Rows


class ConstantOutputs(ValueError):
    """The representatives' outputs do not vary (a model whose outputs are constant, e.g. random weights): there is
    no variance for PCA to explain."""


def pca_tables(reps: Rows, class_names: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(coordinates, variance) of the representatives' logits.

    coordinates: target, name, key, pc1, pc2 (float64), one row per class.
    variance: component (1-based), explained_variance, explained_variance_ratio, cumulative_ratio, one row per
    component (min(classes, outputs) of them).
    Needs at least two representatives (ValueError otherwise) whose outputs vary (ConstantOutputs otherwise).
    """
    logits = reps.logits.astype(np.float64)  # N x n_classes
    if len(logits) < 2:
        raise ValueError("PCA needs at least two classes with an octave image")
    total = float(logits.var(axis=0).sum())   # the variance PCA would share out among the components
    if not total > 1e-12 * max(1.0, float(np.mean(logits ** 2))):
        raise ConstantOutputs(f"the model's outputs do not vary across the {len(logits)} class images "
                              f"(total variance {total:.3g}): no principal components to show")
    pca = PCA(n_components=min(logits.shape), svd_solver="full")
    z = pca.fit_transform(logits)  # N x min(N, n_classes)
    if z.shape[1] < 2:
        z = np.hstack([z, np.zeros((len(z), 1))])
    names = np.asarray(class_names, dtype=object)
    targets = reps.meta["target"].to_numpy().astype(np.int64)
    coords = pd.DataFrame({"target": targets.astype(np.int32), "name": names[targets],
                           "key": reps.meta["key"].to_numpy(), "pc1": z[:, 0], "pc2": z[:, 1]})
    ratio = pca.explained_variance_ratio_
    variance = pd.DataFrame({"component": np.arange(1, len(ratio) + 1, dtype=np.int32),
                             "explained_variance": pca.explained_variance_,
                             "explained_variance_ratio": ratio,
                             "cumulative_ratio": np.cumsum(ratio)})
    return coords, variance
