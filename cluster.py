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

Public API: ``connect``, ``scatter_rows``, ``load_parts``, ``load_fitting_rows``
(with ``TrainingFiles`` and ``unreadable``), ``RowParts``, ``fit``.
"""
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

import mlp
from kernels import _add_l2

INSTALL = "pip install -r requirements-cluster.txt"
CONNECT_TIMEOUT = 10    # seconds Dask keeps trying an address that does not answer


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

    Raises
    ------
    ConnectionRefusedError
        At once, when nothing listens at a TCP address (``_check_listening``).
    OSError
        After ``CONNECT_TIMEOUT`` seconds, when the address does not answer.
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
    _check_listening(scheduler)
    return distributed.Client(scheduler, timeout=f"{CONNECT_TIMEOUT}s")


def _check_listening(scheduler):
    """Raise ``ConnectionRefusedError`` at once when nothing listens at the TCP address
    ``scheduler`` (a refused connection: a wrong port, or no scheduler started there),
    instead of Dask retrying it for ``CONNECT_TIMEOUT`` seconds. Any other outcome (it
    answers, or does not answer at all) is left to Dask."""
    import socket

    from distributed.comm import get_address_host_port, parse_address
    try:
        if parse_address(scheduler)[0] != "tcp":
            return
        host, port = get_address_host_port(scheduler)
    except ValueError:
        return                                  # Dask says what is wrong with the address
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except ConnectionRefusedError:
        raise ConnectionRefusedError(
            f"nothing listens at {scheduler} (connection refused): start the scheduler there "
            f"(dask scheduler --port {port}) or give the address it prints") from None
    except OSError:
        pass                                    # no answer: Dask retries until its timeout


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
    the labels the indices point into; ``n`` rows, ``n_features`` columns in all;
    ``sent`` the bytes this process sent to place them."""
    client: Any
    futures: list
    classes: np.ndarray
    n: int
    n_features: int
    sent: int = 0       # bytes this process sent to place the rows (pickled sizes)


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
    sent = X.nbytes + 8 * len(yi) + 8 * len(w)
    return RowParts(client, futures, classes, int(len(yi)), int(X.shape[1]), sent=sent)


def _load_part(path, preprocessor, target, classes, dtype):
    """On a worker: read one CSV or Parquet file (``reader.read_file``), encode it with the
    run's fitted preprocessor and index its labels into ``classes``."""
    import reader
    frame = reader.read_file(path).frame
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
    futures = [_on(client, workers[i % len(workers)], _load_part, p, preprocessor, target, classes,
                   dtype) for i, p in enumerate(paths)]
    shapes = client.gather([_on(client, workers[i % len(workers)], _shape, f)
                            for i, f in enumerate(futures)])
    widths = {s[1] for s in shapes}
    if len(widths) != 1:
        raise ValueError(f"the parts encode to different widths {sorted(widths)}; "
                         f"use one preprocessor for all")
    return RowParts(client, futures, classes, int(sum(s[0] for s in shapes)), widths.pop())


@dataclass(frozen=True, eq=False)
class TrainingFiles:
    """The parts of a training file (``--train`` with a glob) and how this process read
    and encoded them, for the workers to load the fitting rows themselves
    (``load_fitting_rows``).

    Attributes
    ----------
    pattern : str, the glob as given
    paths : tuple of str, the parts in the order joined (``reader.glob_paths``)
    sizes : tuple of int, their sizes in bytes as this process sees them
    read : dict, the ``reader.read_file`` options (sep, na_values, text_columns, skip_columns)
    preprocessor : the run's fitted ``prep.Preprocessor``
    target : str, the label column
    label_kind : "int", "bool" or "str", how the training labels were parsed
    labels : ndarray of shape (n_classes,), the label values (``Dataset.classes``)
    n_rows : int, the rows of all the parts
    fit_rows : ndarray of shape (n_fit,), int64: the fitting rows' indices into the parts
        joined, in the order of this process's ``X_train``
    """
    pattern: str
    paths: tuple
    sizes: tuple
    read: dict
    preprocessor: Any
    target: str
    label_kind: str
    labels: np.ndarray
    n_rows: int
    fit_rows: np.ndarray


def _sizes_seen(paths):
    """On a worker: the size of each file, -1 for one it cannot read."""
    import os
    return [os.path.getsize(p) if os.path.isfile(p) and os.access(p, os.R_OK) else -1
            for p in paths]


