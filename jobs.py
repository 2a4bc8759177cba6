"""Background jobs for ``run_all``: trainings and experiments in worker processes.

A full run trains about ten networks and runs the shared-bias experiments;
once the data are encoded these jobs are independent of each other and of
most of the main process's work (EDA, figures, attribution, the report).
``Jobs`` runs them in a pool of worker processes with ONE numba thread each,
while the main process goes on, and hands each result back when a part asks
for it.

Why processes with one thread each: the per-tile products of the training
kernel are small, so one training spread over two threads is well short of
twice as fast as on one thread, while two single-threaded trainings side by
side are nearly independent: on the 2-core development machine they get
1.2-1.3x (float32) and 1.1x (float64) more iterations per second done than one
two-threaded training at a time (``python bench/time_epochs.py``, part 5).
Worker processes also let the main process's single-threaded Python work
(figures, tables, scikit-learn checks) overlap with training.

Results do not depend on where a job runs: the kernels give bitwise identical
results for any number of threads (tests/test_mlp.py), and a job receives the
same arrays and arguments it would receive in-process (tests/test_jobs.py).

With ``workers=0`` a job runs in the calling process the first time its
result is asked for (``run_all.py --threads 1``).
"""
import heapq
import itertools
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor

# The pool never needs more: a run has about a dozen independent jobs, and each
# worker holds its own copy of the data and the compiled kernels.
MAX_WORKERS = 8


class _Deferred:
    """The in-process stand-in for a future: runs ``fn`` on the first ``result()``."""

    def __init__(self, fn, args, kwargs):
        self._call = (fn, args, kwargs)
        self._value = self._error = None
        self._ran = False

    def result(self):
        if not self._ran:
            fn, args, kwargs = self._call
            self._ran, self._call = True, None
            try:
                self._value = fn(*args, **kwargs)
            except BaseException as e:      # kept, and raised to every caller
                self._error = e
        if self._error is not None:
            raise self._error
        return self._value

    def done(self):
        return self._ran

    def cancel(self):
        return not self._ran


def _ready():
    """A no-op job: returns once a worker is up."""
    return os.getpid()


def _init_worker(sys_path, warm_up=()):
    """Worker start-up: one numba thread, the parent's import path, then the
    ``warm_up`` tasks; Ctrl-C is left to the parent, which stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "numba" in sys.modules:          # forked from a parent that imported it
        sys.modules["numba"].set_num_threads(1)
    else:                               # spawned: set before numba reads its config
        os.environ["NUMBA_NUM_THREADS"] = "1"
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    # Each task runs under its own lock file: a worker first takes the tasks no
    # other worker holds (so on a cold numba cache the workers compile different
    # kernels side by side), then waits for the others' and runs them too (now
    # only loading what the other worker compiled into the cache).
    left = list(enumerate(warm_up))
    for blocking in (False, True):
        for item in list(left):
            i, (fn, args) = item
            with _TaskLock(i, blocking) as got:
                if got:
                    fn(*args)
                    left.remove(item)


class _TaskLock:
    """An exclusive lock file per warm-up task, shared by the workers of this
    machine; ``with`` gives True when held (False: busy and not ``blocking``).
    Without ``fcntl`` (not Unix) it always gives True: no coordination."""

    def __init__(self, index, blocking):
        self.index, self.blocking, self._fh = index, blocking, None

    def __enter__(self):
        try:
            import fcntl
            import tempfile
        except ImportError:
            return True
        path = os.path.join(tempfile.gettempdir(), f"mlp-toolkit-warm-up-{os.getuid()}-{self.index}.lock")
        try:
            self._fh = open(path, "a")
            fcntl.flock(self._fh, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            self._fh.close()
            self._fh = None
            return False
        except OSError:                         # cannot lock here: run without
            self._fh = None
        return True

    def __exit__(self, *exc):
        if self._fh is not None:
            self._fh.close()                    # closing releases the lock
        return False


def fork_is_safe():
    """True when worker processes may be forked from this one: on Linux, and before
    numba has started its thread pool here (a forked child would inherit the pool's
    state but not its threads). OpenMP code (scikit-learn) must not have run either;
    that is the caller's to ensure."""
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return False
    if "numba" not in sys.modules:
        return True
    try:
        from numba.np.ufunc import parallel
        return not parallel._is_initialized
    except (ImportError, AttributeError):     # numba internals moved: do not risk it
        return False


