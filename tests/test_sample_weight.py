"""MLP.fit(sample_weight=): integer weights equal repeated rows, zero weights
equal dropped rows, and bad weights are refused with a message."""
import numpy as np
import pytest

from mlp import MLP


def _data(seed=0, n=120):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def _net(**kw):
    return MLP(hidden=(8,), n_iter=30, lr=0.2, seed=3, dtype="float64", **kw)


def test_integer_weights_equal_repeated_rows():
    X, y = _data()
    w = np.random.default_rng(1).integers(1, 4, size=len(y))
    a = _net().fit(X, y, sample_weight=w)
    b = _net().fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    for Wa, Wb in zip(a.weights_, b.weights_):
        np.testing.assert_allclose(Wa, Wb, rtol=1e-10, atol=1e-12)


def test_zero_weights_equal_dropped_rows():
    X, y = _data(2)
    w = np.ones(len(y))
    w[::3] = 0.0
    a = _net().fit(X, y, sample_weight=w)
    b = _net().fit(X[w > 0], y[w > 0])
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-10, atol=1e-12)


def test_weights_change_the_fit():
    X, y = _data(4)
    w = np.where(y == 0, 5.0, 1.0)
    a = _net().fit(X, y, sample_weight=w)
    b = _net().fit(X, y)
    assert a.predict_proba(X)[:, 0].mean() > b.predict_proba(X)[:, 0].mean() + 0.01


@pytest.mark.parametrize("bad, words", [(np.ones(5), "shape"), (-1.0, ">= 0"),
                                        (np.nan, "finite"), (0.0, "sums to 0")])
def test_bad_weights_refused(bad, words):
    X, y = _data()
    w = bad if isinstance(bad, np.ndarray) else np.full(len(y), bad)
    with pytest.raises(ValueError, match=words):
        _net().fit(X, y, sample_weight=w)
