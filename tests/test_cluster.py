"""Training on a Dask cluster (cluster.py): the same fit as one process, rows loaded by
the workers, only weights and gradients per step, and --scheduler on the command line.

Runs on a local cluster of two worker processes. Dask is optional for users, so the
tests skip without it on a developer's machine, but fail under CI (which installs
requirements-cluster.txt)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

if os.environ.get("CI"):
    import distributed  # noqa: F401  (CI installs requirements-cluster.txt: fail, never skip)
else:
    pytest.importorskip("distributed")

import cluster
import mlp

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client():
    c = cluster.connect("local:2")
    yield c
    cluster.close(c)


def _data(seed=0, n=1500, d=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.digitize(X[:, 0] + 0.7 * X[:, 1] - 0.3 * X[:, 2], [-0.6, 0.6])
    return X, y


def _net(**kw):
    base = dict(hidden=(16, 8), n_iter=25, lr=0.3, dtype="float64", seed=3)
    base.update(kw)
    return mlp.MLP(**base)


def _max_diff(a, b):
    return max(float(np.max(np.abs(p - q))) for p, q in zip(a.weights_ + a.biases_,
                                                           b.weights_ + b.biases_))


@pytest.mark.parametrize("kw", [{}, {"l2": 1e-3, "class_weight": "balanced"},
                                {"solver": "adam", "lr": 0.01}])
def test_cluster_fit_equals_the_one_process_fit(client, kw):
    X, y = _data()
    Xv, yv = _data(1, n=300)
    parts = cluster.scatter_rows(client, X, y, n_parts=3)
    on_cluster = cluster.fit(_net(**kw), parts, Xv, yv)
    here = _net(**kw).fit(X, y, Xv, yv)
    assert _max_diff(on_cluster, here) < 1e-10
    np.testing.assert_allclose(on_cluster.history_["val_loss"], here.history_["val_loss"],
                               rtol=0, atol=1e-10)
    np.testing.assert_array_equal(on_cluster.history_["train_acc"], here.history_["train_acc"])
    np.testing.assert_allclose(on_cluster.training_mean_, here.training_mean_, atol=1e-12)


def test_workers_load_their_own_files(client, tmp_path):
    X, y = _data(2, n=900)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["label"] = y
    paths = []
    for i, rows in enumerate(np.array_split(np.arange(len(y)), 3)):
        p = tmp_path / f"part{i}.csv"
        frame.iloc[rows].to_csv(p, index=False)
        paths.append(str(p))

    class Columns:                       # a fitted preprocessor: the feature columns as floats
        def transform(self, f):
            return f[[f"x{i}" for i in range(X.shape[1])]].to_numpy(float)

    parts = cluster.load_parts(client, paths, Columns(), "label", np.unique(y))
    assert parts.n == len(y) and parts.n_features == X.shape[1]
    on_cluster = cluster.fit(_net(), parts)
    here = _net().fit(X, y)
    assert _max_diff(on_cluster, here) < 1e-10


def test_what_the_cluster_cannot_train_is_refused(client):
    X, y = _data(3, n=200)
    parts = cluster.scatter_rows(client, X, y)
    with pytest.raises(ValueError, match="batch_size"):
        cluster.fit(_net(batch_size=32), parts)
    with pytest.raises(ValueError, match="dropout"):
        cluster.fit(_net(dropout=0.2), parts)


def test_a_bad_local_cluster_size_says_how():
    with pytest.raises(ValueError, match="local:2"):
        cluster.connect("local:zero")


def test_scheduler_gives_the_same_part_b_numbers(client, tmp_path):
    rng = np.random.default_rng(4)
    for name, n in (("train.csv", 500), ("test.csv", 150)):
        X = rng.normal(size=(n, 4))
        df = pd.DataFrame(X, columns=list("abcd"))
        df["label"] = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
        df.to_csv(tmp_path / name, index=False)
    finals = {}
    for tag, extra in (("one", []), ("cluster", ["--scheduler", client.scheduler.address])):
        out = tmp_path / tag
        done = subprocess.run([sys.executable, str(REPO / "run_all.py"), "--train",
                               str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                               "--target", "label", "--quick", "--parts", "B", "--dtype",
                               "float64", "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
        if tag == "cluster":
            assert "cluster: Part B trains on 2 Dask worker(s)" in done.stdout
        finals[tag] = json.loads((out / "metrics.json").read_text())["partB"]["final"]
    for a, b in zip(finals["one"], finals["cluster"]):
        assert a["train_acc"] == b["train_acc"] and a["val_acc"] == b["val_acc"]
        assert abs(a["final_loss"] - b["final_loss"]) < 1e-10
        assert abs(a["final_val_loss"] - b["final_val_loss"]) < 1e-10


def test_scheduler_with_batch_size_is_a_usage_error():
    import run_all
    with pytest.raises(run_all.UsageError, match="--batch-size"):
        run_all.validate(run_all.build_parser().parse_args(["--scheduler", "local:2",
                                                            "--batch-size", "64"]))


def test_without_dask_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)      # import distributed fails
    with pytest.raises(ImportError, match="pip install -r requirements-cluster.txt"):
        cluster.connect("local:2")


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "run_all.py"), "--quick", "--parts", "B",
                           "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --scheduler: nothing listens at "
                                               "tcp://127.0.0.1:9"), done.stderr[-1000:]


def _closed_port():
    import socket
    with socket.socket() as s:                  # a port the system just handed out, then freed
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("form", ["tcp://127.0.0.1:{}", "127.0.0.1:{}"])
def test_a_refused_address_fails_at_once_and_says_what_to_start(form):
    import time
    address = form.format(_closed_port())
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError, match="nothing listens at .*dask scheduler --port"):
        cluster.connect(address)
    assert time.monotonic() - t0 < cluster.CONNECT_TIMEOUT / 2    # Dask alone retries 10 s


def test_a_listening_address_is_left_to_dask():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cluster._check_listening(f"tcp://127.0.0.1:{s.getsockname()[1]}")   # no error
    cluster._check_listening("inproc://10.0.0.1/1/1")                     # not TCP: not probed


def test_partitions_stay_on_their_workers_and_may_be_uneven(client):
    X, y = _data(6, n=1003)
    parts = cluster.scatter_rows(client, X, y, n_parts=5)          # more parts than workers
    where_before = {f.key: set(client.who_has(parts.futures)[f.key]) for f in parts.futures}
    on_cluster = cluster.fit(_net(n_iter=8), parts)
    where_after = {f.key: set(client.who_has(parts.futures)[f.key]) for f in parts.futures}
    assert where_before == where_after and all(len(w) == 1 for w in where_after.values())
    assert len({next(iter(w)) for w in where_after.values()}) == 2   # spread over both workers
    assert _max_diff(on_cluster, _net(n_iter=8).fit(X, y)) < 1e-10


def test_every_step_task_is_pinned_to_the_worker_holding_its_partition(client, monkeypatch):
    """The scheduler may move a task to an idle worker (work stealing on a busy machine),
    copying the partition there: every task on a partition names the worker that holds it
    and forbids others, so the rows stay where they were loaded."""
    X, y = _data(7, n=600)
    parts = cluster.scatter_rows(client, X, y, n_parts=3)
    where = client.who_has(parts.futures)           # a dict by key (not in the futures' order)
    assert all(len(where[f.key]) == 1 for f in parts.futures)
    holder = {f.key: next(iter(where[f.key])) for f in parts.futures}
    calls = []
    submit = client.submit

    def spy(fn, *args, **kwargs):
        if args and getattr(args[0], "key", None) in holder:
            calls.append((fn.__name__, args[0].key, kwargs.get("workers"), kwargs.get("allow_other_workers")))
        return submit(fn, *args, **kwargs)

    monkeypatch.setattr(client, "submit", spy)
    cluster.fit(_net(n_iter=3), parts)
    steps = [c for c in calls if c[0] == "_part_sums"]
    assert len(steps) == 3 * 3 and {c[0] for c in calls} == {"_part_stats", "_part_sums"}
    assert all(w == [holder[key]] and allow is False for _, key, w, allow in calls)
