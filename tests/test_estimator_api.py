"""The MLP estimator's scikit-learn surface beyond the core tests of test_mlp.py:
early stopping without explicit validation data (``validation_fraction``), the
aliases scikit-learn users look for, and feature names reaching attributions.
All data is tiny and made here."""
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
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


# ------------------------------------------------------------------ aliases
def test_aliases_are_the_primaries_under_scikit_learns_names():
    X, y = make_blobs(n=90)
    ref = mlp.MLP(hidden=(5,), n_iter=12, seed=3, lr=0.5).fit(X, y)
    alias = mlp.MLP(hidden=(5,), max_iter=12, random_state=3, lr=0.5).fit(X, y)
    assert_same_fit(ref, alias)
    # stored as given: get_params and clone keep both names, the alias still None by default
    p = mlp.MLP(max_iter=7).get_params()
    assert p["max_iter"] == 7 and p["n_iter"] == 200 and p["random_state"] is None
    assert clone(alias).get_params() == alias.get_params()
    # a grid over the alias reaches the fit
    grid = GridSearchCV(mlp.MLP(hidden=(5,), lr=0.5), {"max_iter": [3, 9]}, cv=2).fit(X, y)
    assert grid.best_estimator_.n_iter_ == grid.best_params_["max_iter"]
    # scikit-learn's attribute names
    assert alias.loss_curve_ == [float(v) for v in alias.history_["loss"]]
    assert [c.shape for c in alias.coefs_] == [(4, 5), (5, 3)]
    for c, W in zip(alias.coefs_, alias.weights_):
        assert_array_equal(c, W.T)
    for c, b in zip(alias.intercepts_, alias.biases_):
        assert_array_equal(c, b)
    assert_allclose(alias.predict_log_proba(X), np.log(alias.predict_proba(X)), rtol=1e-12)
    assert np.all(np.isfinite(alias.predict_log_proba(X * 1e3)))     # no log(0)
    unfitted = mlp.MLP()
    assert not hasattr(unfitted, "coefs_") and not hasattr(unfitted, "loss_curve_")
    with pytest.raises(AttributeError, match="coefs_ is set by fit; this MLP is not fitted yet"):
        unfitted.coefs_


def test_alias_saved_and_loaded(tmp_path):
    X, y = make_blobs(n=60)
    m = mlp.MLP(hidden=(4,), max_iter=5, random_state=1).fit(X, y)
    r = mlp.MLP.load(m.save(tmp_path / "m"))
    assert r.get_params() == m.get_params() and r.n_iter_ == 5


@pytest.mark.parametrize("kw, match", [
    (dict(max_iter=0), "max_iter=0 must be an integer >= 1"),
    (dict(random_state=-1), "random_state=-1 must be a non-negative integer or None"),
    (dict(verbose=-2), "verbose=-2 must be True, False or an integer >= 0"),
    (dict(verbose="yes"), "verbose='yes' must be"),
])
def test_bad_alias_values_name_the_alias(kw, match):
    X, y = make_blobs(n=30)
    with pytest.raises(ValueError, match=match):
        mlp.MLP(hidden=(3,), **kw).fit(X, y)


def test_a_given_alias_wins_over_the_primary():
    X, y = make_blobs(n=30)
    both = mlp.MLP(hidden=(3,), n_iter=9, max_iter=4, seed=5, random_state=6).fit(X, y)
    assert_same_fit(both, mlp.MLP(hidden=(3,), n_iter=4, seed=6).fit(X, y))


def test_verbose_prints_the_loss(capsys):
    X, y = make_blobs(n=40)
    m = mlp.MLP(hidden=(3,), n_iter=6, verbose=3).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Iteration {t + 1}, loss = {m.history_['loss'][t]:.8f}" for t in (2, 5)]
    mlp.MLP(hidden=(3,), n_iter=2, verbose=True).fit(X, y, X, y)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "validation loss = " in out[1]
    mlp.MLP(hidden=(3,), n_iter=2).fit(X, y)
    assert capsys.readouterr().out == ""


# ----------------------------------------------------- names in attributions
def test_attribution_is_named_from_the_fitted_frame():
    X, y = make_blobs(n=80)
    frame = pd.DataFrame(X, columns=["rooms", "nights", "score", "age"])
    m = mlp.MLP(hidden=(5,), n_iter=30, lr=0.5).fit(frame, y)
    res = m.feature_attribution(frame, y, samples="all")
    assert sorted(res["table"]["feature"]) == ["age", "nights", "rooms", "score"]
    assert list(res["by_source"]["feature"]) == list(res["table"]["feature"])
    # the same numbers as on the bare array, which is named x0... as before
    bare = mlp.MLP(hidden=(5,), n_iter=30, lr=0.5).fit(X, y).feature_attribution(X, y, samples="all")
    assert_array_equal(res["scores"], bare["scores"])
    assert sorted(bare["table"]["feature"]) == ["x0", "x1", "x2", "x3"]
    # explicit names still win; a frame with other columns is refused like in predict
    named = m.feature_attribution(frame, y, samples="all", feature_names=list("abcd"))
    assert sorted(named["table"]["feature"]) == list("abcd")
    with pytest.raises(ValueError, match="feature names"):
        m.feature_attribution(frame.rename(columns={"age": "AGE"}), y, samples="all")
