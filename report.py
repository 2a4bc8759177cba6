"""The report: a small document model, two renderers and atomic file writes.

This module owns everything about *presenting* results; it computes nothing.

- ``Report(title)`` collects blocks in order: ``heading``, ``para``,
  ``bullets``, ``table``, ``figure``, ``math``, ``code``, ``banner``, ``rule``
  and ``markdown`` (a Markdown snippet such as ``docs/partC_derivation.md``,
  parsed into the same blocks).
- ``Report.to_markdown()`` renders GitHub-flavoured Markdown: figures are
  relative links, math stays ``$...$`` / ``$$...$$`` (GitHub renders it).
- ``Report.to_html()`` renders ONE self-contained HTML file: inline CSS, a table
  of contents, figures embedded as base64 data URIs, and math rendered to
  embedded SVG by matplotlib's mathtext (no LaTeX install, no network). The
  LaTeX source is kept as the image's alt/title text; what mathtext cannot
  parse falls back to a ``<code>`` block showing the source.
- ``write_atomic(path, data)`` and ``savefig_atomic(fig, path)`` write through a
  temporary file in the target folder and ``os.replace`` it, so an interrupted
  run never leaves a half-written file behind.

Inline Markdown understood in text (``para``, ``bullets``, headings, table
cells of Markdown snippets): ``**bold**``, ``*italic*``, `` `code` ``,
``$math$`` (pandoc's rule: no space inside the dollars and no digit right after
the closing one, so "$5 and $10" stays text), ``[text](url)`` and backslash
escapes. Everything else is text and is HTML-escaped; raw HTML is never passed
through. No third-party Markdown package is used.
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
from dataclasses import dataclass, field

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # never fight a backend chosen by the caller
    matplotlib.use("Agg")

__all__ = ["Report", "write_atomic", "savefig_atomic", "render_math_svg", "slugify"]


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
        Passed to ``fig.savefig``; defaults ``dpi=120``, and ``bbox_inches="tight"``
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
    savefig_kw.setdefault("dpi", 120)
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


# ------------------------------------------------------------------------ math
_MATH_RC = {"mathtext.fontset": "cm", "svg.hashsalt": "report", "svg.fonttype": "path"}


# LaTeX that mathtext lacks, rewritten to an equivalent it has (display-only changes).
_MATH_SUBS = [
    (re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
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


def _html_display_math(latex):
    rendered = [render_math_svg(line, 14.0) for line in _math_lines(latex)]
    if any(r is None for r in rendered):
        return ('<pre class="math-fallback" title="mathtext could not render this; LaTeX source shown">'
                f"<code>{html.escape(latex.strip())}</code></pre>")
    lines = [_svg_img(latex.strip(), *r, cls="math-display") for r in rendered]
    return '<div class="math">' + "<br>".join(lines) + "</div>"


# --------------------------------------------------------------- inline markup
_INLINE = re.compile(r"""
  (?P<esc>\\[\\`*_{}\[\]()#+\-.!$|<>~])
| (?P<ticks>`+)(?P<code>.+?)(?P=ticks)
| \$\$(?P<dmath>.+?)\$\$
| \$(?P<math>[^\s$](?:[^$]*?[^\s\\$])?)\$(?!\d)
| \*\*(?P<bold>\S(?:.*?\S)?)\*\*
| (?<!\w)__(?P<ubold>\S(?:.*?\S)?)__(?!\w)
| (?<![\w*])\*(?P<em>[^\s*](?:.*?[^\s*])?)\*(?![\w*])
| (?<!\w)_(?P<uem>[^\s_](?:.*?[^\s_])?)_(?!\w)
| \[(?P<ltext>[^\]\n]+)\]\((?P<lurl>[^)\s]+)\)
""", re.X | re.S)


def _inline_html(text):
    """Inline Markdown subset -> HTML; all plain text is escaped."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()], quote=False))
        pos = m.end()
        g = m.groupdict()
        if g["esc"] is not None:
            out.append(html.escape(g["esc"][1], quote=False))
        elif g["code"] is not None:
            out.append(f"<code>{html.escape(g['code'].strip(), quote=False)}</code>")
        elif g["dmath"] is not None:
            out.append(_html_inline_math(g["dmath"]))
        elif g["math"] is not None:
            out.append(_html_inline_math(g["math"]))
        elif g["bold"] is not None or g["ubold"] is not None:
            out.append(f"<strong>{_inline_html(g['bold'] if g['bold'] is not None else g['ubold'])}</strong>")
        elif g["em"] is not None or g["uem"] is not None:
            out.append(f"<em>{_inline_html(g['em'] if g['em'] is not None else g['uem'])}</em>")
        else:
            url = g["lurl"]
            if re.match(r"(?i)\s*(javascript|vbscript|data):", url):
                url = "#"
            out.append(f'<a href="{html.escape(url, quote=True)}">{_inline_html(g["ltext"])}</a>')
    out.append(html.escape(text[pos:], quote=False))
    return "".join(out)


