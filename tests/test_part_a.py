"""Part A on inputs as they come: columns that are not features (ID-like, constant,
date), notes on what was sampled or cut, figures of the top features only, and a
wide file within the memory budget.
"""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jobs
import eda
import prep
import report as rp
import context
import part_a
import run_all

REPO = Path(__file__).resolve().parents[1]


def _frames(n_train=300, n_test=100, extra_numeric=0):
    """make_synthetic's pair plus an ID column, a constant column and a date column
    (and ``extra_numeric`` noise columns)."""
    train, test = prep.make_synthetic(n_train=n_train, n_test=n_test, seed=3, target="label")
    rng = np.random.default_rng(0)
    for df, start in ((train, 0), (test, n_train)):
        n = len(df)
        df.insert(0, "listing_ref", [f"L{start + i:06d}" for i in range(n)])
        df["origin"] = "web"
        df["listed_on"] = pd.date_range("2021-01-01", periods=n, freq="D").strftime("%Y-%m-%d")
        for j in range(extra_numeric):
            df[f"noise_{j}"] = rng.normal(size=n).round(3)
    return train, test


def _part_a(tmp_path, train, test, *args, **screen):
    cfg = run_all.validate(run_all.build_parser().parse_args(
        ["--quick", "--threads", "1", "--target", "label", "--out", str(tmp_path), *args]))
    ds = prep.validate_frames(train, test, target="label", **screen)
    data = prep.encode(ds, val_size=cfg.val_size, seed=cfg.seed)
    ctx = context.Context(cfg=cfg, dataset=ds, data=data, out=Path(tmp_path), report=rp.Report("body"),
                          jobs=jobs.Jobs(0), parts=("A",))
    return ctx, part_a.compute(ctx)


def test_a_result_lists_the_screened_columns_and_render_writes_the_table(tmp_path):
    ctx, res = _part_a(tmp_path, *_frames())
    ex = res.excluded.set_index("column")
    assert ex.loc["listing_ref", "rule"] == "id_like"
    assert ex.loc["origin", "rule"] == "constant"
    assert ex.loc["listed_on", "rule"] == "date"
    assert set(ex["action"]) == {"excluded"}
    assert not {"listing_ref", "origin", "listed_on"} & set(res.numeric + res.categorical)
    assert res.to_metrics()["screened_columns"][0]["column"] == "listing_ref"

    part_a.render(res, ctx.output)
    csv = pd.read_csv(tmp_path / "tables" / "a_screened_columns.csv")
    assert list(csv["column"]) == ["listing_ref", "origin", "listed_on"]
    md = ctx.report.to_markdown()
    section = md[md.index("### Columns that are not features"):md.index("### Missing values")]
    for needle in ("| listing_ref | ID-like |", "| origin | constant |", "| listed_on | date/time |",
                   "**left out of the network's inputs**", "`--keep-columns listing_ref`",
                   "`--expand-dates` turns a date column", "*ID-like*: Nearly one distinct value per row"):
        assert needle in section, needle


def test_boolean_labels_get_their_class_figure(tmp_path, monkeypatch):
    """Labels True/False: the class chart shows both classes, largest first (indexing the
    counts by label read the labels as a row mask and Part A stopped)."""
    rng = np.random.default_rng(2)
    frames = []
    for n in (300, 100):
        df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.choice(["x", "y"], n)})
        df["label"] = df["a"] > 0.4
        frames.append(df)
    drawn = []
    chart = part_a.plots.class_distribution
    monkeypatch.setattr(part_a.plots, "class_distribution",
                        lambda counts, labels: drawn.append((list(counts), labels)) or chart(counts, labels))
    ctx, res = _part_a(tmp_path, *frames)
    part_a.render(res, ctx.output)
    (counts, labels), = drawn
    train_counts = frames[0]["label"].value_counts()
    assert labels == [False, True] and counts == [train_counts[False], train_counts[True]]
    assert (tmp_path / "figures" / "a_class_distribution.png").is_file()


