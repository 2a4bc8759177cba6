"""What a model's accuracy on a test file is, or would be without labels, and why it differs from validation.

Three things, as functions over arrays (nothing is written, nothing is chosen on test):

- :func:`estimate_accuracy`: the accuracy a model would show on an *unlabelled*
  test file (confidence-based performance estimation, CBPE). The model's
  probabilities are calibrated on validation (a calibrator from
  :data:`CALIBRATORS`, chosen by cross-validated Brier score on validation and
  fitted there); the expected accuracy is the mean calibrated probability of the
  class the model predicts, optionally re-weighted to other class priors (given,
  or estimated by EM), plus the calibration's leftover error on validation.
  Given a :class:`DensityRatio`, validation rows are weighted to test's inputs
  (a doubly robust estimate under covariate shift), and the change from
  validation is enlarged by the weights' measured under-correction
  (:data:`RATIO_ATTENUATION`). Its interval is a
  bootstrap over validation rows (the calibration refitted), test rows (the
  prior estimate re-run) and the labels themselves (a Bernoulli draw per
  row): an interval for the accuracy the test file's labels would show.
- :func:`decompose`: the validation -> test change of a per-row metric (log loss,
  correctness) split into three terms (DISDE; Cai, Namkoong & Yadlowsky 2023,
  "Diagnosing model performance under distribution shift"): (i) ``covariate``,
  inputs common to both files but distributed differently; (ii)
  ``conditional``, a changed P(label | inputs) on those shared inputs; (iii)
  ``unseen``, inputs rare or unseen in the training data. The shared inputs are
  those whose test-to-validation density ratio, estimated by a cross-fitted
  validation-vs-test domain classifier (:func:`fit_density_ratio`), is at most
  ``threshold``. The three terms add up to the total change exactly; each has
  an interval (rows bootstrapped, the domain classifier refitted).
  :func:`decompose_predictions` does it for log loss and accuracy from a model's
  probabilities with one domain classifier; :meth:`Decomposition.sentence` says
  the result in one sentence generated from the numbers.
- :func:`make_case`: generated validation/test pairs with one planted mechanism
  (``none``, ``covariate``, ``prior``, ``conditional``, ``unseen``) on which both
  are checked (``tests/test_performance.py``, ``bench/performance_check.py``).

Validation stands for the training data throughout: it is a random split of the
training file, so its inputs are distributed as train's and the model's loss on
it is out of sample.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from threadpoolctl import threadpool_limits

from rules import Rule

_EPS = 1e-6          # probability floor for per-row log loss (as in shift.py)
_LOG_FLOOR = 1e-12   # probability floor before taking logits for calibration
_CAL_REFITS = 25     # calibrator refits on resampled validation rows, shared by the bootstrap


def _one_thread(func):
    """Run ``func`` with BLAS and OpenMP on one thread: these are many small products, and
    threaded BLAS on a busy machine made them several times slower."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1):
            return func(*args, **kwargs)
    return wrapper


def _check_proba(name, P, n_classes=None):
    P = np.ascontiguousarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] == 0 or P.shape[1] < 2:
        raise ValueError(f"{name} must be (n_samples, n_classes) with n_classes >= 2 and at least "
                         f"one row; got shape {P.shape}")
    if n_classes is not None and P.shape[1] != n_classes:
        raise ValueError(f"{name} has {P.shape[1]} columns but P_val has {n_classes}; both must be "
                         f"predict_proba of the same model")
    if not np.isfinite(P).all() or (P < 0).any():
        raise ValueError(f"{name} must be finite and non-negative (class probabilities)")
    return P


def _check_labels(name, y, n, k):
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices of shape ({n},); got "
                         f"{y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"{name} has class indices outside 0..{k - 1} (the probability columns)")
    return y.astype(np.int64)


def _z(level):
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


# -- calibration (A) --------------------------------------------------------
# Inside this section probabilities are class-major, shape (k, n): reductions over
# the k classes of each row then run along contiguous memory (about 10x faster
# than axis=1 of an (n, k) array for small k).

def _softmax(S):
    """Row-wise softmax of an (n, k) array."""
    S = S - S.max(axis=1, keepdims=True)
    E = np.exp(S)
    return E / E.sum(axis=1, keepdims=True)


def _softmax_cm(S):
    """Softmax over the classes of a class-major (k, n) array."""
    E = np.exp(S - S.max(axis=0))
    return E / E.sum(axis=0)


def _flat(y, n):
    """Flat indices of the entries (y_i, i) of a class-major (k, n) array."""
    return y * n + np.arange(n)


def _fit_scaling(PT, y, w, with_bias, init=None, tol=1e-7, max_iter=50):
    """(a, b[1:]) minimising the w-weighted log loss of softmax(a log P + b), b[0] = 0 (Newton).

    The loss is convex in (a, b) (a multinomial logistic model linear in them),
    so damped Newton from a = 1, b = 0 (or from ``init``) converges in a few steps.
    """
    Z = np.log(np.maximum(PT, _LOG_FLOOR))                 # (k, n)
    k, n = Z.shape
    w = w / w.sum()                                        # (n,) weights summing to 1
    zy = Z.ravel()[_flat(y, n)]                            # (n,) log P of the label
    wy = np.bincount(y, weights=w, minlength=k)            # (k,) weighted label shares
    m = k if with_bias else 1                              # free parameters: a, b[1:]
    theta = np.zeros(m)
    theta[0] = 1.0
    if init is not None:
        theta[:] = init[:m]

    def loss(t):
        S = t[0] * Z
        sy = t[0] * zy
        if with_bias:
            S[1:] += t[1:, None]
            sy = sy + np.r_[0.0, t[1:]][y]
        top = S.max(axis=0)
        return float(w @ (np.log(np.exp(S - top).sum(axis=0)) + top - sy)), S

    f, S = loss(theta)
    for _ in range(max_iter):
        Q = _softmax_cm(S)                                 # (k, n)
        QZ = Q * Z
        ez = QZ.sum(axis=0)                                # (n,) E_Q[log P]
        g = np.empty(m)
        g[0] = w @ (ez - zy)                               # d loss / da
        H = np.empty((m, m))
        H[0, 0] = w @ ((QZ * Z).sum(axis=0) - ez ** 2)     # Var_Q[log P]
        if with_bias:
            Qb = Q[1:]                                     # (k-1, n)
            g[1:] = Qb @ w - wy[1:]                        # d loss / db
            H[0, 1:] = H[1:, 0] = (QZ[1:] - Qb * ez) @ w
            H[1:, 1:] = np.diag(Qb @ w) - (Qb * w) @ Qb.T
        step = np.linalg.solve(H + 1e-10 * np.eye(m), g)
        t = 1.0
        while True:
            f_c, S_c = loss(theta - t * step)
            if f_c <= f or t < 1e-4:
                break
            t /= 2
        if f_c > f:
            break
        theta, S, f = theta - t * step, S_c, f_c
        if np.abs(t * step).max() < tol:
            break
    return theta


def _apply_scaling(PT, theta):
    S = theta[0] * np.log(np.maximum(PT, _LOG_FLOOR))
    S[1:len(theta)] += theta[1:, None]
    return _softmax_cm(S)


def _fit_isotonic(PT, y, w, init=None):
    return [IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            .fit(PT[c], (y == c).astype(np.float64), sample_weight=w) for c in range(len(PT))]


def _apply_isotonic(PT, fits):
    Q = np.array([f.predict(PT[c]) for c, f in enumerate(fits)])   # (k, n)
    s = Q.sum(axis=0)
    return np.where(s > 0, Q / np.where(s > 0, s, 1.0), 1.0 / len(PT))


