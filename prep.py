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
- EDA and shift diagnostics: ``structure_table``, ``missing_table``,
  ``class_distribution``, ``correlation_pairs``, ``predictive_power`` and
  ``dominance`` (Part A); ``feature_shift`` (label-free, per feature),
  ``adversarial_validation`` (train vs test classifier), ``label_shift``
  (does each feature still predict the label on test?) and ``diagnose``, which
  joins them into an evidence table and names the suspect features (Part D).
  Every statistic comes with its threshold and verdict; nothing here knows a
  column name.

Line numbers in errors count the CSV header as line 1 (so the first data row is
line 2). Blank lines are skipped by the CSV reader and are not counted.
"""
from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_selection import mutual_info_classif
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits  # hard dependency of scikit-learn

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
class Preprocessor(TransformerMixin, BaseEstimator):
    """Leak-free feature encoding, fitted on training rows only (a scikit-learn transformer).

    Numeric columns: median imputation, then z-score (``StandardScaler``).
    Categorical columns: most-frequent imputation, then one-hot
    (``handle_unknown="ignore"``: unseen categories encode as all zeros, with
    an ``UnseenCategoryWarning`` counting them). With ``missing_indicators``,
    one 0/1 column ``<col>_missing`` per column that had missing values in the
    fitting data. Output columns: numerics, one-hots, indicators.

    ``fit`` reads only the listed columns of a DataFrame (any other column, the
    label too, is ignored) and never uses ``y``, so the encoding cannot depend
    on the label. Constructor arguments are stored as given and checked in
    ``fit``: ``clone``, ``Pipeline`` and ``GridSearchCV`` work, e.g.
    ``Pipeline([("prep", Preprocessor(num, cat)), ("mlp", mlp.MLP())])``
    tuned over ``prep__missing_indicators``.

    Parameters
    ----------
    numeric : list of str
        Numeric feature columns.
    categorical : list of str
        Categorical feature columns (text; missing cells as NaN/None).
    missing_indicators : bool

    Attributes
    ----------
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        The columns read, numeric then categorical.
    n_features_in_ : int
    feature_names_ : list of str, length n_features
        E.g. ``"minimum_nights"``, ``"room_type=Private room"``,
        ``"minimum_nights_missing"``; ``get_feature_names_out`` returns them.
    feature_source_ : list of str, length n_features
        The raw column behind each encoded column.
    n_features_ : int, width of the encoded matrix
    indicator_columns_ : list of str, columns with a ``<col>_missing`` output
    statistics_ : dict
        Per numeric column ``{"median", "mean", "scale"}`` (mean and scale of
        the imputed column, ddof=0); per categorical ``{"fill", "categories"}``.
    """

    def __init__(self, numeric, categorical, missing_indicators=False):
        self.numeric = numeric
        self.categorical = categorical
        self.missing_indicators = missing_indicators

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True      # text columns are one-hot encoded
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True        # missing cells are imputed
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "transformer_")

    def _check_params(self):
        """(numeric, categorical) as lists of str; ``ValueError`` naming the parameter."""
        cols = {}
        for name in ("numeric", "categorical"):
            v = getattr(self, name)
            if v is None or isinstance(v, (str, bytes)) or not np.iterable(v):
                raise ValueError(f"{name}={v!r} must be a list of column names, e.g. "
                                 f"{name}=['a', 'b'] (or [] for none)")
            cols[name] = [str(c) for c in v]
            dup = sorted({c for c in cols[name] if cols[name].count(c) > 1})
            if dup:
                raise ValueError(f"{name} lists {_names(dup)} more than once; list each column once")
        overlap = set(cols["numeric"]) & set(cols["categorical"])
        if overlap:
            raise ValueError(f"columns {_names(sorted(overlap))} are both numeric and categorical; "
                             "list each column once")
        if not cols["numeric"] and not cols["categorical"]:
            raise ValueError("Preprocessor needs at least one numeric or categorical column")
        if not isinstance(self.missing_indicators, (bool, np.bool_)):
            raise ValueError(f"missing_indicators={self.missing_indicators!r} must be True or False")
        return cols["numeric"], cols["categorical"]

    def _frame(self, df, what, numeric, categorical):
        """The feature columns of ``df`` in canonical dtypes (float64 / object)."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"{what}: X must be a pandas DataFrame with the columns "
                            f"{_names(numeric + categorical)}; got {type(df).__name__}")
        missing = [c for c in numeric + categorical if c not in df.columns]
        if missing:
            raise DataError(f"{what}: frame lacks feature columns {_names(missing)}; "
                            "pass a frame with the columns the Preprocessor was built for")
        out = pd.DataFrame(index=df.index)
        for c in numeric:
            num = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
            bad = (np.isnan(num) & df[c].notna().to_numpy()) | np.isinf(num)
            if bad.any():
                raise DataError(f"{what}: numeric column {c!r} has non-numeric or infinite values in "
                                f"{_where(df, bad, '')} (e.g. {_example(df[c][bad].to_numpy())}); "
                                "validate the data with validate_frames first")
            out[c] = num
        for c in categorical:
            out[c] = _categorical_values(df[c])
        return out

    def fit(self, X, y=None):
        """Fit imputers, encoder and scaler on the feature columns of ``X``.

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns)
            Training rows; any other columns (the label too) are ignored.
        y : ignored (accepted so the Preprocessor can sit in a ``Pipeline``)

        Returns
        -------
        self
        """
        numeric, categorical = self._check_params()
        X = self._frame(X, "fit", numeric, categorical)
        if len(X) == 0:
            raise DataError("fit: no rows; fit the Preprocessor on at least one training row")
        parts = []
        if numeric:
            parts.append(("num", Pipeline([
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler())]), numeric))
        if categorical:
            parts.append(("cat", Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False,
                                         dtype=np.float64))]), categorical))
        indicator_columns = []
        if self.missing_indicators:
            indicator_columns = [c for c in numeric + categorical if X[c].isna().any()]
            if indicator_columns:
                parts.append(("missing", MissingIndicator(features="all", error_on_new=False),
                              indicator_columns))
        transformer = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
        transformer.fit(X)

        names, source, stats = [], [], {}
        if numeric:
            num = transformer.named_transformers_["num"]
            med, scaler = num["impute"].statistics_, num["scale"]
            for j, c in enumerate(numeric):
                names.append(c)
                source.append(c)
                stats[c] = {"median": float(med[j]), "mean": float(scaler.mean_[j]),
                            "scale": float(scaler.scale_[j])}
        if categorical:
            cat = transformer.named_transformers_["cat"]
            fills, cats = cat["impute"].statistics_, cat["onehot"].categories_
            for j, c in enumerate(categorical):
                levels = [str(v) for v in cats[j]]
                names += [f"{c}={v}" for v in levels]
                source += [c] * len(levels)
                stats[c] = {"fill": str(fills[j]), "categories": levels}
        names += [f"{c}_missing" for c in indicator_columns]
        source += list(indicator_columns)
        self._numeric, self._categorical = numeric, categorical
        self.feature_names_in_ = np.asarray(numeric + categorical, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.indicator_columns_ = indicator_columns
        self.feature_names_, self.feature_source_, self.statistics_ = names, source, stats
        self.n_features_ = len(names)
        self.transformer_ = transformer
        return self

    def transform(self, X):
        """Encode ``X`` with the fitted statistics (which never change here).

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns), with the fitted columns

        Returns
        -------
        ndarray of shape (n_samples, n_features), float64
        """
        check_is_fitted(self, msg="Preprocessor is not fitted; call fit(train_df) first")
        X = self._frame(X, "transform", self._numeric, self._categorical)
        self._warn_unseen(X)
        out = np.ascontiguousarray(self.transformer_.transform(X), dtype=np.float64)
        if out.shape != (len(X), self.n_features_):
            raise RuntimeError(f"transform produced shape {out.shape}, expected "
                               f"({len(X)}, {self.n_features_}); this is a bug in prep.Preprocessor")
        if not np.isfinite(out).all():
            raise RuntimeError("transform produced non-finite values; this is a bug in prep.Preprocessor")
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the encoded columns, ndarray of str of shape (n_features,).

        ``input_features``, if given, must be the fitted columns (``feature_names_in_``).
        """
        check_is_fitted(self, msg="Preprocessor is not fitted; call fit(train_df) first")
        if input_features is not None and \
                [str(c) for c in input_features] != list(self.feature_names_in_):
            raise ValueError(f"input_features {_names(input_features)} are not the fitted "
                             f"columns {_names(self.feature_names_in_)}")
        return np.asarray(self.feature_names_, dtype=object)

    def _warn_unseen(self, X):
        counts = []
        for c in self._categorical:
            vals = X[c].to_numpy()
            known = set(self.statistics_[c]["categories"])
            unseen = [v for v in vals if isinstance(v, str) and v not in known]
            if unseen:
                counts.append(f"{c!r}: {len(unseen)} rows (e.g. {unseen[0]!r})")
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

    def features(df):                      # the Preprocessor never sees the label column
        return df.drop(columns=[dataset.target], errors="ignore")

    X_train = pre.fit_transform(features(train_df))

    def labels(df):
        raw = df[dataset.target].to_numpy(dtype=np.int64)
        idx = np.searchsorted(dataset.classes, raw)
        idx = np.minimum(idx, len(dataset.classes) - 1)
        if not np.array_equal(dataset.classes[idx], raw):
            raise DataError(f"labels {_listing(np.setdiff1d(raw, dataset.classes))} are not among the "
                            f"training classes {_listing(dataset.classes, 20)}; validate the data first")
        return idx.astype(np.int64)

    return {"X_train": X_train, "y_train": labels(train_df),
            "X_val": pre.transform(features(val_df)), "y_val": labels(val_df),
            "X_test": pre.transform(features(dataset.test)), "y_test": labels(dataset.test),
            "preprocessor": pre, "feature_names": list(pre.feature_names_),
            "feature_source": list(pre.feature_source_), "train_df": train_df, "val_df": val_df}


# ---------------------------------------------------------------------------
# EDA and shift diagnostics
#
# Label-free and label-aware statistics on any pair of classification frames
# (train, test): structure and missingness tables, class balance, correlated
# pairs, single-feature predictive power (Part A), and the three checks that
# explain a train/test gap (Part D): marginal shift per feature, adversarial
# validation, and the change of each feature's relationship with the label.
# Every statistic comes with its threshold (a keyword argument) and a verdict.
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


def _check_cv(cv, n, y=None):
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
    """Stratified folds when every class has >= cv members, plain K-fold otherwise."""
    _, counts = np.unique(y, return_counts=True)
    if counts.min() >= cv:
        return StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return KFold(n_splits=cv, shuffle=True, random_state=seed)


def _labels(*series):
    """Integer-code one or more label Series on a shared vocabulary."""
    allv = pd.concat([pd.Series(s.to_numpy(dtype=object)) for s in series], ignore_index=True)
    codes, _ = pd.factorize(allv, sort=True)
    out, start = [], 0
    for s in series:
        out.append(codes[start:start + len(s)].astype(np.int64))
        start += len(s)
    return out


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


def _majority_share(y):
    return float(np.bincount(y).max() / len(y)) if len(y) else float("nan")


_SCORES = ("balanced", "accuracy")


def _check_score(score):
    if score not in _SCORES:
        raise ValueError(f"score must be one of {list(_SCORES)}, got {score!r}")


def _normalise(value, base):
    """(value - base) / (1 - base): 0 = a constant prediction, 1 = perfect; may be < 0."""
    if not np.isfinite(value) or not np.isfinite(base) or base >= 1.0:
        return 0.0
    return float((value - base) / (1.0 - base))


def _pps(cvres, score, n_classes):
    """Predictive power score from :func:`_single_feature_cv` output, clipped at 0.

    balanced: (balanced_accuracy - 1/K) / (1 - 1/K); accuracy: (acc - majority) / (1 - majority).
    """
    acc, base, bal = cvres
    if score == "balanced":
        return max(0.0, _normalise(bal, 1.0 / n_classes))
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


# -- Part A: EDA tables -----------------------------------------------------

def structure_table(df, target):
    """One row per column: dtype, kind, distinct values and missing cells.

    Parameters
    ----------
    df : DataFrame of shape (n_samples, n_columns)
        The frame to describe (features and target).
    target : str
        Name of the label column; its kind is reported as ``"target"``.

    Returns
    -------
    DataFrame of shape (n_columns, 6)
        Indexed by ``column``; columns ``n_rows``, ``dtype``, ``kind``
        (``numeric`` / ``categorical`` / ``target``), ``n_unique`` (NaN not
        counted), ``n_missing`` and ``missing_share``.
    """
    _check_frame(df, "df")
    if target not in df.columns:
        raise ValueError(f"target column {target!r} not found in df; available columns: "
                         f"{list(df.columns)}; fix target=")
    rows = []
    for c in df.columns:
        s = df[c]
        if c == target:
            kind = "target"
        elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            kind = "numeric"
        else:
            kind = "categorical"
        n_miss = int(s.isna().sum())
        rows.append({"column": c, "n_rows": len(df), "dtype": str(s.dtype), "kind": kind,
                     "n_unique": int(s.nunique(dropna=True)), "n_missing": n_miss,
                     "missing_share": n_miss / len(df)})
    return pd.DataFrame(rows).set_index("column")


def missing_table(train, test):
    """Missing cells per column in train and in test.

    Parameters
    ----------
    train, test : DataFrame
        The two frames; columns present in only one of them get NaN for the
        other.

    Returns
    -------
    DataFrame of shape (n_columns, 5)
        Indexed by ``column`` (union, train order first): ``train_missing``,
        ``train_share``, ``test_missing``, ``test_share`` and
        ``only_in_train`` (True when the column has missing cells in train but
        none in test, the pattern that lets a model tell the files apart by
        missingness alone and makes train-only imputation choices matter).
    """
    _check_frame(train, "train")
    _check_frame(test, "test")
    cols = list(train.columns) + [c for c in test.columns if c not in train.columns]
    rows = []
    for c in cols:
        r = {"column": c}
        for name, df in (("train", train), ("test", test)):
            if c in df.columns:
                n = int(df[c].isna().sum())
                r[f"{name}_missing"], r[f"{name}_share"] = n, n / len(df)
            else:
                r[f"{name}_missing"], r[f"{name}_share"] = np.nan, np.nan
        tr_n, te_n = r["train_missing"], r["test_missing"]
        r["only_in_train"] = bool(tr_n == tr_n and tr_n > 0 and te_n == 0)   # NaN != NaN
        rows.append(r)
    return pd.DataFrame(rows).set_index("column")


def class_distribution(y, imbalance_threshold=1.5):
    """Class counts, shares, imbalance ratio and the majority baseline.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels (any hashable values, no missing entries).
    imbalance_threshold : float, default 1.5
        The verdict ``imbalanced`` is True when max count / min count is at
        least this value.

    Returns
    -------
    dict
        ``table`` (DataFrame indexed by ``class`` with ``count`` and
        ``share``, sorted by class), ``n_samples``, ``n_classes``,
        ``majority_class``, ``majority_baseline_accuracy`` (share of the most
        frequent class), ``minority_class``, ``imbalance_ratio`` (max / min
        count), ``imbalance_threshold`` and ``imbalanced``.
    """
    s = pd.Series(np.asarray(y, dtype=object).ravel() if not isinstance(y, pd.Series) else y)
    if len(s) == 0:
        raise ValueError("y is empty; pass the label column of a non-empty frame")
    if s.isna().any():
        raise ValueError(f"y has {int(s.isna().sum())} missing labels; drop those rows first")
    counts = s.value_counts().sort_index()
    table = pd.DataFrame({"count": counts.astype(np.int64), "share": counts / len(s)})
    table.index.name = "class"
    ratio = float(counts.max() / counts.min())
    return {"table": table, "n_samples": int(len(s)), "n_classes": int(len(counts)),
            "majority_class": to_jsonable(counts.idxmax()),
            "majority_baseline_accuracy": float(counts.max() / len(s)),
            "minority_class": to_jsonable(counts.idxmin()), "imbalance_ratio": ratio,
            "imbalance_threshold": float(imbalance_threshold),
            "imbalanced": bool(ratio >= imbalance_threshold)}


def correlation_pairs(X, feature_names, threshold=0.5):
    """Pearson correlation matrix of encoded features and its strong pairs.

    Parameters
    ----------
    X : ndarray or DataFrame of shape (n_samples, n_features)
        Encoded, imputed (finite) features, e.g. z-scored numerics and
        one-hot columns.
    feature_names : list of str of length n_features
    threshold : float, default 0.5
        A pair is reported when |r| >= threshold.

    Returns
    -------
    corr : DataFrame of shape (n_features, n_features)
        Correlation matrix; rows/columns of constant features are NaN (a
        constant has no correlation) and such features are never paired.
    pairs : DataFrame of shape (n_pairs, 5)
        Columns ``feature_a``, ``feature_b``, ``r``, ``abs_r``, ``threshold``;
        one row per pair with |r| >= threshold, sorted by |r| descending.
    """
    X = np.asarray(X, dtype=np.float64)
    names = list(feature_names)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if len(names) != X.shape[1]:
        raise ValueError(f"feature_names has {len(names)} names but X has {X.shape[1]} columns; "
                         f"pass one name per column")
    if X.shape[0] < 2:
        raise ValueError(f"X has {X.shape[0]} rows; need at least 2 to correlate")
    if not np.all(np.isfinite(X)):
        bad = sorted({names[j] for j in np.flatnonzero(~np.isfinite(X).all(axis=0))})
        raise ValueError(f"X has NaN/inf in columns {bad}; impute and encode before correlating")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    Xc = X - X.mean(axis=0)                                    # (n, d)
    sd = np.sqrt((Xc * Xc).sum(axis=0))                        # (d,)
    const = sd <= 1e-12 * np.maximum(1.0, np.abs(X).max(axis=0))
    sd_safe = np.where(const, 1.0, sd)
    corr = (Xc.T @ Xc) / np.outer(sd_safe, sd_safe)            # (d, d)
    corr = np.clip(corr, -1.0, 1.0)
    corr[const, :] = np.nan
    corr[:, const] = np.nan
    iu, ju = np.triu_indices(len(names), k=1)
    r = corr[iu, ju]
    keep = np.isfinite(r) & (np.abs(r) >= threshold)
    pairs = pd.DataFrame({"feature_a": [names[i] for i in iu[keep]],
                          "feature_b": [names[j] for j in ju[keep]],
                          "r": r[keep], "abs_r": np.abs(r[keep]),
                          "threshold": float(threshold)})
    pairs = pairs.sort_values("abs_r", ascending=False, kind="stable").reset_index(drop=True)
    return pd.DataFrame(corr, index=names, columns=names), pairs


def _raw(col, kind, ref=None):
    """One raw column as a float vector, shape (n,).

    Numerics: values with NaN for missing. Categoricals: codes of the levels of ``ref``
    (default ``col``) ordered by frequency; missing = -1, a level unseen in ``ref`` =
    n_levels. The codes use no label, so building them on a whole column leaks nothing.
    """
    if kind == "numeric":
        return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    ref = col if ref is None else ref
    return _codes(col, pd.Series(ref, dtype=object).value_counts(dropna=True).index)


def _design(fit_v, apply_v, kind):
    """Tree input for one column, shape (n, 2) for numerics (median-imputed value from
    ``fit_v``, NaN flag) and (n, 1) for categoricals (codes, missing already a level)."""
    if kind == "categorical":
        return apply_v[:, None]
    med = np.nanmedian(fit_v) if np.isfinite(fit_v).any() else 0.0
    nan = np.isnan(apply_v)
    return np.column_stack([np.where(nan, med, apply_v), nan.astype(np.float64)])


def _tree(n_fit, seed, max_depth, min_leaf_share, score):
    leaf = max(1, int(round(min_leaf_share * n_fit)))
    return DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=leaf, random_state=seed,
                                  class_weight="balanced" if score == "balanced" else None)


def _single_feature_cv(v, y, kind, cv, seed, max_depth, min_leaf_share, score):
    """CV accuracy of a one-column tree, of the fold majority class, and the tree's
    balanced accuracy: a tuple of three floats.

    v : float ndarray of shape (n,) from :func:`_raw`; y : int ndarray of shape (n,).
    """
    accs, bases, bals = [], [], []
    for tr, te in _folds(y, cv, seed).split(np.zeros(len(y)), y):
        model = _tree(len(tr), seed, max_depth, min_leaf_share, score).fit(
            _design(v[tr], v[tr], kind), y[tr])
        pred = model.predict(_design(v[tr], v[te], kind))
        accs.append(np.mean(pred == y[te]))
        bases.append(np.mean(y[te] == np.bincount(y[tr]).argmax()))
        bals.append(_balanced_accuracy(y[te], pred))
    return float(np.mean(accs)), float(np.mean(bases)), float(np.mean(bals))


def _mutual_info(v, y, kind, seed, max_rows):
    if len(y) > max_rows:
        idx = np.random.default_rng(seed).choice(len(y), size=max_rows, replace=False)
        v, y = v[idx], y[idx]
    X = _design(v, v, kind)[:, :1]
    return float(mutual_info_classif(X, y, discrete_features=(kind == "categorical"),
                                     random_state=seed)[0])


def predictive_power(df, target, numeric, categorical, cv=5, seed=0, score="balanced",
                     max_depth=4, min_leaf_share=0.01, mi_max_rows=10000):
    """How well each raw feature alone predicts the label.

    For every feature a shallow decision tree is fitted on that column only
    (numerics: median-imputed value plus a NaN flag, the median taken from
    the training fold; categoricals: frequency-ordered level codes with
    missing as its own level, built from the label-free column) and scored
    by K-fold cross-validation. The score is normalised to a predictive
    power score (pps): 0 = no better than a constant prediction, 1 = perfect.

    Parameters
    ----------
    df : DataFrame of shape (n_samples, n_columns)
    target : str
        Label column.
    numeric, categorical : list of str
        Feature columns by kind.
    cv : int, default 5
        Number of folds (stratified when every class has >= cv rows).
    seed : int, default 0
        Seeds the folds, the trees and the mutual-information estimator.
    score : {"balanced", "accuracy"}, default "balanced"
        ``"balanced"``: class-weighted trees, pps = max(0, (balanced_accuracy
        - 1/K) / (1 - 1/K)) for K classes. Insensitive to class priors, so a
        feature that separates minority classes counts even when it never
        beats the majority vote, and a prior change between two frames does
        not look like a lost relationship. ``"accuracy"``: unweighted trees,
        pps = max(0, (accuracy - baseline) / (1 - baseline)) with the
        majority-class baseline.
    max_depth : int, default 4
        Depth of the single-feature tree (up to 16 leaves).
    min_leaf_share : float, default 0.01
        Minimum leaf size as a share of the training-fold rows.
    mi_max_rows : int, default 10000
        Mutual information is estimated on at most this many rows (random
        subsample) to bound the k-NN estimator's cost.

    Returns
    -------
    DataFrame of shape (n_features, 7)
        Indexed by ``feature``, sorted by ``pps`` descending: ``kind``,
        ``accuracy`` (CV mean), ``baseline`` (CV accuracy of the training
        fold's majority class), ``balanced_accuracy`` (CV mean), ``score``,
        ``pps`` and ``mutual_info`` (nats, sklearn ``mutual_info_classif``).
    """
    numeric, categorical = _check_features([("df", df)], target, numeric, categorical)
    _check_cv(cv, len(df))
    _check_score(score)
    (y,) = _labels(df[target])
    k = len(np.unique(y))
    rows = []
    for kind, cols in (("numeric", numeric), ("categorical", categorical)):
        for c in cols:
            v = _raw(df[c], kind)
            res = _single_feature_cv(v, y, kind, cv, seed, max_depth, min_leaf_share, score)
            rows.append({"feature": c, "kind": kind, "accuracy": res[0], "baseline": res[1],
                         "balanced_accuracy": res[2], "score": score,
                         "pps": _pps(res, score, k),
                         "mutual_info": _mutual_info(v, y, kind, seed, mi_max_rows)})
    out = pd.DataFrame(rows).set_index("feature")
    return out.sort_values("pps", ascending=False, kind="stable")


def dominance(pp_table, ratio=2.0, min_pps=0.3):
    """Is one feature suspiciously dominant in a predictive-power table?

    Parameters
    ----------
    pp_table : DataFrame
        Output of :func:`predictive_power` (needs a ``pps`` column, index =
        feature names).
    ratio : float, default 2.0
        The best feature is dominant when its pps >= ratio * the runner-up's.
    min_pps : float, default 0.3
        ... and its pps is at least this (a weak "best" is not dominant).

    Returns
    -------
    dict
        ``dominant`` (bool), ``feature`` and ``pps`` of the best feature,
        ``runner_up`` and ``runner_up_pps``, ``observed_ratio`` (best /
        runner-up; inf when the runner-up has pps 0, None when there is a
        single feature), ``ratio`` and ``min_pps``.
    """
    if not isinstance(pp_table, pd.DataFrame) or "pps" not in pp_table.columns:
        raise ValueError("pp_table must be the DataFrame returned by predictive_power "
                         "(with a 'pps' column)")
    if len(pp_table) == 0:
        raise ValueError("pp_table is empty; run predictive_power with at least one feature")
    if ratio < 1.0:
        raise ValueError(f"ratio must be >= 1, got {ratio!r}")
    t = pp_table.sort_values("pps", ascending=False, kind="stable")
    best, best_pps = t.index[0], float(t["pps"].iloc[0])
    if len(t) > 1:
        ru, ru_pps = t.index[1], float(t["pps"].iloc[1])
        obs = best_pps / ru_pps if ru_pps > 0 else (float("inf") if best_pps > 0 else float("nan"))
        dom = best_pps >= min_pps and best_pps >= ratio * ru_pps
    else:
        ru, ru_pps, obs = None, None, None
        dom = best_pps >= min_pps
    return {"dominant": bool(dom), "feature": best, "pps": best_pps, "runner_up": ru,
            "runner_up_pps": ru_pps, "observed_ratio": obs, "ratio": float(ratio),
            "min_pps": float(min_pps)}


# -- Part D: shift diagnosis ------------------------------------------------

def feature_shift(train, test, numeric, categorical, alpha=0.01, ks_threshold=0.1,
                  v_threshold=0.1):
    """Marginal train-vs-test shift of every feature, with effect sizes.

    Numerics: two-sample Kolmogorov-Smirnov test on the non-missing values
    (statistic D = largest gap between the two empirical CDFs). Categoricals:
    chi-square test of the 2 x n_levels train/test contingency table
    (missing excluded) and Cramer's V = sqrt(chi2 / n).

    A feature is ``shifted`` only when the effect size exceeds its threshold
    AND p < alpha. With tens of thousands of rows almost any difference is
    "significant" (p-values alone flag everything), so the effect size is
    the real criterion and the p-value only guards small samples.

    Parameters
    ----------
    train, test : DataFrame
    numeric, categorical : list of str
    alpha : float, default 0.01
        Significance level.
    ks_threshold : float, default 0.1
        Minimum KS statistic D for a numeric feature to count as shifted.
    v_threshold : float, default 0.1
        Minimum Cramer's V for a categorical feature to count as shifted.

    Returns
    -------
    DataFrame of shape (n_features, 10)
        Indexed by ``feature``: ``kind``, ``test`` (``ks`` / ``chi2``),
        ``statistic`` (D or chi2), ``effect`` (D or V), ``effect_threshold``,
        ``p_value``, ``alpha``, ``missing_train``, ``missing_test`` (shares)
        and ``shifted``.
    """
    numeric, categorical = _check_features([("train", train), ("test", test)], None,
                                           numeric, categorical)
    _check_range("alpha", alpha, 0.0, 1.0)
    _check_range("ks_threshold", ks_threshold, 0.0, 1.0)
    _check_range("v_threshold", v_threshold, 0.0, 1.0)
    rows = []
    for c in numeric:
        a = pd.to_numeric(train[c], errors="coerce").dropna().to_numpy(dtype=np.float64)
        b = pd.to_numeric(test[c], errors="coerce").dropna().to_numpy(dtype=np.float64)
        if len(a) and len(b):
            res = stats.ks_2samp(a, b)
            stat, p = float(res.statistic), float(res.pvalue)
        else:
            stat, p = float("nan"), float("nan")
        rows.append({"feature": c, "kind": "numeric", "test": "ks", "statistic": stat,
                     "effect": stat, "effect_threshold": float(ks_threshold), "p_value": p})
    for c in categorical:
        ct = pd.crosstab(pd.Series(np.r_[np.zeros(len(train)), np.ones(len(test))]),
                         pd.concat([train[c], test[c]], ignore_index=True).astype(object),
                         dropna=True).to_numpy(dtype=np.float64)
        ct = ct[:, ct.sum(axis=0) > 0] if ct.size else ct
        if ct.shape[0] == 2 and ct.shape[1] >= 2:
            chi2, p, _, _ = stats.chi2_contingency(ct, correction=False)
            v = math.sqrt(chi2 / ct.sum())                     # min(r, c) - 1 = 1 for 2 rows
            stat, p = float(chi2), float(p)
        elif ct.shape[0] == 2:                                 # one level in both: identical
            stat, p, v = 0.0, 1.0, 0.0
        else:
            stat, p, v = float("nan"), float("nan"), float("nan")
        rows.append({"feature": c, "kind": "categorical", "test": "chi2", "statistic": stat,
                     "effect": v, "effect_threshold": float(v_threshold), "p_value": p})
    out = pd.DataFrame(rows).set_index("feature")
    out["alpha"] = float(alpha)
    out["missing_train"] = [float(train[c].isna().mean()) for c in out.index]
    out["missing_test"] = [float(test[c].isna().mean()) for c in out.index]
    out["shifted"] = ((out["effect"] > out["effect_threshold"])
                      & (out["p_value"] < alpha)).astype(bool)
    return out


def _adv_matrix(train, test, numeric, categorical):
    """Stacked (n_train + n_test, d) float matrix; categoricals as codes of the pooled levels."""
    cols = []
    for c in numeric:
        cols.append(pd.to_numeric(pd.concat([train[c], test[c]], ignore_index=True),
                                  errors="coerce").to_numpy(dtype=np.float64))
    for c in categorical:
        both = pd.concat([train[c], test[c]], ignore_index=True).astype(object)
        codes = _codes(both, both.value_counts(dropna=True).index)
        cols.append(np.where(codes < 0, np.nan, codes))
    return np.column_stack(cols)                               # (n, d)


def _hot_deck(X, rng):
    """Fill each NaN with a random observed value of its column: missingness carries no signal."""
    X = X.copy()
    for j in range(X.shape[1]):
        nan = np.isnan(X[:, j])
        if nan.any() and (~nan).any():
            X[nan, j] = rng.choice(X[~nan, j], size=int(nan.sum()))
    return X


def _adv_cv(X, z, cat_mask, cv, seed, max_iter, importance):
    """Out-of-fold ROC AUC of a HGB train-vs-test classifier (+ permutation AUC drops)."""
    rng = np.random.default_rng(seed)
    oof = np.zeros(len(z))
    drops = np.zeros(X.shape[1])
    for tr, te in StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed).split(X, z):
        model = HistGradientBoostingClassifier(
            max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=15, early_stopping=False,
            categorical_features=cat_mask if cat_mask.any() else None, random_state=seed)
        model.fit(X[tr], z[tr])
        p = model.predict_proba(X[te])[:, 1]
        oof[te] = p
        if importance:
            fold_auc = roc_auc_score(z[te], p)
            for j in range(X.shape[1]):
                Xp = X[te].copy()
                Xp[:, j] = Xp[rng.permutation(len(te)), j]
                drops[j] += (fold_auc - roc_auc_score(z[te], model.predict_proba(Xp)[:, 1])) / cv
    return float(roc_auc_score(z, oof)), drops


def _pattern_auc(M, z, cv, seed):
    """Out-of-fold AUC of the best classifier that sees only the missingness pattern.

    M : bool ndarray of shape (n, k), True where missing. Each row's score is the share of
    test rows among training-fold rows with the same pattern (0.5 for an unseen pattern).
    """
    key = M.astype(np.int64) @ (np.int64(1) << np.arange(M.shape[1], dtype=np.int64)) \
        if M.shape[1] < 62 else pd.factorize(pd.Series([r.tobytes() for r in M]))[0]
    score = np.zeros(len(z))
    for tr, te in StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed).split(M, z):
        rate = pd.Series(z[tr]).groupby(key[tr]).mean()
        score[te] = rate.reindex(key[te]).fillna(0.5).to_numpy()
    return float(roc_auc_score(z, score))


def adversarial_validation(train, test, numeric, categorical, cv=5, seed=0, auc_threshold=0.6,
                           importance_threshold=0.01, max_rows_per_side=5000, max_iter=40):
    """Can a classifier tell train rows from test rows? (adversarial validation)

    A HistGradientBoostingClassifier (NaN handled natively, categoricals as
    native categorical codes) learns "is this row from test?" from the
    features only (the label is never used). Its out-of-fold ROC AUC is 0.5
    when the two files come from the same distribution.

    Missing values that occur in one file only (e.g. train-only NaNs) let
    the classifier separate the files by missingness alone, which is not a
    shift of the values. Three AUCs keep the two apart:
    ``auc`` (raw features, NaN kept), ``auc_no_missing`` (every NaN replaced
    by a random observed value of its column, so missingness carries no
    information: the distribution shift proper) and ``auc_missing_only``
    (missingness pattern only, scored by the share of test rows
    with the same pattern in the training folds). Per-feature importance is measured on
    the ``auc_no_missing`` model.

    Parameters
    ----------
    train, test : DataFrame
    numeric, categorical : list of str
        Feature columns; the target must not be among them.
    cv : int, default 5
        Stratified folds for the out-of-fold AUC.
    seed : int, default 0
    auc_threshold : float, default 0.6
        ``distribution_shift`` is True when ``auc_no_missing`` >= this;
        ``missingness_signal`` when ``auc_missing_only`` >= this.
    importance_threshold : float, default 0.01
        A feature is ``used`` when permuting it on held-out folds lowers the
        AUC by at least this much.
    max_rows_per_side : int, default 5000
        The larger file is subsampled to the size of the smaller one (balanced
        classes), and both are capped at this many rows, to bound the cost.
    max_iter : int, default 40
        Boosting iterations (one OpenMP thread is used, see the code).

    Returns
    -------
    dict
        ``auc``, ``auc_no_missing``, ``auc_missing_only`` (None when no value
        is missing), ``auc_threshold``, ``distribution_shift``,
        ``missingness_signal``, ``n_train_used``, ``n_test_used`` and
        ``importance``: DataFrame of shape (n_features, 3) indexed by
        ``feature`` with ``auc_drop``, ``threshold`` and ``used``, sorted by
        ``auc_drop`` descending.
    """
    numeric, categorical = _check_features([("train", train), ("test", test)], None,
                                           numeric, categorical)
    _check_range("auc_threshold", auc_threshold, 0.5, 1.0)
    _check_range("importance_threshold", importance_threshold, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    n = min(len(train), len(test), int(max_rows_per_side))
    _check_cv(cv, 2 * n)
    if n < cv:
        raise ValueError(f"the smaller frame has {n} rows; need at least cv={cv}")
    tr_idx = np.sort(rng.choice(len(train), size=n, replace=False))
    te_idx = np.sort(rng.choice(len(test), size=n, replace=False))
    tr_s, te_s = train.iloc[tr_idx], test.iloc[te_idx]
    X = _adv_matrix(tr_s, te_s, numeric, categorical)          # (2n, d)
    z = np.r_[np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)]
    cat_mask = np.array([False] * len(numeric) + [True] * len(categorical))
    nan = np.isnan(X)
    X_filled = _hot_deck(X, rng) if nan.any() else X
    # One OpenMP thread: on a shared, oversubscribed machine HGB's threads spin at barriers
    # and a 0.4 s fit takes 20 s; with one thread the cost is predictable.
    with threadpool_limits(limits=1, user_api="openmp"):
        auc_nm, drops = _adv_cv(X_filled, z, cat_mask, cv, seed, max_iter, importance=True)
        if nan.any():
            auc_raw, _ = _adv_cv(X, z, cat_mask, cv, seed, max_iter, importance=False)
            auc_mo = _pattern_auc(nan[:, nan.any(axis=0)], z, cv, seed)
        else:
            auc_raw, auc_mo = auc_nm, None
    imp = pd.DataFrame({"feature": numeric + categorical, "auc_drop": drops,
                        "threshold": float(importance_threshold)}).set_index("feature")
    imp["used"] = imp["auc_drop"] >= importance_threshold
    imp = imp.sort_values("auc_drop", ascending=False, kind="stable")
    return {"auc": auc_raw, "auc_no_missing": auc_nm, "auc_missing_only": auc_mo,
            "auc_threshold": float(auc_threshold),
            "distribution_shift": bool(auc_nm >= auc_threshold),
            "missingness_signal": bool(auc_mo is not None and auc_mo >= auc_threshold),
            "n_train_used": int(n), "n_test_used": int(n), "importance": imp}


def label_shift(train, test, target, numeric, categorical, drop_threshold=0.2, cv=5, seed=0,
                score="balanced", max_depth=4, min_leaf_share=0.01):
    """Did each feature's relationship with the label change from train to test?

    For every feature: its predictive power score (pps, see
    :func:`predictive_power`) by cross-validation within train, the same
    within test, and the drop ``pps_train - pps_test`` (the "feature label
    correlation change" of deepchecks): a feature that predicts the label
    in train but not in test (a shortcut, a leak, a broken relationship).
    Second, the single-feature tree fitted on all of train is scored on test
    (``transfer_score``: balanced accuracy or accuracy, per ``score``,
    normalised like pps to ``transfer_pps``, not clipped, so < 0 means worse
    than a constant) and ``transfer_drop = pps_train - transfer_pps``: this
    catches a relationship that still exists in test but is a different one
    (e.g. a flipped mapping), where pps_test stays high.

    Rule: ``suspect`` = max(pps_drop, transfer_drop) >= ``drop_threshold``.
    Both checks see changes of the feature-label relationship that leave the
    marginal distribution unchanged, which :func:`feature_shift` and
    :func:`adversarial_validation` cannot see. With the default
    ``score="balanced"`` a pure covariate shift (same P(label | feature))
    that changes the class priors lowers neither pps_test nor transfer_pps.

    This is a post-hoc diagnosis that reads the test labels; its results must
    not feed back into fitting or model selection.

    Parameters
    ----------
    train, test : DataFrame
        Both must contain ``target``.
    target : str
    numeric, categorical : list of str
    drop_threshold : float, default 0.2
        Minimum pps drop (train minus test, or train minus transfer) for
        ``suspect``.
    cv : int, default 5
    seed : int, default 0
    score, max_depth, min_leaf_share
        Single-feature tree settings, as in :func:`predictive_power`.

    Returns
    -------
    DataFrame of shape (n_features, 10)
        Indexed by ``feature``, sorted by max(pps_drop, transfer_drop)
        descending: ``kind``, ``pps_train``, ``pps_test``, ``pps_drop``,
        ``transfer_score``, ``transfer_pps``, ``transfer_drop``,
        ``drop_threshold``, ``suspect`` and ``score``.
    """
    numeric, categorical = _check_features([("train", train), ("test", test)], target,
                                           numeric, categorical)
    _check_cv(cv, len(train))
    _check_cv(cv, len(test))
    _check_score(score)
    _check_range("drop_threshold", drop_threshold, 0.0, 2.0)
    y_tr, y_te = _labels(train[target], test[target])
    k_tr, k_te = len(np.unique(y_tr)), len(np.unique(y_te))
    base_te = _majority_share(y_te) if score == "accuracy" else 1.0 / k_te
    rows = []
    for kind, cols in (("numeric", numeric), ("categorical", categorical)):
        for c in cols:
            v_tr, v_te = _raw(train[c], kind), _raw(test[c], kind)
            res_tr = _single_feature_cv(v_tr, y_tr, kind, cv, seed, max_depth, min_leaf_share,
                                        score)
            res_te = _single_feature_cv(v_te, y_te, kind, cv, seed, max_depth, min_leaf_share,
                                        score)
            # transfer: codes and median from train only, applied to test
            v_x = _raw(test[c], kind, ref=train[c])
            model = _tree(len(train), seed, max_depth, min_leaf_share, score).fit(
                _design(v_tr, v_tr, kind), y_tr)
            pred = model.predict(_design(v_tr, v_x, kind))
            t_score = float(_balanced_accuracy(y_te, pred) if score == "balanced"
                            else np.mean(pred == y_te))
            p_tr, p_te = _pps(res_tr, score, k_tr), _pps(res_te, score, k_te)
            t_pps = _normalise(t_score, base_te)
            rows.append({"feature": c, "kind": kind, "pps_train": p_tr, "pps_test": p_te,
                         "pps_drop": p_tr - p_te, "transfer_score": t_score,
                         "transfer_pps": t_pps, "transfer_drop": p_tr - t_pps,
                         "drop_threshold": float(drop_threshold),
                         "suspect": bool(max(p_tr - p_te, p_tr - t_pps) >= drop_threshold),
                         "score": score})
    out = pd.DataFrame(rows).set_index("feature")
    key = np.maximum(out["pps_drop"], out["transfer_drop"])
    return out.iloc[np.argsort(-key.to_numpy(), kind="stable")]


_SHIFT_KEYS = ("alpha", "ks_threshold", "v_threshold")
_ADV_KEYS = ("auc_threshold", "importance_threshold", "max_rows_per_side", "max_iter")
_LABEL_KEYS = ("drop_threshold", "score", "max_depth", "min_leaf_share")
_COMMON_KEYS = ("cv", "seed")
_DIAG_KEYS = ("importance_drop_threshold",)


def diagnose(train, test, target, numeric, categorical, model_importance=None, **thresholds):
    """Run the three shift checks and name the features to blame.

    Runs :func:`feature_shift` (marginal shift), :func:`adversarial_validation`
    (joint covariate shift, with missingness reported apart) and
    :func:`label_shift` (change of each feature's relationship with the
    label), joins their per-feature statistics, and applies one rule:

    ``suspect_features`` = the features that :func:`label_shift` marks
    ``suspect`` (pps drop from train to test, or from train to the
    train-fitted tree scored on test, >= ``drop_threshold``), sorted by name.
    A covariate shift alone does not make a feature suspect: the
    model can still be right on shifted inputs if the relationship holds.

    Parameters
    ----------
    train, test : DataFrame
        Both with the ``target`` column.
    target : str
    numeric, categorical : list of str
    model_importance : dict, optional
        ``{"train": {feature: score}, "test": {feature: score}}``, e.g. the
        trained model's permutation importance per raw column on train and on
        test. Added to the evidence as ``model_imp_train``,
        ``model_imp_test``, ``model_imp_drop`` and ``model_imp_collapsed``
        (relative drop (train - test) / train >= ``importance_drop_threshold``
        with a positive train importance). It corroborates but does not
        change ``suspect_features``.
    **thresholds
        Passed to the checks: ``alpha``, ``ks_threshold``, ``v_threshold``
        (feature_shift); ``auc_threshold``, ``importance_threshold``,
        ``max_rows_per_side``, ``max_iter`` (adversarial_validation);
        ``drop_threshold``, ``score``, ``max_depth``, ``min_leaf_share``
        (label_shift);
        ``cv``, ``seed`` (both CV checks); ``importance_drop_threshold``
        (default 0.5, model importance).

    Returns
    -------
    dict
        ``suspect_features`` (list of str), ``evidence`` (DataFrame of shape
        (n_features, k) indexed by ``feature``), ``adversarial`` (the dict of
        :func:`adversarial_validation`), ``summary`` (JSON-friendly numbers:
        ``adversarial_auc``, ``adversarial_auc_no_missing``,
        ``adversarial_auc_missing_only``, ``n_features``, ``n_shifted``,
        ``shifted_features``, ``suspect_features``, ``thresholds``) and
        ``explanation`` (list of str, written from the numbers).
    """
    known = _SHIFT_KEYS + _ADV_KEYS + _LABEL_KEYS + _COMMON_KEYS + _DIAG_KEYS
    unknown = sorted(set(thresholds) - set(known))
    if unknown:
        raise ValueError(f"unknown threshold(s) {unknown} for diagnose; valid names: {list(known)}")
    numeric, categorical = _check_features([("train", train), ("test", test)], target,
                                           numeric, categorical)
    feats = numeric + categorical
    if model_importance is not None:
        if not isinstance(model_importance, dict) or set(model_importance) != {"train", "test"}:
            got = (sorted(model_importance) if isinstance(model_importance, dict)
                   else type(model_importance).__name__)
            raise ValueError("model_importance must be {'train': {feature: score}, "
                             f"'test': {{feature: score}}}}; got {got}")
        for side in ("train", "test"):
            extra = sorted(set(model_importance[side]) - set(feats))
            if extra:
                raise ValueError(f"model_importance[{side!r}] names unknown feature(s) {extra}; "
                                 f"use the raw column names {feats}")
    pick = lambda keys: {k: thresholds[k] for k in keys if k in thresholds}  # noqa: E731
    fs = feature_shift(train, test, numeric, categorical, **pick(_SHIFT_KEYS))
    adv = adversarial_validation(train, test, numeric, categorical,
                                 **pick(_ADV_KEYS + _COMMON_KEYS))
    ls = label_shift(train, test, target, numeric, categorical,
                     **pick(_LABEL_KEYS + _COMMON_KEYS))

    ev = pd.DataFrame(index=pd.Index(feats, name="feature"))
    ev["kind"] = fs["kind"]
    ev = ev.join(fs[["effect", "effect_threshold", "p_value", "missing_train", "missing_test",
                     "shifted"]].rename(columns={"effect": "shift_effect",
                                                 "effect_threshold": "shift_threshold",
                                                 "p_value": "shift_p"}))
    ev = ev.join(adv["importance"][["auc_drop", "used"]].rename(
        columns={"auc_drop": "adv_auc_drop", "used": "adv_used"}))
    score_name = ls["score"].iloc[0]
    ev = ev.join(ls.drop(columns=["kind", "score"]))
    imp_thr = float(thresholds.get("importance_drop_threshold", 0.5))
    if model_importance is not None:
        mi_tr = pd.Series({f: float(model_importance["train"].get(f, np.nan)) for f in feats})
        mi_te = pd.Series({f: float(model_importance["test"].get(f, np.nan)) for f in feats})
        ev["model_imp_train"], ev["model_imp_test"] = mi_tr, mi_te
        ev["model_imp_drop"] = mi_tr - mi_te
        rel = (mi_tr - mi_te) / mi_tr.where(mi_tr > 0)
        ev["model_imp_collapsed"] = (rel >= imp_thr).fillna(False).astype(bool)
        ev["model_imp_threshold"] = imp_thr
    ev = ev.loc[ls.index]                                      # label_shift's order

    suspects = sorted(ls.index[ls["suspect"]].tolist())
    shifted = sorted(fs.index[fs["shifted"]].tolist())
    summary = {"adversarial_auc": adv["auc"], "adversarial_auc_no_missing": adv["auc_no_missing"],
               "adversarial_auc_missing_only": adv["auc_missing_only"],
               "n_features": len(feats), "n_shifted": len(shifted), "shifted_features": shifted,
               "suspect_features": suspects,
               "thresholds": {"alpha": fs["alpha"].iloc[0],
                              "ks_threshold": float(thresholds.get("ks_threshold", 0.1)),
                              "v_threshold": float(thresholds.get("v_threshold", 0.1)),
                              "auc_threshold": adv["auc_threshold"],
                              "drop_threshold": float(ls["drop_threshold"].iloc[0]),
                              "importance_drop_threshold": imp_thr}}
    return {"suspect_features": suspects, "evidence": ev, "adversarial": adv,
            "summary": to_jsonable(summary),
            "explanation": _explain(ev, adv, shifted, suspects, model_importance is not None,
                                    score_name)}


def _explain(ev, adv, shifted, suspects, has_model, score_name):
    """Sentences built from the numbers of :func:`diagnose`."""
    lines = []
    thr = adv["auc_threshold"]
    lines.append(
        f"Adversarial validation: train vs test ROC AUC {adv['auc']:.3f} with missing values, "
        f"{adv['auc_no_missing']:.3f} with missingness hidden (threshold {thr:.2f}): "
        + ("the feature distributions differ." if adv["distribution_shift"]
           else "the feature distributions are hard to tell apart."))
    if adv["auc_missing_only"] is not None:
        lines.append(
            f"Missingness alone separates the files with AUC {adv['auc_missing_only']:.3f}"
            + (" (at or above the threshold: missing values are distributed differently)."
               if adv["missingness_signal"] else " (below the threshold)."))
    used = adv["importance"].index[adv["importance"]["used"]].tolist()
    if used:
        lines.append("The adversarial classifier relies on: " + ", ".join(
            f"{f} (AUC drop {adv['importance'].loc[f, 'auc_drop']:.3f})" for f in used) + ".")
    joint = [f for f in used if not ev.loc[f, "shifted"]]
    if joint and adv["distribution_shift"]:
        lines.append(f"{', '.join(joint)}: used by the adversarial classifier without a "
                     f"marginal shift of its own: its joint distribution with the other "
                     f"features differs.")
    if shifted:
        lines.append(f"{len(shifted)} of {len(ev)} features shift marginally: " + ", ".join(
            f"{f} (effect {ev.loc[f, 'shift_effect']:.3f} > {ev.loc[f, 'shift_threshold']:.2f}, "
            f"p={ev.loc[f, 'shift_p']:.1e})" for f in shifted) + ".")
    else:
        lines.append(f"None of the {len(ev)} features shifts marginally beyond its effect "
                     f"threshold.")
    if suspects:
        for f in suspects:
            r = ev.loc[f]
            lines.append(
                f"{f}: predictive power goes from pps {r['pps_train']:.3f} in train to "
                f"{r['pps_test']:.3f} in test (drop {r['pps_drop']:.3f}, threshold "
                f"{r['drop_threshold']:.2f}); "
                f"a tree on {f} fitted on train scores {r['transfer_score']:.3f} "
                f"({'balanced accuracy' if score_name == 'balanced' else 'accuracy'}) on test "
                f"(transfer pps {r['transfer_pps']:.3f}, drop {r['transfer_drop']:.3f})"
                + ("; the relationship is still there in test but is a different one"
                   if r["pps_drop"] < r["drop_threshold"] else "")
                + ("; its marginal distribution is unchanged, so the label relationship itself "
                   "changed." if not r["shifted"] else "; its marginal distribution also shifts.")
            )
            if has_model and np.isfinite(r.get("model_imp_train", np.nan)):
                lines.append(
                    f"{f}: the model's importance goes from {r['model_imp_train']:.3f} on train to "
                    f"{r['model_imp_test']:.3f} on test"
                    + (" (collapsed)." if r["model_imp_collapsed"] else "."))
    else:
        top = ev.index[0]
        worst = max(ev.loc[top, "pps_drop"], ev.loc[top, "transfer_drop"])
        lines.append(f"No feature's relationship with the label changes beyond the threshold; the "
                     f"largest drop is {top} ({worst:.3f} < {ev.loc[top, 'drop_threshold']:.2f}).")
    return lines
