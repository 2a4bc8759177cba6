"""Part D: why does a model trained on ``train`` fail on ``test``? (the shift diagnosis)

``diagnose(train, test, target, numeric, categorical)`` returns a frozen
:class:`Diagnosis`: a verdict (one or several *kinds* of shift), the suspect
features with their mechanism, the validation-vs-test gap with its confidence
interval, the per-feature evidence table, the class priors of both files and
every :class:`RuleOutcome` that was applied (fired or not). It writes nothing.

The kinds, and the statistic that decides each (every rule is a named entry of
:data:`RULES`; its description is generated from its fields):

- ``covariate_shift``: the inputs moved (marginal KS / Cramer's V after
  re-weighting train to test's class shares, adversarial validation AUC), the
  relationships hold. It names no suspect.
- ``prior_shift``: the class shares moved (chi-square + total variation; without
  test labels, the EM estimate of Saerens, Latinne & Decaestecker 2002 on the model's
  predictions calibrated on the validation rows by bias-corrected temperature scaling,
  BBSE beside it) and, with test labels, re-weighting the train-fitted proxy to test's
  shares recovers what the move cost it (its transfer gap as fitted against re-weighted;
  ``prior_reweighting``). Named beside ``covariate_shift`` when other inputs moved too
  (their P(x | y) changed). Without labels a move is claimed only when the calibrated model's own
  mean prediction moved too (a weak model's estimate can walk far from it), each
  informative feature's test values fit train's P(x_j | y) mixed at the estimate (a
  likelihood-ratio test) and the estimates of halves of the features agree with it
  (never passed when nothing carries enough information to check).
- ``relationship_broken`` / ``concept_shift``: the train-fitted model of
  P(y | x_j) for one feature (missing values excluded: missingness is its own
  check) loses log loss on test against the same model refitted within test by
  cross-validation, both as fitted and re-weighted to test's class shares. If
  the refit within test is no better than the class prior the relationship is
  gone (broken: shortcut, leak, ID-like column); otherwise it is a different
  one (concept shift).
- ``missingness``: whether a value is missing carries the label in train
  (total variation between P(y | missing) and P(y | present)) and no longer
  does in test (missingness vanished or its association dropped). Checked only
  when test would hold enough missing rows at train's rate (``missingness_testable``);
  otherwise the diagnosis says it cannot be checked.
- ``missing_in_test``: a column lacks its value in test rows where train had it (test
  missing rate at least 4 x train's, higher beyond a two-proportion band): the model
  meets missing values it never learnt to read. Label-free; with test labels the
  model's accuracy on the rows with and without the value is the evidence.
- ``unseen_levels``: a categorical's test rows carry levels train never shows (new
  ones, or all of them written differently), beyond the share expected by chance
  (Good-Turing); the unseen levels are shown next to train's. Never turned into
  missing values silently: the per-feature checks leave those rows out, the proxy
  gives them their own codes.
- ``interaction``: a proxy model (HistGradientBoosting) fitted on train loses
  log loss on test against a model refitted within test, no single feature's
  relationship changed, and a greedy leave-out of features closes that gap
  (with the missingness suspects, if any, already hot-decked, and the columns
  train never showed values of left out). Partners are added only while a gap
  is left after the greedy group, or when one alone closes the gap as fully.
- ``unexplained``: a gap beyond noise that no check accounts for (its size is
  reported).
- ``none``: no gap beyond noise and nothing shifted.

Nothing here is chosen on test: thresholds are fixed in :data:`RULES`, the
proxy model's settings are constants, and the test labels are used only to
measure. Helpers for Part D's mitigations: :func:`prior_correction`,
:func:`em_priors`, :func:`bbse_priors` (Part D's mitigations of each verdict kind are ``mitigations.MITIGATIONS``). :func:`make_shift_dataset` plants
each mechanism on a randomly drawn schema (tests and sweeps).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from scipy import optimize, stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from prep import (_balanced_accuracy, _check_features, _check_range, _folds, pps_score,
                  to_jsonable)
from rules import Rule

KINDS = ("none", "covariate_shift", "prior_shift", "relationship_broken", "concept_shift",
         "missingness", "interaction", "missing_in_test", "unseen_levels", "unexplained")
# What a suspect of each kind does, in words (singular; ``PLURAL_VERBS`` for several):
# the diagnosis's sentences (``explain``) and Part D's verdict sentence both use it.
KIND_TEXT = {"relationship_broken": "predicts the label in train but not in test",
             "concept_shift": "predicts the label differently in test than in train",
             "missingness": "carries the label in train through which values are missing, and not in test",
             "interaction": "takes part in a joint relationship with the label that holds in train and "
                            "not in test",
             "missing_in_test": "is missing in test rows where train had its value",
             "unseen_levels": "takes levels in test that train never shows"}
PLURAL_VERBS = {"predicts": "predict", "carries": "carry", "takes": "take",   # each text's first word
                "is": "are"}
# order in which the primary kind is chosen when several hold (the most actionable first)
_PRIMARY_ORDER = ("relationship_broken", "concept_shift", "missing_in_test", "unseen_levels",
                  "missingness", "interaction", "prior_shift", "unexplained", "covariate_shift",
                  "none")
_EPS = 1e-6            # probability floor for log loss
_Z = 2.576             # two-sided 99% normal quantile: every noise band is z * standard error


# -- rules ------------------------------------------------------------------

def _spec(name, statistic, threshold, noise, meaning):
    """A diagnosis rule (``rules.Rule``): what it measures, its threshold, how its noise
    band is formed and what it means when it fires."""
    return Rule(name, threshold, meaning, statistic=statistic, noise=noise)


RULES = {r.name: r for r in (
    _spec("gap_outside_noise", "validation accuracy - test accuracy", 0.0,
             "z=2.58 x binomial standard error of the difference",
             "test accuracy is lower than validation accuracy beyond sampling noise"),
    _spec("model_transfer_gap",
             "log loss on test of the train-fitted proxy (the smaller of: as fitted, re-weighted "
             "to test's class shares) - log loss of the proxy refitted within test by CV", 0.01,
             "z=2.58 x sqrt(standard error of the per-row loss difference^2 + variance of the "
             "gap over 3 proxy seeds (train-fitted proxy and refit folds); the seeds are fitted "
             "when the one-seed gap is past its limit but below 3 x it, the gap is then their "
             "mean)",
             "a model of all features transfers worse than one learnt within test; without it "
             "no feature is blamed for a relationship that changed but still exists "
             "(concept_shift: a single feature's P(y | x_j) also moves when other, correlated "
             "inputs shift)"),
    _spec("conditional_shift",
             "min(log-loss gap as fitted, log-loss gap re-weighted to test's class shares) of "
             "the train-fitted P(y | feature) against its refit within test", 0.01,
             "z=2.58 x standard error of the per-row loss difference (threshold also >= 10% "
             "of the feature's information in train)",
             "the feature's relationship with the label changed"),
    _spec("unique_in_train",
             "out-of-fold log loss in train of the proxy without the feature - with it (3 "
             "folds, at most 6,000 rows; checked for a relationship_broken suspect when "
             "model_transfer_gap did not fire)", 0.005,
             "z=2.58 x standard error of the per-row difference",
             "the feature told the label in train beyond what the other features tell; else "
             "its lost information within test is that of a correlated, shifted input"),
    _spec("leave_out_costs",
             "log loss on test of the train-fitted proxy without the feature - with it "
             "(checked for a relationship_broken suspect when model_transfer_gap did not fire)",
             0.0, "threshold only (any cost keeps the feature)",
             "the train-fitted model is worse on test without the feature: its relationship "
             "still serves test, so it is not blamed (leaving it out would cost accuracy)"),
    _spec("suspect_closure",
             "transfer gap closed by leaving the suspect out as well as those blamed before it "
             "(nats; conditional_shift suspects taken greedily by closure)", 0.01,
             "closure must exceed z=2.58 x standard error of the remaining gap; between that "
             "limit and 3 x it, the closure is the mean over 3 proxy seeds and the band adds "
             "its variance over them (as model_transfer_gap's)",
             "the suspect accounts for a part of the gap; the suspects left over when none "
             "closes more are explained by the blamed ones (their P(y | x_j) moved through "
             "them); when not even the first closes the gap, every suspect stays blamed"),
    _spec("relationship_gone",
             "information of the feature about the label within test (prior log loss - CV "
             "log loss) / the same within train", 0.25,
             "z=2.58 x standard error of the within-test information",
             "the feature no longer predicts the label in test (broken), else it predicts it "
             "differently (concept shift)"),
    _spec("missingness_signal",
             "total variation between P(y | missing) and P(y | present) in train", 0.10,
             "chi-square p < 0.01 and at least 10 missing rows",
             "whether the value is missing carries the label in train"),
    _spec("missingness_testable",
             "missing rows test would hold at train's missing rate (train rate x test rows; "
             "checked for a missingness_signal column)", 10.0,
             "threshold only (a count of rows)",
             "test has enough rows to tell whether train's missingness signal holds there; "
             "below it the check cannot be made (said so, never read as 'the signal is gone')"),
    _spec("missingness_gone",
             "drop of that total variation from train to test (test TV = 0 when missingness "
             "vanished: test rate < train rate / 4)", 0.5,
             "threshold is a share of the train TV; band z=2.58 x parametric-bootstrap sd",
             "the missingness signal of train is not there in test"),
    _spec("missing_in_test",
             "test missing rate - train missing rate of a column whose test rate is at least "
             "4 x train's (values missing in test where train had them)", 0.05,
             "z=2.58 x standard error of the difference of two proportions; one-sided "
             "two-proportion p < 0.01 (Bonferroni over features)",
             "test lacks values that train (almost) always had: the model meets missing values "
             "it never learnt to read"),
    _spec("unseen_levels",
             "share of a categorical's test rows (with a value) at a level that never occurs in "
             "train - the share expected by chance (Good-Turing: train levels seen once / train "
             "rows)", 0.05,
             "z=2.58 x binomial standard error at the expected share and that share's own; "
             "binomial p < 0.01 (Bonferroni over features)",
             "test rows carry levels that train never shows (new ones, or the same written "
             "differently): the model cannot read them"),
    _spec("prior_shift", "total variation of the class shares, train vs test (without test "
             "labels: EM on the calibrated model's test predictions)", 0.05,
             "99th percentile of the TV between two samples of these sizes from one "
             "distribution; chi-square p < 0.01 (without labels: + the 99th percentile of the "
             "EM estimate's spread over bootstraps of test and validation rows)",
             "the class shares moved"),
    _spec("predictions_moved",
             "total variation between the mean calibrated prediction on test and the one "
             "train's class shares imply (the validation rows' mean per class, weighted by "
             "train's shares; no test labels; calibration: bias-corrected temperature scaling "
             "on validation)", 0.0,
             "99th percentile of that TV when nothing moved (normal approximation with the "
             "covariances of the test mean, of the per-class validation means and of train's "
             "shares)",
             "the model's own predictions moved; without it an EM estimate that walks away "
             "from train's shares is a weak model's amplified noise, not a prior shift"),
    _spec("em_consistent",
             "per informative feature: likelihood ratio of its test cells at its own EM class "
             "shares against the model's (only the directions of the shares it can tell "
             "count); per calibrated proxy of half the features: total variation between its "
             "EM shares and the model's; the check furthest past its limit is reported (no "
             "test labels)", 0.0,
             "feature: 99% quantile (Bonferroni over the features) of a scaled chi-square "
             "matched to the ratio's simulated null (train's class counts redrawn per cell, "
             "test's cells drawn at the model's shares, those shares moved by their bootstrap "
             "deviations); half: 1.5 x 99th percentile of its bootstrap EM spread + the "
             "model's band (features and halves with >= 0.1 nats of information only; none: "
             "cannot be checked, does not fire)",
             "every feature agrees on the estimated test class shares, as a prior shift "
             "implies"),
    _spec("prior_reweighting",
             "log loss on test of the train-fitted proxy as fitted - re-weighted to test's "
             "class shares (labelled test; the transfer gap each way against the refit within "
             "test is in the evidence)", 0.01,
             "z=2.58 x standard error of the per-row difference",
             "re-weighting the model to test's class shares recovers what the shares' move "
             "cost it: a prior shift, named whether or not other inputs moved too"),
    _spec("class_conditional_holds",
             "number of non-suspect features whose P(x | y) shifted (marginal_shift)", 0.0,
             "as marginal_shift",
             "the class shares explain the input shift, P(x | y) holds (else a covariate "
             "shift is named beside any prior shift)"),
    _spec("marginal_shift",
             "KS statistic (numeric) or Cramer's V (categorical) of P(x | y), the largest over "
             "the classes (labelled test), or of P(x) with train re-weighted to the EM class "
             "shares (unlabelled)", 0.10,
             "p < 0.01 (Bonferroni over classes and features; effective sample sizes)",
             "the feature's distribution moved"),
    _spec("adversarial_auc",
             "out-of-fold ROC AUC of a train-vs-test classifier, missing values and levels "
             "train never shows hidden", 0.60,
             "threshold only (AUC 0.5 = indistinguishable)",
             "the inputs' joint distribution moved"),
    _spec("leave_out_closure",
             "share of the remaining model transfer gap closed by leaving a feature out (only "
             "when no conditional_shift suspect is blamed)", 0.5,
             "closure must also exceed the gap's noise band",
             "the feature takes part in a relationship that exists in train and not in test"),
    _spec("unexplained_gap",
             "model transfer gap left after removing every suspect", 0.01,
             "z=2.58 x standard error of the per-row loss difference",
             "part of the gap is accounted for by no check"),
)}


@dataclass(frozen=True)
class RuleOutcome:
    """One application of a rule of :data:`RULES`: its value, band and whether it fired."""

    name: str
    subject: str | None
    statistic: str
    value: float
    threshold: float
    noise_band: float
    fired: bool

    @property
    def description(self):
        spec = RULES[self.name]
        where = f" for {self.subject}" if self.subject is not None else ""
        verb = "fired" if self.fired else "did not fire"
        return (f"rule {self.name}{where} {verb}: {self.statistic} = {_fmt(self.value)} against "
                f"threshold {_fmt(self.threshold)} and noise band {_fmt(self.noise_band)} "
                f"({spec.noise}); when it fires: {spec.description}.")


def _fmt(x):
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.4g}"


def _rule(name, subject, value, threshold, band, fired):
    """A :class:`RuleOutcome` of the rule ``name`` (its statistic text comes from :data:`RULES`)."""
    return RuleOutcome(name, subject, RULES[name].statistic, float(value), float(threshold),
                float(band), bool(fired))


# -- result types -----------------------------------------------------------

@dataclass(frozen=True)
class Suspect:
    """A feature blamed for the gap, its mechanism and the statistic that fired."""

    feature: str
    kind: str
    rule: str
    statistic: float
    threshold: float


@dataclass(frozen=True)
class Verdict:
    kinds: tuple
    kind: str


@dataclass(frozen=True)
class Gap:
    """Validation vs test performance of the proxy model (or the user's model)."""

    val_accuracy: float
    test_accuracy: float
    accuracy_gap: float
    accuracy_ci: tuple
    val_log_loss: float
    test_log_loss: float
    log_loss_gap: float
    log_loss_ci: tuple
    outside_noise: bool
    transfer_gap: float           # proxy vs refit within test (min of as fitted, re-weighted)
    transfer_band: float
    closed_by_suspects: float     # nats of transfer gap closed by removing the suspects
    residual: float               # transfer gap left after removing the suspects
    transfer_fitted: float = float("nan")      # the transfer gap as fitted
    transfer_reweighted: float = float("nan")  # ... re-weighted to test's class shares
    transfer_seed_sd: float = float("nan")     # sd of the transfer gap over the proxy's seeds
    #                                            (nan: not measured, the gap was far from its limit)


@dataclass(frozen=True)
class Priors:
    classes: tuple
    train: tuple
    test: tuple
    source: str                   # "labels" or "em" (estimated from predictions)
    predicted: tuple              # mean predicted class probabilities on test
    chi2_p: float
    total_variation: float
    band: float
    # without test labels: the calibrated model's mean prediction on validation and on test
    # (the plain estimate the EM estimate is compared with) and the BBSE estimate
    calibrated_val: tuple = ()
    calibrated_test: tuple = ()
    bbse: tuple = ()


@dataclass(frozen=True)
class NewValues:
    """A column whose test rows carry what train never showed: values missing where train
    had them (``missing_in_test``) or levels train never shows (``unseen_levels``)."""

    feature: str
    kind: str
    share_train: float     # train's missing rate / the unseen share expected by chance
    share_test: float      # test's missing rate / share of test rows (with a value) at an unseen level
    band: float            # noise band of the difference
    p: float
    rows: int              # test rows flagged
    acc_known: float       # the model's test accuracy on rows with a value train knows (NaN unlabelled)
    acc_flagged: float     # ... on the flagged rows
    acc_band: float        # z=2.58 x standard error of their difference
    unseen: tuple = ()     # ((level, test rows), ...) most frequent first, at most 8 (unseen_levels)
    train_levels: tuple = ()   # ((level, train rows), ...) most frequent first, at most 8
    matched: int = 0       # unseen levels equal to a train level once case, spaces and punctuation go


@dataclass(frozen=True)
class Diagnosis:
    """Everything :func:`diagnose` found (frozen; see :meth:`to_dict` for JSON).

    Attributes
    ----------
    verdict : Verdict
        ``kinds`` (tuple of :data:`KINDS`, ``("none",)`` when nothing holds) and ``kind``
        (the primary one, first of ``kinds`` in the order of ``_PRIMARY_ORDER``).
    suspects : tuple of Suspect
        ``feature``, ``kind`` (its mechanism), ``rule`` and ``statistic``/``threshold`` of
        the rule that fired, in column order.
    suspect_features : tuple of str
        Raw column names of the suspects, sorted.
    shifted_features : tuple of str
        Columns whose P(x | y) (labelled) or P(x) (unlabelled) moved, sorted.
    gap : Gap or None
        Validation vs test accuracy and log loss with 99% intervals, and the model
        transfer gap (nats), its band, how much removing the suspects closes and the
        residual. None without test labels.
    priors : Priors
        Class vocabulary, train and test shares (labels or EM), mean predicted shares on
        test, chi-square p, total variation and its noise band.
    evidence : DataFrame of shape (n_features, n_columns)
        One row per feature: marginal / class-conditional shift, conditional-shift gaps,
        information in train and within test, pps (descriptive), missingness statistics
        and adversarial permutation AUC drops.
    rules : tuple of RuleOutcome
        Every rule applied, fired or not, with ``description``.
    adversarial : dict
        ``auc_no_missing`` (all features), ``auc_without_suspects`` and ``threshold``.
    labelled : bool
    skipped : tuple of str
        The checks that needed test labels (empty when test has them).
    seconds : float
        Wall time of :func:`diagnose`.
    proxies : tuple of str
        Columns whose own P(y | x_j) changed (``conditional_shift``) but which close no
        more of the model's transfer gap than noise once the suspects are left out
        (``suspect_closure``): their change comes through the suspects. Not blamed.
    new_values : tuple of NewValues
        The ``missing_in_test`` and ``unseen_levels`` suspects: rates, the model's test
        accuracy on the rows with and without a value train knows (labelled test), and the
        unseen levels next to train's.
    """

    verdict: Verdict
    suspects: tuple
    suspect_features: tuple
    shifted_features: tuple
    gap: Gap | None
    priors: Priors
    evidence: pd.DataFrame = field(repr=False)
    rules: tuple = field(repr=False)
    adversarial: dict = field(repr=False)
    labelled: bool = True
    skipped: tuple = ()
    seconds: float = float("nan")
    proxies: tuple = ()
    new_values: tuple = ()

    def to_dict(self):
        """JSON-able dict (numbers as Python scalars, NaN as None)."""
        out = {"verdict": {"kind": self.verdict.kind, "kinds": list(self.verdict.kinds),
                           "suspect_features": list(self.suspect_features),
                           "suspects": [s.__dict__ for s in self.suspects]},
               "shifted_features": list(self.shifted_features),
               "gap": None if self.gap is None else self.gap.__dict__,
               "priors": self.priors.__dict__, "labelled": self.labelled,
               "skipped": list(self.skipped), "adversarial": self.adversarial,
               "rules": [dict(r.__dict__, description=r.description) for r in self.rules],
               "evidence": self.evidence, "seconds": self.seconds,
               "proxies": list(self.proxies),
               "new_values": [v.__dict__ for v in self.new_values]}
        return to_jsonable(out)


# -- small numerics ---------------------------------------------------------

def prior_correction(proba, train_priors, test_priors):
    """Bayes re-weighting of class probabilities to new class shares.

    p'(y | x) = p(y | x) * pi_test(y) / pi_train(y), renormalised per row; valid when
    P(x | y) is the same in both files (prior shift).

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
    train_priors, test_priors : ndarray of shape (n_classes,)

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
    """
    p = np.asarray(proba, dtype=np.float64)
    a = np.asarray(train_priors, dtype=np.float64)
    b = np.asarray(test_priors, dtype=np.float64)
    if p.ndim != 2 or a.shape != (p.shape[1],) or b.shape != (p.shape[1],):
        raise ValueError(f"proba must be (n, k) and both priors (k,); got {p.shape}, {a.shape}, "
                         f"{b.shape}")
    if (a <= 0).any() or not np.isfinite(p).all():
        raise ValueError("train_priors must be > 0 and proba finite; drop classes absent "
                         "from train first")
    w = p * (b / a)
    s = w.sum(axis=1, keepdims=True)
    return np.where(s > 0, w / np.where(s > 0, s, 1.0), 1.0 / p.shape[1])


def em_priors(proba, train_priors, tol=1e-8, max_iter=1000, weights=None):
    """Test class shares estimated from unlabelled predictions (EM of Saerens et al. 2002).

    Iterates pi <- weighted mean_i prior_correction(proba, train_priors, pi)_i until it
    moves by less than ``tol``.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
        A calibrated model's probabilities on the unlabelled rows.
    train_priors : ndarray of shape (n_classes,)
    weights : ndarray of shape (n_samples,), optional
        Row counts (e.g. the number of test rows sharing one predicted row).

    Returns
    -------
    ndarray of shape (n_classes,)
    """
    p = np.asarray(proba, dtype=np.float64)
    a = np.asarray(train_priors, dtype=np.float64)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    if p.ndim != 2 or a.shape != (p.shape[1],) or w.shape != (len(p),):
        raise ValueError(f"proba must be (n, k), train_priors (k,) and weights (n,); got "
                         f"{p.shape}, {a.shape}, {w.shape}")
    if (a <= 0).any() or not np.isfinite(p).all():
        raise ValueError("train_priors must be > 0 and proba finite; drop classes absent "
                         "from train first")
    w = w / w.sum()
    R = p / a                                                  # (n, k): p(y | x) / pi_train

    def step(pi):                  # one EM step: the mean of the re-weighted posteriors
        num = R * pi
        s = num.sum(1, keepdims=True)
        return w @ np.where(s > 0, num / np.where(s > 0, s, 1.0), 1.0 / len(pi))

    pi = a.copy()
    for _ in range(int(max_iter)):
        # SQUAREM (Varadhan and Roland 2008): two EM steps, then an extrapolated one,
        # kept only when it stays inside the simplex; the fixed point is EM's
        p1 = step(pi)
        p2 = step(p1)
        r, v = p1 - pi, p2 - 2 * p1 + pi
        nv = float(np.sqrt((v * v).sum()))
        new = p2
        if nv > 0:
            alpha = -float(np.sqrt((r * r).sum())) / nv
            cand = pi - 2 * alpha * r + alpha * alpha * v
            if (cand > 0).all():
                new = step(cand / cand.sum())
        if np.abs(new - pi).max() < tol:
            return new
        pi = new
    return pi


def _calibrator(P, y, k):
    """Bias-corrected temperature scaling fitted on labelled rows (Alexandari, Kundaje and
    Shrikumar 2020, the calibration under which EM's label-shift estimate is hard to beat):
    P -> softmax(T log P + b), (T, b) by maximum likelihood. Returns the map, a function
    of an (n, k) array of probabilities."""
    L = np.log(np.clip(P, _EPS, 1.0))                        # (n, k)
    Y = np.eye(k)[y]

    def nll(theta):                                            # theta = (log T, b)
        T = math.exp(min(theta[0], 5.0))
        Z = T * L + theta[1:]
        Z = Z - Z.max(1, keepdims=True)
        lse = np.log(np.exp(Z).sum(1))
        G = (np.exp(Z - lse[:, None]) - Y) / len(y)            # d nll / d Z
        return float(np.mean(lse - (Z * Y).sum(1))), np.r_[T * (G * L).sum(), G.sum(0)]

    res = optimize.minimize(nll, np.zeros(k + 1), jac=True, method="BFGS",
                            options={"maxiter": 200})
    T, b = math.exp(min(res.x[0], 5.0)), np.clip(res.x[1:], -30.0, 30.0)

    def apply(Q):
        Z = T * np.log(np.clip(Q, _EPS, 1.0)) + b
        Z = np.exp(Z - Z.max(1, keepdims=True))
        return Z / Z.sum(1, keepdims=True)
    return apply


def bbse_priors(P_val, y_val, P_test, k):
    """Black-box shift estimate of test's class shares (Lipton, Wang and Smola 2018, with
    soft predictions): solve C w = q, C[i, j] = mean P_val[i] over validation rows of class
    j, q = mean P_test; the shares are w clipped at 0 and normalised.

    Parameters
    ----------
    P_val : ndarray of shape (n_val, k)
    y_val : ndarray of shape (n_val,)
    P_test : ndarray of shape (n_test, k)
    k : int

    Returns
    -------
    ndarray of shape (k,)
    """
    C = np.column_stack([P_val[y_val == j].mean(0) if (y_val == j).any() else np.eye(k)[j]
                         for j in range(k)])               # (k, k): column j = class j
    w = np.linalg.lstsq(C, P_test.mean(0), rcond=None)[0]
    w = np.clip(w, 0.0, None)
    return w / w.sum() if w.sum() > 0 else np.full(k, 1.0 / k)


def _predictions_moved(C_val, y_val, C_te, pi_tr, rng, sims=2000):
    """Did the calibrated model's mean prediction on test move from the one train's class
    shares imply? The expected mean prediction under shares pi is M pi, M[:, j] the mean
    calibrated prediction over the validation rows of class j (so the validation rows are
    re-weighted to train's shares, not read at their own sampled shares). Returns (TV of
    the test mean from M pi_train, 99th percentile of that TV when nothing moved: normal
    approximation with the covariances of the test mean, of M and of train's shares)."""
    k = len(pi_tr)
    M = np.zeros((k, k))
    S = np.cov(C_te.T, ddof=1).reshape(k, k) / len(C_te)
    for j in range(k):
        rows = C_val[y_val == j]
        if len(rows):
            M[:, j] = rows.mean(0)
        if len(rows) > 1:
            S = S + pi_tr[j] ** 2 * np.cov(rows.T, ddof=1).reshape(k, k) / len(rows)
    S = S + M @ (np.diag(pi_tr) - np.outer(pi_tr, pi_tr)) @ M.T / len(y_val)
    D = rng.multivariate_normal(np.zeros(k), S, size=sims, method="eigh")
    return _tv(C_te.mean(0), M @ pi_tr), float(np.quantile(0.5 * np.abs(D).sum(1), 0.99))


def _ll_rows(P, y):
    """Per-row log loss -log P[i, y_i], shape (n,)."""
    return -np.log(np.clip(P[np.arange(len(y)), y], _EPS, 1.0))


def _shares(y, k):
    return np.bincount(y, minlength=k).astype(np.float64) / max(len(y), 1)


def _gap_stat(ll_a, ll_b):
    """Mean of the paired per-row difference a - b and its z * standard error."""
    d = ll_a - ll_b
    se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("inf")
    return float(d.mean()), float(_Z * se)


def _tv(p, q):
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


# -- inputs -----------------------------------------------------------------

def _classes(train_y, test_y):
    """Class vocabulary (train's labels, sorted when they sort) and int codes of both."""
    vals = list(pd.unique(train_y.to_numpy(dtype=object)))
    try:
        vals = sorted(vals)
    except TypeError:
        vals = sorted(vals, key=repr)
    idx = pd.Index(vals, dtype=object)
    y_tr = idx.get_indexer(train_y.to_numpy(dtype=object))
    y_te = None
    if test_y is not None:
        y_te = idx.get_indexer(test_y.to_numpy(dtype=object))
        if (y_te < 0).any():
            new = sorted({repr(v) for v in test_y[y_te < 0].unique()})
            raise ValueError(f"test has label(s) {new} that never occur in train; a model of "
                             f"train cannot predict them: drop those test rows first")
    if len(vals) < 2:
        raise ValueError(f"train's label has a single value {vals!r}; need >= 2 classes")
    return tuple(vals), y_tr.astype(np.int64), None if y_te is None else y_te.astype(np.int64)


_MAX_CAT_LEVELS = 200  # train levels of a categorical with their own code (rarer ones share one)
_MAX_CAT_CODE = 254    # HistGradientBoosting's largest category code (max_bins - 1)


def _design(train, test, numeric, categorical):
    """Proxy-model matrices (n, d): numerics as floats with NaN, categoricals as codes:
    train's levels (most frequent first, at most 200; rarer train levels share one code),
    then the test levels train never shows, each with its own code (most frequent first,
    up to 254; a train-fitted proxy reads them as missing, a refit within test learns
    them). Also ``unseen`` (n_te, d) bool: the test row's level never occurs in train.
    A level is never turned into a missing value."""
    Xtr, Xte = [], []
    unseen = np.zeros((len(test), len(numeric) + len(categorical)), dtype=bool)
    for c in numeric:
        Xtr.append(pd.to_numeric(train[c], errors="coerce").to_numpy(dtype=np.float64))
        Xte.append(pd.to_numeric(test[c], errors="coerce").to_numpy(dtype=np.float64))
    for i, c in enumerate(categorical):
        a, b = train[c].astype(object), test[c].astype(object)
        counts = a.value_counts(dropna=True)
        known = pd.Index(counts.index, dtype=object)
        top = pd.Index(known[:_MAX_CAT_LEVELS], dtype=object)
        is_new = (known.get_indexer(b) < 0) & b.notna().to_numpy()
        new = pd.Index(b[is_new].value_counts().index[:_MAX_CAT_CODE - len(top) - 1],
                       dtype=object)
        unseen[:, len(numeric) + i] = is_new
        for X, v in ((Xtr, a), (Xte, b)):
            pos, newpos = top.get_indexer(v), new.get_indexer(v)
            seen = known.get_indexer(v) >= 0
            code = np.where(pos >= 0, pos, np.where(seen, len(top), np.where(
                newpos >= 0, len(top) + 1 + newpos, _MAX_CAT_CODE)))
            X.append(np.where(v.isna().to_numpy(), np.nan, code).astype(np.float64))
    return np.column_stack(Xtr), np.column_stack(Xte), unseen


# -- covariate shift: marginal and class-conditional tests, adversarial validation --

def _weighted_ks(a, wa, b):
    """KS statistic between the weighted ECDF of a and the ECDF of b, and its p-value
    with the effective size of a."""
    oa = np.argsort(a, kind="stable")
    a, wa = a[oa], wa[oa]
    b = np.sort(b)
    grid = np.union1d(a, b)
    Fa = np.cumsum(wa)[np.searchsorted(a, grid, side="right") - 1] / wa.sum()
    Fa = np.where(np.searchsorted(a, grid, side="right") == 0, 0.0, Fa)
    Fb = np.searchsorted(b, grid, side="right") / len(b)
    d = float(np.abs(Fa - Fb).max())
    n_eff = wa.sum() ** 2 / (wa ** 2).sum()
    m = len(b)
    p = float(stats.kstwobign.sf(d * math.sqrt(n_eff * m / (n_eff + m))))
    return d, p


def _marginal_shift(train, test, numeric, categorical, w, thr):
    """Per-feature marginal shift, train rows weighted by ``w``: DataFrame indexed by feature."""
    rows = []
    for c in numeric:
        a = pd.to_numeric(train[c], errors="coerce").to_numpy(dtype=np.float64)
        b = pd.to_numeric(test[c], errors="coerce").to_numpy(dtype=np.float64)
        ok = ~np.isnan(a)
        b = b[~np.isnan(b)]
        if ok.sum() and len(b):
            d, p = _weighted_ks(a[ok], w[ok], b)
        else:
            d, p = float("nan"), float("nan")
        rows.append((c, "numeric", "ks", d, p))
    for c in categorical:
        a = train[c].astype(object)
        b = test[c].astype(object)
        ok = a.notna().to_numpy()
        levels = pd.Index(pd.unique(pd.concat([a[ok], b.dropna()]).to_numpy(dtype=object)))
        ca = levels.get_indexer(a[ok].to_numpy(dtype=object))
        cb = levels.get_indexer(b.dropna().to_numpy(dtype=object))
        wa = w[ok]
        if len(levels) >= 2 and len(ca) and len(cb):
            n_eff = wa.sum() ** 2 / (wa ** 2).sum()
            ta = np.bincount(ca, weights=wa, minlength=len(levels)) / wa.sum() * n_eff
            tb = np.bincount(cb, minlength=len(levels)).astype(np.float64)
            ct = np.vstack([ta, tb])
            ct = ct[:, ct.sum(axis=0) > 0]
            chi2, p, _, _ = stats.chi2_contingency(ct, correction=False)
            v = math.sqrt(chi2 / ct.sum())
        else:
            v, p = 0.0, 1.0
        rows.append((c, "categorical", "cramers_v", float(v), float(p)))
    out = pd.DataFrame(rows, columns=["feature", "kind", "shift_test", "shift_effect",
                                      "shift_p"]).set_index("feature")
    out["shift_threshold"] = thr
    return _flag_shifted(out, thr)


def _flag_shifted(out, thr, alpha=0.01):
    """``shifted``: effect above ``thr`` and p below ``alpha`` over the number of features."""
    out["shifted"] = (out["shift_effect"] > thr) & (out["shift_p"] * len(out) < alpha)
    return out


def _class_conditional_shift(train, test, y_tr, y_te, numeric, categorical, k, thr,
                             min_rows=30):
    """Shift of P(x_j | y): the largest per-class effect (KS or Cramer's V) over the classes
    with >= ``min_rows`` rows in both files, its p-value Bonferroni-corrected by the number
    of classes compared. Same columns as :func:`_marginal_shift`."""
    parts = []
    for c in range(k):
        a, b = y_tr == c, y_te == c
        if a.sum() >= min_rows and b.sum() >= min_rows:
            parts.append(_marginal_shift(train[a], test[b], numeric, categorical,
                                         np.ones(int(a.sum())), thr))
    if not parts:
        return _marginal_shift(train, test, numeric, categorical, np.ones(len(y_tr)), thr)
    eff = pd.concat([p["shift_effect"] for p in parts], axis=1).max(axis=1)
    pv = (pd.concat([p["shift_p"] for p in parts], axis=1).min(axis=1) * len(parts)).clip(
        upper=1.0)
    out = parts[0].copy()
    out["shift_effect"], out["shift_p"] = eff, pv
    return _flag_shifted(out, thr)


def _hot_deck(X, rng):
    """Fill each NaN with a random observed value of its column: missingness carries no signal."""
    X = X.copy()
    for j in range(X.shape[1]):
        nan = np.isnan(X[:, j])
        if nan.any() and (~nan).any():
            X[nan, j] = rng.choice(X[~nan, j], size=int(nan.sum()))
    return X


# Cells (rows x columns) of the permuted copies ``_adversarial`` scores in one
# ``predict_proba`` call: a wide file's columns in a few calls, not one call per column.
ADVERSARIAL_BATCH_CELLS = 1 << 22


def _adversarial(Xtr, Xte, cat_mask, seed, max_rows=3000, cv=3, max_iter=40, drops=True):
    """Train-vs-test AUC with missingness hidden (hot deck) and, with ``drops``, the
    per-feature permutation AUC drops: (auc, drops of shape (d,), zeros without).

    Each column's permuted copy of a fold is scored on its own (its own permutation,
    drawn in column order, and its own AUC); the copies of several columns go through
    the model in one call (``ADVERSARIAL_BATCH_CELLS``), which gives each row the
    probability a call of its own would."""
    rng = np.random.default_rng(seed)
    n = min(len(Xtr), len(Xte), max_rows)
    X = np.vstack([Xtr[rng.choice(len(Xtr), n, replace=False)],
                   Xte[rng.choice(len(Xte), n, replace=False)]])
    X = _hot_deck(X, rng)
    z = np.r_[np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)]
    oof, drop = np.zeros(2 * n), np.zeros(X.shape[1])
    for tr, te in StratifiedKFold(cv, shuffle=True, random_state=seed).split(X, z):
        m = HistGradientBoostingClassifier(
            max_iter=max_iter, max_leaf_nodes=15, early_stopping=False, random_state=seed,
            categorical_features=cat_mask if cat_mask.any() else None).fit(X[tr], z[tr])
        oof[te] = m.predict_proba(X[te])[:, 1]
        auc = roc_auc_score(z[te], oof[te])
        Xte_fold, d = X[te], X.shape[1] if drops else 0
        step = max(1, ADVERSARIAL_BATCH_CELLS // (len(te) * X.shape[1]))
        for lo in range(0, d, step):
            cols = range(lo, min(d, lo + step))
            Xp = np.tile(Xte_fold, (len(cols), 1))           # one permuted copy per column
            for b, j in enumerate(cols):
                Xp[b * len(te):(b + 1) * len(te), j] = Xte_fold[rng.permutation(len(te)), j]
            p = m.predict_proba(Xp)[:, 1].reshape(len(cols), len(te))
            for b, j in enumerate(cols):
                drop[j] += (auc - roc_auc_score(z[te], p[b])) / cv
    return float(roc_auc_score(z, oof)), drop


# -- one feature: P(y | x_j) as fitted on train vs refitted within test ------

_PSEUDO = 10.0   # m-estimate pseudo-counts pulling each cell towards the fold's prior


class _Cells:
    """P(y | x) of one column as smoothed class counts per cell (tree leaf or level)."""

    def __init__(self, kind, k, seed):
        self.kind, self.k, self.seed = kind, k, seed

    def _cell(self, v):
        if self.kind == "categorical":
            return self.index.get_indexer(v)                    # unseen level -> -1
        return self.tree.apply(v[:, None].astype(np.float32))

    def fit(self, v, y):
        self.prior = _shares(y, self.k)
        if self.kind == "categorical":
            self.index = pd.Index(np.unique(v))
        else:
            leaf = max(20, len(y) // 100)
            self.tree = DecisionTreeClassifier(max_leaf_nodes=16, min_samples_leaf=leaf,
                                               random_state=self.seed).fit(v[:, None], y)
        cells = self._cell(v)
        self.ncell = int(cells.max()) + 1
        counts = np.zeros((self.ncell, self.k))
        np.add.at(counts, (cells, y), 1.0)
        self.table = (counts + _PSEUDO * self.prior) / (counts.sum(1, keepdims=True) + _PSEUDO)
        return self

    def predict_proba(self, v):
        return self.predict_proba_cells(self._cell(v))

    def predict_proba_cells(self, cells):
        out = np.tile(self.prior, (len(cells), 1))
        ok = cells >= 0
        out[ok] = self.table[cells[ok]]
        return out


def _cap(tr, max_fit, seed):
    """At most ``max_fit`` of the fold's training positions ``tr`` (a random subset, sorted):
    a refit within test learns from no more rows than the train-fitted model it is compared
    with, so a small train file is not read as a shift (a learning curve is not a gap)."""
    if max_fit is None or len(tr) <= max_fit:
        return tr
    return np.sort(np.random.default_rng([seed, len(tr)]).choice(tr, max_fit, replace=False))


def _cv_rows(v, y, kind, k, seed, cv=5, max_fit=None):
    """Out-of-fold per-row log loss of the cell model and of the fold prior, and the
    out-of-fold argmax: three arrays of shape (n,)."""
    ll, ll0, pred = np.empty(len(y)), np.empty(len(y)), np.empty(len(y), dtype=np.int64)
    for tr, te in _folds(y, cv, seed).split(y, y):
        tr = _cap(tr, max_fit, seed)
        m = _Cells(kind, k, seed).fit(v[tr], y[tr])
        P = m.predict_proba(v[te])
        ll[te], pred[te] = _ll_rows(P, y[te]), P.argmax(1)
        ll0[te] = _ll_rows(np.tile(m.prior, (len(te), 1)), y[te])
    return ll, ll0, pred


def _conditional(name, kind, v_tr, y_tr, v_te, y_te, k, seed, max_rows, th):
    """Per-feature conditional-shift statistics (missing rows excluded) and its rules."""
    rng = np.random.default_rng(seed)
    a, b = ~np.isnan(v_tr), ~np.isnan(v_te)
    v_tr, y_tr, v_te, y_te = v_tr[a], y_tr[a], v_te[b], y_te[b]
    row = {"feature": name}
    if len(y_tr) < 50 or len(y_te) < 50:
        return row, []
    m = _Cells(kind, k, seed).fit(v_tr, y_tr)
    P = m.predict_proba(v_te)                                   # (n_te, k)
    pi_te = _shares(y_te, k)
    P_rw = prior_correction(P, m.prior, np.clip(pi_te, _EPS, None))
    ll_cv, ll0_cv, pred_te = _cv_rows(v_te, y_te, kind, k, seed, max_fit=len(y_tr))
    sub = rng.choice(len(y_tr), min(len(y_tr), max_rows), replace=False)
    ll_tr, ll0_tr, pred_tr = _cv_rows(v_tr[sub], y_tr[sub], kind, k, seed)
    info_tr = float(np.mean(ll0_tr - ll_tr))
    info_te, info_band = _gap_stat(ll0_cv, ll_cv)
    g_fit, b_fit = _gap_stat(_ll_rows(P, y_te), ll_cv)
    g_rw, b_rw = _gap_stat(_ll_rows(P_rw, y_te), ll_cv)
    thr = max(th["conditional_shift"], 0.1 * max(info_tr, 0.0))
    fired = g_fit > max(thr, b_fit) and g_rw > max(thr, b_rw)
    stat = min(g_fit, g_rw)
    ratio = info_te / info_tr if info_tr > 0 else float("nan")
    gone = bool(fired and info_te <= max(th["relationship_gone"] * info_tr, info_band))
    row.update(info_train=info_tr, info_test=info_te, gap_fitted=g_fit, gap_reweighted=g_rw,
               gap_band=max(b_fit, b_rw), gap_threshold=thr,
               pps_train=pps_score(_balanced_accuracy(y_tr[sub], pred_tr), k),
               pps_test=pps_score(_balanced_accuracy(y_te, pred_te), k),
               conditional_shift=bool(fired), relationship_gone=gone)
    rules = [_rule("conditional_shift", name, stat, thr, max(b_fit, b_rw), fired)]
    if fired:
        rules.append(_rule("relationship_gone", name, ratio, th["relationship_gone"],
                           info_band / info_tr if info_tr > 0 else float("nan"), gone))
    return row, rules


# -- missingness as its own pseudo-feature ------------------------------------

def _tv_missing(m, y, k):
    """TV between P(y | missing) and P(y | present); None when < 10 rows on either side."""
    if m.sum() < 10 or (~m).sum() < 10:
        return None
    return _tv(_shares(y[m], k), _shares(y[~m], k))


def _missingness(name, m_tr, y_tr, m_te, y_te, k, seed, th):
    """Missingness rules for one column (m_* bool arrays, True = missing)."""
    rate_tr, rate_te = float(m_tr.mean()), float(m_te.mean())
    row = {"feature": name, "missing_train": rate_tr, "missing_test": rate_te}
    tv_tr = _tv_missing(m_tr, y_tr, k)
    if tv_tr is None:
        return row, []
    ct = np.vstack([np.bincount(y_tr[m_tr], minlength=k), np.bincount(y_tr[~m_tr], minlength=k)])
    ct = ct[:, ct.sum(0) > 0]
    p = float(stats.chi2_contingency(ct, correction=False)[1]) if ct.shape[1] > 1 else 1.0
    signal = tv_tr >= th["missingness_signal"] and p < 0.01
    rules = [_rule("missingness_signal", name, tv_tr, th["missingness_signal"], 0.0, signal)]
    row.update(missing_tv_train=tv_tr, missing_p_train=p)
    if not signal:
        return row, rules
    expected = rate_tr * len(m_te)          # missing test rows if test kept train's rate
    testable = expected >= th["missingness_testable"]
    rules.append(_rule("missingness_testable", name, expected, th["missingness_testable"], 0.0,
                       testable))
    row.update(missing_expected_test=expected, missing_testable=bool(testable))
    if not testable:
        return row, rules
    # vanished: far fewer missing test rows than train's rate implies (binomial, one-sided)
    vanished = bool(rate_te < rate_tr / 4
                    and stats.binom.cdf(int(m_te.sum()), len(m_te), rate_tr) < 0.01)
    rng = np.random.default_rng(seed)

    def boot_sd(m, y):        # parametric bootstrap of the TV (multinomial per side)
        pm, pp = _shares(y[m], k), _shares(y[~m], k)
        nm, npr = int(m.sum()), int((~m).sum())
        a = rng.multinomial(nm, pm, size=200) / nm
        b = rng.multinomial(npr, pp, size=200) / npr
        return float((0.5 * np.abs(a - b).sum(1)).std())

    if y_te is None:                       # label-free: only "vanished" can be seen
        tv_te, var = (0.0 if vanished else float("nan")), boot_sd(m_tr, y_tr) ** 2
    else:
        tv_te = _tv_missing(m_te, y_te, k)
        if tv_te is None:           # too few missing (or present) test rows to measure a TV
            tv_te = 0.0 if vanished else float("nan")
            var = boot_sd(m_tr, y_tr) ** 2
        else:
            var = boot_sd(m_tr, y_tr) ** 2 + boot_sd(m_te, y_te) ** 2
    drop = tv_tr - tv_te
    thr = th["missingness_gone"] * tv_tr
    band = _Z * math.sqrt(var)
    gone = bool(np.isfinite(drop) and drop >= max(thr, band))
    row.update(missing_tv_test=tv_te, missing_vanished=bool(vanished), missingness=gone)
    rules.append(_rule("missingness_gone", name, drop, thr, band, gone))
    return row, rules


# -- what train never showed: values missing only in test, levels unseen in train ------

def _missing_rate(name, m_tr, m_te, n_feat, th):
    """Missing rate train vs test (two-proportion test): evidence row and its rule."""
    n1, n2 = len(m_tr), len(m_te)
    r1, r2 = float(m_tr.mean()), float(m_te.mean())
    diff = r2 - r1
    pool = (m_tr.sum() + m_te.sum()) / (n1 + n2)
    se0 = math.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n2))
    p = float(stats.norm.sf(diff / se0)) if se0 > 0 else 1.0
    band = _Z * math.sqrt(r1 * (1 - r1) / n1 + r2 * (1 - r2) / n2)
    fired = bool(diff > max(th["missing_in_test"], band) and p * n_feat < 0.01 and r1 <= r2 / 4)
    row = {"missing_rate_diff": diff, "missing_rate_band": band, "missing_rate_p": p,
           "missing_in_test": fired}
    return row, _rule("missing_in_test", name, diff, th["missing_in_test"], band, fired), \
        (r1, r2, band, p, int(m_te.sum()))


