"""Data: finding, loading and validating the CSV pair, synthetic data, leak-free
preprocessing and the train/validation split.

Everything that touches raw rows lives here; the network (``mlp.py``) only ever
sees the float64 matrices that ``encode`` returns.

- ``find_data_dir`` / ``load_csv_pair`` / ``load_files`` / ``load_data`` find
  and read the train and test files (``train.csv`` or ``train.csv.gz``/
  ``.bz2``/``.xz``/``.zip``/``.parquet`` in a folder, or any two files), the
  delimiter detected (``read_file``), or hold out part of one labelled file
  (``test_size``, announced by ``SPLIT_BANNER``); they fall back to
  ``make_synthetic`` when no folder holds both files.
- ``read_file`` keeps the data as written: only the empty field is missing
  (unless ``na_values`` names markers), numbers are parsed chunk by chunk into
  float64/int64 arrays, text stays the file's text, and labels are parsed
  exactly; what it interpreted becomes a note (``Dataset.notes``). Its memory
  is planned before any work against ``available_memory()`` (stated
  decompressed size, then a limit while decompressing); running out of memory
  is a ``DataError`` with a hint; ``progress`` reports long reads.
- ``validate_frames`` turns every user-input problem into a one-line
  ``DataError`` that names the file, the column, the lines and a fix. Labels
  may be integers, names or true/false; the test file may lack them
  (``UNLABELLED_TEST_MESSAGE``). ``screen_columns`` leaves out columns that
  are no features (ID-like, constant, dates, very high cardinality) with the
  reason (``Dataset.excluded``).
- ``make_synthetic`` builds a dataset with the same schema as the course data,
  optionally with a planted train-only shortcut column (for testing the
  shift diagnostics and the mitigation end to end).
- ``Preprocessor`` (median / most-frequent imputation, one-hot, z-score,
  optional missing indicators) is fitted on the training split only and never
  sees the label; ``train_val_split`` and ``encode`` wire it up.
- Part A's EDA tables (``structure_table``, ``missing_table``,
  ``class_distribution``, ``correlation_pairs``, ``predictive_power``,
  ``dominance``) live in ``eda.py``, and the train/test shift diagnosis of
  Part D in ``shift.py``; both use the argument checks, ``_codes``, ``_folds``,
  the balanced-accuracy score helpers and ``to_jsonable`` here.
  Every statistic comes with its threshold and verdict; nothing here knows a
  column name.

Line numbers in errors count the CSV header as line 1 (so the first data row is
line 2). Blank lines are skipped by the CSV reader and are not counted.
"""
from __future__ import annotations

import decimal
import math
import os
import re
import shlex
import warnings
from dataclasses import dataclass, field, replace
from typing import Any
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data
from reader import (  # noqa: F401  (DataError and the file constants are prep's too)
    DATA_SUFFIXES, DataError, _is_text_file, _listing, read_file)

DEFAULT_TARGET = "price_class"
TRAIN_FILE, TEST_FILE = "train.csv", "test.csv"
REPO_DIR = Path(__file__).resolve().parent
DATA_DIR_ENV = "MLP_DATA_DIR"




class UnseenCategoryWarning(UserWarning):
    """Categories at transform time that the Preprocessor never saw in fit."""




def _where(frame, mask, name):
    """Name the rows of ``frame`` selected by boolean ``mask`` for a message.

    For a text file (``*.csv``, ``*.csv.gz`` ..., also ``"<file> (train part)"``)
    the rows are CSV line numbers (header = line 1); otherwise index labels.
    """
    pos = np.flatnonzero(np.asarray(mask, dtype=bool))
    if _is_text_file(name):     # a freshly read file has a RangeIndex; a split one keeps its rows'
        rows = frame.index[pos] if pd.api.types.is_integer_dtype(frame.index) else pos
        word = "line" if len(pos) == 1 else "lines"
        return f"{word} {_listing(np.asarray(rows) + 2)}"
    word = "row" if len(pos) == 1 else "rows"
    return f"{word} {_listing(frame.index[pos])}"


def label_text(value):
    """A label value for a message: ``'low'`` for a name, ``2`` / ``True`` for numbers and booleans
    (numpy scalars shown as the Python value, not ``np.int64(2)``)."""
    value = value.item() if isinstance(value, np.generic) else value
    return repr(value) if isinstance(value, str) else str(value)


def _names(cols):
    return ", ".join(repr(str(c)) for c in cols)


def _example(values):
    return repr(str(values[0]))


TRAIN_STEM, TEST_STEM = "train", "test"


def _data_file(folder, stem):
    """``folder/<stem><suffix>`` for the first suffix of ``DATA_SUFFIXES`` that exists, or None."""
    for suffix in DATA_SUFFIXES:
        path = folder / (stem + suffix)
        if path.is_file():
            return path
    return None


def _looked_for(folder, stem):
    return f"{folder / (stem + DATA_SUFFIXES[0])} and {stem}{{{','.join(DATA_SUFFIXES[1:])}}}"


def find_data_files(folder):
    """The train and test files of ``folder`` (any suffix of ``DATA_SUFFIXES``).

    Returns
    -------
    (train_path, test_path) : tuple of pathlib.Path or None
        None for a file that is not there.
    """
    folder = Path(folder)
    return _data_file(folder, TRAIN_STEM), _data_file(folder, TEST_STEM)


def _has_pair(folder):
    return all(p is not None for p in find_data_files(folder))


def course_data_dir():
    """The course's data folder, ``<repo>/../shared/data``: the last folder the automatic
    search looks in (``find_data_dir``). A run on it is framed for the course's
    assignment (``run_all.course_framing``)."""
    return REPO_DIR.parent / "shared" / "data"


def is_course_folder(folder):
    """True when ``folder`` is the course's data folder (``course_data_dir``)."""
    try:
        return Path(folder).resolve() == course_data_dir().resolve()
    except (OSError, TypeError, ValueError):
        return False


def find_data_dir(data_dir=None, require_test=True):
    """Return the folder holding the train and test files, or None.

    A file counts under any suffix of ``DATA_SUFFIXES`` (``train.csv``,
    ``train.csv.gz``, ``train.parquet`` ...). Search order: ``data_dir`` if
    given (it must hold the files), then ``$MLP_DATA_DIR``, ``./data``
    (current directory), ``<repo>/data`` and ``<repo>/../shared/data``; the
    first folder holding both files wins.

    Parameters
    ----------
    data_dir : str or Path or None
        Explicit folder (``--data-dir``).
    require_test : bool, default True
        False: an explicit ``data_dir`` may hold only the train file (to be
        split with ``test_size``). The automatic search always needs both.

    Returns
    -------
    pathlib.Path or None
        The folder, or None when no candidate holds both files.

    Raises
    ------
    DataError
        If ``data_dir`` is given but is not a folder or lacks a file.
    """
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"data folder {folder} does not exist; "
                            "pass --data-dir with the folder that holds train.csv and test.csv")
        train, test = find_data_files(folder)
        if train is None:
            raise DataError(f"{TRAIN_FILE} not found in {folder} (looked for "
                            f"{_looked_for(folder, TRAIN_STEM)}); put the training file there, "
                            "pass another --data-dir or pass --train FILE")
        if test is None and require_test:
            raise DataError(f"{TEST_FILE} not found in {folder} (looked for "
                            f"{_looked_for(folder, TEST_STEM)}); put the test file there, pass "
                            "--test FILE, or pass --test-size 0.2 to hold out 20% of the training file")
        return folder
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        if _has_pair(Path(env).expanduser()):
            return Path(env).expanduser()
        warnings.warn(f"${DATA_DIR_ENV}={env} does not hold both {TRAIN_FILE} and {TEST_FILE}; "
                      "ignoring it and searching ./data, <repo>/data, <repo>/../shared/data", stacklevel=2)
    for folder in (Path.cwd() / "data", REPO_DIR / "data", course_data_dir()):
        if _has_pair(folder):
            return folder
    return None


# ------------------------------------------------------------ loading
SPLIT_BANNER = ("ONE FILE, SPLIT HERE: no test file was given, so {percent} of the rows of {file} "
                "(stratified by label, seed {seed}) were held out as the test set. Test scores "
                "then measure the training distribution, not new data; pass --test FILE to "
                "evaluate on data collected separately.")
UNLABELLED_TEST_MESSAGE = ("test file {file} has no label column {target!r}: Parts A-C run as "
                           "usual, and the checks that need test labels (test accuracy, the label "
                           "part of the Part D diagnosis) are skipped")


@dataclass
class Dataset:
    """A validated train/test pair.

    Attributes
    ----------
    train, test : DataFrame
        Feature columns (numeric as float64, categorical as object with NaN
        for missing) followed by the target column (labels in their original
        type: int64, bool or str objects). ``test`` has no target column when
        ``test_labelled`` is False.
    target : str
        Name of the label column.
    numeric, categorical : list of str
        Feature columns by kind, in file order (the network's inputs).
    classes : ndarray of shape (n_classes,)
        Sorted label values seen in train, in their original type (int64,
        bool, or object of str); ``encode`` maps them to 0..K-1 and
        ``decode`` back.
    source : str
        Folder the files came from, or "synthetic".
    synthetic : bool
        True when the data was generated by ``make_synthetic``.
    test_labelled : bool
        False when the test file has no label column (deployment data).
    split_from_one_file : bool
        True when the test set was held out of the one labelled file
        (``test_size``); the report must say so (``SPLIT_BANNER``).
    test_size : float or None
        The held-out fraction when ``split_from_one_file``.
    split_seed : int or None
        The seed of that split.
    excluded : DataFrame
        ``screen_columns`` table: columns that look like no feature (ID-like,
        constant, date, very high cardinality), with reason and action; the
        excluded ones are not in ``numeric``/``categorical`` nor the frames.
    files : tuple of str
        The train and test files read (empty for frames and synthetic data).
    notes : tuple of str
        One line per interpretation of the data the user should know about
        (cells read as missing because of ``na_values``, label text read as
        integers or true/false, integers too large for float64 ...).
    """
    train: pd.DataFrame
    test: pd.DataFrame
    target: str
    numeric: list
    categorical: list
    classes: np.ndarray
    source: str
    synthetic: bool = False
    test_labelled: bool = True
    split_from_one_file: bool = False
    test_size: float = None
    excluded: pd.DataFrame = None
    files: tuple = ()
    split_seed: int = None
    notes: tuple = ()

    def __post_init__(self):
        if self.excluded is None:
            self.excluded = _screen_frame([])

    @property
    def features(self):
        """All feature columns (numeric and categorical) in file order."""
        return [c for c in self.train.columns if c != self.target]

    def decode(self, idx):
        """Label values for class indices ``idx`` (0..K-1), shape of ``idx``."""
        return self.classes[np.asarray(idx, dtype=np.int64)]


