"""Tests for ``performance.py``: the accuracy estimate without labels and the DISDE decomposition.

Each mechanism is planted by ``performance.make_case`` (inputs, P(y | x) and the
shift drawn per seed; nothing here knows a feature). Seeds 0-10 were the
development seeds: the measured errors and coverage over seeds never looked at
come from ``bench/performance_check.py`` (seeds 300-329). The file runs in about 10 s.
"""
import dataclasses
import math

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from scipy.optimize import minimize
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

import performance as pf
import shift

N = dict(n_train=5000, n_val=4000, n_test=4000)


def _sharpen(P, factor=2.0):
    """An overconfident model: logits times ``factor``."""
    return pf._softmax(factor * np.log(np.clip(P, 1e-12, 1.0)))


@pytest.fixture(scope="module")
def fitted():
    """Per mechanism: the case (seed 0) and an overconfident logistic model's probabilities."""
    out, model = {}, None
    for mech in pf.MECHANISMS:
        c = pf.make_case(mech, 0, **N)
        if model is None:       # train does not depend on the mechanism: one model serves all
            model = LogisticRegression(max_iter=300).fit(c.X_train, c.y_train)
        out[mech] = (c, _sharpen(model.predict_proba(c.X_val)),
                     _sharpen(model.predict_proba(c.X_test)))
    return out


# -- the pieces against slow references --------------------------------------

def _nll(theta, P, y, bias):
    S = theta[0] * np.log(P)
    if bias:
        S[:, 1:] += theta[1:]
    S -= S.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(S).sum(axis=1)) - S[np.arange(len(y)), y])


@pytest.mark.parametrize("bias", [False, True])
def test_scaling_fit_matches_a_generic_optimiser(bias):
    rng = np.random.default_rng(3)
    P = _sharpen(pf._softmax(rng.normal(size=(600, 4)) * 1.5), 1.7)
    y = np.array([rng.choice(4, p=p) for p in pf._softmax(np.log(P) / 1.7 + [0, .3, 0, -.2])])
    theta = pf._fit_scaling(np.ascontiguousarray(P.T), y, np.ones(len(y)), bias)
    x0 = np.r_[1.0, np.zeros(3)] if bias else np.array([1.0])
    ref = minimize(_nll, x0, args=(P, y, bias), method="Nelder-Mead",
                   options=dict(xatol=1e-9, fatol=1e-12, maxiter=20000)).x
    np.testing.assert_allclose(theta, ref, atol=1e-4)
    assert abs(theta[0] - 1 / 1.7) < 0.15          # undoes the planted overconfidence


def test_weighted_scaling_fit_equals_repeated_rows():
    rng = np.random.default_rng(4)
    P = pf._softmax(rng.normal(size=(300, 3)))
    y = rng.integers(0, 3, 300)
    w = rng.integers(0, 4, 300).astype(float)
    rep = np.repeat(np.arange(300), w.astype(int))
    a = pf._fit_scaling(np.ascontiguousarray(P.T), y, w, True)
    b = pf._fit_scaling(np.ascontiguousarray(P[rep].T), y[rep], np.ones(len(rep)), True)
    np.testing.assert_allclose(a, b, atol=1e-8)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_ml_shares_match_shift_em_priors(k):
    rng = np.random.default_rng(k)
    Q = pf._softmax(rng.normal(size=(3000, k)) * 2)
    pi_from = rng.dirichlet(np.ones(k) * 3)
    start = np.full(k, 1 / k)
    np.testing.assert_allclose(pf._ml_shares(np.ascontiguousarray(Q.T), pi_from, start),
                               shift.em_priors(Q, pi_from), atol=1e-6)


@pytest.mark.parametrize("scale", [1e-3, 0.05])
def test_ml_shares_match_em_when_a_class_vanishes_from_test(scale):
    rng = np.random.default_rng(6)
    Q = pf._softmax(rng.normal(size=(3000, 3)) * 3)
    Q[:, 2] *= scale                      # the test rows hardly look like class 2
    Q /= Q.sum(axis=1, keepdims=True)
    pi_from = np.array([.3, .3, .4])
    ref = shift.em_priors(Q, pi_from, tol=1e-12, max_iter=100_000)
    np.testing.assert_allclose(pf._ml_shares(np.ascontiguousarray(Q.T), pi_from, pi_from), ref,
                               atol=1e-7)