def _unseen_share(name, a, b, flag, n_feat, th):
    """Share of test rows (with a value) at a level train never shows, against the share
    expected by chance (Good-Turing): evidence row, rule and the numbers."""
    a, b = a.dropna(), b[b.notna()]
    n1, n2 = max(len(a), 1), max(len(b), 1)
    counts = a.value_counts()
    expected = float((counts == 1).sum()) / n1      # mass of unseen levels (Good-Turing)
    share = float(flag.sum()) / n2
    e = min(max(expected, 0.5 / n1), 1.0)
    band = _Z * math.sqrt(e * (1 - e) / n2 + (counts == 1).sum() / n1 ** 2)
    p = float(stats.binom.sf(int(flag.sum()) - 1, n2, e)) if flag.any() else 1.0
    eff = share - expected
    fired = bool(eff > max(th["unseen_levels"], band) and p * n_feat < 0.01)
    row = {"unseen_share": share, "unseen_expected": expected, "unseen_band": band,
           "unseen_p": p, "unseen_levels": fired}
    return row, _rule("unseen_levels", name, eff, th["unseen_levels"], band, fired), \
        (expected, share, band, p, int(flag.sum()))


def _norm_level(v):
    """A level with case, spaces and punctuation removed (to spot renamed levels)."""
    return "".join(ch for ch in str(v).casefold() if ch.isalnum())


