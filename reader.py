"""Reading one data file as written: CSV/TSV (compressed or zipped) or Parquet.

``read_file`` keeps the data as written: only the empty field is missing (unless
``na_values`` names markers), numbers are parsed chunk by chunk into float64/int64
arrays by pandas' C engine, text stays the file's text, labels are parsed exactly,
and what it interpreted becomes a note. Its memory is planned before any work
against ``available_memory()`` (the stated decompressed size, then a limit while
decompressing); running out of memory is a ``DataError`` with a hint; ``progress``
reports long reads. ``prep`` builds the dataset (finding, validating, screening,
encoding) on top of it.
"""
from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import glob
import gzip
import importlib
import io
import lzma
import os
import re
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MAX_LISTED = 5  # rows/lines named in one error message
# File names looked for in a folder: <stem><suffix>, the first suffix that exists wins.
# pandas reads the compressed ones by extension; the pre-check below opens them the same way.
DATA_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".zip", ".tsv", ".tsv.gz",
                 ".txt", ".parquet")
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
PARQUET_ENGINES = ("pyarrow", "fastparquet")   # optional: pandas reads Parquet with either


# pandas holds text in its str dtype, in Arrow buffers when pyarrow is installed (it is, for
# Parquet: requirements-cluster.txt). The reader and the validation work on Python str (the
# memory plan counts them: STR_OVERHEAD), and every step between them would copy the text
# from Arrow into Python str and back; so the str dtype keeps Python str, as without pyarrow
# (unless the storage was chosen already).
if pd.get_option("mode.string_storage") == "auto":
    pd.set_option("mode.string_storage", "python")


class DataError(ValueError):
    """A problem with the user's data; the message is one line with a fix."""


def _listing(items, limit=MAX_LISTED):
    """'a, b, c and 4 more' for at most ``limit`` items."""
    items = [str(i) for i in items]
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


# -- reading one file --------------------------------------------------------
# The reader keeps the data as written: only the empty field is missing (plus the
# markers the caller names, ``na_values``), numbers are parsed once by pandas' C
# engine into float64/int64 arrays (no Python string per numeric cell), text
# columns stay the exact text, and the label column is always read as text so
# that its values can be parsed exactly (integers stay integers).
SNIFF_BYTES = 1 << 20     # decompressed bytes read to check the encoding and find the delimiter
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}   # tried in this order
CHUNK_BYTES = 16 << 20    # text parsed at a time: the Python strings alive at once are one chunk's
PROGRESS_SECONDS = 5.0    # while reading, a progress line at most this often
READ_SHARE = 0.8          # share of the available memory that reading one file may plan to use
READ_COPIES = 3           # copies of the read columns alive at once (chunks, joined, validated)
STR_OVERHEAD = 49         # bytes of a Python str object besides its characters (CPython, ASCII)
ZIP_JUNK = ("__MACOSX/", ".DS_Store", "._")   # zip entries that are no data (macOS metadata)


def _compression(path):
    return _COMPRESSION.get(Path(path).suffix.lower())


def _is_text_file(name):
    """True for a name the CSV reader opens (its errors count lines, header = line 1)."""
    low = re.sub(r" \([^)]*\)$", "", str(name))       # "<file> (train part)"
    if is_pattern(low):             # the parts of a glob: rows count from 0 across them
        return False
    low = low.lower()
    return any(low.endswith(s) for s in DATA_SUFFIXES if s != ".parquet")


def _gb(n_bytes):
    return f"{n_bytes / 2**30:.1f} GB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MB"


def _proc_kib(path, key):
    """The value (in bytes) of a ``key: N kB`` line of a /proc file, or None."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room():
    """Bytes the cgroup (v2) of this process may still use, or None when it has no limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def available_memory():
    """Bytes this process can still allocate, or None when the platform does not say.

    The least of: ``MemAvailable`` of /proc/meminfo, the room left under the
    cgroup's ``memory.max`` and under the address-space limit (``ulimit -v``,
    ``RLIMIT_AS``) given what the process has mapped already.
    """
    room = [_proc_kib("/proc/meminfo", "MemAvailable"), _cgroup_room()]
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            room.append(soft - (_proc_kib("/proc/self/status", "VmSize") or 0))
    except (ImportError, OSError, ValueError):
        pass
    room = [r for r in room if r is not None]
    return max(0, min(room)) if room else None


def _zip_member(zf, path):
    """The one data file of a zip (folders and macOS metadata entries ignored), or a DataError."""
    members = [i for i in zf.infolist() if not i.is_dir()
               and not any(i.filename.startswith(j) or Path(i.filename).name.startswith(j)
                           for j in ZIP_JUNK)]
    if len(members) != 1:
        raise DataError(f"{path} holds {len(members)} files"
                        + (f" ({_listing([m.filename for m in members])})" if members else
                           f" besides folders ({_listing(zf.namelist())})")
                        + "; a .zip must hold exactly one CSV: unpack it and pass --train/--test "
                          "with the files to use")
    return members[0]


