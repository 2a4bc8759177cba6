"""Part D's additions from ``performance.py`` and for large files.

- item 6: the best network's test accuracy estimated without test labels, with an
  interval; on a labelled test file it is set beside the accuracy the labels show;
- item 9: the validation -> test change split into covariate, conditional and unseen
  terms that add up to the total, in ``metrics.json``, a figure and a summary sentence;
- item 7: importance weighting (``mitigations.importance_weights``, the
  ``importance_weighting`` row) offered for a covariate shift, its weights from the
  features alone, capped and rescaled;
- files above ``part_d.SAMPLE_ROWS`` rows: the diagnosis and the estimates read a
  seeded sample stratified by label (``stratified_rows``, ``row_sample``).
"""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import mitigations
import part_d
import prep
import run_all
import shift
from test_partd import _computed


def test_stratified_rows_keep_each_label_share_and_are_seeded():
    labels = np.array(["a"] * 700 + ["b"] * 250 + ["c"] * 50)
    rows = part_d.stratified_rows(labels, 100, seed=3)
    assert len(rows) == 100 and len(np.unique(rows)) == 100 and np.all(np.diff(rows) > 0)
    assert dict(zip(*np.unique(labels[rows], return_counts=True))) == {"a": 70, "b": 25, "c": 5}
    np.testing.assert_array_equal(rows, part_d.stratified_rows(labels, 100, seed=3))
    assert not np.array_equal(rows, part_d.stratified_rows(labels, 100, seed=4))
    # rounding: 3 classes of 1/3 each, 10 rows: the counts still add up to 10
    assert len(part_d.stratified_rows(np.repeat([0, 1, 2], 30), 10, seed=0)) == 10
    np.testing.assert_array_equal(part_d.stratified_rows(labels[:40], 100, seed=0), np.arange(40))
    with pytest.raises(ValueError, match="sample size must be an integer >= 1, got 0"):
        part_d.stratified_rows(labels, 0, seed=0)


def test_large_files_are_diagnosed_on_a_stated_stratified_sample(monkeypatch):
    train, test = prep.make_synthetic(n_train=900, n_test=500, seed=1, target="label")
    ds = prep.validate_frames(train, test, target="label")
    small = part_d.row_sample(ds, seed=5)
    assert not small.sampled and small.sentence() == "" and len(small.train_rows) == 900
    sample = part_d.row_sample(ds, seed=5, limit=300)
    assert sample.sampled and len(sample.train_rows) == 300 and len(sample.test_rows) == 300
    shares = ds.train["label"].value_counts(normalize=True).sort_index()
    sampled = ds.train["label"].iloc[sample.train_rows].value_counts(normalize=True).sort_index()
    assert np.abs(shares - sampled).max() < 1 / 300 + 1e-9          # stratified: each label keeps its share
    text = sample.sentence()
    assert "300 of the 900 training rows" in text and "300 of the 500 test rows" in text and "seed 5" in text
    assert sample.to_dict()["sampled"] is True and sample.to_dict()["train_rows_in_file"] == 900

    seen = {}

    def fake(train_, test_, target, numeric, categorical, **kw):
        seen.update(train=train_, test=test_, val_rows=kw["val_rows"])
        return "diagnosis"

    monkeypatch.setattr(shift, "diagnose", fake)
    val_rows = np.arange(0, 900, 5)                                    # every fifth training row
    assert part_d.run_diagnosis(ds, 0, val_rows=val_rows, sample=sample) == "diagnosis"
    pd.testing.assert_frame_equal(seen["train"], ds.train.iloc[sample.train_rows])
    pd.testing.assert_frame_equal(seen["test"], ds.test.iloc[sample.test_rows])
    # the validation rows within the sample, as positions in the sample
    np.testing.assert_array_equal(sample.train_rows[seen["val_rows"]],
                                  np.intersect1d(sample.train_rows, val_rows))
    part_d.run_diagnosis(ds, 0, val_rows=val_rows, sample=small)
    assert len(seen["train"]) == 900 and seen["val_rows"] is val_rows   # small files: whole, untouched


def _network_and_data(seed=0, labelled=True):
    train, test, target, *_ = shift.make_shift_dataset("covariate_shift", seed=seed, n_train=1500, n_test=700)
    if not labelled:
        test = test.drop(columns=[target])
    ds = prep.validate_frames(train, test, target=target)
    data = prep.encode(ds, val_size=0.2, seed=0)
    from sklearn.linear_model import LogisticRegression
    net = LogisticRegression(max_iter=500).fit(data.X_train, data.y_train)
    return net, data


