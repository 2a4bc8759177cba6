"""Tests for the EDA tables and the argument checks shared with ``shift.diagnose``.

Every test builds its own small frames; the label depends on ``num_0`` and
``cat_0`` only. Shortcuts and shifts are planted where the test says, so the
expected verdicts are known. The shift diagnosis itself is tested in
tests/test_shift.py and tests/test_partd.py.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import shift  # noqa: E402
from eda import (  # noqa: E402
    class_distribution, correlation_pairs, dominance, missing_table, predictive_power,
    structure_table)
from prep import to_jsonable  # noqa: E402

NUMERIC = ["num_0", "num_1", "num_2", "num_3"]
CATEGORICAL = ["cat_0", "cat_1"]
TARGET = "label"
CAT0 = np.array(["a", "b", "c", "d"], dtype=object)
CAT1 = np.array(["x", "y", "z"], dtype=object)


def _frame(n, rng, num0_shift=0.0):
    """n rows; label in {0, 1, 2} from num_0 and cat_0 plus noise."""
    X = rng.normal(size=(n, 4))
    X[:, 0] += num0_shift
    c0 = rng.integers(0, 4, size=n)
    c1 = rng.integers(0, 3, size=n)
    latent = 1.2 * X[:, 0] + np.array([-1.5, -0.5, 0.5, 1.5])[c0] + 0.5 * rng.normal(size=n)
    y = np.digitize(latent, [-0.8, 0.8])
    df = pd.DataFrame(X, columns=NUMERIC)
    df["cat_0"], df["cat_1"], df[TARGET] = CAT0[c0], CAT1[c1], y
    return df


def _shortcut_values(y, kind, rng):
    """A column tied to the label y (numeric: y + small noise; categorical: level y w.p. 0.9)."""
    if kind == "numeric":
        return y + 0.3 * rng.normal(size=len(y))
    levels = np.array(["p", "q", "r", "s"], dtype=object)
    keep = rng.random(len(y)) < 0.9
    return np.where(keep, levels[y], levels[rng.integers(0, 4, size=len(y))])


def make_pair(n_train=2000, n_test=1000, seed=0, shortcut=None, num0_shift=0.0,
              train_nan=None):
    """Train/test frames from one generator.

    shortcut: column overwritten by a label-tied value in train and by the same
    construction, then shuffled (independent of the label, same marginal), in test.
    num0_shift: covariate shift of num_0 in test (the label rule is unchanged).
    train_nan: (column, share) set missing in train only.
    """
    rng = np.random.default_rng(seed)
    train, test = _frame(n_train, rng), _frame(n_test, rng, num0_shift)
    if shortcut is not None:
        kind = "numeric" if shortcut in NUMERIC else "categorical"
        train[shortcut] = _shortcut_values(train[TARGET].to_numpy(), kind, rng)
        test[shortcut] = rng.permutation(_shortcut_values(test[TARGET].to_numpy(), kind, rng))
    if train_nan is not None:
        col, share = train_nan
        train.loc[rng.random(n_train) < share, col] = np.nan
    return train, test


# -- Part A ----------------------------------------------------------------

def test_class_distribution_by_hand():
    y = ["b", "a", "b", "c", "b", "a", "b", "b"]            # a:2 b:5 c:1
    cd = class_distribution(y)
    assert cd["table"]["count"].tolist() == [2, 5, 1]
    np.testing.assert_allclose(cd["table"]["share"], [0.25, 0.625, 0.125])
    assert cd["majority_class"] == "b" and cd["minority_class"] == "c"
    assert cd["imbalance_ratio"] == pytest.approx(5.0)
    assert cd["majority_baseline_accuracy"] == pytest.approx(0.625)
    assert cd["n_classes"] == 3 and cd["imbalanced"]
    assert not class_distribution([0, 1, 0, 1])["imbalanced"]


def test_correlation_pairs_finds_planted_pair_and_skips_constant():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 5))
    X[:, 3] = -0.9 * X[:, 1] + 0.2 * rng.normal(size=500)  # planted, r ~ -0.98
    X[:, 4] = 3.0                                           # constant
    names = ["f0", "f1", "f2", "f3", "f4"]
    corr, pairs = correlation_pairs(X, names, threshold=0.5)
    assert pairs[["feature_a", "feature_b"]].values.tolist() == [["f1", "f3"]]
    assert pairs["r"].iloc[0] < -0.95
    assert corr.loc["f1", "f3"] == pytest.approx(np.corrcoef(X[:, 1], X[:, 3])[0, 1])
    assert corr["f4"].isna().all()
    np.testing.assert_allclose(np.diag(corr.values)[:4], 1.0)
    _, none = correlation_pairs(X, names, threshold=0.99)
    assert len(none) == 0


def test_predictive_power_ranks_drivers_and_noise():
    train, _ = make_pair(n_train=2000, n_test=200, seed=3)
    pp = predictive_power(train, TARGET, NUMERIC, CATEGORICAL)
    assert set(pp.index[:2]) == {"num_0", "cat_0"}
    assert pp.loc["num_0", "pps"] > 0.2 and pp.loc["cat_0", "pps"] > 0.2
    for noise in ["num_1", "num_2", "num_3", "cat_1"]:
        assert pp.loc[noise, "pps"] < 0.1
        assert pp.loc[noise, "mutual_info"] < pp.loc["cat_0", "mutual_info"]
    assert (pp["score"] == "balanced").all()
    assert not dominance(pp)["dominant"]                    # 2 drivers, ratio < 2
    acc = predictive_power(train, TARGET, NUMERIC, CATEGORICAL, score="accuracy")
    np.testing.assert_allclose(
        acc["pps"], np.maximum(0, (acc["accuracy"] - acc["baseline"]) / (1 - acc["baseline"])))


def test_dominance_flags_planted_dominant_feature():
    rng = np.random.default_rng(9)
    train, _ = make_pair(n_train=2000, n_test=200, seed=9, shortcut="cat_1")
    train["num_0"] = rng.permutation(train["num_0"].to_numpy())  # leave cat_0 as the only driver
    pp = predictive_power(train, TARGET, NUMERIC, CATEGORICAL)
    assert pp.index[0] == "cat_1" and pp.loc["cat_1", "pps"] > 0.7
    dom = dominance(pp)
    assert dom["dominant"] and dom["feature"] == "cat_1" and dom["runner_up"] == "cat_0"
    assert dom["observed_ratio"] >= 2.0


def test_dominance_rule_on_hand_table():
    t = pd.DataFrame({"pps": [0.5, 0.2, 0.1]}, index=["a", "b", "c"])
    assert dominance(t)["dominant"] and dominance(t)["observed_ratio"] == pytest.approx(2.5)
    assert not dominance(t, ratio=3.0)["dominant"]
    assert not dominance(t, min_pps=0.6)["dominant"]


def test_structure_table_kinds_and_counts():
    df = pd.DataFrame({"n": [1.0, np.nan, 3.0, 3.0], "c": ["u", "v", None, "u"],
                       "y": [0, 1, 0, 1]})
    st = structure_table(df, "y")
    assert st["kind"].tolist() == ["numeric", "categorical", "target"]
    assert st["n_missing"].tolist() == [1, 1, 0]
    assert st["n_unique"].tolist() == [2, 2, 2]
    assert (st["n_rows"] == 4).all()


def test_to_jsonable_converts_numpy_and_nan():
    obj = {"a": np.float64(np.nan), "b": np.int64(3), "c": np.array([1.5, np.inf]),
           "d": pd.DataFrame({"x": [1.0, np.nan]}, index=pd.Index(["r1", "r2"], name="f")),
           "e": np.bool_(True)}
    out = to_jsonable(obj)
    assert out == {"a": None, "b": 3, "c": [1.5, None],
                   "d": [{"f": "r1", "x": 1.0}, {"f": "r2", "x": None}], "e": True}
    json.dumps(out, allow_nan=False)


# -- bad arguments -----------------------------------------------------------

def test_bad_arguments_raise_actionable_errors():
    train, test = make_pair(n_train=200, n_test=100, seed=0)
    with pytest.raises(ValueError, match=r"numeric column\(s\) \['nope'\] not found in train"):
        shift.diagnose(train, test, TARGET, NUMERIC + ["nope"], CATEGORICAL)
    with pytest.raises(ValueError, match=r"categorical column\(s\) \['nope'\] not found in test"):
        shift.diagnose(train.assign(nope="u"), test, TARGET, NUMERIC, CATEGORICAL + ["nope"])
    with pytest.raises(ValueError, match="target column 'price' not found in df"):
        predictive_power(train, "price", NUMERIC, CATEGORICAL)
    with pytest.raises(ValueError, match="target 'label' is also listed as a feature"):
        predictive_power(train, TARGET, NUMERIC + [TARGET], CATEGORICAL)
    with pytest.raises(ValueError, match="appear in both numeric= and categorical="):
        shift.diagnose(train, test, TARGET, NUMERIC, CATEGORICAL + ["num_0"])
    with pytest.raises(ValueError, match="numeric column 'cat_0' in train has non-numeric"):
        shift.diagnose(train, test, TARGET, NUMERIC + ["cat_0"], ["cat_1"])
    with pytest.raises(ValueError, match="cv must be an integer >= 2"):
        predictive_power(train, TARGET, NUMERIC, CATEGORICAL, cv=1)
    with pytest.raises(ValueError, match="target 'label' in train has 1 missing"):
        shift.diagnose(train.assign(label=[np.nan] + [0] * 199), test, TARGET, NUMERIC, CATEGORICAL)
    with pytest.raises(ValueError, match="feature_names has 2 names but X has 3 columns"):
        correlation_pairs(np.zeros((5, 3)), ["a", "b"])
    with pytest.raises(ValueError, match=r"X has NaN/inf in columns \['b'\]; impute"):
        correlation_pairs(np.array([[0.0, np.nan], [1.0, 2.0]]), ["a", "b"])
    with pytest.raises(ValueError, match="no features given"):
        shift.diagnose(train, test, TARGET, [], [])
    with pytest.raises(ValueError, match="val_rows must be distinct positions"):
        shift.diagnose(train, test, TARGET, NUMERIC, CATEGORICAL, val_rows=[0, 0, 1])
