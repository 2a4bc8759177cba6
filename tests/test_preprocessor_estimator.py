"""prep.Preprocessor as a full scikit-learn estimator: scikit-learn's own suite
(arrays, columns by position), positions and names giving the same encoding,
feature names for both, and the errors for empty or malformed input."""
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

import mlp
import prep
from prep import DataError, Preprocessor


def mixed(n=40, seed=0):
    """(DataFrame with names, the same cells as an object array): a, color, b, y."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(10.0, 3.0, n),
                       "color": rng.choice(["red", "green", "blue"], n).astype(object),
                       "b": rng.integers(0, 50, n).astype(float),
                       "y": rng.integers(0, 3, n)})
    df.loc[[1, 5], "a"] = np.nan
    df.loc[[2, 3], "color"] = np.nan
    return df, df.to_numpy(dtype=object)


# ------------------------------------------------------ scikit-learn's suite
@parametrize_with_checks([Preprocessor([1], [0]),
                          Preprocessor([0, 1], [], missing_indicators=True),
                          Preprocessor([1], [0], missing_indicators=True)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_text_tags_follow_the_categorical_columns():
    assert get_tags(Preprocessor([1], [0])).input_tags.string
    assert not get_tags(Preprocessor([0, 1], [])).input_tags.string
    assert get_tags(Preprocessor([0], None)).input_tags.allow_nan      # tags never raise


# ------------------------------------------------------ positions and names
def test_positions_encode_like_names_for_arrays_and_frames():
    df, arr = mixed()
    by_name = Preprocessor(["a", "b"], ["color"], missing_indicators=True).fit(df)
    X = by_name.transform(df)
    for data in (arr, df):
        by_pos = Preprocessor([0, 2], [1], missing_indicators=True).fit(data)
        assert_array_equal(by_pos.transform(data), X)
        assert by_pos.n_features_in_ == 4                      # scikit-learn's: X.shape[1]
        assert by_pos.statistics_[0] == by_name.statistics_["a"]
        assert by_pos.statistics_[1] == by_name.statistics_["color"]
        assert by_pos.indicator_columns_ == [0, 1]
    # a DataFrame read by position keeps its names for the encoded columns
    framed = Preprocessor([0, 2], [1], missing_indicators=True).fit(df)
    assert_array_equal(framed.feature_names_in_, ["a", "color", "b", "y"])
    assert framed.feature_names_ == by_name.feature_names_
    assert framed.feature_source_ == by_name.feature_source_
    # an array has none: x<position>, or the names given to get_feature_names_out
    arrayed = Preprocessor([0, 2], [1], missing_indicators=True).fit(arr)
    assert not hasattr(arrayed, "feature_names_in_")
    assert arrayed.feature_names_ == ["x0", "x2", "x1=blue", "x1=green", "x1=red",
                                      "x0_missing", "x1_missing"]
    assert list(arrayed.get_feature_names_out(["p", "q", "r", "s"])) == \
        ["p", "r", "q=blue", "q=green", "q=red", "p_missing", "q_missing"]
    # numpy integers are positions too
    assert_array_equal(Preprocessor(np.array([0, 2]), [np.int64(1)]).fit_transform(arr),
                       Preprocessor([0, 2], [1]).fit_transform(arr))


def test_unseen_category_warning_names_a_position_as_x():
    df, arr = mixed()
    pre = Preprocessor([0], [1]).fit(arr)
    new = arr[:3].copy()
    new[0, 1] = "purple"
    with pytest.warns(prep.UnseenCategoryWarning, match=r"'x1': 1 rows \(e.g. 'purple'\)"):
        pre.transform(new)


def test_pipeline_with_mlp_on_an_object_array():
    df, arr = mixed(n=90)
    pipe = Pipeline([("prep", Preprocessor([0, 2], [1])),
                     ("mlp", mlp.MLP(hidden=(4,), n_iter=20, lr=0.3))])
    P = pipe.fit(arr[:, :3], df["y"]).predict_proba(arr[:, :3])
    assert P.shape == (90, 3) and np.allclose(P.sum(axis=1), 1.0)


# ------------------------------------------------------------------ errors
def test_empty_data_gives_a_value_error():
    df, arr = mixed()
    with pytest.raises(ValueError, match=r"0 sample\(s\)"):
        Preprocessor([0], [1]).fit(arr[:0])
    with pytest.raises(ValueError, match=r"0 feature\(s\)"):
        Preprocessor([0], [1]).fit(arr[:, :0])
    with pytest.raises(ValueError, match="X has no rows"):
        Preprocessor([0], [1]).fit(df.iloc[:0])
    with pytest.raises(DataError, match="no rows"):
        Preprocessor(["a"], ["color"]).fit(df.iloc[:0])


@pytest.mark.parametrize("args, match", [
    (([0], ["color"]), r"mix column positions \('0'\) and names \('color'\)"),
    (([-1], []), "numeric lists column position -1; positions count from 0"),
    (([0, 0], []), "numeric lists '0' more than once"),
    (([1], [1]), "columns '1' are both numeric and categorical"),
])
def test_bad_positions_name_the_parameter(args, match):
    _, arr = mixed()
    with pytest.raises(ValueError, match=match):
        Preprocessor(*args).fit(arr)


def test_bad_input_by_position():
    df, arr = mixed()
    with pytest.raises(ValueError, match=r"X has 4 feature\(s\) \(shape=\(40, 4\)\) but the "
                                         r"Preprocessor reads column position\(s\) 7"):
        Preprocessor([0, 7], [1]).fit(arr)
    pre = Preprocessor([0], [1]).fit(arr)
    with pytest.raises(ValueError, match="X has 3 features, but Preprocessor is expecting 4"):
        pre.transform(arr[:, :3])
    bad = arr.copy()
    bad[[4, 6], 0] = "abc"
    with pytest.raises(DataError, match=r"numeric column position 0 has non-numeric or infinite "
                                        r"values in rows 4, 6 \(e.g. 'abc'\)"):
        pre.transform(bad)
    bad[4, 0] = {"k": 1}
    with pytest.raises(TypeError, match=r"numeric column position 0 has a value of type dict in "
                                        r"row 4 \(float\(\) argument must be"):
        pre.transform(bad)
    with pytest.raises(ValueError, match="Expected 2D array"):
        pre.transform(arr[:, 0])
    with pytest.raises(TypeError, match="Sparse data"):
        from scipy import sparse
        Preprocessor([0], []).fit(sparse.csr_matrix(np.ones((3, 2))))
    # names still need a DataFrame, and the error says how to encode an array
    with pytest.raises(TypeError, match=r"got ndarray \(to encode an array, list column positions"):
        Preprocessor(["a"], ["color"]).fit(arr)


def test_input_features_for_positions_are_checked():
    df, arr = mixed()
    with pytest.raises(ValueError, match="input_features has 2 names; X had 4 columns in fit"):
        Preprocessor([0], [1]).fit(arr).get_feature_names_out(["p", "q"])
    framed = Preprocessor([0], [1]).fit(df)
    with pytest.raises(ValueError, match="input_features 'p', 'q', 'r', 's' are not the fitted"):
        framed.get_feature_names_out(["p", "q", "r", "s"])
    assert list(framed.get_feature_names_out(list(df.columns))) == list(framed.feature_names_)
