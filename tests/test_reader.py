"""The reader keeps the data as written: only the empty field is missing unless the caller
names markers (``na_values``, to become ``--na-values``), labels keep their exact values
(integers stay integers), text stays the text of the file, and a note says when values
were interpreted. Every file is written here, small; the chunked reader is exercised by
shrinking ``reader.CHUNK_BYTES`` and ``reader.SNIFF_BYTES`` instead of writing large files."""
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal

import prep
import reader
from prep import DataError

PANDAS_DEFAULT_MARKERS = ["NA", "N/A", "n/a", "null", "NULL", "None", "nan", "NaN", "-nan", "#N/A",
                          "<NA>", "-1.#IND", "1.#QNAN"]


def regions(n=400, seed=0):
    """A frame whose categorical ``region`` holds 36% (144 of 400) cells 'NA' (North America)."""
    rng = np.random.default_rng(seed)
    n_na = round(0.36 * n)
    reg = np.array(["NA"] * n_na + ["EU"] * ((n - n_na) // 2) + ["AS"] * (n - n_na - (n - n_na) // 2))
    rng.shuffle(reg)
    return pd.DataFrame({"x": rng.normal(size=n).round(3), "region": reg,
                         "label": rng.integers(0, 2, n)})


def write(path, df):
    df.to_csv(path, index=False)
    return path


def pair(tmp_path, train, test=None):
    test = train.iloc[:30] if test is None else test
    return write(tmp_path / "train.csv", train), write(tmp_path / "test.csv", test)


def same_values(got, want, what=""):
    """Equal arrays, NaN equal to NaN (also in object arrays of text)."""
    got = np.asarray(got, dtype=want.dtype)
    assert_array_equal(pd.isna(got), pd.isna(want), err_msg=f"{what}: missing cells differ")
    assert_array_equal(got[~pd.isna(want)], want[~pd.isna(want)], err_msg=what)


def naive_read(path):
    """The slow reference: every cell read as text, only the empty field missing, then each
    column as float64 when every present cell parses as a number."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    out = {}
    for c in raw.columns:
        num = pd.to_numeric(raw[c], errors="coerce")
        out[c] = num.to_numpy(np.float64) if (num.notna() == raw[c].notna()).all() else \
            raw[c].to_numpy(dtype=object)
    return out


# ---------------------------------------------------------------- only the empty field is missing
def test_na_is_a_category_not_a_missing_value(tmp_path):
    df = regions()
    ds = prep.load_files(*pair(tmp_path, df), target="label")
    assert ds.categorical == ["region"]
    assert (ds.train["region"] == "NA").sum() == 144 and ds.train["region"].notna().all()
    assert ds.notes == ()
    e = prep.encode(ds, seed=0)
    assert "region=NA" in e.feature_names


def test_pandas_default_markers_stay_text_and_empty_fields_are_missing(tmp_path):
    n = 3 * len(PANDAS_DEFAULT_MARKERS)
    text = (["", "a"] + PANDAS_DEFAULT_MARKERS * 3)[:n]
    df = pd.DataFrame({"x": np.arange(n, dtype=float), "word": text, "label": np.arange(n) % 2})
    tr, te = pair(tmp_path, df)
    ds = prep.load_files(tr, te, target="label")
    words = ds.train["word"]
    assert words.isna().sum() == 1 and pd.isna(words.iloc[0])
    assert set(words.dropna()) == {"a", *PANDAS_DEFAULT_MARKERS[:n - 2]}
    raw = reader.read_table(tr)
    assert raw["word"].isna().sum() == 1


def test_labels_na_eu_as_are_classes(tmp_path):
    df = regions().assign(label=lambda d: d["region"])
    ds = prep.load_files(*pair(tmp_path, df), target="label")
    assert list(ds.classes) == ["AS", "EU", "NA"]
    assert (ds.train["label"] == "NA").sum() == 144


def test_na_values_marks_cells_missing_and_says_how_many(tmp_path):
    df = regions()
    df["x"] = df["x"].astype(object)
    df.loc[[3, 7], "x"] = "NA"                      # a numeric column with the marker
    df.loc[[5], "x"] = -999                         # a numeric marker
    tr, te = pair(tmp_path, df)
    ds = prep.load_files(tr, te, target="label", na_values=["NA", "-999"])
    assert ds.numeric == ["x"] and ds.train["x"].isna().sum() == 3
    assert ds.train["region"].isna().sum() == 144
    train_notes = [n for n in ds.notes if n.startswith(str(tr))]
    assert len(train_notes) == 2 and all("\n" not in n for n in ds.notes)
    assert "3 of 400 cells of column 'x' read as missing" in train_notes[0]
    assert "144 of 400 cells of column 'region' read as missing" in train_notes[1]
    assert "'NA', '-999'" in train_notes[1]
    # the same markers in the text of a Parquet-free, plain read
    assert reader.read_table(tr, na_values=["NA"])["region"].isna().sum() == 144
    with pytest.raises(ValueError, match=r"na_values='NA' must be a list of strings"):
        reader.read_table(tr, na_values="NA")


def test_a_missing_marker_in_a_numeric_column_names_na_values(tmp_path):
    df = regions()
    df["x"] = df["x"].astype(object)
    df.loc[[3, 7], "x"] = "NA"
    tr, te = pair(tmp_path, df)
    with pytest.raises(DataError, match=r"column 'x' has non-numeric values in lines 5, 9 \(e.g. 'NA'\); "
                                        r"fix the CSV, pass --na-values NA if 'NA' marks a missing "
                                        r"value, or pass --categorical x"):
        prep.load_files(tr, te, target="label")
    df.loc[[3], "x"] = "abc"                        # no marker word: no such hint
    tr, te = pair(tmp_path, df)
    with pytest.raises(DataError, match=r"\(e.g. 'abc'\); fix the CSV or pass --categorical x"):
        prep.load_files(tr, te, target="label")


# ---------------------------------------------------------------- labels keep their exact values
def test_integer_labels_stay_exact_integers(tmp_path):
    big = 2**53
    df = regions(n=60).assign(label=lambda d: np.where(np.arange(60) % 3 == 0, big,
                                                       np.where(np.arange(60) % 3 == 1, big + 1,
                                                                -(2**63))))
    tr, te = pair(tmp_path, df)
    assert tr.read_text().count(str(big + 1)) == 20            # as written in the file
    ds = prep.load_files(tr, te, target="label")
    assert ds.classes.dtype == np.int64
    assert list(ds.classes) == [-(2**63), big, big + 1]        # three classes, not two
    e = prep.encode(ds, seed=0)
    assert_array_equal(ds.decode(e.y_test), df["label"].iloc[:30].to_numpy())
    assert ds.notes == ()


def test_interpreted_labels_get_a_note(tmp_path):
    df = regions(n=60).assign(label=["1.0", "2", "+3"] * 20)
    ds = prep.load_files(*pair(tmp_path, df), target="label")
    assert list(ds.classes) == [1, 2, 3] and ds.classes.dtype == np.int64
    assert any("40 written otherwise than as plain integers were read as the integers they write "
               "(e.g. '1.0' as 1)" in n for n in ds.notes), ds.notes
    df = regions(n=60).assign(label=["TRUE", "false"] * 30)
    ds = prep.load_files(*pair(tmp_path, df), target="label")
    assert list(ds.classes) == [False, True]
    assert any("read as true/false from the text 'TRUE', 'false'" in n for n in ds.notes), ds.notes
    df = regions(n=60).assign(label=[" low", "high"] * 30)
    ds = prep.load_files(*pair(tmp_path, df), target="label")
    assert list(ds.classes) == ["high", "low"]
    assert any("30 had spaces around them, which were removed (e.g. ' low')" in n for n in ds.notes)


def test_labels_beyond_int64_keep_their_text(tmp_path):
    labels = [str(2**64), str(2**64 + 1)] * 30
    ds = prep.load_files(*pair(tmp_path, regions(n=60).assign(label=labels)), target="label")
    assert list(ds.classes) == [str(2**64), str(2**64 + 1)]
    assert any("whole numbers beyond 64-bit integers" in n for n in ds.notes)


# ---------------------------------------------------------------- text stays the text of the file
def test_test_file_columns_are_text_where_training_ones_are(tmp_path):
    train = pd.DataFrame({"zip": ["02134", "A1", "B2", "02134", "C3", "A1"] * 10,
                          "x": np.arange(60.0), "label": [0, 1] * 30})
    test = pd.DataFrame({"zip": ["02134", "02134", "00501"], "x": [1.0, 2.0, 3.0], "label": [0, 1, 0]})
    tr, te = pair(tmp_path, train, test)
    ds = prep.load_files(tr, te, target="label")
    assert ds.categorical == ["zip"]
    assert list(ds.test["zip"]) == ["02134", "02134", "00501"]          # not 2134, 501
    forced = prep.load_files(*pair(tmp_path, pd.DataFrame({"v": ["1.50", "2.0", "1.50"] * 10,
                                                          "x": np.arange(30.0), "label": [0, 1, 1] * 10})),
                             target="label", categorical=["v"])
    assert set(forced.train["v"]) == {"1.50", "2.0"}


def test_a_column_with_numbers_first_and_text_later_keeps_its_text(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "SNIFF_BYTES", 300)       # the sample sees numbers only
    monkeypatch.setattr(reader, "CHUNK_BYTES", 200)       # many chunks of 1,000 rows
    n = 5000
    mixed = np.where(np.arange(n) < 1500, "1.50", "word").astype(object)
    flags = np.where(np.arange(n) < 2500, "1", np.where(np.arange(n) % 2, "True", "False"))
    df = pd.DataFrame({"mixed": mixed, "flag": flags, "x": np.arange(n) / 7, "label": np.arange(n) % 2})
    tr = write(tmp_path / "train.csv", df)
    raw = reader.read_table(tr)
    assert raw["mixed"].iloc[0] == "1.50" and raw["mixed"].iloc[-1] == "word"     # as written
    assert list(raw["flag"].iloc[[0, 2501, 2502]]) == ["1", "True", "False"]
    assert raw["x"].dtype == np.float64
    ref = naive_read(tr)
    for c in ("mixed", "flag", "x"):
        same_values(raw[c].to_numpy(), ref[c], c)


def test_chunked_reader_matches_the_naive_reference(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    n = 3000
    df = pd.DataFrame({"f": rng.normal(size=n) * 10.0 ** rng.integers(-30, 30, n),   # 17 digits
                       "i": rng.integers(-10**15, 10**15, n),
                       "gap": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
                       "word": rng.choice(["a", "b", "NA", "null", ""], n),
                       "label": rng.integers(0, 3, n)})
    tr = write(tmp_path / "train.csv", df)
    ref = naive_read(tr)
    whole = reader.read_table(tr)
    monkeypatch.setattr(reader, "CHUNK_BYTES", 2000)
    chunked = reader.read_table(tr)
    for got in (whole, chunked):
        assert list(got.columns) == list(ref)
        for c in ref:
            same_values(got[c].to_numpy(), ref[c], c)
        assert got["f"].dtype == np.float64 and got["i"].dtype == np.int64
    assert_array_equal(chunked["i"].to_numpy(), df["i"].to_numpy())                 # exact integers


def test_more_fields_than_the_header_is_an_error_not_a_shifted_table(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("a,b,label\n1,2,0,9\n3,4,1,9\n")
    with pytest.raises(DataError, match=r"not a valid CSV with the comma delimiter \(detected\) \(a data "
                                        r"line has more fields than the header's 3\)"):
        reader.read_table(path)
    path.write_text("a,b,label\n1,2,0\n3,4,1,9\n")
    with pytest.raises(DataError, match=r"Expected 3 fields in line 3, saw 4"):
        reader.read_table(path)


def test_course_data_reads_as_the_naive_reference(shared_data_dir):
    for name in ("train.csv", "test.csv"):
        path = shared_data_dir / name
        ref, got = naive_read(path), reader.read_table(path)
        for c in ref:
            same_values(got[c].to_numpy(), ref[c], c)
    assert prep.load_csv_pair(shared_data_dir).notes == ()