@dataclass(frozen=True)
class Calibrator:
    """A way to calibrate class probabilities, class-major: ``fit(PT, y, w, init) -> params``,
    ``apply(PT, params) -> PT'`` with ``PT`` of shape (n_classes, n_samples).

    ``w`` are row weights (importance weights); ``init`` is a previous fit's
    params (a warm start for the bootstrap) or None.
    """
    name: str
    description: str
    fit: Callable
    apply: Callable


CALIBRATORS = {c.name: c for c in (
    Calibrator("none", "the model's probabilities as they are",
               lambda PT, y, w, init=None: None, lambda PT, params: PT),
    Calibrator("temperature", "temperature scaling (softmax(log P / T), one T)",
               lambda PT, y, w, init=None: _fit_scaling(PT, y, w, False, init), _apply_scaling),
    Calibrator("bias_temperature", "bias-corrected temperature scaling (softmax(log P / T + b), "
               "one T and one bias per class)",
               lambda PT, y, w, init=None: _fit_scaling(PT, y, w, True, init), _apply_scaling),
    Calibrator("isotonic", "isotonic regression per class (each class against the rest, rows "
               "renormalised)", _fit_isotonic, _apply_isotonic),
)}


def _em_steps(A, pi, tol, max_iter):
    """EM (Saerens et al. 2002): pi <- mean_i of the posterior A_i pi / (A_i . pi)."""
    for _ in range(max_iter):
        R = A * pi[:, None]
        s = R.sum(axis=0)
        new = (R / np.where(s > 0, s, 1.0)).mean(axis=1)
        if np.abs(new - pi).max() < tol:
            return new
        pi = new
    return pi


def _ml_shares(QT, pi_from, start, tol=1e-9, max_iter=100):
    """Test class shares from class-major calibrated probabilities (EM's fixed point), from ``start``.

    The fixed point of EM (Saerens et al. 2002; :func:`shift.em_priors`, which
    tests compare) maximises the concave likelihood L(pi) = mean_i log(A_i . pi)
    with A = Q / pi_from over the simplex; Newton's method on the simplex finds it
    in a few steps where EM can take hundreds. A share a step would take below
    zero is set to zero and held there while the gradient says so (an active
    set; at the optimum a zero share has dL/dpi_c <= 1). EM finishes if Newton
    has not settled after ``max_iter`` steps, or when its Hessian cannot be solved
    (classes the probabilities cannot tell apart, or a class the fitting split
    almost never had: a share of 1e-5 makes A's row 1e5 times the others).
    """
    A = QT / pi_from[:, None]                                # (k, n)
    k = len(A)
    pi = np.array(start, dtype=np.float64)
    free = pi > 0
    for _ in range(max_iter):
        s = pi @ A                                           # (n,) likelihood of each row
        G = A / np.maximum(s, 1e-300)                        # (k, n) d log s / d pi
        g = G.mean(axis=1)                                   # gradient
        held = ~free & (g > 1 + 1e-9)                        # a zero share the gradient wants back
        if held.any():
            free |= held
            pi = np.where(held, 1e-6, pi)
            pi /= pi.sum()
            continue
        idx = np.flatnonzero(free)
        if len(idx) < 2:
            return pi / pi.sum()
        M = G[idx] @ G[idx].T / A.shape[1]                   # minus the Hessian on the free shares
        gf = g[idx]
        # on the simplex: pi + (d, -sum d), so gradient gf[:-1] - gf[-1], Hessian likewise
        Mr = M[:-1, :-1] - M[:-1, -1:] - M[-1:, :-1] + M[-1, -1]
        try:
            d = np.linalg.solve(Mr + 1e-12 * np.eye(len(Mr)), gf[:-1] - gf[-1])
        except np.linalg.LinAlgError:
            break
        if not np.isfinite(d).all():
            break
        step = np.zeros(k)
        step[idx] = np.r_[d, -d.sum()]
        down = step < 0
        t = 1.0
        if down.any():
            ratios = pi[down] / -step[down]
            if ratios.min() < 1.0:                           # a share would cross zero: stop there
                t = float(ratios.min())
                hit = np.flatnonzero(down)[np.argmin(ratios)]
                free[hit] = False
        pi = np.maximum(pi + t * step, 0.0)
        pi[~free] = 0.0
        if t == 1.0 and np.abs(step).max() < tol:
            return pi / pi.sum()
    return _em_steps(A, np.maximum(pi, 1e-12) / np.maximum(pi, 1e-12).sum(), tol, 1000)


def _predicted_proba(QT, pred, pi_from, pi_to):
    """Probability of the predicted class per row, re-weighted from pi_from to pi_to (Bayes)."""
    n = QT.shape[1]
    if pi_to is None:
        return QT.ravel()[_flat(pred, n)]
    R = QT * (pi_to / pi_from)[:, None]
    s = R.sum(axis=0)
    return R.ravel()[_flat(pred, n)] / np.where(s > 0, s, 1.0)


def _check_weights(name, w, n):
    w = np.ascontiguousarray(w, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{name} must be {n} finite non-negative weights, not all zero; got "
                         f"shape {w.shape}")
    return w


@_one_thread
def choose_calibrator(P_val, y_val, *, weights=None, folds=5, seed=0):
    """The simplest calibrator of :data:`CALIBRATORS` whose cross-validated Brier score on validation
    is within one standard error of the lowest (the one-standard-error rule; table order is
    simplest first).

    Parameters
    ----------
    P_val : ndarray of shape (n_val, n_classes)
        The model's probabilities on validation.
    y_val : ndarray of shape (n_val,), int
        Labels as column indices of ``P_val``.
    weights : ndarray of shape (n_val,) or None
        Row weights for the fits and the score (e.g. importance weights to test's inputs).
    folds : int
    seed : int

    Returns
    -------
    name : str
        The chosen calibrator.
    scores : tuple of (str, float)
        Every calibrator's cross-validated (weighted) multi-class Brier score.
    """
    P = _check_proba("P_val", P_val)
    y = _check_labels("y_val", y_val, len(P), P.shape[1])
    w = np.ones(len(P)) if weights is None else _check_weights("weights", weights, len(P))
    folds = _positive_int("folds", folds)
    if len(P) < 2 * folds:
        raise ValueError(f"need at least {2 * folds} validation rows for {folds}-fold calibration "
                         f"choice, got {len(P)}")
    PT = np.ascontiguousarray(P.T)
    fold_of = np.random.default_rng(seed).permutation(len(P)) % folds
    rows = np.empty((len(CALIBRATORS), len(P)))          # out-of-fold Brier score per row
    for j, cal in enumerate(CALIBRATORS.values()):
        for f in range(folds):
            tr, te = fold_of != f, fold_of == f
            params = cal.fit(PT[:, tr], y[tr], w[tr]) if w[tr].sum() > 0 else None
            R = (PT[:, te] if params is None else cal.apply(PT[:, te], params)).copy()
            R.ravel()[_flat(y[te], R.shape[1])] -= 1.0
            rows[j, te] = (R * R).sum(axis=0)
    wn = w / w.sum()
    means = rows @ wn
    best = int(np.argmin(means))
    # the simplest calibrator (table order) within one standard error of the best
    for j in range(best + 1):
        d = rows[j] - rows[best]
        se = math.sqrt(float(wn ** 2 @ (d - d @ wn) ** 2))
        if means[j] - means[best] <= se:
            break
    names = list(CALIBRATORS)
    return names[j], tuple((n, float(m)) for n, m in zip(names, means))


