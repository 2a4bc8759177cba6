"""Data: finding, loading and validating the CSV pair, synthetic data, leak-free
preprocessing and the train/validation split.

Everything that touches raw rows lives here; the network (``mlp.py``) only ever
sees the float64 matrices that ``encode`` returns.

- ``find_data_dir`` / ``load_csv_pair`` / ``load_data`` find and read
  ``train.csv`` and ``test.csv`` (any classification CSV pair with an integer
  label column, ``--target``), falling back to ``make_synthetic`` when no folder
  holds both files.
- ``validate_frames`` turns every user-input problem into a one-line
  ``DataError`` that names the file, the column, the lines and a fix.
- ``make_synthetic`` builds a dataset with the same schema as the course data,
  optionally with a planted train-only shortcut column (for testing the
  shift diagnostics and the mitigation end to end).
- ``Preprocessor`` (median / most-frequent imputation, one-hot, z-score,
  optional missing indicators) is fitted on the training split only and never
  sees the label; ``train_val_split`` and ``encode`` wire it up.

Line numbers in errors count the CSV header as line 1 (so the first data row is
line 2). Blank lines are skipped by the CSV reader and are not counted.
"""
from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

DEFAULT_TARGET = "price_class"
TRAIN_FILE, TEST_FILE = "train.csv", "test.csv"
REPO_DIR = Path(__file__).resolve().parent
DATA_DIR_ENV = "MLP_DATA_DIR"
MAX_LISTED = 5  # rows/lines named in one error message


class DataError(ValueError):
    """A problem with the user's data; the message is one line with a fix."""


class UnseenCategoryWarning(UserWarning):
    """Categories at transform time that the Preprocessor never saw in fit."""


# ------------------------------------------------------------ small helpers
def _listing(items, limit=MAX_LISTED):
    """'a, b, c and 4 more' for at most ``limit`` items."""
    items = [str(i) for i in items]
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _where(frame, mask, name):
    """Name the rows of ``frame`` selected by boolean ``mask`` for a message.

    For a ``*.csv`` source the rows are CSV line numbers (header = line 1);
    for a DataFrame they are its index labels.
    """
    pos = np.flatnonzero(np.asarray(mask, dtype=bool))
    if str(name).endswith(".csv"):
        word = "line" if len(pos) == 1 else "lines"
        return f"{word} {_listing(pos + 2)}"
    word = "row" if len(pos) == 1 else "rows"
    return f"{word} {_listing(frame.index[pos])}"


def _names(cols):
    return ", ".join(repr(str(c)) for c in cols)


def _example(values):
    return repr(str(values[0]))


# ------------------------------------------------------------ finding data
def _has_pair(folder):
    return (folder / TRAIN_FILE).is_file() and (folder / TEST_FILE).is_file()


def find_data_dir(data_dir=None):
    """Return the folder holding ``train.csv`` and ``test.csv``, or None.

    Search order: ``data_dir`` if given (it must hold both files), then
    ``$MLP_DATA_DIR``, ``./data`` (current directory), ``<repo>/data`` and
    ``<repo>/../shared/data``; the first folder holding both files wins.

    Parameters
    ----------
    data_dir : str or Path or None
        Explicit folder (``--data-dir``).

    Returns
    -------
    pathlib.Path or None
        The folder, or None when no candidate holds both files.

    Raises
    ------
    DataError
        If ``data_dir`` is given but is not a folder or lacks one of the files.
    """
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"data folder {folder} does not exist; "
                            "pass --data-dir with the folder that holds train.csv and test.csv")
        for fname in (TRAIN_FILE, TEST_FILE):
            if not (folder / fname).is_file():
                raise DataError(f"{fname} not found in {folder} (looked for {folder / fname}); "
                                "put train.csv and test.csv there or pass another --data-dir")
        return folder
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        if _has_pair(Path(env).expanduser()):
            return Path(env).expanduser()
        warnings.warn(f"${DATA_DIR_ENV}={env} does not hold both {TRAIN_FILE} and {TEST_FILE}; "
                      "ignoring it and searching ./data, <repo>/data, <repo>/../shared/data", stacklevel=2)
    for folder in (Path.cwd() / "data", REPO_DIR / "data", REPO_DIR.parent / "shared" / "data"):
        if _has_pair(folder):
            return folder
    return None


