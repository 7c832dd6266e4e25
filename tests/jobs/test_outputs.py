"""The output-vector statistics shared by the scorer and the analysis, against answers worked out by hand and
against torch's softmax."""
import numpy as np
import torch

from jobs.outputs import rank_matrix, rank_of, softmax, top_k

TIED = np.array([[3.0, 1.0, 3.0, 2.0]])   # classes 0 and 2 tie for the largest output


def test_rank_of_is_one_based_and_counts_strictly_larger_outputs():
    assert rank_of(TIED, np.array([3]))[0] == 3 and rank_of(TIED, np.array([2]))[0] == 1
    assert rank_of(TIED, np.array([0]))[0] == 1 and rank_of(TIED, np.array([1]))[0] == 4   # a tie shares rank 1


def test_rank_matrix_is_zero_based_with_ties_in_class_order():
    assert rank_matrix(TIED).tolist() == [[0, 3, 1, 2]]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20, 7))                                   # no ties: the two ranks differ by one
    classes = rng.integers(0, 7, size=20)
    np.testing.assert_array_equal(rank_matrix(logits)[np.arange(20), classes] + 1, rank_of(logits, classes))


def test_top_k_lists_the_largest_outputs_first_ties_in_class_order():
    assert top_k(TIED, 3).tolist() == [[0, 2, 3]]


def test_softmax_matches_torch_in_float64_even_for_large_outputs():
    logits = np.array([[1000.0, 999.0, -5.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    probs = softmax(logits)
    assert probs.dtype == np.float64
    np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(logits).double(), 1).numpy(), rtol=1e-12)