def _acc_split(P, y, flag):
    """The model's accuracy on test rows without / with the flag and z x the standard error
    of their difference (NaN when a side has no rows or test has no labels)."""
    if y is None or not flag.any():
        return float("nan"), float("nan"), float("nan")
    hit = P.argmax(1) == y
    if flag.all():
        return float("nan"), float(hit.mean()), float("nan")
    a, b = float(hit[~flag].mean()), float(hit[flag].mean())
    return a, b, _Z * math.sqrt(a * (1 - a) / (~flag).sum() + b * (1 - b) / flag.sum())


@dataclass(frozen=True, eq=False)
class _NewFound:
    evidence: Any = None      # DataFrame indexed by feature
    rules: tuple = ()
    suspects: tuple = ()
    values: tuple = ()        # NewValues of the suspects
    hidden: tuple = ()        # their column indices (left out where a model reads them)


def _stage_new_values(d, m):
    """What train never showed, per column: values missing in test where train had them
    (missing rate, two-proportion test) and, for categoricals, test rows at a level train
    never shows (against Good-Turing's chance share). Label-free; with test labels, the
    model's accuracy on the flagged test rows against the others is the evidence."""
    th, nf = d.th, len(d.names)
    rows, rules, suspects, values, hidden = [], [], [], [], []
    for j, c in enumerate(d.names):
        m_tr, m_te = d.train[c].isna().to_numpy(), d.test[c].isna().to_numpy()
        row, r, nums = _missing_rate(c, m_tr, m_te, nf, th)
        row["feature"] = c
        rules.append(r)
        found = []
        if r.fired:
            found.append(("missing_in_test", r, nums, m_te, (), (), 0))
        if d.kinds_of[j] == "categorical":
            a, b = d.train[c].astype(object), d.test[c].astype(object)
            flag = d.unseen[:, j]
            urow, ur, unums = _unseen_share(c, a, b, flag[b.notna().to_numpy()], nf, th)
            row.update(urow)
            rules.append(ur)
            if ur.fired:
                tl = a.value_counts()
                ul = b[flag].value_counts()
                norm = {_norm_level(v) for v in tl.index}
                found.append(("unseen_levels", ur, unums, flag,
                              tuple((str(v), int(n)) for v, n in ul.iloc[:8].items()),
                              tuple((str(v), int(n)) for v, n in tl.iloc[:8].items()),
                              int(sum(_norm_level(v) in norm for v in ul.index))))
        rows.append(row)
        for kind, r, (s_tr, s_te, band, p, n), flag, ul, tl, matched in found:
            acc = _acc_split(m.P_te, d.y_te, flag)
            suspects.append(Suspect(c, kind, kind, r.value, r.threshold))
            values.append(NewValues(c, kind, s_tr, s_te, band, p, n, *acc, ul, tl, matched))
        if found:
            hidden.append(j)
    return _NewFound(evidence=pd.DataFrame(rows).set_index("feature"), rules=tuple(rules),
                     suspects=tuple(suspects), values=tuple(values), hidden=tuple(hidden))