# ------------------------------------------------------------ loading
@dataclass
class Dataset:
    """A validated train/test pair.

    Attributes
    ----------
    train, test : DataFrame
        Feature columns (numeric as float64, categorical as object with NaN
        for missing) followed by the target column (int64 labels).
    target : str
        Name of the label column.
    numeric, categorical : list of str
        Feature columns by kind, in file order.
    classes : ndarray of shape (n_classes,)
        Sorted int64 labels seen in train.
    source : str
        Folder the CSVs came from, or "synthetic".
    synthetic : bool
        True when the data was generated by ``make_synthetic``.
    """
    train: pd.DataFrame
    test: pd.DataFrame
    target: str
    numeric: list
    categorical: list
    classes: np.ndarray
    source: str
    synthetic: bool = False

    @property
    def features(self):
        """All feature columns (numeric and categorical) in file order."""
        return [c for c in self.train.columns if c != self.target]


def _read_csv(path):
    """Read one CSV as strings (so both files parse identically), with checks."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found; put {path.name} in {path.parent} or pass --data-dir")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); it needs a header line and data rows")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV") from None
    header = [h.strip() for h in header]
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        where = "; ".join(f"{d!r} in columns {_listing([i + 1 for i, h in enumerate(header) if h == d])}"
                          for d in dups)
        raise DataError(f"{path}: duplicate column names ({where}); rename or delete the duplicates")
    try:
        df = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty (no header line); it needs a header line and data rows") from None
    except pd.errors.ParserError as exc:
        msg = " ".join(str(exc).split())
        raise DataError(f"{path} is not a valid CSV ({msg}); check the quoting and the number "
                        "of fields on that line") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def load_csv_pair(data_dir, target=DEFAULT_TARGET, categorical=None, drop=None):
    """Read and validate ``data_dir/train.csv`` and ``data_dir/test.csv``.

    Parameters
    ----------
    data_dir : str or Path
        Folder holding both files.
    target : str
        Label column (integer-valued).
    categorical : list of str, optional
        Columns to treat as categorical; default: the non-numeric columns.
    drop : list of str, optional
        Columns to ignore.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        For any problem with the files; the message says how to fix it.
    """
    folder = Path(data_dir)
    paths = [folder / TRAIN_FILE, folder / TEST_FILE]
    train, test = (_read_csv(p) for p in paths)
    ds = validate_frames(train, test, target=target, categorical=categorical, drop=drop,
                         names=tuple(str(p) for p in paths))
    ds.source = str(folder)
    return ds


def _parse_labels(series, name, target):
    """Integer labels (int64) from a label column, or a DataError naming rows."""
    missing = series.isna().to_numpy()
    if missing.any():
        raise DataError(f"{name}: target {target!r} is missing in {_where(series, missing, name)}; "
                        "fill in those labels or delete the rows")
    num = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(num)
    bad[~bad] = num[~bad] != np.round(num[~bad])
    if bad.any():
        raise DataError(f"{name}: target {target!r} has non-integer labels in "
                        f"{_where(series, bad, name)} (e.g. {_example(series[bad].to_numpy())}); "
                        "labels must be integer class codes: map them to 0..K-1 "
                        "or pass --target with the right column")
    return num.astype(np.int64)


def _categorical_values(series):
    """Object array of str with np.nan for missing (one representation everywhere)."""
    vals = series.to_numpy(dtype=object)
    miss = pd.isna(vals)
    out = np.empty(len(vals), dtype=object)
    out[miss] = np.nan
    out[~miss] = [str(v) for v in vals[~miss]]
    return out


def validate_frames(train, test, target=DEFAULT_TARGET, categorical=None, drop=None,
                    names=("train.csv", "test.csv")):
    """Validate a train/test pair of DataFrames and type their columns.

    A feature column is numeric when most of its non-missing train values
    parse as numbers (unless listed in ``categorical``); otherwise categorical.

    Parameters
    ----------
    train : DataFrame of shape (n_train, n_columns)
    test : DataFrame of shape (n_test, n_columns)
        Same columns as ``train`` (any order), including ``target``.
    target : str
        Label column; labels must be integer-valued.
    categorical : list of str, optional
        Columns forced categorical.
    drop : list of str, optional
        Columns to ignore.
    names : tuple of (str, str)
        How to call the two frames in messages. Names ending in ``.csv`` get
        CSV line numbers (header = line 1); others get index labels.

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
    for df, name in ((train, ntr), (test, nte)):
        if target not in df.columns:
            raise DataError(f"{name} has no target column {target!r}; columns are "
                            f"{_names(df.columns)}; pass --target with the label column")
    train = train.drop(columns=[c for c in drop if c in train.columns])
    test = test.drop(columns=[c for c in drop if c in test.columns])

    missing_in_test = [c for c in train.columns if c not in test.columns]
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
    bad_cat = [c for c in categorical if c not in features]
    if bad_cat:
        raise DataError(f"--categorical names {_names(bad_cat)}, which "
                        f"{'is not a feature column' if len(bad_cat) == 1 else 'are not feature columns'}"
                        f" of {ntr}; feature columns are {_names(features)}")

    out_tr, out_te = pd.DataFrame(index=train.index), pd.DataFrame(index=test.index)
    numeric, cats = [], []
    for col in features:
        if train[col].isna().all():
            raise DataError(f"{ntr}: column {col!r} is entirely empty; pass --drop {col} "
                            "or fill it in")
        if col in categorical:
            is_numeric = False
        else:
            present = train[col].dropna()
            parsed = pd.to_numeric(present, errors="coerce")
            is_numeric = parsed.notna().mean() > 0.5
        if not is_numeric:
            cats.append(col)
            out_tr[col] = _categorical_values(train[col])
            out_te[col] = _categorical_values(test[col])
            continue
        numeric.append(col)
        for src, dst, name in ((train, out_tr, ntr), (test, out_te, nte)):
            raw = src[col]
            num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
            text = np.isnan(num) & raw.notna().to_numpy()
            if text.any():
                raise DataError(f"{name}: column {col!r} has non-numeric values in {_where(raw, text, name)} "
                                f"(e.g. {_example(raw[text].to_numpy())}); fix the CSV or pass "
                                f"--categorical {col}")
            inf = np.isinf(num)
            if inf.any():
                raise DataError(f"{name}: column {col!r} has infinite values in {_where(raw, inf, name)}; "
                                f"fix the CSV or pass --drop {col}")
            dst[col] = num
    y_tr = _parse_labels(train[target], ntr, target)
    y_te = _parse_labels(test[target], nte, target)
    classes = np.unique(y_tr)
    if len(classes) < 2:
        raise DataError(f"{ntr}: target {target!r} has only one class ({classes[0]}); a classifier "
                        "needs at least 2, so check --target")
    unseen = ~np.isin(y_te, classes)
    if unseen.any():
        raise DataError(f"{nte}: classes {_listing(np.unique(y_te[unseen]))} in "
                        f"{_where(test[target], unseen, nte)} never occur in {ntr} (classes there: "
                        f"{_listing(classes, 20)}); the model cannot predict them, so delete those rows "
                        "or add training examples")
    out_tr[target] = y_tr
    out_te[target] = y_te
    return Dataset(train=out_tr, test=out_te, target=target, numeric=numeric, categorical=cats,
                   classes=classes.astype(np.int64), source=Path(str(ntr)).name, synthetic=False)


