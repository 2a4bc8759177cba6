"""Inputs people have: files as they come (delimiters, compression, Parquet, any names,
one file to split), any label type, unlabelled test files, columns that are no
features, a wide file within a memory bound, and sizes refused before any work.

Small files are written here; one test runs a subprocess to measure peak memory."""
import bz2
import gzip
import json
import lzma
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal

import eda
import prep
import reader
import run_all
from prep import DataError

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers
def frame(n=60, seed=0, labels=None):
    """Two numerics, one categorical, a label (0/1/2 unless ``labels`` maps them)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    df = pd.DataFrame({"size": rng.normal(size=n).round(3) + y,
                       "age": rng.integers(0, 40, n),
                       "colour": rng.choice(["red", "green", "blue"], n),
                       "label": y if labels is None else [labels[v] for v in y]})
    return df


def write(path, df, sep=",", compression=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = df.to_csv(index=False, sep=sep)
    raw = text.encode("utf-8")
    if compression == "gzip":
        path.write_bytes(gzip.compress(raw))
    elif compression == "bz2":
        path.write_bytes(bz2.compress(raw))
    elif compression == "xz":
        path.write_bytes(lzma.compress(raw))
    elif compression == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(path.stem + ".csv", text)
    else:
        path.write_bytes(raw)
    return path


def pair(folder, train_name="train.csv", test_name="test.csv", **kw):
    return (write(folder / train_name, frame(60), **kw), write(folder / test_name, frame(21, seed=1), **kw))


def reference(tmp_path):
    tr, te = pair(tmp_path / "ref")
    return prep.load_files(tr, te, target="label")


def same_dataset(a, b):
    assert a.numeric == b.numeric and a.categorical == b.categorical
    pd.testing.assert_frame_equal(a.train, b.train)
    pd.testing.assert_frame_equal(a.test, b.test)
    assert_array_equal(a.classes, b.classes)


# ---------------------------------------------------------------- delimiters
@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_delimiter_is_detected(tmp_path, sep):
    tr, te = pair(tmp_path / "d", sep=sep)
    same_dataset(prep.load_files(tr, te, target="label"), reference(tmp_path))


def test_semicolon_file_with_decimal_commas_in_text_is_not_split_on_commas(tmp_path):
    df = frame(30).assign(colour=lambda d: d["colour"] + ", light")
    tr = write(tmp_path / "train.csv", df, sep=";")
    te = write(tmp_path / "test.csv", frame(9, seed=3).assign(colour="red, light"), sep=";")
    ds = prep.load_files(tr, te, target="label")
    assert ds.categorical == ["colour"] and ds.train["colour"].str.endswith(", light").all()


def test_unknown_delimiter_says_which_were_tried_and_names_sep(tmp_path):
    tr, te = pair(tmp_path, sep=":")
    with pytest.raises(DataError, match=r"single column with each of the delimiters comma, semicolon, "
                                        r"tab, pipe .*pass --sep") as info:
        prep.load_files(tr, te, target="label")
    assert "\n" not in str(info.value)
    ds = prep.load_files(tr, te, target="label", sep=":")      # --sep reads it
    same_dataset(ds, reference(tmp_path))


def test_ragged_file_names_detected_delimiter_and_sep(tmp_path):
    tr = tmp_path / "train.csv"
    tr.write_text("a;b;label\n1;2;0\n1;2;3;4\n")
    te = write(tmp_path / "test.csv", frame(5), sep=";")
    with pytest.raises(DataError, match=r"not a valid CSV with the semicolon delimiter \(detected\).*--sep"):
        reader.read_table(tr)


# ---------------------------------------------------------------- compression and formats
@pytest.mark.parametrize("ext, compression", [(".csv.gz", "gzip"), (".csv.bz2", "bz2"),
                                              (".csv.xz", "xz"), (".zip", "zip")])
def test_compressed_files_by_extension(tmp_path, ext, compression):
    tr, te = pair(tmp_path / "c", "train" + ext, "test" + ext, compression=compression)
    same_dataset(prep.load_files(tr, te, target="label"), reference(tmp_path))
    # a folder search finds train.csv.gz etc. too
    assert prep.find_data_files(tmp_path / "c") == (tr, te)
    same_dataset(prep.load_data(tmp_path / "c", target="label"), reference(tmp_path))


def test_semicolon_inside_gzip(tmp_path):
    tr, te = pair(tmp_path / "g", "train.csv.gz", "test.csv.gz", sep=";", compression="gzip")
    same_dataset(prep.load_files(tr, te, target="label"), reference(tmp_path))


@pytest.mark.parametrize("compression, ext", [(None, ".csv"), ("gzip", ".csv.gz")])
def test_non_utf8_keeps_its_message(tmp_path, compression, ext):
    raw = "size,colour,label\n1.0,caf\xe9,0\n2.0,th\xe9,1\n".encode("latin-1")
    path = tmp_path / ("train" + ext)
    path.write_bytes(gzip.compress(raw) if compression else raw)
    with pytest.raises(DataError, match=r"is not UTF-8 text .*save it as UTF-8 CSV"):
        reader.read_table(path)


def test_corrupt_gzip_is_one_line(tmp_path):
    path = tmp_path / "train.csv.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match=r"cannot be read as a gzip file .*check the file"):
        reader.read_table(path)


def test_zip_with_two_members_is_refused(tmp_path):
    path = tmp_path / "train.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.csv", "x,y\n1,2\n")
        zf.writestr("b.csv", "x,y\n1,2\n")
    with pytest.raises(DataError, match=r"holds 2 files \(a.csv, b.csv\); a .zip must hold exactly one"):
        reader.read_table(path)


def test_parquet_without_engine_names_the_package(tmp_path, monkeypatch):
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 not really")
    for name in reader.PARQUET_ENGINES:          # make the import fail as if not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DataError, match=r"Parquet file but no Parquet engine is installed; "
                                        r"pip install pyarrow \(or fastparquet\)"):
        reader.read_table(path)


_ENGINE = reader._parquet_engine()


@pytest.mark.skipif(_ENGINE is None, reason="optional dependency: no Parquet engine "
                                           "(pyarrow/fastparquet) installed")
def test_parquet_is_read_when_an_optional_engine_is_installed(tmp_path):
    tr, te = tmp_path / "train.parquet", tmp_path / "test.parquet"
    frame(60).to_parquet(tr)
    frame(21, seed=1).to_parquet(te)
    ds = prep.load_files(tr, te, target="label")
    ref = reference(tmp_path)
    assert ds.numeric == ref.numeric and ds.categorical == ref.categorical
    assert_array_equal(ds.classes, ref.classes)


# ---------------------------------------------------------------- any file names, one file split
def test_train_and_test_paths_with_any_names(tmp_path):
    tr = write(tmp_path / "a" / "listings_2024.tsv", frame(60), sep="\t")
    te = write(tmp_path / "b" / "holdout.txt", frame(21, seed=1))
    ds = prep.load_data(train_path=tr, test_path=te, target="label")
    same_dataset(ds, reference(tmp_path))
    assert ds.files == (str(tr), str(te)) and not ds.split_from_one_file
    with pytest.raises(DataError, match=r"either a data folder \(--data-dir\) or files"):
        prep.load_data(tmp_path, train_path=tr, target="label")
    with pytest.raises(DataError, match=r"needs its training file; pass --train"):
        prep.load_data(test_path=te, target="label")


def test_one_file_is_split_stratified_and_seeded(tmp_path):
    df = frame(200).assign(label=np.r_[np.zeros(140, int), np.ones(40, int), np.full(20, 2)])
    tr = write(tmp_path / "only.csv", df)
    ds = prep.load_data(train_path=tr, target="label", test_size=0.25, seed=3)
    assert ds.split_from_one_file and ds.test_size == 0.25 and ds.split_seed == 3
    assert len(ds.test) == 50 and len(ds.train) == 150
    assert ds.train.index.intersection(ds.test.index).empty
    assert_array_equal(ds.test["label"].value_counts().sort_index().to_numpy(), [35, 10, 5])
    again = prep.load_data(train_path=tr, target="label", test_size=0.25, seed=3)
    assert_array_equal(again.test.index, ds.test.index)
    other = prep.load_data(train_path=tr, target="label", test_size=0.25, seed=4)
    assert not np.array_equal(other.test.index, ds.test.index)
    banner = prep.split_banner(ds)
    assert banner.startswith("ONE FILE, SPLIT HERE") and "25%" in banner and str(tr) in banner
    assert prep.split_banner(reference(tmp_path)) is None


def test_folder_with_only_a_train_file(tmp_path):
    write(tmp_path / "train.csv.gz", frame(60), compression="gzip")
    with pytest.raises(DataError, match=r"test.csv not found .*--test-size 0.2"):
        prep.load_data(tmp_path, target="label")
    ds = prep.load_data(tmp_path, target="label", test_size=0.2)
    assert ds.split_from_one_file and len(ds.test) == 12
    with pytest.raises(DataError, match=r"no test file for .*--test-size 0.2"):
        prep.load_files(tmp_path / "train.csv.gz", target="label")


def test_split_errors_name_line_numbers_of_the_file(tmp_path):
    df = frame(40).astype(str)
    df.loc[17, "size"] = "abc"
    tr = write(tmp_path / "one.csv", df)
    with pytest.raises(DataError, match=r"column 'size' has non-numeric values in line 19 "):
        prep.load_data(train_path=tr, target="label", test_size=0.5, seed=0)


def test_split_too_small_and_split_with_a_test_file(tmp_path):
    tr = write(tmp_path / "one.csv", frame(60).assign(label=[0] * 59 + [1]))
    with pytest.raises(DataError, match=r"smallest class 1: 1 rows\) cannot be split with --test-size"):
        prep.load_data(train_path=tr, target="label", test_size=0.2)
    te = write(tmp_path / "t.csv", frame(5))
    with pytest.raises(DataError, match=r"--test-size splits a single file, but a test file was given"):
        prep.load_data(train_path=tr, test_path=te, target="label", test_size=0.2)


# ---------------------------------------------------------------- label types
@pytest.mark.parametrize("labels, classes", [
    ({0: "low", 1: "mid", 2: "high"}, np.array(["high", "low", "mid"], dtype=object)),
    ({0: "true", 1: "false", 2: "True"}, np.array([False, True])),
    ({0: 10, 1: 20, 2: 30}, np.array([10, 20, 30])),
])
def test_any_label_type_end_to_end(tmp_path, labels, classes):
    tr = write(tmp_path / "train.csv", frame(60, labels=labels))
    te = write(tmp_path / "test.csv", frame(21, seed=1, labels=labels))
    ds = prep.load_files(tr, te, target="label")
    assert_array_equal(ds.classes, classes)
    assert ds.classes.dtype == classes.dtype
    e = prep.encode(ds, seed=0)
    for split, df in (("train", e.train_df), ("val", e.val_df), ("test", ds.test)):
        y = e.y(split)
        assert y.dtype == np.int64 and set(np.unique(y)) <= set(range(len(classes)))
        assert_array_equal(ds.decode(y), df["label"].to_numpy())       # and back
    # the expected value of test row i, from the file itself
    raw = pd.read_csv(te, dtype=str)["label"]
    if classes.dtype == bool:
        expect = raw.str.lower().map({"true": True, "false": False}).to_numpy()
    elif classes.dtype == object:
        expect = raw.to_numpy(dtype=object)
    else:
        expect = raw.astype(int).to_numpy()
    assert_array_equal(ds.decode(e.y_test), expect)


def test_integer_labels_encode_exactly_as_sorted_codes(tmp_path):
    ds = prep.load_files(*pair(tmp_path), target="label")
    e = prep.encode(ds, seed=0)
    assert_array_equal(e.y_test, np.searchsorted(ds.classes, ds.test["label"].to_numpy()))
    assert ds.train["label"].dtype == np.int64


def test_label_type_mismatch_between_files(tmp_path):
    tr = write(tmp_path / "train.csv", frame(30, labels={0: "true", 1: "false", 2: "false"}))
    te = write(tmp_path / "test.csv", frame(4, labels={0: "true", 1: "maybe", 2: "false"}))
    with pytest.raises(DataError, match=r"labels other than true/false in line 3 \(e.g. 'maybe'\)"):
        prep.load_files(tr, te, target="label")
    te2 = write(tmp_path / "test2.csv", frame(4, labels={0: "low", 1: "mid", 2: "high"}))
    tr2 = write(tmp_path / "train2.csv", frame(30, labels={0: "low", 1: "mid", 2: "mid"}))
    with pytest.raises(DataError, match=r"classes high in line 4 never occur in"):
        prep.load_files(tr2, te2, target="label")


def test_unlabelled_test_file(tmp_path):
    tr = write(tmp_path / "train.csv", frame(60, labels={0: "low", 1: "mid", 2: "high"}))
    te = write(tmp_path / "deploy.csv", frame(21, seed=1).drop(columns="label"))
    ds = prep.load_files(tr, te, target="label")
    assert ds.test_labelled is False and "label" not in ds.test.columns
    e = prep.encode(ds, seed=0)
    assert e.y_test is None and e.X_test.shape == (21, e.X_train.shape[1])
    msg = prep.UNLABELLED_TEST_MESSAGE.format(file=te, target=ds.target)
    assert "\n" not in msg and "'label'" in msg and str(te) in msg
    assert prep.load_files(*pair(tmp_path / "p"), target="label").test_labelled is True
    # a test file missing a feature column is still an error
    te_bad = write(tmp_path / "bad.csv", frame(5).drop(columns=["label", "age"]))
    with pytest.raises(DataError, match=r"missing in .*bad.csv: 'age'"):
        prep.load_files(tr, te_bad, target="label")


# ---------------------------------------------------------------- columns that are not features
def odd_columns(n=300, seed=0):
    """A frame with one column of each kind screen_columns flags, and ordinary features."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return pd.DataFrame({
        "row_id": np.arange(1000, 1000 + n),                                     # increasing integers
        "shuffled_id": rng.permutation(n) + 1,                                   # unique, dense range
        "uuid": [f"{rng.integers(1 << 40):x}-{i}" for i in range(n)],           # unique strings
        "version": np.full(n, "v2"),                                             # constant
        "signup": pd.date_range("2021-03-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "street": [f"s{v}" for v in rng.integers(0, 120, n)],                    # > max(50, n/10) levels
        # ordinary features: continuous unique floats, a count, a small categorical
        "income": rng.lognormal(10, 1, n),
        "visits": rng.poisson(3, n),
        "plan": rng.choice(["basic", "pro", "team"], n),
        "y": y,
    })