def _gzip_declared(fh, size):
    """The uncompressed size a gzip file's trailer states (modulo 2**32, so a lower bound), or None."""
    if size < 18:
        return None
    fh.seek(size - 4)
    declared = int.from_bytes(fh.read(4), "little")
    fh.seek(0)
    return declared


class _Meter(io.RawIOBase):
    """A binary stream that counts the (decompressed) bytes passing through it and stops
    with ``_TooLarge`` past ``limit``; ``disk.tell()`` is the position in the file on disk."""

    def __init__(self, stream, disk, limit=None):
        super().__init__()
        self._stream, self.disk, self.limit, self.n_bytes = stream, disk, limit, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self._stream.readinto(buffer)
        self.n_bytes += n or 0
        if self.limit is not None and self.n_bytes > self.limit:
            raise _TooLarge(self.n_bytes)
        return n


class _TooLarge(Exception):
    """Raised inside the reader when the decompressed text passes the memory-derived limit."""


@contextlib.contextmanager
def _open_data(path, limit=None):
    """The decompressed bytes of ``path`` as a ``_Meter`` stream, and the decompressed size
    the file states up front (plain: its size; gzip: its trailer; zip: its directory; a
    lower bound, None for bz2/xz). Unreadable archives are a DataError."""
    comp = _compression(path)
    size = Path(path).stat().st_size
    with contextlib.ExitStack() as stack:
        try:
            disk = stack.enter_context(open(path, "rb"))
            if comp == "zip":
                zf = stack.enter_context(zipfile.ZipFile(disk))
                member = _zip_member(zf, path)
                stream, declared = stack.enter_context(zf.open(member)), member.file_size
            elif comp == "gzip":
                declared = _gzip_declared(disk, size)
                stream = stack.enter_context(gzip.GzipFile(fileobj=disk, mode="rb"))
            elif comp in ("bz2", "xz"):
                declared = None
                stream = stack.enter_context((bz2.BZ2File if comp == "bz2" else lzma.LZMAFile)(disk))
            else:
                stream, declared = disk, size
        except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
            raise DataError(f"{path} cannot be read as a {comp or 'plain'} file ({exc}); "
                            "check the file or its extension") from None
        yield _Meter(stream, disk, limit), declared