def _plain(text):
    """Inline Markdown -> plain text (for slugs and the table of contents)."""
    def repl(m):
        g = m.groupdict()
        for k in ("esc", "code", "dmath", "math", "bold", "ubold", "em", "uem", "ltext"):
            if g[k] is not None:
                return g[k][1] if k == "esc" else (_plain(g[k]) if k in ("bold", "ubold", "em", "uem", "ltext") else g[k])
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


_MD_LITERAL = str.maketrans({"\\": "\\\\", "|": "\\|", "*": "\\*", "`": "\\`", "$": "\\$",
                             "<": "&lt;", ">": "&gt;", "\n": " "})


def _md_cell(text):
    """Literal text -> a Markdown table cell that GitHub shows verbatim."""
    return str(text).translate(_MD_LITERAL)


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
    align: list = None   # "l" / "r" / "c" per column
    markup: bool = False  # cells are inline Markdown (from a snippet) rather than literal text


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
class Quote:
    text: str


@dataclass
class Rule:
    pass


def _format_cell(v, floatfmt):
    if v is None:
        return ""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return str(bool(v))
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        v = float(v)
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return floatfmt(v) if callable(floatfmt) else format(v, floatfmt)
    try:  # pandas NA / NaT
        import pandas as pd
        if v is pd.NA or v is pd.NaT:
            return ""
    except ImportError:
        pass
    return str(v)


def _table_from(data, floatfmt, index):
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
    numeric = [all(isinstance(r[j], numbers.Number) and not isinstance(r[j], bool) or r[j] is None
                   for r in records) and any(isinstance(r[j], numbers.Number) for r in records)
               for j in range(len(columns))]
    rows = [[_format_cell(v, floatfmt) for v in r] for r in records]
    return columns, rows, numeric


# ------------------------------------------------------------ Markdown snippets
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+.#-]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_IMAGE = re.compile(r"^\s*!\[([^\]]*)\]\(([^)\s]+)\)\s*$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")


def _split_row(line):
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells = re.split(r"(?<!\\)\|", line)
    return [c.strip().replace("\\|", "|") for c in cells]