def test_screen_columns_flags_each_kind_with_reason():
    df = odd_columns()
    table = prep.screen_columns(df, "y")
    got = dict(zip(table["column"], table["rule"]))
    assert got == {"row_id": "id_like", "shuffled_id": "id_like", "uuid": "id_like",
                   "version": "constant", "signup": "date", "street": "high_cardinality"}
    assert (table["action"] == "excluded").all()
    assert set(table["reason"]) == {prep.SCREEN_RULES[r] for r in got.values()}
    assert table.set_index("column").loc["street", "n_unique"] == df["street"].nunique()


def test_screen_columns_leaves_ordinary_features_alone():
    df = odd_columns()[["income", "visits", "plan", "y"]]
    assert prep.screen_columns(df, "y").empty
    small = odd_columns(n=30)[["uuid", "y"]]              # under ID_MIN_ROWS: not called an ID
    assert prep.screen_columns(small, "y").empty


def test_screened_columns_leave_the_inputs_and_keep_puts_them_back(tmp_path):
    df = odd_columns()
    tr, te = write(tmp_path / "train.csv", df.iloc[:240]), write(tmp_path / "test.csv", df.iloc[240:])
    ds = prep.load_files(tr, te, target="y")
    assert ds.numeric == ["income", "visits"] and ds.categorical == ["plan"]
    assert list(ds.train.columns) == ["income", "visits", "plan", "y"]
    assert list(ds.test.columns) == ["income", "visits", "plan", "y"]
    assert set(ds.excluded["column"]) == {"row_id", "shuffled_id", "uuid", "version", "signup", "street"}
    e = prep.encode(ds, seed=0)
    assert set(e.feature_source) == {"income", "visits", "plan"}
    kept = prep.load_files(tr, te, target="y", keep=["uuid", "row_id"])
    assert "row_id" in kept.numeric and "uuid" in kept.categorical
    flagged = kept.excluded.set_index("column")["action"]
    assert flagged["uuid"] == flagged["row_id"] == "kept (keep=)" and flagged["street"] == "excluded"
    with pytest.raises(DataError, match=r"--keep-columns names 'nope', which is not a feature column"):
        prep.load_files(tr, te, target="y", keep=["nope"])