# -- model level: proxy vs refit within test, greedy leave-out -----------------

_PROXY = dict(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20,
              early_stopping=True, validation_fraction=0.15, n_iter_no_change=5)


class _Constant:
    """The proxy of a one-class fold: always that class."""

    def __init__(self, label):
        self.classes_ = np.array([label])

    def predict_proba(self, X):
        return np.ones((len(X), 1))


def _proxy(X, y, cat_mask, seed):
    """HistGradientBoosting with early stopping on an internal split of (X, y); without it
    when a class has too few rows to stratify that split."""
    labels, counts = np.unique(y, return_counts=True)
    if len(labels) == 1:
        return _Constant(labels[0])
    cfg = dict(_PROXY)
    if counts.min() < 10:
        cfg.update(early_stopping=False, max_iter=40)
    cats = cat_mask if cat_mask.any() else None
    return HistGradientBoostingClassifier(categorical_features=cats, random_state=seed,
                                          **cfg).fit(X, y)


_UNIQUE_ROWS = 6000     # train rows of the unique_in_train check (3-fold out-of-fold)
_PROXY_SEEDS = 3        # seeds of the proxy whose spread widens the model transfer gap's band
_SEED_ZONE = 3.0        # ... fitted when the one-seed gap lies between its limit and 3 x it


def _oof_ll(X, y, cat_mask, k, seed, cv=3, max_fit=None):
    """Per-row out-of-fold log loss of the proxy on (X, y) (the fold prior without columns);
    each fold learns from at most ``max_fit`` rows."""
    ll = np.empty(len(y))
    for tr, te in _folds(y, cv, seed).split(y, y):
        tr = _cap(tr, max_fit, seed)
        P = (_full_proba(_proxy(X[tr], y[tr], cat_mask, seed), X[te], k) if X.shape[1]
             else np.tile(_shares(y[tr], k), (len(te), 1)))
        ll[te] = _ll_rows(P, y[te])
    return ll


def _full_proba(model, X, k):
    """(n, k) probabilities even when the model saw only some of the k classes."""
    P = np.full((len(X), k), 0.0)
    P[:, model.classes_] = model.predict_proba(X)
    return P


class _Transfer:
    """Log loss of a train-fitted proxy on test against a proxy refitted within test, for
    any subset of columns left out (dropped) or hot-decked (missingness removed)."""

    def __init__(self, Xtr, ytr, Xte, yte, cat_mask, k, seed, P_all=None):
        self.Xtr, self.ytr, self.Xte, self.yte = Xtr, ytr, Xte, yte
        self.cat, self.k, self.seed = cat_mask, k, seed
        self.pi_tr = np.clip(_shares(ytr, k), _EPS, None)
        self.pi_te = np.clip(_shares(yte, k), _EPS, None)
        self.cache, self.rows = {}, {}
        self.P_all = P_all          # test probabilities of the proxy on all columns, if known

    def _matrices(self, drop, fill):
        rng = np.random.default_rng(self.seed)
        Xtr, Xte = self.Xtr, self.Xte
        if fill:
            f = sorted(fill)
            Xtr, Xte = Xtr.copy(), Xte.copy()
            Xtr[:, f] = _hot_deck(Xtr[:, f], rng)
            Xte[:, f] = _hot_deck(Xte[:, f], rng)
        keep = [j for j in range(Xtr.shape[1]) if j not in drop]
        return Xtr[:, keep], Xte[:, keep], self.cat[keep]

    def _test_ll(self, drop, fill, seed):
        """Per-row test log loss of the train-fitted proxy: (as fitted, re-weighted to
        test's class shares)."""
        k, y = self.k, self.yte
        Xtr, Xte, cat = self._matrices(drop, fill)
        if not Xtr.shape[1]:
            ll = _ll_rows(np.tile(self.pi_te, (len(y), 1)), y)
            return ll, ll
        P = self.P_all if (not drop and not fill and self.P_all is not None
                           and seed == self.seed) else \
            _full_proba(_proxy(Xtr, self.ytr, cat, seed), Xte, k)
        P = np.clip(P, _EPS, None)
        return _ll_rows(P, y), _ll_rows(prior_correction(P, self.pi_tr, self.pi_te), y)

    def _gap_at(self, drop, fill, seed):
        """(gap, band) and the per-row losses of one proxy seed."""
        Xtr, Xte, cat = self._matrices(drop, fill)
        ll_cv = _oof_ll(Xte, self.yte, cat, self.k, seed,          # the refit within test,
                        max_fit=len(self.ytr))                     # from no more rows than train
        ll_t, ll_rw = self._test_ll(drop, fill, seed)
        # as fitted (a covariate shift keeps P(y | x)) and re-weighted to test's shares (a
        # prior shift keeps P(x | y)): the relationship changed only if both lose
        return min(_gap_stat(ll_t, ll_cv), _gap_stat(ll_rw, ll_cv)), (ll_t, ll_rw, ll_cv)

    def gap(self, drop=frozenset(), fill=frozenset()):
        """(gap, band) in nats; the class shares when every column is dropped."""
        key = (frozenset(drop), frozenset(fill))
        if key not in self.cache:
            self.cache[key], self.rows[key] = self._gap_at(drop, fill, self.seed)
        return self.cache[key]

    def gap_over_seeds(self, n_seeds=_PROXY_SEEDS):
        """The full proxy's transfer gap over ``n_seeds`` proxy seeds (the train-fitted
        proxy's early-stopping split, the refit's folds and fits): (mean gap, band, sd),
        the band z * sqrt(se^2 + sd^2) adding the proxy's own spread to the per-row noise."""
        g, b = self.gap()
        gaps, ses = [g], [b / _Z]
        for s in range(1, n_seeds):
            (gs, bs), _ = self._gap_at(frozenset(), frozenset(), self.seed + 1000 * s)
            gaps.append(gs)
            ses.append(bs / _Z)
        sd = float(np.std(gaps, ddof=1))
        return float(np.mean(gaps)), _Z * math.sqrt(float(np.mean(np.square(ses))) + sd ** 2), sd

    def closure_over_seeds(self, drop, j, n_seeds=_PROXY_SEEDS):
        """What leaving column ``j`` out beside ``drop`` closes of the transfer gap, over
        ``n_seeds`` proxy seeds (each seed refits both gaps): (mean closure, band), the
        band z * sqrt(se^2 + sd^2) adding the spread over seeds to the per-row noise of
        the gap left with ``drop`` out (as ``gap_over_seeds``)."""
        g, b = self.gap(drop)
        closures, ses = [g - self.gap(drop | {j})[0]], [b / _Z]
        for s in range(1, n_seeds):
            (g1, b1), _ = self._gap_at(drop, frozenset(), self.seed + 1000 * s)
            (g2, _), _ = self._gap_at(drop | {j}, frozenset(), self.seed + 1000 * s)
            closures.append(g1 - g2)
            ses.append(b1 / _Z)
        sd = float(np.std(closures, ddof=1))
        return float(np.mean(closures)), _Z * math.sqrt(float(np.mean(np.square(ses))) + sd ** 2)

    def leave_out_cost(self, j):
        """Test log loss of the train-fitted proxy without column ``j`` - with it (as
        fitted): > 0 when the column still serves test."""
        self.gap()
        ll_with = self.rows[(frozenset(), frozenset())][0]
        return float(np.mean(self._test_ll(frozenset([j]), frozenset(), self.seed)[0] - ll_with))

    def parts(self):
        """For the proxy of all columns: the transfer gap as fitted and re-weighted to test's
        class shares (each (gap, band)), and what re-weighting gains: (gain, band)."""
        self.gap()
        ll_t, ll_rw, ll_cv = self.rows[(frozenset(), frozenset())]
        return _gap_stat(ll_t, ll_cv), _gap_stat(ll_rw, ll_cv), _gap_stat(ll_t, ll_rw)


