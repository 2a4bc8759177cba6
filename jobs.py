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

What a job prints does not go to the terminal from the worker: each line comes
back to the main process tagged with the job's key and ``group`` (e.g. the
part that uses it), for the caller to print where it belongs
(``Jobs.take_lines`` or a ``sink``); jobs may report how far they are
(``report_progress``) for an estimate of the time left (``Jobs.remaining``).
Workers ignore Ctrl-C (the main process stops them) and die with the main
process however it ends, SIGKILL included (``_die_with_parent``).
"""
import heapq
import io
import itertools
import multiprocessing
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from collections import namedtuple
from concurrent.futures import BrokenExecutor, CancelledError, Future, ProcessPoolExecutor

# The pool never needs more: a run has about a dozen independent jobs, and each
# worker holds its own compiled kernels and copy of the small arrays (large matrices
# are mapped from the main process: ``training.worker_arrays``, ``shared_arrays``).
MAX_WORKERS = 8


class _Deferred:
    """The in-process stand-in for a future: runs ``fn`` on the first ``result()``,
    its printed lines captured like a worker's (``Jobs.take_lines``)."""

    def __init__(self, owner, job_id, fn, args, kwargs):
        self._owner, self._id = owner, job_id
        self._call = (fn, args, kwargs)
        self._value = self._error = None
        self._ran = False

    def result(self):
        if not self._ran:
            fn, args, kwargs = self._call
            self._ran, self._call = True, None
            self._owner._started(self._id)
            try:
                self._value = self._owner._run_here(self._id, fn, args, kwargs)
            except BaseException as e:      # kept, and raised to every caller
                self._error = e
            self._owner._ended(self._id, self._error)
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


def _init_worker(sys_path, warm_up, parent_pid, messages):
    """Worker start-up: die with the parent, ignore Ctrl-C (the parent stops the
    workers), send printed lines to the parent, one numba thread, the parent's
    import path, then the ``warm_up`` tasks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):      # started with SIGINT blocked (see _no_sigint)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _die_with_parent(parent_pid)
    global _SEND
    _SEND = messages.put
    sys.stdout = _LineWriter("stdout", sys.stdout)
    sys.stderr = _LineWriter("stderr", sys.stderr)
    if "numba" in sys.modules:          # forked from a parent that imported it
        sys.modules["numba"].set_num_threads(1)
    else:                               # spawned: set before numba reads its config
        os.environ["NUMBA_NUM_THREADS"] = "1"
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    # Each task runs under its own lock file: a worker first takes the tasks no
    # other worker holds (so on a cold numba cache the workers compile different
    # kernels side by side), then waits for the others' and runs them too (now
    # only loading what the other worker compiled into the cache), unless that
    # worker has stopped (see _TaskLock: then it runs them without waiting more).
    left = list(enumerate(warm_up))
    for blocking in (False, True):
        for item in list(left):
            i, (fn, args) = item
            with _TaskLock(i, blocking) as got:
                if got:
                    fn(*args)
                    left.remove(item)
    _flush_lines()


# ------------------------------------------------------- dying with the parent
# How often a worker checks that its parent is alive where the kernel cannot
# tell it (no PR_SET_PDEATHSIG): a killed run's workers are gone within this.
WATCHDOG_SECONDS = 0.5


def _die_with_parent(parent_pid):
    """Make this worker die when ``parent_pid`` does, however it dies (SIGKILL too):
    Linux's ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` where it exists, plus a watchdog
    thread that exits when the parent pid changes (the portable fallback; also
    covers a parent that died before the prctl call)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:      # the parent is already gone
        os._exit(1)

    def watch():
        while True:
            time.sleep(WATCHDOG_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


class _no_sigint:
    """Block SIGINT in the calling thread while processes are started from it: a
    new worker inherits the blocked signal and unblocks it only once it ignores
    it (``_init_worker``), so a Ctrl-C during its start-up (imports) prints no
    traceback there. A Ctrl-C meanwhile reaches the parent when this ends."""

    def __enter__(self):
        self._old = None
        if hasattr(signal, "pthread_sigmask"):
            self._old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old)
        return False


