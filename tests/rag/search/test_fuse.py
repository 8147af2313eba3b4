import numpy as np
import pytest

from rag.search.fuse import convex_combination, min_max, reciprocal_rank_fusion, top_k


def test_rrf_matches_the_formula():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)
    assert [i for i, _ in top_k(fused, 3)] == [1, 3, 2]


def test_rrf_weights_and_validation():
    fused = reciprocal_rank_fusion([[1], [2]], k=0, weights=[2.0, 1.0])
    assert fused == {1: 2.0, 2: 1.0}
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])


def test_min_max_and_convex_combination():
    assert np.allclose(min_max(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    assert np.allclose(min_max(np.array([5.0, 5.0])), [0.0, 0.0])
    fused = convex_combination({"dense": (np.array([1, 2]), np.array([0.9, 0.8])),
                                "lexical": (np.array([2, 3]), np.array([10.0, 2.0]))},
                               {"dense": 0.5, "lexical": 0.5})
    assert fused == pytest.approx({1: 0.5, 2: 0.5, 3: 0.0})


def test_top_k_breaks_ties_by_id():
    assert top_k({5: 1.0, 2: 1.0, 9: 0.5}, 2) == [(2, 1.0), (5, 1.0)]