def split_banner(dataset):
    """``SPLIT_BANNER`` filled in for ``dataset`` (None unless it was split from one file)."""
    if not dataset.split_from_one_file:
        return None
    file = dataset.files[0] if dataset.files else dataset.source
    return SPLIT_BANNER.format(percent=f"{dataset.test_size:.0%}", file=file,
                               seed=dataset.split_seed)


# -- the whole dataset ---------------------------------------------------------
def load_csv_pair(data_dir, target=DEFAULT_TARGET, categorical=None, drop=None, **options):
    """Read and validate the train and test files of ``data_dir`` (see ``load_files``).

    Parameters
    ----------
    data_dir : str or Path
        Folder holding both files (``train.csv``, ``train.csv.gz`` ...).
    target : str
        Label column.
    categorical : list of str, optional
        Columns to treat as categorical; default: the non-numeric columns.
    drop : list of str, optional
        Columns to ignore.
    **options
        ``sep``, ``test_size``, ``seed``, ``keep``, ``expand_dates``, ``na_values``,
        ``progress`` as in ``load_files``.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        For any problem with the files; the message says how to fix it.
    """
    folder = Path(data_dir)
    train, test = find_data_files(folder)
    if train is None:
        train = folder / TRAIN_FILE         # read_table names the missing file
    if test is None and options.get("test_size") is None:
        test = folder / TEST_FILE
    ds = load_files(train, test, target=target, categorical=categorical, drop=drop, **options)
    ds.source = str(folder)
    return ds


def _split_one_file(df, name, target, test_size, seed):
    """Stratified, seeded (train, test) split of one labelled frame; DataError when too small."""
    if target not in df.columns:
        raise DataError(f"{name} has no target column {target!r}; columns are "
                        f"{_names(df.columns)}; pass --target with the label column")
    y, _, _ = _parse_labels(df[target], name, target)
    classes, counts = np.unique(y, return_counts=True)
    n_test = int(math.ceil(test_size * len(df)))
    if counts.min() < 2 or n_test < len(classes) or len(df) - n_test < len(classes):
        raise DataError(f"{name}: {len(df)} rows (smallest class {label_text(classes[counts.argmin()])}: "
                        f"{counts.min()} rows) cannot be split with --test-size {test_size:g} so that "
                        f"train and test both hold all {len(classes)} classes; add rows or pass --test FILE")
    return train_test_split(df, test_size=test_size, random_state=seed, stratify=y)


def load_files(train_path, test_path=None, target=DEFAULT_TARGET, categorical=None, drop=None,
               sep=None, test_size=None, seed=0, keep=None, expand_dates=False, na_values=None,
               progress=None):
    """Read, validate and screen a train file and a test file (or split one file).

    Parameters
    ----------
    train_path : str or Path
        Labelled training file (CSV, compressed CSV or Parquet; see ``read_table``).
    test_path : str or Path, optional
        Test file; it may lack the label column (``Dataset.test_labelled`` is
        then False). Without it, ``test_size`` must be given.
    target, categorical, drop
        As in ``validate_frames``.
    sep : str, optional
        CSV delimiter; default: detected per file.
    test_size : float in (0, 1), optional
        Hold out this fraction of the training file as the test set
        (stratified by label, seeded by ``seed``); only without ``test_path``.
    seed : int
        Seed of that split.
    keep, expand_dates
        As in ``screen_columns``.
    na_values : list of str, optional
        Cells that mean "missing" besides the empty field (``read_file``).
    progress : callable, optional
        ``progress(line)`` while a large file is read (``read_file``).

    Returns
    -------
    Dataset
        ``files`` = the paths read; ``split_from_one_file`` and ``test_size``
        set for a split; ``notes`` = what the reader and the validation
        interpreted.

    Raises
    ------
    DataError
        Also when memory runs out while reading or validating (a hint, never a
        bare ``MemoryError``).
    """
    train_path = Path(train_path)
    if test_size is not None:
        if not isinstance(test_size, (int, float)) or not 0.0 < test_size < 1.0:
            raise DataError(f"--test-size must be a fraction in (0, 1), e.g. 0.2; got {test_size!r}")
        if test_path is not None:
            raise DataError(f"--test-size splits a single file, but a test file was given ({test_path}); "
                            "pass either --test-size or a test file")
    elif test_path is None:
        raise DataError(f"no test file for {train_path} (looked for "
                        f"{_looked_for(train_path.parent, TEST_STEM)}); pass --test FILE, or "
                        f"--test-size 0.2 to hold out a stratified 20% of {train_path.name}")
    try:
        ds = _read_and_validate(train_path, test_path, target, categorical, drop, sep, test_size,
                                seed, keep, expand_dates, na_values, progress)
    except MemoryError:
        raise DataError(f"ran out of memory while validating {train_path}"
                        + (f" and {test_path}" if test_path is not None else "")
                        + "; free memory, read a sample of the rows, or pass --drop with the "
                          "columns you can spare") from None
    same = test_path is None or Path(test_path).parent == train_path.parent
    ds.source = str(train_path.parent) if same else f"{train_path}, {test_path}"
    ds.files = (str(train_path),) + (() if test_path is None else (str(test_path),))
    if test_path is None:
        ds.split_from_one_file, ds.test_size = True, float(test_size)
        ds.split_seed = int(seed)
    return ds


def _read_and_validate(train_path, test_path, target, categorical, drop, sep, test_size, seed,
                       keep, expand_dates, na_values, progress):
    """``load_files`` after its argument checks: read both files (the label column, the
    ``categorical`` ones and, in the test file, the training file's text columns as text;
    ``drop`` columns not kept), split or validate, and collect the notes."""
    drop = list(drop or [])
    skip = [c for c in drop if c != target]        # validate_frames names a dropped target
    text = [target, *(categorical or [])]
    opts = dict(sep=sep, na_values=na_values, skip_columns=skip, progress=progress)
    train = read_file(train_path, text_columns=text, **opts)
    raw_train, notes, skipped = train.frame, train.notes, set(train.skipped)
    del train                       # the frames below are the only copies of the files
    if test_path is None:
        raw_train, raw_test = _split_one_file(raw_train, str(train_path), target, test_size, seed)
        names = (f"{train_path} (train part)", f"{train_path} (held-out part)")
    else:
        test_path = Path(test_path)
        as_text = [c for c in raw_train.columns if raw_train[c].dtype.kind not in "iufb"]
        test = read_file(test_path, text_columns=text + as_text, **opts)
        raw_test, notes, skipped = test.frame, notes + test.notes, skipped | set(test.skipped)
        del test
        names = (str(train_path), str(test_path))
    left = [c for c in drop if c not in skipped]
    ds = validate_frames(raw_train, raw_test, target=target, categorical=categorical, drop=left,
                         names=names, keep=keep, expand_dates=expand_dates)
    ds.notes = notes + ds.notes
    return ds


_TRUE_FALSE = {"true": True, "false": False}
_NUMBER_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
INT64_RANGE = (-2**63, 2**63 - 1)


def _integer_of(text):
    """The integer a label's text writes (``'7'``, ``' +7'``, ``'7.0'``, ``'7e2'``), exactly;
    ``"range"`` for a whole number beyond int64; None for anything else."""
    t = str(text).strip()
    if not _NUMBER_TEXT.fullmatch(t):
        return None
    d = decimal.Decimal(t)
    if not d.is_finite() or d != d.to_integral_value():
        return None
    return int(d) if INT64_RANGE[0] <= d <= INT64_RANGE[1] else "range"


def _label_kind(series):
    """How to read a label column: "bool" (bool dtype or only true/false), "int" (most
    values numbers: they must be integers) or "str" (names such as low/mid/high)."""
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    present = series.dropna()
    counts = present.value_counts(sort=False)
    if set(str(v).strip().lower() for v in counts.index) <= set(_TRUE_FALSE):
        return "bool"
    if pd.api.types.is_numeric_dtype(present):
        return "int"
    numbers = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce").notna().to_numpy()
    return "int" if counts.to_numpy()[numbers].sum() > 0.5 * len(present) else "str"


def _parse_labels(series, name, target, kind=None):
    """Labels in their exact values and own type from a label column, or a DataError naming rows.

    Text is parsed exactly (``'9007199254740993'`` stays that integer; nothing
    passes through float64); whole numbers beyond int64 keep their text when the
    kind is inferred.

    Parameters
    ----------
    series : Series of shape (n,)
    name, target : str
        For messages.
    kind : {"int", "bool", "str"}, optional
        Default: ``_label_kind(series)``; pass train's kind when parsing test.

    Returns
    -------
    values : ndarray of shape (n,)
        int64, bool, or object of str.
    kind : str
    notes : tuple of str
        What was interpreted (text read as integers or true/false, spaces removed).
    """
    missing = series.isna().to_numpy()
    if missing.any():
        raise DataError(f"{name}: target {target!r} is missing in {_where(series, missing, name)}; "
                        "fill in those labels or delete the rows")
    inferred = kind is None
    kind = _label_kind(series) if kind is None else kind
    what = f"{name}: labels of {target!r}"
    if kind == "bool":
        if pd.api.types.is_bool_dtype(series):
            return series.to_numpy(dtype=bool), kind, ()
        codes, uniques = pd.factorize(series.to_numpy(dtype=object))
        text = np.array([str(v).strip().lower() for v in uniques], dtype=object)
        bad = ~np.isin(text, list(_TRUE_FALSE))[codes]
        if bad.any():
            raise DataError(f"{name}: target {target!r} has labels other than true/false in "
                            f"{_where(series, bad, name)} (e.g. {_example(series[bad].to_numpy())}), "
                            "but the training labels are true/false; fix those labels")
        note = f"{what} read as true/false from the text {_listing([repr(str(u)) for u in uniques])}"
        return np.array([_TRUE_FALSE[t] for t in text], dtype=bool)[codes], kind, (note,)
    if kind == "str":
        return _text_labels(series, what)
    if pd.api.types.is_integer_dtype(series) and series.dtype.kind == "i":
        return series.to_numpy(dtype=np.int64), kind, ()
    if pd.api.types.is_float_dtype(series):
        num = series.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num)
        bad[~bad] = num[~bad] != np.round(num[~bad])
        values = None if bad.any() else num.astype(np.int64)
        notes = ()
    else:                                   # text (or uint64): each distinct text parsed exactly
        codes, uniques = pd.factorize(series.to_numpy(dtype=object))
        parsed = [_integer_of(u) for u in uniques]
        bad = np.array([p is None for p in parsed], dtype=bool)[codes]
        beyond = np.array([p == "range" for p in parsed], dtype=bool)[codes]
        if beyond.any() and not bad.any():
            if inferred:
                values, _, notes = _text_labels(series, what)
                return values, "str", (f"{what} hold whole numbers beyond 64-bit integers (e.g. "
                                       f"{_example(series[beyond].to_numpy())}); they are kept as "
                                       "text, compared exactly",) + notes
            raise DataError(f"{name}: target {target!r} has whole numbers beyond 64-bit integers in "
                            f"{_where(series, beyond, name)} (e.g. "
                            f"{_example(series[beyond].to_numpy())}), which are no training class; "
                            "fix those labels or delete the rows")
        values = None
        if not bad.any():
            values = np.array(parsed, dtype=np.int64)[codes]
            odd = np.array([str(u) != str(p) for u, p in zip(uniques, parsed)], dtype=bool)[codes]
            notes = (f"{what}: {int(odd.sum()):,} written otherwise than as plain integers were "
                     f"read as the integers they write (e.g. "
                     f"{_example(series[odd].to_numpy())} as {values[odd][0]})",) if odd.any() else ()
    if bad.any():
        raise DataError(f"{name}: target {target!r} has non-integer labels in "
                        f"{_where(series, bad, name)} (e.g. {_example(series[bad].to_numpy())}); "
                        "labels must be integer class codes or class names (a continuous target "
                        "is not a classification label): fix those labels or pass --target with "
                        "the right column")
    return values, kind, notes


