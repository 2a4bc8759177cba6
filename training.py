"""Training networks for the parts: in a worker process or in this one.

``train_async`` queues an ``mlp.MLP`` fit with the run's defaults
(``fit_params``) on the job pool; ``fit_job``/``fit_scored_job`` are what the
workers run; ``evaluate`` scores a network on the train, validation and test
splits; ``best_network`` is THE rule that picks the network the later parts
study.
"""
import math
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import jobs as jobs_mod
from rules import Rule


# How often a training tells the job pool how far it is (``_progress``).
PROGRESS_STEPS = 50



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


def fit_job(label, params, X, y, X_val, y_val, scheduler=None, files=None):
    """One training, in a worker process or in-process: the fitted ``mlp.MLP``; with
    ``scheduler`` (a Dask scheduler's address) each full-batch step is computed on its
    workers (``cluster.fit``), which hold the fitting rows: loaded by themselves from
    ``files`` (a ``cluster.TrainingFiles``: the parts of a ``--train`` glob) when every
    worker can read every part, else sent from here once (``cluster.scatter_rows``).
    ``files`` may also be a str: why the parts cannot be loaded on the workers."""
    import mlp
    model = mlp.MLP(**params)
    progress = _progress(label, params["n_iter"])
    if scheduler is None:
        return model.fit(X, y, X_val, y_val, progress=progress)
    import cluster
    import distributed
    dtype = mlp.resolve_dtype(model.dtype)
    # plain arrays for Dask (a shared_arrays view pickles as an address valid on this machine only)
    X, y = np.asarray(X), np.asarray(y)
    X_val, y_val = (None if v is None else np.asarray(v) for v in (X_val, y_val))
    with distributed.Client(scheduler, timeout="20s") as client:
        why = files if files is None or isinstance(files, str) else cluster.unreadable(client, files)
        if files is not None and why is None:
            t0 = time.perf_counter()
            parts = cluster.load_fitting_rows(client, files, X, y, dtype=dtype)
            print(f"    {label}: the workers loaded the {parts.n:,} fitting rows from the "
                  f"{len(files.paths)} parts of {files.pattern} in "
                  f"{time.perf_counter() - t0:.1f} s; {_size(parts.sent)} sent (preprocessor, "
                  f"row masks), the rows themselves {_size(X.nbytes)}, not sent", flush=True)
        else:
            parts = cluster.scatter_rows(client, X, y, dtype=dtype)
            if files is not None:
                print(f"    {label}: the fitting rows were sent from this process "
                      f"({_size(parts.sent)}): {why}", flush=True)
        return cluster.fit(model, parts, X_val, y_val, progress=progress)


def _size(n_bytes):
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.1f} kB"


def training_files(ctx):
    """How the workers can load the run's fitting rows themselves: a
    ``cluster.TrainingFiles`` when ``--train`` is a glob of parts, a str saying why not
    (dates expanded by ``--expand-dates``: parsed over the whole column), None when
    ``--train`` is no glob."""
    import cluster
    import reader
    cfg, ds, data = ctx.cfg, ctx.dataset, ctx.data
    if not cfg.train or not reader.is_pattern(cfg.train):
        return None
    if ds.excluded is not None and len(ds.excluded) and \
            ds.excluded["action"].astype(str).str.startswith("expanded").any():
        return "--expand-dates parses dates over the whole column, not part by part"
    frame, positions = getattr(data, "frame", None), getattr(data, "train_rows", None)
    if frame is None or positions is None or data.preprocessor is None:
        return "the encoded split has no row indices"
    paths = tuple(str(p) for p in reader.glob_paths(cfg.train))
    kind = "bool" if ds.classes.dtype == bool else "int" if ds.classes.dtype.kind in "iu" else "str"
    drop = [c for c in (cfg.drop or ()) if c != ds.target]
    n_rows = len(ds.train) + (len(ds.test) if ds.split_from_one_file else 0)
    return cluster.TrainingFiles(
        pattern=str(cfg.train), paths=paths, sizes=tuple(os.path.getsize(p) for p in paths),
        read=dict(sep=cfg.sep, na_values=list(cfg.na_values) if cfg.na_values else None,
                  text_columns=[ds.target, *ds.categorical], skip_columns=drop),
        preprocessor=data.preprocessor, target=ds.target, label_kind=kind,
        labels=np.asarray(ds.classes), n_rows=n_rows,
        fit_rows=frame.index[positions].to_numpy(dtype=np.int64))  # rows of the parts joined


