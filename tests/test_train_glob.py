"""--train with a glob of parts (reader.read_file on a pattern; cluster.load_fitting_rows).

The parts of a glob are read as the one file their concatenation in sorted path order
would be; with --scheduler the workers load the fitting rows from the parts themselves
and Part B's numbers stay those of the run without a cluster. Small synthetic data,
written to tmp_path. Dask and pyarrow are optional for users (the tests skip without
them on a developer's machine) but installed by CI from requirements-cluster.txt, where
the tests fail instead of skipping."""
import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import prep
import reader
import run_all
from reader import DataError

REPO = Path(__file__).resolve().parents[1]


def _frame(n, seed, labels="strings"):
    """Numbers (a missing cell, integers), a categorical column whose first rows are all
    numbers (its first part reads as numbers on its own), a text category and labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).round(4)
    x[3] = np.nan
    code = np.where(np.arange(n) < n // 3, rng.integers(1, 4, n).astype(str),
                    rng.choice(["north", "south", "east"], n))
    df = pd.DataFrame({"x": x, "k": rng.integers(0, 50, n), "code": code,
                       "room": rng.choice(["flat", "house", "7"], n), "w": rng.normal(size=n).round(3)})
    score = df["x"].fillna(0) + (df["room"] == "house") - 0.5 * (df["code"] == "east")
    if labels == "strings":
        df["label"] = np.where(score > 0.4, "high", np.where(score < -0.4, "low", "mid"))
    elif labels == "ints":
        df["label"] = np.digitize(score, [-0.4, 0.4])
    else:
        df["label"] = np.where(score > 0, "True", "false")
    return df


def _write(tmp_path, df, n_parts=3, fmt="csv"):
    """``df`` as one file and as ``n_parts`` parts (part-0.csv ...): (file, pattern)."""
    one = tmp_path / f"all.{fmt}"
    (tmp_path / "parts").mkdir(exist_ok=True)
    write = (lambda d, p: d.to_csv(p, index=False)) if fmt == "csv" else \
        (lambda d, p: d.reset_index(drop=True).to_parquet(p, index=False))
    write(df, one)
    for i, rows in enumerate(np.array_split(np.arange(len(df)), n_parts)):
        write(df.iloc[rows], tmp_path / "parts" / f"part-{i}.{fmt}")
    return one, str(tmp_path / "parts" / f"part-*.{fmt}")


@pytest.mark.parametrize("labels", ["strings", "ints", "true/false"])
def test_a_glob_reads_as_the_parts_concatenated(tmp_path, labels):
    one, pattern = _write(tmp_path, _frame(240, 0, labels))
    single = reader.read_file(one, text_columns=["label"], na_values=["7"])
    parts = reader.read_file(pattern, text_columns=["label"], na_values=["7"])
    pd.testing.assert_frame_equal(parts.frame, single.frame)
    assert parts.frame["code"].dtype == single.frame["code"].dtype != np.float64
    assert [n for _, n in parts.parts] == [80, 80, 80]
    assert [note.replace(pattern, "F") for note in parts.notes] == \
        [note.replace(str(one), "F") for note in single.notes] and single.notes
    # and as a dataset: the same columns, classes and encoded split
    _frame(90, 1, labels).to_csv(tmp_path / "test.csv", index=False)
    a = prep.load_files(one, tmp_path / "test.csv", target="label")
    b = prep.load_files(pattern, tmp_path / "test.csv", target="label")
    pd.testing.assert_frame_equal(a.train, b.train)
    assert (a.numeric, a.categorical) == (b.numeric, b.categorical) and a.categorical
    np.testing.assert_array_equal(a.classes, b.classes)
    ea, eb = prep.encode(a, seed=2), prep.encode(b, seed=2)
    np.testing.assert_array_equal(ea.X_train, eb.X_train)
    np.testing.assert_array_equal(ea.y_val, eb.y_val)


def test_a_glob_that_matches_nothing_says_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*.csv")
    with pytest.raises(DataError, match=r"nothing-\*\.csv matches no file; check the pattern"):
        reader.read_file(pattern)
    with pytest.raises(run_all.UsageError, match=r"--train: the pattern .*nothing-\*\.csv.* "
                                                  r"matches no file"):
        run_all.validate(run_all.build_parser().parse_args(["--train", pattern]))


def test_a_part_with_other_columns_is_named(tmp_path):
    df = _frame(60, 0)
    _, pattern = _write(tmp_path, df)
    parts = tmp_path / "parts"
    df.drop(columns=["room"]).to_csv(parts / "part-3.csv", index=False)
    df[["k", "x", *df.columns[2:]]].to_csv(parts / "part-4.csv", index=False)
    with pytest.raises(DataError) as err:
        reader.read_file(pattern)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{parts / 'part-3.csv'}: its columns differ") \
        and "part-0.csv" in msg and "missing 'room'" in msg
    (parts / "part-3.csv").unlink()
    with pytest.raises(DataError, match=r"part-4\.csv: its columns differ .*the same columns "
                                        r"in another order"):
        reader.read_file(pattern)


def test_parts_of_another_delimiter_or_without_header_are_named(tmp_path):
    df = _frame(30, 0)
    _, pattern = _write(tmp_path, df, n_parts=2)
    df.to_csv(tmp_path / "parts" / "part-2.csv", index=False, sep=";")
    with pytest.raises(DataError, match=r"part-2\.csv reads as one column"):
        reader.read_file(pattern)
    (tmp_path / "parts" / "part-2.csv").write_text("")
    with pytest.raises(DataError, match=r"part-2\.csv is empty \(0 bytes\); every part"):
        reader.read_file(pattern)


def test_a_glob_is_memory_planned_before_any_part_is_read(tmp_path, monkeypatch):
    _, pattern = _write(tmp_path, _frame(300, 0))
    monkeypatch.setattr(reader, "available_memory", lambda: 20_000)
    calls = []
    monkeypatch.setattr(reader, "_read_csv_columns", lambda *a, **k: calls.append(a))
    with pytest.raises(DataError, match=r"part-\*\.csv matches 3 files holding .* of text, which "
                                        r"need about .* of memory to read"):
        reader.read_file(pattern)
    assert calls == []


def test_progress_is_reported_part_by_part(tmp_path, monkeypatch):
    _, pattern = _write(tmp_path, _frame(60, 0))
    monkeypatch.setattr(reader, "PROGRESS_SECONDS", 0.0)
    lines = []
    reader.read_file(pattern, progress=lines.append)
    assert any(f"reading {pattern}: 2 of 3 parts" in line for line in lines)
    assert lines[-1].startswith(f"read {pattern}: 60 rows from 3 parts")


def _needs(module):
    if os.environ.get("CI"):
        return __import__(module)           # CI installs requirements-cluster.txt: fail, never skip
    return pytest.importorskip(module)


def test_parquet_parts_read_as_one_parquet_file(tmp_path):
    _needs("pyarrow")
    df = _frame(120, 0)
    one, pattern = _write(tmp_path, df, fmt="parquet")
    pd.testing.assert_frame_equal(reader.read_file(pattern).frame, reader.read_file(one).frame)
    other = df.iloc[:10].assign(k=df["k"].iloc[:10].astype(str) + "x")
    other.to_parquet(tmp_path / "parts" / "part-9.parquet", index=False)
    with pytest.raises(DataError, match=r"part-9\.parquet: column 'k' holds text, but in .*part-0"
                                        r"\.parquet, the first part of .*, it holds numbers"):
        reader.read_file(pattern)
    df.iloc[:5].to_csv(tmp_path / "parts" / "part-9.parquet.csv", index=False)
    with pytest.raises(DataError, match="matches Parquet and CSV files"):
        reader.read_file(str(tmp_path / "parts" / "part-*"))


def test_parquet_parts_without_an_engine_say_what_to_install(tmp_path, monkeypatch):
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "part-0.parquet").write_bytes(b"PAR1 not really")
    for name in reader.PARQUET_ENGINES:          # make the import fail as if not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DataError, match=r"Parquet file but no Parquet engine is installed; "
                                        r"pip install pyarrow"):
        reader.read_file(str(parts / "*.parquet"))


# ---------------------------------------------------------------- run_all: one file, parts, cluster
def _run(tmp_path, tag, train, *extra):
    out = tmp_path / tag
    done = subprocess.run([sys.executable, str(REPO / "run_all.py"), "--train", str(train),
                           "--target", "label", "--quick", "--parts", "B", "--activations",
                           "relu", "--iterations", "30", "--dtype", "float64",
                           "--threads", "1", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same data as one file and as parts, with a held-out test share (the parts hold
    test, validation and fitting rows): the runs without a cluster."""
    tmp = tmp_path_factory.mktemp("glob")
    one, pattern = _write(tmp, _frame(400, 5), n_parts=4)
    return tmp, pattern, {tag: _run(tmp, tag, train, "--test-size", "0.25")[1]
                          for tag, train in (("one", one), ("parts", pattern))}