def load_data(data_dir=None, target=DEFAULT_TARGET, categorical=None, drop=None, seed=0):
    """Find and load the CSV pair, or fall back to synthetic data.

    Parameters
    ----------
    data_dir : str or Path, optional
        Explicit folder (must hold both files); see ``find_data_dir``.
    target, categorical, drop
        As in ``load_csv_pair``.
    seed : int
        Seed for ``make_synthetic`` when no data is found.

    Returns
    -------
    Dataset
        ``synthetic=True`` and ``source="synthetic"`` when no folder holds
        both files.
    """
    folder = find_data_dir(data_dir)
    if folder is not None:
        return load_csv_pair(folder, target=target, categorical=categorical, drop=drop)
    train, test = make_synthetic(seed=seed, target=target)
    ds = validate_frames(train, test, target=target, categorical=categorical, drop=drop,
                         names=("synthetic train", "synthetic test"))
    ds.source, ds.synthetic = "synthetic", True
    return ds


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


# ------------------------------------------------------------ preprocessing
class Preprocessor:
    """Leak-free feature encoding, fitted on training rows only.

    Numeric columns: median imputation, then z-score (``StandardScaler``).
    Categorical columns: most-frequent imputation, then one-hot
    (``handle_unknown="ignore"``: unseen categories encode as all zeros, with
    an ``UnseenCategoryWarning`` counting them). With ``missing_indicators``,
    one 0/1 column ``<col>_missing`` per column that had missing values in the
    fitting data. Output columns: numerics, one-hots, indicators.

    Parameters
    ----------
    numeric : list of str
    categorical : list of str
    missing_indicators : bool

    Attributes
    ----------
    feature_names_ : list of str, length n_features
        E.g. ``"minimum_nights"``, ``"room_type=Private room"``,
        ``"minimum_nights_missing"``.
    feature_source_ : list of str, length n_features
        The raw column behind each encoded column.
    statistics_ : dict
        Per numeric column ``{"median", "mean", "scale"}`` (mean and scale of
        the imputed column, ddof=0); per categorical ``{"fill", "categories"}``.
    """

    def __init__(self, numeric, categorical, missing_indicators=False):
        self.numeric = [str(c) for c in numeric]
        self.categorical = [str(c) for c in categorical]
        self.missing_indicators = bool(missing_indicators)
        overlap = set(self.numeric) & set(self.categorical)
        if overlap:
            raise ValueError(f"columns {_names(sorted(overlap))} are both numeric and categorical; "
                             "list each column once")
        if not self.numeric and not self.categorical:
            raise ValueError("Preprocessor needs at least one numeric or categorical column")

    def _frame(self, df, what):
        """The feature columns of ``df`` in canonical dtypes (float64 / object)."""
        cols = self.numeric + self.categorical
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"{what}: frame lacks feature columns {_names(missing)}; "
                            "pass a frame with the columns the Preprocessor was built for")
        out = pd.DataFrame(index=df.index)
        for c in self.numeric:
            num = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
            bad = (np.isnan(num) & df[c].notna().to_numpy()) | np.isinf(num)
            if bad.any():
                raise DataError(f"{what}: numeric column {c!r} has non-numeric or infinite values in "
                                f"{_where(df, bad, '')} (e.g. {_example(df[c][bad].to_numpy())}); "
                                "validate the data with validate_frames first")
            out[c] = num
        for c in self.categorical:
            out[c] = _categorical_values(df[c])
        return out

    def fit(self, df, y=None):
        """Fit imputers, encoder and scaler on the feature columns of ``df``.

        Parameters
        ----------
        df : DataFrame of shape (n_samples, n_columns)
            Training rows; any other columns (the label too) are ignored.
        y : ignored

        Returns
        -------
        self
        """
        X = self._frame(df, "fit")
        if len(X) == 0:
            raise DataError("fit: no rows; fit the Preprocessor on at least one training row")
        parts = []
        if self.numeric:
            parts.append(("num", Pipeline([
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler())]), self.numeric))
        if self.categorical:
            parts.append(("cat", Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False,
                                         dtype=np.float64))]), self.categorical))
        self.indicator_columns_ = []
        if self.missing_indicators:
            self.indicator_columns_ = [c for c in self.numeric + self.categorical if X[c].isna().any()]
            if self.indicator_columns_:
                parts.append(("missing", MissingIndicator(features="all", error_on_new=False),
                              self.indicator_columns_))
        self.transformer_ = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
        self.transformer_.fit(X)

        names, source, stats = [], [], {}
        if self.numeric:
            num = self.transformer_.named_transformers_["num"]
            med, scaler = num["impute"].statistics_, num["scale"]
            for j, c in enumerate(self.numeric):
                names.append(c)
                source.append(c)
                stats[c] = {"median": float(med[j]), "mean": float(scaler.mean_[j]),
                            "scale": float(scaler.scale_[j])}
        if self.categorical:
            cat = self.transformer_.named_transformers_["cat"]
            fills, cats = cat["impute"].statistics_, cat["onehot"].categories_
            for j, c in enumerate(self.categorical):
                levels = [str(v) for v in cats[j]]
                names += [f"{c}={v}" for v in levels]
                source += [c] * len(levels)
                stats[c] = {"fill": str(fills[j]), "categories": levels}
        names += [f"{c}_missing" for c in self.indicator_columns_]
        source += list(self.indicator_columns_)
        self.feature_names_, self.feature_source_, self.statistics_ = names, source, stats
        self.n_features_ = len(names)
        return self

    def transform(self, df):
        """Encode ``df`` with the fitted statistics (which never change here).

        Parameters
        ----------
        df : DataFrame of shape (n_samples, n_columns)

        Returns
        -------
        X : ndarray of shape (n_samples, n_features), float64
        """
        if not hasattr(self, "transformer_"):
            raise RuntimeError("Preprocessor is not fitted; call fit(train_df) first")
        X = self._frame(df, "transform")
        self._warn_unseen(X)
        out = np.ascontiguousarray(self.transformer_.transform(X), dtype=np.float64)
        if out.shape != (len(X), self.n_features_):
            raise RuntimeError(f"transform produced shape {out.shape}, expected "
                               f"({len(X)}, {self.n_features_}); this is a bug in prep.Preprocessor")
        if not np.isfinite(out).all():
            raise RuntimeError("transform produced non-finite values; this is a bug in prep.Preprocessor")
        return out

    def fit_transform(self, df, y=None):
        """``fit(df).transform(df)``; see ``transform`` for the shape."""
        return self.fit(df).transform(df)

    def get_feature_names_out(self, input_features=None):
        """Names of the encoded columns, shape (n_features,)."""
        return np.asarray(self.feature_names_, dtype=object)

    def _warn_unseen(self, X):
        counts = []
        for c in self.categorical:
            vals = X[c].to_numpy()
            known = set(self.statistics_[c]["categories"])
            unseen = [v for v in vals if isinstance(v, str) and v not in known]
            if unseen:
                counts.append(f"{c!r}: {len(unseen)} rows (e.g. {unseen[0]!r})")
        if counts:
            warnings.warn("categories never seen in fit are encoded as all-zero one-hot rows: "
                          + "; ".join(counts), UnseenCategoryWarning, stacklevel=3)


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
    return train_test_split(df, test_size=val_size, random_state=seed, stratify=y)


