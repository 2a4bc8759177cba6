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
import importlib
import json
import math
import os
import platform
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")  # files only, no display needed

import jobs as jobs_mod
import report as rp
from console import Console, Interrupt, ignore_sigint, unblock_sigint
from context import Context, Schedule, Step, data_notes, release_freed_memory, return_large_blocks
from context import console_path as shown
from glossary import define_terms
from prose import as_sentence, duration, plural_text
from answer import answer_lines, underfit_notes, underfit_text, write_predictions
from training import reference_accuracy, reference_arrays, train_async

REPO_DIR = Path(__file__).resolve().parent

# ---------------------------------------------------------------------- parts
@dataclass(frozen=True)
class Part:
    """One part of the run: everything the spine needs to know about it.

    ``module``: the flat module that holds the part (its result type, rules,
    ``compute(ctx) -> result``, ``render(result, output)`` and sentences),
    imported on first use, after the workers fork (the parts load numba).
    ``needs``: parts whose results its computation reads (asking for it alone
    runs them first; if one fails it is skipped). ``default``: run when
    ``--parts`` is not given; ``course``: run when ``--parts`` is not given
    and the run is framed for the course's assignment (``course_framing``).
    ``aliases``: accepted spellings besides the code (case-insensitive,
    spaces ignored).
    """
    code: str
    key: str
    title: str
    module: str
    needs: tuple = ()
    default: bool = True
    course: bool = False
    aliases: tuple = ()

    @property
    def impl(self):
        """The part's module (``part_a`` ...), imported on first use."""
        return importlib.import_module(self.module)


# The one table of parts, in run order. Adding a part: one row here and its module
# (``compute``/``render``); if it runs background work, its jobs in ``schedule``.
PARTS = {p.code: p for p in (
    Part("A", "partA", "Part A: data and exploratory analysis", "part_a"),
    Part("B", "partB", "Part B: MLP from scratch and gradient magnitudes", "part_b",
         aliases=("BA", "BB", "B(A)", "B(B)")),
    Part("C", "partC", "Part C: input gradients and feature attribution", "part_c", needs=("B",),
         aliases=("CA", "CB", "C(A)", "C(B)")),
    Part("D", "partD", "Part D: test accuracy and generalisation", "part_d", needs=("B",)),
    Part("Q2", "q2", "Question 2: shared bias", "part_q2", default=False, course=True,
         aliases=("Q", "QUESTION2")),
)}
# Views of the table for the CLI (``parse_parts``, the default and the help) and ``main``.
PART_ALIASES = {alias: p.code for p in PARTS.values() for alias in p.aliases}
NEEDS = {p.code: p.needs for p in PARTS.values() if p.needs}
DEFAULT_PARTS = ",".join(p.code for p in PARTS.values() if p.default)
COURSE_PARTS = ",".join(p.code for p in PARTS.values() if p.default or p.course)


DEFAULTS = dict(target="price_class", out="out", parts=None, iterations=200,
                quick_iterations=30, lr=0.1, hidden="64,64", activations="relu,sigmoid",
                seed=42, dtype="float32", corr_threshold=0.5, val_size=0.2, batch_size=None,
                solver="gd")

