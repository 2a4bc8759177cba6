"""Tests for report.py: both renderers, math rendering and fallback, atomic writes."""
import base64
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import report as rp


@pytest.fixture
def png(tmp_path):
    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    path = tmp_path / "figures" / "line.png"
    rp.savefig_atomic(fig, path)
    return path


def _imgs(html_text):
    return re.findall(r'<img [^>]*src="(data:[^"]+)"', html_text)


# ------------------------------------------------------------------ blocks
def test_table_cells_in_both_renderers():
    df = pd.DataFrame({"feature": ["a|b", "<c>"], "acc": [0.123456, np.nan], "n": [3, 40]})
    rep = rp.Report("T").table(df, caption="Scores", floatfmt=".3f")
    md = rep.to_markdown()
    assert "| feature | acc | n |" in md
    assert "| a\\|b | 0.123 | 3 |" in md          # pipe escaped, float formatted, int kept
    assert "&lt;c>" in md and "<c>" not in md        # "<" never opens a tag; ">" alone means nothing
    assert "|---|--:|--:|" in md                   # numbers right-aligned
    h = rep.to_html()
    assert "<caption>Scores</caption>" in h
    assert '<td class="l">a|b</td>' in h
    assert '<td class="r">0.123</td>' in h and '<td class="r">–</td>' in h  # NaN -> dash
    assert "&lt;c&gt;" in h and "<c>" not in h


def test_table_from_records_and_bad_input():
    rep = rp.Report("T").table([{"x": 1, "y": 2.5}, {"x": 2, "z": "q"}])
    md = rep.to_markdown()
    assert "| x | y | z |" in md and "| 2 | – | q |" in md
    with pytest.raises(TypeError, match="DataFrame"):
        rp.Report("T").table([1, 2, 3])
    with pytest.raises(ValueError, match="different lengths"):
        rp.Report("T").table({"a": [1, 2], "b": [1]})


def test_figure_embedded_in_html_linked_in_markdown(png, tmp_path):
    rep = rp.Report("T").figure(png, caption="A line")
    h = rep.to_html()
    uris = _imgs(h)
    assert len(uris) == 1 and uris[0].startswith("data:image/png;base64,")
    assert base64.b64decode(uris[0].split(",", 1)[1]) == png.read_bytes()
    assert "<figcaption>A line</figcaption>" in h
    md = rep.to_markdown(base_dir=tmp_path)
    assert "![A line](figures/line.png)" in md
    assert str(tmp_path) not in md  # relative link


def test_missing_figure_is_visible_not_fatal(tmp_path):
    h = rp.Report("T").figure(tmp_path / "nope.png", "gone").to_html()
    assert "figure not found" in h and "nope.png" in h


def test_html_escapes_text_everywhere():
    evil = '<script>alert("x")</script> & more'
    rep = (rp.Report(evil).heading(evil, 2).para(evil).bullets([evil]).code(evil, "html")
           .banner(evil).table([{"c": evil}]).markdown(f"# {evil}\n\n{evil}\n"))
    h = rep.to_html()
    assert "<script>" not in h and "alert(\"x\")</script>" not in h
    assert h.count("&lt;script&gt;") >= 9
    assert "&amp; more" in h


def test_inline_markup_html():
    h = rp.Report("T").para("a **bold** and *em* and `x<y` and [link](https://e.org) "
                            "and a \\*literal\\* star").to_html()
    assert "<strong>bold</strong>" in h and "<em>em</em>" in h
    assert "<code>x&lt;y</code>" in h
    assert '<a href="https://e.org">link</a>' in h
    assert "a *literal* star" in h


def test_javascript_links_are_neutralised():
    h = rp.Report("T").para("[click](javascript:alert(1))").to_html()
    assert "javascript:" not in h