# The density ratio's under-correction (a measured bias, not a fitted model): with validation
# rows weighted by the domain classifier's ratio, the estimated change from validation accuracy
# was 1.5% to 16.2% (mean 8.7%) smaller than the change the labels show, on the covariate cases
# of development seeds 0-9 of ``make_case`` with both models of ``bench/performance_check.py``
# (20 cases; the estimate 1.5 and 1.9 points too high on average, at most 3.7). The cause: the
# classifier's ratio is smoother than the true one. Its log correlates about 0.88 with the true
# log ratio; where it is low, the rows test over-represents (hard ones, near the boundary)
# are mixed with easy ones it cannot tell apart, so weighted validation stays too easy. With the
# true ratio the estimate's bias was 0.2-0.5 points, and with the true log ratio as one more
# input the same classifier left 0.3-0.5; with more rows the bias shrinks (2.3, 1.7, 1.4, 1.0
# points at 5,000, 10,000, 20,000, 40,000 rows of each file, logistic). A bigger classifier (300
# trees of 31 leaves), 5 folds, Platt-rescaled odds, an outcome model of correctness on the
# inputs and calibration with the ratio as a feature left 1.2-2.1 points of bias; ATC
# (average thresholded confidence, Garg et al. 2022) with the weights left 0.5-1.0 points
# (1.3-1.4 points off on average, at most 2.8). The weighted estimate's change is therefore
# scaled by 1 + u, u unknown between 0 and 18% (the measured 1.5-16.2%, rounded outwards) and
# taken as uniform: the point estimate uses its middle, the bootstrap draws u per replicate.
RATIO_ATTENUATION = (0.0, 0.18)


@dataclass(frozen=True)
class AccuracyEstimate:
    """The accuracy a model would show on a test file, estimated without its labels.

    Attributes
    ----------
    estimate : float
        Mean over test rows of the calibrated (and, with priors, re-weighted)
        probability of the class the model predicts, plus ``correction`` times
        the share of test rows on the shared support, plus ``ratio_correction``.
    low, high : float
        The ``level`` bootstrap percentile interval for the accuracy the test
        file's labels would show (validation rows, test rows, the density ratio
        and the labels resampled; with weights, the band of
        :data:`RATIO_ATTENUATION` drawn too).
    level : float
    calibration : str
        The :data:`CALIBRATORS` entry used (chosen on validation).
    calibration_scores : tuple of (str, float)
        Each calibrator's cross-validated Brier score on validation (empty when
        ``calibration`` was given).
    correction : float
        The calibration's leftover error on validation: the (weighted) mean of
        correct minus calibrated probability of the predicted class.
    weighted : bool
        Whether validation rows were importance-weighted to test's inputs.
    unseen_share : float or None
        Share of test rows outside the shared support (the density ratio above
        its threshold): what the estimate cannot vouch for (None without a ratio).
    uncalibrated : float
        The mean highest raw probability on test (what the model's own confidence says).
    validation_accuracy : float
        The model's accuracy on validation (labels known).
    priors_val : tuple of float
        Validation's class shares: what the calibrated probabilities assume.
    priors_test : tuple of float or None
        The class shares the probabilities were re-weighted to (None: not re-weighted).
    priors_source : str
        ``"none"``, ``"given"`` or ``"em"`` (estimated from the calibrated test probabilities).
    label_shift_gap, label_shift_band : float or None
        With ``priors_test="auto"``: :data:`LABEL_SHIFT_RULE`'s statistic and
        noise band (EM's shares were used when gap <= threshold + band).
    ratio_correction : float
        How far the estimate was moved for the density ratio's under-correction
        (:data:`RATIO_ATTENUATION`): the middle of the band times the weighted
        estimate's change from validation accuracy (0 when not weighted).
    n_val, n_test, n_boot : int
    """
    estimate: float
    low: float
    high: float
    level: float
    calibration: str
    calibration_scores: tuple
    correction: float
    weighted: bool
    unseen_share: float | None
    uncalibrated: float
    validation_accuracy: float
    priors_val: tuple
    priors_test: tuple | None
    priors_source: str
    label_shift_gap: float | None
    label_shift_band: float | None
    ratio_correction: float
    n_val: int
    n_test: int
    n_boot: int

    def sentence(self):
        """One sentence from the numbers: the estimate, its interval and how it was made."""
        pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
        how = CALIBRATORS[self.calibration].description
        if self.weighted:
            how += ", validation rows weighted to test's inputs"
            if self.ratio_correction:
                how += (f" and the change from validation enlarged by "
                        f"{100 * abs(self.ratio_correction):.1f} points for the weights' "
                        f"measured under-correction")
        how += {"none": "", "given": ", re-weighted to the given class shares",
                "em": ", re-weighted to class shares estimated from the test predictions (EM)"
                }[self.priors_source]
        if self.label_shift_gap is not None:
            how += (" (a change of class shares alone explains the test inputs)"
                    if self.priors_source == "em" else
                    " (not re-weighted to other class shares: they do not explain the test "
                    "inputs)")
        unseen = "" if not self.unseen_share else (
            f"; {pct(self.unseen_share)} of test rows lie where train has (almost) no rows, "
            f"which no estimate without labels can vouch for")
        return (f"Without test labels, the expected accuracy on test is {pct(self.estimate)} "
                f"({100 * self.level:g}% interval {pct(self.low)} to {pct(self.high)}; "
                f"validation {pct(self.validation_accuracy)}, the model's own confidence "
                f"{pct(self.uncalibrated)}), from probabilities calibrated on validation by "
                f"{how}{unseen}.")


def _shares(y, k):
    return np.maximum(np.bincount(y, minlength=k) / len(y), 1e-12)


_Z = 2.576   # two-sided 99% normal quantile (the noise band of the rule below, as in shift.py)

# priors_test="auto": re-weight to EM's class shares only when a change of class shares
# alone explains how test's inputs differ from validation's
LABEL_SHIFT_RULE = Rule(
    name="label_shift_explains_inputs", threshold=0.0, also=(("z", _Z),),
    statistic="mean per-row log-likelihood (nats) of which file each validation and test row "
              "came from, under the cross-fitted domain classifier minus under the label-shift "
              "model (test = validation re-weighted by EM's class shares: odds "
              "sum_c Q_c(x) pi_test(c) / pi_val(c))",
    noise="z standard errors of that mean over rows",
    text="a change of class shares alone explains the test inputs when the domain classifier "
         "beats the label-shift model by at most {threshold} nats per row plus {z} standard "
         "errors; then the probabilities are re-weighted to EM's class shares, otherwise not")


def _label_shift_gap(Qv, Qt, ratio, pi_val):
    """``LABEL_SHIFT_RULE``'s statistic and its band: (mean gain, z * standard error).

    Qv, Qt : calibrated class-major probabilities of validation and test.
    """
    lam = _ml_shares(Qt, pi_val, pi_val) / pi_val          # (k,) q(c) / p(c)
    a = Qt.shape[1] / Qv.shape[1]                           # test rows per validation row

    def loglik(rv, rt):
        pv = np.clip(a * rv / (1 + a * rv), 1e-6, 1 - 1e-6)  # P(test | x) in the pooled rows
        pt = np.clip(a * rt / (1 + a * rt), 1e-6, 1 - 1e-6)
        return np.r_[np.log1p(-pv), np.log(pt)]

    d = loglik(ratio.val, ratio.test) - loglik(lam @ Qv, lam @ Qt)
    return float(d.mean()), float(_Z * d.std(ddof=1) / math.sqrt(len(d)))