# Sizes refused before any work (``validate`` and ``check_sizes``), each with what would fit.
SEED_MAX = 2**32 - 1            # numpy's legacy seeding and scikit-learn's random_state accept 0..2**32-1
MAX_ITERATIONS = 10**7          # the loss history alone takes 8 * (4 + layers) bytes per iteration
CV_FOLDS = 5                    # Part A's cross-validation: every class needs this many training rows
ASSUMED_FLOPS = 2e10            # optimistic full-batch throughput (flop/s), so only the hopeless is refused
MAX_TRAIN_SECONDS = 24 * 3600   # one network's estimated training time above this is refused
# Full batch only: above this estimated time for the run's trainings, the run says so before any
# work and names --batch-size. The estimate uses the one-thread throughput of the training kernel
# measured on the 2-core development machine (12-64-64-4 ReLU network, 33,078 rows, flops counted
# as 6 n sum(fan_in fan_out)): 10.9 ms a step in float32, 20.5 ms in float64
# (``python bench/time_epochs.py``; ``python bench/scale_rows.py`` for larger files).
KERNEL_FLOPS = {"float32": 9.3e10, "float64": 5.0e10}
RUN_TRAININGS = 10              # networks a default run trains (Parts B and D), about
FULL_BATCH_NOTE_SECONDS = 600
PARAM_COPIES = 20               # theta, gradient, best-so-far and up to 16 per-block gradient buffers
ACTIVATION_COPIES = 3           # pre-activation, activation and delta of every layer, per row
ENCODED_COPIES = 3              # encoded train/val/test matrices plus one transform's temporaries
COLD_COMPILE_SECONDS = 20      # first run's kernel compilation (mlp + shared_bias warm-up), quiet machine
MEMORY_SHARE = 0.8              # share of the available memory a run may plan to use
SEPARATOR_NAMES = {",": ",", "comma": ",", ";": ";", "semicolon": ";", "tab": "\t", "\\t": "\t",
                   "\t": "\t", "|": "|", "pipe": "|"}


@dataclass(frozen=True)
class Study:
    """How large each part's experiments are: the one place they are set, from ``--quick``
    (``study_for``); part of ``Config``, so written to ``config.json``."""
    repeats: int            # Part B's depth probe: seeds; Part C's permutation check: repeats
    depths: tuple           # Part B's depth probe: numbers of hidden layers
    q2_seeds: int           # Question 2: seeds per experiment
    q2_lrs: tuple           # Question 2: learning rates compared
    q2_iterations: int      # Question 2: iterations per run


def study_for(quick):
    """The ``Study`` of a full run, or of a ``--quick`` look (fewer seeds and rates)."""
    return Study(repeats=1 if quick else 3, depths=(2, 3, 4, 5, 6), q2_seeds=2 if quick else 5,
                 q2_lrs=(0.3, 3.0) if quick else (0.1, 0.3, 1.0, 3.0, 10.0),
                 q2_iterations=50 if quick else 200)


