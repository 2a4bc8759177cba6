"""shared_arrays: large job arguments reach worker processes as one shared copy, not pickled copies."""
import gc
import os
import pickle

import numpy as np
import pandas as pd
import pytest

import jobs
import mlp
import prep
import shared_arrays
import training

pytestmark = pytest.mark.skipif(not shared_arrays.supported(),
                                reason="needs Linux memfd_create and /proc/<pid>/fd")


def _memory_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _sum_and_memory(a):
    """In a worker: the array's sum (every page touched) and how much of this process's
    resident memory is its own (RssAnon) and shared (RssShmem), in kB."""
    return float(a.sum(dtype=np.float64)), type(a).__name__, _memory_kb("RssAnon"), _memory_kb("RssShmem")


def _write_first(a):
    """In a worker: write into the array it was sent; returns what it then holds."""
    a[0, 0] = -1.0
    return float(a[0, 0])


def _large(shape=(4_000_000, 4), dtype=np.float32):
    a = shared_arrays.empty(shape, dtype)
    a[:] = np.arange(a.size, dtype=np.float64).reshape(shape) % 97
    return a


def test_small_arrays_stay_plain_and_pickle_whole():
    a = shared_arrays.empty((100, 3), np.float32)
    assert type(a) is np.ndarray and shared_arrays._owner(a) is None
    assert shared_arrays.for_workers(a) is a
    assert shared_arrays.for_workers(None) is None


def test_a_large_array_pickles_as_its_address_and_back_to_equal_values():
    a = _large()
    assert a.nbytes >= shared_arrays.MIN_BYTES and a.flags.writeable
    v = shared_arrays.for_workers(a)
    assert isinstance(v, shared_arrays.SharedArray) and np.shares_memory(v, a)
    blob = pickle.dumps(v)
    assert len(blob) < 1000                         # an address, not 64 MB
    back = pickle.loads(blob)
    assert type(back) is np.ndarray and back.dtype == a.dtype and back.shape == a.shape
    np.testing.assert_array_equal(back, a)
    # a copy numpy made of the view (fancy indexing) is no longer shared: pickled whole
    copy = v[np.arange(0, len(v), 2)]
    assert shared_arrays._owner(copy) is None
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(copy)), a[::2])


def test_the_buffer_is_released_with_its_last_array():
    a = _large()
    fd = shared_arrays._owner(a)[0]
    view = shared_arrays.for_workers(a)[10:20]
    del a
    gc.collect()
    assert any(entry[2] == fd for entry in shared_arrays._OWNED)      # the view keeps it
    del view
    gc.collect()
    assert not any(entry[2] == fd for entry in shared_arrays._OWNED)
    with pytest.raises(OSError):
        os.fstat(fd)                                                  # descriptor closed


def test_a_worker_maps_the_array_instead_of_holding_a_copy():
    a = _large((8_000_000, 4))                      # 128 MB
    mb = a.nbytes // 1024
    with jobs.Jobs(1) as pool:
        pool.submit("warm", _memory_kb, "RssAnon").result(timeout=120)
        total, kind, anon, shmem = pool.submit("sum", _sum_and_memory,
                                               shared_arrays.for_workers(a)).result(timeout=120)
        assert total == float(a.sum(dtype=np.float64)) and kind == "ndarray"
        assert shmem >= 0.9 * mb                    # every page of it mapped, shared ...
        assert anon < 0.5 * mb + 400_000            # ... not a private copy (plus the imports)
        # a worker's writes stay its own: the main process's array is unchanged
        assert pool.submit("write", _write_first, shared_arrays.for_workers(a)).result(timeout=120) == -1.0
    assert a[0, 0] == 0.0


