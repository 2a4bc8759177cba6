# ---- attribution (Part C)
# Gradient-based feature attribution: input gradients of a trained network
# (sensitivity analysis, Aggarwal sec. 2.8), their aggregation into per-feature
# scores, and two cross-checks (permutation importance; weight randomisation,
# Adebayo et al. 2018). The derivation is in docs/partC_derivation.md.
from mlp import _act, _act_grad, _offsets, pack, unpack, ACTIVATIONS, activation_code, resolve_dtype  # noqa: E501  (deleted on merge)

import warnings

import numpy as np
import pandas as pd
from numba import njit, prange
from scipy.stats import spearmanr

ATTRIBUTION_TARGETS = {"output": 0, "logit": 1, "loss": 2}
_ATTR_BLOCK = 256   # samples per parallel block; each block owns one workspace


@njit(cache=True, parallel=True)
def _input_gradients(theta, sizes, code, X, y, target):
    """G[s] = dt/dx at x = X[s], t = o_m (target 0), a_m (1) or -log o_y (2); m = argmax o."""
    n, d = X.shape
    L = sizes.shape[0] - 1
    K = sizes[L]
    off = _offsets(sizes)
    # start of each layer's units in the per-sample activation buffer
    aoff = np.zeros(L + 2, dtype=np.int64)
    wmax = 0
    for l in range(L + 1):
        aoff[l + 1] = aoff[l] + sizes[l]
        wmax = max(wmax, sizes[l])
    # W^T of every layer at the same offsets as W in theta, so that the forward
    # pass is a contiguous axpy (vectorises without fastmath)
    WT = np.zeros_like(theta)
    for l in range(L):
        fi, fo, o = sizes[l], sizes[l + 1], off[l]
        for j in range(fo):
            for i in range(fi):
                WT[o + i * fo + j] = theta[o + j * fi + i]
    G = np.empty((n, d), dtype=X.dtype)
    pred = np.empty(n, dtype=np.int64)
    n_blocks = (n + _ATTR_BLOCK - 1) // _ATTR_BLOCK
    for blk in prange(n_blocks):
        h = np.empty(aoff[L + 1], dtype=X.dtype)      # every layer's output, one sample
        buf = np.empty((2, wmax), dtype=X.dtype)       # delta of this / the previous layer
        for s in range(blk * _ATTR_BLOCK, min(n, (blk + 1) * _ATTR_BLOCK)):
            # ---- forward: h_{l+1} = g(W_l h_l + b_l), logits at the last layer
            for i in range(d):
                h[i] = X[s, i]
            for l in range(L):
                fi, fo, o = sizes[l], sizes[l + 1], off[l]
                # 1-D views indexed from 0, so the inner loops vectorise
                hin = h[aoff[l]:aoff[l] + fi]
                hout = h[aoff[l + 1]:aoff[l + 1] + fo]
                bias = theta[o + fo * fi:o + fo * fi + fo]
                for j in range(fo):
                    hout[j] = bias[j]
                for i in range(fi):
                    hi = hin[i]
                    if hi == 0.0:                  # inactive relu unit: adds nothing
                        continue
                    wcol = WT[o + i * fo:o + i * fo + fo]   # column i of W_l
                    for j in range(fo):
                        hout[j] += hi * wcol[j]
                if l < L - 1:
                    for j in range(fo):
                        hout[j] = _act(hout[j], code)
            # ---- softmax o (into buf[1]) and the winning class m
            zb = aoff[L]
            m = 0
            for k in range(1, K):
                if h[zb + k] > h[zb + m]:
                    m = k
            tot = 0.0
            for k in range(K):
                e = np.exp(h[zb + k] - h[zb + m])
                buf[1, k] = e
                tot += e
            for k in range(K):
                buf[1, k] = buf[1, k] / tot
            pred[s] = m
            # ---- delta at the logits a: dt/da  (K,)
            cur = 0
            if target == 0:
                # d o_m / d a_k = o_m (1[k = m] - o_k)
                om = buf[1, m]
                for k in range(K):
                    buf[0, k] = om * ((1.0 if k == m else 0.0) - buf[1, k])
            elif target == 1:
                for k in range(K):
                    buf[0, k] = 1.0 if k == m else 0.0
            else:
                # softmax + cross-entropy fused: dL/da = o - onehot(y), valid
                # because L = -log o_y and d log o_y / d a_k = 1[k = y] - o_k
                for k in range(K):
                    buf[0, k] = buf[1, k] - (1.0 if k == y[s] else 0.0)
            # ---- backward: delta_l = g'(h_l) * (W_l^T delta_{l+1}); at l = 0 it is dt/dx
            for l in range(L - 1, -1, -1):
                fi, fo, o = sizes[l], sizes[l + 1], off[l]
                nxt = 1 - cur
                dcur = buf[cur]
                dnxt = buf[nxt]
                for i in range(fi):
                    dnxt[i] = 0.0
                for j in range(fo):
                    dj = dcur[j]
                    if dj == 0.0:
                        continue
                    wrow = theta[o + j * fi:o + j * fi + fi]   # row j of W_l
                    for i in range(fi):
                        dnxt[i] += dj * wrow[i]
                if l > 0:
                    hl = h[aoff[l]:aoff[l] + fi]
                    for i in range(fi):
                        dnxt[i] *= _act_grad(hl[i], code)
                cur = nxt
            for i in range(d):
                G[s, i] = buf[cur, i]
    return G, pred


