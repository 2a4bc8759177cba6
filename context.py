"""What the parts share with the run: the context they compute from, where they write, the schedule.

``Context`` (the configuration, the data, the worker pool, the results of
earlier parts), ``Output`` (the output folder and the report body a renderer
writes to), ``Step`` and ``Schedule`` (what ``run_all.schedule`` declares),
``PartResult`` (what every part result offers the summary) and small helpers
the renderers share (``show_table``, ``data_notes``). Light to import: the
data and network modules load only when used.
"""
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

import jobs as jobs_mod
import report as rp


REPO_DIR = Path(__file__).resolve().parent
# Rows of a table the report shows; a longer table (a wide file's per-column tables) is
# shown by its first rows, and its CSV in tables/ holds every row.
REPORT_MAX_ROWS = 40


def _first_rows(df, name, caption):
    """(``df``, ``caption``) for the report: a table longer than ``REPORT_MAX_ROWS`` cut to
    its first rows (the tables come sorted by what matters, or in the file's column
    order), the caption saying so and where every row is."""
    if len(df) <= REPORT_MAX_ROWS:
        return df, caption
    note = (f"the first {REPORT_MAX_ROWS} of {len(df):,} rows; every row is in "
            f"tables/{name if name.endswith('.csv') else name + '.csv'}")
    first = df.iloc[:REPORT_MAX_ROWS] if hasattr(df, "iloc") else df[:REPORT_MAX_ROWS]
    return first, f"{caption} ({note})" if caption else note[0].upper() + note[1:]


@dataclass
class Output:
    """Where a renderer writes: the output folder and the report body.

    Attributes
    ----------
    out : pathlib.Path
    report : report.Report
        Each part's renderer appends its section (level-3 headings and below;
        ``run_parts`` writes the part's level-2 heading).
    """
    out: Path
    report: rp.Report

    def path(self, *parts):
        """``out/<parts...>`` with its folder created, e.g. ``output.path("figures", "a_classes.png")``."""
        p = self.out.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def save_figure(self, fig, name, caption=None):
        """Save ``fig`` atomically as ``out/figures/<name>``, add it to the report, close it."""
        path = self.path("figures", name)
        rp.savefig_atomic(fig, path)
        import matplotlib.pyplot as plt
        plt.close(fig)
        self.report.figure(path, caption)
        return path

    def save_table(self, df, name, caption=None, floatfmt=".4g", show=True):
        """Write ``df`` as ``out/tables/<name>.csv`` atomically and (if ``show``) add it to the
        report: at most its first ``REPORT_MAX_ROWS`` rows, the caption saying so."""
        path = self.path("tables", name if name.endswith(".csv") else name + ".csv")
        rp.write_atomic(path, rp.csv_text(df, index=not plain_index(df)))   # formula cells neutralised
        if show:
            self.report.table(*_first_rows(df, name, caption), floatfmt=floatfmt)
        return path


def plain_index(df):
    import pandas as pd
    return isinstance(df.index, pd.RangeIndex)


@dataclass
class Context:
    """Everything a part's computation needs, and the results of the parts that ran.

    Attributes
    ----------
    cfg : Config
    dataset : prep.Dataset
        The validated train/test frames (``.train``, ``.test``, ``.target``,
        ``.numeric``, ``.categorical``, ``.classes``, ``.source``, ``.synthetic``).
    data : dict
        ``prep.encode`` output: ``X_train``/``y_train``/``X_val``/``y_val``/
        ``X_test``/``y_test``, ``feature_names``, ``feature_source``, ``preprocessor``.
    out : pathlib.Path
        Output folder.
    report : report.Report
        The report body (``output`` pairs it with ``out`` for the renderers).
    metrics : dict
        JSON-able results, one key per part: each part's result serialised
        (``result.to_metrics()``), plus ``data`` and ``timing``.
    results : dict
        Part code -> the part's result object (``AResult`` ...), for the parts
        that computed one; later parts and the summary read these.
    jobs : jobs.Jobs
        The worker pool; by default none run in the background (every job runs
        when its result is asked for).
    parts : tuple
        The parts this run executes (after ``plan``).
    plan : Schedule
        What ``run_all.schedule`` declared: the jobs and main-process steps of the run.
    course : bool
        The run is framed for the course's assignment (``run_all.course_framing``):
        its wording and Question 2; else the text speaks of the user's data.
    cluster_address : str or None
        The Dask scheduler Part B's trainings use (``--scheduler``; ``cluster.py``).
    """
    cfg: Any
    dataset: Any
    data: dict
    out: Path
    report: rp.Report
    metrics: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    jobs: Any = field(default_factory=lambda: jobs_mod.Jobs(0))
    parts: tuple = ()
    plan: Any = None
    course: bool = False
    cluster_address: Any = None

    @property
    def output(self):
        return Output(self.out, self.report)


class Step:
    """A computation of the main process declared in the schedule (``schedule``).

    It runs once: when ``run_parts`` reaches the part named ``before`` (it runs
    before that part's computation), or when its result is first asked for,
    whichever comes first. ``inputs`` are futures or steps waited for first;
    ``fn`` receives their results. Quacks like a future (``result``, ``done``,
    ``add_done_callback``), so ``Jobs.after`` can queue a worker job on it.
    """

    def __init__(self, name, fn, inputs=(), before=None):
        self.name, self.before = name, before
        self._fn, self._inputs = fn, list(inputs)
        self._ran, self._value, self._error, self._callbacks = False, None, None, []

    def run(self):
        if self._ran:
            return
        self._ran = True
        try:
            self._value = self._fn(*[i.result() for i in self._inputs])
        except Exception as e:          # kept, and raised to every caller (Ctrl-C passes)
            self._error = e
        self._fn = self._inputs = None
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(self)

    def result(self):
        self.run()
        if self._error is not None:
            raise self._error
        return self._value

    def done(self):
        return self._ran

    def add_done_callback(self, fn):
        if self._ran:
            fn(self)
        else:
            self._callbacks.append(fn)

