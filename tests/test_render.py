"""What the renderers and the summary write, as a reader sees it: terms defined,
numbers with separators, counts as "k of n", short per-iteration tables (with the
full CSV on disk) and summary sentences that end.

Part results come from the module fixture of ``test_results`` (a small synthetic
run computed once) or are built by hand.
"""
import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import report as rp
import context
import glossary as glossary_mod
import part_b
import part_d
import part_q2
import prose
import run_all
from test_results import SHORTCUT, run  # noqa: F401  (the module fixture)


def _rendered(results, code, tmp_path):
    out = context.Output(tmp_path, rp.Report("t"))
    run_all.PARTS[code].impl.render(results[code], out)
    return out


def _summary_sentences(md):
    """The running text of the summary section: its paragraphs, split into sentences."""
    section = md.split("## Summary", 1)[1].split("\n## ", 1)[0]
    paras = [p.strip() for p in section.split("\n\n")
             if p.strip() and not p.lstrip().startswith(("|", "*Accuracy", "*Parts"))]
    return paras


def test_summary_data_line_has_separators_relative_path_and_class_names(run, tmp_path):
    data = {"source": str(tmp_path / "data"), "files": ["../data/train.csv", "../data/test.csv"],
            "synthetic": False, "target": "label",
            "classes": ["cheap", "fair", "dear"], "n_train": 41348, "n_fit": 33078, "n_val": 8270,
            "n_test": 7297, "n_features": 12}
    ctx = dataclasses.replace(run, out=tmp_path / "out", metrics={"data": data, "timing": {"total": 125.0}})
    md = run_all.summary(ctx).to_markdown()
    line = next(ln for ln in md.splitlines() if ln.startswith("Data:"))
    assert "41,348 training rows (33,078 to fit, 8,270 to validate) and 7,297 test rows" in line
    assert line.startswith("Data: `../data/train.csv` and `../data/test.csv`: ") and str(tmp_path) not in line
    assert "3 classes (cheap, fair, dear)" in line
    assert "**Run time:** 2 min 5 s" in md


def test_every_summary_sentence_ends_with_a_full_stop(run, tmp_path):
    ctx = dataclasses.replace(run, metrics={"data": {"source": "x", "n_train": 10, "classes": [0, 1]},
                                            "timing": {"total": 3.2, "workers": 2, "cpu_main": 1.0}})
    paras = _summary_sentences(run_all.summary(ctx).to_markdown())
    assert len(paras) >= 4                       # data, verdict, mitigation, run time
    for p in paras:
        assert p.endswith("."), p
    verdict = next(p for p in paras if p.startswith("**Verdict:**"))
    assert 1 <= len(re.findall(r"[.!?](?:\s|$)", verdict.replace("**Verdict:**", ""))) <= 2, verdict


def test_glossary_defines_the_abbreviations_the_report_uses(run, tmp_path):
    out = context.Output(tmp_path, rp.Report("body"))
    for code in ("A", "B", "C", "D", "Q2"):
        run_all.PARTS[code].impl.render(run.results[code], out)
    doc = rp.Report("doc").extend(run_all.summary(dataclasses.replace(run, report=out.report)))
    doc.extend(out.report)
    md = doc.to_markdown()
    glossary = md.split("## Glossary", 1)[1]
    for term in ("pps", "lr", "macro-F1", "ReLU"):
        assert f"- **{term}**:" in glossary, term
    assert "pps (predictive-power score)" in md            # explained where first used
    assert md.count("pps (predictive-power score)") == 1
    body = md.split("## Glossary", 1)[0]
    unused = [t for t in glossary_mod.GLOSSARY if not re.search(r"(?<!\w)" + re.escape(t) + r"(?!\w)", body)]
    assert unused                                           # some GLOSSARY terms go unused here ...
    for term in unused:
        assert f"- **{term}**:" not in glossary, term       # ... and are not listed