def test_run_all_on_parts_is_the_run_on_one_file(runs):
    _, _, metrics = runs
    a, b = metrics["one"], metrics["parts"]
    for key in ("n_train", "n_fit", "n_val", "n_test", "numeric", "categorical", "classes",
                "feature_names"):
        assert a["data"][key] == b["data"][key], key
    assert a["partB"]["final"] == b["partB"]["final"]


@pytest.fixture(scope="module")
def client():
    _needs("distributed")
    import cluster
    c = cluster.connect("local:2")
    yield c
    cluster.close(c)


def test_on_a_cluster_the_workers_load_the_parts_and_the_numbers_stay(runs, client):
    tmp, pattern, metrics = runs
    stdout, on_cluster = _run(tmp, "cluster", pattern, "--test-size", "0.25",
                              "--scheduler", client.scheduler.address)
    assert "cluster: Part B trains on 2 Dask worker(s)" in stdout
    n_fit = metrics["parts"]["data"]["n_fit"]
    assert f"the workers loaded the {n_fit:,} fitting rows from the 4 parts" in stdout
    assert "sent from this process" not in stdout
    here = metrics["parts"]["partB"]["final"]
    there = on_cluster["partB"]["final"]
    assert len(here) == len(there) == 1
    for a, b in zip(here, there):
        assert a["train_acc"] == b["train_acc"] and a["val_acc"] == b["val_acc"]
        assert abs(a["final_loss"] - b["final_loss"]) < 1e-10
        assert abs(a["final_val_loss"] - b["final_val_loss"]) < 1e-10


