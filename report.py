"""The report: a small document model, two renderers and atomic file writes.

This module owns everything about *presenting* results; it computes nothing.

- ``Report(title)`` collects blocks in order: ``heading``, ``para``,
  ``bullets``, ``table``, ``figure``, ``math``, ``code``, ``banner``, ``rule``
  and ``markdown`` (a Markdown snippet such as ``docs/partC_derivation.md``,
  parsed into the same blocks). ``define(term, meaning)`` adds an abbreviation:
  its first use in running text shows the meaning, and a glossary closes the
  document.
- Numbers in tables are written by ``format_number``: thousands separators,
  no exponent for ordinary magnitudes, the caller's format for the digits
  (per column if needed); missing cells show "–" or a given text; path cells
  are relative to the report's folder (``display_path``).
- ``Report.to_markdown()`` renders GitHub-flavoured Markdown: figures are
  relative links, math stays ``$...$`` / ``$$...$$`` (GitHub renders it).
- ``Report.to_html()`` renders ONE self-contained HTML file: inline CSS, the
  title and the first section (the summary) on the first screen, the table of
  contents in a side column (wide screens) or a collapsed block after the
  summary, figures embedded as base64 data URIs, and math rendered to embedded
  SVG by matplotlib's mathtext (no LaTeX install, no network; display
  fractions at full size). The LaTeX source is kept as the image's alt/title
  text; what mathtext cannot parse falls back to a ``<code>`` block showing the
  source. Tables wider than the printed page are set smaller, transposed or
  split into even pieces with their key columns repeated, so no column is ever
  cut off or left alone; a print stylesheet makes the browser's *Print to PDF* a
  document to hand in (A4 or Letter): 9.5 pt text, figures at the size they were
  drawn, no page ending in a heading, a caption or a table's header, the pieces
  of a split table kept together.
- ``write_atomic(path, data)`` and ``savefig_atomic(fig, path)`` write through a
  temporary file in the target folder and ``os.replace`` it, so an interrupted
  run never leaves a half-written file behind.

Inline Markdown understood in text (``para``, ``bullets``, headings, banners,
captions): ``**bold**``, ``*italic*``, `` `code` ``, ``$math$`` (pandoc's rule:
no space inside the dollars and no digit right after the closing one, so "$5
and $10" stays text), ``[text](url)``, backslash escapes of any ASCII
punctuation and entity references (``&lt;``). Everything else is text and is
HTML-escaped; raw HTML is never passed through. No third-party Markdown package
is used.

Data is text. A string from the user's data (a column name, a category or
label, a file name, a message quoting one) goes into that text only through
``literal(s)`` (or ``literal(s, code=True)`` for a code span): both renderers,
and GitHub, then show it character for character, on one line, never as a tag,
link, heading, emphasis or math. Table cells and column headers are always
shown literally. The HTML page carries a Content-Security-Policy (``CSP``) that
refuses scripts and anything from the network. ``csv_text(df, index)`` writes a
table as CSV with the cells a spreadsheet would run as a formula neutralised
(``csv_cell``).
"""
import base64
import functools
import hashlib
import html
import json
import io
import math
import numbers
import os
import re
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, field

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # never fight a backend chosen by the caller
    matplotlib.use("Agg")

__all__ = ["Report", "write_atomic", "savefig_atomic", "render_math_svg", "slugify",
           "format_number", "display_path", "literal", "csv_cell", "csv_text", "CSP"]


