"""Part A's exploratory tables: structure, missing cells, classes, correlated pairs,
single-feature predictive power and the rule for a suspiciously dominant feature.

Each function takes frames or arrays and returns a table (a DataFrame or a dict);
none draws, none knows a column name. The data they read is ``prep``'s
(validated frames, the encoded matrix).
"""

import numpy as np
import pandas as pd
from sklearn.feature_selection import mutual_info_classif
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

from prep import (_balanced_accuracy, _check_cv, _check_features, _check_frame, _check_score, _codes, _folds, _labels, _pps, to_jsonable)


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


CORR_TOP_K = 30         # features in the returned matrix (the heatmap): a 30 x 30 grid stays legible
CORR_BLOCK = 256        # columns per block of Z^T Z: memory CORR_CHUNK_ROWS*d + CORR_BLOCK*d floats, never d*d
CORR_CHUNK_ROWS = 65536  # rows centred at a time by _centred_products (memory O(chunk * d))
CORR_MAX_PAIRS = 10000  # strongest pairs kept (the count of all pairs found is in pairs.attrs)


def correlation_pairs(X, feature_names, threshold=0.5, top_k=CORR_TOP_K, max_pairs=CORR_MAX_PAIRS):
    """Pearson correlations of encoded features: every strong pair, and the matrix of the top K.

    All d * (d - 1) / 2 pairs are scanned in blocks of ``CORR_BLOCK``
    columns, each summed over chunks of ``CORR_CHUNK_ROWS`` centred rows, so
    the memory beyond X is O(CORR_CHUNK_ROWS * d + CORR_BLOCK * d), not O(d^2); the
    returned matrix covers at most ``top_k`` features.

    Parameters
    ----------
    X : ndarray or DataFrame of shape (n_samples, n_features)
        Encoded, imputed (finite) features, e.g. z-scored numerics and
        one-hot columns.
    feature_names : list of str of length n_features
    threshold : float, default 0.5
        A pair is reported when |r| >= threshold.
    top_k : int, default CORR_TOP_K
        Features in ``corr``: all when n_features <= top_k, else the top_k
        with the largest |r| to any other feature (ties: larger variance),
        in their original order.
    max_pairs : int, default CORR_MAX_PAIRS
        At most this many pairs (the strongest) are returned.

    Returns
    -------
    corr : DataFrame of shape (k, k), k = min(n_features, top_k)
        Correlation matrix; rows/columns of constant features are NaN (a
        constant has no correlation) and such features are never paired.
        ``corr.attrs``: ``n_features`` (d) and ``top_k``.
    pairs : DataFrame of shape (n_pairs, 5)
        Columns ``feature_a``, ``feature_b``, ``r``, ``abs_r``, ``threshold``;
        one row per pair with |r| >= threshold, sorted by |r| descending.
        ``pairs.attrs``: ``n_pairs_found`` (all pairs over the threshold)
        and ``truncated`` (True when more than ``max_pairs`` were found).
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
    if not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    d = X.shape[1]
    mean, sd, const = _column_moments(X)                       # (d,) each
    unit = (np.where(const, 1.0, sd), const)                   # Z = (X - mean) / sd, constants zero
    best = np.zeros(d)                                         # max |r| with any other feature
    found, kept_i, kept_j, kept_r = 0, [], [], []
    for start in range(0, d, CORR_BLOCK):
        stop = min(d, start + CORR_BLOCK)
        block = np.clip(_centred_products(X, mean, unit, slice(start, stop)), -1.0, 1.0)  # (b, d)
        rows = np.arange(stop - start)
        block[rows, start + rows] = 0.0                        # the diagonal is no pair
        block[:, const] = 0.0
        absb = np.abs(block)
        best[start:stop] = absb.max(axis=1)
        upper = np.arange(d)[None, :] > (start + rows)[:, None]  # each pair once: j > i
        ii, jj = np.nonzero(upper & (absb >= threshold) & ~const[start:stop, None])
        found += len(ii)
        kept_i.append(ii + start)
        kept_j.append(jj)
        kept_r.append(block[ii, jj])
        if sum(len(k) for k in kept_r) > 2 * max_pairs:        # bound memory: keep the strongest
            kept_i, kept_j, kept_r = _strongest(kept_i, kept_j, kept_r, max_pairs)
    kept_i, kept_j, kept_r = _strongest(kept_i, kept_j, kept_r, max_pairs)
    i, j, r = kept_i[0], kept_j[0], kept_r[0]
    order = np.lexsort((j, i, -np.abs(r)))                      # |r| descending, then file order
    i, j, r = i[order], j[order], r[order]
    pairs = pd.DataFrame({"feature_a": [names[a] for a in i], "feature_b": [names[b] for b in j],
                          "r": r, "abs_r": np.abs(r), "threshold": float(threshold)})
    pairs.attrs.update(n_pairs_found=int(found), truncated=bool(found > max_pairs))

    if d <= top_k:
        sel = np.arange(d)
    else:                                                       # strongest links first, then variance
        var = sd * sd / len(X)
        sel = np.sort(np.lexsort((-var, -np.where(const, -1.0, best)))[:top_k])
    corr = np.clip(_centred_products(X, mean, unit, sel, sel), -1.0, 1.0)   # (k, k)
    np.fill_diagonal(corr, 1.0)
    corr[const[sel], :] = np.nan
    corr[:, const[sel]] = np.nan
    sel_names = [names[s] for s in sel]
    out = pd.DataFrame(corr, index=sel_names, columns=sel_names)
    out.attrs.update(n_features=int(d), top_k=int(top_k))
    return out, pairs


def _column_moments(X, chunk=None):
    """Column means, norms ``sqrt(sum (x - mean)^2)`` and constant flags, of shape (d,) each,
    one chunk of rows at a time (no centred copy of X)."""
    n, d = X.shape
    chunk = chunk or CORR_CHUNK_ROWS
    mean = X.mean(axis=0)
    ss, top = np.zeros(d), np.zeros(d)
    for a in range(0, n, chunk):
        Z = X[a:a + chunk] - mean                              # (chunk, d)
        ss += (Z * Z).sum(axis=0)
        top = np.maximum(top, np.abs(X[a:a + chunk]).max(axis=0))
    sd = np.sqrt(ss)
    return mean, sd, sd <= 1e-12 * np.maximum(1.0, top)


def _centred_products(X, mean, unit, rows, cols=None, chunk=None):
    """``Z[:, rows]^T Z[:, cols]`` with ``Z = (X - mean) / sd`` (``unit = (sd, constant)``:
    unit columns, constants zero); ``rows`` a slice or indices, ``cols`` indices or None
    (every column). Summed one chunk of rows at a time: memory O(chunk * d) instead of a
    centred copy of X (at 5 million rows, as large as X); one chunk computes exactly the
    all-rows product."""
    chunk = chunk or CORR_CHUNK_ROWS
    C = None
    for a in range(0, X.shape[0], chunk):
        Z = X[a:a + chunk] - mean                              # (chunk, d)
        Z /= unit[0]
        Z[:, unit[1]] = 0.0
        part = Z[:, rows].T @ (Z if cols is None else Z[:, cols])
        C = part if C is None else C + part
    return C


def _strongest(ii, jj, rr, k):
    """Concatenate pair chunks and keep the k with the largest |r| (as one-chunk lists)."""
    i, j, r = (np.concatenate(a) if a else np.zeros(0, dtype=t)
               for a, t in ((ii, np.int64), (jj, np.int64), (rr, np.float64)))
    if len(r) > k:
        top = np.argpartition(-np.abs(r), k - 1)[:k]
        i, j, r = i[top], j[top], r[top]
    return [i], [j], [r]


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


PP_MAX_CELLS = 2_000_000   # rows x features scored by predictive_power; above it rows are sub-sampled
PP_MIN_ROWS = 2_000        # ... but never to fewer rows than this (each tree then costs ~1 ms)
PP_MAX_FEATURES = 100      # trees (5 per feature, ~10 ms each with scikit-learn's overhead) for at
                           # most this many features: those with the strongest one-pass association


def _association(df, y, numeric, categorical):
    """A cheap label association per feature, in [0, 1], shape (n_features,): the correlation
    ratio eta^2 of a numeric column (median-imputed, plus its NaN flag's) and Cramer's V^2 of a
    categorical one (missing as a level). One pass per column; used to rank, not to report."""
    k = int(y.max()) + 1
    counts = np.bincount(y, minlength=k).astype(np.float64)
    onehot = np.eye(k)[y]                                           # (n, k)
    out = []
    for c in numeric:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        nan = np.isnan(v)
        best = 0.0
        for col in (np.where(nan, np.nanmedian(v) if (~nan).any() else 0.0, v), nan.astype(float)):
            total = ((col - col.mean()) ** 2).sum()
            if total > 0:
                means = (onehot.T @ col) / np.maximum(counts, 1)       # (k,)
                best = max(best, float((counts * (means - col.mean()) ** 2).sum() / total))
        out.append(best)
    for c in categorical:
        codes = _raw(df[c], "categorical").astype(np.int64) + 1         # missing -> 0
        table = np.zeros((codes.max() + 1, k))
        np.add.at(table, (codes, y), 1.0)
        table = table[table.sum(axis=1) > 0]
        expected = table.sum(axis=1, keepdims=True) * counts[None, :] / len(y)
        chi2 = float(((table - expected) ** 2 / np.where(expected > 0, expected, 1)).sum())
        dof = min(table.shape[0] - 1, k - 1)
        out.append(chi2 / (len(y) * dof) if dof > 0 else 0.0)
    return np.asarray(out)


def predictive_power(df, target, numeric, categorical, cv=5, seed=0, score="balanced",
                     max_depth=4, min_leaf_share=0.01, mi_max_rows=10000, max_cells=PP_MAX_CELLS,
                     max_features=PP_MAX_FEATURES):
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
    max_cells : int, default PP_MAX_CELLS
        When rows x features exceed this, every feature is scored on the same
        stratified, seeded sub-sample of max(PP_MIN_ROWS, max_cells //
        n_features) rows, so the cost grows with the number of columns, not
        with rows x columns.
    max_features : int, default PP_MAX_FEATURES
        With more features, only the ``max_features`` with the strongest
        one-pass association (eta^2 for numerics, Cramer's V^2 for
        categoricals; ``_association``) get trees and mutual information;
        the others keep NaN scores (listed last).

    Returns
    -------
    DataFrame of shape (n_features, 7)
        Indexed by ``feature``, sorted by ``pps`` descending: ``kind``,
        ``accuracy`` (CV mean), ``baseline`` (CV accuracy of the training
        fold's majority class), ``balanced_accuracy`` (CV mean), ``score``,
        ``pps`` and ``mutual_info`` (nats, sklearn ``mutual_info_classif``).
        ``attrs``: ``n_rows`` (rows of ``df``), ``n_rows_used``,
        ``subsampled`` (bool), ``max_cells``, ``n_scored`` (features with
        trees) and ``max_features``; when rows were sub-sampled or features
        left unscored, ``attrs["note"]`` says so in one sentence for the report.
    """
    numeric, categorical = _check_features([("df", df)], target, numeric, categorical)
    _check_cv(cv, len(df))
    _check_score(score)
    n_rows, n_feat = len(df), len(numeric) + len(categorical)
    n_used = n_rows
    if n_rows * n_feat > max_cells:
        n_used = min(n_rows, max(PP_MIN_ROWS, max_cells // n_feat))
    if n_used < n_rows:
        y_all = _labels(df[target])
        try:
            rows, _ = train_test_split(np.arange(n_rows), train_size=n_used, random_state=seed,
                                       stratify=y_all)
        except ValueError:          # a class too small to stratify: a plain random sample
            rows = np.random.default_rng(seed).choice(n_rows, size=n_used, replace=False)
        df = df.iloc[np.sort(rows)]
    y = _labels(df[target])
    k = len(np.unique(y))
    scored = set(numeric + categorical)
    if n_feat > max_features:
        assoc = _association(df, y, numeric, categorical)
        order = np.argsort(-assoc, kind="stable")[:max_features]
        scored = {(numeric + categorical)[i] for i in order}
    rows = []
    for kind, cols in (("numeric", numeric), ("categorical", categorical)):
        for c in cols:
            if c not in scored:
                rows.append({"feature": c, "kind": kind, "accuracy": np.nan, "baseline": np.nan,
                             "balanced_accuracy": np.nan, "score": score, "pps": np.nan,
                             "mutual_info": np.nan})
                continue
            v = _raw(df[c], kind)
            res = _single_feature_cv(v, y, kind, cv, seed, max_depth, min_leaf_share, score)
            rows.append({"feature": c, "kind": kind, "accuracy": res[0], "baseline": res[1],
                         "balanced_accuracy": res[2], "score": score,
                         "pps": _pps(res, score, k),
                         "mutual_info": _mutual_info(v, y, kind, seed, mi_max_rows)})
    out = pd.DataFrame(rows).set_index("feature").sort_values("pps", ascending=False, kind="stable")
    out.attrs.update(n_rows=int(n_rows), n_rows_used=int(n_used), subsampled=bool(n_used < n_rows),
                     max_cells=int(max_cells), n_scored=len(scored), max_features=int(max_features))
    notes = []
    if n_used < n_rows:
        notes.append(f"predictive power was computed on a stratified random sample of {n_used:,} of "
                     f"the {n_rows:,} rows ({n_feat:,} features x rows above the cap of "
                     f"{max_cells:,} cells)")
    if len(scored) < n_feat:
        notes.append(f"only the {len(scored):,} of {n_feat:,} features with the strongest one-pass "
                     "association with the label (eta^2 / Cramer's V^2) were scored; the others "
                     "have no pps")
    if notes:
        out.attrs["note"] = "; ".join(notes) + "."
    return out


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
        single feature), ``ratio`` and ``min_pps``. A single feature is never
        dominant: there is no other feature for it to dominate.
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
        dom = False
    return {"dominant": bool(dom), "feature": best, "pps": best_pps, "runner_up": ru,
            "runner_up_pps": ru_pps, "observed_ratio": obs, "ratio": float(ratio),
            "min_pps": float(min_pps)}
