"""Background jobs (jobs.py) and how run_all uses them: same results in a worker
process as in-process, keys, priorities, errors, and the Q2 split by learning rate."""
import os
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

import jobs
import mlp
import shared_bias
import part_q2
import training
import run_all


# module-level job functions: the workers unpickle them by name
def _square(x):
    return x * x


def _fail(message):
    raise ValueError(message)


def _pid_and_threads():
    import numba
    return os.getpid(), numba.get_num_threads()


def _add(*xs):
    return sum(xs)


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
    remote = pool.submit("fit", training.fit_job, "t", params, X[:200], y[:200], X[200:], y[200:])
    local = mlp.MLP(**params).fit(X[:200], y[:200], X[200:], y[200:])
    remote = remote.result(timeout=120)
    for a, b in zip(remote.weights_ + remote.biases_, local.weights_ + local.biases_):
        np.testing.assert_array_equal(a, b)             # bitwise: 1 thread there, any here
    np.testing.assert_array_equal(remote.history_["val_loss"], local.history_["val_loss"])


@pytest.mark.parametrize("workers", [0, 1])
def test_after_runs_on_its_inputs_results_and_fails_with_a_failed_input(workers):
    with jobs.Jobs(workers) as p:
        a, b = p.submit("a", _square, 3), p.submit("b", _square, 4)
        total = p.after("total", [a, b], _add, 1)
        assert total.result() == 9 + 16 + 1
        assert p.after("total", [], _add) is total          # same key: the first job
        bad = p.submit("bad", _fail, "boom")
        dependent = p.after("dependent", [a, bad], _add)
        with pytest.raises(ValueError, match="boom"):
            dependent.result()
        states = {s.key: s.state for s in p.status()}
        assert states["total"] == "done" and states["dependent"] == "failed"


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
    whole = shared_bias.bias_experiment(X, Y, lrs=lrs, seeds=seeds, n_iter=15, n_jobs=1)
    merged = part_q2._merge_bias_experiments(
        [shared_bias.bias_experiment(X, Y, lrs=(lr,), seeds=seeds, n_iter=15, n_jobs=1) for lr in lrs])
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


# ------------------------------------------------------ output and progress
def _chatty(name, n):
    import sys
    for i in range(n):
        print(f"{name} line {i}")
    print(f"{name} warning", file=sys.stderr)
    print(f"{name} no newline", end="")
    return name


def _progressing(seconds):
    for f in (0.25, 0.5):
        jobs.report_progress(f)
    time.sleep(seconds)
    return "ok"


@pytest.mark.parametrize("workers", [0, 1])
def test_printed_lines_come_back_tagged_by_group_and_complete_at_result(workers):
    with jobs.Jobs(workers) as p:
        p.submit("b1", _chatty, "b1", 3, group="B")
        p.submit("q", _chatty, "q", 1, group="Q2")
        assert p.result("b1") == "b1" and p.result("q") == "q"
        # all of a job's lines are here once its result is (stdout and stderr, partial last line)
        assert p.take_lines("B") == ["b1 line 0", "b1 line 1", "b1 line 2", "b1 warning", "b1 no newline"]
        assert p.take_lines("B") == []                      # taken once
        assert p.take_lines() == ["q line 0", "q warning", "q no newline"]


def test_sink_receives_group_key_and_line():
    got = []
    with jobs.Jobs(1, sink=lambda group, key, line: got.append((group, key, line))) as p:
        p.submit(("fit", "x"), _chatty, "x", 1, group="D").result(timeout=120)
        assert got == [("D", ("fit", "x"), "x line 0"), ("D", ("fit", "x"), "x warning"),
                       ("D", ("fit", "x"), "x no newline")]
        assert p.take_lines() == []                         # a sink gets them instead


def test_in_process_sink_may_print_without_recursing(capsys):
    p = jobs.Jobs(0, sink=lambda group, key, line: print(f"[{group}] {line}"))
    p.submit("a", _chatty, "a", 1, group="C").result()
    assert capsys.readouterr().out.splitlines() == ["[C] a line 0", "[C] a warning", "[C] a no newline"]


def test_status_progress_and_remaining_time():
    p = jobs.Jobs(0)
    for k in range(3):
        p.submit(k, _progressing, 0.2, group="g")
    assert p.remaining("g") is None                         # nothing known yet
    p.result(0)
    first = p.status("g")[0]
    assert first.state == "done" and first.fraction == 0.5 and first.seconds >= 0.2
    assert [s.state for s in p.status()] == ["done", "waiting", "waiting"]
    # two waiting jobs like the finished one, on one process
    assert 2 * 0.2 <= p.remaining("g") <= 2 * first.seconds + 0.01      # (seconds are rounded)
    assert p.remaining("other") == 0.0


# --------------------------------------------------------- dying, Ctrl-C
_PARENT = """
import os, sys, time
sys.path.insert(0, {repo!r})
import jobs

def nap(s):
    time.sleep(s)
    return os.getpid()

if __name__ == "__main__":
    p = jobs.Jobs(2, start_method={method!r})
    p.start()
    pids = {{p.submit(k, nap, 0.3).result() for k in range(4)}}
    p.submit("long", nap, 60)
    print(" ".join(map(str, sorted(pids))), flush=True)
    time.sleep(60)
"""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(ppid):
    kids = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[1]) == ppid:
                    kids.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return kids


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_die_when_the_parent_is_killed(tmp_path, method):
    import signal
    import subprocess
    import sys
    script = tmp_path / "parent.py"
    script.write_text(_PARENT.format(repo=os.path.dirname(jobs.__file__), method=method))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(x) for x in proc.stdout.readline().split()]
    pids = _children(proc.pid)          # the workers, and with spawn the resource tracker
    assert len(workers) == 2 and set(workers) <= set(pids) and all(_alive(pid) for pid in pids)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


_CTRL_C = """
import sys, time
sys.path.insert(0, {repo!r})
import jobs
import numpy, scipy.linalg      # a worker re-imports this script: its start-up takes a while

if __name__ == "__main__":
    p = jobs.Jobs(2, start_method="spawn")
    try:
        p.start()
        print("started", flush=True)
        time.sleep(30)
    except KeyboardInterrupt:
        p.close(cancel=True)
        print("stopped", file=sys.stderr)
        sys.exit(130)
"""


@pytest.mark.slow
def test_ctrl_c_while_workers_start_prints_no_traceback_from_them(tmp_path):
    import signal
    import subprocess
    import sys
    script = tmp_path / "ctrl_c.py"
    script.write_text(_CTRL_C.format(repo=os.path.dirname(jobs.__file__)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline() == "started\n"
    time.sleep(0.1)                      # the spawned workers are importing
    os.killpg(proc.pid, signal.SIGINT)   # the whole process group, as a terminal does
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err == "stopped\n", err


_WATCHED = """
import os, sys, time
sys.path.insert(0, {repo!r})
import jobs
sys.platform = "elsewhere"          # no PR_SET_PDEATHSIG: only the watchdog thread is left
jobs._die_with_parent(os.getppid())
print("ready", flush=True)
time.sleep(60)
"""
_MIDDLE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {code!r}], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "ready\\n"
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_watchdog_alone_ends_a_worker_whose_parent_was_killed():
    import signal
    import subprocess
    import sys
    code = _WATCHED.format(repo=os.path.dirname(jobs.__file__))
    middle = subprocess.Popen([sys.executable, "-c", _MIDDLE.format(code=code)], stdout=subprocess.PIPE,
                              text=True)
    child = int(middle.stdout.readline())
    assert _alive(child)
    os.kill(middle.pid, signal.SIGKILL)
    middle.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
