"""Tests for the shift diagnosis's third round (``shift.py``): what train never showed,
label-free priors from a calibrated model, prior shift beside other moves, noise bands
with the proxy's own variance, too few expected missing rows, one sentence per kind.

Every case is planted on a randomly drawn schema (``shift.make_shift_dataset`` or a
helper here) with a randomly drawn culprit, and each test failed on the code before
its change (said in its docstring).
"""
import numpy as np
import pandas as pd
import pytest

import shift


def _rule(d, name, subject=None):
    return [r for r in d.rules if r.name == name and (subject is None or r.subject == subject)]


# -- 5. too few expected missing rows ------------------------------------------------

def _rare_missingness(seed, n_missing, n_train=5000, n_test=240):
    """Train: ``n_missing`` rows of one class lose a random numeric column's value (a
    missingness signal); test: the same mechanism at the same rate (nothing changed)."""
    tr, te, target, num, cat, _ = shift.make_shift_dataset("none", seed, n_train, n_test)
    rng = np.random.default_rng(seed)
    clean = [c for c in num if not tr[c].isna().any()]     # (the generator's MCAR column aside)
    col = clean[int(rng.integers(len(clean)))]
    cls = tr[target].value_counts().index[-1]          # the rarest class: a strong signal
    rate = n_missing / int((tr[target] == cls).sum())
    tr, te = tr.copy(), te.copy()
    rows = rng.choice(np.flatnonzero(tr[target] == cls), n_missing, replace=False)
    tr.loc[tr.index[rows], col] = np.nan
    te.loc[(te[target] == cls) & (rng.random(len(te)) < rate), col] = np.nan
    return tr, te, target, num, cat, col


@pytest.mark.parametrize("seed", [0, 1])
def test_too_few_expected_missing_rows_cannot_be_checked(seed):
    """13 missing train rows and 240 test rows: 0.6 missing test rows expected. The old
    code read the absence of missing test rows as 'the signal is gone' (missingness)."""
    tr, te, target, num, cat, col = _rare_missingness(seed, 13)
    d = shift.diagnose(tr, te, target, num, cat, seed=0)
    assert _rule(d, "missingness_signal", col)[0].fired
    assert "missingness" not in d.verdict.kinds and col not in d.suspect_features
    testable = _rule(d, "missingness_testable", col)[0]
    assert not testable.fired and testable.value < 1.0
    assert not _rule(d, "missingness_gone", col)
    assert any(line.startswith(f"{col}: whether a value is missing carries the label in train")
               and "cannot be checked" in line for line in shift.explain(d))


def test_enough_expected_missing_rows_are_checked():
    """The control: 400 missing train rows, test at the same rate (~19 expected)."""
    tr, te, target, num, cat, col = _rare_missingness(2, 400)
    d = shift.diagnose(tr, te, target, num, cat, seed=0)
    assert _rule(d, "missingness_testable", col)[0].fired
    assert not _rule(d, "missingness_gone", col)[0].fired
    assert "missingness" not in d.verdict.kinds