def test_a_single_feature_is_never_dominant(tmp_path):
    """A file with one feature: Part A renders (it stopped on the missing runner-up) and
    says no feature can dominate another, however well the feature predicts."""
    rng = np.random.default_rng(3)
    frames = []
    for n in (300, 100):
        df = pd.DataFrame({"v": rng.normal(size=n)})
        df["label"] = (df["v"] > 0).astype(int)
        frames.append(df)
    ctx, res = _part_a(tmp_path, *frames)
    assert res.predictive_power.loc["v", "pps"] > 0.8
    assert not res.dominance["dominant"] and res.dominance["runner_up"] is None
    part_a.render(res, ctx.output)
    assert "The file has a single feature, so no feature can dominate another." in ctx.report.to_markdown()


def test_kept_and_expanded_columns_say_so(tmp_path):
    ctx, res = _part_a(tmp_path, *_frames(), keep=["origin"], expand_dates=True)
    actions = dict(zip(res.excluded["column"], res.excluded["action"]))
    assert actions["origin"] == "kept (keep=)" and actions["listed_on"].startswith("expanded into")
    assert "listed_on_year" in res.numeric and "origin" in res.categorical
    part_a.render(res, ctx.output)
    md = ctx.report.to_markdown()
    assert "`origin` is flagged but kept, as `--keep-columns` asked." in md
    assert "`listed_on` was expanded into numeric listed_on_year" in md
    assert "`--expand-dates` turns a date column" not in md     # nothing left to expand


def test_clean_frame_says_every_column_is_a_feature(tmp_path):
    train, test = prep.make_synthetic(n_train=200, n_test=60, seed=3, target="label")
    ctx, res = _part_a(tmp_path, train, test)
    assert len(res.excluded) == 0
    part_a.render(res, ctx.output)
    assert "Every column looks like a feature" in ctx.report.to_markdown()
    assert not (tmp_path / "tables" / "a_screened_columns.csv").exists()


def test_figures_show_the_top_features_and_notes_say_what_was_cut(tmp_path, monkeypatch):
    # score only 20 features (the defaults bind at import: through a wrapper)
    real_pp = eda.predictive_power
    monkeypatch.setattr(eda, "predictive_power", lambda *a, **k: real_pp(*a, max_features=20, **k))
    ctx, res = _part_a(tmp_path, *_frames(extra_numeric=30))
    n_features = len(res.numeric) + len(res.categorical)
    shown = list(res.figure_numeric) + list(res.figure_categorical)
    assert len(shown) == part_a.FIGURE_FEATURES < n_features
    scored = res.predictive_power["pps"].dropna()
    assert set(shown) == set(scored.index[:part_a.FIGURE_FEATURES])      # the top by pps
    assert len(scored) == 20 and res.predictive_note.startswith(f"only the 20 of {n_features} features")
    assert res.corr_n_features == len(res.feature_names) > len(res.corr)
    part_a.render(res, ctx.output)
    md = ctx.report.to_markdown()
    assert f"the {len(res.figure_numeric)} of {len(res.numeric)} numeric features with the highest" in md
    assert f"The figures show the {part_a.FIGURE_FEATURES} features with the highest predictive power" in md
    assert f"The heatmap shows the {len(res.corr)} of the {res.corr_n_features} encoded features" in md
    assert f"Only the 20 of {n_features} features with the strongest one-pass association" in md


@pytest.mark.slow
def test_wide_file_part_a_stays_within_2_gb(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for name, n in (("train.csv", 1200), ("test.csv", 300)):
        cols = {f"x{j}": rng.normal(size=n).round(3) for j in range(900)}
        cols.update({f"c{j}": rng.choice(list("abcdefgh"), n) for j in range(99)})
        cols["label"] = (cols["x0"] + rng.normal(scale=0.5, size=n) > 0).astype(int)
        pd.DataFrame(cols).to_csv(data / name, index=False)
    # measured in a fresh parent, so no earlier child of this session counts
    probe = textwrap.dedent(f"""
        import resource, subprocess, sys
        r = subprocess.run([sys.executable, "run_all.py", "--parts", "A", "--data-dir", {str(data)!r},
                            "--target", "label", "--out", {str(tmp_path / "out")!r}],
                           capture_output=True, text=True)
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        sys.stderr.write(r.stderr[-2000:])
    """)
    res = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    rc, max_kib = map(int, res.stdout.split())
    assert rc == 0, res.stderr
    assert max_kib * 1024 < 2 * 1024**3, f"peak RSS {max_kib / 1024:.0f} MB"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "The figures show the 12 features with the highest predictive power (at most 12) of 999" in md