# ------------------------------------------------------------------ validation
def _attr_target_code(target):
    try:
        return ATTRIBUTION_TARGETS[target]
    except (KeyError, TypeError):
        raise ValueError(f"target={target!r} is not supported; use one of "
                         f"{sorted(ATTRIBUTION_TARGETS)}") from None


def _attr_inputs(weights, biases, X, y, activation, target, dtype):
    """Validated (theta, sizes, code, X, y, target_code) for ``_input_gradients``."""
    code = activation_code(activation)
    tcode = _attr_target_code(target)
    X_arr = np.asarray(X)
    if dtype is None:
        dtype = np.float32 if X_arr.dtype == np.float32 else np.float64
    dtype = resolve_dtype(dtype)
    theta, sizes = pack(weights, biases, dtype=dtype)
    if not np.all(np.isfinite(theta)):
        raise ValueError("weights or biases contain NaN or Inf; the network did not train "
                         "cleanly (lower the learning rate) or was loaded incorrectly")
    if X_arr.ndim != 2:
        raise ValueError(f"X must be 2-D of shape (n_samples, {sizes[0]}); got shape {X_arr.shape}")
    if X_arr.shape[1] != sizes[0]:
        raise ValueError(f"X has {X_arr.shape[1]} columns but the network expects {sizes[0]} "
                         f"inputs (weights[0] has shape {np.shape(weights[0])}); encode X "
                         f"the same way as the training data")
    if X_arr.shape[0] == 0:
        raise ValueError("X has no rows; pass at least one sample")
    try:
        X_arr = np.ascontiguousarray(X_arr, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"X must be numeric; got dtype {np.asarray(X).dtype} "
                         f"(one-hot encode categorical columns first)") from None
    bad = ~np.all(np.isfinite(X_arr), axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"X has NaN or Inf in {rows.size} rows (e.g. rows {rows[:5].tolist()}); "
                         f"impute missing values before computing attributions")
    if y is None:
        if tcode == ATTRIBUTION_TARGETS["loss"]:
            raise ValueError("target='loss' needs the true labels y; pass y "
                             "or use target='output' / 'logit'")
        y_arr = np.zeros(0, dtype=np.int64)
    else:
        y_arr = _attr_labels(y, X_arr.shape[0], int(sizes[-1]))
    return theta, sizes, code, X_arr, y_arr, tcode