@_one_thread
def estimate_accuracy(P_val, y_val, P_test, *, ratio=None, priors_test=None, calibration=None,
                      n_boot=200, level=0.95, seed=0):
    """The accuracy on an unlabelled test file, with an interval (CBPE on calibrated probabilities).

    The calibrator is chosen on validation (:func:`choose_calibrator`, unless
    ``calibration`` names one) and fitted there; the estimate is the mean over
    test rows of the calibrated probability of the class the model predicts
    (``argmax P_test``, whatever the calibration), plus the calibration's
    leftover error on validation (mean of correct minus calibrated probability)
    for the test rows on the shared support. Valid when what was learnt on
    validation holds on test, in one of two ways:

    - the inputs moved, P(label | inputs) did not (covariate shift): pass
      ``ratio``; validation rows are weighted by the density ratio (on the
      shared support) in the calibrator's choice, its fit and that correction,
      a doubly robust estimate (right if either the calibration or the weights
      are);
    - the class shares moved, P(inputs | label) did not (prior shift): pass
      ``priors_test`` (``"em"`` or the shares); the calibration is then
      unweighted and Bayes' rule moves it to the new shares.

    ``priors_test="auto"`` (with ``ratio``) picks between the two with
    :data:`LABEL_SHIFT_RULE`. Nothing can vouch for test rows train never
    showed (``unseen_share``), nor for a changed P(label | inputs).

    The interval is a percentile bootstrap of ``n_boot`` replicates, each with
    validation rows resampled (the calibrator's parameters refitted, with one of
    the ratio's refits; the calibrator's choice is not re-made; 25 such refits
    are used in turn), test rows resampled (EM re-run when EM's shares are
    used), and each resampled row's correctness drawn from its calibrated
    probability: an interval for the accuracy the test file's labels would
    show. A given ``priors_test`` array is taken as exact.

    With validation weighted by the ratio, the estimate's change from validation
    accuracy is enlarged by :data:`RATIO_ATTENUATION` (``ratio_correction``): a
    domain classifier's ratio is smoother than the true one and under-corrects
    (measured on the development seeds: the weighted estimate kept 1.5 to 4
    points of a covariate shift's drop, the estimate too high). The estimate
    uses the middle of that band and each replicate draws from it uniformly, so
    the interval carries the remaining bias as well as the weighting's and the
    ratio refits' noise. That band is a measurement on ``make_case``'s
    covariate shifts (more inputs near the boundary), not a guarantee for
    other data.

    Parameters
    ----------
    P_val : ndarray of shape (n_val, n_classes)
        The model's probabilities on validation (``predict_proba``).
    y_val : ndarray of shape (n_val,), int
        Validation labels as column indices of ``P_val``.
    P_test : ndarray of shape (n_test, n_classes)
        The model's probabilities on test.
    ratio : DensityRatio or None
        :func:`fit_density_ratio` of these validation and test rows; it weights
        the calibration unless EM's or given shares are used, and gives
        ``unseen_share``. None leaves validation unweighted.
    priors_test : None, "em", "auto" or ndarray of shape (n_classes,)
        Test's class shares to re-weight to (Bayes' rule, from validation's
        shares): None leaves the probabilities as calibrated, ``"em"`` estimates
        them from the calibrated test probabilities (the maximum-likelihood
        shares EM converges to, Saerens et al. 2002, as :func:`shift.em_priors`),
        ``"auto"`` (needs ``ratio``) decides with :data:`LABEL_SHIFT_RULE`
        (on the unweighted calibration): EM's shares when a change of class
        shares explains the test inputs, otherwise the ratio-weighted
        calibration and validation's shares. Decided once; the bootstrap does
        not re-decide.
    calibration : str or None
        A key of :data:`CALIBRATORS`; None chooses by cross-validation on validation.
    n_boot : int
    level : float
    seed : int

    Returns
    -------
    AccuracyEstimate

    Notes
    -----
    About a second for 40,000 validation and 40,000 test rows of 3 classes
    with 200 replicates (``bench/performance_check.py --timing``).
    """
    P_val = _check_proba("P_val", P_val)
    k = P_val.shape[1]
    P_test = _check_proba("P_test", P_test, k)
    y_val = _check_labels("y_val", y_val, len(P_val), k)
    n_boot = _positive_int("n_boot", n_boot)
    _z(level)                                           # checks level
    n_val, n_test = len(P_val), len(P_test)
    if ratio is not None and (ratio.val.shape != (n_val,) or ratio.test.shape != (n_test,)):
        raise ValueError(f"ratio was fitted on {len(ratio.val)} validation and {len(ratio.test)} "
                         f"test rows, not these {n_val} and {n_test}")
    if calibration is not None and calibration not in CALIBRATORS:
        raise ValueError(f"calibration must be None or one of {list(CALIBRATORS)}, got "
                         f"{calibration!r}")
    if isinstance(priors_test, str):
        if priors_test not in ("em", "auto"):
            raise ValueError(f"priors_test must be None, 'em', 'auto' or an array, got "
                             f"{priors_test!r}")
        if priors_test == "auto" and ratio is None:
            raise ValueError("priors_test='auto' compares the domain classifier with a change of "
                             "class shares: pass ratio=fit_density_ratio(X_val, X_test, ...)")
        source, given = priors_test, None
    elif priors_test is None:
        source, given = "none", None
    else:
        given = np.asarray(priors_test, dtype=np.float64)
        if given.shape != (k,) or not np.isfinite(given).all() or (given < 0).any() \
                or not np.isclose(given.sum(), 1.0):
            raise ValueError(f"priors_test must be {k} non-negative shares summing to 1, got "
                             f"{priors_test!r}")
        source = "given"
    # the calibrated probabilities estimate validation's P(y | x) (weights only choose which
    # inputs the fit attends to), so Bayes' rule starts from validation's own class shares
    pi_val = _shares(y_val, k)
    if source != "none" and (np.bincount(y_val, minlength=k) == 0).any():
        raise ValueError("validation lacks a class; re-weighting to test priors needs every class "
                         "in validation")
    PvT, PtT = np.ascontiguousarray(P_val.T), np.ascontiguousarray(P_test.T)   # class-major
    pred_val, pred = P_val.argmax(axis=1), P_test.argmax(axis=1)
    right_val = (pred_val == y_val).astype(np.float64)
    inside = np.ones(n_test, dtype=bool) if ratio is None else ratio.test <= ratio.threshold

    def calibrate(weights):
        name, sc = (calibration, ()) if calibration else \
            choose_calibrator(P_val, y_val, weights=weights, seed=seed)
        return name, sc, CALIBRATORS[name].fit(PvT, y_val, weights)

    gap = band = None
    weighted = ratio is not None and source == "none"
    if source == "auto":
        # under a change of class shares P(y | x) changes too: Bayes' rule, not weights, fixes it
        name, scores, params = calibrate(np.ones(n_val))
        cal = CALIBRATORS[name]
        gap, band = _label_shift_gap(cal.apply(PvT, params), cal.apply(PtT, params), ratio,
                                     pi_val)
        source = "em" if gap <= LABEL_SHIFT_RULE.threshold + band else "none"
        weighted = source == "none"
    if weighted:
        in_support = lambda r: np.where(r <= ratio.threshold, r, 0.0)  # noqa: E731
        w0 = in_support(ratio.val)
        w_refit = in_support(ratio.val_refits) if len(ratio.val_refits) else w0[None, :]
    else:
        w0, w_refit = np.ones(n_val), np.ones((1, n_val))
    if gap is None or weighted:
        name, scores, params0 = calibrate(w0)
    else:
        params0 = params
    calibration, cal = name, CALIBRATORS[name]

    def residual(rows, wv, params):
        """Weighted mean over validation rows of (correct - calibrated p of the predicted class)."""
        pv = cal.apply(PvT.take(rows, axis=1), params).ravel()[_flat(pred_val[rows], len(rows))]
        return float(wv @ (right_val[rows] - pv) / wv.sum())

    Q0 = cal.apply(PtT, params0)                                         # (k, n_test)
    pri0 = _ml_shares(Q0, pi_val, pi_val) if source == "em" else given
    p0 = _predicted_proba(Q0, pred, pi_val, pri0)
    resid0 = residual(np.arange(n_val), w0, params0)

    rng = np.random.default_rng(seed)
    # the calibration's own noise: n_cal refits on resampled validation rows (each with
    # one refit of the density ratio), reused in turn by the n_boot replicates
    n_cal = min(n_boot, _CAL_REFITS)
    refits = []
    for j in range(n_cal):
        iv = rng.integers(0, n_val, n_val)
        wv = w_refit[j % len(w_refit)][iv]
        if wv.sum() <= 0:
            wv = np.ones(n_val)
        params = cal.fit(PvT.take(iv, axis=1), y_val[iv], wv, params0)
        refits.append((cal.apply(PtT, params), _shares(y_val[iv], k),
                       residual(iv, wv, params)))
    # the ratio's under-correction (RATIO_ATTENUATION): the weighted change from validation
    # accuracy scaled by 1 + u, u in the measured band (its middle for the estimate, drawn
    # per replicate for the interval)
    lo_u, hi_u = RATIO_ATTENUATION if weighted else (0.0, 0.0)
    raw0 = float(np.clip(p0.mean() + inside.mean() * resid0, 0.0, 1.0))
    change0 = raw0 - float(right_val.mean())
    u = np.random.default_rng([seed, 2]).uniform(lo_u, hi_u, n_boot)   # own stream
    reps = np.empty(n_boot)
    for b in range(n_boot):
        Q, pi_b, resid = refits[b % n_cal]
        it = rng.integers(0, n_test, n_test)
        Qb = Q.take(it, axis=1)
        pri = _ml_shares(Qb, pi_b, pri0) if source == "em" else given
        p = _predicted_proba(Qb, pred[it], pi_b, pri)
        # an accuracy is a share: the leftover-error correction must not carry it past 0 or 1
        reps[b] = min(max(np.mean(rng.random(n_test) < p) + np.mean(inside[it]) * resid
                          + u[b] * change0, 0.0), 1.0)
    alpha = (1 - level) / 2
    low, high = np.quantile(reps, [alpha, 1 - alpha])
    return AccuracyEstimate(
        estimate=float(np.clip(raw0 + (lo_u + hi_u) / 2 * change0, 0.0, 1.0)), low=float(low), high=float(high),
        level=float(level), calibration=calibration, calibration_scores=scores,
        correction=resid0, weighted=weighted,
        unseen_share=None if ratio is None else float(1 - inside.mean()),
        uncalibrated=float(P_test.max(axis=1).mean()),
        validation_accuracy=float(right_val.mean()),
        priors_val=tuple(float(v) for v in pi_val),
        priors_test=None if pri0 is None else tuple(float(v) for v in pri0),
        priors_source=source, label_shift_gap=gap, label_shift_band=band,
        ratio_correction=float((lo_u + hi_u) / 2 * change0),
        n_val=n_val, n_test=n_test, n_boot=n_boot)