def test_predicted_proba_reweighting_matches_prior_correction():
    rng = np.random.default_rng(5)
    Q = pf._softmax(rng.normal(size=(50, 3)))
    a, b = np.array([.5, .3, .2]), np.array([.2, .3, .5])
    pred = Q.argmax(axis=1)
    ref = shift.prior_correction(Q, a, b)[np.arange(50), pred]
    np.testing.assert_allclose(pf._predicted_proba(np.ascontiguousarray(Q.T), pred, a, b), ref)


def test_terms_by_hand():
    # validation losses 1, 2, 3 with ratios 0.5, 1, 30 (the last is outside a support of 20);
    # test losses 2, 4, 9 with ratios 1, 2, 25 (the last is unseen)
    tot, cov, cond, uns, share = pf._terms(np.array([1., 2., 3.]), np.array([.5, 1., 30.]),
                                           np.array([2., 4., 9.]), np.array([1., 2., 25.]), 20.0)
    a = (0.5 * 1 + 1 * 2) / 1.5          # validation re-weighted to test's shared inputs
    b = (2 + 4) / 2                      # test on its shared inputs
    assert math.isclose(cov, a - 2) and math.isclose(cond, b - a) and math.isclose(uns, 5 - b)
    assert math.isclose(tot, 5 - 2) and math.isclose(share, 1 / 3)
    assert math.isclose(cov + cond + uns, tot)


# -- B: the decomposition on planted mechanisms ------------------------------

@pytest.fixture(scope="module")
def decomposed(fitted):
    return {m: pf.decompose_predictions(c.X_val, c.y_val, Pv, c.X_test, c.y_test, Pt,
                                        seed=0, n_boot=100)
            for m, (c, Pv, Pt) in fitted.items() if m != "prior"}


def _share(d, term):
    return getattr(d, term).value / d.total.value


def test_terms_add_up_to_the_total(decomposed):
    for r in decomposed.values():
        for d in (r.accuracy, r.log_loss):
            assert math.isclose(d.covariate.value + d.conditional.value + d.unseen.value,
                                d.total.value, abs_tol=1e-12)
            assert math.isclose(d.total.value, d.test - d.validation, abs_tol=1e-12)


# the covariate term is only as good as the estimated density ratio: an under-fitted
# domain classifier leaves part of a covariate shift in the conditional term
@pytest.mark.parametrize("mech, term, least", [("covariate", "covariate", 0.6),
                                               ("conditional", "conditional", 0.8),
                                               ("unseen", "unseen", 0.8)])
def test_planted_mechanism_lands_in_its_term(decomposed, mech, term, least):
    for d in (decomposed[mech].accuracy, decomposed[mech].log_loss):
        assert d.total.excludes_zero()
        assert getattr(d, term).excludes_zero()
        assert _share(d, term) > least, (d.metric, _share(d, term))


def test_unseen_rows_are_found(fitted, decomposed):
    c = fitted["unseen"][0]
    ratio = decomposed["unseen"].ratio
    flagged = ratio.test > ratio.threshold
    assert (flagged == c.unseen).mean() > 0.97
    for m in ("none", "covariate", "conditional"):
        assert decomposed[m].accuracy.unseen_share.value < 0.01


def test_no_shift_control_has_every_term_within_noise_of_zero(decomposed):
    r = decomposed["none"]
    assert abs(r.ratio.auc - 0.5) < 0.03
    for d in (r.accuracy, r.log_loss):
        for term in ("total", "covariate", "conditional", "unseen"):
            assert not getattr(d, term).excludes_zero(), (d.metric, term)


def test_decompose_is_deterministic_for_a_seed(fitted):
    c, Pv, Pt = fitted["covariate"]
    a, b = (pf.decompose_predictions(c.X_val, c.y_val, Pv, c.X_test, c.y_test, Pt, seed=1,
                                     n_boot=20, n_refit=2) for _ in range(2))
    assert a.accuracy == b.accuracy and a.log_loss == b.log_loss


# -- C: the sentence ----------------------------------------------------------

def _est(v, hw):
    return pf.Estimate(v, hw / 1.96, v - hw, v + hw)


