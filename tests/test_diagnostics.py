"""Tests for the EDA tables and the train/test shift diagnostics.

Every test builds its own small frames; the label depends on ``num_0`` and
``cat_0`` only. Shortcuts and shifts are planted where the test says, so the
expected verdicts are known.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prep import (  # noqa: E402
    adversarial_validation, class_distribution, correlation_pairs, diagnose, dominance,
    feature_shift, label_shift, missing_table, predictive_power, structure_table,
    to_jsonable)

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


# -- Part D: the planted shortcut is named, and only it -----------------------

@pytest.mark.parametrize("kind", ["numeric", "categorical"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_diagnose_names_planted_shortcut(seed, kind):
    rng = np.random.default_rng(100 + seed)
    col = str(rng.choice(NUMERIC if kind == "numeric" else CATEGORICAL))
    train, test = make_pair(n_train=1500, n_test=800, seed=seed, shortcut=col)
    res = diagnose(train, test, TARGET, NUMERIC, CATEGORICAL, seed=seed, cv=3, max_iter=20)
    assert res["suspect_features"] == [col]
    ev = res["evidence"]
    assert ev.loc[col, "pps_train"] > 0.6
    assert ev.loc[col, "pps_test"] < 0.1
    assert ev.loc[col, "transfer_pps"] < 0.1
    # same marginal: the marginal test must not be what finds it
    assert not ev.loc[col, "shifted"]
    assert res["summary"]["suspect_features"] == [col]
    assert any(line.startswith(f"{col}: predictive power") for line in res["explanation"])
    json.dumps(to_jsonable(res))                            # everything serialises


def test_flipped_mapping_is_caught_by_transfer_not_by_marginals():
    # cat_1 encodes the label in both files, but through a different level map in test
    train, test = make_pair(n_train=1500, n_test=1000, seed=21)
    rng = np.random.default_rng(21)
    levels = np.array(["p", "q", "r"], dtype=object)
    train["cat_1"] = levels[train[TARGET].to_numpy()]
    test["cat_1"] = levels[(test[TARGET].to_numpy() + 1) % 3]
    flip = rng.random(len(test)) < 0.1                      # a little noise in test
    test.loc[flip, "cat_1"] = levels[rng.integers(0, 3, size=int(flip.sum()))]
    ls = label_shift(train, test, TARGET, NUMERIC, CATEGORICAL, cv=3)
    r = ls.loc["cat_1"]
    assert r["pps_train"] > 0.9 and r["pps_test"] > 0.7     # still predictive in test ...
    assert r["pps_drop"] < 0.2                              # ... so the pps drop alone misses it
    assert r["transfer_pps"] < -0.2 and r["transfer_drop"] > 1.0
    assert ls.index[ls["suspect"]].tolist() == ["cat_1"]


def test_no_shift_gives_no_suspects_and_chance_auc():
    train, test = make_pair(n_train=1000, n_test=1000, seed=7)
    res = diagnose(train, test, TARGET, NUMERIC, CATEGORICAL, cv=3)
    assert res["suspect_features"] == []
    assert abs(res["summary"]["adversarial_auc"] - 0.5) < 0.06
    assert res["summary"]["n_shifted"] == 0
    assert not res["adversarial"]["distribution_shift"]
    assert res["adversarial"]["auc_missing_only"] is None
    # the genuine drivers keep their power in test
    assert res["evidence"].loc["num_0", "pps_test"] > 0.2


def test_covariate_shift_is_flagged_by_feature_shift_not_label_shift():
    train, test = make_pair(n_train=1200, n_test=1000, seed=11, num0_shift=0.8)
    fs = feature_shift(train, test, NUMERIC, CATEGORICAL)
    assert fs.index[fs["shifted"]].tolist() == ["num_0"]
    assert fs.loc["num_0", "effect"] > 0.2 and fs.loc["num_0", "p_value"] < 1e-6
    ls = label_shift(train, test, TARGET, NUMERIC, CATEGORICAL, cv=3)
    assert not ls["suspect"].any()
    assert ls.loc["num_0", "pps_test"] > 0.2 and ls.loc["num_0", "transfer_pps"] > 0.2
    adv = adversarial_validation(train, test, NUMERIC, CATEGORICAL, cv=3)
    assert adv["auc_no_missing"] > 0.6 and adv["distribution_shift"]
    assert adv["importance"].index[0] == "num_0"
    assert adv["importance"]["used"].tolist().count(True) == 1


def test_train_only_missingness_is_reported_apart_from_shift():
    train, test = make_pair(n_train=1000, n_test=1000, seed=5, train_nan=("num_2", 0.4))
    adv = adversarial_validation(train, test, NUMERIC, CATEGORICAL, cv=3)
    assert adv["auc_missing_only"] > 0.65 and adv["missingness_signal"]
    assert adv["auc"] > 0.65                                # raw model sees the NaNs
    assert abs(adv["auc_no_missing"] - 0.5) < 0.06 and not adv["distribution_shift"]
    mt = missing_table(train, test)
    assert mt["only_in_train"].tolist() == [c == "num_2" for c in mt.index]


def test_feature_shift_categorical_cramers_v_by_hand():
    train = pd.DataFrame({"c": ["a"] * 60 + ["b"] * 40, "x": np.arange(100.0)})
    test = pd.DataFrame({"c": ["a"] * 40 + ["b"] * 60, "x": np.arange(100.0)})
    fs = feature_shift(train, test, ["x"], ["c"])
    # 2x2 table [[60, 40], [40, 60]]: chi2 = 8, n = 200, V = 0.2
    assert fs.loc["c", "statistic"] == pytest.approx(8.0)
    assert fs.loc["c", "effect"] == pytest.approx(0.2)
    assert fs.loc["x", "effect"] == 0.0 and not fs.loc["x", "shifted"]


def test_model_importance_joins_evidence():
    train, test = make_pair(n_train=1000, n_test=600, seed=4, shortcut="num_3")
    imp = {"train": {"num_3": 0.4, "num_0": 0.1}, "test": {"num_3": 0.01, "num_0": 0.09}}
    res = diagnose(train, test, TARGET, NUMERIC, CATEGORICAL, model_importance=imp, cv=3)
    ev = res["evidence"]
    assert ev.loc["num_3", "model_imp_drop"] == pytest.approx(0.39)
    assert ev.loc["num_3", "model_imp_collapsed"] and not ev.loc["num_0", "model_imp_collapsed"]
    assert np.isnan(ev.loc["cat_1", "model_imp_train"])
    assert any("importance" in line and "num_3" in line for line in res["explanation"])


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
        feature_shift(train, test, NUMERIC + ["nope"], CATEGORICAL)
    with pytest.raises(ValueError, match=r"categorical column\(s\) \['nope'\] not found in test"):
        feature_shift(train.assign(nope="u"), test, NUMERIC, CATEGORICAL + ["nope"])
    with pytest.raises(ValueError, match="target column 'label' not found in test"):
        label_shift(train, test.drop(columns=[TARGET]), TARGET, NUMERIC, CATEGORICAL)
    with pytest.raises(ValueError, match="target column 'price' not found in df"):
        predictive_power(train, "price", NUMERIC, CATEGORICAL)
    with pytest.raises(ValueError, match="target 'label' is also listed as a feature"):
        predictive_power(train, TARGET, NUMERIC + [TARGET], CATEGORICAL)
    with pytest.raises(ValueError, match="appear in both numeric= and categorical="):
        feature_shift(train, test, NUMERIC, CATEGORICAL + ["num_0"])
    with pytest.raises(ValueError, match="numeric column 'cat_0' in train has non-numeric"):
        feature_shift(train, test, NUMERIC + ["cat_0"], ["cat_1"])
    with pytest.raises(ValueError, match="unknown threshold"):
        diagnose(train, test, TARGET, NUMERIC, CATEGORICAL, drop_treshold=0.3)
    with pytest.raises(ValueError, match="cv must be an integer >= 2"):
        predictive_power(train, TARGET, NUMERIC, CATEGORICAL, cv=1)
    with pytest.raises(ValueError, match="target 'label' in train has 1 missing"):
        label_shift(train.assign(label=[np.nan] + [0] * 199), test, TARGET, NUMERIC, CATEGORICAL)
    with pytest.raises(ValueError, match="feature_names has 2 names but X has 3 columns"):
        correlation_pairs(np.zeros((5, 3)), ["a", "b"])
    with pytest.raises(ValueError, match=r"X has NaN/inf in columns \['b'\]; impute"):
        correlation_pairs(np.array([[0.0, np.nan], [1.0, 2.0]]), ["a", "b"])
    with pytest.raises(ValueError, match="no features given"):
        feature_shift(train, test, [], [])
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0.0, 1.0\], got 5"):
        feature_shift(train, test, NUMERIC, CATEGORICAL, alpha=5)
    with pytest.raises(ValueError, match="auc_threshold must be a number in"):
        diagnose(train, test, TARGET, NUMERIC, CATEGORICAL, auc_threshold=0.2)
    with pytest.raises(ValueError, match="score must be one of"):
        label_shift(train, test, TARGET, NUMERIC, CATEGORICAL, score="f1")
    with pytest.raises(ValueError, match="model_importance must be"):
        diagnose(train, test, TARGET, NUMERIC, CATEGORICAL, model_importance={"train": {}})
    with pytest.raises(ValueError, match=r"model_importance\['test'\] names unknown feature"):
        diagnose(train, test, TARGET, NUMERIC, CATEGORICAL,
                 model_importance={"train": {}, "test": {"nope": 1.0}})


@pytest.mark.parametrize("seed", [11, 12])
def test_diagnose_on_make_synthetic_names_the_randomly_planted_column(seed):
    import prep
    rng = np.random.default_rng(seed)
    plain_train, _ = prep.make_synthetic(n_train=50, n_test=10, seed=seed)
    columns = [c for c in plain_train.columns if c != prep.DEFAULT_TARGET]
    planted = str(rng.choice(columns))
    train, test = prep.make_synthetic(n_train=3000, n_test=1500, shortcut=planted, seed=seed)
    ds = prep.validate_frames(train, test)
    out = diagnose(ds.train, ds.test, ds.target, ds.numeric, ds.categorical, seed=seed)
    assert out["suspect_features"] == [planted]


def test_diagnose_on_make_synthetic_without_shortcut_names_nothing():
    import prep
    train, test = prep.make_synthetic(n_train=3000, n_test=1500, shortcut=None, seed=5)
    ds = prep.validate_frames(train, test)
    out = diagnose(ds.train, ds.test, ds.target, ds.numeric, ds.categorical, seed=5)
    assert out["suspect_features"] == []
