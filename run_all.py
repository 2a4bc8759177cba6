"""Run the whole assignment end to end and write the report.

Usage: ``python run_all.py [--data-dir DIR] [--parts A,B,C,D,Q2] [--quick] ...``
(``python run_all.py --help`` explains every option).

Steps: validate the options, load and validate the CSV pair (or the built-in
synthetic data when none is found, announced loudly), encode it (imputer,
scaler and encoder fit on the training split only), declare the run's
background work (``schedule``: trainings and experiments in worker processes,
and the main-process steps they wait for), run the chosen parts in order --
each a pure ``compute_<part>`` returning a frozen result and a
``render_<part>`` writing its tables, figures and report section, all listed
in one table, ``PARTS`` -- and render the report. A part that crashes is recorded and the run goes on with
the next one; the exit code is then 1. Mistakes in the options or the data
print one ``error: ...`` line and exit with code 2.

Writes, under ``--out`` (default ``out/``), every file atomically:

- ``config.json``   effective configuration, resolved data folder, numba
  threads, library versions;
- ``metrics.json``  one key per part (``data``, ``partA``, ``partB``,
  ``partC``, ``partD``, ``q2``) plus ``timing`` (seconds per part and total,
  worker processes, CPU seconds of the main process and of the workers);
- ``report.md`` and ``report.html`` (self-contained, figures embedded);
- ``figures/``, ``tables/`` what the parts produce; ``logs/<part>.log`` the
  traceback of a part that failed.
"""
import _signal  # built in: no Python code runs before SIGINT is blocked

if __name__ == "__main__" and hasattr(_signal, "pthread_sigmask"):
    # A Ctrl-C while the modules below load waits for main(): one line, exit 130.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGINT})

import argparse
import errno
import json
import math
import os
import platform
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import matplotlib

if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")  # files only, no display needed

import jobs as jobs_mod
import report as rp

REPO_DIR = Path(__file__).resolve().parent

# The parts (``PARTS``: code, metrics key, title, needs, compute, render,
# priority, aliases) are one table, defined after their computations below.

DEFAULTS = dict(target="price_class", out="out", parts="A,B,C,D,Q2", iterations=200,
                quick_iterations=30, lr=0.1, hidden="64,64", activations="relu,sigmoid",
                seed=42, dtype="float32", corr_threshold=0.5, val_size=0.2)

# Sizes refused before any work (``validate`` and ``check_sizes``), each with what would fit.
SEED_MAX = 2**32 - 1            # numpy's legacy seeding and scikit-learn's random_state accept 0..2**32-1
MAX_ITERATIONS = 10**7          # the loss history alone takes 8 * (4 + layers) bytes per iteration
CV_FOLDS = 5                    # Part A's cross-validation: every class needs this many training rows
ASSUMED_FLOPS = 2e10            # optimistic full-batch throughput (flop/s), so only the hopeless is refused
MAX_TRAIN_SECONDS = 24 * 3600   # one network's estimated training time above this is refused
PARAM_COPIES = 20               # theta, gradient, best-so-far and up to 16 per-block gradient buffers
ACTIVATION_COPIES = 3           # pre-activation, activation and delta of every layer, per row
ENCODED_COPIES = 3              # encoded train/val/test matrices plus one transform's temporaries
MEMORY_SHARE = 0.8              # share of the available memory a run may plan to use
SEPARATOR_NAMES = {",": ",", "comma": ",", ";": ";", "semicolon": ";", "tab": "\t", "\\t": "\t",
                   "\t": "\t", "|": "|", "pipe": "|"}


@dataclass(frozen=True)
class Config:
    """The effective configuration of a run (validated; written to ``config.json``).

    ``repeats`` (seeds per experiment) and ``lr_grid`` (learning rates tried
    in sweeps) derive from ``--quick`` so every part shrinks its work the same way.
    """
    data_dir: Any
    target: str
    categorical: Any
    drop: Any
    out: str
    parts: tuple
    iterations: int
    lr: float
    hidden: tuple
    activations: tuple
    seed: int
    dtype: str
    threads: int
    quick: bool
    corr_threshold: float
    val_size: float
    repeats: int
    lr_grid: tuple
    train: Any = None
    test: Any = None
    sep: Any = None
    test_size: Any = None
    keep_columns: Any = None
    expand_dates: bool = False


class UsageError(ValueError):
    """A bad command-line option (printed as one line, exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see --help)")


def build_parser():
    """The argparse parser; its defaults are the project's defaults (``DEFAULTS``)."""
    d = DEFAULTS
    p = _Parser(
        prog="run_all.py",
        description="Train, explain and diagnose a from-scratch MLP on a tabular "
                    "classification CSV pair (train.csv, test.csv) and write a report.",
        epilog="Parts: A data and EDA; B MLP from scratch + gradient magnitudes; "
               "C input gradients + attribution; D test accuracy + generalisation; "
               "Q2 shared bias. C and D use B's networks (B runs first when needed). "
               "Exit codes: 0 ok, 1 a part failed (see <out>/logs/), 2 bad options or data.")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding train.csv and test.csv (also .csv.gz, .csv.bz2, .csv.xz, "
                        ".zip, .tsv, .parquet; default: $MLP_DATA_DIR, ./data, <repo>/data, "
                        "<repo>/../shared/data; synthetic data if none has both)")
    p.add_argument("--train", metavar="FILE", default=None,
                   help="training file, any name (instead of --data-dir)")
    p.add_argument("--test", metavar="FILE", default=None,
                   help="test file, any name; it may lack the label column (needs --train)")
    p.add_argument("--test-size", type=float, default=None, metavar="F",
                   help="no test file: hold out this fraction of the training file as the test "
                        "set (stratified, seeded by --seed; the report says so)")
    p.add_argument("--sep", default=None, metavar="SEP",
                   help="CSV delimiter: , ; tab | or any one character (default: detected)")
    p.add_argument("--target", default=d["target"], metavar="COL",
                   help="label column: integers, names (low/mid/high) or true/false "
                        "(default: %(default)s)")
    p.add_argument("--categorical", metavar="COL[,COL]", default=None,
                   help="columns to treat as categorical (default: inferred: non-numeric columns)")
    p.add_argument("--drop", metavar="COL[,COL]", default=None,
                   help="columns to ignore (e.g. ids or a leaking feature)")
    p.add_argument("--keep-columns", metavar="COL[,COL]", default=None,
                   help="use these columns even if they look like no feature (ID-like, constant, "
                        "date, very high cardinality; such columns are left out by default)")
    p.add_argument("--expand-dates", action="store_true",
                   help="turn each date column into numeric year, month and day-of-week columns "
                        "instead of leaving it out")
    p.add_argument("--out", metavar="DIR", default=d["out"],
                   help="output folder for figures, tables, metrics and the report (default: %(default)s)")
    p.add_argument("--parts", default=d["parts"], metavar="LIST",
                   help="comma list of parts to run, from A,B,C,D,Q2; aliases like Ba, B(b) "
                        "are accepted, case-insensitive (default: all)")
    p.add_argument("--iterations", type=int, default=None, metavar="N",
                   help=f"full-batch gradient-descent iterations (default: {d['iterations']}, "
                        f"{d['quick_iterations']} with --quick)")
    p.add_argument("--lr", type=float, default=d["lr"], metavar="RATE",
                   help="learning rate of gradient descent (default: %(default)s)")
    p.add_argument("--hidden", default=d["hidden"], metavar="H1,H2",
                   help="hidden layer widths, comma-separated (default: %(default)s)")
    p.add_argument("--activations", default=d["activations"], metavar="ACT[,ACT]",
                   help="hidden activations to train and compare (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d["seed"], metavar="N",
                   help="seed for the split, initialisation and synthetic data (default: %(default)s)")
    p.add_argument("--dtype", default=d["dtype"], metavar="{float64,float32}",
                   help="floating-point type of the network (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="cores to use (default: all): N worker processes train networks and run "
                        "experiments side by side, one thread each; 1 runs everything in this "
                        "process. Results do not depend on it")
    p.add_argument("--quick", action="store_true",
                   help="fast look: fewer iterations, one seed, fewer learning rates")
    p.add_argument("--corr-threshold", type=float, default=d["corr_threshold"], metavar="R",
                   help="|correlation| above which a feature pair is reported as highly "
                        "correlated (default: %(default)s)")
    return p


def _col_list(value, option):
    if value is None:
        return None
    cols = [c.strip() for c in value.split(",")]
    if not all(cols):
        raise UsageError(f"{option}: empty column name in {value!r}; "
                         "use a comma list without blanks, e.g. a,b")
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise UsageError(f"{option}: column {dup[0]!r} is listed twice in {value!r}")
    return tuple(cols)


def parse_parts(value):
    """``"a,Bb,q2"`` -> ``("A", "B", "Q2")`` in run order; raise UsageError for unknown parts."""
    chosen = set()
    for token in value.split(","):
        t = "".join(token.split()).upper()
        if t.startswith("PART"):
            t = t[4:].lstrip("-_")
        if t == "ALL":
            chosen.update(PARTS)
            continue
        code = t if t in PARTS else PART_ALIASES.get(t)
        if code is None:
            raise UsageError(f"--parts: unknown part {token.strip()!r} in {value!r}; "
                             f"choose from {','.join(PARTS)} (e.g. --parts A,B)")
        chosen.add(code)
    return tuple(c for c in PARTS if c in chosen)


def _known_activations():
    import mlp
    return tuple(mlp.ACTIVATIONS)


