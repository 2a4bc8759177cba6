"""Data is text: a column name, category, label or file name is shown as written, never run.

- ``report.literal`` writes a data string as inline Markdown that GitHub and the
  HTML renderer show character for character: hostile strings through
  headings, paragraphs, lists, banners, captions and tables form no element,
  attribute, link, heading or list in either output;
- table cells and column headers are literal without being asked;
- the HTML page carries a Content-Security-Policy that refuses scripts (checked
  in Chromium when it is installed);
- ``report.csv_text`` neutralises the cells a spreadsheet would run as a formula;
- every plotting function draws labels with dollars as written.
"""
import csv
import html
import io
import random
import re
import string
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import plots  # noqa: E402
import report as rp  # noqa: E402

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "x\n# heading\n<script>alert(2)</script>\n- item\r\n1. one",
    "[docs](https://example.org/login)",
    "[click](javascript:alert(1))",
    "<javascript:alert(1)>",
    "<https://example.org/login>",
    "`code` and ``two``",
    "a|b|c",
    "*em* _em_ **b** __b__ ~~s~~ ~s~",
    "$x$ and $$y$$",
    "$50_$99",
    "tax_$ / net_$",
    "$0-$49",
    "&amp; &lt;b&gt; &#60;i&#62;",
    "\\*not\\* \\",
    "- item",
    "---",
    "> quote",
    "{: onclick=alert(1)}",
    "![x](https://example.org/x.png)",
]


def _fold(s):
    """A data string as the report shows it: on one line."""
    return re.sub(r"\r\n|[\r\n\t]", " ", s)


def _unescaped(text, ch):
    """How many ``ch`` in ``text`` are not backslash-escaped (an even run of backslashes before)."""
    return sum(1 for m in re.finditer(r"(\\*)" + re.escape(ch), text) if len(m.group(1)) % 2 == 0)


class _Page(HTMLParser):
    """Elements (tag, attribute names), attribute values and the text of an HTML page."""

    def __init__(self, page):
        super().__init__(convert_charrefs=True)
        self.elements, self.attrs, self.text, self._skip = [], [], [], 0
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, tuple(sorted(k for k, _ in attrs))))
        self.attrs += attrs
        self._skip += tag == "style"

    def handle_endtag(self, tag):
        self._skip -= tag == "style"

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    return rp.savefig_atomic(fig, tmp_path_factory.mktemp("fig") / "figures" / "line.png")


def _report(s, png, code=True):
    """Every kind of block with the data string ``s`` in it (through ``literal``, tables raw)."""
    lit = rp.literal(s)
    name = rp.literal(s, code=True) if code else lit
    rep = rp.Report("Data is text", run_id="run-1")
    rep.heading(f"Feature {lit}", 2)
    rep.para(f"The column {name} against the label {lit}, in **bold {lit}** and *em {lit}*.")
    rep.bullets([f"item {lit}", [f"sub {name}"]], ordered=True)
    rep.banner(f"failed: {lit}")
    rep.heading(f"Detail {lit}", 3)
    rep.table(pd.DataFrame({s: [s, "plain"], "n": [1, 2]}), caption=f"Table of {lit}")
    rep.figure(png, caption=f"Figure of {lit}")
    return rep


# ------------------------------------------------------------------ literal
@pytest.mark.parametrize("s", HOSTILE)
def test_literal_escapes_every_markup_character(s):
    lit = rp.literal(s)
    assert "\n" not in lit and "\r" not in lit and "\t" not in lit
    assert "<" not in lit and not lit.startswith(">")            # never a tag, never a quote
    assert re.fullmatch(r"(?:[^&]|&(?:lt|gt|amp);)*", lit)        # every & starts an entity
    for ch in "*`[]{}#~$":
        assert _unescaped(lit, ch) == 0, ch
    # an unescaped "_" only inside a word, where it cannot start or end emphasis
    for m in re.finditer(r"(?<!\\)_", lit):
        assert lit[m.start() - 1].isalnum() and lit[m.end()].isalnum(), lit
    assert not re.match(r"[-+=]|\d+[.)]", lit)                    # no list item, rule or underline