# -- the density ratio (B) --------------------------------------------------

@dataclass(frozen=True, eq=False)
class DensityRatio:
    """Test-to-validation density ratio q(x)/p(x) at every row, from a domain classifier.

    Attributes
    ----------
    val : ndarray of shape (n_val,)
        The ratio at each validation row (out of fold).
    test : ndarray of shape (n_test,)
        The ratio at each test row (out of fold).
    val_refits, test_refits : ndarray of shape (n_refit, n_val), (n_refit, n_test)
        The same from classifiers refitted on bootstrap resamples (their spread
        is the ratio's estimation noise).
    threshold : float
        Rows with a ratio above it are outside the shared support.
    auc : float
        Out-of-fold ROC AUC of the classifier telling test rows from validation
        rows (0.5: the files' inputs are indistinguishable).
    fit_rows : int
        Rows of each file a classifier was trained on (the subsample cap).
    """
    val: np.ndarray
    test: np.ndarray
    val_refits: np.ndarray
    test_refits: np.ndarray
    threshold: float
    auc: float
    fit_rows: int


def _domain_classifier(seed):
    return HistGradientBoostingClassifier(max_iter=50, learning_rate=0.2, max_leaf_nodes=15,
                                          min_samples_leaf=50, l2_regularization=1.0,
                                          early_stopping=False, random_state=seed)


def _cross_fit(Xv, Xt, rng, max_rows, folds, bootstrap):
    """Out-of-fold P(test | x) for every row; each fold's classifier sees equal rows of both files."""
    fold_v = rng.permutation(len(Xv)) % folds
    fold_t = rng.permutation(len(Xt)) % folds
    pv, pt = np.empty(len(Xv)), np.empty(len(Xt))
    m = 0
    for f in range(folds):
        iv, it = np.flatnonzero(fold_v != f), np.flatnonzero(fold_t != f)
        m = min(max_rows, len(iv), len(it))
        iv = rng.choice(iv, m, replace=bootstrap)         # equal rows: odds = q/p
        it = rng.choice(it, m, replace=bootstrap)
        clf = _domain_classifier(int(rng.integers(2 ** 31)))
        clf.fit(np.vstack([Xv[iv], Xt[it]]), np.r_[np.zeros(m), np.ones(m)])
        _predict_into(clf, Xv, np.flatnonzero(fold_v == f), pv)
        _predict_into(clf, Xt, np.flatnonzero(fold_t == f), pt)
    return pv, pt, m


# Rows a domain classifier scores at once: its prediction is row by row, so pieces give the
# same numbers, and a file of millions of rows is not copied (and converted) whole.
PREDICT_CHUNK = 1 << 18


def _predict_into(clf, X, rows, out):
    """``out[rows] = P(test | X[rows])``, in pieces of ``PREDICT_CHUNK`` rows."""
    for start in range(0, len(rows), PREDICT_CHUNK):
        r = rows[start:start + PREDICT_CHUNK]
        out[r] = clf.predict_proba(X[r])[:, 1]


def _float_matrix(X):
    """``X`` as a C-ordered float array: float32 kept as it is (the classifier converts each
    piece it scores, to the same float64 values), anything else as float64."""
    X = np.asarray(X)
    return np.ascontiguousarray(X, dtype=X.dtype if X.dtype == np.float32 else np.float64)


def _odds(p):
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.divide(q, 1 - q, out=q)


def _auc(neg, pos):
    """ROC AUC of scores ``pos`` (n_pos,) against ``neg`` (n_neg,): the share of (neg, pos)
    pairs ordered ``pos > neg``, ties counted half (Mann-Whitney; equal to
    ``roc_auc_score`` to rounding: the pair counts are whole numbers, divided once). One
    sorted copy of ``pos`` and pieces of ``neg`` (``PREDICT_CHUNK``), where ``roc_auc_score``
    joins both files and sorts, reorders and sums copies of all their rows."""
    ranked = np.sort(pos)
    above = ties = 0
    for start in range(0, len(neg), PREDICT_CHUNK):
        piece = neg[start:start + PREDICT_CHUNK]
        lo, hi = np.searchsorted(ranked, piece, "left"), np.searchsorted(ranked, piece, "right")
        above += int((len(ranked) - hi).sum())
        ties += int((hi - lo).sum())
    return (above + 0.5 * ties) / (len(neg) * len(pos))


