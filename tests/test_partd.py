"""Part D on ``shift.diagnose``: the verdict, the mitigations that follow it and the rule
that recommends one.

``compute_d`` must name each planted mechanism (``shift.make_shift_dataset``: random
schemas, int/str/bool labels) with its kind and offer the mitigation that answers it;
the recommendation never reads a test score; an unlabelled test file with string labels
runs end to end through ``run_all.py --quick``; the real data's diagnosis alone names
``amenity_score`` as ``relationship_broken`` in under 20 s.
"""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import jobs
import prep
import report as rp
import context
import mitigations
import part_d
import run_all
import shift

REPO = Path(__file__).resolve().parents[1]


def _computed(train, test, target, out):
    """Parts B, C and D computed in-process on a small network (one activation)."""
    cfg = run_all.validate(run_all.build_parser().parse_args(
        ["--quick", "--iterations", "40", "--lr", "0.5", "--hidden", "16,12", "--threads", "1",
         "--activations", "relu", "--target", target, "--out", str(out)]))
    ds = prep.validate_frames(train, test, target=target)
    data = prep.encode(ds, val_size=cfg.val_size, seed=cfg.seed)
    ctx = context.Context(cfg=cfg, dataset=ds, data=data, out=Path(out), report=rp.Report("body"),
                          jobs=jobs.Jobs(0), parts=("B", "C", "D"))
    ctx.plan = run_all.schedule(ctx)
    for code in ("B", "C", "D"):
        for step in ctx.plan.steps_before(code):
            step.run()
        ctx.results[code] = run_all.PARTS[code].impl.compute(ctx)
    return ctx


# the mitigation row that answers each kind
ANSWER = {"relationship_broken": "remove ", "concept_shift": "remove ", "interaction": "remove ",
          "missingness": "impute ", "prior_shift": "prior correction"}


@pytest.mark.parametrize("kind, seed", [("relationship_broken", 3), ("concept_shift", 2),
                                        ("missingness", 1), ("prior_shift", 1)])
def test_compute_d_names_the_culprit_with_its_kind(kind, seed, tmp_path):
    train, test, target, _, _, truth = shift.make_shift_dataset(kind, seed=seed, n_train=1500, n_test=700)
    ctx = _computed(train, test, target, tmp_path)
    d = ctx.results["D"]
    assert d.verdict.kind == kind
    assert sorted((s.feature, s.kind) for s in d.diagnosis.result.suspects) == \
        sorted((c, kind) for c in truth["culprits"])
    assert d.suspects == sorted(truth["culprits"])
    answering = [m for m in d.mitigations if kind in m["answers"]]
    assert len(answering) == 1 and answering[0]["name"].startswith(ANSWER[kind])
    assert all(m["test_acc"] is not None and m["test_macro_f1"] is not None for m in d.mitigations)
    m = d.to_metrics()
    assert m["verdict"]["kind"] == kind and m["verdict"]["suspect_features"] == sorted(truth["culprits"])
    assert sorted(d.labels) == sorted(str(c) for c in truth["classes"])     # label names, any type
    json.dumps(run_all.jsonable(m), allow_nan=False)
    part_d.render(d, ctx.output)
    md = ctx.report.to_markdown()
    assert f"Verdict: **{kind}**" in md
    for label in d.labels:
        assert label in md


def test_prior_correction_estimates_the_test_shares_without_test_labels(tmp_path):
    train, test, target, _, _, truth = shift.make_shift_dataset("prior_shift", seed=1, n_train=1500,
                                                                n_test=700)
    ctx = _computed(train, test, target, tmp_path)
    d, data = ctx.results["D"], ctx.data
    base = ctx.results["B"].networks[d.network]
    shares_train = np.bincount(data.y_train, minlength=len(d.labels)) / len(data.y_train)
    corrected = mitigations.PriorCorrected(base, shares_train)
    est = corrected.estimated_priors(data.X_test)          # X only: no labels go in
    true = np.bincount(data.y_test, minlength=len(d.labels)) / len(data.y_test)
    assert np.abs(est - true).sum() < np.abs(shares_train - true).sum()
    row = next(m for m in d.mitigations if m["answers"] == ["prior_shift"])
    assert row["test_acc"] == pytest.approx(float(np.mean(corrected.predict(data.X_test) == data.y_test)))
    assert row["iterations"] == base.n_iter_                  # no retraining


def test_hot_deck_removes_the_missingness_signal_in_train_only():
    train, test = prep.make_synthetic(n_train=600, n_test=200, seed=2, missing_rate=0.1)
    ds = prep.validate_frames(train, test)
    col = next(c for c in ds.features if ds.train[c].isna().any())
    out = mitigations.hot_deck_train(ds, [col], seed=0)
    assert not out.train[col].isna().any()
    filled = ds.train[col].isna()
    assert set(out.train.loc[filled, col]) <= set(ds.train.loc[~filled, col])       # observed values only
    pd.testing.assert_frame_equal(out.test, ds.test)
    others = [c for c in ds.features if c != col]
    pd.testing.assert_frame_equal(out.train[others], ds.train[others])