@pytest.mark.parametrize("s", HOSTILE)
def test_literal_reads_back_as_the_data(s):
    """What the HTML renderer shows of ``literal(s)`` is ``s`` itself, escaped for HTML."""
    shown = html.escape(_fold(s), quote=False)
    assert rp._plain(rp.literal(s)) == _fold(s)
    assert rp._inline_html(rp.literal(s)) == shown
    assert rp._inline_html(rp.literal(s, code=True)) == f"<code>{shown}</code>"
    assert rp._inline_html(f"**{rp.literal(s)}**") == f"<strong>{shown}</strong>"


def test_literal_round_trip_on_random_strings():
    """Random strings of punctuation, letters, spaces and line breaks: always shown as written,
    alone and inside emphasis and link text written around them."""
    rng = random.Random(0)
    alphabet = string.punctuation + "ab1 _\n\té"
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        shown = html.escape(_fold(s), quote=False)
        lit = rp.literal(s)
        assert rp._inline_html(f"x {lit} y") == f"x {shown} y", s
        assert rp._inline_html(rp.literal(s, code=True)) == f"<code>{shown}</code>", s
        if _fold(s).strip(" ") == _fold(s):
            assert rp._inline_html(f"*{lit}*") == f"<em>{shown}</em>", s
            assert rp._inline_html(f"[{lit}](#a)") == f'<a href="#a">{shown}</a>', s


def test_literal_code_span_fence_outgrows_the_backticks():
    assert rp.literal("a`b", code=True) == "``a`b``"
    assert rp.literal("`x`", code=True) == "`` `x` ``"
    assert rp.literal("", code=True) == "` `"


def test_snake_case_stays_readable():
    assert rp.literal("minimum_nights") == "minimum_nights"
    assert rp.literal("_id") == "\\_id"
    assert rp.literal("0.25 of 1. x") == "0.25 of 1. x"          # only a leading "1. " is a list
    assert rp.literal("1. x") == "1\\. x"


# ------------------------------------------------------------------ both renderers
@pytest.mark.parametrize("s", HOSTILE)
def test_html_has_no_element_or_attribute_from_data(s, png, tmp_path):
    page = _Page(_report(s, png).to_html(base_dir=tmp_path))
    control = _Page(_report("benign", png).to_html(base_dir=tmp_path))
    # the same elements with the same attributes as a report of harmless data
    # (<wbr> is the renderer's: a header may wrap after "_" and "/")
    assert [e for e in page.elements if e[0] != "wbr"] == [e for e in control.elements if e[0] != "wbr"]
    assert all(v.startswith(("#", "data:image/png;base64,")) for k, v in page.attrs if k in ("href", "src"))
    shown = _fold(s)
    text = "".join(page.text)
    assert (f"The column {shown} against the label {shown}, in bold {shown} and em {shown}." in text)
    for where in (f"Feature {shown}", f"item {shown}", f"sub {shown}", f"failed: {shown}",
                  f"Table of {shown}", f"Figure of {shown}"):
        assert where in text
    assert text.count(shown) >= 12


@pytest.mark.parametrize("s", HOSTILE)
def test_markdown_has_the_escaped_form_and_no_structure_from_data(s, png, tmp_path):
    md = _report(s, png, code=False).to_markdown(base_dir=tmp_path)
    control = _report("benign", png, code=False).to_markdown(base_dir=tmp_path)
    lit = rp.literal(s)
    assert f"The column {lit} against the label {lit}, in **bold {lit}** and *em {lit}*." in md
    assert f"## Feature {lit}" in md and f"> **⚠️ failed: {lit}**" in md
    # no line from data, and every line starts as in the control: no heading, list, quote or block
    lines, expected = md.splitlines(), control.splitlines()
    assert len(lines) == len(expected)
    assert [ln[:2] for ln in lines] == [ln[:2] for ln in expected]
    # no raw HTML, no link or image syntax, no code span, emphasis or math opened by the data
    assert "<" not in md
    for ch in "[]`$~{}":
        assert _unescaped(md, ch) == _unescaped(control, ch), ch
    # tables: as many cells in every row as in the control (pipes in data are escaped)
    for got, want in zip(lines, expected):
        if want.startswith("|"):
            assert _unescaped(got, "|") == _unescaped(want, "|")