@_one_thread
def fit_density_ratio(X_val, X_test, *, P_val=None, P_test=None, threshold=20.0, n_refit=5,
                      max_rows=10_000, folds=2, seed=0):
    """The test-to-validation density ratio at every row, cross-fitted, with refits for its noise.

    A gradient-boosted classifier (HistGradientBoosting, fixed settings) tells
    test rows from validation rows from their inputs (never the labels). Rows are split into
    ``folds`` folds; each fold's rows get P(test | x) from a classifier trained
    on the other folds, subsampled to ``max_rows`` rows of each file (equal
    counts, so the odds P(test | x) / P(val | x) estimate q(x)/p(x) directly).
    ``n_refit`` further cross-fits, each on rows drawn with replacement and a
    new fold split, measure how much the ratio moves when the classifier is
    refitted. With a model's probabilities, the classifier also sees log P: a
    function of x, so the ratio it estimates is the same, but it is pointed at
    what makes a row hard or easy for the model (on the generated covariate
    shift of the development seeds this moved the share of the drop found in
    the covariate term from about half to about nine tenths). Runs on one
    thread; a few seconds for 40,000 + 40,000 rows of 12 features with the
    defaults (``bench/performance_check.py --timing``).

    Parameters
    ----------
    X_val : ndarray of shape (n_val, n_features)
        Validation inputs (a random split of train: they stand for train's inputs).
    X_test : ndarray of shape (n_test, n_features)
    P_val, P_test : ndarray of shape (n_val, n_classes), (n_test, n_classes), optional
        The model's probabilities on each file (both or neither).
    threshold : float
        The support threshold: an input whose ratio exceeds it (the test file
        has it ``threshold`` times as often as train) counts as rare or unseen in train.
    n_refit : int
        Refitted cross-fits for the ratio's noise (0 leaves it out of intervals).
    max_rows : int
        Cap on each file's rows a classifier is trained on.
    folds : int
        Cross-fitting folds (>= 2).
    seed : int

    Returns
    -------
    DensityRatio
    """
    Xv, Xt = _float_matrix(X_val), _float_matrix(X_test)
    if Xv.ndim != 2 or Xt.ndim != 2 or Xv.shape[1] != Xt.shape[1]:
        raise ValueError(f"X_val and X_test must be 2-D with the same number of columns; got "
                         f"{Xv.shape} and {Xt.shape}")
    if (P_val is None) != (P_test is None):
        raise ValueError("pass both P_val and P_test, or neither")
    if P_val is not None:
        P_val = _check_proba("P_val", P_val)
        P_test = _check_proba("P_test", P_test, P_val.shape[1])
        if len(P_val) != len(Xv) or len(P_test) != len(Xt):
            raise ValueError(f"P_val and P_test must have one row per row of X_val and X_test; got "
                             f"{len(P_val)} and {len(P_test)} for {len(Xv)} and {len(Xt)}")
        Xv = np.hstack([Xv, np.log(np.maximum(P_val, _EPS))])
        Xt = np.hstack([Xt, np.log(np.maximum(P_test, _EPS))])
    if np.isinf(Xv).any() or np.isinf(Xt).any():
        raise ValueError("X_val and X_test must not contain infinities (NaN is allowed: missing)")
    if not (isinstance(threshold, numbers.Real) and threshold > 1 and math.isfinite(threshold)):
        raise ValueError(f"threshold must be a finite number > 1, got {threshold!r}")
    if isinstance(n_refit, bool) or not isinstance(n_refit, (int, np.integer)) or n_refit < 0:
        raise ValueError(f"n_refit must be an integer >= 0, got {n_refit!r}")
    max_rows = _positive_int("max_rows", max_rows)
    folds = _positive_int("folds", folds)
    if folds < 2:
        raise ValueError(f"folds must be >= 2 (cross-fitting), got {folds}")
    if min(len(Xv), len(Xt)) < 10 * folds:
        raise ValueError(f"need at least {10 * folds} rows in each file for the domain classifier; "
                         f"got {len(Xv)} validation and {len(Xt)} test rows")
    rng = np.random.default_rng(seed)
    pv, pt, m = _cross_fit(Xv, Xt, rng, max_rows, folds, bootstrap=False)
    refits = [_cross_fit(Xv, Xt, rng, max_rows, folds, bootstrap=True) for _ in range(n_refit)]
    auc = _auc(pv, pt)
    empty_v, empty_t = np.empty((0, len(Xv))), np.empty((0, len(Xt)))
    return DensityRatio(
        val=_odds(pv), test=_odds(pt),
        val_refits=np.array([_odds(r[0]) for r in refits]) if refits else empty_v,
        test_refits=np.array([_odds(r[1]) for r in refits]) if refits else empty_t,
        threshold=float(threshold), auc=float(auc), fit_rows=int(m))


# -- the decomposition (B, C) -----------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """A number with its standard error and its interval ``value -/+ z * se``."""
    value: float
    se: float
    low: float
    high: float

    @property
    def half_width(self):
        return (self.high - self.low) / 2

    def excludes_zero(self):
        return self.low > 0 or self.high < 0


def _terms(v_val, r_val, v_test, r_test, threshold, c_val=None, c_test=None):
    """(total, covariate, conditional, unseen, unseen share) from rows, ratios and row counts.

    A = sum_i w_i v_i / sum_i w_i over validation with w = r 1{r <= threshold}: the
    validation metric re-weighted to test's inputs on the shared support; B = the test
    metric over test rows on the shared support. covariate = A - mean(val),
    conditional = B - A, unseen = mean(test) - B: they sum to the total exactly.
    """
    c_val = np.ones(len(v_val)) if c_val is None else c_val
    c_test = np.ones(len(v_test)) if c_test is None else c_test
    mean_val = c_val @ v_val / c_val.sum()
    mean_test = c_test @ v_test / c_test.sum()
    w = c_val * np.where(r_val <= threshold, r_val, 0.0)
    inside = c_test * (r_test <= threshold)
    if w.sum() <= 0 or inside.sum() <= 0:         # no shared support: all of it is unseen
        return mean_test - mean_val, 0.0, 0.0, mean_test - mean_val, 1.0
    a = w @ v_val / w.sum()
    b = inside @ v_test / inside.sum()
    return (mean_test - mean_val, a - mean_val, b - a, mean_test - b,
            1.0 - inside.sum() / c_test.sum())


_NAMES = ("total", "covariate", "conditional", "unseen", "unseen_share")


