"""Part C on a file wider than Part A scores: the columns Part A left unscored."""
import functools
import json

import numpy as np
import pandas as pd

import eda
import run_all


def test_part_c_compares_only_the_columns_part_a_scored(tmp_path, monkeypatch):
    """A wide file's Part A scores only its strongest columns (eda.PP_MAX_FEATURES); the
    others have no predictive power. Part C ranks the scored ones, leaves the others
    without a Part A rank (it used to stop on casting their NaN to int) and computes its
    agreement with Part A over the scored columns only."""
    rng = np.random.default_rng(5)
    data = tmp_path / "data"
    data.mkdir()
    for name, n in (("train.csv", 240), ("test.csv", 80)):
        cols = {f"w{j}": rng.normal(size=n).round(3) for j in range(7)}
        cols["label"] = (cols["w0"] + cols["w1"] + rng.normal(scale=0.3, size=n) > 0).astype(int)
        pd.DataFrame(cols).to_csv(data / name, index=False)
    monkeypatch.setattr(eda, "predictive_power", functools.partial(eda.predictive_power, max_features=4))
    out = tmp_path / "out"
    rc = run_all.main(["--data-dir", str(data), "--target", "label", "--out", str(out), "--parts", "A,C",
                       "--quick", "--threads", "1", "--iterations", "5", "--activations", "relu"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "error" not in metrics["partC"], metrics["partC"]
    side = pd.DataFrame(metrics["partC"]["comparison"])
    scored = side["Part A pps"].notna()
    assert scored.sum() == 4 and len(side) == 7
    assert side.loc[~scored, "Part A rank"].isna().all()
    assert sorted(side.loc[scored, "Part A rank"].astype(int)) == [1, 2, 3, 4]
    assert np.isfinite(metrics["partC"]["checks"]["relu"]["spearman_vs_partA"])
    md = (out / "report.md").read_text()
    assert "over the 4 of 7 columns Part A scored" in md


def test_the_agreement_sentence_says_why_spearman_is_undefined():
    """A Spearman that is NaN gets the reason its numbers give: fewer than three scored
    columns, or scores that are all equal (not 'fewer than three' when all were scored)."""
    import part_c

    def sentence(pps, rho):
        return part_c._agreement_with_part_a(pd.DataFrame({"pps": pps}), rho)
    assert "(fewer than three columns scored)" in sentence([0.5, 0.2, np.nan, np.nan], float("nan"))
    assert "all equal: Spearman is undefined" in sentence([0.0, 0.0, 0.0, 0.0], float("nan"))
    assert sentence([0.5, 0.2, 0.1, 0.0], 0.4).endswith("Spearman +0.40")
    assert sentence([0.5, 0.2, 0.1, np.nan], 0.4).endswith("Spearman +0.40 over the 3 of 4 columns Part A scored")