# ----------------------------------------------------------- console capture
# In a worker: where printed lines and progress go (the parent's message queue);
# the job running now. In the parent, a job run in-process (workers=0) sets them
# for its duration.
_SEND = None
_JOB = None
_WRITERS = []


class _LineWriter(io.TextIOBase):
    """A text stream that sends each complete line to ``_SEND`` as
    ``(job_id, "line", (stream, text))``; what has no newline yet waits for one
    (or for the end of the job)."""

    def __init__(self, name, original):
        super().__init__()
        self.name, self.original = name, original
        self._buf = ""
        self._lock = threading.Lock()
        _WRITERS.append(self)

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False

    def write(self, text):
        text = str(text)
        with self._lock:
            self._buf += text
            *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self._send(line)
        return len(text)

    def _send(self, line):
        send = _SEND
        if send is None:                    # capture ended: write through
            self.original.write(line + "\n")
        else:
            send((_JOB, "line", (self.name, line.rstrip("\r"))))

    def finish(self):
        """Send the unfinished last line, if any."""
        with self._lock:
            rest, self._buf = self._buf, ""
        if rest:
            self._send(rest)


def _flush_lines():
    for w in _WRITERS:
        w.finish()


def report_progress(fraction):
    """Tell the parent how far the running job is (0..1), for ``Jobs.remaining``;
    a no-op outside a job. Call it from a job's own progress callback."""
    send = _SEND
    if send is not None and _JOB is not None:
        send((_JOB, "progress", min(max(float(fraction), 0.0), 1.0)))


def _run_job(job_id, fn, args, kwargs):
    """A job in a worker: ``fn(*args, **kwargs)`` with its printed lines tagged
    ``job_id``; an ``end`` message follows its last line, so the parent knows it
    has all of them when the result arrives."""
    global _JOB
    _JOB = job_id
    try:
        return fn(*args, **kwargs)
    finally:
        _flush_lines()
        if _SEND is not None:
            _SEND((job_id, "end", None))
        _JOB = None


# A worker waits for another process's warm-up task only while that process
# shows it is working: the holder of a task's lock touches the lock file every
# WARM_UP_STALL_SECONDS / 4, and a waiter that sees no touch for
# WARM_UP_STALL_SECONDS (a run paused with Ctrl-Z, a hung or foreign process)
# runs the task itself; so it does, whatever happens, after
# WARM_UP_MAX_WAIT_SECONDS (a cold compile takes 20-40 s).
WARM_UP_STALL_SECONDS = 5.0
WARM_UP_MAX_WAIT_SECONDS = 300.0