def _text_labels(series, what):
    """Labels as text (object of str, surrounding spaces removed), "str", notes."""
    codes, uniques = pd.factorize(series.to_numpy(dtype=object))
    text = np.array([str(v).strip() for v in uniques], dtype=object)
    spaced = np.array([t != u for t, u in zip(text, uniques)], dtype=bool)[codes]
    notes = (f"{what}: {int(spaced.sum()):,} had spaces around them, which were removed (e.g. "
             f"{_example(series[spaced].to_numpy())})",) if spaced.any() else ()
    return text[codes], "str", notes


def _categorical_values(series):
    """Object array of str with np.nan for missing (one representation everywhere)."""
    vals = series.to_numpy(dtype=object)
    codes, uniques = pd.factorize(vals)            # missing: code -1
    if not all(isinstance(v, str) for v in uniques):
        # factorize makes 1, 1.0 and True one level; str() tells them apart, row by row
        miss = pd.isna(vals)
        out = np.empty(len(vals), dtype=object)
        out[miss] = np.nan
        out[~miss] = [str(v) for v in vals[~miss]]
        return out
    text = np.empty(len(uniques) + 1, dtype=object)
    text[:-1] = [str(v) for v in uniques]          # once per level, not once per row
    text[-1] = np.nan
    return text[codes]


def _as_numbers(series):
    """A column as float64, NaN where a value is missing or no number (a float64 column as it
    is, without a copy: the validated frame makes the one copy)."""
    if series.dtype == np.float64:
        return series.to_numpy()
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)


# A numeric value beyond this magnitude is refused: squares of the values (variance, z-scores)
# overflow float64 near 1e154, and the trees of Parts A and D compute in float32 (max 3.4e38).
MAX_ABS_VALUE = 1e30
MAGNITUDE_FIX = ("rescale the column (e.g. divide it by a power of ten) or pass --drop {col}")


# Texts that other tools write for a missing value (R, Excel, SAS, pandas): a numeric column
# holding them gets the hint to pass them as --na-values (they are never missing silently).
MISSING_WORDS = frozenset({"na", "n/a", "nan", "-nan", "null", "none", "nil", "missing", "?", "-",
                           "--", ".", "#n/a", "#na", "<na>", "na.", "n.a."})


def _marker_hint(bad):
    """", pass --na-values NA if 'NA' marks a missing value," when the non-numbers of a numeric
    column are all words of ``MISSING_WORDS``, else ""."""
    words = [str(w) for w in pd.unique(bad.astype(str).str.strip())]
    if len(words) > 3 or any(w.lower() not in MISSING_WORDS for w in words):
        return ""
    verb = "marks a missing value" if len(words) == 1 else "mark missing values"
    return (f", pass --na-values {shlex.quote(','.join(words))} if "
            f"{_listing([repr(w) for w in words])} {verb},")


def validate_frames(train, test, target=DEFAULT_TARGET, categorical=None, drop=None,
                    names=("train.csv", "test.csv"), keep=None, expand_dates=False, screen=True):
    """Validate a train/test pair of DataFrames, type their columns and screen them.

    A feature column is numeric when most of its non-missing train values
    parse as numbers (unless listed in ``categorical``); otherwise categorical.
    Labels may be integers, booleans (true/false) or names (strings); the
    test frame may lack the label column (``test_labelled=False``). Columns
    that ``screen_columns`` flags (ID-like, constant, date, very high
    cardinality) are left out unless listed in ``keep``.

    Parameters
    ----------
    train : DataFrame of shape (n_train, n_columns)
    test : DataFrame of shape (n_test, n_columns) or (n_test, n_columns - 1)
        Same columns as ``train`` (any order), with or without ``target``.
    target : str
        Label column.
    categorical : list of str, optional
        Columns forced categorical.
    drop : list of str, optional
        Columns to ignore.
    names : tuple of (str, str)
        How to call the two frames in messages. File names (``*.csv``,
        ``*.csv.gz`` ...) get CSV line numbers (header = line 1); others get
        index labels.
    keep : list of str, optional
        Columns kept even when ``screen_columns`` flags them.
    expand_dates : bool, default False
        Replace each date column by numeric year, month and day-of-week columns.
    screen : bool, default True
        False: keep every column (no ``screen_columns``).

    Returns
    -------
    Dataset
        With ``source`` = ``names[0]``'s folder-free name and ``synthetic=False``.

    Raises
    ------
    DataError
        One line: file, column, rows and a fix.
    """
    ntr, nte = names
    drop = list(drop or [])
    categorical = list(categorical or [])
    keep = list(keep or [])
    frames = []
    for df, name in ((train, ntr), (test, nte)):
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}")
        dups = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        if dups:
            raise DataError(f"{name}: duplicate column names {_names(dups)}; rename or delete the duplicates")
        if len(df) == 0:
            raise DataError(f"{name} has a header but no data rows; it needs at least one row")
        frames.append(df)
    train, test = frames

    unknown = [c for c in drop if c not in train.columns and c not in test.columns]
    if unknown:
        raise DataError(f"{ntr}: --drop names unknown columns {_names(unknown)}; "
                        f"columns are {_names(train.columns)}")
    if target in drop:
        raise DataError(f"--drop includes the target {target!r}; pick another --target or drop something else")
    if target not in train.columns:
        raise DataError(f"{ntr} has no target column {target!r}; columns are "
                        f"{_names(train.columns)}; pass --target with the label column")
    train = train.drop(columns=[c for c in drop if c in train.columns])
    test = test.drop(columns=[c for c in drop if c in test.columns])
    labelled = target in test.columns

    missing_in_test = [c for c in train.columns if c not in test.columns and c != target]
    extra_in_test = [c for c in test.columns if c not in train.columns]
    if missing_in_test or extra_in_test:
        parts = []
        if missing_in_test:
            parts.append(f"missing in {nte}: {_names(missing_in_test)}")
        if extra_in_test:
            parts.append(f"only in {nte}: {_names(extra_in_test)}")
        raise DataError(f"{nte} and {ntr} have different columns ({'; '.join(parts)}); give both files "
                        f"the same columns or pass --drop {','.join(map(str, missing_in_test + extra_in_test))}")
    features = [c for c in train.columns if c != target]
    if not features:
        raise DataError(f"{ntr} has no feature columns besides the target {target!r}; "
                        "add features or drop fewer columns")
    for option, cols in (("--categorical", categorical), ("--keep-columns", keep)):
        bad = [c for c in cols if c not in features]
        if bad:
            raise DataError(f"{option} names {_names(bad)}, which "
                            f"{'is not a feature column' if len(bad) == 1 else 'are not feature columns'}"
                            f" of {ntr}; feature columns are {_listing([repr(str(f)) for f in features], 20)}")

    cols_tr, cols_te = {}, {}          # built as dicts: one DataFrame at the end, not 1,000 inserts
    numeric, cats, notes = [], [], []
    for col in features:
        if train[col].isna().all():
            if not screen or col in keep:
                raise DataError(f"{ntr}: column {col!r} is entirely empty; pass --drop {col} "
                                "or fill it in")
            cats.append(col)            # no value at all: screening leaves it out as constant
            cols_tr[col] = _categorical_values(train[col])
            cols_te[col] = _categorical_values(test[col])
            continue
        parsed = None
        if col not in categorical:      # parsed once: to decide the kind and as the values
            parsed = _as_numbers(train[col])
            present = train[col].notna().to_numpy()
            is_numeric = (~np.isnan(parsed[present])).mean() > 0.5
        if parsed is None or not is_numeric:
            cats.append(col)
            cols_tr[col] = _categorical_values(train[col])
            cols_te[col] = _categorical_values(test[col])
            continue
        numeric.append(col)
        for src, dst, name in ((train, cols_tr, ntr), (test, cols_te, nte)):
            raw = src[col]
            num = parsed if src is train else _as_numbers(raw)
            text = np.isnan(num) & raw.notna().to_numpy()
            if text.any():
                raise DataError(f"{name}: column {col!r} has non-numeric values in {_where(raw, text, name)} "
                                f"(e.g. {_example(raw[text].to_numpy())}); fix the CSV"
                                f"{_marker_hint(raw[text])} or pass --categorical {col}")
            inf = np.isinf(num)
            if inf.any():
                raise DataError(f"{name}: column {col!r} has infinite values in {_where(raw, inf, name)}; "
                                f"fix the CSV or pass --drop {col}")
            huge = np.abs(num) > MAX_ABS_VALUE
            if huge.any():
                raise DataError(f"{name}: column {col!r} has values beyond +-{MAX_ABS_VALUE:g} in "
                                f"{_where(raw, huge, name)} (e.g. {_example(raw[huge].to_numpy())}), "
                                f"too large to standardise and train on; {MAGNITUDE_FIX.format(col=col)}")
            if raw.dtype.kind in "iu" and (np.abs(raw.to_numpy()) > 2**53).any():
                notes.append(f"{name}: column {col!r} holds integers beyond 2**53 (e.g. "
                             f"{_example(raw[np.abs(raw.to_numpy()) > 2**53].to_numpy())}); as a "
                             "feature they are rounded to the nearest float64")
            dst[col] = num
    y_tr, kind, label_notes = _parse_labels(train[target], ntr, target)
    notes += label_notes
    classes = np.unique(y_tr)
    if len(classes) < 2:
        raise DataError(f"{ntr}: target {target!r} has only one class ({classes[0]}); a classifier "
                        "needs at least 2, so check --target")
    if labelled:
        y_te, _, label_notes = _parse_labels(test[target], nte, target, kind=kind)
        notes += label_notes
        unseen = ~np.isin(y_te, classes)
        if unseen.any():
            raise DataError(f"{nte}: classes {_listing(np.unique(y_te[unseen]))} in "
                            f"{_where(test[target], unseen, nte)} never occur in {ntr} (classes there: "
                            f"{_listing(classes, 20)}); the model cannot predict them, so delete those rows "
                            "or add training examples")
        cols_te[target] = y_te
    cols_tr[target] = y_tr
    out_tr = pd.DataFrame(cols_tr, index=train.index)
    out_te = pd.DataFrame(cols_te, index=test.index)
    ds = Dataset(train=out_tr, test=out_te, target=target, numeric=numeric, categorical=cats,
                 classes=classes, source=Path(str(ntr)).name, synthetic=False,
                 test_labelled=labelled, notes=tuple(notes))
    if screen:
        _apply_screen(ds, keep, expand_dates)
    return ds


