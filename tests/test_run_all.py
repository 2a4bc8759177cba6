"""End to end: ``run_all.py --quick`` on a synthetic CSV pair with other column names.

The pair comes from ``prep.make_synthetic`` with every column renamed and a
shortcut planted in one of them; the run must write the complete report, every
figure it links, and a ``metrics.json`` with the keys each part promises, and
Part D must name the planted column and nothing else.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import prep

REPO = Path(__file__).resolve().parents[1]
RENAME = {"neighbourhood_group": "district", "room_type": "kind", "minimum_nights": "min_stay",
          "amenity_score": "comfort", "number_of_reviews": "reviews", "availability_365": "open_days"}


def test_quick_run_on_synthetic_csvs(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    train, test = prep.make_synthetic(n_train=3000, n_test=1000, shortcut="reviews", seed=3,
                                      columns=RENAME, target="label")
    train.to_csv(data / "train.csv", index=False)
    test.to_csv(data / "test.csv", index=False)
    proc = subprocess.run([sys.executable, "run_all.py", "--quick", "--data-dir", str(data),
                           "--target", "label", "--out", str(out), "--iterations", "100", "--lr", "0.5",
                           "--course"],   # the course framing on data of another schema: Question 2 too
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "report:" in proc.stdout.splitlines()[-1]

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("data", "partA", "partB", "partC", "partD", "q2", "timing"):
        assert key in metrics and "error" not in metrics[key], (key, metrics.get(key))
    assert {"predictive_power", "dominance", "correlated_pairs", "class_distribution"} <= set(metrics["partA"])
    assert {"accuracy", "gradients", "depth_ratios"} <= set(metrics["partB"])
    assert {"rankings", "checks"} <= set(metrics["partC"])
    d = metrics["partD"]
    assert {"test_acc", "train_acc", "val_acc", "suspect_features", "drift", "mitigations", "verdict"} <= set(d)
    assert d["suspect_features"] == ["reviews"]
    assert d["verdict"]["kind"] == "relationship_broken"
    assert [(s["feature"], s["kind"]) for s in d["verdict"]["suspects"]] == [("reviews", "relationship_broken")]
    assert d["recommended"]["name"] == d["validation_winner"] and d["recommended"]["reason"] == "validation"
    assert d["diagnosis_fix"]["name"] == "remove reviews"
    assert d["diagnosis_seconds"] < 20
    assert all({"name", "val_acc", "test_acc", "test_macro_f1"} <= set(m) for m in d["mitigations"])
    removed = next(m for m in d["mitigations"] if m["name"] == "remove reviews")
    assert removed["test_acc"] > d["test_acc"]
    assert metrics["q2"]["answer"] in ("yes", "no")
    assert set(json.loads((out / "config.json").read_text())) >= {"iterations", "seed", "versions"}

    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for title in ("Part A", "Part B", "Part C", "Part D", "Question 2"):
        assert title in md and title in html
    assert "amenity" not in md and "price_class" not in md  # nothing of the course data leaks in
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(figures) >= 12
    for f in figures:
        assert (out / f).stat().st_size > 1000, f
    assert html.count("data:image/png;base64,") == len(figures)