@dataclass(frozen=True)
class Decomposition:
    """The validation -> test change of a per-row metric in three additive terms (DISDE).

    Attributes
    ----------
    metric : str
        What was decomposed (``"log loss"``, ``"accuracy"``, ...).
    higher_is_better : bool
        True for accuracy-like metrics (a fall is the bad direction).
    validation, test : float
        The metric's mean on each file.
    total : Estimate
        ``test - validation``; its interval is the row bootstrap's.
    covariate : Estimate
        (i) inputs common to both files but distributed differently: the
        validation metric re-weighted to test's inputs on the shared support,
        minus the validation metric.
    conditional : Estimate
        (ii) a changed P(label | inputs) on the shared support: test's metric
        on its shared-support rows minus the re-weighted validation metric.
    unseen : Estimate
        (iii) inputs rare or unseen in train: test's metric minus test's metric
        on its shared-support rows.
    unseen_share : Estimate
        Share of test rows outside the shared support (ratio above ``threshold``).
    threshold : float
    domain_auc : float
        How well the domain classifier tells the files apart (0.5: not at all).
    level : float
    n_val, n_test, n_boot, n_refit : int

    ``covariate + conditional + unseen == total`` for the values (up to
    rounding); intervals are ``value -/+ z * se`` with se² the variance over
    ``n_boot`` row bootstraps (both files resampled, ratio fixed) plus the
    variance over ``n_refit`` refitted domain classifiers (rows fixed).
    """
    metric: str
    higher_is_better: bool
    validation: float
    test: float
    total: Estimate
    covariate: Estimate
    conditional: Estimate
    unseen: Estimate
    unseen_share: Estimate
    threshold: float
    domain_auc: float
    level: float
    n_val: int
    n_test: int
    n_boot: int
    n_refit: int

    def sentence(self):
        """The decomposition in one sentence, every clause generated from the numbers.

        Each term is signed in the total's direction (a negative one pulls the
        other way) and given as value ± half its interval.
        """
        t = self.total
        # a change within noise has no direction: its terms are signed as test minus validation
        sign = -1.0 if t.value < 0 and t.excludes_zero() else 1.0
        terms = (self.covariate, self.conditional, self.unseen)
        hw = min(e.half_width for e in (t, *terms))
        dec = 2 if hw >= 0.005 or hw == 0 else 3

        def num(v):
            text = f"{v:.{dec}f}"
            return text[1:] if float(text) == 0 and text.startswith("-") else text

        def fmt(e):
            return f"{num(sign * e.value)} ± {num(e.half_width)}"

        if t.excludes_zero():
            word = "fall" if t.value < 0 else "rise"
            worse = (t.value < 0) == self.higher_is_better
            verdict = "worse" if worse else "better"
            verdict += " on test"
            size = num(abs(t.value))
        else:
            word, verdict, size = "change", "within noise of no change; terms signed as test minus validation", num(t.value)
        share = 100 * self.unseen_share.value
        share = f"{share:.1f}" if 0 < share < 1 else f"{share:.0f}"
        return (f"Of the {size} ± {num(t.half_width)} {word} in {self.metric} from "
                f"validation ({num(self.validation)}) to test ({num(self.test)}) ({verdict}), "
                f"{fmt(terms[0])} comes from inputs that moved within the range train covers, "
                f"{fmt(terms[1])} from a changed relationship between inputs and label, and "
                f"{fmt(terms[2])} from inputs train rarely or never showed ({share}% of test "
                f"rows).")


@_one_thread
def decompose(X_val, values_val, X_test, values_test, *, metric="log loss", higher_is_better=False,
              ratio=None, threshold=20.0, n_boot=200, n_refit=5, max_rows=10_000, level=0.95,
              seed=0):
    """Split the validation -> test change of a per-row metric into covariate, conditional and unseen.

    DISDE (Cai, Namkoong & Yadlowsky 2023) with the shared distribution taken
    as test's inputs restricted to the shared support {x : q(x)/p(x) <=
    threshold} (the paper's default shares every input with weight
    p q / (p + q); the hard support makes a shift within the support count
    wholly as covariate). The ratio q/p comes from :func:`fit_density_ratio`
    (pass ``ratio`` to reuse one for several metrics).

    Parameters
    ----------
    X_val : ndarray of shape (n_val, n_features)
        Validation inputs (a random split of train).
    values_val : ndarray of shape (n_val,)
        The metric per validation row (e.g. log loss -log P[i, y_i], or 1.0 if correct).
    X_test : ndarray of shape (n_test, n_features)
    values_test : ndarray of shape (n_test,)
    metric : str
        Its name, for :meth:`Decomposition.sentence`.
    higher_is_better : bool
    ratio : DensityRatio or None
        A fitted ratio for these rows (its own threshold is used); None fits one
        from the inputs alone (``threshold``, ``n_refit``, ``max_rows``, ``seed``).
    threshold, n_refit, max_rows : see :func:`fit_density_ratio`
    n_boot : int
        Row bootstraps.
    level : float
        Interval coverage (0.95: value ± 1.96 se).
    seed : int

    Returns
    -------
    Decomposition
    """
    v_val = np.ascontiguousarray(values_val, dtype=np.float64)
    v_test = np.ascontiguousarray(values_test, dtype=np.float64)
    n_val, n_test = np.shape(X_val)[0], np.shape(X_test)[0]
    if v_val.shape != (n_val,) or v_test.shape != (n_test,):
        raise ValueError(f"values_val and values_test must be one value per row: shapes ({n_val},) "
                         f"and ({n_test},), got {v_val.shape} and {v_test.shape}")
    if not (np.isfinite(v_val).all() and np.isfinite(v_test).all()):
        raise ValueError("values_val and values_test must be finite (clip probabilities before "
                         "taking log loss)")
    n_boot = _positive_int("n_boot", n_boot)
    z = _z(level)
    if ratio is None:
        ratio = fit_density_ratio(X_val, X_test, threshold=threshold, n_refit=n_refit,
                                  max_rows=max_rows, seed=seed)
    elif ratio.val.shape != (n_val,) or ratio.test.shape != (n_test,):
        raise ValueError(f"ratio was fitted on {len(ratio.val)} validation and {len(ratio.test)} "
                         f"test rows, not these {n_val} and {n_test}")
    tau = ratio.threshold
    point = np.array(_terms(v_val, ratio.val, v_test, ratio.test, tau))
    rng = np.random.default_rng([seed, 1])
    boots = np.empty((n_boot, len(_NAMES)))
    for b in range(n_boot):
        cv = np.bincount(rng.integers(0, n_val, n_val), minlength=n_val).astype(np.float64)
        ct = np.bincount(rng.integers(0, n_test, n_test), minlength=n_test).astype(np.float64)
        boots[b] = _terms(v_val, ratio.val, v_test, ratio.test, tau, cv, ct)
    var = boots.var(axis=0, ddof=1) if n_boot > 1 else np.zeros(len(_NAMES))
    if len(ratio.val_refits) > 1:
        refits = np.array([_terms(v_val, rv, v_test, rt, tau)
                           for rv, rt in zip(ratio.val_refits, ratio.test_refits)])
        var = var + refits.var(axis=0, ddof=1)
    est = {name: Estimate(float(p), float(math.sqrt(s)), float(p - z * math.sqrt(s)),
                          float(p + z * math.sqrt(s)))
           for name, p, s in zip(_NAMES, point, var)}
    return Decomposition(metric=str(metric), higher_is_better=bool(higher_is_better),
                         validation=float(v_val.mean()), test=float(v_test.mean()),
                         threshold=tau, domain_auc=ratio.auc, level=float(level), n_val=n_val,
                         n_test=n_test, n_boot=n_boot, n_refit=len(ratio.val_refits), **est)


def row_log_loss(P, y):
    """Per-row log loss -log P[i, y_i] (probabilities floored at 1e-6), shape (n,)."""
    P = _check_proba("P", P)
    y = _check_labels("y", y, len(P), P.shape[1])
    return -np.log(np.clip(P[np.arange(len(y)), y], _EPS, 1.0))


@dataclass(frozen=True, eq=False)
class PerformanceChange:
    """A model's validation -> test change in log loss and in accuracy, decomposed with one ratio.

    Attributes
    ----------
    log_loss, accuracy : Decomposition
    ratio : DensityRatio
    """
    log_loss: Decomposition
    accuracy: Decomposition
    ratio: DensityRatio

    def sentences(self):
        """:meth:`Decomposition.sentence` for accuracy, then for log loss."""
        return (self.accuracy.sentence(), self.log_loss.sentence())