def validate(ns):
    """Check every option of the parsed namespace ``ns``; return the ``Config``.

    All validation lives here. Raises ``UsageError`` (a ``ValueError``) whose
    one-line message names the option and the bad value.
    """
    d = DEFAULTS
    parts = parse_parts(ns.parts)
    iterations = ns.iterations if ns.iterations is not None else (
        d["quick_iterations"] if ns.quick else d["iterations"])
    if iterations < 1:
        raise UsageError(f"--iterations: must be at least 1, got {iterations}")
    if iterations > MAX_ITERATIONS:
        raise UsageError(f"--iterations: {iterations:,} is more than this tool runs (at most "
                         f"{MAX_ITERATIONS:,}: each iteration is a full pass over the training rows "
                         "and keeps a history entry); pass --iterations up to that")
    if not (math.isfinite(ns.lr) and ns.lr > 0):
        raise UsageError(f"--lr: must be a positive finite number, got {ns.lr}")
    try:
        hidden = tuple(int(h) for h in ns.hidden.split(","))
    except ValueError:
        raise UsageError(f"--hidden: expected comma-separated layer widths like 64,64, "
                         f"got {ns.hidden!r}") from None
    if any(h < 1 for h in hidden):
        raise UsageError(f"--hidden: layer widths must be positive, got {ns.hidden!r}")
    acts = tuple(a.strip().lower() for a in ns.activations.split(","))
    known = _known_activations()
    bad = [a for a in acts if a not in known]
    if bad:
        raise UsageError(f"--activations: unknown activation {bad[0]!r} in {ns.activations!r}; "
                         f"choose from {', '.join(known)}")
    if len(set(acts)) != len(acts):
        raise UsageError(f"--activations: an activation is listed twice in {ns.activations!r}")
    if not 0 <= ns.seed <= SEED_MAX:
        raise UsageError(f"--seed: must be an integer from 0 to {SEED_MAX} (2**32 - 1), got {ns.seed}")
    if ns.dtype not in ("float64", "float32"):
        raise UsageError(f"--dtype: must be float64 or float32, got {ns.dtype!r}")
    threads = ns.threads
    if threads is not None:
        import numba
        max_threads = numba.config.NUMBA_NUM_THREADS
        if not 1 <= threads <= max_threads:
            raise UsageError(f"--threads: must be between 1 and {max_threads} on this machine, "
                             f"got {threads}")
    if not (math.isfinite(ns.corr_threshold) and 0 < ns.corr_threshold <= 1):
        raise UsageError(f"--corr-threshold: must be in (0, 1], got {ns.corr_threshold}")
    if not ns.target.strip():
        raise UsageError("--target: empty column name; name the label column, e.g. --target price_class")
    categorical = _col_list(ns.categorical, "--categorical")
    drop = _col_list(ns.drop, "--drop")
    if drop and ns.target in drop:
        raise UsageError(f"--drop: cannot drop the target column {ns.target!r}")
    if categorical and ns.target in categorical:
        raise UsageError(f"--categorical: {ns.target!r} is the target, not a feature")
    if categorical and drop and set(categorical) & set(drop):
        both = sorted(set(categorical) & set(drop))[0]
        raise UsageError(f"--categorical/--drop: column {both!r} is in both lists; keep it in one")
    keep = _col_list(ns.keep_columns, "--keep-columns")
    if keep and drop and set(keep) & set(drop):
        both = sorted(set(keep) & set(drop))[0]
        raise UsageError(f"--keep-columns/--drop: column {both!r} is in both lists; keep it in one")
    train, test, sep, test_size = _data_options(ns)
    # the networks alone, for the smallest data (1 input, 2 classes, no rows): a lower bound
    check_network_memory(hidden, 1, 2, 0, ns.dtype, threads)
    out = Path(ns.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {str(out)!r} exists and is not a folder; pass another --out")
    return Config(
        data_dir=ns.data_dir, target=ns.target, categorical=categorical, drop=drop,
        out=str(out), parts=parts, iterations=iterations, lr=float(ns.lr), hidden=hidden,
        activations=acts, seed=ns.seed, dtype=ns.dtype, threads=threads, quick=ns.quick,
        corr_threshold=float(ns.corr_threshold), val_size=d["val_size"],
        repeats=1 if ns.quick else 3,
        lr_grid=tuple(float(f"{ns.lr * f:.6g}") for f in ((0.1, 1, 3) if ns.quick else (0.1, 0.3, 1, 3, 10))),
        train=train, test=test, sep=sep, test_size=test_size, keep_columns=keep,
        expand_dates=bool(ns.expand_dates),
    )


def _data_options(ns):
    """``(train, test, sep, test_size)`` from --train/--test/--sep/--test-size, checked."""
    if ns.train is not None and ns.data_dir is not None:
        raise UsageError("--train/--data-dir: pass either a folder (--data-dir) or files (--train, "
                         "--test), not both")
    if ns.test is not None and ns.train is None:
        raise UsageError(f"--test: {ns.test!r} needs its training file; pass --train FILE too")
    for option, value in (("--train", ns.train), ("--test", ns.test)):
        if value is not None and not Path(value).expanduser().is_file():
            raise UsageError(f"{option}: file {value!r} not found; pass the path of an existing file")
    if ns.test_size is not None:
        if not (math.isfinite(ns.test_size) and 0 < ns.test_size < 1):
            raise UsageError(f"--test-size: must be a fraction in (0, 1), e.g. 0.2, got {ns.test_size}")
        if ns.test is not None:
            raise UsageError("--test-size/--test: --test-size splits a single file, but --test gives "
                             "a test file; pass one of them")
    sep = ns.sep
    if sep is not None:
        sep = SEPARATOR_NAMES.get(sep.lower(), sep)
        if len(sep) != 1 or sep in "\"'\n\r":
            raise UsageError(f"--sep: expected one delimiter character (, ; tab |), got {ns.sep!r}")
    as_path = (lambda v: None if v is None else str(Path(v).expanduser()))
    return as_path(ns.train), as_path(ns.test), sep, ns.test_size


def available_memory():
    """Bytes of memory available to this run (``MemAvailable`` of /proc/meminfo, else the free
    physical pages), or None when the platform does not say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n_bytes):
    return f"{n_bytes / 2**30:.1f} GB"


def network_bytes(hidden, n_inputs, n_classes, n_rows, dtype):
    """Estimated bytes to train one network: ``PARAM_COPIES`` copies of the parameters plus
    ``ACTIVATION_COPIES`` activations of every layer for every row, in ``dtype``."""
    itemsize = 4 if dtype == "float32" else 8
    widths = (n_inputs, *hidden, n_classes)
    params = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    return itemsize * (PARAM_COPIES * params + ACTIVATION_COPIES * n_rows * sum(widths[1:]))


def _concurrent(threads):
    """Networks trained at the same time: one per worker process."""
    cores = threads or os.cpu_count() or 1
    return max(1, min(cores, jobs_mod.MAX_WORKERS))


def check_network_memory(hidden, n_inputs, n_classes, n_rows, dtype, threads, available=None):
    """Raise UsageError naming --hidden and the widest layers that fit when the networks'
    estimated memory (``network_bytes`` x networks trained at once) exceeds ``MEMORY_SHARE``
    of the available memory (``available_memory()`` by default; None skips the check)."""
    available = available_memory() if available is None else available
    if available is None:
        return
    copies = _concurrent(threads)
    budget = MEMORY_SHARE * available

    def need(h):
        return copies * network_bytes(h, n_inputs, n_classes, n_rows, dtype)
    if need(hidden) <= budget:
        return
    lo, hi = 0, max(hidden)                     # the widest uniform layers that fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if need((mid,) * len(hidden)) <= budget else (lo, mid - 1)
    fits = (f"at most {lo:,} units per layer (--hidden {','.join([str(lo)] * len(hidden))}) would fit"
            if lo else "no network of this depth fits; use fewer layers or more memory")
    raise UsageError(f"--hidden: {','.join(map(str, hidden))} needs about {_gb(need(hidden))} "
                     f"({copies} network(s) trained at once, {n_rows:,} rows, {n_inputs:,} inputs) but "
                     f"{_gb(available)} is available; {fits}")


def check_sizes(cfg, dataset, available=None):
    """Refuse data whose options cannot fit, after loading and before encoding: too few rows of
    a class for the ``CV_FOLDS``-fold cross-validation, an encoded matrix larger than the
    available memory, networks too wide for it or too slow to train. Raises ``UsageError``."""
    import pandas as pd
    import prep
    y = pd.Series(dataset.train[dataset.target])
    counts = y.value_counts()
    where = cfg.train or (dataset.files[0] if dataset.files else dataset.source)
    if counts.min() < CV_FOLDS:
        raise UsageError(f"training data {where}: class {prep.label_text(counts.idxmin())} has {counts.min()} row(s); "
                         f"the {CV_FOLDS}-fold cross-validation and the stratified validation split need "
                         f"at least {CV_FOLDS} rows of every class; add rows of that class or remove them")
    n_rows = len(dataset.train) + len(dataset.test)
    levels = {c: int(dataset.train[c].nunique()) for c in dataset.categorical}
    width = len(dataset.numeric) + sum(levels.values())
    n_fit = int(len(dataset.train) * (1 - cfg.val_size))
    available = available_memory() if available is None else available
    if available is not None:
        need = ENCODED_COPIES * 8 * n_rows * width
        if need > MEMORY_SHARE * available:
            widest = sorted(levels, key=levels.get, reverse=True)[:3]
            if widest and sum(levels[c] for c in widest) > len(dataset.numeric):
                fix = ("the widest categorical columns are "
                       + ", ".join(f"{c!r} ({levels[c]:,} levels)" for c in widest)
                       + f"; pass --drop {','.join(widest)}")
            else:               # the numeric columns are the width: fewer columns or rows
                fix = (f"{len(dataset.numeric):,} of the columns are numeric; pass --drop with the "
                       f"columns you can spare, or use fewer rows")
            raise UsageError(f"--drop: the encoded data ({n_rows:,} rows x {width:,} columns) needs "
                             f"about {_gb(need)} but {_gb(available)} is available; {fix}")
        check_network_memory(cfg.hidden, width, len(dataset.classes), n_fit, cfg.dtype, cfg.threads,
                             available=available)
    widths = (width, *cfg.hidden, len(dataset.classes))
    flops = 6.0 * n_fit * sum(a * b for a, b in zip(widths[:-1], widths[1:]))   # forward + backward
    seconds = cfg.iterations * flops / ASSUMED_FLOPS
    if seconds > MAX_TRAIN_SECONDS:
        fit = int(MAX_TRAIN_SECONDS * ASSUMED_FLOPS / flops)
        raise UsageError(f"--iterations: {cfg.iterations:,} full-batch iterations on {n_fit:,} rows "
                         f"with --hidden {','.join(map(str, cfg.hidden))} would take about "
                         f"{seconds / 3600:,.0f} hours per network; at most {fit:,} iterations fit in "
                         f"{MAX_TRAIN_SECONDS // 3600} hours (or use smaller --hidden)")


# -------------------------------------------------------------------- context
@dataclass(frozen=True)
class Rule:
    """A rule that decides a verdict: its name, its threshold and the sentence stating it.

    ``text`` is a format string over ``threshold``, ``points`` (the threshold
    ×100, for fractions read as points or percent), ``negative`` (−threshold,
    for two-sided rules) and the names in ``also`` (further numbers the rule
    uses); ``description`` is that sentence, and the report quotes it instead
    of restating the rule by hand.
    """
    name: str
    threshold: float
    text: str
    also: tuple = ()

    def value(self, name):
        """One of the further numbers in ``also`` by name."""
        return dict(self.also)[name]

    @property
    def description(self):
        return self.text.format(threshold=self.threshold, points=f"{self.threshold * 100:g}",
                                negative=-self.threshold, **dict(self.also))


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
        """Write ``df`` as ``out/tables/<name>.csv`` atomically and (if ``show``) add it to the report."""
        path = self.path("tables", name if name.endswith(".csv") else name + ".csv")
        rp.write_atomic(path, df.to_csv(index=not _plain_index(df)))
        if show:
            self.report.table(df, caption=caption, floatfmt=floatfmt)
        return path


def _plain_index(df):
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
        What ``schedule`` declared: the jobs and main-process steps of the run.
    """
    cfg: Config
    dataset: Any
    data: dict
    out: Path
    report: rp.Report
    metrics: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    jobs: Any = field(default_factory=lambda: jobs_mod.Jobs(0))
    parts: tuple = ()
    plan: Any = None

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


# How often a training tells the job pool how far it is (``_progress``).
PROGRESS_STEPS = 50


class Schedule(dict):
    """Name -> future, dict of futures or ``Step``: what ``schedule`` declared for a run."""

    def steps_before(self, code):
        """The steps declared to run before part ``code``, in declaration order."""
        return [s for s in self.values() if isinstance(s, Step) and s.before == code]


def _progress(label, n_iter, every=None, steps=PROGRESS_STEPS):
    """A ``progress`` callback for ``MLP.fit`` printing iteration, loss and elapsed time
    (``every`` iterations, default a quarter of them) and telling the job pool how far
    the training is (``jobs.report_progress``, ``steps`` times per training), for the
    console's estimate of the time left."""
    every = every or max(1, n_iter // 4)
    tell = max(1, n_iter // steps)
    t0 = time.perf_counter()

    def report(t, loss, val_loss):
        if (t + 1) % tell == 0 or t + 1 == n_iter:
            jobs_mod.report_progress((t + 1) / n_iter)
        if t == 0 or (t + 1) % every == 0 or t + 1 == n_iter:
            val = "" if val_loss != val_loss else f", val loss {val_loss:.4f}"
            print(f"    {label}: iteration {t + 1}/{n_iter}, loss {loss:.4f}{val}, "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    return report


def _fit_job(label, params, X, y, X_val, y_val):
    """One training, in a worker process or in-process: the fitted ``mlp.MLP``."""
    import mlp
    model = mlp.MLP(**params)
    model.fit(X, y, X_val, y_val, progress=_progress(label, params["n_iter"]))
    return model


def _fit_params(cfg, **params):
    """The run's training defaults (``Config``) overridden by ``params``."""
    kw = dict(hidden=cfg.hidden, activation="relu", lr=cfg.lr, n_iter=cfg.iterations,
              init="normal", init_scale=0.1, seed=cfg.seed, dtype=cfg.dtype)
    kw.update(params)
    return kw


def _train_async(ctx, label, data=None, priority=0, validate=True, group=None, **params):
    """Queue the training of an ``mlp.MLP`` on ``data`` (default: the run's encoded
    split) with the run's defaults overridden by ``params``; return its future.

    ``validate``: evaluate the validation split at every iteration (learning
    curves, early stopping); without it only the training loss is tracked.
    ``group``: the code of the part whose console section shows its lines.
    """
    d = ctx.data if data is None else data
    kw = _fit_params(ctx.cfg, **params)
    key = ("fit", label, validate, tuple(sorted(kw.items())))
    return ctx.jobs.submit(key, _fit_job, label, kw, d["X_train"], d["y_train"],
                           d["X_val"] if validate else None, d["y_val"] if validate else None,
                           priority=priority, group=group)


@dataclass(frozen=True, eq=False)
class Fitted:
    """A trained network and its ``evaluate`` scores on the data it was trained on."""
    model: Any
    scores: dict


def evaluate(model, data):
    """Accuracy and macro-F1 of ``model`` on the train, val and test arrays of ``data``,
    with the predictions (``"pred"``) they came from: ``{split: {"acc", "macro_f1", "pred"}}``
    (``acc`` and ``macro_f1`` None for a split without labels: an unlabelled test file)."""
    from sklearn.metrics import accuracy_score, f1_score
    out = {}
    for split in ("train", "val", "test"):
        y, p = data[f"y_{split}"], model.predict(data[f"X_{split}"])
        if y is None:
            out[split] = {"acc": None, "pred": p, "macro_f1": None}
            continue
        out[split] = {"acc": float(accuracy_score(y, p)), "pred": p,
                      "macro_f1": float(f1_score(y, p, average="macro"))}
    return out


def _splits(data):
    """The arrays of ``data`` a worker job needs (not the frames and the preprocessor)."""
    return {f"{a}_{split}": data[f"{a}_{split}"] for split in ("train", "val", "test") for a in ("X", "y")}


def _fit_scored_job(label, params, data, validate):
    """One training and its ``evaluate`` scores (in a worker): a ``Fitted``."""
    model = _fit_job(label, params, data["X_train"], data["y_train"],
                     data["X_val"] if validate else None, data["y_val"] if validate else None)
    return Fitted(model, evaluate(model, data))


def best_network(scores):
    """THE rule that picks the network the later parts study: the highest validation
    accuracy (first in run order on ties). ``scores``: activation -> ``evaluate`` output."""
    return max(scores, key=lambda act: scores[act]["val"]["acc"])


# ---------------------------------------------------------------------- parts
# Each part: a frozen result (numbers, arrays, frames; no prose, no files), a
# ``compute_<part>(ctx) -> <Part>Result`` and a ``render_<part>(result, out)``
# that writes its tables, figures and report blocks. ``result.to_metrics()`` is
# the part's entry in metrics.json; ``accuracy`` and ``headline`` feed the summary.

class _Result:
    """What every part result offers the summary (overridden where a part has it)."""

    @property
    def accuracy(self):
        """Network -> split -> accuracy, for the summary's accuracy table."""
        return {}


# Part A's rule for a suspiciously dominant feature (``prep.dominance`` applies it).
DOMINANCE = Rule("dominance", 2.0,
                 "a feature is *suspiciously dominant* when its pps is at least {threshold:g}× the "
                 "runner-up's and at least {min_pps:g}", also=(("min_pps", 0.3),))


@dataclass(frozen=True, eq=False)
class AResult(_Result):
    """Part A: structure, missingness, classes, encoding, correlations, predictive power.

    Frames keep their column names as in the CSV tables; ``train`` is the
    training frame the EDA figures draw.
    """
    target: str
    numeric: list
    categorical: list
    n_train: int
    n_test: int
    n_columns: int
    structure: Any              # DataFrame, one row per column
    missing: Any                # DataFrame, one row per column (train/test missing)
    n_missing_train: int
    n_missing_columns: int
    n_missing_test: int
    only_in_train: list
    skewness: dict
    class_distribution: dict    # prep.class_distribution output
    spread: dict                # numeric column -> std before scaling
    statistics: Any             # the preprocessor's fitted statistics
    n_onehot: int
    feature_names: list
    feature_source: list
    train: Any                  # DataFrame drawn by the EDA figures
    corr: Any                   # ndarray (n_features, n_features)
    corr_threshold: float
    pairs: Any                  # DataFrame of |r| >= corr_threshold pairs
    predictive_power: Any       # DataFrame indexed by feature, sorted by pps
    dominance: dict             # prep.dominance output under DOMINANCE
    top: list                   # the three features with the highest pps
    excluded: Any = None        # DataFrame, prep.screen_columns: column, kind, rule, reason, ..., action
    predictive_note: str = None  # predictive_power's attrs["note"] (sub-sampled rows, unscored features)
    corr_n_features: int = 0    # encoded features the correlations scanned
    corr_top_k: int = 0         # of which the heatmap shows at most this many
    n_pairs_found: int = 0      # pairs with |r| >= corr_threshold (``pairs`` keeps the strongest)
    pairs_truncated: bool = False
    figure_numeric: list = ()   # the numeric columns the box plots show (highest pps first)
    figure_categorical: list = ()  # the categorical columns the count plots show
    figure_limit: int = 0       # at most this many feature columns in the figures (FIGURE_FEATURES)

    @property
    def headline(self):
        cd = self.class_distribution
        return (f"{self.n_train:,} rows, {self.n_missing_train:,} missing cells, majority baseline "
                f"{cd['majority_baseline_accuracy']:.3f}; top feature {self.top[0]}"
                + (" (dominant)" if self.dominance["dominant"] else ""))

    def to_metrics(self):
        import prep
        j = prep.to_jsonable
        return {"structure": {"n_train": self.n_train, "n_test": self.n_test, "numeric": self.numeric,
                              "categorical": self.categorical, "target": self.target,
                              "columns": j(self.structure)},
                "missing": j(self.missing),
                "imputation": {"numeric": "median (training split)",
                               "categorical": "most frequent (training split)", "skewness": self.skewness},
                "class_distribution": j(dict(self.class_distribution)),
                "encoding": {"feature_names": self.feature_names, "feature_source": self.feature_source,
                             "statistics": j(self.statistics)},
                "correlated_pairs": j(self.pairs),
                "predictive_power": j(self.predictive_power.reset_index()),
                "dominance": j(self.dominance),
                "expected_top_features": self.top,
                "screened_columns": j(self.excluded) if self.excluded is not None else [],
                "notes": {"predictive_power": self.predictive_note,
                          "correlation": {"n_features": self.corr_n_features, "heatmap_top_k": self.corr_top_k,
                                          "n_pairs_found": self.n_pairs_found,
                                          "pairs_truncated": self.pairs_truncated},
                          "figures": {"numeric": list(self.figure_numeric),
                                      "categorical": list(self.figure_categorical),
                                      "limit": self.figure_limit}},
                "headline": self.headline}


# Part A's figures draw at most this many feature columns, those with the highest pps:
# a 1,000-column file would otherwise make a figure of 1,000 panels (memory, minutes).
FIGURE_FEATURES = 12
# Part A's report shows at most this many correlated pairs (the CSV holds all that were kept).
PAIRS_SHOWN = 20


def _figure_columns(pp, numeric, categorical, limit=FIGURE_FEATURES):
    """The numeric and categorical columns Part A's figures show: the ``limit`` features
    with the highest pps (unscored ones last, in file order), each list in pps order."""
    ranked = [f for f in pp.index if pp.loc[f, "pps"] == pp.loc[f, "pps"]]
    ranked += [f for f in list(numeric) + list(categorical) if f not in ranked]
    chosen = ranked[:limit]
    return [f for f in chosen if f in numeric], [f for f in chosen if f in categorical]


def compute_a(ctx):
    """Part A's numbers: structure, columns that are no features (``Dataset.excluded``),
    missing values, class balance, encoding, correlations, each feature's predictive
    power and whether one dominates (``DOMINANCE``), and the columns the figures show."""
    import prep

    ds, cfg, d = ctx.dataset, ctx.cfg, ctx.data
    tgt, num, cat = ds.target, list(ds.numeric), list(ds.categorical)
    st = prep.structure_table(ds.train, tgt)
    miss = prep.missing_table(ds.train, ds.test)
    fit_df = d["train_df"]
    cd = prep.class_distribution(ds.train[tgt])
    corr, pairs = prep.correlation_pairs(d["X_train"], d["feature_names"], threshold=cfg.corr_threshold)
    pp = prep.predictive_power(ds.train, tgt, num, cat, seed=cfg.seed)
    fig_num, fig_cat = _figure_columns(pp, num, cat)
    return AResult(
        target=tgt, numeric=num, categorical=cat, n_train=len(ds.train), n_test=len(ds.test),
        n_columns=ds.train.shape[1], structure=st.reset_index(), missing=miss.reset_index(),
        n_missing_train=int(miss["train_missing"].fillna(0).sum()),
        n_missing_columns=int((miss["train_missing"].fillna(0) > 0).sum()),
        n_missing_test=int(miss["test_missing"].fillna(0).sum()),
        only_in_train=[c for c, v in miss["only_in_train"].items() if v],
        skewness={c: float(fit_df[c].skew()) for c in num}, class_distribution=cd,
        spread={c: float(fit_df[c].std()) for c in num}, statistics=d["preprocessor"].statistics_,
        n_onehot=sum(1 for s in d["feature_source"] if s in cat),
        feature_names=list(d["feature_names"]), feature_source=list(d["feature_source"]),
        train=ds.train, corr=corr, corr_threshold=cfg.corr_threshold, pairs=pairs,
        predictive_power=pp,
        dominance=prep.dominance(pp, ratio=DOMINANCE.threshold, min_pps=DOMINANCE.value("min_pps")),
        top=list(pp.index[:3]),
        excluded=ds.excluded.copy(), predictive_note=pp.attrs.get("note"),
        corr_n_features=int(corr.attrs.get("n_features", len(d["feature_names"]))),
        corr_top_k=int(corr.attrs.get("top_k", len(corr))),
        n_pairs_found=int(pairs.attrs.get("n_pairs_found", len(pairs))),
        pairs_truncated=bool(pairs.attrs.get("truncated", False)),
        figure_numeric=fig_num, figure_categorical=fig_cat, figure_limit=FIGURE_FEATURES)


# Column names of the CSVs as the report's tables show them.
_READABLE = {"train_acc": "train accuracy", "val_acc": "validation accuracy", "test_acc": "test accuracy",
             "final_loss": "final loss", "final_val_loss": "final validation loss"}


def _show_table(out, df, name, caption=None, shown=None, **table_kw):
    """Write ``df`` in full as ``out/tables/<name>.csv`` and show ``shown`` (default ``df``)
    in the report with ``Report.table``'s options (``floatfmt``, ``formats``, ``na``, ``key``)."""
    path = out.save_table(df, name, show=False)
    out.report.table(df if shown is None else shown, caption=caption, **table_kw)
    return path


# How Part A's table names the rules of ``prep.SCREEN_RULES`` (the key itself when missing here).
_SCREEN_LABELS = {"constant": "constant", "date": "date/time", "id_like": "ID-like",
                  "high_cardinality": "very high cardinality"}


def _render_screened(res, out):
    """Part A's table of the columns that are not features (``AResult.excluded``) and
    what was done with them: left out of the inputs, kept (``--keep-columns``) or
    expanded (``--expand-dates``)."""
    import prep
    r, table = out.report, res.excluded
    r.heading("Columns that are not features", 3)
    if table is None or not len(table):
        labels = [_SCREEN_LABELS.get(k, k) for k in prep.SCREEN_RULES]
        r.para("Every column looks like a feature: none matches a rule of the screen ("
               + ", ".join(labels) + ").")
        return
    shown = table.assign(reason=[_SCREEN_LABELS.get(k, k) for k in table["rule"]])
    _show_table(out, table, "a_screened_columns", caption="Columns screened out of train.csv",
                shown=shown[["column", "reason", "detail", "action", "kind"]], key=["column", "reason"])
    action = table["action"].astype(str)
    left_out = list(table.loc[action == "excluded", "column"])
    kept = list(table.loc[action.str.startswith("kept"), "column"])
    expanded = table.loc[action.str.startswith("expanded")]
    items = []
    if left_out:
        items.append(f"{_names(left_out)} {'was' if len(left_out) == 1 else 'were'} **left out of the "
                     "network's inputs** (and of every later part). To use "
                     f"{'it' if len(left_out) == 1 else 'one'} anyway, pass "
                     f"`--keep-columns {left_out[0]}` (a comma-separated list keeps several).")
    if kept:
        items.append(f"{_names(kept)} {'is' if len(kept) == 1 else 'are'} flagged but kept, as "
                     "`--keep-columns` asked.")
    for col, act in zip(expanded["column"], expanded["action"]):
        items.append(f"`{col}` was {act.replace('expanded into ', 'expanded into numeric ')} "
                     "(`--expand-dates`).")
    dates = [c for c, rule, a in zip(table["column"], table["rule"], action) if rule == "date" and a == "excluded"]
    if dates:
        items.append("`--expand-dates` turns a date column into numeric year, month and day-of-week "
                     f"columns instead of leaving it out ({_names(dates)}).")
    for rule in dict.fromkeys(table["rule"]):
        items.append(f"*{_SCREEN_LABELS.get(rule, rule)}*: {_sentence(prep.SCREEN_RULES.get(rule, rule))}")
    r.bullets(items)


def _shown_of(shown, total, what):
    """A caption's note on a figure that shows some of the features: "" when it shows all."""
    if len(shown) >= total:
        return ""
    return (f": the {len(shown)} of {total:,} {what} with the highest predictive power "
            "(all of them in tables/a_predictive_power.csv)")


def render_a(res, out):
    """Part A's tables (tables/a_*.csv), figures (figures/a_*.png) and report section."""
    import plots

    r, num, cat, tgt = out.report, res.numeric, res.categorical, res.target
    r.heading("Structure", 3)
    _show_table(out, res.structure, "a_structure", caption="Columns of train.csv",
                formats={c: ".1%" for c in ("missing_share",) if c in res.structure})
    r.para(f"train: {res.n_train:,} rows × {res.n_columns} columns "
           f"({len(num)} numeric, {len(cat)} categorical, target `{tgt}`); "
           f"test: {res.n_test:,} rows.")
    _render_screened(res, out)

    r.heading("Missing values and imputation", 3)
    _show_table(out, res.missing, "a_missing", caption="Missing cells per column", floatfmt=".3g",
                formats={c: ".1%" for c in ("train_share", "test_share") if c in res.missing})
    only_train = res.only_in_train
    r.bullets([
        f"{res.n_missing_train:,} missing cells in train across {res.n_missing_columns} columns; "
        f"{res.n_missing_test:,} in test"
        + (f" (columns missing only in train: {', '.join(only_train)})" if only_train else "") + ".",
        "Numeric columns are imputed with the **median** of the training split: "
        + ", ".join(f"`{c}` skewness {s:+.2f}" for c, s in res.skewness.items())
        + "; the median is robust to the long tails a mean would follow.",
        "Categorical columns are imputed with the **most frequent level** of the training split.",
        "Imputation never looks at the label (a rule that uses the label cannot be applied to "
        "unlabelled rows and leaks the target) and is fit on the training split only, never on "
        "validation or test. Part D tries missing-value indicator columns as a mitigation.",
    ])

    r.heading("Class distribution", 3)
    cd = res.class_distribution
    fig = plots.class_distribution(cd["table"]["count"].to_numpy(), list(cd["table"].index))
    out.save_figure(fig, "a_class_distribution.png", "Class counts and shares in train.csv")
    r.para(f"The majority class, `{cd['majority_class']}`, holds {cd['majority_baseline_accuracy']:.1%} of "
           f"the rows (the accuracy of always predicting it); the smallest class, `{cd['minority_class']}`, "
           f"holds {cd['table']['share'].min():.1%}. The largest class is {cd['imbalance_ratio']:.1f}× the "
           "smallest.")
    out.save_table(cd["table"].reset_index(), "a_classes", caption="Class counts (train)", show=False)

    r.heading("Encoding and scaling", 3)
    spread = res.spread
    r.bullets([
        f"{len(cat)} categorical columns become {res.n_onehot} "
        "one-hot columns (nominal levels have no order; an integer code would invent one). "
        "Levels unseen in training encode as all zeros.",
        "Numeric columns are z-scored: before scaling their standard deviations range from "
        f"{min(spread.values()):.3g} to {max(spread.values()):.3g}, and gradient descent with one "
        "learning rate needs inputs on one scale."
        if num else "No numeric columns.",
        f"{len(res.feature_names)} encoded features in total.",
    ])

    r.heading("Features against the target", 3)
    fig_num, fig_cat = list(res.figure_numeric), list(res.figure_categorical)
    if fig_num:
        out.save_figure(plots.numeric_boxplots(res.train, fig_num, tgt), "a_numeric_boxplots.png",
                        "Numeric features by class (train)" + _shown_of(fig_num, len(num), "numeric features"))
    if fig_cat:
        out.save_figure(plots.categorical_countplots(res.train, fig_cat, tgt), "a_categorical_counts.png",
                        "Categorical features by class (train)"
                        + _shown_of(fig_cat, len(cat), "categorical features"))
    if len(fig_num) + len(fig_cat) < len(num) + len(cat):
        r.para(f"The figures show the {len(fig_num) + len(fig_cat)} features with the highest predictive "
               f"power (at most {res.figure_limit}) of {len(num) + len(cat):,}, so that they stay "
               "legible and small.")

    r.heading("Correlations", 3)
    th = res.corr_threshold
    n_corr = len(res.corr)
    out.save_figure(plots.correlation_heatmap(res.corr, th), "a_correlation.png",
                    "Pearson correlation of the encoded training features"
                    + (f": the {n_corr} of {res.corr_n_features:,} most correlated with another feature"
                       if n_corr < res.corr_n_features else ""))
    if n_corr < res.corr_n_features:
        r.para(f"The heatmap shows the {n_corr} of the {res.corr_n_features:,} encoded features with the "
               f"strongest correlation to any other (at most {res.corr_top_k}); every pair was scanned "
               "for the table below.")
    if len(res.pairs):
        pairs = res.pairs.drop(columns=[c for c in ("threshold",) if c in res.pairs])
        _show_table(out, res.pairs, "a_correlated_pairs", caption=f"Pairs with |r| ≥ {th:g}", floatfmt=".2f",
                    shown=pairs.head(PAIRS_SHOWN))
        if res.n_pairs_found > min(len(pairs), PAIRS_SHOWN):
            r.para(f"{res.n_pairs_found:,} pairs of encoded features have |r| ≥ {th:g}; the table shows the "
                   f"{min(len(pairs), PAIRS_SHOWN)} strongest and tables/a_correlated_pairs.csv "
                   + (f"the {len(pairs):,} strongest." if res.pairs_truncated else "all of them."))
    else:
        r.para(f"No pair of encoded features has |r| ≥ {th:g}.")

    r.heading("Which features should matter", 3)
    pp, dom = res.predictive_power, res.dominance
    out.save_table(pp.reset_index(), "a_predictive_power", floatfmt=".3f",
                   caption="Each feature alone: cross-validated single-feature tree (pps: 0 = no "
                           "better than chance, 1 = perfect) and mutual information with the label")
    text = ("By predictive power the features expected to matter most are "
            + ", ".join(f"`{f}` (pps {pp.loc[f, 'pps']:.2f})" for f in res.top) + ". ")
    if dom["dominant"]:
        text += (f"**`{dom['feature']}` is suspiciously dominant**: alone it reaches pps "
                 f"{dom['pps']:.2f}, {dom['observed_ratio']:.1f}× the runner-up `{dom['runner_up']}` "
                 f"({dom['runner_up_pps']:.2f}). A single feature that predicts a label this well "
                 "deserves a check that the relationship also holds on new data (Part D).")
    else:
        ratio = dom["observed_ratio"]
        text += ("No feature dominates" + (f": the best reaches {ratio:.1f}× the runner-up"
                 if ratio is not None else "") + f" (rule: {DOMINANCE.description}).")
    r.para(text)
    if res.predictive_note:
        r.para(_sentence(res.predictive_note))


# Part B's rules.
STUCK = Rule("stuck at baseline", 0.005,
             "a network is *stuck* when its validation accuracy is within {points} points of the "
             "majority-class baseline")
VANISHING = Rule("vanishing gradient", 1.0,
                 "the backward signal *vanishes* when mean |dL/dW2| / mean |dL/dW1| exceeds "
                 "{threshold:g} at the first iteration")
SIGMOID_LIFT = Rule("sigmoid set-up lift", 0.01,
                    "a change of set-up *lifts* the sigmoid network when it raises validation "
                    "accuracy by more than {points} point")


def _grad_table(hist, k=10):
    """Mean |dL/dW1|, |dL/dW2| and their ratio per iteration: the first and last ``k``
    iterations, or every iteration when ``k`` is None (the CSV ``render_b`` writes)."""
    import pandas as pd
    g = hist["grad_abs_mean"]
    n = len(g)
    idx = list(range(n)) if k is None else sorted(set(range(min(k, n))) | set(range(max(0, n - k), n)))
    return pd.DataFrame({"iteration": [i + 1 for i in idx], "mean|dL/dW1|": g[idx, 0],
                         "mean|dL/dW2|": g[idx, 1], "ratio W2/W1": g[idx, 1] / g[idx, 0]})


def _sample_iterations(n, max_rows=8):
    """A few iterations out of ``1..n`` for a table a reader can take in: the first, the
    1-2-5 steps in between (gradients change fastest early) and the last, at most ``max_rows``."""
    steps, base = [], 1
    while base < n:
        steps += [x * base for x in (1, 2, 5) if x * base < n]
        base *= 10
    steps = sorted(set(steps) | {n})
    if len(steps) > max_rows:           # keep first and last, thin the middle evenly
        keep = [round(i * (len(steps) - 1) / (max_rows - 1)) for i in range(max_rows)]
        steps = [steps[i] for i in sorted(set(keep))]
    return steps


def _sigmoid_trials(cfg):
    """(init, lr) of the sigmoid set-up study; the first is the assignment's set-up."""
    return [("normal", cfg.lr), ("glorot", cfg.lr), ("glorot", cfg.lr * 10)]


def _sigmoid_verdict(rows):
    """``SIGMOID_LIFT`` on the study's rows (first: the assignment's set-up, then Glorot
    at the same step, then Glorot with the larger step): "step_size", "init" or "activation"."""
    base = rows[0]["val_acc"]
    init_only, both = rows[1]["val_acc"] - base, rows[2]["val_acc"] - base
    if both > SIGMOID_LIFT.threshold and init_only <= SIGMOID_LIFT.threshold:
        return "step_size"
    if init_only > SIGMOID_LIFT.threshold:
        return "init"
    return "activation"


@dataclass(frozen=True, eq=False)
class BResult(_Result):
    """Part B: one trained network per activation, gradient magnitudes per layer,
    the sigmoid set-up study and the gradient ratio against depth.

    ``gradients[act]`` is the network's mean |dL/dW| per iteration and weight
    layer, shape ``(n_iter, n_layers)`` (hidden layers first, output last).
    """
    n_features: int
    hidden: tuple
    n_classes: int
    lr: float
    iterations: int
    dtype: str
    n_fit: int
    n_val: int
    networks: dict              # activation -> trained mlp.MLP (for C and D)
    scores: dict                # activation -> evaluate() output
    best: str                   # best_network(scores)
    final: list                 # per activation: accuracies, final losses, iterations
    baseline: dict              # majority-class accuracy, {"train", "val"}
    stuck: list                 # activations stuck at the baseline (STUCK)
    gradients: dict             # activation -> ndarray (n_iter, n_layers)
    gradient_tables: dict       # activation -> DataFrame, first/last 10 iterations
    gradient_summary: list      # per activation: first/last magnitudes and ratios
    vanishing: list             # activations whose first-iteration ratio exceeds VANISHING
    sigmoid_setup: Any          # list of rows, or None without sigmoid
    sigmoid_verdict: Any        # _sigmoid_verdict(sigmoid_setup), or None
    depths: list
    depth_ratios: dict          # activation -> ratio per depth
    depth_width: int
    repeats: int

    @property
    def accuracy(self):
        return {row["activation"]: {"train": row["train_acc"], "val": row["val_acc"]} for row in self.final}

    @property
    def headline(self):
        return "; ".join(f"{row['activation']} val {row['val_acc']:.3f}" for row in self.final)

    def to_metrics(self):
        grads = {}
        for act, g in self.gradients.items():
            grads[act] = {"mean_abs_dW": g.tolist()}
            row = next((r for r in self.gradient_summary if r["activation"] == act), None)
            if row is not None:
                grads[act].update({"ratio_first": float(row["ratio W2/W1 first"]),
                                   "ratio_last": float(row["ratio W2/W1 last"]),
                                   "ratio_median": row["ratio W2/W1 median"],
                                   "dW1_change": float(g[-1, 0] / g[0, 0])})
        m = {"accuracy": self.accuracy, "final": self.final, "majority_baseline": self.baseline,
             "stuck_at_baseline": self.stuck, "gradients": grads, "gradient_summary": self.gradient_summary}
        if self.sigmoid_setup is not None:
            m["sigmoid_setup"] = self.sigmoid_setup
        m["depth_ratios"] = {"depths": self.depths, "ratios": self.depth_ratios, "width": self.depth_width}
        m["headline"] = self.headline
        return m


def _networks_step(data, models):
    """Step ``B.networks``: Part B's trained networks with their ``evaluate`` scores."""
    return {act: Fitted(model, evaluate(model, data)) for act, model in models.items()}


def compute_b(ctx):
    """Part B's numbers: the trained networks (step ``B.networks``), their accuracies and
    per-layer gradient magnitudes, the sigmoid set-up study (jobs ``B.sigmoid``) and
    the gradient ratio against depth at initialisation (trained here, one iteration each)."""
    import numpy as np
    import mlp

    cfg, d, plan = ctx.cfg, ctx.data, ctx.plan
    fitted = plan["B.networks"].result()
    nets = {act: f.model for act, f in fitted.items()}
    scores = {act: f.scores for act, f in fitted.items()}
    base = float(np.bincount(d["y_train"]).max() / len(d["y_train"]))
    base_val = float(np.mean(d["y_val"] == np.bincount(d["y_train"]).argmax()))
    rows = []
    for act, model in nets.items():
        h = model.history_
        rows.append({"activation": act, "train_acc": scores[act]["train"]["acc"],
                     "val_acc": scores[act]["val"]["acc"],
                     "final_loss": float(h["loss"][-1]), "final_val_loss": float(h["val_loss"][-1]),
                     "iterations": model.n_iter_})
    stuck = [row["activation"] for row in rows if abs(row["val_acc"] - base_val) < STUCK.threshold]

    grads = {act: model.history_["grad_abs_mean"] for act, model in nets.items()}
    tables, summary_rows = {}, []
    if len(cfg.hidden) >= 2:
        for act, model in nets.items():
            tables[act] = _grad_table(model.history_)
            g = grads[act]
            ratio = g[:, 1] / g[:, 0]
            summary_rows.append({"activation": act, "dW1 first": g[0, 0], "dW1 last": g[-1, 0],
                                 "dW2 first": g[0, 1], "dW2 last": g[-1, 1],
                                 "ratio W2/W1 first": ratio[0], "ratio W2/W1 last": ratio[-1],
                                 "ratio W2/W1 median": float(np.median(ratio))})
    vanishing = [row["activation"] for row in summary_rows if row["ratio W2/W1 first"] > VANISHING.threshold]

    sig_rows = verdict = None
    if "sigmoid" in cfg.activations:
        sig_rows = []
        for init, lr in _sigmoid_trials(cfg):
            model = nets["sigmoid"] if (init, lr) == ("normal", cfg.lr) else plan["B.sigmoid"][(init, lr)].result()
            g = model.history_["grad_abs_mean"]
            sig_rows.append({"init": init, "lr": lr, "train_acc": model.score(d["X_train"], d["y_train"]),
                             "val_acc": model.score(d["X_val"], d["y_val"]),
                             "final_loss": float(model.history_["loss"][-1]),
                             "ratio W2/W1 median": float(np.median(g[:, 1] / g[:, 0])) if g.shape[1] > 2 else None})
        verdict = _sigmoid_verdict(sig_rows)

    depths, width, ratios = list(range(2, 7)), cfg.hidden[0], {}
    for act in cfg.activations:
        vals = []
        for depth in depths:
            per_seed = []
            for s in range(cfg.repeats):
                probe = mlp.MLP(hidden=(width,) * depth, activation=act, n_iter=1, lr=cfg.lr,
                                init="normal", init_scale=0.1, seed=cfg.seed + s, dtype=cfg.dtype)
                probe.fit(d["X_train"], d["y_train"])
                g = probe.history_["grad_abs_mean"][0]
                per_seed.append(g[depth - 1] / g[0])
            vals.append(float(np.exp(np.mean(np.log(per_seed)))))
        ratios[act] = vals
    return BResult(
        n_features=d["X_train"].shape[1], hidden=cfg.hidden, n_classes=len(ctx.dataset.classes),
        lr=cfg.lr, iterations=cfg.iterations, dtype=cfg.dtype, n_fit=len(d["y_train"]),
        n_val=len(d["y_val"]), networks=nets, scores=scores, best=best_network(scores), final=rows,
        baseline={"train": base, "val": base_val}, stuck=stuck, gradients=grads, gradient_tables=tables,
        gradient_summary=summary_rows, vanishing=vanishing, sigmoid_setup=sig_rows,
        sigmoid_verdict=verdict, depths=depths, depth_ratios=ratios, depth_width=width,
        repeats=cfg.repeats)


_SIGMOID_VERDICTS = {
    "step_size": "Glorot initialisation alone does not lift it by more than a point within {iterations} "
                 "iterations; with the larger step it does. What holds the sigmoid network back at the "
                 "assignment's settings is the step size, too small for gradients that shrink by "
                 "g'(z) ≤ 0.25 per layer — not an inability of sigmoid to fit this task.",
    "init": "The initialisation alone already lifts it: the N(0, 0.1²) weights leave the sigmoid units "
            "in a regime where too little gradient reaches the first layer.",
    "activation": "Neither change lifts it by more than a point within {iterations} iterations: here "
                  "the activation itself is the limit.",
}


def render_b(res, out):
    """Part B's tables (tables/b_*.csv), figures (figures/b_*.png) and report section."""
    import pandas as pd
    import plots

    r = out.report
    base, base_val = res.baseline["train"], res.baseline["val"]
    r.heading("B(a): two hidden layers, full-batch gradient descent", 3)
    r.para(f"Network {res.n_features}-{'-'.join(map(str, res.hidden))}-{res.n_classes}"
           f" (softmax output, mean cross-entropy), weights N(0, 0.1²), zero biases, learning rate "
           f"{res.lr:g}, {res.iterations} full-batch iterations, {res.dtype}; trained on the "
           f"{res.n_fit:,}-row training split, validated on {res.n_val:,} rows. Forward "
           "pass, loss and backpropagation are hand-written numba kernels (`mlp.loss_and_grads`), "
           "checked against finite differences and a NumPy reference in the tests.")
    final = pd.DataFrame(res.final)
    _show_table(out, final, "b_accuracy", caption=f"Final accuracy (majority-class "
                f"baseline: train {base:.3f}, validation {base_val:.3f})", floatfmt=".3f",
                shown=final.rename(columns=_READABLE), na={"final loss": "diverged", "final validation loss":
                                                          "diverged"})
    out.save_figure(plots.accuracy_curves({a: n.history_ for a, n in res.networks.items()}, baseline=base),
                    "b_accuracy_curves.png", "Train (solid) and validation (dashed) accuracy per iteration")
    best = next(row for row in res.final if row["activation"] == res.best)
    text = (f"`{best['activation']}` reaches the best validation accuracy, {best['val_acc']:.3f} "
            f"(train {best['train_acc']:.3f}).")
    if res.stuck:
        one = len(res.stuck) == 1
        text += (f" {_names(res.stuck)} {'is' if one else 'are'} stuck ({STUCK.description}; "
                 f"baseline {base_val:.3f}): {'it predicts' if one else 'they predict'} (almost) only the "
                 "majority class.")
    r.para(text)

    r.heading("B(b): gradient magnitudes per layer", 3)
    series = {}
    for act, g in res.gradients.items():
        series[(act, "layer 1")] = g[:, 0]
        if g.shape[1] > 2:
            series[(act, "layer 2")] = g[:, 1]
    out.save_figure(plots.gradient_magnitudes(series), "b_gradient_magnitudes.png",
                    "Mean |dL/dW| of the first and second hidden layer's weights per iteration (log scale)")
    if res.gradient_summary:
        r.para("In the tables, mean |dL/dW1| is the mean absolute gradient of the loss with respect to the weights of the "
               "first hidden layer (the layer nearest the input), mean |dL/dW2| the same for the second; "
               "their ratio W2/W1 above 1 means the gradient shrinks on its way back to the first layer.")
        plain = {c: _plain_number for c in ("mean|dL/dW1|", "mean|dL/dW2|", "ratio W2/W1")}
        for act, g in res.gradients.items():
            full = _grad_table({"grad_abs_mean": g}, k=None)      # every iteration, for the CSV
            path = out.save_table(full, f"b_gradients_{act}", show=False)
            shown = full[full["iteration"].isin(_sample_iterations(len(full)))].reset_index(drop=True)
            r.table(shown, formats=plain,
                    caption=f"{act}: gradient magnitudes at {len(shown)} of its {len(full)} iterations "
                            f"(every iteration: [{rp.display_path(path, out.out)}]"
                            f"({rp.display_path(path, out.out)}))")
        rows = res.gradient_summary
        _show_table(out, pd.DataFrame(rows), "b_gradient_summary", caption="Gradient magnitudes: first vs "
                    "last iteration", formats={c: _plain_number for c in rows[0] if c != "activation"})
        lines = []
        for row in rows:
            first, last = row["ratio W2/W1 first"], row["ratio W2/W1 last"]
            where = "smaller in the first layer" if first > VANISHING.threshold else "larger in the first layer"
            lines.append(f"`{row['activation']}`: at the first iteration mean |dL/dW2| / mean |dL/dW1| = "
                         f"{first:.2f} (gradients {where}); at the last iteration {last:.2f}. "
                         f"Over training mean |dL/dW1| goes from {_plain_number(row['dW1 first'])} to "
                         f"{_plain_number(row['dW1 last'])}.")
        if res.vanishing:
            vanishing = [row for row in rows if row["activation"] in res.vanishing]
            worst = max(vanishing, key=lambda row: row["ratio W2/W1 first"])
            cmp = "".join(f" ({o['activation']}: {o['ratio W2/W1 first']:.2f})" for o in rows if o is not worst)
            lines.append(f"With `{worst['activation']}` the backward signal loses a factor "
                         f"{worst['ratio W2/W1 first']:.1f} between the second and the first hidden layer "
                         f"at the start of training{cmp}: each layer multiplies it by g'(z), which for "
                         "sigmoid is at most 0.25, so the layer nearest the input learns slowest. This is "
                         "the vanishing-gradient effect, already visible with two hidden layers; the depth "
                         "study below shows how it compounds per layer.")
        else:
            lines.append(f"No activation shows vanishing gradients at the start ({VANISHING.description}): "
                         "with two hidden layers the backward signal does not vanish here.")
        r.bullets(lines)
    else:
        r.para("Only one hidden layer: no layer-2/layer-1 ratio to report.")

    if res.sigmoid_setup is not None:
        r.heading("Sigmoid: activation or set-up?", 3)
        rows = res.sigmoid_setup
        _show_table(out, pd.DataFrame(rows), "b_sigmoid_setup", formats={"lr": "g"}, na={"final loss": "diverged"},
                    shown=pd.DataFrame(rows).rename(columns=_READABLE),
                    caption="Sigmoid networks with other initialisation and step size", floatfmt=".3f")
        base_row = rows[0]
        effects = [f"init `{row['init']}` with lr {row['lr']:g}: {row['val_acc']:.3f} validation accuracy "
                   f"({_points(row['val_acc'] - base_row['val_acc'])})" for row in rows[1:]]
        r.para(f"Against the assignment's set-up (init `normal`, lr {base_row['lr']:g}: "
               f"{base_row['val_acc']:.3f}): " + "; ".join(effects) + ". "
               + _SIGMOID_VERDICTS[res.sigmoid_verdict].format(iterations=res.iterations)
               + f" (Rule: {SIGMOID_LIFT.description}.)")

    r.heading("Gradient ratio against depth", 3)
    depths, ratios = res.depths, res.depth_ratios
    out.save_figure(plots.depth_ratios(depths, ratios), "b_depth_ratios.png",
                    f"Mean |dL/dW| of the last hidden layer over the first, at initialisation "
                    f"(width {res.depth_width}, N(0, 0.1²), geometric mean of {_plural(res.repeats, 'seed')})")
    out.save_table(pd.DataFrame({"hidden layers": depths, **{act: ratios[act] for act in ratios}}),
                   "b_depth_ratios", caption="Last-hidden / first-layer gradient ratio at init",
                   floatfmt=".3g")
    lines = []
    for act, vals in ratios.items():
        growth = (vals[-1] / vals[0]) ** (1 / (depths[-1] - depths[0]))
        lines.append(f"`{act}`: ratio {_plain_number(vals[0])} at {depths[0]} layers, "
                     f"{_plain_number(vals[-1])} at {depths[-1]} layers (×{growth:.2f} per added layer).")
    r.bullets(lines)


def attribution_checks(data, cfg, act, model):
    """Sensitivity of ``model`` (mean |do_m/dx| over the correctly classified training
    samples, ``mlp.feature_attribution``) and its ``mlp.permutation_check`` on the
    training split and the test set: ``{"sensitivity": ..., "permutation": {split: ...},
    "seconds_sensitivity": ...}`` (the time of the sensitivity alone, for Part C's
    ``seconds_attribution``). Part C reports them; Part D's diagnosis uses the permutation importances."""
    import mlp
    names, source = list(data["feature_names"]), list(data["feature_source"])
    t0 = time.perf_counter()
    sens = mlp.feature_attribution(model.weights_, model.biases_, data["X_train"], data["y_train"], act,
                                   target="output", samples="correct", feature_names=names,
                                   feature_source=source)
    seconds = time.perf_counter() - t0
    perm = {split: mlp.permutation_check(model, data[f"X_{split}"], data[f"y_{split}"], sens, names, source,
                                         n_repeats=cfg.repeats, seed=cfg.seed)
            for split in ("train", "test") if data[f"y_{split}"] is not None}   # test may be unlabelled
    return {"sensitivity": sens, "permutation": perm, "seconds_sensitivity": seconds}


def _checks_step(ctx, networks):
    """Step ``checks``: ``attribution_checks`` of Part B's best network."""
    act = best_network({a: f.scores for a, f in networks.items()})
    return attribution_checks(ctx.data, ctx.cfg, act, networks[act].model)


@dataclass(frozen=True, eq=False)
class CResult(_Result):
    """Part C: attribution rankings of each network of Part B, their cross-checks and the
    comparison with Part A's predictive power.

    ``attribution[act]`` holds ``"output"`` (mean |∂o_m/∂x|) and ``"logit"``
    (mean |∂a_m/∂x|) ``mlp.feature_attribution`` results; ``checks[act]`` the
    Spearman correlations with permutation importance and the randomisation check.
    """
    attribution: dict
    permutation_tables: dict    # activation -> DataFrame, train and test importance per column
    checks: dict
    comparison: Any             # DataFrame, one row per original column
    repeats: int
    pps: Any                    # Part A's predictive power (None when A did not run)
    dominant: Any               # Part A's dominant feature, or None
    dominant_agree: list        # networks whose top-ranked column is the dominant feature
    seconds_attribution: float

    @property
    def headline(self):
        return "; ".join(f"{act}: top {res['output']['by_source'].iloc[0]['feature']} "
                         f"({res['output']['by_source'].iloc[0]['share']:.0%})"
                         for act, res in self.attribution.items())

    def to_metrics(self):
        import prep
        j = prep.to_jsonable
        return {"seconds_attribution": self.seconds_attribution,
                "rankings": {act: {"encoded": j(res["output"]["table"]),
                                   "original": j(res["output"]["by_source"]),
                                   "logit_original": j(res["logit"]["by_source"]),
                                   "n_samples": res["output"]["n_samples"]}
                             for act, res in self.attribution.items()},
                "checks": self.checks, "comparison": j(self.comparison), "headline": self.headline}


def compute_c(ctx):
    """Part C's numbers for each network of Part B: sensitivity and logit attribution,
    permutation importance (train and test) and the weight-randomisation check (the best
    network's sensitivity and permutation come from the step ``checks``), compared with
    Part A's predictive power when A ran."""
    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr
    import mlp
    import prep

    cfg, d = ctx.cfg, ctx.data
    b, a = ctx.results["B"], ctx.results.get("A")
    nets = b.networks
    names, source = list(d["feature_names"]), list(d["feature_source"])
    checks_of = {b.best: ctx.plan["checks"].result()}

    results, seconds = {}, 0.0      # seconds: sensitivity and logit attribution, not the permutation checks
    for act, model in nets.items():
        if act not in checks_of:
            checks_of[act] = attribution_checks(d, cfg, act, model)
        t0 = time.perf_counter()
        logit = mlp.feature_attribution(model.weights_, model.biases_, d["X_train"], d["y_train"], act,
                                        target="logit", samples="correct", feature_names=names,
                                        feature_source=source)
        seconds += time.perf_counter() - t0 + checks_of[act]["seconds_sensitivity"]
        results[act] = {"output": checks_of[act]["sensitivity"], "logit": logit}
    seconds = round(seconds, 3)

    pp = a.predictive_power if a is not None else None
    side = pd.DataFrame({"feature": sorted(set(source), key=source.index)})
    for act, res in results.items():
        bs = res["output"]["by_source"].set_index("feature")
        side[f"{act} share"] = side["feature"].map(bs["share"])
        side[f"{act} rank"] = side["feature"].map(bs["rank"]).astype(int)
        lg = res["logit"]["by_source"].set_index("feature")
        side[f"{act} logit rank"] = side["feature"].map(lg["rank"]).astype(int)
    if pp is not None:
        side["Part A pps"] = side["feature"].map(pp["pps"])
        side["Part A rank"] = side["Part A pps"].rank(ascending=False, method="min").astype(int)
    first = f"{next(iter(results))} rank"
    side = side.sort_values(first).reset_index(drop=True)

    checks, perm_tables = {}, {}
    for act, model in nets.items():
        pc_train = checks_of[act]["permutation"]["train"]
        pc_test = checks_of[act]["permutation"].get("test")       # None: test has no labels
        rnd = mlp.randomization_check(model.weights_, model.biases_, d["X_train"], d["y_train"], act,
                                      seed=cfg.seed)
        checks[act] = {"spearman_perm_train": pc_train["spearman_original"],
                       "spearman_perm_test": None if pc_test is None else pc_test["spearman_original"],
                       "spearman_perm_train_encoded": pc_train["spearman_encoded"],
                       "spearman_randomised": rnd["spearman"], "randomisation_passed": rnd["passed"],
                       "randomisation_threshold": rnd["threshold"]}
        perm = pc_train["original"][["feature", "perm_mean", "perm_rank"]].rename(
            columns={"perm_mean": "perm. importance (train)", "perm_rank": "perm. rank (train)"})
        if pc_test is not None:
            perm_t = pc_test["original"][["feature", "perm_mean", "perm_rank"]].rename(
                columns={"perm_mean": "perm. importance (test)", "perm_rank": "perm. rank (test)"})
            perm = perm.merge(perm_t, on="feature")
        perm_tables[act] = table = perm
        checks[act]["permutation"] = prep.to_jsonable(table)
    if pp is not None:
        for act, res in results.items():
            bs = res["output"]["by_source"]
            common = [f for f in bs["feature"] if f in pp.index]
            rho = spearmanr(bs.set_index("feature").loc[common, "score"], pp.loc[common, "pps"]).statistic
            checks[act]["spearman_vs_partA"] = float(rho)
    dom = a.dominance if a is not None else {}
    dominant = dom["feature"] if dom.get("dominant") else None
    agree = [act for act, res in results.items()
             if dominant is not None and res["output"]["by_source"].iloc[0]["feature"] == dominant]
    return CResult(attribution=results, permutation_tables=perm_tables, checks=checks, comparison=side,
                   repeats=cfg.repeats, pps=pp, dominant=dominant, dominant_agree=agree,
                   seconds_attribution=seconds)


def render_c(res, out):
    """Part C's derivation, tables (tables/c_*.csv), figures (figures/c_*.png) and report section."""
    import numpy as np
    import plots

    r = out.report
    r.markdown((REPO_DIR / "docs" / "partC_derivation.md").read_text(encoding="utf-8"), level_offset=2)
    r.heading("C(b): sensitivity attribution of the trained networks", 3)
    r.para("For every correctly classified training sample, the gradient of the winning class's "
           "softmax output o_m with respect to the (encoded, z-scored) input is computed by the "
           "numba kernel `mlp.input_gradients`; the absolute values are averaged over those samples "
           "and ranked. One-hot columns are summed back to their original column (a sum favours "
           "categoricals with many levels; the permutation check below shuffles each original "
           "column as a whole and has no such bias).")
    for act, att in res.attribution.items():
        o = att["output"]
        _show_table(out, o["table"].drop(columns=[c for c in ("source",) if c in o["table"]]),
                       f"c_attribution_{act}", floatfmt=".3g", formats={"share": ".1%"},
                       caption=f"{act}: mean |∂o_m/∂x| over {o['n_samples']:,} correctly classified "
                               f"training samples (of {o['n_total']:,})")
    out.save_figure(plots.attribution_bars({a: v["output"]["table"] for a, v in res.attribution.items()},
                                           "Sensitivity per encoded feature"),
                    "c_attribution_encoded.png", "Share of total attribution, encoded features")
    out.save_figure(plots.attribution_bars({a: v["output"]["by_source"] for a, v in res.attribution.items()},
                                           "Sensitivity per original column"),
                    "c_attribution_original.png", "Share of total attribution, original columns "
                    "(one-hot columns summed)")
    out.save_table(res.comparison, "c_comparison", floatfmt=".3f",
                   caption="Original columns side by side: attribution share and rank per network "
                           "(∂o_m/∂x and the pre-softmax logit ∂a_m/∂x) and Part A's predictive power")

    r.heading("Cross-checks", 3)
    lines = []
    for act, table in res.permutation_tables.items():
        out.save_table(table, f"c_permutation_{act}", floatfmt=".4f",
                       caption=f"{act}: permutation importance (accuracy drop when a column is "
                               f"shuffled, {_plural(res.repeats, 'repeat')}), training split"
                               + (" and test set" if "perm. importance (test)" in table.columns else ""))
        ch = res.checks[act]
        if np.isnan(ch["spearman_perm_train"]):
            agree = ("permutation importance is zero for every column on the training split (the network "
                     "predicts the same class whatever one column holds), so no rank correlation is defined")
        else:
            agree = (f"Spearman correlation of the attribution ranking with permutation importance "
                     f"{ch['spearman_perm_train']:+.2f} on the training split"
                     + (" (test has no labels, so no test-set permutation check)"
                        if ch["spearman_perm_test"] is None else
                        f" and {ch['spearman_perm_test']:+.2f} on the test set") + " (original columns)")
        lines.append(
            f"`{act}`: {agree}; with a network whose weights are re-drawn at random the ranking "
            f"correlates {ch['spearman_randomised']:+.2f} with the trained one — the sanity check " +
            ("passes: the attribution depends on what the network learned." if ch["randomisation_passed"] else
             f"FAILS (≥ {ch['randomisation_threshold']:g}): the ranking barely depends on the learned weights, "
             "so it may reflect the input statistics more than the model."))
    r.bullets(lines)

    r.heading("Interpretation", 3)
    lines = []
    for act, att in res.attribution.items():
        bs = att["output"]["by_source"]
        top = bs.iloc[0]
        second = bs.iloc[1] if len(bs) > 1 else None
        text = (f"`{act}` relies most on `{top['feature']}` ({top['share']:.0%} of the attribution"
                + (f", {top['score'] / second['score']:.1f}× the next column `{second['feature']}`)"
                   if second is not None and second["score"] > 0 else ")"))
        if res.pps is not None:
            text += (f"; its ranking agrees with Part A's single-feature predictive power with Spearman "
                     f"{res.checks[act]['spearman_vs_partA']:+.2f}, and Part A's strongest feature is "
                     f"`{res.pps.index[0]}`")
        lines.append(text + ".")
    if res.dominant_agree:
        lines.append(f"The feature Part A flagged as suspiciously dominant, `{res.dominant}`, is the "
                     f"top-ranked input of {', '.join('`%s`' % a for a in res.dominant_agree)}: the network "
                     "leans on exactly the feature whose relationship with the label Part D must check.")
    r.bullets(lines)


def _slug(name):
    """A file-name-safe version of a column name."""
    import re
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "column"


def _without(dataset, columns):
    """A copy of ``dataset`` without the raw feature ``columns``."""
    from dataclasses import replace
    return replace(dataset, train=dataset.train.drop(columns=columns),
                   test=dataset.test.drop(columns=columns),
                   numeric=[c for c in dataset.numeric if c not in columns],
                   categorical=[c for c in dataset.categorical if c not in columns])


@dataclass(frozen=True, eq=False)
class NetworkOnFrames:
    """Part B's network on raw frames: the run's fitted ``prep.Preprocessor``, then the MLP.

    The ``model=`` that ``shift.diagnose`` calls: ``predict_proba(frame)`` of shape
    (n_rows, n_classes), columns in ``classes_`` order (the dataset's label values).
    """
    preprocessor: Any
    network: Any
    classes_: list

    def predict_proba(self, frame):
        import warnings
        import prep
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", prep.UnseenCategoryWarning)
            X = self.preprocessor.transform(frame)
        return self.network.predict_proba(X)


@dataclass(frozen=True, eq=False)
class Diagnosis:
    """What changed between train and test, for Part B's best network (``network``).

    ``result`` is ``shift.diagnose``'s frozen ``shift.Diagnosis`` (verdict, suspects
    with their mechanism, gap, priors, evidence, rules); ``importance[split]`` the
    network's permutation importance per original column (descriptive evidence;
    ``"test"`` only when test has labels).
    """
    network: str
    importance: dict
    result: Any

    @property
    def suspects(self):
        """The suspect columns (raw names, sorted)."""
        return list(self.result.suspect_features)

    @property
    def seconds(self):
        return float(self.result.seconds)


def run_diagnosis(dataset, seed, model=None, val_rows=None):
    """The train/test shift diagnosis: ``shift.diagnose`` on the dataset's raw frames (the
    one place that calls the diagnosis library). ``model``: a ``NetworkOnFrames`` (or
    None: the library's proxy model); ``val_rows``: positions in ``dataset.train`` of the
    rows ``model`` was not trained on."""
    import shift
    return shift.diagnose(dataset.train, dataset.test, dataset.target, list(dataset.numeric),
                          list(dataset.categorical), model=model, seed=seed, val_rows=val_rows)


def _diagnosis_step(ctx, networks, checks):
    """Step ``D.diagnosis``: diagnose the shift with Part B's best network (on the run's
    validation split, which it was not trained on); the permutation importances of the
    step ``checks`` go along as descriptive evidence."""
    act = best_network({a: f.scores for a, f in networks.items()})
    perm = {}
    for split, pc in checks["permutation"].items():
        pc = pc["original"]
        perm[split] = dict(zip(pc["feature"], pc["perm_mean"].astype(float)))
    ds, d = ctx.dataset, ctx.data
    model = NetworkOnFrames(d["preprocessor"], networks[act].model, ds.classes.tolist())
    val_rows = ds.train.index.get_indexer(d["val_df"].index)
    result = run_diagnosis(ds, ctx.cfg.seed, model=model, val_rows=val_rows)
    return Diagnosis(network=act, importance=perm, result=result)


# Part D's mitigations that need no diagnosis: (name, data, MLP parameters).
# Data: None = the run's encoding; "indicators" = with missing-value indicators.
MITIGATIONS = [("missing-value indicators", "indicators", {}),
               ("class-weighted loss", None, {"class_weight": "balanced"}),
               ("L2 1e-3", None, {"l2": 1e-3}),
               ("early stopping (val loss)", None, {"early_stopping": True, "patience": 10})]


def _hot_deck_train(dataset, columns, seed):
    """A copy of ``dataset`` whose train missing values in ``columns`` are replaced by random
    observed train values of the same column (hot-deck), so that whether a value is
    missing no longer carries the label; test is unchanged (its own missing values go
    through the run's train-fitted imputation)."""
    import numpy as np
    from dataclasses import replace
    rng = np.random.default_rng(seed)
    train = dataset.train.copy()
    for c in columns:
        miss = train[c].isna().to_numpy()
        seen = train.loc[~miss, c].to_numpy()
        if miss.any() and len(seen):
            train.loc[miss, c] = seen[rng.integers(0, len(seen), int(miss.sum()))]
    return replace(dataset, train=train)


class PriorCorrected:
    """The baseline network with its probabilities re-weighted from the training split's class
    shares to the shares that ``shift.em_priors`` estimates from the rows it is given, without
    their labels (``shift.prior_correction``; no retraining). ``predict(X)``: class indices."""

    def __init__(self, network, train_priors):
        import numpy as np
        self.network = network
        self.train_priors = np.clip(np.asarray(train_priors, dtype=np.float64), 1e-6, None)
        self.n_iter_, self.history_ = network.n_iter_, network.history_

    def estimated_priors(self, X):
        import numpy as np
        import shift
        return shift.em_priors(np.clip(self.network.predict_proba(X), 1e-6, None), self.train_priors)

    def predict(self, X):
        import shift
        P = self.network.predict_proba(X)
        return shift.prior_correction(P, self.train_priors, self.estimated_priors(X)).argmax(axis=1)


# The mitigations that answer a verdict: ``shift.mitigations_for`` names -> what Part D
# trains for them: ``(dataset, features, seed) -> (row name, data spec)``; the spec is a
# ``prep.Dataset`` to train on, or "prior_correction" (the baseline's outputs corrected).
# "drop_features" answers only the kinds whose relationship does not hold on test (a
# missingness suspect is answered by "impute_without_signal"); "importance_weighting" and
# "regularise" are not trained here (the latter is ``MITIGATIONS``).
DROPPED_KINDS = ("relationship_broken", "concept_shift", "interaction")
VERDICT_MITIGATIONS = {
    "drop_features": lambda ds, f, seed: (f"remove {', '.join(f)}", _without(ds, list(f))),
    "impute_without_signal": lambda ds, f, seed: (f"impute {', '.join(f)} without its missingness signal",
                                                  _hot_deck_train(ds, f, seed)),
    "prior_correction": lambda ds, f, seed: ("prior correction (EM-estimated shares)", "prior_correction"),
}


def verdict_mitigations(result):
    """The trainings that answer ``result``'s verdict (``shift.mitigations_for``), one per
    registry entry: ``[(registry name, verdict kinds answered, features)]``, dropped
    features pooled over ``DROPPED_KINDS``."""
    import shift
    out = {}
    for m in shift.mitigations_for(result):
        if m.name not in VERDICT_MITIGATIONS or (m.name == "drop_features" and m.kind not in DROPPED_KINDS):
            continue
        kinds, feats = out.get(m.name, ((), ()))
        out[m.name] = (kinds + (m.kind,), feats + tuple(f for f in m.features if f not in feats))
    return [(name, kinds, tuple(sorted(feats))) for name, (kinds, feats) in out.items()]


# Part D's rules.
TOUCHES_CAUSE = Rule("does not touch the cause", 2.0,
                     "a mitigation *does not touch the cause* when it moves test accuracy by less than "
                     "{threshold:g} points from the baseline")
STILL_LEARNING = Rule("still learning", 0.01,
                      "a network is *still learning* when its training loss fell by more than {points}% over "
                      "the last fifth of its iterations")
VALIDATION_BLIND = Rule("chosen on validation", 0.0,
                        "the *recommended* mitigation is the validation winner (highest validation "
                        "accuracy); test data never chooses. When the diagnosis names a cause in how "
                        "test differs from train (a suspect feature or a prior shift) and the "
                        "validation–test gap is outside noise (or test has no labels), the mitigation "
                        "that answers the verdict's primary kind is reported beside it as the "
                        "*diagnosis's fix*, with its measured effect on test: the validation split is cut "
                        "from the training file and shares its distribution, so it cannot rank that fix")
ROOT_CAUSE = Rule("root cause", 0.99,
                  "a named cause is called the *root cause* only when the validation–test gap is outside "
                  "noise and the mitigation that removes or corrects it measurably closes it: the lower "
                  "end of the {points:s}% interval of its paired test-accuracy gain over the baseline "
                  "is above 0")
_Z99 = NormalDist().inv_cdf(0.5 + ROOT_CAUSE.threshold / 2)   # two-sided quantile at ROOT_CAUSE's level (2.576)


@dataclass(frozen=True, eq=False)
class Mitigation:
    """One of Part D's mitigations: its name, data (``spec``: None, "indicators",
    "prior_correction" or a changed ``prep.Dataset``), the encoded splits, MLP options,
    the verdict kinds it answers (``answers``, empty for ``MITIGATIONS``), the future of
    its ``Fitted`` network (already done when replayed or not trained)."""
    name: str
    spec: Any
    data: dict
    params: dict
    source: Any
    replayed: bool = False
    answers: tuple = ()
    drops: tuple = ()


def _done(value):
    """A finished future holding ``value``."""
    from concurrent.futures import Future
    fut = Future()
    fut.set_result(value)
    return fut


def _needs_val(params):
    """Part D scores each mitigation on validation once, after training; only early
    stopping needs the validation loss at every iteration."""
    return bool(params.get("early_stopping"))


def _mitigations_step(ctx, networks, diagnosis):
    """Step ``D.mitigations``: queue the trainings of Part D's mitigations of the diagnosed
    network: those answering the verdict (``verdict_mitigations``), then ``MITIGATIONS``;
    a list of ``Mitigation``.

    The prior correction trains nothing (the baseline's outputs, corrected, scored
    here); early stopping is not trained again when ``mlp.replay_early_stopping`` can
    give its exact result from the baseline (the same network, trained with
    validation data and without early stopping).
    """
    import numpy as np
    import mlp
    import prep
    cfg, act = ctx.cfg, diagnosis.network
    baseline = networks[act].model
    planned = []
    for reg, kinds, feats in verdict_mitigations(diagnosis.result):
        name, spec = VERDICT_MITIGATIONS[reg](ctx.dataset, feats, cfg.seed)
        planned.append((name, spec, {}, kinds, feats if reg == "drop_features" else ()))
    planned += [(name, spec, params, (), ()) for name, spec, params in MITIGATIONS]
    out = []
    for name, spec, params, kinds, drops in planned:
        if spec is None or spec == "prior_correction":
            data = ctx.data
        elif isinstance(spec, str):
            if spec != "indicators":
                raise ValueError(f"unknown mitigation data {spec!r}; use None, 'indicators', "
                                 "'prior_correction' or a Dataset")
            data = prep.encode(ctx.dataset, missing_indicators=True, val_size=cfg.val_size, seed=cfg.seed)
        else:
            data = prep.encode(spec, val_size=cfg.val_size, seed=cfg.seed)
        if spec == "prior_correction":
            shares = np.bincount(ctx.data["y_train"], minlength=len(ctx.dataset.classes)) / len(ctx.data["y_train"])
            model = PriorCorrected(baseline, shares)
            out.append(Mitigation(name, spec, data, params, _done(Fitted(model, evaluate(model, data))),
                                  answers=kinds))
            continue
        replay = None
        if spec is None and set(params) == {"early_stopping", "patience"}:
            replay = mlp.replay_early_stopping(baseline, params["patience"])
        if replay is not None:
            out.append(Mitigation(name, spec, data, params, _done(Fitted(replay, evaluate(replay, data))),
                                  replayed=True))
            continue
        validate = _needs_val(params)
        kw = _fit_params(cfg, activation=act, **params)
        fut = ctx.jobs.submit(("fit", f"{act} {name}", validate, tuple(sorted(kw.items()))), _fit_scored_job,
                              f"{act} {name}", kw, _splits(data), validate, priority=PRIORITY["D"], group="D")
        out.append(Mitigation(name, spec, data, params, fut, answers=kinds, drops=drops))
    return out


def _combination_job(*options, names, base_f1, suspects, act, cfg_params, data):
    """Part D's combined mitigation (in a worker): removing the dropped suspects plus every
    training option (data unchanged; ``options``: their ``Fitted``, ``names``: their
    (name, params)) whose network has a higher validation macro-F1 than the baseline
    (``base_f1``); chosen on validation data only. ``(name, params, Fitted)``, or None
    when there is nothing to combine (no dropped suspect and at most one helpful option)."""
    helpful = [(name, params) for (name, params), f in zip(names, options)
               if f.scores["val"]["macro_f1"] > base_f1]
    if not (suspects or len(helpful) > 1):
        return None
    params = {}
    for _, p in helpful:
        params.update(p)
    name = "combination: " + " + ".join(([f"remove {', '.join(suspects)}"] if suspects else [])
                                         + [n for n, _ in helpful])
    kw = dict(cfg_params, activation=act, **params)
    return name, params, _fit_scored_job(f"{act} {name}", kw, data, _needs_val(params))


def _combination_after(ctx, networks, diagnosis, mitigations):
    """Step ``D.combination``: queue ``_combination_job`` to run when the training options
    of ``mitigations`` (data unchanged) have finished; its future."""
    options = [m for m in mitigations if m.spec is None]
    removal = [m for m in mitigations if m.drops]
    act = diagnosis.network
    return ctx.jobs.after(("combination", act), [m.source for m in options], _combination_job,
                          names=[(m.name, m.params) for m in options],
                          base_f1=networks[act].scores["val"]["macro_f1"],
                          suspects=list(removal[0].drops) if removal else [],
                          act=act, cfg_params=_fit_params(ctx.cfg),
                          data=_splits(removal[0].data if removal else ctx.data), priority=PRIORITY["D"],
                          group="D")


def _paired_gain(pred, base_pred, y, z=_Z99):
    """Test-accuracy gain of ``pred`` over ``base_pred`` on the same rows with its two-sided
    interval (normal approximation to the paired binomial difference): (gain, lo, hi)."""
    import numpy as np
    diff = (pred == y).astype(float) - (base_pred == y).astype(float)     # (n,) in {-1, 0, 1}
    g = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
    return g, g - z * se, g + z * se


def recommend(rows):
    """``VALIDATION_BLIND``: the index of the recommended mitigation row, the validation
    winner. ``rows``: Part D's mitigation rows (row 0 the baseline). Reads validation
    scores only, never a test score."""
    return max(range(len(rows)), key=lambda i: rows[i]["val_acc"])


def diagnosis_fix(rows, result, labelled):
    """``VALIDATION_BLIND``'s second half: the index of the row that answers the verdict's
    primary kind (``rows[i]["answers"]``), when the diagnosis names a cause and the gap is
    outside noise (or test has no labels); else None. Reads no mitigation's test score."""
    gap = result.gap
    beyond = (not labelled) or (gap is not None and gap.outside_noise)
    named = bool(result.suspects) or "prior_shift" in result.verdict.kinds
    if named and beyond:
        for kind in result.verdict.kinds:
            for i, r in enumerate(rows):
                if kind in r["answers"]:
                    return i
    return None


@dataclass(frozen=True, eq=False)
class DResult(_Result):
    """Part D: test accuracy, per-class results, attribution on train vs test, the shift
    diagnosis and the measured mitigations of Part B's best network (``network``).

    ``mitigations`` rows: name, answers (verdict kinds), val/test accuracy and macro-F1
    (test None without test labels), iterations, and for rows answering the verdict the
    paired test-accuracy gain over the baseline with its 99% interval; the first row is
    the baseline. ``by_val`` indexes the validation winner, which ``VALIDATION_BLIND``
    recommends (``recommended``, ``reason`` "validation"), ``fix`` the row that answers the
    verdict (None when the diagnosis names no cause beyond noise);
    ``touches_cause[i]`` applies ``TOUCHES_CAUSE``. ``labelled``: test has labels.
    """
    network: str
    labels: list
    labelled: bool
    accuracy_rows: list         # per network: accuracies per split and the gaps
    split_accuracy: dict        # network -> split -> accuracy (test None without labels)
    base_test: Any              # test accuracy of always predicting the training majority class
    per_class: Any              # DataFrame
    classification_report: Any  # dict, None without test labels
    confusion: Any              # ndarray (n_classes, n_classes), rows: true class; None without labels
    predicted_shares: list      # share of test rows predicted as each class
    attribution_share: dict     # split -> Series of shares per original column
    diagnosis: Diagnosis
    dataset: Any                # prep.Dataset, for the suspects' figures
    mitigations: list
    params: list                # MLP options per mitigation row
    replayed: list              # names of mitigations replayed instead of trained
    best_iters: dict            # mitigation name -> best_iter_ (early stopping)
    by_val: int
    recommended: int
    reason: str
    fix: Any                    # index of the diagnosis's fix (answers the verdict), or None
    root_cause: bool            # ``ROOT_CAUSE`` applied to the diagnosis's fix
    touches_cause: list
    loss_fall: Any              # (fall, k, last loss) of the suspect-free network, or None
    iterations: int

    @property
    def suspects(self):
        return self.diagnosis.suspects

    @property
    def verdict(self):
        return self.diagnosis.result.verdict

    @property
    def accuracy(self):
        acc = {a: dict(s) for a, s in self.split_accuracy.items()}
        for i in dict.fromkeys((self.recommended, self.fix)):
            if i:
                row = self.mitigations[i]
                acc[f"{self.network} ({row['name']})"] = {"val": row["val_acc"], "test": row["test_acc"]}
        return acc

    @property
    def summary_sentences(self):
        """One or two plain sentences from the diagnosis and the measured mitigation."""
        res = self.diagnosis.result
        out = [_verdict_sentence(res)]
        g = res.gap
        rec = None if self.fix is None else self.mitigations[self.fix]
        if g is not None:
            lo, hi = g.accuracy_ci
            s = (f"Accuracy {_verb(-g.accuracy_gap, 'rises', 'falls')} from {g.val_accuracy:.3f} on "
                 f"validation to {g.test_accuracy:.3f} on test (gap {g.accuracy_gap:+.3f}, 99% CI "
                 f"{lo:+.3f} to {hi:+.3f}, {'outside' if g.outside_noise else 'within'} noise)")
            if rec is not None and rec.get("gain") is not None:
                s += (f"; {rec['name']} {_verb(rec['gain'], 'raises', 'lowers')} test accuracy by "
                      f"{abs(rec['gain']) * 100:.1f} points (99% CI {rec['gain_lo'] * 100:+.1f} to "
                      f"{rec['gain_hi'] * 100:+.1f})"
                      + (f", so the root cause is {_cause_words(res)}" if self.root_cause else
                         ", not measurably, so no root cause is claimed"))
            out.append(s + ".")
        else:
            out.append("Test has no labels, so only the label-free checks ran.")
        return out

    @property
    def headline(self):
        a, rec = self.split_accuracy[self.network], self.mitigations[self.recommended]
        test = "unlabelled" if a["test"] is None else f"{a['test']:.3f}"
        fix = "" if self.fix is None else f"; the diagnosis's fix: {self.mitigations[self.fix]['name']}"
        return (f"test {test} vs val {a['val']:.3f}; verdict {self.verdict.kind}; suspects: "
                f"{', '.join(self.suspects) or 'none'}; recommended on validation: {rec['name']}{fix}")

    def to_metrics(self):
        import prep
        j = prep.to_jsonable
        a = self.split_accuracy[self.network]
        d = self.diagnosis.result.to_dict()
        rec = self.mitigations[self.recommended]
        return {"train_acc": a["train"], "val_acc": a["val"], "test_acc": a["test"], "network": self.network,
                "test_labelled": self.labelled, "accuracy": self.accuracy, "per_class": j(self.per_class),
                "classification_report": j(self.classification_report),
                "confusion_matrix": None if self.confusion is None else self.confusion.tolist(),
                "predicted_shares": dict(zip(self.labels, self.predicted_shares)),
                "verdict": d["verdict"], "suspect_features": self.suspects, "diagnosis": d,
                "diagnosis_seconds": self.diagnosis.seconds, "summary": self.summary_sentences,
                "drift": d["evidence"], "model_importance": self.diagnosis.importance,
                "mitigations": self.mitigations, "validation_winner": self.mitigations[self.by_val]["name"],
                "recommended": {"name": rec["name"], "reason": self.reason, "rule": VALIDATION_BLIND.description,
                                "val_acc": rec["val_acc"], "test_acc": rec["test_acc"],
                                "test_macro_f1": rec["test_macro_f1"]},
                "diagnosis_fix": None if self.fix is None else {
                    k: self.mitigations[self.fix][k] for k in ("name", "answers", "val_acc", "test_acc",
                                                               "test_macro_f1", "gain", "gain_lo", "gain_hi")}
                | {"root_cause": self.root_cause},
                "headline": self.headline}


def _verb(x, up, down, same="does not change"):
    """A verb from the sign of ``x``."""
    return up if x > 0 else down if x < 0 else same


# What a suspect's mechanism means, per verdict kind (sentences are built from it).
_KIND_TEXT = {"relationship_broken": "predicts the label in train but not in test",
              "concept_shift": "predicts the label differently in test than in train",
              "missingness": "carries the label in train through which values are missing, and not in test",
              "interaction": "takes part in a joint relationship with the label that holds in train and "
                             "not in test"}
_PLURAL_VERBS = {"predicts": "predict", "carries": "carry", "takes": "take"}   # each text's first word


def _cause_words(res):
    """The diagnosed cause in words: the suspects with their mechanism, or the prior shift."""
    if res.suspects:
        return ", ".join(f"`{s.feature}` ({s.kind})" for s in res.suspects)
    return "the shift of the class shares (prior_shift)"


def _verdict_sentence(res):
    """The verdict in one sentence, from ``shift.Diagnosis`` fields."""
    parts = []
    for kind, text in _KIND_TEXT.items():
        feats = [s.feature for s in res.suspects if s.kind == kind]
        if feats:
            if len(feats) > 1:
                verb, rest = text.split(" ", 1)
                text = f"{_PLURAL_VERBS[verb]} {rest}"
            parts.append(f"{_names(feats)} {text} ({kind})")
    kinds = res.verdict.kinds
    if "prior_shift" in kinds:
        p = res.priors
        parts.append(f"the class shares moved (total variation {p.total_variation:.3f}, noise band "
                     f"{p.band:.3f}) while P(x | label) holds (prior_shift)")
    if "covariate_shift" in kinds:
        parts.append("the inputs moved but no feature's relationship with the label changed (covariate_shift)"
                     if res.labelled else "the inputs moved; whether their relationships with the label "
                     "hold needs test labels (covariate_shift)")
    if "unexplained" in kinds and res.gap is not None:
        parts.append(f"{res.gap.residual:.3f} nats of the model's transfer gap is accounted for by no check "
                     "(unexplained)")
    if not parts:
        return (f"No {'' if res.labelled else 'label-free '}check found a shift between the training and "
                "the test file (verdict: none).")
    return "Diagnosis: " + "; ".join(parts) + "."


def compute_d(ctx):
    """Part D's numbers for Part B's best network: accuracy per split, per-class results,
    attribution on train vs test, the diagnosis (step ``D.diagnosis``) and the mitigations
    (jobs of the steps ``D.mitigations`` and ``D.combination``). Without test labels the
    test scores are None and the test attribution uses the predicted classes."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import classification_report, confusion_matrix
    import mlp
    import prep

    cfg, d, ds, plan = ctx.cfg, ctx.data, ctx.dataset, ctx.plan
    labelled = d["y_test"] is not None
    b = ctx.results["B"]
    nets, evals = b.networks, b.scores
    labels = [prep.label_text(c).strip("'") for c in ds.classes]
    rows, acc = [], {}

    def diff(a, b_):
        return None if a is None or b_ is None else a - b_

    for act, ev in evals.items():
        acc[act] = {s: ev[s]["acc"] for s in ev}
        rows.append({"network": act, "train": ev["train"]["acc"], "validation": ev["val"]["acc"],
                     "test": ev["test"]["acc"], "train − test": diff(ev["train"]["acc"], ev["test"]["acc"]),
                     "validation − test": diff(ev["val"]["acc"], ev["test"]["acc"]),
                     "test macro-F1": ev["test"]["macro_f1"]})
    act = b.best
    model = nets[act]
    majority = np.bincount(d["y_train"]).argmax()
    base_test = float(np.mean(d["y_test"] == majority)) if labelled else None
    per_class = pd.DataFrame({"class": labels})
    for split in ("train", "val", "test"):
        y, p = d[f"y_{split}"], evals[act][split]["pred"]
        if y is None:
            per_class["test predicted n"] = np.bincount(p, minlength=len(labels))
            continue
        per_class[f"{split} recall"] = [float(np.mean(p[y == k] == k)) if np.any(y == k) else np.nan
                                        for k in range(len(labels))]
        per_class[f"{split} n"] = np.bincount(y, minlength=len(labels))
    p_test = evals[act]["test"]["pred"]
    shares = (np.bincount(p_test, minlength=len(labels)) / len(p_test)).tolist()
    rep = cm = None
    if labelled:
        rep = classification_report(d["y_test"], p_test, labels=range(len(labels)), target_names=labels,
                                    output_dict=True, zero_division=0)
        cm = confusion_matrix(d["y_test"], p_test, labels=range(len(labels)))

    names, source = list(d["feature_names"]), list(d["feature_source"])
    share = {}
    for split in ("train", "test"):
        y = d[f"y_{split}"] if d[f"y_{split}"] is not None else p_test    # unlabelled: predicted classes
        res = mlp.feature_attribution(model.weights_, model.biases_, d[f"X_{split}"], y,
                                      act, target="output", samples="all", feature_names=names,
                                      feature_source=source)
        share[split] = res["by_source"].set_index("feature")["share"]

    diag = plan["D.diagnosis"].result()
    results, params, replayed, best_iters, models = [], [], [], {}, {}
    base_pred = p_test

    def record(name, fitted, p, answers=()):
        models[name] = fitted.model
        s = fitted.scores
        row = {"name": name, "answers": list(answers), "val_acc": s["val"]["acc"],
               "val_macro_f1": s["val"]["macro_f1"], "test_acc": s["test"]["acc"],
               "test_macro_f1": s["test"]["macro_f1"], "iterations": fitted.model.n_iter_,
               "gain": None, "gain_lo": None, "gain_hi": None}
        if labelled and answers:
            row["gain"], row["gain_lo"], row["gain_hi"] = _paired_gain(s["test"]["pred"], base_pred, d["y_test"])
        results.append(row)
        params.append(p)
        if p.get("early_stopping"):
            best_iters[name] = fitted.model.best_iter_

    record("baseline", Fitted(model, evals[act]), {})
    removal = None
    for m in plan["D.mitigations"].result():
        if m.replayed:
            replayed.append(m.name)
        record(m.name, m.source.result(), m.params, m.answers)
        if m.drops and removal is None:
            removal = m.name
    combo = plan["D.combination"].result().result()
    if combo:
        name, combo_params, fitted = combo
        record(name, fitted, combo_params)
    by_val = recommended = recommend(results)      # VALIDATION_BLIND: the validation winner
    reason = "validation"
    fix, g = diagnosis_fix(results, diag.result, labelled), diag.result.gap
    root = bool(fix is not None and g is not None and g.outside_noise and results[fix]["gain_lo"] is not None
                and results[fix]["gain_lo"] > 0)
    base = results[0]
    touches = [labelled and abs((res["test_acc"] - base["test_acc"]) * 100) >= TOUCHES_CAUSE.threshold
               for res in results]
    loss_fall = None
    if removal is not None:
        loss = models[removal].history_["loss"]
        k = max(1, len(loss) // 5)
        fall = (loss[-k - 1] - loss[-1]) / loss[-k - 1] if len(loss) > k else 0.0
        loss_fall = (float(fall), k, float(loss[-1]))
    return DResult(network=act, labels=labels, labelled=labelled, accuracy_rows=rows, split_accuracy=acc,
                   base_test=base_test, per_class=per_class, classification_report=rep, confusion=cm,
                   predicted_shares=shares, attribution_share=share, diagnosis=diag, dataset=ds,
                   mitigations=results, params=params, replayed=replayed, best_iters=best_iters,
                   by_val=by_val, recommended=recommended, reason=reason, fix=fix, root_cause=root,
                   touches_cause=touches, loss_fall=loss_fall, iterations=cfg.iterations)


# The evidence columns Part D's table shows (those ``shift.diagnose`` filled), in order.
EVIDENCE_COLUMNS = ("shift_test", "shift_effect", "shifted", "gap_fitted", "gap_reweighted", "gap_band",
                    "info_train", "info_test", "pps_train", "pps_test", "missing_train", "missing_test",
                    "missing_tv_train", "missing_tv_test", "adv_auc_drop")


def _fired_rules_table(rules):
    """The rules that fired: one row each (rule, subject, value, threshold, noise band)."""
    return [{"rule": r.name, "subject": r.subject or "", "value": r.value, "threshold": r.threshold,
             "noise band": r.noise_band} for r in rules if r.fired]


def render_d(res, out):
    """Part D's tables (tables/d_*.csv), figures (figures/d_*.png) and report section; every
    sentence is written from the result's numbers (``shift.explain`` for the diagnosis)."""
    import pandas as pd
    import plots
    import prep
    import shift

    r, act, ds = out.report, res.network, res.dataset
    diag = res.diagnosis.result
    a = res.split_accuracy[act]
    banner = prep.split_banner(ds)
    if banner:
        r.banner(banner)
    r.heading("Test accuracy", 3)
    out.save_table(pd.DataFrame(res.accuracy_rows), "d_accuracy", caption="Accuracy per split and the gaps",
                   floatfmt=".4f")
    if res.labelled:
        gap = (a["val"] - a["test"]) * 100
        r.para(f"The `{act}` network (best validation accuracy) scores {a['train']:.4f} on the training "
               f"split, {a['val']:.4f} on validation and **{a['test']:.4f} on test**: "
               f"{abs(gap):.1f} points {'below' if gap > 0 else 'above'} validation; always predicting the "
               f"training majority class scores {res.base_test:.4f} on test.")
    else:
        r.para(_sentence(_data_notes(ds)[-1]) + " The `" + act +
               f"` network (best validation accuracy) scores {a['train']:.4f} on the training split and "
               f"{a['val']:.4f} on validation; on test it predicts "
               + ", ".join(f"{c}: {s:.3f}" for c, s in zip(res.labels, res.predicted_shares)) + " of the rows.")
    out.save_table(res.per_class, "d_per_class", caption=f"`{act}`: per-class accuracy (recall) per split",
                   floatfmt=".3f")
    if res.labelled:
        out.save_table(pd.DataFrame(res.classification_report).T.reset_index(names="class"),
                       "d_classification_report",
                       caption=f"`{act}`: scikit-learn classification report on test", floatfmt=".3f")
        out.save_figure(plots.confusion(res.confusion, res.labels), "d_confusion_test.png",
                        f"`{act}`: confusion matrix on test (rows: true class)")

    r.heading("Attribution on train and on test", 3)
    att = res.attribution_share
    side = pd.DataFrame({"train share": att["train"], "test share": att["test"]})
    side = side.sort_values("train share", ascending=False).reset_index()
    out.save_table(side, "d_attribution_train_test", floatfmt=".3f",
                   caption=f"`{act}`: share of mean |∂o_m/∂x| per original column, all samples of each split"
                           + ("" if res.labelled else " (test: m = the predicted class, test has no labels)"))

    r.heading("Diagnosis: what changed between train and test", 3)
    r.para(f"The diagnosis (`shift.diagnose`, with the `{act}` network on the run's validation split) took "
           f"{diag.seconds:.1f} s. Verdict: **{diag.verdict.kind}** (all kinds that hold: "
           f"{', '.join(diag.verdict.kinds)}); suspects: "
           + (", ".join(f"`{s.feature}` ({s.kind})" for s in diag.suspects) or "none") + ".")
    r.bullets(shift.explain(diag))
    if diag.skipped:
        r.para("Checks that need test labels, skipped here: " + "; ".join(diag.skipped) + ".")
    ev = diag.evidence.copy()
    for split, imp in res.diagnosis.importance.items():
        ev[f"net_perm_{split}"] = ev.index.map(imp)
    cols = [c for c in EVIDENCE_COLUMNS if c in ev.columns] + [c for c in ev.columns if c.startswith("net_perm_")]
    out.save_table(ev[cols].reset_index(), "d_evidence", floatfmt=".3f",
                   caption="Evidence per feature: shift of the inputs (KS or Cramér's V), the train-fitted "
                           "P(label | feature) against its refit within test (log-loss gaps, nats), the "
                           "feature's information about the label in train and within test, pps (descriptive), "
                           "missingness, adversarial-validation importance and the network's permutation "
                           "importance per split (descriptive)")
    out.save_table(ev.reset_index(), "d_evidence_full", show=False)
    fired = _fired_rules_table(diag.rules)
    if fired:
        out.save_table(pd.DataFrame(fired), "d_rules_fired", floatfmt=".4g",
                       caption="The diagnosis rules that fired (every rule applied is in tables/d_rules.csv)")
    out.save_table(pd.DataFrame([dict(r_.__dict__, description=r_.description) for r_ in diag.rules]),
                   "d_rules", show=False)
    seen = list(dict.fromkeys(r_.name for r_ in diag.rules if r_.fired))     # each fired rule once, in order
    if seen:
        r.bullets([f"Rule `{n}`: {shift.RULES[n].statistic}; threshold {shift.RULES[n].threshold:g} "
                   f"({shift.RULES[n].noise}); when it fires: {shift.RULES[n].meaning}." for n in seen])
    if res.labelled:
        for s in diag.suspects:
            f = s.feature
            fig = plots.feature_by_class_per_split({"train.csv": ds.train, "test.csv": ds.test}, f, ds.target,
                                                   numeric=f in ds.numeric)
            out.save_figure(fig, f"d_suspect_{_slug(f)}.png", f"`{f}` against the label in train.csv and in test.csv")

    r.heading("Mitigations", 3)
    results = res.mitigations
    table = pd.DataFrame(results)
    table["answers"] = table["answers"].map(lambda k: ", ".join(k))
    out.save_table(table, "d_mitigations", floatfmt=".4f",
                   caption=f"`{act}` networks trained from the same seed with each mitigation (answers: the "
                           "verdict kind a mitigation follows from; gain: paired test-accuracy gain over the "
                           "baseline with its 99% interval)")
    if res.labelled:
        out.save_figure(plots.grouped_bars(table.set_index("name")[["val_acc", "test_acc"]],
                                           "Validation vs test accuracy per mitigation", "accuracy"),
                        "d_mitigations.png", "Validation and test accuracy per mitigation")
    r.bullets(_mitigation_lines(res))

    r.heading("Why it does well in training and fails on test", 3)
    r.bullets(_why_lines(res))


def _mitigation_lines(res):
    """The mitigation bullets, from the rows, the rule and the diagnosis."""
    rows, base = res.mitigations, res.mitigations[0]
    rec, win = rows[res.recommended], rows[res.by_val]
    lines = [f"Recommended: **{win['name']}**, the validation winner ({win['val_acc']:.4f} "
             "validation accuracy)" + (": no mitigation beats the unmitigated network on validation."
                                       if res.by_val == 0 else ".")]
    if res.fix is not None:
        fix = rows[res.fix]
        lines.append(f"The diagnosis's fix: **{fix['name']}**, the mitigation that answers the verdict "
                     f"({', '.join(fix['answers'])})" + (
                         f"; validation scores it {fix['val_acc']:.4f} against {win['val_acc']:.4f} for "
                         f"**{win['name']}**: validation, cut from the training file, shares its "
                         "distribution and cannot rank a fix for how test differs from train, so this "
                         "row is reported with its measured effect, not chosen."
                         if res.fix != res.by_val else ", and validation ranks it first too."))
    if res.labelled:
        top = max(range(len(rows)), key=lambda i: rows[i]["test_acc"])
        lines.append((f"Its test accuracy is {rec['test_acc']:.4f} (macro-F1 {rec['test_macro_f1']:.4f}) against "
                      f"{base['test_acc']:.4f} ({base['test_macro_f1']:.4f}) for the baseline" if res.recommended else
                      f"The unmitigated network's test accuracy is {base['test_acc']:.4f} (macro-F1 "
                      f"{base['test_macro_f1']:.4f})")
                     + (f"; test does not agree: the highest test "
                        f"accuracy is {rows[top]['test_acc']:.4f} ({rows[top]['name']}), reported only, "
                        "never used to choose." if top != res.recommended else "; test agrees: no row does "
                                                                                "better on test."))
        for i, row in enumerate(rows):
            if row["gain"] is None:
                continue
            lines.append(f"{row['name']} (answers {', '.join(row['answers'])}): it "
                         f"{_verb(row['gain'], 'raises', 'lowers')} test accuracy by "
                         f"{abs(row['gain']) * 100:.1f} points (99% CI {row['gain_lo'] * 100:+.1f} to "
                         f"{row['gain_hi'] * 100:+.1f} points, paired over the test rows)"
                         + (", measurably." if row["gain_lo"] > 0 or row["gain_hi"] < 0 else ", within noise."))
        if "missingness" in res.verdict.kinds:
            ind = next((row for row in rows if row["name"] == "missing-value indicators"), None)
            if ind is not None:
                delta = (ind["test_acc"] - base["test_acc"]) * 100
                lines.append("Missing-value indicator columns hand the network the train-only missingness "
                             f"signal, which can make a missingness case worse; here they "
                             f"{_verb(delta, 'raise', 'lower')} test accuracy by {abs(delta):.1f} points.")
        for i, row in enumerate(rows[1:], 1):
            delta = (row["test_acc"] - base["test_acc"]) * 100
            note, p = "", res.params[i]
            if p.get("early_stopping"):
                note = (f" (stopped at iteration {row['iterations']})" if row["iterations"] < res.iterations
                        else f" (never triggered; the iterate with the lowest validation loss, "
                             f"{res.best_iters[row['name']] + 1}, is kept"
                             + (", replayed from the baseline's validation record)" if row["name"] in res.replayed
                                else ")"))
            lines.append(f"{row['name']}: validation {row['val_acc']:.4f}, test {row['test_acc']:.4f} "
                         f"({delta:+.1f} points), test macro-F1 {row['test_macro_f1']:.4f}{note}"
                         + ("." if res.touches_cause[i] else " — it does not touch the cause."))
        lines.append(f"Rule: {TOUCHES_CAUSE.description}.")
        lines.append(f"Rule: {ROOT_CAUSE.description}.")
    else:
        lines.append("Test has no labels, so no mitigation's test accuracy can be measured; the table "
                     "gives validation scores only.")
    lines.append(f"Rule: {VALIDATION_BLIND.description}.")
    return lines


def _why_lines(res):
    """Why the network does well in training and fails on test, from the diagnosis numbers."""
    diag, att = res.diagnosis.result, res.attribution_share
    a = res.split_accuracy[res.network]
    lines = list(res.summary_sentences)
    ev, imp = diag.evidence, res.diagnosis.importance
    for s in diag.suspects:
        f, e = s.feature, ev.loc[s.feature]
        text = f"`{f}` ({s.kind}) carries {att['train'].get(f, float('nan')):.0%} of the network's input " \
               f"sensitivity on train and {att['test'].get(f, float('nan')):.0%} on test"
        if "train" in imp and "test" in imp:
            d_imp = imp["test"].get(f, float("nan")) - imp["train"].get(f, float("nan"))
            text += (f"; shuffling it costs {imp['train'].get(f, float('nan')):.3f} accuracy on train and "
                     f"{imp['test'].get(f, float('nan')):.3f} on test (importance {_verb(d_imp, 'rises', 'falls')})")
        if "info_train" in e and "info_test" in e and s.kind != "missingness":
            text += (f"; it carries {e['info_train']:.3f} nats about the label in train and "
                     f"{e['info_test']:.3f} within test")
        lines.append(text + ".")
    if diag.suspects and res.labelled:
        lines.append(f"The validation split is cut from the training file, so it shares train's relationships "
                     f"and scores {a['val']:.4f}; test, where they differ, scores {a['test']:.4f}.")
    if res.loss_fall is not None and res.labelled:
        fall, k, last = res.loss_fall
        if fall > STILL_LEARNING.threshold:
            lines.append(f"Without the dropped features the training loss is still falling at the last "
                         f"iteration ({last:.3f}, {fall:.1%} lower than {k} iterations earlier; "
                         f"{STILL_LEARNING.description}): more iterations may change its accuracy.")
    return lines


Q2_LRS = (0.1, 0.3, 1.0, 3.0, 10.0)

# Question 2's rules (``_q2_verdict`` and ``render_q2`` apply them).
Q2_SPEED = Rule("speed", 0.2,
                "sharing changes convergence *speed* at a learning rate when the median iterations to "
                "the loss threshold differ by more than {points}% (relative)")
Q2_STABILITY = Rule("stability", 0.2,
                    "sharing changes *stability* at a learning rate when the fractions of diverged "
                    "runs differ by at least {threshold:g}")
Q2_COSINE = Rule("path alignment", 0.2,
                 "the two bias-gradient paths are *aligned* when their mean cosine exceeds "
                 "{threshold:+.1f}, *opposed* below {negative:+.1f}, else nearly orthogonal")


def _q2_verdict(summary, speed_tol=Q2_SPEED.threshold, stab_tol=Q2_STABILITY.threshold):
    """Compare shared vs independent runs per learning rate; return rows and the findings.

    Speed: median iterations to the loss threshold differ by more than ``speed_tol``
    (relative). Stability: diverged fractions differ by at least ``stab_tol``.
    """
    by = {(s["model"], s["lr"]): s for s in summary}
    rows, slower, faster, less_stable, more_stable = [], [], [], [], []
    for lr in sorted({s["lr"] for s in summary}):
        sh, ind = by[("shared", lr)], by[("independent", lr)]
        it_s, it_i = sh["iters_to_threshold_median"], ind["iters_to_threshold_median"]
        rows.append({"lr": lr, "shared iters": "not reached" if it_s is None else it_s,
                     "independent iters": "not reached" if it_i is None else it_i,
                     "shared final loss": sh["final_loss_mean"], "independent final loss": ind["final_loss_mean"],
                     "shared final acc": sh["final_acc_mean"], "independent final acc": ind["final_acc_mean"],
                     "shared diverged": sh["diverged_frac"], "independent diverged": ind["diverged_frac"],
                     "cos(paths)": sh["mean_cos_paths"], "|δ_out|": sh["mean_norm_output_path"],
                     "|δ_hidden|": sh["mean_norm_hidden_path"]})
        if sh["diverged_frac"] - ind["diverged_frac"] >= stab_tol:
            less_stable.append(lr)
        elif ind["diverged_frac"] - sh["diverged_frac"] >= stab_tol:
            more_stable.append(lr)
        if it_s is not None and it_i is not None and max(it_s, it_i) > 0:
            rel = (it_s - it_i) / max(it_i, 1)
            if rel > speed_tol:
                slower.append(lr)
            elif rel < -speed_tol:
                faster.append(lr)
        elif it_s is None and it_i is not None:
            slower.append(lr)
        elif it_i is None and it_s is not None:
            faster.append(lr)
    return rows, {"slower": slower, "faster": faster, "less_stable": less_stable, "more_stable": more_stable}


def _q2_setup(cfg):
    """Seeds, learning rates and iterations of the Q2 experiments."""
    seeds = tuple(range(cfg.seed, cfg.seed + (2 if cfg.quick else 5)))
    lrs = (0.3, 3.0) if cfg.quick else Q2_LRS
    return seeds, lrs, 50 if cfg.quick else 200


def _q2_tasks(ctx):
    """The Q2 tasks: the training split and a small synthetic 3-class task, ``{task: (X, Y one-hot)}``."""
    import numpy as np
    from sklearn.datasets import make_classification
    d, k = ctx.data, len(ctx.dataset.classes)
    Xs, ys = make_classification(n_samples=2000, n_features=5, n_informative=4, n_redundant=0,
                                 n_classes=3, n_clusters_per_class=1, random_state=ctx.cfg.seed)
    return {"data": (d["X_train"], np.eye(k)[d["y_train"]]),
            "synthetic": ((Xs - Xs.mean(0)) / Xs.std(0), np.eye(3)[ys])}


def _q2_jobs(ctx):
    """Queue the Q2 experiments, one job per task and learning rate (each learning
    rate's runs and threshold are independent of the others'); ``{task: [futures]}``."""
    import shared_bias
    cfg = ctx.cfg
    seeds, lrs, n_iter = _q2_setup(cfg)
    # in a worker one thread per job; in-process the experiment's own threads (--threads)
    n_jobs = 1 if ctx.jobs.workers else cfg.threads
    return {task: [ctx.jobs.submit(("q2", task, lr), shared_bias.bias_experiment, X, Y, lrs=(lr,), seeds=seeds,
                                   n_iter=n_iter, hidden="relu", output="softmax", loss="ce",
                                   n_jobs=n_jobs, priority=PRIORITY["Q2"], group="Q2")
                   for lr in lrs]
            for task, (X, Y) in _q2_tasks(ctx).items()}


def _merge_bias_experiments(exps):
    """One ``shared_bias.bias_experiment`` result from results for disjoint learning rates
    (same task, seeds and iterations), in the order given."""
    config = dict(exps[0]["config"], lrs=[lr for e in exps for lr in e["config"]["lrs"]])
    return {"config": config, "summary": [s for e in exps for s in e["summary"]],
            "curves": {key: c for e in exps for key, c in e["curves"].items()}}


_Q2_WORDS = {"slower": "slower", "faster": "faster", "less_stable": "diverges more",
             "more_stable": "diverges less"}
# The same findings as ``render_q2``'s answer words them, in the order it lists them.
_Q2_ANSWERS = {"less_stable": "diverges more often", "more_stable": "diverges less often",
               "slower": "converges more slowly", "faster": "converges faster"}


@dataclass(frozen=True, eq=False)
class Q2Result(_Result):
    """Question 2: shared vs independent biases per task and learning rate.

    ``experiments[task]`` is the merged ``shared_bias.bias_experiment`` result
    (``config``, ``summary``, ``curves``); ``tables[task]`` the per-learning-rate
    comparison; ``findings[task]`` the learning rates where sharing is
    slower/faster/less_stable/more_stable (``Q2_SPEED``, ``Q2_STABILITY``).
    """
    seeds: tuple
    lrs: tuple
    n_iter: int
    n_rows: int
    n_features: int
    n_classes: int
    experiments: dict
    tables: dict
    findings: dict
    cosines: list               # mean cosine of the two bias-gradient paths per shared run setting
    path_ratios: list           # hidden-path / output-path norm per shared run setting

    @property
    def answer(self):
        changed = any(f["less_stable"] or f["more_stable"] or f["slower"] or f["faster"]
                      for f in self.findings.values())
        return "yes" if changed else "no"

    @property
    def headline(self):
        return f"answer: {self.answer}; " + "; ".join(
            f"{t}: shared " + ", ".join(f"{_Q2_WORDS[k]} at lr {'/'.join(f'{x:g}' for x in v)}"
                                        for k, v in f.items() if v)
            if any(f.values()) else f"{t}: no change" for t, f in self.findings.items())

    def to_metrics(self):
        import prep
        m = {task: {"config": exp["config"], "summary": exp["summary"], "findings": self.findings[task],
                    "table": prep.to_jsonable(self.tables[task])}
             for task, exp in self.experiments.items()}
        m["answer"] = self.answer
        m["headline"] = self.headline
        return m


def compute_q2(ctx):
    """Question 2's numbers: the merged experiments of the jobs ``Q2.runs``, the
    comparison per learning rate and the findings."""
    import pandas as pd
    cfg, d = ctx.cfg, ctx.data
    seeds, lrs, n_iter = _q2_setup(cfg)
    experiments, tables, findings = {}, {}, {}
    for task, futures in ctx.plan["Q2.runs"].items():
        t0 = time.perf_counter()
        exp = experiments[task] = _merge_bias_experiments([f.result() for f in futures])
        print(f"    Q2 {task}: {len(lrs) * len(seeds) * 2} runs × {n_iter} iterations "
              f"(waited {time.perf_counter() - t0:.1f} s)", flush=True)
        rows, findings[task] = _q2_verdict(exp["summary"])
        tables[task] = pd.DataFrame(rows)
    shared = [s for t in findings for s in experiments[t]["summary"] if s["model"] == "shared"]
    return Q2Result(seeds=seeds, lrs=lrs, n_iter=n_iter, n_rows=len(d["y_train"]),
                    n_features=d["X_train"].shape[1], n_classes=len(ctx.dataset.classes),
                    experiments=experiments, tables=tables, findings=findings,
                    cosines=[s["mean_cos_paths"] for s in shared if s["mean_cos_paths"] is not None],
                    path_ratios=[s["mean_norm_hidden_path"] / s["mean_norm_output_path"] for s in shared
                                 if s["mean_norm_output_path"]])


def _q2_display(summary, n_seeds, n_iter):
    """Question 2's table as a reader takes it in: one row per learning rate and model,
    counts as "k of n" seeds, "> n_iter" for a threshold the median seed never reaches
    (the CSV keeps ``_q2_verdict``'s numbers)."""
    import pandas as pd
    order = {"shared": 0, "independent": 1}
    rows = []
    for sm in sorted(summary, key=lambda x: (x["lr"], order.get(x["model"], 2))):
        iters = sm["iters_to_threshold"]               # one entry per seed
        median = sm["iters_to_threshold_median"]
        rows.append({"lr": rp.format_number(sm["lr"], "g"), "biases": sm["model"],
                     "iterations to threshold": f"> {n_iter}" if median is None else rp.format_number(median, ".3g"),
                     "seeds reaching it": f"{sum(i is not None for i in iters)} of {len(iters)}",
                     "diverged": _count(sm["diverged_frac"], n_seeds),
                     "final loss": sm["final_loss_mean"], "final accuracy": sm["final_acc_mean"],
                     "cos(paths)": sm["mean_cos_paths"], "|δ_out|": sm["mean_norm_output_path"],
                     "|δ_hidden|": sm["mean_norm_hidden_path"]})
    return pd.DataFrame(rows)


def render_q2(res, out):
    """Question 2's derivation, tables (tables/q2_*.csv), figures (figures/q2_*.png) and answer."""
    import numpy as np
    import plots

    r = out.report
    r.markdown((REPO_DIR / "docs" / "q2_derivation.md").read_text(encoding="utf-8"), level_offset=2)
    r.heading("Experiment", 3)
    r.para(f"Both networks (hidden ReLU, softmax output, cross-entropy; hidden width m = k) start from "
           f"the same W, U, b (b1 = b2 = b for the independent one) drawn N(0, 0.1²) for each of "
           f"{len(res.seeds)} seeds and are trained by full-batch gradient descent for {res.n_iter} iterations "
           f"at learning rates {', '.join(f'{lr:g}' for lr in res.lrs)}. Tasks: the training split "
           f"({res.n_rows:,} × {res.n_features}, k = {res.n_classes}) and a synthetic 3-class task "
           "(2,000 × 5). A run *diverges* when its loss becomes non-finite or exceeds 10× its start. "
           "Iterations to threshold: first iteration at which a run has made 95% of the largest loss "
           "decrease any run achieved at that learning rate (median over seeds).")
    for task, exp in res.experiments.items():
        label = "training data" if task == "data" else "synthetic task"
        n = len(res.seeds)
        _show_table(out, res.tables[task], f"q2_{task}", shown=_q2_display(exp["summary"], n, res.n_iter),
                    floatfmt=".3g", na={"final loss": "diverged", "final accuracy": "diverged"}, key=2,
                    caption=f"{label}: shared vs independent biases per lr, over {_plural(n, 'seed')}. "
                            f"Iterations to threshold: median over seeds (> {res.n_iter}: most seeds do "
                            f"not reach it within the {res.n_iter} iterations); final loss and accuracy: "
                            "mean over the seeds that did not diverge; cos(paths), |δ_out|, |δ_hidden|: "
                            "mean cosine and norms of the two bias-gradient paths")
        curves = {f"lr = {lr:g}": {mdl: exp["curves"][(mdl, lr)]["loss"] for mdl in ("shared", "independent")}
                  for lr in res.lrs}
        out.save_figure(plots.loss_panels(curves, f"Q2 on the {label}: loss (mean, min–max over seeds)"),
                        f"q2_{task}_loss.png", f"{label}: training loss per iteration, shared vs independent")
        paths = {}
        for lr in res.lrs:
            c = exp["curves"][("shared", lr)]
            with warnings.catch_warnings():  # all seeds diverged: NaN, drawn as a gap
                warnings.simplefilter("ignore", RuntimeWarning)
                paths[(f"lr={lr:g}", "|δ_out|")] = np.nanmean(c["norm_output_path"], 0)
                paths[(f"lr={lr:g}", "|δ_hidden|")] = np.nanmean(c["norm_hidden_path"], 0)
        out.save_figure(plots.gradient_magnitudes(paths, title=f"Q2 ({label}): norms of the two bias-gradient "
                                                  "paths", ylabel="norm"),
                        f"q2_{task}_paths.png", f"{label}: norms of the output-path and hidden-path bias "
                        "gradients of the shared model (mean over seeds)")

    r.heading("Answer", 3)
    lines = []
    for task, f in res.findings.items():
        label = "training data" if task == "data" else "synthetic task"
        parts_ = [f"sharing {phrase} at lr {', '.join(f'{x:g}' for x in f[key])}"
                  for key, phrase in _Q2_ANSWERS.items() if f[key]]
        lines.append(f"{label}: " + ("; ".join(parts_) if parts_ else
                                     f"no difference beyond the rules ({Q2_SPEED.description}; "
                                     f"{Q2_STABILITY.description})") + ".")
    cos = res.cosines
    if cos:
        mean = np.mean(cos)
        lines.append(f"The two bias-gradient paths have mean cosine {mean:+.2f} (range "
                     f"{min(cos):+.2f} to {max(cos):+.2f}) over runs: "
                     + ("they mostly pull b the same way, so the step on b is the sum of two aligned "
                        "gradients — a larger effective learning rate on b." if mean > Q2_COSINE.threshold else
                        "they mostly pull b in opposite directions, so the shared b must compromise "
                        "between what the hidden and the output layer need." if mean < -Q2_COSINE.threshold
                        else "they are nearly orthogonal on average: the shared b follows two unrelated demands.")
                     + f" The hidden path is {np.median(res.path_ratios):.2f}× the output path (median)."
                     + f" (Rule: {Q2_COSINE.description}.)")
    changed = res.answer == "yes"
    lines.insert(0, f"**Does sharing the bias change convergence speed or stability? {res.answer.capitalize()}**"
                 + (" — measurably, in the settings listed below." if changed else
                    " — not measurably in these settings."))
    r.bullets(lines)


# ------------------------------------------------------------ registry, schedule
@dataclass(frozen=True)
class Part:
    """One assignment part: everything the run needs to know about it.

    ``needs``: parts whose results its computation reads (asking for it alone
    runs them first; if one fails it is skipped). ``priority``: of its worker
    jobs (lower runs first). ``aliases``: accepted spellings besides the code
    (case-insensitive, spaces ignored).
    """
    code: str
    key: str
    title: str
    needs: tuple
    compute: Any
    render: Any
    priority: int = 0
    aliases: tuple = ()


# The one table of parts, in run order. Adding a part: one row here, its
# compute/render pair above and (if it runs background work) its jobs in ``schedule``.
PARTS = {p.code: p for p in (
    Part("A", "partA", "Part A: data and exploratory analysis", (), compute_a, render_a),
    Part("B", "partB", "Part B: MLP from scratch and gradient magnitudes", (), compute_b, render_b,
         priority=0, aliases=("BA", "BB", "B(A)", "B(B)")),
    Part("C", "partC", "Part C: input gradients and feature attribution", ("B",), compute_c, render_c,
         aliases=("CA", "CB", "C(A)", "C(B)")),
    Part("D", "partD", "Part D: test accuracy and generalisation", ("B",), compute_d, render_d, priority=1),
    Part("Q2", "q2", "Question 2: shared bias", (), compute_q2, render_q2, priority=2,
         aliases=("Q", "QUESTION2")),
)}
# Views of the table for the CLI (``parse_parts``) and ``main``.
PART_ALIASES = {alias: p.code for p in PARTS.values() for alias in p.aliases}
NEEDS = {p.code: p.needs for p in PARTS.values() if p.needs}
# Job priorities: what the next part waits for goes first; Q2's experiments
# fill the workers whenever no training is waiting.
PRIORITY = {p.code: p.priority for p in PARTS.values()}


def plan(parts):
    """The parts to run, in order: the chosen ones plus the parts they need (``Part.needs``)."""
    chosen = set(parts)
    for p in parts:
        chosen.update(PARTS[p].needs)
    return tuple(p for p in PARTS if p in chosen)


def schedule(ctx):
    """Declare every job of the run, top to bottom, with what it waits for; a ``Schedule``.

    Worker jobs are queued now (they start as soon as a worker is free, by
    priority); each ``Step`` runs in this process before the part named in its
    ``before`` (or when first asked for). A part reads only its own entries.
    """
    cfg, parts, d = ctx.cfg, set(ctx.parts), ctx.data
    plan_ = Schedule()
    if "B" in parts:
        # B(a): one network per activation (inputs: the encoded data)
        plan_["B.fits"] = {act: _train_async(ctx, act, activation=act, priority=PRIORITY["B"],
                                                group="B")
                           for act in cfg.activations}
        # sigmoid set-up study, compared by final accuracy and gradient ratio: no validation curve
        if "sigmoid" in cfg.activations:
            plan_["B.sigmoid"] = {(init, lr): _train_async(ctx, f"sigmoid {init} lr={lr:g}", activation="sigmoid",
                                                           init=init, lr=lr, priority=PRIORITY["B"], validate=False,
                                                           group="B")
                                  for init, lr in _sigmoid_trials(cfg)[1:]}
    if "Q2" in parts:
        # Question 2: one job per task and learning rate (inputs: the encoded data)
        plan_["Q2.runs"] = _q2_jobs(ctx)
    if "B" in parts:
        # main process, first thing in Part B: the trained networks and their scores
        acts = list(plan_["B.fits"])
        plan_["B.networks"] = Step("B.networks", lambda *models: _networks_step(d, dict(zip(acts, models))),
                                   inputs=plan_["B.fits"].values(), before="B")
    if parts & {"C", "D"}:
        # main process: sensitivity and permutation importance of B's best network (C reports them,
        # D's diagnosis uses them); early, in Part B, when D's trainings wait for the diagnosis
        plan_["checks"] = Step("checks", lambda nets: _checks_step(ctx, nets), inputs=[plan_["B.networks"]],
                               before="B" if "D" in parts else None)
    if "D" in parts:
        # main process, in Part B: the train/test shift diagnosis of B's best network
        plan_["D.diagnosis"] = Step("D.diagnosis", lambda nets, checks: _diagnosis_step(ctx, nets, checks),
                                    inputs=[plan_["B.networks"], plan_["checks"]], before="B")
        # D's mitigation trainings (inputs: B's best network and the diagnosis's suspects)
        plan_["D.mitigations"] = Step("D.mitigations", lambda nets, diag: _mitigations_step(ctx, nets, diag),
                                      inputs=[plan_["B.networks"], plan_["D.diagnosis"]], before="B")
        # D's combined mitigation: a worker job queued when the training options have finished
        plan_["D.combination"] = Step("D.combination",
                                      lambda nets, diag, mits: _combination_after(ctx, nets, diag, mits),
                                      inputs=[plan_["B.networks"], plan_["D.diagnosis"], plan_["D.mitigations"]],
                                      before="B")
    return plan_


def run_parts(ctx, parts, log=print, console=None):
    """Run ``parts`` in order, each timed and isolated; return the codes of parts that failed.

    For each part: the schedule's steps declared before it, its computation
    (the result goes to ``ctx.results[code]``, its serialised form to
    ``ctx.metrics[key]``) and its renderer. ``log`` is ``print`` or anything
    accepting its arguments (incl. ``flush=``); with a ``Console`` the
    headers, the job lines and the estimates go through it instead
    (``Console.begin``/``end`` around each part).

    A part that raises gets ``{"error": "...", "partial": {...}}`` in
    ``ctx.metrics[key]`` (``partial``: its serialised result when only the
    rendering failed), its traceback in ``out/logs/<key>.log`` and an error
    box in the report; the run continues. A part whose prerequisite failed is
    skipped (and counts as failed). A step that raises fails the parts that
    use its result, not the part it runs before.
    """
    failed = []
    timing = ctx.metrics.setdefault("timing", {})
    plan_ = ctx.plan if ctx.plan is not None else Schedule()
    if console is not None:
        log = console

    def begin(code, header):
        if console is not None:
            console.begin(code, header)
        else:
            log(header, flush=True)

    for i, code in enumerate(parts, 1):
        part = PARTS[code]
        key, title = part.key, part.title
        ctx.report.heading(title, 2)
        ctx.metrics[key] = {}
        missing = [n for n in part.needs if n in failed]
        if missing:
            msg = f"skipped: needs part {', '.join(missing)}, which failed"
            ctx.metrics[key] = {"error": msg}
            ctx.report.banner(f"{title} was {msg}.", kind="error")
            begin(code, f"[{i}/{len(parts)}] {title}: {msg}")
            if console is not None:
                console.end(code)
            failed.append(code)
            continue
        begin(code, f"[{i}/{len(parts)}] {title} ...")
        t0 = time.perf_counter()
        try:
            for step in plan_.steps_before(code):
                step.run()          # keeps its error for the parts that use it
            result = part.compute(ctx)
            ctx.results[code] = result
            ctx.metrics[key] = result.to_metrics()
            part.render(result, ctx.output)
        except Exception as exc:
            elapsed = time.perf_counter() - t0
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            log_path = ctx.output.path("logs", f"{key}.log")
            rp.write_atomic(log_path, traceback.format_exc())
            partial = ctx.metrics.get(key) or {}
            ctx.results.pop(code, None)
            ctx.metrics[key] = {"error": msg, **({"partial": partial} if partial else {})}
            ctx.report.banner(f"{title} failed: {msg}\n"
                              f"Traceback in logs/{key}.log; the report continues without it.",
                              kind="error")
            log(f"    FAILED after {elapsed:.1f} s: {msg} (traceback: {log_path})")
            failed.append(code)
        else:
            elapsed = time.perf_counter() - t0
            log(f"    done in {elapsed:.1f} s")
        finally:
            if console is not None:
                console.end(code)
        timing[key] = round(elapsed, 3)
    return failed


# -------------------------------------------------------------------- summary
# Every abbreviation and term of art the report's text may use: term -> (what its
# first use shows in parentheses, the glossary's definition). ``define_terms``
# registers the ones a report actually uses, so the glossary lists no stray entry;
# ``summary`` applies it once to the summary and every part's section together.
GLOSSARY = {
    "pps": ("predictive-power score",
            "predictive-power score: how well one column alone predicts the label, measured with a "
            "small cross-validated decision tree (0 = no better than always predicting the majority "
            "class, 1 = perfectly)"),
    "KS": ("Kolmogorov–Smirnov statistic",
           "Kolmogorov–Smirnov statistic: the largest gap between the cumulative distributions of a "
           "numeric column in two files (0 = identical, 1 = no overlap)"),
    "Cramér's V": ("association of a categorical column with the file",
                   "the association between a categorical column and the file a row comes from (0 = the "
                   "same level shares in both files, 1 = no level in common)"),
    "ROC AUC": ("area under the ROC curve",
                "area under the receiver-operating-characteristic curve: the chance that a classifier "
                "scores a random row of one group above a random row of the other (0.5 = chance, 1 = "
                "perfect separation)"),
    "AUC": ("area under the ROC curve",
            "area under the receiver-operating-characteristic curve (0.5 = chance, 1 = perfect separation)"),
    "ReLU": ("rectified linear unit, max(0, z)", "rectified linear unit: the activation g(z) = max(0, z)"),
    "CI": ("confidence interval",
           "confidence interval: a range that contains the true value in the stated share of repeated samples"),
    "macro-F1": ("F1 averaged over classes",
                 "macro-averaged F1 score: the F1 score (harmonic mean of precision and recall) of each "
                 "class, averaged with the same weight for every class, so small classes count as much as "
                 "large ones"),
    "lr": ("learning rate", "learning rate: the step size of gradient descent"),
    "MLP": ("multi-layer perceptron", "multi-layer perceptron: a feed-forward network of fully connected layers"),
    "L2": ("weight penalty", "L2 penalty (weight decay): adds λ times the sum of squared weights to the loss"),
    "Glorot": ("weights scaled to the layer sizes",
               "Glorot (Xavier) initialisation: weights drawn with variance 2 / (fan_in + fan_out), so "
               "the signal keeps its scale from layer to layer"),
    "Spearman correlation": ("correlation of two rankings",
                             "the correlation of two rankings (+1 = same order, −1 = reversed order, "
                             "0 = unrelated)"),
    "z-scored": ("minus the training mean, divided by the training standard deviation",
                 "centred on the training split's mean and divided by its standard deviation"),
    "one-hot": ("one 0/1 column per level",
                "encoding: a categorical column becomes one 0/1 column per level"),
}


def _block_texts(blocks):
    """The running text, captions and table cells of report blocks (not code or math)."""
    def flat(items):
        for it in items:
            if isinstance(it, (list, tuple)):
                yield from flat(it)
            else:
                yield str(it)
    for b in blocks:
        for name in ("text", "caption"):
            v = getattr(b, name, None)
            if isinstance(v, str) and not isinstance(b, (rp.Code, rp.Math)):
                yield v
        if isinstance(b, rp.Bullets):
            yield from flat(b.items)
        if isinstance(b, rp.Table):
            yield from map(str, b.columns)
            for row in b.rows:
                yield from map(str, row)


def define_terms(report, blocks=None):
    """Register on ``report`` (``Report.define``) every ``GLOSSARY`` term used in ``blocks``
    (default: the report's own blocks): explained at its first use and in the glossary."""
    import re
    text = "\n".join(_block_texts(report.blocks if blocks is None else blocks))
    for term in sorted(GLOSSARY, key=len, reverse=True):    # "ROC AUC" is not a use of "AUC"
        pattern = re.compile(r"(?<!\w)" + re.escape(term) + r"(?!\w)")
        if pattern.search(text):
            short, meaning = GLOSSARY[term]
            report.define(term, meaning, short=short)
            text = pattern.sub(" ", text)
    return report


def _fmt(v, spec=".3f", na="–"):
    """A number for running text: ``report.format_number`` with ``spec``; ``na`` for None/NaN."""
    if v is None or (not isinstance(v, int) and v != v):
        return na
    return rp.format_number(v, spec)


def _plural(n, word, plural=None):
    """``"1 seed"``, ``"3 seeds"`` (with thousands separators)."""
    return f"{rp.format_number(n)} {word if n == 1 else plural or word + 's'}"


def _count(frac, n):
    """A fraction of ``n`` runs as the count a reader can check: ``"4 of 5"``."""
    return f"{int(round(frac * n))} of {n}"


def _points(delta):
    """An accuracy difference in percentage points: ``"+3.2 points"``."""
    return f"{delta * 100:+.1f} points".replace("-", "−")


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _plain_number(v, sig=3):
    """``v`` with ``sig`` significant digits in plain notation: ``0.00252``, ``6,860``, and
    ``4.3 × 10⁻⁶`` only where a decimal would need more than four zeros."""
    if v is None or not math.isfinite(v):
        return _fmt(v)
    if v != 0 and abs(v) < 1e-4:
        mantissa, exp = f"{v:.{sig - 1}e}".split("e")
        return f"{mantissa} × 10{str(int(exp)).translate(_SUPERSCRIPT)}"
    return rp.format_number(v, f".{sig}g")


def _duration(seconds):
    """``"48 s"``, ``"2 min 5 s"``, ``"1 h 3 min"``."""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _sentence(text):
    """``text`` as a sentence: stripped, capitalised, ending with a full stop."""
    text = str(text).strip()
    if not text:
        return ""
    if text[0].islower():
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _names(items):
    """Names in code spans joined for a sentence: "`a`", "`a` and `b`", "`a`, `b` and `c`"."""
    items = [f"`{i}`" for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def verdict_sentences(d):
    """Part D's verdict in one or two plain sentences, each ending with a full stop:
    the result's own ``summary_sentences`` (``DResult`` builds them from the diagnosis).

    Parameters
    ----------
    d : Part D's result, or None when it did not run

    Returns
    -------
    list of str
    """
    if d is None:
        return ["Part D did not run, so there is no diagnosis."]
    own = d.summary_sentences
    return [s for s in map(_sentence, [own] if isinstance(own, str) else own) if s] or \
        ["Part D reported no diagnosis."]


def recommended_mitigation(d):
    """The mitigation the summary recommends (the validation winner, ``d.mitigations[d.by_val]``,
    row 0 being the unmitigated baseline) and the diagnosis's fix beside it, or None.

    Returns
    -------
    dict or None
        ``name``, ``val_acc``, ``test_acc`` (None without test labels),
        ``baseline_test_acc``, ``is_baseline``, ``fix`` (the diagnosis's fix row when it
        is not the recommended one, else None) and ``root_cause``.
    """
    if d is None:
        return None
    rows, i, k = d.mitigations, d.by_val, d.fix
    chosen = rows[i]
    return {"name": chosen["name"], "val_acc": chosen.get("val_acc"), "test_acc": chosen["test_acc"],
            "baseline_test_acc": rows[0]["test_acc"], "is_baseline": i == 0,
            "fix": rows[k] if k is not None and k != i else None, "root_cause": bool(d.root_cause)}


def _mitigation_sentences(m):
    if m is None:
        return ["Part D did not run, so no mitigation was measured."]
    if m.get("test_acc") is None:        # an unlabelled test file: nothing measured on test
        chosen = "none is recommended" if m["is_baseline"] else f"**{m['name']}** is recommended"
        return [f"On validation {chosen}; test has no labels, so no mitigation's test accuracy is measured."]
    if m["is_baseline"]:
        out = [f"No mitigation beats the unmitigated network on validation, so none is recommended; "
               f"its test accuracy is {_fmt(m['test_acc'])}."]
    else:
        out = [f"Recommended (highest validation accuracy, {_fmt(m['val_acc'])}): **{m['name']}**, with "
               f"test accuracy {_fmt(m['test_acc'])} against {_fmt(m['baseline_test_acc'])} without it "
               f"({_points(m['test_acc'] - m['baseline_test_acc'])})."]
    f = m.get("fix")
    if f is not None and f.get("test_acc") is not None:
        ci = (f"; 99% CI {f['gain_lo'] * 100:+.1f} to {f['gain_hi'] * 100:+.1f} points"
              if f.get("gain") is not None else "")
        out.append(f"The diagnosis's fix, **{f['name']}**, which validation (cut from the training file) "
                   f"cannot rank, scores {_fmt(f['test_acc'])} on test ({_points(f['test_acc'] - m['baseline_test_acc'])}"
                   f"{ci}): "
                   + ("the measured closure of the gap that names the root cause." if m.get("root_cause")
                      else "not a measurable closure of the gap."))
    return out


def _summary_accuracy(results):
    """Network -> split -> accuracy for the summary table; Part D's mitigation row is the
    recommended one (chosen on validation) when the result says which that is."""
    acc = {}
    for code in PARTS:
        res = results.get(code)
        if res is None:
            continue
        rows = dict(res.accuracy)
        split = getattr(res, "split_accuracy", None)
        m = recommended_mitigation(res) if code == "D" else None
        if m is not None:
            rows = {k: v for k, v in rows.items() if k in split}
            if not m["is_baseline"]:
                rows[f"{res.network} + {m['name']} (recommended)"] = {"val": m["val_acc"], "test": m["test_acc"]}
            if m.get("fix") is not None:
                f = m["fix"]
                rows[f"{res.network} + {f['name']} (the diagnosis's fix)"] = {"val": f["val_acc"],
                                                                              "test": f["test_acc"]}
        for net, splits in rows.items():
            acc.setdefault(net, {}).update(splits)
    return acc


def _data_line(data, out):
    """The data paragraph: where from (relative to the report), rows, features, classes."""
    if data.get("synthetic"):
        where = "the built-in synthetic data"
    else:
        where = f"train.csv and test.csv in `{rp.display_path(data.get('source', '?'), out)}`"
    n = rp.format_number
    classes = data.get("classes") or []
    text = f"Data: {where}: "
    if "n_train" in data:
        text += (f"{n(data['n_train'])} training rows ({n(data.get('n_fit', 0))} to fit, "
                 f"{n(data.get('n_val', 0))} to validate) and {n(data.get('n_test', 0))} test rows; ")
    if "n_features" in data:
        text += f"{_plural(data['n_features'], 'encoded feature')}; "
    if classes:
        text += (f"target `{data.get('target', '?')}` with {len(classes)} classes "
                 f"({', '.join(map(str, classes))})")
    return _sentence(text.rstrip("; "))


def summary(ctx):
    """The first screen: the data, the accuracy table, Part D's verdict in one or two
    sentences (``verdict_sentences``), the recommended mitigation with its test result
    (``recommended_mitigation``) and the run time; then each part's status. Whatever is
    missing shows as "not run".

    Reads each result's ``accuracy`` (network -> split -> accuracy; later parts
    override earlier ones) and ``headline``, Part D's result as the two functions
    above do, ``data`` and ``timing`` from ``ctx.metrics``. Registers the
    ``GLOSSARY`` terms that the summary and the parts' report (``ctx.report``) use.

    Returns
    -------
    report.Report
        A fragment (its blocks go first in the final report).
    """
    m, results = ctx.metrics, ctx.results
    frag = rp.Report("summary")
    frag.heading("Summary", 2)
    data = m.get("data", {})
    if data:
        frag.para(_data_line(data, ctx.out))
    acc = _summary_accuracy(results)
    if acc:
        frag.table([{"network": net, "train": s.get("train"), "validation": s.get("val"),
                     "test": s.get("test")} for net, s in acc.items()],
                   caption="Accuracy (share of rows classified correctly)", floatfmt=".3f")
    else:
        frag.para("Accuracy: not run.")
    d = results.get("D")
    frag.para("**Verdict:** " + " ".join(verdict_sentences(d)))
    frag.para("**Mitigation:** " + " ".join(_mitigation_sentences(recommended_mitigation(d))))
    timing = m.get("timing", {})
    if "total" in timing:
        text = f"**Run time:** {_duration(timing['total'])} (data loading {_duration(timing.get('data', 0))})"
        if timing.get("workers"):
            text += f", with {_plural(timing['workers'], 'worker process', 'worker processes')} beside the main one"
        if timing.get("cpu_main") is not None:
            text += (f"; CPU time {_duration(timing['cpu_main'])} in the main process and "
                     f"{_duration(timing.get('cpu_workers', 0))} in the workers")
        frag.para(text + ".")
    rows = []
    for code, part in PARTS.items():
        pm = m.get(part.key)
        if pm is None:
            status = "not run"
        elif "error" in pm:
            status = pm["error"] if pm["error"].startswith("skipped") else f"failed: {pm['error']}"
        else:
            status = "done"
        res = results.get(code)
        rows.append({"part": part.title, "status": status, "seconds": timing.get(part.key),
                     "headline": res.headline if res is not None else ""})
    frag.table(rows, caption="Parts (seconds: the main process's time on the part, including waiting for "
                             "trainings that ran in the background)", floatfmt=".1f")
    define_terms(frag, frag.blocks + ctx.report.blocks)
    return frag


# ------------------------------------------------------------------- plumbing
def jsonable(obj):
    """Plain JSON values from numpy scalars/arrays, DataFrames, paths, tuples and NaN
    (``prep.to_jsonable``, imported late like the rest of the data code)."""
    import prep
    return prep.to_jsonable(obj)


def write_json(path, obj):
    """Write ``obj`` as pretty JSON, atomically."""
    rp.write_atomic(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def _versions():
    from importlib import metadata
    out = {"python": platform.python_version()}
    for name in ("numpy", "numba", "scikit-learn", "pandas", "scipy", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def load(cfg):
    """Load, validate and encode the data; return ``(dataset, data)``.

    Data mistakes surface as ``prep.DataError`` (a ``ValueError``), sizes that cannot fit
    as ``UsageError`` (``check_sizes``), both before any encoding or training.
    """
    import prep
    dataset = prep.load_data(cfg.data_dir, target=cfg.target,
                             categorical=list(cfg.categorical) if cfg.categorical else None,
                             drop=list(cfg.drop) if cfg.drop else None, seed=cfg.seed,
                             train_path=cfg.train, test_path=cfg.test, sep=cfg.sep,
                             test_size=cfg.test_size,
                             keep=list(cfg.keep_columns) if cfg.keep_columns else None,
                             expand_dates=cfg.expand_dates)
    check_sizes(cfg, dataset)
    data = prep.encode(dataset, missing_indicators=False, val_size=cfg.val_size, seed=cfg.seed)
    return dataset, data


def _user_errors():
    """Exception types that mean "your input is wrong" (one line, exit 2);
    ``prep.DataError`` is a ``ValueError``."""
    return (ValueError, OSError)


def _data_metrics(dataset, data):
    n_fit, n_val = len(data["y_train"]), len(data["y_val"])
    return {"source": str(dataset.source), "synthetic": bool(dataset.synthetic),
            "target": dataset.target, "numeric": list(dataset.numeric),
            "categorical": list(dataset.categorical), "classes": list(dataset.classes),
            "n_classes": len(dataset.classes), "n_train": n_fit + n_val, "n_fit": n_fit,
            "n_val": n_val, "n_test": len(data["X_test"]),
            "n_features": int(data["X_train"].shape[1]),
            "feature_names": list(data["feature_names"])}


def _cpu_seconds():
    """CPU seconds of this process and of its finished children (the workers), where the
    platform reports them (``resource`` is Unix-only)."""
    try:
        import resource
    except ImportError:
        return {}
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu_main": round(own.ru_utime + own.ru_stime, 1),
            "cpu_workers": round(kids.ru_utime + kids.ru_stime, 1)}


SYNTHETIC_BANNER = ("SYNTHETIC DATA: no train.csv/test.csv pair was found, so this run used the "
                    "built-in synthetic dataset. Its numbers say nothing about real data; pass "
                    "--data-dir DIR to analyse your CSVs.")

# OSErrors that mean "the output cannot be written" (one line, exit 2) wherever
# they happen: a full disk or quota, a file-size limit, a read-only filesystem.
_OUT_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS") if hasattr(errno, n)}


def _data_notes(dataset):
    """The console lines about the data a user must know: a test set split from the one
    labelled file (``prep.split_banner``) and a test file without labels
    (``prep.UNLABELLED_TEST_MESSAGE``)."""
    import prep
    notes = [prep.split_banner(dataset)] if dataset.split_from_one_file else []
    if not dataset.test_labelled:
        file = dataset.files[1] if len(dataset.files) > 1 else "test"
        notes.append(prep.UNLABELLED_TEST_MESSAGE.format(file=file, target=dataset.target))
    return notes


class _Interrupt:
    """Ctrl-C as a ``KeyboardInterrupt`` in the main thread, raised again every 0.2 s
    until ``main()``'s handler has taken it (``take``): Python drops an exception raised
    while a finalizer or weakref callback runs ("Exception ignored in ..."), and the run
    would then go on as if nothing had happened."""

    def __init__(self):
        self.pending = self.taken = False

    def handler(self, signum, frame):
        if self.taken:                  # main() is already stopping the run
            return
        if not self.pending:
            self.pending = True
            threading.Thread(target=self._repeat, name="sigint-repeat", daemon=True).start()
        raise KeyboardInterrupt

    def _repeat(self):
        import _thread
        for _ in range(50):             # 10 s at most
            time.sleep(0.2)
            if self.taken:
                return
            _thread.interrupt_main(signal.SIGINT)

    def take(self):
        self.taken = True

    def install(self):
        """Take over SIGINT and the unraisable-exception hook (where Python reports the
        dropped ``KeyboardInterrupt`` with a traceback: it is raised again, so it is not
        reported); ``restore`` undoes both."""
        self._saved = (signal.getsignal(signal.SIGINT), sys.unraisablehook)
        signal.signal(signal.SIGINT, self.handler)
        sys.unraisablehook = self._unraisable

    def _unraisable(self, args):
        if not isinstance(args.exc_value, KeyboardInterrupt):
            self._saved[1](args)

    def restore(self):
        if getattr(self, "_saved", None) is not None:
            signal.signal(signal.SIGINT, self._saved[0])
            sys.unraisablehook, self._saved = self._saved[1], None


def _unblock_sigint():
    """Deliver a Ctrl-C held back while the modules loaded (see the top of the file)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _ignore_sigint():
    """From here on Ctrl-C is ignored: the clean-up, or the final swap of out/, runs
    to its end (each takes a moment)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:      # not the main thread: nothing to protect against here
        pass


def _output_error(e, run):
    """The one-line message for ``e`` if it is about writing the run's output, else None."""
    path = e.filename
    inside = run is not None and path is not None and str(os.fspath(path)).startswith(str(run.parent))
    if e.errno not in _OUT_ERRNOS and not inside:
        return None
    return (f"--out: cannot write {os.fspath(path) if path is not None else str(run.out)!r} "
            f"({e.strerror or type(e).__name__}); free some space or pass another --out")


def _stop_run(run, pool, ctx=None, keep=True):
    """Clean up a run that will not finish: stop the workers, keep the metrics so
    far in its partial output, move that aside (``rundir.RunDir.abandon``).
    Returns the end of the one line telling the user where things are."""
    _ignore_sigint()
    if pool is not None:
        pool.close(cancel=True)
    if run is None:
        return "stopped while starting; nothing was written"
    kept = None
    if run.state == "open":
        if ctx is not None and keep:
            try:
                write_json(run.staging / "metrics.json", {"run_id": run.run_id, **ctx.metrics})
            except (OSError, ValueError, TypeError):
                pass
        kept = run.abandon(keep=keep)
    else:
        run.release()
    previous = run.previous_run_id()
    where = (f"{str(run.out)!r} still holds the previous run" + (f" ({previous})" if previous else "")
             if run.out.exists() else f"nothing was written to {str(run.out)!r}")
    return where + (f"; this run's partial output is in {str(kept)!r}" if kept else "")


class Console:
    """The run's console: each part's header, then the lines of the jobs that belong
    to it, and estimates of the time left.

    A worker job's printed lines (``Jobs`` ``sink``) are kept until the part of
    their ``group`` starts (``begin``), then printed; while it runs they are
    printed as they arrive. Lines of a part that has ended are printed with its
    code in front; lines without a group (warm-up) at once. ``install`` routes
    this process's own ``print`` through the console too, so nothing
    interleaves mid-line.

    Every ``interval`` seconds while a part runs, the console says how long the
    background jobs will take (``Jobs.remaining``): on a terminal as one status
    line rewritten in place, otherwise (a pipe, a file) as a plain line, at most
    one per ``interval`` and only when the estimate changed.

    Parameters
    ----------
    stream : text stream, optional
        Where everything goes (default: ``sys.stdout`` when created).
    tty : bool, optional
        Rewrite one status line in place (default: ``stream.isatty()``).
    interval : float, optional
        Seconds between estimates (default 1 on a terminal, 10 otherwise).
    """

    def __init__(self, stream=None, tty=None, interval=None):
        self.out = stream if stream is not None else sys.stdout
        if tty is None:
            try:
                tty = bool(self.out.isatty())
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.interval = interval if interval is not None else (1.0 if tty else 10.0)
        self.jobs = None
        self._lock = threading.RLock()
        self._pending = {}          # group -> lines printed before its part started
        self._current = None        # the code of the running part
        self._ended = set()
        self._status = ""           # the status line on screen (tty only)
        self._last_estimate = None
        self._stop = threading.Event()
        self._ticker = None
        self._saved_stdout = None

    # ----------------------------------------------------------------- output
    def _write(self, text):
        """Write whole lines (``text`` ends with a newline), under the status line."""
        with self._lock:
            if self._status:
                self.out.write("\r\033[K")
            self.out.write(text)
            if self._status:
                self.out.write(self._status)
            self.out.flush()

    def __call__(self, *args, sep=" ", end="\n", flush=False, file=None):
        """``print`` for the part loop and ``main`` (to ``file`` when one is given)."""
        if file is not None:
            print(*args, sep=sep, end=end, file=file, flush=flush)
            return
        self._write(sep.join(str(a) for a in args) + end)

    def job_line(self, group, key, line):
        """The ``Jobs`` sink: one line a job printed."""
        with self._lock:
            if group is None or group == self._current:
                self._write(line + "\n")
            elif group in self._ended:
                self._write(f"    [{group}] {line.strip()}\n")
            else:
                self._pending.setdefault(group, []).append(line)

    def install(self):
        """Route ``sys.stdout`` through the console until ``close``; returns self."""
        if self._saved_stdout is None:
            self._saved_stdout = sys.stdout
            sys.stdout = _ConsoleStream(self)
        return self

    # ------------------------------------------------------------------ parts
    def begin(self, code, header):
        """Part ``code`` starts: print ``header``, the lines its jobs printed so far
        and the estimate of the time left."""
        with self._lock:
            self._write(header + "\n")
            self._current = code
            lines = self._pending.pop(code, [])
            if lines:
                self._write("".join(line + "\n" for line in lines))
            text = self.estimate(code)
            if text:
                self._write(f"    {text}\n")
                self._last_estimate = text
        if self._ticker is None and self.jobs is not None and self.jobs.workers:
            self._ticker = threading.Thread(target=self._tick, name="console-estimate", daemon=True)
            self._ticker.start()

    def end(self, code):
        """Part ``code`` has ended: later lines of its jobs are printed with its code."""
        with self._lock:
            self._clear_status()
            self._current = None
            self._ended.add(code)
            lines = self._pending.pop(code, [])
            if lines:
                self._write("".join(f"    [{code}] {line.strip()}\n" for line in lines))
            text = self.estimate()
            if text and text != self._last_estimate and self.jobs.remaining() is not None:
                self._write(f"    {text}\n")
                self._last_estimate = text

    def close(self, pending=True):
        """Stop the estimates, print the lines no part showed (unless not ``pending``:
        they are dropped), restore ``sys.stdout``. Safe to call again."""
        self._stop.set()
        if self._ticker is not None and self._ticker.ident is not None:   # started (Ctrl-C may
            self._ticker.join(timeout=2.0)                                # hit inside start())
        with self._lock:
            self._clear_status()
            for group, lines in self._pending.items() if pending else ():
                self._write("".join(f"    [{group}] {line.strip()}\n" for line in lines))
            self._pending = {}
        if self._saved_stdout is not None:
            stream = sys.stdout
            sys.stdout, self._saved_stdout = self._saved_stdout, None
            if isinstance(stream, _ConsoleStream) and stream._buf:
                self._write(stream._buf + "\n")

    # -------------------------------------------------------------- estimates
    def estimate(self, code=None):
        """One sentence on the time the background jobs still need: those of part
        ``code`` and all of them; None when no job is unfinished. It gives a number
        only when ``Jobs.remaining`` has a basis (a finished job or reported progress)."""
        if self.jobs is None:
            return None
        status = self.jobs.status()
        left = [s for s in status if s.state in ("waiting", "running")]
        if not left:
            return None
        mine = [s for s in left if code is not None and s.group == code]
        total = self.jobs.remaining()
        if total is None:
            return (f"{_plural(len(left), 'background job')} to go; no time estimate yet "
                    "(none has finished or reported progress)")
        text = f"about {_seconds(total)} left in {_plural(len(left), 'background job')}"
        if mine:
            part = self.jobs.remaining(code)
            text += (f", of which part {code}'s {len(mine)}"
                     + (f" about {_seconds(part)}" if part is not None else " (no estimate yet)"))
        running = sum(s.state == "running" for s in left)
        return text + f" ({running} running)"

    def _tick(self):
        while not self._stop.wait(self.interval):
            with self._lock:
                if self._current is None:
                    continue
                try:
                    text = self.estimate(self._current)
                except Exception:       # a job table changing under us: try again later
                    continue
                if self.tty:
                    self._clear_status()
                    if text:
                        self._status = f"    ... {text}"
                        self.out.write(self._status)
                        self.out.flush()
                elif text and text != self._last_estimate:
                    self._write(f"    {text}\n")
                    self._last_estimate = text

    def _clear_status(self):
        if self._status:
            self.out.write("\r\033[K")
            self.out.flush()
            self._status = ""


class _ConsoleStream:
    """``sys.stdout`` while a ``Console`` is installed: whole lines go through it."""

    def __init__(self, console):
        self._console, self._buf = console, ""

    def write(self, text):
        self._buf += str(text)
        if "\n" in self._buf:
            whole, self._buf = self._buf.rsplit("\n", 1)
            self._console._write(whole + "\n")
        return len(text)

    def flush(self):            # an unfinished line waits for its end
        self._console.out.flush()

    def isatty(self):
        return False

    def __getattr__(self, name):
        return getattr(self._console.out, name)


def _seconds(t):
    """A time estimate as people say it: "8 s", "2 min", "1.5 h"."""
    if t < 90:
        return f"{max(1, round(t))} s"
    if t < 5400:
        return f"{round(t / 60)} min"
    return f"{t / 3600:.1f} h"


def _part_outcome(failed, out):
    """One line on the parts that did not finish: which failed (with the log files
    that exist) and which were skipped because a part they need failed."""
    logs = {c: out / "logs" / f"{PARTS[c].key}.log" for c in failed}
    crashed = [c for c in failed if logs[c].exists() or not any(n in failed for n in NEEDS.get(c, ()))]
    skipped = [c for c in failed if c not in crashed]
    text = []
    if crashed:
        found = [str(logs[c]) for c in crashed if logs[c].exists()]
        text.append(f"part {', '.join(crashed)} failed" + (f" (traceback: {', '.join(found)})" if found else ""))
    if skipped:
        text.append(f"part {', '.join(skipped)} skipped (needs part "
                    f"{', '.join(sorted({n for c in skipped for n in NEEDS.get(c, ()) if n in failed}))})")
    return "; ".join(text)


def _run_outcome(parts, failed, out, seconds):
    """The run's last word on its parts, one line each: how long it took and which
    parts finished; then (``_part_outcome``) which failed, with the log files that
    exist, and which were skipped."""
    done = [c for c in parts if c not in failed]
    lines = [f"run finished in {_duration(seconds)}: "
             + (f"part {', '.join(done)} done" if done else "no part finished")]
    if failed:
        lines.append(_part_outcome(failed, out))
    return "\n".join(lines)


def main(argv=None):
    """Run the CLI; return the exit code (0 ok, 1 a part failed, 2 bad options, data or
    --out, 130 interrupted).

    The run writes into a staging folder beside ``--out`` under a lock and swaps it
    into place at the end (``rundir``); interrupted or failed, it leaves ``--out``
    as it was and says so in one line.
    """
    t_start = time.perf_counter()
    run = pool = ctx = console = None
    sigint = signal.getsignal(signal.SIGINT)    # restored at the end (main() called in-process)
    interrupt = _Interrupt()
    try:
        if threading.current_thread() is threading.main_thread() and sigint is signal.default_int_handler:
            interrupt.install()
        _unblock_sigint()
        try:
            cfg = validate(build_parser().parse_args(argv))
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        import rundir
        run = rundir.RunDir(cfg.out)
        try:
            notes = run.open()
        except rundir.OutError as e:
            run = None
            print(f"error: {e}", file=sys.stderr)
            return 2
        for note in notes:
            print(note, flush=True)
        out = run.staging

        import numba
        # Trainings and experiments run in worker processes, one numba thread each.
        # The main process then runs its own (small) kernels on one thread too: a
        # parallel kernel whose threads compete with busy workers for the cores
        # waits (or spins) at every barrier for a descheduled thread (measured: Part C
        # 2.5x slower with two numba threads).
        cores = cfg.threads or numba.config.NUMBA_NUM_THREADS
        workers = min(cores, jobs_mod.MAX_WORKERS) if cores > 1 else 0
        if workers:     # the main process's BLAS and OpenMP (scikit-learn) threads too
            from threadpoolctl import threadpool_limits
            threadpool_limits(limits=1)
        # Fork the workers now, before this process starts numba's thread pool
        # (numba.set_num_threads below does) or runs OpenMP code (see jobs.Jobs):
        # they inherit the imported libraries for free. When no part queues jobs
        # up front, or forking is not safe (not Linux; numba's threads already
        # running, e.g. main() called from a program that trained before), spawn.
        import gc
        import mlp, shared_bias  # noqa: E401
        gc.freeze()     # the imported modules' objects: never collected, not copied into forks
        parts = plan(cfg.parts)
        start_now = workers > 0 and bool({"B", "Q2"} & set(parts))  # C and D need B
        # the workers' lines wait for their part's header (Console)
        console = Console()
        pool = jobs_mod.Jobs(workers, start_method="fork" if start_now and jobs_mod.fork_is_safe()
                             else "spawn",
                             warm_up=[(mlp.warm_up, (cfg.dtype, ("network",))),
                                      (shared_bias.warm_up, ())],
                             sink=console.job_line)
        console.jobs = pool
        if start_now:
            pool.start()        # the workers start while the data loads
        numba.set_num_threads(1 if workers else cores)

        t0 = time.perf_counter()
        try:
            dataset, data = load(cfg)
        except _user_errors() as e:
            _stop_run(run, pool, keep=False)
            print(f"error: {e}".splitlines()[0], file=sys.stderr)
            return 2
        t_data = time.perf_counter() - t0

        if dataset.synthetic:
            print("!" * 72 + f"\n{SYNTHETIC_BANNER}\n" + "!" * 72, flush=True)
        else:
            print(f"data: {dataset.source} ({len(dataset.train)} train rows, {len(dataset.test)} test rows)")
        for note in _data_notes(dataset):
            print(f"note: {note}", flush=True)

        config = {"run_id": run.run_id, **asdict(cfg),
                  "data_dir_resolved": str(Path(dataset.source).resolve()) if not dataset.synthetic
                  else "synthetic",
                  "out_resolved": str(run.out),
                  "numba_threads": numba.get_num_threads(), "worker_processes": workers,
                  "worker_start": pool.start_method if workers else None,
                  "versions": _versions(), "platform": platform.platform(),
                  "argv": list(sys.argv[1:] if argv is None else argv)}
        write_json(out / "config.json", config)

        ctx = Context(cfg=cfg, dataset=dataset, data=data, out=out,
                      report=rp.Report("body"), metrics={"data": _data_metrics(dataset, data),
                                                         "timing": {"data": round(t_data, 3)}},
                      jobs=pool, parts=parts)
        extra = [p for p in parts if p not in cfg.parts]
        if extra:
            print(f"also running part {', '.join(extra)}: "
                  f"{', '.join(p for p in cfg.parts if p in NEEDS)} uses its results")
        ctx.plan = schedule(ctx)
        console.install()
        failed = run_parts(ctx, parts, console=console)
        pool.close()
        console.close()
        timing = ctx.metrics["timing"]
        timing["total"] = round(time.perf_counter() - t_start, 3)
        timing["workers"] = workers
        seconds = getattr(getattr(ctx.results.get("D"), "diagnosis", None), "seconds", None)
        if seconds is not None:         # the shift diagnosis itself (a step before Part B ends)
            timing["diagnosis"] = round(seconds, 3)
        timing.update(_cpu_seconds())
        write_json(out / "metrics.json", {"run_id": run.run_id, **ctx.metrics})

        print("writing the report ...", flush=True)
        doc = rp.Report("MLP on tabular data: training, attribution and diagnosis", run_id=run.run_id)
        if dataset.synthetic:
            doc.banner(SYNTHETIC_BANNER)
        doc.extend(summary(ctx)).extend(ctx.report)
        doc.write(out / "report.md", out / "report.html")
        _ignore_sigint()        # the run is complete: put it in place
        run.commit()
        print(_run_outcome(parts, failed, run.out, time.perf_counter() - t_start))
        print(f"report: {run.out / 'report.html'} (Markdown: {run.out / 'report.md'}; run {run.run_id})")
        return 1 if failed else 0
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt) or (interrupt.pending and isinstance(e, Exception)):
            # Ctrl-C, or what it left behind: Python wraps an exception raised in some
            # hooks (a KeyboardInterrupt inside ``__set_name__`` while numba is imported
            # becomes a RuntimeError), and a module it stopped half-way fails later on
            interrupt.take()
            if console is not None:
                console.close(pending=False)    # no status line or stale lines before the message
            print(f"interrupted: {_stop_run(run, pool, ctx)}", file=sys.stderr)
            return 130
        if isinstance(e, OSError) and (msg := _output_error(e, run)) is not None:
            _stop_run(run, pool, ctx)
            print(f"error: {msg}", file=sys.stderr)
            return 2
        where = _stop_run(run, pool, ctx)
        if isinstance(e, Exception):        # a bug: its traceback follows this line
            print(f"crashed: {where}", file=sys.stderr)
        raise                               # SystemExit and the like: cleaned up quietly
    finally:
        if console is not None:
            console.close()
        interrupt.restore()
        if signal.getsignal(signal.SIGINT) is not sigint and sigint is not None:
            try:
                signal.signal(signal.SIGINT, sigint)
            except ValueError:      # not the main thread
                pass


if __name__ == "__main__":
    sys.exit(main())
