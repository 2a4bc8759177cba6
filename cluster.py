"""Full-batch training over row partitions held by Dask workers (dask.distributed).

The full-batch loss and gradient are weighted means over rows, so they are sums
over any partition of the rows: each worker runs the training kernel
(``mlp._run_loss_and_grad``) on the partitions it holds and returns their
weighted sums; the client adds them in partition order (never in order of
arrival) and takes one step. Per step the parameter vector goes out once to
each worker and one gradient of the same size comes back per partition; the
rows never move after they are loaded (``scatter_rows`` from this process, or
``load_parts`` on the workers from files they can read). The steps, the
validation, early stopping and the fitted attributes are ``MLP``'s own
(``MLP._train``), so a model fitted here equals ``MLP.fit`` on the same rows up
to the order of additions (float64: 1e-10, ``tests/test_cluster.py``).

Dask is optional (``requirements-cluster.txt``); without it ``connect`` raises
an ``ImportError`` of one line that says what to install.

Public API: ``connect``, ``scatter_rows``, ``load_parts``, ``RowParts``, ``fit``.
"""
from dataclasses import dataclass
from typing import Any

import numpy as np

import mlp
from kernels import _add_l2

INSTALL = "pip install -r requirements-cluster.txt"


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(f"--scheduler needs dask.distributed, which is not installed; "
                          f"{INSTALL}") from None
    return distributed


def connect(scheduler):
    """A ``distributed.Client`` for ``scheduler``.

    Parameters
    ----------
    scheduler : str
        ``"local:N"``: start a local cluster of N single-threaded worker processes
        (closed with the client); otherwise the address of a running scheduler,
        e.g. ``"tcp://10.0.0.5:8786"``.

    Returns
    -------
    client : distributed.Client
    """
    distributed = _distributed()
    if scheduler.startswith("local:"):
        n = scheduler.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--scheduler {scheduler!r}: local:N needs a number of workers "
                             f"N >= 1, e.g. local:2")
        cluster = distributed.LocalCluster(n_workers=int(n), threads_per_worker=1,
                                           processes=True, dashboard_address=":0")
        client = distributed.Client(cluster)
        client._owned_cluster = cluster          # closed by close()
        return client
    return distributed.Client(scheduler, timeout="10s")      # an unreachable address: 10 s