def test_estimate_and_decomposition_of_the_best_network():
    net, data = _network_and_data()
    keep = np.ones(len(data.y_val), dtype=bool)
    keep[::4] = False
    p = part_d.estimate_performance(net, data, keep, np.arange(0, len(data.y_test), 2), seed=1)
    assert p.n_val == keep.sum() and p.n_test == (len(data.y_test) + 1) // 2
    yt = data.y_test[::2]
    assert p.true_accuracy == pytest.approx(np.mean(net.predict(data.X_test[::2]) == yt))
    e = p.estimate
    assert e.low <= e.estimate <= e.high and p.error == pytest.approx(e.estimate - p.true_accuracy)
    assert p.covered == (e.low <= p.true_accuracy <= e.high)
    dec = p.change.accuracy
    assert dec.covariate.value + dec.conditional.value + dec.unseen.value == pytest.approx(dec.total.value)
    assert dec.test == pytest.approx(p.true_accuracy)
    assert p.change.ratio.val_refits.shape[0] == part_d.RATIO_OPTIONS["n_refit"]
    m = json.loads(json.dumps(run_all.jsonable(p.to_dict()), allow_nan=False))
    assert m["accuracy_estimate"]["true_accuracy"] == pytest.approx(p.true_accuracy)
    assert m["decomposition"]["accuracy"]["conditional"]["value"] == pytest.approx(dec.conditional.value)
    text = p.check_sentence()
    assert f"{100 * p.true_accuracy:.1f}%" in text and f"off by {100 * abs(p.error):.1f} points" in text


def test_unlabelled_test_gets_an_estimate_and_no_decomposition():
    net, data = _network_and_data(labelled=False)
    p = part_d.estimate_performance(net, data, np.ones(len(data.y_val), bool), np.arange(len(data.X_test)), 0)
    assert p.true_accuracy is None and p.change is None and p.error is None and p.covered is None
    assert p.check_sentence() == "" and 0 <= p.estimate.low <= p.estimate.high <= 1
    assert p.to_dict()["decomposition"] is None


def test_importance_weights_follow_the_test_inputs_from_features_alone():
    rng = np.random.default_rng(0)
    X_train = rng.normal(size=(3000, 3))
    X_test = rng.normal(size=(1500, 3)) + np.array([1.0, 0, 0])     # test sits to the right on column 0
    w = mitigations.importance_weights(X_train, X_test, seed=0)
    assert w.weights.shape == (3000,) and w.weights.mean() == pytest.approx(1.0)
    assert w.weights.min() >= 0 and w.auc > 0.65
    # the true ratio exp(x0 - 1/2) grows with x0: the weights must rank rows the same way
    assert np.corrcoef(w.weights, X_train[:, 0])[0, 1] > 0.5
    assert w.weights[X_train[:, 0] > 1].mean() > 2 * w.weights[X_train[:, 0] < -1].mean()
    assert w.effective_rows == pytest.approx(w.weights.sum() ** 2 / (w.weights @ w.weights))
    tight = mitigations.importance_weights(X_train, X_test, seed=0, clip=1.5)
    assert tight.clipped_share > w.clipped_share and tight.effective_rows > w.effective_rows
    capped = np.isclose(tight.weights, tight.weights.max())            # every capped row: one weight
    assert capped.mean() == pytest.approx(tight.clipped_share, abs=1 / 3000)
    with pytest.raises(ValueError, match="clip must be > 1"):
        mitigations.importance_weights(X_train, X_test, seed=0, clip=1.0)


def test_importance_weighting_answers_a_covariate_shift_only():
    row = mitigations.get("importance_weighting")
    assert row.answers == ("covariate_shift",) and row.prepare is mitigations.Prepare.WEIGHTS
    diag = SimpleNamespace(verdict=SimpleNamespace(kinds=("covariate_shift",)), suspects=())
    assert mitigations.plan(diag)[0].mitigation is row
    broken = SimpleNamespace(verdict=SimpleNamespace(kinds=("relationship_broken",)),
                             suspects=(SimpleNamespace(feature="f", kind="relationship_broken"),))
    assert row not in [p.mitigation for p in mitigations.plan(broken)]
    with pytest.raises(ValueError, match="weights rows but has no make"):
        mitigations.check_table((mitigations.Mitigation("w", "w", (), mitigations.Prepare.WEIGHTS, ""),))