def parse_markdown(text, level_offset=0, base_dir=None):
    """Parse the Markdown subset this project writes into report blocks.

    Supported: ATX headings (``#``), paragraphs, ``-``/``*``/``1.`` lists (nested
    by indentation), fenced code, ``$$ ... $$`` display math (on one line or
    spanning lines), pipe tables, block quotes, horizontal rules and images on
    their own line. Anything else is kept as paragraph text.

    Parameters
    ----------
    text : str
        The Markdown source.
    level_offset : int
        Added to every heading level (e.g. 1 to nest a document under a ``##`` section).
    base_dir : str, optional
        Folder that relative image paths are relative to.

    Returns
    -------
    list of blocks
    """
    lines = text.replace("\r\n", "\n").replace("\t", "    ").split("\n")
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
            continue
        m = _FENCE.match(line)
        if m:
            flush()
            fence, lang, body = m.group(2), m.group(3), []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i])
                i += 1
            i += 1  # closing fence (or end of text)
            if lang.lower() == "math":
                blocks.append(Math("\n".join(body)))
            else:
                blocks.append(Code("\n".join(body), lang))
            continue
        if stripped.startswith("$$") or stripped.startswith("\\["):
            flush()
            close = "$$" if stripped.startswith("$$") else "\\]"
            rest = stripped[2:]
            if close in rest:
                body, after = rest.split(close, 1)
                blocks.append(Math(body.strip()))
                if after.strip():
                    para.append(after)
                i += 1
                continue
            body = [rest] if rest.strip() else []
            i += 1
            while i < len(lines) and close not in lines[i]:
                body.append(lines[i])
                i += 1
            if i < len(lines):
                before = lines[i].split(close, 1)[0]
                if before.strip():
                    body.append(before)
            i += 1
            blocks.append(Math("\n".join(body).strip()))
            continue
        m = _HEADING.match(line)
        if m:
            flush()
            level = min(6, max(1, len(m.group(1)) + level_offset))
            blocks.append(Heading(m.group(2), level))
            i += 1
            continue
        if _RULE.match(line) and not para:
            blocks.append(Rule())
            i += 1
            continue
        m = _IMAGE.match(line)
        if m:
            flush()
            path = m.group(2)
            if base_dir and not os.path.isabs(path) and "://" not in path:
                path = os.path.join(base_dir, path)
            blocks.append(Figure(path, m.group(1) or None))
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]):
            flush()
            columns = _split_row(line)
            align = []
            for spec in _split_row(lines[i + 1]):
                left, right = spec.startswith(":"), spec.endswith(":")
                align.append("c" if left and right else "r" if right else "l")
            rows = []
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                cells = _split_row(lines[i])
                cells = (cells + [""] * len(columns))[:len(columns)]
                rows.append(cells)
                i += 1
            blocks.append(Table(columns, rows, None, (align + ["l"] * len(columns))[:len(columns)], markup=True))
            continue
        if stripped.startswith(">"):
            flush()
            body = []
            while i < len(lines) and lines[i].strip().startswith(">"):
                body.append(lines[i].strip()[1:].strip())
                i += 1
            blocks.append(Quote(" ".join(body)))
            continue
        m = _LIST.match(line)
        if m and (not para or not m.group(1)):
            flush()
            items, i = _parse_list(lines, i)
            blocks.append(Bullets(items, ordered=m.group(2)[0].isdigit()))
            continue
        para.append(line)
        i += 1
    flush()
    return blocks


def _parse_list(lines, i):
    """Parse a (possibly nested) list starting at ``lines[i]``; return (items, next i)."""
    first = _LIST.match(lines[i])
    indent = len(first.group(1))
    items = []
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            # a blank line ends the list unless the next line continues it
            j = i + 1
            if j < len(lines) and lines[j].strip() and (len(lines[j]) - len(lines[j].lstrip())) >= indent \
                    and (_LIST.match(lines[j]) or (len(lines[j]) - len(lines[j].lstrip())) > indent):
                i = j
                continue
            break
        m = _LIST.match(line)
        cur = len(line) - len(line.lstrip())
        if m and cur == indent:
            items.append(m.group(3).strip())
            i += 1
        elif m and cur > indent and items:
            sub, i = _parse_list(lines, i)
            items.append(sub)
        elif m and cur < indent:
            break
        elif cur > indent and items and isinstance(items[-1], str):
            items[-1] += " " + line.strip()  # continuation line
            i += 1
        else:
            break
    return items, i


# ----------------------------------------------------------------------- Report
_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg-soft:#f6f8fa; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin:0; color:var(--fg); background:#fff;
       font:16px/1.6 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 52rem; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
