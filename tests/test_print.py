"""The report on paper, and the sentences that explain Part B's and Question 2's numbers.

On paper: a split table never leaves one column alone in a piece when the others
could take it, its pieces stay together, a caption and a header never end a page
without the rows under them (CSS rules, and a report printed in headless Chromium
shows it), printed fonts are never wider than the ones the tables are measured
in, figures print at the width they were drawn and carry few curves per panel.
In Markdown: counts held as floats are integers (``4,109``, not ``4,109.000``) and
``>`` is written as is. The Part B and Question 2 sentences follow the numbers of
small synthetic inputs, not the course data's.
"""
import os
import re
import shutil
import subprocess
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import context  # noqa: E402
import mlp  # noqa: E402
import part_b  # noqa: E402
import part_q2  # noqa: E402
import plots  # noqa: E402
import report as rp  # noqa: E402
import shared_bias  # noqa: E402

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")


def _print_css():
    return rp._CSS[rp._CSS.index("@media print"):]


def _rule(css, selector):
    """The declarations of every print rule whose selector list holds ``selector``."""
    return " ".join(m.group(2) for m in re.finditer(r"([^{}]+)\{([^{}]*)\}", css)
                    if selector in [s.strip() for s in m.group(1).split(",")])


def _frame(n_rows, n_cols, key_names=("feature",), width=6):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.uniform(size=(n_rows, n_cols)), columns=[f"m{i:02d}_" + "x" * width for i in range(n_cols)])
    for k, name in reversed(list(enumerate(key_names))):
        df.insert(0, name, [f"{name}-{i}" for i in range(n_rows)])
    return df


# ------------------------------------------------------------ split tables
@pytest.mark.parametrize("n_cols, keys", [(9, ("lr", "biases")), (10, ("name",)), (16, ("feature",)),
                                           (23, ("feature", "suspect")), (7, ("a_rather_long_key_name",))])
