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


def test_constant_outputs_are_named_not_projected(tmp_path):
    """Issue 10 ("Smaller"): a model whose outputs do not vary (random GoogLeNet weights) gave `PC1 nan%` and a
    scikit-learn warning; now PCA says the outputs do not vary, and `sweep analyze` notes it and goes on."""
    import warnings

    from analysis import analyze_store
    from analysis.projection import ConstantOutputs
    from analysis.synthetic import Image, write_store
    names = [f"c{i}" for i in range(5)]
    same = np.linspace(-1, 1, 5)
    store = write_store(str(tmp_path / "s"), names, [Image("octave", c, same) for c in range(5)],
                        options={"jobs": ["octave"], "classes": list(range(5)), "seeds": 1})
    with pytest.raises(ConstantOutputs, match="do not vary"):
        pca_tables(_reps(store), names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # no scikit-learn (or numpy) warning either
        summary = analyze_store(store)
    lines = "\n".join(summary.lines())
    assert "nan" not in lines and "outputs do not vary" in lines and not summary.pca_ratio
