"""Tests for prep.py: finding/loading/validating data, synthetic data,
leak-free preprocessing, split and encode. Small frames built here; one test
reads the real data from ../shared/data."""
import copy
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import prep
from prep import DataError, Preprocessor


# ---------------------------------------------------------------- helpers
def small_frame(n=40, seed=0, with_nan=True):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "a": rng.normal(10.0, 3.0, n),
        "b": rng.integers(0, 50, n).astype(float),
        "color": rng.choice(["red", "green", "blue"], n).astype(object),
        "y": rng.integers(0, 3, n),
    })
    if with_nan:
        df.loc[[1, 5, 9], "a"] = np.nan
        df.loc[[2, 3], "color"] = np.nan
    return df


def write_pair(folder, train_text, test_text=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text(train_text)
    if test_text is not None:
        (folder / "test.csv").write_text(test_text)
    return folder


def csv_text(rows, header="x,kind,price_class"):
    return header + "\n" + "\n".join(rows) + "\n"


GOOD_TRAIN = [f"{i}.5,{'ab'[i % 2]},{i % 3}" for i in range(12)]
GOOD_TEST = ["1.0,a,0", "2.0,b,1", "3.0,a,2"]


# ---------------------------------------------------------------- Preprocessor
def test_scaler_statistics_are_the_fitting_rows_own():
    df = small_frame()
    pre = Preprocessor(["a", "b"], ["color"]).fit(df)
    X = pre.transform(df)
    for j, col in enumerate(["a", "b"]):
        med = np.nanmedian(df[col])
        filled = df[col].fillna(med).to_numpy()
        st = pre.statistics_[col]
        assert st["median"] == pytest.approx(med)
        assert st["mean"] == pytest.approx(filled.mean())
        assert st["scale"] == pytest.approx(filled.std(ddof=0))
        assert_allclose(X[:, j], (filled - filled.mean()) / filled.std(ddof=0))
    mode = df["color"].mode().iloc[0]
    assert pre.statistics_["color"]["fill"] == mode
    assert pre.statistics_["color"]["categories"] == sorted(df["color"].dropna().unique())
    onehot = X[:, 2:]
    assert set(np.unique(onehot)) <= {0.0, 1.0}
    assert_array_equal(onehot.sum(axis=1), 1.0)
    # missing colours are imputed with the training mode
    assert onehot[2, pre.statistics_["color"]["categories"].index(mode)] == 1.0
    assert pre.feature_names_ == ["a", "b", "color=blue", "color=green", "color=red"]
    assert pre.feature_source_ == ["a", "b", "color", "color", "color"]


def test_features_do_not_depend_on_the_label():
    df = small_frame()
    rng = np.random.default_rng(1)
    permuted = df.assign(y=rng.permutation(df["y"].to_numpy()))
    pre = Preprocessor(["a", "b"], ["color"], missing_indicators=True)
    X1 = pre.fit_transform(df)
    X2 = Preprocessor(["a", "b"], ["color"], missing_indicators=True).fit_transform(permuted)
    X3 = Preprocessor(["a", "b"], ["color"], missing_indicators=True).fit_transform(df.drop(columns="y"))
    assert_array_equal(X1, X2)
    assert_array_equal(X1, X3)


def test_transform_never_changes_fitted_statistics():
    train = small_frame()
    pre = Preprocessor(["a", "b"], ["color"], missing_indicators=True).fit(train)
    before = copy.deepcopy(pre.statistics_)
    X_before = pre.transform(train)
    wild = pd.DataFrame({"a": [1e9, -1e9, np.nan, 0.0], "b": [np.nan] * 4,
                         "color": ["purple", np.nan, "red", "purple"], "y": [0, 1, 2, 0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", prep.UnseenCategoryWarning)
        Xw = pre.transform(wild)
    assert pre.statistics_ == before
    assert_array_equal(pre.transform(train), X_before)
    assert np.isfinite(Xw).all()
    # an all-missing numeric column is imputed with the *training* median
    assert_allclose(Xw[:, 1], (before["b"]["median"] - before["b"]["mean"]) / before["b"]["scale"])


def test_unseen_category_is_all_zero_and_warns_with_count():
    train = small_frame(with_nan=False)
    pre = Preprocessor(["a"], ["color"]).fit(train)
    test = pd.DataFrame({"a": [1.0, 2.0, 3.0], "color": ["purple", "red", "purple"]})
    with pytest.warns(prep.UnseenCategoryWarning, match=r"'color': 2 rows \(e.g. 'purple'\)") as rec:
        X = pre.transform(test)
    assert rec[0].filename == __file__          # the warning points at the caller
    onehot = X[:, 1:]
    assert_array_equal(onehot[[0, 2]], 0.0)
    assert onehot[1].sum() == 1.0


def test_missing_indicators_only_for_columns_with_missing_values():
    df = small_frame()
    pre = Preprocessor(["a", "b"], ["color"], missing_indicators=True).fit(df)
    X = pre.transform(df)
    assert pre.feature_names_[-2:] == ["a_missing", "color_missing"]
    assert pre.feature_source_[-2:] == ["a", "color"]
    assert_array_equal(X[:, -2], df["a"].isna().to_numpy(dtype=float))
    assert_array_equal(X[:, -1], df["color"].isna().to_numpy(dtype=float))
    assert len(pre.feature_names_) == len(pre.feature_source_) == X.shape[1]


@pytest.mark.parametrize("args, match", [
    ((["a"], ["a"]), "'a' are both numeric and categorical"),
    (([], []), "at least one numeric or categorical column"),
    (("a", []), "numeric='a' must be a list of column names"),
    ((["a"], None), "categorical=None must be a list of column names"),
    ((["a", "b", "a"], []), "numeric lists 'a' more than once"),
    ((["a"], [], "yes"), "missing_indicators='yes' must be True or False"),
])
def test_preprocessor_checks_its_parameters_in_fit(args, match):
    pre = Preprocessor(*args)               # stored as given: clone and set_params need that
    assert pre.get_params()["numeric"] is args[0]
    with pytest.raises(ValueError, match=match):
        pre.fit(small_frame())


def test_preprocessor_rejects_bad_use():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError, match="not fitted; call fit"):
        Preprocessor(["a"], []).transform(small_frame())
    with pytest.raises(NotFittedError):
        Preprocessor(["a"], []).get_feature_names_out()
    pre = Preprocessor(["a", "b"], ["color"]).fit(small_frame())
    with pytest.raises(DataError, match="lacks feature columns 'b'"):
        pre.transform(small_frame().drop(columns="b"))
    with pytest.raises(TypeError, match="X must be a pandas DataFrame with the columns 'a', 'b', 'color'; got ndarray"):
        pre.transform(small_frame()[["a", "b", "color"]].to_numpy())
    with pytest.raises(ValueError, match="input_features 'x' are not the fitted columns"):
        pre.get_feature_names_out(["x"])


def test_preprocessor_is_a_scikit_learn_transformer():
    from sklearn.base import clone
    df = small_frame()
    pre = Preprocessor(["a", "b"], ["color"])
    assert pre.get_params() == {"numeric": ["a", "b"], "categorical": ["color"],
                                "missing_indicators": False}
    X = pre.fit_transform(df, df["y"])           # y is accepted and ignored
    c = clone(pre)
    assert c.get_params() == pre.get_params() and not hasattr(c, "transformer_")
    c.set_params(missing_indicators=True)
    Xc = c.fit(df).transform(df)
    assert Xc.shape[1] == X.shape[1] + 2
    assert_array_equal(Xc[:, : X.shape[1]], X)
    assert_array_equal(pre.get_feature_names_out(),
                       ["a", "b", "color=blue", "color=green", "color=red"])
    assert_array_equal(pre.get_feature_names_out(["a", "b", "color"]), pre.get_feature_names_out())
    assert_array_equal(pre.feature_names_in_, ["a", "b", "color"]) and pre.n_features_in_ == 3
    # changing a parameter after fit does not change what the fitted object does
    pre.set_params(numeric=["a"])
    assert_array_equal(pre.transform(df), X)
    # scikit-learn's set_output: a DataFrame with the encoded names and the input's index
    out = Preprocessor(["a", "b"], ["color"]).set_output(transform="pandas").fit_transform(df)
    assert list(out.columns) == list(pre.get_feature_names_out()) and out.index.equals(df.index)
    assert_array_equal(out.to_numpy(), X)


# ---------------------------------------------------------------- split and encode
def test_train_val_split_is_stratified_seeded_and_validated():
    df = small_frame(n=200)
    tr, va = prep.train_val_split(df, "y", val_size=0.25, seed=3)
    assert len(va) == 50 and len(tr) == 150
    assert sorted(tr.index.tolist() + va.index.tolist()) == list(range(200))
    share = df["y"].value_counts(normalize=True)
    assert_allclose(va["y"].value_counts(normalize=True)[share.index], share, atol=0.02)
    tr2, va2 = prep.train_val_split(df, "y", val_size=0.25, seed=3)
    assert_array_equal(va.index, va2.index)
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="val_size"):
            prep.train_val_split(df, "y", val_size=bad)


def test_encode_fits_on_the_training_split_only():
    df = small_frame(n=120).assign(y=lambda d: d["y"].map({0: 3, 1: 7, 2: 9}))
    test = small_frame(n=30, seed=5, with_nan=False).assign(y=lambda d: d["y"].map({0: 3, 1: 7, 2: 9}))
    ds = prep.validate_frames(df, test, target="y")
    assert_array_equal(ds.classes, [3, 7, 9])
    e = prep.encode(ds, val_size=0.25, seed=0)
    tr = e.train_df
    st = e.preprocessor.statistics_["a"]
    assert st["median"] == pytest.approx(np.nanmedian(tr["a"]))
    assert st["median"] != pytest.approx(np.nanmedian(df["a"]))  # not the full train
    assert e.X_train.shape == (90, 5) and e.X_val.shape == (30, 5) and e.X_test.shape == (30, 5)
    for part in ("train", "val"):
        raw = getattr(e, f"{part}_df")["y"].to_numpy()
        assert e.y(part).dtype == np.int64
        assert_array_equal(ds.classes[e.y(part)], raw)
    assert_array_equal(ds.classes[e.y_test], test["y"].to_numpy())
    assert e.feature_names == e.preprocessor.feature_names_


def test_encode_writes_float32_directly_with_the_bits_of_the_float64_encoding():
    """``encode(dtype=float32, empty=...)`` gives ``astype(float32)`` of the float64
    encoding, allocated by ``empty`` (the labels too), returned as is by ``arrays(float32, empty)``, and
    holds no float64 matrix on the way (its traced peak is well below the float64 one)."""
    import tracemalloc
    df = small_frame(n=20_000, seed=3)
    test = small_frame(n=5_000, seed=4)
    ds = prep.validate_frames(df, test, target="y")
    wide = prep.encode(ds, val_size=0.25, seed=0)
    made = []

    def empty(shape, dtype):
        made.append((shape, np.dtype(dtype)))
        return np.empty(shape, dtype)

    narrow = prep.encode(ds, val_size=0.25, seed=0, dtype=np.float32, empty=empty)
    assert made == [((15_000, 5), np.float32), ((5_000, 5), np.float32), ((5_000, 5), np.float32),
                    ((15_000,), np.int64), ((5_000,), np.int64), ((5_000,), np.int64)]   # labels too
    for split in ("train", "val", "test"):
        assert narrow.X(split).dtype == np.float32
        assert_array_equal(narrow.X(split), wide.X(split).astype(np.float32))
        assert_array_equal(narrow.y(split), wide.y(split))
    assert narrow.arrays(np.float32, empty=empty).X_train is narrow.X_train
    assert len(made) == 6                            # no second conversion

    def peak(**kw):
        tracemalloc.start()
        prep.encode(ds, val_size=0.25, seed=0, **kw)
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return top
    # a float64 matrix made and then cast would leave the peak at least the float64 one;
    # written directly, the matrices held at the peak take half the bytes (measured: 0.31)
    matrices64 = sum(wide.X(s).nbytes for s in ("train", "val", "test"))
    assert peak() - peak(dtype=np.float32) > 0.2 * matrices64


def test_transform_into_out_checks_it():
    pre = Preprocessor(["a", "b"], ["color"]).fit(small_frame(60))
    X = small_frame(10, seed=1)
    out = np.full((10, pre.n_features_), np.nan, dtype=np.float32)
    assert pre.transform(X, out=out) is out
    assert_array_equal(out, pre.transform(X).astype(np.float32))
    for bad in (np.empty((9, pre.n_features_)), np.empty((10, pre.n_features_), dtype=np.int64),
                [[0.0] * pre.n_features_] * 10):
        with pytest.raises(ValueError, match="out must be a writable floating ndarray of shape"):
            pre.transform(X, out=bad)


# ---------------------------------------------------------------- loading and validation
def test_load_csv_pair_types_columns(tmp_path):
    d = write_pair(tmp_path, csv_text(GOOD_TRAIN), csv_text(GOOD_TEST))
    ds = prep.load_csv_pair(d)
    assert ds.numeric == ["x"] and ds.categorical == ["kind"]
    assert_array_equal(ds.classes, [0, 1, 2])
    assert ds.train["price_class"].dtype == np.int64 and ds.train["x"].dtype == np.float64
    assert ds.source == str(d) and not ds.synthetic
    forced = prep.load_csv_pair(d, categorical=["x"])
    assert forced.numeric == [] and forced.categorical == ["x", "kind"]
    dropped = prep.load_csv_pair(d, drop=["kind"])
    assert dropped.categorical == [] and "kind" not in dropped.test.columns


def test_integer_valued_float_labels_are_fine(tmp_path):
    rows = [f"{i},a,{i % 2}.0" for i in range(6)]
    ds = prep.load_csv_pair(write_pair(tmp_path, csv_text(rows), csv_text(["1,a,1.0"])))
    assert_array_equal(ds.classes, [0, 1])


BAD_CASES = {
    "duplicate columns": (csv_text(GOOD_TRAIN, "x,x,price_class"), csv_text(GOOD_TEST),
                          r"duplicate column names \('x' in columns 1, 2\)"),
    "no target": (csv_text(GOOD_TRAIN, "x,kind,label"), csv_text(GOOD_TEST),
                  r"train.csv has no target column 'price_class'; columns are 'x', 'kind', 'label'; pass --target"),
    "column mismatch": (csv_text(GOOD_TRAIN), csv_text(GOOD_TEST, "x,colour,price_class"),
                        r"missing in .*test.csv: 'kind'; only in .*test.csv: 'colour'\); .*--drop kind,colour"),
    "non-numeric": (csv_text(GOOD_TRAIN[:3] + ["abc,a,1"] + GOOD_TRAIN[3:]), csv_text(GOOD_TEST),
                    r"train.csv: column 'x' has non-numeric values in line 5 \(e.g. 'abc'\); "
                    r"fix the CSV or pass --categorical x"),
    "non-numeric in test": (csv_text(GOOD_TRAIN), csv_text(GOOD_TEST + ["n/a?,a,1"]),
                            r"test.csv: column 'x' has non-numeric values in line 5 \(e.g. 'n/a\?'\)"),
    "many non-numeric": (csv_text(GOOD_TRAIN + [f"bad{i},a,1" for i in range(7)]), csv_text(GOOD_TEST),
                         r"lines 14, 15, 16, 17, 18 and 2 more \(e.g. 'bad0'\)"),
    "label missing": (csv_text(GOOD_TRAIN[:1] + ["1,a,"] + GOOD_TRAIN[1:]), csv_text(GOOD_TEST),
                      r"target 'price_class' is missing in line 3; fill in"),
    "label text": (csv_text(GOOD_TRAIN + ["1,a,cheap"]), csv_text(GOOD_TEST),
                   r"non-integer labels in line 14 \(e.g. 'cheap'\)"),
    "label fraction": (csv_text(GOOD_TRAIN), csv_text(GOOD_TEST + ["1,a,2.5"]),
                       r"test.csv: target 'price_class' has non-integer labels in line 5 \(e.g. '2.5'\)"),
    "one class": (csv_text([f"{i},a,1" for i in range(5)]), csv_text(["1,a,1"]),
                  r"has only one class \(1\); a classifier needs at least 2"),
    "class unseen in train": (csv_text(GOOD_TRAIN), csv_text(GOOD_TEST + ["1,a,7"]),
                              r"test.csv: classes 7 in line 5 never occur in .*train.csv \(classes there: 0, 1, 2\)"),
    "header only": (csv_text([]).rstrip("\n") + "\n", csv_text(GOOD_TEST),
                    r"train.csv has a header but no data rows"),
    "zero bytes": ("", csv_text(GOOD_TEST), r"train.csv is empty \(0 bytes\)"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_csv_raises_one_line_data_error(tmp_path, case):
    train, test, pattern = BAD_CASES[case]
    d = write_pair(tmp_path, train, test)
    with pytest.raises(DataError, match=pattern) as info:
        prep.load_csv_pair(d)
    assert "\n" not in str(info.value)


def test_an_empty_column_is_left_out_unless_kept(tmp_path):
    """A column with no value in the training file is screened out as constant (it stopped
    the run before); kept with --keep-columns, or with screening off, it is still an error
    that says what to do."""
    d = write_pair(tmp_path, csv_text([f"{i}.5,,{i % 2}" for i in range(8)]), csv_text(["1.0,,0", "2.0,b,1"]))
    ds = prep.load_csv_pair(d)
    assert ds.numeric == ["x"] and ds.categorical == [] and "kind" not in ds.train.columns
    row = ds.excluded.set_index("column").loc["kind"]
    assert row["rule"] == "constant" and row["action"] == "excluded" and row["n_present"] == 0
    with pytest.raises(DataError, match=r"column 'kind' is entirely empty; pass --drop kind"):
        prep.load_csv_pair(d, keep=["kind"])
    train, test = (pd.read_csv(d / name) for name in ("train.csv", "test.csv"))
    with pytest.raises(DataError, match=r"column 'kind' is entirely empty; pass --drop kind"):
        prep.validate_frames(train, test, target="price_class", screen=False)


def test_missing_file(tmp_path):
    d = write_pair(tmp_path, csv_text(GOOD_TRAIN))
    with pytest.raises(DataError, match=r"test.csv not found"):
        prep.load_csv_pair(d)
    with pytest.raises(DataError, match=r"test.csv not found in .* \(looked for .*test.csv and test\{.csv.gz,.*--test-size"):
        prep.find_data_dir(d)
    with pytest.raises(DataError, match=r"does not exist"):
        prep.find_data_dir(tmp_path / "nope")


def test_validate_frames_names_index_labels_and_unknown_options():
    train = small_frame(with_nan=False)
    test = small_frame(n=10, seed=2, with_nan=False)
    train.index = train.index + 100
    train["b"] = train["b"].astype(object)
    train.loc[[103, 107], "b"] = "oops"
    with pytest.raises(DataError, match=r"mine: column 'b' has non-numeric values in rows 103, 107"):
        prep.validate_frames(train, test, target="y", names=("mine", "theirs"))
    with pytest.raises(DataError, match=r"--drop names unknown columns 'zz'"):
        prep.validate_frames(train, test, target="y", drop=["zz"])
    with pytest.raises(DataError, match=r"--categorical names 'zz'"):
        prep.validate_frames(train, test, target="y", categorical=["zz"])


# ---------------------------------------------------------------- finding data
def test_find_data_dir_search_order(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    env_dir, cwd = tmp_path / "env", tmp_path / "cwd"
    dirs = [env_dir, cwd / "data", repo / "data", tmp_path / "shared" / "data"]
    for d in dirs:
        write_pair(d, csv_text(GOOD_TRAIN), csv_text(GOOD_TEST))
    explicit = write_pair(tmp_path / "explicit", csv_text(GOOD_TRAIN), csv_text(GOOD_TEST))
    monkeypatch.setattr(prep, "REPO_DIR", repo)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MLP_DATA_DIR", str(env_dir))
    assert prep.find_data_dir(explicit) == explicit
    assert prep.find_data_dir() == env_dir
    (env_dir / "test.csv").unlink()
    with pytest.warns(UserWarning, match="MLP_DATA_DIR=.* does not hold both"):
        assert prep.find_data_dir() == cwd / "data"
    monkeypatch.delenv("MLP_DATA_DIR")
    assert prep.find_data_dir() == cwd / "data"
    monkeypatch.chdir(tmp_path)
    assert prep.find_data_dir() == repo / "data"
    (repo / "data" / "train.csv").unlink()
    assert prep.find_data_dir() == tmp_path / "shared" / "data"
    (tmp_path / "shared" / "data" / "train.csv").unlink()
    assert prep.find_data_dir() is None
    ds = prep.load_data(seed=1)
    assert ds.synthetic and ds.source == "synthetic"
    assert ds.numeric and ds.categorical and len(ds.classes) == 4


# ---------------------------------------------------------------- synthetic data
def test_make_synthetic_schema_determinism_and_missing_values():
    tr, te = prep.make_synthetic(n_train=600, n_test=200, missing_rate=0.05, seed=4)
    tr2, te2 = prep.make_synthetic(n_train=600, n_test=200, missing_rate=0.05, seed=4)
    pd.testing.assert_frame_equal(tr, tr2)
    pd.testing.assert_frame_equal(te, te2)
    assert not tr.equals(prep.make_synthetic(n_train=600, n_test=200, missing_rate=0.05, seed=5)[0])
    assert tr.shape == (600, 7) and te.shape == (200, 7)
    features = [c for c in tr.columns if c != "price_class"]
    assert (tr[features].isna().sum() > 0).all()
    assert tr["price_class"].notna().all()
    assert te.isna().sum().sum() == 0
    ds = prep.validate_frames(tr, te)
    assert len(ds.categorical) == 2 and len(ds.numeric) == 4
    counts = np.bincount(ds.train["price_class"])
    assert_array_equal(ds.classes, [0, 1, 2, 3])
    assert (np.diff(counts) < 0).all()  # imbalanced, most common class 0


def test_make_synthetic_label_depends_on_features():
    tr, te = prep.make_synthetic(n_train=2000, n_test=600, seed=0)
    e = prep.encode(prep.validate_frames(tr, te))
    majority = np.bincount(e.y_test).max() / len(e.y_test)
    acc = LogisticRegression(max_iter=500).fit(e.X_train, e.y_train).score(e.X_test, e.y_test)
    assert acc > majority + 0.15


@pytest.mark.parametrize("column", ["amenity_score", "room_type"])
def test_make_synthetic_shortcut_holds_in_train_only(column):
    tr, te = prep.make_synthetic(n_train=2000, n_test=800, shortcut=column, missing_rate=0.0, seed=2)
    ds = prep.validate_frames(tr, te)
    numeric = [column] if column in ds.numeric else []
    pre = Preprocessor(numeric, [] if numeric else [column]).fit(ds.train)
    y_tr, y_te = ds.train["price_class"], ds.test["price_class"]
    model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(pre.transform(ds.train), y_tr)
    base_tr = y_tr.value_counts(normalize=True).max()
    base_te = y_te.value_counts(normalize=True).max()
    assert model.score(pre.transform(ds.train), y_tr) > base_tr + 0.35
    assert model.score(pre.transform(ds.test), y_te) < base_te + 0.05
    # same marginal in test: every test value of the shortcut occurs in train
    assert set(ds.test[column].unique()) <= set(ds.train[column].unique())


def test_make_synthetic_renamed_columns_and_target():
    tr, te = prep.make_synthetic(n_train=300, n_test=100, seed=0, target="label",
                                 columns={"room_type": "kind", "amenity_score": "score"}, shortcut="score")
    assert {"kind", "score", "label"} <= set(tr.columns) and "room_type" not in tr.columns
    ds = prep.validate_frames(tr, te, target="label")
    assert "kind" in ds.categorical and "score" in ds.numeric
    r = np.corrcoef(ds.train["score"].fillna(ds.train["score"].median()), ds.train["label"])[0, 1]
    assert r > 0.9
    with pytest.raises(ValueError, match="shortcut='nope'"):
        prep.make_synthetic(shortcut="nope")
    with pytest.raises(ValueError, match="columns renames unknown columns 'zz'"):
        prep.make_synthetic(columns={"zz": "a"})
    with pytest.raises(ValueError, match="missing_rate"):
        prep.make_synthetic(missing_rate=1.0)
    tr3, _ = prep.make_synthetic(n_train=300, n_test=50, n_classes=3)
    assert sorted(tr3["price_class"].unique()) == [0, 1, 2]


# ---------------------------------------------------------------- real data
def test_real_data_loads(shared_data_dir):
    ds = prep.load_csv_pair(shared_data_dir)
    assert len(ds.train) == 41348 and len(ds.test) == 7297
    assert len(ds.categorical) == 2 and len(ds.numeric) == 4
    assert_array_equal(ds.classes, [0, 1, 2, 3])
    assert ds.classes.dtype == np.int64 and ds.test_labelled and ds.excluded.empty
    assert ds.test.drop(columns=ds.target).isna().sum().sum() == 0
    e = prep.encode(ds)
    assert np.isfinite(e.X_train).all() and np.isfinite(e.X_test).all()
    assert e.X_train.shape[1] == e.X_test.shape[1] == len(e.feature_names)


def test_encode_keeps_positions_not_copies_and_matches_the_frame_split():
    """encode holds the training frame once (positions of the split, frames made when
    asked): the same rows, in the same order, as train_val_split; arrays() drops it."""
    df = small_frame(n=150).assign(y=lambda d: d["y"].map({0: "a", 1: "b", 2: "c"}))
    df.index = np.arange(1000, 1150)[::-1]                 # an index that is not positions
    ds = prep.validate_frames(df, small_frame(n=20, seed=9).assign(y="a"), target="y")
    e = prep.encode(ds, val_size=0.2, seed=4)
    tr, va = prep.train_val_split(ds.train, "y", val_size=0.2, seed=4)
    assert e.frame is ds.train
    pd.testing.assert_frame_equal(e.train_df, tr)
    pd.testing.assert_frame_equal(e.val_df, va)
    assert_array_equal(e.X_train, e.preprocessor.transform(tr.drop(columns="y")))
    assert e.arrays().frame is None and e.arrays().train_df is None


def test_transform_in_pieces_equals_one_piece(monkeypatch):
    """Preprocessor.transform encodes large inputs TRANSFORM_CHUNK rows at a time; the
    rows are encoded alone, so 7-row pieces give the one-piece matrix exactly (numeric
    with NaN, a categorical, missing indicators)."""
    df = small_frame(n=200)
    pre = prep.Preprocessor(["a", "b"], ["color"], missing_indicators=True).fit(df)
    one = pre.transform(df)
    monkeypatch.setattr(prep, "TRANSFORM_CHUNK", 7)
    assert_array_equal(pre.transform(df), one)
    monkeypatch.setattr(prep, "TRANSFORM_CHUNK", 1 << 18)
    monkeypatch.setattr(prep, "TRANSFORM_BYTES", 8 * 3 * 5)      # a wide file: 5-row pieces
    pieces, encode = [], prep._MedianScaled.transform
    monkeypatch.setattr(prep._MedianScaled, "transform", lambda s, f: pieces.append(len(f)) or encode(s, f))
    assert_array_equal(pre.transform(df), one)
    assert pieces == [5] * 40


def test_arrays_for_a_worker_in_the_networks_dtype_made_once():
    """Encoded.arrays(float32): the X's converted once and shared by every job (a worker
    then holds half the bytes); float64/None: the encoded arrays themselves; no frame,
    no preprocessor and no cached conversions travel with them."""
    df = small_frame(n=120)
    ds = prep.validate_frames(df, small_frame(n=30, seed=2), target="y")
    e = prep.encode(ds, val_size=0.25, seed=0)
    a, b = e.arrays(np.float32), e.arrays("float32")
    for name in ("X_train", "X_val", "X_test"):
        assert getattr(a, name).dtype == np.float32 and getattr(a, name).flags.c_contiguous
        assert getattr(a, name) is getattr(b, name)
        assert_array_equal(getattr(a, name), getattr(e, name).astype(np.float32))
        assert getattr(e.arrays(), name) is getattr(e, name)
        assert getattr(e.arrays(np.float64), name) is getattr(e, name)
    assert a.y_train is e.y_train and a.frame is None and a.preprocessor is None
    assert a._casts == {} and e.arrays()._casts == {}


@pytest.mark.parametrize("indicators", [False, True])
def test_preprocessor_encodes_as_scikit_learns_column_transformer(indicators):
    """Preprocessor fits its parts one by one (numeric columns in groups of bounded size, to
    keep fit's memory small) and joins them itself; the matrix is bitwise the one a ColumnTransformer of the
    same pipelines gives, statistics included."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    rng = np.random.default_rng(4)
    n = 3001
    df = pd.DataFrame({"a": rng.lognormal(size=n), "b": rng.normal(1e6, 3.0, n),
                       "c": rng.integers(0, 5, n).astype(float), "k": rng.choice(["x", "y", "z"], n),
                       "m": rng.choice(["p", "q"], n)})
    df.loc[rng.random(n) < 0.1, "a"] = np.nan
    df.loc[rng.random(n) < 0.05, "k"] = None
    num, cat = ["a", "b", "c"], ["k", "m"]
    pre = prep.Preprocessor(num, cat, missing_indicators=indicators).fit(df.iloc[:2000])
    parts = [("num", Pipeline([("i", SimpleImputer(strategy="median", keep_empty_features=True)),
                               ("s", StandardScaler())]), num),
             ("cat", Pipeline([("i", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                               ("o", OneHotEncoder(handle_unknown="ignore", sparse_output=False))]), cat)]
    if indicators:
        parts.append(("missing", MissingIndicator(features="all", error_on_new=False), ["a", "k"]))
    frame = df.astype({"k": object, "m": object})
    ct = ColumnTransformer(parts, sparse_threshold=0.0).fit(frame.iloc[:2000])
    np.testing.assert_array_equal(pre.transform(df.iloc[2000:]), ct.transform(frame.iloc[2000:]))
    np.testing.assert_array_equal(pre.transform(df.iloc[:2000]), ct.transform(frame.iloc[:2000]))
    scaler = ct.named_transformers_["num"]["s"]
    assert [pre.statistics_[c]["mean"] for c in num] == list(scaler.mean_)
    assert [pre.statistics_[c]["scale"] for c in num] == list(scaler.scale_)


def _column_frame(rng, n, k):
    """``k`` float columns of ``n`` rows that test the statistics' edge cases: missing
    values, a column with none present, a constant, a large offset, ties, heavy tails."""
    cols = {}
    for j in range(k):
        kind = j % 6
        v = (rng.normal(size=n), rng.normal(1e6, 1e-3, n), np.full(n, 3.3),
             rng.integers(0, 5, n).astype(float), np.full(n, np.nan), rng.lognormal(size=n) * 1e4)[kind]
        if kind not in (2, 4):
            v[rng.random(n) < 0.3] = np.nan
        cols[f"v{j}"] = v
    return pd.DataFrame(cols)


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
@pytest.mark.parametrize("per_group", [1, 2, 5, None])
def test_grouped_fit_has_the_statistics_of_one_column_fits(monkeypatch, n, per_group):
    """Preprocessor.fit fits the numeric columns in groups (FIT_GROUP_BYTES) and encodes
    them all at once: statistics and encoding are bitwise those of a median imputer and a
    scaler fitted and applied to each column on its own, whatever the group size."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(n)
    train, test = _column_frame(rng, n, 12), _column_frame(rng, 2 * n + 1, 12)
    if per_group is not None:
        monkeypatch.setattr(prep, "FIT_GROUP_BYTES", per_group * 8 * n)
    names = list(train.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pre = Preprocessor(names, []).fit(train)
        got = pre.transform(test)
    for j, c in enumerate(names):
        one = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler())]).fit(train[[c]])
        st = pre.statistics_[c]
        assert [st["median"], st["mean"], st["scale"]] == [
            float(one["impute"].statistics_[0]), float(one["scale"].mean_[0]), float(one["scale"].scale_[0])], c
        assert_array_equal(got[:, j].view(np.int64), one.transform(test[[c]])[:, 0].view(np.int64), c)


def test_a_wide_frame_is_fitted_in_a_few_calls(monkeypatch):
    """A wide file's numeric columns are fitted in one scikit-learn call per group, not
    one per column (900 columns took 6 s to fit and 11 s to encode that way)."""
    from sklearn.impute import SimpleImputer
    fits = []

    class Counting(SimpleImputer):
        def fit(self, X, y=None):
            fits.append(np.shape(X))
            return super().fit(X, y)

    monkeypatch.setattr(prep, "SimpleImputer", Counting)
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(300, 400)), columns=[f"x{j}" for j in range(400)])
    pre = Preprocessor(list(df.columns), []).fit(df)
    assert fits == [(300, 400)]
    monkeypatch.setattr(prep, "FIT_GROUP_BYTES", 8 * 300 * 150)      # 150 columns a group
    fits.clear()
    assert_array_equal(Preprocessor(list(df.columns), []).fit(df).transform(df), pre.transform(df))
    assert fits == [(300, 150), (300, 150), (300, 100)]