def test_headings_toc_and_duplicate_anchors():
    rep = rp.Report("Doc").heading("Results", 2).heading("Detail", 3).heading("Results", 2)
    h = rep.to_html()
    assert '<h2 id="results">' in h and '<h2 id="results-1">' in h
    assert '<nav class="toc toc-side"' in h and 'href="#detail"' in h
    # the collapsed contents come after the first section, never before it
    assert h.index('<details class="toc toc-inline">') > h.index('id="detail"')
    assert h.index('<details class="toc toc-inline">') < h.index('id="results-1"')
    assert h.index('<nav class="toc toc-side"') < h.index("<main>")   # the side column
    md = rep.to_markdown()
    assert "- [Results](#results)" in md and "  - [Detail](#detail)" in md
    assert "- [Results](#results-1)" in md
    with pytest.raises(ValueError, match="level"):
        rep.heading("x", 7)


def test_nested_bullets_and_code_block():
    rep = rp.Report("T").bullets(["one", ["one.a", "one.b"], "two"], ordered=True).code("x = 1\n", "python")
    md = rep.to_markdown()
    assert "1. one\n   1. one.a\n   2. one.b\n2. two" in md
    assert "```python\nx = 1\n```" in md
    h = rep.to_html()
    assert "<ol><li>one<ol><li>one.a</li><li>one.b</li></ol></li><li>two</li></ol>" in h
    assert '<pre><code class="language-python">x = 1</code></pre>' in h


def test_banner():
    rep = rp.Report("T").banner("SYNTHETIC DATA")
    assert "> **⚠️ SYNTHETIC DATA**" in rep.to_markdown()
    assert '<div class="banner warning" role="note">SYNTHETIC DATA</div>' in rep.to_html()
    with pytest.raises(ValueError, match="kind"):
        rep.banner("x", kind="loud")


# -------------------------------------------------------------------- math
def test_display_math_rendered_as_svg_with_source():
    latex = r"\frac{\partial L}{\partial x} = W_1^\top \delta_1"
    rep = rp.Report("T").math(latex)
    assert f"$$\n{latex}\n$$" in rep.to_markdown()
    h = rep.to_html()
    uris = _imgs(h)
    assert len(uris) == 1 and uris[0].startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(uris[0].split(",", 1)[1]).decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "<path" in svg
    assert 'alt="\\frac{\\partial L}{\\partial x} = W_1^\\top \\delta_1"' in h


def test_inline_math_rendered_and_dollar_amounts_left_alone():
    h = rp.Report("T").para(r"loss $\mathcal{L}(\theta)$ costs $5 and $10").to_html()
    assert len(_imgs(h)) == 1
    assert 'alt="\\mathcal{L}(\\theta)"' in h
    assert "costs $5 and $10" in h


def test_multiline_aligned_math_renders_each_line():
    h = rp.Report("T").math(r"\begin{aligned} a &= b + c \\ d &= e \end{aligned}").to_html()
    assert len(_imgs(h)) == 2
    assert 'class="math-fallback"' not in h


def test_bad_latex_falls_back_to_code():
    bad = r"\frac{a}{b"
    h = rp.Report("T").math(bad).para(r"inline $\nosuchcommand{x}$ too").to_html()
    assert _imgs(h) == []
    assert '<pre class="math-fallback"' in h and "<code>\\frac{a}{b</code>" in h
    assert '<code class="math-fallback"' in h and "\\nosuchcommand{x}" in h
    assert rp.render_math_svg(bad) is None


def test_math_svg_is_deterministic():
    a = rp._render_math_svg(r"x^2", 12.0)[0]          # the renderer itself, no caches
    assert rp._render_math_svg(r"x^2", 12.0)[0] == a


def test_math_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLP_CACHE_DIR", str(tmp_path))
    rp.render_math_svg.cache_clear()
    fresh = rp._render_math_svg(r"\sqrt{y}", 12.0)
    assert rp.render_math_svg(r"\sqrt{y}") == fresh
    files = list((tmp_path / "math").glob("*.json"))
    assert len(files) == 1
    # a hit is read from disk (not re-rendered): a planted entry comes back
    files[0].write_text('["<svg>planted</svg>", 1, 2, 0.5]', encoding="utf-8")
    rp.render_math_svg.cache_clear()
    assert rp.render_math_svg(r"\sqrt{y}") == ("<svg>planted</svg>", 1.0, 2.0, 0.5)
    # a damaged entry is ignored and rewritten
    files[0].write_text("{not json", encoding="utf-8")
    rp.render_math_svg.cache_clear()
    assert rp.render_math_svg(r"\sqrt{y}") == fresh
    assert rp.render_math_svg.__wrapped__(r"\sqrt{y}") == fresh
    # what mathtext cannot parse is cached as such
    rp.render_math_svg.cache_clear()
    assert rp.render_math_svg(r"\frac{a}{b") is None
    assert rp.render_math_svg.__wrapped__(r"\frac{a}{b") is None
    assert len(list((tmp_path / "math").glob("*.json"))) == 2
    rp.render_math_svg.cache_clear()