def _explain_away(tr, names, single, th):
    """Which single-feature suspects (indices, strongest first) account for the model's
    transfer gap and which are explained by them (``suspect_closure``): greedily, leave out
    the suspect that closes most of the remaining gap while that closure exceeds its band;
    the others close no more of it than noise. When not even the first closes it (two
    redundant shortcuts: leaving out either alone closes little), every suspect stays
    blamed. A left-over suspect whose removal alone closes the gap (``leave_out_closure``
    from the full proxy) is a partner of the blamed ones in an interaction.

    Returns (blamed indices, explained indices, rules, partner indices)."""
    if len(single) == 1:
        return list(single), [], [], []
    blamed, rules = [], []
    gap, band = tr.gap()
    while len(blamed) < len(single) and gap > max(band, th["unexplained_gap"]):
        cands = [j for j in single if j not in blamed]
        res = {j: tr.gap(frozenset(blamed + [j])) for j in cands}
        best = max(cands, key=lambda j: gap - res[j][0])
        closure, c_band = gap - res[best][0], band
        lim = max(th["suspect_closure"], band)
        if lim < closure < _SEED_ZONE * lim:    # near the limit: the proxy's randomness counts
            closure, c_band = tr.closure_over_seeds(frozenset(blamed), best)
        ok = closure > max(th["suspect_closure"], c_band)
        rules.append(_rule("suspect_closure", names[best], closure, th["suspect_closure"],
                           c_band, ok))
        if not ok:
            break
        blamed.append(best)
        gap, band = res[best]
    if not blamed:
        return list(single), [], rules, []
    partners, rr = _partners(tr, names, [j for j in single if j not in blamed], th)
    return blamed, [j for j in single if j not in blamed and j not in partners], rules + rr, \
        partners


def _partners(tr, names, cands, th, base=None):
    """The features of ``cands`` whose removal alone closes the proxy's whole transfer gap
    (``leave_out_closure`` from the full proxy): partners in an interaction. A partner
    closes nothing once its mate is out, like a mere correlated column, but only the
    partner closes the gap alone (with a correlated column out, the culprit remains).
    With ``base`` (columns already left out), partners are taken strongest first and only
    while a gap is left with ``base`` and the partners so far out.

    Returns (indices, rules of the ones that fired)."""
    g0, b0 = tr.gap()
    closure = {j: (g0 - tr.gap(frozenset([j]))[0]) / g0 for j in cands}
    found, rules = [], []
    for j in sorted(cands, key=lambda j: -closure[j]) if base is not None else cands:
        if base is not None:
            left, band = tr.gap(frozenset(base) | set(found))
            if left <= max(band, th["unexplained_gap"]):
                break
        c = closure[j]
        if c >= th["leave_out_closure"] and c * g0 > b0:
            found.append(j)
            rules.append(_rule("leave_out_closure", names[j], c, th["leave_out_closure"],
                               b0 / g0, True))
    return found, rules


def _leave_out(tr, names, start_drop, start_fill, th, max_steps=3):
    """Greedy leave-out of features not yet blamed: returns (group indices, rules, gap)."""
    gap, band = tr.gap(start_drop, start_fill)
    drop, group, rules = set(start_drop), [], []
    first = None
    for _ in range(max_steps):
        if gap <= max(band, th["unexplained_gap"]):
            break
        cands = [j for j in range(len(names)) if j not in drop]
        if not cands:
            break
        res = {j: tr.gap(drop | {j}, start_fill) for j in cands}
        closure = {j: (gap - res[j][0]) / gap for j in cands}
        if first is None:
            first = (gap, band, closure)
        best = max(cands, key=lambda j: closure[j])
        ok = closure[best] >= th["leave_out_closure"] and gap - res[best][0] > band
        rules.append(_rule("leave_out_closure", names[best], closure[best],
                           th["leave_out_closure"], band / gap, ok))
        if not ok:
            break
        drop.add(best)
        group.append(best)
        gap, band = res[best]
    if group and first is not None:
        # partners: single removals closing the first gap, strongest first. While a gap is
        # left after the group, one that closes >= leave_out_closure of the first gap; once
        # none is left, only a mate that alone closes it as fully as the group's first
        # member did, within the first gap's noise band (the other half of an XOR):
        # removing any strong column shrinks a gap a little
        g0, b0, closure = first
        best_left = g0 * (1 - closure[group[0]])
        for j in sorted(closure, key=lambda j: -closure[j]):
            c = closure[j]
            if j in group or c < th["leave_out_closure"] or c * g0 <= b0:
                continue
            if gap <= max(band, th["unexplained_gap"]) and g0 * (1 - c) > best_left + b0:
                continue
            group.append(j)
            rules.append(_rule("leave_out_closure", names[j], c, th["leave_out_closure"],
                               b0 / g0, True))
            gap, band = tr.gap(set(start_drop) | set(group), start_fill)
    return group, rules, (gap, band)


# -- the diagnosis ------------------------------------------------------------

def _check_thresholds(thresholds):
    th = {name: spec.threshold for name, spec in RULES.items()}
    for name, value in (thresholds or {}).items():
        if name not in th:
            raise ValueError(f"unknown rule {name!r} in thresholds=; valid names: {sorted(th)}")
        _check_range(f"thresholds[{name!r}]", value, 0.0,
                     1.0 if RULES[name].threshold <= 1.0 else math.inf)   # else a count
        th[name] = float(value)
    return th


def _mixture_em(M, cnt, start, iters=2000, tol=1e-10):
    """Maximum-likelihood mixture weights of fixed components, batched: pi maximising
    sum_c cnt[b, c] log (M[b] pi)_c, by EM (pi_y <- pi_y sum_c w_c M_cy / (M pi)_c).

    M : ndarray of shape (B, n_cells, k), columns P(cell | y); cnt : (B, n_cells);
    start : (B, k). Returns (B, k)."""
    w = cnt / np.maximum(cnt.sum(1, keepdims=True), 1e-300)
    pi = start.copy()
    for _ in range(iters):
        q = np.einsum("bck,bk->bc", M, pi)                       # (B, n_cells)
        new = pi * np.einsum("bc,bck->bk", w / np.maximum(q, 1e-300), M)
        if np.abs(new - pi).max() < tol:
            return new
        pi = new
    return pi


def _class_cells(N):
    """P(cell | y) from per-cell class counts N (n_cells, k) or (B, n_cells, k), half a
    count added to every cell (no cell impossible under a class)."""
    return (N + 0.5) / (N.sum(-2, keepdims=True) + 0.5 * N.shape[-2])


def _cells_lr(N, cnt, pi_ref, ref_dev, rng, sims=200):
    """Does one column's test distribution of cells fit the class shares ``pi_ref``?

    Under a prior shift with test shares pi, test's cell counts are multinomial with
    P(cell) = sum_y P(cell | y) pi_y, P(cell | y) as in train. The statistic is the
    likelihood ratio 2 sum_c cnt_c log(q_c(pi_hat) / q_c(pi_ref)), pi_hat the column's own
    maximum-likelihood shares. A direction of the shares the column cannot tell apart
    (fewer cells than classes, alike P(cell | y)) adds nothing to it, where a distance
    between estimates would read it as disagreement. Its null distribution is simulated:
    train's counts of each class redrawn from P(cell | y) (the column's own estimation
    noise), test's cells drawn at pi_ref, and the reference shares moved by the model's
    own bootstrap deviations ``ref_dev`` (its estimation noise).

    Returns (statistic, scale c, degrees of freedom df) of the scaled chi-square c x
    chi2(df) matching the null's mean and variance (Satterthwaite); df = 0 when the null
    is degenerate (the column cannot check anything)."""
    k = N.shape[1]
    M = _class_cells(N)                                          # (n_cells, k)
    est = _mixture_em(M[None], cnt[None], pi_ref[None])[0]
    q0, q1 = M @ pi_ref, M @ est
    lr = 2.0 * float(np.sum(cnt * (np.log(q1) - np.log(q0))))
    n_y = N.sum(0).astype(np.int64)
    Ns = np.stack([rng.multinomial(n_y[y], M[:, y], size=sims) for y in range(k)], axis=2)
    Ms = _class_cells(Ns.astype(np.float64))                     # (sims, n_cells, k)
    cs = rng.multinomial(int(cnt.sum()), q0 / q0.sum(), size=sims).astype(np.float64)
    ref = np.clip(pi_ref + ref_dev[rng.integers(0, len(ref_dev), sims)], _EPS, None)
    ref = ref / ref.sum(1, keepdims=True)                        # (sims, k)
    ests = _mixture_em(Ms, cs, ref)
    qa, qb = np.einsum("bck,bk->bc", Ms, ests), np.einsum("bck,bk->bc", Ms, ref)
    null = 2.0 * np.sum(cs * (np.log(qa) - np.log(qb)), axis=1)
    m, v = float(np.mean(null)), float(np.var(null, ddof=1))
    if m <= 0 or v <= 0:
        return lr, 0.0, 0.0
    return lr, v / (2 * m), 2 * m * m / v


def _em_consistency(d, m, pi_em, band_full, ref_dev, rng, skip=(), min_info=0.1, boots=30,
                    alpha=0.01):
    """Do the features agree with the model's EM estimate of test's class shares?

    Under a prior shift P(x | y) holds for every feature and every group of features, so
    test's distribution of each informative feature is train's class-conditional one
    mixed at the model's shares: checked by a likelihood-ratio test on the feature's cells
    (``_cells_lr``, Bonferroni over the features, level ``alpha``), which weighs only the
    directions of the shares the feature can tell. A proxy of either half of the features
    (assigned in turn by their information, so both halves carry some; calibrated on the
    validation rows) must give EM shares within its bootstrap band of the model's. A
    feature or half carrying < ``min_info`` nats is no check: when none carries that much
    the consistency cannot be checked, and it does not pass. Columns in ``skip`` (values
    train never showed) are left out. Returns (consistent, statistic of the worst check,
    that feature or half, its critical value)."""
    Xtr, y_tr, Xte, k = d.Xtr, d.y_tr, d.Xte_seen, d.k
    worst, who, band_w, infos, lrs = -np.inf, None, float("nan"), {}, []
    for j, (c, kd) in enumerate(zip(d.names, d.kinds_of)):
        a, b = ~np.isnan(Xtr[:, j]), ~np.isnan(Xte[:, j])
        if j in skip or a.sum() < 50 or b.sum() < 50:
            continue
        sub = rng.choice(np.flatnonzero(a), min(int(a.sum()), 20000), replace=False)
        half = len(sub) // 2
        cm = _Cells(kd, k, d.seed).fit(Xtr[sub[:half], j], y_tr[sub[:half]])
        ll = _ll_rows(cm.predict_proba(Xtr[sub[half:], j]), y_tr[sub[half:]])
        infos[j] = info = float(np.mean(_ll_rows(np.tile(cm.prior, (len(ll), 1)),
                                                 y_tr[sub[half:]]) - ll))
        if info < min_info:
            continue
        # P(cell | y) counted on the other half (the cells were chosen on the first)
        cells_tr, cells_te = cm._cell(Xtr[sub[half:], j]), cm._cell(Xte[b, j])
        cells_te = cells_te[cells_te >= 0]                     # a level the half never showed
        N = np.zeros((cm.ncell, k))
        np.add.at(N, (cells_tr[cells_tr >= 0], y_tr[sub[half:]][cells_tr >= 0]), 1.0)
        cnt = np.bincount(cells_te, minlength=cm.ncell).astype(np.float64)
        used = (N.sum(1) > 0) | (cnt > 0)
        if used.sum() < 2 or (N.sum(0) == 0).any():
            continue
        lr, scale, df = _cells_lr(N[used], cnt[used], pi_em, ref_dev, rng)
        if df > 0:
            lrs.append((lr, scale, df, c))
    for lr, scale, df, c in lrs:
        crit = scale * float(stats.chi2.ppf(1 - alpha / len(lrs), df))
        if lr / crit - 1 > worst:
            worst, who, band_w = lr / crit - 1, c, crit
    order = sorted(infos, key=lambda j: -infos[j])
    halves = [order[0::4] + order[3::4], order[1::4] + order[2::4]] if len(order) >= 2 else []
    y_val = y_tr[m.val]
    for cols in halves:
        cols = sorted(cols)
        proxy = _proxy(Xtr[m.fit][:, cols], y_tr[m.fit], d.cat_mask[cols], d.seed)
        P_val = _full_proba(proxy, Xtr[m.val][:, cols], k)
        cal = _calibrator(P_val, y_val, k)
        C_val, C_te = cal(P_val), cal(_full_proba(proxy, Xte[:, cols], k))
        info = float(np.mean(_ll_rows(np.tile(_shares(y_val, k), (len(y_val), 1)), y_val)
                             - _ll_rows(C_val, y_val)))
        if info < min_info:
            continue
        pr = np.clip(C_val.mean(0), _EPS, None)
        est = em_priors(np.clip(C_te, _EPS, None), pr)
        bs = [_tv(em_priors(np.clip(C_te[b], _EPS, None), pr, tol=1e-6), est)
              for b in (rng.integers(0, len(C_te), len(C_te)) for _ in range(boots))]
        band = 1.5 * float(np.quantile(bs, 0.99)) + band_full
        if _tv(est, pi_em) / band - 1 > worst:
            worst, who, band_w = (_tv(est, pi_em) / band - 1,
                                  "the features " + ", ".join(d.names[j] for j in cols), band)
    if who is None:           # nothing informative enough: cannot be checked, not passed
        return False, float("nan"), None, float("nan")
    return bool(worst <= 0), float((worst + 1) * band_w), who, band_w


def _null_tv(pi, n1, n2, rng, sims=300):
    """99th percentile of the TV between two multinomial samples of sizes n1, n2 from pi."""
    a = rng.multinomial(n1, pi, size=sims) / n1
    b = rng.multinomial(n2, pi, size=sims) / n2
    return float(np.quantile(0.5 * np.abs(a - b).sum(1), 0.99))


def diagnose(train, test, target, numeric, categorical, *, model=None, seed=0,
             thresholds=None, max_rows=15000, val_rows=None):
    """Diagnose how ``test`` differs from ``train`` and what that does to a model.

    Parameters
    ----------
    train : DataFrame
        With the ``target`` column (labels of any type: ints, strings, bools).
    test : DataFrame
        With or without ``target``; without it only the label-free checks run
        (feature shift, adversarial validation, predicted class distribution and
        EM-estimated priors, vanished missingness) and ``skipped`` names the others.
    target : str
    numeric, categorical : list of str
        Feature columns (raw names).
    model : object, optional
        A fitted classifier with ``predict_proba(frame)`` on the raw feature columns
        (columns ``numeric + categorical``) whose columns follow ``model.classes_``
        (or the sorted train labels). Used for the validation/test gap, the
        predicted class distribution and the EM priors; the transfer and leave-out
        checks refit the proxy model (HistGradientBoosting) either way.
    seed : int, default 0
    thresholds : dict, optional
        ``{rule name: value}`` overriding :data:`RULES` thresholds.
    max_rows : int, default 15000
        Train rows used by the proxy model and the single-feature train CV (a random
        subsample above it; 20% of train is always held out for validation).
    val_rows : array of int, optional
        Positions of the train rows to use as the validation rows (default: a random
        20%). Pass the rows ``model`` was *not* trained on, so its validation accuracy
        is not inflated by its own training rows.

    Returns
    -------
    Diagnosis
    """
    t0 = time.perf_counter()
    d = _prepare(train, test, target, numeric, categorical, thresholds, seed, max_rows)
    rng = np.random.default_rng(seed)
    # scikit-learn's checks of its own parameters skipped (the diagnosis passes constants;
    # the data are still checked): on a wide file they were thousands of calls' overhead
    with threadpool_limits(limits=1, user_api="openmp"), \
            sklearn.config_context(skip_parameter_validation=True):
        m = _stage_model(d, model, val_rows, rng)
        new = _stage_new_values(d, m)
        missing = [_missingness(c, d.train[c].isna().to_numpy(), d.y_tr, d.test[c].isna().to_numpy(),
                                d.y_te, d.k, d.seed, d.th) for c in d.names]   # per column, seeded each
        pri = _stage_priors(d, m, missing, new, rng)
        acc = _stage_gap(d, m)
        feat = _stage_features(d, pri, missing, new)
        tr = _stage_transfer(d, m, feat, acc, rng)
        blamed = {s.feature for s in feat.suspects + tr.suspects}
        adv = _stage_adversarial(d, feat.evidence, blamed)
    return _verdict(d, (pri, acc, feat, tr, adv), tr.gap, pri.priors, blamed, tr.proxies,
                    new.values, time.perf_counter() - t0)