# ------------------------------------------------------------------ file writes
def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def write_atomic(path, data):
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half.

    The data goes to a temporary file in the same folder (same filesystem),
    is flushed to disk, and then ``os.replace``-d over ``path``. Missing parent
    folders are created. On any error the temporary file is removed and the
    old ``path`` (if any) is untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    data : str or bytes
        Content; ``str`` is encoded as UTF-8.

    Returns
    -------
    str
        The destination path.
    """
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"write_atomic: data must be str or bytes, got {type(data).__name__}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def savefig_atomic(fig, path, **savefig_kw):
    """Save a matplotlib figure atomically (see ``write_atomic``).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; it is not closed (``plt.close(fig)`` is the caller's job).
    path : str or os.PathLike
        Destination; the format comes from the extension (``.png``, ``.svg``, ``.pdf``).
    **savefig_kw
        Passed to ``fig.savefig``; defaults ``dpi=SAVEFIG_DPI`` (120), and ``bbox_inches="tight"``
        unless the figure has a layout engine (which already fits it; cropping
        on top would draw it twice).
        Timestamps are left out of the file so re-runs give identical bytes.

    Returns
    -------
    str
        The destination path.
    """
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if not fmt:
        raise ValueError(f"savefig_atomic: {path!r} has no extension; use e.g. '.png' or '.svg'")
    savefig_kw.setdefault("dpi", SAVEFIG_DPI)
    if fig.get_layout_engine() is None:
        savefig_kw.setdefault("bbox_inches", "tight")
    if fmt in ("png", "svg", "pdf"):
        savefig_kw.setdefault("metadata", {"png": {"Software": None},
                                           "svg": {"Date": None},
                                           "pdf": {"CreationDate": None}}[fmt])
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "report"}):
        fig.savefig(buf, format=fmt, **savefig_kw)
    return write_atomic(path, buf.getvalue())


# ------------------------------------------------------------------ CSV tables
# A spreadsheet runs a cell that starts with one of these as a formula
# (=HYPERLINK(...), @SUM(...), -2+3, a tab or line break in front of one);
# OWASP's CSV-injection guidance and ASVS 1.2.10: put a single quote in front.
# The full-width forms are read as the ASCII ones by some spreadsheets.
_FORMULA_START = frozenset("=+-@\t\r\n\0\uff1d\uff0b\uff0d\uff20")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value):
    """A CSV cell that no spreadsheet runs as a formula.

    A ``str`` whose first character (after spaces) is ``=``, ``+``, ``-``, ``@``,
    a tab, CR, LF or NUL (or a full-width ``＝ ＋ － ＠``) gets a single quote in
    front (OWASP; a spreadsheet shows the text and hides the quote). A string
    that is just a number (``"-1.5"``) is left alone: it is read as that number
    and can hold no formula. Anything that is not a ``str`` is returned as is.

    Examples
    --------
    >>> csv_cell("=HYPERLINK(A1)"), csv_cell("-1.5"), csv_cell(-1.5)
    ("'=HYPERLINK(A1)", '-1.5', -1.5)
    """
    if not isinstance(value, str) or value.lstrip(" ")[:1] not in _FORMULA_START:
        return value
    if _PLAIN_NUMBER.fullmatch(value.strip(" ")):
        return value
    return "'" + value


def _csv_index(index):
    import pandas as pd
    if isinstance(index, pd.MultiIndex):
        return pd.MultiIndex.from_tuples([tuple(csv_cell(v) for v in t) for t in index],
                                         names=[csv_cell(n) for n in index.names])
    if index.dtype == object or isinstance(index.dtype, (pd.StringDtype, pd.CategoricalDtype)):
        return pd.Index([csv_cell(v) for v in index], name=csv_cell(index.name), dtype=object)
    return index.rename(csv_cell(index.name))


def csv_text(df, index=True, **to_csv_kw):
    """``df.to_csv(index=index)`` with every text cell passed through ``csv_cell``.

    Text cells, column names, index labels and index names are neutralised;
    numbers, booleans and dates are written as ``to_csv`` writes them. ``df``
    is not changed. When a text holds a carriage return, lines end with CRLF
    (RFC 4180) so that the field holding it is quoted and stays one cell.

    Parameters
    ----------
    df : pandas.DataFrame or Series
    index : bool
        Write the index (as ``DataFrame.to_csv``).
    **to_csv_kw
        Passed to ``DataFrame.to_csv`` (e.g. ``float_format``).

    Returns
    -------
    str
        The CSV text, e.g. for ``write_atomic(path, csv_text(df, index=False))``.
    """
    import pandas as pd
    if isinstance(df, pd.Series):
        df = df.to_frame()
    out = df.copy(deep=False)
    texts = []
    for j in range(out.shape[1]):
        col = out.iloc[:, j]
        if col.dtype == object or isinstance(col.dtype, (pd.StringDtype, pd.CategoricalDtype)):
            col = col.astype(object)
            texts += [v for v in col if isinstance(v, str)]
            out.isetitem(j, col.map(csv_cell))
    out.columns = _csv_index(out.columns)
    out.index = _csv_index(out.index)
    for labels in (out.columns, out.index):
        for v in labels.to_flat_index():
            texts += [x for x in (v if isinstance(v, tuple) else (v,)) if isinstance(x, str)]
        texts += [n for n in labels.names if isinstance(n, str)]
    if any("\r" in v for v in texts):
        # Python's csv writer quotes a field only for the characters of its line
        # terminator: with "\n" a bare CR stays unquoted, and a spreadsheet would
        # start a new row there (whose first cell could be a formula). RFC 4180's
        # CRLF line end gets every field holding a CR or LF quoted.
        to_csv_kw.setdefault("lineterminator", "\r\n")
    return out.to_csv(index=index, **to_csv_kw)


# ------------------------------------------------------------------------ math
_MATH_RC = {"mathtext.fontset": "cm", "svg.hashsalt": "report", "svg.fonttype": "path"}


# LaTeX that mathtext lacks, rewritten to an equivalent it has (display-only changes).
_MATH_SUBS = [
    (re.compile(r"\\tfrac(?![a-zA-Z])"), r"\\frac"),   # mathtext has \dfrac, not \tfrac
    (re.compile(r"\\[lr]Vert(?![a-zA-Z])"), r"\\Vert"),
    (re.compile(r"\\[lr]vert(?![a-zA-Z])"), "|"),
    (re.compile(r"\\(?:display|text|script)style(?![a-zA-Z])\s*"), ""),
    (re.compile(r"\\[bB]ig{1,2}[lr]?(?![a-zA-Z])\s*"), ""),
    (re.compile(r"\\operatorname\*"), r"\\operatorname"),
    (re.compile(r"\\(?:tag|label)\{[^{}]*\}"), ""),
    (re.compile(r"\\nonumber(?![a-zA-Z])|\\notag(?![a-zA-Z])"), ""),
]


def _normalise_math(latex):
    for pattern, repl in _MATH_SUBS:
        latex = pattern.sub(repl, latex)
    return latex


def _math_cache_dir():
    """Folder for rendered math: ``$MLP_CACHE_DIR/math`` or ``~/.cache/mlp-toolkit/math``
    (``$XDG_CACHE_HOME`` honoured); None when it cannot be created (no caching)."""
    root = os.environ.get("MLP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "mlp-toolkit")
    path = os.path.join(root, "math")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return path


def _math_cache_file(latex, fontsize):
    """Cache file of one formula: keyed by everything that changes its rendering."""
    folder = _math_cache_dir()
    if folder is None:
        return None
    key = json.dumps([matplotlib.__version__, sorted(_MATH_RC.items()), float(fontsize), latex])
    return os.path.join(folder, hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + ".json")


@functools.lru_cache(maxsize=512)
def render_math_svg(latex, fontsize=12.0):
    """Render one line of LaTeX math to SVG with matplotlib's mathtext.

    Parameters
    ----------
    latex : str
        The math without surrounding dollars, e.g. ``r"\\frac{\\partial L}{\\partial x}"``.
        mathtext supports a large LaTeX subset but no environments
        (``\\begin{...}``) and no line breaks; split multi-line math first.
    fontsize : float
        Font size in points.

    Returns
    -------
    (svg, width, height, depth) or None
        ``svg`` is the SVG document (str); ``width``/``height``/``depth`` are
        in points (``depth`` is the part below the baseline). ``None`` when
        mathtext cannot parse ``latex``.

    Notes
    -----
    Parsing dominates the cost (tens of ms per formula), and most formulas of a
    report are the same in every run, so results are also kept on disk (see
    ``_math_cache_dir``; ``MLP_CACHE_DIR`` moves it). A cache file that cannot be
    read or written is ignored: the formula is rendered again.
    """
    cache = _math_cache_file(latex, fontsize)
    if cache is not None:
        try:
            with open(cache, encoding="utf-8") as f:
                hit = json.load(f)
            return None if hit is None else (hit[0], *map(float, hit[1:]))
        except (OSError, ValueError, TypeError, IndexError):
            pass
    result = _render_math_svg(latex, fontsize)
    if cache is not None:
        try:
            write_atomic(cache, json.dumps(result))
        except OSError:
            pass
    return result


def _render_math_svg(latex, fontsize):
    """``render_math_svg`` without the caches."""
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import MathTextParser

    s = "$" + _normalise_math(latex).strip() + "$"
    prop = FontProperties(size=fontsize)
    try:
        with matplotlib.rc_context(_MATH_RC):
            width, height, depth, _, _ = MathTextParser("path").parse(s, dpi=72, prop=prop)
            if not (width > 0 and height > 0):
                return None
            fig = Figure(figsize=(width / 72.0, height / 72.0))
            fig.text(0, depth / height, s, fontproperties=prop)
            buf = io.BytesIO()
            fig.savefig(buf, format="svg", dpi=72, transparent=True, metadata={"Date": None})
    except Exception:  # mathtext raises ValueError; be lenient with any parser failure
        return None
    svg = buf.getvalue().decode("utf-8")
    return svg, float(width), float(height), float(depth)


_ALIGNED_ENV = re.compile(r"\\begin\{(aligned|align\*?|gathered|gather\*?|split)\}(.*?)\\end\{\1\}", re.S)


def _math_lines(latex):
    """Split display math into lines mathtext can render (drops aligned envs, ``&``)."""
    latex = latex.strip()
    m = _ALIGNED_ENV.fullmatch(latex)
    if m:
        latex = m.group(2)
    if "\\begin" in latex or "\\end" in latex:
        return [latex]  # let it fail (and fall back) as a whole
    lines = [ln.replace("&", " ").strip() for ln in re.split(r"\\\\", latex)]
    return [ln for ln in lines if ln] or [latex]


def _svg_img(latex, svg, width, height, depth, cls):
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
    src = html.escape(latex, quote=True)
    style = (f"width:{width / 12:.3f}em;height:{height / 12:.3f}em;"
             f"vertical-align:{-depth / 12:.3f}em")
    return f'<img class="{cls}" src="{uri}" alt="{src}" title="{src}" style="{style}">'


def _html_inline_math(latex):
    r = render_math_svg(latex)
    if r is None:
        return f'<code class="math-fallback" title="mathtext could not render this">{html.escape(latex)}</code>'
    return _svg_img(latex, *r, cls="math-inline")


_TEXT_FRAC = re.compile(r"\\frac(?![a-zA-Z])")


def _display_style(latex):
    """Display math as LaTeX sets it: fractions at full size (``\\frac`` -> ``\\dfrac``)."""
    return _TEXT_FRAC.sub(r"\\dfrac", latex)


def _html_display_math(latex):
    rendered = [render_math_svg(_display_style(line), 14.0) for line in _math_lines(latex)]
    if any(r is None for r in rendered):
        return ('<pre class="math-fallback" title="mathtext could not render this; LaTeX source shown">'
                f"<code>{html.escape(latex.strip())}</code></pre>")
    lines = [_svg_img(latex.strip(), *r, cls="math-display") for r in rendered]
    return '<div class="math">' + "<br>".join(lines) + "</div>"


# --------------------------------------------------------------- inline markup
# A string from the user's data (a column name, a category or label, a file
# name) is text, never markup: ``literal`` writes it as inline Markdown that both
# renderers (and GitHub) show character for character.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\t\v\f\x1c-\x1e\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")
# Backslash escapes for every character that can open or close inline markup
# (emphasis, code, links, math, strikethrough, attribute lists, a heading's closing
# hashes); entities for ``<`` and ``&``, which open a tag, an autolink or an entity,
# because every Markdown renderer decodes an entity but not every one honours ``\<``.
# A ``>`` means nothing inside a line (no tag can open with ``<`` escaped), so it
# stays as written ("> 200", "0.1 -> 0.2") but at the start, where it would quote.
_MD_ESCAPE = {**{c: "\\" + c for c in "\\`*_{}[]#~$"}, "<": "&lt;", "&": "&amp;"}
# what makes a line a list item ("- ", "+ ", "1. ", "2) "), a rule, a setext underline
# ("---", "===") or a block quote ("> ")
_MD_BLOCK_START = re.compile(r"(?P<n>\d{1,9})[.)](?=[ \t]|$)|[-+](?=[ \t]|$)|[-=]+[ \t]*$|>")


def _fold(text):
    """``text`` on one line: line breaks and tabs become spaces, other control characters U+FFFD."""
    return _CONTROL.sub("\ufffd", _LINE_BREAK.sub(" ", str(text)))


def literal(text, code=False):
    """A data string as inline Markdown that shows it literally, on one line.

    Column names, category and label values, file names and messages that
    quote them come from the user's data: interpolate them into the text of
    ``para``, ``heading``, ``bullets``, ``banner`` and captions only through
    this function, e.g. ``rep.para(f"{literal(name, code=True)} against the label")``.
    Table cells and column headers need no call: they are always literal.

    Parameters
    ----------
    text : object
        The data; ``str(text)`` is used.
    code : bool
        Write it as a code span (monospace), the way column names are shown;
        the fence is longer than any run of backticks in ``text``. Never wrap
        a plain ``literal(...)`` in backticks yourself: inside a code span its
        backslashes would show.

    Returns
    -------
    str
        GitHub-flavoured inline Markdown. Line breaks, tabs and other control
        characters are folded to spaces (U+FFFD for controls that are not white
        space), so data cannot start a heading, a list or an HTML block; every
        character that could open markup (``* _ ` [ ] { } # ~ $ \\``, and a
        list marker, rule, underline or ``>`` at the start) is backslash-escaped
        (an ``_`` between two letters or digits cannot, and is kept as is) and
        ``< &`` are written as entities, so no tag, link, quote, emphasis or
        math is ever formed from data; a ``>`` inside the text stays as it is.
        Bare URLs in data may still be made clickable by GitHub's autolinking;
        their text is then the URL itself.

    Examples
    --------
    >>> literal("[docs](https://example.org) <b>")
    '\\\\[docs\\\\](https://example.org) &lt;b>'
    >>> literal("> 200"), literal("0.1 -> 0.2")
    ('\\\\> 200', '0.1 -> 0.2')
    >>> literal("net_price $5 _x_")
    'net_price \\\\$5 \\\\_x\\\\_'
    >>> literal("a`b", code=True)
    '``a`b``'
    """
    return _literal(text, code, block=True)


def _literal(text, code=False, block=True):
    """``literal``; ``block=False`` leaves a leading list marker, rule or ``>`` as it is
    (a table cell is inline content: nothing in it starts a block)."""
    s = _fold(text)
    if code:
        if not s.strip(" "):
            return "`" + (s or " ") + "`"
        fence = "`" * (max((len(run) for run in re.findall(r"`+", s)), default=0) + 1)
        pad = " " if s[0] == "`" or s[-1] == "`" or (s[0] == " " and s[-1] == " ") else ""
        return fence + pad + s + pad + fence
    out = "".join("_" if c == "_" and 0 < i < len(s) - 1 and s[i - 1].isalnum() and s[i + 1].isalnum()
                  else _MD_ESCAPE.get(c, c) for i, c in enumerate(s))   # snake_case: no emphasis there
    m = _MD_BLOCK_START.match(s) if block else None
    if m:
        cut = len(m.group("n") or "")      # before the sign, or the number's "." / ")"
        out = out[:cut] + "\\" + out[cut:]
    return out


_TOK = r"(?:\\.|[^\\])"                     # one character of text; an escape is one
_EDGE = r"(?:\\.|[^\s\\{}])"               # first/last character inside emphasis


def _edge(excluded=""):
    return _EDGE.format(excluded)


_INLINE = re.compile(rf"""
  (?P<esc>\\[!-/:-@\[-`{{-~])
| (?P<ent>&(?:[A-Za-z][A-Za-z0-9]{{1,31}}|\#[0-9]{{1,7}}|\#[xX][0-9A-Fa-f]{{1,6}});)
| (?P<ticks>`+)(?P<code>.+?)(?P=ticks)
| \$\$(?P<dmath>.+?)\$\$
| \$(?P<math>[^\s$](?:[^$]*?[^\s\\$])?)\$(?!\d)
| \*\*(?P<bold>{_edge()}(?:{_TOK}*?{_edge()})?)\*\*
| (?<!\w)__(?P<ubold>{_edge()}(?:{_TOK}*?{_edge()})?)__(?!\w)
| (?<![\w*])\*(?P<em>{_edge("*")}(?:{_TOK}*?{_edge("*")})?)\*(?![\w*])
| (?<!\w)_(?P<uem>{_edge("_")}(?:{_TOK}*?{_edge("_")})?)_(?!\w)
| \[(?P<ltext>(?:\\.|[^\]\\\n])+)\]\((?P<lurl>[^)\s]+)\)
""", re.X | re.S)
_EMPHASIS = ("bold", "ubold", "em", "uem")


def _shown(m):
    """The text an escape or an entity stands for ("" for any other token)."""
    if m.group("esc") is not None:
        return m.group("esc")[1]
    if m.group("ent") is not None:
        return html.unescape(m.group("ent"))
    return ""


def _code_text(code):
    """A code span's content as CommonMark shows it: line breaks are spaces, and one
    space is taken off each side when both sides have one (and it is not all spaces)."""
    code = code.replace("\n", " ")
    if len(code) >= 2 and code[0] == " " and code[-1] == " " and code.strip(" "):
        code = code[1:-1]
    return code


_UNSAFE_URL = re.compile(r"(?i)\s*(?:javascript|vbscript|data|file):")


def _inline_html(text, terms=None, expand=False):
    """Inline Markdown subset -> HTML; all plain text is escaped.

    ``terms`` (a ``_Terms``) marks defined abbreviations in the plain text; with
    ``expand`` their first use also shows the short meaning. Escapes and entities
    are text: they join the words around them (``pps\\_train`` holds no ``pps``).
    """
    def plain(s, before, after):
        if terms is None:
            return html.escape(s, quote=False)
        return terms.html(s, expand, before, after)

    out, pos, before = [], 0, ""
    for m in _INLINE.finditer(text):
        shown = _shown(m)
        out.append(plain(text[pos:m.start()], before, shown[:1]))
        before = shown[-1:]
        pos = m.end()
        g = m.groupdict()
        if g["esc"] is not None or g["ent"] is not None:
            out.append(html.escape(shown, quote=False))
        elif g["code"] is not None:
            out.append(f"<code>{html.escape(_code_text(g['code']), quote=False)}</code>")
        elif g["dmath"] is not None:
            out.append(_html_inline_math(g["dmath"]))
        elif g["math"] is not None:
            out.append(_html_inline_math(g["math"]))
        elif g["bold"] is not None or g["ubold"] is not None:
            inner = g["bold"] if g["bold"] is not None else g["ubold"]
            out.append(f"<strong>{_inline_html(inner, terms, expand)}</strong>")
        elif g["em"] is not None or g["uem"] is not None:
            inner = g["em"] if g["em"] is not None else g["uem"]
            out.append(f"<em>{_inline_html(inner, terms, expand)}</em>")
        else:
            url = g["lurl"]
            if _UNSAFE_URL.match(url):
                url = "#"
            out.append(f'<a href="{html.escape(url, quote=True)}">{_inline_html(g["ltext"])}</a>')
    out.append(plain(text[pos:], before, ""))
    return "".join(out)


def _inline_md_terms(text, terms, expand):
    """Inline Markdown with the first use of each defined term followed by its meaning."""
    if terms is None or terms.pattern is None:
        return text
    out, pos, before = [], 0, ""
    for m in _INLINE.finditer(text):
        shown = _shown(m)
        out.append(terms.md(text[pos:m.start()], expand, before, shown[:1]))
        before = shown[-1:]
        pos = m.end()
        g = m.groupdict()
        inner = next((g[k] for k in _EMPHASIS if g[k] is not None), None)
        if inner is not None:
            s = m.group(0)
            lead = s[:s.index(inner)]
            out.append(lead + _inline_md_terms(inner, terms, expand) + s[len(lead) + len(inner):])
        else:
            out.append(m.group(0))
    out.append(terms.md(text[pos:], expand, before, ""))
    return "".join(out)


def _is_word(ch):
    return bool(ch) and re.match(r"\w", ch) is not None


class _Terms:
    """Rendering state of a report's glossary: which terms were used and explained."""

    def __init__(self, glossary):
        self.glossary = glossary
        self.expanded = set()
        names = sorted(glossary, key=len, reverse=True)   # longest first: "pps" inside "pps-test"
        self.pattern = (re.compile(r"(?<!\w)(" + "|".join(map(re.escape, names)) + r")(?!\w)")
                        if names else None)

    def _split(self, text, expand, before="", after=""):
        """(text before, term, expand it?) triples and the tail of ``text``.

        ``before``/``after``: the characters shown next to ``text`` (an escaped
        ``_`` joins a word as a plain one does), so a term is a whole word there too.
        """
        pos = 0
        if self.pattern is not None:
            for m in self.pattern.finditer(text):
                if (m.start() == 0 and _is_word(before)) or (m.end() == len(text) and _is_word(after)):
                    continue
                term = m.group(1)
                first = expand and term not in self.expanded
                if first:
                    self.expanded.add(term)
                yield text[pos:m.start()], term, first
                pos = m.end()
        yield text[pos:], None, False

    def html(self, text, expand, before="", after=""):
        out = []
        for plain, term, first in self._split(text, expand, before, after):
            out.append(html.escape(plain, quote=False))
            if term is not None:
                meaning, short = self.glossary[term]
                out.append(f'<abbr title="{html.escape(_plain(meaning), quote=True)}">'
                           f"{html.escape(term, quote=False)}</abbr>")
                if first:
                    out.append(f' <span class="gloss">({_inline_html(short)})</span>')
        return "".join(out)

    def md(self, text, expand, before="", after=""):
        out = []
        for plain, term, first in self._split(text, expand, before, after):
            out.append(plain)
            if term is not None:
                out.append(term + (f" ({self.glossary[term][1]})" if first else ""))
        return "".join(out)


def _plain(text):
    """Inline Markdown -> plain text (for slugs, the table of contents, alt texts)."""
    def repl(m):
        g = m.groupdict()
        if g["esc"] is not None or g["ent"] is not None:
            return _shown(m)
        if g["code"] is not None:
            return _code_text(g["code"])
        for k in ("dmath", "math"):
            if g[k] is not None:
                return g[k]
        for k in (*_EMPHASIS, "ltext"):
            if g[k] is not None:
                return _plain(g[k])
        return m.group(0)
    return _INLINE.sub(repl, text)


def slugify(text, seen=None):
    """GitHub-style anchor for a heading: lower case, punctuation dropped, spaces -> '-'.

    Parameters
    ----------
    text : str
        Heading text (inline Markdown allowed).
    seen : dict, optional
        Slug -> count so far; repeated headings get ``-1``, ``-2`` suffixes as on GitHub.
    """
    slug = re.sub(r"[^\w\- ]", "", _plain(text).strip().lower()).replace(" ", "-") or "section"
    if seen is not None:
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        if n:
            slug = f"{slug}-{n}"
    return slug


def _md_cell(text):
    """Literal text -> a Markdown table cell that GitHub shows verbatim (``literal``, pipes escaped)."""
    return _literal(text, block=False).replace("|", "\\|")


# ----------------------------------------------------------------------- blocks
@dataclass
class Heading:
    text: str
    level: int


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list          # str, or a list (sub-list of the previous item)
    ordered: bool = False


@dataclass
class Table:
    columns: list
    rows: list           # list of lists of str (already formatted)
    caption: str = None
    align: list = None   # "l" / "r" / "c" per column (default: all "l")
    key: int = 1         # leading columns repeated in every piece when the table is split

    def __post_init__(self):
        if self.align is None:
            self.align = ["l"] * len(self.columns)


@dataclass
class Figure:
    path: str
    caption: str = None


@dataclass
class Math:
    latex: str


@dataclass
class Code:
    text: str
    lang: str = ""


@dataclass
class Banner:
    text: str
    kind: str = "warning"


@dataclass
class Divider:
    """A horizontal line between blocks (``---`` in Markdown, ``<hr>`` in HTML)."""


_NA = "–"                      # shown for NaN / None / pd.NA cells unless the caller says otherwise
_ORDINARY = (1e-4, 1e6)        # |x| inside this range is never shown with an exponent
_SPEC = re.compile(r"^(?P<sep>[,_])?(?:\.(?P<prec>\d+))?(?P<type>[eEfFgG%]?)$")


def _fixed_significant(v, sig, strip):
    """``v`` in fixed notation with ``sig`` significant digits and thousands separators."""
    r = float(f"{v:.{sig - 1}e}")            # rounded first: 9.9996 -> 10.00 changes the exponent
    if r == 0:
        return "0"
    exp = math.floor(math.log10(abs(r)))
    decimals = max(0, sig - 1 - exp)
    s = f"{r:,.{decimals}f}"
    if strip and "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def format_number(v, spec=".4g"):
    """One number as a reader should see it in a table.

    Parameters
    ----------
    v : int, float or numpy scalar
    spec : str or callable
        A ``format`` spec for real numbers (``".4g"``, ``".3f"``, ``".3e"``, ``".1%"``)
        or a function ``float -> str``. The spec says how many digits the number
        supports; this function says how they are written:

        - integers (and integral floats under a ``g`` spec, e.g. counts held in a
          float column) get thousands separators: ``41,348``;
        - ``g``/``e`` specs never use an exponent for ordinary magnitudes
          (``1e-4 <= |v| < 1e6``): ``0.001234``, not ``1.234e-03``; the same
          significant digits are kept;
        - ``f`` specs get thousands separators (``12,345.7``);
        - NaN/None are the caller's business (see ``Report.table``'s ``na``).
        An integer spec (``"d"``) shows an int without separators (years, seeds).

    Returns
    -------
    str

    Examples
    --------
    >>> format_number(41348), format_number(0.001234, ".3e"), format_number(12345.6, ".4g")
    ('41,348', '0.001234', '12,350')
    """
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return str(bool(v))
    if callable(spec):
        return spec(v)
    if isinstance(v, numbers.Integral):
        if isinstance(spec, str) and spec and spec[-1] in "dnbxXoc":
            return format(int(v), spec)
        return f"{int(v):,}"
    v = float(v)
    if math.isnan(v):
        return _NA
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v == 0:
        v = 0.0                                # no "-0"
    m = _SPEC.match(spec)
    if m is None:                              # anything fancier is the caller's exact wish
        return format(v, spec)
    kind, prec = m.group("type"), m.group("prec")
    ordinary = v == 0 or _ORDINARY[0] <= abs(v) < _ORDINARY[1]
    if kind in "fF":
        return format(v, f",.{6 if prec is None else prec}f")
    if kind == "%":
        return format(v, f",.{6 if prec is None else prec}%")
    if kind in "eE":
        sig = (6 if prec is None else int(prec)) + 1
        return _fixed_significant(v, sig, strip=False) if ordinary else format(v, f".{sig - 1}{kind}")
    sig = max(1, 6 if prec is None else int(prec))          # g, G or no type
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if ordinary:
        return _fixed_significant(v, sig, strip=True)
    return format(v, f".{sig}{kind or 'g'}")


class _PathCell(str):
    """A path in a table cell: shown relative to the folder the report is written to."""

    def __new__(cls, path):
        self = super().__new__(cls, os.fspath(path))
        self.abs = os.path.abspath(os.fspath(path))
        return self


def display_path(path, start=None):
    """``path`` as a reader of the report should see it: relative to ``start``.

    Parameters
    ----------
    path : str or os.PathLike
    start : str or os.PathLike, optional
        The folder the reader is in (the report's folder); default the current directory.

    Returns
    -------
    str
        The relative path with ``/`` separators, or the absolute path when no
        relative one exists (another drive on Windows).
    """
    start = os.path.abspath(os.fspath(start) if start is not None else os.getcwd())
    try:
        rel = os.path.relpath(os.path.abspath(os.fspath(path)), start)
    except ValueError:
        return os.fspath(path)
    return rel.replace(os.sep, "/")


def _is_missing(v):
    if v is None:
        return True
    if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral):
        return math.isnan(float(v))
    try:  # pandas NA / NaT
        import pandas as pd
        return v is pd.NA or v is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a requirement
        return False


def _format_cell(v, spec, na):
    if _is_missing(v):
        return na
    if isinstance(v, os.PathLike):
        return _PathCell(v)
    if isinstance(v, numbers.Real) or type(v).__name__ == "bool_":
        return format_number(v, spec)
    return str(v)


def _table_from(data, floatfmt, index, formats=None, na=_NA):
    """(columns, rows, numeric flags) from a DataFrame, list of dicts or list of sequences."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a requirement
        pd = None
    if pd is not None and isinstance(data, pd.Series):
        data = data.to_frame()
    if pd is not None and isinstance(data, pd.DataFrame):
        df = data
        show_index = index if index is not None else not isinstance(df.index, pd.RangeIndex)
        if show_index:
            df = df.reset_index()
        columns = [str(c) for c in df.columns]
        records = df.to_numpy(dtype=object).tolist()
    elif isinstance(data, dict):
        columns = [str(k) for k in data]
        cols = [list(v) for v in data.values()]
        if len({len(c) for c in cols}) > 1:
            raise ValueError("table: dict columns have different lengths "
                             f"({', '.join(f'{k}={len(c)}' for k, c in zip(columns, cols))})")
        records = [list(r) for r in zip(*cols)]
    else:
        data = list(data)
        if data and isinstance(data[0], dict):
            columns = []
            for r in data:
                for k in r:
                    if str(k) not in columns:
                        columns.append(str(k))
            # keys may be non-str: look them up by their str form
            records = [[{str(k): v for k, v in r.items()}.get(c) for c in columns] for r in data]
        else:
            raise TypeError("table: pass a pandas DataFrame, a dict of columns or a list of dicts "
                            f"(got {type(data).__name__}{' of ' + type(data[0]).__name__ if data else ''})")
    numeric = [all(isinstance(r[j], numbers.Number) and not isinstance(r[j], bool) or _is_missing(r[j])
                   for r in records) and any(isinstance(r[j], numbers.Number) for r in records)
               for j in range(len(columns))]
    formats = _per_column("formats", formats, columns, floatfmt)
    formats = [_counts_whole(f, [r[j] for r in records]) if numeric[j] else f for j, f in enumerate(formats)]
    na = _per_column("na", na, columns, _NA) if isinstance(na, dict) else [str(na)] * len(columns)
    rows = [[_format_cell(v, f, n) for v, f, n in zip(r, formats, na)] for r in records]
    return columns, rows, numeric


def _counts_whole(spec, values):
    """``spec`` for a column, or, for a column of counts held as floats under a fixed-decimals
    spec (``".3f"``), a formatter that writes its whole numbers as integers.

    A column counts when every value of magnitude 1 or more is a whole number and one is
    2 or more (a support column: ``4,109``, not ``4,109.000``); other values in it (a
    scikit-learn report's accuracy row) keep ``spec``. Scores, shares and losses have
    fractional values above 1 or none above 1, and are left alone.
    """
    if not isinstance(spec, str):
        return spec
    m = _SPEC.match(spec)
    if m is None or m.group("type") not in ("f", "F"):
        return spec
    real = [float(v) for v in values if isinstance(v, numbers.Real) and not isinstance(v, (bool, numbers.Integral))
            and not _is_missing(v) and math.isfinite(float(v))]
    large = [v for v in real if abs(v) >= 1]
    if not large or not all(v.is_integer() for v in large) or max(abs(v) for v in large) < 2:
        return spec

    def whole(v):
        v = float(v)
        return f"{int(v):,}" if math.isfinite(v) and v.is_integer() else format_number(v, spec)
    return whole


def _per_column(name, values, columns, default):
    """A per-column option (dict column -> value) as a list aligned with ``columns``."""
    values = dict(values or {})
    unknown = [str(k) for k in values if str(k) not in columns]
    if unknown:
        raise ValueError(f"table: {name} names unknown column(s) {', '.join(map(repr, unknown))}; "
                         f"the columns are {', '.join(map(repr, columns))}")
    values = {str(k): v for k, v in values.items()}
    return [values.get(c, default) for c in columns]


# ------------------------------------------------------------ Markdown snippets
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_LIST = re.compile(r"^(-|\d+\.)\s+(.*)$")


def parse_markdown(text, level_offset=0):
    """Parse the Markdown that ``docs/`` uses into report blocks, and no more.

    Supported, each starting at the beginning of a line:

    - ``#`` ... ``######`` headings;
    - paragraphs (consecutive lines, joined with spaces);
    - display math ``$$ ... $$`` on one line of its own;
    - fenced code: a line starting with three backticks (optionally followed by
      a language) up to the next such line;
    - flat lists: ``-`` items or ``1.`` items, continued by indented lines; a
      blank line followed by another item of the same kind continues the list.

    Inline markup (``**bold**``, `` `code` ``, ``$math$``, links) is left in the
    text and rendered by the renderers. Anything else (block quotes, tables,
    images, rules, nested lists, multi-line ``$$``, ``\\[ \\]``) stays
    paragraph text.

    Parameters
    ----------
    text : str
        The Markdown source.
    level_offset : int
        Added to every heading level (e.g. 1 to nest a document under a ``##`` section).

    Returns
    -------
    list of blocks
    """
    lines = text.replace("\r\n", "\n").split("\n")
    blocks, para, i = [], [], 0

    def flush():
        if para:
            blocks.append(Para(" ".join(s.strip() for s in para)))
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            flush()
            i += 1
        elif line.startswith("```"):
            flush()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            blocks.append(Code("\n".join(lines[i + 1:end]), line[3:].strip()))
            i = end + 1
        elif line.startswith("$$") and len(stripped) > 4 and stripped.endswith("$$"):
            flush()
            blocks.append(Math(stripped[2:-2].strip()))
            i += 1
        elif _HEADING.match(line):
            flush()
            m = _HEADING.match(line)
            blocks.append(Heading(m.group(2), min(6, max(1, len(m.group(1)) + level_offset))))
            i += 1
        elif _LIST.match(line):
            flush()
            ordered = line[0].isdigit()
            items, i = _parse_list(lines, i, ordered)
            blocks.append(Bullets(items, ordered))
        else:
            para.append(line)
            i += 1
    flush()
    return blocks


def _parse_list(lines, i, ordered):
    """Parse the flat list starting at ``lines[i]``; return (items, next i)."""
    def item(line):
        m = _LIST.match(line)
        return m.group(2).strip() if m and line[0].isdigit() == ordered else None

    items = []
    while i < len(lines):
        line = lines[i]
        if item(line) is not None:
            items.append(item(line))
        elif line.strip() and line[0].isspace():
            items[-1] += " " + line.strip()  # continuation line
        elif not line.strip() and i + 1 < len(lines) and item(lines[i + 1]) is not None:
            pass                             # a blank line between items
        else:
            break
        i += 1
    return items, i


# ----------------------------------------------------------------------- Report
# Page geometry: what a figure is shown at (plots.py draws to fit it, and its
# font test reads these). Print: the printer's paper, A4 (210 mm) being the
# narrower of A4 and Letter, and Letter (279 mm) the shorter.
PAGE_SIDE_MARGIN_MM = 15
PRINT_WIDTH_IN = (210 - 2 * PAGE_SIDE_MARGIN_MM) / 25.4      # 7.09 in: the printed column
FIGURE_MAX_HEIGHT_IN = 9.0      # a printed figure is scaled down to fit this height
SCREEN_COLUMN_PX = 950          # the content column on a wide screen (CSS px; figures never wider)
SAVEFIG_DPI = 120               # savefig_atomic's default: one image pixel per CSS pixel on screen
PRINT_ROOT_PT = 9.5              # printed, 1rem (the body text; headings and spacing scale with it)
# Printed table fonts per class (pt). Each is at most the screen's size of that class
# (``TABLE_STYLE``, measured against the printed column), so a table measured to fit
# fits on paper too; checked below ``TABLE_STYLE``.
PRINT_TABLE_PT = {"": 9.0, "wide": 8.5, "narrow": 8.0}

_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg-soft:#f6f8fa; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin:0; color:var(--fg); background:#fff;
       font:16px/1.55 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
.layout { max-width: 62rem; margin: 0 auto; }
main { padding: 1rem 1.25rem 4rem; min-width: 0; }
h1 { font-size: 1.75rem; line-height: 1.25; border-bottom: 1px solid var(--line);
     padding-bottom: .3rem; margin: .6rem 0 .8rem; }
h2 { font-size: 1.5rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; margin-top: 2.5rem; }
h1 + h2, h1 + .banner + h2 { margin-top: .8rem; }
h3 { font-size: 1.2rem; margin-top: 1.8rem; } h4, h5, h6 { font-size: 1rem; }
p { margin: .6rem 0; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
abbr[title] { text-decoration: underline dotted; cursor: help; }
.gloss { color: var(--muted); }
code { font: .88em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: var(--bg-soft); padding: .1em .3em; border-radius: 4px; overflow-wrap: anywhere; }
pre { background: var(--bg-soft); padding: .9rem 1rem; border-radius: 6px; overflow-x: auto; }
pre code { background: none; padding: 0; overflow-wrap: normal; }
.toc { font-size: .9rem; }
.toc ul { margin: .2rem 0; padding-left: 1.1rem; list-style: none; } .toc > ul, .toc nav > ul { padding-left: 0; }
.toc li { margin: .1rem 0; }
.toc .toc-title, .toc summary { font-weight: 600; }
details.toc-inline { background: var(--bg-soft); border: 1px solid var(--line); border-radius: 6px;
                     padding: .4rem 1rem; margin: 1.5rem 0; }
details.toc-inline summary { cursor: pointer; }
nav.toc-side { display: none; }
@media (min-width: 72rem) {
  .layout.with-toc { max-width: 80rem; display: grid; grid-template-columns: 15rem minmax(0, 1fr);
                     column-gap: 1.5rem; }
  nav.toc-side { display: block; position: sticky; top: 0; align-self: start; max-height: 100vh;
                 overflow-y: auto; padding: 1.2rem .5rem 2rem 1rem; border-right: 1px solid var(--line); }
  .with-toc details.toc-inline { display: none; }
  .with-toc main { max-width: 64rem; }
}
.table-wrap { margin: 1rem 0; max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-size: .92rem; font-variant-numeric: tabular-nums; }
table.wide { font-size: .8rem; } table.narrow { font-size: .72rem; }
th, td { border: 1px solid var(--line); padding: .3rem .6rem; }
table.wide th, table.wide td { padding: .25rem .4rem; }
table.narrow th, table.narrow td { padding: .2rem .3rem; }
th { background: var(--bg-soft); font-weight: 600; vertical-align: bottom; }
td.l, th { overflow-wrap: break-word; } td.r { white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfcfd; }
td.r, th.r { text-align: right; } td.c, th.c { text-align: center; } td.l, th.l { text-align: left; }
caption { caption-side: top; text-align: left; color: var(--muted); font-size: .9rem; padding-bottom: .3rem; }
figure { margin: 1.5rem 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: .9rem; margin-top: .4rem; }
.math { text-align: center; margin: 1rem 0; overflow-x: auto; line-height: 2.4; }
img.math-inline { display: inline; }
.math-fallback { color: #8250df; }
.banner { border: 2px solid #bf8700; background: #fff8c5; border-radius: 6px;
          padding: .7rem 1rem; margin: 1rem 0; font-weight: 600; }
.banner.error { border-color: #cf222e; background: #ffebe9; }
.banner.info { border-color: #0969da; background: #ddf4ff; }
.missing { color: #cf222e; }
hr { border: 0; border-top: 1px solid var(--line); margin: 2rem 0; }
.glossary dt { font-weight: 600; margin-top: .5rem; } .glossary dd { margin-left: 1.5rem; }
/* Paper: the printer's size (A4 or Letter; the layout fits the narrower A4 column
   and the shorter Letter page), nothing interactive, nothing cut, no page ending in a
   heading, a caption or a table's header, no split table torn apart. */
@page { size: auto; margin: 11mm __SIDE__mm 12mm; }
@media print {
  html { font-size: __ROOT__pt; }   /* every size in rem (headings, margins, paddings) follows */
  body { font-size: 1rem; line-height: 1.35; }
  .layout, .layout.with-toc { display: block; max-width: none; margin: 0; }
  main, .with-toc main { max-width: none; padding: 0; }
  nav.toc-side, details.toc-inline { display: none; }
  a { color: inherit; }
  h1 { margin-top: 0; }
  h2 { margin: 1.4rem 0 .6rem; } h3 { margin: 1rem 0 .4rem; } h4 { margin: .8rem 0 .3rem; }
  h1 + h2, h1 + .banner + h2, h2 + h3 { margin-top: .6rem; }
  p { margin: .4rem 0; orphans: 2; widows: 2; }
  ul, ol { margin: .4rem 0; }
  h2, h3, h4, caption, thead { break-after: avoid; page-break-after: avoid; }
  .table-wrap, pre, .math { overflow: visible; }
  .table-wrap { margin: .6rem 0; }
  pre { white-space: pre-wrap; font-size: .9rem; padding: .5rem .7rem; orphans: 4; widows: 4; }
  table { font-size: __TPT__pt; line-height: 1.25; } table.wide { font-size: __TPTW__pt; }
  table.narrow { font-size: __TPTN__pt; }
  th, td { padding-top: .12rem; padding-bottom: .12rem; }    /* side paddings as measured */
  caption { font-size: .9rem; padding-bottom: .2rem; }
  table, figure, .math, .banner, tr, dt, dd, caption, .table-group, tbody.head-rows {
    break-inside: avoid; page-break-inside: avoid; }
  table.long, .table-group.long { break-inside: auto; page-break-inside: auto; }   /* long tables flow on; rows stay whole */
  thead { display: table-header-group; }
  figure { margin: .6rem 0; }
  figure img { max-width: min(100%, var(--drawn-width, 100%)); max-height: __FIGH__in; width: auto; border: 0; }
  figcaption { margin-top: .2rem; }
  .math { margin: .4rem 0; line-height: 1.8; }
  hr { margin: 1rem 0; }
  .glossary dl { columns: 2; column-gap: 1.5rem; margin: .4rem 0; }
  .glossary dt { break-after: avoid; margin-top: .3rem; } .glossary dd { margin-left: 1rem; }
  tbody tr:nth-child(even), th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

_CSS = (_CSS.replace("__SIDE__", str(PAGE_SIDE_MARGIN_MM)).replace("__FIGH__", f"{FIGURE_MAX_HEIGHT_IN:g}")
        .replace("__ROOT__", f"{PRINT_ROOT_PT:g}").replace("__TPT__", f"{PRINT_TABLE_PT['']:g}")
        .replace("__TPTW__", f"{PRINT_TABLE_PT['wide']:g}").replace("__TPTN__", f"{PRINT_TABLE_PT['narrow']:g}"))

# The page needs no script, no font, no frame and nothing from the network: its
# images are data: URIs and its styles inline. Anything else that a rendering bug
# might let into the page (a <script>, an inline handler, a remote image that
# reports the reader's visit) is refused by the browser.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
         ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}


def _drawn_width_in(data):
    """The width in inches a PNG was drawn at (its pixels over the resolution in its pHYs
    chunk, else ``SAVEFIG_DPI``), or None for another format. On screen a figure is shown
    at one image pixel per CSS pixel; on paper at this width (never wider than the
    column), so its text prints at the size the figure was designed for."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    width = int.from_bytes(data[16:20], "big")
    dpi = SAVEFIG_DPI
    at = data.find(b"pHYs", 0, 4096)
    if at >= 0 and len(data) >= at + 13 and data[at + 12] == 1:     # pixels per metre
        ppm = int.from_bytes(data[at + 4:at + 8], "big")
        dpi = ppm * 0.0254 if ppm else dpi
    return width / dpi if width and dpi else None


class Report:
    """An ordered list of blocks rendered to Markdown or to self-contained HTML.

    Parameters
    ----------
    title : str
        Document title (the page's ``<h1>`` and ``<title>``).
    run_id : str, optional
        The run that wrote the document (``rundir.new_run_id``): shown under the
        title and, in HTML, also as ``<meta name="run-id">``, so anyone can check
        that a report and the ``metrics.json`` beside it belong together.

    Examples
    --------
    >>> rep = Report("Run")
    >>> rep.heading("Results", 2).para("Accuracy is **0.93** for $\\\\alpha = 0.1$.")
    ... # doctest: +ELLIPSIS
    <report.Report object at ...>
    >>> "## Results" in rep.to_markdown()
    True

    Every adding method returns the report, so calls can be chained. Text
    arguments accept the inline Markdown subset described in the module
    docstring; a data string goes into them through ``literal``.
    """

    def __init__(self, title, run_id=None):
        self.title = str(title)
        self.run_id = None if run_id is None else str(run_id)
        self.blocks = []
        self.glossary = {}   # term -> (meaning, short); see ``define``

    # -- building ---------------------------------------------------------------
    def _add(self, block):
        self.blocks.append(block)
        return self

    def heading(self, text, level=2):
        """Add a heading; ``level`` 1-6 (the title is the only level-1 heading by convention)."""
        if not isinstance(level, int) or not 1 <= level <= 6:
            raise ValueError(f"heading: level must be an int from 1 to 6, got {level!r}")
        return self._add(Heading(str(text), level))

    def para(self, text):
        """Add a paragraph of inline Markdown (``**bold**``, `` `code` ``, ``$math$``);
        data strings in it go through ``literal``."""
        return self._add(Para(str(text)))

    def bullets(self, items, ordered=False):
        """Add a list; an item that is itself a list becomes a sub-list of the item before it."""
        items = list(items)
        if not items:
            raise ValueError("bullets: items is empty; pass at least one item")
        return self._add(Bullets(items, ordered))

    def table(self, data, caption=None, floatfmt=".4g", index=None, formats=None, na=_NA, key=1):
        """Add a table.

        Parameters
        ----------
        data : pandas.DataFrame or Series, dict of columns, or list of dicts
            The cells; they and the column names are data, shown literally
            (no Markdown interpretation; pass them as they are, not through
            ``literal``).
        caption : str, optional
            Shown above the table.
        floatfmt : str or callable
            Format spec for real numbers (``".4g"``, ``".3f"``, ``".1%"``) or
            a function ``float -> str``; it says how many digits the numbers
            support, ``format_number`` says how they are written (thousands
            separators, no exponent for ordinary magnitudes). Integers are
            never formatted as floats.
        index : bool, optional
            Show a DataFrame's index as the first column; default: only when
            it is not a plain ``RangeIndex``.
        formats : dict, optional
            Column name -> spec or callable for that column, overriding
            ``floatfmt`` (e.g. ``{"share": ".1%", "seed": "d"}``).
        na : str or dict
            Text of a missing cell (NaN, None, ``pd.NA``): one text for all
            columns (default ``"–"``) or column name -> text (other columns
            get ``"–"``), e.g. ``{"final loss": "diverged"}``.
        key : int or list of str
            The key columns, repeated in every piece when the table is wider
            than the page and is split (see ``to_html``): the first ``key``
            columns, or the named columns, which are moved to the front (the
            columns that carry the conclusion should come first).

        Notes
        -----
        ``os.PathLike`` cells are shown relative to the report's folder.
        """
        columns, rows, numeric = _table_from(data, floatfmt, index, formats, na)
        if isinstance(key, (list, tuple)):
            missing = [k for k in key if str(k) not in columns]
            if missing or not key:
                raise ValueError(f"table: key names unknown column(s) {', '.join(map(repr, missing))}; "
                                 f"the columns are {', '.join(map(repr, columns))}" if missing else
                                 "table: key is an empty list; pass column names or a count")
            order = [columns.index(str(k)) for k in key]
            order += [j for j in range(len(columns)) if j not in order]
            columns = [columns[j] for j in order]
            rows = [[r[j] for j in order] for r in rows]
            numeric = [numeric[j] for j in order]
            key = len(order) - (len(columns) - len(key))
        elif not isinstance(key, int) or isinstance(key, bool) or not 0 <= key <= len(columns):
            raise ValueError(f"table: key must be a column count from 0 to {len(columns)} or a list of "
                             f"column names, got {key!r}")
        align = ["r" if n else "l" for n in numeric]
        return self._add(Table(columns, rows, caption, align, key=key))

    def define(self, term, meaning, short=None):
        """Define an abbreviation or term: explained where it is first used, and in a glossary.

        In running text (paragraphs, lists, captions, banners) the first use of
        ``term`` is followed by its short meaning in parentheses; every use gets
        the full meaning as a tooltip (``<abbr title=...>``) in HTML, table
        headers and cells included (tables never carry the expansion). A
        "Glossary" section listing every defined term that the report uses
        closes the document. Code, math and links are left alone.

        Parameters
        ----------
        term : str
            As written in the text, matched case-sensitively as a whole word,
            e.g. ``"pps"``.
        meaning : str
            The definition for the glossary (inline Markdown allowed), e.g.
            ``"predictive-power score: how well one column alone predicts the
            label (0 = no better than the majority class, 1 = perfectly)"``.
        short : str, optional
            What the first use shows in parentheses; default the part of
            ``meaning`` before its first ``": "`` (all of it if there is none).

        Examples
        --------
        >>> rep = Report("R").define("pps", "predictive-power score: 0 = useless, 1 = perfect")
        >>> rep = rep.para("The pps is 0.8; a pps above 0.5 is high.")
        >>> "The pps (predictive-power score) is 0.8; a pps above" in rep.to_markdown()
        True
        """
        term = str(term).strip()
        if not term:
            raise ValueError("define: term is empty; pass the abbreviation as it appears in the text")
        meaning = str(meaning).strip()
        if not meaning:
            raise ValueError(f"define: the meaning of {term!r} is empty; say what it stands for")
        if short is None:
            short = meaning.split(": ", 1)[0]
        self.glossary[term] = (meaning, str(short).strip())
        return self

    def figure(self, path, caption=None):
        """Add an image file (PNG/SVG/JPEG) with an optional caption (inline Markdown;
        data strings in it go through ``literal``).

        The file is read when rendering: linked in Markdown (its name
        percent-encoded), embedded in HTML.
        """
        return self._add(Figure(os.fspath(path), caption))

    def math(self, latex):
        """Add display math (LaTeX without the ``$$``; ``\\\\`` separates lines)."""
        return self._add(Math(str(latex).strip()))

    def code(self, text, lang=""):
        """Add a code block."""
        return self._add(Code(str(text).rstrip("\n"), lang or ""))

    def banner(self, text, kind="warning"):
        """Add a highlighted box; ``kind`` is 'warning' (default), 'error' or 'info'."""
        if kind not in ("warning", "error", "info"):
            raise ValueError(f"banner: kind must be 'warning', 'error' or 'info', got {kind!r}")
        return self._add(Banner(str(text), kind))

    def divider(self):
        """Add a horizontal divider (``---``)."""
        return self._add(Divider())

    def markdown(self, text, level_offset=0):
        """Add a Markdown snippet (see ``parse_markdown`` for the supported subset).

        Parameters
        ----------
        text : str
            Markdown source, e.g. ``Path("docs/partC_derivation.md").read_text()``.
        level_offset : int
            Added to the snippet's heading levels so it nests under the current section.
        """
        self.blocks.extend(parse_markdown(str(text), level_offset))
        return self

    def extend(self, other):
        """Append the blocks (and glossary) of another ``Report`` (its title is not added)."""
        self.blocks.extend(other.blocks)
        self.glossary.update(other.glossary)
        return self

    # -- rendering --------------------------------------------------------------
    def _anchors(self):
        seen = {slugify(self.title): 1, "glossary": 1 if self.glossary else 0}
        return [slugify(b.text, seen) if isinstance(b, Heading) else None for b in self.blocks]

    def _toc_entries(self, anchors):
        """(level, text, anchor) of the level-2/3 headings, then the glossary's when there is one."""
        entries = [(b.level, b.text, a) for b, a in zip(self.blocks, anchors)
                   if isinstance(b, Heading) and b.level in (2, 3)]
        if self.glossary:
            entries.append((2, "Glossary", "glossary"))
        return entries

    def _glossary_entries(self):
        return sorted(self.glossary.items(), key=lambda kv: kv[0].lower())

    def to_markdown(self, base_dir=None, toc=True):
        """Render GitHub-flavoured Markdown.

        Parameters
        ----------
        base_dir : str, optional
            Folder the Markdown file will live in; figure links and path cells
            are made relative to it (default: the current directory).
        toc : bool
            Start with a linked table of contents of the level-2/3 headings.
        """
        base_dir = os.fspath(base_dir) if base_dir is not None else os.getcwd()
        anchors = self._anchors()
        terms = _Terms(self.glossary)
        out = [f"# {self.title}", ""]
        if self.run_id:
            out += [f"Run {literal(self.run_id, code=True)}", ""]
        if toc:
            entries = self._toc_entries(anchors)
            if entries:
                out += ["**Contents**", ""]
                out += [f"{'  ' * (lvl - 2)}- [{literal(_plain(text))}](#{a})" for lvl, text, a in entries]
                out.append("")
        for b in self.blocks:
            out.append(self._block_md(b, base_dir, terms))
            out.append("")
        if self.glossary:
            out += ["## Glossary", ""]
            out += [f"- **{t}**: {meaning}" for t, (meaning, _) in self._glossary_entries()]
        return "\n".join(out).rstrip("\n") + "\n"

    def _block_md(self, b, base_dir, terms=None):
        def text(s):
            return _inline_md_terms(s, terms, expand=True)

        if isinstance(b, Heading):
            return f"{'#' * b.level} {b.text}"
        if isinstance(b, Para):
            return text(b.text)
        if isinstance(b, Bullets):
            return "\n".join(_md_list(b.items, b.ordered, 0, text))
        if isinstance(b, Table):
            def cell(s):
                if isinstance(s, _PathCell):
                    s = display_path(s.abs, base_dir)
                return _md_cell(s)

            sep = {"l": "---", "r": "--:", "c": ":-:"}
            lines = []
            if b.caption:
                lines += [f"*{text(b.caption)}*", ""]
            lines.append("| " + " | ".join(cell(c) for c in b.columns) + " |")
            lines.append("|" + "|".join(sep[a] for a in b.align) + "|")
            lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in b.rows]
            return "\n".join(lines)
        if isinstance(b, Figure):
            p = b.path
            if "://" not in p:
                p = display_path(p, base_dir)
                p = urllib.parse.quote(p, safe="/")     # a file name is text, not link syntax
            alt = literal(_plain(b.caption) if b.caption else os.path.basename(b.path))
            line = f"![{alt}]({p})"
            return line + (f"\n\n*{text(b.caption)}*" if b.caption else "")
        if isinstance(b, Math):
            return f"$$\n{b.latex}\n$$"
        if isinstance(b, Code):
            fence = "```"
            while fence in b.text:
                fence += "`"
            return f"{fence}{b.lang}\n{b.text}\n{fence}"
        if isinstance(b, Banner):
            icon = {"warning": "⚠️", "error": "❌", "info": "ℹ️"}[b.kind]
            return "\n".join(f"> {'**' + icon + ' ' + text(ln) + '**' if ln.strip() else ''}"
                             for ln in b.text.split("\n"))
        if isinstance(b, Divider):
            return "---"
        raise TypeError(f"unknown block {b!r}")

    def to_html(self, toc=True, base_dir=None):
        """Render one self-contained HTML page (CSS inline, figures and math embedded).

        Layout: the title, then the first section (the summary) straight away;
        the table of contents is a sticky side column on wide screens (72rem and
        up) and a collapsed ``<details>`` block after the first section on
        narrower ones, never in front of the summary. Tables wider than the
        page are set in a smaller font, transposed (few rows) or split into
        pieces that repeat the key columns (see ``Report.table``), so no column
        is ever cut off, on screen or on paper. A print stylesheet makes the
        browser's *Print to PDF* a document to hand in (A4 or Letter: no
        scrollbars, no navigation, no page break inside a figure or table).
        The page runs no script and loads nothing: its ``CSP`` meta tag has the
        browser refuse any that a rendering bug might let in.

        Parameters
        ----------
        toc : bool
            Add a linked table of contents of the level-2/3 headings.
        base_dir : str, optional
            Folder the HTML file will live in: path cells of tables are shown
            relative to it (default: the current directory).
        """
        base_dir = os.fspath(base_dir) if base_dir is not None else os.getcwd()
        anchors = self._anchors()
        terms = _Terms(self.glossary)
        body = [self._block_html(b, a, terms, base_dir) for b, a in zip(self.blocks, anchors)]
        entries = self._toc_entries(anchors)
        if self.glossary:
            body.append(_glossary_html(self._glossary_entries()))
        side = inline = ""
        if toc and entries:
            items = _toc_items(entries)
            side = f'<nav class="toc toc-side" aria-label="Contents"><div class="toc-title">Contents</div>{items}</nav>\n'
            inline = (f'<details class="toc toc-inline"><summary>Contents</summary>'
                      f'<nav aria-label="Contents">{items}</nav></details>')
            # after the first section: the second level-2 heading (or the end)
            h2 = [i for i, b in enumerate(self.blocks) if isinstance(b, Heading) and b.level <= 2]
            at = h2[1] if len(h2) > 1 else len(self.blocks)
            body.insert(at, inline)
        title = html.escape(_fold(_plain(self.title)), quote=False)
        run = run_line = ""
        if self.run_id:
            rid = html.escape(self.run_id)
            run = f"<meta name=\"run-id\" content=\"{rid}\">\n"
            run_line = f"<p class=\"run-id\">Run <code>{rid}</code></p>\n"
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                + run + f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
                f"<div class=\"layout{' with-toc' if side else ''}\">\n" + side + "<main>\n"
                f"<h1 id=\"{slugify(self.title)}\">{_inline_html(self.title)}</h1>\n"
                + run_line + "\n".join(body) + "\n</main>\n</div>\n</body>\n</html>\n")

    def _block_html(self, b, anchor, terms=None, base_dir=None):
        def text(s):
            return _inline_html(s, terms, expand=True)

        if isinstance(b, Heading):
            return f'<h{b.level} id="{anchor}">{_inline_html(b.text, terms)}</h{b.level}>'
        if isinstance(b, Para):
            return f"<p>{text(b.text)}</p>"
        if isinstance(b, Bullets):
            return _html_list(b.items, b.ordered, text)
        if isinstance(b, Table):
            pieces = _table_pieces(b)
            body = "\n".join(_table_html(t, cls, terms, base_dir) for t, cls in pieces)
            # the pieces of one split table stay together on paper (unless they are long)
            long = " long" if len(b.rows) > LONG_TABLE_ROWS else ""
            return body if len(pieces) == 1 else f'<div class="table-group{long}">\n{body}\n</div>'

        if isinstance(b, Figure):
            cap = f"<figcaption>{text(b.caption)}</figcaption>" if b.caption else ""
            alt = html.escape(_plain(b.caption) if b.caption else os.path.basename(b.path), quote=True)
            try:
                with open(b.path, "rb") as fh:
                    data = fh.read()
            except OSError as e:
                return (f'<figure><p class="missing">figure not found: <code>{html.escape(b.path)}</code> '
                        f"({html.escape(e.strerror or str(e))})</p>{cap}</figure>")
            mime = _MIME.get(os.path.splitext(b.path)[1].lower(), "application/octet-stream")
            uri = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
            size = _drawn_width_in(data)      # printed at the size it was drawn, fonts as designed
            style = f' style="--drawn-width:{size:.2f}in"' if size else ""
            return f'<figure><img src="{uri}" alt="{alt}"{style}>{cap}</figure>'
        if isinstance(b, Math):
            return _html_display_math(b.latex)
        if isinstance(b, Code):
            cls = f' class="language-{html.escape(b.lang, quote=True)}"' if b.lang else ""
            return f"<pre><code{cls}>{html.escape(b.text, quote=False)}</code></pre>"
        if isinstance(b, Banner):
            body = "<br>".join(text(ln) for ln in b.text.split("\n"))
            return f'<div class="banner {b.kind}" role="note">{body}</div>'
        if isinstance(b, Divider):
            return "<hr>"
        raise TypeError(f"unknown block {b!r}")

    def write(self, md_path=None, html_path=None):
        """Write the Markdown and/or HTML rendering atomically; return the paths written."""
        written = []
        if md_path is not None:
            written.append(write_atomic(md_path, self.to_markdown(base_dir=os.path.dirname(
                os.path.abspath(md_path)))))
        if html_path is not None:
            written.append(write_atomic(html_path, self.to_html(base_dir=os.path.dirname(
                os.path.abspath(html_path)))))
        return written


# ------------------------------------------------------------- wide tables
# Widths are measured, not guessed: every cell's text in DejaVu Sans (the font
# matplotlib ships, and the widest of the common sans fonts a browser falls back
# to: its digits are 0.636 em against Liberation/Arial's 0.556 and Noto's 0.572),
# bold for headers, at the stylesheet's table font sizes and paddings. A table
# that fits in DejaVu Sans fits in any narrower font. The binding width is
# paper: A4 minus the print margins (Letter is wider).
ROOT_FONT_PX = 16                     # the stylesheet's 1rem on screen (print sets a smaller root)
# class -> (font size, side padding), in rem, on screen; print sets every size smaller
# (``PRINT_TABLE_PT``), so a table that fits here fits on paper
TABLE_STYLE = {"": (0.92, 0.6), "wide": (0.8, 0.4), "narrow": (0.72, 0.3)}
TABLE_BUDGET_PX = 0.97 * PRINT_WIDTH_IN * 96          # the printed column, less 3% for rounding and borders
LONG_TABLE_ROWS = 8   # printed, a longer table may break across pages (its header repeats)
assert all(PRINT_TABLE_PT[c] * 96 / 72 <= TABLE_STYLE[c][0] * ROOT_FONT_PX
           and PRINT_ROOT_PT * 96 / 72 <= ROOT_FONT_PX for c in TABLE_STYLE), "printed tables must not be wider"
HEAD_ROWS = 2          # printed, a long table's caption and header stay with its first rows (even: the stripes)
_WRAP_EM = 16.0        # a text cell with spaces wraps at about this width (28 characters)
_FONT_FILES = {False: "DejaVuSans.ttf", True: "DejaVuSans-Bold.ttf"}


@functools.lru_cache(maxsize=2)
def _font(bold):
    from matplotlib import ft2font
    return ft2font.FT2Font(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", _FONT_FILES[bold]))


@functools.lru_cache(maxsize=4096)
def _advance_em(ch, bold):
    """Advance width of one character in DejaVu Sans (bold or not), in em; 1 em if it has no glyph."""
    f = _font(bold)
    if f.get_char_index(ord(ch)) == 0:
        return 1.0
    from matplotlib import ft2font
    no_scale = ft2font.LoadFlags.NO_SCALE if hasattr(ft2font, "LoadFlags") else ft2font.LOAD_NO_SCALE
    return f.load_char(ord(ch), flags=no_scale).horiAdvance / f.units_per_EM


def text_em(text, bold=False):
    """Width of ``text`` on one line in DejaVu Sans, in em (multiply by the font size in px)."""
    return sum(_advance_em(ch, bold) for ch in str(text))


def _column_widths(table):
    """Width of each column's content in em of the table font (the widest unbreakable run).

    A header wraps after spaces, ``_`` and ``/`` (the HTML puts ``<wbr>`` there),
    a text cell with spaces wraps at about ``_WRAP_EM``, numbers never wrap.
    """
    widths = []
    for j, c in enumerate(table.columns):
        head = max((text_em(w, bold=True) for w in re.findall(r"[^\s_/]*[_/]?", str(c)) if w), default=0.0)
        cells = 0.0
        for r in table.rows:
            s = str(r[j])
            longest = max((text_em(w) for w in s.split()), default=0.0)
            cells = max(cells, min(text_em(s), max(longest, _WRAP_EM)))
        widths.append(max(head, cells, 0.5))
    return widths


def table_px(widths, cls=""):
    """Printed width in CSS px of columns of ``widths`` (em) in the style of class ``cls``."""
    size, pad = TABLE_STYLE[cls]
    return sum((w * size + 2 * pad) * ROOT_FONT_PX + 1 for w in widths) + 1    # + 1 px per border


def _transposed(t):
    """``t`` with rows and columns swapped (its one key column becomes the header row)."""
    columns = [t.columns[0]] + [str(r[0]) for r in t.rows]
    rows = [[t.columns[j]] + [r[j] for r in t.rows] for j in range(1, len(t.columns))]
    numeric = all(a == "r" for a in t.align[1:])
    return Table(columns, rows, t.caption, ["l"] + ["r" if numeric else "l"] * len(t.rows), 1)


def _fits(widths, cls):
    return table_px(widths, cls) <= TABLE_BUDGET_PX


def _first_fit(widths, classes):
    """The first class of ``classes`` in which columns of ``widths`` fit the page, else None."""
    return next((cls for cls in classes if _fits(widths, cls)), None)


def _column_groups(widths, key, cls):
    """The non-key columns in the fewest contiguous groups that each fit beside the key
    columns in class ``cls``, as even as possible: the smallest group as large as it can
    be (no column left alone in a piece when the others could take it), then the widest
    piece as narrow as it can be. A list of lists of column indices; None if one column
    alone does not fit."""
    cols = list(range(key, len(widths)))
    if not cols:
        return [[]]
    key_w = widths[:key]

    def px(i, j):                       # the piece holding cols[i:j]
        return table_px(key_w + [widths[c] for c in cols[i:j]], cls)

    if any(px(i, i + 1) > TABLE_BUDGET_PX for i in range(len(cols))):
        return None
    n = len(cols)
    best = {0: (-n, 0.0, [])}           # columns placed -> (-smallest group, widest piece, cuts)
    for _ in range(n):                  # one more group per round, until all columns are placed
        if n in best:
            break
        nxt = {}
        for i, (smallest, widest, cuts) in best.items():
            for j in range(i + 1, n + 1):
                w = px(i, j)
                if w > TABLE_BUDGET_PX:
                    break
                cand = (max(smallest, -(j - i)), max(widest, w), cuts + [j])
                if j not in nxt or cand[:2] < nxt[j][:2]:
                    nxt[j] = cand
        best = nxt
    starts = [0] + best[n][2][:-1]
    return [cols[i:j] for i, j in zip(starts, best[n][2])]


def _table_pieces(t):
    """[(table, css class)]: ``t`` itself when it fits the page, else transposed or split.

    Widths are measured (``table_px``) against ``TABLE_BUDGET_PX``:
    - fits in the body's table font: as is;
    - fits in the smaller font of wide tables: as is, in that font;
    - wider, with one key column and at most 8 rows: transposed when that fits;
    - fits in the smallest font (``narrow``): as is, in that font;
    - otherwise split into the fewest column groups that fit (``_column_groups``: even
      pieces, none with a lone column when that can be avoided), every piece starting
      with the key columns, captions numbered "part i of n"; ``to_html`` keeps the
      pieces of one table together on paper.
    """
    widths = _column_widths(t)
    cls = _first_fit(widths, ("", "wide"))
    if cls is not None:
        return [(t, cls)]
    key = min(t.key, len(t.columns))
    if key == 1 and 1 <= len(t.rows) <= 8 and len(t.columns) > len(t.rows) + 1:
        tt = _transposed(t)
        cls = _first_fit(_column_widths(tt), ("", "wide"))
        if cls is not None:
            return [(tt, cls)]
    if _fits(widths, "narrow"):
        return [(t, "narrow")]
    options = [(g, c) for c in ("wide", "narrow") for g in [_column_groups(widths, key, c)] if g is not None]
    if not options:                     # a column wider than the page on its own: as narrow as it gets
        groups, small = [[j] for j in range(key, len(t.columns))], "narrow"
    else:                               # the fewest pieces; the larger font when that is as few
        groups, small = min(options, key=lambda o: len(o[0]))
    # one font for every piece: the largest in which each of them fits
    cls = next((c for c in ("", "wide", small)
                if all(_fits([widths[j] for j in [*range(key), *g]], c) for g in groups)), small)
    pieces = []
    for i, g in enumerate(groups, 1):
        cols = list(range(key)) + g
        note = f"part {i} of {len(groups)}" + (", continued below" if i < len(groups) else "")
        # the pieces are shown together: the caption once, then a short continuation
        caption = (f"{t.caption} ({note})" if t.caption and i == 1 else
                   f"Continued ({note})" if t.caption else note[0].upper() + note[1:])
        piece = Table([t.columns[j] for j in cols], [[r[j] for j in cols] for r in t.rows],
                      caption, [t.align[j] for j in cols], key)
        pieces.append((piece, cls))
    return pieces


def _table_html(t, cls, terms, base_dir):
    def cell(s):
        if isinstance(s, _PathCell):
            s = display_path(s.abs, base_dir)
        return terms.html(str(s), False) if terms is not None else html.escape(str(s), quote=False)

    def head(s):  # literal headers may wrap after "_" and "/" (long snake_case names)
        return "<wbr>".join(cell(piece) for piece in re.split(r"(?<=[_/])(?=.)", str(s)))

    classes = " ".join(c for c in (cls, "long" if len(t.rows) > LONG_TABLE_ROWS else "") if c)
    parts = [f'<div class="table-wrap"><table{f" class={chr(34)}{classes}{chr(34)}" if classes else ""}>']
    if t.caption:
        parts.append(f"<caption>{_inline_html(t.caption, terms, expand=True)}</caption>")
    parts.append("<thead><tr>" + "".join(f'<th class="{a}">{head(c)}</th>'
                                         for c, a in zip(t.columns, t.align)) + "</tr></thead>")
    rows = ["<tr>" + "".join(f'<td class="{a}">{cell(c)}</td>' for c, a in zip(r, t.align)) + "</tr>"
            for r in t.rows]
    if len(t.rows) > LONG_TABLE_ROWS:   # printed, the caption and header never end a page alone
        parts += ['<tbody class="head-rows">', *rows[:HEAD_ROWS], "</tbody>"]
        rows = rows[HEAD_ROWS:]
    parts += ["<tbody>", *rows, "</tbody></table></div>"]
    return "\n".join(parts)


def _glossary_html(entries):
    items = "".join(f"<dt>{html.escape(t, quote=False)}</dt><dd>{_inline_html(meaning)}</dd>"
                    for t, (meaning, _) in entries)
    return f'<section class="glossary"><h2 id="glossary">Glossary</h2><dl>{items}</dl></section>'


def _md_list(items, ordered, depth, text=str):
    out, n = [], 0
    for it in items:
        if isinstance(it, (list, tuple)):
            out += _md_list(it, ordered, depth + 1, text)
        else:
            n += 1
            marker = f"{n}." if ordered else "-"
            out.append(f"{'   ' * depth}{marker} {text(str(it))}")
    return out


def _html_list(items, ordered, text=_inline_html):
    tag = "ol" if ordered else "ul"
    out = [f"<{tag}>"]
    open_li = False
    for it in items:
        if isinstance(it, (list, tuple)):
            if not open_li:
                out.append("<li>")
                open_li = True
            out.append(_html_list(it, ordered, text))
        else:
            if open_li:
                out.append("</li>")
            out.append(f"<li>{text(str(it))}")
            open_li = True
    if open_li:
        out.append("</li>")
    out.append(f"</{tag}>")
    return "".join(out)


def _toc_items(entries):
    """Nested ``<ul>`` of (level, text, anchor) entries, level 3 under the level 2 before it."""
    out = ["<ul>"]
    li_open = sub_open = False
    for level, text, a in entries:
        link = f'<a href="#{a}">{html.escape(_plain(text), quote=False)}</a>'
        if level == 3 and li_open:
            if not sub_open:
                out.append("<ul>")
                sub_open = True
            out.append(f"<li>{link}</li>")
            continue
        if sub_open:
            out.append("</ul>")
            sub_open = False
        if li_open:
            out.append("</li>")
        out.append(f"<li>{link}")
        li_open = True
    if sub_open:
        out.append("</ul>")
    if li_open:
        out.append("</li>")
    out.append("</ul>")
    return "".join(out)
