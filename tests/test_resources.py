"""Bounded resources, each limit one clear line: decompressed size and memory checked
before work (and while reading, for archives that do not say or lie), a MemoryError while
reading as a DataError with a hint, a reader that holds numbers as numbers (memory
measured with tracemalloc against reading every cell as a string), progress while
reading, long CSV fields, extreme values, encoded feature names that never collide, and
zips with folder entries.

Every file is made here: bombs are written small and streamed (gzip/bz2 of repeated
lines), the available memory is set through ``reader.available_memory`` or, in one
subprocess, a real address-space limit (``RLIMIT_AS``)."""
import bz2
import gzip
import json
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal

import prep
import reader
from prep import DataError

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def small(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n).round(3), "kind": rng.choice(["a", "b"], n),
                         "label": np.arange(n) % 2})


def write(path, df):
    df.to_csv(path, index=False)
    return path


def bomb(path, mib, opener=gzip.open, tail=None):
    """A compressed CSV of ``mib`` MiB of ``1,2,3`` rows, written in blocks (never held whole).
    ``tail``: a second gzip member appended (its trailer then states the tail's size only)."""
    block = b"1,2,3\n" * (MIB // 6)
    with opener(path, "wb") as fh:
        fh.write(b"a,b,label\n")
        for _ in range(mib):
            fh.write(block)
    if tail is not None:
        with open(path, "ab") as fh:
            fh.write(gzip.compress(tail))
    return path


def one_line(exc):
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


# ---------------------------------------------------------------- size and memory before work
def test_gzip_bomb_is_refused_before_any_parsing(tmp_path, monkeypatch):
    path = bomb(tmp_path / "train.csv.gz", 64)
    assert path.stat().st_size < MIB                   # 64 MiB of text in a small file
    monkeypatch.setattr(reader, "available_memory", lambda: 256 * MIB)

    def no_parsing(*args, **kwargs):
        raise AssertionError("the file was parsed before the size check")
    monkeypatch.setattr(reader, "_chunks", no_parsing)
    with pytest.raises(DataError) as info:
        reader.read_table(path)
    text = one_line(info)
    assert f"{path} holds 64 MB of text once decompressed, which needs about " in text
    assert "but 256 MB is available; free memory, read a sample of the rows, or pass --drop" in text


def test_bomb_that_does_not_state_its_size_is_stopped_early(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "available_memory", lambda: 32 * MIB)
    multi = bomb(tmp_path / "train.csv.gz", 16, tail=b"1,2,3\n")      # trailer: 6 bytes
    plain_bz2 = bomb(tmp_path / "train.csv.bz2", 16, opener=bz2.open)   # no stated size
    read = []
    real = reader._Meter.readinto

    def counting(self, buffer):
        n = real(self, buffer)
        read.append(self.n_bytes)
        return n
    for path in (multi, plain_bz2):
        read.clear()
        monkeypatch.setattr(reader._Meter, "readinto", counting)
        with pytest.raises(DataError) as info:
            reader.read_table(path)
        text = one_line(info)
        assert f"{path} holds more than " in text and "(reading stopped there)" in text
        assert "but 32 MB is available" in text
        assert max(read) < 6 * MIB, max(read)          # stopped near the limit, not at 16 MiB


def test_memory_error_while_reading_or_validating_is_a_data_error(tmp_path, monkeypatch):
    tr, te = write(tmp_path / "train.csv", small()), write(tmp_path / "test.csv", small(9))
    real = reader._as_column

    def runs_out(values, *args):
        if values.dtype.kind == "f":
            raise MemoryError("Unable to allocate 1.0 TiB")
        return real(values, *args)
    monkeypatch.setattr(reader, "_as_column", runs_out)
    with pytest.raises(DataError) as info:
        prep.load_files(tr, te, target="label")
    assert one_line(info) == (f"{tr}: ran out of memory while reading it (0 rows read); free memory, "
                              "read a sample of the rows, or pass --drop with the columns you can spare")
    monkeypatch.setattr(reader, "_as_column", real)

    def validate_runs_out(*args, **kwargs):
        raise MemoryError()
    monkeypatch.setattr(prep, "validate_frames", validate_runs_out)
    with pytest.raises(DataError, match=r"^ran out of memory while validating .*train.csv and "
                                        r".*test.csv; free memory"):
        prep.load_files(tr, te, target="label")


RLIMIT_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {repo!r})
    import prep, reader
    mapped = reader._proc_kib("/proc/self/status", "VmSize")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + {extra}, resource.RLIM_INFINITY))
    if {blind}:
        reader.available_memory = lambda: None        # no plan: the reader meets the real limit
    try:
        reader.read_table({path!r})
        print(json.dumps({{"ok": True}}))
    except prep.DataError as e:
        print(json.dumps({{"error": str(e)}}))