def test_markdown_code_spans_hold_the_data_verbatim(png, tmp_path):
    s = "<img src=x onerror=alert(1)> `tick`"
    md = _report(s, png).to_markdown(base_dir=tmp_path)
    assert "The column `` <img src=x onerror=alert(1)> `tick` `` against" in md
    # outside code spans nothing is raw
    assert "<" not in re.sub(r"``.*?``", "", md)


def test_table_cells_and_headers_are_always_data(tmp_path):
    df = pd.DataFrame({"[h](https://e.org) *x*": ["[docs](https://example.org/login)", "**b** $x$ <i>"]})
    rep = rp.Report("T").table(df)
    h = rep.to_html(base_dir=tmp_path)
    page = _Page(h)
    assert not {"a", "strong", "em", "i", "img"} & {t for t, _ in page.elements}
    assert "[docs](https://example.org/login)" in "".join(page.text)
    md = rep.to_markdown(base_dir=tmp_path)
    assert "| \\[h\\](https://e.org) \\*x\\* |" in md
    assert "| \\[docs\\](https://example.org/login) |" in md
    assert "| \\*\\*b\\*\\* \\$x\\$ &lt;i> |" in md


def test_file_names_are_text(tmp_path):
    fig = Figure(figsize=(1, 1))
    fig.add_subplot()
    path = rp.savefig_atomic(fig, tmp_path / "figures" / "a (1) [x] <b>.png")
    rep = rp.Report("T").figure(path)
    md = rep.to_markdown(base_dir=tmp_path)
    assert "![a (1) \\[x\\] &lt;b>.png](figures/a%20%281%29%20%5Bx%5D%20%3Cb%3E.png)" in md
    page = _Page(rep.to_html(base_dir=tmp_path))
    assert ("alt", "a (1) [x] <b>.png") in page.attrs


def test_glossary_terms_stay_out_of_data():
    """A defined term inside a data string is not expanded: escapes join the words around them."""
    rep = rp.Report("T").define("pps", "predictive-power score: 0 = useless, 1 = perfect")
    rep.para(f"Columns {rp.literal('_pps_')} and {rp.literal('pps_train')}; the pps is high.")
    md = rep.to_markdown()
    assert "Columns \\_pps\\_ and pps_train; the pps (predictive-power score) is high." in md
    assert rep.to_html().count("<abbr") == 1


# ------------------------------------------------------------------ the HTML page
def test_content_security_policy_refuses_scripts(png, tmp_path):
    h = _report(HOSTILE[0], png).to_html(base_dir=tmp_path)
    head = h.split("</head>", 1)[0]
    meta = f'<meta http-equiv="Content-Security-Policy" content="{rp.CSP}">'
    assert head.count("Content-Security-Policy") == 1
    assert head.index(meta) < head.index("<style>")              # in force before anything it governs
    policy = dict(d.strip().split(" ", 1) for d in rp.CSP.split(";"))
    assert policy["default-src"] == "'none'" and "script-src" not in policy   # no script, from anywhere
    assert policy["img-src"] == "data:" and policy["style-src"] == "'unsafe-inline'"
    assert "unsafe-eval" not in rp.CSP
    page = _Page(h)                                               # the page itself needs none
    assert "script" not in {t for t, _ in page.elements}
    assert not [k for k, _ in page.attrs if k.startswith("on")]


def test_csp_enforced_in_chromium(png, tmp_path):
    """A script that a rendering bug let into the page does not run; without the policy it would."""
    import test_browser as tb

    tools = {"chromium": tb._tool(tb.BROWSERS)}
    if tools["chromium"] is None:
        pytest.skip("chromium not installed (see tests/test_browser.py)")
    page = _report("benign", png).to_html(base_dir=tmp_path)
    bug = "<script>document.documentElement.setAttribute('data-ran', 'yes')</script>"
    injected = page.replace("<main>", "<main>" + bug, 1)
    results = {}
    for name, text in (("with", injected), ("without", re.sub(r'<meta http-equiv="Content-Security'
                                                              r'-Policy"[^>]*>\n', "", injected))):
        path = tmp_path / f"{name}.html"
        path.write_text(text, encoding="utf-8")
        results[name] = tb._chromium(tools, "--dump-dom", "--virtual-time-budget=2000", path.as_uri())
    assert 'data-ran="yes"' in results["without"]                # the control: the script can run
    assert 'data-ran="yes"' not in results["with"]