@dataclass(frozen=True)
class Config:
    """The effective configuration of a run (validated; written to ``config.json``).

    ``study`` (the size of each part's experiments) derives from ``--quick`` so every
    part shrinks its work the same way.
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
    study: Study
    train: Any = None
    test: Any = None
    sep: Any = None
    test_size: Any = None
    keep_columns: Any = None
    expand_dates: bool = False
    na_values: Any = None       # --na-values: cells read as missing besides the empty field
    parts_given: bool = True    # False: --parts not given (the course's data adds its parts)
    course: bool = False        # --course: the course's framing whatever the data
    scheduler: Any = None       # --scheduler: Dask scheduler address or local:N (cluster.py)
    batch_size: Any = None      # --batch-size: mini-batches of that many rows (None: full batch)
    solver: str = "gd"          # --solver: gd or adam


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
        epilog="Parts: " + "; ".join(f"{p.code} {p.title.split(': ', 1)[1]}" for p in PARTS.values()) + ". "
               + " ".join(f"{c} uses {' and '.join(n)}'s results ({' and '.join(n)} runs first when needed)."
                          for c, n in NEEDS.items())
               + " Exit codes: 0 ok, 1 a part failed (see <out>/logs/), 2 bad options or data.")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding train.csv and test.csv (also .csv.gz, .csv.bz2, .csv.xz, "
                        ".zip, .tsv, .parquet; default: $MLP_DATA_DIR, ./data, <repo>/data, "
                        "<repo>/../shared/data; synthetic data if none has both)")
    p.add_argument("--train", metavar="FILE", default=None,
                   help="training file, any name (instead of --data-dir); or a quoted glob of "
                        "parts with the same columns, e.g. 'data/part-*.csv' or '*.parquet', "
                        "read as one file in sorted path order (with --scheduler the workers "
                        "load the training rows from the parts when they can read them)")
    p.add_argument("--test", metavar="FILE", default=None,
                   help="test file, any name; it may lack the label column (needs --train)")
    p.add_argument("--test-size", type=float, default=None, metavar="F",
                   help="no test file: hold out this fraction of the training file as the test "
                        "set (stratified, seeded by --seed; the report says so)")
    p.add_argument("--sep", default=None, metavar="SEP",
                   help="CSV delimiter: , ; tab | or any one character (default: detected)")
    p.add_argument("--na-values", metavar="TEXT[,TEXT]", default=None,
                   help="cells that mean 'missing' besides the empty field, e.g. NA,n/a (default: only "
                        "empty fields are missing, so a category 'NA' stays text; a list starting with "
                        "a minus is written --na-values=-999,NA)")
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
                   help=f"comma list of parts to run, from {','.join(PARTS)}; aliases like "
                        f"{', '.join(sorted(PART_ALIASES)[:2])} are accepted, case-insensitive "
                        f"(default: {DEFAULT_PARTS}, and {COURSE_PARTS} on the course's data)")
    p.add_argument("--course", action="store_true",
                   help="frame the run for the course's assignment (its wording, and Question 2 "
                        "among the default parts) whatever the data; on by default for the course's "
                        "data (found in <repo>/../shared/data) and the built-in synthetic data")
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
    p.add_argument("--batch-size", type=int, default=d["batch_size"], metavar="N",
                   help="train on mini-batches of N rows, one step per batch, rows shuffled "
                        "from --seed each epoch; --iterations then counts epochs (default: "
                        "full batch, the course's method)")
    p.add_argument("--solver", default=d["solver"], choices=("gd", "adam"),
                   help="update rule: gd (gradient descent, default) or adam (use a smaller "
                        "--lr with it, e.g. 0.001)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="train Part B's networks on a Dask cluster: the address of its scheduler "
                        "(e.g. tcp://host:8786), or local:N to start N local workers; each step "
                        "sends the weights out and one gradient back per partition (needs "
                        "pip install -r requirements-cluster.txt)")
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
    parts = parse_parts(ns.parts if ns.parts is not None else DEFAULT_PARTS)
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
    if ns.scheduler is not None and ns.batch_size is not None:
        raise UsageError("--scheduler trains full batch on the cluster; leave out --batch-size "
                         "(mini-batches train in one process)")
    if ns.scheduler is not None and not ns.scheduler.strip():
        raise UsageError("--scheduler: empty; give a scheduler address or local:N")
    if ns.batch_size is not None and ns.batch_size < 1:
        raise UsageError(f"--batch-size: must be an integer >= 1 (rows per step), got "
                         f"{ns.batch_size}; leave it out for full-batch training")
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
        study=study_for(ns.quick),
        train=train, test=test, sep=sep, test_size=test_size, keep_columns=keep,
        expand_dates=bool(ns.expand_dates), parts_given=ns.parts is not None, course=bool(ns.course),
        na_values=_col_list(ns.na_values, "--na-values"),
        batch_size=ns.batch_size, solver=ns.solver, scheduler=ns.scheduler,
    )


def _data_options(ns):
    """``(train, test, sep, test_size)`` from --train/--test/--sep/--test-size, checked."""
    if ns.train is not None and ns.data_dir is not None:
        raise UsageError("--train/--data-dir: pass either a folder (--data-dir) or files (--train, "
                         "--test), not both")
    if ns.test is not None and ns.train is None:
        raise UsageError(f"--test: {ns.test!r} needs its training file; pass --train FILE too")
    for option, value in (("--train", ns.train), ("--test", ns.test)):
        if value is None:
            continue
        if option == "--train":
            import reader
            if reader.is_pattern(value):            # a glob of parts
                try:
                    reader.glob_paths(value)
                except reader.DataError:
                    raise UsageError(f"--train: the pattern {value!r} matches no file; check it (and "
                                     "quote it, so that the shell passes it as written)") from None
                continue
        if not Path(value).expanduser().is_file():
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
    available memory, networks too wide for it or too slow to train. Raises ``UsageError``;
    returns ``full_batch_note``'s line (or None)."""
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
    flops = iteration_flops(cfg.hidden, width, len(dataset.classes), n_fit)
    seconds = cfg.iterations * flops / ASSUMED_FLOPS
    if seconds > MAX_TRAIN_SECONDS:
        fit = int(MAX_TRAIN_SECONDS * ASSUMED_FLOPS / flops)
        raise UsageError(f"--iterations: {cfg.iterations:,} full-batch iterations on {n_fit:,} rows "
                         f"with --hidden {','.join(map(str, cfg.hidden))} would take about "
                         f"{seconds / 3600:,.0f} hours per network; at most {fit:,} iterations fit in "
                         f"{MAX_TRAIN_SECONDS // 3600} hours (or use smaller --hidden)")
    return full_batch_note(cfg, flops, n_fit)