# -- the stages of diagnose -----------------------------------------------------
# Each reads the prepared inputs (``_Inputs``) and what earlier stages found, and
# returns a ``_Found``-like result: its evidence, the rules it applied (fired or
# not, in the order applied) and the suspects it blames. ``_check`` applies a rule
# whose statistic must exceed both its threshold and its noise band.

@dataclass(frozen=True, eq=False)
class _Inputs:
    """What every stage reads: the frames, the features, the labels and the thresholds."""
    train: Any
    test: Any
    names: list               # feature columns, numeric first
    kinds_of: list            # "numeric" / "categorical" per feature
    cat_mask: Any             # (d,) bool
    classes: Any
    y_tr: Any                 # (n_tr,) class indices
    y_te: Any                 # (n_te,) class indices, or None without test labels
    k: int
    Xtr: Any                  # (n_tr, d) design matrix (categorical codes, NaN kept)
    Xte: Any                  # (n_te, d)
    unseen: Any               # (n_te, d) bool: the test row's level never occurs in train
    Xte_seen: Any             # Xte with those levels as NaN (the per-feature checks' view)
    test_seen: Any            # test with those levels as NaN (the same, on the raw frame)
    labelled: bool
    th: dict
    seed: int
    max_rows: int
    numeric: list
    categorical: list


def _prepare(train, test, target, numeric, categorical, thresholds, seed, max_rows):
    numeric, categorical = _check_features([("train", train)], target, numeric, categorical)
    _check_features([("test", test)], None, numeric, categorical)
    th = _check_thresholds(thresholds)
    labelled = target in test.columns
    classes, y_tr, y_te = _classes(train[target], test[target] if labelled else None)
    names = numeric + categorical
    kinds_of = ["numeric"] * len(numeric) + ["categorical"] * len(categorical)
    Xtr, Xte, unseen = _design(train, test, numeric, categorical)   # (n_tr, d), (n_te, d)
    test_seen = test
    if unseen.any():          # levels train never shows have their own check (_new_values)
        test_seen = test.copy()
        for j in np.flatnonzero(unseen.any(axis=0)):
            test_seen[names[j]] = test[names[j]].astype(object).where(~unseen[:, j], np.nan)
    return _Inputs(train, test, names, kinds_of, np.array([kd == "categorical" for kd in kinds_of]),
                   classes, y_tr, y_te, len(classes), Xtr, Xte, unseen,
                   np.where(unseen, np.nan, Xte), test_seen, labelled, th, seed, max_rows,
                   numeric, categorical)


def _check(name, subject, value, threshold, band):
    """Apply the rule ``name``: it fires when ``value`` exceeds both ``threshold`` and ``band``."""
    return _rule(name, subject, value, threshold, band, value > max(threshold, band))


@dataclass(frozen=True, eq=False)
class _Found:
    """What a stage found: its own evidence (``evidence``), the rules it applied, its suspects."""
    evidence: Any = None
    rules: tuple = ()
    suspects: tuple = ()


@dataclass(frozen=True, eq=False)
class _ModelFound(_Found):
    P_val: Any = None         # (n_val, k) the model's probabilities on the validation rows
    P_te: Any = None          # (n_te, k) on test
    val: Any = None           # positions of the validation rows in train
    fit: Any = None           # positions of the rows the proxy fits on
    user_model: bool = False  # the probabilities are the caller's model's, not the proxy's


def _stage_model(d, model, val_rows, rng):
    """The proxy (or the user's) model on the validation rows and on test."""
    perm = rng.permutation(len(d.y_tr))
    if val_rows is None:
        n_val = max(int(0.2 * len(d.y_tr)), 1)
        val, fit = perm[:n_val], perm[n_val:n_val + d.max_rows]
    else:
        val = np.asarray(val_rows, dtype=np.int64).ravel()
        if len(val) == 0 or val.min() < 0 or val.max() >= len(d.y_tr) or len(np.unique(val)) != len(val):
            raise ValueError(f"val_rows must be distinct positions 0..{len(d.y_tr) - 1} of "
                             f"train rows; got {len(val)} values in "
                             f"[{val.min() if len(val) else None}, "
                             f"{val.max() if len(val) else None}]")
        fit = perm[~np.isin(perm, val)][:d.max_rows]
    if model is not None:
        P_val, P_te = _user_proba(model, d.train.iloc[val], d.test, d.names, d.classes)
    else:
        proxy = _proxy(d.Xtr[fit], d.y_tr[fit], d.cat_mask, d.seed)
        P_val, P_te = _full_proba(proxy, d.Xtr[val], d.k), _full_proba(proxy, d.Xte, d.k)
    return _ModelFound(P_val=P_val, P_te=P_te, val=val, fit=fit, user_model=model is not None)


@dataclass(frozen=True, eq=False)
class _PriorsFound(_Found):
    priors: Any = None        # Priors
    moved: bool = False       # the class shares moved beyond noise (and EM's assumption holds)


def _stage_priors(d, m, missing, new, rng):
    """Class priors: test's shares from its labels (chi-square) or, without labels, by EM
    on the model's predictions, against train's, with a noise band."""
    th, k, y_tr = d.th, d.k, d.y_tr
    pi_tr = _shares(y_tr, k)
    rules = []
    if d.labelled:
        pi_te = _shares(d.y_te, k)
        ct = np.vstack([np.bincount(y_tr, minlength=k), np.bincount(d.y_te, minlength=k)])
        p_chi = float(stats.chi2_contingency(ct[:, ct.sum(0) > 0], correction=False)[1])
        band_tv = _null_tv((ct.sum(0) / ct.sum()), len(y_tr), len(d.y_te), rng)
        source = "labels"
    else:
        P_val, P_te = _label_free_proba(d, m, missing, new, rng)
        y_val = y_tr[m.val]
        cal = _calibrator(P_val, y_val, k)
        C_val, C_te = cal(P_val), cal(P_te)                  # calibrated on validation
        pi_te = em_priors(np.clip(C_te, _EPS, None), np.clip(C_val.mean(0), _EPS, None))
        bbse = bbse_priors(C_val, y_val, C_te, k)
        tvs, devs = [], []  # EM's spread over bootstraps of test rows and of validation rows
        for _ in range(30):
            bt, bv = rng.integers(0, len(C_te), len(C_te)), rng.integers(0, len(y_val), len(y_val))
            cb = _calibrator(P_val[bv], y_val[bv], k)
            est = em_priors(np.clip(cb(P_te[bt]), _EPS, None),
                            np.clip(cb(P_val[bv]).mean(0), _EPS, None), tol=1e-6)
            tvs.append(_tv(est, pi_te))
            devs.append(est - pi_te)
        band_tv = float(np.quantile(tvs, 0.99)) + _null_tv(pi_tr, len(y_tr), len(P_te), rng)
        mean_tv, mean_band = _predictions_moved(C_val, y_val, C_te, pi_tr, rng)
        p_chi, source = float("nan"), "em"
        calibrated = (tuple(C_val.mean(0)), tuple(C_te.mean(0)), tuple(bbse))
    tv = _tv(pi_tr, pi_te)
    moved = tv >= max(th["prior_shift"], band_tv) and (not d.labelled or p_chi < 0.01)
    rules.append(_rule("prior_shift", None, tv, th["prior_shift"], band_tv, moved))
    if not d.labelled:
        # the calibrated model's own mean prediction must move: EM amplifies a weak model's
        # noise and miscalibration into shares far from it
        r = _check("predictions_moved", None, mean_tv, th["predictions_moved"], mean_band)
        rules.append(r)
        moved = moved and r.fired
    if moved and not d.labelled:      # EM assumes P(x | y) holds: check it feature by feature
        ok, worst, who, band_w = _em_consistency(d, m, pi_te, band_tv, np.array(devs), rng,
                                                 skip=new.hidden)
        rules.append(_rule("em_consistent", who, worst, th["em_consistent"], band_w, ok))
        moved = ok
    priors = Priors(d.classes, tuple(pi_tr), tuple(pi_te), source, tuple(m.P_te.mean(axis=0)), p_chi,
                    tv, band_tv, *(() if d.labelled else calibrated))
    return _PriorsFound(rules=tuple(rules), priors=priors, moved=moved)


def _label_free_proba(d, m, missing, new, rng):
    """The model's probabilities on the validation rows and on test for the label-free
    priors: the model's own, unless a column's missingness signal is train-only (a proxy
    that cannot see it: those columns hot-decked) or test holds values train never showed
    (a proxy without those columns): both move the predictions without any prior shift."""
    gone = [j for j, (row, _) in enumerate(missing) if row.get("missingness")]
    if not gone and not new.hidden:
        return m.P_val, m.P_te
    keep = [j for j in range(len(d.names)) if j not in new.hidden]
    Xs = [d.Xtr[m.fit].copy(), d.Xtr[m.val].copy(), d.Xte.copy()]
    for X in Xs:
        X[:, gone] = _hot_deck(X[:, gone], rng)
    if not keep:
        return tuple(np.tile(_shares(d.y_tr[m.fit], d.k), (len(X), 1)) for X in Xs[1:])
    proxy = _proxy(Xs[0][:, keep], d.y_tr[m.fit], d.cat_mask[keep], d.seed)
    return tuple(_full_proba(proxy, X[:, keep], d.k) for X in Xs[1:])


@dataclass(frozen=True, eq=False)
class _GapFound(_Found):
    acc_v: float = float("nan")   # validation accuracy of the model
    acc_t: float = float("nan")   # its test accuracy
    se: float = float("nan")      # standard error of their difference
    ll_v: Any = None              # (n_val,) per-row log loss on validation
    ll_t: Any = None              # (n_te,) on test
    outside: bool = False         # the accuracy gap is outside noise


def _stage_gap(d, m):
    """Validation vs test accuracy and log loss of the same model (labelled test only)."""
    if not d.labelled:
        return _GapFound()
    acc_v = float(np.mean(m.P_val.argmax(1) == d.y_tr[m.val]))
    acc_t = float(np.mean(m.P_te.argmax(1) == d.y_te))
    se = math.sqrt(acc_v * (1 - acc_v) / len(m.val) + acc_t * (1 - acc_t) / len(d.y_te))
    outside = acc_v - acc_t > _Z * se
    return _GapFound(rules=(_rule("gap_outside_noise", None, acc_v - acc_t, 0.0, _Z * se, outside),),
                     acc_v=acc_v, acc_t=acc_t, se=se, ll_v=_ll_rows(m.P_val, d.y_tr[m.val]),
                     ll_t=_ll_rows(m.P_te, d.y_te), outside=bool(outside))


@dataclass(frozen=True, eq=False)
class _FeaturesFound(_Found):
    single: dict = None       # feature index -> Suspect whose own P(y | x_j) changed (not yet blamed)


def _stage_features(d, pri, missing, new):
    """Per feature: marginal or class-conditional shift (train re-weighted to test's shares),
    the conditional relationship with the label (labelled test), missingness."""
    th = d.th
    if d.labelled:
        ev = _class_conditional_shift(d.train, d.test_seen, d.y_tr, d.y_te, d.numeric, d.categorical, d.k,
                                      th["marginal_shift"])
    else:
        pi_tr, pi_te = np.array(pri.priors.train), np.array(pri.priors.test)
        w = (pi_te / np.clip(pi_tr, _EPS, None))[d.y_tr] if pri.moved else np.ones(len(d.y_tr))
        ev = _marginal_shift(d.train, d.test_seen, d.numeric, d.categorical, w, th["marginal_shift"])
    ev = ev.join(new.evidence)
    rules, suspects, single, rows_c, rows_m = list(new.rules), list(new.suspects), {}, [], []
    for j, (c, kd) in enumerate(zip(d.names, d.kinds_of)):
        if d.labelled:
            row, rr = _conditional(c, kd, d.Xtr[:, j], d.y_tr, d.Xte_seen[:, j], d.y_te, d.k, d.seed,
                                   d.max_rows, th)
            rows_c.append(row)
            rules += rr
            if row.get("conditional_shift"):
                kind = "relationship_broken" if row["relationship_gone"] else "concept_shift"
                single[j] = Suspect(c, kind, "conditional_shift", min(row["gap_fitted"], row["gap_reweighted"]),
                                    row["gap_threshold"])
        row, rr = missing[j]
        rows_m.append(row)
        rules += rr
        if row.get("missingness"):
            suspects.append(Suspect(c, "missingness", "missingness_gone",
                                    row["missing_tv_train"] - row["missing_tv_test"],
                                    th["missingness_gone"] * row["missing_tv_train"]))
    for rows in (rows_c, rows_m):
        if rows:
            ev = ev.join(pd.DataFrame(rows).set_index("feature"))
    return _FeaturesFound(evidence=ev, rules=tuple(rules), suspects=tuple(suspects), single=single)


@dataclass(frozen=True, eq=False)
class _TransferFound(_Found):
    gap: Any = None           # Gap, None without test labels
    proxies: tuple = ()       # explained-away columns (suspect_closure)