@dataclass
class Schedule:
    """What ``run_all.schedule`` declared for a run, one attribute per job group or step
    (None when its part does not run); each part reads only its own.

    Worker jobs: ``b_fits`` (activation -> future, Part B(a)), ``b_sigmoid`` ((init, lr)
    -> future, Part B's sigmoid set-up study), ``q2_runs`` (task -> futures, Question 2).
    Main-process ``Step``s, in the order they run: ``b_networks`` (the trained networks
    and their scores), ``checks`` (sensitivity and permutation check of the best
    network), ``d_diagnosis``, ``d_mitigations``, ``d_combination`` (Part D).
    ``reference``: a worker job, last in line, fitting the gradient-boosting model the
    networks' underfitting rule compares with (``training.reference_accuracy``).
    """
    b_fits: Any = None
    b_sigmoid: Any = None
    q2_runs: Any = None
    b_networks: Any = None
    checks: Any = None
    d_diagnosis: Any = None
    d_mitigations: Any = None
    d_combination: Any = None
    reference: Any = None

    def steps_before(self, code):
        """The steps declared to run before part ``code``, in declaration order."""
        steps = (getattr(self, f.name) for f in fields(self))
        return [s for s in steps if isinstance(s, Step) and s.before == code]



# ---------------------------------------------------------------------- parts
# Each part: a frozen result (numbers, arrays, frames; no prose, no files), a
# ``compute_<part>(ctx) -> <Part>Result`` and a ``render_<part>(result, out)``
# that writes its tables, figures and report blocks. ``result.to_metrics()`` is
# the part's entry in metrics.json; ``accuracy`` and ``headline`` feed the summary.

class PartResult:
    """What every part result offers the summary (overridden where a part has it)."""

    @property
    def accuracy(self):
        """Network -> split -> accuracy, for the summary's accuracy table."""
        return {}


# Column names of the CSVs as the report's tables show them.
READABLE = {"train_acc": "train accuracy", "val_acc": "validation accuracy", "test_acc": "test accuracy",
             "final_loss": "final loss", "final_val_loss": "final validation loss"}


def show_table(out, df, name, caption=None, shown=None, **table_kw):
    """Write ``df`` in full as ``out/tables/<name>.csv`` and show ``shown`` (default ``df``)
    in the report with ``Report.table``'s options (``floatfmt``, ``formats``, ``na``, ``key``);
    at most its first ``REPORT_MAX_ROWS`` rows."""
    path = out.save_table(df, name, show=False)
    out.report.table(*_first_rows(df if shown is None else shown, name, caption), **table_kw)
    return path


def console_path(path):
    """A path for the console: relative to the current folder when it lies below it,
    else as it is (a report names files relative, never absolute: ``report.display_path``)."""
    rel = rp.display_path(path)
    return rel if not rel.startswith("..") else str(path)


def data_notes(dataset):
    """The console lines about the data a user must know: how the reader interpreted
    values (``Dataset.notes``: markers read as missing, labels read as integers ...), a
    test set split from the one labelled file (``prep.split_banner``) and, last, a test
    file without labels (``prep.UNLABELLED_TEST_MESSAGE``)."""
    import prep
    notes = list(getattr(dataset, "notes", ()) or ())
    if dataset.split_from_one_file:
        notes.append(prep.split_banner(dataset))
    if not dataset.test_labelled:
        file = console_path(dataset.files[1]) if len(dataset.files) > 1 else "test"
        notes.append(prep.UNLABELLED_TEST_MESSAGE.format(file=file, target=dataset.target))
    return notes


# Above this many rows, the parts' analyses that re-score every row many times (Part B's
# gradient decomposition and depth probes, Part C's permutation checks) use a seeded
# sample of this size, stated in the report; the networks still train on every row.
ANALYSIS_ROWS = 50_000


def analysis_rows(n, seed, cap=None):
    """Row positions an analysis uses: every row up to ``cap`` (default ``ANALYSIS_ROWS``),
    else a seeded sample of ``cap`` rows in row order."""
    cap = ANALYSIS_ROWS if cap is None else cap
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


# glibc's mallopt parameter for the size from which a block is its own mapping
# (``return_large_blocks``).
_M_MMAP_THRESHOLD = -3
LARGE_BLOCK = 8 << 20


def _libc():
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def return_large_blocks(threshold=LARGE_BLOCK):
    """Make every C-heap block of at least ``threshold`` bytes its own mapping, given back
    to the system when freed (glibc's ``mallopt(M_MMAP_THRESHOLD)``; nothing elsewhere).
    By default glibc raises that threshold to the size of each freed mapped block (up to
    32 MB on 64-bit systems): after the first large temporary, the row-sized ones of a
    file of millions of rows (32 MB a column of 4 million float64) come from the heap and
    stay counted in the process after they are freed, in every worker. Set in the main process before the workers fork: they
    inherit it. True when set."""
    libc = _libc()
    try:
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold))) if libc is not None else False
    except AttributeError:
        return False


def release_freed_memory():
    """Give the C heap's freed pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). Reading and encoding a large file leave hundreds of MB of freed, scattered
    heap that would otherwise stay counted in the process for the whole run. True when
    memory was released."""
    trim = getattr(_libc(), "malloc_trim", None)
    return bool(trim(0)) if trim is not None else False
