"""The MLP estimator's scikit-learn surface beyond the core tests of test_mlp.py:
early stopping without explicit validation data (``validation_fraction``), the
aliases scikit-learn users look for, and feature names reaching attributions.
All data is tiny and made here."""
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, train_test_split

import mlp


def make_blobs(n=120, d=4, K=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    centers = rng.normal(0, 2.0, size=(K, d))
    return centers[y] + rng.normal(size=(n, d)), y


def assert_same_fit(a, b):
    for u, v in zip(a.weights_ + a.biases_, b.weights_ + b.biases_):
        assert_array_equal(u, v)
    for k in a.history_:
        assert_array_equal(a.history_[k], b.history_[k])
    assert a.n_iter_ == b.n_iter_ and a.best_iter_ == b.best_iter_


# ------------------------------------------------------- validation_fraction
def test_early_stopping_holds_out_a_stratified_seeded_fraction():
    X, y = make_blobs(n=150)
    kw = dict(hidden=(6,), n_iter=40, lr=0.5, early_stopping=True, patience=3, seed=7)
    held = mlp.MLP(**kw, validation_fraction=0.2).fit(X, y)
    # the rule: scikit-learn's stratified split of the rows, drawn from the seed, rows in order
    tr, va = train_test_split(np.arange(150), test_size=0.2, random_state=7, stratify=y)
    tr, va = np.sort(tr), np.sort(va)
    explicit = mlp.MLP(**kw).fit(X[tr], y[tr], X[va], y[va])
    assert_same_fit(held, explicit)
    assert np.isfinite(held.history_["val_loss"]).all()
    # stratified: each class keeps its share in the held-out rows (to one row)
    assert np.all(np.abs(np.bincount(y[va], minlength=3) - 0.2 * np.bincount(y)) <= 1)
    # another seed, another split (and other initial weights)
    other = mlp.MLP(**{**kw, "seed": 8}, validation_fraction=0.2).fit(X, y)
    assert not np.array_equal(other.history_["val_loss"], held.history_["val_loss"])


def test_explicit_validation_data_take_precedence():
    X, y = make_blobs(n=100)
    kw = dict(hidden=(5,), n_iter=30, lr=0.5, early_stopping=True, patience=4)
    a = mlp.MLP(**kw, validation_fraction=0.3).fit(X[:70], y[:70], X[70:], y[70:])
    b = mlp.MLP(**kw, validation_fraction=0.5).fit(X[:70], y[:70], X[70:], y[70:])
    assert_same_fit(a, b)              # the fraction is unused: all 70 rows train
    # without early stopping nothing is held out: today's fit, bitwise
    c = mlp.MLP(hidden=(5,), n_iter=30, lr=0.5, validation_fraction=0.3).fit(X, y)
    d = mlp.MLP(hidden=(5,), n_iter=30, lr=0.5).fit(X, y)
    assert_same_fit(c, d)
    assert np.isnan(c.history_["val_loss"]).all()


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, "0.1", None, np.nan])
def test_validation_fraction_is_checked(value):
    X, y = make_blobs(n=30)
    with pytest.raises(ValueError, match=f"validation_fraction={value!r} must be a number in"):
        mlp.MLP(n_iter=2, validation_fraction=value).fit(X, y)


def test_too_small_a_validation_set_says_what_to_do():
    X, y = make_blobs(n=30)
    with pytest.raises(ValueError, match=r"validation_fraction=0.05 cannot hold out a stratified "
                                         r"validation set from 30 rows of 3 classes.*pass X_val"):
        mlp.MLP(n_iter=2, early_stopping=True, validation_fraction=0.05).fit(X, y)


def test_grid_search_over_early_stopping_fits():
    X, y = make_blobs(n=150)
    grid = GridSearchCV(mlp.MLP(hidden=(6,), n_iter=60, lr=0.5),
                        {"early_stopping": [False, True], "patience": [2, 10]}, cv=3)
    grid.fit(X, y)
    scores = grid.cv_results_["mean_test_score"]
    assert len(scores) == 4 and np.all(np.isfinite(scores))
    best = grid.best_estimator_
    assert best.score(X, y) > 0.6
    # the clones with early stopping really held rows out and may stop early
    es = clone(grid.estimator).set_params(early_stopping=True, patience=2).fit(X, y)
    assert np.isfinite(es.history_["val_loss"]).all() and es.best_iter_ is not None