# ------------------------------------------------------------------ CSV tables
TRIGGERS = ["=HYPERLINK(\"https://example.org\",\"x\")", "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1+1",
            "\r=1+1", "  =1+1", "\uff1d1+1"]


def test_csv_text_neutralises_formula_cells():
    df = pd.DataFrame({"=cmd": TRIGGERS, "n": np.arange(len(TRIGGERS)) - 3.5,
                       "level": pd.Categorical(["@x"] * len(TRIGGERS)),
                       "s": pd.array(["-1.5", "+7", "ok", None, "-x", "=", "", "a=b"], dtype="string")},
                      index=pd.Index([f"+r{i}" for i in range(len(TRIGGERS))], name="@idx"))
    before = df.copy()
    rows = list(csv.reader(io.StringIO(rp.csv_text(df), newline="")))
    pd.testing.assert_frame_equal(df, before)                     # the caller's frame is untouched
    assert rows[0] == ["'@idx", "'=cmd", "n", "level", "s"]
    body = rows[1:]
    assert [r[1] for r in body] == ["'" + t for t in TRIGGERS]
    assert [r[2] for r in body] == [str(v) for v in df["n"]]      # numbers stay numbers: "-3.5"
    assert {r[3] for r in body} == {"'@x"}
    assert [r[4] for r in body] == ["-1.5", "+7", "ok", "", "'-x", "'=", "", "a=b"]
    assert [r[0] for r in body] == [f"'+r{i}" for i in range(len(TRIGGERS))]
    for r in body:                                                # nothing a spreadsheet would run
        for cell in r:
            first = cell.lstrip(" ")[:1]
            assert not first or first not in "=+-@\t\r\uff1d" or re.fullmatch(r"[+-]?[\d.]+", cell), cell


def test_csv_text_keeps_a_carriage_return_inside_its_cell():
    """A bare CR would end the row in a spreadsheet, and the text after it would start a new
    row: "=HYPERLINK(...)" in a first cell. The field is quoted, and stays one cell."""
    df = pd.DataFrame({"name": ["x\r=HYPERLINK(\"https://example.org\")", "y"], "n": [1, 2]})
    text = rp.csv_text(df, index=False)
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["name", "n"], [df["name"][0], "1"], ["y", "2"]]
    assert '"x\r=HYPERLINK(""https://example.org"")"' in text


def test_csv_text_without_formula_cells_is_to_csv():
    df = pd.DataFrame({"feature": ["a", "b c"], "share": [0.25, -1.0], "n": [1, -2]})
    assert rp.csv_text(df, index=False) == df.to_csv(index=False)
    s = pd.Series([1.5, 2.5], index=pd.Index(["x", "=y"], name="feature"), name="pps")
    assert rp.csv_text(s) == "feature,pps\nx,1.5\n'=y,2.5\n"


def test_csv_cell():
    assert rp.csv_cell("=1+1") == "'=1+1" and rp.csv_cell("'=1+1") == "'=1+1"
    assert rp.csv_cell("-1e-3") == "-1e-3" and rp.csv_cell(-3) == -3 and rp.csv_cell(None) is None


# ------------------------------------------------------------------ figures
DOLLARS = ["$50_$99", "tax_$ / net_$", "$0-$49"]


def _frame(n=90):
    rng = np.random.default_rng(0)
    return pd.DataFrame({DOLLARS[0]: rng.normal(size=n), DOLLARS[1]: rng.normal(size=n),
                         "level $x$": rng.choice(DOLLARS, n), "$label$": rng.choice(DOLLARS, n)})