def unreadable(client, files):
    """Why the workers cannot load ``files`` (a ``TrainingFiles``) themselves: a worker
    that cannot read a part, or sees another size than this process; None when all can."""
    seen = client.run(_sizes_seen, list(files.paths))
    for worker, sizes in seen.items():
        for path, here, there in zip(files.paths, files.sizes, sizes):
            if there < 0:
                return f"worker {worker} cannot read {path}"
            if there != here:
                return f"worker {worker} sees {there:,} bytes in {path}, this process {here:,}"
    return None


def _read_rows(path, read, columns):
    """On a worker: one part as ``reader.read_file`` reads it, only ``columns`` kept."""
    import reader
    frame = reader.read_file(path, **read).frame
    return frame[[c for c in frame.columns if c in set(columns)]]


def _n_rows(frame):
    return len(frame)


def _encode_rows(frame, bits, preprocessor, target, label_kind, labels, classes, dtype):
    """On a worker: the rows of a part that ``bits`` (``np.packbits`` of a mask) keeps,
    encoded as this process encoded them: (X, class indices into ``classes``, weights)."""
    import pandas as pd
    import prep
    rows = frame[np.unpackbits(bits, count=len(frame)).astype(bool)]
    X = preprocessor.transform(rows.drop(columns=[target]))
    values, _, _ = prep._parse_labels(rows[target], "a part", target, kind=label_kind)
    idx = pd.Index(labels).get_indexer(values)
    pos = np.searchsorted(classes, idx)
    bad = (idx < 0) | (pos >= len(classes)) | (classes[np.minimum(pos, len(classes) - 1)] != idx)
    if bad.any():
        raise ValueError(f"label {values[bad][0]!r} is not one of the training classes")
    return _part(np.asarray(X, dtype=dtype), pos, np.ones(len(pos)))


def _digest(X, yi):
    import hashlib
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(X).tobytes())
    h.update(np.ascontiguousarray(yi, dtype=np.int64).tobytes())
    return h.hexdigest()


def _part_digest(part):
    return _digest(part[0], part[1])


def load_fitting_rows(client, files, X, y, dtype=np.float64):
    """The fitting rows of a training file's parts, loaded by the workers from files they
    read themselves, checked bit for bit against this process's encoding of the same rows.

    Each part goes to one worker (in turn), which reads it with the reader this process
    used (``reader.read_file``, same options) and says how many rows it holds. The parts'
    row counts place each part in the joined file; each worker then gets, once, a mask
    of its part's rows that are fitting rows (one bit a row: the validation rows, and the
    held-out test rows of ``--test-size``, are left out), encodes those rows with the
    run's fitted preprocessor and keeps them. What crosses the network: the paths, the
    read options, the preprocessor and the masks out; a row count and a 16-byte digest
    of the encoded rows back per part. No row of data.

    Parameters
    ----------
    client : distributed.Client
    files : TrainingFiles
    X : ndarray of shape (n_fit, n_features), this process's encoded fitting rows, in
        the order of ``files.fit_rows`` (for the check only: it is not sent)
    y : ndarray of shape (n_fit,), their class indices
    dtype : the network's floating type

    Returns
    -------
    RowParts
        Partition i holds part i's fitting rows in file order (a part without
        fitting rows is left out); ``classes`` = ``np.unique(y)``.

    Raises
    ------
    ValueError
        The parts hold another number of rows than this process read, or a part
        encodes to other rows (another copy of the file, or changed since).
    """
    classes = np.unique(np.asarray(y))
    workers = list(client.scheduler_info()["workers"])
    columns = [*files.preprocessor.feature_names_in_, files.target]
    raw = [_on(client, workers[i % len(workers)], _read_rows, p, files.read, columns)
           for i, p in enumerate(files.paths)]
    counts = client.gather([_on(client, workers[i % len(workers)], _n_rows, f)
                            for i, f in enumerate(raw)])
    if sum(counts) != files.n_rows:
        raise ValueError(f"the parts of {files.pattern} hold {sum(counts):,} rows on the workers, "
                         f"but {files.n_rows:,} when this process read them; the parts must stay "
                         "unchanged during the run")
    fit_rows = np.asarray(files.fit_rows, dtype=np.int64)
    if len(fit_rows) != len(y) or len(np.unique(fit_rows)) != len(fit_rows) or \
            (len(fit_rows) and (fit_rows.min() < 0 or fit_rows.max() >= files.n_rows)):
        raise ValueError(f"fit_rows: {len(fit_rows):,} distinct row indices below "
                         f"{files.n_rows:,} are needed, one per row of y ({len(y):,})")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    order = np.argsort(fit_rows, kind="stable")
    ordered = fit_rows[order]
    pre = client.scatter(files.preprocessor, broadcast=True, hash=False)
    sent = len(pickle.dumps(files.preprocessor)) * len(workers) + \
        len(pickle.dumps((files.paths, files.read)))
    futures, expected, where = [], [], []
    for i, f in enumerate(raw):
        lo, hi = np.searchsorted(ordered, [offsets[i], offsets[i + 1]])
        if hi == lo:
            continue
        mask = np.zeros(counts[i], dtype=bool)
        mask[ordered[lo:hi] - offsets[i]] = True
        bits = np.packbits(mask)
        sent += bits.nbytes
        futures.append(_on(client, workers[i % len(workers)], _encode_rows, f, bits, pre,
                           files.target, files.label_kind, files.labels, classes, dtype))
        rows = order[lo:hi]
        expected.append(_digest(np.asarray(X[rows], dtype=dtype), np.searchsorted(classes, y[rows])))
        where.append(i)
    del raw
    got = client.gather([_on(client, workers[i % len(workers)], _part_digest, f)
                         for f, i in zip(futures, where)])
    for i, a, b in zip(where, got, expected):
        if a != b:
            raise ValueError(f"{files.paths[i]}: the workers encode other rows from it than this "
                             f"process did; every machine needs the same copy of the parts of "
                             f"{files.pattern}, unchanged during the run")
    joined = []                 # one partition a worker: one gradient back per worker and step
    for k, worker in enumerate(workers):
        mine = [f for f, i in zip(futures, where) if i % len(workers) == k]
        if len(mine) == 1:
            joined.append(mine[0])
        elif mine:
            joined.append(_on(client, worker, _join, *mine))
    del futures
    return RowParts(client, joined, classes, int(len(y)), int(X.shape[1]), sent=sent)