def _decomposition(total, cov, cond, uns, hw=0.02, higher=True, share=0.1):
    return pf.Decomposition(
        metric="accuracy" if higher else "log loss", higher_is_better=higher, validation=0.85,
        test=0.85 + total, total=_est(total, hw), covariate=_est(cov, hw),
        conditional=_est(cond, hw), unseen=_est(uns, hw), unseen_share=_est(share, 0.01),
        threshold=20.0, domain_auc=0.7, level=0.95, n_val=10, n_test=10, n_boot=10, n_refit=2)


def test_sentence_is_written_from_the_numbers():
    s = _decomposition(-0.44, -0.05, -0.38, -0.01).sentence()
    assert s.startswith("Of the 0.44 ± 0.02 fall in accuracy from validation (0.85) to test "
                        "(0.41) (worse on test), 0.05 ± 0.02 comes from inputs that moved")
    assert "0.38 ± 0.02 from a changed relationship" in s
    assert "0.01 ± 0.02 from inputs train rarely or never showed (10% of test rows)." in s
    s = _decomposition(0.31, 0.30, 0.02, -0.01, higher=False, share=0.004).sentence()
    assert "0.31 ± 0.02 rise in log loss" in s and "(worse on test)" in s
    assert "-0.01 ± 0.02 from inputs train" in s and "(0.4% of test rows)" in s
    s = _decomposition(0.004, 0.001, 0.003, 0.0, hw=0.01).sentence()
    assert "within noise of no change" in s and "-0.00" not in s
    s = _decomposition(-0.004, 0.15, -0.154, 0.0, hw=0.00401).sentence()   # no direction: test minus validation
    assert s.startswith("Of the -0.004 ± 0.004 change in accuracy") and "signed as test minus validation" in s
    assert "0.150 ± 0.004 comes from inputs that moved" in s and "-0.154 ± 0.004 from a changed" in s
    s = _decomposition(0.05, 0.05, 0.0, 0.0, hw=0.002).sentence()
    assert "0.050 ± 0.002 rise in accuracy" in s and "(better on test)" in s


def test_sentence_of_a_real_decomposition(decomposed):
    d = decomposed["conditional"].accuracy
    s = d.sentence()
    assert f"{abs(d.total.value):.2f}" in s and f"{-d.conditional.value:.2f}" in s


# -- A: the accuracy estimate --------------------------------------------------

@pytest.mark.parametrize("mech, kw", [("none", {}), ("prior", {"priors_test": "em"}),
                                      ("covariate", {"ratio": True})])
def test_accuracy_estimate_within_three_points(fitted, mech, kw):
    c, Pv, Pt = fitted[mech]
    if kw.get("ratio"):
        kw = dict(ratio=pf.fit_density_ratio(c.X_val, c.X_test, P_val=Pv, P_test=Pt, seed=0))
    e = pf.estimate_accuracy(Pv, c.y_val, Pt, seed=0, n_boot=100, **kw)
    truth = np.mean(Pt.argmax(axis=1) == c.y_test)
    assert abs(e.estimate - truth) < 0.03, (mech, e.estimate, truth)
    assert e.low < e.estimate < e.high and e.high - e.low < 0.1
    assert abs(e.uncalibrated - truth) > 0.05      # the raw confidence is overconfident
    assert e.calibration != "none"


@pytest.mark.parametrize("mech, chosen", [("prior", "em"), ("covariate", "none"), ("none", "em")])
def test_auto_priors_follow_what_explains_the_test_inputs(fitted, mech, chosen):
    c, Pv, Pt = fitted[mech]
    r = pf.fit_density_ratio(c.X_val, c.X_test, P_val=Pv, P_test=Pt, seed=0)
    e = pf.estimate_accuracy(Pv, c.y_val, Pt, ratio=r, priors_test="auto", n_boot=50)
    assert e.priors_source == chosen, (e.label_shift_gap, e.label_shift_band)
    assert e.weighted == (chosen == "none")      # shares moved: Bayes' rule, not weights
    assert abs(e.estimate - np.mean(Pt.argmax(axis=1) == c.y_test)) < 0.03
    assert ("class shares alone explains" in e.sentence()) == (chosen == "em")


def test_given_priors_equal_to_validation_change_nothing(fitted):
    c, Pv, Pt = fitted["none"]
    a = pf.estimate_accuracy(Pv, c.y_val, Pt, calibration="temperature", n_boot=20)
    b = pf.estimate_accuracy(Pv, c.y_val, Pt, calibration="temperature", n_boot=20,
                             priors_test=np.array(a.priors_val) / sum(a.priors_val))
    assert math.isclose(a.estimate, b.estimate, abs_tol=1e-9)
    assert b.priors_source == "given" and a.priors_test is None