def _curves():
    c = np.abs(np.random.default_rng(1).normal(1, 0.1, size=(2, 20))).cumprod(axis=1)[:, ::-1]
    return {d: {DOLLARS[0]: c, DOLLARS[1]: c * 0.9} for d in DOLLARS}


_df = _frame()
_hist = {"train_acc": np.linspace(0.3, 0.9, 20), "val_acc": np.linspace(0.3, 0.8, 20)}
_attr = pd.DataFrame({"feature": DOLLARS, "share": [0.5, 0.3, 0.2]})
# every plotting function with dollar-laden data: (figure, labels it must show as written)
DOLLAR_CASES = {
    "class_distribution": [(lambda: plots.class_distribution([3, 5, 2], DOLLARS, title=DOLLARS[0]), DOLLARS)],
    "numeric_boxplots": [(lambda: plots.numeric_boxplots(_df, DOLLARS[:2], "$label$"), DOLLARS + ["$label$"])],
    "categorical_countplots": [(lambda: plots.categorical_countplots(_df, ["level $x$"], "$label$"),
                                DOLLARS + ["level $x$", "$label$"])],
    "correlation_heatmap": [(lambda: plots.correlation_heatmap(
        pd.DataFrame(np.random.default_rng(2).normal(size=(30, 3)), columns=DOLLARS).corr()), DOLLARS)],
    "accuracy_curves": [(lambda: plots.accuracy_curves({d: _hist for d in DOLLARS}), DOLLARS)],
    "gradient_magnitudes": [(lambda: plots.gradient_magnitudes(
        {(DOLLARS[0], DOLLARS[1]): np.geomspace(1, 1e-3, 20)}, title=DOLLARS[2], ylabel=DOLLARS[1]), DOLLARS)],
    "depth_ratios": [(lambda: plots.depth_ratios([1, 2, 4], {d: [1, 0.5, 0.1] for d in DOLLARS}), DOLLARS)],
    "attribution_bars": [(lambda: plots.attribution_bars({DOLLARS[0]: _attr, DOLLARS[1]: _attr}, DOLLARS[2]),
                          DOLLARS)],
    "grouped_bars": [
        (lambda: plots.grouped_bars(pd.DataFrame({DOLLARS[0]: [1.0, 2, 3], DOLLARS[1]: [2.0, 1, 0]},
                                                 index=DOLLARS), DOLLARS[2], DOLLARS[1]), DOLLARS),
        (lambda: plots.grouped_bars(pd.DataFrame({DOLLARS[0]: [1.0, 2]},
                                                 index=["drop $0-$49 column", "tax_$ / net_$ indicator"]),
                                    "$a$", "$b$"),
         [DOLLARS[0], "drop $0-$49 column", "tax_$ / net_$ indicator", "$a$", "$b$"])],
    "confusion": [(lambda: plots.confusion(np.arange(9).reshape(3, 3), DOLLARS, title="$t$"), DOLLARS + ["$t$"])],
    "loss_panels": [(lambda: plots.loss_panels(_curves(), DOLLARS[2], ylabel=DOLLARS[1]), DOLLARS)],
    "interval_bars": [(lambda: plots.interval_bars(DOLLARS, [1.0, -2.0, 0.5], [0.0, -3.0, 0.1], [2.0, -1.0, 0.9],
                                                   "change of $a$", "points of $b$"),
                       DOLLARS + ["change of $a$", "points of $b$"])],
    "feature_by_class_per_split": [
        (lambda: plots.feature_by_class_per_split({"$train$.csv": _df, "$test$.csv": _df.iloc[:40]},
                                                  DOLLARS[0], "$label$"),
         DOLLARS + ["$train$.csv (90 rows)", "$label$"]),
        (lambda: plots.feature_by_class_per_split({"$train$.csv": _df, "$test$.csv": _df.iloc[:40]},
                                                  "level $x$", "$label$", numeric=False),
         DOLLARS + ["level $x$ against $label$, per split", "share of $label$"])],
}