def test_define_terms_registers_only_used_terms():
    rep = rp.Report("r").para("The lr is 0.1 and the `pps` is code.").table({"ROC AUC": [0.7]})
    glossary_mod.define_terms(rep)
    assert set(rep.glossary) == {"lr", "pps", "ROC AUC"}    # code spans count as used; tables too
    assert not glossary_mod.define_terms(rp.Report("r").para("nothing here")).glossary


def test_part_b_shows_a_few_gradient_rows_and_keeps_every_row_in_the_csv(run, tmp_path):
    b = run.results["B"]
    out = _rendered(run.results, "B", tmp_path)
    for act, g in b.gradients.items():
        csv = pd.read_csv(tmp_path / "tables" / f"b_gradients_{act}.csv")
        assert len(csv) == len(g) and list(csv["iteration"]) == list(range(1, len(g) + 1))
        np.testing.assert_allclose(csv["mean|dL/dW1|"], g[:, 0], rtol=1e-6)
        table = next(t for t in out.report.blocks if isinstance(t, rp.Table) and t.caption
                     and t.caption.startswith("Gradient magnitudes at"))    # the activations side by side
        assert f"{act} mean|dL/dW1|" in table.columns
        assert 2 <= len(table.rows) <= 8
        assert table.rows[0][0] == "1" and table.rows[-1][0] == str(len(g))
        assert f"(tables/b_gradients_{act}.csv)" in table.caption
        assert not any("e-0" in c for row in table.rows for c in row)


@pytest.mark.parametrize("n, expected", [(1, [1]), (7, [1, 2, 5, 7]), (200, [1, 2, 5, 10, 20, 50, 100, 200])])
def test_sample_iterations(n, expected):
    assert part_b._sample_iterations(n) == expected


def test_sample_iterations_never_exceeds_its_rows():
    got = part_b._sample_iterations(100_000)
    assert len(got) <= 8 and got[0] == 1 and got[-1] == 100_000 and got == sorted(set(got))


def test_plain_number():
    assert prose.plain_number(0.0025174) == "0.00252"
    assert prose.plain_number(6861.3) == "6,860"
    assert prose.plain_number(4.321e-6) == "4.32 × 10⁻⁶"


def _q2_summary(lr, model, iters, diverged, final_loss):
    return {"model": model, "lr": lr, "iters_to_threshold": iters,
            "iters_to_threshold_median": None if sum(i is not None for i in iters) * 2 <= len(iters)
            else float(np.median([np.inf if i is None else i for i in iters])),
            "final_loss_mean": final_loss, "final_acc_mean": None if final_loss is None else 0.7,
            "diverged_frac": diverged, "mean_cos_paths": 0.1, "mean_norm_output_path": 0.2,
            "mean_norm_hidden_path": 0.1}


def test_q2_table_shows_counts_diverged_and_unreached_thresholds():
    summary = [_q2_summary(10.0, "shared", [None] * 5, 1.0, None),
               _q2_summary(10.0, "independent", [3, 4, 5, None, None], 0.4, 0.9),
               _q2_summary(1.0, "shared", [12, 15, 20, 11, 14], 0.0, 0.5),
               _q2_summary(1.0, "independent", [30, None, 40, 35, 33], 0.0, 0.6)]
    df = part_q2._q2_display(summary, 5, 200)
    rep = rp.Report("q").table(df, na={"final loss": "diverged", "final accuracy": "diverged"}, key=2)
    rows = [r[:7] for r in rep.blocks[0].rows]       # the cells as shown
    assert rows[0] == ["1", "shared", "14", "5 of 5", "0 of 5", "0.5", "0.7"]
    assert rows[2] == ["10", "shared", "> 200", "0 of 5", "5 of 5", "diverged", "diverged"]
    assert rows[3] == ["10", "independent", "5", "3 of 5", "2 of 5", "0.9", "0.7"]
    assert rep.blocks[0].columns[:2] == ["lr", "biases"] and rep.blocks[0].key == 2


def test_q2_rendering_shows_counts_and_keeps_the_csv(run, tmp_path):
    q = run.results["Q2"]
    out = _rendered(run.results, "Q2", tmp_path)
    md = out.report.to_markdown()
    n = len(q.seeds)
    assert f"of {n} |" in md and "not reached" not in md.split("### Answer")[0].split("### Experiment")[1]
    for task, table in q.tables.items():
        csv = pd.read_csv(tmp_path / "tables" / f"q2_{task}.csv")
        assert list(csv.columns) == list(table.columns) and len(csv) == len(table)