def test_math_renders_without_a_usable_cache_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLP_CACHE_DIR", str(blocker))
    rp.render_math_svg.cache_clear()
    assert rp.render_math_svg(r"z_1") == rp._render_math_svg(r"z_1", 12.0)
    rp.render_math_svg.cache_clear()


# ------------------------------------------------------- Markdown snippets
DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC_FILES = ("partC_derivation.md", "q2_derivation.md")   # what run_all.py includes with Report.markdown

SNIPPET = r"""# Input gradients

Backprop one more step gives $\partial L / \partial x$
for **every** feature:

$$\frac{\partial L}{\partial x} = W_1^\top \delta_1$$

$$ a = b $$

1. **Forward pass.** Keep the
   activations.

2. Backward pass.

- keep $\delta_1$
  for the input
- multiply

```text
g <- W_1^T delta_1   # (d, n)
```

Plain closing paragraph
over two lines.
"""


def test_markdown_snippet_parsed_into_blocks():
    blocks = rp.parse_markdown(SNIPPET, level_offset=1)
    kinds = [type(b).__name__ for b in blocks]
    assert kinds == ["Heading", "Para", "Math", "Math", "Bullets", "Bullets", "Code", "Para"]
    assert blocks[0].level == 2 and blocks[0].text == "Input gradients"
    assert blocks[1].text == r"Backprop one more step gives $\partial L / \partial x$ for **every** feature:"
    assert blocks[2].latex == r"\frac{\partial L}{\partial x} = W_1^\top \delta_1"
    assert blocks[3].latex == "a = b"
    assert blocks[4].ordered and blocks[4].items == [
        "**Forward pass.** Keep the activations.", "Backward pass."]
    assert not blocks[5].ordered and blocks[5].items == [r"keep $\delta_1$ for the input", "multiply"]
    assert blocks[6].lang == "text" and blocks[6].text == "g <- W_1^T delta_1   # (d, n)"
    assert blocks[7].text == "Plain closing paragraph over two lines."


def test_markdown_snippet_renders():
    rep = rp.Report("T").markdown(SNIPPET, level_offset=1)
    h = rep.to_html()
    assert '<h2 id="input-gradients">Input gradients</h2>' in h
    assert "<strong>every</strong>" in h and "<strong>Forward pass.</strong>" in h
    assert h.count("data:image/svg+xml") >= 4  # 2 display + 2 inline
    assert "<ol>" in h and "<ul>" in h
    assert "g &lt;- W_1^T delta_1   # (d, n)" in h
    md = rep.to_markdown()
    assert "## Input gradients" in md and "$$\n\\frac{\\partial L}" in md


@pytest.mark.parametrize("source", [
    "> A quote with *emphasis*.",
    "| feature | meaning |\n|---|--:|\n| `x_i` | **input** |",
    "![Loss curve](line.png)",
    "---",
    "$$\na = b\n$$",
    "\\[ a = b \\]",
    "  - an indented item",
    "* a star item",
])
def test_markdown_outside_the_subset_stays_paragraph_text(source):
    blocks = rp.parse_markdown(source)
    assert [type(b).__name__ for b in blocks] == ["Para"]
    assert blocks[0].text == " ".join(s.strip() for s in source.split("\n"))


def test_markdown_list_is_flat():
    blocks = rp.parse_markdown("1. one\n2. two\n   - not a sub-list\n3. three\n")
    assert [type(b).__name__ for b in blocks] == ["Bullets"]
    assert blocks[0].items == ["one", "two - not a sub-list", "three"]