def _sample_text(path):
    """The first ``SNIFF_BYTES`` of the (decompressed) file as text, or a DataError."""
    comp = _compression(path)
    with _open_data(path) as (stream, _):
        try:
            raw = stream.read(SNIFF_BYTES)
        except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
            raise DataError(f"{path} cannot be read as a {comp or 'plain'} file ({exc}); "
                            "check the file or its extension") from None
    try:
        return codecs.getincrementaldecoder("utf-8-sig")().decode(raw, final=len(raw) < SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV") from None


@contextlib.contextmanager
def _long_fields():
    """Python's csv module refuses fields over 128 KiB by default; the sample may hold longer ones."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, 4 * SNIFF_BYTES))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _detect_sep(text, path):
    """The delimiter of a CSV sample: the one of ``SEPARATORS`` that splits every line of
    the sample into the same number (> 1) of fields, the most fields winning (ties: the
    order of ``SEPARATORS``); else the one giving the header most fields (the reader then
    names the bad line). One field with every delimiter is a DataError naming ``--sep``."""
    truncated = len(text.encode("utf-8")) >= SNIFF_BYTES
    scores = {}
    for sep in SEPARATORS:
        with _long_fields():            # field counts only: the sample's rows are not kept
            lengths = [len(r) for r in csv.reader(io.StringIO(text), delimiter=sep) if r]
        if truncated and len(lengths) > 1:
            lengths = lengths[:-1]             # the last line of a cut sample is partial
        counts = set(lengths)
        scores[sep] = (len(counts) == 1 and min(counts) > 1, lengths[0] if lengths else 0)
    consistent = [s for s in SEPARATORS if scores[s][0]]
    if consistent:
        return max(consistent, key=lambda s: scores[s][1])
    best = max(SEPARATORS, key=lambda s: scores[s][1])
    if scores[best][1] > 1:
        return best
    header = text.splitlines()[0] if text.strip() else ""
    raise DataError(f"{path}: every line is a single column with each of the delimiters "
                    f"{', '.join(SEPARATORS.values())} (header {header[:60]!r}); pass --sep with "
                    "the file's delimiter (e.g. --sep ';')")


def _parquet_engine():
    """The first importable engine of ``PARQUET_ENGINES``, or None."""
    for name in PARQUET_ENGINES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return name
    return None


def _check_header(header, path):
    header = [str(h).strip() for h in header]
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        where = "; ".join(f"{d!r} in columns {_listing([i + 1 for i, h in enumerate(header) if h == d])}"
                          for d in dups)
        raise DataError(f"{path}: duplicate column names ({where}); rename or delete the duplicates")
    return header


@dataclass(frozen=True)
class RawTable:
    """One data file as read (``read_file``), before validation.

    Attributes
    ----------
    frame : DataFrame of shape (n_rows, n_columns)
        Columns in file order, names stripped, RangeIndex (row i is CSV line
        i + 2). A column is int64 or float64 when every value is a number (or
        missing), else object of str as written; NaN marks a missing cell.
    notes : tuple of str
        One line per interpretation the reader made (cells read as missing
        because of ``na_values``).
    skipped : tuple of str
        Columns of the file left out on request (``skip_columns``).
    parts : tuple of (str, int)
        For a glob pattern: each file read and its rows, in the order joined
        (empty for one file).
    """
    frame: pd.DataFrame
    notes: tuple = ()
    skipped: tuple = ()
    parts: tuple = ()


def _markers(na_values):
    """The extra missing-value markers as a tuple of str (the empty field is always missing)."""
    if na_values is None:
        return ()
    if isinstance(na_values, str) or not np.iterable(na_values):
        raise ValueError(f"na_values={na_values!r} must be a list of strings, e.g. ['NA', '-999']")
    return tuple(dict.fromkeys(str(v) for v in na_values if str(v) != ""))


def _marker_numbers(markers):
    """The markers that are numbers (``-999``): numeric cells equal to one are missing too."""
    out = []
    for m in markers:
        try:
            out.append(float(m))
        except ValueError:
            continue
    return np.array([v for v in out if np.isfinite(v)], dtype=np.float64)


def _apply_markers(values, markers, numbers):
    """``values`` (one column of a chunk) with the marker cells set to NaN, and how many there were."""
    if values.dtype == object:
        hit = pd.Series(values).isin(markers).to_numpy() if markers else np.zeros(len(values), bool)
    elif len(numbers):
        hit = np.isin(values, numbers)
    else:
        return values, 0
    n = int(hit.sum())
    if n:
        values = values.astype(np.float64) if values.dtype != object else values.copy()
        values[hit] = np.nan
    return values, n


def _as_column(values, markers, numbers, as_text):
    """One column of a chunk, markers removed: (values, n_markers, kind).

    kind is "number" (int64/float64), "text" (object of str, NaN for missing) or
    "reread" (cells pandas typed as True/False: the text is read again). A chunk of
    a column read with type inference that holds text becomes numbers when every
    present value but the markers parses as one.
    """
    kind = values.dtype.kind
    if kind in "iuf":
        values, n = _apply_markers(values.astype(np.float64) if kind == "u" else values, (), numbers)
        return values, n, "number"
    if kind == "b":
        return values, 0, "reread"
    values = np.asarray(values, dtype=object)
    values, n = _apply_markers(values, markers, ())
    if as_text:
        return values, n, "text"
    present = ~pd.isna(values)
    if present.any() and not isinstance(values[present][0], str):
        return values, n, "reread"                      # True/False with missing cells
    num = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy()
    if np.count_nonzero(pd.isna(num)) == np.count_nonzero(~present):
        num, m = _apply_markers(num, (), numbers)
        return num, n + m, "number"
    return values, n, "text"


def _row_cost(profile):
    """Estimated bytes per row at the peak of reading and validating: ``READ_COPIES`` arrays
    of 8 bytes per cell, plus, once, the string of a text cell whose value is new (the
    share of distinct values in the sample)."""
    return sum(READ_COPIES * 8.0 + (0.0 if p is None else p[0] * (STR_OVERHEAD + p[1]))
               for p in profile)


def _sample_profile(text, sep, names, truncated):
    """(rows, bytes, profile) of the sample: per column None for numbers, else (share of
    distinct values, mean length) of its text; None when the sample does not parse."""
    if truncated:
        text = text[:text.rfind("\n") + 1] or text
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = pd.read_csv(io.StringIO(text), sep=sep, header=0, names=names, index_col=False,
                             keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError):
        return None
    profile = []
    for c in names:
        col = df[c]
        if col.dtype.kind in "iuf":
            profile.append(None)
        else:
            present = col.dropna().astype(str)
            share = present.nunique() / max(len(present), 1)
            profile.append((share, float(present.str.len().mean()) if len(present) else 0.0))
    return len(df), len(text.encode("utf-8")), profile


def _per_byte(sample):
    """Bytes of memory one byte of CSV text costs to read, from ``_sample_profile``'s
    (rows, bytes, profile) of the kept columns (no profile: a numeric cell per 2 bytes)."""
    if sample is None or sample[0] == 0:
        return READ_COPIES * 8.0 / 2.0
    rows, nbytes, profile = sample
    return _row_cost(profile) / (nbytes / rows)


def _memory_plan(path, declared, sample, available):
    """(limit, per_byte): the decompressed text reading ``path`` may reach and the memory one
    byte of it costs; a DataError before any work when the stated size is over the limit.

    ``sample`` is ``_sample_profile``'s (rows, bytes, profile) for the columns kept.
    Reading needs about rows x ``_row_cost`` bytes, rows = text bytes / bytes per
    sample row; more than ``READ_SHARE`` of the ``available`` memory is refused.
    (None, None) when the available memory is not known.
    """
    if available is None:
        return None, None
    per_byte = _per_byte(sample)
    limit = int(READ_SHARE * available / per_byte)
    if declared is not None and declared > limit:
        raise DataError(_too_large(path, declared, per_byte, available, stated=True))
    return limit, per_byte


def _too_large(path, text_bytes, per_byte, available, stated):
    packed = " once decompressed" if _compression(path) else ""
    what = (f"{path} holds {_gb(text_bytes)} of text{packed}" if stated else
            f"{path} holds more than {_gb(text_bytes)} of text{packed} (reading stopped there)")
    return (f"{what}, which needs about {_gb(text_bytes * per_byte)} of memory to read, but "
            f"{_gb(available)} is available; free memory, read a sample of the rows, or pass "
            "--drop with the columns you can spare")


def _out_of_memory(path, rows):
    return (f"{path}: ran out of memory while reading it ({rows:,} rows read); free memory, read "
            f"a sample of the rows, or pass --drop with the columns you can spare")


@contextlib.contextmanager
def _chunks(path, sep, names, dtypes, chunk_rows, limit):
    """The meter and the chunks (DataFrames, columns named ``names``) of a CSV."""
    with _open_data(path, limit) as (meter, _):
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            yield meter, pd.read_csv(io.BufferedReader(meter, 1 << 16), sep=sep, header=0,
                                     names=names, index_col=False, dtype=dtypes,
                                     keep_default_na=False, na_values=[""],
                                     encoding="utf-8-sig", chunksize=chunk_rows)


def _how(sep, detected):
    return f"the {SEPARATORS.get(sep, repr(sep))} delimiter" + (" (detected)" if detected else "")


def _csv_header(text, sep, detected, path):
    """The column names of a CSV's first line (stripped, "Unnamed: i" for an empty one); a
    DataError for duplicate names or a single column."""
    with _long_fields():
        raw_header = next((r for r in csv.reader(io.StringIO(text), delimiter=sep) if r), [])
    header = _check_header(raw_header, path)
    header = [h if h else f"Unnamed: {i}" for i, h in enumerate(header)]
    if len(header) == 1:
        raise DataError(f"{path} reads as one column {header[0][:60]!r} with {_how(sep, detected)}; "
                        "pass --sep with the file's delimiter (e.g. --sep ';')")
    return header


def _csv_layout(path, sep, detected, text, text_columns, skip_columns):
    """What reading a CSV starts from: (header, positional names, name -> positional name,
    skipped columns, kept positional names, sample profile of the kept columns (or None),
    positional names read as text)."""
    header = _csv_header(text, sep, detected, path)
    names = [f"_{i}" for i in range(len(header))]          # by position: names as written may be odd
    by_name = dict(zip(header, names))
    skipped = tuple(c for c in header if c in set(skip_columns))
    keep = [by_name[c] for c in header if c not in skipped]
    sample = _sample_profile(text, sep, names, len(text.encode("utf-8")) >= SNIFF_BYTES)
    as_text = {by_name[c] for c in text_columns if c in by_name} | {by_name[c] for c in skipped}
    if sample is not None:                  # text in the sample: read as text (no True/False to bool)
        as_text |= {n for n, p in zip(names, sample[2]) if p is not None}
        sample = sample[:2] + ([p for n, p in zip(names, sample[2]) if n in set(keep)],)
    return header, names, by_name, skipped, keep, sample, as_text


def _read_csv_columns(path, sep, detected, text, markers, text_columns, skip_columns, progress):
    """``read_file`` for a CSV before the frame is made: (columns, rows, n_markers,
    skipped, header): ``columns`` maps each kept column name to its ndarray (int64,
    float64 or object of str), ``n_markers`` to its count of ``na_values`` cells."""
    how = _how(sep, detected)
    header, names, by_name, skipped, keep, sample, as_text = _csv_layout(
        path, sep, detected, text, text_columns, skip_columns)
    available = available_memory()
    limit, per_byte = _memory_plan(path, _declared_size(path), sample, available)
    bytes_per_row = sample[1] / sample[0] if sample and sample[0] else 64.0
    chunk_rows = max(1000, int(CHUNK_BYTES / bytes_per_row))
    numbers = _marker_numbers(markers)
    size = Path(path).stat().st_size
    t0 = last = time.monotonic()
    parts = {n: [] for n in keep}
    seen = dict.fromkeys(keep)          # "number" or "text": what the column's chunks held
    reread = set()                      # number and text chunks (or True/False): read again as text
    n_markers = dict.fromkeys(keep, 0)
    rows = 0

    def read(columns, first_pass):
        nonlocal rows, last
        text_ids = as_text | reread
        dtypes = {n: (str if n in text_ids else None) for n in names}
        dtypes = {n: t for n, t in dtypes.items() if t is not None}
        with _chunks(path, sep, names, dtypes, chunk_rows, limit) as (meter, chunks):
            for chunk in chunks:
                for n in columns:
                    if first_pass and n in reread:
                        continue
                    values, hits, kind = _as_column(chunk[n].to_numpy(), markers, numbers,
                                                    n in text_ids)
                    if first_pass and (kind == "reread" or seen[n] not in (None, kind)):
                        reread.add(n)
                        parts[n] = []
                        continue
                    seen[n] = kind
                    parts[n].append(values)
                    n_markers[n] += hits
                if first_pass:
                    rows += len(chunk)
                del chunk
                now = time.monotonic()
                if progress is not None and now - last >= PROGRESS_SECONDS:
                    last = now
                    done = min(meter.disk.tell() / size, 1.0) if size else 1.0
                    progress(f"reading {path}: {done:.0%} ({rows:,} rows, {now - t0:.0f} s)")

    try:
        read(keep, first_pass=True)
        if reread:      # numbers in some chunks, text in others: those columns again, as text
            for n in reread:
                parts[n], n_markers[n] = [], 0
            read(sorted(reread), first_pass=False)
        columns = {}
        for c, n in by_name.items():
            if c in skipped:
                continue
            chunks, parts[n] = parts[n], None
            columns[c] = np.concatenate(chunks) if chunks else np.array([], dtype=object)
            del chunks
    except _TooLarge as exc:
        raise DataError(_too_large(path, exc.args[0], per_byte, available, stated=False)) from None
    except MemoryError:
        raise DataError(_out_of_memory(path, rows)) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty (no header line); it needs a header line and data rows") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        msg = " ".join(str(exc).split())
        if "out of memory" in msg:
            raise DataError(_out_of_memory(path, rows)) from None
        if isinstance(exc, pd.errors.ParserWarning):
            msg = f"a data line has more fields than the header's {len(header)}"
        raise DataError(f"{path} is not a valid CSV with {how} ({msg}); check the quoting and the "
                        "number of fields on that line, or pass --sep") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason}, after the first "
                        f"{SNIFF_BYTES // 1024} KiB); save it as UTF-8 CSV") from None
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise DataError(f"{path} cannot be read as a {_compression(path) or 'plain'} file ({exc}); "
                        "check the file or its extension") from None
    if progress is not None and last > t0:
        progress(f"read {path}: {rows:,} rows in {time.monotonic() - t0:.0f} s")
    return columns, rows, {c: n_markers[by_name[c]] for c in columns}, skipped, header


def _read_csv_file(path, sep, detected, text, markers, text_columns, skip_columns, progress):
    """``read_file`` for a CSV: (frame, notes, skipped); see there."""
    columns, rows, n_markers, skipped, _ = _read_csv_columns(
        path, sep, detected, text, markers, text_columns, skip_columns, progress)
    try:
        frame = pd.DataFrame(columns, index=pd.RangeIndex(rows), copy=False)
    except MemoryError:
        raise DataError(_out_of_memory(path, rows)) from None
    notes = tuple(_marker_note(path, c, n, rows, markers) for c, n in n_markers.items() if n)
    return frame, notes, skipped


def _declared_size(path):
    with _open_data(path) as (_, declared):
        return declared


def _marker_note(path, column, n, rows, markers):
    return (f"{path}: {n:,} of {rows:,} cells of column {column!r} read as missing: they hold a "
            f"missing-value marker of na_values (--na-values) {_listing([repr(m) for m in markers])}")


def _no_parquet_engine(path):
    return (f"{path} is a Parquet file but no Parquet engine is installed; "
            "pip install pyarrow (or fastparquet), or save the file as CSV")


def _read_parquet(path, markers=(), skip_columns=()):
    engine = _parquet_engine()
    if engine is None:
        raise DataError(_no_parquet_engine(path))
    try:
        df = pd.read_parquet(path, engine=engine)
    except MemoryError:
        raise DataError(_out_of_memory(path, 0)) from None
    except Exception as exc:  # noqa: BLE001 -- any engine error means "not a readable Parquet file"
        msg = " ".join(str(exc).split())[:200]
        raise DataError(f"{path} cannot be read as Parquet ({type(exc).__name__}: {msg}); "
                        "check the file or save it as CSV") from None
    df.columns = _check_header(df.columns, path)
    skipped = tuple(c for c in df.columns if c in set(skip_columns))
    df = df.drop(columns=list(skipped))
    for c in df.columns:        # dates as text, as a CSV would give them (screen_columns finds them)
        if pd.api.types.is_datetime64_any_dtype(df[c]):
            df[c] = df[c].astype(str).where(df[c].notna(), np.nan).astype(object)
    notes, numbers = [], _marker_numbers(markers)
    for c in df.columns:
        values = df[c].to_numpy()
        if values.dtype.kind in "iuf" or values.dtype == object:
            values, n = _apply_markers(values, markers, numbers)
            if n:
                df[c] = values
                notes.append(_marker_note(path, c, n, len(df), markers))
    return df.reset_index(drop=True), tuple(notes), skipped


# -- a glob of parts, read as one file ------------------------------------------
# ``--train 'data/part-*.csv'``: the files a pattern matches, in sorted path order, are
# read as the one file their concatenation would be (rows in that order, the index
# 0..n-1 across them). Each part is read like a file of its own (chunks, memory plan,
# progress); a column that is numbers in some parts and text in others is read again
# as text where it was numbers, as the one file would have been.
GLOB_CHARS = "*?["


def is_pattern(path):
    """True when ``path`` is a glob pattern (``*``, ``?``, ``[``; ``**`` spans folders)
    and names no existing file or folder as written."""
    text = str(path)
    return any(ch in text for ch in GLOB_CHARS) and not os.path.exists(os.path.expanduser(text))


def glob_paths(pattern):
    """The files ``pattern`` matches, in sorted path order (a DataError naming the
    pattern when it matches none). Name parts so that they sort (part-00001.csv ...)."""
    pattern = os.path.expanduser(str(pattern))
    paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not paths:
        raise DataError(f"{pattern} matches no file; check the pattern, and quote it so that the "
                        "shell passes it as written (e.g. --train 'data/part-*.csv')")
    return [Path(p) for p in paths]


def _schema_difference(pattern, first, columns0, path, columns):
    """The one-line error for a part whose columns differ from the first part's."""
    missing = [c for c in columns0 if c not in columns]
    extra = [c for c in columns if c not in columns0]
    what = "; ".join(
        ([f"missing {_listing([repr(c) for c in missing])}"] if missing else [])
        + ([f"extra {_listing([repr(c) for c in extra])}"] if extra else [])) \
        or "the same columns in another order"
    return (f"{path}: its columns differ from those of {first}, the first part of {pattern} "
            f"({what}); every part needs the same header: fix that part or narrow the pattern")


@dataclass
class _Part:
    path: Path
    columns: dict
    rows: int
    n_markers: dict


def _glob_progress(progress, pattern, n_parts, total_bytes):
    """A function (parts done, bytes done, rows) that reports at most every
    ``PROGRESS_SECONDS``, and a function that reports the end if it reported before."""
    t0 = time.monotonic()
    last = [t0]

    def step(done, done_bytes, rows):
        now = time.monotonic()
        if progress is not None and now - last[0] >= PROGRESS_SECONDS:
            last[0] = now
            share = done_bytes / total_bytes if total_bytes else 1.0
            progress(f"reading {pattern}: {done} of {n_parts} parts, {share:.0%} of the bytes "
                     f"({rows:,} rows, {now - t0:.0f} s)")

    def end(rows):
        if progress is not None and last[0] > t0:
            progress(f"read {pattern}: {rows:,} rows from {n_parts} parts in "
                     f"{time.monotonic() - t0:.0f} s")
    return step, end


def _read_csv_parts(pattern, paths, sep, markers, text_columns, skip_columns, progress):
    """``read_file`` for the CSV parts ``paths`` of ``pattern``: (frame, notes, skipped, rows
    per part)."""
    detected = sep is None
    # 1. every part's header and the memory all of them need, before any row is read
    header0, need, text_bytes, per_bytes = None, 0.0, 0, []
    for path in paths:
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty (0 bytes); every part of {pattern} needs the header "
                            "line and data rows")
        text = _sample_text(path)
        if not text.strip():
            raise DataError(f"{path} is empty (no header line); every part of {pattern} needs the "
                            "header line and data rows")
        if sep is None:                 # one delimiter for all: the first part's, as in one file
            sep = _detect_sep(text, path)
        header, _, _, _, _, sample, _ = _csv_layout(path, sep, detected, text, text_columns,
                                                    skip_columns)
        if header0 is None:
            header0 = header
        elif header != header0:
            raise DataError(_schema_difference(pattern, paths[0], header0, path, header))
        declared = _declared_size(path)
        if declared is not None:
            per_bytes.append(_per_byte(sample))
            need += declared * per_bytes[-1]
            text_bytes += declared
        del text
    available = available_memory()
    if available is not None and need > READ_SHARE * available:
        packed = " once decompressed" if any(_compression(p) for p in paths) else ""
        raise DataError(f"{pattern} matches {len(paths)} files holding {_gb(text_bytes)} of text"
                        f"{packed}, which need about {_gb(need)} of memory to read, but "
                        f"{_gb(available)} is available; free memory, read fewer parts, or pass "
                        "--drop with the columns you can spare")
    # 2. each part as a file of its own
    sizes = [p.stat().st_size for p in paths]
    step, end = _glob_progress(progress, pattern, len(paths), sum(sizes))
    parts, rows, skipped = [], 0, ()
    for i, path in enumerate(paths):
        columns, n, n_markers, skipped, _ = _read_csv_columns(
            path, sep, detected, _sample_text(path), markers, text_columns, skip_columns, progress)
        parts.append(_Part(path, columns, n, n_markers))
        rows += n
        step(i + 1, sum(sizes[:i + 1]), rows)
    # 3. numbers in some parts and text in others: read as text where they were numbers
    names = list(parts[0].columns)
    filled = [p for p in parts if p.rows]
    mixed = [c for c in names if len({p.columns[c].dtype == object for p in filled}) > 1]
    for part in filled:
        again = [c for c in mixed if part.columns[c].dtype != object]
        if not again:
            continue
        columns, _, n_markers, _, header = _read_csv_columns(
            part.path, sep, detected, _sample_text(part.path), markers,
            list(text_columns) + again, [c for c in header0 if c not in again], None)
        for c in again:
            part.columns[c], part.n_markers[c] = columns[c], n_markers[c]
    # 4. one column at a time, each part's copy freed as it is joined
    try:
        joined = {}
        for c in names:
            pieces = [p.columns.pop(c) for p in filled]
            joined[c] = np.concatenate(pieces) if pieces else np.array([], dtype=object)
            del pieces
        frame = pd.DataFrame(joined, index=pd.RangeIndex(rows), copy=False)
    except MemoryError:
        raise DataError(_out_of_memory(pattern, rows)) from None
    end(rows)
    counts = {c: sum(p.n_markers[c] for p in parts) for c in names}
    notes = tuple(_marker_note(pattern, c, n, rows, markers) for c, n in counts.items() if n)
    return frame, notes, skipped, tuple((str(p.path), p.rows) for p in parts)


def _kind_of(series):
    """"numbers", "true/false" or "text" for a Parquet column (None when all missing)."""
    if series.isna().all():
        return None
    if pd.api.types.is_bool_dtype(series):
        return "true/false"
    return "numbers" if series.dtype.kind in "iuf" else "text"


def _read_parquet_parts(pattern, paths, markers, skip_columns, progress):
    """``read_file`` for the Parquet parts ``paths`` of ``pattern``: the same columns of the
    same kinds in every part (a Parquet file has one schema)."""
    sizes = [p.stat().st_size for p in paths]
    step, end = _glob_progress(progress, pattern, len(paths), sum(sizes))
    frames, notes, first, rows = [], [], None, 0
    for i, path in enumerate(paths):
        df, part_notes, skipped = _read_parquet(path, markers, skip_columns)
        columns = list(skipped) + list(df.columns)
        kinds = {c: _kind_of(df[c]) for c in df.columns}
        if first is None:
            first = (columns, kinds)
        elif columns != first[0]:
            raise DataError(_schema_difference(pattern, paths[0], first[0], path, columns))
        else:
            for c, kind in kinds.items():
                if kind is not None and first[1][c] is not None and kind != first[1][c]:
                    raise DataError(f"{path}: column {c!r} holds {kind}, but in {paths[0]}, the "
                                    f"first part of {pattern}, it holds {first[1][c]}; every "
                                    "part needs the same column types: fix that part or narrow "
                                    "the pattern")
                first[1][c] = first[1][c] or kind
        frames.append(df)
        notes += part_notes
        rows += len(df)
        step(i + 1, sum(sizes[:i + 1]), rows)
    try:
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    except MemoryError:
        raise DataError(_out_of_memory(pattern, rows)) from None
    end(rows)
    return frame, tuple(notes), skipped, tuple((str(p), len(f)) for p, f in zip(paths, frames))


def _read_parts(pattern, sep, markers, text_columns, skip_columns, progress):
    paths = glob_paths(pattern)
    parquet = [p.suffix.lower() == ".parquet" for p in paths]
    if any(parquet) and not all(parquet):
        raise DataError(f"{pattern} matches Parquet and CSV files ({paths[parquet.index(True)]}, "
                        f"{paths[parquet.index(False)]}); the parts of one file must all be "
                        "Parquet or all CSV: narrow the pattern")
    if all(parquet):
        if _parquet_engine() is None:
            raise DataError(_no_parquet_engine(pattern))
        return RawTable(*_read_parquet_parts(str(pattern), paths, markers, skip_columns, progress))
    return RawTable(*_read_csv_parts(str(pattern), paths, sep, markers, list(text_columns),
                                     list(skip_columns), progress))


def read_file(path, sep=None, na_values=None, text_columns=(), skip_columns=(), progress=None):
    """Read one data file: CSV (any of ``SEPARATORS``, plain or ``.gz``/``.bz2``/``.xz``/
    ``.zip``) or Parquet (when an engine of ``PARQUET_ENGINES`` is installed), or the
    files a glob pattern matches (``"data/part-*.csv"``, ``is_pattern``) as the one file
    their concatenation in sorted path order would be.

    Only the empty field is missing, unless ``na_values`` names more markers.
    Numeric columns are parsed chunk by chunk into int64/float64 arrays (no
    Python string per numeric cell); text columns keep their exact text. Memory
    is checked before any work: a file whose estimated in-memory size (from
    its stated decompressed size and a sample of its rows) exceeds
    ``READ_SHARE`` of ``available_memory()`` is refused, and reading stops at
    the same bound when the size is not stated or lies (a decompression bomb).

    Parameters
    ----------
    path : str or Path
        A file, or a glob pattern (``glob_paths``): every part needs the same
        header (a Parquet part: the same columns of the same kinds), all CSV or
        all Parquet; a CSV column that is numbers in some parts and text in
        others is read as text throughout, as in one file. Each part is read,
        chunked and memory-checked like a file, after the memory all of them
        need is checked against ``available_memory()``.
    sep : str, optional
        The CSV delimiter; default: detected from the first ``SNIFF_BYTES``
        (of the first part).
    na_values : list of str, optional
        Cells that mean "missing" besides the empty field (e.g. ``["NA",
        "-999"]``); a numeric marker also matches the number it writes. Each
        column where one was found gets a note.
    text_columns : list of str, optional
        Columns read as text even when their values are numbers (the label
        column, ``--categorical`` columns, the training file's text columns).
    skip_columns : list of str, optional
        Columns not kept (``--drop``); names the file lacks are ignored.
    progress : callable, optional
        ``progress(line)`` is called with a one-line status (share of the file
        read, rows, seconds) at most every ``PROGRESS_SECONDS`` while a CSV is
        read, and once at the end if it was called before.

    Returns
    -------
    RawTable
        ``frame`` of shape (n_rows, n_columns), ``notes`` and ``skipped``
        (``parts``: each part and its rows, for a pattern).

    Raises
    ------
    DataError
        Missing, empty, non-UTF-8, malformed or too large a file, duplicate
        column names, running out of memory, or Parquet without an engine;
        a pattern matching no file, or a part whose columns differ from the
        first part's; one line with a fix.
    """
    markers = _markers(na_values)
    if is_pattern(path):
        return _read_parts(path, sep, markers, text_columns, skip_columns, progress)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found; put {path.name} in {path.parent} or pass --data-dir")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); it needs a header line and data rows")
    if path.suffix.lower() == ".parquet":
        return RawTable(*_read_parquet(path, markers, skip_columns))
    text = _sample_text(path)
    if not text.strip():
        raise DataError(f"{path} is empty (no header line); it needs a header line and data rows")
    detected = sep is None
    sep = _detect_sep(text, path) if detected else sep
    return RawTable(*_read_csv_file(path, sep, detected, text, markers, list(text_columns),
                                    list(skip_columns), progress))


def read_table(path, sep=None, na_values=None, text_columns=(), progress=None):
    """The frame of ``read_file`` (see there): one data file, its columns as numbers or text.

    Returns
    -------
    DataFrame of shape (n_rows, n_columns)
    """
    return read_file(path, sep=sep, na_values=na_values, text_columns=text_columns,
                     progress=progress).frame


_read_csv = read_table    # the old name