def _shape(part):
    """On a worker: the shape of a partition's X."""
    return part[0].shape


def _join(*parts):
    """On a worker: its partitions as one."""
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))


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


def _holders(parts):
    """The worker holding each partition of ``parts`` (addresses, in partition order), once
    every partition is in memory (those loaded on the workers are tasks)."""
    import distributed
    distributed.wait(parts.futures)
    for f in parts.futures:
        if f.status == "error":
            f.result()                      # raises the partition's own error
    where = parts.client.who_has(parts.futures)
    return [sorted(where[f.key])[0] for f in parts.futures]


def _on(client, worker, fn, *args):
    """``client.submit(fn, *args)`` run on ``worker`` and only there (never cached): every task
    on a partition is pinned to the worker holding it, since a task the scheduler moved to an
    idle worker (work stealing, on a busy machine) would copy the partition over, and the
    rows would no longer stay where they were loaded."""
    return client.submit(fn, *args, pure=False, workers=[worker], allow_other_workers=False)


def _on_holders(parts, holders, fn, *args):
    """``fn(partition, *args)`` for each partition of ``parts`` on its worker in ``holders``
    (``_on``); futures, in partition order."""
    return [_on(parts.client, w, fn, f, *args) for f, w in zip(parts.futures, holders)]


class _ClusterRows:
    """The rows of ``RowParts`` as ``MLP._train`` steps on them: full batch only."""

    def __init__(self, parts, class_weight, holders=None):
        """``holders``: ``_holders(parts)`` when the caller has it (asked here otherwise)."""
        self.parts, self.cw = parts, class_weight
        self.holders = _holders(parts) if holders is None else holders
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
        futures = _on_holders(self.parts, self.holders, _part_sums, th, sizes, code, self.cw)
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
        holders = _holders(parts)
        stats = parts.client.gather(_on_holders(parts, holders, _part_stats, k))
        counts = sum(s[0] for s in stats)
        model.classes_ = classes
        model.n_features_in_ = parts.n_features
        per_class = model._class_weights(counts)         # as MLP._sample_weight
        Xv = yv = None
        if X_val is not None:
            Xv = model._check_X_val(X_val, dtype, parts.n_features)
            yv = model._encode(y_val, Xv.shape[0], "y_val")
        model.training_mean_ = sum(s[1] for s in stats) / parts.n
        return model._train(_ClusterRows(parts, per_class, holders), hidden, code, dtype, Xv, yv,
                            progress)
    except BaseException:
        model._forget()
        raise