def _attr_labels(y, n, K):
    """y as int64 class indices in [0, K); ``ValueError`` naming the problem otherwise."""
    y_arr = np.asarray(y)
    if y_arr.ndim != 1 or y_arr.shape[0] != n:
        raise ValueError(f"y must be 1-D with one label per row of X ({n}); got shape {y_arr.shape}")
    if not np.issubdtype(y_arr.dtype, np.number) or np.issubdtype(y_arr.dtype, np.complexfloating):
        raise ValueError(f"y must hold integer class indices 0..{K - 1}; got dtype {y_arr.dtype} "
                         f"(encode the labels as integers first)")
    if not np.all(np.isfinite(y_arr)) or np.any(y_arr != np.round(y_arr)):
        raise ValueError(f"y must hold integer class indices 0..{K - 1}; found NaN or "
                         f"non-integer values")
    y_int = y_arr.astype(np.int64)
    if y_int.min() < 0 or y_int.max() >= K:
        raise ValueError(f"y has labels outside 0..{K - 1} (min {y_int.min()}, max {y_int.max()}); "
                         f"the network has {K} outputs")
    return np.ascontiguousarray(y_int)


def _gradients_and_predictions(weights, biases, X, y, activation, target, dtype):
    theta, sizes, code, X_arr, y_arr, tcode = _attr_inputs(weights, biases, X, y,
                                                           activation, target, dtype)
    G, pred = _input_gradients(theta, sizes, code, X_arr, y_arr, tcode)
    if not np.all(np.isfinite(G)):
        raise ValueError("input gradients are not finite; check the weights for huge values "
                         "(retrain with a lower learning rate) or use dtype='float64'")
    return G, pred, X_arr


# ------------------------------------------------------------------ public API
def input_gradients(weights, biases, X, y, activation, target="output", dtype=None):
    """Gradient of one scalar per sample with respect to that sample's input.

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (sizes[l+1], sizes[l])
    biases : list of ndarray, ``biases[l]`` of shape (sizes[l+1],)
    X : ndarray of shape (n_samples, n_features)
        Inputs, encoded and scaled like the training data; finite.
    y : ndarray of shape (n_samples,) of int in [0, n_classes), or None
        True labels; required for ``target="loss"`` only.
    activation : {"relu", "sigmoid", "tanh"}
        Hidden activation; the output layer is softmax.
    target : {"output", "logit", "loss"}
        ``"output"``: d o_m / dx, o_m the softmax output of the predicted class m
        (Aggarwal sec. 2.8). ``"logit"``: d a_m / dx, the predicted class's
        pre-softmax logit (does not saturate). ``"loss"``: dL/dx of the
        cross-entropy with the true label, dL/dx = W1^T delta1.
    dtype : {None, "float64", "float32"}
        Computation dtype; None uses float32 if X is float32, else float64.

    Returns
    -------
    G : ndarray of shape (n_samples, n_features), dtype ``dtype``
        ``G[s, i]`` is the derivative of sample s's target with respect to ``X[s, i]``.
    """
    G, _, _ = _gradients_and_predictions(weights, biases, X, y, activation, target, dtype)
    return G


def _np_act(z, activation):
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))     # = 1 / (1 + e^-z), overflow-free
    return np.tanh(z)


def _np_act_grad(a, activation):
    if activation == "relu":
        return (a > 0).astype(a.dtype)
    if activation == "sigmoid":
        return a * (1.0 - a)
    return 1.0 - a * a


def reference_input_gradients(weights, biases, X, y, activation, target="output"):
    """Slow, readable float64 NumPy version of ``input_gradients`` (same arguments).

    Returns
    -------
    G : ndarray of shape (n_samples, n_features), float64
    """
    activation_code(activation)
    _attr_target_code(target)
    Ws = [np.asarray(W, dtype=np.float64) for W in weights]
    bs = [np.asarray(b, dtype=np.float64) for b in biases]
    h = [np.asarray(X, dtype=np.float64)]               # h[0] = x, h[l] = layer l output
    for l, (W, b) in enumerate(zip(Ws, bs)):
        a = h[-1] @ W.T + b                              # (n, sizes[l+1])
        h.append(_np_act(a, activation) if l < len(Ws) - 1 else a)
    z = h[-1]
    o = np.exp(z - z.max(axis=1, keepdims=True))
    o /= o.sum(axis=1, keepdims=True)                   # (n, K) softmax
    n, K = o.shape
    m = np.argmax(z, axis=1)
    e_m = np.eye(K)[m]                                  # (n, K) one-hot of the winner
    if target == "output":
        delta = o[np.arange(n), m][:, None] * (e_m - o)  # d o_m / d a
    elif target == "logit":
        delta = e_m
    else:
        if y is None:
            raise ValueError("target='loss' needs the true labels y")
        delta = o - np.eye(K)[np.asarray(y, dtype=np.int64)]   # dL/da = o - onehot(y)
    for l in range(len(Ws) - 1, -1, -1):
        delta = delta @ Ws[l]                            # (n, sizes[l]) = W_l^T delta
        if l > 0:
            delta = delta * _np_act_grad(h[l], activation)
    return delta


