"""Large files: the analyses that re-score every row many times (Part B's gradient
decomposition and depth probes, Part C's permutation checks) run on a stated, seeded
sample above context.ANALYSIS_ROWS rows, and on every row below it."""
import types

import numpy as np

import context
import part_c
from mlp import MLP


def test_analysis_rows_are_every_row_below_the_cap_and_a_seeded_sample_above():
    assert np.array_equal(context.analysis_rows(500, 0, 1000), np.arange(500))
    a = context.analysis_rows(5000, 3, 1000)
    assert len(a) == 1000 and len(np.unique(a)) == 1000 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, context.analysis_rows(5000, 3, 1000))
    assert not np.array_equal(a, context.analysis_rows(5000, 4, 1000))


def test_attribution_checks_say_how_many_rows_they_used(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 3))
    y = (X[:, 0] > 0).astype(int)
    net = MLP(hidden=(8,), n_iter=20, dtype="float64").fit(X, y)
    data = types.SimpleNamespace(feature_names=["a", "b", "c"], feature_source=["a", "b", "c"],
                                 X_train=X, y_train=y,
                                 X=lambda s: X if s == "train" else X[:400],
                                 y=lambda s: y if s == "train" else y[:400])
    cfg = types.SimpleNamespace(study=types.SimpleNamespace(repeats=2), seed=0)
    monkeypatch.setattr(context, "ANALYSIS_ROWS", 1000)
    out = part_c.attribution_checks(data, cfg, "relu", net)
    assert out["permutation_rows"] == {"train": (1000, 3000), "test": (400, 400)}
    top = out["permutation"]["train"]["original"].sort_values("perm_mean").iloc[-1]["feature"]
    assert top == "a"                   # the sample still finds the one column that matters


def test_part_b_states_its_sample(tmp_path, monkeypatch):
    import json
    import subprocess
    import sys
    from pathlib import Path
    import pandas as pd
    rng = np.random.default_rng(1)
    for name, n in (("train.csv", 900), ("test.csv", 200)):
        X = rng.normal(size=(n, 3))
        df = pd.DataFrame(X, columns=["p", "q", "r"])
        df["label"] = np.where(X[:, 0] > 0, "hi", "lo")
        df.to_csv(tmp_path / name, index=False)
    repo = Path(__file__).resolve().parents[1]
    code = ("import context, runpy, sys; context.ANALYSIS_ROWS = 300; "
            "sys.argv = ['run_all.py'] + sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code.replace("sys.argv[0]", repr(str(repo / "run_all.py"))),
                           "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                           "--target", "label", "--quick", "--parts", "B,C", "--threads", "1",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300,
                          cwd=repo)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    report = (tmp_path / "o" / "report.md").read_text()
    assert "a seeded sample of 300 of the 720 training rows" in report
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["partC"]["checks"]["relu"]["permutation_rows"]["train"] == [300, 720]


def test_stratified_rows_of_integer_labels_equal_those_of_their_text():
    """part_d.stratified_rows groups integer labels without making a string per row; the
    sample is the one their text gives (the path every other label type takes)."""
    import part_d
    labels = np.random.default_rng(2).choice([7, -1, 30, 4], size=5000, p=[.5, .3, .15, .05])
    for n in (10, 333, 4999):
        got = part_d.stratified_rows(labels, n, seed=9)
        assert np.array_equal(got, part_d.stratified_rows(labels.astype(str), n, seed=9))
    flags = labels > 5
    assert np.array_equal(part_d.stratified_rows(flags, 321, seed=1),
                          part_d.stratified_rows(flags.astype(str), 321, seed=1))