def _stage_transfer(d, m, feat, acc, rng):
    """Model level (labelled test): does a model of all features transfer worse than one
    learnt within test; which suspects close that gap (greedy, explaining others away);
    which partners or groups a gap left over shows through."""
    if not d.labelled:
        return _TransferFound()
    th, names, y_tr = d.th, d.names, d.y_tr
    rules, suspects, single = [], list(feat.suspects), dict(feat.single)
    proxies = ()
    tr = _Transfer(d.Xtr[m.fit], y_tr[m.fit], d.Xte, d.y_te, d.cat_mask, d.k, d.seed,
                   None if m.user_model else m.P_te)
    g0, b0 = tr.gap()
    sd = float("nan")
    lim = max(th["model_transfer_gap"], b0)
    if lim < g0 < _SEED_ZONE * lim:     # near the limit: the proxy's own randomness counts
        g0, b0, sd = tr.gap_over_seeds()
    r = _check("model_transfer_gap", None, g0, th["model_transfer_gap"], b0)
    tgap = r.fired
    rules.append(r)
    (g_fit, _), (g_rw, _), (gain, gain_b) = tr.parts()
    rules.append(_check("prior_reweighting", None, gain, th["prior_reweighting"], gain_b))
    explained, partners = (), []
    if not tgap:    # P(y | x_j) of one feature also moves when correlated inputs
        single = {j: x for j, x in single.items()    # shift: only a lost link that
                  if x.kind == "relationship_broken"}  # no other feature gave counts
        if single:
            rows = rng.permutation(len(y_tr))[:_UNIQUE_ROWS]
            base = _oof_ll(d.Xtr[rows], y_tr[rows], d.cat_mask, d.k, d.seed)
        for j in list(single):
            keep = [i for i in range(len(names)) if i != j]
            u, ub = _gap_stat(_oof_ll(d.Xtr[rows][:, keep], y_tr[rows], d.cat_mask[keep], d.k, d.seed), base)
            r = _check("unique_in_train", names[j], u, th["unique_in_train"], ub)
            rules.append(r)
            if not r.fired:
                del single[j]
                continue
            # without a model-level gap, a lost link is blamed only when leaving the column
            # out does not make the train-fitted model worse on test
            cost = tr.leave_out_cost(j)
            r = _rule("leave_out_costs", names[j], cost, 0.0, 0.0, cost > 0.0)
            rules.append(r)
            if r.fired:
                del single[j]
    if single:                      # explain away (suspect_closure)
        strongest = sorted(single, key=lambda j: -single[j].statistic)
        blamed_j, explained, rr, partners = (_explain_away(tr, names, strongest, th)
                                             if tgap else (strongest, [], [], []))
        rules += rr
        suspects += [single[j] for j in blamed_j]
        proxies = tuple(names[j] for j in explained)
    drop = frozenset(names.index(s.feature) for s in suspects if s.kind != "missingness")
    left, band_left = tr.gap(drop | set(partners)) if tgap and single else (0.0, 0.0)
    if left > max(band_left, th["unexplained_gap"]):
        # a gap left: is a partner of the suspects, not yet one, behind it?
        more, rr = _partners(tr, names, sorted(set(range(len(names))) - drop
                                               - set(partners) - set(explained)), th,
                             base=drop | set(partners))
        partners, rules = partners + more, rules + rr
    suspects += [Suspect(names[j], "interaction", "leave_out_closure",
                         next(r.value for r in rules if r.name == "leave_out_closure"
                              and r.subject == names[j]), th["leave_out_closure"])
                 for j in partners]
    drop = frozenset(names.index(s.feature) for s in suspects if s.kind != "missingness")
    fill = frozenset(names.index(s.feature) for s in suspects if s.kind == "missingness") - drop
    group_g, group_b = tr.gap(drop, fill) if (drop or fill) else (g0, b0)
    # a group, only when no single feature's relationship changed: the gap left
    # after such a suspect shows through the features it acted with (unexplained)
    if tgap and not single:
        group, rr, (group_g, group_b) = _leave_out(tr, names, drop, fill, th)
        rules += rr
        for j in group:
            suspects.append(Suspect(names[j], "interaction", "leave_out_closure",
                                    next(r.value for r in rr if r.subject == names[j]),
                                    th["leave_out_closure"]))
    resid_fire = tgap and group_g > max(group_b, th["unexplained_gap"])
    rules.append(_rule("unexplained_gap", None, group_g, th["unexplained_gap"], group_b, resid_fire))
    lg = float(acc.ll_t.mean() - acc.ll_v.mean())
    lse = math.sqrt(acc.ll_t.var() / len(acc.ll_t) + acc.ll_v.var() / len(acc.ll_v))
    dv = acc.acc_v - acc.acc_t
    gap = Gap(acc.acc_v, acc.acc_t, dv, (dv - _Z * acc.se, dv + _Z * acc.se),
              float(acc.ll_v.mean()), float(acc.ll_t.mean()), lg, (lg - _Z * lse, lg + _Z * lse),
              acc.outside, g0, b0, g0 - group_g, group_g, g_fit, g_rw, sd)
    return _TransferFound(rules=tuple(rules), suspects=tuple(suspects[len(feat.suspects):]), gap=gap,
                          proxies=proxies)


def _stage_adversarial(d, ev, blamed):
    """Adversarial validation: a classifier telling test rows from train rows, on all
    features (descriptive: its permutation AUC drops go into ``ev``), then without the
    blamed ones (decides covariate_shift: a broken feature also moves the joint distribution)."""
    auc_all, drops = _adversarial(d.Xtr, d.Xte_seen, d.cat_mask, d.seed)
    ev["adv_auc_drop"] = drops
    rest = [j for j, c in enumerate(d.names) if c not in blamed]
    auc = (auc_all if len(rest) == len(d.names) else
           _adversarial(d.Xtr[:, rest], d.Xte_seen[:, rest], d.cat_mask[rest], d.seed, drops=False)[0] if rest
           else 0.5)
    return _Found(evidence={"auc_no_missing": auc_all, "auc_without_suspects": auc,
                            "threshold": d.th["adversarial_auc"]})


def _verdict(d, found, gap, priors, blamed, proxies, new_values, seconds):
    """The verdict from every stage's rules and suspects: the kinds that hold, primary first."""
    pri, acc, feat, tr, adv = found
    ev, th, names = feat.evidence, d.th, d.names
    rules = [r for f in (pri, acc, feat, tr) for r in f.rules]
    suspects = list(feat.suspects + tr.suspects)
    auc = adv.evidence["auc_without_suspects"]
    shifted = sorted(c for c in names if bool(ev.loc[c, "shifted"]))
    still = [c for c in shifted if c not in blamed]
    adv_fire = auc >= th["adversarial_auc"] and not pri.moved   # a prior shift moves x too
    rules.append(_rule("adversarial_auc", None, auc, th["adversarial_auc"], 0.0, adv_fire))
    for c in names:
        rules.append(_rule("marginal_shift", c, ev.loc[c, "shift_effect"], th["marginal_shift"],
                           0.0, bool(ev.loc[c, "shifted"])))
    holds = len(still) == 0
    rules.append(_rule("class_conditional_holds", None, len(still), 0.0, 0.0, holds))
    kinds = {s.kind for s in suspects}
    if still or adv_fire:
        kinds.add("covariate_shift")
    # a prior shift: the shares moved and (labelled) re-weighting the model to them pays,
    # named beside a covariate shift when other inputs moved too
    if pri.moved and (not d.labelled or rules_fired(rules, "prior_reweighting")):
        kinds.add("prior_shift")
    if d.labelled and (rules_fired(rules, "unexplained_gap") or (gap.outside_noise and not kinds)):
        kinds.add("unexplained")
    if not kinds:
        kinds = {"none"}
    kinds = tuple(k_ for k_ in _PRIMARY_ORDER if k_ in kinds)
    skipped = () if d.labelled else (
        "conditional_shift (needs test labels)", "missingness association in test "
        "(needs test labels; only vanished missingness is checked)",
        "class priors by chi-square (estimated by EM instead)",
        "validation vs test gap (needs test labels)",
        "model transfer gap and leave-out attribution (need test labels)")
    order = {c: i for i, c in enumerate(names)}
    suspects = tuple(sorted(suspects, key=lambda s: order[s.feature]))
    ev.index.name = "feature"
    return Diagnosis(Verdict(kinds, kinds[0]), suspects, tuple(sorted(blamed)),
                     tuple(shifted), gap, priors, ev, tuple(rules), to_jsonable(adv.evidence), d.labelled,
                     skipped, seconds, tuple(sorted(proxies)), tuple(new_values))


def rules_fired(rules, name):
    """True when any rule called ``name`` fired."""
    return any(r.fired for r in rules if r.name == name)


def _user_proba(model, val_frame, test, names, classes):
    if not hasattr(model, "predict_proba"):
        raise ValueError(f"model= must have predict_proba; got {type(model).__name__}")
    out = []
    for frame in (val_frame, test):
        P = np.asarray(model.predict_proba(frame[names]), dtype=np.float64)
        if P.ndim != 2 or P.shape[0] != len(frame):
            raise ValueError(f"model.predict_proba returned shape {P.shape}; expected "
                             f"({len(frame)}, n_classes)")
        mc = list(getattr(model, "classes_", classes))
        if len(mc) != P.shape[1]:
            raise ValueError(f"model.predict_proba has {P.shape[1]} columns but "
                             f"{len(mc)} classes_; they must match")
        full = np.zeros((len(frame), len(classes)))
        idx = pd.Index(classes, dtype=object).get_indexer(pd.Index(mc, dtype=object))
        if (idx < 0).any():
            raise ValueError(f"model.classes_ {mc} are not train's labels {list(classes)}")
        full[:, idx] = P
        out.append(full)
    return out


# -- sentences ------------------------------------------------------------------

def _levels_text(levels):
    return ", ".join(f"'{v}' ({n})" for v, n in levels)


def _shares_text(pr, est):
    return ", ".join(f"{c}: {a:.3f} -> {b:.3f}" for c, a, b in zip(pr.classes, pr.train, est))


def _priors_sentence(d):
    """The class shares in words: from the labels, or estimated without them (EM on the
    calibrated predictions, BBSE beside it) with the reason a move is or is not claimed."""
    pr = d.priors
    fired = rules_fired(d.rules, "prior_shift")
    head = (f"total variation {pr.total_variation:.3f} (noise band {pr.band:.3f}); "
            f"{_shares_text(pr, pr.test)}")
    if pr.source != "em":
        if not fired:
            return f"Class shares (test from the labels) did not move beyond noise: {head}."
        rw = next(r for r in d.rules if r.name == "prior_reweighting")
        how = (f"re-weighting the train-fitted proxy to test's shares changes its test log "
               f"loss by {-rw.value:+.3f} nats (noise band {rw.noise_band:.3f})")
        if "prior_shift" in d.verdict.kinds:
            return f"Class shares (test from the labels) moved: {head}; {how}: a prior shift."
        return (f"Class shares (test from the labels) moved: {head}; but {how}: the shares "
                f"moved with the inputs, not as a prior shift.")
    src = ("Class shares of test, estimated without labels by EM on the model's predictions "
           "calibrated on the validation rows")
    if not fired:
        return f"{src}, did not move beyond noise: {head}."
    mv = next(r for r in d.rules if r.name == "predictions_moved")
    em = [r for r in d.rules if r.name == "em_consistent"]
    out = (f"{src}: {head} (BBSE: {', '.join(f'{b:.3f}' for b in pr.bbse)}); the calibrated "
           f"mean prediction moved {mv.value:.3f} from what train's shares imply (noise band "
           f"{mv.noise_band:.3f})")
    if not mv.fired:
        return (out + ": the estimate of a model this weak walks far from its own mean "
                "prediction, so no prior shift is claimed.")
    r = em[0]
    if r.fired:
        return (out + f", and the estimate from every informative feature and half of the "
                f"features agrees with it (largest difference {r.value:.3f}, band "
                f"{r.noise_band:.3f}): a prior shift.")
    if r.subject is None:
        return (out + "; whether P(x | label) holds, as the estimate assumes, cannot be checked "
                "(no feature and no half of the features carries 0.1 nats about the label), "
                "so no prior shift is claimed.")
    return (out + f"; but the estimate from {r.subject} differs by {r.value:.3f} (band "
            f"{r.noise_band:.3f}): P(x | label) changed, so this is not a prior shift.")


def _new_values_sentence(v):
    """One :class:`NewValues` in words: the rates, the levels, the accuracy split."""
    if v.kind == "missing_in_test":
        what = (f"{v.feature}: {v.share_test:.1%} of test rows lack a value, against "
                f"{v.share_train:.1%} of train rows (difference {v.share_test - v.share_train:+.3f}, "
                f"noise band {v.band:.3f}): the model meets missing values it never learnt to read")
        rows = ("rows with the value", "rows without it")
    else:
        what = (f"{v.feature}: {v.share_test:.1%} of test rows with a value ({v.rows}) are at a "
                f"level train never shows (chance share {v.share_train:.1%}, noise band "
                f"{v.band:.3f}): {_levels_text(v.unseen)}; train's levels: "
                f"{_levels_text(v.train_levels)}")
        if v.matched:
            what += (f"; {v.matched} of the unseen levels equal a train level once case, spaces "
                     f"and punctuation are ignored (renamed?)")
        rows = ("rows at a level train knows", "rows at an unseen level")
    if np.isfinite(v.acc_flagged) and not np.isfinite(v.acc_known):
        what += (f". The model scores {v.acc_flagged:.3f} on them (no test row has a value "
                 f"train knows to compare with)")
    elif np.isfinite(v.acc_flagged):
        diff = v.acc_known - v.acc_flagged
        what += (f". The model scores {v.acc_known:.3f} on test {rows[0]} and "
                 f"{v.acc_flagged:.3f} on {rows[1]} (difference {diff:+.3f}, noise band "
                 f"{v.acc_band:.3f}" + ("" if diff > v.acc_band else ": within noise") + ")")
    return what + f" ({v.kind})."


# What the verdict's kinds without suspects say, each in one clause. A kind's clause never
# denies another kind of the same verdict: covariate_shift says "no feature's relationship
# changed" only when no kind of a changed relationship is in the verdict, and prior_shift
# says "P(x | label) holds" only when covariate_shift is not.
_RELATIONSHIP_KINDS = ("relationship_broken", "concept_shift", "missingness", "interaction")