def load_data(data_dir=None, target=DEFAULT_TARGET, categorical=None, drop=None, seed=0,
              train_path=None, test_path=None, sep=None, test_size=None, keep=None,
              expand_dates=False, na_values=None, progress=None):
    """Find and load the data files, or fall back to synthetic data.

    Parameters
    ----------
    data_dir : str or Path, optional
        Explicit folder (must hold the train file, and the test file unless
        ``test_size`` is given); see ``find_data_dir``.
    target, categorical, drop
        As in ``validate_frames``.
    seed : int
        Seed for ``make_synthetic`` when no data is found, and for the
        ``test_size`` split.
    train_path, test_path : str or Path, optional
        Explicit files (``--train``/``--test``) instead of a folder; any names.
    sep, test_size, keep, expand_dates, na_values, progress
        As in ``load_files``.

    Returns
    -------
    Dataset
        ``synthetic=True`` and ``source="synthetic"`` when no folder holds
        both files.
    """
    opts = dict(sep=sep, test_size=test_size, seed=seed, keep=keep, expand_dates=expand_dates,
                na_values=na_values, progress=progress)
    if train_path is not None:
        if data_dir is not None:
            raise DataError("pass either a data folder (--data-dir) or files (--train/--test), not both")
        return load_files(train_path, test_path, target=target, categorical=categorical, drop=drop,
                          **opts)
    if test_path is not None:
        raise DataError(f"a test file ({test_path}) needs its training file; pass --train FILE too")
    folder = find_data_dir(data_dir, require_test=test_size is None)
    if folder is not None:
        return load_csv_pair(folder, target=target, categorical=categorical, drop=drop, **opts)
    if test_size is not None:
        raise DataError("--test-size splits a training file, but no data was found; "
                        "pass --train FILE or --data-dir DIR")
    train, test = make_synthetic(seed=seed, target=target)
    ds = validate_frames(train, test, target=target, categorical=categorical, drop=drop,
                         names=("synthetic train", "synthetic test"), keep=keep,
                         expand_dates=expand_dates)
    ds.source, ds.synthetic = "synthetic", True
    return ds


# ------------------------------------------------------------ columns that are not features
# Thresholds of ``screen_columns``; each is a rule a reader can check against the table.
ID_MIN_ROWS = 50            # fewer rows: "one level per row" happens by chance for small categoricals
ID_UNIQUE_SHARE = 0.95      # distinct / present values of an ID-like column ("nearly one per row")
ID_SPAN_FACTOR = 2.0        # integer IDs: distinct values within a range <= this x their count ...
ID_ORDER_CORR = 0.99        # ... or increasing with the row (|Spearman r| with the row number)
DATE_SHARE = 0.9            # a text column is a date when this share of its sample parses as one
DATE_SAMPLE = 500           # values parsed per column to decide (the cost is bounded per column)
HIGH_CARD_MIN_LEVELS = 50   # very high cardinality: more levels than max(this, rows / the next)
HIGH_CARD_ROWS_PER_LEVEL = 10
DATE_PARTS = ("year", "month", "dayofweek")

SCREEN_RULES = {
    "constant": "a single distinct value: it carries no information",
    "date": (f"at least {DATE_SHARE:.0%} of a sample of its values parse as dates/times: as text "
             "every date would be its own category (expand_dates / --expand-dates turns it into "
             "numeric year, month and day of week)"),
    "id_like": (f"nearly one distinct value per row (>= {ID_UNIQUE_SHARE:.0%} of the present values, "
                f">= {ID_MIN_ROWS} rows; integers only when they also span <= {ID_SPAN_FACTOR:g}x "
                f"their count or increase with the row): an identifier, which a network can only "
                "memorise"),
    "high_cardinality": (f"more than max({HIGH_CARD_MIN_LEVELS}, rows / {HIGH_CARD_ROWS_PER_LEVEL}) "
                         f"levels: fewer than {HIGH_CARD_ROWS_PER_LEVEL} rows per level on average, "
                         "too few to learn a weight per one-hot column, and the encoded width "
                         "would grow with the number of rows"),
}
_SCREEN_COLUMNS = ("column", "kind", "rule", "reason", "n_unique", "n_present", "detail", "action")
_DATE_LIKE = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
                        r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$")


def _screen_frame(rows):
    return pd.DataFrame(rows, columns=list(_SCREEN_COLUMNS))