def test_unseen_share_is_reported_with_a_ratio(fitted):
    c, Pv, Pt = fitted["unseen"]
    r = pf.fit_density_ratio(c.X_val, c.X_test, P_val=Pv, P_test=Pt, n_refit=2, seed=0)
    e = pf.estimate_accuracy(Pv, c.y_val, Pt, ratio=r, n_boot=20)
    assert abs(e.unseen_share - c.unseen.mean()) < 0.03
    assert "of test rows lie where train has (almost) no rows" in e.sentence()


def test_an_accuracy_and_its_interval_stay_within_0_and_1():
    """An underconfident model, always right on validation though only 55% sure, and sure on
    test: the calibration's leftover error (+0.45) pushed the estimate and its replicates
    above 100% before they were bounded."""
    rng = np.random.default_rng(0)
    Pv = np.full((40, 2), 0.45)
    Pv[np.arange(40), rng.integers(0, 2, 40)] = 0.55
    yv = Pv.argmax(axis=1)                                   # every validation row right
    Pt = np.full((500, 2), 0.02)
    Pt[:, 0] = 0.98
    e = pf.estimate_accuracy(Pv, yv, Pt, calibration="none", n_boot=50)
    assert e.correction == pytest.approx(0.45)
    assert e.estimate == 1.0 and e.low <= e.high == 1.0


def test_calibrator_choice_prefers_a_calibrator_for_an_overconfident_model(fitted):
    c, Pv, _ = fitted["none"]
    name, scores = pf.choose_calibrator(Pv, c.y_val)
    assert name != "none" and [s[0] for s in scores] == list(pf.CALIBRATORS)
    assert dict(scores)[name] < dict(scores)["none"]


# -- errors a person can act on ------------------------------------------------

def test_bad_inputs_raise_with_a_hint(fitted):
    c, Pv, Pt = fitted["none"]
    with pytest.raises(ValueError, match="P_test has 2 columns but P_val has 3"):
        pf.estimate_accuracy(Pv, c.y_val, Pt[:, :2])
    with pytest.raises(ValueError, match="y_val has class indices outside 0..2"):
        pf.estimate_accuracy(Pv, c.y_val + 1, Pt)
    with pytest.raises(ValueError, match="priors_test must be 3 non-negative shares summing to 1"):
        pf.estimate_accuracy(Pv, c.y_val, Pt, priors_test=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="priors_test must be None, 'em', 'auto' or an array"):
        pf.estimate_accuracy(Pv, c.y_val, Pt, priors_test="bbse")
    with pytest.raises(ValueError, match="priors_test='auto' .* pass ratio=fit_density_ratio"):
        pf.estimate_accuracy(Pv, c.y_val, Pt, priors_test="auto")
    with pytest.raises(ValueError, match="calibration must be None or one of"):
        pf.estimate_accuracy(Pv, c.y_val, Pt, calibration="platt")
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        pf.estimate_accuracy(Pv, c.y_val, Pt, n_boot=0)
    with pytest.raises(ValueError, match="level must be in"):
        pf.estimate_accuracy(Pv, c.y_val, Pt, level=95)
    with pytest.raises(ValueError, match="must be finite and non-negative"):
        pf.estimate_accuracy(np.where(Pv > 0.5, np.nan, Pv), c.y_val, Pt)
    with pytest.raises(ValueError, match="threshold must be a finite number > 1"):
        pf.fit_density_ratio(c.X_val, c.X_test, threshold=0.5)
    with pytest.raises(ValueError, match="same number of columns"):
        pf.fit_density_ratio(c.X_val, c.X_test[:, :3])
    with pytest.raises(ValueError, match="pass both P_val and P_test"):
        pf.fit_density_ratio(c.X_val, c.X_test, P_val=Pv)
    small = pf.fit_density_ratio(c.X_val[:100], c.X_test[:100], n_refit=0)
    with pytest.raises(ValueError, match="ratio was fitted on 100 validation and 100 test rows"):
        pf.estimate_accuracy(Pv, c.y_val, Pt, ratio=small)
    with pytest.raises(ValueError, match="values_val and values_test must be one value per row"):
        pf.decompose(c.X_val, np.ones(3), c.X_test, np.ones(len(c.X_test)), ratio=small)
    with pytest.raises(ValueError, match="mechanism must be one of"):
        pf.make_case("label_noise")