def fit_params(cfg, **params):
    """The run's training defaults (``Config``) overridden by ``params``."""
    kw = dict(hidden=cfg.hidden, activation="relu", lr=cfg.lr, n_iter=cfg.iterations,
              init="normal", init_scale=0.1, seed=cfg.seed, dtype=cfg.dtype)
    if getattr(cfg, "batch_size", None) is not None or getattr(cfg, "solver", "gd") != "gd":
        kw.update(batch_size=cfg.batch_size, solver=cfg.solver)
    kw.update(params)
    return kw


def worker_arrays(data, params):
    """What a worker training a network of ``params`` is sent: ``data.arrays`` in the
    network's dtype (``prep.Encoded.arrays``: converted once, shared by every job), large
    matrices in memory shared with the workers (``shared_arrays``: a worker maps them
    instead of receiving a copy), and the labels too when ``prep.encode`` put them there."""
    import mlp
    import shared_arrays
    d = data.arrays(mlp.resolve_dtype(params.get("dtype")), empty=shared_arrays.empty)
    return replace(d, **{name: shared_arrays.for_workers(getattr(d, name))
                         for name in ("X_train", "X_val", "X_test", "y_train", "y_val", "y_test")})


def train_async(ctx, label, data=None, priority=0, validate=True, group=None, **params):
    """Queue the training of an ``mlp.MLP`` on ``data`` (default: the run's encoded
    split) with the run's defaults overridden by ``params``; return its future.

    ``validate``: evaluate the validation split at every iteration (learning
    curves, early stopping); without it only the training loss is tracked.
    ``group``: the code of the part whose console section shows its lines.
    """
    kw = fit_params(ctx.cfg, **params)
    d = worker_arrays(ctx.data if data is None else data, kw)
    key = ("fit", label, validate, tuple(sorted(kw.items())))
    scheduler = ctx.cluster_address
    if kw.get("batch_size") is not None or kw.get("dropout"):
        scheduler = None                    # trained in one process (cluster.fit refuses them)
    files = training_files(ctx) if scheduler is not None and data is None else None
    return ctx.jobs.submit(key, fit_job, label, kw, d.X_train, d.y_train,
                           d.X_val if validate else None, d.y_val if validate else None,
                           scheduler=scheduler, files=files, priority=priority, group=group)


@dataclass(frozen=True, eq=False)
class Fitted:
    """A trained network and its ``evaluate`` scores on the data it was trained on."""
    model: Any
    scores: dict


def narrow_labels(p):
    """Integer predictions ``p`` (n,) in the smallest integer dtype that holds their values
    (uint8 for up to 256 classes), other dtypes as they are: the main process keeps every
    network's train, validation and test predictions, 8 bytes a row each in int64 (on a
    5-million-row file, 44 MB a network)."""
    p = np.asarray(p)
    if p.dtype.kind not in "iu" or p.size == 0:
        return p
    return p.astype(np.promote_types(np.min_scalar_type(p.min()), np.min_scalar_type(p.max())),
                    copy=False)


def evaluate(model, data):
    """Accuracy and macro-F1 of ``model`` on the train, val and test arrays of ``data``,
    with the predictions (``"pred"``, in ``narrow_labels``'s dtype) they came from:
    ``{split: {"acc", "macro_f1", "pred"}}``
    (``acc`` and ``macro_f1`` None for a split without labels: an unlabelled test file)."""
    out = {}
    for split in ("train", "val", "test"):
        y, p = data.y(split), narrow_labels(model.predict(data.X(split)))
        if y is None:
            out[split] = {"acc": None, "pred": p, "macro_f1": None}
            continue
        acc, f1 = label_scores(y, p)
        out[split] = {"acc": acc, "pred": p, "macro_f1": f1}
    return out


def label_scores(y, p):
    """``(accuracy_score(y, p), f1_score(y, p, average="macro"))`` of class indices ``y``, ``p``
    (n,), computed by scikit-learn on the distinct (label, prediction) pairs weighted by their
    counts: the same numbers (every sum it forms is a whole number, exact in float64) from
    at most n_classes**2 rows instead of n (scikit-learn's own sorts and encodes copies of
    all n rows, in each worker that scores a network)."""
    from sklearn.metrics import accuracy_score, f1_score
    y, p = np.asarray(y), np.asarray(p)
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"y and p must be 1-D of one non-zero length, got shapes {y.shape} and {p.shape}")
    if y.dtype.kind not in "iu" or p.dtype.kind not in "iu" or min(y.min(), p.min()) < 0:
        raise ValueError("y and p must be class indices (integers >= 0)")
    k = int(max(y.max(), p.max())) + 1
    counts = np.bincount(y.astype(np.int64) * k + p, minlength=k * k)
    pairs = np.flatnonzero(counts)
    yy, pp, w = pairs // k, pairs % k, counts[pairs]
    return (float(accuracy_score(yy, pp, sample_weight=w)),
            float(f1_score(yy, pp, average="macro", sample_weight=w)))