def _parse_dates(values):
    """Datetimes (UTC) of an object array, NaT where a value is no date."""
    s = pd.Series(values, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = pd.to_datetime(s, errors="coerce", utc=True)
        except (ValueError, TypeError):
            out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
        if out.isna().sum() > s.isna().sum() + (1 - DATE_SHARE) * s.notna().sum():
            try:        # not one format: parse element by element
                out = pd.to_datetime(s, errors="coerce", utc=True, format="mixed")
            except (ValueError, TypeError):
                pass
    return out


def _date_share(present):
    """Share of a sample of the present values (object array) that parse as dates."""
    sample = present[:DATE_SAMPLE]
    looks = np.array([bool(_DATE_LIKE.match(str(v))) for v in sample])
    if len(sample) == 0 or looks.mean() < DATE_SHARE:
        return float(looks.mean()) if len(sample) else 0.0
    return float(_parse_dates(sample).notna().mean())


def _screen_one(series, kind, n_rows):
    """(rule, detail, n_unique, n_present) for one column, or None when it looks like a feature."""
    present = series.dropna()
    n_present = len(present)
    n_unique = int(present.nunique())
    if n_unique <= 1:
        share = 1 - n_present / n_rows
        return "constant", f"only value {_example(present.unique()) if n_unique else 'none'}" + (
            f" ({share:.0%} missing)" if share else ""), n_unique, n_present
    if kind == "categorical":
        vals = present.to_numpy(dtype=object)
        share = _date_share(vals)
        if share >= DATE_SHARE:
            return "date", f"{share:.0%} of the first {min(len(vals), DATE_SAMPLE)} values parse as dates " \
                           f"(e.g. {_example(vals)})", n_unique, n_present
    if n_present >= ID_MIN_ROWS and n_unique >= ID_UNIQUE_SHARE * n_present:
        if kind == "categorical":
            return "id_like", f"{n_unique:,} distinct values in {n_present:,} rows " \
                              f"(e.g. {_example(present.to_numpy())})", n_unique, n_present
        v = present.to_numpy(dtype=np.float64)
        if np.all(v == np.round(v)):
            span = float(v.max() - v.min() + 1)
            order = abs(float(pd.Series(v).corr(pd.Series(np.arange(len(v), dtype=np.float64)),
                                                method="spearman")))
            if span <= ID_SPAN_FACTOR * n_unique or order >= ID_ORDER_CORR:
                return "id_like", f"{n_unique:,} distinct integers in {n_present:,} rows, range " \
                                  f"{v.min():.0f}..{v.max():.0f}, Spearman r with the row {order:.2f}", \
                    n_unique, n_present
    if kind == "categorical" and n_unique > max(HIGH_CARD_MIN_LEVELS, n_rows / HIGH_CARD_ROWS_PER_LEVEL):
        return "high_cardinality", f"{n_unique:,} levels in {n_rows:,} rows " \
                                   f"({n_rows / n_unique:.1f} rows per level)", n_unique, n_present
    return None


def screen_columns(train, target, numeric=None, categorical=None, keep=None, expand_dates=False):
    """Columns that are not features: ID-like, constant, date/time, very high cardinality.

    Each rule is an entry of ``SCREEN_RULES`` with its thresholds (module
    constants ``ID_*``, ``DATE_*``, ``HIGH_CARD_*``). Cost: one ``nunique``
    per column plus at most ``DATE_SAMPLE`` date parses per text column.

    Parameters
    ----------
    train : DataFrame of shape (n_samples, n_columns)
        Training rows (the decision uses train only).
    target : str
        Label column (never screened).
    numeric, categorical : list of str, optional
        Feature columns by kind; default: numeric dtype -> numeric, else categorical.
    keep : list of str, optional
        Flagged columns to keep anyway (``--keep-columns``).
    expand_dates : bool, default False
        Date columns are expanded into ``<col>_year``, ``<col>_month`` and
        ``<col>_dayofweek`` (numeric) instead of left out.

    Returns
    -------
    DataFrame of shape (n_flagged, 8)
        Columns ``column``, ``kind``, ``rule`` (a key of ``SCREEN_RULES``),
        ``reason`` (its text), ``n_unique``, ``n_present``, ``detail`` (the
        numbers behind the flag) and ``action`` (``"excluded"``,
        ``"kept (keep=)"`` or ``"expanded into <col>_year, ..."``), in file order.
    """
    _check_frame(train, "train")
    keep = set(keep or ())
    if numeric is None and categorical is None:
        feats = [c for c in train.columns if c != target]
        numeric = [c for c in feats if pd.api.types.is_numeric_dtype(train[c])
                   and not pd.api.types.is_bool_dtype(train[c])]
        categorical = [c for c in feats if c not in numeric]
    kinds = {**{c: "numeric" for c in numeric or ()}, **{c: "categorical" for c in categorical or ()}}
    rows = []
    for col in [c for c in train.columns if c in kinds]:
        flag = _screen_one(train[col], kinds[col], len(train))
        if flag is None:
            continue
        rule, detail, n_unique, n_present = flag
        if col in keep:
            action = "kept (keep=)"
        elif rule == "date" and expand_dates:
            action = "expanded into " + ", ".join(f"{col}_{p}" for p in DATE_PARTS)
        else:
            action = "excluded"
        rows.append({"column": col, "kind": kinds[col], "rule": rule, "reason": SCREEN_RULES[rule],
                     "n_unique": n_unique, "n_present": n_present, "detail": detail, "action": action})
    return _screen_frame(rows)


def _date_parts(values):
    """Numeric year, month and day of week (Monday = 0) of an object array; NaN where no date."""
    dt = _parse_dates(values).dt
    return {"year": dt.year, "month": dt.month, "dayofweek": dt.day_of_week}


def _apply_screen(ds, keep, expand_dates):
    """Screen ``ds``'s training columns and leave out (or expand) the flagged ones, in place."""
    table = screen_columns(ds.train, ds.target, ds.numeric, ds.categorical, keep=keep,
                           expand_dates=expand_dates)
    ds.excluded = table
    gone = set(table.loc[table["action"] != "kept (keep=)", "column"])
    if not gone:
        return
    expand = set(table.loc[table["action"].str.startswith("expanded"), "column"])
    new_names = {f"{c}_{p}" for c in expand for p in DATE_PARTS}
    clash = sorted(new_names & set(ds.train.columns))
    if clash:
        raise DataError(f"--expand-dates would create columns {_names(clash)} that already exist; "
                        "rename them or leave out --expand-dates")
    frames = []
    for df in (ds.train, ds.test):
        cols = {}
        for c in df.columns:
            if c in expand:
                parts = _date_parts(df[c].to_numpy(dtype=object))
                for p in DATE_PARTS:
                    cols[f"{c}_{p}"] = parts[p].to_numpy(dtype=np.float64)
            elif c not in gone:
                cols[c] = df[c].to_numpy()
        frames.append(pd.DataFrame(cols, index=df.index))
    ds.train, ds.test = frames
    ds.numeric = [c for c in ds.train.columns if c in set(ds.numeric) | new_names]
    ds.categorical = [c for c in ds.categorical if c not in gone]
    if not ds.numeric and not ds.categorical:
        raise DataError(f"every feature column was left out as not a feature ({_listing(sorted(gone))}); "
                        "pass --keep-columns with the ones to use")


# ------------------------------------------------------------ synthetic data
_SYN_GROUPS = np.array(["Northside", "Riverside", "Harbor", "Hillcrest", "Old Town"], dtype=object)
_SYN_GROUP_P = np.array([0.42, 0.38, 0.12, 0.06, 0.02])
_SYN_GROUP_EFFECT = np.array([1.0, 0.3, 0.0, -0.3, -0.5])
_SYN_ROOMS = np.array(["Entire home/apt", "Private room", "Shared room"], dtype=object)
_SYN_ROOM_P = np.array([0.52, 0.44, 0.04])
_SYN_ROOM_EFFECT = np.array([1.2, 0.0, -0.8])
SYNTHETIC_COLUMNS = ("neighbourhood_group", "room_type", "minimum_nights", "amenity_score",
                     "number_of_reviews", "availability_365")
_SYN_CATEGORICAL = {"neighbourhood_group": _SYN_GROUPS, "room_type": _SYN_ROOMS}


def _synthetic_features(rng, n):
    """Raw feature columns (dict of arrays) and the latent price score, shape (n,)."""
    g = rng.choice(len(_SYN_GROUPS), size=n, p=_SYN_GROUP_P)
    r = rng.choice(len(_SYN_ROOMS), size=n, p=_SYN_ROOM_P)
    nights = 1.0 + rng.geometric(0.35, size=n) - 1 + (rng.random(n) < 0.08) * 29.0
    amenity = np.round(np.clip(rng.normal(50.0, 15.0, size=n), 0.0, 100.0), 1)
    reviews = rng.poisson(rng.gamma(0.6, 40.0, size=n)).astype(np.float64)
    avail = np.where(rng.random(n) < 0.35, 0.0, rng.integers(1, 366, size=n)).astype(np.float64)
    latent = (_SYN_GROUP_EFFECT[g] + _SYN_ROOM_EFFECT[r] + 0.045 * (amenity - 50.0)
              + 0.25 * np.log(nights) - 0.15 * np.log1p(reviews) + 0.002 * (avail - 180.0)
              + rng.normal(0.0, 0.5, size=n))
    cols = {"neighbourhood_group": _SYN_GROUPS[g], "room_type": _SYN_ROOMS[r],
            "minimum_nights": nights, "amenity_score": amenity,
            "number_of_reviews": reviews, "availability_365": avail}
    return cols, latent


def make_synthetic(n_train=4000, n_test=1000, shortcut=None, missing_rate=0.02, seed=0,
                   columns=None, target=DEFAULT_TARGET, n_classes=4):
    """A synthetic train/test pair with the course data's schema.

    Two text categoricals (borough-like, room-type-like), four numeric columns
    and an imbalanced integer label 0..n_classes-1 (shares about
    proportional to n_classes, n_classes-1, ..., 1) that depends on both
    categoricals and three numerics plus noise.

    Parameters
    ----------
    n_train, n_test : int
        Row counts.
    shortcut : str, optional
        Column (default or renamed name) to turn into a train-only shortcut:
        in train it is tied strongly to the label (numeric: class-dependent
        mean with small noise; categorical: class-dependent level 90% of the
        time); in test it is resampled from the train column's marginal,
        independently of the label.
    missing_rate : float in [0, 1)
        Fraction of cells set to NaN in every train feature column (test has
        no missing values).
    seed : int
        Everything is deterministic given the seed.
    columns : dict, optional
        Renames default columns, e.g. ``{"room_type": "kind"}``.
    target : str
        Name of the label column.
    n_classes : int
        Number of classes K >= 2.

    Returns
    -------
    train : DataFrame of shape (n_train, 7)
    test : DataFrame of shape (n_test, 7)
    """
    for pname, val, lo in (("n_train", n_train, 10), ("n_test", n_test, 1), ("n_classes", n_classes, 2)):
        if int(val) != val or val < lo:
            raise ValueError(f"{pname} must be an integer >= {lo}, got {val!r}")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate!r}")
    columns = dict(columns or {})
    bad = [c for c in columns if c not in SYNTHETIC_COLUMNS]
    if bad:
        raise ValueError(f"columns renames unknown columns {_names(bad)}; "
                         f"default columns are {_names(SYNTHETIC_COLUMNS)}")
    final = [columns.get(c, c) for c in SYNTHETIC_COLUMNS]
    if len(set(final + [target])) != len(final) + 1:
        raise ValueError(f"columns {columns!r} and target {target!r} give duplicate names {final + [target]}")
    if shortcut is not None:
        inverse = {columns.get(c, c): c for c in SYNTHETIC_COLUMNS}
        if shortcut not in inverse and shortcut not in SYNTHETIC_COLUMNS:
            raise ValueError(f"shortcut={shortcut!r} is not a column; columns are {_names(final)}")
        shortcut = inverse.get(shortcut, shortcut)

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    cols, latent = _synthetic_features(rng, n)
    share = np.arange(n_classes, 0, -1, dtype=np.float64)
    cuts = np.quantile(latent, np.cumsum(share / share.sum())[:-1])
    y = np.searchsorted(cuts, latent, side="right").astype(np.int64)  # (n,) in 0..K-1

    if shortcut is not None:
        y_tr = y[:n_train]
        if shortcut in _SYN_CATEGORICAL:
            levels = _SYN_CATEGORICAL[shortcut]
            tied = rng.random(n_train) < 0.9
            idx = np.where(tied, y_tr % len(levels), rng.integers(0, len(levels), n_train))
            vals_tr = levels[idx]
        else:
            base = cols[shortcut][:n_train]
            mu, sd = base.mean(), base.std() or 1.0
            vals_tr = mu + sd * (y_tr - (n_classes - 1) / 2.0) + rng.normal(0.0, 0.15 * sd, n_train)
        vals_te = rng.choice(vals_tr, size=n_test, replace=True)  # same marginal, label-free
        cols[shortcut] = np.concatenate([vals_tr, vals_te])

    frame = pd.DataFrame({c: cols[c] for c in SYNTHETIC_COLUMNS})
    for c in _SYN_CATEGORICAL:
        frame[c] = frame[c].astype(object)
    frame[target] = y
    train = frame.iloc[:n_train].reset_index(drop=True)
    test = frame.iloc[n_train:].reset_index(drop=True)
    if missing_rate > 0:
        for c in SYNTHETIC_COLUMNS:
            mask = rng.random(n_train) < missing_rate
            train.loc[mask, c] = np.nan
    rename = {c: columns[c] for c in columns}
    return train.rename(columns=rename), test.rename(columns=rename)


def _unique_names(names):
    """``names`` with each repeat made unique by a suffix `` (2)``, `` (3)`` ... (the first keeps
    its name; a suffixed name never takes another feature's name): a numeric column ``cat=a``
    and level ``a`` of ``cat``, or a column ``x_missing`` and ``x``'s indicator, would otherwise
    give two features one name."""
    taken, used, out = set(names), set(), []
    for name in names:
        new, k = name, 1
        while new in used or (new != name and new in taken):
            k += 1
            new = f"{name} ({k})"
        used.add(new)
        out.append(new)
    return out


# ------------------------------------------------------------ preprocessing
def _is_position(c):
    """A column position: a Python or NumPy integer, not a bool."""
    return isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_))


def _positional(columns):
    """Whether checked column lists (all names or all positions) hold positions."""
    return bool(columns) and _is_position(columns[0])


# Rows per piece of ``Preprocessor.transform``: the transformers make several full-size
# temporaries; in pieces they are this many rows, whatever the file's size, and fewer
# when the piece's columns would hold more than TRANSFORM_BYTES as float64 (a wide file).
TRANSFORM_CHUNK = 1 << 18
TRANSFORM_BYTES = 1 << 27
# Bytes of numeric columns ``Preprocessor.fit`` fits at once: a wide file's columns in
# groups (one scikit-learn call per group, not per column), a tall file's one at a time
# (the median imputer's masked arrays make about four copies of what it is given).
FIT_GROUP_BYTES = 1 << 24


class _MedianScaled:
    """The numeric columns' encoding, all at once: a missing value becomes the fitted
    median, then ``(x - mean) / scale``; the operations of scikit-learn's
    ``SimpleImputer`` then ``StandardScaler`` (``transform``), element for element,
    without their per-call checks (a wide file has hundreds of numeric columns).

    Parameters
    ----------
    median, mean, scale : ndarray of shape (n_numeric,), float64
        The fitted ``statistics_``, ``mean_`` and ``scale_`` of each column.
    """

    def __init__(self, median, mean, scale):
        self.median, self.mean, self.scale = median, mean, scale

    def transform(self, frame):
        """Encoded columns of ``frame`` (float64 columns, in the fitted order), ndarray
        of shape (n_rows, n_numeric)."""
        x = frame.to_numpy(dtype=np.float64, copy=True)
        np.copyto(x, self.median, where=np.isnan(x))
        x -= self.mean
        x /= self.scale
        return x