def test_split_tables_leave_no_column_alone(n_cols, keys):
    t = rp.Report("T").table(_frame(9, n_cols, keys, width=9), floatfmt=".4f", key=list(keys)).blocks[-1]
    pieces = rp._table_pieces(t)
    assert len({cls for _, cls in pieces}) == 1                          # one font for every piece
    shown = [c for p, _ in pieces for c in p.columns[len(keys):]]
    assert shown == t.columns[len(keys):]                                 # every column once, in order
    for p, cls in pieces:
        assert p.columns[:len(keys)] == list(keys)                        # key columns in every piece
        assert rp.table_px(rp._column_widths(p), cls) <= rp.TABLE_BUDGET_PX
    sizes = [len(p.columns) - len(keys) for p, _ in pieces]
    if sum(sizes) >= 2 * len(pieces):
        assert min(sizes) >= 2, sizes
    assert max(sizes) - min(sizes) <= max(2, max(sizes) // 2), sizes     # even pieces


def test_column_groups_balance_what_a_greedy_split_left_alone():
    """Key columns of 3 and 6 em and seven of 5 em: six fit beside the keys in the wide font,
    so filling pieces in order left the seventh alone; the groups are 4 and 3."""
    widths = [3.0, 6.0] + [5.0] * 7
    key_px = rp.table_px(widths[:2], "wide")
    assert rp.table_px(widths[:8], "wide") <= rp.TABLE_BUDGET_PX < rp.table_px(widths, "wide")  # the old (6, 1)
    assert key_px < rp.TABLE_BUDGET_PX
    groups = rp._column_groups(widths, 2, "wide")
    assert sorted(len(g) for g in groups) == [3, 4]
    assert [c for g in groups for c in g] == list(range(2, 9))


def test_a_table_that_fits_the_narrow_font_is_not_split():
    for n_cols in range(4, 30):
        t = rp.Report("T").table(_frame(12, n_cols, width=7), floatfmt=".3f").blocks[-1]
        w = rp._column_widths(t)
        if rp.table_px(w, "wide") > rp.TABLE_BUDGET_PX >= rp.table_px(w, "narrow"):
            break
    else:
        pytest.fail("no table between the wide and the narrow font's width")
    assert rp._table_pieces(t) == [(t, "narrow")]
    assert '<table class="narrow long">' in rp.Report("T").extend(rp.Report("x")).table(
        _frame(12, n_cols, width=7), floatfmt=".3f").to_html()


def test_pieces_stay_together_with_one_caption():
    rep = rp.Report("T").table(_frame(8, 20, ("feature", "kind"), width=9), caption="Evidence per feature",
                               floatfmt=".3f", key=2)
    pieces = rp._table_pieces(rep.blocks[-1])
    assert len(pieces) >= 2
    h = rep.to_html()
    group = re.search(r'<div class="table-group">(.*?)\n</div>', h, re.S)
    assert group and group.group(1).count("<table") == len(pieces)
    captions = re.findall(r"<caption>(.*?)</caption>", h)
    assert captions[0] == f"Evidence per feature (part 1 of {len(pieces)}, continued below)"
    assert captions[-1] == f"Continued (part {len(pieces)} of {len(pieces)})"
    assert all("Evidence" not in c for c in captions[1:])               # the long caption once
    assert "break-inside: avoid" in _rule(_print_css(), ".table-group")
    long = rp.Report("T").table(_frame(rp.LONG_TABLE_ROWS + 4, 20, width=9), floatfmt=".3f").to_html()
    assert '<div class="table-group long">' in long                     # a long one may flow on
    assert "break-inside: auto" in _rule(_print_css(), ".table-group.long")


def test_long_table_keeps_its_caption_and_header_with_its_first_rows():
    n = rp.LONG_TABLE_ROWS + 5
    h = rp.Report("T").table(_frame(n, 3), caption="Many rows", floatfmt=".3f").to_html()
    assert '<table class="long">' in h
    head = re.search(r'<tbody class="head-rows">(.*?)</tbody>', h, re.S)
    assert head and head.group(1).count("<tr>") == rp.HEAD_ROWS >= 1
    assert rp.HEAD_ROWS % 2 == 0                       # the stripes (nth-child) keep their rhythm
    assert h.count("<tr>") == n + 1                    # header and every row, once
    css = _print_css()
    for sel in ("caption", "thead", "h2", "h3"):
        assert "break-after: avoid" in _rule(css, sel), sel
    for sel in ("caption", "tbody.head-rows", "tr"):
        assert "break-inside: avoid" in _rule(css, sel), sel
    short = rp.Report("T").table(_frame(rp.LONG_TABLE_ROWS, 3), floatfmt=".3f").to_html()
    assert '<tbody class="head-rows">' not in short and '<table class="long">' not in short


def test_printed_sizes_are_never_wider_than_measured():
    for cls, (rem, pad) in rp.TABLE_STYLE.items():
        assert rp.PRINT_TABLE_PT[cls] * 96 / 72 <= rem * rp.ROOT_FONT_PX, cls
    assert rp.PRINT_ROOT_PT * 96 / 72 <= rp.ROOT_FONT_PX          # paddings in rem shrink with the root
    css = _print_css()
    assert f"font-size: {rp.PRINT_ROOT_PT:g}pt" in _rule(css, "html")
    assert f"font-size: {rp.PRINT_TABLE_PT['narrow']:g}pt" in _rule(css, "table.narrow")


# ------------------------------------------------------------ figures
def test_figures_print_at_the_width_they_were_drawn(tmp_path):
    fig, ax = plt.subplots(figsize=(6, 3), layout="tight")     # as plots draws them: never cropped
    ax.plot([0, 1], [1, 0])
    png = rp.savefig_atomic(fig, tmp_path / "f.png")
    plt.close(fig)
    assert rp._drawn_width_in(open(png, "rb").read()) == pytest.approx(6.0, abs=0.02)
    h = rp.Report("T").figure(png, "A line").to_html()
    assert 'style="--drawn-width:6.00in"' in h
    assert "var(--drawn-width" in _rule(_print_css(), "figure img")
    assert rp._drawn_width_in(b"<svg></svg>") is None


def _curves_per_panel(fig):
    return [len(ax.get_lines()) for ax in fig.axes if ax.get_visible() and ax.axison]


def test_report_figures_carry_few_curves_per_panel():
    """As Part B and Question 2 call them: never more than ``plots.MAX_LINES`` per panel."""
    rng = np.random.default_rng(0)
    g = {(a, k): np.geomspace(1e-2, 1e-4, 50) * rng.uniform(0.5, 2) for a in ("relu", "sigmoid", "tanh")
         for k in ("layer 1", "layer 2")}
    fig = plots.gradient_magnitudes(g)
    assert max(_curves_per_panel(fig)) <= plots.MAX_LINES
    plt.close(fig)
    paths = {f"lr = {lr:g}": {"|δ_out|": rng.uniform(0.01, 1, (3, 40)), "|δ_hidden|": rng.uniform(0.01, 1, (3, 40))}
             for lr in (0.1, 0.3, 1, 3, 10)}
    fig = plots.loss_panels(paths, "paths", ylabel="norm", one_row=True)
    assert _curves_per_panel(fig) == [2] * 5
    assert fig.get_size_inches()[0] <= plots.WIDTH_IN
    plt.close(fig)


# ------------------------------------------------------------ Markdown
def test_markdown_writes_counts_as_integers_and_symbols_as_they_are():
    report = pd.DataFrame({"precision": [0.201, 1.0, 0.379], "support": [983.0, 4109.0, 0.379]},
                          index=pd.Index(["0", "1", "accuracy"], name="class"))
    rep = rp.Report("T").table(report.reset_index(), floatfmt=".3f")
    rep.table(pd.DataFrame({"lr": ["10"], "iterations to threshold": ["> 200"]}))
    rep.para("Class shares: " + rp.literal("0: 0.135 -> 0.135, 1: 0.56 > 0.5"))
    rep.para(rp.literal("> quoted"))
    md = rep.to_markdown()
    assert "| 1 | 1.000 | 4,109 |" in md and "| 0 | 0.201 | 983 |" in md     # support: a count
    assert "| accuracy | 0.379 | 0.379 |" in md                             # the odd row keeps its digits
    assert "4,109.000" not in md and "&gt;" not in md
    assert "| 10 | > 200 |" in md
    assert "0: 0.135 -> 0.135, 1: 0.56 > 0.5" in md
    assert "\n\\> quoted\n" in md                                           # a quote would start there
    h = rep.to_html()
    assert "<blockquote" not in h and "<p>&gt; quoted</p>" in h and "&gt; 200" in h


def test_counts_rule_leaves_scores_and_losses_alone():
    df = pd.DataFrame({"acc": [1.0, 0.5], "loss": [2.0, 1.25], "n": [12.0, 3.0]})
    md = rp.Report("T").table(df, floatfmt=".3f").to_markdown()
    assert "| 1.000 | 2.000 | 12 |" in md and "| 0.500 | 1.250 | 3 |" in md


# ------------------------------------------------------------ Question 2's sentences
def _summary(lr, model, diverged, acc=0.7, acc_sd=0.02, loss=0.5, n=5):
    return {"model": model, "lr": lr, "iters_to_threshold": [10] * n, "iters_to_threshold_median": 10.0,
            "final_loss_mean": None if diverged == 1 else loss, "final_acc_mean": None if diverged == 1 else acc,
            "final_acc_std": None if diverged == 1 else acc_sd, "diverged_frac": diverged,
            "mean_cos_paths": 0.1, "mean_norm_output_path": 0.2, "mean_norm_hidden_path": 0.1}


def _findings(**kw):
    return {k: kw.get(k, []) for k in ("slower", "faster", "less_stable", "more_stable")}


def test_q2_conclusion_ties_the_findings_to_the_hypotheses():
    summaries = {"data": [_summary(lr, m, 1.0 if (lr, m) == (10.0, "shared") else 0.0)
                          for lr in (0.1, 1.0, 10.0) for m in ("shared", "independent")],
                 "synthetic": [_summary(lr, m, {"shared": 0.6, "independent": 0.2}[m] if lr == 10.0 else 0.0)
                               for lr in (0.1, 1.0, 10.0) for m in ("shared", "independent")]}
    findings = {"data": _findings(less_stable=[10.0], slower=[1.0]), "synthetic": _findings(less_stable=[10.0])}
    line = part_q2._q2_conclusion(findings, summaries, 5)
    assert line.startswith("**In one line:** hypothesis 3 (a larger effective step on b) is borne out: the shared "
                           "model diverges more often at lr 10 (training data: 5 of 5 seeds against 0 of 5; "
                           "synthetic task: 3 of 5 seeds against 1 of 5)")
    assert "sharing converges more slowly (lr 1 on the training data), as hypothesis 2 (coupled paths)" in line
    assert "at lr 0.1 neither task shows a difference beyond the rules, as hypothesis 5 (no difference)" in line
    # other numbers, other sentence
    quiet = part_q2._q2_conclusion({"data": _findings(faster=[1.0]), "synthetic": _findings(slower=[10.0])},
                                   summaries, 5)
    assert "hypothesis 3 (a larger effective step on b) finds no support" in quiet
    assert "speed differs in both directions (slower: lr 10 on the synthetic task; faster: lr 1 on the " \
           "training data)" in quiet
    assert "at lr 0.1 neither task" in quiet and "borne out" not in quiet


def test_the_model_that_diverges_less_is_checked_against_the_majority_class():
    summaries = {"data": [_summary(10.0, "shared", 1.0), _summary(10.0, "independent", 0.0, acc=0.412, acc_sd=0.187)],
                 "synthetic": [_summary(10.0, "shared", 0.8), _summary(10.0, "independent", 0.2, acc=0.39,
                                                                       acc_sd=0.014)]}
    findings = {"data": _findings(less_stable=[10.0]), "synthetic": _findings(less_stable=[10.0])}
    lines = part_q2._learning_sentences(findings, summaries, {"data": 0.563, "synthetic": 0.335}, 5)
    assert lines[0].startswith("training data, lr 10: the independent model diverges in 0 of 5 seeds but does not "
                               "learn either: its final accuracy, 0.412 ± 0.187, is not above the 0.563 of always "
                               "predicting the majority class")
    assert lines[1].startswith("synthetic task, lr 10: the independent model diverges in 1 of 5 seeds and learns: its "
                               "final accuracy, 0.390 ± 0.014, is above the 0.335")
    assert lines[-1].endswith(f"(Rule: {part_q2.Q2_LEARNS.description}.)")
    flipped = part_q2._learning_sentences(findings, summaries, {"data": 0.3, "synthetic": 0.5}, 5)
    assert "0.412 ± 0.187, is above the 0.300" in flipped[0] and "does not learn" in flipped[1]
    assert part_q2._learning_sentences({"data": _findings()}, {"data": []}, {"data": 0.5}, 5) == []


def test_q2_tables_show_the_spread_and_the_paths_per_learning_rate():
    summary = [_summary(1.0, "shared", 0.0, acc=0.764, acc_sd=0.038, loss=0.495),
               _summary(1.0, "independent", 0.0, acc=0.824, acc_sd=0.0096, loss=0.401),
               _summary(10.0, "shared", 1.0), _summary(10.0, "independent", 0.0, acc=0.41, acc_sd=0.19, loss=1.63)]
    loss_sd = {("shared", 1.0): 0.073, ("independent", 1.0): 0.034, ("shared", 10.0): None,
               ("independent", 10.0): 0.18}
    shown = part_q2._q2_display(summary, 5, 200, loss_sd)
    rep = rp.Report("q").table(shown, na={"final loss": "diverged", "final accuracy": "diverged"}, key=2)
    rows = rep.blocks[0].rows
    assert rows[0][5:] == ["0.495 ± 0.073", "0.764 ± 0.038"]
    assert rows[2][5:] == ["diverged", "diverged"]
    assert rows[3][5:] == ["1.630 ± 0.180", "0.410 ± 0.190"]
    paths = part_q2._q2_paths_display(summary)
    assert list(paths["lr"]) == ["1", "10"]
    assert list(paths.columns) == ["lr", "cos(paths) shared", "|δ_out| shared", "|δ_hidden| shared",
                                   "cos(paths) independent", "|δ_out| independent", "|δ_hidden| independent"]


def test_hypotheses_are_numbered_as_in_the_derivation():
    text = open(os.path.join(DOCS, "q2_derivation.md"), encoding="utf-8").read()
    listed = {int(n): re.sub(r"\$", "", title).strip().lower()
              for n, title in re.findall(r"^(\d)\. \*\*(.+?)\.\*\*", text, re.M)}
    for number, title in part_q2.HYPOTHESES.values():
        assert listed.get(number) == title, (number, title, listed)


@pytest.fixture(scope="module")
def q2_small():
    """Question 2 on a tiny task: two learning rates (one too large), three seeds."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    Y = np.eye(3)[y]
    exp = shared_bias.bias_experiment(X, Y, lrs=(0.5, 40.0), seeds=(0, 1, 2), n_iter=30, n_jobs=1)
    rows, findings = part_q2._q2_verdict(exp["summary"])
    shared = [s for s in exp["summary"] if s["model"] == "shared"]
    return part_q2.Q2Result(
        seeds=(0, 1, 2), lrs=(0.5, 40.0), n_iter=30, n_rows=90, n_features=3, n_classes=3,
        experiments={"data": exp}, tables={"data": pd.DataFrame(rows)}, findings={"data": findings},
        cosines=[s["mean_cos_paths"] for s in shared if s["mean_cos_paths"] is not None],
        path_ratios=[s["mean_norm_hidden_path"] / s["mean_norm_output_path"] for s in shared
                     if s["mean_norm_output_path"]],
        majority={"data": float(Y.mean(0).max())}, final_loss_sd={"data": part_q2._final_loss_sd(exp["curves"])})


def test_q2_renders_its_numbers_and_few_curves(q2_small, tmp_path, monkeypatch):
    drawn = []
    original = plots.loss_panels

    def spy(*args, **kw):
        fig = original(*args, **kw)
        drawn.append(_curves_per_panel(fig))
        return fig
    monkeypatch.setattr(part_q2.plots, "loss_panels", spy)
    out = context.Output(tmp_path, rp.Report("q"))
    part_q2.render(q2_small, out)
    assert len(drawn) == 2 and all(max(d) <= 2 for d in drawn)                # loss and paths: 2 per panel
    md = out.report.to_markdown()
    assert "**In one line:**" in md and "± " in md
    for (model, lr), sd in q2_small.final_loss_sd["data"].items():
        sm = part_q2._row(q2_small.experiments["data"]["summary"], model, lr)
        if sm["final_loss_mean"] is not None:
            assert f"{sm['final_loss_mean']:.3f} ± {sd:.3f}" in md
    assert f"always predicting the majority class scores {q2_small.majority['data']:.3f}" in md


# ------------------------------------------------------------ Part B's sentences
def test_ratio_crossing():
    assert part_b._ratio_crossing([9.0, 5.0, 2.0, 0.9, 0.7, 0.6]) == (4, True)
    assert part_b._ratio_crossing([0.5, 0.6, 0.4]) is None
    assert part_b._ratio_crossing([2.0, 0.5, 1.5]) == (2, False)
    assert part_b._ratio_crossing([0.5, 0.9, 1.2, 1.3]) == (3, True)


def _grads(ratios):
    g1 = np.full(len(ratios), 1e-3)
    return np.column_stack([g1, g1 * np.asarray(ratios), g1])


def test_crossing_sentence_follows_its_numbers():
    grads = _grads([9.0, 5.0, 2.0, 0.9, 0.7, 0.6])
    common = {"early": 0.64, "late": 0.63, "inputs": (0.167, 0.498)}
    text = part_b.crossing_sentence("sigmoid", (4, True), grads, common)
    assert text.startswith("`sigmoid`: the ratio mean |dL/dW2| / mean |dL/dW1| falls below 1 at iteration 4 and "
                           "stays there (9.00 at the first iteration, 0.60 at the last).")
    assert "Layer 1's inputs average 0.167, layer 2's (sigmoid outputs) 0.498." in text
    assert "Without that part the ratio is 0.64 at iteration 2 and 0.63 after training: the ratio above 1 " \
           "at the start is that common part" in text
    other = part_b.crossing_sentence("tanh", (4, False), grads, {"early": 3.1, "late": 0.8, "inputs": (0.1, 0.0)})
    assert "(and crosses back later)" in other and "0.80 after training: without it the ratio changes side too" in other
    assert "is that common part" not in other
    up = part_b.crossing_sentence("relu", (3, True), _grads([0.5, 0.9, 1.2, 1.3]), None)
    assert "rises above 1 at iteration 3 and stays there (0.50 at the first iteration, 1.30 at the last)." in up


def test_common_part_is_the_gradient_without_the_shared_error():
    """dL/dW_l - dL/db_l ⊗ mean(input_l) = sum_i delta_i (input_i - mean)^T / n, against a NumPy backward pass."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(64, 4)) + np.array([0.0, 0.0, 1.0, 2.0])      # inputs with a mean
    y = rng.integers(0, 3, 64)
    model = mlp.MLP(hidden=(5, 4), activation="sigmoid", n_iter=3, lr=0.5, dtype="float64", seed=2).fit(X, y)
    ratio, (m1, m2) = part_b._common_part(model, X, y)
    W, b = model.weights_, model.biases_

    def sig(z):
        return 1 / (1 + np.exp(-z))
    A1 = sig(X @ W[0].T + b[0])
    A2 = sig(A1 @ W[1].T + b[1])
    Z = A2 @ W[2].T + b[2]
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    D3 = (P - np.eye(3)[y]) / len(y)                  # softmax + mean cross-entropy
    D2 = (D3 @ W[2]) * A2 * (1 - A2)
    D1 = (D2 @ W[1]) * A1 * (1 - A1)
    c2 = np.abs(D2.T @ (A1 - A1.mean(0))).mean()
    c1 = np.abs(D1.T @ (X - X.mean(0))).mean()
    assert ratio == pytest.approx(c2 / c1, rel=1e-6)
    assert (m1, m2) == pytest.approx((X.mean(), A1.mean()))


# ------------------------------------------------------------ printed in Chromium
def _tool(*names):
    return next((shutil.which(n) for n in names if shutil.which(n)), None)


@pytest.fixture(scope="module")
def printer():
    found = {"chromium": _tool("chromium", "chromium-browser", "google-chrome"), "pdftotext": _tool("pdftotext"),
             "pdfinfo": _tool("pdfinfo")}
    if None in found.values():
        msg = "chromium and poppler-utils (pdftotext, pdfinfo) are needed to print"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set, so this is an error)")
        pytest.skip(msg)
    return found