def _rows(val, test, answers):
    return [{"name": f"m{i}", "val_acc": v, "test_acc": t, "answers": a}
            for i, (v, t, a) in enumerate(zip(val, test, answers))]


def _diag(kinds, suspects, outside):
    return SimpleNamespace(verdict=SimpleNamespace(kinds=kinds, kind=kinds[0]), suspects=suspects,
                           gap=SimpleNamespace(outside_noise=outside))


def test_recommendation_never_reads_test_scores():
    broken = _diag(("relationship_broken",), ("f",), True)
    answers = [[], ["relationship_broken"], [], []]
    val = [0.90, 0.60, 0.88, 0.70]
    # validation and test disagree: validation favours the baseline, test the removal
    for test in ([0.30, 0.55, 0.31, 0.40], [0.30, 0.20, 0.90, 0.10], [0.5, 0.5, 0.5, 0.5]):
        rows = _rows(val, test, answers)
        assert part_d.recommend(rows) == 0               # the validation winner, whatever test says
        assert part_d.diagnosis_fix(rows, broken, True) == 1
        assert part_d.diagnosis_fix(rows, _diag(("none",), (), False), True) is None
        # a named cause inside noise: no fix is put forward
        assert part_d.diagnosis_fix(rows, _diag(("relationship_broken",), ("f",), False), True) is None
    # a covariate shift names no cause: validation decides even though another row is best on test
    rows = _rows([0.7, 0.8, 0.75], [0.9, 0.1, 0.95], [[], [], []])
    assert part_d.recommend(rows) == 1
    assert part_d.diagnosis_fix(rows, _diag(("covariate_shift",), (), True), True) is None


def test_unlabelled_test_with_string_labels_runs_end_to_end(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    train, test = prep.make_synthetic(n_train=1500, n_test=600, shortcut="number_of_reviews", seed=4,
                                      target="tier")
    names = {0: "low", 1: "mid", 2: "high", 3: "top"}
    train["tier"] = train["tier"].map(names)
    train.to_csv(data / "train.csv", index=False)
    test.drop(columns=["tier"]).to_csv(data / "test.csv", index=False)
    proc = subprocess.run([sys.executable, "run_all.py", "--quick", "--data-dir", str(data), "--target", "tier",
                           "--out", str(out), "--iterations", "40", "--lr", "0.5", "--parts", "A,B,C,D"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "has no label column 'tier'" in proc.stdout
    m = json.loads((out / "metrics.json").read_text())
    for key in ("partA", "partB", "partC", "partD"):
        assert "error" not in m[key], (key, m[key])
    d = m["partD"]
    assert d["test_labelled"] is False and d["test_acc"] is None
    assert set(d["verdict"]) >= {"kind", "kinds", "suspect_features", "suspects"}
    assert d["verdict"]["kind"] in shift.KINDS
    assert d["diagnosis"]["labelled"] is False and d["diagnosis"]["skipped"]
    assert sorted(d["predicted_shares"]) == sorted(names.values())
    assert d["diagnosis"]["priors"]["source"] == "em"
    assert all(r["test_acc"] is None for r in d["mitigations"])
    est = d["performance"]["accuracy_estimate"]             # item 6: the accuracy without test labels
    assert est["low"] <= est["estimate"] <= est["high"] and est["true_accuracy"] is None
    assert est["calibrator"] and est["priors_source"] in ("none", "em") and est["n_test"] == 600
    assert d["performance"]["decomposition"] is None and d["sample"]["sampled"] is False
    assert d["performance_summary"] == [est["sentence"]]
    md = (out / "report.md").read_text()
    assert md.count("the expected accuracy on test is") >= 2         # the summary and Part D
    assert "**Validation → test:** Without test labels, the expected accuracy on test is" in md
    assert "Checks that need test labels, skipped here:" in md
    assert "mid" in md and "high" in md


def test_real_data_diagnosis_names_amenity_score(shared_data_dir):
    ds = prep.load_data(shared_data_dir)
    res = part_d.run_diagnosis(ds, seed=0)
    assert res.verdict.kind == "relationship_broken"
    assert [(s.feature, s.kind) for s in res.suspects] == [("amenity_score", "relationship_broken")]
    assert res.suspect_features == ("amenity_score",)
    assert res.seconds < 20


def test_console_notes_say_split_and_unlabelled(tmp_path):
    train, test = prep.make_synthetic(n_train=400, n_test=100, seed=1, target="label")
    train.to_csv(tmp_path / "all.csv", index=False)
    test.drop(columns=["label"]).to_csv(tmp_path / "new.csv", index=False)
    split = prep.load_files(tmp_path / "all.csv", target="label", test_size=0.25, seed=3)
    assert context.data_notes(split) == [prep.split_banner(split)]
    assert "25%" in prep.split_banner(split)
    unlabelled = prep.load_files(tmp_path / "all.csv", tmp_path / "new.csv", target="label")
    (note,) = context.data_notes(unlabelled)
    assert note == prep.UNLABELLED_TEST_MESSAGE.format(file=unlabelled.files[1], target="label")
    plain = prep.load_files(tmp_path / "all.csv", tmp_path / "all.csv", target="label")
    assert context.data_notes(plain) == []