def fit_scored_job(label, params, data, validate):
    """One training and its ``evaluate`` scores (in a worker): a ``Fitted``."""
    model = fit_job(label, params, data.X_train, data.y_train,
                     data.X_val if validate else None, data.y_val if validate else None)
    return Fitted(model, evaluate(model, data))


def best_network(scores):
    """THE rule that picks the network the later parts study: the highest validation
    accuracy (first in run order on ties). ``scores``: activation -> ``evaluate`` output."""
    return max(scores, key=lambda act: scores[act]["val"]["acc"])


# ------------------------------------------------------------------ underfitting
# Two rules, applied to every network the report shows beside its accuracy.
STILL_LEARNING = Rule("still learning", 0.01,
                      "a network is *still learning* when its training loss fell by more than {points}% over "
                      "the last fifth of its iterations")
BELOW_REFERENCE = Rule("below a reference model", 0.05,
                       "a network is *underfitting* when its validation accuracy is more than {points} points "
                       "below that of a gradient-boosting model fitted on the same training split (and by more "
                       "than {z:g} standard errors of the difference)", also=(("z", 2.576),))


def loss_fall(loss):
    """``(fall, k, last)``: the relative fall of the training loss over the last ``k``
    iterations (a fifth of them) and the last loss; ``STILL_LEARNING`` reads it."""
    loss = [float(v) for v in loss]
    k = max(1, len(loss) // 5)
    fall = (loss[-k - 1] - loss[-1]) / loss[-k - 1] if len(loss) > k and loss[-k - 1] > 0 else 0.0
    return float(fall), k, loss[-1]


# The reference model is fitted on at most this many training rows (a seeded sample above
# it, said in the report): on 4 million rows it took 90 s of a worker; 500,000 take about 10 s.
REFERENCE_ROWS = 500_000


def reference_arrays(data, seed):
    """What the ``reference_accuracy`` job is sent: ``data.arrays()`` with only the training
    rows it is fitted on (``context.analysis_rows``, at most ``REFERENCE_ROWS``) and no
    test rows, so a large file is not copied to a worker whole."""
    from context import analysis_rows
    d = data.arrays()
    rows = analysis_rows(len(d.y_train), seed, cap=REFERENCE_ROWS)
    if len(rows) == len(d.y_train):
        return replace(d, X_test=None, y_test=None)
    return replace(d, X_train=d.X_train[rows], y_train=d.y_train[rows], X_test=None, y_test=None)


def reference_accuracy(data, seed):
    """Validation accuracy of a quick gradient-boosting model (scikit-learn's
    ``HistGradientBoostingClassifier``, defaults) fitted on the same training split
    (``context.analysis_rows`` of it, at most ``REFERENCE_ROWS``; ``reference_arrays``
    sends only those): what the encoded features can give, for ``BELOW_REFERENCE``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from context import analysis_rows
    rows = analysis_rows(len(data.y_train), seed, cap=REFERENCE_ROWS)
    X, y = (data.X_train, data.y_train) if len(rows) == len(data.y_train) else \
        (data.X_train[rows], data.y_train[rows])
    model = HistGradientBoostingClassifier(random_state=seed).fit(X, y)
    return float(model.score(data.X_val, data.y_val))


def underfitting(model, val_acc, reference, n_val, iterations):
    """The underfitting rules on one network: ``{"still_learning", "loss_fall",
    "below_reference", "reference_gap", "advice"}`` (``advice``: the option to try,
    or "" when neither rule fires).

    Parameters
    ----------
    model : fitted ``mlp.MLP`` (its ``history_["loss"]``)
    val_acc : float
        Its validation accuracy.
    reference : float or None
        ``reference_accuracy`` on the same split (None: not measured).
    n_val : int
        Validation rows (the noise of the accuracy difference).
    iterations : int
        The iterations it was trained for (the advice doubles them).
    """
    fall = loss_fall(model.history_["loss"])[0]
    still = fall > STILL_LEARNING.threshold
    gap = None if reference is None else reference - val_acc
    below = False
    if gap is not None:
        se = math.sqrt(max(reference * (1 - reference) + val_acc * (1 - val_acc), 1e-12) / max(n_val, 1))
        below = gap > max(BELOW_REFERENCE.threshold, BELOW_REFERENCE.value("z") * se)
    advice = []
    if still:
        advice.append(f"--iterations {2 * iterations}")
    if below and not still:
        advice.append("a larger --lr or --hidden")
    return {"still_learning": bool(still), "loss_fall": fall, "below_reference": bool(below),
            "reference_gap": gap, "advice": " or ".join(advice)}
