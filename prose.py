"""Formatters for the report's running text: numbers, counts, durations, names, sentences.

Each returns a plain string; ``report`` renders it (a name in backticks is code).
"""
import math

import report as rp


def verb_for(x, up, down, same="does not change"):
    """A verb from the sign of ``x``."""
    return up if x > 0 else down if x < 0 else same


def fmt(v, spec=".3f", na="–"):
    """A number for running text: ``report.format_number`` with ``spec``; ``na`` for None/NaN."""
    if v is None or (not isinstance(v, int) and v != v):
        return na
    return rp.format_number(v, spec)


def plural_text(n, word, plural=None):
    """``"1 seed"``, ``"3 seeds"`` (with thousands separators)."""
    return f"{rp.format_number(n)} {word if n == 1 else plural or word + 's'}"


def count_of(frac, n):
    """A fraction of ``n`` runs as the count a reader can check: ``"4 of 5"``."""
    return f"{int(round(frac * n))} of {n}"


def points_text(delta):
    """An accuracy difference in percentage points: ``"+3.2 points"``."""
    return f"{delta * 100:+.1f} points".replace("-", "−")


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def plain_number(v, sig=3):
    """``v`` with ``sig`` significant digits in plain notation: ``0.00252``, ``6,860``, and
    ``4.3 × 10⁻⁶`` only where a decimal would need more than four zeros."""
    if v is None or not math.isfinite(v):
        return fmt(v)
    if v != 0 and abs(v) < 1e-4:
        mantissa, exp = f"{v:.{sig - 1}e}".split("e")
        return f"{mantissa} × 10{str(int(exp)).translate(_SUPERSCRIPT)}"
    return rp.format_number(v, f".{sig}g")


def duration(seconds):
    """``"48 s"``, ``"2 min 5 s"``, ``"1 h 3 min"``."""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def as_sentence(text):
    """``text`` as a sentence: stripped, capitalised, ending with a full stop."""
    text = str(text).strip()
    if not text:
        return ""
    if text[0].islower():
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def names_text(items):
    """Names in code spans joined for a sentence: "`a`", "`a` and `b`", "`a`, `b` and `c`"."""
    items = [rp.literal(i, code=True) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