def _median_scale_stats(frame):
    """Per column of ``frame`` (float64 columns, NaN for missing): the median of the
    present values (0 when none is), and ``StandardScaler``'s ``mean_`` and ``scale_``
    of the column with its missing values set to that median, from scikit-learn.

    Returns
    -------
    median, mean, scale : ndarray of shape (n_columns,), float64

    Columns are fitted in groups of at most ``FIT_GROUP_BYTES`` bytes, each group as a
    column-major block: NumPy sums each column of it as it sums a lone column, so the
    statistics are those of fitting every column on its own
    (``tests/test_prep.py::test_grouped_fit_has_the_statistics_of_one_column_fits``).
    """
    n, k = frame.shape
    step = max(1, FIT_GROUP_BYTES // max(1, 8 * n))
    median, mean, scale = (np.empty(k) for _ in range(3))
    for lo in range(0, k, step):
        block = np.asfortranarray(frame.iloc[:, lo:lo + step].to_numpy(dtype=np.float64))
        imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(block)
        scaler = StandardScaler().fit(np.asfortranarray(imputer.transform(block)))
        hi = lo + block.shape[1]
        median[lo:hi], mean[lo:hi], scale[lo:hi] = imputer.statistics_, scaler.mean_, scaler.scale_
    return median, mean, scale


class Preprocessor(TransformerMixin, BaseEstimator):
    """Leak-free feature encoding, fitted on training rows only (a scikit-learn transformer).

    Numeric columns: median imputation, then z-score (``StandardScaler``).
    Categorical columns: most-frequent imputation, then one-hot
    (``handle_unknown="ignore"``: unseen categories encode as all zeros, with
    an ``UnseenCategoryWarning`` counting them). With ``missing_indicators``,
    one 0/1 column ``<col>_missing`` per column that had missing values in the
    fitting data. Output columns: numerics, one-hots, indicators.

    Columns are named (a DataFrame's column names) or given by position
    (integers counted from 0, for a 2-D array or a DataFrame, as in
    scikit-learn's ``ColumnTransformer``); the two cannot be mixed.
    ``fit`` reads only the listed columns (any other column, the label too, is
    ignored) and never uses ``y``, so the encoding cannot depend on the label.
    Constructor arguments are stored as given and checked in ``fit``:
    ``clone``, ``Pipeline``, ``GridSearchCV`` and ``check_estimator`` work,
    e.g. ``Pipeline([("prep", Preprocessor(num, cat)), ("mlp", mlp.MLP())])``
    tuned over ``prep__missing_indicators``.

    Parameters
    ----------
    numeric : list of str, or list of int
        Numeric feature columns: names, or positions in ``X``.
    categorical : list of str, or list of int
        Categorical feature columns (text; missing cells as NaN/None), named
        or by position like ``numeric``.
    missing_indicators : bool

    Attributes
    ----------
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        Named columns: the columns read, numeric then categorical. Positions:
        scikit-learn's convention, every column of a DataFrame ``X`` whose
        column names are all strings (absent for an array).
    n_features_in_ : int
        Named columns: the number read. Positions: ``X.shape[1]``, the width
        ``transform`` expects.
    feature_names_ : list of str, length n_features
        E.g. ``"minimum_nights"``, ``"room_type=Private room"``,
        ``"minimum_nights_missing"``; a column given by position p is named
        ``feature_names_in_[p]``, or ``x<p>`` for an array.
        ``get_feature_names_out`` returns them.
    feature_source_ : list of str, length n_features
        The raw column behind each encoded column.
    n_features_ : int, width of the encoded matrix
    indicator_columns_ : list of str or int, columns with a ``<col>_missing`` output
    statistics_ : dict
        Per numeric column (its name or position) ``{"median", "mean", "scale"}``
        (mean and scale of the imputed column, ddof=0); per categorical
        ``{"fill", "categories"}``.
    """

    def __init__(self, numeric, categorical, missing_indicators=False):
        self.numeric = numeric
        self.categorical = categorical
        self.missing_indicators = missing_indicators

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:                                    # tags never raise: fit checks the parameters
            text = not isinstance(self.categorical, (str, bytes)) and len(self.categorical) > 0
        except TypeError:
            text = False
        tags.input_tags.categorical = text      # text columns are one-hot encoded ...
        tags.input_tags.string = text           # ... when there are any
        tags.input_tags.allow_nan = True        # missing cells are imputed
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "transformer_")

    def _check_params(self):
        """(numeric, categorical) as lists of str, or lists of int (positions);
        ``ValueError`` naming the parameter."""
        cols = {}
        for name in ("numeric", "categorical"):
            v = getattr(self, name)
            if v is None or isinstance(v, (str, bytes)) or not np.iterable(v):
                raise ValueError(f"{name}={v!r} must be a list of column names, e.g. "
                                 f"{name}=['a', 'b'], or of column positions, e.g. [0, 1] "
                                 f"(or [] for none)")
            cols[name] = [int(c) if _is_position(c) else str(c) for c in v]
            dup = sorted({c for c in cols[name] if cols[name].count(c) > 1}, key=str)
            if dup:
                raise ValueError(f"{name} lists {_names(dup)} more than once; list each column once")
            neg = [c for c in cols[name] if _is_position(c) and c < 0]
            if neg:
                raise ValueError(f"{name} lists column position {neg[0]}; positions count from 0")
        everything = cols["numeric"] + cols["categorical"]
        positions = [c for c in everything if _is_position(c)]
        if positions and len(positions) != len(everything):
            raise ValueError(f"numeric and categorical mix column positions ({_names(positions)}) "
                             f"and names ({_names([c for c in everything if not _is_position(c)])}); "
                             "list names for a DataFrame, or positions (0, 1, ...) for an array")
        overlap = set(cols["numeric"]) & set(cols["categorical"])
        if overlap:
            raise ValueError(f"columns {_names(sorted(overlap, key=str))} are both numeric and "
                             "categorical; list each column once")
        if not everything:
            raise ValueError("Preprocessor needs at least one numeric or categorical column")
        if not isinstance(self.missing_indicators, (bool, np.bool_)):
            raise ValueError(f"missing_indicators={self.missing_indicators!r} must be True or False")
        return cols["numeric"], cols["categorical"]

    @staticmethod
    def _key(c):
        """Label of column ``c`` (a name or a position) in the canonical frame."""
        return f"x{c}" if _is_position(c) else c

    def _by_position(self, X, what, numeric, categorical, reset):
        """``X`` for columns given by position: scikit-learn's checks (2-D, not
        sparse or complex, at least one row and column, the fitted width; a
        DataFrame keeps its column dtypes), and every position inside it."""
        try:
            if isinstance(X, pd.DataFrame):
                validate_data(self, X, reset=reset, skip_check_array=True)
            else:
                X = validate_data(self, X, reset=reset, dtype=None, accept_sparse=False,
                                  ensure_all_finite=False)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
        if len(X) == 0:
            raise DataError(f"{what}: X has no rows; pass at least one row")
        outside = [c for c in numeric + categorical if c >= X.shape[1]]
        if outside:
            raise ValueError(f"{what}: X has {X.shape[1]} feature(s) (shape={X.shape}) but the "
                             f"Preprocessor reads column position(s) {_listing(outside)}; list "
                             f"positions below {X.shape[1]}")
        if isinstance(X, pd.DataFrame):
            return X.index, lambda c: X.iloc[:, c]
        return pd.RangeIndex(len(X)), lambda c: pd.Series(X[:, c])

    def _frame(self, X, what, numeric, categorical, reset=False):
        """The feature columns of ``X`` in canonical dtypes (float64 / object),
        labelled ``_key(c)``."""
        if _positional(numeric + categorical):
            index, column = self._by_position(X, what, numeric, categorical, reset)
        else:
            if not isinstance(X, pd.DataFrame):
                raise TypeError(f"{what}: X must be a pandas DataFrame with the columns "
                                f"{_names(numeric + categorical)}; got {type(X).__name__} "
                                f"(to encode an array, list column positions: "
                                f"Preprocessor(numeric=[0, 1], categorical=[2]))")
            missing = [c for c in numeric + categorical if c not in X.columns]
            if missing:
                raise DataError(f"{what}: frame lacks feature columns {_names(missing)}; "
                                "pass a frame with the columns the Preprocessor was built for")
            index, column = X.index, lambda c: X[c]
        cols = {}      # built at once: adding a wide frame's columns one by one fragments it
        for c in numeric:
            raw = column(c)
            num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
            bad = (np.isnan(num) & raw.notna().to_numpy()) | np.isinf(num)
            if bad.any():
                label = f"column position {c}" if _is_position(c) else f"column {c!r}"
                frame = pd.DataFrame(index=index)
                values = raw.to_numpy()
                odd = bad & np.array([not isinstance(v, (str, bytes, float, int, np.number))
                                      for v in values], dtype=bool)
                if odd.any():       # a dict, a list ...: not a malformed number but another type
                    first = values[np.flatnonzero(odd)[0]]
                    try:
                        float(first)
                    except (TypeError, ValueError) as e:
                        reason = str(e)
                    else:
                        reason = f"a {type(first).__name__}"
                    raise TypeError(f"{what}: numeric {label} has a value of type "
                                    f"{type(first).__name__} in {_where(frame, odd, '')} "
                                    f"({reason}); numeric cells are numbers, NaN or None")
                raise DataError(f"{what}: numeric {label} has non-numeric or infinite values in "
                                f"{_where(frame, bad, '')} (e.g. {_example(raw[bad].to_numpy())}); "
                                "validate the data with validate_frames first")
            huge = np.abs(num) > MAX_ABS_VALUE
            if huge.any():
                label = f"column position {c}" if _is_position(c) else f"column {c!r}"
                raise DataError(f"{what}: numeric {label} has values beyond +-{MAX_ABS_VALUE:g} "
                                f"in {_where(pd.DataFrame(index=index), huge, '')} "
                                f"(e.g. {_example(raw[huge].to_numpy())}); "
                                + MAGNITUDE_FIX.format(col=c))
            cols[self._key(c)] = num
        for c in categorical:
            cols[self._key(c)] = _categorical_values(column(c))
        return pd.DataFrame(cols, index=index, columns=[self._key(c) for c in numeric + categorical])

    def _input_names(self, columns, input_features=None):
        """Display name of each column in ``columns``: a name as given; position p as
        ``input_features[p]``, else ``feature_names_in_[p]``, else ``x<p>``."""
        if not _positional(columns):
            return [str(c) for c in columns]
        if input_features is None:
            names = getattr(self, "feature_names_in_", None)
            if names is None:
                return [f"x{c}" for c in columns]
        else:
            names = [str(c) for c in input_features]
            fitted = getattr(self, "feature_names_in_", None)
            if fitted is not None and names != [str(c) for c in fitted]:
                raise ValueError(f"input_features {_names(names)} are not the fitted columns "
                                 f"{_names(fitted)}")
            if len(names) != self.n_features_in_:
                raise ValueError(f"input_features has {len(names)} names; X had "
                                 f"{self.n_features_in_} columns in fit")
        return [str(names[c]) for c in columns]

    def _encoded_names(self, input_features=None):
        """(feature names, feature sources) of the encoded columns."""
        names, source = [], []
        shown = dict(zip(self._numeric + self._categorical,
                         self._input_names(self._numeric + self._categorical, input_features)))
        for c in self._numeric:
            names.append(shown[c])
            source.append(shown[c])
        for c in self._categorical:
            levels = self.statistics_[c]["categories"]
            names += [f"{shown[c]}={v}" for v in levels]
            source += [shown[c]] * len(levels)
        names += [f"{shown[c]}_missing" for c in self.indicator_columns_]
        source += [shown[c] for c in self.indicator_columns_]
        return _unique_names(names), source     # a column "cat=a" beside level a of cat: two names

    def fit(self, X, y=None):
        """Fit imputers, encoder and scaler on the feature columns of ``X``.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns)
            Training rows; a DataFrame for named columns. Any other columns
            (the label too) are ignored.
        y : ignored (accepted so the Preprocessor can sit in a ``Pipeline``)

        Returns
        -------
        self
        """
        numeric, categorical = self._check_params()
        X = self._frame(X, "fit", numeric, categorical, reset=True)
        if len(X) == 0:
            raise DataError("fit: no rows; fit the Preprocessor on at least one training row")
        key = self._key
        # Each part is fitted on its own columns and nothing is encoded to fit (a
        # ColumnTransformer encodes every row to fit: several full-size copies); the numeric
        # columns in groups that bound the imputer's copies (``_median_scale_stats``).
        # ``transform`` joins the parts' outputs in this order: numerics, one-hots, indicators.
        parts, columns, stats = [], [], {}
        if numeric:
            columns.append([key(c) for c in numeric])
            median, mean, scale = _median_scale_stats(X[columns[0]])
            parts.append(_MedianScaled(median, mean, scale))
            stats = {c: {"median": float(median[j]), "mean": float(mean[j]), "scale": float(scale[j])}
                     for j, c in enumerate(numeric)}
        if categorical:
            cat = Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False,
                                         dtype=np.float64))]).fit(X[[key(c) for c in categorical]])
            parts.append(cat)
            columns.append([key(c) for c in categorical])
            fills, cats = cat["impute"].statistics_, cat["onehot"].categories_
            for j, c in enumerate(categorical):
                stats[c] = {"fill": str(fills[j]), "categories": [str(v) for v in cats[j]]}
        indicator_columns = []
        if self.missing_indicators:
            indicator_columns = [c for c in numeric + categorical if X[key(c)].isna().any()]
            if indicator_columns:
                columns.append([key(c) for c in indicator_columns])
                parts.append(MissingIndicator(features="all", error_on_new=False).fit(X[columns[-1]]))
        self._numeric, self._categorical = numeric, categorical
        if not _positional(numeric + categorical):     # positions: validate_data set them
            self.feature_names_in_ = np.asarray(numeric + categorical, dtype=object)
            self.n_features_in_ = len(self.feature_names_in_)
        self.indicator_columns_ = indicator_columns
        self.statistics_ = stats
        self.feature_names_, self.feature_source_ = self._encoded_names()
        self.n_features_ = len(self.feature_names_)
        self.transformer_ = list(zip(parts, columns))     # (fitted transformer, its columns)
        return self

    def transform(self, X, out=None):
        """Encode ``X`` with the fitted statistics (which never change here).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_columns), with the
            fitted columns (for positions: the fitted width)
        out : ndarray of shape (n_samples, n_features), floating, or None
            Where to write the encoding (returned): each piece is computed in
            float64 and cast to ``out``'s dtype (float32 holds a large file in
            half the memory, with the values ``astype(float32)`` of the float64
            encoding would give). None: a new float64 array.

        Returns
        -------
        ndarray of shape (n_samples, n_features), float64 (or ``out``)
        """
        check_is_fitted(self, msg="Preprocessor is not fitted; call fit(train_df) first")
        X = self._frame(X, "transform", self._numeric, self._categorical)
        self._warn_unseen(X)
        if out is None:
            out = np.empty((len(X), self.n_features_), dtype=np.float64)
        elif not (isinstance(out, np.ndarray) and out.shape == (len(X), self.n_features_)
                  and out.dtype.kind == "f" and out.flags.writeable):
            raise ValueError(f"out must be a writable floating ndarray of shape ({len(X)}, "
                             f"{self.n_features_}), got {getattr(out, 'dtype', type(out).__name__)} "
                             f"of shape {getattr(out, 'shape', None)}")
        rows = max(1, min(TRANSFORM_CHUNK, TRANSFORM_BYTES // (8 * X.shape[1])))
        for lo in range(0, len(X), rows):     # in pieces: memory of one piece
            piece = X.iloc[lo:lo + rows]
            at = 0
            for transformer, columns in self.transformer_:
                part = transformer.transform(piece[columns])
                out[lo:lo + len(piece), at:at + part.shape[1]] = part
                at += part.shape[1]
            if at != self.n_features_:
                raise RuntimeError(f"transform produced {at} columns, expected {self.n_features_}; "
                                   "this is a bug in prep.Preprocessor")
        if out.shape != (len(X), self.n_features_):
            raise RuntimeError(f"transform produced shape {out.shape}, expected "
                               f"({len(X)}, {self.n_features_}); this is a bug in prep.Preprocessor")
        if not np.isfinite(out).all():
            raise RuntimeError("transform produced non-finite values; this is a bug in prep.Preprocessor")
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the encoded columns, ndarray of str of shape (n_features,).

        ``input_features``, if given, must be the fitted columns
        (``feature_names_in_``); for columns given by position, any names of
        all ``n_features_in_`` input columns when the fit saw none.
        """
        check_is_fitted(self, msg="Preprocessor is not fitted; call fit(train_df) first")
        if _positional(self._numeric + self._categorical):
            return np.asarray(self._encoded_names(input_features)[0], dtype=object)
        if input_features is not None and \
                [str(c) for c in input_features] != list(self.feature_names_in_):
            raise ValueError(f"input_features {_names(input_features)} are not the fitted "
                             f"columns {_names(self.feature_names_in_)}")
        return np.asarray(self.feature_names_, dtype=object)

    def _warn_unseen(self, X):
        counts = []
        for c, shown in zip(self._categorical, self._input_names(self._categorical)):
            vals = X[self._key(c)].to_numpy()
            known = set(self.statistics_[c]["categories"])
            unseen = [v for v in vals if isinstance(v, str) and v not in known]
            if unseen:
                counts.append(f"{shown!r}: {len(unseen)} rows (e.g. {unseen[0]!r})")
        if counts:
            # stack: here, transform, scikit-learn's set_output wrapper, the caller
            warnings.warn("categories never seen in fit are encoded as all-zero one-hot rows: "
                          + "; ".join(counts), UnseenCategoryWarning, stacklevel=4)


# ------------------------------------------------------------ split and encode
def train_val_split(df, target, val_size=0.2, seed=42):
    """Stratified, seeded train/validation split (rows keep their index).

    Parameters
    ----------
    df : DataFrame of shape (n_samples, n_columns)
    target : str
        Label column to stratify on.
    val_size : float in (0, 1)
    seed : int

    Returns
    -------
    train_df : DataFrame of shape (n_samples - n_val, n_columns)
    val_df : DataFrame of shape (n_val, n_columns)
    """
    train_rows, val_rows = split_positions(df, target, val_size, seed)
    return df.iloc[train_rows], df.iloc[val_rows]


def split_positions(df, target, val_size=0.2, seed=42):
    """``(train_rows, val_rows)``: the positions in ``df`` of ``train_val_split``'s two
    frames, in their order (int64 arrays; the frames are ``df.iloc`` of them), with the
    same checks. ``encode`` keeps these instead of copies of the frames."""
    if not isinstance(val_size, (int, float)) or not 0.0 < val_size < 1.0:
        raise ValueError(f"val_size must be a fraction in (0, 1), got {val_size!r}")
    if target not in df.columns:
        raise DataError(f"train_val_split: no target column {target!r}; columns are {_names(df.columns)}")
    y = df[target].to_numpy()
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise DataError(f"train: class {classes[counts.argmin()]} has only 1 row, too few for a "
                        "stratified validation split; add examples or remove that class")
    n_val = int(np.ceil(val_size * len(df)))
    if n_val < len(classes) or len(df) - n_val < len(classes):
        raise DataError(f"train: {len(df)} rows with val_size={val_size} cannot give both splits "
                        f"all {len(classes)} classes; use more rows or another val_size")
    # splitting the positions gives train_test_split(df, ...)'s rows: the split depends
    # only on the row count, val_size, the seed and y
    train_rows, val_rows = train_test_split(np.arange(len(df)), test_size=val_size,
                                            random_state=seed, stratify=y)
    return train_rows.astype(np.int64), val_rows.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Encoded:
    """The encoded splits of a dataset (``encode``): what the networks train and are scored on.

    Attributes
    ----------
    X_train, X_val, X_test : ndarray of shape (n_rows, n_features), float64 (or ``encode``'s ``dtype``)
    y_train, y_val, y_test : ndarray of shape (n_rows,), int64 or None
        Class indices 0..K-1 into ``Dataset.classes``; ``y_test`` is None when
        the test file has no labels.
    preprocessor : Preprocessor or None
        Fitted on the training split only (None in ``arrays()``).
    feature_names, feature_source : list of str
        The encoded features' names and the raw column each comes from.
    frame : pandas.DataFrame or None
        ``Dataset.train`` itself, not a copy (None in ``arrays()``).
    train_rows, val_rows : ndarray of int64 or None
        Positions in ``frame`` of the training and validation rows, in the order of
        ``X_train`` and ``X_val``; ``train_df``/``val_df`` are those rows of ``frame``
        (made when asked for: a large file is not held twice).
    """
    X_train: Any
    y_train: Any
    X_val: Any
    y_val: Any
    X_test: Any
    y_test: Any
    preprocessor: Any = None
    feature_names: list = field(default_factory=list)
    feature_source: list = field(default_factory=list)
    frame: Any = None
    train_rows: Any = None
    val_rows: Any = None
    _casts: dict = field(default_factory=dict, repr=False)    # arrays(dtype)'s conversions

    @property
    def train_df(self):
        """The raw training split: the ``train_rows`` of ``frame`` (None without it)."""
        return None if self.frame is None else self.frame.iloc[self.train_rows]

    @property
    def val_df(self):
        """The raw validation split: the ``val_rows`` of ``frame`` (None without it)."""
        return None if self.frame is None else self.frame.iloc[self.val_rows]

    def X(self, split):
        """``X_train``, ``X_val`` or ``X_test`` for ``split`` in ``("train", "val", "test")``."""
        return getattr(self, f"X_{_split_name(split)}")

    def y(self, split):
        """``y_train``, ``y_val`` or ``y_test`` for ``split`` in ``("train", "val", "test")``."""
        return getattr(self, f"y_{_split_name(split)}")

    def arrays(self, dtype=None, empty=None):
        """The arrays alone (no preprocessor, no frames): what a worker process needs.

        ``dtype`` (e.g. float32, the dtype the worker's network computes in): ``X_train``,
        ``X_val`` and ``X_test`` converted to it, made once per ``Encoded`` and shared by
        every job that asks (a network converts its inputs to its dtype anyway, so it
        trains and predicts the same; the worker receives and holds half the bytes).
        ``empty`` (``shape, dtype -> ndarray``, e.g. ``shared_arrays.empty``) allocates
        the converted arrays, in float64 too; by default float64 is not copied."""
        dtype = np.dtype(np.float64 if dtype is None else dtype)
        if empty is None and dtype == np.dtype(np.float64):
            return replace(self, preprocessor=None, frame=None, _casts={})
        key = (dtype.str, empty)
        if key not in self._casts:
            self._casts[key] = {name: None if getattr(self, name) is None else
                                _converted(getattr(self, name), dtype, empty or np.empty)
                                for name in ("X_train", "X_val", "X_test")}
        return replace(self, preprocessor=None, frame=None, _casts={}, **self._casts[key])


def _converted(X, dtype, empty):
    """``X`` converted to ``dtype`` in a C-ordered array from ``empty(shape, dtype)``."""
    out = empty(X.shape, dtype)
    np.copyto(out, X, casting="unsafe")
    return out


def _split_name(split):
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    return split


def encode(dataset, missing_indicators=False, val_size=0.2, seed=42, dtype=None, empty=None):
    """Split ``dataset.train``, fit a Preprocessor on the training split only, encode all three.

    Parameters
    ----------
    dataset : Dataset
    missing_indicators : bool
        Add ``<col>_missing`` columns (see ``Preprocessor``).
    val_size : float in (0, 1)
    seed : int
        Split seed.
    dtype : numpy dtype or None
        The matrices' dtype (None: float64), written directly: float32 never
        holds a float64 copy (``Preprocessor.transform``'s ``out``).
    empty : callable or None
        ``(shape, dtype) -> ndarray`` allocating them and the labels (e.g.
        ``shared_arrays.empty``; None: ``np.empty``); ``arrays(dtype, empty)``
        of the result then returns these very matrices.

    Returns
    -------
    Encoded
        ``X_train`` (n_tr, d), ``X_val`` (n_val, d), ``X_test`` (n_test, d)
        float64 (or ``dtype``); ``y_train``, ``y_val``, ``y_test`` int64 class indices
        0..K-1 into ``dataset.classes`` (``dataset.decode`` maps them back;
        ``y_test`` is None when ``dataset.test_labelled`` is False); ``preprocessor``; ``feature_names``
        and ``feature_source`` (length d); ``train_df`` and ``val_df`` (the
        raw split frames).
    """
    frame = dataset.train
    train_rows, val_rows = split_positions(frame, dataset.target, val_size=val_size, seed=seed)
    pre = Preprocessor(dataset.numeric, dataset.categorical, missing_indicators=missing_indicators)

    def features(df, rows=None):           # the Preprocessor never sees the label column
        cols = [k for k, c in enumerate(df.columns) if c != dataset.target]
        return df.iloc[:, cols] if rows is None else df.iloc[rows, cols]    # one copy of the rows

    dtype = np.dtype(np.float64 if dtype is None else dtype)
    alloc = empty or np.empty

    def encoded(df):
        return pre.transform(df, out=alloc((len(df), pre.n_features_), dtype))

    raw = features(frame, train_rows)
    pre.fit(raw)
    X_train = encoded(raw)
    del raw

    vocabulary = pd.Index(dataset.classes)      # label value -> 0..K-1 (any label type)

    def labels(df, rows=None):
        raw = df[dataset.target].to_numpy()
        raw = raw if rows is None else raw[rows]
        idx = vocabulary.get_indexer(raw)
        if (idx < 0).any():
            raise DataError(f"labels {_listing(pd.unique(raw[idx < 0]))} are not among the "
                            f"training classes {_listing(dataset.classes, 20)}; validate the data first")
        out = alloc(idx.shape, np.int64)
        out[:] = idx
        return out

    X = {"X_train": X_train, "X_val": encoded(features(frame, val_rows)),
         "X_test": encoded(features(dataset.test))}
    # arrays(dtype, empty) is asked with these very arguments: it returns these matrices
    casts = {} if empty is None and dtype == np.float64 else {(dtype.str, empty): dict(X)}
    return Encoded(**X, y_train=labels(frame, train_rows), y_val=labels(frame, val_rows),
                   y_test=labels(dataset.test) if dataset.test_labelled else None,
                   preprocessor=pre, feature_names=list(pre.feature_names_),
                   feature_source=list(pre.feature_source_), frame=frame,
                   train_rows=train_rows, val_rows=val_rows, _casts=casts)


# ---------------------------------------------------------------------------
# EDA
#
# Label-free and label-aware statistics on any pair of classification frames
# (train, test): structure and missingness tables, class balance, correlated
# pairs and single-feature predictive power (Part A). The train/test shift
# diagnosis (Part D) is shift.py; it reuses the argument checks and helpers below.
# ---------------------------------------------------------------------------


# -- argument checks --------------------------------------------------------

def _check_frame(df, name):
    if not isinstance(df, pd.DataFrame):
        raise ValueError(
            f"{name} must be a pandas DataFrame, got {type(df).__name__}; "
            f"load it with pandas.read_csv first")
    if len(df) == 0:
        raise ValueError(f"{name} has no rows; check the CSV path and its contents")


def _check_columns(df, cols, name, role):
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"{role} column(s) {missing} not found in {name}; available columns: "
            f"{list(df.columns)}; fix the names passed as {role}=")


def _check_features(frames, target, numeric, categorical):
    """Validate feature lists against every (name, frame) in ``frames``."""
    numeric, categorical = list(numeric), list(categorical)
    if not numeric and not categorical:
        raise ValueError("no features given: pass at least one column in numeric= or categorical=")
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"column(s) {both} appear in both numeric= and categorical=; "
                         f"list each column once")
    dup = sorted({c for c in numeric + categorical if (numeric + categorical).count(c) > 1})
    if dup:
        raise ValueError(f"column(s) {dup} listed more than once; list each column once")
    if target is not None and target in numeric + categorical:
        raise ValueError(f"target {target!r} is also listed as a feature; remove it from "
                         f"numeric=/categorical= (a feature list must not contain the label)")
    for name, df in frames:
        _check_frame(df, name)
        _check_columns(df, numeric, name, "numeric")
        _check_columns(df, categorical, name, "categorical")
        for c in numeric:
            if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
                bad = pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()
                rows = list(np.flatnonzero(bad.to_numpy())[:3])
                example = df[c][bad].iloc[0] if bad.any() else df[c].dtype
                raise ValueError(
                    f"numeric column {c!r} in {name} has non-numeric values "
                    f"(dtype {df[c].dtype}, rows {rows}, e.g. {example!r}); "
                    f"fix the CSV or pass {c!r} in categorical= instead")
        if target is not None:
            if target not in df.columns:
                raise ValueError(f"target column {target!r} not found in {name}; available "
                                 f"columns: {list(df.columns)}; fix target=")
            n_na = int(df[target].isna().sum())
            if n_na:
                raise ValueError(f"target {target!r} in {name} has {n_na} missing values; "
                                 f"drop those rows before diagnosing")
    return numeric, categorical


def _check_cv(cv, n):
    if not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ValueError(f"cv must be an integer >= 2, got {cv!r}")
    if n < 2 * cv:
        raise ValueError(f"only {n} rows for cv={cv} folds; need at least {2 * cv} rows "
                         f"or a smaller cv=")


def _check_range(name, value, lo, hi):
    """Raise unless lo <= value <= hi (a threshold given as a keyword argument)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")


def _folds(y, cv, seed):
    """Stratified folds when there are >= 2 classes, each with >= cv members; plain K-fold
    otherwise."""
    _, counts = np.unique(y, return_counts=True)
    if len(counts) > 1 and counts.min() >= cv:
        return StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return KFold(n_splits=cv, shuffle=True, random_state=seed)


def _labels(series):
    """Integer codes of a label Series, shape (n,), classes in sorted order."""
    return pd.factorize(pd.Series(series.to_numpy(dtype=object)), sort=True)[0].astype(np.int64)


def _codes(values, categories):
    """Category codes of ``values`` in ``categories``; NaN -> -1, unseen -> len(categories)."""
    idx = pd.Index(categories)
    v = pd.Series(values, dtype=object)
    codes = idx.get_indexer(v)
    codes = np.where(codes < 0, len(categories), codes)
    codes = np.where(v.isna().to_numpy(), -1, codes)
    return codes.astype(np.float64)


def _balanced_accuracy(y, pred):
    """Mean recall over the classes present in y (ints); same as sklearn's, without overhead."""
    k = max(int(y.max()), int(pred.max())) + 1
    n = np.bincount(y, minlength=k).astype(np.float64)
    hit = np.bincount(y[pred == y], minlength=k)
    present = n > 0
    return float(np.mean(hit[present] / n[present]))


_SCORES = ("balanced", "accuracy")


def _check_score(score):
    if score not in _SCORES:
        raise ValueError(f"score must be one of {list(_SCORES)}, got {score!r}")


def _normalise(value, base):
    """(value - base) / (1 - base): 0 = a constant prediction, 1 = perfect; may be < 0."""
    if not np.isfinite(value) or not np.isfinite(base) or base >= 1.0:
        return 0.0
    return float((value - base) / (1.0 - base))


def pps_score(balanced_accuracy, n_classes):
    """The predictive-power score of a prediction with this balanced accuracy over
    ``n_classes`` classes: (balanced_accuracy - 1/K) / (1 - 1/K), clipped at 0 (0 is
    chance, 1 perfect). Part A's pps and the shift diagnosis's share this definition."""
    return max(0.0, _normalise(balanced_accuracy, 1.0 / n_classes))


def _pps(cvres, score, n_classes):
    """Predictive power score from :func:`_single_feature_cv` output, clipped at 0.

    balanced: ``pps_score``; accuracy: (acc - majority) / (1 - majority).
    """
    acc, base, bal = cvres
    if score == "balanced":
        return pps_score(bal, n_classes)
    return max(0.0, _normalise(acc, base))


# -- JSON -------------------------------------------------------------------

def to_jsonable(obj):
    """Convert results of this section into plain JSON-serialisable Python.

    Parameters
    ----------
    obj : object
        DataFrame (-> list of records, index kept as a column when it is
        named), Series (-> dict), dict, list, tuple, ndarray, numpy scalar,
        float, path (-> str), or anything already JSON-friendly; any other
        object becomes its ``str``.

    Returns
    -------
    object
        The same structure with numpy scalars turned into Python scalars and
        NaN / +-inf turned into ``None``.
    """
    if isinstance(obj, pd.DataFrame):
        df = obj.reset_index() if obj.index.name is not None else obj
        return [{str(k): to_jsonable(v) for k, v in rec.items()}
                for rec in df.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)  # anything else (a dtype, a timestamp ...) as its text