def _labels_and_sources(d, feature_names, feature_source):
    names = [f"x{i}" for i in range(d)] if feature_names is None else [str(f) for f in feature_names]
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} entries but X has {d} columns; "
                         f"pass one name per encoded column")
    source = names if feature_source is None else [str(f) for f in feature_source]
    if len(source) != d:
        raise ValueError(f"feature_source has {len(source)} entries but X has {d} columns; "
                         f"pass the original column of every encoded column")
    return names, source


def _aggregate_by_source(scores, source):
    """Sum ``scores`` over encoded columns sharing a source, in first-appearance order."""
    order = list(dict.fromkeys(source))
    idx = {s: k for k, s in enumerate(order)}
    total = np.zeros(len(order))
    counts = np.zeros(len(order), dtype=np.int64)
    for sc, s in zip(scores, source):
        total[idx[s]] += sc
        counts[idx[s]] += 1
    return order, total, counts


def _ranking_table(names, scores, **extra):
    """DataFrame (feature, score, rank, share, *extra) sorted by score, rank 1 = largest."""
    scores = np.asarray(scores, dtype=np.float64)
    tot = scores.sum()
    df = pd.DataFrame({"feature": list(names), "score": scores,
                       "share": scores / tot if tot > 0 else np.zeros_like(scores), **extra})
    df = df.sort_values("score", ascending=False, kind="mergesort").reset_index(drop=True)
    df.insert(2, "rank", np.arange(1, len(df) + 1))
    return df


def feature_attribution(weights, biases, X, y, activation, target="output", samples="correct",
                        feature_names=None, feature_source=None, times_input=False, dtype=None):
    """Rank input features by mean absolute input gradient (sensitivity analysis).

    Parameters
    ----------
    weights, biases, activation, target, dtype
        As in ``input_gradients``.
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or None
        True labels; required for ``samples="correct"`` and ``target="loss"``.
    samples : {"correct", "all"}
        Average over the correctly classified samples (Aggarwal sec. 2.8) or all.
    feature_names : list of str of length n_features, optional
        Names of the encoded columns; default ``x0, x1, ...``.
    feature_source : list of str of length n_features, optional
        Original column of each encoded column (e.g. the categorical a one-hot
        column came from); default ``feature_names`` (one to one).
    times_input : bool
        Score mean |g * x| (gradient x input) instead of mean |g|.

    Returns
    -------
    result : dict
        ``scores`` ndarray of shape (n_features,) in column order;
        ``table`` DataFrame (feature, score, rank, share, source) sorted by
        score, rank 1 = most important, share = score / sum of scores;
        ``by_source`` DataFrame (feature, score, rank, share, n_columns) per
        original column, the scores of its encoded columns summed;
        ``n_samples`` rows averaged over; ``n_total`` rows in X; ``mask`` bool
        ndarray of shape (n_samples,) of the rows used; ``target``,
        ``samples``, ``times_input`` echo the arguments.
    """
    if samples not in ("correct", "all"):
        raise ValueError(f"samples={samples!r} is not supported; use 'correct' or 'all'")
    if samples == "correct" and y is None:
        raise ValueError("samples='correct' needs the true labels y; pass y or use samples='all'")
    if not isinstance(times_input, (bool, np.bool_)):
        raise ValueError(f"times_input must be True or False; got {times_input!r}")
    G, pred, X_arr = _gradients_and_predictions(weights, biases, X, y, activation, target, dtype)
    names, source = _labels_and_sources(X_arr.shape[1], feature_names, feature_source)
    if samples == "correct":
        mask = pred == _attr_labels(y, X_arr.shape[0], len(biases[-1]))
        if not mask.any():
            raise ValueError("no sample is classified correctly, so there is nothing to average; "
                             "check that X and y match the network or use samples='all'")
    else:
        mask = np.ones(X_arr.shape[0], dtype=bool)
    A = G[mask].astype(np.float64)                       # (n_used, d)
    if times_input:
        A = A * X_arr[mask]
    scores = np.abs(A).mean(axis=0)                      # (d,)
    order, total, counts = _aggregate_by_source(scores, source)
    return {
        "scores": scores,
        "table": _ranking_table(names, scores, source=source),
        "by_source": _ranking_table(order, total, n_columns=counts),
        "n_samples": int(mask.sum()),
        "n_total": int(X_arr.shape[0]),
        "mask": mask,
        "target": target,
        "samples": samples,
        "times_input": bool(times_input),
    }