def test_worker_arrays_share_the_networks_matrices_and_train_the_same(monkeypatch):
    """training.worker_arrays: the float32 matrices a worker trains on are made once in
    shared memory (MIN_BYTES lowered so test-sized data counts as large); a training in a
    worker on them equals one in this process on the encoded data."""
    monkeypatch.setattr(shared_arrays, "MIN_BYTES", 1024)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    e = prep.Encoded(X_train=X[:2000], y_train=y[:2000], X_val=X[2000:2500], y_val=y[2000:2500],
                     X_test=X[2500:], y_test=y[2500:])
    params = dict(hidden=(8,), activation="relu", lr=0.3, n_iter=15, seed=1, dtype="float32")
    d = training.worker_arrays(e, params)
    for name in ("X_train", "X_val", "X_test"):
        a = getattr(d, name)
        assert isinstance(a, shared_arrays.SharedArray) and a.dtype == np.float32
        np.testing.assert_array_equal(a, getattr(e, name).astype(np.float32))
    assert not isinstance(d.y_train, shared_arrays.SharedArray)     # labels made by np.empty: pickled
    # prep.encode(empty=shared_arrays.empty) makes the labels in shared memory: they are shared too
    frame = pd.DataFrame({"a": X[:2500, 0], "b": X[:2500, 1], "label": y[:2500]})
    ds = prep.validate_frames(frame.iloc[:2000], frame.iloc[2000:], target="label")
    narrow = training.worker_arrays(prep.encode(ds, dtype=np.float32, empty=shared_arrays.empty), params)
    for name in ("X_train", "X_val", "X_test", "y_train", "y_val", "y_test"):
        assert isinstance(getattr(narrow, name), shared_arrays.SharedArray), name
    assert training.worker_arrays(e, params).X_train.base is d.X_train.base      # made once
    local = mlp.MLP(**params).fit(e.X_train, e.y_train, e.X_val, e.y_val)
    with jobs.Jobs(1) as pool:
        remote = pool.submit("fit", training.fit_job, "t", params, d.X_train, d.y_train,
                             d.X_val, d.y_val).result(timeout=120)
    for a, b in zip(remote.weights_ + remote.biases_, local.weights_ + local.biases_):
        np.testing.assert_array_equal(a, b)


def test_the_reference_job_is_sent_only_the_rows_it_fits_on(monkeypatch):
    monkeypatch.setattr(training, "REFERENCE_ROWS", 300)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1400, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    e = prep.Encoded(X_train=X[:1000], y_train=y[:1000], X_val=X[1000:1200], y_val=y[1000:1200],
                     X_test=X[1200:], y_test=y[1200:])
    sent = training.reference_arrays(e, seed=5)
    assert sent.X_train.shape == (300, 3) and sent.X_test is None
    assert training.reference_accuracy(sent, 5) == training.reference_accuracy(e, 5)


def test_a_cluster_training_gets_plain_arrays_not_addresses(monkeypatch):
    """fit_job hands Dask plain arrays: a SharedArray would pickle as an address that only
    means something on this machine (a remote Dask worker cannot map it)."""
    pytest.importorskip("distributed")
    import contextlib
    import types
    import cluster
    import distributed
    monkeypatch.setattr(shared_arrays, "MIN_BYTES", 1024)
    seen = {}
    monkeypatch.setattr(distributed, "Client", lambda *a, **k: contextlib.nullcontext(object()))

    def scatter_rows(client, X, y, dtype):
        seen["X"] = X
        return types.SimpleNamespace(sent=0)

    def fit(model, parts, X_val, y_val, progress):
        seen["X_val"] = X_val
        return model

    monkeypatch.setattr(cluster, "scatter_rows", scatter_rows)
    monkeypatch.setattr(cluster, "fit", fit)
    X = shared_arrays.empty((400, 8), np.float32)
    X[:] = 1.0
    view = shared_arrays.for_workers(X)
    assert isinstance(view, shared_arrays.SharedArray)
    training.fit_job("t", dict(hidden=(4,), n_iter=1), view, np.zeros(400, dtype=np.int64), view,
                     np.zeros(400, dtype=np.int64), scheduler="tcp://nowhere:1")
    assert type(seen["X"]) is np.ndarray and type(seen["X_val"]) is np.ndarray
    assert np.shares_memory(seen["X"], X)           # no copy made for it


def test_an_address_of_a_released_buffer_never_reads_a_newer_one():
    """A descriptor number is reused once closed: an address pickled before its buffer was
    released must fail, not map the buffer that now has that number (its inode tells)."""
    a = _large()
    blob = pickle.dumps(shared_arrays.for_workers(a))
    fd = shared_arrays._owner(a)[0]
    del a
    gc.collect()
    b = _large()
    b[:] = 5.0
    assert shared_arrays._owner(b)[0] == fd            # the number was given again
    with pytest.raises(RuntimeError, match="gone"):
        pickle.loads(blob)