def test_expand_dates_gives_numeric_parts(tmp_path):
    df = odd_columns()[["signup", "income", "y"]]
    tr, te = write(tmp_path / "train.csv", df.iloc[:240]), write(tmp_path / "test.csv", df.iloc[240:])
    ds = prep.load_files(tr, te, target="y", expand_dates=True)
    assert ds.numeric == ["signup_year", "signup_month", "signup_dayofweek", "income"]
    dates = pd.to_datetime(df["signup"])
    assert_array_equal(ds.test["signup_year"], dates.dt.year.iloc[240:].astype(float))
    assert_array_equal(ds.test["signup_month"], dates.dt.month.iloc[240:].astype(float))
    assert_array_equal(ds.train["signup_dayofweek"], dates.dt.day_of_week.iloc[:240].astype(float))
    assert ds.excluded.iloc[0]["action"].startswith("expanded into signup_year")


def test_everything_screened_out_is_an_error(tmp_path):
    df = odd_columns()[["uuid", "version", "y"]]
    tr, te = write(tmp_path / "train.csv", df.iloc[:240]), write(tmp_path / "test.csv", df.iloc[240:])
    with pytest.raises(DataError, match=r"every feature column was left out .*--keep-columns"):
        prep.load_files(tr, te, target="y")


# ---------------------------------------------------------------- wide data, bounded memory
def test_correlation_pairs_blocked_matches_brute_force_and_shows_top_k():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 600))                   # more columns than one block (CORR_BLOCK)
    X[:, 510] = X[:, 3] + 0.05 * rng.normal(size=200)  # a pair across blocks
    X[:, 7] = -X[:, 8] + 0.1 * rng.normal(size=200)
    X[:, 100] = 4.0                                    # constant
    names = [f"f{j}" for j in range(600)]
    corr, pairs = eda.correlation_pairs(X, names, threshold=0.25, top_k=30)
    full = np.corrcoef(X, rowvar=False)
    iu, ju = np.triu_indices(600, k=1)
    ok = np.isfinite(full[iu, ju]) & (np.abs(full[iu, ju]) >= 0.25)
    assert len(pairs) == ok.sum() == pairs.attrs["n_pairs_found"]
    assert {tuple(p) for p in pairs[["feature_a", "feature_b"]].to_numpy()} == \
        {(names[i], names[j]) for i, j in zip(iu[ok], ju[ok])}
    assert pairs.iloc[0][["feature_a", "feature_b"]].tolist() == ["f3", "f510"]
    assert corr.shape == (30, 30) and corr.attrs["n_features"] == 600
    assert {"f3", "f510", "f7", "f8"} <= set(corr.index) and "f100" not in corr.index
    np.testing.assert_allclose(corr.loc["f7", "f8"], full[7, 8], atol=1e-12)
    _, few = eda.correlation_pairs(X, names, threshold=0.25, max_pairs=5)
    assert len(few) == 5 and few.attrs["truncated"] and few.attrs["n_pairs_found"] == ok.sum()
    assert_array_equal(few["abs_r"].to_numpy(), pairs["abs_r"].to_numpy()[:5])