def iteration_flops(hidden, width, n_classes, n_fit):
    """Flops of one full-batch iteration: 6 n sum(fan_in fan_out) (forward and backward)."""
    widths = (width, *hidden, max(2, n_classes))
    return 6.0 * n_fit * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def full_batch_note(cfg, flops, n_fit):
    """The console line that says, before any work, that full-batch training of this file
    would take long (``flops`` per iteration on ``n_fit`` rows, at ``KERNEL_FLOPS`` for
    ``RUN_TRAININGS`` networks on the run's workers) and names ``--batch-size``; None when
    mini-batches are chosen or the estimate is below ``FULL_BATCH_NOTE_SECONDS``."""
    if cfg.batch_size is not None:
        return None
    per_network = cfg.iterations * flops / KERNEL_FLOPS[cfg.dtype]
    workers = cfg.threads or os.cpu_count() or 1
    run = per_network * RUN_TRAININGS / workers
    if run < FULL_BATCH_NOTE_SECONDS:
        return None
    return (f"full-batch training on {int(n_fit):,} rows takes about {duration(per_network)} "
            f"per network ({cfg.iterations} iterations), about {duration(run)} for the run's "
            f"trainings on {workers} core{'s' if workers != 1 else ''}; for large files pass "
            f"--batch-size 512 --solver adam --lr 0.001 (mini-batches: --iterations then counts "
            f"epochs, and a few epochs usually suffice)")



# ------------------------------------------------------------ schedule
def plan(parts):
    """The parts to run, in order: the chosen ones plus the parts they need (``Part.needs``)."""
    chosen = set(parts)
    for p in parts:
        chosen.update(PARTS[p].needs)
    return tuple(p for p in PARTS if p in chosen)