def close(client):
    """Close ``client`` and the local cluster ``connect`` started for it, if any."""
    cluster = getattr(client, "_owned_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


@dataclass(frozen=True, eq=False)
class RowParts:
    """Training rows held by Dask workers: ``futures[i]`` is partition i, a tuple
    (X of shape (n_i, n_features), class indices (n_i,), weights (n_i,)); ``classes``
    the labels the indices point into; ``n`` rows, ``n_features`` columns in all."""
    client: Any
    futures: list
    classes: np.ndarray
    n: int
    n_features: int


def _part(X, yi, w):
    return np.ascontiguousarray(X), np.ascontiguousarray(yi, dtype=np.int64), \
        np.ascontiguousarray(w, dtype=np.float64)


def scatter_rows(client, X, y, n_parts=None, sample_weight=None, dtype=np.float64):
    """Send the rows of ``X``/``y`` to the workers once, as ``n_parts`` contiguous
    partitions (default: one per worker), spread over the workers in turn.

    Parameters
    ----------
    client : distributed.Client
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), labels
    n_parts : int or None
    sample_weight : ndarray of shape (n_samples,) or None
    dtype : the network's floating type (``MLP.dtype``)

    Returns
    -------
    RowParts
    """
    X = np.asarray(X, dtype=dtype)
    classes, yi = np.unique(np.asarray(y), return_inverse=True)
    w = np.ones(len(yi)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    workers = list(client.scheduler_info()["workers"])
    n_parts = n_parts or len(workers)
    bounds = np.linspace(0, len(yi), n_parts + 1).astype(int)
    futures = []
    for i in range(n_parts):
        s = slice(bounds[i], bounds[i + 1])
        futures.append(client.scatter([_part(X[s], yi[s], w[s])],     # one object: a list
                                      workers=[workers[i % len(workers)]], hash=False)[0])
    return RowParts(client, futures, classes, int(len(yi)), int(X.shape[1]))


def _load_part(path, preprocessor, target, classes, dtype):
    """On a worker: read one CSV or Parquet file, encode it with the run's fitted
    preprocessor and index its labels into ``classes``."""
    import pandas as pd
    frame = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)
    if target not in frame.columns:
        raise ValueError(f"{path}: no label column {target!r}")
    X = np.asarray(preprocessor.transform(frame.drop(columns=[target])), dtype=dtype)
    y = frame[target].to_numpy()
    yi = np.searchsorted(classes, y)
    bad = (yi >= len(classes)) | (classes[np.minimum(yi, len(classes) - 1)] != y)
    if bad.any():
        raise ValueError(f"{path}: label {y[bad][0]!r} is not one of {list(classes)}")
    return _part(X, yi, np.ones(len(yi)))


def load_parts(client, paths, preprocessor, target, classes, dtype=np.float64):
    """Each worker reads and encodes the files it is given (CSV or Parquet parts it can
    read itself): only the fitted ``preprocessor`` travels, the rows stay on the workers.

    Parameters
    ----------
    client : distributed.Client
    paths : list of str, one partition per file (a glob expanded by the caller)
    preprocessor : fitted object with ``transform(frame) -> ndarray (n_rows, n_features)``
    target : str, the label column
    classes : ndarray of shape (n_classes,), the sorted labels
    dtype : the network's floating type

    Returns
    -------
    RowParts
    """
    classes = np.asarray(classes)
    workers = list(client.scheduler_info()["workers"])
    futures = [client.submit(_load_part, p, preprocessor, target, classes, dtype, pure=False,
                             workers=[workers[i % len(workers)]])
               for i, p in enumerate(paths)]
    shapes = client.gather([client.submit(lambda part: part[0].shape, f) for f in futures])
    widths = {s[1] for s in shapes}
    if len(widths) != 1:
        raise ValueError(f"the parts encode to different widths {sorted(widths)}; "
                         f"use one preprocessor for all")
    return RowParts(client, futures, classes, int(sum(s[0] for s in shapes)), widths.pop())


def _part_sums(part, theta, sizes, code, class_weight):
    """On a worker: (weight, weighted loss sum, weighted gradient sum, hits, row sum of X)
    of one partition, without the L2 term (added once by the client)."""
    X, yi, w = part
    w = w * class_weight[yi]
    total = float(w.sum())
    if total <= 0:
        return 0.0, 0.0, np.zeros(theta.shape[0]), 0
    loss, grad, hits = mlp._run_loss_and_grad(theta, sizes, code, X, yi, w, 0.0)
    return total, loss * total, grad.astype(np.float64) * total, hits


def _part_stats(part, k):
    X, yi, w = part
    return np.bincount(yi, minlength=k), X.sum(axis=0, dtype=np.float64), len(yi)


class _ClusterRows:
    """The rows of ``RowParts`` as ``MLP._train`` steps on them: full batch only."""

    def __init__(self, parts, class_weight):
        self.parts, self.cw = parts, class_weight
        self.n, self.n_features = parts.n, parts.n_features
        self.client = parts.client

    def weight(self, batch):
        if batch is not None:
            raise ValueError("mini-batches are trained in one process; the cluster computes "
                             "full-batch gradients (leave batch_size None)")
        return 1.0

    def loss_and_grad(self, batch, theta, sizes, code, l2, rate, key, step):
        client = self.client
        th = client.scatter(theta, broadcast=True, hash=False)      # out: one vector a worker
        futures = [client.submit(_part_sums, f, th, sizes, code, self.cw, pure=False)
                   for f in self.parts.futures]
        sums = client.gather(futures)                                # back: one per partition
        total = 0.0
        loss = 0.0
        grad = np.zeros(theta.shape[0])
        hits = 0
        for w, l, g, h in sums:                                      # partition order
            total += w
            loss += l
            grad += g
            hits += h
        grad /= total
        loss = _add_l2(theta, np.asarray(sizes, dtype=np.int64), float(l2), grad, loss / total)
        return float(loss), grad.astype(theta.dtype), hits


def fit(model, parts, X_val=None, y_val=None, progress=None):
    """Train ``model`` (an unfitted or fitted ``mlp.MLP``) by full-batch gradient descent
    (or Adam) on rows held by Dask workers.

    Parameters
    ----------
    model : mlp.MLP with ``batch_size=None`` and ``dropout=0``
    parts : RowParts, from ``scatter_rows`` or ``load_parts``
    X_val : ndarray of shape (n_val, n_features) or None, validation rows (in this process)
    y_val : ndarray of shape (n_val,) or None
    progress : callable(iteration, loss, val_loss) or None

    Returns
    -------
    model : the fitted ``model``; equal to ``model.fit`` on the concatenated partitions
        up to the order of additions
    """
    hidden, code, dtype = model._check_hyper()
    if model.batch_size is not None:
        raise ValueError(f"batch_size={model.batch_size!r}: the cluster trains full batch; "
                         f"use batch_size=None, or train mini-batches in one process")
    if model.dropout:
        raise ValueError("dropout masks are drawn per row of one process; train with dropout "
                         "in one process, not on the cluster")
    if model.early_stopping and X_val is None:
        raise ValueError("early_stopping on the cluster needs X_val and y_val")
    model._forget()
    try:
        classes = np.asarray(parts.classes)
        k = len(classes)
        stats = parts.client.gather([parts.client.submit(_part_stats, f, k, pure=False)
                                     for f in parts.futures])
        counts = sum(s[0] for s in stats)
        model.classes_ = classes
        model.n_features_in_ = parts.n_features
        per_class = model._class_weights(counts)         # as MLP._sample_weight
        Xv = yv = None
        if X_val is not None:
            Xv = model._check_X_val(X_val, dtype, parts.n_features)
            yv = model._encode(y_val, Xv.shape[0], "y_val")
        model.training_mean_ = sum(s[1] for s in stats) / parts.n
        return model._train(_ClusterRows(parts, per_class), hidden, code, dtype, Xv, yv,
                            progress)
    except BaseException:
        model._forget()
        raise