@pytest.mark.parametrize("name", DOC_FILES)
def test_markdown_subset_covers_the_docs(name):
    text = (DOCS / name).read_text(encoding="utf-8")
    blocks = rp.parse_markdown(text, level_offset=2)
    supported = (rp.Heading, rp.Para, rp.Math, rp.Code, rp.Bullets)
    assert all(type(b) in supported for b in blocks), [type(b).__name__ for b in blocks]
    for b in blocks:
        if isinstance(b, rp.Bullets):
            assert all(isinstance(item, str) for item in b.items)
    assert sum(isinstance(b, rp.Math) for b in blocks) == text.count("\n$$")
    assert sum(isinstance(b, rp.Heading) for b in blocks) == sum(ln.startswith("#") for ln in text.split("\n"))
    body = rp.Report("T").markdown(text, level_offset=2).to_html().split("</style>", 1)[1]
    assert "$$" not in body and "```" not in body
    assert not re.search(r"^\s*(-|\d+\.) ", body, re.M), "a list marker was left as text"
    assert not re.search(r"<p>\s*(-|\d+\.) ", body), "a list marker was left as text"


# ---------------------------------------------------------- atomic writes
def _leftovers(folder):
    return [p for p in os.listdir(folder) if p.endswith(".tmp")]


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    rp.write_atomic(path, "old")
    rp.write_atomic(path, "néw")
    assert path.read_text(encoding="utf-8") == "néw"
    rp.write_atomic(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert _leftovers(path.parent) == []
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_write_atomic_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.txt"
    rp.write_atomic(path, "original")

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(rp.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        rp.write_atomic(path, "half")
    assert path.read_text() == "original"
    assert _leftovers(tmp_path) == []


def test_write_atomic_rejects_other_types(tmp_path):
    with pytest.raises(TypeError, match="str or bytes"):
        rp.write_atomic(tmp_path / "x", 3)


def test_savefig_atomic(tmp_path, png):
    assert png.read_bytes().startswith(b"\x89PNG")
    assert _leftovers(png.parent) == []
    with pytest.raises(ValueError, match="extension"):
        rp.savefig_atomic(Figure(), tmp_path / "noext")


def test_report_write(tmp_path, png):
    rep = rp.Report("T").para("hello").figure(png, "fig")
    md, html = rep.write(tmp_path / "report.md", tmp_path / "report.html")
    assert "![fig](figures/line.png)" in open(md).read()
    assert "data:image/png;base64," in open(html).read()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("latex", [r"\tfrac{1}{n}\sum_i \lvert x_i \rvert", r"\lVert W \rVert_2",
                                   r"\operatorname*{arg\,max}_k o_k \tag{1}", r"\big( a \big)"])
def test_common_latex_outside_mathtext_is_rewritten(latex):
    assert rp.render_math_svg(latex) is not None


# ------------------------------------------------------------ numbers in tables
@pytest.mark.parametrize("value,spec,expected", [
    (41348, ".4g", "41,348"),                  # integers: thousands separators
    (np.int64(1234567), ".3f", "1,234,567"),   # ... never formatted as floats
    (2024, "d", "2024"),                       # an integer spec: no separators (years, seeds)
    (41348.0, ".4g", "41,348"),                # a count held in a float column
    (0.001234, ".3e", "0.001234"),             # no exponent for ordinary magnitudes ...
    (0.001234, ".4g", "0.001234"),
    (12345.6, ".4g", "12,350"),                # ... with the same significant digits
    (9.9996, ".4g", "10"),
    (9.9996, ".3e", "10.00"),
    (1.234e-7, ".4g", "1.234e-07"),            # extraordinary magnitudes keep it
    (3.2e9, ".3e", "3.200e+09"),
    (12345.678, ".1f", "12,345.7"),
    (0.5, ".4g", "0.5"),
    (0.8, ".0%", "80%"),
    (-0.0, ".3f", "0.000"),
    (float("inf"), ".3f", "∞"),
    (0.25, lambda v: f"{v:.1f} of 1", "0.2 of 1"),
])
def test_format_number(value, spec, expected):
    assert rp.format_number(value, spec) == expected


def test_table_per_column_formats_and_missing_text():
    df = pd.DataFrame({"lr": [0.3, 3.0], "final loss": [0.912345, np.nan], "diverged": [0.8, 1.0],
                       "iters": [None, 16.5], "rows": [41348, 7297]})
    rep = rp.Report("T").table(df, floatfmt=".3g", formats={"diverged": ".0%"},
                               na={"final loss": "diverged", "iters": "not reached"})
    cells = rep.blocks[-1].rows
    assert cells[0] == ["0.3", "0.912", "80%", "not reached", "41,348"]
    assert cells[1] == ["3", "diverged", "100%", "16.5", "7,297"]
    assert rp.Report("T").table(df, na="n/a").blocks[-1].rows[1][1] == "n/a"
    with pytest.raises(ValueError, match="formats names unknown column.*'loss'"):
        rp.Report("T").table(df, formats={"loss": ".2f"})
    with pytest.raises(ValueError, match="na names unknown column"):
        rp.Report("T").table(df, na={"nope": "-"})


def test_path_cells_shown_relative_to_the_report(tmp_path):
    out = tmp_path / "out"
    rep = rp.Report("T").table({"file": [out / "tables" / "a.csv"], "n": [1]})
    md, html_path = rep.write(out / "report.md", out / "report.html")
    assert "| tables/a.csv | 1 |" in open(md).read()
    h = open(html_path).read()
    assert ">tables/a.csv<" in h and str(tmp_path) not in h
    assert rp.display_path(out / "x" / "y.png", out) == "x/y.png"


# ------------------------------------------------------------ wide tables
def _headers(h):
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<th[^>]*>(.*?)</th>", h)]


def _wide_frame(n_rows, n_cols=15):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.uniform(size=(n_rows, n_cols)), columns=[f"measure_{i:02d}" for i in range(n_cols)])
    df.insert(0, "feature", [f"feature_{i}" for i in range(n_rows)])
    return df


def test_narrow_table_unchanged_and_moderately_wide_one_in_small_font():
    h = rp.Report("T").table({"a": [1], "b": [2]}).to_html()
    assert "<table>" in h
    rep = rp.Report("T").table(_wide_frame(3, 6), floatfmt=".3f")
    widths = rp._column_widths(rep.blocks[-1])
    assert rp.table_px(widths) > rp.TABLE_BUDGET_PX >= rp.table_px(widths, "wide")
    h = rep.to_html()
    assert h.count("<table") == 1 and '<table class="wide">' in h


def test_wide_table_split_with_key_columns_repeated():
    df = _wide_frame(12)
    df["suspect"] = ["yes", "no"] * 6
    rep = rp.Report("T").table(df, caption="Evidence", floatfmt=".3f", key=["feature", "suspect"])
    t = rep.blocks[-1]
    assert t.columns[:2] == ["feature", "suspect"] and t.key == 2    # the conclusion first
    pieces = rp._table_pieces(t)
    assert len(pieces) >= 2
    for piece, _ in pieces:
        assert piece.columns[:2] == ["feature", "suspect"]            # key columns in every piece
        assert rp.table_px(rp._column_widths(piece), "wide") <= rp.TABLE_BUDGET_PX
    shown = [c for piece, _ in pieces for c in piece.columns[2:]]
    assert shown == t.columns[2:]                                     # every column, once, in order
    h = rep.to_html()
    assert h.count("<table") == len(pieces)
    assert f"Evidence (part 1 of {len(pieces)}, continued below)" in h
    assert sorted(set(_headers(h))) == sorted(set(df.columns))
    assert "measure_<wbr>00" in h                                     # headers may wrap after "_"
    with pytest.raises(ValueError, match="key names unknown column.*'nope'"):
        rp.Report("T").table(df, key=["nope"])
    with pytest.raises(ValueError, match="key must be"):
        rp.Report("T").table(df, key=99)


def test_wide_table_with_few_rows_is_transposed():
    df = _wide_frame(2)
    h = rp.Report("T").table(df, caption="Q2", floatfmt=".3f").to_html()
    assert h.count("<table") == 1
    assert _headers(h) == ["feature", "feature_0", "feature_1"]
    for c in df.columns[1:]:
        assert f'<td class="l">{c}</td>' in h
    md = rp.Report("T").table(df).to_markdown()                       # Markdown keeps the data's shape
    assert "| feature | measure_00 |" in md


def test_widths_are_measured_in_the_widest_common_font():
    """DejaVu Sans advances (em): digits 0.636, bold wider; an unknown glyph counts 1 em."""
    assert rp.text_em("0") == pytest.approx(0.636, abs=1e-3)
    assert rp.text_em("0123456789") == pytest.approx(6.36, abs=1e-2)
    assert rp.text_em("W", bold=True) > rp.text_em("W")
    assert rp.text_em("中") == 1.0                  # DejaVu Sans has no CJK glyphs
    # a column of 10-digit numbers at the table font: 10 * 0.636 * 0.92 * 16 px + padding 19.2 + border 1
    t = rp.Table(["x"], [["1234567890"]], None, ["r"], 1)
    assert rp.table_px(rp._column_widths(t)) == pytest.approx(6.36 * 0.92 * 16 + 19.2 + 2, abs=0.5)


# ------------------------------------------------------------ glossary
def test_abbreviation_defined_at_first_use_and_in_glossary():
    rep = rp.Report("T").define("pps", "predictive-power score: how well one column predicts the label")
    rep.heading("About pps", 2).para("`pps` in code, then the pps is 0.8 and pps_train is a column.")
    rep.para("A pps above 0.5 is high.").table({"feature": ["a"], "pps": [0.8]})
    h = rep.to_html()
    assert h.count('<span class="gloss">(predictive-power score)</span>') == 1
    assert "<code>pps</code> in code, then the <abbr" in h              # code is not a use
    first = h.index('<span class="gloss">')
    assert h.index("the <abbr") < first < h.index("A <abbr")
    assert h.count('<abbr title="predictive-power score: how well one column predicts the label">pps</abbr>') == 4
    assert "pps_train" in h                                              # whole words only
    assert h.rindex('<h2 id="glossary">Glossary</h2>') > h.index("A <abbr")  # at the end
    assert '<dt>pps</dt><dd>predictive-power score: how well' in h
    assert 'href="#glossary"' in h
    md = rep.to_markdown()
    assert md.count("(predictive-power score)") == 1
    assert "then the pps (predictive-power score) is 0.8" in md
    assert md.rstrip().endswith("- **pps**: predictive-power score: how well one column predicts the label")
    with pytest.raises(ValueError, match="term is empty"):
        rep.define(" ", "x")
    with pytest.raises(ValueError, match="meaning of 'x' is empty"):
        rep.define("x", "")


def test_glossary_survives_extend_and_short_form():
    body = rp.Report("body").define("AUC", "area under the ROC curve", short="area under the curve")
    doc = rp.Report("doc").para("The AUC is 0.7.").extend(body)
    assert "The AUC (area under the curve) is 0.7." in doc.to_markdown()


# ------------------------------------------------------------ math
def test_display_fractions_at_full_size():
    assert rp._display_style(r"\frac{a}{b} + \dfrac{c}{d} + \fraction") == r"\dfrac{a}{b} + \dfrac{c}{d} + \fraction"
    display = rp.render_math_svg(rp._display_style(r"\frac{\partial L}{\partial x}"), 14.0)
    text = rp.render_math_svg(r"\frac{\partial L}{\partial x}", 14.0)
    assert display[2] > 1.4 * text[2]                                  # taller: full-size numerator
    h = rp.Report("T").math(r"\frac{\partial L}{\partial x}").to_html()
    assert r'alt="\frac{\partial L}{\partial x}"' in h                 # the source stays as written


def test_docs_write_operators_upright():
    docs = os.path.join(os.path.dirname(__file__), "..", "docs")
    bare = []
    for name in sorted(os.listdir(docs)):
        if name.endswith(".md"):
            text = open(os.path.join(docs, name), encoding="utf-8").read()
            for m in re.finditer(r"\$\$(.+?)\$\$|\$([^$\n]+)\$", text, re.S):
                math_src = m.group(1) or m.group(2)
                bare += [f"{name}: {op}" for op in re.findall(r"(?<![\\{a-zA-Z])(softmax|argmax|argmin|diag|"
                                                              r"sigmoid|tanh)(?![a-zA-Z])", math_src)]
    assert not bare, f"operators in italic (use \\operatorname{{...}}): {bare}"
    assert rp.render_math_svg(r"o = \operatorname{softmax}(a_3)") is not None