def schedule(ctx):
    """Declare every job of the run, top to bottom, with what it waits for; a ``Schedule``.

    Worker jobs are queued now (they start as soon as a worker is free, by
    their part's ``JOB_PRIORITY``); each ``Step`` runs in this process before
    the part named in its ``before`` (or when first asked for). A part reads
    only its own attributes of the schedule.
    """
    cfg, parts, d = ctx.cfg, set(ctx.parts), ctx.data
    B, C, D, Q2 = (PARTS[c].impl for c in ("B", "C", "D", "Q2"))
    plan_ = Schedule()
    if "B" in parts:
        # B(a): one network per activation (inputs: the encoded data)
        plan_.b_fits = {act: train_async(ctx, act, activation=act, priority=B.JOB_PRIORITY, group="B")
                        for act in cfg.activations}
        # sigmoid set-up study, compared by final accuracy and gradient ratio: no validation curve
        if "sigmoid" in cfg.activations:
            plan_.b_sigmoid = {(init, lr): train_async(ctx, f"sigmoid {init} lr={lr:g}", activation="sigmoid",
                                                       init=init, lr=lr, priority=B.JOB_PRIORITY, validate=False,
                                                       group="B")
                               for init, lr in B.sigmoid_trials(cfg)[1:]}
    if "Q2" in parts:
        # Question 2: one job per task and learning rate (inputs: the encoded data)
        plan_.q2_runs = Q2.q2_jobs(ctx)
    if "B" in parts:
        # main process, first thing in Part B: the trained networks and their scores
        acts = list(plan_.b_fits)
        plan_.b_networks = Step("B.networks", lambda *models: B.networks_step(d, dict(zip(acts, models))),
                                inputs=plan_.b_fits.values(), before="B")
    if parts & {"C", "D"}:
        # main process: sensitivity and permutation importance of B's best network (C reports them,
        # D's diagnosis uses them); early, in Part B, when D's trainings wait for the diagnosis
        plan_.checks = Step("checks", lambda nets: C.checks_step(ctx, nets), inputs=[plan_.b_networks],
                            before="B" if "D" in parts else None)
    if "D" in parts:
        # main process, in Part B: the train/test shift diagnosis of B's best network
        plan_.d_diagnosis = Step("D.diagnosis", lambda nets, checks: D.diagnosis_step(ctx, nets, checks),
                                 inputs=[plan_.b_networks, plan_.checks], before="B")
        # D's mitigation trainings (inputs: B's best network and the diagnosis's suspects)
        plan_.d_mitigations = Step("D.mitigations", lambda nets, diag: D.mitigations_step(ctx, nets, diag),
                                   inputs=[plan_.b_networks, plan_.d_diagnosis], before="B")
        # D's combined mitigation: a worker job queued when the training options have finished
        plan_.d_combination = Step("D.combination",
                                   lambda nets, diag, mits: D.combination_after(ctx, nets, diag, mits),
                                   inputs=[plan_.b_networks, plan_.d_diagnosis, plan_.d_mitigations],
                                   before="B")
    if "B" in parts:
        # the underfitting rule's reference model, when the workers have nothing else to do
        plan_.reference = ctx.jobs.submit(("reference", cfg.seed), reference_accuracy,
                                          reference_arrays(d, cfg.seed), cfg.seed,
                                          priority=max(m.JOB_PRIORITY for m in (B, D, Q2)) + 1)
    return plan_


