"""PCA of the class outputs, compared with scikit-learn's PCA directly."""
import numpy as np
import pytest
from sklearn.decomposition import PCA

from analysis.load import Rows, open_store, read_rows, representatives
from analysis.projection import pca_tables
from analysis.synthetic import random_store


def _reps(store):
    return representatives(read_rows(open_store(store)).job("octave"))


@pytest.mark.parametrize("n_classes", [6, 40])
def test_pca_matches_sklearn(tmp_path, n_classes):
    reps = _reps(random_store(str(tmp_path / "s"), n_classes, n_pairs=2, image_size=8))
    coords, variance = pca_tables(reps, [f"c{i}" for i in range(n_classes)])
    reference = PCA(n_components=2, svd_solver="full").fit(reps.logits.astype(np.float64))
    z = reference.transform(reps.logits.astype(np.float64))
    np.testing.assert_allclose(coords[["pc1", "pc2"]].to_numpy(), z, atol=1e-8)
    np.testing.assert_allclose(variance["explained_variance_ratio"][:2], reference.explained_variance_ratio_,
                               rtol=1e-10)
    assert variance["cumulative_ratio"].iloc[-1] == pytest.approx(1.0)
    assert list(coords["target"]) == list(range(n_classes))


def test_pca_needs_two_classes():
    one = Rows(__import__("pandas").DataFrame({"target": [0], "key": ["octave:-:0:-1:0"]}), np.ones((1, 3)))
    with pytest.raises(ValueError):
        pca_tables(one, ["a", "b", "c"])