def _names(items, name):
    items = [name(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def verdict_clauses(diagnosis, name=str):
    """One clause per kind of the verdict, written from the diagnosis's evidence.

    Parameters
    ----------
    diagnosis : Diagnosis
    name : callable, default str
        Formats a column name (e.g. as a code span).

    Returns
    -------
    list of str
        In :data:`KINDS` order, each ending with its kind in parentheses; empty for
        ``none``. No clause contradicts another kind of the same verdict.
    """
    d = diagnosis
    kinds = set(d.verdict.kinds)
    out = []
    for kind, text in KIND_TEXT.items():
        feats = list(dict.fromkeys(s.feature for s in d.suspects if s.kind == kind))
        if feats:
            if len(feats) > 1:
                verb, rest = text.split(" ", 1)
                text = f"{PLURAL_VERBS[verb]} {rest}"
            out.append(f"{_names(feats, name)} {text} ({kind})")
    if "prior_shift" in kinds:
        p = d.priors
        holds = ("" if "covariate_shift" in kinds else " while P(x | label) holds")
        out.append(f"the class shares moved (total variation {p.total_variation:.3f}, noise "
                   f"band {p.band:.3f}){holds} (prior_shift)")
    if "covariate_shift" in kinds:
        moved = [c for c in d.shifted_features if c not in d.suspect_features]
        what = f"the inputs {_names(moved, name)}" if moved else "the inputs' joint distribution"
        if not d.labelled:
            how = "; whether their relationships with the label hold needs test labels"
        elif kinds & set(_RELATIONSHIP_KINDS):
            how = " besides the suspects"
        else:
            how = " but no feature's relationship with the label changed"
        out.append(f"{what} moved{how} (covariate_shift)")
    if "unexplained" in kinds and d.gap is not None:
        out.append(f"{d.gap.residual:.3f} nats of the model's transfer gap is accounted for by "
                   f"no check (unexplained)")
    return out


def verdict_sentence(diagnosis, name=str):
    """The verdict in one sentence: :func:`verdict_clauses` joined, or that nothing was found."""
    parts = verdict_clauses(diagnosis, name)
    if not parts:
        return (f"No {'' if diagnosis.labelled else 'label-free '}check found a shift between "
                "the training and the test file (verdict: none).")
    return "Diagnosis: " + "; ".join(parts) + "."


def _rise(x):
    return "rises" if x > 0 else "falls" if x < 0 else "stays"


def explain(diagnosis):
    """Sentences written from the statistics of a :class:`Diagnosis`.

    Each sentence quotes the statistic of the rule that fired, with its verb taken
    from the sign of the number; a "root cause" is named only when the gap is
    outside noise and removing the cause measurably closes the transfer gap.

    Returns
    -------
    list of str
    """
    d = diagnosis
    out = []
    pr = d.priors
    g = d.gap
    if g is not None:
        lo, hi = g.accuracy_ci
        out.append(f"Accuracy {_rise(-g.accuracy_gap)} from {g.val_accuracy:.3f} on validation "
                   f"to {g.test_accuracy:.3f} on test (gap {g.accuracy_gap:+.3f}, 99% CI "
                   f"{lo:+.3f} to {hi:+.3f}: "
                   + ("outside noise)." if g.outside_noise else "within noise)."))
        out.append(f"A proxy model fitted on train has a log loss on test "
                   f"{abs(g.transfer_gap):.3f} nats {'above' if g.transfer_gap > 0 else 'below'} "
                   f"that of a model refitted within test (noise band {g.transfer_band:.3f}).")
    else:
        out.append("Test has no labels: " + "; ".join(d.skipped) + ".")
        out.append("Mean predicted probability of each class on test (the model given to the "
                   "diagnosis, else its gradient-boosting proxy): " + ", ".join(
                       f"{c}: {p:.3f}" for c, p in zip(pr.classes, pr.predicted)) + ".")
    out.append(_priors_sentence(d))
    ev = d.evidence
    for s in d.suspects:
        r = ev.loc[s.feature]
        if s.kind in ("relationship_broken", "concept_shift"):
            how = KIND_TEXT[s.kind]
            out.append(
                f"{s.feature}: P(label | {s.feature}) learnt on train scores "
                f"{r['gap_fitted']:.3f} nats worse on test than its refit within test "
                f"({r['gap_reweighted']:.3f} after re-weighting to test's class shares; "
                f"threshold {s.threshold:.3f}, band {r['gap_band']:.3f}); it carries "
                f"{r['info_train']:.3f} nats about the label in train and {r['info_test']:.3f} "
                f"within test: it {how} ({s.kind}).")
        elif s.kind == "missingness":
            out.append(
                f"{s.feature}: missing values carry the label in train (TV between P(label | "
                f"missing) and P(label | present) {r['missing_tv_train']:.3f}, missing rate "
                f"{r['missing_train']:.3f}) but not in test (TV {r['missing_tv_test']:.3f}, "
                f"missing rate {r['missing_test']:.3f}) (missingness).")
        elif s.kind in ("missing_in_test", "unseen_levels"):
            out.append(_new_values_sentence(next(v for v in d.new_values
                                                 if v.feature == s.feature and v.kind == s.kind)))
        else:
            moved = r.get("conditional_shift")      # NaN when too few rows to check
            own = ("its own relationship with the label changed too"
                   if isinstance(moved, (bool, np.bool_)) and moved
                   else "its own relationship with the label did not change")
            out.append(f"{s.feature}: leaving it out of the proxy closes {s.statistic:.0%} of "
                       f"the transfer gap left at that step, and {own}: it acts jointly with "
                       f"the other suspects (interaction).")
    for r in d.rules:
        if r.name == "missingness_testable" and not r.fired:
            out.append(f"{r.subject}: whether a value is missing carries the label in train (TV "
                       f"{ev.loc[r.subject, 'missing_tv_train']:.3f}), but at train's missing rate "
                       f"test would hold {r.value:.1f} missing rows (fewer than "
                       f"{r.threshold:g}): whether that signal holds in test cannot be checked.")
    if d.proxies:
        last = [r for r in d.rules if r.name == "suspect_closure" and not r.fired][-1:]
        how = (f"leaving them out as well closes at most {last[0].value:.3f} nats of the "
               f"remaining transfer gap (band {last[0].noise_band:.3f})" if last else
               "the suspects close the transfer gap to within noise")
        out.append(f"{', '.join(d.proxies)}: {'its' if len(d.proxies) == 1 else 'their'} own "
                   f"P(label | x) changed too, but only through the suspects: {how}, so "
                   f"{'it is' if len(d.proxies) == 1 else 'they are'} not blamed.")
    if d.shifted_features:
        out.append("Inputs moved: " + ", ".join(
            f"{c} ({ev.loc[c, 'shift_test']} {ev.loc[c, 'shift_effect']:.3f})"
            for c in d.shifted_features) + (" within a class (P(x | y) changed)"
                                            if d.labelled else "") + ".")
    adv = d.adversarial
    tells = ("tells train from test apart" if adv["auc_no_missing"] >= adv["threshold"]
             else "does not tell train from test apart")
    out.append(f"Adversarial validation {tells} with AUC {adv['auc_no_missing']:.3f}"
               + (f" ({adv['auc_without_suspects']:.3f} without the suspects)"
                  if d.suspects else "") + f" (threshold {adv['threshold']:.2f}, missing values "
               f"and levels train never shows hidden).")
    if g is not None:
        if d.suspects and g.outside_noise and g.closed_by_suspects > g.transfer_band:
            out.append(f"Root cause: {', '.join(d.suspect_features)}; removing "
                       f"{'it' if len(d.suspect_features) == 1 else 'them'} closes "
                       f"{g.closed_by_suspects:.3f} of the {g.transfer_gap:.3f} nats transfer "
                       f"gap ({g.residual:.3f} left).")
        elif d.suspects:
            out.append(f"Suspects {', '.join(d.suspect_features)} are named, but the gap is "
                       + ("within noise" if not g.outside_noise else
                          "not measurably closed by removing them") + ": no root cause is claimed.")
        if g.outside_noise and g.transfer_gap <= g.transfer_band and not d.suspects:
            out.append("The train-fitted proxy predicts test as well as a model refitted within "
                       "test, so the accuracy drop comes from where the test rows lie (or from "
                       "the class shares), not from a changed relationship.")
        if "unexplained" in d.verdict.kinds:
            out.append(f"Unexplained: {g.residual:.3f} nats of transfer gap (band "
                       f"{g.transfer_band:.3f}) and an accuracy gap of {g.accuracy_gap:+.3f} "
                       f"are accounted for by no check.")
        if d.verdict.kinds == ("none",):
            out.append(f"No check found a shift; the accuracy gap is {g.accuracy_gap:+.3f} "
                       f"(within noise).")
    elif d.verdict.kinds == ("none",):
        out.append("No label-free check found a shift.")
    return out


# -- synthetic mechanisms -------------------------------------------------------------

SHIFT_KINDS = tuple(k for k in KINDS if k != "unexplained")   # every kind that can be planted
_SYLL = ("ka", "lo", "mi", "ru", "te", "sa", "no", "vi", "be", "do", "zu", "pe", "ra", "fo")


def _word(rng, used):
    while True:
        w = "".join(rng.choice(_SYLL, size=int(rng.integers(2, 4))))
        w += rng.choice(["", "_score", "_count", "_rate", "_type", "_id", "_level"])
        if w not in used:
            used.add(w)
            return w


def make_shift_dataset(kind, seed=0, n_train=3000, n_test=1500):
    """A train/test pair with one planted mechanism on a randomly drawn schema.

    Features are generated from the label (class-conditional, independent given the
    label), so P(y | x) is known; the culprit column (a pair for ``interaction``) is
    drawn at random. Labels are ints, strings or booleans at random.

    Parameters
    ----------
    kind : str
        One of :data:`SHIFT_KINDS`.
    seed : int
    n_train, n_test : int

    Returns
    -------
    train, test : DataFrame
    target : str
    numeric, categorical : list of str
    truth : dict
        ``kind``, ``culprits`` (tuple of the columns a diagnosis must blame; empty for
        none / covariate_shift / prior_shift), ``shifted`` (the moved column of a
        covariate shift) and ``classes``.
    """
    if kind not in SHIFT_KINDS:
        raise ValueError(f"kind must be one of {list(SHIFT_KINDS)}, got {kind!r}")
    rng = np.random.default_rng([seed, SHIFT_KINDS.index(kind)])
    used = set()
    n_num = int(rng.integers(2, 5)) + (1 if kind == "interaction" else 0)
    n_cat = int(rng.integers(1, 3))
    numeric = [_word(rng, used) for _ in range(n_num)]
    categorical = [_word(rng, used) for _ in range(n_cat)]
    target = _word(rng, used)
    k = int(rng.integers(2, 5))
    style = rng.choice(["int", "str", "bool"] if k == 2 else ["int", "str"])
    if style == "int":
        labels = np.sort(rng.choice(np.arange(0, 20), size=k, replace=False))
    elif style == "str":
        labels = np.array(["low", "mid", "high", "top"][:k] if rng.random() < 0.5
                          else [_word(rng, used) for _ in range(k)], dtype=object)
    else:
        labels = np.array([False, True], dtype=object)
    pi = rng.dirichlet(np.full(k, 6.0))
    # class-conditional parameters
    mu = {c: rng.normal(0, rng.uniform(0.4, 0.9), size=k) for c in numeric}
    scale = {c: (rng.uniform(0.5, 50), rng.uniform(-100, 100)) for c in numeric}
    lv = {c: np.array([_word(rng, used) for _ in range(int(rng.integers(3, 6)))], dtype=object)
          for c in categorical}
    lp = {c: rng.dirichlet(np.ones(len(lv[c])) * 1.5, size=k) for c in categorical}
    feats = numeric + categorical
    culprit = [feats[int(rng.integers(len(feats)))]]
    if kind in ("covariate_shift", "missingness"):
        culprit = [numeric[int(rng.integers(n_num))]]
    if kind == "unseen_levels":
        culprit = [categorical[int(rng.integers(n_cat))]]
    if kind == "interaction":
        culprit = [str(c) for c in rng.choice(numeric, size=2, replace=False)]
    c0 = culprit[0]
    if kind in ("relationship_broken", "concept_shift", "covariate_shift", "missing_in_test",
                "unseen_levels"):
        if c0 in numeric:                     # a strong feature
            mu[c0] = np.linspace(-1.5, 1.5, k)[rng.permutation(k)]
        else:
            lp[c0] = rng.dirichlet(np.ones(len(lv[c0])) * 0.3, size=k)

    def draw(n, pi_, mode):
        y = rng.choice(k, size=n, p=pi_)

        def given(c):
            """The labels column c is drawn from: y, except for the culprit of a broken
            (fresh labels) or concept (labels rotated by one) mechanism."""
            if c == c0 and mode == "broken":
                return rng.choice(k, size=n, p=pi_)
            if c == c0 and mode == "concept":
                return np.roll(np.arange(k), 1)[y]
            return y

        cols = {}
        for c in numeric:
            cols[c] = mu[c][given(c)] + rng.normal(size=n)
        for c in categorical:
            yy = given(c)
            u = rng.random(n)[:, None]
            cols[c] = lv[c][(u > np.cumsum(lp[c][yy], axis=1)).sum(1).clip(0, len(lv[c]) - 1)]
        if kind == "interaction":
            a, b = culprit
            s = np.where(np.arange(k) % 2 == 0, 1.0, -1.0)[rng.permutation(k)]
            cols[a] = rng.normal(size=n)
            sign = np.sign(cols[a]) * s[y]
            if mode == "interaction_gone":
                sign = rng.choice([-1.0, 1.0], size=n)
            flip = rng.random(n) < 0.1
            cols[b] = np.abs(rng.normal(size=n)) * np.where(flip, -sign, sign)
        return y, cols

    modes = {"relationship_broken": "broken", "concept_shift": "concept",
             "interaction": "interaction_gone"}
    y_tr, cols_tr = draw(n_train, pi, "train")
    pi_te = pi
    if kind == "prior_shift":
        while True:
            pi_te = rng.dirichlet(np.full(k, 2.0))
            if _tv(pi, pi_te) >= 0.2 and pi_te.min() > 0.03:
                break
    if kind == "covariate_shift":             # test covers only the upper part of c0's range
        cut = np.quantile(cols_tr[c0], rng.uniform(0.3, 0.5))
        ys, cs = [], {c: [] for c in feats}
        while sum(len(v) for v in ys) < n_test:
            y_, c_ = draw(4 * n_test, pi, "test")
            keep = c_[c0] > cut
            ys.append(y_[keep])
            for c in feats:
                cs[c].append(c_[c][keep])
        y_te = np.concatenate(ys)[:n_test]
        cols_te = {c: np.concatenate(v)[:n_test] for c, v in cs.items()}
    else:
        y_te, cols_te = draw(n_test, pi_te, modes.get(kind, "test"))
    frames = []
    for y, cols, part in ((y_tr, cols_tr, "train"), (y_te, cols_te, "test")):
        df = pd.DataFrame({c: cols[c] * scale[c][0] + scale[c][1] if c in numeric else cols[c]
                           for c in feats})
        if kind == "missingness" and part == "train":
            cls = int(np.argmax(pi))          # the most common class goes missing
            rate = rng.uniform(0.05, 0.15) / pi[cls]
            miss = (y == cls) & (rng.random(len(y)) < min(rate, 0.9))
            df.loc[miss, c0] = np.nan
        if kind == "missing_in_test" and part == "test":    # an outage: a random share of rows
            df.loc[rng.random(len(y)) < rng.uniform(0.2, 0.5), c0] = np.nan
        if kind == "unseen_levels" and part == "test":      # renamed, or new levels
            if rng.random() < 0.5:
                style = rng.choice(["upper", "prefix", "suffix"])
                df[c0] = [v.upper() if style == "upper" else f"x_{v}" if style == "prefix"
                          else f"{v} (new)" for v in df[c0]]
            else:
                new = [_word(rng, used) for _ in range(int(rng.integers(1, 4)))]
                hit = rng.random(len(y)) < rng.uniform(0.2, 0.5)
                df.loc[hit, c0] = np.asarray(new, dtype=object)[rng.integers(len(new), size=int(hit.sum()))]
        mcar = [c for c in numeric if c != c0][:1]
        for c in mcar:                        # benign missingness, same rate in both files
            df.loc[rng.random(len(y)) < 0.02, c] = np.nan
        df[target] = labels[y]
        frames.append(df[rng.permutation(list(df.columns)).tolist()] if part == "train"
                      else df[frames[0].columns])
    truth = {"kind": kind, "classes": tuple(labels.tolist()),
             "culprits": tuple(sorted(culprit)) if kind in (
                 "relationship_broken", "concept_shift", "missingness", "interaction",
                 "missing_in_test", "unseen_levels") else (),
             "shifted": (c0,) if kind == "covariate_shift" else ()}
    return frames[0], frames[1], target, numeric, categorical, truth