def _reference_sample(u):
    """", fitted on a seeded sample of R of the N training rows" when the reference model
    did not see every row (``training.REFERENCE_ROWS``), else ""."""
    rows, n_fit = u.get("reference_rows"), u.get("n_fit")
    if rows is None or n_fit is None or rows >= n_fit:
        return ""
    return f", fitted on a seeded sample of {rows:,} of the {n_fit:,} training rows"


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
            ctx.report.banner(f"{title} was {rp.literal(msg)}.", kind="error")
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
            result = part.impl.compute(ctx)
            ctx.results[code] = result
            ctx.metrics[key] = result.to_metrics()
            part.impl.render(result, ctx.output)
        except Exception as exc:
            elapsed = time.perf_counter() - t0
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            log_path = ctx.output.path("logs", f"{key}.log")
            rp.write_atomic(log_path, traceback.format_exc())
            partial = ctx.metrics.get(key) or {}
            ctx.results.pop(code, None)
            ctx.metrics[key] = {"error": msg, **({"partial": partial} if partial else {})}
            ctx.report.banner(f"{title} failed: {rp.literal(msg)}\n"
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
            release_freed_memory()      # the part's temporaries, freed but still held by the C heap
        timing[key] = round(elapsed, 3)
    return failed


def _part_d():
    """Part D's module, whose sentences the summary quotes whether or not the part ran."""
    return importlib.import_module("part_d")


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
        m = _part_d().recommended_mitigation(res) if code == "D" else None
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
    """The data paragraph: the files (as named where the command ran), rows, features, classes."""
    if data.get("synthetic"):
        where = "the built-in synthetic data"
    else:   # the files as the user named them (relative to where the command ran)
        where = " and ".join(rp.literal(f, code=True) for f in data.get("files") or [data.get("source", "?")])
    n = rp.format_number
    classes = data.get("classes") or []
    text = f"Data: {where}: "
    if "n_train" in data:
        text += (f"{n(data['n_train'])} training rows ({n(data.get('n_fit', 0))} to fit, "
                 f"{n(data.get('n_val', 0))} to validate) and {n(data.get('n_test', 0))} test rows; ")
    if "n_features" in data:
        text += f"{plural_text(data['n_features'], 'encoded feature')}; "
    if classes:
        text += (f"target {rp.literal(data.get('target', '?'), code=True)} with {len(classes)} classes "
                 f"({', '.join(rp.literal(str(c)) for c in classes)})")
    return as_sentence(text.rstrip("; "))


def _left_out_line(dataset):
    """The columns left out of the network and why (``Dataset.excluded``), for every
    report whatever its parts; "" when none was."""
    table = getattr(dataset, "excluded", None)
    if table is None or not len(table):
        return ""
    out = table[table["action"].astype(str) == "excluded"]
    if not len(out):
        return ""
    items = [f"{rp.literal(str(c), code=True)} ({rp.literal(str(reason).split(':')[0])})"
             for c, reason in zip(out["column"], out["reason"])]
    return (f"**Left out of the network:** {', '.join(items)}; pass --keep-columns to use "
            f"{'it' if len(items) == 1 else 'one'} anyway.")


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
    left = _left_out_line(ctx.dataset)
    if left:
        frag.para(left)
    acc = _summary_accuracy(results)
    under = (m.get("underfit") or {}).get("networks", {})
    if acc:
        rows = [{"network": net, "train": s.get("train"), "validation": s.get("val"),
                 "test": s.get("test")} for net, s in acc.items()]
        notes = {net: underfit_text(u) for net, u in under.items()}
        if any(notes.values()):
            for row in rows:
                row["underfitting"] = notes.get(row["network"], "")
        frag.table(rows, caption="Accuracy (share of rows classified correctly)", floatfmt=".3f")
        if under:
            from training import BELOW_REFERENCE, STILL_LEARNING
            frag.para(f"Underfitting is checked on every network: {STILL_LEARNING.description}; "
                      f"{BELOW_REFERENCE.description} (here "
                      f"{m['underfit']['reference_val_acc']:.3f}"
                      + _reference_sample(m["underfit"]) + ").")
    else:
        frag.para("Accuracy: not run.")
    d, D = results.get("D"), _part_d()
    frag.para("**Verdict:** " + " ".join(D.verdict_sentences(d)))
    if D.performance_sentences(d):
        frag.para("**Validation → test:** " + " ".join(D.performance_sentences(d)))
    frag.para("**Mitigation:** " + " ".join(D.mitigation_sentences(D.recommended_mitigation(d))))
    timing = m.get("timing", {})
    if "total" in timing:
        text = f"**Run time:** {duration(timing['total'])} (data loading {duration(timing.get('data', 0))})"
        if timing.get("workers"):
            text += f", with {plural_text(timing['workers'], 'worker process', 'worker processes')} beside the main one"
        if timing.get("cpu_main") is not None:
            text += (f"; CPU time {duration(timing['cpu_main'])} in the main process and "
                     f"{duration(timing.get('cpu_workers', 0))} in the workers")
        frag.para(text + ".")
    rows = []
    for code, part in PARTS.items():
        if code not in ctx.parts and not part.default and not ctx.course:
            continue            # the course's own question, not asked for on this data
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


# From this many training rows on, with the default float32 networks, the main process holds
# the encoded matrices in float32 only and the categorical columns as pandas categoricals
# (``holds_narrow``, ``hold_narrow``):
# 5,000,000 x 10 float64 matrices alone are 0.44 GB. Below it nothing changes, so the course
# data's results stay those of float64 matrices.
NARROW_ROWS = 2_000_000
NARROW_NOTE = ("{rows:,} training rows: to save memory, the encoded features are held in float32 "
               "(the networks' own dtype) and the categorical columns as categories; Parts C and D compute "
               "on those float32 features")


def holds_narrow(cfg, dataset):
    """Does the run hold its data narrow (``hold_narrow``)? float32 networks and at least
    ``NARROW_ROWS`` training rows."""
    return cfg.dtype == "float32" and len(dataset.train) >= NARROW_ROWS


def hold_narrow(dataset):
    """Make ``dataset``'s categorical columns pandas categoricals (in place, before encoding:
    a text column holds one Python string a cell) and add ``NARROW_NOTE`` to ``dataset.notes``
    (console; the report says it too, ``main``). For a run that ``holds_narrow``; ``load`` then
    encodes straight into the float32 matrices the workers map (``prep.encode``'s ``dtype`` and
    ``empty``), so no float64 matrix is made."""
    import pandas as pd
    for frame in (dataset.train, dataset.test):
        for c in dataset.categorical:
            if c in frame.columns and not isinstance(frame[c].dtype, pd.CategoricalDtype):
                frame[c] = frame[c].astype("category")
    dataset.notes = tuple(dataset.notes) + (NARROW_NOTE.format(rows=len(dataset.train)),)


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
                             expand_dates=cfg.expand_dates,
                             na_values=list(cfg.na_values) if cfg.na_values else None,
                             progress=lambda line: print(f"    {line}", flush=True))
    note = check_sizes(cfg, dataset)
    if note:
        print(f"note: {note}", flush=True)
    narrow = {}
    if holds_narrow(cfg, dataset):
        import numpy as np
        import shared_arrays
        hold_narrow(dataset)
        narrow = {"dtype": np.float32, "empty": shared_arrays.empty}
    try:
        data = prep.encode(dataset, missing_indicators=False, val_size=cfg.val_size, seed=cfg.seed,
                           **narrow)
    except MemoryError:
        raise UsageError(f"not enough memory to encode {len(dataset.train):,} training rows of "
                         f"{len(dataset.numeric) + len(dataset.categorical)} columns "
                         f"({len(dataset.categorical)} categorical, one column per level); pass --drop for "
                         "categorical columns with many levels, or use fewer rows") from None
    release_freed_memory()              # the reader's and the encoder's temporaries
    return dataset, data