def encode(dataset, missing_indicators=False, val_size=0.2, seed=42):
    """Split ``dataset.train``, fit a Preprocessor on the training split only, encode all three.

    Parameters
    ----------
    dataset : Dataset
    missing_indicators : bool
        Add ``<col>_missing`` columns (see ``Preprocessor``).
    val_size : float in (0, 1)
    seed : int
        Split seed.

    Returns
    -------
    dict
        ``X_train`` (n_tr, d), ``X_val`` (n_val, d), ``X_test`` (n_test, d)
        float64; ``y_train``, ``y_val``, ``y_test`` int64 class indices
        0..K-1 into ``dataset.classes``; ``preprocessor``; ``feature_names``
        and ``feature_source`` (length d); ``train_df`` and ``val_df`` (the
        raw split frames).
    """
    train_df, val_df = train_val_split(dataset.train, dataset.target, val_size=val_size, seed=seed)
    pre = Preprocessor(dataset.numeric, dataset.categorical, missing_indicators=missing_indicators)
    pre.fit(train_df)

    def labels(df):
        raw = df[dataset.target].to_numpy(dtype=np.int64)
        idx = np.searchsorted(dataset.classes, raw)
        idx = np.minimum(idx, len(dataset.classes) - 1)
        if not np.array_equal(dataset.classes[idx], raw):
            raise DataError(f"labels {_listing(np.setdiff1d(raw, dataset.classes))} are not among the "
                            f"training classes {_listing(dataset.classes, 20)}; validate the data first")
        return idx.astype(np.int64)

    return {"X_train": pre.transform(train_df), "y_train": labels(train_df),
            "X_val": pre.transform(val_df), "y_val": labels(val_df),
            "X_test": pre.transform(dataset.test), "y_test": labels(dataset.test),
            "preprocessor": pre, "feature_names": list(pre.feature_names_),
            "feature_source": list(pre.feature_source_), "train_df": train_df, "val_df": val_df}