# ---------------------------------------------------------------- cross-checks
def _spearman(a, b):
    """Spearman rank correlation; NaN when undefined (fewer than 2 items, constant input)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def permutation_check(estimator, X, y, attribution_scores, feature_names, feature_source=None,
                      n_repeats=5, seed=0):
    """Compare attribution scores with permutation importance of a fitted classifier.

    Per encoded column, ``sklearn.inspection.permutation_importance`` (drop of
    ``estimator.score`` when the column is shuffled). Per original column, all
    of its encoded columns are shuffled jointly with one row permutation
    (scikit-learn has no feature groups), so a one-hot group moves as a whole.

    Parameters
    ----------
    estimator : fitted classifier with ``predict`` and ``score(X, y)``
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    attribution_scores : ndarray of shape (n_features,) or dict from ``feature_attribution``
    feature_names : list of str of length n_features
    feature_source : list of str of length n_features, optional
        Original column of each encoded column; default ``feature_names``.
    n_repeats : int >= 1
        Shuffles per column (or group).
    seed : int
        Seed of both permutation loops.

    Returns
    -------
    result : dict
        ``encoded`` and ``original`` DataFrames (feature, attribution,
        perm_mean, perm_std, attribution_rank, perm_rank; ``original`` also
        n_columns), ``spearman_encoded`` and ``spearman_original`` (Spearman
        rank correlation of attribution and permutation importance; NaN if
        undefined), ``baseline_score`` (estimator.score on the unshuffled X).
    """
    from sklearn.inspection import permutation_importance

    if isinstance(attribution_scores, dict):
        attribution_scores = attribution_scores["scores"]
    X_arr = np.asarray(X, dtype=np.float64)
    if X_arr.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X_arr.shape}")
    n, d = X_arr.shape
    y_arr = np.asarray(y)
    if y_arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X; got {y_arr.shape}")
    attr = np.asarray(attribution_scores, dtype=np.float64)
    if attr.shape != (d,):
        raise ValueError(f"attribution_scores has shape {attr.shape}; expected ({d},), "
                         f"one score per column of X")
    if not (isinstance(n_repeats, (int, np.integer)) and n_repeats >= 1):
        raise ValueError(f"n_repeats must be a positive integer; got {n_repeats!r}")
    names, source = _labels_and_sources(d, feature_names, feature_source)

    pi = permutation_importance(estimator, X_arr, y_arr, n_repeats=n_repeats, random_state=seed)
    enc = pd.DataFrame({"feature": names, "source": source, "attribution": attr,
                        "perm_mean": pi.importances_mean, "perm_std": pi.importances_std})

    order, attr_src, counts = _aggregate_by_source(attr, source)
    baseline = float(estimator.score(X_arr, y_arr))
    rng = np.random.default_rng(seed)
    drops = np.zeros((len(order), n_repeats))
    Xp = X_arr.copy()
    for g, src in enumerate(order):
        cols = [i for i, s in enumerate(source) if s == src]
        for r in range(n_repeats):
            perm = rng.permutation(n)
            Xp[:, cols] = X_arr[perm][:, cols]          # one row permutation for the group
            drops[g, r] = baseline - float(estimator.score(Xp, y_arr))
        Xp[:, cols] = X_arr[:, cols]
    orig = pd.DataFrame({"feature": order, "n_columns": counts, "attribution": attr_src,
                         "perm_mean": drops.mean(axis=1), "perm_std": drops.std(axis=1)})
    for df in (enc, orig):
        df["attribution_rank"] = df["attribution"].rank(ascending=False, method="min").astype(int)
        df["perm_rank"] = df["perm_mean"].rank(ascending=False, method="min").astype(int)
    return {
        "encoded": enc.sort_values("attribution", ascending=False, kind="mergesort").reset_index(drop=True),
        "original": orig.sort_values("attribution", ascending=False, kind="mergesort").reset_index(drop=True),
        "spearman_encoded": _spearman(enc["attribution"], enc["perm_mean"]),
        "spearman_original": _spearman(orig["attribution"], orig["perm_mean"]),
        "baseline_score": baseline,
    }


def compare_rankings(scores_a, scores_b, threshold=0.5):
    """Sanity check: do two attribution score vectors rank features differently?

    Parameters
    ----------
    scores_a, scores_b : ndarray of shape (n_features,)
    threshold : float in (-1, 1]
        The check passes when the Spearman correlation is below ``threshold``.
        With 13 features two unrelated rankings exceed 0.5 about 4% of the time.

    Returns
    -------
    result : dict
        ``spearman`` (NaN if undefined, e.g. constant scores), ``threshold``,
        ``passed`` (bool; False when the correlation is NaN or >= threshold).
    """
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"scores_a and scores_b must be 1-D of equal length; "
                         f"got shapes {a.shape} and {b.shape}")
    if not (-1.0 < float(threshold) <= 1.0):
        raise ValueError(f"threshold must be in (-1, 1]; got {threshold!r}")
    rho = _spearman(a, b)
    return {"spearman": rho, "threshold": float(threshold),
            "passed": bool(np.isfinite(rho) and rho < threshold)}


def randomization_check(weights, biases, X, y, activation, seed=0, threshold=0.5,
                        target="output", samples="correct"):
    """Model-randomisation sanity check for the attribution (Adebayo et al. 2018).

    Every layer's weights and biases are redrawn from N(0, s^2) with s the
    standard deviation of that trained layer's weights (biases: of its biases),
    the architecture kept. A faithful attribution must change: the Spearman
    correlation of the trained and randomised rankings should fall below
    ``threshold``. Both are averaged over the same rows (those selected by
    ``samples`` for the trained network); each network differentiates its own
    winning class.

    Parameters
    ----------
    weights, biases, X, y, activation, target, samples
        As in ``feature_attribution``.
    seed : int
        Seed of the re-randomisation.
    threshold : float
        As in ``compare_rankings``.

    Returns
    -------
    result : dict
        ``spearman``, ``threshold``, ``passed`` (see ``compare_rankings``),
        ``trained_scores`` and ``random_scores`` ndarrays of shape (n_features,).
    """
    trained = feature_attribution(weights, biases, X, y, activation, target=target,
                                  samples=samples)
    rng = np.random.default_rng(seed)
    rand_w = [rng.normal(0.0, np.std(W), size=np.shape(W)) for W in weights]
    rand_b = [rng.normal(0.0, np.std(b), size=np.shape(b)) for b in biases]
    mask = trained["mask"]
    y_used = None if y is None else np.asarray(y)[mask]
    random = feature_attribution(rand_w, rand_b, np.asarray(X)[mask], y_used, activation,
                                 target=target, samples="all")
    result = compare_rankings(trained["scores"], random["scores"], threshold)
    result["trained_scores"] = trained["scores"]
    result["random_scores"] = random["scores"]
    return result