def test_part_d_trains_the_weighted_network_on_a_covariate_shift(tmp_path):
    train, test, target, *_ = shift.make_shift_dataset("covariate_shift", seed=1, n_train=1500, n_test=700)
    ctx = _computed(train, test, target, tmp_path)
    d = ctx.results["D"]
    assert "covariate_shift" in d.verdict.kinds
    i = d.kinds.index("importance_weighting")
    row, w = d.mitigations[i], d.weighting[d.mitigations[i]["name"]]
    assert row["answers"] == ["covariate_shift"] and row["gain"] is not None
    assert w["rows"] == len(ctx.data.y_train) and w["clip"] == mitigations.WEIGHT_CLIP
    baseline = d.mitigations[0]
    assert (row["val_acc"], row["test_acc"]) != (baseline["val_acc"], baseline["test_acc"])   # retrained
    m = d.to_metrics()
    assert m["importance_weighting"] == d.weighting
    assert m["performance"]["decomposition"]["accuracy"]["total"]["value"] == pytest.approx(
        d.performance.change.accuracy.total.value)
    assert d.performance.true_accuracy == pytest.approx(baseline["test_acc"])     # whole files: same rows
    says = part_d.performance_sentences(d)
    assert says[0] == d.performance.change.accuracy.sentence() and "off by" in says[1] and len(says) == 2
    assert part_d.performance_sentences(None) == []
    part_d.render(d, ctx.output)
    md = ctx.report.to_markdown()
    assert "d_decomposition.png" in md and "effective training rows" in md
    assert (tmp_path / "tables" / "d_decomposition.csv").exists()


def test_part_d_on_a_sample_says_which_rows_it_read(tmp_path, monkeypatch):
    monkeypatch.setattr(part_d, "SAMPLE_ROWS", 600)
    train, test, target, *_ = shift.make_shift_dataset("relationship_broken", seed=3, n_train=1500, n_test=700)
    ctx = _computed(train, test, target, tmp_path)
    d = ctx.results["D"]
    sample = d.diagnosis.sample
    assert sample.sampled and len(sample.train_rows) == 600 and len(sample.test_rows) == 600
    assert d.performance.n_test == 600 and 0 < d.performance.n_val < len(ctx.data.y_val)   # val rows in the sample
    m = json.loads(json.dumps(run_all.jsonable(d.to_metrics()), allow_nan=False))
    assert m["sample"] == {"sampled": True, "limit": 600, "seed": ctx.cfg.seed, "train_rows": 600,
                           "train_rows_in_file": 1500, "test_rows": 600, "test_rows_in_file": 700,
                           "stratified_by": "label"}
    assert m["performance"]["accuracy_estimate"]["n_test"] == 600
    assert all(r["test_acc"] is not None for r in m["mitigations"])        # the networks: every test row
    assert d.mitigations[0]["test_acc"] == pytest.approx(np.mean(
        ctx.results["B"].scores[d.network]["test"]["pred"] == ctx.data.y_test))
    part_d.render(d, ctx.output)
    assert sample.sentence() in ctx.report.to_markdown() and "600 of the 1,500 training rows" in sample.sentence()


def test_too_few_rows_skip_the_estimates_and_say_why(tmp_path):
    train, test, target, *_ = shift.make_shift_dataset("prior_shift", seed=2, n_train=90, n_test=35)
    ctx = _computed(train, test, target, tmp_path)
    d = ctx.results["D"]
    assert d.performance is None and "at least 20 validation and test rows; here 18 and 35" in d.performance_skipped
    assert d.to_metrics()["performance"] == {"skipped": d.performance_skipped}
    assert part_d.performance_sentences(d) == []
    part_d.render(d, ctx.output)
    assert "Not estimated: the accuracy estimate without test labels" in ctx.report.to_markdown()


def test_a_class_missing_from_validation_leaves_the_class_shares_alone():
    net, data = _network_and_data()
    keep = data.y_val != 0                                   # validation without class 0
    p = part_d.estimate_performance(net, data, keep, np.arange(len(data.y_test)), seed=0)
    assert p.estimate.priors_source == "none" and p.estimate.priors_val[0] < 1e-9
    assert 0 <= p.estimate.low <= p.estimate.estimate <= p.estimate.high <= 1