def test_predictive_power_caps_rows_and_features_and_says_so():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    df = pd.DataFrame({f"n{j}": rng.normal(size=n) for j in range(12)})
    df["n5"] += 2.0 * y                                   # the one that matters
    df["c"] = np.where(y == 1, "a", "b")
    df.loc[rng.random(n) < 0.3, "c"] = "z"                # a second, weaker informative column
    df["y"] = y
    num = [f"n{j}" for j in range(12)]
    full = eda.predictive_power(df, "y", num, ["c"], seed=0)
    assert not full.attrs["subsampled"] and full.attrs["n_scored"] == 13 and "note" not in full.attrs
    floor = eda.predictive_power(df, "y", num, ["c"], seed=0, max_cells=13 * 100)
    assert floor.attrs["n_rows_used"] == n and not floor.attrs["subsampled"]   # n < PP_MIN_ROWS
    few = eda.predictive_power(df, "y", num, ["c"], seed=0, max_features=3)
    assert few.attrs["n_scored"] == 3 and few["pps"].notna().sum() == 3
    assert {"n5", "c"} <= set(few.index[few["pps"].notna()])
    assert "only the 3 of 13 features" in few.attrs["note"]
    assert few.index[0] == full.index[0]
    assert few.loc[few.index[0], "pps"] == full.loc[full.index[0], "pps"]   # same score when scored


