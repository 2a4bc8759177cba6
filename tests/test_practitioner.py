"""A practitioner's own data: their file names and words, the answer on the console, predictions.

On small synthetic data of another schema (string labels, files not called
train.csv/test.csv, an unlabelled deployment file or a labelled one) a default
run must: name the user's files relative to where the command ran (never an
absolute path), say nothing about the course's assignment and not run its
Question 2 unless asked, write ``predictions.csv`` for every test row, give
headings that follow the numbers, and end on the console with the answer.
"""
import csv
import io
import json
import re

import numpy as np
import pandas as pd
import pytest

import answer
import run_all


def _frames(n_train=300, n_test=120, seed=0):
    """Two numeric columns and a categorical one that tell a string label, no shift."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, 3, n)
    df = pd.DataFrame({"reading_a": y + rng.normal(0, 0.8, n), "reading_b": rng.normal(0, 1, n),
                       "site": np.where(rng.random(n) < 0.5, "north", "south"),
                       "status": np.array(["ok", "worn", "failed"])[y]})
    return df.iloc[:n_train], df.iloc[n_train:]


def _run(tmp_path, monkeypatch, capsys, labelled, *extra):
    monkeypatch.chdir(tmp_path)
    train, test = _frames()
    folder = tmp_path / "plant"
    folder.mkdir()
    train.to_csv(folder / "history_2025.csv", index=False)
    (test if labelled else test.drop(columns=["status"])).to_csv(folder / "deployment_week1.csv", index=False)
    rc = run_all.main(["--train", "plant/history_2025.csv", "--test", "plant/deployment_week1.csv",
                       "--target", "status", "--out", "out", "--quick", "--iterations", "40",
                       "--threads", "1", "--activations", "relu", *extra])
    out = capsys.readouterr().out
    assert rc == 0, out
    return out, tmp_path / "out"


def test_unlabelled_deployment_file_gets_its_names_predictions_and_no_course_words(tmp_path, monkeypatch,
                                                                                   capsys):
    said, out = _run(tmp_path, monkeypatch, capsys, labelled=False)
    md = (out / "report.md").read_text(encoding="utf-8")
    metrics = json.loads((out / "metrics.json").read_text())
    # the user's files, as named where the command ran; no absolute path anywhere
    assert "`plant/history_2025.csv` and `plant/deployment_week1.csv`" in md
    assert str(tmp_path) not in md and str(tmp_path) not in (out / "report.html").read_text(encoding="utf-8")
    assert metrics["data"]["files"] == ["plant/history_2025.csv", "plant/deployment_week1.csv"]
    # nothing of the course's: no Question 2, no assignment, no train.csv/test.csv
    assert "q2" not in metrics and "Question 2" not in md
    assert "does not run on your data by default; --parts A,B,C,D,Q2 runs it" in said
    for word in ("assignment", "train.csv", "test.csv"):
        assert word not in md, word
    # headings follow the numbers: no labels, no "fails on test"
    assert "What can be said about test without its labels" in md and "fails on test" not in md
    # predictions for every test row: the label names, probabilities that sum to 1
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.columns) == ["row", "predicted", "p_failed", "p_ok", "p_worn"]
    assert len(pred) == 120 and (pred["row"] == np.arange(120)).all()
    P = pred[["p_failed", "p_ok", "p_worn"]].to_numpy()
    assert np.allclose(P.sum(axis=1), 1.0, atol=1e-5)
    assert (np.array(["failed", "ok", "worn"])[P.argmax(axis=1)] == pred["predicted"]).all()
    # the console ends with the answer, then where the outputs are
    lines = said.splitlines()
    tail = lines[next(i for i, ln in enumerate(lines) if ln.startswith("run finished")) + 1:]
    assert re.match(r"  relu, the network chosen on validation, scores \d\.\d{3} there \(majority class "
                    r"\d\.\d{3}\); the test file has no labels, so no test accuracy", tail[0]), tail
    # 40 iterations: the loss is still falling, and the console says what to try
    assert re.match(r"  relu is still learning \(training loss −\d+\.\d% over the last fifth\): "
                    r"try --iterations 80", tail[1]), tail
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["underfit"]["networks"]["relu"]["still_learning"] is True
    assert "still learning" in md and "try --iterations 80" in md         # beside the accuracy, in the report
    assert tail[2].startswith("  verdict: ")
    assert tail[-2] == "predictions: out/predictions.csv" and tail[-1].startswith("report: out/report.html")


def test_labelled_file_without_shift_has_no_failure_heading_and_predictions_with_labels(tmp_path, monkeypatch,
                                                                                       capsys):
    said, out = _run(tmp_path, monkeypatch, capsys, labelled=True)
    md = (out / "report.md").read_text(encoding="utf-8")
    metrics = json.loads((out / "metrics.json").read_text())
    outside = metrics["partD"]["gap"]["outside_noise"] if metrics["partD"].get("gap") else None
    heading = ("Why it does well in training and fails on test" if outside
               else "Training and test: no gap beyond noise")
    assert f"### {heading}" in md
    if not metrics["partD"]["verdict"]["suspect_features"] and "prior_shift" not in \
            metrics["partD"]["verdict"]["kinds"]:
        assert "does not touch the cause" not in md              # no cause, nothing to touch
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.columns[:3]) == ["row", "predicted", "label"]
    acc = float((pred["predicted"] == pred["label"]).mean())
    line = next(ln for ln in said.splitlines() if ln.startswith("  test accuracy "))
    assert f"test accuracy {acc:.3f} with relu" in line


def test_course_framing_is_asked_for_or_comes_with_the_course_data(tmp_path, monkeypatch, capsys):
    said, out = _run(tmp_path, monkeypatch, capsys, True, "--course", "--parts", "A")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["course"] is True and cfg["parts_given"] is True
    ns = run_all.build_parser().parse_args([])
    assert ns.parts is None and not ns.course
    assert run_all.COURSE_PARTS.split(",")[-1] == "Q2" and "Q2" not in run_all.DEFAULT_PARTS.split(",")


def test_predictions_file_neutralises_formula_labels(tmp_path):
    """Label names become column names and cells of predictions.csv: never a formula."""
    import prep
    from types import SimpleNamespace
    classes = np.array(["=cmd", "ok"], dtype=object)
    model = SimpleNamespace(predict_proba=lambda X: np.tile([0.25, 0.75], (len(X), 1)))
    b = SimpleNamespace(best="relu", networks={"relu": model})
    data = prep.Encoded(X_train=None, y_train=None, X_val=None, y_val=None, X_test=np.zeros((3, 2)),
                        y_test=np.array([0, 1, 0]))
    ctx = SimpleNamespace(results={"B": b}, dataset=SimpleNamespace(classes=classes), data=data, out=tmp_path)
    path = answer.write_predictions(ctx)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0] == ["row", "predicted", "label", "p_=cmd", "p_ok"]
    assert all(not cell.startswith(("=", "+", "@")) for row in rows for cell in row)
    assert rows[1][1] == "ok" and rows[1][2] == "'=cmd"


def test_columns_left_out_are_named_whatever_the_parts(tmp_path, monkeypatch, capsys):
    """An ID-like column screened out before training is named in the summary even when
    Part A (which has the full table) does not run."""
    monkeypatch.chdir(tmp_path)
    train, test = _frames()
    train = train.assign(record_id=np.arange(len(train)))
    test = test.assign(record_id=np.arange(len(train), len(train) + len(test)))
    (tmp_path / "plant").mkdir()
    train.to_csv("plant/history_2025.csv", index=False)
    test.to_csv("plant/deployment_week1.csv", index=False)
    rc = run_all.main(["--train", "plant/history_2025.csv", "--test", "plant/deployment_week1.csv",
                       "--target", "status", "--out", "out", "--quick", "--iterations", "30", "--threads", "1",
                       "--activations", "relu", "--parts", "D"])
    capsys.readouterr()
    assert rc == 0
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "**Left out of the network:** `record_id` (nearly one distinct value per row" in md


def test_the_library_imports_from_anywhere_with_the_checkout_on_the_path(tmp_path):
    """README: the modules are flat files; with PYTHONPATH set to the checkout a script in
    any folder imports them."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(run_all.__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=str(repo))
    res = subprocess.run([sys.executable, "-c", "import mlp, prep, shift, mitigations; print(mlp.MLP().hidden)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(64, 64)"


def test_na_values_on_the_command_line(tmp_path, monkeypatch, capsys):
    """A category 'NA' (North America) stays a category by default; --na-values NA reads it
    as missing, and the console says how many cells were read so."""
    monkeypatch.chdir(tmp_path)
    train, test = _frames()
    train = train.assign(region=np.where(np.arange(len(train)) % 3 == 0, "NA", "EU"))
    test = test.assign(region=np.where(np.arange(len(test)) % 3 == 0, "NA", "EU"))
    (tmp_path / "plant").mkdir()
    train.to_csv("plant/history_2025.csv", index=False)
    test.to_csv("plant/deployment_week1.csv", index=False)
    args = ["--train", "plant/history_2025.csv", "--test", "plant/deployment_week1.csv", "--target", "status",
            "--quick", "--threads", "1", "--parts", "A"]
    assert run_all.main(args + ["--out", "kept"]) == 0
    kept = json.loads((tmp_path / "kept" / "metrics.json").read_text())
    said = capsys.readouterr().out
    assert "NA" in json.dumps(kept["partA"]) and "read as missing" not in said
    assert run_all.main(args + ["--out", "missing", "--na-values", "NA"]) == 0
    said = capsys.readouterr().out
    assert "note: plant/history_2025.csv: 100 of 300 cells of column 'region' read as missing" in said, said
    cfg = json.loads((tmp_path / "missing" / "config.json").read_text())
    assert cfg["na_values"] == ["NA"]


def test_figure_file_names_are_bounded_and_unique():
    import part_d
    assert part_d._slug("amenity_score") == "amenity_score"           # a safe name as it is
    assert part_d._slug("a/b") != part_d._slug("a b")                  # one file each
    assert len(part_d._slug("x" * 300)) <= 70 and len(part_d._slug("é" * 300)) <= 70
    assert part_d._slug("..") not in ("", ".", "..") and "/" not in part_d._slug("../../etc")


def test_one_row_test_file_skips_the_diagnosis_and_still_predicts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    train, test = _frames()
    (tmp_path / "plant").mkdir()
    train.to_csv("plant/history_2025.csv", index=False)
    test.iloc[:1].to_csv("plant/deployment_week1.csv", index=False)
    rc = run_all.main(["--train", "plant/history_2025.csv", "--test", "plant/deployment_week1.csv",
                       "--target", "status", "--out", "out", "--quick", "--threads", "1", "--parts", "D"])
    said = capsys.readouterr().out
    assert rc == 0, said
    assert "Part D: test accuracy and generalisation is skipped: the test file has 1 row" in said
    assert len(pd.read_csv(tmp_path / "out" / "predictions.csv")) == 1


def test_many_classes_draw_only_the_largest(tmp_path, monkeypatch, capsys):
    """One box or bar per class is unreadable (and slow) for many classes: the figures show
    the largest ``CLASSES_SHOWN`` and say so."""
    import part_a
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    k = part_a.CLASSES_SHOWN + 15
    y = np.repeat(np.arange(k), 14)                       # 7 training rows a class: enough to split
    df = pd.DataFrame({"x": y + rng.normal(0, 1, len(y)), "tag": np.where(rng.random(len(y)) < .5, "u", "v"),
                       "kind": [f"k{v:03d}" for v in y]})
    df.iloc[::2].to_csv("train.csv", index=False)
    df.iloc[1::2].to_csv("test.csv", index=False)
    rc = run_all.main(["--data-dir", ".", "--target", "kind", "--out", "out", "--quick", "--threads", "1",
                       "--parts", "A"])
    capsys.readouterr()
    assert rc == 0
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert f"the {part_a.CLASSES_SHOWN} largest of {k} classes" in md


def test_memory_error_while_encoding_is_one_line(tmp_path, monkeypatch, capsys):
    import prep
    monkeypatch.chdir(tmp_path)
    train, test = _frames()
    (tmp_path / "plant").mkdir()
    train.to_csv("plant/history_2025.csv", index=False)
    test.to_csv("plant/deployment_week1.csv", index=False)

    def no_memory(*a, **k):
        raise MemoryError()
    monkeypatch.setattr(prep, "encode", no_memory)
    rc = run_all.main(["--train", "plant/history_2025.csv", "--test", "plant/deployment_week1.csv",
                       "--target", "status", "--out", "out", "--quick", "--threads", "1", "--parts", "A"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().startswith("error: not enough memory to encode 300 training rows of 3 columns")