def _private_folder():
    """A descriptor of this user's folder for the warm-up locks,
    ``<tempfile.gettempdir()>/mlp-toolkit-<uid>``, created with mode 0700; None
    when it cannot be trusted (a link, not a folder, another user's, open to
    others) or made, and then the workers do not coordinate."""
    import stat
    import tempfile
    uid = os.geteuid()
    path = os.path.join(tempfile.gettempdir(), f"mlp-toolkit-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:             # a link (ELOOP), not a folder (ENOTDIR), gone
        return None
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        os.close(fd)
        return None
    return fd


class _TaskLock:
    """An exclusive lock file per warm-up task, shared by this user's workers on
    this machine (in ``_private_folder``); ``with`` gives True when the task is
    to run here (False: busy and not ``blocking``). While held, a thread touches
    the file (a heartbeat); a blocking wait ends when the holder releases it, or
    when its heartbeat stops for ``WARM_UP_STALL_SECONDS`` or the wait reaches
    ``WARM_UP_MAX_WAIT_SECONDS``, then the task runs here without the lock.
    Without ``fcntl`` (not Unix) or a trustworthy folder it always gives True:
    no coordination."""

    def __init__(self, index, blocking):
        self.index, self.blocking = index, blocking
        self._fd = self._stop = self._beater = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return True
        folder = _private_folder()
        if folder is None:
            return True
        try:
            fd = os.open(f"warm-up-{self.index}.lock",
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         0o600, dir_fd=folder)
        except OSError:                         # cannot lock here: run without
            return True
        finally:
            os.close(folder)
        start = time.monotonic()
        started = time.time()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            except OSError:
                os.close(fd)
                return True
            if not self.blocking:
                os.close(fd)
                return False
            try:
                beat = max(os.fstat(fd).st_mtime, started)
            except OSError:
                beat = started
            if (time.time() - beat > WARM_UP_STALL_SECONDS
                    or time.monotonic() - start > WARM_UP_MAX_WAIT_SECONDS):
                os.close(fd)                    # the holder is stuck: go alone
                return True
            time.sleep(min(0.1, WARM_UP_STALL_SECONDS / 10))
        self._fd, self._stop = fd, threading.Event()
        _touch(fd)
        self._beater = threading.Thread(target=_heartbeat, args=(fd, self._stop),
                                        name="warm-up-heartbeat", daemon=True)
        self._beater.start()
        return True

    def __exit__(self, *exc):
        if self._fd is not None:
            self._stop.set()
            self._beater.join()                 # no touch of a closed (reused) descriptor
            fd, self._fd = self._fd, None
            os.close(fd)                        # closing releases the lock
        return False


def _touch(fd):
    try:
        os.utime(fd)
    except (OSError, NotImplementedError):
        pass


def _heartbeat(fd, stop):
    """Touch the lock file ``fd`` until ``stop`` is set: waiters see the holder is alive."""
    while not stop.wait(WARM_UP_STALL_SECONDS / 4):
        _touch(fd)


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


JobStatus = namedtuple("JobStatus", "key group state fraction seconds")
JobStatus.__doc__ = """One job as ``Jobs.status`` sees it: its ``key`` and ``group``, ``state``
("waiting", "running", "done", "failed" or "cancelled"), the last ``fraction``
it reported (``report_progress``; None if none) and ``seconds`` it has run."""

# Everything ``take_lines`` can return when no group is named.
ALL = object()


class _JobInfo:
    __slots__ = ("key", "group", "state", "started", "finished", "fraction", "ended")

    def __init__(self, key, group):
        self.key, self.group, self.state = key, group, "waiting"
        self.started = self.finished = self.fraction = None
        self.ended = threading.Event()      # the worker's last line has arrived

    def seconds(self, now):
        if self.started is None:
            return 0.0
        return (self.finished if self.finished is not None else now) - self.started


class Jobs:
    """Keyed background jobs with priorities: ``submit`` starts one (once per key),
    ``result`` waits for it; what a job prints comes back to this process.

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
        pools but not their threads, which can deadlock the child
        (``fork_is_safe``). With "fork" every worker is started by ``start``
        (or the first ``submit``).
    warm_up : list of (callable, tuple)
        Tasks every new worker runs before its first job, e.g. calls that
        compile (or load from numba's cache) the kernels the jobs use. Each task
        runs in one worker at a time (a lock file per task, in a folder of this
        user's only), and a worker starts with the tasks no other worker is
        running: on a cold cache the workers compile different kernels side by
        side and then load each other's, instead of all compiling the same code.
        A worker waits for another's task only while that one is working (not
        paused or hung; ``WARM_UP_STALL_SECONDS``). Functions must be picklable
        (module level).
    sink : callable, optional
        ``sink(group, key, line)`` is called in this process for every line a
        job prints, as it arrives (from a background thread; from the calling
        thread for in-process jobs). Without it the lines are kept for
        ``take_lines``.

    Notes
    -----
    At most ``workers`` jobs are handed to the pool at a time; the others wait
    here, and whenever a worker frees up the waiting job with the lowest
    ``priority`` (then the earliest submitted) goes next. A part can thus queue
    low-priority work early to fill idle workers without delaying the jobs
    the next part waits for.

    A job's ``sys.stdout``/``sys.stderr`` go, line by line, to this process,
    tagged with the job's key and the ``group`` it was submitted with (e.g. the
    part that needs it), so the caller prints them where they belong instead of
    worker output interleaving with its own. By the time a job's result is
    available, all its lines are (output written to file descriptor 1/2 by C
    code is not captured). Lines printed by a worker outside a job (warm-up)
    belong to group None.

    Workers die with this process however it ends (SIGKILL included; see
    ``_die_with_parent``) and ignore Ctrl-C: the parent stops them
    (``close(cancel=True)``, which ``with Jobs(...)`` does on an exception).

    Functions and arguments are pickled to the workers: pass module-level
    functions and plain data (arrays, dicts, numbers).
    """

    def __init__(self, workers, start_method="spawn", warm_up=(), sink=None):
        if not (isinstance(workers, int) and workers >= 0):
            raise ValueError(f"workers must be a non-negative integer; got {workers!r}")
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"start_method={start_method!r} is not available here; use one of "
                             f"{multiprocessing.get_all_start_methods()}")
        if sink is not None and not callable(sink):
            raise ValueError(f"sink must be callable(group, key, line); got {sink!r}")
        self.workers = min(workers, MAX_WORKERS)
        self.start_method = start_method
        self.warm_up = list(warm_up)
        self.sink = sink
        self._pool = None
        self._futures = {}
        self._info = {}                 # job id -> _JobInfo
        self._ids = itertools.count()
        self._waiting = []              # heap of (priority, order, job id, future, fn, args, kwargs)
        self._order = itertools.count()
        self._running = 0
        self._lock = threading.Lock()
        self._lines = []                # (group, key, line) not yet taken
        self._lines_lock = threading.Lock()
        self._messages = None           # the workers' queue of (job id, kind, payload)
        self._reader = None
        self._stop_reading = threading.Event()

    # ------------------------------------------------------------ submitting
    def submit(self, key, fn, *args, priority=0, group=None, **kwargs):
        """Queue ``fn(*args, **kwargs)`` under ``key`` unless a job with that key exists.

        Returns the job's future (``.result()`` waits and re-raises its error).
        Submitting the same key again returns the first job: a part can ask for
        a job that an earlier step already queued. Lower ``priority`` runs first.
        ``group`` tags the job's printed lines (``take_lines``, ``sink``) and
        its ``status``, e.g. the code of the part that uses it.
        """
        if key in self._futures:
            return self._futures[key]
        job_id, fut = self._new_job(key, group, fn, args, kwargs)
        if self.workers:
            self._enqueue(priority, job_id, fut, fn, args, kwargs)
        return fut

    def _new_job(self, key, group, fn, args, kwargs):
        """Register the job ``key`` and return (job id, its future): with ``workers=0``
        a ``_Deferred`` that runs ``fn(*args, **kwargs)`` when asked, else a pending
        ``Future`` (the pool is started) for ``_enqueue``."""
        job_id = next(self._ids)
        self._info[job_id] = _JobInfo(key, group)
        if self.workers == 0:
            fut = _Deferred(self, job_id, fn, args, kwargs)
        else:
            self._ensure_pool()
            fut = Future()
        self._futures[key] = fut
        return job_id, fut

    def _enqueue(self, priority, job_id, fut, fn, args, kwargs):
        """Put a registered job in the waiting heap and hand out what the workers can take."""
        with self._lock:
            heapq.heappush(self._waiting, (priority, next(self._order), job_id, fut, fn, args, kwargs))
        self._dispatch()

    def _ensure_pool(self):
        if self._pool is None:
            ctx = multiprocessing.get_context(self.start_method)
            if self._messages is None:
                self._messages = ctx.Queue()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                initargs=(list(sys.path), self.warm_up, os.getpid(), self._messages))

    def _pool_submit(self, fn, *args):
        with _no_sigint():          # workers may be started here
            inner = self._pool.submit(fn, *args)
        if self._reader is None or not self._reader.is_alive():
            # started after the first workers: a forked worker must not copy this thread
            self._stop_reading.clear()
            self._reader = threading.Thread(target=self._read_messages, name="jobs-output", daemon=True)
            self._reader.start()
        return inner

    def start(self):
        """Start every worker now (they load their libraries while the caller goes on)
        instead of on the first ``submit``; nothing to do with ``workers=0``."""
        if self.workers:
            self._ensure_pool()
            for _ in range(self.workers):
                self._pool_submit(_ready)

    def _dispatch(self):
        """Hand waiting jobs to the pool while fewer than ``workers`` are running."""
        while True:
            with self._lock:
                if self._running >= self.workers or not self._waiting or self._pool is None:
                    return
                _, _, job_id, fut, fn, args, kwargs = heapq.heappop(self._waiting)
                if not fut.set_running_or_notify_cancel():
                    self._info[job_id].state = "cancelled"
                    continue                # cancelled while waiting
                self._running += 1
            self._started(job_id)
            try:
                inner = self._pool_submit(_run_job, job_id, fn, args, kwargs)
            except BaseException as e:      # pool shut down or broken
                self._finished(job_id, fut, None, e)
                continue
            inner.add_done_callback(lambda f, outer=fut, i=job_id: self._finished(i, outer, f))

    def _finished(self, job_id, outer, inner, error=None):
        with self._lock:
            self._running -= 1
        if inner is not None:
            error = (CancelledError("the worker pool was shut down before the job ran")
                     if inner.cancelled() else inner.exception())
        if not isinstance(error, (CancelledError, BrokenExecutor)):
            # the job ran to its end: wait (briefly) for its last printed lines
            self._info[job_id].ended.wait(2.0)
        self._ended(job_id, error)
        if error is not None:
            outer.set_exception(error)
        else:
            outer.set_result(inner.result())
        self._dispatch()

    # ------------------------------------------------------- progress, lines
    def _started(self, job_id):
        info = self._info[job_id]
        info.state, info.started = "running", time.monotonic()

    def _ended(self, job_id, error):
        info = self._info[job_id]
        info.finished = time.monotonic()
        if info.started is None:
            info.started = info.finished
        info.state = ("done" if error is None else
                      "cancelled" if isinstance(error, CancelledError) else "failed")

    def _run_here(self, job_id, fn, args, kwargs):
        """Run a job in this process with its lines captured like a worker's."""
        global _SEND, _JOB
        out, err = _LineWriter("stdout", sys.stdout), _LineWriter("stderr", sys.stderr)
        _WRITERS.remove(out)
        _WRITERS.remove(err)

        def send(msg):          # the sink may print: to the real streams, not back here
            now = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = out.original, err.original
            try:
                self._on_message(msg)
            finally:
                sys.stdout, sys.stderr = now

        saved = _SEND, _JOB, sys.stdout, sys.stderr
        _SEND, _JOB, sys.stdout, sys.stderr = send, job_id, out, err
        try:
            return fn(*args, **kwargs)
        finally:
            out.finish()
            err.finish()
            _SEND, _JOB, sys.stdout, sys.stderr = saved

    def _read_messages(self):
        """The background thread that receives the workers' lines and progress."""
        q = self._messages
        while True:
            try:
                msg = q.get(timeout=0.1)
            except queue_mod.Empty:
                if self._stop_reading.is_set():
                    return
                continue
            except Exception:       # queue closed, or a worker killed mid-message
                return
            self._on_message(msg)

    def _on_message(self, msg):
        try:
            job_id, kind, payload = msg
        except (TypeError, ValueError):
            return
        info = self._info.get(job_id)
        if kind == "end":
            if info is not None:
                info.ended.set()
        elif kind == "progress":
            if info is not None:
                info.fraction = payload
        elif kind == "line":
            group, key = (info.group, info.key) if info is not None else (None, None)
            if self.sink is not None:
                try:
                    self.sink(group, key, payload[1])
                except Exception:       # a broken sink must not stop the jobs
                    pass
            else:
                with self._lines_lock:
                    self._lines.append((group, key, payload[1]))

    def take_lines(self, group=ALL):
        """Remove and return, in the order they were printed, the lines of the jobs of
        ``group`` (default: of every group) that arrived so far.

        Returns
        -------
        list of str
        """
        with self._lines_lock:
            if group is ALL:
                taken, self._lines = self._lines, []
            else:
                taken = [x for x in self._lines if x[0] == group]
                self._lines = [x for x in self._lines if x[0] != group]
        return [line for _, _, line in taken]

    def status(self, group=ALL):
        """Every job (of ``group``) in the order submitted, as ``JobStatus`` tuples."""
        now = time.monotonic()
        return [JobStatus(i.key, i.group, i.state, i.fraction, round(i.seconds(now), 3))
                for i in self._info.values() if group is ALL or i.group == group]

    def remaining(self, group=ALL):
        """A rough estimate of the seconds until the jobs (of ``group``) are done, or
        None when nothing is known yet (no job has finished or reported progress).

        A running job that reported a fraction ``f`` after ``t`` seconds needs
        ``t (1 - f) / f`` more; any other unfinished job is assumed to take the
        mean time of the finished jobs of its group (else of all). The total is
        spread over the workers.
        """
        now = time.monotonic()
        infos = list(self._info.values())
        done = [i for i in infos if i.state == "done"]
        mean_all = sum(i.seconds(now) for i in done) / len(done) if done else None
        total, known = 0.0, True
        for i in infos:
            if group is not ALL and i.group != group:
                continue
            if i.state not in ("waiting", "running"):
                continue
            t = i.seconds(now)
            if i.state == "running" and i.fraction:
                total += t * (1 - i.fraction) / i.fraction
                continue
            same = [d.seconds(now) for d in done if d.group == i.group]
            mean = sum(same) / len(same) if same else mean_all
            if mean is None:
                known = False
                continue
            total += max(mean - t, 0.0)
        if not known and total == 0.0:
            return None
        return total / max(self.workers, 1)

    def result(self, key):
        """Wait for the job ``key`` and return its result (``KeyError`` if never submitted)."""
        try:
            fut = self._futures[key]
        except KeyError:
            raise KeyError(f"no job {key!r} was submitted; submit it first") from None
        return fut.result()

    # -------------------------------------------------------------- stopping
    def close(self, cancel=False):
        """Stop the workers after the running jobs finish (``cancel``: at once, without
        waiting for them; safe to call again, e.g. after a Ctrl-C interrupted a
        waiting ``close``). Jobs still waiting for a worker are cancelled either way."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for item in waiting:
            if item[3].cancel():
                self._info[item[2]].state = "cancelled"
        pool = self._pool
        if pool is not None:
            if cancel:      # do not wait for running jobs: stop their processes
                _stop_processes(pool)
            pool.shutdown(wait=not cancel, cancel_futures=cancel)
            self._pool = None
        self._stop_reading.set()
        if self._reader is not None and not cancel:
            self._reader.join(timeout=2.0)      # the last lines of the finished jobs

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(cancel=exc_type is not None)
        return False

    def after(self, key, inputs, fn, *args, priority=0, group=None, **kwargs):
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
        job_id, fut = self._new_job(
            key, group, lambda: fn(*[i.result() for i in inputs], *args, **kwargs), (), {})
        if self.workers == 0:
            return fut
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
                self._ended(job_id, e)
                fut.set_exception(e)
                return
            try:
                self._enqueue(priority, job_id, fut, fn, (*results, *args), kwargs)
            except BaseException as e:      # never leave the job's waiter hanging
                if not fut.done():
                    self._ended(job_id, e)
                    fut.set_exception(e)

        if not inputs:
            left[0] = 1
            ready()
        for i in inputs:
            i.add_done_callback(ready)
        return fut

def _stop_processes(pool, grace=1.0):
    """Terminate the pool's worker processes, then kill those still alive after
    ``grace`` seconds, and reap them."""
    procs = list((getattr(pool, "_processes", None) or {}).copy().values())
    for proc in procs:
        try:
            proc.terminate()
        except (OSError, ValueError, AttributeError):
            pass
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.join(max(deadline - time.monotonic(), 0.0))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        except (OSError, ValueError, AssertionError, AttributeError):
            pass