def test_predictive_power_subsamples_rows_above_the_cell_cap(monkeypatch):
    monkeypatch.setattr(eda, "PP_MIN_ROWS", 100)
    rng = np.random.default_rng(1)
    n = 1000
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "y": rng.integers(0, 2, n)})
    out = eda.predictive_power(df, "y", ["a", "b"], [], seed=0, max_cells=600)
    assert out.attrs["subsampled"] and out.attrs["n_rows_used"] == 300
    assert "sample of 300 of the 1,000 rows" in out.attrs["note"]


WIDE_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {repo!r})
    import numpy as np, pandas as pd
    import eda, prep
    out = {{}}
    for name, kw in {cases!r}:
        ds = prep.load_data({folder!r} + "/" + name, target="label")
        e = prep.encode(ds, seed=0)
        eda.structure_table(ds.train, "label")
        eda.missing_table(ds.train, ds.test)
        eda.class_distribution(ds.train["label"])
        corr, pairs = eda.correlation_pairs(e.X_train, e.feature_names)
        pp = eda.predictive_power(ds.train, "label", ds.numeric, ds.categorical)
        eda.dominance(pp)
        out[name] = {{"excluded": dict(zip(ds.excluded["column"], ds.excluded["rule"])),
                      "corr": list(corr.shape), "width": int(e.X_train.shape[1]),
                      "top": pp.index[0]}}
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
""")


def wide_frame(n=1200, n_num=940, n_cat=55, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, n_num)).round(3)
    cols = {"row_id": np.arange(n), "when": pd.date_range("2020-01-01", periods=n, freq="h")
            .strftime("%Y-%m-%d %H:%M"), "code": [f"c{v}" for v in rng.integers(0, 700, n)],
            "flag": np.ones(n)}
    cols.update({f"x{j}": base[:, j] for j in range(n_num)})
    cols.update({f"k{j}": rng.choice([f"l{i}" for i in range(4 + j % 12)], n) for j in range(n_cat)})
    cols["label"] = (base[:, 0] > 0).astype(int) + (base[:, 0] > 1)
    return pd.DataFrame(cols)


def test_wide_file_and_huge_categorical_stay_under_2gb(tmp_path):
    wide = wide_frame()
    assert wide.shape[1] == 1000
    write(tmp_path / "wide" / "train.csv", wide.iloc[:1000])
    write(tmp_path / "wide" / "test.csv", wide.iloc[1000:])
    rng = np.random.default_rng(2)
    n = 110_000
    levels = rng.permutation(np.r_[np.arange(100_000), rng.integers(0, 100_000, n - 100_000)])
    huge = pd.DataFrame({"shop": [f"s{v}" for v in levels], "x": rng.normal(size=n).round(3),
                         "z": rng.integers(0, 9, n), "label": rng.integers(0, 3, n)})
    assert huge["shop"].nunique() == 100_000
    write(tmp_path / "huge" / "train.csv", huge.iloc[:100_000])
    write(tmp_path / "huge" / "test.csv", huge.iloc[100_000:])
    script = WIDE_SCRIPT.format(repo=str(REPO), folder=str(tmp_path), cases=[("wide", {}), ("huge", {})])
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["maxrss_mb"] < 2048, out
    assert out["wide"]["excluded"] == {"row_id": "id_like", "when": "date", "code": "high_cardinality",
                                       "flag": "constant"}
    assert out["wide"]["corr"] == [eda.CORR_TOP_K, eda.CORR_TOP_K] and out["wide"]["top"] == "x0"
    assert out["huge"]["excluded"] == {"shop": "high_cardinality"} and out["huge"]["width"] == 2


# ---------------------------------------------------------------- CLI: options and sizes
def parse(*args):
    return run_all.validate(run_all.build_parser().parse_args(list(args)))


def one_line_2(capsys, argv, *needles):
    assert run_all.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("args, needles", [
    (["--iterations", str(10**12)], ["--iterations", "1,000,000,000,000", "at most 10,000,000"]),
    (["--hidden", "100000,100000"], ["--hidden: 100000,100000 needs about", "units per layer"]),
    (["--seed", str(2**32)], ["--seed", "0 to 4294967295", "4294967296"]),
    (["--test-size", "1.5"], ["--test-size: must be a fraction in (0, 1)"]),
    (["--sep", "ab"], ["--sep: expected one delimiter character"]),
    (["--keep-columns", "a,,b"], ["--keep-columns: empty column name"]),
])
def test_sizes_and_options_refused_before_any_work(tmp_path, capsys, args, needles):
    out = tmp_path / "out"
    one_line_2(capsys, [*args, "--out", str(out), "--parts", "A"], *needles)
    assert not out.exists()                    # refused before anything was written


def test_hidden_refusal_says_what_fits(monkeypatch):
    gib = 2**30
    with pytest.raises(run_all.UsageError, match=r"needs about .* but 8.0 GB is available; at most "
                                                 r"([0-9,]+) units per layer") as info:
        run_all.check_network_memory((100000, 100000), 1, 2, 0, "float32", 1, available=8 * gib)
    w = int(info.value.args[0].split("at most ")[1].split(" units")[0].replace(",", ""))
    budget = run_all.MEMORY_SHARE * 8 * gib
    assert run_all.network_bytes((w, w), 1, 2, 0, "float32") <= budget
    assert run_all.network_bytes((w + 1, w + 1), 1, 2, 0, "float32") > budget
    run_all.check_network_memory((64, 64), 12, 4, 40000, "float32", 1, available=8 * gib)   # fits


def test_file_options_conflicts(tmp_path, capsys):
    tr, te = pair(tmp_path)
    one_line_2(capsys, ["--train", str(tr), "--data-dir", str(tmp_path)], "--train/--data-dir")
    one_line_2(capsys, ["--test", str(te)], "--test:", "needs its training file")
    one_line_2(capsys, ["--train", str(tmp_path / "nope.csv")], "--train: file", "not found")
    one_line_2(capsys, ["--train", str(tr), "--test", str(te), "--test-size", "0.2"], "--test-size/--test")


def test_training_file_too_small_for_cross_validation(tmp_path, capsys):
    df = frame(40).assign(label=[0] * 20 + [1] * 17 + [2] * 3)
    tr, te = write(tmp_path / "tr.csv", df), write(tmp_path / "te.csv", frame(6))
    out = tmp_path / "out"
    one_line_2(capsys, ["--train", str(tr), "--test", str(te), "--target", "label", "--out", str(out),
                        "--parts", "A", "--threads", "1"],
               "class 2 has 3 row(s)", "5-fold cross-validation", "at least 5 rows")
    assert not (out / "config.json").exists()


def test_training_time_refusal_names_iterations_that_fit(tmp_path):
    tr, te = pair(tmp_path)
    cfg = parse("--train", str(tr), "--test", str(te), "--target", "label", "--iterations", "9000000",
                "--hidden", "4096,4096")
    ds = prep.load_data(train_path=tr, test_path=te, target="label")
    with pytest.raises(run_all.UsageError, match=r"--iterations: 9,000,000 .* hours per network; at "
                                                 r"most [0-9,]+ iterations fit"):
        run_all.check_sizes(cfg, ds, available=64 * 2**30)


def test_encoded_width_refusal_names_the_widest_columns(tmp_path):
    tr, te = pair(tmp_path)
    cfg = parse("--train", str(tr), "--test", str(te), "--target", "label")
    ds = prep.load_data(train_path=tr, test_path=te, target="label")
    with pytest.raises(run_all.UsageError, match=r"--drop: the encoded data \(81 rows x 5 columns\) "
                                                 r".*'colour' \(3 levels\); pass --drop colour"):
        run_all.check_sizes(cfg, ds, available=8000)


def test_encoded_width_refusal_of_numeric_columns_does_not_offer_an_empty_drop(tmp_path):
    tr = write(tmp_path / "tr.csv", frame(60).drop(columns="colour"))
    te = write(tmp_path / "te.csv", frame(21, seed=1).drop(columns="colour"))
    cfg = parse("--train", str(tr), "--test", str(te), "--target", "label")
    ds = prep.load_data(train_path=tr, test_path=te, target="label")
    with pytest.raises(run_all.UsageError) as e:
        run_all.check_sizes(cfg, ds, available=2000)
    assert "(81 rows x 2 columns)" in str(e.value) and "2 of the columns are numeric" in str(e.value)
    assert not str(e.value).rstrip().endswith("--drop"), str(e.value)


def test_cli_file_options_reach_the_loader(tmp_path):
    tr = write(tmp_path / "one.csv.gz", frame(100, labels={0: "low", 1: "mid", 2: "high"}),
               sep=";", compression="gzip")
    cfg = parse("--train", str(tr), "--test-size", "0.3", "--target", "label", "--sep", "semicolon",
                "--seed", "7", "--keep-columns", "age", "--expand-dates")
    assert cfg.sep == ";" and cfg.test_size == 0.3 and cfg.keep_columns == ("age",) and cfg.expand_dates
    dataset, data = run_all.load(cfg)
    assert dataset.split_from_one_file and dataset.split_seed == 7 and len(dataset.test) == 30
    assert list(dataset.classes) == ["high", "low", "mid"]
    assert data.y_test.shape == (30,)
    assert parse("--sep", "tab").sep == "\t" and parse("--sep", "\\t").sep == "\t"


def test_large_training_files_are_held_in_float32_and_categories(tmp_path, monkeypatch):
    """From ``NARROW_ROWS`` training rows on (float32 networks), the main process holds the
    workers' float32 matrices, not float64 copies, and text columns as categoricals with
    the same values; below it, and with --dtype float64, nothing changes."""
    import shared_arrays
    tr = write(tmp_path / "tr.csv", frame(300))
    te = write(tmp_path / "te.csv", frame(90, seed=1))
    args = ("--train", str(tr), "--test", str(te), "--target", "label")
    ds_wide, wide = run_all.load(parse(*args))
    assert wide.X_train.dtype == np.float64 and not isinstance(ds_wide.train["colour"].dtype,
                                                                pd.CategoricalDtype)
    monkeypatch.setattr(run_all, "NARROW_ROWS", 300)
    ds, data = run_all.load(parse(*args))
    for split in ("train", "val", "test"):
        assert data.X(split).dtype == np.float32
        assert_array_equal(data.X(split), wide.X(split).astype(np.float32))
    assert data.arrays(np.float32, empty=shared_arrays.empty).X_train is data.X_train   # no copy
    for name in ("train", "test"):
        got, want = getattr(ds, name)["colour"], getattr(ds_wide, name)["colour"]
        assert isinstance(got.dtype, pd.CategoricalDtype)
        assert list(got.astype(object)) == list(want.astype(object))
    assert any("held in float32" in n for n in run_all.data_notes(ds))
    _, wide64 = run_all.load(parse(*args, "--dtype", "float64"))
    assert wide64.X_train.dtype == np.float64