def _pages(printer, page_html, tmp_path, name):
    """The text of each page of ``page_html`` printed on A4 by headless Chromium."""
    src = tmp_path / f"{name}.html"
    src.write_text(page_html.replace("</head>", "<style>@page { size: A4 }</style></head>"), encoding="utf-8")
    pdf = tmp_path / f"{name}.pdf"
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        subprocess.run([printer["chromium"], "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
                        f"--print-to-pdf={pdf}", "--no-pdf-header-footer", src.as_uri()],
                       capture_output=True, timeout=120, check=True)
    n = int(re.search(r"Pages:\s+(\d+)", subprocess.run([printer["pdfinfo"], str(pdf)], capture_output=True,
                                                         text=True, check=True).stdout).group(1))
    return [subprocess.run([printer["pdftotext"], "-f", str(p), "-l", str(p), str(pdf), "-"], capture_output=True,
                           text=True, check=True).stdout for p in range(1, n + 1)]


def _paper_report():
    """Tables landing all over the pages: each after a paragraph of a different length."""
    rep = rp.Report("On paper")
    rng = np.random.default_rng(0)
    for i in range(10):
        rep.para("Filler sentence that pushes the next table down the page. " * (4 + 9 * i))
        long = pd.DataFrame({"row": [f"L{i}r{j}" for j in range(rp.LONG_TABLE_ROWS + 6)],
                             "value": rng.uniform(size=rp.LONG_TABLE_ROWS + 6)})
        rep.table(long, caption=f"Longtable{i} caption", floatfmt=".3f")
        wide = _frame(rp.LONG_TABLE_ROWS, 20, ("feature", "kind"), width=9)      # not long: kept whole
        wide["feature"] = [f"W{i}k{j}" for j in range(rp.LONG_TABLE_ROWS)]
        rep.table(wide, caption=f"Widetable{i} caption", floatfmt=".3f", key=2)
    return rep