def _training_files(tmp_path, labels="strings", na_values=None, drop=None):
    """A glob of 3 parts with a separate test file, read, encoded, and what the workers
    need to load its fitting rows (``training.training_files``)."""
    import training
    _, pattern = _write(tmp_path, _frame(300, 7, labels), n_parts=3)
    _frame(60, 8, labels).to_csv(tmp_path / "test.csv", index=False)
    ds = prep.load_files(pattern, tmp_path / "test.csv", target="label", na_values=na_values,
                         drop=drop)
    data = prep.encode(ds, seed=3)
    cfg = SimpleNamespace(train=pattern, sep=None, na_values=na_values, drop=drop)
    return training.training_files(SimpleNamespace(cfg=cfg, dataset=ds, data=data)), data


def _net():
    import mlp
    return mlp.MLP(hidden=(8,), n_iter=15, lr=0.3, dtype="float64", seed=1)


def _max_diff(a, b):
    return max(float(np.max(np.abs(p - q))) for p, q in zip(a.weights_ + a.biases_,
                                                           b.weights_ + b.biases_))


@pytest.mark.parametrize("labels, na_values, drop", [("strings", None, None),
                                                     ("ints", ["7"], ["w"]),
                                                     ("true/false", None, ["room"])])
def test_the_workers_hold_the_fitting_rows_one_partition_each(client, tmp_path, labels,
                                                              na_values, drop):
    import cluster
    files, d = _training_files(tmp_path, labels, na_values, drop)
    assert cluster.unreadable(client, files) is None
    parts = cluster.load_fitting_rows(client, files, d.X_train, d.y_train)
    assert parts.n == len(d.y_train) and len(parts.futures) == 2
    # sent: the preprocessor to each worker, the paths, one bit a row; no row
    assert parts.sent < 2 * len(pickle.dumps(d.preprocessor)) + 1000
    on_cluster = cluster.fit(_net(), parts, d.X_val, d.y_val)
    assert _max_diff(on_cluster, _net().fit(d.X_train, d.y_train, d.X_val, d.y_val)) < 1e-10


def test_parts_the_workers_cannot_read_are_sent_instead(client, tmp_path, capsys):
    import cluster
    import training
    files, d = _training_files(tmp_path)
    gone = replace(files, paths=files.paths[:2] + (str(tmp_path / "elsewhere.csv"),))
    assert "cannot read" in cluster.unreadable(client, gone)
    other = replace(files, sizes=(files.sizes[0] + 1,) + files.sizes[1:])
    assert "bytes in" in cluster.unreadable(client, other)
    model = training.fit_job("relu", _net().get_params(), d.X_train, d.y_train, d.X_val,
                             d.y_val, scheduler=client.scheduler.address, files=gone)
    assert "the fitting rows were sent from this process" in capsys.readouterr().out
    assert _max_diff(model, _net().fit(d.X_train, d.y_train, d.X_val, d.y_val)) < 1e-10


def test_a_part_that_reads_otherwise_on_the_workers_is_an_error(client, tmp_path):
    import cluster
    files, d = _training_files(tmp_path)
    part = Path(files.paths[1])
    df = pd.read_csv(part)
    df.assign(x=df["x"] + 1).to_csv(part, index=False)
    with pytest.raises(ValueError, match=r"part-1\.csv: the workers encode other rows from it"):
        cluster.load_fitting_rows(client, files, d.X_train, d.y_train)
    pd.concat([df, df.iloc[:1]]).to_csv(part, index=False)
    with pytest.raises(ValueError, match=r"hold 301 rows on the workers, but 300"):
        cluster.load_fitting_rows(client, files, d.X_train, d.y_train)