@_one_thread
def decompose_predictions(X_val, y_val, P_val, X_test, y_test, P_test, *, ratio=None,
                          threshold=20.0, n_boot=200, n_refit=5, max_rows=10_000, level=0.95,
                          seed=0):
    """:func:`decompose` of a model's log loss and accuracy, validation -> test, with one ratio.

    The density ratio is fitted on the inputs and the model's log probabilities
    (:func:`fit_density_ratio` with ``P_val``, ``P_test``).

    Parameters
    ----------
    X_val : ndarray of shape (n_val, n_features)
        Validation inputs, as the model sees them (encoded).
    y_val : ndarray of shape (n_val,), int
        Labels as column indices of ``P_val``.
    P_val : ndarray of shape (n_val, n_classes)
        The model's probabilities on validation (``predict_proba``).
    X_test, y_test, P_test : the same for the labelled test file
    ratio : DensityRatio or None
        A ratio fitted on these rows (e.g. the one given to
        :func:`estimate_accuracy`); None fits one.
    threshold, n_boot, n_refit, max_rows, level, seed : see :func:`decompose`

    Returns
    -------
    PerformanceChange
    """
    P_val = _check_proba("P_val", P_val)
    P_test = _check_proba("P_test", P_test, P_val.shape[1])
    ll_val, ll_test = row_log_loss(P_val, y_val), row_log_loss(P_test, y_test)
    ok_val = (P_val.argmax(axis=1) == y_val).astype(np.float64)
    ok_test = (P_test.argmax(axis=1) == y_test).astype(np.float64)
    if ratio is None:
        ratio = fit_density_ratio(X_val, X_test, P_val=P_val, P_test=P_test, threshold=threshold,
                                  n_refit=n_refit, max_rows=max_rows, seed=seed)
    kw = dict(ratio=ratio, n_boot=n_boot, level=level, seed=seed)
    return PerformanceChange(
        log_loss=decompose(X_val, ll_val, X_test, ll_test, metric="log loss", **kw),
        accuracy=decompose(X_val, ok_val, X_test, ok_test, metric="accuracy",
                           higher_is_better=True, **kw),
        ratio=ratio)


# -- generated cases --------------------------------------------------------

MECHANISMS = ("none", "covariate", "prior", "conditional", "unseen")


@dataclass(frozen=True, eq=False)
class Case:
    """A train/validation/test triple with one planted mechanism (:func:`make_case`).

    Attributes
    ----------
    mechanism : str
        One of :data:`MECHANISMS`.
    X_train, X_val, X_test : ndarray of shape (n_rows, n_features)
    y_train, y_val, y_test : ndarray of shape (n_rows,), int
    unseen : ndarray of shape (n_test,), bool
        Test rows drawn from the region train never shows (all False but for ``unseen``).
    """
    mechanism: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    unseen: np.ndarray


class _World:
    """A random P(y | x) over standard-normal inputs: linear in six features, a
    curved term in one, and a term that only acts far out in feature 0 (x0 > 2.5,
    which train almost never shows) and there reverses x0's effect, so a model
    extrapolating from train is wrong there."""

    def __init__(self, rng, d, k):
        self.d, self.k = d, k
        self.W = np.zeros((k, d))
        self.W[:, :min(6, d)] = rng.normal(0.0, 0.9, (k, min(6, d)))
        self.U = rng.normal(0.0, 0.8, k)                  # on x1^2 - 1
        self.G = -4.0 * self.W[:, 0]                       # on relu(x0 - 2.5): reverses x0's effect
        self.c = rng.normal(0.0, 0.5, k)                  # intercepts: unequal class shares

    def logits(self, X):
        return (X @ self.W.T + np.outer(X[:, 1] ** 2 - 1, self.U)
                + np.outer(np.maximum(X[:, 0] - 2.5, 0.0), self.G) + self.c)   # (n, k)

    def labels(self, X, rng, logits=None):
        Q = _softmax(self.logits(X) if logits is None else logits)
        u = rng.random(len(X))[:, None]
        return np.minimum((Q.cumsum(axis=1) < u).sum(axis=1), self.k - 1)

    def source(self, n, rng):
        X = rng.normal(size=(n, self.d))
        return X, self.labels(X, rng)


def _accept(rng, draw, prob, n):
    """n rows of ``draw(m)`` kept with probability ``prob(X, y)`` (rejection sampling)."""
    Xs, ys, have = [], [], 0
    while have < n:
        X, y = draw(2 * n)
        keep = rng.random(len(X)) < prob(X, y)
        Xs.append(X[keep]), ys.append(y[keep])
        have += int(keep.sum())
    return np.vstack(Xs)[:n], np.concatenate(ys)[:n]


def make_case(mechanism, seed=0, *, n_train=20_000, n_val=10_000, n_test=10_000, n_features=12,
              n_classes=3, strength=1.0):
    """Train, validation and test with one planted mechanism in test; train and validation
    do not depend on the mechanism (one model per seed serves all of them).

    The world: inputs standard normal; P(y | x) softmax of logits linear in six
    features, curved in one (x1²) and with a term acting only where x0 > 2.5 (drawn
    per seed). The mechanisms change test only:

    - ``none``: test drawn like train (the control).
    - ``covariate``: test rows kept with probability exp(-2 strength × margin) where
      margin is the gap between the two largest true logits: more hard inputs, all of
      them inside train's range (the density ratio is bounded), P(y | x) unchanged.
    - ``prior``: test rows kept by label so that the class shares are train's reversed
      (sorted); P(x | y) unchanged.
    - ``conditional``: inputs drawn like train; where x2 > 0.5 - strength / 2 the true
      logits of two classes are swapped (P(y | x) changes on shared inputs).
    - ``unseen``: a share 0.3 × strength of test rows has x0 ~ N(5, 0.5), a region train
      shows with density below 1e-5; the same P(y | x) there.

    Parameters
    ----------
    mechanism : str
        One of :data:`MECHANISMS`.
    seed : int
    n_train, n_val, n_test, n_features, n_classes : int
    strength : float
        Scales the planted change (0: none of it).

    Returns
    -------
    Case
    """
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {list(MECHANISMS)}, got {mechanism!r}")
    if n_features < 6 or n_classes < 2:
        raise ValueError(f"need n_features >= 6 and n_classes >= 2, got {n_features}, {n_classes}")
    world = _World(np.random.default_rng([seed, 0]), n_features, n_classes)
    X_tr, y_tr = world.source(n_train, np.random.default_rng([seed, 1]))
    X_va, y_va = world.source(n_val, np.random.default_rng([seed, 2]))
    rng = np.random.default_rng([seed, 3, MECHANISMS.index(mechanism)])
    unseen = np.zeros(n_test, dtype=bool)
    draw = lambda m: world.source(m, rng)  # noqa: E731
    if mechanism == "none":
        X_te, y_te = world.source(n_test, rng)
    elif mechanism == "covariate":
        def prob(X, y):
            L = np.sort(world.logits(X), axis=1)
            return np.exp(-2.0 * strength * (L[:, -1] - L[:, -2]))
        X_te, y_te = _accept(rng, draw, prob, n_test)
    elif mechanism == "prior":
        shares = np.bincount(y_tr, minlength=n_classes) / n_train
        order = np.argsort(shares)
        target = shares.copy()
        target[order] = shares[order[::-1]]               # the largest share goes to the smallest
        target = (1 - strength) * shares + strength * target
        keep = target / np.maximum(shares, 1e-12)
        X_te, y_te = _accept(rng, draw, lambda X, y: keep[y] / keep.max(), n_test)
    elif mechanism == "conditional":
        X_te = rng.normal(size=(n_test, n_features))
        L = world.logits(X_te)
        region = X_te[:, 2] > 0.5 - strength / 2
        L[np.ix_(region, [0, 1])] = L[np.ix_(region, [1, 0])]
        y_te = world.labels(X_te, rng, L)
    else:                                                   # unseen
        unseen = rng.random(n_test) < 0.3 * strength
        X_te = rng.normal(size=(n_test, n_features))
        X_te[unseen, 0] = rng.normal(5.0, 0.5, unseen.sum())
        y_te = world.labels(X_te, rng)
    return Case(mechanism, X_tr, y_tr, X_va, y_va, X_te, y_te, unseen)