""")


@pytest.mark.parametrize("blind", [False, True])
def test_a_real_memory_limit_gives_one_line(tmp_path, blind):
    path = bomb(tmp_path / "train.csv.gz", 64)        # 11 million rows: 268 MB as float64
    script = RLIMIT_SCRIPT.format(repo=str(REPO), extra=160 * MIB, blind=blind, path=str(path))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if blind:        # the address-space limit is hit while reading: MemoryError -> DataError
        assert out["error"].startswith(f"{path}: ran out of memory while reading it ("), out
    else:            # available_memory sees the limit: refused before reading
        assert f"{path} holds 64 MB of text once decompressed" in out["error"], out


# ---------------------------------------------------------------- numbers held as numbers
def numeric_csv(path, n, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"x{j}": rng.normal(size=n).round(7) for j in range(6)})   # distinct values
    df["city"] = rng.choice(["Lyon", "Paris", "Nice"], n)
    df["label"] = rng.integers(0, 3, n)
    return write(path, df)


def traced_peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reader_holds_numbers_not_strings_and_its_estimate_covers_it(tmp_path):
    n = 100_000
    tr = numeric_csv(tmp_path / "train.csv", n)
    te = numeric_csv(tmp_path / "test.csv", 100, seed=1)
    prep.load_files(tr, te, target="label")                     # imports and caches warm
    size = tr.stat().st_size
    peak = traced_peak(lambda: prep.load_files(tr, te, target="label"))
    # the old reader, reading only: a Python str per cell (dtype=object; dtype=str would be
    # Arrow-backed with pyarrow installed, memory that tracemalloc does not see)
    as_strings = traced_peak(lambda: pd.read_csv(tr, dtype=object))
    kept = n * 8 * 8                                                # 8 columns of 8 bytes
    assert peak < 0.5 * as_strings, (peak / MIB, as_strings / MIB)
    assert peak < 3.5 * kept, (peak / MIB, kept / MIB)
    text = reader._sample_text(tr)                                    # what the plan estimated
    sample = reader._sample_profile(text, ",", [f"_{i}" for i in range(8)], True)
    _, per_byte = reader._memory_plan(tr, size, sample, available=1 << 50)
    assert peak <= per_byte * size, (peak / MIB, per_byte * size / MIB)


# ---------------------------------------------------------------- progress
@pytest.mark.parametrize("name", ["train.csv", "train.csv.gz"])
def test_progress_lines_while_reading(tmp_path, monkeypatch, name):
    path = tmp_path / name
    numeric_csv(tmp_path / "plain.csv", 60_000)
    raw = (tmp_path / "plain.csv").read_bytes()
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    monkeypatch.setattr(reader, "PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(reader, "CHUNK_BYTES", 256 * 1024)
    lines = []
    df = reader.read_table(path, progress=lines.append)
    assert len(df) == 60_000 and len(lines) >= 4
    *steps, last = lines
    shares = [int(s.split(": ")[1].split("%")[0]) for s in steps]
    rows = [int(s.split("(")[1].split(" rows")[0].replace(",", "")) for s in steps]
    assert all(s.startswith(f"reading {path}: ") for s in steps)
    assert shares == sorted(shares) and shares[0] < 100 and rows == sorted(rows)
    assert last.startswith(f"read {path}: 60,000 rows in ")
    quiet = []
    monkeypatch.setattr(reader, "PROGRESS_SECONDS", 3600.0)
    reader.read_table(path, progress=quiet.append)
    assert quiet == []                                   # a quick read prints nothing


# ---------------------------------------------------------------- long fields, extreme values
@pytest.mark.parametrize("length", [200 * 1024, 3 * MIB])       # over csv's 128 KiB; over the sample
def test_long_fields_are_read(tmp_path, length):
    long = "x" * length
    df = small().assign(kind=lambda d: d["kind"].astype(object))
    df.loc[3, "kind"] = long + ', with "quotes" and a comma'
    tr = write(tmp_path / "train.csv", df)
    got = reader.read_table(tr)
    assert got.loc[3, "kind"] == long + ', with "quotes" and a comma'
    assert list(got.columns) == ["x", "kind", "label"] and len(got) == 60


@pytest.mark.parametrize("value", ["1e308", "-1e308", "1.7976931348623157e308", "-3e31"])
def test_extreme_values_are_refused_with_a_fix(tmp_path, value):
    df = small().assign(x=lambda d: d["x"].astype(object))
    df.loc[4, "x"] = value
    tr, te = write(tmp_path / "train.csv", df), write(tmp_path / "test.csv", small(9))
    with pytest.raises(DataError) as info:
        prep.load_files(tr, te, target="label")
    assert one_line(info).endswith(
        f"column 'x' has values beyond +-1e+30 in line 6 (e.g. '{float(value)!r}'), too large to "
        "standardise and train on; rescale the column (e.g. divide it by a power of ten) or pass "
        "--drop x")
    with pytest.raises(DataError, match=r"fit: numeric column 'x' has values beyond \+-1e\+30 in row 4 .*"
                                        r"pass --drop x"):
        prep.Preprocessor(["x"], ["kind"]).fit(df.assign(x=pd.to_numeric(df["x"])))


def test_large_but_ordinary_values_train(tmp_path):
    df = small()
    df["x"] = df["x"] * 1e29
    ds = prep.load_files(write(tmp_path / "train.csv", df), write(tmp_path / "test.csv", small(9)),
                         target="label")
    e = prep.encode(ds, seed=0)
    assert np.isfinite(e.X_train).all() and np.isfinite(e.X_test).all()


# ---------------------------------------------------------------- names and zips
def test_encoded_feature_names_never_collide():
    df = pd.DataFrame({"cat=a": [1.0, 2.0, np.nan, 4.0], "x_missing": [0.0, 1.0, 0.0, 1.0],
                       "cat": ["a", "b", "a", None], "x": [1.0, np.nan, 3.0, 4.0],
                       "cat=a (2)": [5.0, 6.0, 7.0, 8.0]})
    pre = prep.Preprocessor(["cat=a", "x_missing", "x", "cat=a (2)"], ["cat"],
                            missing_indicators=True).fit(df)
    names = list(pre.get_feature_names_out())
    assert len(set(names)) == len(names) == pre.n_features_ == pre.transform(df).shape[1]
    assert names == ["cat=a", "x_missing", "x", "cat=a (2)", "cat=a (3)", "cat=b",
                     "cat=a_missing", "x_missing (2)", "cat_missing"]
    assert pre.feature_source_ == ["cat=a", "x_missing", "x", "cat=a (2)", "cat", "cat",
                                   "cat=a", "x", "cat"]


def test_zip_with_folder_entries_and_macos_metadata_is_read(tmp_path):
    text = small().to_csv(index=False)
    path = tmp_path / "train.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/", "")
        zf.writestr("data/train.csv", text)
        zf.writestr("__MACOSX/data/._train.csv", "resource fork")
    assert_array_equal(reader.read_table(path)["label"].to_numpy(dtype=int), small()["label"])
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("data/", "")
        zf.writestr("data/train.csv", text)
        zf.writestr("data/test.csv", text)
    with pytest.raises(DataError) as info:
        reader.read_table(two)
    assert one_line(info).startswith(f"{two} holds 2 files (data/train.csv, data/test.csv); a .zip "
                                     "must hold exactly one CSV")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("data/", "")
    with pytest.raises(DataError, match=r"holds 0 files besides folders \(data/\)"):
        reader.read_table(empty)


# ---------------------------------------------------------------- the CLI: one line, exit 2
def test_cli_refuses_a_bomb_in_one_line(tmp_path, capsys, monkeypatch):
    import run_all
    path = bomb(tmp_path / "train.csv.gz", 32)
    test = write(tmp_path / "test.csv", small(9))
    monkeypatch.setattr(reader, "available_memory", lambda: 64 * MIB)
    out = tmp_path / "out"
    code = run_all.main(["--train", str(path), "--test", str(test), "--target", "label",
                         "--out", str(out), "--parts", "A", "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {path} holds 32 MB of text once decompressed"), err
    assert not out.exists()