def test_every_plotting_function_has_a_dollar_case():
    public = {name for name, f in vars(plots).items()
              if callable(f) and not name.startswith("_") and getattr(f, "__module__", "") == plots.__name__}
    assert public == set(DOLLAR_CASES)


def _svg_text(fig):
    """The texts drawn as plain text (one ``<text>`` each in an SVG), one per line.

    Mathtext is drawn glyph by glyph (``<tspan>``s), so a label read as math is not among them.
    """
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):          # text as <text>, not glyph paths
        fig.savefig(buf, format="svg")
    return "\n".join(html.unescape(t) for t in re.findall(r"<text\b[^>]*>([^<]*)</text>", buf.getvalue()))


@pytest.mark.parametrize("name,i", [(n, i) for n, cases in DOLLAR_CASES.items() for i in range(len(cases))])
def test_figure_labels_with_dollars_are_drawn_as_written(name, i, tmp_path):
    make, labels = DOLLAR_CASES[name][i]
    fig = make()
    try:
        rp.savefig_atomic(fig, tmp_path / "f.png")                  # mathtext used to fail here
        svg = _svg_text(fig)
        missing = [lab for lab in labels if lab not in svg]
        assert not missing, f"{name}: drawn as math (dollars gone): {missing}"
    finally:
        plt.close(fig)


def test_the_dollar_check_can_fail():
    """The control: matplotlib's default reads "$0-$49" as math, and "$50_$99" fails to draw."""
    fig = plt.figure()
    fig.text(0.1, 0.5, "$0-$49")
    try:
        assert "$0-$49" not in _svg_text(fig)
        fig.text(0.1, 0.2, "$50_$99")
        with pytest.raises(ValueError):
            fig.savefig(io.BytesIO(), format="png")
    finally:
        plt.close(fig)


# ------------------------------------------------------------------ end to end
def test_a_run_on_hostile_names_writes_no_markup_from_data(tmp_path):
    """A whole run (Parts A and D, a tiny network) on a CSV whose column names and labels
    are markup: report.html gets no element or link from them, report.md no raw tag or
    live link, and no CSV table cell starts a formula."""
    import run_all
    rng = np.random.default_rng(0)
    n = 240
    bad_col, bad_cat = "<img src=x onerror=alert(1)>", "=HYPERLINK(\"https://example.org\")"
    labels = np.array(["[docs](https://example.org/login)", "$0-$49", "<b>c</b>"])
    y = rng.integers(0, 3, n)
    df = pd.DataFrame({bad_col: y + rng.normal(0, 0.7, n),
                       "tax_$ / net_$": rng.normal(0, 1, n),
                       "plan": np.where(rng.random(n) < 0.5, bad_cat, "basic"),
                       "label": labels[y]})
    data = tmp_path / "data"
    data.mkdir()
    df.iloc[:180].to_csv(data / "train.csv", index=False)
    df.iloc[180:].to_csv(data / "test.csv", index=False)
    out = tmp_path / "out"
    rc = run_all.main(["--data-dir", str(data), "--target", "label", "--out", str(out), "--parts", "A,D",
                       "--quick", "--iterations", "20", "--threads", "1", "--activations", "relu"])
    assert rc == 0
    page = _Page((out / "report.html").read_text(encoding="utf-8"))
    tags = [tag for tag, _ in page.elements]
    assert "script" not in tags and "b" not in tags
    assert not [k for k, _ in page.attrs if k.startswith("on")]
    links = [v for k, v in page.attrs if k in ("href", "src")]
    assert all(v.startswith(("#", "data:image/png;base64,")) or (out / v).is_file() for v in links), links
    assert "[docs](https://example.org/login)" in "".join(page.text)          # shown as written
    md = (out / "report.md").read_text(encoding="utf-8")
    outside_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", md)    # a code span shows its text as is
    assert "<img" not in outside_code and "<b>" not in outside_code, outside_code
    assert "](https://example.org" not in outside_code.replace("\\](", "")
    for table in (out / "tables").glob("*.csv"):
        for row in csv.reader(io.StringIO(table.read_text(encoding="utf-8"))):
            for cell in row:
                assert not cell.lstrip().startswith(("=", "@")), (table.name, cell)