h1 { font-size: 2rem; border-bottom: 1px solid var(--line); padding-bottom: .3rem; }
h2 { font-size: 1.5rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; margin-top: 2.5rem; }
h3 { font-size: 1.2rem; margin-top: 1.8rem; } h4, h5, h6 { font-size: 1rem; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
code { font: .88em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: var(--bg-soft); padding: .1em .3em; border-radius: 4px; }
pre { background: var(--bg-soft); padding: .9rem 1rem; border-radius: 6px; overflow-x: auto; }
pre code { background: none; padding: 0; }
nav.toc { background: var(--bg-soft); border: 1px solid var(--line); border-radius: 6px;
          padding: .6rem 1.2rem; margin: 1rem 0 2rem; font-size: .95rem; }
nav.toc ul { margin: .2rem 0; padding-left: 1.2rem; } nav.toc > ul { padding-left: .6rem; }
nav.toc .toc-title { font-weight: 600; }
.table-wrap { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: .92rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: .3rem .65rem; }
th { background: var(--bg-soft); font-weight: 600; }
tbody tr:nth-child(even) { background: #fbfcfd; }
td.r, th.r { text-align: right; } td.c, th.c { text-align: center; } td.l, th.l { text-align: left; }
caption { caption-side: top; text-align: left; color: var(--muted); font-size: .9rem; padding-bottom: .3rem; }
figure { margin: 1.5rem 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: .9rem; margin-top: .4rem; }
.math { text-align: center; margin: 1rem 0; overflow-x: auto; line-height: 2.2; }
img.math-inline { display: inline; }
.math-fallback { color: #8250df; }
.banner { border: 2px solid #bf8700; background: #fff8c5; border-radius: 6px;
          padding: .7rem 1rem; margin: 1rem 0; font-weight: 600; }
.banner.error { border-color: #cf222e; background: #ffebe9; }
.banner.info { border-color: #0969da; background: #ddf4ff; }
blockquote { margin: 1rem 0; padding: 0 1rem; color: var(--muted); border-left: .25em solid var(--line); }
.missing { color: #cf222e; }
hr { border: 0; border-top: 1px solid var(--line); margin: 2rem 0; }
"""

_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
         ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}


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
    docstring.
    """

    def __init__(self, title, run_id=None):
        self.title = str(title)
        self.run_id = None if run_id is None else str(run_id)
        self.blocks = []

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
        """Add a paragraph of inline Markdown (``**bold**``, `` `code` ``, ``$math$``)."""
        return self._add(Para(str(text)))

    def bullets(self, items, ordered=False):
        """Add a list; an item that is itself a list becomes a sub-list of the item before it."""
        items = list(items)
        if not items:
            raise ValueError("bullets: items is empty; pass at least one item")
        return self._add(Bullets(items, ordered))

    def table(self, data, caption=None, floatfmt=".4g", index=None):
        """Add a table.

        Parameters
        ----------
        data : pandas.DataFrame or Series, dict of columns, or list of dicts
            The cells; they are shown literally (no Markdown interpretation).
        caption : str, optional
            Shown above the table.
        floatfmt : str or callable
            Format spec for real numbers (``".4g"``, ``".3f"``, ``".1%"``) or
            a function ``float -> str``. Integers are never formatted as floats;
            NaN/None show as empty cells.
        index : bool, optional
            Show a DataFrame's index as the first column; default: only when
            it is not a plain ``RangeIndex``.
        """
        columns, rows, numeric = _table_from(data, floatfmt, index)
        align = ["r" if n else "l" for n in numeric]
        return self._add(Table(columns, rows, caption, align))

    def figure(self, path, caption=None):
        """Add an image file (PNG/SVG/JPEG) with an optional caption.

        The file is read when rendering: linked in Markdown, embedded in HTML.
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

    def rule(self):
        """Add a horizontal rule."""
        return self._add(Rule())

    def markdown(self, text, level_offset=0, base_dir=None):
        """Add a Markdown snippet (see ``parse_markdown`` for the supported subset).

        Parameters
        ----------
        text : str
            Markdown source, e.g. ``Path("docs/partC_derivation.md").read_text()``.
        level_offset : int
            Added to the snippet's heading levels so it nests under the current section.
        base_dir : str, optional
            Folder that relative image paths in the snippet are relative to.
        """
        self.blocks.extend(parse_markdown(str(text), level_offset, base_dir))
        return self

    def extend(self, other):
        """Append the blocks of another ``Report`` (its title is not added)."""
        self.blocks.extend(other.blocks)
        return self

    # -- rendering --------------------------------------------------------------
    def _anchors(self):
        seen = {slugify(self.title): 1}
        return [slugify(b.text, seen) if isinstance(b, Heading) else None for b in self.blocks]

    def to_markdown(self, base_dir=None, toc=True):
        """Render GitHub-flavoured Markdown.

        Parameters
        ----------
        base_dir : str, optional
            Folder the Markdown file will live in; figure links are made
            relative to it (default: the current directory).
        toc : bool
            Start with a linked table of contents of the level-2/3 headings.
        """
        base_dir = os.fspath(base_dir) if base_dir is not None else os.getcwd()
        anchors = self._anchors()
        out = [f"# {self.title}", ""]
        if self.run_id:
            out += [f"Run `{self.run_id}`", ""]
        if toc:
            entries = [(b, a) for b, a in zip(self.blocks, anchors)
                       if isinstance(b, Heading) and b.level in (2, 3)]
            if entries:
                out += ["**Contents**", ""]
                out += [f"{'  ' * (b.level - 2)}- [{_plain(b.text)}](#{a})" for b, a in entries]
                out.append("")
        for b in self.blocks:
            out.append(self._block_md(b, base_dir))
            out.append("")
        return "\n".join(out).rstrip("\n") + "\n"

    def _block_md(self, b, base_dir):
        if isinstance(b, Heading):
            return f"{'#' * b.level} {b.text}"
        if isinstance(b, Para):
            return b.text
        if isinstance(b, Bullets):
            return "\n".join(_md_list(b.items, b.ordered, 0))
        if isinstance(b, Table):
            cell = (lambda s: str(s).replace("\n", " ")) if b.markup else _md_cell
            sep = {"l": "---", "r": "--:", "c": ":-:"}
            align = b.align or ["l"] * len(b.columns)
            lines = []
            if b.caption:
                lines += [f"*{b.caption}*", ""]
            lines.append("| " + " | ".join(cell(c) for c in b.columns) + " |")
            lines.append("|" + "|".join(sep[a] for a in align) + "|")
            lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in b.rows]
            return "\n".join(lines)
        if isinstance(b, Figure):
            p = b.path
            if "://" not in p:
                p = os.path.relpath(os.path.abspath(p), os.path.abspath(base_dir)).replace(os.sep, "/")
            alt = (b.caption or os.path.basename(b.path)).replace("]", "\\]").replace("\n", " ")
            line = f"![{alt}]({p.replace(' ', '%20')})"
            return line + (f"\n\n*{b.caption}*" if b.caption else "")
        if isinstance(b, Math):
            return f"$$\n{b.latex}\n$$"
        if isinstance(b, Code):
            fence = "```"
            while fence in b.text:
                fence += "`"
            return f"{fence}{b.lang}\n{b.text}\n{fence}"
        if isinstance(b, Banner):
            icon = {"warning": "⚠️", "error": "❌", "info": "ℹ️"}[b.kind]
            return "\n".join(f"> {'**' + icon + ' ' + ln + '**' if ln.strip() else ''}"
                             for ln in b.text.split("\n"))
        if isinstance(b, Quote):
            return f"> {b.text}"
        if isinstance(b, Rule):
            return "---"
        raise TypeError(f"unknown block {b!r}")

    def to_html(self, toc=True):
        """Render one self-contained HTML page (CSS inline, figures and math embedded).

        Parameters
        ----------
        toc : bool
            Add a linked table of contents of the level-2/3 headings.
        """
        anchors = self._anchors()
        body = []
        for b, a in zip(self.blocks, anchors):
            body.append(self._block_html(b, a))
        nav = ""
        if toc:
            nav = _toc_html([(b, a) for b, a in zip(self.blocks, anchors)
                             if isinstance(b, Heading) and b.level in (2, 3)])
        title = html.escape(self.title, quote=False)
        run = ""
        if self.run_id:
            rid = html.escape(self.run_id)
            run = f"<meta name=\"run-id\" content=\"{rid}\">\n"
            nav = f"<p class=\"run-id\">Run <code>{rid}</code></p>\n" + nav
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                + run + f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
                f"<h1 id=\"{slugify(self.title)}\">{_inline_html(self.title)}</h1>\n"
                + nav + "\n".join(body) + "\n</main>\n</body>\n</html>\n")

    def _block_html(self, b, anchor):
        if isinstance(b, Heading):
            return f'<h{b.level} id="{anchor}">{_inline_html(b.text)}</h{b.level}>'
        if isinstance(b, Para):
            return f"<p>{_inline_html(b.text)}</p>"
        if isinstance(b, Bullets):
            return _html_list(b.items, b.ordered)
        if isinstance(b, Table):
            cell = _inline_html if b.markup else (lambda s: html.escape(str(s), quote=False))
            align = b.align or ["l"] * len(b.columns)
            parts = ['<div class="table-wrap"><table>']
            if b.caption:
                parts.append(f"<caption>{_inline_html(b.caption)}</caption>")
            parts.append("<thead><tr>" + "".join(f'<th class="{a}">{cell(c)}</th>'
                                                 for c, a in zip(b.columns, align)) + "</tr></thead>")
            parts.append("<tbody>")
            for r in b.rows:
                parts.append("<tr>" + "".join(f'<td class="{a}">{cell(c)}</td>' for c, a in zip(r, align)) + "</tr>")
            parts.append("</tbody></table></div>")
            return "\n".join(parts)
        if isinstance(b, Figure):
            cap = f"<figcaption>{_inline_html(b.caption)}</figcaption>" if b.caption else ""
            alt = html.escape(b.caption or os.path.basename(b.path), quote=True)
            try:
                with open(b.path, "rb") as fh:
                    data = fh.read()
            except OSError as e:
                return (f'<figure><p class="missing">figure not found: <code>{html.escape(b.path)}</code> '
                        f"({html.escape(e.strerror or str(e))})</p>{cap}</figure>")
            mime = _MIME.get(os.path.splitext(b.path)[1].lower(), "application/octet-stream")
            uri = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
            return f'<figure><img src="{uri}" alt="{alt}">{cap}</figure>'
        if isinstance(b, Math):
            return _html_display_math(b.latex)
        if isinstance(b, Code):
            cls = f' class="language-{html.escape(b.lang, quote=True)}"' if b.lang else ""
            return f"<pre><code{cls}>{html.escape(b.text, quote=False)}</code></pre>"
        if isinstance(b, Banner):
            text = "<br>".join(_inline_html(ln) for ln in b.text.split("\n"))
            return f'<div class="banner {b.kind}" role="note">{text}</div>'
        if isinstance(b, Quote):
            return f"<blockquote><p>{_inline_html(b.text)}</p></blockquote>"
        if isinstance(b, Rule):
            return "<hr>"
        raise TypeError(f"unknown block {b!r}")

    def write(self, md_path=None, html_path=None):
        """Write the Markdown and/or HTML rendering atomically; return the paths written."""
        written = []
        if md_path is not None:
            written.append(write_atomic(md_path, self.to_markdown(base_dir=os.path.dirname(
                os.path.abspath(md_path)))))
        if html_path is not None:
            written.append(write_atomic(html_path, self.to_html()))
        return written


def _md_list(items, ordered, depth):
    out, n = [], 0
    for it in items:
        if isinstance(it, (list, tuple)):
            out += _md_list(it, ordered, depth + 1)
        else:
            n += 1
            marker = f"{n}." if ordered else "-"
            out.append(f"{'   ' * depth}{marker} {it}")
    return out


def _html_list(items, ordered):
    tag = "ol" if ordered else "ul"
    out = [f"<{tag}>"]
    open_li = False
    for it in items:
        if isinstance(it, (list, tuple)):
            if not open_li:
                out.append("<li>")
                open_li = True
            out.append(_html_list(it, ordered))
        else:
            if open_li:
                out.append("</li>")
            out.append(f"<li>{_inline_html(str(it))}")
            open_li = True
    if open_li:
        out.append("</li>")
    out.append(f"</{tag}>")
    return "".join(out)


def _toc_html(entries):
    if not entries:
        return ""
    out = ['<nav class="toc"><div class="toc-title">Contents</div><ul>']
    li_open = sub_open = False
    for b, a in entries:
        link = f'<a href="#{a}">{html.escape(_plain(b.text), quote=False)}</a>'
        if b.level == 3 and li_open:
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
    out.append("</ul></nav>\n")
    return "".join(out)
