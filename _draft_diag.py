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
import math

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_selection import mutual_info_classif
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits  # hard dependency of scikit-learn


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
        float or anything already JSON-friendly.

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
    if obj is pd.NA or obj is pd.NaT:
        return None
    return obj


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
