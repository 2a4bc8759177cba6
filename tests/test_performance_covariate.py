"""The accuracy estimate under covariate shift: the density ratio's under-correction
(``performance.RATIO_ATTENUATION``) in the estimate and in its interval.

Covariate cases of ``performance.make_case`` at a small size (5,000 training, 4,000
validation and 4,000 test rows) with an overconfident logistic model, development
seeds only (6-8: the seeds of 0-10 where the estimate before the band was more than
3 points off and its interval missed the labels' accuracy). Held-out figures come
from ``bench/performance_check.py``. About 5 s.
"""
import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import performance as pf

N = dict(n_train=5000, n_val=4000, n_test=4000)


def _case(seed):
    """(validation labels, P_val, P_test, ratio, accuracy the test labels show)."""
    c = pf.make_case("covariate", seed, **N)
    m = LogisticRegression(max_iter=300).fit(c.X_train, c.y_train)
    sharpen = lambda P: pf._softmax(2.0 * np.log(np.clip(P, 1e-12, 1.0)))  # noqa: E731
    Pv, Pt = sharpen(m.predict_proba(c.X_val)), sharpen(m.predict_proba(c.X_test))
    r = pf.fit_density_ratio(c.X_val, c.X_test, P_val=Pv, P_test=Pt, seed=0, n_refit=2)
    return c.y_val, Pv, Pt, r, float(np.mean(Pt.argmax(axis=1) == c.y_test))


@pytest.fixture(scope="module")
def cases():
    return {seed: _case(seed) for seed in (6, 7, 8)}


@pytest.mark.parametrize("seed", [7, 8])
def test_covariate_estimate_within_three_points(cases, seed, monkeypatch):
    yv, Pv, Pt, r, truth = cases[seed]
    e = pf.estimate_accuracy(Pv, yv, Pt, ratio=r, priors_test="auto", seed=0, n_boot=100)
    assert e.weighted and e.priors_source == "none"
    assert abs(e.estimate - truth) <= 0.03, (e.estimate, truth)
    # without the band (the estimate before it) the ratio's weights under-correct: > 3 points high
    monkeypatch.setattr(pf, "RATIO_ATTENUATION", (0.0, 0.0))
    raw = pf.estimate_accuracy(Pv, yv, Pt, ratio=r, priors_test="auto", seed=0, n_boot=100)
    assert raw.estimate - truth > 0.03, (raw.estimate, truth)


def test_interval_covers_the_labels_where_it_missed_before(cases, monkeypatch):
    for seed, (yv, Pv, Pt, r, truth) in cases.items():
        e = pf.estimate_accuracy(Pv, yv, Pt, ratio=r, priors_test="auto", seed=0, n_boot=100)
        assert e.low <= truth <= e.high, (seed, e.low, truth, e.high)
    monkeypatch.setattr(pf, "RATIO_ATTENUATION", (0.0, 0.0))
    missed = 0
    for yv, Pv, Pt, r, truth in cases.values():
        raw = pf.estimate_accuracy(Pv, yv, Pt, ratio=r, priors_test="auto", seed=0, n_boot=100)
        missed += not raw.low <= truth <= raw.high
    assert missed == len(cases)


def test_the_correction_is_the_middle_of_the_band_times_the_change(cases, monkeypatch):
    yv, Pv, Pt, r, _ = cases[8]
    e = pf.estimate_accuracy(Pv, yv, Pt, ratio=r, seed=0, n_boot=50)
    lo, hi = pf.RATIO_ATTENUATION
    monkeypatch.setattr(pf, "RATIO_ATTENUATION", (0.0, 0.0))
    raw = pf.estimate_accuracy(Pv, yv, Pt, ratio=r, seed=0, n_boot=50)
    change = raw.estimate - raw.validation_accuracy
    assert change < 0 and raw.ratio_correction == 0.0
    assert math.isclose(e.ratio_correction, (lo + hi) / 2 * change, rel_tol=1e-12)
    assert math.isclose(e.estimate, raw.estimate + e.ratio_correction, rel_tol=1e-12)
    # the band is drawn per replicate: it widens the interval on the side of the change
    assert e.low < raw.low and e.high - e.low > raw.high - raw.low
    assert "enlarged by" in e.sentence() and "enlarged by" not in raw.sentence()


def test_no_band_without_weights(cases):
    """EM's class shares or no ratio: validation is not weighted, so nothing is moved."""
    yv, Pv, Pt, r, _ = cases[8]
    for kw in ({}, {"priors_test": "em"}, {"ratio": r, "priors_test": "em"}):
        e = pf.estimate_accuracy(Pv, yv, Pt, seed=0, n_boot=20, **kw)
        assert not e.weighted and e.ratio_correction == 0.0