def test_printed_tables_keep_caption_rows_and_pieces_together(printer, tmp_path):
    page = _paper_report().to_html()
    assert page.count('<div class="table-group">') == 10 and page.count('<table class="long">') == 10
    pages = _pages(printer, page, tmp_path, "paper")
    assert len(pages) >= 6

    def on(text):
        return [k for k, p in enumerate(pages) if text in p]
    for i in range(10):
        cap = on(f"Longtable{i}")
        assert len(cap) == 1 and on(f"L{i}r0") == cap and on(f"L{i}r1") == cap, f"long table {i}"
        last = f"W{i}k{rp.LONG_TABLE_ROWS - 1}"
        assert len(on(f"W{i}k0")) == 1 and len(on(last)) == 1, f"wide table {i}: pieces on two pages"
        assert on(f"W{i}k0") == on(f"Widetable{i}")


def test_the_printed_check_can_fail(printer, tmp_path, monkeypatch):
    """The control: without the rules that keep them, some caption or piece is left behind."""
    css = rp._CSS.replace(", caption, .table-group, tbody.head-rows {", " {").replace(
        "h2, h3, h4, caption, thead { break-after: avoid;", "h2, h3, h4 { break-after: avoid;")
    assert css != rp._CSS
    monkeypatch.setattr(rp, "_CSS", css)
    pages = _pages(printer, _paper_report().to_html(), tmp_path, "control")

    def on(text):
        return [k for k, p in enumerate(pages) if text in p]
    torn = [i for i in range(10) if on(f"Longtable{i}") != on(f"L{i}r1") or len(on(f"W{i}k0")) > 1]
    assert torn