def _user_errors():
    """Exception types that mean "your input is wrong" (one line, exit 2);
    ``prep.DataError`` is a ``ValueError``."""
    return (ValueError, OSError)


def course_framing(cfg, dataset):
    """Is the run framed for the course's assignment? Asked for (``--course``), or the data
    is the course's own (the folder the search finds last, ``<repo>/../shared/data``) or
    the built-in synthetic stand-in for it. Decided by where the data came from, never by
    its columns or values."""
    import prep
    return bool(cfg.course or dataset.synthetic or prep.is_course_folder(dataset.source))


def data_files(dataset, start=None):
    """The files a run read, as the user would name them: relative to the folder the
    command ran in (``start``, default the current one), never absolute; [] for the
    built-in synthetic data."""
    if dataset.synthetic:
        return []
    return [rp.display_path(f, start) for f in ([str(f) for f in dataset.files] or [str(dataset.source)])]


def _data_metrics(dataset, data):
    n_fit, n_val = len(data.y_train), len(data.y_val)
    return {"source": str(dataset.source), "synthetic": bool(dataset.synthetic),
            "files": data_files(dataset),
            "target": dataset.target, "numeric": list(dataset.numeric),
            "categorical": list(dataset.categorical), "classes": list(dataset.classes),
            "n_classes": len(dataset.classes), "n_train": n_fit + n_val, "n_fit": n_fit,
            "n_val": n_val, "n_test": len(data.X_test),
            "n_features": int(data.X_train.shape[1]),
            "feature_names": list(data.feature_names)}


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
    ignore_sigint()
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
    lines = [f"run finished in {duration(seconds)}: "
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
    interrupt = Interrupt()
    try:
        if threading.current_thread() is threading.main_thread() and sigint is signal.default_int_handler:
            interrupt.install()
        unblock_sigint()
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
        if mlp.KERNEL_CACHE_COLD:
            print(f"compiling the network kernels for this machine (the first run after an install or an "
                  f"edit does; about {COLD_COMPILE_SECONDS} s on a quiet 2-core machine before the first "
                  "training reports, longer on a busy one; later runs load them from the cache)", flush=True)
        gc.freeze()     # the imported modules' objects: never collected, not copied into forks
        return_large_blocks()   # freed row-sized temporaries leave the process (workers inherit it)
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
            print(f"data: {' and '.join(shown(f) for f in dataset.files) or dataset.source} "
                  f"({len(dataset.train)} train rows, "
                  f"{len(dataset.test)} test rows)")
        course = course_framing(cfg, dataset)
        if not cfg.parts_given:
            if course:
                parts = plan(parse_parts(COURSE_PARTS))
            else:
                print(f"note: {', '.join(p.title for p in PARTS.values() if p.course)} (the course's "
                      f"question) does not run on your data by default; --parts {COURSE_PARTS} runs it")
        min_rows = getattr(PARTS["D"].impl, "MIN_TEST_ROWS", 0) if "D" in parts else 0
        if len(dataset.test) < min_rows:
            print(f"note: {PARTS['D'].title} is skipped: the test file has {len(dataset.test)} "
                  f"row{'s' if len(dataset.test) != 1 else ''}, and the diagnosis needs at least "
                  f"{min_rows} to compare test with train; predictions are still written", flush=True)
            parts = tuple(p for p in parts if p != "D")
        for note in data_notes(dataset):
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
                      jobs=pool, parts=parts, course=course)
        if holds_narrow(cfg, dataset):                # hold_narrow: said in the report too
            ctx.report.para(as_sentence(NARROW_NOTE.format(rows=len(dataset.train))))
            ctx.metrics["data"]["held_in_float32"] = True
        extra = [p for p in parts if p not in cfg.parts]
        if extra:
            print(f"also running part {', '.join(extra)}: "
                  f"{', '.join(p for p in cfg.parts if p in NEEDS)} uses its results")
        client = None
        if cfg.scheduler and "B" in parts:
            import cluster
            try:
                client = cluster.connect(cfg.scheduler)
            except (ImportError, OSError, ValueError) as e:
                _stop_run(run, pool, keep=False)
                print(f"error: --scheduler: {e}".splitlines()[0], file=sys.stderr)
                return 2
            ctx.cluster_address = client.scheduler.address
            print(f"cluster: Part B trains on {len(client.scheduler_info()['workers'])} Dask "
                  f"worker(s) at {ctx.cluster_address}", flush=True)
        ctx.plan = schedule(ctx)
        console.install()
        try:
            failed = run_parts(ctx, parts, console=console)
        finally:
            if client is not None:
                cluster.close(client)
        under = underfit_notes(ctx)
        if under is not None:
            ctx.metrics["underfit"] = under
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
        predictions = write_predictions(ctx)

        print("writing the report ...", flush=True)
        doc = rp.Report("MLP on tabular data: training, attribution and diagnosis", run_id=run.run_id)
        if dataset.synthetic:
            doc.banner(SYNTHETIC_BANNER)
        doc.extend(summary(ctx)).extend(ctx.report)
        doc.write(out / "report.md", out / "report.html")
        ignore_sigint()        # the run is complete: put it in place
        run.commit()
        print(_run_outcome(parts, failed, run.out, time.perf_counter() - t_start))
        for line in answer_lines(ctx):
            print(f"  {line}")
        if predictions is not None:
            print(f"predictions: {shown(run.out / predictions.name)}")
        print(f"report: {shown(run.out / 'report.html')} (Markdown: {shown(run.out / 'report.md')}; "
              f"run {run.run_id})")
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