class _D:
    """A hand-built Part D result with the fields the summary reads from ``DResult``."""

    def __init__(self, by_val, fix=None):
        self.network = "relu"
        self.split_accuracy = {"relu": {"train": 0.9, "val": 0.88, "test": 0.41}}
        self.summary_sentences = ["`shortcut` predicts the label in train but not in test (relationship_broken)"]
        self.mitigations = [{"name": "baseline", "val_acc": 0.88, "test_acc": 0.41},
                            {"name": "remove shortcut", "val_acc": 0.7, "test_acc": 0.66,
                             "gain": 0.25, "gain_lo": 0.2, "gain_hi": 0.3},
                            {"name": "L2 1e-3", "val_acc": 0.89, "test_acc": 0.42}]
        self.by_val, self.fix, self.root_cause = by_val, fix, fix is not None
        self.accuracy = {"relu": {"val": 0.88, "test": 0.41}}
        self.base_test = 0.40           # always predicting the training majority class, on test


def test_verdict_sentences_quote_the_result():
    d = SimpleNamespace(summary_sentences=["the shift is in x", "Drop it."])
    assert part_d.verdict_sentences(d) == ["The shift is in x.", "Drop it."]
    assert part_d.verdict_sentences(_D(0)) == [
        "`shortcut` predicts the label in train but not in test (relationship_broken)."]
    assert part_d.verdict_sentences(None)[0].endswith(".")


def test_recommended_mitigation_is_the_validation_winner():
    m = part_d.recommended_mitigation(_D(2, fix=1))
    assert m["name"] == "L2 1e-3" and m["test_acc"] == 0.42
    assert m["fix"]["name"] == "remove shortcut"
    text = " ".join(part_d.mitigation_sentences(m))
    assert "**L2 1e-3**, with test accuracy 0.420 against 0.410 without it (+1.0 points)." in text
    assert ("The diagnosis's fix, **remove shortcut**, which validation (cut from the training file) cannot "
            "rank, scores 0.660 on test (+25.0 points; 99% CI +20.0 to +30.0 points, against 0.400 for always "
            "predicting the training majority class)") in text
    base = part_d.mitigation_sentences(part_d.recommended_mitigation(_D(0)))
    assert base == ["No mitigation beats the unmitigated network on validation, so none is recommended; "
                    "its test accuracy is 0.410."]
    acc = run_all._summary_accuracy({"D": _D(2, fix=1)})
    assert list(acc) == ["relu", "relu + L2 1e-3 (recommended)", "relu + remove shortcut (the diagnosis's fix)"]


@pytest.mark.parametrize("n", [context.REPORT_MAX_ROWS, context.REPORT_MAX_ROWS + 1, 999])
def test_a_long_table_is_shown_by_its_first_rows_and_saved_whole(tmp_path, n):
    """A wide file's per-column tables (999 rows) made reports of 5,000 table rows: the
    report shows at most REPORT_MAX_ROWS of a table and says where every row is; the CSV
    keeps them all, with show_table and save_table alike."""
    out = context.Output(tmp_path, rp.Report("t"))
    df = pd.DataFrame({"column": [f"x{j}" for j in range(n)], "share": np.linspace(0, 1, n)})
    context.show_table(out, df, "a_long", caption="Per column")
    out.save_table(df, "b_long")
    shown = min(n, context.REPORT_MAX_ROWS)
    md = out.report.to_markdown()
    for name in ("a_long", "b_long"):
        assert len(pd.read_csv(tmp_path / "tables" / f"{name}.csv")) == n
        assert (f"the first {shown} of {n:,} rows; every row is in tables/{name}.csv" in md.lower()) == (n > shown)
    assert "| x0 " in md and f"| x{shown - 1} " in md and f"| x{shown} " not in md
    assert md.count("| x") == 2 * shown