def test_results_are_frozen(fitted):
    c, Pv, Pt = fitted["none"]
    e = pf.estimate_accuracy(Pv, c.y_val, Pt, n_boot=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.estimate = 1.0


def test_density_ratio_scores_in_pieces_and_keeps_float32(monkeypatch):
    """The domain classifier scores at most ``PREDICT_CHUNK`` rows at once (a file of millions
    of rows is not copied whole) with the same numbers, and float32 inputs give the ratio of
    the same values in float64 without a float64 copy of the file."""
    rng = np.random.default_rng(5)
    Xv = rng.normal(size=(900, 4)).astype(np.float32)
    Xt = (rng.normal(size=(700, 4)) + [0.8, 0, 0, 0]).astype(np.float32)
    whole = pf.fit_density_ratio(Xv.astype(np.float64), Xt.astype(np.float64), n_refit=1, seed=3)
    seen = []
    original = HistGradientBoostingClassifier.predict_proba

    def spy(self, X):
        seen.append((len(X), X.dtype))
        return original(self, X)

    monkeypatch.setattr(HistGradientBoostingClassifier, "predict_proba", spy)
    monkeypatch.setattr(pf, "PREDICT_CHUNK", 128)
    pieces = pf.fit_density_ratio(Xv, Xt, n_refit=1, seed=3)
    assert seen and max(n for n, _ in seen) <= 128 and {d for _, d in seen} == {np.dtype(np.float32)}
    for name in ("val", "test", "val_refits", "test_refits"):
        assert_array_equal(getattr(pieces, name), getattr(whole, name))
    assert pieces.auc == whole.auc


@pytest.mark.parametrize("chunk", [7, 1 << 18])
def test_domain_auc_counts_ordered_pairs_in_pieces(monkeypatch, chunk):
    """``performance._auc`` (pair counts, ties half, in pieces of the first file's rows) is
    scikit-learn's ROC AUC to rounding, ties included; the odds keep their formula's bits."""
    from sklearn.metrics import roc_auc_score
    monkeypatch.setattr(pf, "PREDICT_CHUNK", chunk)
    rng = np.random.default_rng(11)
    for _ in range(40):
        n0, n1 = (int(v) for v in rng.integers(1, 600, 2))
        neg, pos = rng.normal(size=n0), rng.normal(rng.random(), size=n1)
        if rng.random() < 0.5:                     # many ties
            neg, pos = np.round(neg, 1), np.round(pos, 1)
        want = roc_auc_score(np.r_[np.zeros(n0), np.ones(n1)], np.r_[neg, pos])
        assert pf._auc(neg, pos) == pytest.approx(want, abs=1e-12)
    assert pf._auc(np.zeros(3), np.ones(2)) == 1.0 and pf._auc(np.ones(3), np.ones(2)) == 0.5
    p = rng.random(1000)
    p[:3] = [0.0, 1.0, 0.5]
    q = np.clip(p, 1e-6, 1 - 1e-6)
    assert_array_equal(pf._odds(p), q / (1 - q))


@pytest.mark.parametrize("failure", ["singular", "nan"])
def test_ml_shares_finish_with_em_when_newton_cannot_be_solved(monkeypatch, failure):
    """Classes a small fitting split never had get a share of 1e-12, which makes their
    rows of A 1e12 times the others and Newton's Hessian singular (20 classes on 700 rows
    stopped Part D with LinAlgError). Then EM finishes from where Newton was: its fixed
    point, a distribution, and no error."""
    rng = np.random.default_rng(4)
    k = 5
    Q = rng.dirichlet(np.ones(k) * 2.0, size=400)
    pi_from = np.array([0.3, 0.2, 0.2, 0.2, 0.1])

    def solve(a, b):
        if failure == "singular":
            raise np.linalg.LinAlgError("Singular matrix")
        return np.full(len(b), np.nan)

    monkeypatch.setattr(pf.np.linalg, "solve", solve)
    got = pf._ml_shares(np.ascontiguousarray(Q.T), pi_from, pi_from)
    monkeypatch.undo()
    ref = shift.em_priors(Q, pi_from, tol=1e-12, max_iter=100000)
    assert np.all(got >= 0) and got.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(got, ref, atol=1e-6)
