"""mlp.MLP and prep.Preprocessor as scikit-learn citizens: scikit-learn's own
estimator checks, the preprocessor inside Pipeline / GridSearchCV (leak-free per
fold), and the README's "Using the library" example run on small synthetic data.
"""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import mlp
import prep

README = Path(__file__).resolve().parents[1] / "README.md"


# ------------------------------------------------------ scikit-learn's suite
@parametrize_with_checks([mlp.MLP(n_iter=20)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# ------------------------------------------------ Preprocessor in a pipeline
def mixed_frame(n=150, seed=0):
    """Numeric + categorical columns with missing cells; the label depends on both."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.uniform(0, 10, n)
    color = rng.choice(["red", "green", "blue"], n)
    y = ((a > 0).astype(int) + (color == "red")).astype(int)       # classes 0, 1, 2
    X = pd.DataFrame({"a": a, "b": b, "color": color.astype(object)})
    X.loc[rng.random(n) < 0.1, "a"] = np.nan
    X.loc[rng.random(n) < 0.1, "color"] = np.nan
    return X, pd.Series(y, name="label")


def make_pipe(**mlp_kw):
    return Pipeline([("prep", prep.Preprocessor(["a", "b"], ["color"])),
                     ("mlp", mlp.MLP(hidden=(8,), n_iter=60, lr=0.5, **mlp_kw))])


def test_preprocessor_and_mlp_tune_inside_grid_search():
    X, y = mixed_frame()
    grid = GridSearchCV(make_pipe(), {"prep__missing_indicators": [False, True],
                                      "mlp__hidden": [(4,), (8, 8)]}, cv=3)
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    assert grid.best_params_ in grid.cv_results_["params"]
    # missing_indicators really reached the clones: the encoded width differs
    widths = {}
    for mi in (False, True):
        p = clone(grid.estimator).set_params(prep__missing_indicators=mi).fit(X, y)
        widths[mi] = p["mlp"].n_features_in_
    assert widths == {False: 5, True: 7}
    majority = y.value_counts(normalize=True).max()
    assert grid.score(X, y) > majority + 0.1
    best = grid.best_estimator_
    assert best["prep"].statistics_["a"]["median"] == pytest.approx(np.nanmedian(X["a"]))
    assert set(best.predict(X)) <= {0, 1, 2}


def test_each_fold_fits_the_preprocessor_on_its_own_training_rows():
    X, y = mixed_frame()
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    res = cross_validate(make_pipe(), X, y, cv=folds, return_estimator=True)
    for (train, _), est in zip(folds, res["estimator"]):
        st = est["prep"].statistics_
        assert st["a"]["median"] == pytest.approx(np.nanmedian(X["a"].to_numpy()[train]))
        assert st["b"]["mean"] == pytest.approx(X["b"].to_numpy()[train].mean(), rel=1e-12)
    # three different training sets, three different scalers
    assert len({est["prep"].statistics_["b"]["mean"] for est in res["estimator"]}) == 3
    # the label never reaches the preprocessor: shuffling y leaves the encoding unchanged
    shuffled = y.sample(frac=1.0, random_state=1).to_numpy()
    a = make_pipe().fit(X, y)["prep"].transform(X)
    b = make_pipe().fit(X, shuffled)["prep"].transform(X)
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------- README's example
def readme_library_code():
    """The python code blocks of README.md's "Using the library" section, joined."""
    text = README.read_text()
    section = text.split("## Using the library", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README's 'Using the library' section has no python code block"
    return "\n".join(blocks)


def test_readme_library_example_runs(tmp_path, monkeypatch):
    code = readme_library_code()
    assert code.count('"path/to/folder"') == 1
    train, test = prep.make_synthetic(n_train=400, n_test=150, seed=0)
    data = tmp_path / "data"
    data.mkdir()
    train.to_csv(data / "train.csv", index=False)
    test.to_csv(data / "test.csv", index=False)
    monkeypatch.chdir(tmp_path)                   # the example saves model.npz here
    ns = {}
    exec(compile(code.replace('"path/to/folder"', repr(str(data))), str(README), "exec"), ns)
    assert (tmp_path / "model.npz").is_file()
    assert isinstance(ns["model"], mlp.MLP) and ns["model"].n_features_in_ == ns["d"].X_train.shape[1]
    assert np.isfinite(ns["loss"])
    assert ns["grid"].best_params_ in ns["grid"].cv_results_["params"]
