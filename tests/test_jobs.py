"""Background jobs (jobs.py) and how run_all uses them: same results in a worker
process as in-process, keys, priorities, errors, and the Q2 split by learning rate."""
import os
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

import jobs
import mlp
import run_all


# module-level job functions: the workers unpickle them by name
def _square(x):
    return x * x


def _fail(message):
    raise ValueError(message)


def _pid_and_threads():
    import numba
    return os.getpid(), numba.get_num_threads()


def _sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def _data(n=300, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


# ------------------------------------------------------------------ in-process
def test_deferred_jobs_run_once_on_first_result():
    calls = []

    def job(x):
        calls.append(x)
        return x + 1

    pool = jobs.Jobs(0)
    fut = pool.submit("a", job, 1)
    assert calls == []                                  # nothing runs before it is needed
    assert fut.result() == 2 and pool.result("a") == 2
    assert calls == [1]                                 # and it ran once
    assert pool.submit("a", job, 99) is fut             # same key: the first job


def test_deferred_error_is_raised_to_every_caller():
    pool = jobs.Jobs(0)
    pool.submit("bad", _fail, "boom")
    for _ in range(2):
        with pytest.raises(ValueError, match="boom"):
            pool.result("bad")


def test_unknown_key_and_bad_worker_count():
    with pytest.raises(KeyError, match="no job 'x' was submitted"):
        jobs.Jobs(0).result("x")
    with pytest.raises(ValueError, match="workers must be a non-negative integer"):
        jobs.Jobs(-1)


# -------------------------------------------------------------------- workers
@pytest.fixture(scope="module")
def pool():
    with jobs.Jobs(2) as p:
        yield p


def test_worker_runs_with_one_numba_thread_in_another_process(pool):
    pid, threads = pool.submit("pid", _pid_and_threads).result(timeout=120)
    assert pid != os.getpid() and threads == 1


def test_worker_error_reaches_the_caller(pool):
    with pytest.raises(ValueError, match="worker boom"):
        pool.submit("fail", _fail, "worker boom").result(timeout=120)


def test_fit_in_a_worker_equals_fit_in_process(pool):
    X, y = _data()
    params = dict(hidden=(8, 6), activation="relu", lr=0.3, n_iter=25, seed=3, dtype="float64")
    remote = pool.submit("fit", run_all._fit_job, "t", params, X[:200], y[:200], X[200:], y[200:])
    local = mlp.MLP(**params).fit(X[:200], y[:200], X[200:], y[200:])
    remote = remote.result(timeout=120)
    for a, b in zip(remote.weights_ + remote.biases_, local.weights_ + local.biases_):
        np.testing.assert_array_equal(a, b)             # bitwise: 1 thread there, any here
    np.testing.assert_array_equal(remote.history_["val_loss"], local.history_["val_loss"])


def test_lower_priority_waits_for_a_free_worker():
    with jobs.Jobs(1) as p:
        order = []
        first = p.submit("busy", _sleep_then, "busy", 1.0)     # occupies the only worker
        late = p.submit("late", _sleep_then, "late", 0.0, priority=5)
        urgent = p.submit("urgent", _sleep_then, "urgent", 0.0, priority=0)
        for fut in (first, late, urgent):
            fut.add_done_callback(lambda f: order.append(f.result()))
        late.result(timeout=120)
        time.sleep(0.2)
        assert order == ["busy", "urgent", "late"]


def test_close_cancels_waiting_jobs():
    p = jobs.Jobs(1)
    p.submit("busy", _sleep_then, 1, 0.5)
    waiting = p.submit("waiting", _square, 3, priority=9)
    p.close()
    assert p.result("busy") == 1
    with pytest.raises(CancelledError):
        waiting.result(timeout=10)


# ----------------------------------------------------------------------- Q2
def test_q2_split_by_learning_rate_merges_to_the_single_experiment():
    X, y = _data(200, 4, seed=1)
    Y = np.eye(3)[y]
    lrs, seeds = (0.3, 3.0, 30.0), (0, 1)
    whole = mlp.bias_experiment(X, Y, lrs=lrs, seeds=seeds, n_iter=15, n_jobs=1)
    merged = run_all._merge_bias_experiments(
        [mlp.bias_experiment(X, Y, lrs=(lr,), seeds=seeds, n_iter=15, n_jobs=1) for lr in lrs])
    assert merged["config"] == whole["config"]
    assert merged["summary"] == whole["summary"]
    assert merged["curves"].keys() == whole["curves"].keys()
    for key, c in whole["curves"].items():
        for name, arr in c.items():
            np.testing.assert_array_equal(merged["curves"][key][name], arr)


# ------------------------------------------------------------------ warm-up
def _record(folder, name):
    with open(os.path.join(folder, f"{name}-{os.getpid()}"), "w"):
        pass
    time.sleep(0.3)


def test_every_worker_runs_every_warm_up_task_before_its_jobs(tmp_path):
    tasks = [(_record, (str(tmp_path), "a")), (_record, (str(tmp_path), "b"))]
    with jobs.Jobs(2, warm_up=tasks) as p:
        pids = {p.submit(k, _pid_and_threads).result(timeout=120)[0] for k in range(4)}
    done = sorted(f.name for f in tmp_path.iterdir())
    for pid in pids:                  # each worker that ran a job ran both tasks first
        assert f"a-{pid}" in done and f"b-{pid}" in done


def test_fork_is_safe_only_before_numba_threads_start():
    import subprocess
    import sys
    code = ("import jobs, numpy as np, numba\n"
            "before = jobs.fork_is_safe()\n"
            "@numba.njit(parallel=True)\n"
            "def f(a):\n"
            "    for i in numba.prange(a.size):\n"
            "        a[i] += 1\n"
            "f(np.zeros(4))\n"
            "print(before, jobs.fork_is_safe())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(jobs.__file__), check=True).stdout.split()
    assert out == ["True", "False"]


def test_bad_start_method():
    with pytest.raises(ValueError, match="start_method='nope' is not available"):
        jobs.Jobs(1, start_method="nope")


def test_mlp_warm_up_rejects_unknown_kernels():
    with pytest.raises(ValueError, match="unknown"):
        mlp.warm_up("float32", kernels=("network", "gpu"))