class Jobs:
    """Keyed background jobs with priorities: ``submit`` starts one (once per key),
    ``result`` waits for it.

    Parameters
    ----------
    workers : int
        Worker processes (capped at ``MAX_WORKERS``); 0 runs every job in this
        process when its result is first asked for. Processes are started on
        the first ``submit`` (or ``start``), so a run that submits nothing
        starts none.
    start_method : {"spawn", "fork", "forkserver"}
        How workers are created (``multiprocessing``). "spawn" (default) is safe
        at any time. "fork" skips importing numpy, numba, SciPy and
        scikit-learn again in every worker (about 2.5 s of CPU each), but is
        safe only before the parent runs any parallel numba kernel or
        scikit-learn OpenMP code: a fork copies the memory of those thread
        pools but not their threads, which can deadlock the child.
    warm_up : list of (callable, tuple)
        Tasks every new worker runs before its first job, e.g. calls that
        compile (or load from numba's cache) the kernels the jobs use. Each task
        runs in one worker at a time (a lock file per task), and a worker starts
        with the tasks no other worker is running: on a cold cache the workers
        compile different kernels side by side and then load each other's,
        instead of all compiling the same code. Functions must be picklable
        (module level).

    Notes
    -----
    At most ``workers`` jobs are handed to the pool at a time; the others wait
    here, and whenever a worker frees up the waiting job with the lowest
    ``priority`` (then the earliest submitted) goes next. A part can thus queue
    low-priority work early to fill idle workers without delaying the jobs
    the next part waits for.

    Functions and arguments are pickled to the workers: pass module-level
    functions and plain data (arrays, dicts, numbers).
    """

    def __init__(self, workers, start_method="spawn", warm_up=()):
        if not (isinstance(workers, int) and workers >= 0):
            raise ValueError(f"workers must be a non-negative integer; got {workers!r}")
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"start_method={start_method!r} is not available here; use one of "
                             f"{multiprocessing.get_all_start_methods()}")
        self.workers = min(workers, MAX_WORKERS)
        self.start_method = start_method
        self.warm_up = list(warm_up)
        self._pool = None
        self._futures = {}
        self._waiting = []              # heap of (priority, order, future, fn, args, kwargs)
        self._order = itertools.count()
        self._running = 0
        self._lock = threading.Lock()

    def submit(self, key, fn, *args, priority=0, **kwargs):
        """Queue ``fn(*args, **kwargs)`` under ``key`` unless a job with that key exists.

        Returns the job's future (``.result()`` waits and re-raises its error).
        Submitting the same key again returns the first job: a part can ask for
        a job that an earlier step already queued. Lower ``priority`` runs first.
        """
        if key in self._futures:
            return self._futures[key]
        if self.workers == 0:
            fut = _Deferred(fn, args, kwargs)
        else:
            self._ensure_pool()
            fut = Future()
            with self._lock:
                heapq.heappush(self._waiting, (priority, next(self._order), fut, fn, args, kwargs))
            self._dispatch()
        self._futures[key] = fut
        return fut

    def _ensure_pool(self):
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context(self.start_method),
                initializer=_init_worker, initargs=(list(sys.path), self.warm_up))

    def start(self):
        """Start every worker now (they load their libraries while the caller goes on)
        instead of on the first ``submit``; nothing to do with ``workers=0``."""
        if self.workers:
            self._ensure_pool()
            for _ in range(self.workers):
                self._pool.submit(_ready)

    def _dispatch(self):
        """Hand waiting jobs to the pool while fewer than ``workers`` are running."""
        while True:
            with self._lock:
                if self._running >= self.workers or not self._waiting or self._pool is None:
                    return
                _, _, fut, fn, args, kwargs = heapq.heappop(self._waiting)
                if not fut.set_running_or_notify_cancel():
                    continue                # cancelled while waiting
                self._running += 1
            try:
                inner = self._pool.submit(fn, *args, **kwargs)
            except BaseException as e:      # pool shut down or broken
                self._finished(fut, None, e)
                continue
            inner.add_done_callback(lambda f, outer=fut: self._finished(outer, f))

    def _finished(self, outer, inner, error=None):
        with self._lock:
            self._running -= 1
        if inner is not None:
            error = (CancelledError("the worker pool was shut down before the job ran")
                     if inner.cancelled() else inner.exception())
        if error is not None:
            outer.set_exception(error)
        else:
            outer.set_result(inner.result())
        self._dispatch()

    def result(self, key):
        """Wait for the job ``key`` and return its result (``KeyError`` if never submitted)."""
        try:
            fut = self._futures[key]
        except KeyError:
            raise KeyError(f"no job {key!r} was submitted; submit it first") from None
        return fut.result()

    def close(self, cancel=False):
        """Stop the workers after the running jobs finish (``cancel``: without waiting
        for them). Jobs still waiting for a worker are cancelled either way."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for item in waiting:
            item[2].cancel()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if cancel:      # do not wait for running jobs: stop their processes
                for proc in (getattr(pool, "_processes", None) or {}).copy().values():
                    proc.terminate()
            pool.shutdown(wait=not cancel, cancel_futures=cancel)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(cancel=exc_type is not None)
        return False

    def after(self, key, inputs, fn, *args, priority=0, **kwargs):
        """Queue ``fn(*results, *args, **kwargs)`` under ``key`` once every future in
        ``inputs`` has finished (``results``: theirs, in order); return its future now.

        ``inputs`` are futures of this pool or anything with ``result()`` and
        ``add_done_callback()``. An input that failed fails the job with its
        error. With ``workers=0`` the job runs, like any other, when its result
        is first asked for. The same key returns the first job (as ``submit``).
        """
        if key in self._futures:
            return self._futures[key]
        inputs = list(inputs)
        if self.workers == 0:
            fut = _Deferred(lambda: fn(*[i.result() for i in inputs], *args, **kwargs), (), {})
            self._futures[key] = fut
            return fut
        self._ensure_pool()
        fut = self._futures[key] = Future()
        left = [len(inputs)]
        counter = threading.Lock()

        def ready(_=None):
            with counter:
                left[0] -= 1
                if left[0] > 0:
                    return
            try:
                results = [i.result() for i in inputs]
            except BaseException as e:      # an input failed: so does the job
                fut.set_exception(e)
                return
            with self._lock:
                heapq.heappush(self._waiting, (priority, next(self._order), fut, fn,
                                               (*results, *args), kwargs))
            self._dispatch()

        if not inputs:
            left[0] = 1
            ready()
        for i in inputs:
            i.add_done_callback(ready)
        return fut
